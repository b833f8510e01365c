//! Criterion suite of the **load** benchmark (see `structops_bench::load`): JIT
//! compilation of each program of `bpf/bench/code.bpf.o`, and our load of the corpus'
//! `bpf_cubic.bpf.o` when it is built and loads (the kernel's libbpf figure is
//! printed by `structops bench load`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use structops_bench::{code, load};
use structops_vm::{JitOptions, JitProgram};

fn bench_load(c: &mut Criterion) {
    let kernels = code::kernels().expect("kernels");
    let mut group = c.benchmark_group("jit_compile");
    for k in &kernels {
        group.bench_function(k.name, |b| {
            b.iter(|| {
                black_box(
                    JitProgram::compile(k.code(), &JitOptions::default()).map(|j| j.code_size()),
                )
            })
        });
    }
    group.finish();
    let path = structops_bench::conformance_build().join(load::CORPUS_OBJECT);
    let Ok(bytes) = std::fs::read(&path) else {
        println!(
            "skipped: {} not built (run conformance/build.sh)",
            path.display()
        );
        return;
    };
    let rt = match load::tcp_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    match load::load_once(&rt, &bytes, "bpf_cubic.bpf.o") {
        Ok(()) => {
            c.bench_function("load/bpf_cubic", |b| {
                b.iter(|| black_box(load::load_once(&rt, &bytes, "bpf_cubic.bpf.o").is_ok()))
            });
        }
        Err(e) => println!("skipped: our load of bpf_cubic.bpf.o: {e}"),
    }
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
