//! Unit tests for parsing, encoding and queries.

use super::*;

fn sample() -> (Btf, TypeId, TypeId) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let uint = b.add_int("unsigned int", 4, 0);
    let inner = b.add_union("", 4, &[("u", uint, 0), ("i", int, 0)]);
    let s = b.add_struct(
        "outer",
        12,
        &[("a", int, 0), ("", inner, 32), ("c", int, 64)],
    );
    let ptr = b.add_ptr(s);
    let proto = b.add_func_proto(int, &[("o", ptr), ("x", int)]);
    let fptr = b.add_ptr(proto);
    let cst = b.add_const(s);
    let td = b.add_typedef("outer_t", cst);
    let arr = b.add_array(td, int, 3);
    let ops = b.add_struct("ops", 8, &[("f", fptr, 0)]);
    let _ = (arr, ops);
    b.add_enum("e64", 8, true, &[("BIG", -2)]);
    b.add_enum("e32", 4, false, &[("X", 7)]);
    b.add_bitfield_composite(false, "bits", 4, &[("lo", uint, 0, 3), ("hi", uint, 3, 5)]);
    b.add_fwd("later", true);
    let f = b.add_func("fn", proto, Linkage::Global);
    let v = b.add_var("v", int, Linkage::Global);
    b.add_datasec(
        ".data",
        4,
        &[VarSecInfo {
            ty: v,
            offset: 0,
            size: 4,
        }],
    );
    b.add_float("double", 8);
    b.add_decl_tag("tag", f, -1);
    b.add_type_tag("user", int);
    let btf = Btf::parse(&b.encode()).expect("encoded BTF parses");
    (btf, s, arr)
}

#[test]
fn encode_parse_roundtrip_is_identity() {
    let (btf, _, _) = sample();
    let again = Btf::parse(&btf.encode()).expect("re-encoded BTF parses");
    assert_eq!(btf, again);
    assert_eq!(btf.encode(), again.encode());
}

#[test]
fn queries_follow_kernel_definitions() {
    let (btf, s, arr) = sample();
    assert_eq!(btf.size_of(s).unwrap(), 12);
    assert_eq!(btf.size_of(arr).unwrap(), 36);
    assert_eq!(btf.align_of(s).unwrap(), 4);
    // Anonymous union members are searched, offsets accumulate.
    let (m, off) = btf.member_by_name(s, "i").unwrap().unwrap();
    assert_eq!((btf.name(m.name_off).unwrap(), off), ("i", 32));
    assert!(btf.member_by_name(s, "nope").unwrap().is_none());
    let ops = btf.find_by_name_kind("ops", Kind::Struct).unwrap();
    let (f, _) = btf.member_by_name(ops, "f").unwrap().unwrap();
    let proto = btf.func_ptr_proto(f.ty).unwrap().expect("function pointer");
    let (ret, params) = btf.func_proto(proto).unwrap();
    assert_eq!(btf.type_name(ret).unwrap(), "int");
    assert_eq!(params.len(), 2);
    let bits = btf.find_by_name_kind("bits", Kind::Struct).unwrap();
    let c = btf.ty(bits).unwrap().composite().unwrap().clone();
    assert_eq!(c.members[1].bit_offset(c.kflag), 3);
    assert_eq!(c.members[1].bitfield_size(c.kflag), 5);
    let e64 = btf.find_by_name_kind("e64", Kind::Enum64).unwrap();
    assert_eq!(
        btf.ty(e64).unwrap().enum_body().unwrap().values[0].value as i64,
        -2
    );
}

#[test]
fn essential_name_strips_flavors_like_libbpf() {
    assert_eq!(Btf::essential_name("tcp_sock___v1"), "tcp_sock");
    assert_eq!(Btf::essential_name("a___b___c"), "a___b");
    assert_eq!(Btf::essential_name("___x"), "___x");
    assert_eq!(Btf::essential_name("x____y"), "x____y");
    assert_eq!(Btf::essential_name("plain"), "plain");
}

#[test]
fn bad_headers_are_typed_errors() {
    let (btf, _, _) = sample();
    let good = btf.encode();
    assert!(matches!(Btf::parse(&[]), Err(BtfError::Truncated { .. })));
    let mut bad = good.clone();
    bad[0] = 0;
    assert!(matches!(Btf::parse(&bad), Err(BtfError::BadMagic { .. })));
    let mut bad = good.clone();
    bad[2] = 2;
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::BadVersion { version: 2 })
    ));
    let mut bad = good.clone();
    bad[3] = 1;
    assert!(matches!(
        Btf::parse(&bad),
        Err(BtfError::BadFlags { flags: 1 })
    ));
    // Truncating anywhere is an error, never a panic.
    for n in 0..good.len() {
        assert!(
            Btf::parse(&good[..n]).is_err(),
            "prefix of {n} bytes parsed"
        );
    }
}

#[test]
fn host_vmlinux_parses_when_present() {
    let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("skipped: /sys/kernel/btf/vmlinux not readable");
        return;
    };
    let btf = Btf::parse(&data).expect("vmlinux BTF parses");
    assert!(btf.len() > 10_000);
    let ops = btf
        .find_by_name_kind("tcp_congestion_ops", Kind::Struct)
        .expect("tcp_congestion_ops in vmlinux");
    assert!(btf.member_by_name(ops, "cong_avoid").unwrap().is_some());
    assert_eq!(btf.encode(), data, "vmlinux re-encodes byte-identically");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn bitflips_never_panic(idx in any::<proptest::sample::Index>(), bit in 0u8..8) {
            let (btf, _, _) = sample();
            let mut data = btf.encode();
            let i = idx.index(data.len());
            data[i] ^= 1 << bit;
            if let Ok(b) = Btf::parse(&data) {
                // Whatever parses must survive an encode/parse round trip and answer
                // queries without panicking.
                let again = Btf::parse(&b.encode());
                prop_assert_eq!(again.as_ref(), Ok(&b));
                for id in 0..b.len() {
                    let _ = b.size_of(id);
                    let _ = b.align_of(id);
                    let _ = b.type_name(id);
                }
            }
        }
    }
}
