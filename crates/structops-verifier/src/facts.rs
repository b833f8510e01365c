//! Facts about a verified program that execution may rely on to drop work
//! the verifier proved unnecessary ([`InsnFacts`], one per instruction slot
//! of [`crate::VerifiedProgram::insns`]).
//!
//! - **Zero extension** (the kernel's `opt_subreg_zext_lo32_rnd_hi32` and
//!   its `zext_dst` marks): a 32-bit ALU result is zero-extended into its
//!   64-bit register, but when no later instruction reads the upper half
//!   before the register is written again, nobody can tell. Computed after
//!   verification by a backward "upper half live" analysis over the final
//!   instructions, within each function: 64-bit ALU operands, 64-bit
//!   compares, memory base registers, 8-byte stores, atomics, helper, kfunc
//!   and bpf-to-bpf call arguments (`r1`-`r5`), `LD_ABS` (`r6`, the index)
//!   and `exit` (`r0`) read the upper half; 32-bit operations, 32-bit
//!   compares and narrow stores read only the lower half.
//! - **Divisors**: a division or modulo by a register that every verified
//!   path proved non-zero (the zero-divisor branch the kernel patches in
//!   with `do_misc_fixups` cannot be taken), and for signed ones never `-1`
//!   (the `INT_MIN / -1` branch cannot be taken). Collected on every visit
//!   of the path walk; a path pruned against a state whose scalars did not
//!   contain its own (a match through imprecise registers) continued with
//!   values nobody looked at, so every division reachable from that point
//!   (or from the call sites of its frames) loses its fact.
//!
//! - **Probe loads** (the kernel's `BPF_PROBE_MEM`): loads through
//!   pointers the program read out of host memory, which may be NULL or
//!   stale; marked on every visit of the path walk.
//!
//! A program without facts (unverified, or [`InsnFacts::default`]) is run
//! with every check. The zero-extension and divisor facts only remove
//! work; the probe fact is the one that adds it, and a runtime must honour
//! it.

use structops_isa::{AluOp, AtomicOp, Bits, CallTarget, Imm64, Insn, Op, Source, Width, decode_at};

use crate::live_regs::{UseDef, fixpoint, live_out};
use crate::scalar::ScalarValue;

/// What the verifier proved about one instruction slot. All `false` (the
/// default) claims nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InsnFacts {
    /// A 32-bit ALU instruction (`wX op= ...`, `wX = -wX`, `wX = (s8/s16)wY`)
    /// whose destination's upper 32 bits no later instruction reads before
    /// they are overwritten: the zero extension of its result is
    /// unobservable.
    pub zext_redundant: bool,
    /// A division or modulo by a register (`/=`, `%=`, `s/=`, `s%=`, 32- or
    /// 64-bit) whose divisor (its low 32 bits for 32-bit operations) is
    /// non-zero on every path.
    pub divisor_nonzero: bool,
    /// A division or modulo by a register whose divisor is never `-1` (all
    /// ones in the operation's width) on any path, so a signed one cannot
    /// meet `MIN / -1`.
    pub divisor_not_minus_one: bool,
    /// A load through a `PTR_TO_BTF_ID` the host does not vouch for (on
    /// some path): a pointer read out of a host struct (untrusted, RCU or
    /// plain walked), or one a map-pointer read produced. The kernel turns
    /// these into `BPF_PROBE_MEM` loads, where a fault yields 0; execution
    /// must do the same. Trusted pointers (the member's arguments,
    /// referenced objects, fields the ops type declares trusted) are plain
    /// loads. Unlike the other facts, this one adds work: ignoring it is
    /// unsound.
    pub probe_mem: bool,
    /// At the first instruction of each function: the stack bytes it uses (its
    /// verified stack depth). Nothing below `r10 - depth` is read or written
    /// by it, so an engine that clears frames on entry clears only those.
    pub frame_depth: Option<u16>,
}

/// What one or every visit of a division proved about its divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DivisorFact {
    pub(crate) nonzero: bool,
    pub(crate) not_minus_one: bool,
}

impl DivisorFact {
    /// What the divisor `v` of a `bits`-wide division allows.
    pub(crate) fn of(v: &ScalarValue, bits: Bits) -> DivisorFact {
        match bits {
            Bits::B64 => DivisorFact {
                nonzero: v.umin >= 1 || v.var_off.value() != 0,
                not_minus_one: v.smin > -1 || v.smax < -1 || v.umax < u64::MAX,
            },
            Bits::B32 => DivisorFact {
                nonzero: v.u32_min >= 1 || v.var_off.value() as u32 != 0,
                not_minus_one: v.s32_min > -1 || v.s32_max < -1 || v.u32_max < u32::MAX,
            },
        }
    }

    /// What two visits proved together.
    pub(crate) fn and(self, o: DivisorFact) -> DivisorFact {
        DivisorFact {
            nonzero: self.nonzero && o.nonzero,
            not_minus_one: self.not_minus_one && o.not_minus_one,
        }
    }
}

/// The op starting at each slot (`None` for second slots of `LD_IMM64`
/// and undecodable slots).
pub(crate) fn decode_ops(insns: &[Insn]) -> Vec<Option<Op>> {
    let mut ops = Vec::with_capacity(insns.len());
    let mut pc = 0;
    while pc < insns.len() {
        match decode_at(insns, pc) {
            Ok((op, n)) => {
                ops.push(Some(op));
                if n == 2 {
                    ops.push(None);
                }
                pc += n;
            }
            Err(_) => {
                ops.push(None);
                pc += 1;
            }
        }
    }
    ops
}

fn bit(r: usize) -> u16 {
    1 << r
}

fn src_bits(src: Source) -> u16 {
    match src {
        Source::Reg(r) => bit(r.index()),
        Source::Imm(_) => 0,
    }
}

/// r1..r5.
const ARGS: u16 = 0b11_1110;

/// Registers whose upper half `op` reads, registers it writes, and its
/// successors within its function.
fn hi_use_def(pc: usize, op: &Op) -> UseDef {
    let next = vec![pc + 1];
    let jump = |off: i64| (pc as i64 + off + 1).max(0) as usize;
    let wide = |b: Bits| b == Bits::B64;
    match *op {
        Op::Alu { bits, op, dst, src } => {
            let d = bit(dst.index());
            let u = if !wide(bits) {
                0
            } else if op == AluOp::Mov {
                src_bits(src)
            } else {
                d | src_bits(src)
            };
            (u, d, next)
        }
        Op::Neg { bits, dst } => {
            let d = bit(dst.index());
            (if wide(bits) { d } else { 0 }, d, next)
        }
        Op::MovSx {
            bits,
            dst,
            src,
            from,
        } => {
            let u = if wide(bits) && from == Width::DW {
                bit(src.index())
            } else {
                0
            };
            (u, bit(dst.index()), next)
        }
        Op::End { width, dst, .. } | Op::Bswap { width, dst } => {
            let d = bit(dst.index());
            (if width == Width::DW { d } else { 0 }, d, next)
        }
        Op::AddrSpaceCast { dst, src, .. } => (bit(src.index()), bit(dst.index()), next),
        Op::LdImm64 { dst, .. } => (0, bit(dst.index()), vec![pc + 2]),
        Op::Load { dst, src, .. }
        | Op::LoadSx { dst, src, .. }
        | Op::LoadAcquire { dst, src, .. } => (bit(src.index()), bit(dst.index()), next),
        Op::Store {
            width, dst, src, ..
        } => {
            let v = if width == Width::DW { src_bits(src) } else { 0 };
            (bit(dst.index()) | v, 0, next)
        }
        Op::StoreRelease {
            width, dst, src, ..
        } => {
            let v = if width == Width::DW {
                bit(src.index())
            } else {
                0
            };
            (bit(dst.index()) | v, 0, next)
        }
        Op::Atomic { op, dst, src, .. } => {
            let mut u = bit(dst.index()) | bit(src.index());
            let mut d = 0;
            if op == AtomicOp::CmpXchg {
                u |= bit(0);
                d = bit(0);
            } else if op.fetches() {
                d = bit(src.index());
            }
            (u, d, next)
        }
        Op::LdAbs { .. } => (bit(6), bit(0), next),
        Op::LdInd { src, .. } => (bit(6) | bit(src.index()), bit(0), next),
        Op::Ja { off } => (0, 0, vec![jump(i64::from(off))]),
        Op::Gotol { off } => (0, 0, vec![jump(i64::from(off))]),
        Op::MayGoto { off } => (0, 0, vec![pc + 1, jump(i64::from(off))]),
        Op::Jmp {
            bits,
            dst,
            src,
            off,
            ..
        } => {
            let u = if wide(bits) {
                bit(dst.index()) | src_bits(src)
            } else {
                0
            };
            (u, 0, vec![pc + 1, jump(i64::from(off))])
        }
        Op::Call(_) => (ARGS, bit(0), next),
        Op::Exit => (bit(0), 0, Vec::new()),
    }
}

/// Per slot: a 32-bit ALU instruction whose result's zero extension no
/// later instruction observes.
pub(crate) fn zext_redundant(ops: &[Option<Op>]) -> Vec<bool> {
    let info: Vec<UseDef> = ops
        .iter()
        .enumerate()
        .map(|(pc, op)| match op {
            Some(op) => hi_use_def(pc, op),
            None => (0x7ff, 0, Vec::new()),
        })
        .collect();
    let live = fixpoint(&info, u16::MAX);
    ops.iter()
        .enumerate()
        .map(|(pc, op)| {
            let dst = match *op {
                Some(Op::Alu {
                    bits: Bits::B32,
                    dst,
                    ..
                })
                | Some(Op::Neg {
                    bits: Bits::B32,
                    dst,
                })
                | Some(Op::MovSx {
                    bits: Bits::B32,
                    dst,
                    ..
                }) => dst,
                _ => return false,
            };
            live_out(&live, &info[pc].2) & bit(dst.index()) == 0
        })
        .collect()
}

/// Slots reachable from `starts`, following jumps, calls into their
/// callees, `BPF_PSEUDO_FUNC` loads into their callbacks, and helper and
/// kfunc calls into every subprogram (any of them may be a callback the
/// call invokes).
pub(crate) fn reachable(ops: &[Option<Op>], starts: &[usize], subprogs: &[usize]) -> Vec<bool> {
    let n = ops.len();
    let mut seen = vec![false; n];
    let mut work: Vec<usize> = starts.iter().copied().filter(|&s| s < n).collect();
    for &s in &work {
        seen[s] = true;
    }
    while let Some(pc) = work.pop() {
        let Some(Some(op)) = ops.get(pc) else {
            continue;
        };
        let mut succ = hi_use_def(pc, op).2;
        match *op {
            Op::Call(CallTarget::Local { .. })
            | Op::LdImm64 {
                imm: Imm64::Func { .. },
                ..
            } => succ.extend(op.subprog_target(pc)),
            Op::Call(_) => succ.extend_from_slice(subprogs),
            _ => {}
        }
        for s in succ {
            if s < n && !seen[s] {
                seen[s] = true;
                work.push(s);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops_isa::assemble;

    fn zext(src: &str) -> Vec<bool> {
        zext_redundant(&decode_ops(&assemble(src).unwrap().encode()))
    }

    #[test]
    fn zext_is_redundant_only_when_no_64_bit_read_follows() {
        let z = zext(
            "w1 = 7\n\
             w1 += 1\n\
             r0 = r1\n\
             w2 = 1\n\
             w2 *= 3\n\
             *(u32 *)(r10 -4) = r2\n\
             if w2 > 1 goto pc+0\n\
             w2 = 5\n\
             exit",
        );
        // w1 = 7 is read by the 32-bit add only; w1 += 1 is read as 64 bits.
        assert_eq!(&z[..3], &[true, false, false]);
        // w2 = 1 feeds a 32-bit multiply; w2 *= 3 a narrow store and a
        // 32-bit compare; w2 = 5 is dead.
        assert_eq!(&z[3..8], &[true, true, false, false, true]);
    }

    #[test]
    fn calls_exits_and_loops_read_upper_halves() {
        let z = zext(
            "w1 = 1\n\
             call bpf_get_prandom_u32\n\
             w0 = 2\n\
             exit",
        );
        assert_eq!((z[0], z[2]), (false, false), "helper argument, returned r0");
        // A loop back edge carries the 64-bit read of r3 to the top.
        let z = zext(
            "w3 = 0\n\
             r2 = 10\n\
             r3 += 1\n\
             w4 = w3\n\
             r2 -= 1\n\
             if r2 != 0 goto pc-4\n\
             r0 = r4\n\
             exit",
        );
        assert!(!z[0], "r3 += 1 reads the upper half");
        assert!(!z[3], "r0 = r4 reads it");
        let z = zext("w4 = 1\nw4 = w4\nr0 = 0\nexit");
        assert_eq!(&z[..2], &[true, true]);
    }

    #[test]
    fn divisor_facts_by_width_and_sign() {
        let k = |x: u64| ScalarValue::from_imm(x as i32);
        let f = DivisorFact::of(&k(5), Bits::B64);
        assert_eq!(
            f,
            DivisorFact {
                nonzero: true,
                not_minus_one: true
            }
        );
        let m1 = DivisorFact::of(&ScalarValue::from_imm(-1), Bits::B64);
        assert!(m1.nonzero && !m1.not_minus_one);
        let any = DivisorFact::of(&ScalarValue::unknown(), Bits::B64);
        assert!(!any.nonzero && !any.not_minus_one);
        // 1 << 32 is non-zero as a 64-bit divisor, zero in its low 32 bits.
        let big = crate::alu::alu(
            &ScalarValue::from_imm(1),
            AluOp::Lsh,
            &ScalarValue::from_imm(32),
            Bits::B64,
        );
        assert!(DivisorFact::of(&big, Bits::B64).nonzero);
        assert!(!DivisorFact::of(&big, Bits::B32).nonzero);
        assert!(f.and(m1).nonzero);
        assert!(!f.and(m1).not_minus_one);
    }

    #[test]
    fn reach_follows_calls_and_callbacks() {
        // 0: call pc+2 (-> 3); 1: r0 = 0; 2: exit; 3: r0 = 1; 4: exit
        let ops = decode_ops(
            &assemble("call pc+2\nr0 = 0\nexit\nr0 = 1\nexit")
                .unwrap()
                .encode(),
        );
        assert_eq!(
            reachable(&ops, &[1], &[0, 3]),
            [false, true, true, false, false]
        );
        assert_eq!(reachable(&ops, &[0], &[0, 3]), [true; 5]);
        let ops = decode_ops(
            &assemble("call bpf_get_prandom_u32\nexit\nr0 = 1\nexit")
                .unwrap()
                .encode(),
        );
        assert_eq!(reachable(&ops, &[1], &[0, 2]), [false, true, false, false]);
        assert_eq!(reachable(&ops, &[0], &[0, 2]), [true; 4]);
    }
}
