//! Interpreter and JIT speed in ns per executed instruction (checked and
//! unchecked interpreter, JIT), on two loop-heavy programs: a 16-bit one's-complement
//! checksum over a 1500-byte packet (loads, adds, compares) and a tight
//! ALU loop (adds, xors, shifts, a counted branch).
//!
//! Criterion reports the throughput in instructions per second
//! ("elem/s"); the instruction count of each run comes from a checked
//! run's step counter and is printed once per program. `empty` measures
//! the fixed cost of one run of `r0 = 0; exit` on each engine, and
//! `jit_compile` the time to compile the checksum program. `div_loop`
//! compares the JIT with and without `structops-verifier`'s facts on a loop
//! of register divisions and 32-bit arithmetic (and prints both code sizes).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use structops_vm::{
    Code, InsnFacts, Interpreter, JitOptions, JitProgram, NoEnv, Region, Target, emit_machine_code,
};

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

/// Divisions by a register in 1..=16 and 32-bit arithmetic whose zero
/// extension is partly unobservable, in a loop the verifier walks whole.
const DIV_LOOP: &str = "
        r6 = *(u64 *)(r1 +0)
        r7 = *(u64 *)(r1 +8)
        r0 = 0
        r1 = 1000
    loop:
        r2 = r1
        r2 &= 15
        r2 += 1
        r3 = r6
        r3 /= r2
        r4 = r7
        r4 s%= r2
        w3 += w4
        w3 ^= w1
        r0 += r3
        r1 -= 1
        if r1 != 0 goto loop
        exit
";

/// The verifier's view of the benchmark programs: a 1500-byte context of
/// scalars.
struct BenchEnv;

impl structops_verifier::VerifierEnv for BenchEnv {
    fn map(&self, _: structops_verifier::MapRef) -> Option<structops_verifier::MapInfo> {
        None
    }

    fn helper(&self, _: i32) -> Option<structops_verifier::proto::HelperProto> {
        None
    }

    fn ctx_access(&self, off: i32, size: u32, _: bool) -> Option<structops_verifier::CtxField> {
        let s = size as i32;
        (off >= 0 && off + s <= 1500 && off % s == 0)
            .then_some(structops_verifier::CtxField::Scalar)
    }
}

/// The JIT with and without the verifier's facts (`Code::with_facts`).
fn verifier_facts(c: &mut Criterion) {
    let prog = structops_isa::assemble(DIV_LOOP).expect("assembles");
    let info = structops_verifier::ProgInfo {
        gpl_compatible: true,
        ..structops_verifier::ProgInfo::default()
    };
    let v = structops_verifier::verify(
        &prog.encode(),
        &info,
        &BenchEnv,
        &structops_verifier::LogOptions::default(),
    )
    .expect("the verifier accepts the program");
    let facts: Vec<InsnFacts> = v
        .facts()
        .iter()
        .map(|f| InsnFacts {
            zext_redundant: f.zext_redundant,
            divisor_nonzero: f.divisor_nonzero,
            divisor_not_minus_one: f.divisor_not_minus_one,
            probe_mem: f.probe_mem,
            frame_depth: f.frame_depth,
        })
        .collect();
    let plain = Code::new(&prog);
    // SAFETY: the verifier's facts about the program it accepted.
    let fast = unsafe { Code::with_facts(&prog, &facts) };
    let mut packet = vec![0u8; 1500];
    packet[..8].copy_from_slice(&0x1234_5678_9abc_def0u64.to_ne_bytes());
    packet[8..16].copy_from_slice(&(-987_654_321i64).to_ne_bytes());
    let mut vm = Interpreter::new();
    let expect = vm
        .run_checked(&plain, &mut NoEnv, Region::read_write(&mut packet), &[])
        .expect("runs");
    let steps = vm.steps();
    let options = JitOptions::default();
    let size = |code: &Code| {
        emit_machine_code(code, Target::host().expect("host JIT"), &options)
            .expect("compiles")
            .bytes
            .len()
    };
    println!(
        "div_loop: {steps} instructions per run, machine code {} bytes without facts, {} with",
        size(&plain),
        size(&fast)
    );
    let ctx = packet.as_mut_ptr() as u64;
    let mut group = c.benchmark_group("div_loop");
    group.throughput(Throughput::Elements(steps));
    group.sample_size(30);
    for (name, code) in [("jit", &plain), ("jit_facts", &fast)] {
        code.jit().expect("the program compiles");
        group.bench_function(name, |b| {
            b.iter(|| {
                // SAFETY: the program only reads 16 bytes of the packet.
                let r0 = unsafe { vm.run_jit(black_box(code), &mut NoEnv, ctx) }.expect("runs");
                assert_eq!(r0, expect);
            });
        });
    }
    group.finish();
}

fn interp(c: &mut Criterion) {
    bench_program(c, "checksum_1500", CHECKSUM);
    bench_program(c, "alu_loop", ALU_LOOP);
    verifier_facts(c);
    overheads(c);
}

criterion_group!(benches, interp);
criterion_main!(benches);
