//! JIT hardening, seen from outside: after programs are compiled (with and without
//! constant blinding) and run, the process's memory map (`/proc/self/maps`) has no
//! mapping that is both writable and executable, every program's native code lies in a
//! read-execute mapping, and blinding keeps the program's immediates out of the code.

use structops::{JitHarden, ProgHandle, ProgLoadAttr, ProgType, Runtime, RuntimeConfig, TestRun};
use structops_isa::assemble;

/// `(start, end, permissions)` of every mapping of this process.
fn mappings() -> Vec<(u64, u64, String)> {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    maps.lines()
        .filter_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (lo, hi) = range.split_once('-')?;
            let perms = rest.split(' ').next()?.to_string();
            Some((
                u64::from_str_radix(lo, 16).ok()?,
                u64::from_str_radix(hi, 16).ok()?,
                perms,
            ))
        })
        .collect()
}

/// A program whose 32- and 64-bit immediates are easy to find in machine code (applied
/// to a value read from the context, so the compiler cannot fold them away).
const SRC: &str =
    "r0 = *(u32 *)(r1 +12)\nr0 += 0x3c1b2a19\nr1 = 0x5a4b3c2d69788796 ll\nr0 ^= r1\nexit";

fn load(rt: &Runtime) -> ProgHandle {
    let insns = assemble(SRC).expect("assembles").encode();
    rt.prog_load(&ProgLoadAttr::new(ProgType::XDP, insns, "GPL").name("wx"))
        .expect("loads")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_mapping_is_ever_writable_and_executable() {
    let mut progs = Vec::new();
    let mut runtimes = Vec::new();
    for harden in [JitHarden::Off, JitHarden::All] {
        let rt = Runtime::new(RuntimeConfig {
            ncpus: 1,
            engine: structops::Engine::Jit,
            jit_harden: harden,
            ..RuntimeConfig::default()
        });
        for _ in 0..8 {
            let p = load(&rt);
            let mut t = TestRun::with_data(&[0u8; 64]);
            rt.prog_test_run(&p, &mut t).expect("runs");
            progs.push((harden, p));
        }
        // The runtime stays alive while its programs are checked below.
        runtimes.push(rt);
    }
    let maps = mappings();
    assert!(!maps.is_empty());
    for (lo, hi, perms) in &maps {
        let p = perms.as_bytes();
        assert!(
            !(p.get(1) == Some(&b'w') && p.get(2) == Some(&b'x')),
            "{lo:x}-{hi:x} is {perms}"
        );
    }
    let imm32 = 0x3c1b_2a19u32.to_le_bytes();
    let imm64_low = 0x6978_8796u32.to_le_bytes();
    for (harden, p) in &progs {
        let jit = p.jited().expect("the JIT compiled it");
        let code = jit.machine_code();
        let addr = code.as_ptr() as u64;
        let (_, _, perms) = maps
            .iter()
            .find(|(lo, hi, _)| addr >= *lo && addr < *hi)
            .expect("the code is mapped");
        assert!(perms.starts_with("r-x"), "code at {addr:x} is {perms}");
        // Blinding: the immediates never appear in the code; without it they do.
        let blinded = *harden == JitHarden::All;
        assert_eq!(jit.options().blind_constants, blinded);
        assert_eq!(contains(code, &imm32), !blinded, "{harden:?}");
        assert_eq!(contains(code, &imm64_low), !blinded, "{harden:?}");
    }
}

/// "Ever", sampled: while programs are compiled, run and freed in a loop, another thread
/// reads the memory map as fast as it can; no sample has a writable and executable
/// mapping, and some sample saw a program's code mapped (so the sampler ran while there
/// was code to see).
#[test]
fn no_sample_during_compilation_is_writable_and_executable() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let rt = Runtime::new(RuntimeConfig {
        ncpus: 1,
        engine: structops::Engine::Jit,
        ..RuntimeConfig::default()
    });
    let done = Arc::new(AtomicBool::new(false));
    let code_at = Arc::new(AtomicU64::new(0));
    let taken = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, code_at, taken) = (done.clone(), code_at.clone(), taken.clone());
        std::thread::spawn(move || {
            let (mut samples, mut seen) = (0u64, 0u64);
            while !done.load(Ordering::Acquire) {
                let maps = mappings();
                for (lo, hi, perms) in &maps {
                    let p = perms.as_bytes();
                    assert!(
                        !(p.get(1) == Some(&b'w') && p.get(2) == Some(&b'x')),
                        "{lo:x}-{hi:x} is {perms} (sample {samples})"
                    );
                }
                let at = code_at.load(Ordering::Acquire);
                if at != 0
                    && maps
                        .iter()
                        .any(|(lo, hi, p)| at >= *lo && at < *hi && p.starts_with("r-x"))
                {
                    seen += 1;
                }
                samples += 1;
                taken.store(samples, Ordering::Release);
            }
            (samples, seen)
        })
    };
    for _ in 0..300 {
        let p = load(&rt);
        let code = p
            .jited()
            .expect("the JIT compiled it")
            .machine_code()
            .as_ptr() as u64;
        code_at.store(code, Ordering::Release);
        let mut t = TestRun::with_data(&[0u8; 64]);
        rt.prog_test_run(&p, &mut t).expect("runs");
        code_at.store(0, Ordering::Release);
        drop(p);
    }
    // Give the sampler a last look if it has not had one yet.
    let last = load(&rt);
    let code = last.jited().expect("jited").machine_code().as_ptr() as u64;
    code_at.store(code, Ordering::Release);
    let (from, start) = (taken.load(Ordering::Acquire), std::time::Instant::now());
    while taken.load(Ordering::Acquire) < from + 2 && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    done.store(true, Ordering::Release);
    let (samples, seen) = sampler.join().expect("no writable and executable mapping");
    println!("{samples} samples of the memory map, {seen} with a program's code in it");
    assert!(samples > 0 && seen > 0);
}
