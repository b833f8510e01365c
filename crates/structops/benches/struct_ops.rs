//! struct_ops latencies (issue 6): registering a table (map update + link create),
//! swapping a link between two tables (`link_update`), and calling a member through a
//! registered, swappable table (`OpsSlot::load` + `OpsTable::call`, and `OpsSlot::load` +
//! the member's native entry point) on each engine, next to a native `extern "C"` call
//! of the same work through a function pointer.
//!
//! The ops type is `struct bench_ops { int (*op)(int a, int b); }` over a host BTF built
//! here; its host keeps the registered table in one `OpsSlot`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use structops::struct_ops::{BPF_F_LINK, MAP_TYPE_STRUCT_OPS, add_value_type};
use structops::{
    Engine, Errno, Link, LinkCreateAttr, LinkUpdateAttr, MapCreateAttr, OpsSlot, OpsTable,
    ProgLoadAttr, ProgType, Runtime, RuntimeConfig, StructOps, StructOpsDesc,
};
use structops_btf::{BtfBuilder, INT_SIGNED, TypeId};
use structops_isa::assemble;

/// `kvalue` header (refcnt, state), then `struct bench_ops` (one 8-byte pointer) at the
/// next cache line, as the kernel aligns the data of a `bpf_struct_ops_<name>` value.
const DATA: usize = 64;
const VALUE_SIZE: u32 = 128;

/// A host with one slot; any number of tables may register (the latest wins).
#[derive(Default)]
struct Host {
    slot: OpsSlot,
}

impl StructOps for Host {
    fn reg(&self, t: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        self.slot.store(Some(t.clone()));
        Ok(())
    }

    fn unreg(&self, t: &Arc<OpsTable>, _: Option<&Link>) {
        self.slot.clear_if(t);
    }

    fn has_update(&self) -> bool {
        true
    }

    fn update(&self, new: &Arc<OpsTable>, old: &Arc<OpsTable>, _: &Link) -> Result<(), Errno> {
        if self.slot.replace(old, new.clone()) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }
}

struct Setup {
    rt: Runtime,
    host: Arc<Host>,
    map_attr: MapCreateAttr,
    prog_fd: u32,
}

fn setup(engine: Engine) -> Setup {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        engine,
        ..RuntimeConfig::default()
    });
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, INT_SIGNED);
    let proto = b.add_func_proto(int, &[("a", int), ("b", int)]);
    let fp = b.add_ptr(proto);
    let ops: TypeId = b.add_struct("bench_ops", 8, &[("op", fp, 0)]);
    let value = add_value_type(&mut b, ops, "bench_ops").expect("value type");
    rt.register_host_btf(b.build()).expect("host BTF");
    let host = Arc::new(Host::default());
    rt.register_struct_ops(StructOpsDesc::new("bench_ops", host.clone()))
        .expect("ops type");
    let mut ob = BtfBuilder::new();
    ob.add_int("int", 4, INT_SIGNED);
    let btf = rt.btf_load(&ob.build().encode()).expect("btf");
    let btf_fd = rt.fd_install(btf).expect("fd");
    let src = "r0 = *(u64 *)(r1 +0)\nr2 = *(u64 *)(r1 +8)\nr0 += r2\nexit";
    let mut a = ProgLoadAttr::new(
        ProgType::STRUCT_OPS,
        assemble(src).expect("program").encode(),
        "GPL",
    );
    a.attach_btf_id = ops;
    a.expected_attach_type = 0;
    let p = rt.prog_load(&a).expect("prog");
    assert!(p.is_verified() && p.engine() == engine);
    let prog_fd = rt.fd_install(p).expect("fd");
    let map_attr = MapCreateAttr {
        map_type: MAP_TYPE_STRUCT_OPS,
        key_size: 4,
        value_size: VALUE_SIZE,
        max_entries: 1,
        map_flags: BPF_F_LINK,
        btf_fd,
        btf_vmlinux_value_type_id: value,
        ..MapCreateAttr::default()
    };
    Setup {
        rt,
        host,
        map_attr,
        prog_fd,
    }
}

fn value(prog_fd: u32) -> Vec<u8> {
    let mut v = vec![0u8; VALUE_SIZE as usize];
    v[DATA..DATA + 8].copy_from_slice(&u64::from(prog_fd).to_ne_bytes());
    v
}

#[inline(never)]
extern "C" fn native_op(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

fn struct_ops(c: &mut Criterion) {
    let s = setup(Engine::Jit);
    let key = 0u32.to_ne_bytes();
    let mut g = c.benchmark_group("struct_ops");
    // A link map filled and linked: the work of libbpf's bpf_map__attach_struct_ops.
    g.bench_function("register (map update + link create)", |b| {
        b.iter_batched(
            || s.rt.map_create(&s.map_attr).expect("map"),
            |m| {
                s.rt.map_update_elem(&m, Some(&key), &value(s.prog_fd), 0)
                    .expect("update");
                let fd = s.rt.fd_install(m.clone()).expect("fd");
                let link =
                    s.rt.link_create(&LinkCreateAttr::struct_ops(fd))
                        .expect("link");
                let _ = s.rt.fd_close(fd);
                (m, link)
            },
            BatchSize::SmallInput,
        );
    });
    // link_update between two ready maps.
    let maps: Vec<_> = (0..2)
        .map(|_| {
            let m = s.rt.map_create(&s.map_attr).expect("map");
            s.rt.map_update_elem(&m, Some(&key), &value(s.prog_fd), 0)
                .expect("update");
            s.rt.fd_install(m).expect("fd")
        })
        .collect();
    let link =
        s.rt.link_create(&LinkCreateAttr::struct_ops(maps[0]))
            .expect("link");
    let mut i = 0usize;
    g.bench_function("link update (swap tables)", |b| {
        b.iter(|| {
            i ^= 1;
            s.rt.link_update(
                &link,
                &LinkUpdateAttr {
                    new_map_fd: maps[i],
                    ..Default::default()
                },
            )
            .expect("link update");
        });
    });
    g.finish();

    let mut g = c.benchmark_group("struct_ops_call");
    let op: extern "C" fn(i32, i32) -> i32 = native_op;
    g.bench_function("native extern \"C\" through a fn pointer", |b| {
        b.iter(|| black_box(black_box(op)(black_box(40), black_box(2))));
    });
    for engine in [Engine::Jit, Engine::Interp] {
        let s = setup(engine);
        let m = s.rt.map_create(&s.map_attr).expect("map");
        s.rt.map_update_elem(&m, Some(&key), &value(s.prog_fd), 0)
            .expect("update");
        let fd = s.rt.fd_install(m).expect("fd");
        let _link =
            s.rt.link_create(&LinkCreateAttr::struct_ops(fd))
                .expect("link");
        let name = format!("OpsSlot::load + native entry point ({engine:?})");
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let guard = structops::read_lock();
                let t = s.host.slot.load(&guard).expect("registered");
                let entry = t.member(0).and_then(|m| m.entry()).expect("entry");
                // SAFETY: the member's `int (*)(int, int)`; the guard keeps the table.
                let f: unsafe extern "C" fn(i32, i32) -> i32 =
                    unsafe { std::mem::transmute(entry.as_ptr()) };
                black_box(unsafe { f(black_box(40), black_box(2)) })
            });
        });
        {
            // What a host that caches the pointer while it holds the table pays.
            let guard = structops::read_lock();
            let t = s.host.slot.load(&guard).expect("registered");
            let entry = t.member(0).and_then(|m| m.entry()).expect("entry");
            // SAFETY: as above; `guard` lives through the benchmark.
            let f: unsafe extern "C" fn(i32, i32) -> i32 =
                unsafe { std::mem::transmute(entry.as_ptr()) };
            let name = format!("native entry point, pointer held ({engine:?})");
            g.bench_function(name.as_str(), |b| {
                b.iter(|| black_box(unsafe { black_box(f)(black_box(40), black_box(2)) }));
            });
        }
        let name = format!("OpsSlot::load + OpsTable::call ({engine:?})");
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let guard = structops::read_lock();
                let t = s.host.slot.load(&guard).expect("registered");
                black_box(
                    t.call(&s.rt, 0, &[black_box(40), black_box(2)])
                        .expect("call"),
                )
            });
        });
    }
    g.finish();
}

criterion_group!(benches, struct_ops);
criterion_main!(benches);
