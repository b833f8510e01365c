//! The kernel's own `dummy_st_ops` selftests, twinned: the corpus'
//! `dummy_st_ops_success.bpf.o` test runs on this runtime (both engines) and on the
//! kernel (through the libbpf oracle, `libbpf_report testrun`) in the same test, with the
//! selftest's inputs; results, the state written back and the globals must be equal,
//! and equal to the selftest's expectations (0xf2f3f4f5 for a NULL state, the state set
//! to 0x5a, test_2's five arguments echoed into `test_2_args`). The corpus'
//! `dummy_st_ops_fail.bpf.o` must fail to load on both with the same errno.
//!
//! Skips, printing why, without the corpus, the oracle, `bpf_dummy_ops` in this
//! kernel's BTF, or the privileges to load programs.

use std::path::{Path, PathBuf};
use std::process::Command;

use structops::loader::{LoadError, LoadOptions, ObjectLoader};
use structops::{Engine, Runtime, RuntimeConfig, TestRun};
use structops_btf::{Btf, Kind};

fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/build")
}

/// One test run's outcome: retval, the state afterwards (when one was given), and the
/// `.bss` bytes.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    retval: u32,
    state: Option<i32>,
    bss: Vec<u8>,
}

/// The selftest's runs: program, arguments, state.
fn cases() -> Vec<(&'static str, Vec<u64>, Option<i32>)> {
    vec![
        // test_dummy_init_ret_value: a NULL state.
        ("test_1", vec![0], None),
        // test_dummy_init_ptr_arg: the state's value is returned, then set to 0x5a.
        ("test_1", vec![0], Some(-1)),
        // test_dummy_multiple_args.
        (
            "test_2",
            vec![
                0,
                -100i64 as u64,
                0x8a5f,
                u64::from(b'c'),
                0x1234_5678_8765_4321,
            ],
            Some(7),
        ),
        // test_dummy_sleepable.
        ("test_sleepable", vec![0], Some(0)),
    ]
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The kernel's outcome through the oracle; `Err` says why it is not available.
fn kernel(obj: &Path, prog: &str, args: &[u64], state: Option<i32>) -> Result<Outcome, String> {
    let oracle = build_dir().join("bin/libbpf_report");
    let mut cmd = Command::new(&oracle);
    cmd.arg("testrun").arg("--prog").arg(prog);
    let list: Vec<String> = args.iter().map(u64::to_string).collect();
    cmd.arg("--args").arg(list.join(","));
    if let Some(s) = state {
        cmd.arg("--state").arg(s.to_string());
    }
    let out = cmd
        .arg(obj)
        .output()
        .map_err(|e| format!("{}: {e}", oracle.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("oracle output {text:?}: {e} (an oracle without testrun?)"))?;
    if v["ok"] != true {
        return Err(format!("the kernel refused: errno {}", v["errno"]));
    }
    Ok(Outcome {
        retval: v["retval"].as_u64().unwrap_or(u64::MAX) as u32,
        state: state.map(|_| v["state"].as_i64().unwrap_or(i64::MIN) as i32),
        bss: hex(v["bss"][0].as_str().unwrap_or_default()),
    })
}

/// A runtime hosting `bpf_dummy_ops` over this kernel's BTF.
fn runtime(engine: Engine) -> Option<Runtime> {
    let btf = Btf::parse(&std::fs::read("/sys/kernel/btf/vmlinux").ok()?).ok()?;
    btf.find_by_name_kind("bpf_dummy_ops", Kind::Struct)?;
    let rt = Runtime::new(RuntimeConfig {
        engine,
        ..RuntimeConfig::default()
    });
    rt.register_host_btf(btf).ok()?;
    rt.register_dummy_ops().ok()?;
    Some(rt)
}

/// Our outcomes of every case on `engine`.
fn ours(obj: &Path, engine: Engine) -> Vec<Outcome> {
    let rt = runtime(engine).expect("checked by the caller");
    let bytes = std::fs::read(obj).unwrap();
    let loaded = ObjectLoader::open(&bytes, &obj.display().to_string())
        .and_then(|l| l.load(&rt, &LoadOptions::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    let bss = loaded
        .maps()
        .find(|(n, _)| n.ends_with(".bss"))
        .map(|(_, h)| h.clone())
        .expect("a .bss map");
    let mut out = Vec::new();
    for (prog, args, state) in cases() {
        let p = loaded.prog(prog).unwrap_or_else(|| panic!("no {prog}"));
        assert_eq!(p.engine(), engine, "{prog}");
        // This runtime's form of a user state pointer: a non-zero argument 0 with the
        // value in `dummy_state` (the kernel reads the user's memory at that address).
        let mut args = args;
        if state.is_some() {
            args[0] = 1;
        }
        let mut t = TestRun {
            dummy_state: state,
            ..TestRun::with_args(&args)
        };
        rt.prog_test_run(p, &mut t)
            .unwrap_or_else(|e| panic!("{prog} {args:?}: {e}"));
        let mut v = vec![0u8; rt.map_info(&bss).value_size as usize];
        rt.map_lookup_elem(&bss, Some(&0u32.to_ne_bytes()), &mut v, 0)
            .unwrap();
        // Each selftest starts from a fresh skeleton: clear the globals again.
        rt.map_update_elem(&bss, Some(&0u32.to_ne_bytes()), &vec![0u8; v.len()], 0)
            .unwrap();
        out.push(Outcome {
            retval: t.retval,
            state: t.dummy_state,
            bss: v,
        });
    }
    out
}

#[test]
fn dummy_st_ops_success_test_runs_equal_the_kernels() {
    let obj = build_dir().join("corpus/dummy_st_ops_success.bpf.o");
    if !obj.exists() {
        eprintln!("skipped: no corpus object {}", obj.display());
        return;
    }
    if runtime(Engine::Interp).is_none() {
        eprintln!("skipped: no bpf_dummy_ops in /sys/kernel/btf/vmlinux");
        return;
    }
    let mut kernel_out = Vec::new();
    for (prog, args, state) in cases() {
        match kernel(&obj, prog, &args, state) {
            Ok(o) => kernel_out.push(o),
            Err(why) => {
                eprintln!("skipped: kernel side unavailable ({why})");
                return;
            }
        }
    }
    // The selftest's own expectations, on the kernel's side.
    assert_eq!(kernel_out[0].retval, 0xf2f3f4f5);
    assert_eq!(
        (kernel_out[1].retval, kernel_out[1].state),
        (u32::MAX, Some(0x5a))
    );
    let echoed: Vec<u64> = kernel_out[2]
        .bss
        .chunks(8)
        .take(5)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    assert_eq!(
        echoed,
        [
            7,
            -100i64 as u64,
            0x8a5f,
            u64::from(b'c'),
            0x1234_5678_8765_4321
        ]
    );
    for engine in [Engine::Interp, Engine::Jit] {
        assert_eq!(ours(&obj, engine), kernel_out, "{engine:?}");
    }
}

#[test]
fn dummy_st_ops_fail_is_refused_like_the_kernel() {
    let obj = build_dir().join("corpus/dummy_st_ops_fail.bpf.o");
    let oracle = build_dir().join("bin/libbpf_report");
    if !obj.exists() || !oracle.exists() {
        eprintln!(
            "skipped: no corpus object or oracle under {}",
            build_dir().display()
        );
        return;
    }
    let Some(rt) = runtime(Engine::Jit) else {
        eprintln!("skipped: no bpf_dummy_ops in /sys/kernel/btf/vmlinux");
        return;
    };
    let out = Command::new(&oracle)
        .arg("load")
        .arg("--no-insns")
        .arg(&obj)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kernel_errno = v["errno"].as_i64().unwrap_or(0);
    if kernel_errno == 1 {
        eprintln!("skipped: no privileges to load programs (EPERM)");
        return;
    }
    assert_eq!(v["ok"], false, "the kernel refuses the object");
    let bytes = std::fs::read(&obj).unwrap();
    let Err(err) = ObjectLoader::open(&bytes, "dummy_st_ops_fail")
        .and_then(|l| l.load(&rt, &LoadOptions::default()))
    else {
        panic!("we load what the kernel refuses");
    };
    let LoadError::ProgLoad { errno, log, .. } = err else {
        panic!("not a program load failure: {err}");
    };
    assert_eq!(i64::from(errno.0), kernel_errno, "{log}");
    let kernel_error = v["error"].as_str().unwrap_or_default();
    assert!(
        kernel_error.contains("attach to unsupported member test_2 of struct bpf_dummy_ops")
            && log.contains("attach to unsupported member test_2 of struct bpf_dummy_ops"),
        "kernel: {kernel_error}\nours: {log}"
    );
}
