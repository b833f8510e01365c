//! Checked mode: every kind of bad access traps with a typed error, and
//! random programs can neither crash the interpreter nor touch memory
//! outside the regions they were given.

mod common;

use common::{checked, code};
use proptest::prelude::*;
use structops_isa::{
    AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Program, Reg, Source, Width,
};
use structops_vm::{Code, Config, Engine, Interpreter, NoEnv, Region, VmError};

/// Runs `src` checked with `ctx` as context and a read-only `extra`
/// region whose address is in `ctx[1]` (ctx[0] is left for the program).
fn run_with_regions(src: &str, ctx: &mut [u64; 4], ro: &[u8]) -> Result<u64, VmError> {
    ctx[1] = ro.as_ptr() as u64;
    Interpreter::new().run_checked(
        &code(src),
        &mut NoEnv,
        Region::read_write_u64s(ctx),
        &[Region::read_only(ro)],
    )
}

fn oob(err: &VmError) -> (usize, u64, bool) {
    match *err {
        VmError::OutOfBounds { pc, len, write, .. } => (pc, len, write),
        ref other => panic!("expected OutOfBounds, got {other}"),
    }
}

#[test]
fn context_bounds() {
    // The default context is 64 bytes.
    assert!(checked("r0 = *(u64 *)(r1 +56)\nexit").is_ok());
    let err = checked("r0 = *(u64 *)(r1 +57)\nexit").unwrap_err();
    assert_eq!(oob(&err), (0, 8, false));
    let err = checked("r0 = 0\n*(u32 *)(r1 +62) = 1\nexit").unwrap_err();
    assert_eq!(oob(&err), (1, 4, true));
    let err = checked("r0 = *(u8 *)(r1 -1)\nexit").unwrap_err();
    assert_eq!(oob(&err), (0, 1, false));
}

#[test]
fn stack_bounds() {
    // Below the lowest frame and at the frame pointer itself.
    let err = checked("*(u64 *)(r10 -520) = 1\nexit").unwrap_err();
    assert_eq!(oob(&err), (0, 8, true));
    let err = checked("*(u64 *)(r10 -8) = 1\nr0 = *(u8 *)(r10 +0)\nexit").unwrap_err();
    assert_eq!(oob(&err), (1, 1, false));
    // Straddling the top of the frame.
    let err = checked("*(u64 *)(r10 -4) = 1\nexit").unwrap_err();
    assert_eq!(oob(&err), (0, 8, true));
    // The whole 512 bytes are usable.
    assert!(checked("*(u64 *)(r10 -512) = 1\nr0 = *(u64 *)(r10 -512)\nexit").is_ok());
}

#[test]
fn a_returned_frame_is_dead() {
    // `f` returns a pointer into its own frame; using it afterwards traps.
    let src = "
        call f
        r1 = *(u64 *)(r0 +0)
        exit
    f:
        *(u64 *)(r10 -8) = 1
        r0 = r10
        r0 += -8
        exit
    ";
    let err = checked(src).unwrap_err();
    assert_eq!(oob(&err), (1, 8, false));
    // Writing through it traps too.
    let err = checked(&src.replace("r1 = *(u64 *)(r0 +0)", "*(u64 *)(r0 +0) = 3")).unwrap_err();
    assert_eq!(oob(&err), (1, 8, true));
}

#[test]
fn a_new_frame_is_uninitialized_even_where_an_old_one_wrote() {
    let src = "
        call set
        call get
        exit
    set:
        *(u64 *)(r10 -8) = 1
        exit
    get:
        r0 = *(u64 *)(r10 -8)
        exit
    ";
    let err = checked(src).unwrap_err();
    assert!(
        matches!(err, VmError::UninitializedRead { pc: 5, len: 8, .. }),
        "{err}"
    );
}

#[test]
fn uninitialized_stack_reads() {
    let err = checked("r0 = *(u64 *)(r10 -8)\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::UninitializedRead { pc: 0, len: 8, .. }),
        "{err}"
    );
    // Partly written is not written.
    let err = checked("*(u32 *)(r10 -8) = 1\nr0 = *(u64 *)(r10 -8)\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::UninitializedRead { pc: 1, .. }),
        "{err}"
    );
    assert_eq!(
        checked("*(u32 *)(r10 -8) = 1\nr0 = *(u32 *)(r10 -8)\nexit").expect("written"),
        1
    );
    // Atomics read before they write.
    let err = checked("r1 = 1\nlock *(u64 *)(r10 -8) += r1\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::UninitializedRead { pc: 1, .. }),
        "{err}"
    );
    // Allowed (reading zeroes) when the configuration says so.
    let mut vm = Interpreter::with_config(Config {
        trap_uninit_stack: false,
        ..Config::default()
    });
    let mut ctx = [0u8; 8];
    let r0 = vm
        .run_checked(
            &code("r0 = *(u64 *)(r10 -8)\nexit"),
            &mut NoEnv,
            Region::read_write(&mut ctx),
            &[],
        )
        .expect("allowed");
    assert_eq!(r0, 0);
}

/// Bytes with the alignment of a `u64`, so atomics on them are aligned.
#[repr(C, align(8))]
struct Aligned([u8; 16]);

#[test]
fn read_only_regions() {
    let ro = Aligned([7u8; 16]);
    let ro = &ro.0;
    let mut ctx = [0u64; 4];
    let read = "r2 = *(u64 *)(r1 +8)\nr0 = *(u8 *)(r2 +15)\nexit";
    assert_eq!(run_with_regions(read, &mut ctx, ro).expect("readable"), 7);
    let write = "r2 = *(u64 *)(r1 +8)\n*(u8 *)(r2 +0) = 1\nexit";
    let err = run_with_regions(write, &mut ctx, ro).unwrap_err();
    assert_eq!(oob(&err), (1, 1, true));
    let atomic = "r2 = *(u64 *)(r1 +8)\nr3 = 1\nlock *(u64 *)(r2 +8) += r3\nexit";
    let err = run_with_regions(atomic, &mut ctx, ro).unwrap_err();
    assert_eq!(oob(&err), (2, 8, true));
    let release = "r2 = *(u64 *)(r1 +8)\nr3 = 1\nstore_release((u8 *)(r2 +0), r3)\nexit";
    let err = run_with_regions(release, &mut ctx, ro).unwrap_err();
    assert_eq!(oob(&err), (2, 1, true));
    let past = "r2 = *(u64 *)(r1 +8)\nr0 = *(u16 *)(r2 +15)\nexit";
    let err = run_with_regions(past, &mut ctx, ro).unwrap_err();
    assert_eq!(oob(&err), (1, 2, false));
}

#[test]
fn atomics_out_of_bounds() {
    let err = checked("r2 = 1\nlock *(u64 *)(r1 +64) += r2\nexit").unwrap_err();
    assert_eq!(oob(&err), (1, 8, true));
    let err = checked("r2 = 1\nr0 = atomic_cmpxchg((u32 *)(r1 -4), r0, r2)\nexit").unwrap_err();
    assert_eq!(oob(&err), (1, 4, true));
    let err = checked("r0 = load_acquire((u64 *)(r1 +64))\nexit").unwrap_err();
    assert_eq!(oob(&err), (0, 8, false));
}

#[test]
fn wild_addresses_trap_without_crashing() {
    for base in ["0", "-1", "0x8000000000000000 ll", "0xfffffffffffffff8 ll"] {
        let err = checked(&format!("r2 = {base}\nr0 = *(u64 *)(r2 +0)\nexit")).unwrap_err();
        assert!(matches!(err, VmError::OutOfBounds { .. }), "{base}: {err}");
        let err = checked(&format!("r2 = {base}\n*(u8 *)(r2 +7) = 1\nexit")).unwrap_err();
        assert!(matches!(err, VmError::OutOfBounds { .. }), "{base}: {err}");
    }
    // A corrupted frame pointer is just a number.
    let err = checked("r10 = 4096\n*(u64 *)(r10 -8) = 1\nexit").unwrap_err();
    assert!(matches!(err, VmError::OutOfBounds { pc: 1, .. }), "{err}");
    // ...and is restored when a call returns.
    assert_eq!(
        checked("call f\n*(u64 *)(r10 -8) = 3\nr0 = *(u64 *)(r10 -8)\nexit\nf:\nr10 = 0\nexit")
            .expect("restored"),
        3
    );
}

#[test]
fn instruction_limit_stops_infinite_loops() {
    let mut vm = Interpreter::with_config(Config {
        step_limit: 1000,
        ..Config::default()
    });
    let mut ctx = [0u8; 8];
    let err = vm
        .run_checked(
            &code("r0 = 0\nloop:\nr0 += 1\ngoto loop"),
            &mut NoEnv,
            Region::read_write(&mut ctx),
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(err, VmError::InstructionLimit { limit: 1000, .. }),
        "{err}"
    );
    assert_eq!(vm.steps(), 1001);
    assert_eq!(vm.registers()[0], 500);
}

fn run_ops(ops: Vec<Op>) -> Result<u64, VmError> {
    let prog = Program::from_ops(ops);
    let mut ctx = [0u8; 8];
    Interpreter::new().run_checked(
        &Code::new(&prog),
        &mut NoEnv,
        Region::read_write(&mut ctx),
        &[],
    )
}

#[test]
fn malformed_control_flow() {
    // Past the end, before the start, into the middle of an LD_IMM64.
    let err = checked("goto pc+5\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::BadJump { pc: 0, target: 6 }),
        "{err}"
    );
    let err = checked("r0 = 0\nif r0 == 0 goto pc-3\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::BadJump { pc: 1, target: -1 }),
        "{err}"
    );
    let err = checked("goto pc+1\nr0 = 1 ll\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::BadJump { pc: 0, target: 2 }),
        "{err}"
    );
    // A jump not taken is harmless.
    assert_eq!(
        checked("r0 = 1\nif r0 == 0 goto pc+100\nexit").expect("not taken"),
        1
    );
    // Falling off the end, directly or by jumping to it.
    let err = checked("r0 = 1").unwrap_err();
    assert!(matches!(err, VmError::FellOffEnd { pc: 1 }), "{err}");
    let err = checked("goto pc+1\nexit").unwrap_err();
    assert!(matches!(err, VmError::FellOffEnd { pc: 2 }), "{err}");
    let err = run_ops(Vec::new()).unwrap_err();
    assert!(matches!(err, VmError::FellOffEnd { pc: 0 }), "{err}");
    // Calls and callback loads of non-instructions.
    let err = checked("call pc+7\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::BadCallTarget { pc: 0, target: 8 }),
        "{err}"
    );
    let err = checked("r1 = subprog[-9]\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::BadCallTarget { pc: 0, target: -8 }),
        "{err}"
    );
    // Ops the interpreter does not run.
    let err = checked("r1 = addr_space_cast(r1, 0, 1)\nexit").unwrap_err();
    assert!(matches!(err, VmError::Unsupported { pc: 0, .. }), "{err}");
    let err = run_ops(vec![
        Op::Atomic {
            width: Width::B,
            op: AtomicOp::Add,
            dst: Reg::R10,
            off: -8,
            src: Reg::R1,
        },
        Op::Exit,
    ])
    .unwrap_err();
    assert!(matches!(err, VmError::Unsupported { pc: 0, .. }), "{err}");
}

#[test]
fn errors_name_their_instruction() {
    let err = checked("r0 = 0 ll\nr1 = 0\nr0 = *(u64 *)(r1 +0)\nexit").unwrap_err();
    assert_eq!(err.pc(), 3);
    assert_eq!(
        err.to_string(),
        format!("insn 3: read of 8 bytes at 0x0 is outside every allowed region")
    );
}

// ---- random programs ----

fn reg() -> impl Strategy<Value = Reg> {
    prop_oneof![
        3 => (0u8..=10).prop_map(|n| Reg::new(n).unwrap_or(Reg::R0)),
        1 => Just(Reg::R1),
        1 => Just(Reg::R10),
    ]
}

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        -16i32..16,
        Just(i32::MIN),
        Just(i32::MAX),
        -600i32..600,
        any::<i32>()
    ]
}

fn off() -> impl Strategy<Value = i16> {
    prop_oneof![4 => -560i16..80, 1 => any::<i16>()]
}

fn jmp_off() -> impl Strategy<Value = i16> {
    prop_oneof![4 => -6i16..8, 1 => any::<i16>()]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![imm().prop_map(Source::Imm), reg().prop_map(Source::Reg)]
}

fn bits() -> impl Strategy<Value = Bits> {
    prop_oneof![Just(Bits::B32), Just(Bits::B64)]
}

fn width() -> impl Strategy<Value = Width> {
    proptest::sample::select(Width::ALL.to_vec())
}

/// Any `Op`, including ones decoding would reject (odd widths), biased
/// towards memory accesses near the context and the stack.
fn op() -> impl Strategy<Value = Op> {
    let alu = proptest::sample::select(AluOp::ALL.to_vec());
    let cond = proptest::sample::select(Cond::ALL.to_vec());
    let atomic = proptest::sample::select(AtomicOp::ALL.to_vec());
    prop_oneof![
        6 => (bits(), alu, reg(), source()).prop_map(|(bits, op, dst, src)| Op::Alu { bits, op, dst, src }),
        1 => (bits(), reg()).prop_map(|(bits, dst)| Op::Neg { bits, dst }),
        1 => (bits(), reg(), reg(), width()).prop_map(|(bits, dst, src, from)| Op::MovSx { bits, dst, src, from }),
        1 => (reg(), width(), any::<bool>()).prop_map(|(dst, width, le)| Op::End { order: if le { Endian::Le } else { Endian::Be }, width, dst }),
        1 => (reg(), width()).prop_map(|(dst, width)| Op::Bswap { width, dst }),
        3 => (bits(), cond, reg(), source(), jmp_off()).prop_map(|(bits, cond, dst, src, off)| Op::Jmp { bits, cond, dst, src, off }),
        1 => jmp_off().prop_map(|off| Op::Ja { off }),
        1 => jmp_off().prop_map(|off| Op::Gotol { off: i32::from(off) }),
        1 => jmp_off().prop_map(|off| Op::MayGoto { off }),
        1 => jmp_off().prop_map(|off| Op::Call(CallTarget::Local { offset: i32::from(off) })),
        1 => (0i32..8).prop_map(|id| Op::Call(CallTarget::Helper { id })),
        2 => Just(Op::Exit),
        4 => (width(), reg(), reg(), off()).prop_map(|(width, dst, src, off)| Op::Load { width, dst, src, off }),
        1 => (width(), reg(), reg(), off()).prop_map(|(width, dst, src, off)| Op::LoadSx { width, dst, src, off }),
        5 => (width(), reg(), off(), source()).prop_map(|(width, dst, off, src)| Op::Store { width, dst, off, src }),
        2 => (width(), atomic, reg(), off(), reg()).prop_map(|(width, op, dst, off, src)| Op::Atomic { width, op, dst, off, src }),
        1 => (width(), reg(), reg(), off()).prop_map(|(width, dst, src, off)| Op::LoadAcquire { width, dst, src, off }),
        1 => (width(), reg(), off(), reg()).prop_map(|(width, dst, off, src)| Op::StoreRelease { width, dst, off, src }),
        1 => (reg(), any::<u64>()).prop_map(|(dst, k)| Op::LdImm64 { dst, imm: Imm64::Const(k) }),
        1 => (reg(), jmp_off()).prop_map(|(dst, off)| Op::LdImm64 { dst, imm: Imm64::Func { offset: i32::from(off) } }),
        1 => reg().prop_map(|dst| Op::LdImm64 { dst, imm: Imm64::MapFd { fd: 3 } }),
        1 => (width(), imm()).prop_map(|(width, imm)| Op::LdAbs { width, imm }),
    ]
}

const GUARD: usize = 64;
const CTX: usize = 64;
const RO: usize = 32;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Random programs, run checked: whatever happens is a result or a
    /// typed error, and the bytes around the context and the read-only
    /// region are untouched.
    #[test]
    fn random_programs_stay_inside_their_regions(ops in proptest::collection::vec(op(), 1..40)) {
        let mut buf = [0u8; GUARD + CTX + GUARD + RO + GUARD];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        let before = buf;
        let (head, rest) = buf.split_at_mut(GUARD);
        let (ctx, rest) = rest.split_at_mut(CTX);
        let (mid, rest) = rest.split_at_mut(GUARD);
        let (ro, tail) = rest.split_at_mut(RO);
        // Hand the program the read-only region's address in the context.
        ctx[..8].copy_from_slice(&(ro.as_ptr() as u64).to_ne_bytes());
        let has_calls = ops.iter().any(|op| {
            matches!(
                op,
                Op::Call(CallTarget::Local { .. }) | Op::LdImm64 { imm: Imm64::Func { .. }, .. }
            )
        });
        let code = Code::new(&Program::from_ops(ops));
        let mut vm = Interpreter::with_config(Config { step_limit: 5_000, ..Config::default() });
        let result = vm.run_checked(&code, &mut NoEnv, Region::read_write(ctx), &[Region::read_only(ro)]);
        // Differential: when the checked run shows the path is memory-safe
        // and ends, the unchecked interpreter and the JIT must take it too,
        // with the same result and the same context afterwards. Programs
        // with bpf-to-bpf calls are left out: the JIT starts callees with
        // r0 and r6-r9 zeroed and keeps the caller's r1-r5 after a call,
        // which only programs the verifier rejects can observe.
        if common::unchecked_safe(&result) && !has_calls {
            let after = ctx.to_vec();
            let ctx_addr = ctx.as_mut_ptr() as u64;
            for engine in [Engine::Interp, Engine::Jit] {
                ctx.copy_from_slice(&before[GUARD..GUARD + CTX]);
                ctx[..8].copy_from_slice(&(ro.as_ptr() as u64).to_ne_bytes());
                // SAFETY: the checked run took this same path without a
                // memory fault; the program is deterministic (no
                // environment) and the context is at the same address.
                let other = unsafe { vm.run(engine, &code, &mut NoEnv, ctx_addr) };
                prop_assert_eq!(common::outcome(&result), common::outcome(&other), "{:?}", engine);
                prop_assert_eq!(&ctx[..], &after[..], "{:?}", engine);
            }
        }
        if let Err(e) = &result {
            // Errors render and name an instruction of the program.
            prop_assert!(!e.to_string().is_empty());
            let pc = e.pc();
            prop_assert!(pc <= code.slot_count(), "pc {} of {} slots: {}", pc, code.slot_count(), e);
        }
        let (h, m, r, t) = (head.to_vec(), mid.to_vec(), ro.to_vec(), tail.to_vec());
        prop_assert_eq!(&h[..], &before[..GUARD]);
        prop_assert_eq!(&m[..], &before[GUARD + CTX..2 * GUARD + CTX]);
        prop_assert_eq!(&r[..], &before[2 * GUARD + CTX..2 * GUARD + CTX + RO]);
        prop_assert_eq!(&t[..], &before[2 * GUARD + CTX + RO..]);
    }
}
