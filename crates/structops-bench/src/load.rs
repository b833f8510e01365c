//! **load**: JIT compile time, and the load time of a corpus object against libbpf.
//!
//! - *compile*: [`JitProgram::compile`] of each program of `bpf/bench/code.bpf.o` and
//!   of the corpus `bpf_cubic.bpf.o` (relocated without a host: instruction counts are
//!   the same), in µs per program and ns per BPF instruction.
//! - *load*: `conformance/build/corpus/bpf_cubic.bpf.o` opened and loaded by
//!   [`ObjectLoader`] (parse, CO-RE against the running kernel's BTF, maps, verification
//!   of every program with the `tcp_congestion_ops` rules, JIT) into a runtime set up
//!   once as a host would be (host BTF registered, the runtime's `tcp_congestion_ops`
//!   verifier twin, and the kfuncs the object calls declared), next to libbpf's `bpf_object__open_file()` +
//!   `bpf_object__load()` of the same file into this kernel (`bpf/bench/libbpf_load.c`,
//!   compiled at run time against `conformance/build`'s libbpf). Both are the fastest of
//!   [`Settings::loads`] loads. libbpf parses the kernel's BTF inside every load; our
//!   host BTF is parsed once when the runtime is set up, so that is not in our figure.
//!
//! Target: our load at most 25 % of the kernel's. Without the corpus, libbpf, a C
//! compiler or kernel BPF the parts that need them skip with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use structops::helpers::HostFn;
use structops::loader::{LoadOptions, ObjectLoader};
use structops::{KfuncFlags, Runtime, RuntimeConfig};
use structops_btf::Btf;
use structops_obj::Object;
use structops_vm::{Code, JitOptions, JitProgram};

use crate::{Report, Row, Settings, Target};

/// The corpus object of the load benchmark.
pub const CORPUS_OBJECT: &str = "corpus/bpf_cubic.bpf.o";

/// The libbpf timing helper's source.
const LIBBPF_LOAD_C: &str = include_str!("../../../bpf/bench/libbpf_load.c");

/// µs to compile each program of `bytes` (relocated with no maps): `(name, insns, µs)`.
pub fn compile_times(
    label: &str,
    bytes: &[u8],
    settings: &Settings,
) -> Result<Vec<(String, usize, f64)>, String> {
    let obj = Object::parse(bytes).map_err(|e| format!("{label}: {e}"))?;
    let linked = obj
        .relocate(&|_| -1)
        .map_err(|e| format!("{label}: relocate: {e}"))?;
    let mut out = Vec::new();
    for l in &linked {
        let prog = structops_isa::Program::decode(&l.insns)
            .map_err(|e| format!("{label}: {}: {e}", l.name))?;
        let code = Code::new(&prog);
        let mut best = f64::INFINITY;
        for _ in 0..settings.batches.max(1) {
            let t = Instant::now();
            let jit = JitProgram::compile(&code, &JitOptions::default())
                .map_err(|e| format!("{label}: {}: {e}", l.name))?;
            best = best.min(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(jit.code_size());
        }
        out.push((l.name.clone(), l.insns.len(), best));
    }
    Ok(out)
}

/// A runtime set up as a `tcp_congestion_ops` host: the running kernel's BTF, the ops
/// type, and the kfuncs `bpf_cubic` calls (never run by this benchmark).
pub fn tcp_runtime() -> Result<Runtime, String> {
    let bytes = std::fs::read("/sys/kernel/btf/vmlinux")
        .map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
    let btf = Btf::parse(&bytes).map_err(|e| format!("/sys/kernel/btf/vmlinux: {e}"))?;
    let rt = Runtime::new(RuntimeConfig::default());
    rt.register_host_btf(btf)
        .map_err(|e| format!("register_host_btf: {e}"))?;
    // The tcp_congestion_ops verifier twin (bpf_tcp_ca.c's rules, incl. the
    // `sock` -> `tcp_sock` retyping of the members' arguments); no TCP host.
    rt.register_tcp_congestion_ops()
        .map_err(|e| format!("register tcp_congestion_ops: {e}"))?;
    for name in ["tcp_slow_start", "tcp_cong_avoid_ai", "tcp_reno_undo_cwnd"] {
        let f: HostFn = Arc::new(|_, _| Ok(0));
        rt.register_kfunc(name, KfuncFlags::NONE, Vec::new(), f)
            .map_err(|e| format!("register kfunc {name}: {e}"))?;
    }
    Ok(rt)
}

/// One load of `bytes` (`path` names it) into `rt`; every program must end up on the
/// JIT. The loaded object is dropped before returning.
pub fn load_once(rt: &Runtime, bytes: &[u8], path: &str) -> Result<(), String> {
    let obj = ObjectLoader::open(bytes, path)
        .and_then(|l| l.load(rt, &LoadOptions::default()))
        .map_err(|e| e.to_string())?;
    if let Some((name, _)) = obj.progs().find(|(_, p)| p.jited().is_none()) {
        return Err(format!("{name} is not on the JIT"));
    }
    Ok(())
}

/// µs of our fastest load of `bytes` into a [`tcp_runtime`] (set up once, not timed).
pub fn our_load_us(bytes: &[u8], path: &str, settings: &Settings) -> Result<f64, String> {
    let rt = tcp_runtime()?;
    let mut best = f64::INFINITY;
    for _ in 0..settings.loads.max(1) {
        let t = Instant::now();
        load_once(&rt, bytes, path)?;
        best = best.min(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(best)
}

/// The libbpf helper, compiled into the system's temporary directory on first use.
fn libbpf_helper(build: &Path) -> Result<PathBuf, String> {
    let lib = build.join("lib/libbpf.a");
    let include = build.join("include");
    if !lib.exists() {
        return Err(format!(
            "{} not built (run conformance/build.sh)",
            lib.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!("structops-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("libbpf_load.c");
    let bin = dir.join("libbpf_load");
    std::fs::write(&src, LIBBPF_LOAD_C).map_err(|e| format!("{}: {e}", src.display()))?;
    let out = Command::new("cc")
        .arg("-O2")
        .arg(format!("-I{}", include.display()))
        .arg(&src)
        .arg(&lib)
        .args(["-lelf", "-lz", "-o"])
        .arg(&bin)
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc libbpf_load.c failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    Ok(bin)
}

/// µs of libbpf's fastest open + load of `path` into the kernel.
pub fn libbpf_load_us(path: &Path, settings: &Settings) -> Result<f64, String> {
    if let Some(why) = crate::sys::unavailable() {
        return Err(format!("kernel BPF unavailable: {why}"));
    }
    let bin = libbpf_helper(&crate::conformance_build())?;
    let out = Command::new(&bin)
        .arg(path)
        .arg(settings.loads.max(1).to_string())
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()));
    if let Some(dir) = bin.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("ok"), Some(open), Some(load)) => {
            let ns = |s: &str| {
                s.parse::<f64>()
                    .map_err(|e| format!("libbpf_load: {s}: {e}"))
            };
            Ok((ns(open)? + ns(load)?) / 1e3)
        }
        _ => Err(format!("libbpf could not load it: {}", text.trim())),
    }
}

/// The quick mode.
pub fn run(settings: &Settings) -> Report {
    let mut report = Report::new("load");
    let corpus = crate::conformance_build().join(CORPUS_OBJECT);
    let corpus_bytes = std::fs::read(&corpus);
    let mut objects: Vec<(&str, Vec<u8>)> =
        vec![("bpf/bench/code.bpf.o", crate::code::OBJECT.to_vec())];
    match &corpus_bytes {
        Ok(b) => objects.push(("bpf_cubic.bpf.o", b.clone())),
        Err(e) => report.skipped.push(format!(
            "{}: {e} (run conformance/build.sh)",
            corpus.display()
        )),
    }
    let (mut total_us, mut total_insns) = (0.0, 0usize);
    for (label, bytes) in &objects {
        match compile_times(label, bytes, settings) {
            Ok(rows) => {
                for (name, insns, us) in rows {
                    total_us += us;
                    total_insns += insns;
                    report.rows.push(Row::plain(
                        format!("JIT compile {name} ({label}, {insns} insns)"),
                        us,
                        "us",
                    ));
                }
            }
            Err(e) => report.skipped.push(format!("compile: {e}")),
        }
    }
    if total_insns > 0 {
        report.rows.push(Row::plain(
            "JIT compile per BPF instruction (all programs above)",
            total_us * 1e3 / total_insns as f64,
            "ns/insn",
        ));
    }
    let Ok(bytes) = corpus_bytes else {
        return report;
    };
    let ours = our_load_us(&bytes, &corpus.display().to_string(), settings);
    let kernel = libbpf_load_us(&corpus, settings);
    let name = "load bpf_cubic.bpf.o (parse + relocate + verify + JIT)";
    const KERNEL: &str = "libbpf bpf_object__open_file + bpf_object__load";
    match (ours, kernel) {
        (Ok(o), Ok(k)) => report.rows.push(Row::judged(
            name,
            o,
            "us",
            KERNEL,
            k,
            Target::AtMostTimes(0.25),
        )),
        (Ok(o), Err(e)) => {
            report.rows.push(Row::plain(name, o, "us"));
            report.skipped.push(format!("kernel load: {e}"));
        }
        (Err(e), Ok(k)) => {
            report.rows.push(Row::plain(KERNEL, k, "us"));
            report
                .skipped
                .push(format!("our load of bpf_cubic.bpf.o: {e}"));
        }
        (Err(a), Err(b)) => {
            report
                .skipped
                .push(format!("our load of bpf_cubic.bpf.o: {a}"));
            report.skipped.push(format!("kernel load: {b}"));
        }
    }
    report
}
