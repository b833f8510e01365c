//! Unit tests of the kernel-exact validator that need no kernel: expected errnos and log
//! lines (taken from the kernel's formats), and agreement between the raw-bytes path and
//! the model path.

use super::*;
use crate::BtfBuilder;

fn sample() -> BtfBuilder {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let s = b.reserve();
    let p = b.add_ptr(s);
    let body = Type {
        name_off: b.add_string("node"),
        kind: TypeKind::Struct(Composite {
            size: 16,
            kflag: false,
            members: vec![
                Member {
                    name_off: b.add_string("next"),
                    ty: p,
                    offset: 0,
                },
                Member {
                    name_off: b.add_string("v"),
                    ty: int,
                    offset: 64,
                },
            ],
        }),
    };
    b.set(s, body);
    let proto = b.add_func_proto(int, &[("n", p)]);
    b.add_func("get", proto, Linkage::Global);
    let v = b.add_var("head", s, Linkage::Global);
    b.add_datasec(
        ".bss",
        16,
        &[VarSecInfo {
            ty: v,
            offset: 0,
            size: 16,
        }],
    );
    b
}

/// Loads `b`'s encoding both ways and checks the two paths agree.
fn load(b: &BtfBuilder) -> Result<Btf, BtfLoadError> {
    let bytes = b.encode();
    let raw = Btf::parse_for_load(&bytes);
    let model = b.clone().build().check_load();
    assert_eq!(
        raw.as_ref().err(),
        model.as_ref().err(),
        "raw and model paths disagree"
    );
    raw
}

#[test]
fn accepts_a_well_formed_table() {
    let btf = load(&sample()).expect("valid");
    assert_eq!(btf.len(), 8);
    assert_eq!(btf.validate(), Ok(()));
}

#[test]
fn rejects_member_past_struct_end() {
    let mut b = sample();
    let int = 1;
    b.add_struct("foo", 8, &[("a", int, 0), ("b", int, 48)]);
    let e = load(&b).unwrap_err();
    assert_eq!(e.errno, Errno::EINVAL);
    assert_eq!(e.type_id, 8);
    assert_eq!(
        e.log,
        "[8] STRUCT foo size=8 vlen=2\n\tb type_id=1 bits_offset=48 Member exceeds struct_size"
    );
    let err = b.clone().build().validate().unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Rejected {
                errno: 22,
                id: 8,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn detects_loops_and_depth() {
    let mut b = BtfBuilder::new();
    let s = b.reserve();
    let name_off = b.add_string("me");
    let x = b.add_string("x");
    b.set(
        s,
        Type {
            name_off,
            kind: TypeKind::Struct(Composite {
                size: 4,
                kflag: false,
                members: vec![Member {
                    name_off: x,
                    ty: s,
                    offset: 0,
                }],
            }),
        },
    );
    let e = load(&b).unwrap_err();
    assert_eq!(e.errno, Errno::EEXIST);
    assert_eq!(e.log, "[1] STRUCT me size=4 vlen=1 Loop detected");

    let mut b = BtfBuilder::new();
    let mut prev = b.add_int("int", 4, INT_SIGNED);
    let first = b.next_id();
    let ids: Vec<TypeId> = (0..40).map(|_| b.reserve()).collect();
    for &id in ids.iter().rev() {
        b.set(
            id,
            Type {
                name_off: 0,
                kind: TypeKind::Const { target: prev },
            },
        );
        prev = id;
    }
    let e = load(&b).unwrap_err();
    assert_eq!(e.errno, Errno::E2BIG);
    assert_eq!(
        e.log,
        format!(
            "[{first}] CONST (anon) type_id={} Exceeded max resolving depth:32",
            first + 1
        )
    );
}

#[test]
fn header_errors_have_kernel_errnos() {
    let good = sample().encode();
    let mut v2 = good.clone();
    v2[2] = 2;
    let e = Btf::parse_for_load(&v2).unwrap_err();
    assert_eq!(
        (e.errno, e.log.as_str()),
        (Errno::ENOTSUPP, "Unsupported version")
    );
    let mut trailing = good.clone();
    trailing.push(0);
    let e = Btf::parse_for_load(&trailing).unwrap_err();
    assert_eq!(
        (e.errno, e.log.as_str()),
        (Errno::EINVAL, "Unsupported section found")
    );
    // Btf::parse is lenient about the same trailing byte.
    assert!(Btf::parse(&trailing).is_ok());
    let e = Btf::parse_for_load(&vec![0; BTF_MAX_SIZE + 1]).unwrap_err();
    assert_eq!((e.errno, e.log.as_str()), (Errno::E2BIG, ""));
    let e = Btf::parse_for_load(&good[..5]).unwrap_err();
    assert_eq!(e.log, "hdr_len not found");
}

#[test]
fn full_log_has_header_and_every_type() {
    let mut log = String::new();
    let btf = Btf::parse_for_load_with_log(&sample().encode(), &mut log).expect("valid");
    assert!(log.starts_with("magic: 0xeb9f\nversion: 1\nflags: 0x0\nhdr_len: 24\n"));
    assert!(log.contains("[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n"));
    assert!(log.contains("[2] STRUCT node size=16 vlen=2\n\tnext type_id=3 bits_offset=0\n"));
    assert!(log.contains("[4] FUNC_PROTO (anon) return=1 args=(3 n)\n"));
    assert!(log.contains("[7] DATASEC .bss size=16 vlen=1\n\t type_id=6 offset=0 size=16\n"));
    assert_eq!(btf.len(), 8);
}

#[test]
fn unencodable_vlen_is_reported() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let members: Vec<(String, TypeId, u32)> =
        (0..70_000).map(|i| (format!("m{i}"), int, 0)).collect();
    let refs: Vec<(&str, TypeId, u32)> = members
        .iter()
        .map(|(n, t, o)| (n.as_str(), *t, *o))
        .collect();
    b.add_union("big", 4, &refs);
    let e = b.build().check_load().unwrap_err();
    assert_eq!(e.type_id, 2);
    assert!(e.log.contains("exceeds 65535"), "{}", e.log);
}

#[test]
fn names_follow_kernel_ctype() {
    let s = Strings(b"\0ok_1.x\0\xc0\xe9\0\x80a\0a\x7f\0 \xa0\0\0");
    assert!(s.valid_identifier(1));
    assert!(s.valid_identifier(8)); // Latin-1 letters are alphabetic for the kernel.
    assert!(!s.valid_identifier(11));
    assert!(!s.valid_identifier(14));
    assert!(s.valid_section(17)); // space and NBSP are printable
    assert!(!s.valid_section(14)); // DEL is not
    assert!(!s.valid_section(20));
    let long = [&[0u8][..], &[b'a'; 512], &[0u8]].concat();
    assert!(Strings(&long).valid_identifier(1));
    let longer = [&[0u8][..], &[b'a'; 513], &[0u8]].concat();
    assert!(!Strings(&longer).valid_identifier(1));
}

#[test]
fn every_byte_prefix_is_handled() {
    // No input panics; every truncation of a valid blob is rejected.
    let good = sample().encode();
    for n in 0..good.len() {
        assert!(
            Btf::parse_for_load(&good[..n]).is_err(),
            "prefix {n} accepted"
        );
    }
}

/// A deterministic splitmix64 generator for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn mutations_never_panic_and_paths_agree() {
    // Without a kernel: random edits of a valid blob must give a typed answer, and
    // whatever passes must also pass the model check and libbpf-lenient parsing.
    let good = sample().encode();
    let mut rng = Rng(7);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next() % 3 {
            let i = 24 + (rng.next() as usize) % (b.len() - 24);
            match rng.next() % 3 {
                0 => b[i] ^= 1 << (rng.next() % 8),
                1 => b[i] = rng.next() as u8,
                _ => b[i & !3] = (rng.next() % 20) as u8,
            }
        }
        let mut log = String::new();
        match Btf::parse_for_load_with_log(&b, &mut log) {
            Ok(btf) => {
                accepted += 1;
                assert_eq!(btf.check_load(), Ok(()));
                assert!(Btf::parse(&b).is_ok(), "kernel-valid but libbpf-invalid");
            }
            Err(e) => {
                let last = e.log.lines().last().unwrap_or("");
                assert!(log.contains(last), "{last:?} not in the log");
                assert_ne!(e.errno.0, 0);
            }
        }
    }
    assert!(accepted > 100, "only {accepted} accepted");
}
