//! Snapshot and unit tests of the value printer.

use super::*;
use crate::BtfBuilder;

/// A table with one of everything, and the bytes of a value of its struct.
fn everything() -> (Btf, TypeId, Vec<u8>) {
    let mut b = BtfBuilder::new();
    let u8_ = b.add_int("u8", 1, 0);
    let s8 = b.add_int("s8", 1, INT_SIGNED);
    let u16_ = b.add_int("u16", 2, 0);
    let s16 = b.add_int("s16", 2, INT_SIGNED);
    let u32_ = b.add_int("u32", 4, 0);
    let s32 = b.add_int("s32", 4, INT_SIGNED);
    let u64_ = b.add_int("u64", 8, 0);
    let s64 = b.add_int("s64", 8, INT_SIGNED);
    let u128_ = b.add_int("u128", 16, 0);
    let chr = b.add_int("char", 1, INT_CHAR);
    let boolean = b.add_int("bool", 1, INT_BOOL);
    let nib_name = b.add_string("nibble");
    let nibble = b.add_type(Type {
        name_off: nib_name,
        kind: TypeKind::Int {
            size: 1,
            encoding: 0,
            offset: 4,
            bits: 4,
        },
    });
    let half = b.add_float("_Float16", 2);
    let f32_ = b.add_float("float", 4);
    let f64_ = b.add_float("double", 8);
    let ld = b.add_float("long double", 16);
    let e = b.add_enum("e", 4, false, &[("A", 1), ("B", 2)]);
    let e64 = b.add_enum("e64", 8, true, &[("NEG", -1)]);
    let text = b.add_array(chr, u32_, 6);
    let raw = b.add_array(chr, u32_, 3);
    let tag = b.add_type_tag("user", u32_);
    let ctag = b.add_const(tag);
    let td = b.add_typedef("tagged_t", ctag);
    let p = b.add_ptr(u32_);
    let bits = b.add_bitfield_composite(
        false,
        "bits",
        4,
        &[("lo", u32_, 0, 3), ("mid", s32, 3, 9), ("hi", u32_, 12, 20)],
    );
    let inner = b.add_union("", 4, &[("i", s32, 0), ("f", f32_, 0)]);
    let arr = b.add_array(s16, u32_, 3);
    let layout: Vec<(&str, TypeId, u32)> = vec![
        ("u8", u8_, 0),
        ("s8", s8, 8),
        ("u16", u16_, 16),
        ("s16", s16, 32),
        ("u32", u32_, 64),
        ("s32", s32, 96),
        ("u64", u64_, 128),
        ("s64", s64, 192),
        ("u128", u128_, 256),
        ("c", chr, 384),
        ("c2", chr, 392),
        ("b", boolean, 400),
        ("nib", nibble, 408),
        ("half", half, 416),
        ("f", f32_, 448),
        ("d", f64_, 512),
        ("ld", ld, 640),
        ("e", e, 768),
        ("e_unknown", e, 800),
        ("e64", e64, 832),
        ("text", text, 896),
        ("raw", raw, 944),
        ("tagged", td, 992),
        ("p", p, 1024),
        ("null", p, 1088),
        ("bits", bits, 1152),
        ("", inner, 1184),
        ("arr", arr, 1216),
    ];
    let s = b.add_struct("everything", 160, &layout);
    let mut v = vec![0u8; 160];
    let put =
        |v: &mut Vec<u8>, at: usize, bytes: &[u8]| v[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut v, 0, &[0xff]);
    put(&mut v, 1, &[0x80]);
    put(&mut v, 2, &0xbeefu16.to_le_bytes());
    put(&mut v, 4, &(-2i16).to_le_bytes());
    put(&mut v, 8, &u32::MAX.to_le_bytes());
    put(&mut v, 12, &i32::MIN.to_le_bytes());
    put(&mut v, 16, &u64::MAX.to_le_bytes());
    put(&mut v, 24, &(-5i64).to_le_bytes());
    put(&mut v, 32, &(u128::MAX / 3).to_le_bytes());
    put(&mut v, 48, b"Z\x01");
    put(&mut v, 50, &[2]);
    put(&mut v, 51, &[0xa5]);
    put(&mut v, 52, &0x3c00u16.to_le_bytes()); // 1.0 in half precision
    put(&mut v, 56, &1.5f32.to_le_bytes());
    put(&mut v, 64, &(-0.25f64).to_le_bytes());
    put(&mut v, 80, &[0x11; 10]);
    put(&mut v, 96, &2u32.to_le_bytes());
    put(&mut v, 100, &7u32.to_le_bytes());
    put(&mut v, 104, &u64::MAX.to_le_bytes());
    put(&mut v, 112, b"hey\\\0x");
    put(&mut v, 118, b"a\tb");
    put(&mut v, 124, &42u32.to_le_bytes());
    put(&mut v, 128, &0xffff_8000_dead_beefu64.to_le_bytes());
    put(&mut v, 144, &0b1010_1010_1010_1010_1111u32.to_le_bytes());
    put(&mut v, 148, &(-1i32).to_le_bytes());
    put(&mut v, 152, &[1, 0, 0xfe, 0xff, 0, 0x80]);
    (b.build(), s, v)
}

#[test]
fn snapshot_plain() {
    let (btf, s, v) = everything();
    let f = ValuePrinter::new(&btf).format(s, &v).unwrap();
    insta::assert_snapshot!(f.to_text(Style::Plain));
}

#[test]
fn snapshot_json() {
    let (btf, s, v) = everything();
    let f = ValuePrinter::new(&btf).format(s, &v).unwrap();
    insta::assert_snapshot!(f.to_text(Style::Json));
    let j = f.to_json();
    assert_eq!(j["p"], serde_json::json!(0xffff_8000_dead_beefu64));
    assert_eq!(j["c2"], serde_json::json!("\u{1}"));
    assert_eq!(j["text"], serde_json::json!("hey\n"));
    assert_eq!(j["e_unknown"], serde_json::json!(7));
    assert_eq!(j["d"], serde_json::json!(-0.25));
}

#[test]
fn datasec_and_map_dump() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let chr = b.add_int("char", 1, 0);
    let s = b.add_array(chr, int, 4);
    let v1 = b.add_var("x", int, Linkage::Global);
    let v2 = b.add_var("s", s, Linkage::Static);
    let sec = b.add_datasec(
        ".data",
        8,
        &[
            VarSecInfo {
                ty: v1,
                offset: 0,
                size: 4,
            },
            VarSecInfo {
                ty: v2,
                offset: 4,
                size: 4,
            },
        ],
    );
    let btf = b.build();
    let p = ValuePrinter::new(&btf);
    let v = p.format(sec, &[3, 0, 0, 0, b'o', b'k', 0, 0]).unwrap();
    let k = p.format(int, &[0, 0, 0, 0]).unwrap();
    insta::assert_snapshot!(map_dump_plain([(Some(&k), &v), (None, &v)]));
    assert_eq!(
        v.to_json(),
        serde_json::json!({".data": [{"x": 3}, {"s": "ok"}]})
    );
}

#[test]
fn function_pointers_as_programs() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let sock = b.add_fwd("sock", false);
    let sp = b.add_ptr(sock);
    let cint = b.add_const(int);
    let ap = b.add_array(cint, int, 2);
    let proto = b.add_func_proto(int, &[("sk", sp), ("", int), ("arr", ap), ("", 0)]);
    let fp = b.add_ptr(proto);
    let ops = b.add_struct(
        "ops",
        24,
        &[("init", fp, 0), ("release", fp, 64), ("raw", fp, 128)],
    );
    let btf = b.build();
    let names = |id: u32| (id == 7).then(|| "my_init".to_string());
    let p = ValuePrinter::new(&btf).with_prog_id_func_ptrs(&names);
    let mut v = vec![0u8; 24];
    v[0] = 7;
    v[8] = 9;
    v[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    let f = p.format(ops, &v).unwrap();
    insta::assert_snapshot!(f.to_text(Style::Plain));
    // Without the option they are plain pointers.
    let f = ValuePrinter::new(&btf).format(ops, &v).unwrap();
    assert_eq!(f.to_json()["init"], serde_json::json!(7));
}

#[test]
fn short_buffers_are_errors() {
    let (btf, s, v) = everything();
    let p = ValuePrinter::new(&btf);
    for n in [0, 1, 80, 159] {
        assert_eq!(
            p.format(s, &v[..n]),
            Err(ValueError::Truncated {
                type_id: s,
                offset: 0,
                need: 160,
                have: n
            })
        );
    }
    // A bitfield read that runs off the end is caught even without a sized type.
    let mut b = BtfBuilder::new();
    let u = b.add_int("u", 4, 0);
    let odd = b.add_type(Type {
        name_off: 0,
        kind: TypeKind::Int {
            size: 4,
            encoding: 0,
            offset: 30,
            bits: 20,
        },
    });
    let btf = b.build();
    let r = ValuePrinter::new(&btf).format(odd, &[0; 4]);
    assert!(
        matches!(
            r,
            Err(ValueError::Truncated {
                need: 4,
                offset: 3,
                ..
            })
        ),
        "{r:?}"
    );
    let _ = u;
}

#[test]
fn hostile_types_are_errors() {
    // A struct that contains itself (never valid BTF, but the printer must not recurse
    // forever).
    let mut b = BtfBuilder::new();
    let s = b.reserve();
    let name_off = b.add_string("me");
    b.set(
        s,
        Type {
            name_off,
            kind: TypeKind::Struct(Composite {
                size: 0,
                kflag: false,
                members: vec![Member {
                    name_off,
                    ty: s,
                    offset: 0,
                }],
            }),
        },
    );
    // An array of four billion empty structs.
    let e = b.add_struct("empty", 0, &[]);
    let idx = b.add_int("int", 4, 0);
    let big = b.add_array(e, idx, u32::MAX);
    let fwd = b.add_fwd("f", false);
    let loop_a = b.reserve();
    let loop_b = b.add_typedef("b", loop_a);
    b.set(
        loop_a,
        Type {
            name_off: 0,
            kind: TypeKind::Const { target: loop_b },
        },
    );
    let btf = b.build();
    let p = ValuePrinter::new(&btf);
    assert!(matches!(p.format(s, &[]), Err(ValueError::TooDeep { .. })));
    assert_eq!(
        p.format(big, &[]),
        Err(ValueError::TooLarge {
            type_id: big,
            limit: MAX_VALUE_NODES
        })
    );
    assert_eq!(
        p.format(fwd, &[]),
        Err(ValueError::Unsupported {
            type_id: fwd,
            kind: Kind::Fwd
        })
    );
    assert!(matches!(
        p.format(loop_a, &[0; 8]),
        Err(ValueError::TooDeep { .. })
    ));
    assert_eq!(
        p.format(999, &[]),
        Err(ValueError::NoSuchType { type_id: 999 })
    );
}

#[test]
fn writer_matches_bpftool_layout() {
    let v = Formatted::Object(vec![
        (
            "a".into(),
            Formatted::Array(vec![Formatted::Unsigned(1), Formatted::Unsigned(2)]),
        ),
        ("b".into(), Formatted::Object(vec![])),
        ("c".into(), Formatted::Array(vec![])),
        ("q\"\\".into(), Formatted::Str("x\ty".into())),
    ]);
    assert_eq!(
        v.to_text(Style::Plain),
        "{\n    \"a\": [1,2\n    ],\n    \"b\": {},\n    \"c\": [],\n    \"q\\\"\\n\": \"x\\ty\"\n}"
    );
    let mut w = JsonWriter::new(false);
    v.write(&mut w, Style::Json);
    assert_eq!(
        w.as_str(),
        "{\"a\":[1,2],\"b\":{},\"c\":[],\"q\\\"\\n\":\"x\\ty\"}"
    );
    assert_eq!(Formatted::Hex { hi: 1, lo: 2 }.hex(), "0x10000000000000002");
    assert_eq!(f16_to_f64(0xc000), -2.0);
    assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
    assert!(f16_to_f64(0x7e00).is_nan());
}

/// A deterministic splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random, unvalidated type tables (cycles, dangling ids, odd sizes) with random bytes:
/// formatting gives a value or a typed error, never a panic or a hang.
#[test]
fn random_types_never_panic() {
    let mut rng = Rng(99);
    let mut ok = 0;
    for _ in 0..3000 {
        let mut b = BtfBuilder::new();
        let n = 1 + rng.below(10) as u32;
        let ids: Vec<TypeId> = (0..n).map(|_| b.reserve()).collect();
        let names = ["", "char", "x", "y"];
        for &id in &ids {
            let mut r = |m: u64| rng.below(m) as u32;
            let target = r(u64::from(n) + 3);
            let name_off = b.add_string(names[r(4) as usize]);
            let sizes = [0, 1, 2, 3, 4, 8, 12, 16, 0xffff_ffff];
            let size = sizes[r(sizes.len() as u64) as usize];
            let kind = match r(16) {
                0 => TypeKind::Int {
                    size,
                    encoding: [0, 1, 2, 4, 3][r(5) as usize],
                    offset: r(140) as u8,
                    bits: r(140) as u8,
                },
                1 => TypeKind::Ptr { target },
                2 => TypeKind::Array {
                    elem: target,
                    index: 1,
                    len: [0, 1, 3, 64, 1000][r(5) as usize],
                },
                3 | 4 => {
                    let members = (0..r(4))
                        .map(|_| Member {
                            name_off: 0,
                            ty: r(u64::from(n) + 2),
                            offset: r(1 << 10) | if r(2) == 0 { r(64) << 24 } else { 0 },
                        })
                        .collect();
                    TypeKind::Struct(Composite {
                        size,
                        kflag: r(2) == 0,
                        members,
                    })
                }
                5 => TypeKind::Enum(EnumBody {
                    size,
                    signed: r(2) == 0,
                    values: vec![Enumerator {
                        name_off,
                        value: u64::from(r(4)),
                    }],
                }),
                6 => TypeKind::Enum64(EnumBody {
                    size,
                    signed: false,
                    values: vec![],
                }),
                7 => TypeKind::Typedef { target },
                8 => TypeKind::Const { target },
                9 => TypeKind::TypeTag {
                    target,
                    kflag: false,
                },
                10 => TypeKind::Var {
                    ty: target,
                    linkage: Linkage::Global,
                },
                11 => TypeKind::Datasec {
                    size,
                    vars: vec![VarSecInfo {
                        ty: target,
                        offset: r(32),
                        size: r(16),
                    }],
                },
                12 => TypeKind::Float { size },
                13 => TypeKind::Fwd { union: false },
                14 => TypeKind::FuncProto {
                    ret: target,
                    params: vec![],
                },
                _ => TypeKind::Union(Composite {
                    size,
                    kflag: false,
                    members: vec![Member {
                        name_off,
                        ty: target,
                        offset: 0,
                    }],
                }),
            };
            b.set(id, Type { name_off, kind });
        }
        let btf = b.build();
        let names = |_: u32| Some("p".to_string());
        let p = ValuePrinter::new(&btf).with_prog_id_func_ptrs(&names);
        for id in 0..n + 2 {
            let len = rng.below(80) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(v) = p.format(id, &data) {
                ok += 1;
                let _ = v.to_text(Style::Plain);
                let _ = v.to_text(Style::Json);
                let _ = v.to_json();
            }
        }
    }
    assert!(ok > 1000, "only {ok} values formatted");
}
