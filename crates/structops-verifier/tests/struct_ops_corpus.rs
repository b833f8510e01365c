//! The kernel corpus' struct_ops programs (`conformance/build/corpus`)
//! verified here with the running kernel's BTF and the kernel's
//! `bpf_dummy_ops` / `tcp_congestion_ops` hooks, against the kernel's own
//! verdict on the same relocated instructions (the libbpf oracle
//! `libbpf_report load --each` loads each program alone, as libbpf does).
//! The verdict, errno and message must be equal. Also prints the processed
//! instruction counts of `bpf_cubic` next to the kernel's (raw
//! `BPF_PROG_LOAD` at log level 1 of the same instructions and map
//! contents).
//!
//! Skips with a reason when the corpus, the oracle or the kernel is missing.

mod kernel_ops;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use structops_btf::Btf;
use structops_isa::Insn;
use structops_obj::{BtfKsyms, ExternHost, Object};
use structops_verifier::{LogOptions, MapInfo, ProgInfo, StructOpsAttach, verify};

use kernel_ops::{KernelOps, vmlinux};

fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/build")
}

/// `license_is_gpl_compatible`.
fn gpl(license: &str) -> bool {
    matches!(
        license,
        "GPL"
            | "GPL v2"
            | "GPL and additional rights"
            | "Dual BSD/GPL"
            | "Dual MIT/GPL"
            | "Dual MPL/GPL"
    )
}

/// The kernel's message: the last meaningful line of the verifier log in
/// libbpf's error text.
fn kernel_message(err: &str) -> String {
    let log = err.split("-- END PROG LOAD LOG --").next().unwrap_or("");
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
                && !l.starts_with("libbpf:")
                && !l.starts_with("-- BEGIN PROG LOAD LOG --")
        })
        .unwrap_or("")
        .to_owned()
}

fn insns_of(p: &Value) -> Vec<Insn> {
    p["insns"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    let f = |k: usize| i[k].as_i64().unwrap_or(0);
                    Insn::new(f(0) as u8, f(1) as u8, f(2) as u8, f(3) as i16, f(4) as i32)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Subprogram starts: targets of bpf-to-bpf calls and `BPF_PSEUDO_FUNC`
/// loads (what libbpf's func_info names).
fn subprogs(insns: &[Insn]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < insns.len() {
        let i = insns[pc];
        let target = (pc as i64 + i64::from(i.imm) + 1) as u32;
        if (i.code == 0x85 && i.src_reg() == 1) || (i.code == 0x18 && i.src_reg() == 4) {
            out.push(target);
        }
        pc += if i.code == 0x18 { 2 } else { 1 };
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Map infos by fd from the report, values of frozen internal maps from
/// the object.
fn maps_of(entry: &Value, obj: &Object) -> HashMap<i32, MapInfo> {
    let mut out = HashMap::new();
    for m in entry["maps"].as_array().into_iter().flatten() {
        let fd = m["fd"].as_i64().unwrap_or(-1) as i32;
        if fd < 0 {
            continue;
        }
        let u = |k: &str| m[k].as_u64().unwrap_or(0) as u32;
        let name = m["name"].as_str().unwrap_or("").to_owned();
        let flags = u("map_flags");
        let rdonly = flags & 0x80 != 0;
        let frozen = if rdonly && m["internal"].as_bool().unwrap_or(false) {
            obj.maps()
                .iter()
                .find(|om| om.kernel_name() == name)
                .map(|om| {
                    let mut v = om.initial_value().to_vec();
                    v.resize(u("value_size") as usize, 0);
                    v
                })
        } else {
            None
        };
        out.insert(
            fd,
            MapInfo {
                map_type: u("type"),
                key_size: u("key_size"),
                value_size: u("value_size"),
                max_entries: u("max_entries"),
                flags,
                rdonly_prog: rdonly,
                wronly_prog: flags & 0x100 != 0,
                frozen_value: frozen,
                name,
                direct_value: u("type") == 2 && u("max_entries") == 1,
            },
        );
    }
    out
}

fn open_object(path: &Path, vmlinux: &Btf) -> Option<Object> {
    let bytes = std::fs::read(path).ok()?;
    let mut obj = Object::parse(&bytes).ok()?;
    let kconfig = Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let ksyms = BtfKsyms { btf: vmlinux };
    let host = ExternHost {
        kernel_version: 0,
        has_bpf_cookie: true,
        has_syscall_wrapper: true,
        extra_kconfig: None,
        system_kconfig: kconfig.as_deref(),
        ksyms: &ksyms,
    };
    // Unresolvable externs leave the kconfig map zeroed; the kernel side
    // of the comparison is libbpf's own load.
    let _ = obj.resolve_externs(&host);
    Some(obj)
}

/// One program's row.
struct Row {
    object: String,
    prog: String,
    kernel: String,
    ours: String,
    agree: bool,
    processed: u64,
}

mod raw {
    //! Raw `bpf(2)` for the kernel's processed-instruction count.
    use std::collections::HashMap;

    use structops_isa::Insn;
    use structops_verifier::MapInfo;

    /// A descriptor closed on drop.
    pub struct Fd(pub libc::c_int);

    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: we own the descriptor and close it once.
            unsafe { libc::close(self.0) };
        }
    }

    fn bpf(cmd: libc::c_long, attr: &[u8]) -> i64 {
        // SAFETY: `attr` is a live buffer of the size passed, holding a
        // `union bpf_attr` prefix for `cmd`.
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) }
    }

    fn put32(b: &mut [u8], off: usize, v: u32) {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn put64(b: &mut [u8], off: usize, v: u64) {
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Creates the map (with its frozen value written and frozen).
    pub fn map(m: &MapInfo) -> Option<Fd> {
        let mut a = [0u8; 72];
        put32(&mut a, 0, m.map_type);
        put32(&mut a, 4, m.key_size);
        put32(&mut a, 8, m.value_size);
        put32(&mut a, 12, m.max_entries);
        put32(&mut a, 16, m.flags & !0x80);
        let fd = bpf(0, &a);
        if fd < 0 {
            return None;
        }
        let fd = Fd(fd as libc::c_int);
        if let Some(v) = &m.frozen_value {
            let key = 0u32;
            let mut u = [0u8; 32];
            put32(&mut u, 0, fd.0 as u32);
            put64(&mut u, 8, &key as *const u32 as u64);
            put64(&mut u, 16, v.as_ptr() as u64);
            if bpf(2, &u) < 0 {
                return None;
            }
            let mut f = [0u8; 8];
            put32(&mut f, 0, fd.0 as u32);
            if bpf(22, &f) < 0 {
                return None;
            }
        }
        Some(fd)
    }

    /// `BPF_PROG_LOAD` as struct_ops at `log_level`: the log, or `None`
    /// when a map could not be recreated.
    pub fn load(
        insns: &[Insn],
        maps: &HashMap<i32, MapInfo>,
        attach_btf_id: u32,
        member_idx: u32,
        sleepable: bool,
        log_level: u32,
    ) -> Option<String> {
        let mut own = HashMap::new();
        for (fd, m) in maps {
            if m.map_type == 26 {
                continue;
            }
            own.insert(*fd, map(m)?);
        }
        let mut insns = insns.to_vec();
        for i in insns.iter_mut() {
            if i.code == 0x18 && matches!(i.src_reg(), 1 | 2) {
                let new = own.get(&i.imm)?.0;
                i.imm = new;
            }
        }
        let license = c"GPL";
        let mut log = vec![0u8; 1 << 24];
        let mut a = [0u8; 128];
        put32(&mut a, 0, 27);
        put32(&mut a, 4, insns.len() as u32);
        put64(&mut a, 8, insns.as_ptr() as u64);
        put64(&mut a, 16, license.as_ptr() as u64);
        put32(&mut a, 24, log_level);
        put32(&mut a, 28, log.len() as u32);
        put64(&mut a, 32, log.as_mut_ptr() as u64);
        put32(&mut a, 44, if sleepable { 1 << 4 } else { 0 });
        put32(&mut a, 68, member_idx);
        put32(&mut a, 108, attach_btf_id);
        let fd = bpf(5, &a);
        if fd >= 0 {
            drop(Fd(fd as libc::c_int));
        }
        drop(own);
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        Some(String::from_utf8_lossy(&log[..end]).into_owned())
    }
}

/// One corpus program as libbpf's oracle loaded it alone, ready for
/// [`verify`] (the environment's maps are those of its object).
struct CorpusProg {
    object: String,
    name: String,
    insns: Vec<Insn>,
    info: ProgInfo,
    maps: HashMap<i32, MapInfo>,
    btf_id: u32,
    member_idx: u32,
    sleepable: bool,
    /// The kernel's errno (0: accepted).
    kerrno: i64,
    /// The oracle's error text (the kernel's log on rejection).
    error: String,
}

/// The struct_ops programs of the corpus, plus the ones libbpf could not
/// even try to load (with why); `Err` when the corpus or oracle is missing.
fn corpus(env: &KernelOps) -> Result<(Vec<CorpusProg>, Vec<String>), String> {
    let dir = build_dir();
    let oracle = dir.join("bin/libbpf_report");
    let manifest = std::fs::read_to_string(dir.join("corpus/MANIFEST"));
    let (true, Ok(manifest)) = (oracle.exists(), manifest) else {
        return Err(
            "conformance/build (corpus and libbpf_report) not built; run conformance/build.sh"
                .to_owned(),
        );
    };
    let vm_for_obj = vmlinux()?;
    let mut progs = Vec::new();
    let mut not_loaded = Vec::new();
    for line in manifest.lines() {
        let mut f = line.split('\t');
        let (Some(name), Some("struct_ops")) = (f.next(), f.next()) else {
            continue;
        };
        let path = dir.join("corpus").join(name);
        let out = Command::new(&oracle)
            .arg("load")
            .arg("--each")
            .arg(&path)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let obj = open_object(&path, &vm_for_obj).unwrap();
        let license = obj.license().to_owned();
        for entry in report["each"].as_array().into_iter().flatten() {
            let Some(p) = entry["programs"].as_array().and_then(|a| a.first()) else {
                continue;
            };
            let pname = p["name"].as_str().unwrap_or("").to_owned();
            let Some(kerrno) = p["errno"].as_i64() else {
                // libbpf failed before BPF_PROG_LOAD (module types, missing ksyms).
                let why = entry["error"]
                    .as_str()
                    .and_then(|e| e.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("")
                    .to_owned();
                not_loaded.push(format!("{name} {pname}: {why}"));
                continue;
            };
            let ops = entry["maps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["fd"].as_i64().unwrap_or(-1) >= 0 && m["struct_ops_type"].is_string())
                .and_then(|m| m["struct_ops_type"].as_str())
                .unwrap_or("")
                .to_owned();
            let member_idx = p["expected_attach_type"].as_u64().unwrap_or(0) as u32;
            let (btf_id, _) = env.target(&ops, "#0").unwrap();
            let insns = insns_of(p);
            let sleepable = p["section"]
                .as_str()
                .unwrap_or("")
                .starts_with("struct_ops.s");
            let info = ProgInfo {
                gpl_compatible: gpl(&license),
                sleepable,
                func_info: subprogs(&insns),
                struct_ops: Some(StructOpsAttach { btf_id, member_idx }),
                ..ProgInfo::default()
            };
            progs.push(CorpusProg {
                object: name.to_owned(),
                name: pname,
                insns,
                info,
                maps: maps_of(entry, &obj),
                btf_id,
                member_idx,
                sleepable,
                kerrno,
                error: entry["error"].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    Ok((progs, not_loaded))
}

#[test]
fn corpus_struct_ops_programs_agree_with_the_kernel() {
    let btf = match vmlinux() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let mut env = KernelOps::new(btf).unwrap();
    let (progs, not_loaded) = match corpus(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let mut rows = Vec::new();
    for p in progs {
        env.maps = p.maps.clone();
        let got = verify(&p.insns, &p.info, &env, &LogOptions::default());
        let kerrno = p.kerrno;
        let kernel = if kerrno == 0 {
            "accept".to_owned()
        } else {
            format!("{kerrno} {}", kernel_message(&p.error))
        };
        let (ours, agree, processed) = match &got {
            Ok(v) => ("accept".to_owned(), kerrno == 0, v.stats().insn_processed),
            Err(e) => {
                let km = kernel_message(&p.error);
                (
                    format!("{} {}", e.errno, e.message),
                    i64::from(e.errno) == kerrno && e.message == km,
                    0,
                )
            }
        };
        if p.object.starts_with("bpf_cubic")
            && let Some(log) =
                raw::load(&p.insns, &env.maps, p.btf_id, p.member_idx, p.sleepable, 1)
        {
            let stats = log
                .lines()
                .find(|l| l.starts_with("processed "))
                .unwrap_or("(no stats)");
            eprintln!(
                "bpf_cubic {}: ours processed {processed}; kernel: {stats}",
                p.name
            );
        }
        rows.push(Row {
            object: p.object,
            prog: p.name,
            kernel,
            ours,
            agree,
            processed,
        });
    }
    eprintln!("| object | program | kernel | structops | agree | processed |");
    eprintln!("|---|---|---|---|---|---|");
    for r in &rows {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} |",
            r.object,
            r.prog,
            r.kernel,
            r.ours,
            if r.agree { "yes" } else { "NO" },
            r.processed
        );
    }
    for n in &not_loaded {
        eprintln!("not loaded by the kernel (libbpf failed first): {n}");
    }
    let bad: Vec<&Row> = rows.iter().filter(|r| !r.agree).collect();
    eprintln!(
        "{} of {} programs agree",
        rows.len() - bad.len(),
        rows.len()
    );
    assert!(rows.len() >= 30, "only {} programs compared", rows.len());
    assert!(
        bad.is_empty(),
        "disagreements: {:?}",
        bad.iter()
            .map(|r| format!(
                "{} {}: kernel {} ours {}",
                r.object, r.prog, r.kernel, r.ours
            ))
            .collect::<Vec<_>>()
    );
}

/// `(processed insns, verification time in usec)` from a kernel log's
/// stats lines.
fn kernel_stats(log: &str) -> Option<(u64, u64)> {
    let processed = log
        .lines()
        .find_map(|l| l.strip_prefix("processed "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let usec = log
        .lines()
        .find_map(|l| l.strip_prefix("verification time "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((processed, usec))
}

/// Median of `v` (sorted in place); 0 for none.
fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Our verification time of `p` in usec over repeated runs at `level`:
/// `(median, min)`, after one warm-up run; at least 5 runs, at most 200
/// or about 300 ms.
fn our_time(p: &CorpusProg, env: &KernelOps, level: u32) -> (u64, u64) {
    let log = LogOptions {
        level,
        stats: false,
    };
    let _ = verify(&p.insns, &p.info, env, &log);
    let mut times = Vec::new();
    let start = std::time::Instant::now();
    while times.len() < 5 || (times.len() < 200 && start.elapsed().as_millis() < 300) {
        let t = std::time::Instant::now();
        let r = verify(&p.insns, &p.info, env, &log);
        times.push(t.elapsed().as_micros() as u64);
        assert!(
            r.is_ok(),
            "{} {} rejected on a repeat run",
            p.object,
            p.name
        );
    }
    let min = times.iter().copied().min().unwrap_or(0);
    (median(&mut times), min)
}

/// The kernel's figures for `p` at `level` over `runs` loads: processed
/// insns and `(median, min)` verification time in usec, or `None` when
/// the kernel gave no stats line.
fn kernel_time(p: &CorpusProg, level: u32, runs: usize) -> Option<(u64, u64, u64)> {
    let mut times = Vec::new();
    let mut processed = 0;
    for _ in 0..runs {
        let log = raw::load(
            &p.insns,
            &p.maps,
            p.btf_id,
            p.member_idx,
            p.sleepable,
            level,
        )?;
        let (n, us) = kernel_stats(&log)?;
        processed = n;
        times.push(us);
    }
    let min = times.iter().copied().min().unwrap_or(0);
    Some((processed, median(&mut times), min))
}

/// Verification speed of every corpus program the kernel accepts, next to
/// the kernel's own figures from the same machine in the same run: its
/// processed-insn count and `verification time` (the whole `bpf_check`)
/// at log level 4 (`BPF_LOG_STATS`, no per-insn log) against ours at level
/// 0, and both at level 1 (every instruction of every path printed; the
/// kernel at 1|4 for its time line). Programs whose maps the raw loader
/// cannot recreate get `-` for the kernel.
/// Timings mean something only in a release build:
/// `cargo test --release -p structops-verifier --test struct_ops_corpus -- --nocapture speed`.
#[test]
fn corpus_verification_speed_against_the_kernel() {
    let btf = match vmlinux() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let mut env = KernelOps::new(btf).unwrap();
    let (progs, _) = match corpus(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("note: debug build, timings are not representative (use --release)");
    }
    eprintln!(
        "| object | program | processed ours | processed kernel | ours L0 us (median/min) | kernel L4 us (median/min) | ours L1 us | kernel L1 us |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|");
    let mut measured = 0;
    let (mut ours_total, mut kernel_total) = (0u64, 0u64);
    for p in progs.iter().filter(|p| p.kerrno == 0) {
        env.maps = p.maps.clone();
        let v = verify(&p.insns, &p.info, &env, &LogOptions::default());
        let Ok(v) = v else {
            panic!("{} {}: the kernel accepts, we reject", p.object, p.name);
        };
        let processed = v.stats().insn_processed;
        assert!(processed >= 1, "{} {}: no insn processed", p.object, p.name);
        let (l0, l0_min) = our_time(p, &env, 0);
        let (l1, _) = our_time(p, &env, 1);
        let k4 = kernel_time(p, 4, 7);
        // BPF_LOG_LEVEL1 | BPF_LOG_STATS: the time line needs the stats bit.
        let k1 = kernel_time(p, 5, 3);
        let kp = k4.map_or("-".to_owned(), |k| k.0.to_string());
        let k4s = k4.map_or("-".to_owned(), |k| format!("{}/{}", k.1, k.2));
        let k1s = k1.map_or("-".to_owned(), |k| k.1.to_string());
        if let Some(k) = k4 {
            // Processed instructions are deterministic: ours never exceed the kernel's.
            assert!(
                processed <= k.0,
                "{} {}: {processed} processed instructions, the kernel {}",
                p.object,
                p.name,
                k.0
            );
            ours_total += l0;
            kernel_total += k.1;
            measured += 1;
        }
        eprintln!(
            "| {} | {} | {processed} | {kp} | {l0}/{l0_min} | {k4s} | {l1} | {k1s} |",
            p.object, p.name
        );
    }
    eprintln!(
        "{measured} programs timed against the kernel: ours {ours_total} us, kernel {kernel_total} us (sums of medians)"
    );
    assert!(
        progs.iter().any(|p| p.kerrno == 0),
        "no accepted corpus program to time"
    );
}

/// Writes the kernel's and our level-2 logs of the corpus program named
/// by `STRUCTOPS_CORPUS_PROG` (`object:program`) to
/// `/tmp/structops-<program>.{kernel,ours}.log`; a developer probe, run
/// with `--ignored --nocapture`.
#[test]
#[ignore = "developer probe: needs STRUCTOPS_CORPUS_PROG"]
fn dump_level2_logs() {
    let Ok(want) = std::env::var("STRUCTOPS_CORPUS_PROG") else {
        eprintln!("set STRUCTOPS_CORPUS_PROG=object:program");
        return;
    };
    let mut env = KernelOps::new(vmlinux().unwrap()).unwrap();
    let (progs, _) = corpus(&env).unwrap();
    let p = progs
        .iter()
        .find(|p| format!("{}:{}", p.object, p.name) == want)
        .unwrap();
    env.maps = p.maps.clone();
    let opts = LogOptions {
        level: 2,
        stats: false,
    };
    let ours = match verify(&p.insns, &p.info, &env, &opts) {
        Ok(v) => v.log().to_owned(),
        Err(e) => e.log,
    };
    let kernel = raw::load(&p.insns, &p.maps, p.btf_id, p.member_idx, p.sleepable, 2).unwrap();
    std::fs::write(format!("/tmp/structops-{}.ours.log", p.name), &ours).unwrap();
    std::fs::write(format!("/tmp/structops-{}.kernel.log", p.name), &kernel).unwrap();
    eprintln!("wrote /tmp/structops-{}.{{kernel,ours}}.log", p.name);
}
