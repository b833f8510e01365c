//! Resource limits (`docs/limits.md`): each test drives the runtime into one limit,
//! checks the errno the kernel gives for its counterpart, and then shows the runtime
//! still works (a freed object makes room, a normal program loads and runs).
//!
//! The two verifier limits that have a kernel twin (processed instructions, pending
//! jumps) are also loaded into the running kernel when it is available, and must fail
//! there with the same errno and message.

#[path = "common/kernel.rs"]
#[expect(dead_code, reason = "shared helpers; this file uses a few")]
mod kernel;

use std::sync::Arc;

use structops::helpers::HostFn;
use structops::maps::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST};
use structops::struct_ops::{BPF_F_LINK, MAP_TYPE_STRUCT_OPS, add_value_type};
use structops::{
    Capabilities, Engine, Errno, KfuncFlags, Link, LinkCreateAttr, MapCreateAttr, MapType, ObjKind,
    OpsTable, ProgHandle, ProgLoadAttr, ProgType, RunFault, Runtime, RuntimeConfig, StructOps,
    StructOpsDesc, TestRun,
};
use structops_btf::ext::FuncInfo;
use structops_btf::{BtfBuilder, INT_SIGNED, Linkage, TypeId};
use structops_isa::{Insn, assemble};
use structops_vm::VmError;

const RET0: &str = "r0 = 0\nexit";

fn rt_with(config: RuntimeConfig) -> Runtime {
    Runtime::new(RuntimeConfig { ncpus: 2, ..config })
}

fn prog(rt: &Runtime, src: &str) -> Result<ProgHandle, Errno> {
    rt.prog_load(&ProgLoadAttr::new(
        ProgType::XDP,
        assemble(src).unwrap().encode(),
        "GPL",
    ))
}

fn array(rt: &Runtime, value_size: u32, max_entries: u32) -> Result<structops::MapHandle, Errno> {
    rt.map_create(&MapCreateAttr::new(
        MapType::Array,
        4,
        value_size,
        max_entries,
    ))
}

fn btf_blob() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    b.build().encode()
}

#[test]
fn max_maps_is_enospc_until_one_is_freed() {
    let rt = rt_with(RuntimeConfig {
        max_maps: 3,
        ..RuntimeConfig::default()
    });
    let mut maps: Vec<_> = (0..3).map(|_| array(&rt, 8, 1).unwrap()).collect();
    assert_eq!(array(&rt, 8, 1).err(), Some(Errno::ENOSPC));
    // Every map type counts, not only arrays.
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 4))
            .err(),
        Some(Errno::ENOSPC)
    );
    assert_eq!(rt.object_count(ObjKind::Map), 3);
    maps.remove(0);
    let m = array(&rt, 8, 1).unwrap();
    rt.map_update_elem(&m, Some(&0u32.to_ne_bytes()), &[7; 8], BPF_ANY)
        .unwrap();
    assert_eq!(rt.get_next_id(ObjKind::Map, 3), Ok(m.id()));
}

#[test]
fn max_progs_is_enospc_until_one_is_freed() {
    let rt = rt_with(RuntimeConfig {
        max_progs: 2,
        ..RuntimeConfig::default()
    });
    let a = prog(&rt, RET0).unwrap();
    let _b = prog(&rt, RET0).unwrap();
    assert_eq!(prog(&rt, RET0).err(), Some(Errno::ENOSPC));
    drop(a);
    let c = prog(&rt, "r0 = 2\nexit").unwrap();
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&c, &mut t).unwrap();
    assert_eq!(t.retval, 2);
}

#[test]
fn max_btfs_is_enospc_until_one_is_freed() {
    let rt = rt_with(RuntimeConfig {
        max_btfs: 2,
        ..RuntimeConfig::default()
    });
    let a = rt.btf_load(&btf_blob()).unwrap();
    let _b = rt.btf_load(&btf_blob()).unwrap();
    assert_eq!(rt.btf_load(&btf_blob()).err(), Some(Errno::ENOSPC));
    drop(a);
    assert!(rt.btf_load(&btf_blob()).is_ok());
}

#[test]
fn per_map_memory_limit_is_enomem() {
    let rt = rt_with(RuntimeConfig {
        map_memory_limit: 4096,
        ..RuntimeConfig::default()
    });
    // 513 values of 8 bytes: 4104 bytes.
    assert_eq!(array(&rt, 8, 513).err(), Some(Errno::ENOMEM));
    assert_eq!(rt.memory_charged(), 0, "a refused map charges nothing");
    assert!(array(&rt, 8, 512).is_ok());
}

#[test]
fn total_map_memory_is_enomem_until_a_map_is_freed() {
    let rt = rt_with(RuntimeConfig {
        memory_limit: 64 << 10,
        ..RuntimeConfig::default()
    });
    // Four arrays of 16 KiB fill the account exactly.
    let mut maps: Vec<_> = (0..4).map(|_| array(&rt, 16, 1024).unwrap()).collect();
    assert_eq!(rt.memory_charged(), 64 << 10);
    assert_eq!(array(&rt, 8, 1).err(), Some(Errno::ENOMEM));
    // Other types charge the same account.
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 4))
            .err(),
        Some(Errno::ENOMEM)
    );
    assert_eq!(
        rt.map_create(&MapCreateAttr::new(MapType::Queue, 0, 8, 4))
            .err(),
        Some(Errno::ENOMEM)
    );
    maps.pop();
    assert_eq!(rt.memory_charged(), 48 << 10);
    let m = array(&rt, 16, 1024).unwrap();
    rt.map_update_elem(&m, Some(&5u32.to_ne_bytes()), &[1; 16], BPF_ANY)
        .unwrap();
}

#[test]
fn hash_elements_without_prealloc_are_charged_as_added() {
    let rt = rt_with(RuntimeConfig {
        memory_limit: 32 << 10,
        ..RuntimeConfig::default()
    });
    // 16 KiB of buckets at creation, then about 120 bytes per element.
    let attr = MapCreateAttr::new(MapType::Hash, 4, 64, 1024).flags(BPF_F_NO_PREALLOC);
    let m = rt.map_create(&attr).unwrap();
    let empty = rt.memory_charged();
    let put = |k: u32| rt.map_update_elem(&m, Some(&k.to_ne_bytes()), &[k as u8; 64], BPF_NOEXIST);
    let mut added = 0u32;
    let err = loop {
        match put(added) {
            Ok(()) => added += 1,
            Err(e) => break e,
        }
        assert!(added < 1024, "the account never filled");
    };
    // Before max_entries (which would be E2BIG): the memcg is full.
    assert_eq!(err, Errno::ENOMEM);
    assert!(added > 0);
    let per_elem = (rt.memory_charged() - empty) / u64::from(added);
    assert!(per_elem >= 64, "each element charged at least its value");
    // Replacing an existing element allocates nothing new.
    rt.map_update_elem(&m, Some(&0u32.to_ne_bytes()), &[9; 64], BPF_ANY)
        .unwrap();
    rt.map_delete_elem(&m, Some(&0u32.to_ne_bytes())).unwrap();
    assert_eq!(rt.memory_charged() - empty, per_elem * u64::from(added - 1));
    put(added).unwrap();
    let mut v = [0u8; 64];
    rt.map_lookup_elem(&m, Some(&added.to_ne_bytes()), &mut v, 0)
        .unwrap();
    assert_eq!(v, [added as u8; 64]);
    drop(m);
    assert_eq!(
        rt.memory_charged(),
        0,
        "freeing the map returns its elements"
    );
}

#[test]
fn hash_full_is_e2big_before_memory() {
    let rt = rt_with(RuntimeConfig::default());
    let attr = MapCreateAttr::new(MapType::Hash, 4, 8, 2).flags(BPF_F_NO_PREALLOC);
    let m = rt.map_create(&attr).unwrap();
    for k in 0..2u32 {
        rt.map_update_elem(&m, Some(&k.to_ne_bytes()), &[0; 8], BPF_ANY)
            .unwrap();
    }
    let before = rt.memory_charged();
    assert_eq!(
        rt.map_update_elem(&m, Some(&2u32.to_ne_bytes()), &[0; 8], BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(rt.memory_charged(), before);
}

#[test]
fn ring_buffers_are_charged() {
    // A 4 KiB ring maps its data twice plus a metadata page: 12 KiB.
    let rt = rt_with(RuntimeConfig {
        memory_limit: 20 << 10,
        ..RuntimeConfig::default()
    });
    let rb = |size| rt.map_create(&MapCreateAttr::new(MapType::Ringbuf, 0, 0, size));
    let a = rb(4096).unwrap();
    assert_eq!(rt.memory_charged(), 12 << 10);
    assert_eq!(rb(4096).err(), Some(Errno::ENOMEM));
    // Size rules come first: a power-of-two multiple of the page size.
    assert_eq!(rb(4096 * 3).err(), Some(Errno::EINVAL));
    assert_eq!(rb(2048).err(), Some(Errno::EINVAL));
    drop(a);
    assert_eq!(rt.memory_charged(), 0);
    assert!(rb(4096).is_ok());
}

#[test]
fn local_storage_values_are_charged_as_owners_get_them() {
    let rt = rt_with(RuntimeConfig {
        memory_limit: 300,
        ..RuntimeConfig::default()
    });
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    b.add_struct("v", 8, &[("a", int, 0), ("b", int, 32)]);
    let btf = rt.btf_load(&b.build().encode()).unwrap();
    let mut a = MapCreateAttr::new(MapType::SkStorage, 4, 8, 0).flags(BPF_F_NO_PREALLOC);
    a.btf_fd = rt.fd_install(btf).unwrap();
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 2;
    let m = rt.map_create(&a).unwrap();
    // Each value is charged 8 bytes plus the element header (128): two fit in 300.
    let owners: Vec<_> = (0..3).map(|_| rt.host_object_new()).collect();
    let fds: Vec<u32> = owners
        .iter()
        .map(|o| rt.fd_install(o.clone()).unwrap())
        .collect();
    let put = |fd: u32| rt.map_update_elem(&m, Some(&fd.to_ne_bytes()), &[3; 8], BPF_ANY);
    put(fds[0]).unwrap();
    put(fds[1]).unwrap();
    assert_eq!(put(fds[2]), Err(Errno::ENOMEM));
    // Programs get nothing either (`bpf_sk_storage_get` with F_CREATE gives NULL).
    let g = structops::read_lock();
    assert!(
        m.storage_get(
            &owners[2],
            None,
            structops::maps::BPF_LOCAL_STORAGE_GET_F_CREATE,
            &g
        )
        .is_none()
    );
    drop(g);
    // Replacing a value takes no more.
    put(fds[0]).unwrap();
    owners[0].release();
    put(fds[2]).unwrap();
    let mut v = [0u8; 8];
    rt.map_lookup_elem(&m, Some(&fds[2].to_ne_bytes()), &mut v, 0)
        .unwrap();
    assert_eq!(v, [3; 8]);
}

// -------------------------------------------------------------------------------------
// struct_ops: links and entry-point code

/// `struct lim_ops { int (*f)(int a); int (*g)(int a); }` and its value type.
struct Ids {
    ops: TypeId,
    value: TypeId,
}

struct Host;

impl StructOps for Host {
    fn reg(&self, _: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        Ok(())
    }
    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {}
}

/// The ops struct at 64, the size rounded up to 64 (as `add_value_type` lays it out).
const VALUE_SIZE: u32 = 128;
const DATA: usize = 64;

fn ops_runtime(config: RuntimeConfig) -> (Runtime, Ids, u32) {
    let rt = rt_with(config);
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[("a", int)]);
    let fp = b.add_ptr(proto);
    let ops = b.add_struct("lim_ops", 16, &[("f", fp, 0), ("g", fp, 64)]);
    let value = add_value_type(&mut b, ops, "lim_ops").unwrap();
    rt.register_host_btf(b.build()).unwrap();
    rt.register_struct_ops(StructOpsDesc::new("lim_ops", Arc::new(Host)))
        .unwrap();
    let btf = rt.btf_load(&btf_blob()).unwrap();
    let btf_fd = rt.fd_install(btf).unwrap();
    (rt, Ids { ops, value }, btf_fd)
}

fn ops_map(rt: &Runtime, ids: &Ids, btf_fd: u32) -> Result<structops::MapHandle, Errno> {
    rt.map_create(&MapCreateAttr {
        map_type: MAP_TYPE_STRUCT_OPS,
        key_size: 4,
        value_size: VALUE_SIZE,
        max_entries: 1,
        map_flags: BPF_F_LINK,
        btf_fd,
        btf_vmlinux_value_type_id: ids.value,
        ..MapCreateAttr::default()
    })
}

/// A program for member `idx` (returns its argument plus one), as a descriptor.
fn member_prog(rt: &Runtime, ids: &Ids, idx: u32) -> u32 {
    let src = "r0 = *(u64 *)(r1 +0)\nr0 += 1\nexit";
    let mut a = ProgLoadAttr::new(ProgType::STRUCT_OPS, assemble(src).unwrap().encode(), "GPL");
    a.attach_btf_id = ids.ops;
    a.expected_attach_type = idx;
    let p = rt.prog_load(&a).unwrap();
    assert!(p.is_verified());
    rt.fd_install(p).unwrap()
}

/// The value with members `f` and `g` set to program descriptors (0: unset).
fn ops_value(f: u32, g: u32) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_SIZE as usize];
    v[DATA..DATA + 8].copy_from_slice(&u64::from(f).to_ne_bytes());
    v[DATA + 8..DATA + 16].copy_from_slice(&u64::from(g).to_ne_bytes());
    v
}

#[test]
fn max_links_is_enospc_until_one_is_detached() {
    let (rt, ids, btf_fd) = ops_runtime(RuntimeConfig {
        max_links: 1,
        ..RuntimeConfig::default()
    });
    let (f, g) = (member_prog(&rt, &ids, 0), member_prog(&rt, &ids, 1));
    let ready = || {
        let m = ops_map(&rt, &ids, btf_fd).unwrap();
        rt.map_update_elem(&m, Some(&0u32.to_ne_bytes()), &ops_value(f, g), 0)
            .unwrap();
        rt.fd_install(m).unwrap()
    };
    let (m1, m2) = (ready(), ready());
    let l1 = rt.link_create(&LinkCreateAttr::struct_ops(m1)).unwrap();
    assert_eq!(
        rt.link_create(&LinkCreateAttr::struct_ops(m2)).err(),
        Some(Errno::ENOSPC)
    );
    assert_eq!(rt.object_count(ObjKind::Link), 1);
    drop(l1);
    let l2 = rt.link_create(&LinkCreateAttr::struct_ops(m2)).unwrap();
    assert_eq!(rt.get_next_id(ObjKind::Link, 0), Ok(l2.id()));
}

#[test]
fn struct_ops_maps_are_charged() {
    let (rt, ids, btf_fd) = ops_runtime(RuntimeConfig::default());
    let before = rt.memory_charged();
    let m = ops_map(&rt, &ids, btf_fd).unwrap();
    assert_eq!(rt.memory_charged() - before, 2 * u64::from(VALUE_SIZE));
    drop(m);
    assert_eq!(rt.memory_charged(), before);
}

/// Runtimes on the interpreter, where every member gets a native entry point that calls
/// into it (no program is inlined into its entry point).
fn interp_ops_runtime(image_limit: u64) -> (Runtime, Ids, u32) {
    ops_runtime(RuntimeConfig {
        engine: Engine::Interp,
        struct_ops_image_limit: image_limit,
        ..RuntimeConfig::default()
    })
}

/// Whether a table with members `f` (and `g`, if `both`) can be stored under
/// `image_limit`.
fn admitted(image_limit: u64, both: bool) -> Result<(), Errno> {
    let (rt, ids, btf_fd) = interp_ops_runtime(image_limit);
    let f = member_prog(&rt, &ids, 0);
    let g = if both { member_prog(&rt, &ids, 1) } else { 0 };
    let m = ops_map(&rt, &ids, btf_fd).unwrap();
    rt.map_update_elem(&m, Some(&0u32.to_ne_bytes()), &ops_value(f, g), 0)
}

#[test]
fn struct_ops_entry_code_limit_is_e2big() {
    // The code one entry point takes: the smallest limit that admits one member
    // (admission is monotone in the limit).
    let (mut lo, mut hi) = (0u64, 1 << 16);
    assert!(admitted(hi, true).is_ok());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if admitted(mid, false).is_ok() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let one = lo;
    assert!(one > 0, "an entry point takes some code");
    // Under that limit two members do not fit: E2BIG, as the kernel's update when its
    // trampoline pages run out.
    assert_eq!(admitted(one, true), Err(Errno::E2BIG));
    assert_eq!(admitted(2 * one, true), Ok(()));
    // After the failed update the map is still INIT: a table that fits is accepted
    // and can be linked.
    let (rt, ids, btf_fd) = interp_ops_runtime(one);
    let (f, g) = (member_prog(&rt, &ids, 0), member_prog(&rt, &ids, 1));
    let m = ops_map(&rt, &ids, btf_fd).unwrap();
    let k = 0u32.to_ne_bytes();
    assert_eq!(
        rt.map_update_elem(&m, Some(&k), &ops_value(f, g), 0),
        Err(Errno::E2BIG)
    );
    rt.map_update_elem(&m, Some(&k), &ops_value(f, 0), 0)
        .unwrap();
    let l = rt
        .link_create(&LinkCreateAttr::struct_ops(rt.fd_install(m).unwrap()))
        .unwrap();
    assert!(l.id() > 0);
}

// -------------------------------------------------------------------------------------
// Programs: size, verifier work, run time

#[test]
fn instruction_count_limits_are_e2big() {
    let rt = rt_with(RuntimeConfig {
        unprivileged_bpf_disabled: false,
        ..RuntimeConfig::default()
    });
    let mov = Insn::new(0xb7, 0, 0, 0, 0);
    let exit = Insn::new(0x95, 0, 0, 0, 0);
    let n_insns = |n: usize| {
        let mut v = vec![mov; n - 1];
        v.push(exit);
        ProgLoadAttr::new(ProgType::SOCKET_FILTER, v, "GPL")
    };
    // BPF_COMPLEXITY_LIMIT_INSNS with CAP_BPF.
    assert_eq!(rt.prog_load(&n_insns(1_000_001)).err(), Some(Errno::E2BIG));
    // BPF_MAXINSNS without.
    rt.set_caps(Capabilities::NONE);
    assert_eq!(rt.prog_load(&n_insns(4097)).err(), Some(Errno::E2BIG));
    assert!(rt.prog_load(&n_insns(4096)).is_ok());
    rt.set_caps(Capabilities::ALL);
    assert!(rt.prog_load(&n_insns(4097)).is_ok());
}

/// A loop the verifier unrolls (the counter is precise, every round is a new state)
/// until it has processed a million instructions.
const LONG_LOOP: &str = "
    r0 = 0
l:
    r0 += 1
    if r0 < 0x40000000 goto l
    r0 = 0
    exit
";

/// 8200 conditional jumps on an unknown value (`ingress_ifindex`) in a row: each leaves its other branch
/// pending, and the 8193rd pending branch is one too many.
fn many_branches() -> String {
    let mut s = String::from("r2 = *(u32 *)(r1 +12)\n");
    for i in 0..8200 {
        s.push_str(&format!("if r2 == {i} goto pc+1\nr0 = 0\n"));
    }
    s.push_str("r0 = 2\nexit\n");
    s
}

/// `Some((errno, log))` from the running kernel for `src` as XDP, or `None` when the
/// kernel cannot be asked (the reason printed).
fn kernel_load(src: &str) -> Option<Result<(), (Errno, String)>> {
    if let Some(why) = kernel::unavailable() {
        eprintln!("skipping the kernel comparison: {why}");
        return None;
    }
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(src).unwrap().encode(), "GPL");
    // BPF_LOG_STATS alone: the error line and the stats, not a million lines.
    Some(kernel::prog_load(&a, 4).map(kernel::close))
}

/// The log's last line that is not empty.
fn last_line(log: &str) -> &str {
    log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

#[test]
fn processed_instruction_limit_is_e2big() {
    let rt = rt_with(RuntimeConfig::default());
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(LONG_LOOP).unwrap().encode(), "GPL");
    let start = std::time::Instant::now();
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::E2BIG)
    );
    eprintln!("1M processed instructions took {:?}", start.elapsed());
    assert!(
        log.contains("BPF program is too large. Processed 1000001 insn"),
        "{}",
        last_line(&log)
    );
    // The same loop with a bound the verifier can walk loads and runs.
    let short = LONG_LOOP.replace("0x40000000", "100");
    let p = prog(&rt, &short).unwrap();
    assert!(p.is_verified());
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&p, &mut t).unwrap();
    assert_eq!(t.retval, 0);
    if let Some(k) = kernel_load(LONG_LOOP) {
        let (errno, klog) = k.expect_err("the kernel refuses it too");
        assert_eq!(errno, Errno::E2BIG);
        assert!(
            klog.contains("BPF program is too large. Processed 1000001 insn"),
            "{}",
            last_line(&klog)
        );
    }
}

#[test]
fn verifier_state_memory_limit_is_enomem() {
    let rt = rt_with(RuntimeConfig {
        verifier_memory_limit: 1 << 20,
        ..RuntimeConfig::default()
    });
    // The loop that takes a million instructions keeps a state every few rounds: a
    // megabyte of them comes long before the instruction limit.
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(LONG_LOOP).unwrap().encode(), "GPL");
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::ENOMEM)
    );
    assert!(
        log.contains("verifier state memory limit of 1048576 bytes reached"),
        "{}",
        last_line(&log)
    );
    assert!(!log.contains("Processed 1000001"));
    // A program with a short loop stays far below the limit.
    let p = prog(&rt, &LONG_LOOP.replace("0x40000000", "100")).unwrap();
    assert!(p.is_verified());
}

#[test]
fn verifier_log_limit_is_enospc() {
    let rt = rt_with(RuntimeConfig {
        verifier_log_limit: 64 << 10,
        ..RuntimeConfig::default()
    });
    let long = LONG_LOOP.replace("0x40000000", "100000");
    let a = |src: &str, level| {
        ProgLoadAttr::new(ProgType::XDP, assemble(src).unwrap().encode(), "GPL").log_level(level)
    };
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a(&long, 2), &mut log).err(),
        Some(Errno::ENOSPC)
    );
    assert!(
        log.contains("verifier log over the limit of 65536 bytes"),
        "{}",
        last_line(&log)
    );
    assert!(
        log.len() < 80 << 10,
        "the log stopped near the limit: {}",
        log.len()
    );
    // Without a log the same program loads (300,000 instructions processed), and a
    // small program logs within the limit.
    assert!(prog(&rt, &long).is_ok());
    let mut log = String::new();
    assert!(rt.prog_load_with_log(&a(RET0, 2), &mut log).is_ok());
    assert!(log.contains("exit"), "{log}");
}

#[test]
fn pending_jump_limit_is_e2big() {
    let rt = rt_with(RuntimeConfig::default());
    let src = many_branches();
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(&src).unwrap().encode(), "GPL");
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::E2BIG)
    );
    assert!(
        log.contains("The sequence of 8193 jumps is too complex."),
        "{}",
        last_line(&log)
    );
    assert!(prog(&rt, RET0).is_ok());
    if let Some(k) = kernel_load(&src) {
        let (errno, klog) = k.expect_err("the kernel refuses it too");
        assert_eq!(errno, Errno::E2BIG);
        assert!(
            klog.contains("The sequence of 8193 jumps is too complex."),
            "{}",
            last_line(&klog)
        );
    }
}

#[test]
fn bpf_loop_beyond_max_loops_is_e2big() {
    let rt = rt_with(RuntimeConfig::default());
    // Callbacks need BTF func_info: `int main(void)` and `long cb(u32, void *)`.
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let long = b.add_int("long", 8, INT_SIGNED);
    let u32_ = b.add_int("unsigned int", 4, 0);
    let void_ptr = b.add_ptr(0);
    let main_proto = b.add_func_proto(int, &[]);
    let cb_proto = b.add_func_proto(long, &[("index", u32_), ("ctx", void_ptr)]);
    let main = b.add_func("main", main_proto, Linkage::Global);
    let cb = b.add_func("cb", cb_proto, Linkage::Static);
    let btf = rt.btf_load(&b.build().encode()).unwrap();
    let btf_fd = rt.fd_install(btf).unwrap();
    // r2 = the callback (`subprog[k]` loads pc + k + 1; the load is at pc 1, the
    // callback at pc 7), which stops the loop at once.
    let src = |n: u64| {
        format!("r1 = {n}\nr2 = subprog[5]\nr3 = 0\nr4 = 0\ncall bpf_loop\nexit\nr0 = 1\nexit")
    };
    let run = |n: u64| {
        let a = ProgLoadAttr::new(ProgType::XDP, assemble(&src(n)).unwrap().encode(), "GPL")
            .func_info(
                btf_fd,
                &[
                    FuncInfo {
                        insn_off: 0,
                        type_id: main,
                    },
                    FuncInfo {
                        insn_off: 7,
                        type_id: cb,
                    },
                ],
            );
        let mut log = String::new();
        let p = rt
            .prog_load_with_log(&a.log_level(1), &mut log)
            .unwrap_or_else(|e| panic!("{e:?}: {log}"));
        assert!(p.is_verified());
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(&p, &mut t).unwrap();
        t.retval as i32
    };
    assert_eq!(run((1 << 23) + 1), -7, "-E2BIG above BPF_MAX_LOOPS");
    assert_eq!(
        run(1 << 23),
        1,
        "at the cap the loop runs (and stops at once)"
    );
}

/// An XDP program that counts its runs in `counter[0]` and tail-calls slot 0 of
/// `progs`, where it is itself: the run ends when the tail-call budget does.
fn self_tail_call(counter_fd: u32, progs_fd: u32) -> String {
    format!(
        "
        r6 = r1
        *(u32 *)(r10 -4) = 0
        r2 = r10
        r2 += -4
        r1 = map[id:{counter_fd}]
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 +0)
        r1 += 1
        *(u64 *)(r0 +0) = r1
        r1 = r6
        r2 = map[id:{progs_fd}]
        r3 = 0
        call bpf_tail_call
    out:
        r0 = 2
        exit
        "
    )
}

#[test]
fn tail_calls_stop_at_max_tail_call_cnt() {
    let counter = MapCreateAttr::new(MapType::Array, 4, 8, 1);
    let progs = MapCreateAttr::new(MapType::ProgArray, 4, 4, 1);
    let k0 = 0u32.to_ne_bytes();
    for engine in [Engine::Interp, Engine::default()] {
        let rt = rt_with(RuntimeConfig {
            engine,
            ..RuntimeConfig::default()
        });
        let c = rt.map_create(&counter).unwrap();
        let pa = rt.map_create(&progs).unwrap();
        let (cfd, pafd) = (
            rt.fd_install(c.clone()).unwrap(),
            rt.fd_install(pa.clone()).unwrap(),
        );
        let p = prog(&rt, &self_tail_call(cfd, pafd)).unwrap();
        assert!(p.is_verified());
        let pfd = rt.fd_install(p.clone()).unwrap();
        rt.map_update_elem(&pa, Some(&k0), &pfd.to_ne_bytes(), BPF_ANY)
            .unwrap();
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(&p, &mut t).unwrap();
        assert_eq!(t.retval, 2);
        let mut runs = [0u8; 8];
        rt.map_lookup_elem(&c, Some(&k0), &mut runs, 0).unwrap();
        // The first run and MAX_TAIL_CALL_CNT (33) tail calls; the 34th falls through.
        assert_eq!(u64::from_ne_bytes(runs), 34, "{engine:?}");
        // The budget is per run: a second run counts as many again.
        rt.prog_test_run(&p, &mut t).unwrap();
        rt.map_lookup_elem(&c, Some(&k0), &mut runs, 0).unwrap();
        assert_eq!(u64::from_ne_bytes(runs), 68, "{engine:?}");
    }
    if let Some(why) = kernel::unavailable() {
        eprintln!("skipping the kernel comparison: {why}");
        return;
    }
    let mut fds = kernel::OwnedFds::default();
    let c = fds.own(kernel::map_create(&counter).unwrap());
    let pa = fds.own(kernel::map_create(&progs).unwrap());
    let src = self_tail_call(c as u32, pa as u32);
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(&src).unwrap().encode(), "GPL");
    let p = fds.own(kernel::prog_load(&a, 1).unwrap());
    kernel::update(pa, Some(&k0), &p.to_ne_bytes(), BPF_ANY).unwrap();
    let mut t = TestRun::with_data(&[0u8; 64]);
    kernel::prog_test_run(p, &mut t).unwrap();
    let mut runs = [0u8; 8];
    kernel::lookup(c, Some(&k0), &mut runs, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(runs), 34, "the kernel's count");
}

#[test]
fn maps_per_program_limit_is_e2big() {
    let rt = rt_with(RuntimeConfig::default());
    let fds: Vec<u32> = (0..65)
        .map(|_| rt.fd_install(array(&rt, 8, 1).unwrap()).unwrap())
        .collect();
    let src = |fds: &[u32]| {
        let mut s: String = fds
            .iter()
            .map(|fd| format!("r1 = map[id:{fd}]\n"))
            .collect();
        s.push_str(RET0);
        s
    };
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(&src(&fds)).unwrap().encode(), "GPL");
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::E2BIG)
    );
    assert!(
        log.contains("The total number of maps per program has reached the limit of 64"),
        "{log}"
    );
    // MAX_USED_MAPS itself is fine.
    assert!(prog(&rt, &src(&fds[..64])).is_ok());
}

#[test]
fn may_goto_budget_ends_an_endless_loop() {
    // Endless but for `may_goto`: the first BPF_MAX_LOOPS (2^23) executions fall
    // through and count, the next one jumps to the exit.
    let src = "r0 = 0\nl:\nmay_goto pc+2\nr0 += 1\ngoto l\nexit";
    for engine in [Engine::Interp, Engine::default()] {
        let rt = rt_with(RuntimeConfig {
            engine,
            ..RuntimeConfig::default()
        });
        let p = prog(&rt, src).unwrap();
        assert!(p.is_verified());
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(&p, &mut t).unwrap();
        assert_eq!(t.retval, 1 << 23, "{engine:?}");
    }
    if let Some(why) = kernel::unavailable() {
        eprintln!("skipping the kernel comparison: {why}");
        return;
    }
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(src).unwrap().encode(), "GPL");
    let mut fds = kernel::OwnedFds::default();
    let p = fds.own(kernel::prog_load(&a, 1).unwrap());
    let mut t = TestRun::with_data(&[0u8; 64]);
    kernel::prog_test_run(p, &mut t).unwrap();
    // The loop ends in the kernel too. Its count differs: kernels newer than 6.12 (the
    // running 6.18 among them) JIT a timed `may_goto` on x86-64 (a time slice instead
    // of 6.12's count of 2^23, which we follow).
    eprintln!("kernel: may_goto loop counted {}", t.retval);
    assert!(t.retval > 0, "the kernel's loop ran and ended");
}

#[test]
fn program_side_hash_updates_get_enomem() {
    // 1024 buckets of 16 bytes, two programs of one page each (the kernel's
    // `bpf_prog_alloc` charge), then room for exactly one 64-byte element (48 + 8-byte
    // key + 8-byte value).
    let rt = rt_with(RuntimeConfig {
        memory_limit: 1024 * 16 + 2 * 4096 + 64,
        ..RuntimeConfig::default()
    });
    let m = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 1024).flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let fd = rt.fd_install(m.clone()).unwrap();
    let updater = |key: u32| {
        let src = format!(
            "
            *(u32 *)(r10 -4) = {key}
            *(u64 *)(r10 -16) = 7
            r1 = map[id:{fd}]
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -16
            r4 = 0
            call bpf_map_update_elem
            exit
            "
        );
        let p = prog(&rt, &src).unwrap();
        assert!(p.is_verified());
        assert_eq!(p.memlock(), 4096);
        p
    };
    let (p1, p2) = (updater(1), updater(2));
    let update = |p: &ProgHandle| {
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(p, &mut t).unwrap();
        t.retval as i32
    };
    assert_eq!(update(&p1), 0);
    assert_eq!(update(&p2), -12, "-ENOMEM");
    // Replacing the element needs nothing more; after a delete there is room again.
    assert_eq!(update(&p1), 0);
    rt.map_delete_elem(&m, Some(&1u32.to_ne_bytes())).unwrap();
    assert_eq!(update(&p2), 0);
}

#[test]
fn unverified_runs_stop_at_the_step_limit() {
    let rt = rt_with(RuntimeConfig {
        run_unverified: true,
        ..RuntimeConfig::default()
    });
    // An endless loop: the verifier refuses it ("infinite loop detected"), and
    // `run_unverified` loads it anyway, to run only in the checked interpreter.
    let p = prog(&rt, "r0 = 0\nl:\nr0 += 1\ngoto l\nexit").unwrap();
    assert!(!p.is_verified());
    let mut t = TestRun::with_data(&[0u8; 64]);
    let start = std::time::Instant::now();
    assert_eq!(rt.prog_test_run(&p, &mut t), Err(Errno::EFAULT));
    eprintln!(
        "{} steps took {:?}",
        structops_vm::DEFAULT_STEP_LIMIT,
        start.elapsed()
    );
    match &t.fault {
        Some(RunFault::Vm(VmError::InstructionLimit { limit, .. })) => {
            assert_eq!(*limit, structops_vm::DEFAULT_STEP_LIMIT);
        }
        other => panic!("expected the step limit, got {other:?}"),
    }
    // The runtime still runs programs, the unverified ones included.
    let q = prog(&rt, "r0 = 0\nl:\nr0 += 1\nif r0 < 10 goto l\nexit").unwrap();
    rt.prog_test_run(&q, &mut t).unwrap();
    assert_eq!(t.retval, 10);
    assert!(t.fault.is_none());
}

#[test]
fn max_fds_is_emfile_until_one_is_closed() {
    let rt = rt_with(RuntimeConfig {
        max_fds: 4,
        ..RuntimeConfig::default()
    });
    // One object installed many times: each descriptor counts, the object once.
    let m = array(&rt, 8, 1).unwrap();
    let fds: Vec<u32> = (0..4).map(|_| rt.fd_install(m.clone()).unwrap()).collect();
    assert_eq!(fds, [0, 1, 2, 3]);
    assert_eq!(rt.fd_install(m.clone()), Err(Errno::EMFILE));
    assert_eq!(
        rt.fd_install(rt.host_object_new()),
        Err(Errno::EMFILE),
        "every kind of object"
    );
    assert_eq!(rt.object_count(ObjKind::Map), 1);
    let b = btf_blob();
    let btf = rt.btf_load(&b).unwrap();
    let btf_id = btf.id();
    assert_eq!(rt.fd_install(btf.clone()), Err(Errno::EMFILE));
    // Closing one frees its number, the lowest free, for the next install, and the
    // new descriptor works as an attribute.
    rt.fd_close(2).unwrap();
    let fd = rt.fd_install(btf).unwrap();
    assert_eq!(fd, 2);
    let mut a = MapCreateAttr::new(MapType::Array, 4, 4, 1);
    a.btf_fd = fd;
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 1;
    let m2 = rt.map_create(&a).unwrap();
    assert_eq!(rt.map_info(&m2).btf_id, btf_id);
}

#[test]
fn kfuncs_per_program_limit_is_e2big() {
    let rt = rt_with(RuntimeConfig::default());
    // 257 host kfuncs `int k<i>(void)`, the i-th returning i + 1.
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[]);
    for i in 0..257 {
        b.add_func(&format!("k{i}"), proto, Linkage::Global);
    }
    rt.register_host_btf(b.build()).unwrap();
    let ids: Vec<TypeId> = (0..257u64)
        .map(|i| {
            let f: HostFn = Arc::new(move |_, _| Ok(i + 1));
            rt.register_kfunc(&format!("k{i}"), KfuncFlags::NONE, Vec::new(), f)
                .unwrap()
        })
        .collect();
    // A program that calls each of `ids` once and returns the sum of their results.
    let src = |ids: &[TypeId]| {
        let mut s = String::from("r6 = 0\n");
        for id in ids {
            s.push_str(&format!("call kernel-function#{id}\nr6 += r0\n"));
        }
        s.push_str("r0 = r6\nexit\n");
        s
    };
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(&src(&ids)).unwrap().encode(), "GPL");
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::E2BIG)
    );
    assert_eq!(log, "too many different kernel function calls\n");
    // MAX_KFUNC_DESCS (256) distinct kfuncs load and run, and calling one of them
    // again takes no new slot.
    let mut ok = ids[..256].to_vec();
    ok.push(ids[0]);
    let p = prog(&rt, &src(&ok)).unwrap();
    assert!(p.is_verified());
    assert_eq!(p.kfuncs().len(), 256);
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&p, &mut t).unwrap();
    assert_eq!(t.retval, 256 * 257 / 2 + 1);
    // The kernel counts distinct functions before it checks that they are kfuncs a
    // program may call (`add_kfunc_call` needs only a `FUNC` with an address): 257
    // functions of its BTF without arguments give the same errno and message.
    if let Some(why) = kernel::unavailable() {
        eprintln!("skipping the kernel comparison: {why}");
        return;
    }
    let Some(kids) = vmlinux_functions(257) else {
        eprintln!("skipping the kernel comparison: no 257 functions in vmlinux BTF and kallsyms");
        return;
    };
    let a = ProgLoadAttr::new(
        ProgType::XDP,
        assemble(&src(&kids)).unwrap().encode(),
        "GPL",
    );
    let (errno, klog) = kernel::prog_load(&a, 1)
        .map(kernel::close)
        .expect_err("the kernel refuses it too");
    assert_eq!(errno, Errno::E2BIG);
    assert!(
        klog.starts_with("too many different kernel function calls\n"),
        "{klog}"
    );
    // With 256 the count passes, and the kernel refuses the program later, for
    // calling functions that are no kfuncs of XDP.
    let a = ProgLoadAttr::new(
        ProgType::XDP,
        assemble(&src(&kids[..256])).unwrap().encode(),
        "GPL",
    );
    let (errno, klog) = kernel::prog_load(&a, 1)
        .map(kernel::close)
        .expect_err("no kfuncs of XDP");
    assert_ne!(errno, Errno::E2BIG, "{klog}");
    assert!(!klog.contains("too many different"), "{klog}");
}

/// BTF ids of `n` functions of the running kernel without arguments whose names
/// `/proc/kallsyms` lists, or `None` when there are not that many (or no access).
fn vmlinux_functions(n: usize) -> Option<Vec<TypeId>> {
    let btf = structops_btf::Btf::parse(&std::fs::read("/sys/kernel/btf/vmlinux").ok()?).ok()?;
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").ok()?;
    let names: std::collections::HashSet<&str> = kallsyms
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = f.next()?;
            let kind = f.next()?;
            let name = f.next()?;
            // Zeroed addresses: kallsyms is hidden from this process.
            let shown = addr.bytes().any(|b| b != b'0');
            (shown && matches!(kind, "T" | "t") && f.next().is_none()).then_some(name)
        })
        .collect();
    let ids: Vec<TypeId> = (1..=btf.len())
        .filter(|&id| {
            btf.ty(id)
                .is_ok_and(|t| t.kind() == structops_btf::Kind::Func)
                && btf
                    .func_proto(id)
                    .is_ok_and(|(_, params)| params.is_empty())
                && btf.type_name(id).is_ok_and(|name| names.contains(name))
        })
        .take(n)
        .collect();
    (ids.len() == n).then_some(ids)
}

/// `n` instructions: `r0 = 0` and an exit.
fn n_insns(n: usize) -> String {
    let mut s = "r0 = 0\n".repeat(n - 1);
    s.push_str("exit");
    s
}

#[test]
fn program_memory_is_enomem_until_a_program_is_freed() {
    let rt = rt_with(RuntimeConfig {
        memory_limit: 3 * 4096,
        ..RuntimeConfig::default()
    });
    // The kernel's charge: the 72-byte `struct bpf_prog` and 8 bytes per instruction,
    // in whole pages. 503 instructions fill one page, 504 take two.
    let small = prog(&rt, RET0).unwrap();
    assert_eq!(small.memlock(), 4096);
    assert_eq!(rt.memory_charged(), 4096);
    let full = prog(&rt, &n_insns(503)).unwrap();
    assert_eq!(full.memlock(), 4096);
    drop(full);
    let two = prog(&rt, &n_insns(504)).unwrap();
    assert_eq!(two.memlock(), 2 * 4096);
    assert_eq!(rt.memory_charged(), 3 * 4096);
    let mut log = String::new();
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(RET0).unwrap().encode(), "GPL");
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::ENOMEM)
    );
    // Maps and programs share the account, and refusals take nothing.
    assert_eq!(array(&rt, 8, 1).err(), Some(Errno::ENOMEM));
    assert_eq!(rt.memory_charged(), 3 * 4096);
    drop(small);
    // A program the verifier refuses gives its pages back.
    assert_eq!(prog(&rt, "exit").err(), Some(Errno::EACCES));
    assert_eq!(rt.memory_charged(), 2 * 4096);
    let p = prog(&rt, "r0 = 2\nexit").unwrap();
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&p, &mut t).unwrap();
    assert_eq!(t.retval, 2);
    drop((two, p));
    assert_eq!(rt.memory_charged(), 0);
}

/// Whether this host has a JIT (else the JIT limit tests skip, saying why).
fn have_jit() -> bool {
    let yes = structops_vm::Target::host().is_some();
    if !yes {
        eprintln!("skipping: no JIT for this host");
    }
    yes
}

#[test]
fn jit_memory_limit_is_enotsupp_until_a_program_is_freed() {
    if !have_jit() {
        return;
    }
    let jit = |limit| {
        rt_with(RuntimeConfig {
            engine: Engine::Jit,
            jit_memory_limit: limit,
            ..RuntimeConfig::default()
        })
    };
    // What one small program takes: whole pages.
    let probe = jit(u64::MAX);
    let p = prog(&probe, RET0).unwrap();
    assert_eq!(p.engine(), Engine::Jit);
    let one = probe.jit_memory_charged();
    assert!(one > 0 && one % 4096 == 0, "{one}");
    eprintln!("a two-instruction program on the JIT takes {one} bytes");
    drop(p);
    assert_eq!(probe.jit_memory_charged(), 0, "freeing returns the pages");

    let rt = jit(3 * one);
    let mut progs: Vec<_> = (0..3).map(|_| prog(&rt, RET0).unwrap()).collect();
    assert_eq!(rt.jit_memory_charged(), 3 * one);
    // A hard bound, for callers with CAP_BPF too (the kernel lets those past).
    assert!(rt.caps().bpf());
    let a = ProgLoadAttr::new(ProgType::XDP, assemble(RET0).unwrap().encode(), "GPL");
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::ENOTSUPP)
    );
    assert!(log.contains("JIT memory limit of"), "{log}");
    assert_eq!(rt.jit_memory_charged(), 3 * one);
    assert_eq!(
        rt.object_count(ObjKind::Prog),
        3,
        "the refused load left nothing"
    );
    // The interpreter takes no JIT memory.
    let i = rt.prog_load(&a.clone().engine(Engine::Interp)).unwrap();
    assert_eq!(i.engine(), Engine::Interp);
    assert_eq!(rt.jit_memory_charged(), 3 * one);
    // Freeing a program makes room for the next.
    progs.pop();
    let p = prog(&rt, "r0 = 2\nexit").unwrap();
    assert_eq!(p.engine(), Engine::Jit);
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&p, &mut t).unwrap();
    assert_eq!(t.retval, 2);
}

#[test]
fn jit_memory_limit_bounds_struct_ops_entry_points_with_eperm() {
    if !have_jit() {
        return;
    }
    // On the interpreter the programs take no JIT memory; their native entry points
    // (the kernel's trampolines) do.
    let interp = |limit| {
        ops_runtime(RuntimeConfig {
            engine: Engine::Interp,
            jit_memory_limit: limit,
            ..RuntimeConfig::default()
        })
    };
    let k = 0u32.to_ne_bytes();
    let (probe, ids, btf_fd) = interp(u64::MAX);
    let f = member_prog(&probe, &ids, 0);
    assert_eq!(probe.jit_memory_charged(), 0);
    let m = ops_map(&probe, &ids, btf_fd).unwrap();
    probe
        .map_update_elem(&m, Some(&k), &ops_value(f, 0), 0)
        .unwrap();
    let one = probe.jit_memory_charged();
    assert!(one > 0 && one % 4096 == 0, "{one}");
    eprintln!("one entry point into the interpreter takes {one} bytes");
    drop(m);
    assert_eq!(probe.jit_memory_charged(), 0);

    let (rt, ids, btf_fd) = interp(one);
    let f = member_prog(&rt, &ids, 0);
    let m1 = ops_map(&rt, &ids, btf_fd).unwrap();
    rt.map_update_elem(&m1, Some(&k), &ops_value(f, 0), 0)
        .unwrap();
    let m2 = ops_map(&rt, &ids, btf_fd).unwrap();
    assert_eq!(
        rt.map_update_elem(&m2, Some(&k), &ops_value(f, 0), 0),
        Err(Errno::EPERM)
    );
    assert_eq!(rt.jit_memory_charged(), one);
    // The first map's entry points go with it; the second map, still INIT, can then
    // be filled and linked.
    drop(m1);
    assert_eq!(rt.jit_memory_charged(), 0);
    rt.map_update_elem(&m2, Some(&k), &ops_value(f, 0), 0)
        .unwrap();
    let l = rt
        .link_create(&LinkCreateAttr::struct_ops(rt.fd_install(m2).unwrap()))
        .unwrap();
    assert!(l.id() > 0);
}

#[test]
fn jit_and_interpreted_programs_do_not_share_a_prog_array() {
    if !have_jit() {
        return;
    }
    // A JIT-compiled program's tail calls reach only compiled code, so an interpreted
    // program (which would be compiled at its first tail call, outside the JIT memory
    // account) cannot join its array: the kernel's `owner.jited` rule.
    let rt = rt_with(RuntimeConfig {
        engine: Engine::Jit,
        ..RuntimeConfig::default()
    });
    let pa = rt
        .map_create(&MapCreateAttr::new(MapType::ProgArray, 4, 4, 2))
        .unwrap();
    let pafd = rt.fd_install(pa.clone()).unwrap();
    let tail = format!("r2 = map[id:{pafd}]\nr3 = 0\ncall bpf_tail_call\nr0 = 2\nexit");
    let attr = |src: &str, engine| {
        ProgLoadAttr::new(ProgType::XDP, assemble(src).unwrap().encode(), "GPL").engine(engine)
    };
    let caller = rt.prog_load(&attr(&tail, Engine::Jit)).unwrap();
    assert_eq!(caller.engine(), Engine::Jit);
    let interp = rt.prog_load(&attr(RET0, Engine::Interp)).unwrap();
    let ifd = rt.fd_install(interp).unwrap();
    let (k0, k1) = (0u32.to_ne_bytes(), 1u32.to_ne_bytes());
    assert_eq!(
        rt.map_update_elem(&pa, Some(&k0), &ifd.to_ne_bytes(), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // Nor can an interpreted program that tail-calls through it load.
    assert_eq!(
        rt.prog_load(&attr(&tail, Engine::Interp)).err(),
        Some(Errno::EINVAL)
    );
    // Compiled programs go in and run.
    let target = rt.prog_load(&attr(RET0, Engine::Jit)).unwrap();
    let tfd = rt.fd_install(target).unwrap();
    rt.map_update_elem(&pa, Some(&k1), &tfd.to_ne_bytes(), BPF_ANY)
        .unwrap();
    rt.map_update_elem(&pa, Some(&k0), &tfd.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let mut t = TestRun::with_data(&[0u8; 64]);
    rt.prog_test_run(&caller, &mut t).unwrap();
    assert_eq!(t.retval, 0, "the tail call ran the target");
}
