//! The JIT against the interpreter, through the runtime: random programs that the
//! verifier accepts run on both engines and must give the same result.
//!
//! Two runtimes, one per engine, are built alike: the same maps (same descriptors), the
//! same `bpf_get_prandom_u32` seed, a fixed clock for the time helpers, and a helper
//! trace. For each input (raw instructions or a seed of the soundness generator, as in
//! the `verifier` target) both load the program; when it is verified, both maps are reset
//! and both run it once on the packet from the input. A finding is any difference in:
//! the test run's result (errno, retval, output packet), the maps' contents afterwards,
//! or the sequence of helper calls (which helper, from which instruction, with which
//! arguments, returning what; values that are host addresses — stack, map values,
//! packet — differ between runtimes by nature and are compared as "an address").
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use structops::{
    Capabilities, Engine, HelperCall, MapCreateAttr, MapHandle, MapType, ProgLoadAttr, ProgType,
    RunMode, Runtime, RuntimeConfig, TestRun,
};
use structops_isa::{Insn, assemble};

#[path = "../../crates/structops/tests/common/progen.rs"]
mod progen;

/// One engine's runtime.
struct Side {
    rt: Runtime,
    maps: progen::GenMaps,
    array: MapHandle,
    hash: MapHandle,
    calls: Arc<Mutex<Vec<HelperCall>>>,
}

const ARRAY_VALUE: u32 = 48;
const ARRAY_ENTRIES: u32 = 4;
const HASH_KEY: u32 = 8;
const HASH_VALUE: u32 = 16;

fn side(engine: Engine) -> Side {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        caps: Capabilities::BPF | Capabilities::NET_ADMIN,
        engine,
        prandom_seed: Some(0x5eed),
        ..RuntimeConfig::default()
    });
    rt.set_clock(Some(Arc::new(|_| 1_234_567_890_123)));
    let array = rt
        .map_create(&MapCreateAttr::new(
            MapType::Array,
            4,
            ARRAY_VALUE,
            ARRAY_ENTRIES,
        ))
        .expect("array map");
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, HASH_KEY, HASH_VALUE, 64))
        .expect("hash map");
    let maps = progen::GenMaps {
        array_fd: rt.fd_install(array.clone()).expect("fd"),
        array_value: ARRAY_VALUE,
        array_entries: ARRAY_ENTRIES,
        hash_fd: rt.fd_install(hash.clone()).expect("fd"),
        hash_value: HASH_VALUE,
    };
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sink = calls.clone();
    rt.set_helper_trace(Some(Arc::new(move |c: &HelperCall| {
        if let Ok(mut v) = sink.lock() {
            v.push(*c);
        }
    })));
    Side {
        rt,
        maps,
        array,
        hash,
        calls,
    }
}

fn sides() -> &'static [Side; 2] {
    static S: OnceLock<[Side; 2]> = OnceLock::new();
    S.get_or_init(|| [side(Engine::Interp), side(Engine::Jit)])
}

/// A value as it is compared: host addresses (x86-64 user space from 2^40 up; the
/// runtimes' stacks, maps and packets live there) are only "an address".
fn norm(v: u64) -> Option<u64> {
    (v < 1 << 40).then_some(v)
}

/// Empties the maps and the trace before a run.
fn reset(s: &Side) {
    let zero = vec![0u8; ARRAY_VALUE as usize];
    for k in 0..ARRAY_ENTRIES {
        s.rt
            .map_update_elem(&s.array, Some(&k.to_ne_bytes()), &zero, 0)
            .expect("reset array");
    }
    let mut key = vec![0u8; HASH_KEY as usize];
    while s.rt.map_get_next_key(&s.hash, None, &mut key).is_ok() {
        s.rt.map_delete_elem(&s.hash, Some(&key)).expect("reset hash");
    }
    s.calls.lock().expect("trace").clear();
}

/// What a run left behind, comparably.
#[derive(Debug, PartialEq)]
struct Outcome {
    result: Result<(u32, Option<Vec<u8>>), structops::Errno>,
    array: Vec<Vec<u8>>,
    hash: Vec<(Vec<u8>, Vec<u8>)>,
    calls: Vec<(usize, structops::Callee, [Option<u64>; 5], Option<Option<u64>>)>,
}

fn outcome(s: &Side, r: Result<(), structops::Errno>, t: &TestRun) -> Outcome {
    let array = (0..ARRAY_ENTRIES)
        .map(|k| {
            let mut v = vec![0u8; ARRAY_VALUE as usize];
            s.rt
                .map_lookup_elem(&s.array, Some(&k.to_ne_bytes()), &mut v, 0)
                .expect("array lookup");
            v
        })
        .collect();
    let mut hash = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    loop {
        let mut key = vec![0u8; HASH_KEY as usize];
        if s.rt
            .map_get_next_key(&s.hash, prev.as_deref(), &mut key)
            .is_err()
        {
            break;
        }
        let mut v = vec![0u8; HASH_VALUE as usize];
        if s.rt.map_lookup_elem(&s.hash, Some(&key), &mut v, 0).is_ok() {
            hash.push((key.clone(), v));
        }
        prev = Some(key);
    }
    hash.sort();
    let calls = s
        .calls
        .lock()
        .expect("trace")
        .iter()
        .map(|c| (c.pc, c.callee, c.args.map(norm), c.ret.map(norm)))
        .collect();
    Outcome {
        result: r.map(|()| (t.retval, t.data_out.clone())),
        array,
        hash,
        calls,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let [interp, jit] = sides();
    let (insns, packet): (Vec<Insn>, &[u8]) = if mode % 2 == 0 {
        let n = rest.len() / 8 * 8;
        match Insn::parse_slice(&rest[..n]) {
            Ok(i) if !i.is_empty() => (i, &[0u8; 64][..]),
            _ => return,
        }
    } else {
        let mut seed = [0u8; 8];
        let take = rest.len().min(8);
        seed[..take].copy_from_slice(&rest[..take]);
        let mut rng = progen::Rng::new(u64::from_le_bytes(seed));
        let text = progen::program(&mut rng, &interp.maps);
        let prog = assemble(&text).expect("the generator's output assembles");
        (prog.encode(), &rest[take..])
    };
    let attr = ProgLoadAttr::new(ProgType::XDP, insns, "GPL");
    let (a, b) = (interp.rt.prog_load(&attr), jit.rt.prog_load(&attr));
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(x), Err(y)) => {
            assert_eq!(x, y, "the two runtimes' loads disagree");
            return;
        }
        (x, y) => panic!(
            "one runtime loaded the program: {:?} vs {:?}",
            x.err(),
            y.err()
        ),
    };
    assert_eq!(a.is_verified(), b.is_verified());
    if !a.is_verified() {
        return;
    }
    assert_eq!((a.engine(), b.engine()), (Engine::Interp, Engine::Jit));
    let mut outcomes = Vec::new();
    for (s, p) in [(interp, &a), (jit, &b)] {
        reset(s);
        let mut t = TestRun::with_data(packet);
        t.data_out = Some(Vec::new());
        t.mode = RunMode::Auto;
        let r = s.rt.prog_test_run(p, &mut t);
        assert!(t.fault.is_none(), "a verified program faulted: {:?}", t.fault);
        outcomes.push(outcome(s, r, &t));
    }
    assert_eq!(outcomes[0], outcomes[1], "interpreter vs JIT");
});
