//! Soundness of the verifier, end to end: random XDP programs (packet loads behind
//! bounds checks, map values behind null checks, variable offsets, spills and fills,
//! helper calls — see `common/gen.rs`) go through `prog_load`; every program the
//! verifier accepts is test-run in the interpreter's checked mode on random packets and
//! random map contents, and must never fault (an access outside the regions the run
//! grants). 20,000 programs by default; `STRUCTOPS_LONG=1` runs 1,000,000
//! (`STRUCTOPS_PROGRAMS=N` and `STRUCTOPS_SEED=S` change count and seed).
//!
//! A failure prints the program, its seed and the fault, so it can be replayed.

mod common {
    pub mod progen;
}

use common::progen::{GenMaps, Rng, program};
use structops::{
    BPF_ANY, Capabilities, Errno, MapCreateAttr, MapType, ProgLoadAttr, ProgType, RunMode, Runtime,
    RuntimeConfig, TestRun,
};
use structops_isa::assemble;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn accepted_programs_never_fault_in_checked_runs() {
    let long = std::env::var("STRUCTOPS_LONG").is_ok_and(|v| v == "1");
    let count = env_u64("STRUCTOPS_PROGRAMS").unwrap_or(if long { 1_000_000 } else { 20_000 });
    let seed = env_u64("STRUCTOPS_SEED").unwrap_or(0x5eed_50d0);

    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        ..RuntimeConfig::default()
    });
    let array = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 48, 4).name("gen_array"))
        .unwrap();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 8, 16, 64).name("gen_hash"))
        .unwrap();
    let maps = GenMaps {
        array_fd: rt.fd_install(array.clone()).unwrap(),
        array_value: 48,
        array_entries: 4,
        hash_fd: rt.fd_install(hash.clone()).unwrap(),
        hash_value: 16,
    };

    let mut rng = Rng::new(seed);
    let (mut accepted, mut rejected, mut runs) = (0u64, 0u64, 0u64);
    let mut unverified = 0u64;
    let mut uninit_stack = 0u64;
    for n in 0..count {
        let prog_seed = rng.next();
        let mut prng = Rng::new(prog_seed);
        let text = program(&mut prng, &maps);
        let insns = match assemble(&text) {
            Ok(p) => p.encode(),
            Err(e) => {
                panic!("generator produced bad assembly ({e}) for seed {prog_seed:#x}:\n{text}")
            }
        };
        // Every other program is loaded without CAP_PERFMON, where the verifier must
        // also refuse reads of uninitialized stack (so any such trap is a bug).
        let privileged = n % 2 == 0;
        rt.set_caps(if privileged {
            Capabilities::ALL
        } else {
            Capabilities::BPF | Capabilities::NET_ADMIN
        });
        let attr = ProgLoadAttr::new(ProgType::XDP, insns, "GPL");
        let prog = match rt.prog_load(&attr) {
            Ok(p) => p,
            Err(Errno::EACCES | Errno::EINVAL | Errno::E2BIG | Errno::ENOTSUPP) => {
                rejected += 1;
                continue;
            }
            Err(e) => panic!("prog_load returned {e} for seed {prog_seed:#x}:\n{text}"),
        };
        if !rt.prog_info(&prog).verified {
            unverified += 1;
            if n == 0 {
                println!("skipped: the runtime installs no verifier; nothing to check");
                return;
            }
            continue;
        }
        accepted += 1;
        // Random map contents, then runs on packets of random size and content.
        for k in 0..4u32 {
            let v: Vec<u8> = (0..48).map(|_| prng.next() as u8).collect();
            rt.map_update_elem(&array, Some(&k.to_ne_bytes()), &v, BPF_ANY)
                .unwrap();
        }
        for _ in 0..3 {
            let len = match prng.below(4) {
                0 => 14,
                1 => 60,
                2 => prng.below(8) as usize,
                _ => prng.below(300) as usize,
            };
            let pkt: Vec<u8> = (0..len).map(|_| prng.next() as u8).collect();
            let mut t = TestRun::with_data(&pkt);
            t.mode = RunMode::Checked;
            runs += 1;
            if let Err(e) = rt.prog_test_run(&prog, &mut t) {
                let fault = t.fault.as_ref().map(ToString::to_string);
                // A packet shorter than the Ethernet header is refused by test_run
                // itself (EINVAL), as in the kernel; that is not a fault.
                if e == Errno::EINVAL && len < 14 && fault.is_none() {
                    continue;
                }
                // With CAP_PERFMON the verifier, as the kernel's, lets programs read
                // uninitialized bytes of their own stack (`allow_uninit_stack`);
                // checked runs trap such reads although they stay in bounds.
                if privileged
                    && fault
                        .as_deref()
                        .is_some_and(|f| f.contains("touches uninitialized stack"))
                {
                    uninit_stack += 1;
                    continue;
                }
                panic!(
                    "accepted program faulted ({e}, {fault:?}) on a {len}-byte packet; \
                     program seed {prog_seed:#x}:\n{text}"
                );
            }
        }
    }
    println!(
        "verifier soundness: {count} programs from seed {seed:#x}: {accepted} accepted, \
         {rejected} rejected, {unverified} unverified; {runs} checked runs, no fault \
         ({uninit_stack} in-bounds reads of uninitialized stack, allowed with CAP_PERFMON)"
    );
    // The generator must exercise the verifier's accept side, or the test proves nothing.
    assert!(
        accepted * 20 >= count,
        "only {accepted} of {count} programs were accepted: the generator no longer \
         produces enough valid programs"
    );
    assert!(
        rejected * 20 >= count,
        "only {rejected} rejections: too few edge cases"
    );
}

#[test]
fn generated_programs_assemble_and_vary() {
    let maps = GenMaps {
        array_fd: 3,
        array_value: 48,
        array_entries: 4,
        hash_fd: 4,
        hash_value: 16,
    };
    let mut rng = Rng::new(1);
    let mut lens = std::collections::BTreeSet::new();
    let mut first = None;
    for _ in 0..5_000 {
        let text = program(&mut rng, &maps);
        let prog = assemble(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        lens.insert(prog.encode().len());
        first.get_or_insert(text);
    }
    assert!(lens.len() > 50, "program lengths barely vary: {lens:?}");
    // Deterministic in the seed.
    let again = program(&mut Rng::new(1), &maps);
    assert_eq!(Some(again), first);
}

/// Replays one generated program on one packet: `STRUCTOPS_REPLAY_SEED` (the
/// generator seed, decimal or 0x hex) and `STRUCTOPS_REPLAY_PACKET` (hex bytes).
#[test]
#[ignore = "debugging aid, needs STRUCTOPS_REPLAY_SEED"]
fn replay() {
    let Ok(seed) = std::env::var("STRUCTOPS_REPLAY_SEED") else {
        return;
    };
    let seed = seed.strip_prefix("0x").map_or_else(
        || seed.parse().unwrap(),
        |h| u64::from_str_radix(h, 16).unwrap(),
    );
    let pkt_hex = std::env::var("STRUCTOPS_REPLAY_PACKET").unwrap_or_default();
    // `STRUCTOPS_REPLAY_UNPRIV=1`: load without CAP_PERFMON, as the fuzz target does.
    let unpriv = std::env::var("STRUCTOPS_REPLAY_UNPRIV").is_ok_and(|v| v == "1");
    let pkt: Vec<u8> = (0..pkt_hex.len() / 2)
        .map(|i| u8::from_str_radix(&pkt_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 2,
        ..RuntimeConfig::default()
    });
    let array = rt
        .map_create(&MapCreateAttr::new(MapType::Array, 4, 48, 4))
        .unwrap();
    let hash = rt
        .map_create(&MapCreateAttr::new(MapType::Hash, 8, 16, 64))
        .unwrap();
    let maps = GenMaps {
        array_fd: rt.fd_install(array).unwrap(),
        array_value: 48,
        array_entries: 4,
        hash_fd: rt.fd_install(hash).unwrap(),
        hash_value: 16,
    };
    let text = program(&mut Rng::new(seed), &maps);
    println!("{text}");
    if unpriv {
        rt.set_caps(Capabilities::BPF | Capabilities::NET_ADMIN);
    }
    let attr = ProgLoadAttr::new(ProgType::XDP, assemble(&text).unwrap().encode(), "GPL");
    let prog = rt.prog_load(&attr).unwrap();
    let mut t = TestRun::with_data(&pkt);
    t.mode = RunMode::Checked;
    let r = rt.prog_test_run(&prog, &mut t);
    println!("result {r:?} fault {:?}", t.fault);
}
