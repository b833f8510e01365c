//! Soundness property: random programs (biased toward stack pointer
//! arithmetic, spills, narrow loads, bounds checks and branches) that the
//! verifier accepts run in the checked interpreter without a single
//! out-of-region access or uninitialized stack read.

use proptest::prelude::*;
use structops_isa::{AluOp, Bits, Cond, Op, Program, Reg, Source, Width};
use structops_verifier::{
    CtxField, LogOptions, MapInfo, MapRef, Privileges, ProgInfo, VerifierEnv, proto::HelperProto,
    verify,
};
use structops_vm::{Code, Interpreter, NoEnv, Region};

/// A 24-byte read-only context of scalars; no maps, no helpers.
struct Env;

impl VerifierEnv for Env {
    fn map(&self, _: MapRef) -> Option<MapInfo> {
        None
    }
    fn helper(&self, _: i32) -> Option<HelperProto> {
        None
    }
    fn ctx_access(&self, off: i32, size: u32, write: bool) -> Option<CtxField> {
        let ok = !write && off >= 0 && off + size as i32 <= 24 && off % size as i32 == 0;
        ok.then_some(CtxField::Scalar)
    }
}

fn reg(n: u8) -> Reg {
    Reg::new(n).unwrap_or(Reg::R0)
}

fn width(k: u8) -> Width {
    Width::ALL[usize::from(k % 4)]
}

/// One random op; `i` is its index, `n` the body length (jumps go forward).
fn op_strategy() -> impl Strategy<Value = (u8, u8, u8, i32, u8)> {
    (0u8..14, 0u8..6, 0u8..6, -600i32..600, 0u8..8)
}

fn build(raw: &[(u8, u8, u8, i32, u8)]) -> Program {
    let n = raw.len();
    let mut ops = Vec::with_capacity(n + 8);
    // r6 = ctx, r0..r5 initialized to small constants.
    ops.push(Op::Alu {
        bits: Bits::B64,
        op: AluOp::Mov,
        dst: Reg::R6,
        src: Source::Reg(Reg::R1),
    });
    for r in 0..6u8 {
        ops.push(Op::Alu {
            bits: Bits::B64,
            op: AluOp::Mov,
            dst: reg(r),
            src: Source::Imm(i32::from(r)),
        });
    }
    for (i, &(kind, d, s, imm, k)) in raw.iter().enumerate() {
        let (d, s) = (reg(d), reg(s));
        let off = (imm % 520) as i16;
        let op = match kind {
            0 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Mov,
                dst: d,
                src: Source::Reg(Reg::R10),
            },
            1 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Add,
                dst: d,
                src: Source::Imm(imm % 520),
            },
            2 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Add,
                dst: d,
                src: Source::Reg(s),
            },
            3 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::And,
                dst: d,
                src: Source::Imm(i32::from(k) * 8 + 7),
            },
            4 => Op::Alu {
                bits: if k % 2 == 0 { Bits::B64 } else { Bits::B32 },
                op: AluOp::ALL[usize::from(k) % 13],
                dst: d,
                src: Source::Reg(s),
            },
            5 => Op::Store {
                width: width(k),
                dst: d,
                off,
                src: Source::Reg(s),
            },
            6 => Op::Store {
                width: width(k),
                dst: d,
                off,
                src: Source::Imm(imm),
            },
            7 => Op::Load {
                width: width(k),
                dst: d,
                src: s,
                off,
            },
            8 => Op::Load {
                width: width(k),
                dst: d,
                src: Reg::R6,
                off: (imm.rem_euclid(24)) as i16,
            },
            9 | 10 => {
                let room = (n - i) as i16;
                Op::Jmp {
                    bits: if k % 2 == 0 { Bits::B64 } else { Bits::B32 },
                    cond: Cond::ALL[usize::from(k) % 11],
                    dst: d,
                    src: if kind == 9 {
                        Source::Imm(imm)
                    } else {
                        Source::Reg(s)
                    },
                    off: (imm.rem_euclid(i32::from(room))) as i16,
                }
            }
            11 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Mov,
                dst: d,
                src: Source::Reg(Reg::R6),
            },
            12 => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Sub,
                dst: d,
                src: Source::Imm(imm % 64),
            },
            _ => Op::Alu {
                bits: Bits::B64,
                op: AluOp::Rsh,
                dst: d,
                src: Source::Imm(imm.rem_euclid(64)),
            },
        };
        ops.push(op);
    }
    ops.push(Op::Alu {
        bits: Bits::B64,
        op: AluOp::Mov,
        dst: Reg::R0,
        src: Source::Imm(0),
    });
    ops.push(Op::Exit);
    Program::from_ops(ops)
}

fn check(prog: &Program, ctx_seed: u64) -> Result<bool, String> {
    let insns = prog.encode();
    let info = ProgInfo {
        privileges: Privileges::BPF_ONLY,
        ..ProgInfo::default()
    };
    if verify(&insns, &info, &Env, &LogOptions::default()).is_err() {
        return Ok(false);
    }
    let code = Code::new(prog);
    let mut ctx = [0u8; 24];
    for (i, b) in ctx.iter_mut().enumerate() {
        *b = (ctx_seed >> ((i % 8) * 8)) as u8;
    }
    match Interpreter::new().run_checked(&code, &mut NoEnv, Region::read_only(&ctx), &[]) {
        Ok(_) => Ok(true),
        Err(e) => Err(format!(
            "accepted program trapped: {e}\n{}",
            structops_isa::disassemble(prog, &structops_isa::disasm::Bpftool)
        )),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn accepted_programs_run_without_traps(raw in prop::collection::vec(op_strategy(), 1..24), ctx_seed in any::<u64>()) {
        let prog = build(&raw);
        prop_assert!(check(&prog, ctx_seed).is_ok(), "{:?}", check(&prog, ctx_seed));
    }
}

/// 20,000 programs from a fixed seed; enough of them must be accepted for
/// the property to mean something.
#[test]
fn twenty_thousand_seeded_programs() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let len = 1 + (next() % 20) as usize;
        let raw: Vec<(u8, u8, u8, i32, u8)> = (0..len)
            .map(|_| {
                let r = next();
                (
                    (r % 14) as u8,
                    ((r >> 8) % 6) as u8,
                    ((r >> 16) % 6) as u8,
                    ((r >> 24) % 1200) as i32 - 600,
                    ((r >> 40) % 8) as u8,
                )
            })
            .collect();
        let prog = build(&raw);
        match check(&prog, next()) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("accepted {accepted} of 20000");
    assert!(accepted >= 2_000, "only {accepted} accepted");
}
