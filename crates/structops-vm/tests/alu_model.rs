//! Property test: random ALU and forward-jump sequences give the same
//! registers in the interpreter (both modes) as in a small independent
//! model written with 128-bit arithmetic instead of wrapping operations.

use proptest::prelude::*;
use structops_isa::{AluOp, Bits, Cond, Endian, Imm64, Op, Program, Reg, Source, Width};
use structops_vm::{Code, Interpreter, JitOptions, JitProgram, NoEnv, Region};

const EDGE64: [u64; 14] = [
    0,
    1,
    2,
    u64::MAX,
    i64::MIN as u64,
    i64::MAX as u64,
    i32::MIN as i64 as u64,
    i32::MAX as u64,
    0xffff_ffff,
    0x8000_0000,
    0x1_0000_0000,
    31,
    63,
    64,
];

const EDGE32: [i32; 11] = [0, 1, -1, 2, -2, i32::MIN, i32::MAX, 31, 32, 63, 64];

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![proptest::sample::select(EDGE64.to_vec()), any::<u64>()]
}

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![proptest::sample::select(EDGE32.to_vec()), any::<i32>()]
}

/// r0 to r9: the registers the body may use (r10 is the frame pointer).
fn reg() -> impl Strategy<Value = Reg> {
    (0u8..10).prop_map(|n| Reg::new(n).unwrap_or(Reg::R0))
}

fn bits() -> impl Strategy<Value = Bits> {
    prop_oneof![Just(Bits::B32), Just(Bits::B64)]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![imm().prop_map(Source::Imm), reg().prop_map(Source::Reg)]
}

/// A body op; jumps carry a forward offset that `program()` clamps.
fn body_op() -> impl Strategy<Value = Op> {
    let alu = proptest::sample::select(AluOp::ALL.to_vec());
    let cond = proptest::sample::select(Cond::ALL.to_vec());
    let bhw = proptest::sample::select(vec![Width::B, Width::H, Width::W]);
    let hwdw = proptest::sample::select(vec![Width::H, Width::W, Width::DW]);
    prop_oneof![
        12 => (bits(), alu, reg(), source()).prop_map(|(bits, op, dst, src)| Op::Alu { bits, op, dst, src }),
        1 => (bits(), reg()).prop_map(|(bits, dst)| Op::Neg { bits, dst }),
        1 => (bits(), reg(), reg(), bhw).prop_map(|(bits, dst, src, from)| Op::MovSx {
            // 32-bit moves sign-extend only 8 and 16 bits.
            from: if bits == Bits::B32 && from == Width::W { Width::H } else { from },
            bits, dst, src,
        }),
        1 => (reg(), hwdw.clone(), any::<bool>()).prop_map(|(dst, width, le)| Op::End {
            order: if le { Endian::Le } else { Endian::Be }, width, dst,
        }),
        1 => (reg(), hwdw).prop_map(|(dst, width)| Op::Bswap { width, dst }),
        3 => (bits(), cond, reg(), source(), 0i16..6).prop_map(|(bits, cond, dst, src, off)| Op::Jmp { bits, cond, dst, src, off }),
    ]
}

/// Initializes r0..r9, then the body with jumps clamped to land at most
/// on the final `exit`.
fn program(init: &[u64; 10], body: &[Op]) -> Vec<Op> {
    let mut ops: Vec<Op> = init
        .iter()
        .zip(Reg::ALL)
        .map(|(&v, dst)| Op::LdImm64 {
            dst,
            imm: Imm64::Const(v),
        })
        .collect();
    let n = body.len();
    for (i, op) in body.iter().enumerate() {
        let mut op = *op;
        if let Op::Jmp { off, .. } = &mut op {
            let room = i16::try_from(n - i - 1).unwrap_or(i16::MAX);
            *off = (*off).min(room);
        }
        ops.push(op);
    }
    ops.push(Op::Exit);
    ops
}

// ---- the model ----

const M64: u128 = u64::MAX as u128;

fn sx(v: u64, bits: u32) -> u64 {
    let sh = 64 - bits;
    (((v << sh) as i64) >> sh) as u64
}

fn model_alu64(op: AluOp, a: u64, b: u64) -> u64 {
    let (ua, ub) = (u128::from(a), u128::from(b));
    let (sa, sb) = (i128::from(a as i64), i128::from(b as i64));
    match op {
        AluOp::Add => ((ua + ub) & M64) as u64,
        AluOp::Sub => ((ua + (M64 + 1 - ub)) & M64) as u64,
        AluOp::Mul => ((ua * ub) & M64) as u64,
        AluOp::Div => {
            if b == 0 {
                0
            } else {
                (ua / ub) as u64
            }
        }
        AluOp::SDiv => {
            if b == 0 {
                0
            } else {
                (sa / sb) as u64
            }
        }
        AluOp::Mod => {
            if b == 0 {
                a
            } else {
                (ua % ub) as u64
            }
        }
        AluOp::SMod => {
            if b == 0 {
                a
            } else {
                (sa % sb) as u64
            }
        }
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Xor => a ^ b,
        AluOp::Lsh => ((ua << (b % 64)) & M64) as u64,
        AluOp::Rsh => (ua >> (b % 64)) as u64,
        AluOp::Arsh => (sa >> (b % 64)) as u64,
        AluOp::Mov => b,
    }
}

fn model_alu32(op: AluOp, a: u64, b: u64) -> u64 {
    let (a, b) = (a & 0xffff_ffff, b & 0xffff_ffff);
    let r = match op {
        AluOp::SDiv | AluOp::SMod | AluOp::Arsh => {
            let sa = sx(a, 32);
            let sb = sx(b, 32);
            match op {
                AluOp::SDiv => model_alu64(AluOp::SDiv, sa, sb),
                AluOp::SMod => {
                    if b == 0 {
                        a
                    } else {
                        model_alu64(AluOp::SMod, sa, sb)
                    }
                }
                _ => model_alu64(AluOp::Arsh, sa, b % 32),
            }
        }
        AluOp::Lsh | AluOp::Rsh => model_alu64(op, a, b % 32),
        _ => model_alu64(op, a, b),
    };
    r & 0xffff_ffff
}

fn model_cond(cond: Cond, a: u64, b: u64, bits: Bits) -> bool {
    let (a, b, sa, sb) = match bits {
        Bits::B64 => (a, b, a as i64, b as i64),
        Bits::B32 => (
            a & 0xffff_ffff,
            b & 0xffff_ffff,
            sx(a, 32) as i64,
            sx(b, 32) as i64,
        ),
    };
    match cond {
        Cond::Eq => a == b,
        Cond::Ne => a != b,
        Cond::Gt => a > b,
        Cond::Ge => a >= b,
        Cond::Lt => a < b,
        Cond::Le => a <= b,
        Cond::Sgt => sa > sb,
        Cond::Sge => sa >= sb,
        Cond::Slt => sa < sb,
        Cond::Sle => sa <= sb,
        Cond::Set => a & b != 0,
    }
}

fn swap(v: u64, width: Width) -> u64 {
    let n = width.bytes();
    let bytes = v.to_le_bytes();
    let mut out = [0u8; 8];
    for i in 0..n {
        out[i] = bytes[n - 1 - i];
    }
    u64::from_le_bytes(out)
}

fn trunc(v: u64, width: Width) -> u64 {
    match width {
        Width::DW => v,
        w => v & ((1u64 << w.bits()) - 1),
    }
}

/// Runs `ops` (straight-line with forward jumps) on the model.
fn model(ops: &[Op]) -> [u64; 10] {
    let mut r = [0u64; 11];
    let mut i = 0;
    while let Some(&op) = ops.get(i) {
        i += 1;
        let val = |r: &[u64; 11], s: Source, bits: Bits| match s {
            Source::Reg(x) => r[x.index()],
            Source::Imm(k) => match bits {
                Bits::B64 => k as i64 as u64,
                Bits::B32 => u64::from(k as u32),
            },
        };
        match op {
            Op::LdImm64 {
                dst,
                imm: Imm64::Const(v),
            } => r[dst.index()] = v,
            Op::Alu { bits, op, dst, src } => {
                let b = val(&r, src, bits);
                let a = r[dst.index()];
                r[dst.index()] = match bits {
                    Bits::B64 => model_alu64(op, a, b),
                    Bits::B32 => model_alu32(op, a, b),
                };
            }
            Op::Neg { bits, dst } => {
                let a = r[dst.index()];
                r[dst.index()] = match bits {
                    Bits::B64 => model_alu64(AluOp::Sub, 0, a),
                    Bits::B32 => model_alu32(AluOp::Sub, 0, a),
                };
            }
            Op::MovSx {
                bits,
                dst,
                src,
                from,
            } => {
                let v = sx(r[src.index()], from.bits());
                r[dst.index()] = match bits {
                    Bits::B64 => v,
                    Bits::B32 => v & 0xffff_ffff,
                };
            }
            Op::End { order, width, dst } => {
                let v = r[dst.index()];
                let native = (order == Endian::Le) == cfg!(target_endian = "little");
                r[dst.index()] = if native {
                    trunc(v, width)
                } else {
                    swap(v, width)
                };
            }
            Op::Bswap { width, dst } => r[dst.index()] = swap(r[dst.index()], width),
            Op::Jmp {
                bits,
                cond,
                dst,
                src,
                off,
            } => {
                let b = match src {
                    // Jump immediates are sign-extended in both widths; the
                    // 32-bit compare then looks at the low half.
                    Source::Imm(k) => k as i64 as u64,
                    Source::Reg(x) => r[x.index()],
                };
                if model_cond(cond, r[dst.index()], b, bits) {
                    i += usize::try_from(off).unwrap_or(0);
                }
            }
            Op::Exit => break,
            other => panic!("model does not know {other:?}"),
        }
    }
    let mut out = [0; 10];
    out.copy_from_slice(&r[..10]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn interpreter_matches_the_model(
        init in proptest::array::uniform10(value()),
        body in proptest::collection::vec(body_op(), 1..60),
    ) {
        let ops = program(&init, &body);
        let expect = model(&ops);
        let code = Code::new(&Program::from_ops(ops));
        let mut vm = Interpreter::new();
        let mut ctx = [0u8; 8];
        let r0 = vm
            .run_checked(&code, &mut NoEnv, Region::read_write(&mut ctx), &[])
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r0, expect[0]);
        prop_assert_eq!(&vm.registers()[..10], &expect[..]);
        // SAFETY: the program touches no memory at all.
        let r0 = unsafe { vm.run_unchecked(&code, &mut NoEnv, 0) }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r0, expect[0]);
        prop_assert_eq!(&vm.registers()[..10], &expect[..]);
        // The JIT, keeping every register at the exit.
        let options = JitOptions { capture_registers: true, ..JitOptions::default() };
        let jit = JitProgram::compile(&code, &options).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // SAFETY: as above.
        let r0 = unsafe { vm.run_compiled(&jit, &code, &mut NoEnv, 0) }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(r0, expect[0]);
        prop_assert_eq!(&vm.registers()[..10], &expect[..]);
    }
}

#[test]
fn model_knows_the_kernel_corner_cases() {
    // The model itself, against values from the kernel's semantics.
    assert_eq!(
        model_alu64(AluOp::SDiv, i64::MIN as u64, u64::MAX),
        i64::MIN as u64
    );
    assert_eq!(model_alu64(AluOp::SMod, i64::MIN as u64, u64::MAX), 0);
    assert_eq!(model_alu32(AluOp::Mod, 0xdead_0000_0007, 0x1_0000_0000), 7);
    assert_eq!(model_alu32(AluOp::SMod, u64::MAX, 0), 0xffff_ffff);
    assert_eq!(model_alu64(AluOp::Lsh, 1, 65), 2);
    assert!(model_cond(Cond::Slt, 0x8000_0000, 0, Bits::B32));
    assert!(!model_cond(Cond::Slt, 0x8000_0000, 0, Bits::B64));
}
