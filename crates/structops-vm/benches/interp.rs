//! Interpreter and JIT speed in ns per executed instruction (checked and
//! unchecked interpreter, JIT), on two loop-heavy programs: a 16-bit one's-complement
//! checksum over a 1500-byte packet (loads, adds, compares) and a tight
//! ALU loop (adds, xors, shifts, a counted branch).
//!
//! Criterion reports the throughput in instructions per second
//! ("elem/s"); the instruction count of each run comes from a checked
//! run's step counter and is printed once per program. `empty` measures
//! the fixed cost of one run of `r0 = 0; exit` on each engine, and
//! `jit_compile` the time to compile the checksum program.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use structops_vm::{Code, Interpreter, JitOptions, JitProgram, NoEnv, Region};

const CHECKSUM: &str = "
        r2 = r1
        r3 = r1
        r3 += 1500
        r0 = 0
    loop:
        r4 = *(u16 *)(r2 +0)
        r0 += r4
        r2 += 2
        if r2 < r3 goto loop
        r4 = r0
        r4 >>= 16
        r0 &= 0xffff
        r0 += r4
        r4 = r0
        r4 >>= 16
        r0 += r4
        r0 &= 0xffff
        r0 ^= 0xffff
        exit
";

const ALU_LOOP: &str = "
        r0 = 0
        r1 = 100000
        r2 = 0x9e3779b9 ll
    loop:
        r0 += r2
        r0 ^= r1
        r3 = r0
        r3 >>= 7
        r0 ^= r3
        r0 *= 5
        r1 -= 1
        if r1 != 0 goto loop
        exit
";

fn bench_program(c: &mut Criterion, name: &str, src: &str) {
    let prog = structops_isa::assemble(src).expect("benchmark program assembles");
    let code = Code::new(&prog);
    let mut packet = vec![0u8; 1500];
    for (i, b) in packet.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let mut vm = Interpreter::new();
    let expect = vm
        .run_checked(&code, &mut NoEnv, Region::read_write(&mut packet), &[])
        .expect("benchmark program runs");
    let steps = vm.steps();
    println!("{name}: {steps} instructions per run, r0 = {expect:#x}");

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(steps));
    group.sample_size(30);
    group.bench_function("checked", |b| {
        b.iter(|| {
            let r0 = vm
                .run_checked(
                    black_box(&code),
                    &mut NoEnv,
                    Region::read_write(&mut packet),
                    &[],
                )
                .expect("runs");
            assert_eq!(r0, expect);
        });
    });
    let ctx = packet.as_mut_ptr() as u64;
    group.bench_function("unchecked", |b| {
        b.iter(|| {
            // SAFETY: the program only reads the 1500-byte packet at `ctx`
            // and its own stack, as the checked run above confirmed.
            let r0 = unsafe { vm.run_unchecked(black_box(&code), &mut NoEnv, ctx) }.expect("runs");
            assert_eq!(r0, expect);
        });
    });
    code.jit().expect("the program compiles");
    group.bench_function("jit", |b| {
        b.iter(|| {
            // SAFETY: as for the unchecked run.
            let r0 = unsafe { vm.run_jit(black_box(&code), &mut NoEnv, ctx) }.expect("runs");
            assert_eq!(r0, expect);
        });
    });
    group.finish();
}

/// The fixed cost of a run, and of compiling.
fn overheads(c: &mut Criterion) {
    let empty = Code::new(&structops_isa::assemble("r0 = 0\nexit").expect("assembles"));
    let no_zeroing = JitProgram::compile(
        &empty,
        &JitOptions {
            zero_stack: false,
            ..JitOptions::default()
        },
    )
    .expect("compiles");
    let mut vm = Interpreter::new();
    let mut group = c.benchmark_group("empty");
    group.sample_size(30);
    group.bench_function("unchecked", |b| {
        // SAFETY: the program touches no memory.
        b.iter(|| unsafe { vm.run_unchecked(black_box(&empty), &mut NoEnv, 0) });
    });
    group.bench_function("jit", |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { vm.run_jit(black_box(&empty), &mut NoEnv, 0) });
    });
    group.bench_function("jit_no_stack_zeroing", |b| {
        // SAFETY: as above.
        b.iter(|| unsafe { vm.run_compiled(&no_zeroing, black_box(&empty), &mut NoEnv, 0) });
    });
    group.finish();
    let checksum = Code::new(&structops_isa::assemble(CHECKSUM).expect("assembles"));
    let mut group = c.benchmark_group("jit_compile");
    group.sample_size(20);
    group.bench_function("checksum_1500", |b| {
        b.iter(|| {
            JitProgram::compile(black_box(&checksum), &JitOptions::default()).expect("compiles")
        });
    });
    group.finish();
}

fn interp(c: &mut Criterion) {
    bench_program(c, "checksum_1500", CHECKSUM);
    bench_program(c, "alu_loop", ALU_LOOP);
    overheads(c);
}

criterion_group!(benches, interp);
criterion_main!(benches);
