//! Programs in the runtime without a kernel: `prog_load` checks and errnos, ids and
//! info, program arrays, helpers, kfuncs and `prog_test_run`.
//!
//! Programs are verified at load. The tests that run programs run twice (see
//! [`both_modes!`]): once with every run in the interpreter's checked mode, once in
//! the default mode (unchecked for verified programs), so the helpers' checked and
//! unchecked paths both stay covered. Programs that break a rule on purpose, to show
//! that checked runs trap, load into [`rt_unverified`] runtimes.

use std::cell::Cell;
use std::sync::Arc;

use structops::Engine;
use structops::helpers::{Arg, ArgType, HelperProto, HostHelper, Ret};
use structops::maps::BPF_F_RDONLY_PROG;
use structops::prog::{BPF_F_SLEEPABLE, BPF_MAXINSNS, collecting_sink};
use structops::struct_ops::add_value_type;
use structops::test_run::XDP_PACKET_HEADROOM;
use structops::{
    AttachType, BPF_ANY, Capabilities, Errno, FdObject, JitHarden, KfuncFlags, Link, MapCreateAttr,
    MapType, ObjInfo, ObjKind, OpsTable, ProgHandle, ProgLoadAttr, ProgType, RunFault, RunMode,
    Runtime, RuntimeConfig, StructOps, StructOpsDesc, TestRun,
};
use structops_btf::ext::{FuncInfo, LineInfo};
use structops_btf::{BtfBuilder, INT_SIGNED, Linkage};
use structops_isa::{Insn, assemble};

fn rt() -> Runtime {
    Runtime::new(RuntimeConfig {
        ncpus: 2,
        run_unverified: false,
        engine: ENGINE.with(Cell::get),
        ..RuntimeConfig::default()
    })
}

/// A runtime that loads programs the verifier rejects (they run checked only): for
/// programs that break a rule on purpose, and for features the verifier does not
/// prove yet (kfunc calls, callbacks).
fn rt_unverified() -> Runtime {
    Runtime::new(RuntimeConfig {
        ncpus: 2,
        run_unverified: true,
        engine: ENGINE.with(Cell::get),
        ..RuntimeConfig::default()
    })
}

thread_local! {
    /// The run mode of the current test variant.
    static MODE: Cell<RunMode> = const { Cell::new(RunMode::Auto) };
    /// The engine of the current test variant's runtimes.
    static ENGINE: Cell<Engine> = const { Cell::new(Engine::Jit) };
}

/// `prog_test_run` in the current variant's mode, unless `t` asks for one.
fn run(rt: &Runtime, p: &ProgHandle, t: &mut TestRun) -> Result<(), Errno> {
    if t.mode == RunMode::Auto {
        t.mode = MODE.with(Cell::get);
    }
    if p.is_verified() {
        // A verified program runs on the variant's engine, with native code on the JIT.
        let engine = ENGINE.with(Cell::get);
        assert_eq!(p.engine(), engine, "{}", p.name());
        assert_eq!(p.info().jited_prog_len > 0, engine == Engine::Jit);
    }
    rt.prog_test_run(p, t)
}

/// Runs `f` with every run in `mode`, verified programs on `engine`.
fn with_mode(mode: RunMode, engine: Engine, f: fn()) {
    MODE.with(|m| m.set(mode));
    ENGINE.with(|e| e.set(engine));
    f();
}

/// Three tests per function: `checked::NAME` runs every program checked (in the
/// interpreter), `interp::NAME` and `jit::NAME` in the default mode (unchecked when
/// verified) on that engine.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod checked {
            $(#[test]
            fn $name() {
                super::with_mode(super::RunMode::Checked, super::Engine::Interp, super::$name);
            })*
        }
        mod interp {
            $(#[test]
            fn $name() {
                super::with_mode(super::RunMode::Auto, super::Engine::Interp, super::$name);
            })*
        }
        mod jit {
            $(#[test]
            fn $name() {
                super::with_mode(super::RunMode::Auto, super::Engine::Jit, super::$name);
            })*
        }
    };
}

both_modes!(
    struct_ops_attach_checks_and_test_run,
    prog_array_updates_and_tail_calls,
    xdp_test_run_semantics,
    xdp_ctx_in_meta_and_adjust_helpers,
    skb_test_runs,
    map_helpers_from_programs,
    ringbuf_loop_for_each_and_spin_lock,
    printf_helpers_probe_read_and_time,
    host_helpers_and_kfuncs,
    xdp_repeat_runs_on_the_adjusted_buffer,
    packet_pointers_are_rewritten_to_64_bits,
    iter_num_kfuncs,
);

fn insns(src: &str) -> Vec<Insn> {
    assemble(src).expect("assembles").encode()
}

fn load(rt: &Runtime, ty: ProgType, src: &str) -> ProgHandle {
    let mut log = String::new();
    rt.prog_load_with_log(
        &ProgLoadAttr::new(ty, insns(src), "GPL")
            .name("t")
            .log_level(1),
        &mut log,
    )
    .unwrap_or_else(|e| panic!("{e:?}:\n{src}\n{log}"))
}

/// Loads `a`, panicking with the verifier's log if it is refused.
fn must_load(rt: &Runtime, a: &ProgLoadAttr) -> ProgHandle {
    let mut log = String::new();
    rt.prog_load_with_log(&a.clone().log_level(1), &mut log)
        .unwrap_or_else(|e| panic!("{e:?}:\n{log}"))
}

fn attr(ty: ProgType, src: &str) -> ProgLoadAttr {
    ProgLoadAttr::new(ty, insns(src), "GPL")
}

const RET0: &str = "r0 = 0\nexit";

/// A 64-byte Ethernet + IPv4 + UDP packet.
fn packet() -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    p[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    p[14] = 0x45;
    p[16..18].copy_from_slice(&50u16.to_be_bytes());
    p[22] = 64;
    p[23] = 17;
    p[26..30].copy_from_slice(&[10, 0, 0, 1]);
    p[30..34].copy_from_slice(&[10, 0, 0, 2]);
    for (i, b) in p.iter_mut().enumerate().skip(42) {
        *b = i as u8;
    }
    p
}

#[test]
fn ids_info_tag_and_lookup_by_id() {
    let rt = rt();
    let p = load(&rt, ProgType::SOCKET_FILTER, RET0);
    let q = load(&rt, ProgType::XDP, "r0 = 2\nexit");
    assert_eq!((p.id(), q.id()), (1, 2));
    assert_eq!(rt.get_next_id(ObjKind::Prog, 0), Ok(1));
    assert_eq!(rt.get_next_id(ObjKind::Prog, 1), Ok(2));
    assert_eq!(rt.get_next_id(ObjKind::Prog, 2), Err(Errno::ENOENT));
    let info = rt.prog_info(&p);
    assert_eq!(info.prog_type, ProgType::SOCKET_FILTER.0);
    assert_eq!(info.name, "t");
    assert_eq!(info.xlated_insn_cnt(), 2);
    assert!(info.gpl_compatible);
    assert!(info.verified);
    assert_eq!(info.verified_insns, 2, "processed instructions");
    assert!(info.load_time > 0);
    // The kernel's tag of `r0 = 0; exit` (bpftool prog show: tag a04f5eef06a7f555).
    assert_eq!(info.tag_hex(), "a04f5eef06a7f555");
    let fd = rt.fd_install(q.clone()).unwrap();
    match rt.obj_get_info(fd) {
        Ok(ObjInfo::Prog(i)) => assert_eq!(i.id, q.id()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(rt.fd_get(fd), Ok(FdObject::Prog(_))));
    assert_eq!(rt.prog_get_fd_by_id(2).unwrap().id(), 2);
    drop(q);
    rt.fd_close(fd).unwrap();
    assert_eq!(rt.prog_get_fd_by_id(2).err(), Some(Errno::ENOENT));
    rt.set_caps(Capabilities::BPF);
    assert_eq!(rt.prog_get_fd_by_id(1).err(), Some(Errno::EPERM));
}

#[test]
fn load_attribute_errnos() {
    let rt = rt();
    let sf = ProgType::SOCKET_FILTER;
    let e = |a: ProgLoadAttr| rt.prog_load(&a).err();
    assert_eq!(e(ProgLoadAttr::new(sf, vec![], "GPL")), Some(Errno::E2BIG));
    assert_eq!(e(attr(sf, RET0).flags(1 << 10)), Some(Errno::EINVAL));
    assert_eq!(e(attr(ProgType(0), RET0)), Some(Errno::EINVAL));
    assert_eq!(e(attr(ProgType(99), RET0)), Some(Errno::EINVAL));
    assert_eq!(e(attr(ProgType::LIRC_MODE2, RET0)), Some(Errno::EINVAL));
    let mut bad_name = attr(sf, RET0);
    bad_name.prog_name = *b"bad name\0\0\0\0\0\0\0\0";
    assert_eq!(e(bad_name), Some(Errno::EINVAL));
    let mut no_nul = attr(sf, RET0);
    no_nul.prog_name = [b'a'; 16];
    assert_eq!(e(no_nul), Some(Errno::EINVAL));
    let mut ifindex = attr(ProgType::XDP, RET0);
    ifindex.prog_ifindex = 1;
    assert_eq!(e(ifindex), Some(Errno::EINVAL));
    assert_eq!(
        e(attr(ProgType::CGROUP_SKB, RET0).expected_attach_type(AttachType::XDP)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(attr(sf, RET0).flags(BPF_F_SLEEPABLE)),
        Some(Errno::EINVAL)
    );
    // A btf id for a type that takes none, and one without a host BTF.
    let mut btf_id = attr(sf, RET0);
    btf_id.attach_btf_id = 1;
    assert_eq!(e(btf_id), Some(Errno::EINVAL));
    // Structure: falling through the end, jumping out, a bad opcode.
    assert_eq!(e(attr(sf, "r0 = 0")), Some(Errno::EINVAL));
    assert_eq!(e(attr(sf, "goto pc+5\nexit")), Some(Errno::EINVAL));
    let mut bad = insns(RET0);
    bad[0].code = 0xff;
    assert_eq!(e(ProgLoadAttr::new(sf, bad, "GPL")), Some(Errno::EINVAL));
    // Into the second slot of an ld_imm64.
    assert_eq!(
        e(attr(sf, "if r1 == 0 goto pc+1\nr0 = 0x100000000\nexit")),
        Some(Errno::EINVAL)
    );
    // A call to a subprogram outside the program.
    assert_eq!(e(attr(sf, "call pc+10\nexit")), Some(Errno::EINVAL));
}

#[test]
fn capabilities_and_instruction_limits() {
    let rt = Runtime::new(RuntimeConfig {
        caps: Capabilities::NONE,
        unprivileged_bpf_disabled: false,
        ..RuntimeConfig::default()
    });
    let sf = ProgType::SOCKET_FILTER;
    assert!(
        rt.prog_load(&attr(sf, RET0)).is_ok(),
        "socket filters are unprivileged"
    );
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, RET0)).err(),
        Some(Errno::EPERM)
    );
    let mut long = vec![Insn::new(0xb7, 0, 0, 0, 0); BPF_MAXINSNS as usize];
    long.push(Insn::new(0x95, 0, 0, 0, 0));
    assert_eq!(
        rt.prog_load(&ProgLoadAttr::new(sf, long.clone(), "GPL"))
            .err(),
        Some(Errno::E2BIG)
    );
    // bpf-to-bpf calls need CAP_BPF.
    assert_eq!(
        rt.prog_load(&attr(sf, "call f\nexit\nf:\nr0 = 1\nexit"))
            .err(),
        Some(Errno::EPERM)
    );
    rt.set_caps(Capabilities::BPF);
    assert!(rt.prog_load(&ProgLoadAttr::new(sf, long, "GPL")).is_ok());
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, RET0)).err(),
        Some(Errno::EPERM),
        "XDP needs CAP_NET_ADMIN"
    );
    let disabled = Runtime::new(RuntimeConfig {
        caps: Capabilities::NONE,
        ..RuntimeConfig::default()
    });
    assert_eq!(
        disabled.prog_load(&attr(sf, RET0)).err(),
        Some(Errno::EPERM)
    );
}

#[test]
fn license_decides_gpl_compatibility() {
    let rt = rt();
    for (l, gpl) in [
        ("GPL", true),
        ("Dual MIT/GPL", true),
        ("MIT", false),
        ("", false),
    ] {
        let p = rt
            .prog_load(&ProgLoadAttr::new(ProgType::SOCKET_FILTER, insns(RET0), l))
            .unwrap();
        assert_eq!(p.gpl_compatible(), gpl, "{l:?}");
    }
}

#[test]
fn map_references_are_resolved_and_held() {
    let rt = rt();
    let arr = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1).name("data"))
        .unwrap();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 4))
        .unwrap();
    let afd = rt.fd_install(arr.clone()).unwrap();
    let hfd = rt.fd_install(hash.clone()).unwrap();
    let src =
        format!("r1 = map[id:{hfd}]\nr2 = map[id:{afd}][0]+4\nr3 = map[id:{hfd}]\nr0 = 0\nexit");
    let p = load(&rt, ProgType::SOCKET_FILTER, &src);
    assert_eq!(rt.prog_info(&p).map_ids, vec![hash.id(), arr.id()]);
    let x = p.xlated_insns();
    let addr = |i: usize| u64::from(x[i].imm as u32) | u64::from(x[i + 1].imm as u32) << 32;
    assert_eq!(addr(0), Arc::as_ptr(hash.object()) as u64);
    assert_eq!(addr(2), arr.direct_value_addr(4).unwrap().as_ptr() as u64);
    assert_eq!(x[0].src_reg(), 0, "xlated loads are plain constants");
    let dump = p.xlated_insns_dump();
    assert_eq!((dump[0].src_reg(), dump[0].imm), (1, hash.id() as i32));
    assert_eq!(
        (dump[2].src_reg(), dump[2].imm, dump[3].imm),
        (2, arr.id() as i32, 4)
    );
    // The program keeps the maps alive after every user reference is gone.
    let hid = hash.id();
    drop(hash);
    rt.fd_close(hfd).unwrap();
    assert!(rt.map_get_fd_by_id(hid, 0).is_ok());
    drop(p);
    assert_eq!(rt.map_get_fd_by_id(hid, 0).err(), Some(Errno::ENOENT));

    let sf = ProgType::SOCKET_FILTER;
    let e = |s: String| rt.prog_load(&attr(sf, &s)).err();
    assert_eq!(
        e("r1 = map[id:99]\nr0 = 0\nexit".into()),
        Some(Errno::EBADF)
    );
    let pfd = rt.fd_install(load(&rt, sf, RET0)).unwrap();
    assert_eq!(
        e(format!("r1 = map[id:{pfd}]\nr0 = 0\nexit")),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(format!("r1 = map[id:{afd}][0]+8\nr0 = 0\nexit")),
        Some(Errno::EINVAL)
    );
    let big = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 2))
        .unwrap();
    let bfd = rt.fd_install(big).unwrap();
    assert_eq!(
        e(format!("r1 = map[id:{bfd}][0]+0\nr0 = 0\nexit")),
        Some(Errno::ENOTSUPP),
        "direct value access needs a single-element array"
    );
    assert_eq!(
        e("r1 = map[idx:0]\nr0 = 0\nexit".into()),
        Some(Errno::EPROTO)
    );
    let mut with_array = attr(sf, "r1 = map[idx:1]\nr0 = 0\nexit");
    with_array.fd_array = Some(vec![99, afd]);
    let p = rt.prog_load(&with_array).unwrap();
    assert_eq!(rt.prog_info(&p).map_ids, vec![arr.id()]);
    with_array.fd_array = Some(vec![afd]);
    assert_eq!(rt.prog_load(&with_array).err(), Some(Errno::EFAULT));
    // Sleepable programs may not use program arrays.
    let pa = rt
        .map_create(&MapCreateAttr::new(MapType::ProgArray, 4, 4, 1))
        .unwrap();
    let pafd = rt.fd_install(pa).unwrap();
    let mut sl = attr(ProgType::LSM, &format!("r1 = map[id:{pafd}]\nr0 = 0\nexit"));
    sl.prog_flags = BPF_F_SLEEPABLE;
    assert_eq!(rt.prog_load(&sl).err(), Some(Errno::EINVAL));
}

/// An ops type whose tables the host never takes: enough for programs to load and run
/// with `prog_test_run`.
struct TestRunOnlyOps;

impl StructOps for TestRunOnlyOps {
    fn reg(&self, _: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        Err(Errno::EOPNOTSUPP)
    }

    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {}
}

fn host_btf(rt: &Runtime) -> (u32, u32) {
    // struct ops { int (*add)(int, int); int x; }; int host_twice(int);
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[("a", int), ("b", int)]);
    let ptr = b.add_ptr(proto);
    let ops = b.add_struct("ops", 16, &[("add", ptr, 0), ("x", int, 64)]);
    add_value_type(&mut b, ops, "ops").unwrap();
    let kproto = b.add_func_proto(int, &[("x", int)]);
    let kf = b.add_func("host_twice", kproto, Linkage::Global);
    rt.register_host_btf(b.build()).unwrap();
    (ops, kf)
}

fn struct_ops_attach_checks_and_test_run() {
    let rt = rt();
    let st = ProgType::STRUCT_OPS;
    let mut a = attr(
        st,
        "r0 = *(u64 *)(r1 +0)\nr2 = *(u64 *)(r1 +8)\nr0 += r2\nexit",
    );
    a.attach_btf_id = 1;
    assert_eq!(rt.prog_load(&a).err(), Some(Errno::EINVAL), "no host BTF");
    let (ops, _) = host_btf(&rt);
    a.attach_btf_id = ops;
    // A struct no ops type registered is refused, as the kernel refuses it.
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&a, &mut log).err(),
        Some(Errno::ENOTSUPP)
    );
    assert_eq!(
        log,
        format!("attach_btf_id {ops} is not a supported struct\n")
    );
    rt.register_struct_ops(StructOpsDesc::new("ops", Arc::new(TestRunOnlyOps)))
        .unwrap();
    let mut not_gpl = a.clone();
    not_gpl.license = "MIT".into();
    assert_eq!(rt.prog_load(&not_gpl).err(), Some(Errno::EINVAL));
    let mut member = a.clone();
    member.expected_attach_type = 1;
    assert_eq!(
        rt.prog_load(&member).err(),
        Some(Errno::EINVAL),
        "not a func ptr"
    );
    member.expected_attach_type = 2;
    assert_eq!(
        rt.prog_load(&member).err(),
        Some(Errno::EINVAL),
        "no such member"
    );
    let mut not_struct = a.clone();
    not_struct.attach_btf_id = 1;
    assert_eq!(rt.prog_load(&not_struct).err(), Some(Errno::ENOTSUPP));
    let p = must_load(&rt, &a);
    assert_ne!(p.attach_func_proto(), 0);
    let mut t = TestRun::with_args(&[40, 2]);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 42);
    assert_eq!(
        run(&rt, &p, &mut TestRun::with_args(&[1])),
        Err(Errno::EINVAL),
        "one u64 per argument"
    );
    // Arguments are read-only context: the verifier refuses the write, and a checked
    // run of the unverified program traps it.
    let mut w = a.clone();
    w.insns = insns("*(u64 *)(r1 +0) = 1\nr0 = 0\nexit");
    assert_eq!(rt.prog_load(&w).err(), Some(Errno::EACCES));
    rt.set_run_unverified(true);
    let p = rt.prog_load(&w).unwrap();
    assert!(!p.is_verified());
    let mut t = TestRun::with_args(&[1, 2]);
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    assert!(matches!(t.fault, Some(RunFault::Vm(_))), "{:?}", t.fault);
}

/// A host BTF with the kernel's map structs, reduced to some fields at the kernel's
/// 6.18 offsets: `struct bpf_map { const struct bpf_map_ops *ops; ...; enum bpf_map_type
/// map_type @24; u32 key_size @28; u32 value_size @32; u32 max_entries @36; u64 map_extra
/// @40; u32 map_flags @48; u32 id @52; ...; char name[16] @96; }` (size 128), `struct
/// bpf_array { struct bpf_map map; u32 elem_size; u32 index_mask; }`, `struct bpf_htab {
/// struct bpf_map map; }`.
fn map_struct_btf(rt: &Runtime) {
    let mut b = BtfBuilder::new();
    let u32t = b.add_int("u32", 4, 0);
    let u64t = b.add_int("u64", 8, 0);
    let chr = b.add_int("char", 1, INT_SIGNED);
    let name = b.add_array(chr, u32t, 16);
    let ops = b.add_struct("bpf_map_ops", 8, &[("map_alloc_check", u64t, 0)]);
    let ops_ptr = b.add_ptr(ops);
    let map = b.add_struct(
        "bpf_map",
        128,
        &[
            ("ops", ops_ptr, 0),
            ("map_type", u32t, 24 * 8),
            ("key_size", u32t, 28 * 8),
            ("value_size", u32t, 32 * 8),
            ("max_entries", u32t, 36 * 8),
            ("map_extra", u64t, 40 * 8),
            ("map_flags", u32t, 48 * 8),
            ("id", u32t, 52 * 8),
            ("name", name, 96 * 8),
        ],
    );
    b.add_struct(
        "bpf_array",
        136,
        &[
            ("map", map, 0),
            ("elem_size", u32t, 128 * 8),
            ("index_mask", u32t, 132 * 8),
        ],
    );
    b.add_struct("bpf_htab", 128, &[("map", map, 0)]);
    rt.register_host_btf(b.build()).unwrap();
}

#[test]
fn map_pointer_reads_give_the_maps_values() {
    let rt = rt();
    map_struct_btf(&rt);
    let arr = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 12, 5).name("sizes"))
        .unwrap();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 4, 1000))
        .unwrap();
    let afd = rt.fd_install(arr.clone()).unwrap();
    let hfd = rt.fd_install(hash.clone()).unwrap();
    // (field read, value the kernel's struct holds)
    let cases: [(String, u64); 8] = [
        (format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +36)"), 5),
        (format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +32)"), 12),
        (format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +24)"), 2),
        (
            format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +52)"),
            u64::from(arr.id()),
        ),
        // elem_size rounds up to 8; index_mask covers the next power of two.
        (format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +128)"), 16),
        (format!("r1 = map[id:{afd}]\nr0 = *(u32 *)(r1 +132)"), 7),
        // The first bytes of the name; a hash map's struct.
        (
            format!("r1 = map[id:{afd}]\nr0 = *(u16 *)(r1 +96)"),
            u64::from(u16::from_le_bytes(*b"si")),
        ),
        (format!("r1 = map[id:{hfd}]\nr0 = *(u32 *)(r1 +36)"), 1000),
    ];
    for (src, want) in cases {
        let p = load(&rt, ProgType::SOCKET_FILTER, &format!("{src}\nexit"));
        // The load became a move: no instruction reads the runtime's map object.
        assert!(
            p.xlated_insns().iter().all(|i| i.code & 0x07 != 0x01),
            "{src}: {:?}",
            p.xlated_insns()
        );
        for mode in [RunMode::Checked, RunMode::Unchecked] {
            let mut t = TestRun::with_data(&packet());
            t.mode = mode;
            rt.prog_test_run(&p, &mut t).unwrap();
            assert_eq!(u64::from(t.retval), want & 0xffff_ffff, "{src} {mode:?}");
        }
    }
    // The ops pointer: the runtime has no kernel object behind it, so it reads as 0.
    let p = load(
        &rt,
        ProgType::SOCKET_FILTER,
        &format!("r1 = map[id:{afd}]\nr0 = *(u64 *)(r1 +0)\nexit"),
    );
    let mut t = TestRun::with_data(&packet());
    rt.prog_test_run(&p, &mut t).unwrap();
    assert_eq!(t.retval, 0);
    // Writes are the verifier's to refuse.
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(
            &attr(
                ProgType::SOCKET_FILTER,
                &format!("r1 = map[id:{afd}]\nr2 = 1\n*(u32 *)(r1 +36) = r2\nr0 = 0\nexit")
            ),
            &mut log
        )
        .err(),
        Some(Errno::EACCES)
    );
    assert!(
        log.contains("only read from bpf_array is supported"),
        "{log}"
    );
    // Different maps on different paths: no single value to give the load.
    let src = format!(
        "call bpf_get_prandom_u32\nr1 = map[id:{afd}]\nif r0 == 0 goto l\nr1 = map[id:{hfd}]\nl:\nr0 = *(u32 *)(r1 +36)\nexit"
    );
    let mut log = String::new();
    let e = rt.prog_load_with_log(&attr(ProgType::SOCKET_FILTER, &src), &mut log);
    assert_eq!(e.err(), Some(Errno::EINVAL), "{log}");
    assert!(log.contains("map pointer read at insn"), "{log}");
}

#[test]
fn unverified_programs_run_only_when_allowed() {
    // `egress_ifindex` is for devmap programs only: the verifier refuses the read,
    // though the byte is inside the context a run grants.
    let src = "r0 = *(u32 *)(r1 +20)\nr0 = 2\nexit";
    let rt = Runtime::default();
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(&attr(ProgType::XDP, src), &mut log)
            .err(),
        Some(Errno::EACCES)
    );
    assert_eq!(log, "invalid bpf_context access off=20 size=4\n");
    rt.set_run_unverified(true);
    let p = rt.prog_load(&attr(ProgType::XDP, src)).unwrap();
    assert!(!p.is_verified());
    assert_eq!(
        p.rejection().map(|e| e.message.as_str()),
        Some("invalid bpf_context access off=20 size=4")
    );
    assert_eq!(rt.prog_info(&p).verified_insns, 0);
    let mut t = TestRun::with_data(&packet());
    t.mode = RunMode::Unchecked;
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EACCES), "never unchecked");
    t.mode = RunMode::Auto;
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 2);
    rt.set_run_unverified(false);
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EACCES), "switched off");
    // A verified program runs in every mode.
    let v = rt.prog_load(&attr(ProgType::XDP, "r0 = 2\nexit")).unwrap();
    for mode in [RunMode::Auto, RunMode::Checked, RunMode::Unchecked] {
        let mut t = TestRun::with_data(&packet());
        t.mode = mode;
        run(&rt, &v, &mut t).unwrap();
        assert_eq!(t.retval, 2, "{mode:?}");
    }
}

#[test]
fn func_and_line_info_checks() {
    let rt = rt();
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[]);
    let main = b.add_func("main", proto, Linkage::Global);
    let sub = b.add_func("sub", proto, Linkage::Static);
    let file = b.add_string("x.c");
    let line = b.add_string("return 0;");
    let btf = rt.btf_load(&b.encode()).unwrap();
    let fd = rt.fd_install(btf).unwrap();
    let src = "call sub\nexit\nsub:\nr0 = 0\nexit";
    let fi = |offs: &[(u32, u32)]| {
        offs.iter()
            .map(|&(insn_off, type_id)| FuncInfo { insn_off, type_id })
            .collect::<Vec<_>>()
    };
    let li = |offs: &[u32]| {
        offs.iter()
            .map(|&insn_off| LineInfo {
                insn_off,
                file_name_off: file,
                line_off: line,
                line_col: 1 << 10,
            })
            .collect::<Vec<_>>()
    };
    let sf = ProgType::SOCKET_FILTER;
    let ok = attr(sf, src)
        .func_info(fd, &fi(&[(0, main), (2, sub)]))
        .line_info(fd, &li(&[0, 2]));
    let p = must_load(&rt, &ok);
    let info = rt.prog_info(&p);
    assert_eq!((info.nr_func_info, info.nr_line_info), (2, 2));
    assert_ne!(info.btf_id, 0);
    let e = |a: ProgLoadAttr| rt.prog_load(&a).err();
    assert_eq!(
        e(attr(sf, src).func_info(fd, &fi(&[(0, main)]))),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(attr(sf, src).func_info(fd, &fi(&[(1, main), (2, sub)]))),
        Some(Errno::EINVAL),
        "first record at 0"
    );
    assert_eq!(
        e(attr(sf, src).func_info(fd, &fi(&[(0, main), (2, int)]))),
        Some(Errno::EINVAL),
        "not a FUNC"
    );
    let mut rec = ok.clone();
    rec.func_info_rec_size = 4;
    assert_eq!(e(rec), Some(Errno::EINVAL));
    let mut tail = ok.clone();
    tail.func_info_rec_size = 12;
    tail.func_info = vec![0; 24];
    tail.func_info[8] = 1;
    assert_eq!(e(tail), Some(Errno::E2BIG));
    let mut short = ok.clone();
    short.func_info.truncate(8);
    assert_eq!(e(short), Some(Errno::EFAULT));
    assert_eq!(
        e(attr(sf, src)
            .func_info(fd, &fi(&[(0, main), (2, sub)]))
            .line_info(fd, &li(&[0]))),
        Some(Errno::EINVAL),
        "missing line info for the subprogram"
    );
    let mut badfd = ok.clone();
    badfd.prog_btf_fd = 77;
    assert_eq!(e(badfd), Some(Errno::EBADF));
    let vm = rt.register_host_btf(BtfBuilder::new().build()).unwrap();
    let vfd = rt.fd_install(vm).unwrap();
    let mut kernel = ok.clone();
    kernel.prog_btf_fd = vfd;
    assert_eq!(e(kernel), Some(Errno::EACCES));
    // Without BTF, subprograms may not tail call.
    assert_eq!(
        e(attr(
            sf,
            "call sub\nexit\nsub:\nr1 = 0\nr2 = 0\nr3 = 0\ncall bpf_tail_call\nr0 = 0\nexit"
        )),
        Some(Errno::EINVAL)
    );
}

fn prog_array_updates_and_tail_calls() {
    let rt = rt();
    let pa = rt
        .map_create(&MapCreateAttr::new(MapType::ProgArray, 4, 4, 4))
        .unwrap();
    let pafd = rt.fd_install(pa.clone()).unwrap();
    let target = load(&rt, ProgType::XDP, "r0 = 3\nexit");
    let tfd = rt.fd_install(target.clone()).unwrap();
    let k = |i: u32| i.to_ne_bytes();
    rt.map_update_elem(&pa, Some(&k(1)), &tfd.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let mut v = [0u8; 4];
    rt.map_lookup_elem(&pa, Some(&k(1)), &mut v, 0).unwrap();
    assert_eq!(
        u32::from_ne_bytes(v),
        target.id(),
        "lookups return the program id"
    );
    // The owner is XDP now: a socket filter does not fit, nor does a map fd.
    let sf = load(&rt, ProgType::SOCKET_FILTER, RET0);
    let sffd = rt.fd_install(sf).unwrap();
    assert_eq!(
        rt.map_update_elem(&pa, Some(&k(0)), &sffd.to_ne_bytes(), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        rt.map_update_elem(&pa, Some(&k(0)), &pafd.to_ne_bytes(), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        rt.map_update_elem(&pa, Some(&k(0)), &99u32.to_ne_bytes(), BPF_ANY),
        Err(Errno::EBADF)
    );
    // Loading a program of another type that uses the array fails.
    let user = format!("r2 = map[id:{pafd}]\nr0 = 0\nexit");
    assert_eq!(
        rt.prog_load(&attr(ProgType::SCHED_CLS, &user)).err(),
        Some(Errno::EINVAL)
    );
    // Tail calls: an empty slot falls through; slot 1 runs `target`.
    let caller = |idx: u32| {
        format!("r6 = r1\nr2 = map[id:{pafd}]\nr3 = {idx}\ncall bpf_tail_call\nr0 = 7\nexit")
    };
    for (idx, want) in [(0, 7), (1, 3), (9, 7)] {
        let p = load(&rt, ProgType::XDP, &caller(idx));
        let mut t = TestRun::with_data(&packet());
        run(&rt, &p, &mut t).unwrap();
        assert_eq!(t.retval, want, "index {idx}");
    }
    // Deleting the slot, and the last user reference, clear the program.
    rt.map_delete_elem(&pa, Some(&k(1))).unwrap();
    assert_eq!(rt.map_delete_elem(&pa, Some(&k(1))), Err(Errno::ENOENT));
}

fn xdp_test_run_semantics() {
    let rt = rt();
    let pkt = packet();
    // Swap the MAC addresses and return XDP_TX.
    let swap = "
        r2 = *(u32 *)(r1 +0)
        r3 = *(u32 *)(r1 +4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto drop
        r5 = *(u32 *)(r2 +0)
        r6 = *(u16 *)(r2 +4)
        r7 = *(u32 *)(r2 +6)
        r8 = *(u16 *)(r2 +10)
        *(u32 *)(r2 +0) = r7
        *(u16 *)(r2 +4) = r8
        *(u32 *)(r2 +6) = r5
        *(u16 *)(r2 +10) = r6
        r0 = 3
        exit
    drop:
        r0 = 1
        exit
    ";
    let p = load(&rt, ProgType::XDP, swap);
    let mut t = TestRun::with_data(&pkt);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 3);
    let out = t.data_out.clone().unwrap();
    assert_eq!(out.len(), pkt.len());
    assert_eq!(&out[0..6], &pkt[6..12]);
    assert_eq!(&out[6..12], &pkt[0..6]);
    assert_eq!(&out[12..], &pkt[12..]);
    assert_eq!(t.data_size_out, pkt.len() as u32);
    // repeat: the same buffer every time (an even number of swaps restores it).
    let mut t = TestRun::with_data(&pkt);
    t.repeat = 4;
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.data_out.unwrap(), pkt);
    // A size hint smaller than the output: truncated copy, full size, ENOSPC.
    let mut t = TestRun::with_data(&pkt);
    t.data_size_out = 10;
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::ENOSPC));
    assert_eq!(t.data_out.as_ref().map(Vec::len), Some(10));
    assert_eq!((t.data_size_out, t.retval), (pkt.len() as u32, 3));
    // Too short, flags, batch size.
    let e = |mut t: TestRun| run(&rt, &p, &mut t).err();
    assert_eq!(e(TestRun::with_data(&pkt[..13])), Some(Errno::EINVAL));
    assert_eq!(
        e(TestRun {
            flags: 1 << 0,
            ..TestRun::with_data(&pkt)
        }),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(TestRun {
            batch_size: 1,
            ..TestRun::with_data(&pkt)
        }),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(TestRun {
            ctx_in: Some(vec![]),
            ..TestRun::with_data(&pkt)
        }),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        e(TestRun::with_data(&vec![0u8; 4000])),
        Some(Errno::EOPNOTSUPP),
        "frags"
    );
}

fn xdp_ctx_in_meta_and_adjust_helpers() {
    let rt = rt();
    let pkt = packet();
    // Read ingress_ifindex and rx_queue_index; grow the head by 8 and write there.
    let src = "
        r6 = r1
        r0 = *(u32 *)(r6 +12)
        r7 = r0
        r1 = r6
        r2 = -8
        call bpf_xdp_adjust_head
        if r0 != 0 goto out
        r2 = *(u32 *)(r6 +0)
        r3 = *(u32 *)(r6 +4)
        r4 = r2
        r4 += 8
        if r4 > r3 goto out
        r5 = 0x1122334455667788
        *(u64 *)(r2 +0) = r5
        r0 = r7
        exit
    out:
        r0 = 99
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&pkt);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 1, "ingress_ifindex of loopback");
    let out = t.data_out.unwrap();
    assert_eq!(out.len(), pkt.len() + 8);
    assert_eq!(&out[..8], &0x1122334455667788u64.to_ne_bytes());
    assert_eq!(&out[8..], &pkt[..]);

    // Shrinking past the headroom fails with EINVAL.
    let src = format!(
        "r2 = -{}\ncall bpf_xdp_adjust_head\nexit",
        XDP_PACKET_HEADROOM
    );
    let p = load(&rt, ProgType::XDP, &src);
    let mut t = TestRun::with_data(&pkt);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval as i32, -22);

    // adjust_tail grows the packet with zeros; adjust_meta makes room for metadata.
    let src = "
        r6 = r1
        r2 = 6
        call bpf_xdp_adjust_tail
        if r0 != 0 goto out
        r1 = r6
        r2 = -4
        call bpf_xdp_adjust_meta
        if r0 != 0 goto out
        r2 = *(u32 *)(r6 +8)
        r3 = *(u32 *)(r6 +0)
        r4 = r2
        r4 += 4
        if r4 > r3 goto out
        *(u32 *)(r2 +0) = 0x77
        r1 = r6
        r2 = 3
        call bpf_xdp_adjust_meta
        exit
    out:
        r0 = 99
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
    let mut t = TestRun {
        ctx_in: Some(md.to_vec()),
        ctx_out: Some(vec![]),
        ctx_size_out: 24,
        ..TestRun::with_data(&pkt)
    };
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(
        t.retval as i32, -13,
        "metadata length not a multiple of 4: EACCES"
    );
    let out = t.data_out.clone().unwrap();
    assert_eq!(out.len(), 4 + pkt.len() + 6, "data_out starts at data_meta");
    assert_eq!(&out[..4], &0x77u32.to_ne_bytes());
    assert_eq!(&out[4..4 + pkt.len()], &pkt[..]);
    assert_eq!(&out[4 + pkt.len()..], &[0; 6]);
    let ctx = t.ctx_out.unwrap();
    assert_eq!(u32::from_ne_bytes(ctx[0..4].try_into().unwrap()), 4, "data");
    assert_eq!(
        u32::from_ne_bytes(ctx[4..8].try_into().unwrap()),
        4 + pkt.len() as u32 + 6,
        "data_end"
    );

    // ctx_in checks.
    let e = |md: [u8; 24]| {
        let mut t = TestRun {
            ctx_in: Some(md.to_vec()),
            ..TestRun::with_data(&pkt)
        };
        run(&rt, &p, &mut t).err()
    };
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&(pkt.len() as u32 + 1).to_ne_bytes());
    assert_eq!(e(md), Some(Errno::EINVAL), "data_end past data_size_in");
    md[4..8].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
    md[0..4].copy_from_slice(&3u32.to_ne_bytes());
    assert_eq!(e(md), Some(Errno::EINVAL), "metadata not a multiple of 4");
    md[0..4].copy_from_slice(&0u32.to_ne_bytes());
    md[12..16].copy_from_slice(&5u32.to_ne_bytes());
    assert_eq!(e(md), Some(Errno::ENODEV));
    md[12..16].copy_from_slice(&0u32.to_ne_bytes());
    md[16..20].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(e(md), Some(Errno::EINVAL), "queue without device");
    md[16..20].copy_from_slice(&0u32.to_ne_bytes());
    md[20..24].copy_from_slice(&1u32.to_ne_bytes());
    assert_eq!(e(md), Some(Errno::EINVAL), "egress_ifindex");
    let mut t = TestRun {
        ctx_in: Some([[0u8; 24].as_slice(), &[1]].concat()),
        ..TestRun::with_data(&pkt)
    };
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::E2BIG));
}

#[test]
fn checked_runs_trap_out_of_bounds_packet_access() {
    // Both programs break the verifier's rules (EACCES at load); loaded anyway, their
    // checked runs trap.
    let rt = rt_unverified();
    // Reads 8 bytes past data_end without a bounds check.
    let p = load(
        &rt,
        ProgType::XDP,
        "r2 = *(u32 *)(r1 +4)\nr0 = *(u64 *)(r2 +0)\nexit",
    );
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    assert!(matches!(t.fault, Some(RunFault::Vm(_))));
    // The context is read-only for XDP.
    let p = load(&rt, ProgType::XDP, "*(u32 *)(r1 +0) = 0\nr0 = 0\nexit");
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
}

fn skb_test_runs() {
    let rt = rt();
    let pkt = packet();
    // Socket filter: len, protocol, pkt_type, ifindex; LD_ABS reads from the IP header.
    let src = "
        r6 = r1
        r0 = *(u32 *)(r6 +0)
        r2 = *(u32 *)(r6 +16)
        if r2 != 8 goto bad
        r2 = *(u32 *)(r6 +4)
        if r2 != 3 goto bad
        r2 = *(u32 *)(r6 +40)
        if r2 != 1 goto bad
        r0 = *(u8 *)skb[9]
        if r0 != 17 goto bad
        r0 = *(u32 *)skb[12]
        if r0 != 0x0a000001 goto bad
        r0 = *(u32 *)(r6 +0)
        exit
    bad:
        r0 = 1000
        exit
    ";
    let p = load(&rt, ProgType::SOCKET_FILTER, src);
    let mut t = TestRun::with_data(&pkt);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(
        t.retval,
        pkt.len() as u32 - 14,
        "len counts from the network header"
    );
    let out = t.data_out.unwrap();
    assert_eq!(
        &out[..14],
        &[0; 14],
        "the Ethernet header comes back zeroed"
    );
    assert_eq!(&out[14..], &pkt[14..]);
    // Past the packet end: the program returns 0.
    let p = load(
        &rt,
        ProgType::SOCKET_FILTER,
        "r6 = r1\nr0 = *(u32 *)skb[1000]\nr0 = 5\nexit",
    );
    let mut t = TestRun::with_data(&pkt);
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 0);

    // tc: direct packet access from the MAC header, mark and cb written back to ctx_out.
    let src = "
        r2 = *(u32 *)(r1 +76)
        r3 = *(u32 *)(r1 +80)
        r4 = r2
        r4 += 14
        if r4 > r3 goto out
        r5 = *(u8 *)(r2 +12)
        *(u32 *)(r1 +8) = r5
        r5 = *(u32 *)(r1 +48)
        r5 += 1
        *(u32 *)(r1 +48) = r5
        *(u8 *)(r2 +0) = 0xaa
        r0 = *(u32 *)(r1 +0)
        exit
    out:
        r0 = 2
        exit
    ";
    let p = load(&rt, ProgType::SCHED_CLS, src);
    let mut ctx = [0u8; 192];
    ctx[48..52].copy_from_slice(&41u32.to_ne_bytes());
    let mut t = TestRun {
        ctx_in: Some(ctx.to_vec()),
        ctx_out: Some(vec![]),
        ctx_size_out: 192,
        ..TestRun::with_data(&pkt)
    };
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, pkt.len() as u32);
    let out = t.data_out.unwrap();
    assert_eq!(out[0], 0xaa);
    assert_eq!(&out[1..], &pkt[1..]);
    let c = t.ctx_out.unwrap();
    let w = |o: usize| u32::from_ne_bytes(c[o..o + 4].try_into().unwrap());
    assert_eq!(
        (w(8), w(48), w(40), w(0)),
        (8, 42, 1, 0),
        "mark, cb[0], ifindex, len"
    );
    // Fields a test may not set.
    let mut bad = [0u8; 192];
    bad[0] = 1;
    let mut t = TestRun {
        ctx_in: Some(bad.to_vec()),
        ..TestRun::with_data(&pkt)
    };
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EINVAL));
    let mut dev = [0u8; 192];
    dev[40] = 7;
    let mut t = TestRun {
        ctx_in: Some(dev.to_vec()),
        ..TestRun::with_data(&pkt)
    };
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::ENODEV));
    // An IPv4 frame too short for the header.
    let mut short = pkt[..20].to_vec();
    short[12..14].copy_from_slice(&[8, 0]);
    assert_eq!(
        run(&rt, &p, &mut TestRun::with_data(&short)),
        Err(Errno::EINVAL)
    );
    // Programs without a test run.
    let kp = load(&rt, ProgType::KPROBE, RET0);
    assert_eq!(
        run(&rt, &kp, &mut TestRun::with_data(&pkt)),
        Err(Errno::ENOTSUPP)
    );
}

fn map_helpers_from_programs() {
    let rt = rt();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 8))
        .unwrap();
    let ro = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1).flags(BPF_F_RDONLY_PROG))
        .unwrap();
    let hfd = rt.fd_install(hash.clone()).unwrap();
    let rofd = rt.fd_install(ro.clone()).unwrap();
    rt.map_update_elem(&ro, Some(&0u32.to_ne_bytes()), &5u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    // counts[7] += ro[0] (creating it), then returns the count.
    let src = format!(
        "
        *(u32 *)(r10 -4) = 7
        r1 = map[id:{hfd}]
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 != 0 goto found
        *(u64 *)(r10 -16) = 0
        r1 = map[id:{hfd}]
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1
        call bpf_map_update_elem
        r1 = map[id:{hfd}]
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto fail
    found:
        r6 = r0
        r1 = map[id:{rofd}][0]+0
        r2 = *(u64 *)(r1 +0)
        r3 = *(u64 *)(r6 +0)
        r3 += r2
        *(u64 *)(r6 +0) = r3
        r0 = r3
        exit
    fail:
        r0 = 0
        exit
    "
    );
    let p = load(&rt, ProgType::XDP, &src);
    for want in [5, 10, 15] {
        let mut t = TestRun::with_data(&packet());
        run(&rt, &p, &mut t).unwrap();
        assert_eq!(t.retval, want);
    }
    let mut v = [0u8; 8];
    rt.map_lookup_elem(&hash, Some(&7u32.to_ne_bytes()), &mut v, 0)
        .unwrap();
    assert_eq!(u64::from_ne_bytes(v), 15);
    // The read-only map is not writable from the program: the verifier refuses the
    // store, and a checked run of the program loaded unverified traps it.
    let w = format!("r1 = map[id:{rofd}][0]+0\n*(u64 *)(r1 +0) = 1\nr0 = 0\nexit");
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, &w)).err(),
        Some(Errno::EACCES)
    );
    rt.set_run_unverified(true);
    let p = load(&rt, ProgType::XDP, &w);
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    // A map pointer that is not one the program may use stops the run.
    let src =
        "r1 = 0x1000\nr2 = r10\nr2 += -8\n*(u64 *)(r10 -8) = 0\ncall bpf_map_lookup_elem\nexit";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    match &t.fault {
        Some(RunFault::Vm(e)) => assert!(e.to_string().contains("is not a map"), "{e}"),
        other => panic!("{other:?}"),
    }
}

fn ringbuf_loop_for_each_and_spin_lock() {
    // bpf_loop and bpf_for_each_map_elem callbacks are not verified yet (the
    // verifier refuses callback-calling helpers), so those programs load unverified
    // and run checked; the others are verified.
    let rt = rt_unverified();
    let rb = rt
        .map_create(&MapCreateAttr::new(MapType::Ringbuf, 0, 0, 4096))
        .unwrap();
    let arr = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 4))
        .unwrap();
    let rbfd = rt.fd_install(rb.clone()).unwrap();
    let afd = rt.fd_install(arr.clone()).unwrap();
    for i in 0..4u32 {
        rt.map_update_elem(
            &arr,
            Some(&i.to_ne_bytes()),
            &u64::from(i + 1).to_ne_bytes(),
            BPF_ANY,
        )
        .unwrap();
    }
    // Reserve 8 bytes, write the sum of the array (for_each) times the bpf_loop
    // count, submit; output 4 more bytes.
    //   0: r1 = map[afd]      (2 slots)
    //   2: r2 = subprog[sum]  (2 slots)
    let src = format!(
        "
        r1 = map[id:{afd}]
        r2 = subprog[+LOOPCB]
        *(u64 *)(r10 -8) = 0
        r3 = r10
        r3 += -8
        r4 = 0
        call bpf_for_each_map_elem
        r6 = r0
        r1 = 3
        r2 = subprog[+CNTCB]
        *(u64 *)(r10 -16) = 0
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_loop
        r7 = r0
        r1 = map[id:{rbfd}]
        r2 = 8
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        r1 = *(u64 *)(r10 -8)
        r2 = *(u64 *)(r10 -16)
        r1 *= r2
        *(u64 *)(r0 +0) = r1
        r1 = r0
        r2 = 0
        call bpf_ringbuf_submit
        *(u32 *)(r10 -20) = 0xabcd
        r1 = map[id:{rbfd}]
        r2 = r10
        r2 += -20
        r3 = 4
        r4 = 0
        call bpf_ringbuf_output
        r0 = r6
        r0 <<= 8
        r0 |= r7
        exit
    out:
        r0 = 0
        exit
    sum:
        r0 = *(u64 *)(r3 +0)
        r5 = *(u64 *)(r4 +0)
        r0 += r5
        *(u64 *)(r4 +0) = r0
        r0 = 0
        exit
    cnt:
        r0 = *(u64 *)(r2 +0)
        r0 += 1
        *(u64 *)(r2 +0) = r0
        r0 = 0
        exit
    "
    );
    // Resolve the callback offsets: `rN = subprog[K]` loads pc + K + 1.
    let prog = assemble(&src.replace("+LOOPCB", "0").replace("+CNTCB", "0")).unwrap();
    let mut ops = prog.encode();
    let label_pc = |name: &str| -> usize {
        let mut pc = 0;
        for line in src.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == format!("{name}:") {
                return pc;
            }
            if line.ends_with(':') {
                continue;
            }
            pc += if line.contains("map[") || line.contains("subprog[") {
                2
            } else {
                1
            };
        }
        panic!("no label {name}");
    };
    let (sum, cnt) = (label_pc("sum"), label_pc("cnt"));
    ops[2].imm = (sum - 3) as i32;
    let cnt_load = ops
        .iter()
        .enumerate()
        .filter(|(_, i)| i.code == 0x18 && i.src_reg() == 4)
        .nth(1)
        .map(|(pc, _)| pc)
        .unwrap();
    ops[cnt_load].imm = (cnt - cnt_load - 1) as i32;
    let p = rt
        .prog_load(&ProgLoadAttr::new(ProgType::XDP, ops, "GPL"))
        .unwrap();
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 4 << 8 | 3, "4 elements visited, 3 iterations");
    let mut got = Vec::new();
    rb.ringbuf().unwrap().consume(|r| {
        got.push(r.to_vec());
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(
        got,
        vec![
            (10u64 * 3).to_ne_bytes().to_vec(),
            0xabcdu32.to_ne_bytes().to_vec()
        ]
    );

    // A reservation never submitted is discarded and reported.
    let src =
        format!("r1 = map[id:{rbfd}]\nr2 = 8\nr3 = 0\ncall bpf_ringbuf_reserve\nr0 = 0\nexit");
    let p = load(&rt, ProgType::XDP, &src);
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    assert!(matches!(t.fault, Some(RunFault::Exec(_))), "{:?}", t.fault);
    assert_eq!(
        rb.ringbuf()
            .unwrap()
            .consume(|_| std::ops::ControlFlow::Continue(())),
        0
    );

    // Spin locks: lock, unlock; a lock held at exit is released and reported.
    let lock = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 8, 1))
        .unwrap();
    let lfd = rt.fd_install(lock).unwrap();
    let ok = format!(
        "r1 = map[id:{lfd}][0]+0\ncall bpf_spin_lock\nr1 = map[id:{lfd}][0]+0\ncall bpf_spin_unlock\nr0 = 1\nexit"
    );
    let p = load(&rt, ProgType::SCHED_CLS, &ok);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 1);
    let held = format!("r1 = map[id:{lfd}][0]+0\ncall bpf_spin_lock\nr0 = 1\nexit");
    let p = load(&rt, ProgType::SCHED_CLS, &held);
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    // ...and released: the first program still runs.
    let p = load(&rt, ProgType::SCHED_CLS, &ok);
    run(&rt, &p, &mut TestRun::with_data(&packet())).unwrap();
}

fn printf_helpers_probe_read_and_time() {
    let rt = rt();
    let (sink, lines) = collecting_sink();
    rt.set_trace_sink(Some(sink));
    // "v=%d\n" on the stack.
    let src = "
        r1 = 0x0a64253d76
        *(u64 *)(r10 -8) = r1
        r1 = r10
        r1 += -8
        r2 = 6
        r3 = 42
        call bpf_trace_printk
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 5);
    assert_eq!(lines.lock().unwrap().as_slice(), ["v=42\n"]);
    // A format with more conversions than arguments allow: -EINVAL.
    let src = "
        r1 = 0x64256425642564
        *(u64 *)(r10 -8) = r1
        r1 = r10
        r1 += -8
        r2 = 8
        call bpf_trace_printk
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval as i32, 4, "three %d with three args is fine");
    // probe_read_kernel of registered host memory, and of unknown memory.
    let host = Box::new(0x5a5a_5a5a_1234_5678u64);
    let addr = &*host as *const u64 as u64;
    // SAFETY: `host` outlives the runtime's use (unregistered below).
    unsafe { rt.register_probe_memory(addr, 8) };
    let src = format!(
        "
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = {addr:#x}
        call bpf_probe_read_kernel
        if r0 != 0 goto out
        r0 = *(u32 *)(r10 -8)
        exit
    out:
        r0 = 1
        exit
    "
    );
    let p = load(&rt, ProgType::XDP, &src);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 0x1234_5678);
    rt.unregister_probe_memory(addr);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 1, "EFAULT for memory the runtime does not know");
    // probe_read_kernel of the program's own stack reads it in every mode, as the
    // kernel's does (it used to fail with EFAULT in unchecked runs only).
    let src = "
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 -16) = r1
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = r10
        r3 += -16
        call bpf_probe_read_kernel
        if r0 != 0 goto out
        r0 = *(u32 *)(r10 -8)
        exit
    out:
        r0 = 1
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 0x5566_7788);
    // Time helpers move forward; the boot clock is at least the monotonic one.
    let src = "call bpf_ktime_get_ns\nr6 = r0\ncall bpf_ktime_get_ns\nr0 -= r6\nr0 >>= 63\nexit";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 0);
    // bpf_jiffies64 needs CAP_BPF in the loader; trace_printk CAP_PERFMON too.
    // The verifier refuses the call; loaded unverified, the run stops at it.
    rt.set_caps(Capabilities::BPF | Capabilities::NET_ADMIN);
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(
            &attr(ProgType::XDP, "call bpf_trace_printk\nexit"),
            &mut log
        )
        .err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        log,
        "program of this type cannot use helper bpf_trace_printk#6\n"
    );
    rt.set_run_unverified(true);
    let p = load(&rt, ProgType::XDP, "call bpf_trace_printk\nexit");
    let mut t = TestRun::with_data(&packet());
    assert_eq!(run(&rt, &p, &mut t), Err(Errno::EFAULT));
    assert!(matches!(t.fault, Some(RunFault::Vm(_))));
}

fn host_helpers_and_kfuncs() {
    let rt = rt();
    let (_, kf) = host_btf(&rt);
    let proto = HelperProto {
        id: 10_000,
        name: "host_add",
        ret: Ret::INTEGER,
        args: [
            Arg::new(ArgType::Anything),
            Arg::new(ArgType::Anything),
            Arg::DONTCARE,
            Arg::DONTCARE,
            Arg::DONTCARE,
        ],
        gpl_only: false,
        might_sleep: false,
        pkt_access: false,
    };
    let helper = HostHelper {
        proto,
        prog_types: vec![ProgType::XDP],
        func: Arc::new(|_, a| Ok(a[0] + a[1])),
    };
    assert_eq!(
        rt.register_helper(HostHelper {
            proto: HelperProto { id: 1, ..proto },
            ..helper.clone()
        }),
        Err(Errno::EEXIST)
    );
    rt.register_helper(helper.clone()).unwrap();
    assert_eq!(rt.register_helper(helper), Err(Errno::EEXIST));
    let p = load(
        &rt,
        ProgType::XDP,
        "r1 = 40\nr2 = 2\ncall host_add#10000\nexit",
    );
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 42);
    // Not registered for tc: the verifier knows no such helper there.
    let mut log = String::new();
    assert_eq!(
        rt.prog_load_with_log(
            &attr(
                ProgType::SCHED_CLS,
                "r1 = 40\nr2 = 2\ncall host_add#10000\nexit"
            ),
            &mut log
        )
        .err(),
        Some(Errno::EINVAL)
    );
    assert_eq!(log, "invalid func unknown#10000\n");
    rt.unregister_helper(10_000).unwrap();
    assert_eq!(rt.unregister_helper(10_000), Err(Errno::ENOENT));

    // kfuncs: unregistered ones cannot be loaded; registered ones run.
    let kcall = format!("r1 = 21\ncall kernel-function#{kf}\nexit");
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, &kcall)).err(),
        Some(Errno::EINVAL)
    );
    let id = rt
        .register_kfunc(
            "host_twice",
            KfuncFlags::TRUSTED_ARGS,
            vec![],
            Arc::new(|_, a| Ok(a[0] * 2)),
        )
        .unwrap();
    assert_eq!(id, kf);
    assert_eq!(
        rt.register_kfunc("missing", KfuncFlags::NONE, vec![], Arc::new(|_, _| Ok(0))),
        Err(Errno::ENOENT)
    );
    // The verifier does not check kfunc calls yet (it refuses them): the program
    // loads unverified and runs checked.
    rt.set_run_unverified(true);
    let p = load(&rt, ProgType::XDP, &kcall);
    assert_eq!(p.kfuncs(), &[kf]);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 42);
    let mut mit = attr(ProgType::XDP, &kcall);
    mit.license = "MIT".into();
    assert_eq!(
        rt.prog_load(&mit).err(),
        Some(Errno::EINVAL),
        "kfuncs need GPL"
    );
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, "call kernel-function#1\nexit"))
            .err(),
        Some(Errno::EINVAL),
        "not a FUNC"
    );
    assert_eq!(
        rt.prog_load(&attr(ProgType::XDP, "call kernel-function[1]#5\nexit"))
            .err(),
        Some(Errno::EPROTO),
        "module BTF without fd_array"
    );
}

/// Each repeated XDP run starts on the buffer as the previous run left it (the kernel's
/// `bpf_test_run` loop reuses its `xdp_buff`): after `bpf_xdp_adjust_head` moved
/// `data`, the next run's checked-mode packet region starts there too.
fn xdp_repeat_runs_on_the_adjusted_buffer() {
    let rt = rt();
    let pkt = packet();
    // Read the packet's first word, grow the head by 8 and write the word plus one
    // there: 3 runs, 3 markers, each run reading the one before.
    let src = "
        r6 = r1
        r2 = *(u32 *)(r6 +0)
        r3 = *(u32 *)(r6 +4)
        r4 = r2
        r4 += 8
        if r4 > r3 goto out
        r7 = *(u64 *)(r2 +0)
        r1 = r6
        r2 = -8
        call bpf_xdp_adjust_head
        if r0 != 0 goto out
        r2 = *(u32 *)(r6 +0)
        r3 = *(u32 *)(r6 +4)
        r4 = r2
        r4 += 8
        if r4 > r3 goto out
        r7 += 1
        *(u64 *)(r2 +0) = r7
        r0 = 2
        exit
    out:
        r0 = 99
        exit
    ";
    let p = load(&rt, ProgType::XDP, src);
    let mut t = TestRun::with_data(&pkt);
    t.repeat = 3;
    run(&rt, &p, &mut t).unwrap();
    assert!(t.fault.is_none(), "{:?}", t.fault);
    assert_eq!(t.retval, 2);
    let out = t.data_out.unwrap();
    assert_eq!(out.len(), pkt.len() + 24);
    let first = u64::from_ne_bytes(pkt[..8].try_into().unwrap());
    let word = |i: usize| u64::from_ne_bytes(out[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(
        [word(0), word(1), word(2)],
        [first + 3, first + 2, first + 1],
        "each run read the previous run's marker"
    );
    assert_eq!(&out[24..], &pkt[..]);
}

/// Loads of the 32-bit `data`/`data_end` fields become 64-bit loads of the real
/// pointers (`convert_ctx_accesses`), so the packet may sit anywhere: the program
/// reads the EtherType's high byte through them, and a host helper reports whether
/// the pointer has an upper half (the old 32-bit views could not have held it).
fn packet_pointers_are_rewritten_to_64_bits() {
    let rt = rt();
    let proto = HelperProto {
        id: 10_001,
        name: "high_half",
        ret: Ret::INTEGER,
        args: [
            Arg::new(ArgType::Anything),
            Arg::DONTCARE,
            Arg::DONTCARE,
            Arg::DONTCARE,
            Arg::DONTCARE,
        ],
        gpl_only: false,
        might_sleep: false,
        pkt_access: false,
    };
    rt.register_helper(HostHelper {
        proto,
        prog_types: vec![ProgType::XDP, ProgType::SCHED_CLS],
        func: Arc::new(|_, a| Ok(a[0] >> 32)),
    })
    .unwrap();
    let src = |data: u16, end: u16| {
        format!(
            "r6 = r1\n\
             r2 = *(u32 *)(r6 +{data})\n\
             r3 = *(u32 *)(r6 +{end})\n\
             r4 = r2\n\
             r4 += 14\n\
             if r4 > r3 goto pc+7\n\
             r7 = *(u8 *)(r2 +12)\n\
             r1 = r2\n\
             call high_half#10001\n\
             if r0 == 0 goto pc+1\n\
             r7 += 1000\n\
             r0 = r7\n\
             exit\n\
             r0 = 1\n\
             exit"
        )
    };
    for (ty, data, end) in [(ProgType::XDP, 0, 4), (ProgType::SCHED_CLS, 76, 80)] {
        let p = load(&rt, ty, &src(data, end));
        let dump = p.xlated_insns_dump();
        let base = if ty == ProgType::XDP { 24 } else { 192 };
        assert_eq!(
            (dump[1].code, dump[1].off, dump[2].code, dump[2].off),
            (0x79, base, 0x79, base + 8),
            "{ty:?}: the xlated program loads the 64-bit pointers"
        );
        assert_eq!(&dump[3..], &insns(&src(data, end))[3..]);
        assert_eq!(p.orig_insns(), insns(&src(data, end)).as_slice());
        let mut t = TestRun::with_data(&packet());
        run(&rt, &p, &mut t).unwrap();
        assert_eq!(t.retval, 0x08 + 1000, "{ty:?}: the packet is above 4 GiB");
        assert_eq!(t.data_out.as_deref(), Some(packet().as_slice()));
    }
}

/// `prandom_seed` makes `bpf_get_prandom_u32` reproducible run by run, and a host clock
/// replaces the system's for every time helper.
#[test]
fn seeded_prandom_and_host_clock() {
    let draw = |seed: Option<u64>, runs: usize| -> Vec<u32> {
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 2,
            prandom_seed: seed,
            ..RuntimeConfig::default()
        });
        let p = load(
            &rt,
            ProgType::SOCKET_FILTER,
            "call bpf_get_prandom_u32\nr6 = r0\ncall bpf_get_prandom_u32\nr0 ^= r6\nexit",
        );
        (0..runs)
            .map(|_| {
                let mut t = TestRun::with_data(&[0u8; 64]);
                rt.prog_test_run(&p, &mut t).unwrap();
                t.retval
            })
            .collect()
    };
    let a = draw(Some(7), 4);
    assert_eq!(a, draw(Some(7), 4), "same seed, same sequence");
    assert_ne!(a, draw(Some(8), 4), "another seed, another sequence");
    assert!(
        a.windows(2).any(|w| w[0] != w[1]),
        "runs draw afresh: {a:?}"
    );
    assert_ne!(draw(None, 4), draw(None, 4), "unseeded runtimes differ");

    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        hz: 1000,
        ..RuntimeConfig::default()
    });
    let ktime = load(&rt, ProgType::SOCKET_FILTER, "call bpf_ktime_get_ns\nexit");
    let boot = load(
        &rt,
        ProgType::SOCKET_FILTER,
        "call bpf_ktime_get_boot_ns\nexit",
    );
    let jiffies = load(&rt, ProgType::SOCKET_FILTER, "call bpf_jiffies64\nexit");
    let run = |p: &ProgHandle| {
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(p, &mut t).unwrap();
        t.retval
    };
    rt.set_clock(Some(std::sync::Arc::new(
        |k: structops::ClockKind| match k {
            structops::ClockKind::Boottime => 9_000_000_123,
            _ => 5_000_000_456,
        },
    )));
    assert_eq!(run(&ktime), 5_000_000_456u64 as u32);
    assert_eq!(run(&boot), 9_000_000_123u64 as u32);
    assert_eq!(run(&jiffies), 5_000, "5 s at CONFIG_HZ=1000");
    rt.set_clock(None);
    assert_ne!(run(&boot), 9_000_000_123u64 as u32);
}

/// A host BTF declaring the open-coded number iterator as the kernel does:
/// ```c
/// struct bpf_iter_num { __u64 __opaque[1]; };
/// int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end);
/// int *bpf_iter_num_next(struct bpf_iter_num *it);
/// void bpf_iter_num_destroy(struct bpf_iter_num *it);
/// ```
/// Returns the ids of the three `FUNC`s.
fn iter_num_btf(rt: &Runtime) -> [u32; 3] {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let u64t = b.add_int("unsigned long long", 8, 0);
    let it = b.add_struct("bpf_iter_num", 8, &[("__opaque", u64t, 0)]);
    let it_ptr = b.add_ptr(it);
    let int_ptr = b.add_ptr(int);
    let new = b.add_func_proto(int, &[("it", it_ptr), ("start", int), ("end", int)]);
    let next = b.add_func_proto(int_ptr, &[("it", it_ptr)]);
    let destroy = b.add_func_proto(0, &[("it", it_ptr)]);
    let ids = [
        b.add_func("bpf_iter_num_new", new, Linkage::Global),
        b.add_func("bpf_iter_num_next", next, Linkage::Global),
        b.add_func("bpf_iter_num_destroy", destroy, Linkage::Global),
    ];
    rt.register_host_btf(b.build()).unwrap();
    ids
}

/// The built-in `bpf_iter_num_*` kfuncs: programs the verifier accepts (converging
/// at `next`, not walking the range) run the kernel's semantics, on every engine.
fn iter_num_kfuncs() {
    let rt = rt();
    let [new, next, destroy] = iter_num_btf(&rt);
    let k = rt.kfunc(next).expect("bpf_iter_num_next is built in");
    assert_eq!(k.flags, KfuncFlags::ITER_NEXT | KfuncFlags::RET_NULL);
    assert!(k.prog_types.is_empty(), "every program type may iterate");
    // `bpf_for(i, START, END)` summing the values in `w6` and counting the iterations
    // in `r7`; returns `w0` of `new` (negated) + 1000 * count + sum.
    let sum_prog = |start: i32, end: i32| {
        format!(
            "r6 = 0\nr7 = 0\n\
             r1 = r10\nr1 += -8\nr2 = {start}\nr3 = {end}\n\
             call kernel-function#{new}\n\
             w8 = w0\nw8 = -w8\n\
             loop:\n\
             r1 = r10\nr1 += -8\n\
             call kernel-function#{next}\n\
             if r0 == 0 goto done\n\
             r1 = *(u32 *)(r0 +0)\n\
             w6 += w1\nr7 += 1\n\
             goto loop\n\
             done:\n\
             r1 = r10\nr1 += -8\n\
             call kernel-function#{destroy}\n\
             r7 *= 1000\n\
             w0 = w8\nw0 += w7\nw0 += w6\n\
             exit"
        )
    };
    let run_sum = |start: i32, end: i32| {
        let p = load(&rt, ProgType::XDP, &sum_prog(start, end));
        let mut t = TestRun::with_data(&packet());
        run(&rt, &p, &mut t).unwrap();
        t.retval
    };
    // 0..100: 100 iterations, 0 + 1 + ... + 99.
    assert_eq!(run_sum(0, 100), 100 * 1000 + 4950);
    // Negative starts: -3..2 sums to -5.
    assert_eq!(run_sum(-3, 2), (5000i32 - 5) as u32);
    // An empty range is fine; start > end is -EINVAL; a range longer than
    // BPF_MAX_LOOPS is -E2BIG; failed iterators yield nothing.
    assert_eq!(run_sum(7, 7), 0);
    assert_eq!(run_sum(5, 3), 22);
    assert_eq!(run_sum(0, (1 << 23) + 1), 7);
    assert_eq!(run_sum(i32::MIN, i32::MAX), 7);
    // A drained iterator stays drained: one element, then NULL twice.
    let sticky = format!(
        "r6 = 0\n\
         r1 = r10\nr1 += -8\nr2 = 41\nr3 = 42\n\
         call kernel-function#{new}\n\
         r1 = r10\nr1 += -8\n\
         call kernel-function#{next}\n\
         if r0 == 0 goto done\n\
         r6 = *(u32 *)(r0 +0)\n\
         r1 = r10\nr1 += -8\n\
         call kernel-function#{next}\n\
         if r0 != 0 goto done\n\
         r1 = r10\nr1 += -8\n\
         call kernel-function#{next}\n\
         if r0 != 0 goto done\n\
         r6 += 1000\n\
         done:\n\
         r1 = r10\nr1 += -8\n\
         call kernel-function#{destroy}\n\
         r0 = r6\n\
         exit"
    );
    let p = load(&rt, ProgType::XDP, &sticky);
    let mut t = TestRun::with_data(&packet());
    run(&rt, &p, &mut t).unwrap();
    assert_eq!(t.retval, 1041);
    // Other program types may call them too (the kernel's common kfunc set).
    let p = load(&rt, ProgType::SCHED_CLS, &sum_prog(0, 10));
    assert_eq!(p.kfuncs().len(), 3);
}

/// The helper trace sees every helper call with its arguments and result, in order,
/// and both engines make the same calls.
#[test]
fn helper_trace_is_the_same_on_both_engines() {
    let mut traces = Vec::new();
    for engine in [Engine::Interp, Engine::Jit] {
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 2,
            engine,
            prandom_seed: Some(3),
            ..RuntimeConfig::default()
        });
        let hash = rt
            .map_create(&MapCreateAttr::new(MapType::Hash, 4, 8, 8))
            .unwrap();
        let hfd = rt.fd_install(hash).unwrap();
        // key = prandom & 3; counts[key] = 1 unless present; return the lookup's result.
        let src = format!(
            "
            call bpf_get_prandom_u32
            r0 &= 3
            *(u32 *)(r10 -4) = r0
            *(u64 *)(r10 -16) = 1
            r1 = map[id:{hfd}]
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -16
            r4 = 1
            call bpf_map_update_elem
            r1 = map[id:{hfd}]
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto out
            r0 = *(u64 *)(r0 +0)
            out:
            exit
            "
        );
        let p = load(&rt, ProgType::SOCKET_FILTER, &src);
        assert_eq!(p.engine(), engine);
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = calls.clone();
        rt.set_helper_trace(Some(std::sync::Arc::new(
            move |c: &structops::HelperCall| {
                sink.lock().unwrap().push(*c);
            },
        )));
        for _ in 0..3 {
            let mut t = TestRun::with_data(&[0u8; 64]);
            rt.prog_test_run(&p, &mut t).unwrap();
            assert_eq!(t.retval, 1);
        }
        rt.set_helper_trace(None);
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(&p, &mut t).unwrap();
        let calls = calls.lock().unwrap().clone();
        // Three runs of prandom, update, lookup; nothing after the trace was removed.
        assert_eq!(calls.len(), 9, "{calls:?}");
        let ids: Vec<_> = calls.iter().map(|c| c.callee).collect();
        assert_eq!(
            &ids[..3],
            &[
                structops::Callee::Helper(7),
                structops::Callee::Helper(2),
                structops::Callee::Helper(1)
            ]
        );
        // The update's flags argument and its result.
        assert_eq!((calls[1].args[3], calls[1].ret), (1, Some(0)));
        assert!(calls.iter().all(|c| c.prog_id == p.id()));
        // Map values and stack addresses differ between runtimes; compare the rest.
        traces.push(
            calls
                .iter()
                .map(|c| (c.pc, c.callee, c.args[3], c.ret.map(|r| r != 0)))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(traces[0], traces[1]);
}

/// `RuntimeConfig::jit_harden`: blinded programs give the same results, and the knob
/// follows the kernel's `bpf_jit_harden` levels (1: loaders without CAP_SYS_ADMIN).
#[test]
fn jit_harden_blinds_constants_by_level() {
    let src = "r0 = 0x3c909090\nr0 += 0x1e909090\nr1 = 0x5a90909069909090 ll\nr0 ^= r1\nexit";
    let want = (0x3c90_9090u64 + 0x1e90_9090) ^ 0x5a90_9090_6990_9090;
    for (harden, sys_admin, blinded) in [
        (JitHarden::Off, false, false),
        (JitHarden::Unprivileged, true, false),
        (JitHarden::Unprivileged, false, true),
        (JitHarden::All, true, true),
    ] {
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 1,
            engine: structops::Engine::Jit,
            jit_harden: harden,
            ..RuntimeConfig::default()
        });
        if !sys_admin {
            rt.set_caps(Capabilities::BPF | Capabilities::NET_ADMIN | Capabilities::PERFMON);
        }
        let p = load(&rt, ProgType::XDP, src);
        let jited = p.jited().expect("the JIT compiles it");
        assert_eq!(
            jited.options().blind_constants,
            blinded,
            "{harden:?} {sys_admin}"
        );
        let mut t = TestRun::with_data(&packet());
        rt.prog_test_run(&p, &mut t).unwrap();
        assert_eq!(u64::from(t.retval), want & 0xffff_ffff, "{harden:?}");
    }
}
