//! Twin runtimes, one per engine, built alike, for differential runs of the same
//! verified program on the interpreter and the JIT: the same maps (same descriptors),
//! the same `bpf_get_prandom_u32` seed, a fixed clock for the time helpers, and a
//! helper trace. Shared by `tests/jit_diff.rs` and the `jit_diff` fuzz target.

use std::sync::{Arc, Mutex};

use structops::{
    Capabilities, Engine, HelperCall, MapCreateAttr, MapHandle, MapType, ProgHandle, RunMode,
    Runtime, RuntimeConfig, TestRun,
};

use super::progen;

/// One engine's runtime.
pub struct Side {
    pub rt: Runtime,
    pub maps: progen::GenMaps,
    array: MapHandle,
    hash: MapHandle,
    calls: Arc<Mutex<Vec<HelperCall>>>,
}

const ARRAY_VALUE: u32 = 48;
const ARRAY_ENTRIES: u32 = 4;
const HASH_KEY: u32 = 8;
const HASH_VALUE: u32 = 16;

pub fn side(engine: Engine) -> Side {
    side_with(engine, true)
}

/// A side without the helper trace: its runs take the native fast paths (map and
/// ring buffer helpers, inlined `bpf_loop`) that a trace switches off.
pub fn side_untraced(engine: Engine) -> Side {
    side_with(engine, false)
}

fn side_with(engine: Engine, traced: bool) -> Side {
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        caps: Capabilities::BPF | Capabilities::NET_ADMIN,
        engine,
        prandom_seed: Some(0x5eed),
        ..RuntimeConfig::default()
    });
    rt.set_clock(Some(Arc::new(|_| 987_654_321_000)));
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
    if traced {
        rt.set_helper_trace(Some(Arc::new(move |c: &HelperCall| {
            if let Ok(mut v) = sink.lock() {
                v.push(*c);
            }
        })));
    }
    Side {
        rt,
        maps,
        array,
        hash,
        calls,
    }
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
        s.rt.map_update_elem(&s.array, Some(&k.to_ne_bytes()), &zero, 0)
            .expect("reset array");
    }
    let mut key = vec![0u8; HASH_KEY as usize];
    while s.rt.map_get_next_key(&s.hash, None, &mut key).is_ok() {
        s.rt.map_delete_elem(&s.hash, Some(&key))
            .expect("reset hash");
    }
    s.calls.lock().expect("trace").clear();
}

/// A helper call as compared: `(pc, callee, arguments, result)`, addresses blurred.
pub type TracedCall = (
    usize,
    structops::Callee,
    [Option<u64>; 5],
    Option<Option<u64>>,
);

/// A run's result and map contents, borrowed ([`Outcome::effects`]).
pub type Effects<'a> = (
    &'a Result<(u32, Option<Vec<u8>>), structops::Errno>,
    &'a [Vec<u8>],
    &'a [(Vec<u8>, Vec<u8>)],
);

impl Outcome {
    /// Result and maps, without the helper calls (an untraced side has none).
    pub fn effects(&self) -> Effects<'_> {
        (&self.result, &self.array, &self.hash)
    }
}

/// What a run left behind, comparably.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    result: Result<(u32, Option<Vec<u8>>), structops::Errno>,
    array: Vec<Vec<u8>>,
    hash: Vec<(Vec<u8>, Vec<u8>)>,
    pub calls: Vec<TracedCall>,
}

fn outcome(s: &Side, r: Result<(), structops::Errno>, t: &TestRun) -> Outcome {
    let array = (0..ARRAY_ENTRIES)
        .map(|k| {
            let mut v = vec![0u8; ARRAY_VALUE as usize];
            s.rt.map_lookup_elem(&s.array, Some(&k.to_ne_bytes()), &mut v, 0)
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

/// Resets `s`, runs `p` once on `packet` in the default mode, and returns what the run
/// left behind. A checked-mode fault is reported as `Err`.
pub fn run(s: &Side, p: &ProgHandle, packet: &[u8]) -> Result<Outcome, String> {
    reset(s);
    let mut t = TestRun::with_data(packet);
    t.data_out = Some(Vec::new());
    t.mode = RunMode::Auto;
    let r = s.rt.prog_test_run(p, &mut t);
    if let Some(f) = &t.fault {
        return Err(format!("a verified program faulted: {f}"));
    }
    Ok(outcome(s, r, &t))
}
