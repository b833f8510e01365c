//! Unit tests with hand-built local and target BTF, one group per relocation kind.

use structops_btf::ext::{CoreRelo, CoreReloKind};
use structops_btf::{Btf, BtfBuilder, INT_SIGNED, Kind, Linkage, Type, TypeId, TypeKind};
use structops_isa::{Insn, opcode};

use super::*;

use CoreReloKind::*;

fn relo(type_id: TypeId, access_str_off: u32, kind: CoreReloKind) -> CoreRelo {
    CoreRelo {
        insn_off: 0,
        type_id,
        access_str_off,
        kind,
    }
}

fn resolve1(local: &Btf, target: &Btf, r: &CoreRelo) -> Result<ReloResult> {
    let t = CoreTarget::new(target);
    let mut cache = CandidateCache::new();
    resolve(local, &t, &mut cache, r)
}

/// (orig, new, poison) of one relocation.
fn vals(local: &Btf, target: &Btf, r: &CoreRelo) -> (u64, u64, bool) {
    let res = resolve1(local, target, r).unwrap();
    (res.values.orig_val, res.values.new_val, res.values.poison)
}

/// A local type and its access strings, built in one BtfBuilder.
struct Local {
    b: BtfBuilder,
}

impl Local {
    fn new() -> Local {
        Local {
            b: BtfBuilder::new(),
        }
    }
    fn s(&mut self, access: &str) -> u32 {
        self.b.add_string(access)
    }
}

/// Target: `struct task { long y; int x; int pid; char comm[16]; struct task *parent; }`
/// plus `typedef int pid_t`.
fn simple_target() -> (Btf, TypeId) {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let long = t.add_int("long", 8, INT_SIGNED);
    let ch = t.add_int("char", 1, INT_SIGNED);
    let arr = t.add_array(ch, int, 16);
    // the pointer refers to the struct added right after it
    let ptr = t.add_ptr(t.next_id() + 1);
    let task = t.add_struct(
        "task",
        48,
        &[
            ("y", long, 0),
            ("x", int, 64),
            ("pid", int, 96),
            ("comm", arr, 128),
            ("parent", ptr, 256),
        ],
    );
    assert_eq!(ptr + 1, task);
    t.add_typedef("pid_t", int);
    (t.build(), task)
}

// ---------------------------------------------------------------------------------------
// Access string parsing

/// `struct sample { int u; struct { int a; int b; int arr[7]; }; struct sample *next; }`
fn sample_local() -> (Local, TypeId, TypeId) {
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let arr = l.b.add_array(int, int, 7);
    let anon =
        l.b.add_struct("", 36, &[("a", int, 0), ("b", int, 32), ("arr", arr, 64)]);
    let ptr = l.b.add_ptr(l.b.next_id() + 1);
    let sample = l.b.add_struct(
        "sample",
        48,
        &[("u", int, 0), ("", anon, 32), ("next", ptr, 320)],
    );
    (l, sample, int)
}

#[test]
fn parse_spec_walks_anonymous_members_and_arrays() {
    let (l, sample, int) = sample_local();
    let btf = l.b.build();
    // &s->arr[3]: root 0, anon member 1, arr (member 2 of anon), element 3.
    let spec = parse_spec(&btf, sample, FieldByteOffset, "0:1:2:3").unwrap();
    assert_eq!(spec.raw, vec![0, 1, 2, 3]);
    let names: Vec<_> = spec.accessors.iter().map(|a| a.name.as_deref()).collect();
    assert_eq!(names, vec![None, Some("arr"), None]);
    assert_eq!(spec.accessors[2].type_id, int);
    assert_eq!(spec.accessors[2].idx, 3);
    // 4 (anon) + 8 (arr) + 3 * 4
    assert_eq!(spec.bit_offset, (4 + 8 + 12) * 8);
    assert_eq!(
        spec.display(&btf).to_string(),
        format!("<byte_off> [{sample}] struct sample.arr[3] (0:1:2:3 @ offset 24)")
    );
    // Root index: &s[2].u
    let spec = parse_spec(&btf, sample, FieldByteOffset, "2:0").unwrap();
    assert_eq!(spec.bit_offset, 2 * 48 * 8);
    assert_eq!(
        spec.display(&btf).to_string(),
        format!("<byte_off> [{sample}] struct sample[2].u (2:0 @ offset 96)")
    );
}

#[test]
fn parse_spec_rejects_malformed_access_strings() {
    let (l, sample, _) = sample_local();
    let btf = l.b.build();
    for bad in [
        "", ":0", "0:", "0::1", "x", "0:a", "-1", "0:-1", "0:9", "0:1:2:7", "0:0:0",
    ] {
        let err = parse_spec(&btf, sample, FieldByteOffset, bad).unwrap_err();
        assert_eq!(err.errno(), EINVAL, "{bad:?}: {err}");
        assert!(
            matches!(
                err,
                CoreError::InvalidAccessString { .. } | CoreError::UnexpectedKind { .. }
            ),
            "{bad:?}: {err:?}"
        );
    }
    // walking into an int
    assert!(matches!(
        parse_spec(&btf, sample, FieldByteOffset, "0:0:0"),
        Err(CoreError::UnexpectedKind {
            index: 2,
            kind: Kind::Int,
            ..
        })
    ));
    // 65 indices
    let long = vec!["0"; 65].join(":");
    assert!(matches!(
        parse_spec(&btf, sample, FieldByteOffset, &long),
        Err(CoreError::InvalidAccessString { .. })
    ));
    // sscanf-style leading blanks and '+' are accepted
    assert_eq!(
        parse_spec(&btf, sample, FieldByteOffset, "0: +2")
            .unwrap()
            .bit_offset,
        320
    );
    // type relocations need exactly "0"
    assert!(parse_spec(&btf, sample, TypeExists, "0").is_ok());
    assert!(matches!(
        parse_spec(&btf, sample, TypeSize, "0:0"),
        Err(CoreError::InvalidAccessString { .. })
    ));
    // enumerator relocation on a struct
    assert!(matches!(
        parse_spec(&btf, sample, EnumvalExists, "0"),
        Err(CoreError::InvalidAccessString { .. })
    ));
}

#[test]
fn parse_spec_allows_flexible_array_members_past_their_length() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let flex = b.add_array(int, int, 0);
    let zero = b.add_array(int, int, 0);
    let s = b.add_struct("flex", 4, &[("n", int, 0), ("data", flex, 32)]);
    let not_last = b.add_struct("nl", 4, &[("data", zero, 0), ("n", int, 0)]);
    let btf = b.build();
    let spec = parse_spec(&btf, s, FieldByteOffset, "0:1:5").unwrap();
    assert_eq!(spec.bit_offset, (4 + 20) * 8);
    // a zero-length array that is not the last member is not flexible
    assert!(parse_spec(&btf, not_last, FieldByteOffset, "0:0:1").is_err());
}

#[test]
fn parse_spec_enumerator() {
    let mut b = BtfBuilder::new();
    let e = b.add_enum("color", 4, false, &[("RED", 0), ("GREEN", 7)]);
    let td = b.add_typedef("color_t", e);
    let btf = b.build();
    let spec = parse_spec(&btf, td, EnumvalValue, "1").unwrap();
    assert_eq!(spec.accessors[0].name.as_deref(), Some("GREEN"));
    assert_eq!(spec.accessors[0].type_id, e);
    assert_eq!(
        spec.display(&btf).to_string(),
        format!("<enumval_value> [{td}] typedef color_t::GREEN = 7")
    );
    assert!(parse_spec(&btf, td, EnumvalValue, "2").is_err());
    assert!(parse_spec(&btf, td, EnumvalValue, "0:0").is_err());
}

// ---------------------------------------------------------------------------------------
// Candidate search

#[test]
fn candidates_by_essential_name_and_kind() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let a = t.add_struct("foo", 4, &[("x", int, 0)]);
    let b = t.add_struct("foo___v2", 4, &[("x", int, 0)]);
    let _u = t.add_union("foo", 4, &[("x", int, 0)]);
    let c = t.add_struct("foo___a___b", 4, &[("x", int, 0)]);
    let e32 = t.add_enum("foo", 4, false, &[("A", 1)]);
    let e64 = t.add_enum("foo___64", 8, false, &[("A", 1)]);
    let _bad = t.add_struct("foo____x", 4, &[("x", int, 0)]);
    let target = t.build();
    let target = CoreTarget::new(&target);

    let mut l = BtfBuilder::new();
    let lint = l.add_int("int", 4, INT_SIGNED);
    let ls = l.add_struct("foo___local", 4, &[("x", lint, 0)]);
    let ls2 = l.add_struct("foo___a___zz", 4, &[("x", lint, 0)]);
    let le = l.add_enum("foo", 4, false, &[("A", 1)]);
    let anon = l.add_struct("", 4, &[("x", lint, 0)]);
    let local = l.build();

    assert_eq!(target.candidates(&local, ls).unwrap(), vec![a, b]);
    // essential name of "foo___a___zz" is "foo___a": only "foo___a___b" has it
    assert_eq!(target.candidates(&local, ls2).unwrap(), vec![c]);
    // enum and enum64 are compatible kinds
    assert_eq!(target.candidates(&local, le).unwrap(), vec![e32, e64]);
    assert!(matches!(
        target.candidates(&local, anon),
        Err(CoreError::AnonymousType { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Field relocations

#[test]
fn field_byte_offset_follows_the_field_across_flavors() {
    let (target, ttask) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let task =
        l.b.add_struct("task___mine", 8, &[("x", int, 0), ("pid", int, 32)]);
    let a_pid = l.s("0:1");
    let a_x = l.s("0:0");
    let local = l.b.build();

    let res = resolve1(&local, &target, &relo(task, a_pid, FieldByteOffset)).unwrap();
    assert_eq!((res.values.orig_val, res.values.new_val), (4, 12));
    assert_eq!(res.matched, vec![ttask]);
    assert_eq!((res.values.orig_sz, res.values.new_sz), (4, 4));
    assert!(!res.values.poison && res.values.validate);
    let ts = res.target_spec.unwrap();
    assert_eq!(ts.raw, vec![0, 2]);
    assert_eq!(
        ts.display(&target).to_string(),
        format!("<byte_off> [{ttask}] struct task.pid (0:2 @ offset 12)")
    );
    assert_eq!(
        vals(&local, &target, &relo(task, a_x, FieldByteOffset)),
        (0, 8, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, a_pid, FieldByteSize)),
        (4, 4, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, a_pid, FieldExists)),
        (1, 1, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, a_pid, FieldSigned)),
        (1, 1, false)
    );
    // non-bitfield int: lshift = 64 - 32 (bits past the loaded 4 bytes), rshift = 32
    assert_eq!(
        vals(&local, &target, &relo(task, a_pid, FieldLshiftU64)),
        (32, 32, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, a_pid, FieldRshiftU64)),
        (32, 32, false)
    );
}

#[test]
fn missing_field_poisons_or_reports_absence() {
    let (target, _) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let task =
        l.b.add_struct("task___old", 8, &[("pid", int, 0), ("gone", int, 32)]);
    let a = l.s("0:1");
    let local = l.b.build();

    for kind in [
        FieldByteOffset,
        FieldByteSize,
        FieldSigned,
        FieldLshiftU64,
        FieldRshiftU64,
    ] {
        let res = resolve1(&local, &target, &relo(task, a, kind)).unwrap();
        assert!(res.values.poison, "{kind:?}");
        assert!(res.matched.is_empty() && res.target_spec.is_none());
    }
    assert_eq!(
        vals(&local, &target, &relo(task, a, FieldExists)),
        (1, 0, false)
    );
}

#[test]
fn field_with_incompatible_type_does_not_match() {
    let (target, _) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let s = l.b.add_struct("inner", 4, &[("a", int, 0)]);
    // local `pid` is a struct; target's is an int
    let task = l.b.add_struct("task", 4, &[("pid", s, 0)]);
    let a = l.s("0:0");
    let local = l.b.build();
    assert_eq!(
        vals(&local, &target, &relo(task, a, FieldExists)),
        (1, 0, false)
    );
    assert!(vals(&local, &target, &relo(task, a, FieldByteOffset)).2);
}

#[test]
fn anonymous_members_in_the_target_are_searched() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let u64t = t.add_int("long long unsigned int", 8, 0);
    let inner = t.add_struct("", 8, &[("a", int, 0), ("b", int, 32)]);
    let un = t.add_union("", 8, &[("", inner, 0), ("ab", u64t, 0)]);
    let skb = t.add_struct(
        "sk_buff",
        24,
        &[("len", int, 0), ("", un, 64), ("c", int, 128)],
    );
    let target = t.build();

    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let lskb =
        l.b.add_struct("sk_buff___x", 8, &[("b", lint, 0), ("c", lint, 32)]);
    let ab = l.s("0:0");
    let ac = l.s("0:1");
    let local = l.b.build();

    let res = resolve1(&local, &target, &relo(lskb, ab, FieldByteOffset)).unwrap();
    assert_eq!(res.values.new_val, 12);
    let ts = res.target_spec.unwrap();
    assert_eq!(ts.raw, vec![0, 1, 0, 1]);
    assert_eq!(ts.accessors.len(), 2);
    assert_eq!(ts.accessors[1].type_id, inner);
    assert_eq!(
        ts.display(&target).to_string(),
        format!("<byte_off> [{skb}] struct sk_buff.b (0:1:0:1 @ offset 12)")
    );
    assert_eq!(
        vals(&local, &target, &relo(lskb, ac, FieldByteOffset)),
        (4, 16, false)
    );
}

#[test]
fn array_element_relocations() {
    let (target, _) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let ch = l.b.add_int("char", 1, INT_SIGNED);
    let arr = l.b.add_array(ch, int, 8);
    let task =
        l.b.add_struct("task", 12, &[("pid", int, 0), ("comm", arr, 32)]);
    let elem = l.s("0:1:3");
    let whole = l.s("0:1");
    let beyond = l.s("0:1:7");
    let local = l.b.build();

    let res = resolve1(&local, &target, &relo(task, elem, FieldByteOffset)).unwrap();
    assert_eq!((res.values.orig_val, res.values.new_val), (7, 19));
    assert_eq!((res.values.orig_sz, res.values.new_sz), (1, 1));
    assert_eq!(
        vals(&local, &target, &relo(task, elem, FieldByteSize)),
        (1, 1, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, elem, FieldExists)),
        (1, 1, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, whole, FieldByteSize)),
        (8, 16, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, beyond, FieldByteOffset)),
        (11, 23, false)
    );
    // Array accesses support only offset, size and existence.
    assert!(matches!(
        resolve1(&local, &target, &relo(task, elem, FieldSigned)),
        Err(CoreError::ArrayAccess { .. })
    ));

    // A target array shorter than the index does not match.
    let mut t = BtfBuilder::new();
    let tint = t.add_int("int", 4, INT_SIGNED);
    let tch = t.add_int("char", 1, INT_SIGNED);
    let tarr = t.add_array(tch, tint, 4);
    t.add_struct("task", 8, &[("pid", tint, 0), ("comm", tarr, 32)]);
    let short = t.build();
    assert!(vals(&local, &short, &relo(task, beyond, FieldByteOffset)).2);
    assert_eq!(
        vals(&local, &short, &relo(task, beyond, FieldExists)),
        (1, 0, false)
    );
    assert_eq!(
        vals(&local, &short, &relo(task, elem, FieldByteOffset)),
        (7, 7, false)
    );
}

#[test]
fn root_array_index_scales_by_target_size() {
    let (target, _) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let task =
        l.b.add_struct("task", 8, &[("x", int, 0), ("pid", int, 32)]);
    let a = l.s("2:1");
    let local = l.b.build();
    // local: 2 * 8 + 4; target: 2 * 48 + 12
    assert_eq!(
        vals(&local, &target, &relo(task, a, FieldByteOffset)),
        (20, 108, false)
    );
}

/// `struct bits { u32 a:3; u32 b:5; u8 pad; u8 c:4 (crossing a byte) ... }` with kflag.
#[test]
fn bitfields_with_kind_flag() {
    let mut t = BtfBuilder::new();
    let u32t = t.add_int("unsigned int", 4, 0);
    let s8 = t.add_int("signed char", 1, INT_SIGNED);
    let u64t = t.add_int("long long unsigned int", 8, 0);
    t.add_bitfield_composite(
        false,
        "bits",
        24,
        &[
            ("pad", u64t, 0, 0),
            ("a", u32t, 64 + 9, 3),
            ("c", s8, 64 + 32 + 6, 4),
            ("w", u64t, 128 + 60, 8),
        ],
    );
    let target = t.build();

    let mut l = Local::new();
    let lu32 = l.b.add_int("unsigned int", 4, 0);
    let ls8 = l.b.add_int("signed char", 1, INT_SIGNED);
    let lu64 = l.b.add_int("long long unsigned int", 8, 0);
    let bits = l.b.add_bitfield_composite(
        false,
        "bits___l",
        16,
        &[("a", lu32, 0, 3), ("c", ls8, 8, 4), ("w", lu64, 64, 8)],
    );
    let a = l.s("0:0");
    let c = l.s("0:1");
    let w = l.s("0:2");
    let local = l.b.build();

    // a: bits 73..76 in a u32 at byte 8 -> byte_off 8, size 4, lshift 64-(73+3-64)=52
    assert_eq!(
        vals(&local, &target, &relo(bits, a, FieldByteOffset)),
        (0, 8, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, a, FieldByteSize)),
        (4, 4, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, a, FieldLshiftU64)),
        (61, 52, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, a, FieldRshiftU64)),
        (61, 61, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, a, FieldSigned)),
        (0, 0, false)
    );
    // bitfield values are not validated, except signedness and the right shift
    for (kind, validate) in [
        (FieldByteOffset, false),
        (FieldByteSize, false),
        (FieldLshiftU64, false),
        (FieldRshiftU64, true),
        (FieldSigned, true),
    ] {
        let res = resolve1(&local, &target, &relo(bits, a, kind)).unwrap();
        assert_eq!(res.values.validate, validate, "{kind:?}");
        // bitfield byte offsets carry no load size
        assert_eq!((res.values.orig_sz, res.values.new_sz), (0, 0));
    }
    // c: bits 102..106 in a u8: crosses byte 12/13, so the load grows to 2 bytes at 12
    assert_eq!(
        vals(&local, &target, &relo(bits, c, FieldByteOffset)),
        (1, 12, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, c, FieldByteSize)),
        (1, 2, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, c, FieldLshiftU64)),
        (60, 54, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, c, FieldRshiftU64)),
        (60, 60, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(bits, c, FieldSigned)),
        (1, 1, false)
    );
    // w: 8 bits at 188 need more than a u64 load
    assert!(matches!(
        resolve1(&local, &target, &relo(bits, w, FieldByteOffset)),
        Err(CoreError::BitfieldTooWide { .. })
    ));
    assert_eq!(
        resolve1(&local, &target, &relo(bits, w, FieldByteOffset))
            .unwrap_err()
            .errno(),
        E2BIG
    );
}

#[test]
fn bitfields_without_kind_flag_are_plain_members() {
    // Old-style BTF: no kflag, the member's INT type carries the bit width. libbpf's
    // btf_member_bitfield_size() is 0 then, so the member is treated as a whole int.
    let mut t = BtfBuilder::new();
    let int3 = t.add_type(Type {
        name_off: 0,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 0,
            bits: 3,
        },
    });
    let int = t.add_int("int", 4, INT_SIGNED);
    t.add_struct("old", 8, &[("x", int, 0), ("f", int3, 35)]);
    // a legacy int with a bit offset is never compatible
    let shifted = t.add_type(Type {
        name_off: 0,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 2,
            bits: 3,
        },
    });
    t.add_struct("older", 8, &[("f", shifted, 0)]);
    let target = t.build();

    let mut l = Local::new();
    let u32t = l.b.add_int("unsigned int", 4, 0);
    let old =
        l.b.add_bitfield_composite(false, "old", 4, &[("f", u32t, 0, 3)]);
    let older =
        l.b.add_bitfield_composite(false, "older", 4, &[("f", u32t, 0, 3)]);
    let a = l.s("0:0");
    let local = l.b.build();

    assert_eq!(
        vals(&local, &target, &relo(old, a, FieldByteOffset)),
        (0, 4, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(old, a, FieldByteSize)),
        (4, 4, false)
    );
    // 64 - (35 + 32 - 32)
    assert_eq!(
        vals(&local, &target, &relo(old, a, FieldLshiftU64)),
        (61, 29, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(old, a, FieldRshiftU64)),
        (61, 32, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(older, a, FieldExists)),
        (1, 0, false)
    );
}

#[test]
fn field_signedness_of_enums_and_pointers() {
    let mut t = BtfBuilder::new();
    let se = t.add_enum("e", 4, true, &[("A", -1)]);
    let ue = t.add_enum("e", 4, false, &[("A", 1)]);
    let int = t.add_int("int", 4, INT_SIGNED);
    let p = t.add_ptr(int);
    t.add_struct("s", 16, &[("se", se, 0), ("ue", ue, 32), ("p", p, 64)]);
    let target = t.build();
    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let lp = l.b.add_ptr(lint);
    let le = l.b.add_enum("e", 4, false, &[("A", 1)]);
    let s =
        l.b.add_struct("s", 16, &[("se", le, 0), ("ue", le, 32), ("p", lp, 64)]);
    let (a0, a1, a2) = (l.s("0:0"), l.s("0:1"), l.s("0:2"));
    let local = l.b.build();
    assert_eq!(
        vals(&local, &target, &relo(s, a0, FieldSigned)),
        (0, 1, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(s, a1, FieldSigned)),
        (0, 0, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(s, a2, FieldSigned)),
        (0, 0, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(s, a2, FieldByteSize)),
        (8, 8, false)
    );
}

#[test]
fn load_size_adjustment_rules() {
    let mut t = BtfBuilder::new();
    let u64t = t.add_int("long unsigned int", 8, 0);
    let s64 = t.add_int("long", 8, INT_SIGNED);
    let u16t = t.add_int("short unsigned int", 2, 0);
    let u24 = t.add_int("u24", 3, 0);
    let int = t.add_int("int", 4, INT_SIGNED);
    let p = t.add_ptr(int);
    t.add_struct(
        "s",
        40,
        &[
            ("u", u64t, 0),
            ("i", s64, 64),
            ("h", u16t, 128),
            ("odd", u24, 160),
            ("p", p, 192),
        ],
    );
    let target = t.build();
    let mut l = Local::new();
    let lu32 = l.b.add_int("unsigned int", 4, 0);
    let li32 = l.b.add_int("int", 4, INT_SIGNED);
    let lp = l.b.add_ptr(li32);
    let s = l.b.add_struct(
        "s",
        20,
        &[
            ("u", lu32, 0),
            ("i", li32, 32),
            ("h", lu32, 64),
            ("odd", lu32, 96),
            ("p", lp, 128),
        ],
    );
    let acc: Vec<u32> = (0..5).map(|i| l.s(&format!("0:{i}"))).collect();
    let local = l.b.build();
    let r = |i: usize| resolve1(&local, &target, &relo(s, acc[i], FieldByteOffset)).unwrap();

    // unsigned 4 -> 8 bytes: allowed
    let u = r(0).values;
    assert_eq!((u.orig_sz, u.new_sz, u.fail_memsz_adjust), (4, 8, false));
    // signed: not allowed
    let i = r(1).values;
    assert_eq!((i.orig_sz, i.new_sz, i.fail_memsz_adjust), (4, 8, true));
    // unsigned 4 -> 2
    let h = r(2).values;
    assert_eq!((h.orig_sz, h.new_sz, h.fail_memsz_adjust), (4, 2, false));
    // unsigned 4 -> 3: allowed by the type rule, but no load has 3 bytes
    let odd = r(3).values;
    assert_eq!(
        (odd.orig_sz, odd.new_sz, odd.fail_memsz_adjust),
        (4, 3, false)
    );
    // pointers of the same size
    let p = r(4).values;
    assert_eq!((p.orig_sz, p.new_sz, p.fail_memsz_adjust), (8, 8, false));

    // r0 = *(u32 *)(r1 + 0) -> *(u64 *)(r1 + 0)
    let ldx_w = opcode::LDX | opcode::MEM | opcode::W;
    let mut insns = [Insn::new(ldx_w, 0, 1, 0, 0)];
    let out = patch(&mut insns, 0, &u).unwrap();
    assert_eq!(
        out,
        PatchOutcome::Patched {
            field: PatchedField::Off,
            old: 0,
            new: 0,
            mem_size: Some((4, 8)),
        }
    );
    assert_eq!(insns[0].code, opcode::LDX | opcode::MEM | opcode::DW);
    // the signed one is poisoned
    let mut insns = [Insn::new(ldx_w, 0, 1, 4, 0)];
    let out = patch(&mut insns, 0, &i).unwrap();
    assert_eq!(
        out,
        PatchOutcome::Poisoned {
            reason: PoisonReason::BadMemSize,
            slots: 1
        }
    );
    assert_eq!(insns[0], Insn::new(opcode::CALL_CODE, 0, 0, 0, POISON_IMM));
    // the same relocation on an ALU instruction is just a value
    let mut insns = [Insn::new(
        opcode::ALU64 | opcode::MOV | opcode::K,
        2,
        0,
        0,
        4,
    )];
    patch(&mut insns, 0, &i).unwrap();
    assert_eq!(insns[0].imm, 8);
    // 3 bytes: no such load
    let mut insns = [Insn::new(ldx_w, 0, 1, 12, 0)];
    let before = insns;
    assert!(matches!(
        patch(&mut insns, 0, &odd),
        Err(CoreError::InvalidNewMemSize { size: 3, .. })
    ));
    assert_eq!(insns, before, "failed patch leaves the insn alone");
    // an access size that is not the local field's size
    let mut insns = [Insn::new(opcode::LDX | opcode::MEM | opcode::H, 0, 1, 8, 0)];
    assert!(matches!(
        patch(&mut insns, 0, &h),
        Err(CoreError::UnexpectedMemSize {
            got: 2,
            expected: 4,
            ..
        })
    ));
    // a sign-extending load keeps its mode when resized
    let mut insns = [Insn::new(
        opcode::LDX | opcode::MEMSX | opcode::W,
        0,
        1,
        0,
        0,
    )];
    patch(&mut insns, 0, &u).unwrap();
    assert_eq!(insns[0].code, opcode::LDX | opcode::MEMSX | opcode::DW);
    // stores are resized too
    let mut insns = [Insn::new(opcode::STX | opcode::MEM | opcode::W, 1, 2, 8, 0)];
    patch(&mut insns, 0, &h).unwrap();
    assert_eq!(
        (insns[0].code, insns[0].off),
        (opcode::STX | opcode::MEM | opcode::H, 16)
    );
}

// ---------------------------------------------------------------------------------------
// Ambiguity and the candidate cache

#[test]
fn candidates_must_agree() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let long = t.add_int("long", 8, INT_SIGNED);
    let a = t.add_struct("foo", 8, &[("x", int, 0), ("y", int, 32)]);
    let b = t.add_struct("foo___2", 8, &[("x", int, 0), ("y", int, 32)]);
    let _c = t.add_struct("foo___3", 16, &[("x", long, 0), ("y", int, 64)]);
    let target = t.build();

    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let foo = l.b.add_struct("foo", 8, &[("x", lint, 0), ("y", lint, 32)]);
    let ax = l.s("0:0");
    let ay = l.s("0:1");
    let local = l.b.build();

    // x: same offset everywhere, but foo___3's x is 8 bytes
    let err = resolve1(&local, &target, &relo(foo, ax, FieldByteSize)).unwrap_err();
    assert_eq!(
        err,
        CoreError::DecisionAmbiguity {
            type_id: foo,
            first_poison: false,
            first_val: 4,
            other_poison: false,
            other_val: 8,
        }
    );
    // y moves in foo___3
    let err = resolve1(&local, &target, &relo(foo, ay, FieldByteOffset)).unwrap_err();
    assert_eq!(
        err,
        CoreError::FieldOffsetAmbiguity {
            type_id: foo,
            first: 32,
            other: 64,
        }
    );
    assert_eq!(err.errno(), EINVAL);
    // existence agrees everywhere
    let res = resolve1(&local, &target, &relo(foo, ax, FieldExists)).unwrap();
    assert_eq!(res.matched.len(), 3);
    assert_eq!(res.matched[..2], [a, b]);
}

#[test]
fn matching_candidates_narrow_the_cache() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let a = t.add_struct("foo", 4, &[("x", int, 0)]);
    let b = t.add_struct("foo___b", 8, &[("z", int, 0), ("y", int, 32)]);
    let target = t.build();
    let target = CoreTarget::new(&target);

    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let foo = l.b.add_struct("foo", 8, &[("x", lint, 0), ("y", lint, 32)]);
    let ax = l.s("0:0");
    let ay = l.s("0:1");
    let local = l.b.build();

    // Fresh: y is only in foo___b.
    let mut fresh = CoreRelocator::new(&local, &target);
    let res = fresh.resolve(&relo(foo, ay, FieldByteOffset)).unwrap();
    assert_eq!((res.values.new_val, res.matched.clone()), (4, vec![b]));

    // After x matched foo alone, foo___b is no longer a candidate (libbpf prunes).
    let mut rel = CoreRelocator::new(&local, &target);
    assert_eq!(
        rel.resolve(&relo(foo, ax, FieldByteOffset))
            .unwrap()
            .matched,
        vec![a]
    );
    assert_eq!(rel.cache().get(foo), Some(&[a][..]));
    let res = rel.resolve(&relo(foo, ay, FieldByteOffset)).unwrap();
    assert!(res.values.poison);
    // a relocation that matches nothing leaves the list alone
    assert_eq!(rel.cache().get(foo), Some(&[a][..]));
}

// ---------------------------------------------------------------------------------------
// Type relocations

#[test]
fn type_relocations() {
    let (target, ttask) = simple_target();
    let tpid = target.find_by_name_kind("pid_t", Kind::Typedef).unwrap();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let task = l.b.add_struct("task___v1", 4, &[("pid", int, 0)]);
    let pid = l.b.add_typedef("pid_t", int);
    let missing = l.b.add_struct("nope", 4, &[("pid", int, 0)]);
    let zero = l.s("0");
    let local = l.b.build();

    assert_eq!(
        vals(&local, &target, &relo(task, zero, TypeExists)),
        (1, 1, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(task, zero, TypeSize)),
        (4, 48, false)
    );
    let res = resolve1(&local, &target, &relo(task, zero, TypeIdTarget)).unwrap();
    assert_eq!(
        (res.values.orig_val, res.values.new_val),
        (task as u64, ttask as u64)
    );
    assert!(!res.values.validate);
    let res = resolve1(&local, &target, &relo(task, zero, TypeIdLocal)).unwrap();
    assert_eq!(
        (res.values.orig_val, res.values.new_val),
        (task as u64, task as u64)
    );
    assert!(!res.values.validate && res.target_spec.is_none());
    assert_eq!(
        vals(&local, &target, &relo(pid, zero, TypeSize)),
        (4, 4, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(pid, zero, TypeIdTarget)),
        (pid as u64, tpid as u64, false)
    );
    // a missing type gives 0 for every type relocation, and is never poisoned
    for kind in [TypeExists, TypeSize, TypeMatches, TypeIdTarget] {
        let (_, new, poison) = vals(&local, &target, &relo(missing, zero, kind));
        assert_eq!((new, poison), (0, false), "{kind:?}");
    }
    // but the local type id is always known
    assert_eq!(
        vals(&local, &target, &relo(missing, zero, TypeIdLocal)),
        (missing as u64, missing as u64, false)
    );
    assert_eq!(
        resolve1(&local, &target, &relo(task, zero, TypeExists))
            .unwrap()
            .local_spec
            .display(&local)
            .to_string(),
        format!("<type_exists> [{task}] struct task___v1")
    );
}

#[test]
fn types_are_compat_rules() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let ch = t.add_int("char", 1, 0);
    let fl = t.add_float("double", 8);
    let pint = t.add_ptr(int);
    let fp = t.add_func_proto(int, &[("a", pint), ("b", ch)]);
    t.add_typedef("cb_t", fp);
    t.add_typedef("fl_t", fl);
    let arr = t.add_array(int, int, 3);
    t.add_typedef("arr_t", arr);
    let e = t.add_enum("e64", 8, false, &[("A", 1)]);
    t.add_typedef("e_t", e);
    let target = t.build();

    let mut l = Local::new();
    let li = l.b.add_int("long", 8, INT_SIGNED);
    let lch = l.b.add_int("char", 1, 0);
    let pl = l.b.add_ptr(li);
    let c1 = l.b.add_const(pl);
    let fp_ok = l.b.add_func_proto(lch, &[("x", c1), ("y", li)]);
    let fp_arity = l.b.add_func_proto(lch, &[("x", c1)]);
    let cb_ok = l.b.add_typedef("cb_t", fp_ok);
    let cb_arity = l.b.add_typedef("cb_t___2", fp_arity);
    let lfl = l.b.add_float("float", 4);
    let fl_t = l.b.add_typedef("fl_t", lfl);
    let larr = l.b.add_array(li, li, 9);
    let arr_t = l.b.add_typedef("arr_t", larr);
    let le = l.b.add_enum("e32", 4, false, &[("B", 2)]);
    let e_t = l.b.add_typedef("e_t", le);
    let zero = l.s("0");
    let local = l.b.build();

    let exists = |id| vals(&local, &target, &relo(id, zero, TypeExists)).1;
    assert_eq!(exists(cb_ok), 1, "int sizes and param names are ignored");
    assert_eq!(exists(cb_arity), 0, "arity must match");
    assert_eq!(exists(fl_t), 0, "floats are not type-compatible");
    assert_eq!(exists(arr_t), 1, "array lengths are ignored");
    assert_eq!(
        exists(e_t),
        1,
        "enum and enum64 mix, names below the root ignored"
    );
}

#[test]
fn type_matches_rules() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let uint = t.add_int("unsigned int", 4, 0);
    let fwd = t.add_fwd("peer", false);
    let pfwd = t.add_ptr(fwd);
    let e = t.add_enum("mode", 4, false, &[("M_A", 0), ("M_B", 1), ("M_C", 2)]);
    t.add_struct(
        "obj",
        24,
        &[
            ("a", int, 0),
            ("b", uint, 32),
            ("peer", pfwd, 64),
            ("m", e, 128),
        ],
    );
    let target = t.build();

    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let luint = l.b.add_int("unsigned int", 4, 0);
    let peer = l.b.add_struct("peer", 4, &[("z", lint, 0)]);
    let ppeer = l.b.add_ptr(peer);
    let le = l.b.add_enum("mode___x", 4, false, &[("M_B", 9)]);
    let le_bad = l.b.add_enum("mode", 4, false, &[("M_Z", 0)]);
    let ok = l.b.add_struct(
        "obj___1",
        8,
        &[("b", luint, 0), ("peer", ppeer, 32), ("m", le, 96)],
    );
    let sign = l.b.add_struct("obj___2", 4, &[("b", lint, 0)]);
    let missing = l.b.add_struct("obj___3", 4, &[("zz", lint, 0)]);
    let enum_bad = l.b.add_struct("obj___4", 4, &[("m", le_bad, 0)]);
    let lu = l.b.add_union("obj___5", 4, &[("a", lint, 0)]);
    let zero = l.s("0");
    let local = l.b.build();

    let matches = |id| vals(&local, &target, &relo(id, zero, TypeMatches)).1;
    assert_eq!(
        matches(ok),
        1,
        "subset of members, struct behind ptr matches fwd"
    );
    assert_eq!(matches(sign), 0, "signedness must agree");
    assert_eq!(matches(missing), 0, "every local member must exist");
    assert_eq!(matches(enum_bad), 0, "enumerator names must exist");
    assert_eq!(
        matches(lu),
        0,
        "no union candidate for a struct... and kinds differ"
    );
    // TYPE_EXISTS is looser
    assert_eq!(vals(&local, &target, &relo(sign, zero, TypeExists)).1, 1);
}

// ---------------------------------------------------------------------------------------
// Enumerator relocations

#[test]
fn enumerator_relocations() {
    let mut t = BtfBuilder::new();
    t.add_enum(
        "state",
        4,
        true,
        &[("S_RUN", 0), ("S_NEG", -2), ("S_NEW___x", 5)],
    );
    t.add_enum(
        "big",
        8,
        false,
        &[("B_HI", 0xffff_ffff_0000_0001_u64 as i64), ("B_LO", 3)],
    );
    let target = t.build();

    let mut l = Local::new();
    let st = l.b.add_enum(
        "state___v2",
        4,
        false,
        &[("S_NEW", 1), ("S_NEG", 2), ("S_OLD", 3)],
    );
    let big32 = l.b.add_enum("big", 4, false, &[("B_LO", 1), ("B_HI", 2)]);
    let neg = l.b.add_enum("negs", 4, true, &[("N", -1)]);
    let (a0, a1, a2) = (l.s("0"), l.s("1"), l.s("2"));
    let local = l.b.build();

    // enumerator names compare modulo flavor too
    assert_eq!(
        vals(&local, &target, &relo(st, a0, EnumvalValue)),
        (1, 5, false)
    );
    // a negative 32-bit value is sign-extended, as libbpf reads `__s32 val`
    assert_eq!(
        vals(&local, &target, &relo(st, a1, EnumvalValue)),
        (2, (-2_i64) as u64, false)
    );
    assert_eq!(
        vals(&local, &target, &relo(st, a1, EnumvalExists)),
        (1, 1, false)
    );
    // missing enumerator
    assert_eq!(
        vals(&local, &target, &relo(st, a2, EnumvalExists)),
        (1, 0, false)
    );
    assert!(vals(&local, &target, &relo(st, a2, EnumvalValue)).2);
    // enum matches enum64
    let res = resolve1(&local, &target, &relo(big32, a1, EnumvalValue)).unwrap();
    assert_eq!(res.values.new_val, 0xffff_ffff_0000_0001);
    assert_eq!(
        res.target_spec.unwrap().display(&target).to_string(),
        "<enumval_value> [2] enum64 big::B_HI = 18446744069414584321"
    );
    // no candidate at all
    assert_eq!(
        vals(&local, &target, &relo(neg, a0, EnumvalExists)),
        (1, 0, false)
    );
    let res = resolve1(&local, &target, &relo(neg, a0, EnumvalValue)).unwrap();
    assert_eq!(res.values.orig_val, u64::MAX);
    assert!(res.values.poison);
}

// ---------------------------------------------------------------------------------------
// Errors on the local side

#[test]
fn local_errors() {
    let (target, _) = simple_target();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let anon = l.b.add_struct("", 4, &[("pid", int, 0)]);
    let named = l.b.add_struct("task", 4, &[("pid", int, 0)]);
    let a = l.s("0:0");
    let local = l.b.build();
    assert!(matches!(
        resolve1(&local, &target, &relo(anon, a, FieldByteOffset)),
        Err(CoreError::AnonymousType { .. })
    ));
    // TYPE_ID_LOCAL needs no candidates, so anonymous types are fine
    let zero = {
        let mut b = BtfBuilder::from_btf(&local);
        let z = b.add_string("0");
        (b.build(), z)
    };
    assert_eq!(
        vals(&zero.0, &target, &relo(anon, zero.1, TypeIdLocal)),
        (anon as u64, anon as u64, false)
    );
    assert!(matches!(
        resolve1(&local, &target, &relo(999, a, FieldByteOffset)),
        Err(CoreError::Btf { type_id: 999, .. })
    ));
    assert!(matches!(
        resolve1(&local, &target, &relo(named, 9999, FieldByteOffset)),
        Err(CoreError::InvalidAccessString { .. })
    ));
}

#[test]
fn deep_and_cyclic_types_fail_cleanly() {
    // A typedef cycle in the target: resolution must end with an error, not hang.
    let mut t = BtfBuilder::new();
    let a = t.reserve();
    let b = t.add_typedef("loop_b", a);
    let name = t.add_string("loop");
    t.set(
        a,
        Type {
            name_off: name,
            kind: TypeKind::Typedef { target: b },
        },
    );
    let target = t.build();
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let td = l.b.add_typedef("loop", int);
    let zero = l.s("0");
    let local = l.b.build();
    let err = resolve1(&local, &target, &relo(td, zero, TypeExists)).unwrap_err();
    assert!(matches!(err, CoreError::Btf { .. }), "{err:?}");

    // Nested arrays deeper than libbpf's limit.
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let mut arr = int;
    for _ in 0..40 {
        arr = t.add_array(arr, int, 1);
    }
    t.add_struct("deep", 4, &[("a", arr, 0)]);
    let target = t.build();
    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let mut larr = lint;
    for _ in 0..40 {
        larr = l.b.add_array(larr, lint, 1);
    }
    let deep = l.b.add_struct("deep", 4, &[("a", larr, 0)]);
    let a = l.s("0:0");
    let local = l.b.build();
    assert!(matches!(
        resolve1(&local, &target, &relo(deep, a, FieldExists)),
        Err(CoreError::TooDeep { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Instruction patching

fn values(orig: u64, new: u64) -> ReloValues {
    ReloValues {
        orig_val: orig,
        new_val: new,
        validate: true,
        ..ReloValues::default()
    }
}

#[test]
fn patch_alu_immediates() {
    let mov = opcode::ALU64 | opcode::MOV | opcode::K;
    let mut insns = [
        Insn::new(mov, 1, 0, 0, 4),
        Insn::new(opcode::EXIT_CODE, 0, 0, 0, 0),
    ];
    let out = patch(&mut insns, 0, &values(4, 12)).unwrap();
    assert_eq!(
        out,
        PatchOutcome::Patched {
            field: PatchedField::Imm,
            old: 4,
            new: 12,
            mem_size: None
        }
    );
    assert_eq!(insns[0], Insn::new(mov, 1, 0, 0, 12));
    // 32-bit ALU, add
    let add32 = opcode::ALU | opcode::ADD | opcode::K;
    let mut insns = [Insn::new(add32, 1, 0, 0, 4)];
    patch(&mut insns, 0, &values(4, 100)).unwrap();
    assert_eq!(insns[0].imm, 100);
    // validation
    let mut insns = [Insn::new(mov, 1, 0, 0, 5)];
    assert_eq!(
        patch(&mut insns, 0, &values(4, 12)).unwrap_err(),
        CoreError::UnexpectedValue {
            insn_idx: 0,
            class: "ALU/ALU64",
            got: 5,
            expected: 4,
            new: 12
        }
    );
    assert_eq!(insns[0].imm, 5);
    let mut nv = values(4, 12);
    nv.validate = false;
    patch(&mut insns, 0, &nv).unwrap();
    assert_eq!(insns[0].imm, 12);
    // -1 in imm is u64::MAX after sign extension
    let mut insns = [Insn::new(mov, 1, 0, 0, -1)];
    patch(&mut insns, 0, &values(u64::MAX, 7)).unwrap();
    assert_eq!(insns[0].imm, 7);
    // register source is not relocatable
    let mut insns = [Insn::new(
        opcode::ALU64 | opcode::ADD | opcode::X,
        1,
        2,
        0,
        4,
    )];
    assert!(matches!(
        patch(&mut insns, 0, &values(4, 12)),
        Err(CoreError::UnrecognizedInsn { code: 0x0f, .. })
    ));
    // poison
    let mut insns = [Insn::new(mov, 1, 0, 0, 4)];
    let mut p = values(4, 0);
    p.poison = true;
    assert_eq!(
        patch(&mut insns, 0, &p).unwrap(),
        PatchOutcome::Poisoned {
            reason: PoisonReason::Unresolved,
            slots: 1
        }
    );
    assert_eq!(insns[0].to_bytes(), [0x85, 0, 0, 0, 0x10, 0x23, 0xad, 0x0b]);
    assert_eq!(POISON_IMM, 195_896_080);
}

#[test]
fn patch_memory_offsets() {
    let ldx = opcode::LDX | opcode::MEM | opcode::W;
    let st = opcode::ST | opcode::MEM | opcode::DW;
    let mut insns = [Insn::new(ldx, 0, 1, 4, 0), Insn::new(st, 1, 0, 8, 42)];
    patch(&mut insns, 0, &values(4, 1264)).unwrap();
    patch(&mut insns, 1, &values(8, 16)).unwrap();
    assert_eq!((insns[0].off, insns[1].off, insns[1].imm), (1264, 16, 42));
    let mut insns = [Insn::new(ldx, 0, 1, 4, 0)];
    assert_eq!(
        patch(&mut insns, 0, &values(4, 40000)).unwrap_err(),
        CoreError::OffsetTooBig {
            insn_idx: 0,
            value: 40000
        }
    );
    assert_eq!(
        patch(&mut insns, 0, &values(4, 40000)).unwrap_err().errno(),
        ERANGE
    );
    assert!(matches!(
        patch(&mut insns, 0, &values(8, 16)),
        Err(CoreError::UnexpectedValue {
            class: "LDX/ST/STX",
            got: 4,
            ..
        })
    ));
}

#[test]
fn patch_ld_imm64() {
    let ld = opcode::LD_IMM64;
    let mut insns = [
        Insn::new(ld, 3, 0, 0, 7),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(opcode::EXIT_CODE, 0, 0, 0, 0),
    ];
    let out = patch(&mut insns, 0, &values(7, 0x1_2345_6789)).unwrap();
    assert_eq!(
        out,
        PatchOutcome::Patched {
            field: PatchedField::Imm64,
            old: 7,
            new: 0x1_2345_6789,
            mem_size: None
        }
    );
    assert_eq!((insns[0].imm, insns[1].imm), (0x2345_6789, 1));
    assert!(matches!(
        patch(&mut insns, 0, &values(7, 1)),
        Err(CoreError::UnexpectedValue {
            class: "LDIMM64",
            ..
        })
    ));
    // poisoning an LD_IMM64 overwrites both slots
    let mut p = values(0, 0);
    p.poison = true;
    assert_eq!(
        patch(&mut insns, 0, &p).unwrap(),
        PatchOutcome::Poisoned {
            reason: PoisonReason::Unresolved,
            slots: 2
        }
    );
    let poisoned = Insn::new(opcode::CALL_CODE, 0, 0, 0, POISON_IMM);
    assert_eq!(insns[..2], [poisoned, poisoned]);
    assert_eq!(insns[2].code, opcode::EXIT_CODE);
    // pseudo sources (map fds, BTF ids) are not CO-RE relocatable
    let mut insns = [Insn::new(ld, 3, 1, 0, 7), Insn::new(0, 0, 0, 0, 0)];
    assert_eq!(
        patch(&mut insns, 0, &values(7, 1)).unwrap_err(),
        CoreError::LdImm64Form { insn_idx: 0 }
    );
    // truncated
    let mut insns = [Insn::new(ld, 3, 0, 0, 7)];
    assert_eq!(
        patch(&mut insns, 0, &values(7, 1)).unwrap_err(),
        CoreError::LdImm64Truncated { insn_idx: 0 }
    );
    // other LD forms
    let mut insns = [Insn::new(opcode::LD | opcode::ABS | opcode::W, 0, 0, 0, 7)];
    assert!(matches!(
        patch(&mut insns, 0, &values(7, 1)),
        Err(CoreError::LdImm64Form { .. })
    ));
}

#[test]
fn patch_rejects_other_instructions() {
    let mut insns = [Insn::new(opcode::JMP | opcode::JEQ | opcode::K, 1, 0, 2, 4)];
    assert!(matches!(
        patch(&mut insns, 0, &values(4, 8)),
        Err(CoreError::UnrecognizedInsn { insn_idx: 0, .. })
    ));
    assert_eq!(
        patch(&mut insns, 5, &values(4, 8)).unwrap_err(),
        CoreError::InsnOutOfRange {
            insn_idx: 5,
            len: 1
        }
    );
}

#[test]
fn relocator_resolves_and_patches() {
    let (target, _) = simple_target();
    let target = CoreTarget::new(&target);
    let mut l = Local::new();
    let int = l.b.add_int("int", 4, INT_SIGNED);
    let task =
        l.b.add_struct("task", 8, &[("x", int, 0), ("pid", int, 32)]);
    let a = l.s("0:1");
    let local = l.b.build();
    let mut rel = CoreRelocator::new(&local, &target);
    let ldx = opcode::LDX | opcode::MEM | opcode::W;
    let mut insns = [
        Insn::new(ldx, 0, 1, 4, 0),
        Insn::new(opcode::EXIT_CODE, 0, 0, 0, 0),
    ];
    let (res, out) = rel
        .relocate(&mut insns, 0, &relo(task, a, FieldByteOffset))
        .unwrap();
    assert_eq!(res.values.new_val, 12);
    assert!(matches!(out, PatchOutcome::Patched { new: 12, .. }));
    assert_eq!(insns[0].off, 12);
    // a relocation pointing past the program
    assert!(matches!(
        rel.relocate(&mut insns, 2, &relo(task, a, FieldByteOffset)),
        Err(CoreError::InsnOutOfRange { .. })
    ));
}

#[test]
fn func_and_var_roots_have_no_candidates_of_other_kinds() {
    // A FUNC local type finds FUNC candidates only; TYPE_EXISTS on it is a type-compat
    // check that libbpf's switch rejects (kind not handled), giving 0.
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, INT_SIGNED);
    let fp = t.add_func_proto(int, &[]);
    t.add_func("f", fp, Linkage::Global);
    t.add_struct("f", 4, &[("x", int, 0)]);
    let target = t.build();
    let mut l = Local::new();
    let lint = l.b.add_int("int", 4, INT_SIGNED);
    let lfp = l.b.add_func_proto(lint, &[]);
    let f = l.b.add_func("f", lfp, Linkage::Global);
    let zero = l.s("0");
    let local = l.b.build();
    let res = resolve1(&local, &target, &relo(f, zero, TypeExists)).unwrap();
    assert_eq!(res.values.new_val, 0);
    assert!(res.matched.is_empty());
}

#[test]
fn relocation_insn_index() {
    let mut r = relo(1, 0, FieldByteOffset);
    r.insn_off = 24;
    assert_eq!(relo_insn_index(&r).unwrap(), 3);
    r.insn_off = 12;
    assert_eq!(
        relo_insn_index(&r).unwrap_err(),
        CoreError::MisalignedInsnOff { insn_off: 12 }
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn kind_strategy() -> impl Strategy<Value = CoreReloKind> {
        (0u32..13).prop_map(|k| CoreReloKind::from_raw(k).unwrap())
    }

    proptest! {
        /// Any access string, relocation kind and root type: a value or a typed error,
        /// never a panic; errors carry libbpf's errnos.
        #[test]
        fn resolve_never_panics(
            access in "[0-9: +-]{0,24}",
            kind in kind_strategy(),
            type_id in 0u32..16,
        ) {
            let (target, _) = simple_target();
            let (mut l, _, _) = sample_local();
            let off = l.s(&access);
            l.b.add_enum("state", 4, true, &[("A", -1), ("B", 2)]);
            let local = l.b.build();
            match resolve1(&local, &target, &relo(type_id, off, kind)) {
                Ok(res) => {
                    // poisoning only for field and enumerator value relocations
                    if res.values.poison {
                        prop_assert!(kind.is_field() || kind == EnumvalValue);
                    }
                }
                Err(e) => prop_assert!([EINVAL, E2BIG].contains(&e.errno()), "{e}"),
            }
        }

        /// Patching arbitrary instructions with arbitrary values never panics, and a
        /// failed patch changes nothing.
        #[test]
        fn patch_never_panics(
            raw in proptest::collection::vec(any::<[u8; 8]>(), 1..4),
            idx in 0usize..5,
            orig in any::<u64>(),
            new in any::<u64>(),
            flags in any::<(bool, bool, bool)>(),
            sizes in (0u32..10, 0u32..10),
        ) {
            let mut insns: Vec<Insn> = raw.iter().map(|b| Insn::from_bytes(*b)).collect();
            let before = insns.clone();
            let v = ReloValues {
                orig_val: orig,
                new_val: new,
                poison: flags.0,
                validate: flags.1,
                fail_memsz_adjust: flags.2,
                orig_sz: sizes.0,
                new_sz: sizes.1,
                ..ReloValues::default()
            };
            match patch(&mut insns, idx, &v) {
                Ok(_) => prop_assert_eq!(insns.len(), before.len()),
                Err(_) => prop_assert_eq!(insns, before),
            }
        }
    }
}
