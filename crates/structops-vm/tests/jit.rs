//! The JIT against the interpreter: random valid programs (ALU, jumps,
//! stack and context memory, atomics, bpf-to-bpf calls, helpers native and
//! not, kfuncs, a helper that writes program memory, `bpf_loop`-style
//! callbacks) run checked, unchecked and on the JIT, which must agree on
//! `r0`, the context and every request to the environment. Plus what only
//! the JIT has: typed errors instead of faults, panics that pass through
//! JIT frames, options, arm64 code generation.

mod common;

use std::ffi::c_void;

use common::{Recorder, code, outcome};
use proptest::prelude::*;
use structops_isa::{
    AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Program, Reg, Source, Width,
};
use structops_vm::{
    Caller, Code, Engine, Env, Interpreter, JitError, JitOptions, JitProgram, NativeCall, NoEnv,
    Region, Target, VmError, emit_machine_code,
};

// ---- environment ----

const NATIVE_SUM: i32 = 1000;
const MIX: i32 = 1001;
const FILL: i32 = 1002;
const LOOP: i32 = 181;
const KFUNC: u32 = 7;

unsafe extern "C" fn native_sum(a: u64, b: u64, c: u64, d: u64, e: u64, data: *mut c_void) -> u64 {
    // SAFETY: `data` is the address of `BIAS`.
    let bias = unsafe { *data.cast::<u64>() };
    a.wrapping_add(b)
        .wrapping_add(c)
        .wrapping_add(d)
        .wrapping_add(e)
        .wrapping_add(bias)
}

static BIAS: u64 = 0x1234_5678;

/// Helpers: a native one, an environment one, one that writes 8 bytes of
/// program memory, a `bpf_loop`; a kfunc.
#[derive(Default)]
struct TestEnv {
    panic_in_mix: bool,
}

impl Env for TestEnv {
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        args: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        match id {
            // Checked runs do not use the native function.
            NATIVE_SUM => {
                // SAFETY: the native function only adds.
                Ok(unsafe {
                    native_sum(
                        args[0],
                        args[1],
                        args[2],
                        args[3],
                        args[4],
                        (&raw const BIAS).cast_mut().cast(),
                    )
                })
            }
            MIX => {
                assert!(!self.panic_in_mix, "the environment panics");
                Ok(args[0].wrapping_mul(3) ^ args[4].rotate_left(7))
            }
            FILL => {
                let bytes = (args[1] ^ 0x5a5a_5a5a_5a5a_5a5a).to_le_bytes();
                caller.write(args[0], &bytes)?;
                Ok(8)
            }
            LOOP => {
                let mut i = 0;
                while i < args[0] {
                    let r = caller.call_function(self, args[1], [i, args[2], 0, 0, 0])?;
                    i += 1;
                    if r != 0 {
                        break;
                    }
                }
                Ok(i)
            }
            _ => Err(VmError::UnknownHelper { pc, id }),
        }
    }

    fn native_helper(&self, id: i32) -> Option<NativeCall> {
        (id == NATIVE_SUM).then_some(NativeCall {
            func: native_sum,
            data: (&raw const BIAS).cast_mut().cast(),
        })
    }

    fn call_kfunc(
        &mut self,
        pc: usize,
        btf_id: u32,
        off: i16,
        args: [u64; 5],
        _caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        if btf_id == KFUNC {
            Ok(args[0] ^ args[1].wrapping_add(args[2]))
        } else {
            Err(VmError::UnknownKfunc { pc, btf_id, off })
        }
    }
}

// ---- random valid programs ----

/// Registers the body computes with: r6 holds the context and r10 the
/// frame, neither is written.
const SCALARS: [Reg; 8] = [
    Reg::R0,
    Reg::R1,
    Reg::R2,
    Reg::R3,
    Reg::R4,
    Reg::R5,
    Reg::R7,
    Reg::R8,
];

/// Bytes of context: 8 words the body may use, then 8 the epilogue fills.
const CTX: usize = 128;

/// One item of a generated body; expands to one or more ops.
#[derive(Clone, Debug)]
enum Item {
    Op(Op),
    /// A forward conditional jump over the next `skip` items.
    Jump {
        bits: Bits,
        cond: Cond,
        dst: Reg,
        src: Source,
        skip: u8,
    },
    /// `call` of subprogram `f` (which reads r1..r5), then r1..r5 are set
    /// afresh (the verifier forbids reading them after a call).
    Call([i32; 5]),
    /// `bpf_loop(n, cb, r10 - 64, 0)`, then fresh r1..r5.
    Loop(u8, [i32; 5]),
    /// `FILL(r10 - 16 - 8 * slot, value)`, then fresh r1..r5.
    Fill(u8, i32, [i32; 5]),
}

fn scalar() -> impl Strategy<Value = Reg> {
    proptest::sample::select(SCALARS.to_vec())
}

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        -8i32..8,
        Just(i32::MIN),
        Just(i32::MAX),
        Just(-1),
        any::<i32>()
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![imm().prop_map(Source::Imm), scalar().prop_map(Source::Reg)]
}

fn bits() -> impl Strategy<Value = Bits> {
    prop_oneof![Just(Bits::B32), Just(Bits::B64)]
}

fn width() -> impl Strategy<Value = Width> {
    proptest::sample::select(Width::ALL.to_vec())
}

/// A memory operand: (base, offset) inside the stack area r10-64..r10 or
/// the first 64 context bytes (r6), aligned to `align` if asked.
fn place(w: Width, aligned: bool) -> impl Strategy<Value = (Reg, i16)> {
    let n = w.bytes() as i16;
    (any::<bool>(), 0i16..64).prop_map(move |(stack, k)| {
        let mut off = k.min(64 - n);
        if aligned {
            off -= off % n;
        }
        if stack {
            (Reg::R10, off - 64)
        } else {
            (Reg::R6, off)
        }
    })
}

fn fresh() -> impl Strategy<Value = [i32; 5]> {
    proptest::array::uniform5(imm())
}

fn item() -> impl Strategy<Value = Item> {
    let alu = proptest::sample::select(AluOp::ALL.to_vec());
    let cond = proptest::sample::select(Cond::ALL.to_vec());
    let atomic = proptest::sample::select(AtomicOp::ALL.to_vec());
    let w32 = prop_oneof![Just(Width::W), Just(Width::DW)];
    prop_oneof![
        8 => (bits(), alu, scalar(), source()).prop_map(|(bits, op, dst, src)| Item::Op(Op::Alu { bits, op, dst, src })),
        1 => (bits(), scalar()).prop_map(|(bits, dst)| Item::Op(Op::Neg { bits, dst })),
        1 => (scalar(), scalar(), prop_oneof![Just(Width::B), Just(Width::H), Just(Width::W)], bits())
            .prop_map(|(dst, src, from, bits)| {
                let from = if bits == Bits::B32 && from == Width::W { Width::H } else { from };
                Item::Op(Op::MovSx { bits, dst, src, from })
            }),
        1 => (scalar(), prop_oneof![Just(Width::H), Just(Width::W), Just(Width::DW)], any::<bool>())
            .prop_map(|(dst, width, le)| Item::Op(Op::End { order: if le { Endian::Le } else { Endian::Be }, width, dst })),
        1 => (scalar(), prop_oneof![Just(Width::H), Just(Width::W), Just(Width::DW)]).prop_map(|(dst, width)| Item::Op(Op::Bswap { width, dst })),
        1 => (scalar(), any::<u64>()).prop_map(|(dst, k)| Item::Op(Op::LdImm64 { dst, imm: Imm64::Const(k) })),
        4 => (bits(), cond, scalar(), source(), 0u8..6).prop_map(|(bits, cond, dst, src, skip)| Item::Jump { bits, cond, dst, src, skip }),
        3 => width().prop_flat_map(|w| (Just(w), scalar(), place(w, false)))
            .prop_map(|(width, dst, (src, off))| Item::Op(Op::Load { width, dst, src, off })),
        1 => prop_oneof![Just(Width::B), Just(Width::H), Just(Width::W)].prop_flat_map(|w| (Just(w), scalar(), place(w, false)))
            .prop_map(|(width, dst, (src, off))| Item::Op(Op::LoadSx { width, dst, src, off })),
        3 => width().prop_flat_map(|w| (Just(w), place(w, false), source()))
            .prop_map(|(width, (dst, off), src)| Item::Op(Op::Store { width, dst, off, src })),
        2 => w32.prop_flat_map(move |w| (Just(w), atomic.clone(), place(w, true), scalar()))
            .prop_map(|(width, op, (dst, off), src)| Item::Op(Op::Atomic { width, op, dst, off, src })),
        1 => width().prop_flat_map(|w| (Just(w), scalar(), place(w, true)))
            .prop_map(|(width, dst, (src, off))| Item::Op(Op::LoadAcquire { width, dst, src, off })),
        1 => width().prop_flat_map(|w| (Just(w), place(w, true), scalar()))
            .prop_map(|(width, (dst, off), src)| Item::Op(Op::StoreRelease { width, dst, off, src })),
        1 => Just(Item::Op(Op::Call(CallTarget::Helper { id: NATIVE_SUM }))),
        1 => Just(Item::Op(Op::Call(CallTarget::Helper { id: MIX }))),
        1 => Just(Item::Op(Op::Call(CallTarget::Kfunc { btf_id: KFUNC, btf_fd_idx: 0 }))),
        1 => fresh().prop_map(Item::Call),
        1 => (0u8..5, fresh()).prop_map(|(n, f)| Item::Loop(n, f)),
        1 => (0u8..6, imm(), fresh()).prop_map(|(slot, v, f)| Item::Fill(slot, v, f)),
    ]
}

fn mov(dst: Reg, k: i32) -> Op {
    Op::Alu {
        bits: Bits::B64,
        op: AluOp::Mov,
        dst,
        src: Source::Imm(k),
    }
}

fn mov_reg(dst: Reg, src: Reg) -> Op {
    Op::Alu {
        bits: Bits::B64,
        op: AluOp::Mov,
        dst,
        src: Source::Reg(src),
    }
}

fn add(dst: Reg, k: i32) -> Op {
    Op::Alu {
        bits: Bits::B64,
        op: AluOp::Add,
        dst,
        src: Source::Imm(k),
    }
}

fn st(base: Reg, off: i16, src: Reg) -> Op {
    Op::Store {
        width: Width::DW,
        dst: base,
        off,
        src: Source::Reg(src),
    }
}

fn ld(dst: Reg, base: Reg, off: i16) -> Op {
    Op::Load {
        width: Width::DW,
        dst,
        src: base,
        off,
    }
}

fn refresh(ops: &mut Vec<Op>, fresh: [i32; 5]) {
    for (r, k) in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5]
        .into_iter()
        .zip(fresh)
    {
        ops.push(mov(r, k));
    }
}

/// Slot counts per op.
fn slots(ops: &[Op]) -> usize {
    ops.iter().map(|op| op.slots()).sum()
}

/// Builds the program: prologue (r6 = ctx, stack and registers set),
/// body, epilogue (registers and stack copied to ctx words 8..16), then
/// the subprogram `f` and the callback `cb`.
fn assemble_program(init: [i32; 8], body: &[Item]) -> Program {
    let mut ops = vec![mov_reg(Reg::R6, Reg::R1)];
    for (i, &k) in init.iter().enumerate() {
        ops.push(mov(SCALARS[i], k));
    }
    ops.push(mov(Reg::R9, init[0] ^ 0x55));
    for k in 1..=8i16 {
        ops.push(st(Reg::R10, -8 * k, SCALARS[(k as usize) % 8]));
    }
    // Each item's ops, so jumps can count items.
    let mut chunks: Vec<Vec<Op>> = Vec::new();
    let mut jumps: Vec<Option<(usize, Item)>> = Vec::new();
    for (i, item) in body.iter().enumerate() {
        let mut chunk = Vec::new();
        match *item {
            Item::Op(op) => chunk.push(op),
            Item::Jump { .. } => {
                jumps.push(Some((i, item.clone())));
                chunk.push(Op::Ja { off: 0 }); // patched below
            }
            Item::Call(f) => {
                chunk.push(Op::Call(CallTarget::Local { offset: 0 })); // patched
                refresh(&mut chunk, f);
            }
            Item::Loop(n, f) => {
                chunk.push(mov(Reg::R1, i32::from(n)));
                chunk.push(Op::LdImm64 {
                    dst: Reg::R2,
                    imm: Imm64::Func { offset: 0 },
                }); // patched
                chunk.push(mov_reg(Reg::R3, Reg::R10));
                chunk.push(add(Reg::R3, -64));
                chunk.push(mov(Reg::R4, 0));
                chunk.push(Op::Call(CallTarget::Helper { id: LOOP }));
                refresh(&mut chunk, f);
            }
            Item::Fill(slot, v, f) => {
                chunk.push(mov_reg(Reg::R1, Reg::R10));
                chunk.push(add(Reg::R1, -16 - 8 * i32::from(slot)));
                chunk.push(mov(Reg::R2, v));
                chunk.push(Op::Call(CallTarget::Helper { id: FILL }));
                refresh(&mut chunk, f);
            }
        }
        chunks.push(chunk);
    }
    let body_start = slots(&ops);
    // Slot where each chunk starts, and where the epilogue starts.
    let mut starts = Vec::new();
    let mut at = body_start;
    for chunk in &chunks {
        starts.push(at);
        at += slots(chunk);
    }
    let epilogue_at = at;
    let mut epilogue = Vec::new();
    for (i, r) in [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R7,
        Reg::R8,
    ]
    .into_iter()
    .enumerate()
    {
        epilogue.push(st(Reg::R6, 64 + 8 * i as i16, r));
    }
    for k in 1..=8i16 {
        epilogue.push(ld(Reg::R1, Reg::R10, -8 * k));
        epilogue.push(Op::Alu {
            bits: Bits::B64,
            op: AluOp::Xor,
            dst: Reg::R0,
            src: Source::Reg(Reg::R1),
        });
    }
    epilogue.push(Op::Alu {
        bits: Bits::B64,
        op: AluOp::Add,
        dst: Reg::R0,
        src: Source::Reg(Reg::R9),
    });
    epilogue.push(Op::Exit);
    let f_at = epilogue_at + slots(&epilogue);
    // f: fresh registers, its own frame, a little arithmetic and memory.
    let f = vec![
        mov(Reg::R0, 3),
        mov(Reg::R6, 0),
        st(Reg::R10, -8, Reg::R1),
        Op::Alu {
            bits: Bits::B64,
            op: AluOp::Mul,
            dst: Reg::R0,
            src: Source::Reg(Reg::R2),
        },
        Op::Alu {
            bits: Bits::B32,
            op: AluOp::Add,
            dst: Reg::R0,
            src: Source::Reg(Reg::R5),
        },
        ld(Reg::R3, Reg::R10, -8),
        Op::Alu {
            bits: Bits::B64,
            op: AluOp::Xor,
            dst: Reg::R0,
            src: Source::Reg(Reg::R3),
        },
        Op::Exit,
    ];
    let cb_at = f_at + slots(&f);
    // cb(i, acc): *acc += i * 7; returns 0 (continue) unless i == 3.
    let cb = vec![
        mov_reg(Reg::R0, Reg::R1),
        Op::Alu {
            bits: Bits::B64,
            op: AluOp::Mul,
            dst: Reg::R0,
            src: Source::Imm(7),
        },
        ld(Reg::R3, Reg::R2, 0),
        Op::Alu {
            bits: Bits::B64,
            op: AluOp::Add,
            dst: Reg::R3,
            src: Source::Reg(Reg::R0),
        },
        st(Reg::R2, 0, Reg::R3),
        mov(Reg::R0, 0),
        Op::Jmp {
            bits: Bits::B64,
            cond: Cond::Ne,
            dst: Reg::R1,
            src: Source::Imm(3),
            off: 1,
        },
        mov(Reg::R0, 1),
        Op::Exit,
    ];
    // Patch jumps, calls and callback loads.
    for (i, chunk) in chunks.iter_mut().enumerate() {
        let mut slot = starts[i];
        for op in chunk.iter_mut() {
            let next = slot + op.slots();
            // Offsets count from the slot after the instruction's first.
            let rel = |target: usize| (target as i64 - slot as i64 - 1) as i32;
            match op {
                Op::Ja { .. } => {
                    if let Some(Some((
                        _,
                        Item::Jump {
                            bits,
                            cond,
                            dst,
                            src,
                            skip,
                        },
                    ))) = jumps.iter().find(|j| matches!(j, Some((k, _)) if *k == i))
                    {
                        let target = starts
                            .get(i + 1 + usize::from(*skip))
                            .copied()
                            .unwrap_or(epilogue_at);
                        *op = Op::Jmp {
                            bits: *bits,
                            cond: *cond,
                            dst: *dst,
                            src: *src,
                            off: rel(target) as i16,
                        };
                    }
                }
                Op::Call(CallTarget::Local { offset }) => *offset = rel(f_at),
                Op::LdImm64 {
                    imm: Imm64::Func { offset },
                    ..
                } => *offset = rel(cb_at),
                _ => {}
            }
            slot = next;
        }
    }
    ops.extend(chunks.into_iter().flatten());
    ops.extend(epilogue);
    ops.extend(f);
    ops.extend(cb);
    Program::from_ops(ops)
}

/// Runs `code` checked, unchecked and on the JIT; asserts they agree on
/// the result, the context and (unchecked and JIT) the environment
/// traffic; returns the result.
fn differential(code: &Code) -> Result<u64, TestCaseError> {
    let mut vm = Interpreter::new();
    let mut env = TestEnv::default();
    let mut ctx = [0u8; CTX];
    let checked = vm.run_checked(code, &mut env, Region::read_write(&mut ctx), &[]);
    let r0 = checked.map_err(|e| TestCaseError::fail(format!("checked run failed: {e}")))?;
    let mut logs = Vec::new();
    for engine in [Engine::Interp, Engine::Jit] {
        let mut ctx2 = [0u8; CTX];
        let mut rec = Recorder::new(&mut env);
        // SAFETY: the checked run showed every access stays in the stack
        // and the context; the environment is deterministic.
        let other = unsafe { vm.run(engine, code, &mut rec, ctx2.as_mut_ptr() as u64) };
        prop_assert_eq!(Ok(r0), outcome(&other), "{:?}", engine);
        prop_assert_eq!(&ctx[..], &ctx2[..], "{:?}", engine);
        logs.push(rec.take());
    }
    prop_assert_eq!(&logs[0], &logs[1]);
    // One case in four also runs with constant blinding.
    static CASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if CASES
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(4)
    {
        let options = JitOptions {
            blind_constants: true,
            ..JitOptions::default()
        };
        let prog = JitProgram::compile(code, &options)
            .map_err(|e| TestCaseError::fail(format!("blinded compile: {e}")))?;
        let mut ctx2 = [0u8; CTX];
        let mut rec = Recorder::new(&mut env);
        // SAFETY: as above.
        let other = unsafe { vm.run_compiled(&prog, code, &mut rec, ctx2.as_mut_ptr() as u64) };
        prop_assert_eq!(Ok(r0), outcome(&other), "blinded");
        prop_assert_eq!(&ctx[..], &ctx2[..], "blinded");
        prop_assert_eq!(&logs[0], &rec.take(), "blinded");
    }
    Ok(r0)
}

#[test]
fn constant_blinding_hides_program_immediates() {
    // Immediates an attacker might use to plant instructions: in an ALU op,
    // a compare, a store and an LD_IMM64.
    let src = "r0 = *(u64 *)(r1 +0)
               r4 = r0
               r0 += 0x3c909090
               if r4 == 0x2d909090 goto pc+1
               r0 ^= 0x1e909090
               *(u32 *)(r10 -8) = 0x4b909090
               r2 = *(u32 *)(r10 -8)
               r0 += r2
               r3 = 0x5a90909069909090 ll
               r0 ^= r3
               exit";
    let c = code(src);
    let patterns: [&[u8]; 5] = [
        &0x3c90_9090u32.to_le_bytes(),
        &0x2d90_9090u32.to_le_bytes(),
        &0x1e90_9090u32.to_le_bytes(),
        &0x4b90_9090u32.to_le_bytes(),
        &0x5a90_9090_6990_9090u64.to_le_bytes(),
    ];
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let blind = JitOptions {
        blind_constants: true,
        ..JitOptions::default()
    };
    for target in [Target::X86_64, Target::Aarch64] {
        let plain = emit_machine_code(&c, target, &JitOptions::default()).unwrap();
        let hidden = emit_machine_code(&c, target, &blind).unwrap();
        if target == Target::X86_64 {
            // x86-64 encodes 32- and 64-bit immediates whole: they are there
            // without blinding (aarch64 splits them into 16-bit moves).
            for p in patterns {
                assert!(
                    contains(&plain.bytes, p),
                    "{p:02x?} missing from plain code"
                );
            }
        }
        for p in patterns {
            assert!(
                !contains(&hidden.bytes, p),
                "{target:?}: {p:02x?} in blinded code"
            );
        }
    }
    // Same results.
    let prog = JitProgram::compile(&c, &blind).unwrap();
    let mut vm = Interpreter::new();
    for x in [0u64, 1, 0x2d90_9090, u64::MAX, 0x1234_5678_9abc_def0] {
        let mut a = x.to_ne_bytes();
        let mut b = x.to_ne_bytes();
        // SAFETY: the program reads 8 bytes of its context and its stack.
        let want =
            unsafe { vm.run(Engine::Interp, &c, &mut NoEnv, a.as_mut_ptr() as u64) }.unwrap();
        // SAFETY: as above.
        let got = unsafe { vm.run_compiled(&prog, &c, &mut NoEnv, b.as_mut_ptr() as u64) }.unwrap();
        assert_eq!(want, got, "input {x:#x}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("STRUCTOPS_JIT_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
    ))]

    /// Random valid programs agree on all three runs.
    #[test]
    fn random_valid_programs_agree(
        init in proptest::array::uniform8(imm()),
        body in proptest::collection::vec(item(), 1..80),
    ) {
        let prog = assemble_program(init, &body);
        differential(&Code::new(&prog))?;
    }
}

#[test]
fn the_generator_covers_calls_callbacks_and_helpers() {
    let body = [
        Item::Call([1, 2, 3, 4, 5]),
        Item::Loop(4, [0; 5]),
        Item::Fill(2, -3, [9; 5]),
        Item::Op(Op::Call(CallTarget::Helper { id: NATIVE_SUM })),
        Item::Op(Op::Call(CallTarget::Helper { id: MIX })),
        Item::Jump {
            bits: Bits::B64,
            cond: Cond::Eq,
            dst: Reg::R0,
            src: Source::Imm(0),
            skip: 9,
        },
        Item::Op(Op::Call(CallTarget::Kfunc {
            btf_id: KFUNC,
            btf_fd_idx: 0,
        })),
    ];
    let prog = assemble_program([1, 2, 3, 4, 5, 6, 7, 8], &body);
    let r0 = differential(&Code::new(&prog)).unwrap();
    // Same program, same answer, and a different one with another body.
    assert_eq!(
        differential(&Code::new(&assemble_program(
            [1, 2, 3, 4, 5, 6, 7, 8],
            &body
        )))
        .unwrap(),
        r0
    );
    let other = assemble_program([1, 2, 3, 4, 5, 6, 7, 8], &body[..2]);
    assert_ne!(differential(&Code::new(&other)).unwrap(), r0);
}

// ---- JIT-only behaviour ----

fn jit(src: &str, env: &mut dyn Env) -> Result<u64, VmError> {
    let mut ctx = [0u64; 8];
    // SAFETY: the test programs only use their stack and the context.
    unsafe { Interpreter::new().run_jit(&code(src), env, ctx.as_mut_ptr() as u64) }
}

#[test]
fn faults_become_typed_errors() {
    // A misaligned atomic and too deep a recursion: typed errors naming
    // the instruction, never a signal.
    let err = jit(
        "r1 = r10\nr1 += -7\nr2 = 1\nlock *(u64 *)(r1 +0) += r2\nexit",
        &mut NoEnv,
    )
    .unwrap_err();
    assert!(
        matches!(err, VmError::MisalignedAtomic { pc: 3, len: 8, .. }),
        "{err}"
    );
    let err = jit(
        "r1 = 9\ncall f\nexit\nf:\nr1 -= 1\nif r1 == 0 goto out\ncall f\nout:\nexit",
        &mut NoEnv,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VmError::CallDepthExceeded {
                pc: 5,
                max_frames: 8
            }
        ),
        "{err}"
    );
    let err = jit("goto pc+5\nexit", &mut NoEnv).unwrap_err();
    assert!(
        matches!(err, VmError::BadJump { pc: 0, target: 6 }),
        "{err}"
    );
    let err = jit("r0 = 1", &mut NoEnv).unwrap_err();
    assert!(matches!(err, VmError::FellOffEnd { pc: 1 }), "{err}");
    // A helper's error ends the run with that error.
    let err = jit(
        "r1 = 1\ncall unknown#1003\nr0 = 5\nexit",
        &mut TestEnv::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, VmError::UnknownHelper { pc: 1, id: 1003 }),
        "{err}"
    );
    // A forged callback value is refused by the helper's Caller.
    let err = jit(
        "r1 = 3\nr2 = 0x1234 ll\nr3 = 0\nr4 = 0\ncall bpf_loop\nexit",
        &mut TestEnv::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VmError::BadCallback {
                pc: 5,
                value: 0x1234
            }
        ),
        "{err}"
    );
}

#[test]
fn a_panicking_environment_unwinds_through_jit_code_and_the_vm_stays_usable() {
    let src = "r1 = 2\ncall f\nexit\nf:\ncall unknown#1001\nexit";
    let mut env = TestEnv { panic_in_mix: true };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jit(src, &mut env)));
    assert!(caught.is_err(), "the panic reaches the caller");
    env.panic_in_mix = false;
    assert_eq!(jit(src, &mut env).unwrap(), 6);
}

#[test]
fn options_keep_ir_and_registers() {
    let c = code("r6 = 6\nr9 = -1\nr0 = 1\nexit");
    let options = JitOptions {
        keep_ir: true,
        capture_registers: true,
        ..JitOptions::default()
    };
    let prog = JitProgram::compile(&c, &options).unwrap();
    let ir = prog.ir().unwrap();
    assert!(ir.contains("function u0:0"), "{ir}");
    assert!(prog.code_size() > 0 && prog.machine_code().len() == prog.code_size());
    assert_eq!(prog.function_count(), 1);
    let mut vm = Interpreter::new();
    // SAFETY: no memory accesses.
    let r0 = unsafe { vm.run_compiled(&prog, &c, &mut NoEnv, 0) }.unwrap();
    assert_eq!(r0, 1);
    assert_eq!(vm.registers()[6], 6);
    assert_eq!(vm.registers()[9], u64::MAX);
    // A program compiled from other code is refused.
    let other = code("r0 = 1\nexit");
    // SAFETY: refused before running.
    let err = unsafe { vm.run_compiled(&prog, &other, &mut NoEnv, 0) }.unwrap_err();
    assert!(
        matches!(
            err,
            VmError::Jit {
                source: JitError::WrongCode,
                ..
            }
        ),
        "{err}"
    );
    // The cached compilation is reused.
    assert!(std::ptr::eq(c.jit().unwrap(), c.jit().unwrap()));
}

#[test]
fn arm64_code_generation_compiles_and_links_calls() {
    let c = code(
        "r1 = 5\ncall f\nr2 = subprog[+7]\nr0 += 1\nexit\nf:\nr0 = r1\nr0 s/= 0\nlock *(u32 *)(r10 -8) += r0\nexit\ng:\nr0 = 0\nexit",
    );
    for target in [Target::Aarch64, Target::X86_64] {
        let mc = emit_machine_code(&c, target, &JitOptions::default()).unwrap();
        assert_eq!(mc.functions.len(), 3, "{target:?}");
        assert_eq!(mc.calls_linked, 1, "{target:?}");
        assert!(mc.functions.iter().all(|&(_, off)| off < mc.bytes.len()));
        if target == Target::Aarch64 {
            // Every instruction is a word; the call is a `bl` to `f`.
            assert_eq!(mc.bytes.len() % 4, 0);
            let f = mc
                .functions
                .iter()
                .find(|&&(e, _)| e == 5)
                .map(|&(_, o)| o)
                .unwrap();
            let bl = mc.bytes.chunks_exact(4).enumerate().find_map(|(i, w)| {
                let w = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                (w >> 26 == 0b100101).then(|| {
                    let imm = ((w & 0x03ff_ffff) << 6) as i32 >> 6;
                    (i as i64 * 4 + i64::from(imm) * 4) as usize
                })
            });
            assert_eq!(bl, Some(f), "the bl targets f");
        }
    }
}

/// An environment whose helper 181 is the kernel's `bpf_loop`, inlinable or not.
struct LoopEnv {
    inline: bool,
    /// Helper calls that reached the environment.
    calls: u32,
}

impl Env for LoopEnv {
    fn call_helper(
        &mut self,
        pc: usize,
        id: i32,
        a: [u64; 5],
        caller: &mut Caller<'_>,
    ) -> Result<u64, VmError> {
        if id != LOOP {
            return Err(VmError::UnknownHelper { pc, id });
        }
        self.calls += 1;
        if a[3] != 0 {
            return Ok(-22i64 as u64);
        }
        let nr = u64::from(a[0] as u32);
        if nr > 1 << 23 {
            return Ok(-7i64 as u64);
        }
        for i in 0..nr {
            if caller.call_function(self, a[1], [i, a[2], 0, 0, 0])? != 0 {
                return Ok(i + 1);
            }
        }
        Ok(nr)
    }

    fn inline_bpf_loop(&self) -> bool {
        self.inline
    }
}

#[test]
fn bpf_loop_is_inlined_by_the_jit_with_the_helpers_results() {
    // r0 = bpf_loop(nr, cb, &acc, flags); return r0 * 1000 + acc, with two
    // callbacks: `add` sums the indices, `stop` stops at index `limit`.
    let src = |nr: &str, cb: &str, flags: u64, limit: u64| {
        // `add` starts at slot 15 and `stop` at 20; the load is at slot 3.
        let off = if cb == "add" { 11 } else { 16 };
        format!(
            "*(u64 *)(r10 -8) = 0\n\
             r1 = {nr} ll\n\
             r2 = subprog[+{off}]\n\
             r3 = r10\n\
             r3 += -8\n\
             r4 = {flags}\n\
             call bpf_loop\n\
             r6 = r0\n\
             r6 *= 1000\n\
             r1 = *(u64 *)(r10 -8)\n\
             r6 += r1\n\
             r0 = r6\n\
             exit\n\
             add:\n\
             r3 = *(u64 *)(r2 +0)\n\
             r3 += r1\n\
             *(u64 *)(r2 +0) = r3\n\
             r0 = 0\n\
             exit\n\
             stop:\n\
             r3 = *(u64 *)(r2 +0)\n\
             r3 += 1\n\
             *(u64 *)(r2 +0) = r3\n\
             r0 = 0\n\
             if r1 != {limit} goto pc+1\n\
             r0 = 1\n\
             exit"
        )
    };
    let cases = [
        ("0", "add", 0, 0),
        ("10", "add", 0, 0),
        ("1000", "add", 0, 0),
        ("10", "stop", 0, 3),
        ("10", "stop", 0, 20),
        ("0x100000005", "add", 0, 0),
        ("0x800001", "add", 0, 0),
        ("10", "add", 1, 0),
    ];
    let mut vm = Interpreter::new();
    for (nr, cb, flags, limit) in cases {
        let text = src(nr, cb, flags, limit);
        let c = code(&text);
        let mut results = Vec::new();
        for (engine, inline) in [
            (Engine::Interp, false),
            (Engine::Jit, false),
            (Engine::Jit, true),
        ] {
            let mut env = LoopEnv { inline, calls: 0 };
            let mut ctx = [0u8; 8];
            // SAFETY: the program touches its stack and frames only.
            let r = unsafe { vm.run(engine, &c, &mut env, ctx.as_mut_ptr() as u64) }.unwrap();
            results.push(r);
            if inline && flags == 0 && nr != "0x800001" {
                assert_eq!(env.calls, 0, "{nr} {cb}: inlined, the helper is not called");
            } else {
                assert_eq!(env.calls, 1, "{nr} {cb} {engine:?} inline={inline}");
            }
        }
        assert!(
            results.windows(2).all(|w| w[0] == w[1]),
            "{nr} {cb} {flags}: {results:?}"
        );
    }
}
