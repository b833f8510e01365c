//! Soundness of typed pointers into host structs, end to end: random struct_ops
//! programs (`common/btfgen.rs`) over a small graph of host structs go through
//! `prog_load`; every accepted program is called on random object graphs — pointer
//! members that are NULL, point at live objects the runtime may read, at live objects it
//! may not, at the argument itself, or at garbage — first on the checked interpreter
//! (`OpsTable::call_checked`, the argument object as the only region), which must not
//! fault and must leave every byte the ops type does not let programs write unchanged;
//! then on the unchecked interpreter and the JIT, which must give the same result, the
//! same object bytes and the same helper calls (a fixed clock and an array map reset
//! before every call; every call's instruction, helper, arguments and result traced). 100,000 programs by default (about 19,000 verified);
//! `STRUCTOPS_LONG=1` runs 5,300,000 (over a million verified) (`STRUCTOPS_PROGRAMS=N`
//! and `STRUCTOPS_SEED=S` change count and seed).
//!
//! A failure prints the program and its seed.

mod common {
    pub mod btfgen;
    pub mod progen;
}

use std::sync::{Arc, Mutex};

use common::btfgen::{LEAF_OFF, LEAF_SIZE, NEXT_OFF, NODE_SIZE, Rng, program};
use structops::struct_ops::{MAP_TYPE_STRUCT_OPS, add_value_type};
use structops::{
    Engine, Errno, Link, MapCreateAttr, OpsTable, ProgLoadAttr, ProgType, Region, Runtime,
    RuntimeConfig, StructOps, StructOpsDesc,
};
use structops_btf::{Btf, BtfBuilder, INT_SIGNED, TypeId};
use structops_isa::assemble;

/// A traced helper call as compared: `(pc, callee, arguments, result)`.
type TracedCall = (
    usize,
    structops::Callee,
    [Option<u64>; 5],
    Option<Option<u64>>,
);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The host types of `common/btfgen.rs`; returns the ops struct, its value type and
/// `struct node`.
fn host_btf(rt: &Runtime) -> (TypeId, TypeId, TypeId) {
    let mut b = BtfBuilder::new();
    let long = b.add_int("long", 8, INT_SIGNED);
    let int = b.add_int("int", 4, INT_SIGNED);
    let short = b.add_int("short", 2, INT_SIGNED);
    let chr = b.add_int("char", 1, 0);
    let d = b.add_array(chr, int, 2);
    let arr = b.add_array(long, int, 4);
    let leaf = b.add_struct(
        "leaf",
        16,
        &[("x", long, 0), ("y", int, 64), ("z", int, 96)],
    );
    let pleaf = b.add_ptr(leaf);
    // `struct node *next` points at the struct defined right after it.
    let pnode = b.add_ptr(b.next_id() + 1);
    let node = b.add_struct(
        "node",
        NODE_SIZE as u32,
        &[
            ("a", long, 0),
            ("b", int, 64),
            ("c", short, 96),
            ("d", d, 112),
            ("next", pnode, 128),
            ("leaf", pleaf, 192),
            ("inl", leaf, 256),
            ("arr", arr, 384),
        ],
    );
    assert_eq!(pnode + 1, node);
    let pnode_full = pnode;
    let proto = b.add_func_proto(long, &[("n", pnode_full), ("k", long)]);
    let fp = b.add_ptr(proto);
    let ops = b.add_struct("fuzz_ops", 16, &[("f", fp, 0), ("g", fp, 64)]);
    let value = add_value_type(&mut b, ops, "fuzz_ops").unwrap();
    rt.register_host_btf(b.build()).unwrap();
    (ops, value, node)
}

/// Keeps the registered table; lets programs write `node.a` and `node.arr`.
struct Host {
    node: u32,
    table: Mutex<Option<Arc<OpsTable>>>,
}

/// Bytes of `struct node` programs may write: `a` and `arr`.
fn writable(byte: usize) -> bool {
    byte < 8 || (48..80).contains(&byte)
}

impl StructOps for Host {
    fn reg(&self, t: &Arc<OpsTable>, _: Option<&Link>) -> Result<(), Errno> {
        *self.table.lock().unwrap() = Some(t.clone());
        Ok(())
    }

    fn unreg(&self, _: &Arc<OpsTable>, _: Option<&Link>) {
        *self.table.lock().unwrap() = None;
    }

    fn struct_write(
        &self,
        _: &Btf,
        btf_id: u32,
        off: i32,
        size: u32,
    ) -> Option<Result<(), String>> {
        let ok = btf_id == self.node
            && off >= 0
            && (off as usize..off as usize + size as usize).all(writable);
        Some(if ok {
            Ok(())
        } else {
            Err(format!("no write access to node at off {off} size {size}"))
        })
    }
}

/// One object graph: the argument node, another node and a leaf, and which of them the
/// runtime may read.
struct Graph {
    n0: [u8; NODE_SIZE],
    n1: [u8; NODE_SIZE],
    l1: [u8; LEAF_SIZE],
    register: bool,
}

fn put(bytes: &mut [u8], off: usize, v: u64) {
    bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

impl Graph {
    fn random(rng: &mut Rng) -> Box<Graph> {
        let mut g = Box::new(Graph {
            n0: [0; NODE_SIZE],
            n1: [0; NODE_SIZE],
            l1: [0; LEAF_SIZE],
            register: rng.chance(60),
        });
        for b in g.n0.iter_mut().chain(&mut g.n1).chain(&mut g.l1) {
            *b = rng.next() as u8;
        }
        let (n0, n1, l1) = (
            g.n0.as_ptr() as u64,
            g.n1.as_ptr() as u64,
            g.l1.as_ptr() as u64,
        );
        let pick = |rng: &mut Rng, good: u64| match rng.below(8) {
            0 | 1 => 0,
            2..=4 => good,
            5 => n0,
            6 => 0xdead_0000_0000 + rng.below(1 << 16),
            _ => rng.below(0x1_0000),
        };
        let (a, b, c, d) = (pick(rng, n1), pick(rng, l1), pick(rng, n0), pick(rng, l1));
        put(&mut g.n0, NEXT_OFF, a);
        put(&mut g.n0, LEAF_OFF, b);
        put(&mut g.n1, NEXT_OFF, c);
        put(&mut g.n1, LEAF_OFF, d);
        g
    }
}

/// Registers the graph's other objects (not the argument) with the runtime for probes
/// while `f` runs.
fn with_registered<T>(rt: &Runtime, g: &Graph, f: impl FnOnce() -> T) -> T {
    let ranges = [
        (g.n1.as_ptr() as u64, NODE_SIZE as u64),
        (g.l1.as_ptr() as u64, LEAF_SIZE as u64),
    ];
    if g.register {
        for (a, l) in ranges {
            // SAFETY: the graph outlives the registration, withdrawn below.
            unsafe { rt.register_probe_memory(a, l) };
        }
    }
    let r = f();
    if g.register {
        for (a, _) in ranges {
            rt.unregister_probe_memory(a);
        }
    }
    r
}

#[test]
fn accepted_struct_ops_programs_never_fault_and_engines_agree() {
    let long = std::env::var("STRUCTOPS_LONG").is_ok_and(|v| v == "1");
    // About one program in five verifies: 100,000 give some 19,000 verified programs
    // compared on both engines; the long run's 5,300,000 give more than a million.
    let count = env_u64("STRUCTOPS_PROGRAMS").unwrap_or(if long { 5_300_000 } else { 100_000 });
    let seed = env_u64("STRUCTOPS_SEED").unwrap_or(0xb7f_50d0);

    let rt = Runtime::new(RuntimeConfig {
        ncpus: 1,
        ..RuntimeConfig::default()
    });
    // Helpers: a fixed clock, an array map reset before every call, and a trace of
    // every helper call, compared between the checked run and both engines.
    rt.set_clock(Some(Arc::new(|_| 123_456_789)));
    let array = rt
        .map_create(&MapCreateAttr::new(structops::MapType::Array, 4, 16, 4))
        .unwrap();
    let array_fd = rt.fd_install(array.clone()).unwrap();
    let trace: Arc<Mutex<Vec<structops::HelperCall>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = trace.clone();
    rt.set_helper_trace(Some(Arc::new(move |c: &structops::HelperCall| {
        sink.lock().unwrap().push(*c);
    })));
    let reset = || {
        for k in 0..4u32 {
            let v: Vec<u8> = (0..16).map(|i| (k * 16 + i) as u8).collect();
            rt.map_update_elem(&array, Some(&k.to_ne_bytes()), &v, 0)
                .unwrap();
        }
        trace.lock().unwrap().clear();
    };
    // A call as compared: instruction, helper, arguments and result, with host
    // addresses (from 2^40 up: stacks, map values) only "an address".
    let calls = || -> Vec<TracedCall> {
        let norm = |v: u64| (v < 1 << 40).then_some(v);
        trace
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.pc, c.callee, c.args.map(norm), c.ret.map(norm)))
            .collect()
    };
    let (ops, value, node) = host_btf(&rt);
    let host = Arc::new(Host {
        node,
        table: Mutex::new(None),
    });
    let ty = rt
        .register_struct_ops(StructOpsDesc::new("fuzz_ops", host.clone()))
        .unwrap();
    let (value_size, data_off) = (ty.value_size(), ty.data_offset() as usize);
    let mut b = BtfBuilder::new();
    b.add_int("int", 4, INT_SIGNED);
    let btf_fd = rt
        .fd_install(rt.btf_load(&b.build().encode()).unwrap())
        .unwrap();
    let map_attr = MapCreateAttr {
        map_type: MAP_TYPE_STRUCT_OPS,
        key_size: 4,
        value_size,
        max_entries: 1,
        btf_fd,
        btf_vmlinux_value_type_id: value,
        ..MapCreateAttr::default()
    };

    // `STRUCTOPS_SOUNDNESS_REASONS=1`: print why programs were rejected, by count.
    let reasons_on = std::env::var("STRUCTOPS_SOUNDNESS_REASONS").is_ok_and(|v| v == "1");
    let reasons = std::cell::RefCell::new(std::collections::BTreeMap::<String, u64>::new());
    let mut rng = Rng::new(seed);
    let (mut accepted, mut rejected, mut runs, mut probes) = (0u64, 0u64, 0u64, 0u64);
    let mut helper_calls = 0u64;
    for _ in 0..count {
        let prog_seed = rng.next();
        let mut prng = Rng::new(prog_seed);
        let text = program(&mut prng, array_fd);
        let insns = assemble(&text)
            .unwrap_or_else(|e| panic!("bad assembly ({e}) for seed {prog_seed:#x}:\n{text}"))
            .encode();
        let load = |member: u32, engine: Engine| {
            let mut a = ProgLoadAttr::new(ProgType::STRUCT_OPS, insns.clone(), "GPL");
            a.attach_btf_id = ops;
            a.expected_attach_type = member;
            a.engine = Some(engine);
            let mut log = String::new();
            let r = rt.prog_load_with_log(&a, &mut log);
            if r.is_err() && reasons_on {
                let line = log
                    .lines()
                    .rev()
                    .find(|l| !l.starts_with("processed") && !l.is_empty())
                    .unwrap_or("");
                let key: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
                *reasons.borrow_mut().entry(key).or_insert(0u64) += 1;
            }
            r
        };
        let f = match load(0, Engine::Interp) {
            Ok(p) => p,
            Err(Errno::EACCES | Errno::EINVAL | Errno::E2BIG | Errno::ENOTSUPP) => {
                rejected += 1;
                continue;
            }
            Err(e) => panic!("prog_load returned {e} for seed {prog_seed:#x}:\n{text}"),
        };
        accepted += 1;
        let g = load(1, Engine::Jit)
            .unwrap_or_else(|e| panic!("second load failed ({e}), seed {prog_seed:#x}"));
        assert_eq!(g.engine(), Engine::Jit, "seed {prog_seed:#x}");
        if let structops::Verification::Verified(v) = f.verification() {
            probes += v.proof().facts().iter().filter(|f| f.probe_mem).count() as u64;
        }
        let map = rt.map_create(&map_attr).unwrap();
        let (f_fd, g_fd) = (rt.fd_install(f).unwrap(), rt.fd_install(g).unwrap());
        let mut v = vec![0u8; value_size as usize];
        put(&mut v, data_off, u64::from(f_fd));
        put(&mut v, data_off + 8, u64::from(g_fd));
        rt.map_update_elem(&map, Some(&0u32.to_ne_bytes()), &v, 0)
            .unwrap_or_else(|e| panic!("map update {e}, seed {prog_seed:#x}"));
        let table = host.table.lock().unwrap().clone().unwrap();
        for _ in 0..3 {
            let mut graph = Graph::random(&mut prng);
            let k = prng.below(200);
            let before = graph.n0;
            let n0 = graph.n0.as_mut_ptr() as u64;
            reset();
            let checked = with_registered(&rt, &graph, || {
                // SAFETY: `graph.n0` is alive and only the program touches it meanwhile.
                let region =
                    unsafe { Region::from_raw_parts(n0, NODE_SIZE, structops::Access::ReadWrite) };
                table.call_checked(&rt, 0, &[n0, k], &[region])
            });
            runs += 1;
            let r0 = checked.unwrap_or_else(|e| {
                panic!("accepted program faulted: {e}; seed {prog_seed:#x}:\n{text}")
            });
            for (i, (x, y)) in before.iter().zip(&graph.n0).enumerate() {
                assert!(
                    writable(i) || x == y,
                    "byte {i} of the node changed ({x:#x} -> {y:#x}), seed {prog_seed:#x}:\n{text}"
                );
            }
            let after = graph.n0;
            let checked_calls = calls();
            helper_calls += checked_calls.len() as u64;
            for member in [0, 1] {
                graph.n0 = before;
                reset();
                let r = with_registered(&rt, &graph, || table.call(&rt, member, &[n0, k]))
                    .unwrap_or_else(|e| panic!("member {member}: {e}, seed {prog_seed:#x}"));
                assert_eq!(
                    calls(),
                    checked_calls,
                    "member {member}: helper calls differ, seed {prog_seed:#x}:\n{text}"
                );
                assert_eq!(
                    r, r0,
                    "member {member} disagrees, seed {prog_seed:#x}:\n{text}"
                );
                assert_eq!(
                    graph.n0, after,
                    "member {member} wrote differently, seed {prog_seed:#x}:\n{text}"
                );
            }
        }
        drop(table);
        rt.map_delete_elem(&map, Some(&0u32.to_ne_bytes())).unwrap();
        for fd in [f_fd, g_fd] {
            rt.fd_close(fd).unwrap();
        }
    }
    let mut by_count: Vec<_> = reasons.into_inner().into_iter().collect();
    by_count.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (why, n) in by_count {
        println!("{n:8} {why}");
    }
    println!(
        "struct_ops soundness: {count} programs from seed {seed:#x}: {accepted} accepted \
         ({probes} probe loads), {rejected} rejected; {runs} checked calls, no fault, \
         engines equal, {helper_calls} helper calls traced alike"
    );
    assert!(
        accepted * 20 >= count,
        "only {accepted} of {count} accepted: the generator no longer produces valid programs"
    );
    assert!(rejected * 20 >= count, "only {rejected} rejections");
    assert!(probes > accepted / 4, "too few probe loads ({probes})");
}
