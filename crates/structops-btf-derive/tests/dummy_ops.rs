//! The acceptance test: the kernel's `bpf_dummy_ops` declared in Rust derives BTF that is
//! structurally equal to the kernel's own (read from `/sys/kernel/btf/vmlinux` when it is
//! there) and to a hand-built copy of it (always).

use structops_btf::host::{CChar, CompareError};
use structops_btf::{Btf, BtfBuilder, BtfTypes, INT_SIGNED, Kind, TypeId, structurally_equal};
use structops_btf_derive::Btf;

/// `struct bpf_dummy_ops_state { int val; }` (`include/linux/bpf.h`).
#[derive(Btf)]
#[repr(C)]
#[btf(name = "bpf_dummy_ops_state")]
struct BpfDummyOpsState {
    val: i32,
}

/// `struct bpf_dummy_ops` as Linux 6.18 has it.
#[derive(Btf)]
#[repr(C)]
#[btf(name = "bpf_dummy_ops")]
struct BpfDummyOps {
    test_1: Option<unsafe extern "C" fn(cb: *mut BpfDummyOpsState) -> i32>,
    test_2: Option<
        unsafe extern "C" fn(
            cb: *mut BpfDummyOpsState,
            a1: i32,
            a2: u16,
            a3: CChar,
            a4: usize,
        ) -> i32,
    >,
    test_sleepable: Option<unsafe extern "C" fn(cb: *mut BpfDummyOpsState) -> i32>,
}

/// The same ops table with `char a3` mistakenly declared as Rust's `i8` (`signed char`).
#[derive(Btf)]
#[repr(C)]
#[btf(name = "bpf_dummy_ops")]
struct WrongDummyOps {
    test_1: Option<unsafe extern "C" fn(cb: *mut BpfDummyOpsState) -> i32>,
    test_2: Option<
        unsafe extern "C" fn(cb: *mut BpfDummyOpsState, a1: i32, a2: u16, a3: i8, a4: usize) -> i32,
    >,
    test_sleepable: Option<unsafe extern "C" fn(cb: *mut BpfDummyOpsState) -> i32>,
}

fn derived<T: structops_btf::BtfType>() -> (Btf, TypeId) {
    let mut types = BtfTypes::new();
    let id = types.id_of::<T>();
    // Round-trip through the wire format, so the checked parser sees what we emit.
    let btf = Btf::parse(&types.encode()).expect("derived BTF parses");
    (btf, id)
}

/// What pahole emits for the kernel's definition (unnamed prototype parameters, `char`
/// without encoding, `unsigned long` as `long unsigned int`).
fn hand_built() -> (Btf, TypeId) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let ushort = b.add_int("short unsigned int", 2, 0);
    let ch = b.add_int("char", 1, 0);
    let ulong = b.add_int("long unsigned int", 8, 0);
    let state = b.add_struct("bpf_dummy_ops_state", 4, &[("val", int, 0)]);
    let state_ptr = b.add_ptr(state);
    let proto1 = b.add_func_proto(int, &[("", state_ptr)]);
    let ptr1 = b.add_ptr(proto1);
    let proto2 = b.add_func_proto(
        int,
        &[
            ("", state_ptr),
            ("", int),
            ("", ushort),
            ("", ch),
            ("", ulong),
        ],
    );
    let ptr2 = b.add_ptr(proto2);
    let ops = b.add_struct(
        "bpf_dummy_ops",
        24,
        &[
            ("test_1", ptr1, 0),
            ("test_2", ptr2, 64),
            ("test_sleepable", ptr1, 128),
        ],
    );
    (b.build(), ops)
}

#[test]
fn derived_dummy_ops_equals_hand_built() {
    let (ours, id) = derived::<BpfDummyOps>();
    let (expected, eid) = hand_built();
    if let Err(e) = structurally_equal(&ours, id, &expected, eid) {
        panic!("{e}");
    }
    // Parameter names from the Rust type are kept.
    let (m, _) = ours.member_by_name(id, "test_2").unwrap().unwrap();
    let proto = ours.func_ptr_proto(m.ty).unwrap().unwrap();
    let (_, params) = ours.func_proto(proto).unwrap();
    let names: Vec<&str> = params
        .iter()
        .map(|p| ours.name(p.name_off).unwrap())
        .collect();
    assert_eq!(names, ["cb", "a1", "a2", "a3", "a4"]);
    // test_1 and test_sleepable share one pointer type, as in vmlinux.
    let (m1, _) = ours.member_by_name(id, "test_1").unwrap().unwrap();
    let (m3, _) = ours.member_by_name(id, "test_sleepable").unwrap().unwrap();
    assert_eq!(m1.ty, m3.ty);
}

#[test]
fn wrong_char_type_is_reported_with_its_path() {
    let (ours, id) = derived::<WrongDummyOps>();
    let (expected, eid) = hand_built();
    let err = structurally_equal(&ours, id, &expected, eid).unwrap_err();
    match &err {
        CompareError::Mismatch {
            path, left, right, ..
        } => {
            assert_eq!(path, "bpf_dummy_ops.test_2 -> * -> (param 3 'a3')");
            assert!(left.contains("'signed char'"), "{err}");
            assert!(right.contains("'char'"), "{err}");
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn derived_dummy_ops_equals_the_kernels() {
    let path = "/sys/kernel/btf/vmlinux";
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipping: cannot read {path}: {e}");
            return;
        }
    };
    let vmlinux = Btf::parse(&bytes).expect("vmlinux BTF parses");
    let Some(kid) = vmlinux.find_by_name_kind("bpf_dummy_ops", Kind::Struct) else {
        eprintln!("skipping: this kernel has no struct bpf_dummy_ops");
        return;
    };
    let (ours, id) = derived::<BpfDummyOps>();
    if let Err(e) = structurally_equal(&ours, id, &vmlinux, kid) {
        panic!("derived bpf_dummy_ops differs from the kernel's: {e}");
    }
    let sid = vmlinux
        .find_by_name_kind("bpf_dummy_ops_state", Kind::Struct)
        .expect("vmlinux has bpf_dummy_ops_state");
    let (ours_state, state_id) = derived::<BpfDummyOpsState>();
    assert_eq!(
        structurally_equal(&ours_state, state_id, &vmlinux, sid),
        Ok(())
    );
    // The mistaken declaration is caught against the kernel too.
    let (wrong, wid) = derived::<WrongDummyOps>();
    assert!(structurally_equal(&wrong, wid, &vmlinux, kid).is_err());
}

#[test]
fn bpftool_reads_the_derived_btf() {
    let (ours, _) = derived::<BpfDummyOps>();
    let path = std::env::temp_dir().join(format!("structops-dummy-ops-{}.btf", std::process::id()));
    std::fs::write(&path, ours.encode()).unwrap();
    let out = std::process::Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(&path)
        .args(["format", "raw"])
        .output();
    let _ = std::fs::remove_file(&path);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: cannot run bpftool: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "bpftool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("STRUCT 'bpf_dummy_ops' size=24 vlen=3"),
        "{text}"
    );
    assert!(
        text.contains("STRUCT 'bpf_dummy_ops_state' size=4 vlen=1"),
        "{text}"
    );
    assert!(text.contains("'a3' type_id="), "{text}");
    assert!(
        text.contains("INT 'char' size=1 bits_offset=0 nr_bits=8 encoding=(none)"),
        "{text}"
    );
}
