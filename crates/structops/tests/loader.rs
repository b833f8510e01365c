//! The loader façade: the project's fixtures loaded into a runtime — maps created with
//! their attributes, global data filled and `.rodata` frozen, fd-map slots set,
//! programs loaded — and failures that leave nothing behind.

use std::path::PathBuf;
use std::sync::Arc;

use structops::helpers::HostFn;
use structops::loader::{LoadError, LoadOptions, ObjectLoader};
use structops::{
    Capabilities, Errno, KfuncFlags, ObjKind, RunMode, Runtime, RuntimeConfig, TestRun,
};
use structops_btf::{Btf, BtfBuilder, Linkage};
use structops_obj::{BtfKsyms, KsymResolver, KsymTarget};

fn fixture(name: &str) -> (Vec<u8>, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bpf")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (bytes, path.display().to_string())
}

/// What globals.bpf.c needs beyond the runtime's own kconfig: a tristate option and
/// the address of the untyped ksym `schedule`.
const EXTRA_KCONFIG: &str = "CONFIG_TCP_CONG_CUBIC=m\n";

struct TestKsyms<'a>(BtfKsyms<'a>);

impl KsymResolver for TestKsyms<'_> {
    fn kfunc(&self, name: &str) -> Option<KsymTarget> {
        self.0.kfunc(name)
    }
    fn var(&self, name: &str) -> Option<KsymTarget> {
        self.0.var(name)
    }
    fn kallsyms(&self, name: &str) -> Option<u64> {
        (name == "schedule").then_some(0xffff_ffff_8100_0000)
    }
}

/// Every fixture program is proved by the verifier at load time (kfunc calls,
/// `bpf_loop` callbacks, map-in-map lookups included): nothing loads unverified.
fn rt() -> Runtime {
    Runtime::new(RuntimeConfig {
        ncpus: 2,
        ..RuntimeConfig::default()
    })
}

fn lookup_u32(rt: &Runtime, map: &structops::MapHandle, key: u32) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    rt.map_lookup_elem(map, Some(&key.to_ne_bytes()), &mut v, 0)?;
    Ok(u32::from_ne_bytes(v))
}

/// Nothing the runtime knows of but its host BTF: no maps, programs or object BTF,
/// and descriptor 0 free.
fn assert_empty(rt: &Runtime) {
    let host = rt.host_btf().map_or(0, |h| h.id());
    for (kind, after) in [(ObjKind::Map, 0), (ObjKind::Prog, 0), (ObjKind::Btf, host)] {
        assert_eq!(
            rt.get_next_id(kind, after),
            Err(Errno::ENOENT),
            "{kind:?} left behind"
        );
    }
    let probe = rt.host_object_new();
    assert_eq!(rt.fd_install(probe).unwrap(), 0, "a descriptor leaked");
    rt.fd_close(0).unwrap();
}

#[test]
fn maps_fixture_creates_every_map_and_fills_fd_slots() {
    let rt = rt();
    let (bytes, path) = fixture("maps.bpf.o");
    let obj = ObjectLoader::open(&bytes, &path)
        .unwrap()
        .load(&rt, &LoadOptions::default())
        .unwrap();

    // Every map of the object exists, with the attributes of its definition.
    for m in obj.object().maps() {
        let h = obj
            .map(m.name())
            .unwrap_or_else(|| panic!("{} not created", m.name()));
        let info = rt.map_info(h);
        assert_eq!(info.map_type, m.map_type().0, "{}", m.name());
        assert_eq!(info.key_size, m.key_size(), "{}", m.name());
        assert_eq!(info.value_size, m.value_size(), "{}", m.name());
        assert_eq!(info.max_entries, m.max_entries(), "{}", m.name());
        assert_eq!(info.map_flags, m.map_flags(), "{}", m.name());
        assert!(m.kernel_name().starts_with(&info.name), "{}", m.name());
    }

    // Maps of maps: the declared slots hold the inner maps' ids, the others are empty.
    let outer = obj.map("outer_array").unwrap();
    assert_eq!(
        lookup_u32(&rt, outer, 0),
        Ok(obj.map("inner_a").unwrap().id())
    );
    assert_eq!(lookup_u32(&rt, outer, 1), Err(Errno::ENOENT));
    assert_eq!(
        lookup_u32(&rt, outer, 2),
        Ok(obj.map("inner_b").unwrap().id())
    );
    let outer_h = obj.map("outer_hash").unwrap();
    assert_eq!(
        lookup_u32(&rt, outer_h, 1),
        Ok(obj.map("inner_h").unwrap().id())
    );

    // The program array's slot 1 is the tail-call target.
    let jt = obj.map("jump_table").unwrap();
    assert_eq!(
        lookup_u32(&rt, jt, 1),
        Ok(obj.prog("tail_target").unwrap().id())
    );
    assert_eq!(lookup_u32(&rt, jt, 0), Err(Errno::ENOENT));

    // Every program the object loads is loaded, with BTF func_info.
    let expected: Vec<&str> = obj
        .object()
        .programs()
        .iter()
        .filter(|p| !p.is_subprog() && p.autoload())
        .map(|p| p.name())
        .collect();
    let loaded: Vec<&str> = obj.progs().map(|(n, _)| n).collect();
    assert_eq!(loaded, expected);
    let btf = obj.btf().expect("object BTF loaded");
    for (name, p) in obj.progs() {
        let info = rt.prog_info(p);
        assert_eq!(info.btf_id, btf.id(), "{name}");
        assert!(info.nr_func_info >= 1, "{name}");
        assert!(!info.map_ids.is_empty(), "{name} uses maps");
    }

    // Descriptors were closed: only handles remain.
    let probe = rt.host_object_new();
    assert_eq!(rt.fd_install(probe).unwrap(), 0);
}

#[test]
fn maps_fixture_xdp_program_runs_against_its_maps() {
    for (mode, engine) in [
        (RunMode::Checked, structops::Engine::Interp),
        (RunMode::Auto, structops::Engine::Interp),
        (RunMode::Auto, structops::Engine::Jit),
    ] {
        xdp_program_runs_against_its_maps(mode, engine);
    }
}

/// The maps fixture's XDP program, run in `mode` with verified code on `engine`.
fn xdp_program_runs_against_its_maps(mode: RunMode, engine: structops::Engine) {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        engine,
        ..RuntimeConfig::default()
    });
    let (bytes, path) = fixture("maps.bpf.o");
    let obj = ObjectLoader::open(&bytes, &path)
        .unwrap()
        .load(&rt, &LoadOptions::default())
        .unwrap();
    let inner_h = obj.map("inner_h").unwrap();
    rt.map_update_elem(inner_h, Some(&1u32.to_ne_bytes()), &41u32.to_ne_bytes(), 0)
        .unwrap();
    let prog = obj.prog("xdp_count").unwrap();
    // bpf_loop callback, map-in-map lookups, constant-key array lookups: verified.
    assert!(prog.is_verified());
    assert_eq!(prog.engine(), engine);
    let mut t = TestRun::with_data(&[0u8; 64]);
    t.mode = mode;
    rt.prog_test_run(prog, &mut t).unwrap();
    // The program bumped the value in the inner hash map named by outer_hash[1].
    assert_eq!(lookup_u32(&rt, inner_h, 1), Ok(42));
    // bpf_loop(8, ...) summed 0..8 into the per-CPU scratch value of some CPU slot.
    let scratch = obj.map("scratch").unwrap();
    let mut all = vec![0u8; 32 * rt.ncpus() as usize];
    rt.map_lookup_elem(scratch, Some(&0u32.to_ne_bytes()), &mut all, 0)
        .unwrap();
    let sums: u64 = all
        .chunks(32)
        .map(|c| u64::from_ne_bytes(c[..8].try_into().unwrap()))
        .sum();
    assert_eq!(sums, 28);
}

#[test]
fn global_data_is_filled_and_rodata_frozen() {
    let rt = rt();
    let (bytes, path) = fixture("globals.bpf.o");
    // A host BTF with the two kfuncs the object calls.
    let mut b = BtfBuilder::new();
    let proto = b.add_func_proto(0, &[]);
    b.add_func("bpf_rcu_read_lock", proto, Linkage::Global);
    b.add_func("bpf_rcu_read_unlock", proto, Linkage::Global);
    rt.register_host_btf(b.build()).unwrap();
    for name in ["bpf_rcu_read_lock", "bpf_rcu_read_unlock"] {
        let f: HostFn = Arc::new(|_, _| Ok(0));
        rt.register_kfunc(name, KfuncFlags::NONE, Vec::new(), f)
            .unwrap();
    }
    let host = rt.host_btf().unwrap();
    let ksyms = TestKsyms(BtfKsyms {
        btf: host.object().btf(),
    });
    let opts = LoadOptions {
        kconfig: Some(EXTRA_KCONFIG),
        ksyms: Some(&ksyms),
        ..LoadOptions::default()
    };
    let obj = ObjectLoader::open(&bytes, &path)
        .unwrap()
        .load(&rt, &opts)
        .unwrap();
    let names: Vec<&str> = obj.maps().map(|(n, _)| n).collect();
    let rodata_name = names
        .iter()
        .find(|n| n.ends_with(".rodata"))
        .copied()
        .expect("a .rodata map");
    let rodata = obj.map(rodata_name).unwrap();
    let m = obj.object().map(rodata_name).unwrap();
    let mut v = vec![0u8; m.value_size() as usize];
    rt.map_lookup_elem(rodata, Some(&0u32.to_ne_bytes()), &mut v, 0)
        .unwrap();
    assert_eq!(v, m.initial_value(), "initial value of {rodata_name}");
    assert!(
        v.windows(4).any(|w| w == 1500u32.to_ne_bytes()),
        "max_len = 1500 is in .rodata"
    );
    // Frozen: the syscall side may no longer write.
    assert_eq!(
        rt.map_update_elem(rodata, Some(&0u32.to_ne_bytes()), &v, 0),
        Err(Errno::EPERM)
    );
    // .data is writable and holds its initial values.
    let data_name = names
        .iter()
        .find(|n| n.ends_with(".data"))
        .copied()
        .unwrap();
    let data = obj.map(data_name).unwrap();
    let dm = obj.object().map(data_name).unwrap();
    let mut d = vec![0u8; dm.value_size() as usize];
    rt.map_lookup_elem(data, Some(&0u32.to_ne_bytes()), &mut d, 0)
        .unwrap();
    assert_eq!(d, dm.initial_value());
    rt.map_update_elem(data, Some(&0u32.to_ne_bytes()), &d, 0)
        .unwrap();
}

#[test]
fn every_fixture_loads_against_the_kernel_btf() {
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("skipped: /sys/kernel/btf/vmlinux is not readable");
        return;
    };
    let rt = rt();
    rt.register_host_btf(Btf::parse(&raw).unwrap()).unwrap();
    // The kernel's ops types, as the library's twins against vmlinux.
    rt.register_dummy_ops().unwrap();
    rt.register_tcp_congestion_ops().unwrap();
    // The kernel kfuncs the fixtures call, as a host embedding vmlinux BTF would
    // register them (no-ops here: nothing runs).
    for name in [
        "bpf_rcu_read_lock",
        "bpf_rcu_read_unlock",
        "bpf_cast_to_kern_ctx",
        "tcp_slow_start",
        "tcp_cong_avoid_ai",
        "tcp_reno_undo_cwnd",
    ] {
        let f: HostFn = Arc::new(|_, args| Ok(args[0]));
        rt.register_kfunc(name, KfuncFlags::NONE, Vec::new(), f)
            .unwrap();
    }
    for name in [
        "dummy_ops.bpf.o",
        "tcp_ca.bpf.o",
        "maps.bpf.o",
        "globals.bpf.o",
        "core_vmlinux.bpf.o",
        "core_local.bpf.o",
    ] {
        // core_local calls bpf_cast_to_kern_ctx (a kfunc the verifier does not
        // special-case yet), so it loads unverified. Everything else must verify,
        // tcp_ca's bpf_sk_storage_get included.
        rt.set_run_unverified(matches!(name, "core_local.bpf.o"));
        let (bytes, path) = fixture(name);
        let host = rt.host_btf().unwrap();
        let ksyms = TestKsyms(BtfKsyms {
            btf: host.object().btf(),
        });
        let opts = LoadOptions {
            kconfig: Some(EXTRA_KCONFIG),
            ksyms: Some(&ksyms),
            ..LoadOptions::default()
        };
        let obj = ObjectLoader::open(&bytes, &path)
            .unwrap()
            .load(&rt, &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = obj
            .object()
            .programs()
            .iter()
            .filter(|p| !p.is_subprog() && p.autoload())
            .count();
        assert_eq!(obj.progs().count(), expected, "{name}");
        assert!(expected > 0, "{name} has programs");
        for (prog, h) in obj.progs() {
            assert!(
                h.is_verified() || rt.run_unverified(),
                "{name}:{prog} loaded unverified"
            );
            let info = rt.prog_info(h);
            if info.prog_type == structops::ProgType::STRUCT_OPS.0 {
                assert_ne!(info.attach_btf_id, 0, "{name}:{prog} bound to its ops type");
            }
        }
    }
}

#[test]
fn typed_host_variables_are_refused_until_registered() {
    // ksym_var.bpf.o reads kernel variables through typed ksyms; the runtime has no
    // host variables to offer, and prog_load says so as the kernel does.
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("skipped: /sys/kernel/btf/vmlinux is not readable");
        return;
    };
    let rt = rt();
    rt.register_host_btf(Btf::parse(&raw).unwrap()).unwrap();
    let (bytes, path) = fixture("ksym_var.bpf.o");
    let err = ObjectLoader::open(&bytes, &path)
        .unwrap()
        .load(&rt, &LoadOptions::default())
        .unwrap_err();
    match err {
        LoadError::ProgLoad { errno, log, .. } => {
            assert_eq!(errno, Errno::ENOENT);
            assert!(log.contains("failed to find the address"), "{log}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_empty(&rt);
}

#[test]
fn select_programs_loads_only_those() {
    let rt = rt();
    let (bytes, path) = fixture("maps.bpf.o");
    let mut loader = ObjectLoader::open(&bytes, &path).unwrap();
    loader.select_programs(&["xdp_count"]);
    let obj = loader.load(&rt, &LoadOptions::default()).unwrap();
    let loaded: Vec<&str> = obj.progs().map(|(n, _)| n).collect();
    assert_eq!(loaded, ["xdp_count"]);
    // The program array's slot for the unloaded target stays empty.
    let jt = obj.map("jump_table").unwrap();
    assert_eq!(lookup_u32(&rt, jt, 1), Err(Errno::ENOENT));
}

#[test]
fn bad_objects_and_refusals_leave_nothing_behind() {
    let rt = rt();
    // Not an ELF file.
    let err = ObjectLoader::open(b"\x7fELF-but-not-really", "junk.o").unwrap_err();
    assert!(matches!(err, LoadError::Parse { ref path, .. } if path == "junk.o"));
    // Every prefix of a real object: a typed error or a load, never a panic.
    let (bytes, path) = fixture("globals.bpf.o");
    for len in (0..bytes.len()).step_by(97) {
        if let Ok(l) = ObjectLoader::open(&bytes[..len], &path) {
            drop(l.load(&rt, &LoadOptions::default()));
        }
    }
    assert_empty(&rt);

    // A runtime that refuses map creation: the error names the map, and the BTF
    // object loaded before it is released.
    let rt = self::rt();
    rt.set_caps(Capabilities::NONE);
    let (bytes, path) = fixture("maps.bpf.o");
    let err = ObjectLoader::open(&bytes, &path)
        .unwrap()
        .load(&rt, &LoadOptions::default())
        .unwrap_err();
    let first = ObjectLoader::open(&bytes, &path).unwrap().object().maps()[0]
        .name()
        .to_string();
    match err {
        LoadError::MapCreate { map, errno, .. } => {
            assert_eq!(errno, Errno::EPERM);
            assert_eq!(map, first);
        }
        other => panic!("unexpected {other}"),
    }
    rt.set_caps(Capabilities::ALL);
    assert_empty(&rt);
}
