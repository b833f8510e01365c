//! Compiles `bpf/bench/native.c`, the native side of the code benchmark: the same
//! kernels (`bpf/bench/bench.h`) that `bpf/bench/code.bpf.o` holds compiled for BPF.
//!
//! The compiler is clang-19 when it is installed (the compiler of the BPF side, so both
//! sides get the same optimizer), else the `cc` crate's default; `-O2` as for BPF. The
//! choice is passed to the crate as `STRUCTOPS_BENCH_NATIVE_CC`.

use std::path::Path;
use std::process::Command;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf/bench");
    let src = dir.join("native.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", dir.join("bench.h").display());
    let mut build = cc::Build::new();
    let clang = Command::new("clang-19")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if clang {
        build.compiler("clang-19");
    }
    build.file(&src).opt_level(2).warnings(true);
    let compiler = build.get_compiler();
    let name = compiler
        .path()
        .file_name()
        .map_or_else(|| "cc".into(), |n| n.to_string_lossy().into_owned());
    println!("cargo:rustc-env=STRUCTOPS_BENCH_NATIVE_CC={name} -O2");
    build.compile("structops_bench_native");
}
