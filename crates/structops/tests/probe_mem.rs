//! Loads through pointers a program reads out of host structs (the kernel's
//! `BPF_PROBE_MEM`): the verifier marks them, and both engines run them as probes, so
//! a NULL, freed or wild pointer in a host struct gives 0 instead of crashing the host.
//! Trusted pointers (the member's arguments) stay plain loads.

use std::sync::{Arc, Mutex};

use structops::struct_ops::{MAP_TYPE_STRUCT_OPS, add_value_type};
use structops::{
    Engine, Errno, Link, MapCreateAttr, OpsTable, ProgLoadAttr, ProgType, Runtime, RuntimeConfig,
    StructOps, StructOpsDesc, Verification,
};
use structops_btf::{BtfBuilder, INT_SIGNED, TypeId};
use structops_isa::assemble;

/// `struct inner { long val; }`, `struct outer { struct inner *next; long x; }` and
/// `struct probe_ops { long (*read)(struct outer *o); }`.
fn host_btf(rt: &Runtime) -> (TypeId, TypeId) {
    let mut b = BtfBuilder::new();
    let long = b.add_int("long", 8, INT_SIGNED);
    let inner = b.add_struct("inner", 8, &[("val", long, 0)]);
    let pinner = b.add_ptr(inner);
    let outer = b.add_struct("outer", 16, &[("next", pinner, 0), ("x", long, 64)]);
    let pouter = b.add_ptr(outer);
    let proto = b.add_func_proto(long, &[("o", pouter)]);
    let fp = b.add_ptr(proto);
    let ops = b.add_struct("probe_ops", 8, &[("read", fp, 0)]);
    let value = add_value_type(&mut b, ops, "probe_ops").unwrap();
    rt.register_host_btf(b.build()).unwrap();
    (ops, value)
}

/// Keeps the registered table.
#[derive(Default)]
struct Host {
    table: Mutex<Option<Arc<OpsTable>>>,
}

impl StructOps for Host {
    fn reg(&self, t: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        *self.table.lock().unwrap() = Some(t.clone());
        Ok(())
    }

    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {
        *self.table.lock().unwrap() = None;
    }

    /// Every field of every struct is writable, as far as this hook goes.
    fn struct_write(
        &self,
        _: &structops_btf::Btf,
        _: u32,
        _: i32,
        _: u32,
    ) -> Option<Result<(), String>> {
        Some(Ok(()))
    }
}

/// Reads `o->next->val` (insn 2 is the load through the walked pointer).
const READ_NEXT: &str = "r1 = *(u64 *)(r1 +0)\n\
                         r2 = *(u64 *)(r1 +0)\n\
                         r0 = *(u64 *)(r2 +0)\n\
                         exit";

#[repr(C)]
struct Inner {
    val: i64,
}

#[repr(C)]
struct Outer {
    next: *const Inner,
    x: i64,
}

/// A runtime on `engine` with `probe_ops` registered and `READ_NEXT` as its `read`.
fn setup(engine: Engine, any_mapped: bool) -> (Runtime, Arc<Host>) {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 1,
        engine,
        probe_any_mapped: any_mapped,
        ..RuntimeConfig::default()
    });
    let (ops, value) = host_btf(&rt);
    let host = Arc::new(Host::default());
    let ty = rt
        .register_struct_ops(StructOpsDesc::new("probe_ops", host.clone()))
        .unwrap();
    let (value_size, data_off) = (ty.value_size(), ty.data_offset() as usize);
    let mut a = ProgLoadAttr::new(
        ProgType::STRUCT_OPS,
        assemble(READ_NEXT).unwrap().encode(),
        "GPL",
    );
    a.attach_btf_id = ops;
    let p = rt.prog_load(&a).unwrap();
    let Verification::Verified(v) = p.verification() else {
        panic!("not verified");
    };
    let probes: Vec<bool> = v.proof().facts().iter().map(|f| f.probe_mem).collect();
    assert_eq!(
        probes,
        [false, false, true, false],
        "only the load through the walked pointer is a probe"
    );
    assert_eq!(p.engine(), engine);
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let btf_fd = rt
        .fd_install(rt.btf_load(&b.build().encode()).unwrap())
        .unwrap();
    // Installed second: fd 0 in a member means "not implemented".
    let prog_fd = rt.fd_install(p).unwrap();
    assert_ne!(prog_fd, 0);
    let m = rt
        .map_create(&MapCreateAttr {
            map_type: MAP_TYPE_STRUCT_OPS,
            key_size: 4,
            value_size,
            max_entries: 1,
            btf_fd,
            btf_vmlinux_value_type_id: value,
            ..MapCreateAttr::default()
        })
        .unwrap();
    // The table (`read`) follows the common header.
    let mut v = vec![0u8; value_size as usize];
    v[data_off..data_off + 8].copy_from_slice(&u64::from(prog_fd).to_ne_bytes());
    rt.map_update_elem(&m, Some(&0u32.to_ne_bytes()), &v, 0)
        .unwrap();
    assert!(host.table.lock().unwrap().is_some());
    (rt, host)
}

fn call(rt: &Runtime, host: &Host, o: &Outer) -> u64 {
    let t = host.table.lock().unwrap().clone().unwrap();
    t.call(rt, 0, &[std::ptr::from_ref(o) as u64]).unwrap()
}

const ENGINES: [Engine; 2] = [Engine::Interp, Engine::Jit];

#[test]
fn null_pointer_member_reads_zero() {
    for engine in ENGINES {
        let (rt, host) = setup(engine, false);
        let o = Outer {
            next: std::ptr::null(),
            x: 1,
        };
        assert_eq!(call(&rt, &host, &o), 0, "{engine:?}");
        // NULL plus a field offset, and the top of the address space.
        for wild in [0x18usize, usize::MAX - 3] {
            let o = Outer {
                next: std::ptr::without_provenance(wild),
                x: 1,
            };
            assert_eq!(call(&rt, &host, &o), 0, "{engine:?} {wild:#x}");
        }
    }
}

#[test]
fn registered_objects_are_read_and_others_are_not() {
    for engine in ENGINES {
        let (rt, host) = setup(engine, false);
        let inner = Box::new(Inner { val: 4242 });
        let o = Outer {
            next: &raw const *inner,
            x: 1,
        };
        // Not registered: the runtime vouches only for what the host registered.
        assert_eq!(call(&rt, &host, &o), 0, "{engine:?}");
        let addr = (&raw const *inner).expose_provenance() as u64;
        // SAFETY: `inner` outlives its registration (unregistered below).
        unsafe { rt.register_probe_memory(addr, 8) };
        assert_eq!(call(&rt, &host, &o), 4242, "{engine:?}");
        rt.unregister_probe_memory(addr);
        assert_eq!(call(&rt, &host, &o), 0, "{engine:?}");
    }
}

#[test]
fn any_mapped_reads_live_memory_and_survives_unmapped_memory() {
    let page = 4096;
    for engine in ENGINES {
        let (rt, host) = setup(engine, true);
        let inner = Box::new(Inner { val: -7 });
        let o = Outer {
            next: &raw const *inner,
            x: 1,
        };
        assert_eq!(call(&rt, &host, &o), -7i64 as u64, "{engine:?}");
        // A pointer to memory that has since been unmapped: a plain load would kill
        // the process.
        // SAFETY: a fresh anonymous mapping, unmapped before the call.
        let gone = unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            p.cast::<i64>().write(99);
            assert_eq!(libc::munmap(p, page), 0);
            p
        };
        let o = Outer {
            next: gone.cast::<Inner>(),
            x: 1,
        };
        assert_eq!(call(&rt, &host, &o), 0, "{engine:?}");
        let o = Outer {
            next: std::ptr::null(),
            x: 1,
        };
        assert_eq!(call(&rt, &host, &o), 0, "{engine:?}");
    }
}

#[test]
fn writes_need_a_pointer_the_host_vouches_for() {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 1,
        ..RuntimeConfig::default()
    });
    let (ops, _) = host_btf(&rt);
    rt.register_struct_ops(StructOpsDesc::new("probe_ops", Arc::new(Host::default())))
        .unwrap();
    let load = |src: &str| {
        let mut a = ProgLoadAttr::new(ProgType::STRUCT_OPS, assemble(src).unwrap().encode(), "GPL");
        a.attach_btf_id = ops;
        let mut log = String::new();
        rt.prog_load_with_log(&a, &mut log)
            .map(|_| ())
            .map_err(|e| (e, log))
    };
    // Through the argument (trusted): the hook allows it.
    load("r1 = *(u64 *)(r1 +0)\nr2 = 5\n*(u64 *)(r1 +8) = r2\nr0 = 0\nexit").unwrap();
    // Through a pointer read out of the argument: refused whatever the hook says, since
    // the host never promised that `next` points at a live object.
    let (e, log) = load(
        "r1 = *(u64 *)(r1 +0)\nr1 = *(u64 *)(r1 +0)\nr2 = 5\n*(u64 *)(r1 +0) = r2\nr0 = 0\nexit",
    )
    .unwrap_err();
    assert_eq!(e, Errno::EACCES);
    assert!(log.contains("only read is supported"), "{log}");
}
