//! Criterion suite of the **code** benchmark (see `structops_bench::code`): one group
//! per kernel, with native code, the JIT, the interpreter and rbpf's interpreter and JIT
//! on the same bytecode side by side.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use structops_bench::code;

fn bench_code(c: &mut Criterion) {
    let kernels = code::kernels().expect("kernels");
    for k in &kernels {
        let mut group = c.benchmark_group(format!("code/{}", k.name));
        group.bench_function("native", |b| b.iter(|| black_box(k.call(k.native_fn()))));
        group.bench_function("jit", |b| b.iter(|| black_box(k.call(k.jit_fn()))));
        group.bench_function("interp", |b| b.iter(|| black_box(k.call(k.interp_fn()))));
        let mem = k.input_bytes();
        let mbuff = k.rbpf_mbuff(&mem);
        match code::rbpf_interp(k) {
            Ok(_) => {
                let vm = rbpf::EbpfVmMbuff::new(Some(&k.bytecode)).expect("rbpf");
                group.bench_function("rbpf_interp", |b| {
                    b.iter(|| black_box(vm.execute_program(&mem, &mbuff).ok()))
                });
            }
            Err(e) => println!("{}: rbpf interpreter: {e}", k.name),
        }
        if cfg!(target_arch = "x86_64") {
            let mut mem = k.input_bytes();
            let mut mbuff = k.rbpf_mbuff(&mem);
            let mut vm = rbpf::EbpfVmMbuff::new(Some(&k.bytecode)).expect("rbpf");
            if vm.jit_compile().is_ok() {
                group.bench_function("rbpf_jit", |b| {
                    b.iter(|| {
                        // SAFETY: the program stays within its input and metadata buffer
                        // (checked in rbpf's interpreter above and against native code by
                        // `code::run`).
                        black_box(unsafe { vm.execute_program_jit(&mut mem, &mut mbuff) }.ok())
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_code);
criterion_main!(benches);
