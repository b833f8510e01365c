//! Interpreter speed in ns per executed instruction, checked and
//! unchecked, on two loop-heavy programs: a 16-bit one's-complement
//! checksum over a 1500-byte packet (loads, adds, compares) and a tight
//! ALU loop (adds, xors, shifts, a counted branch).
//!
//! Criterion reports the throughput in instructions per second
//! ("elem/s"); the instruction count of each run comes from a checked
//! run's step counter and is printed once per program.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use structops_vm::{Code, Interpreter, NoEnv, Region};

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
    group.finish();
}

fn interp(c: &mut Criterion) {
    bench_program(c, "checksum_1500", CHECKSUM);
    bench_program(c, "alu_loop", ALU_LOOP);
}

criterion_group!(benches, interp);
criterion_main!(benches);
