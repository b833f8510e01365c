//! The quick modes run and produce sane figures (short settings; the figures are not
//! judged, only their shape).

use std::time::Duration;

use structops_bench::{Settings, call, code};

fn short() -> Settings {
    Settings {
        batches: 2,
        batch_time: Duration::from_micros(200),
        test_run_repeat: 1000,
        loads: 1,
    }
}

#[test]
fn call_quick_mode() {
    let r = call::run(&short()).unwrap();
    assert_eq!(r.bench, "call");
    let names: Vec<&str> = r.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [call::NATIVE, call::JIT, call::INTERP]);
    for row in &r.rows {
        assert!(row.value > 0.0 && row.value.is_finite(), "{row:?}");
    }
    let jit = &r.rows[1];
    let reference = jit.reference.as_ref().unwrap();
    assert_eq!(reference.value, r.rows[0].value);
    assert!(reference.met.is_some() && reference.target.is_some());
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
}

#[test]
fn code_kernels_agree_on_every_engine() {
    let ks = code::kernels().unwrap();
    assert_eq!(ks.len(), 4);
    for k in &ks {
        let want = k.call(k.native_fn());
        assert_eq!(k.call(k.jit_fn()), want, "{}", k.name);
        assert_eq!(k.call(k.interp_fn()), want, "{}", k.name);
        match code::rbpf_interp(k) {
            Ok(got) => assert_eq!(got, want, "{}", k.name),
            Err(e) => println!("{}: rbpf interpreter cannot run it: {e}", k.name),
        }
    }
}

#[test]
fn code_quick_mode() {
    let r = code::run(&short()).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    let geo = r
        .rows
        .iter()
        .find(|r| r.name == "geometric mean of JIT / native")
        .unwrap();
    assert!(geo.value > 0.0);
    // native, JIT, interpreter for each of the four kernels at least.
    assert!(r.rows.len() > 4 * 3, "{r:?}");
}

#[test]
fn kernel_quick_mode() {
    let r = structops_bench::kernel::run(&short());
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r.bench, "kernel");
    // Either it ran something or it says why not.
    assert!(!r.rows.is_empty() || !r.skipped.is_empty());
    for row in &r.rows {
        if !row.name.contains("net of") {
            assert!(row.value > 0.0, "{row:?}");
        }
    }
}

#[test]
fn load_quick_mode() {
    let r = structops_bench::load::run(&short());
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    assert_eq!(r.bench, "load");
    let per_insn = r
        .rows
        .iter()
        .find(|r| r.unit == "ns/insn")
        .expect("compile rows of bpf/bench/code.bpf.o at least");
    assert!(per_insn.value > 0.0);
}
