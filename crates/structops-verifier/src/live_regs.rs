//! Registers live before each instruction (`compute_live_registers`):
//! the path-insensitive analysis Linux 6.18 prints as "Live regs before
//! insn" and uses to forget dead registers in remembered states. It is
//! computed once, before the path walk, within each subprogram (a call
//! reads r1..r5 and writes r0..r5; `exit` reads r0).

use structops_isa::{AluOp, AtomicOp, CallTarget, Op, Source};

/// r0..r5.
const CALLER_SAVED: u16 = 0b11_1111;
/// r1..r5.
const ARGS: u16 = 0b11_1110;

fn bit(r: usize) -> u16 {
    1 << r
}

fn src_bits(src: Source) -> u16 {
    match src {
        Source::Reg(r) => bit(r.index()),
        Source::Imm(_) => 0,
    }
}

/// What an instruction reads and writes, and where control goes next
/// within its subprogram.
fn use_def(pc: usize, op: &Op) -> (u16, u16, Vec<usize>) {
    let next = |n: usize| vec![pc + n];
    let jump = |off: i64| (pc as i64 + off + 1) as usize;
    match *op {
        Op::Alu { op, dst, src, .. } => {
            let d = bit(dst.index());
            if op == AluOp::Mov {
                (src_bits(src), d, next(1))
            } else {
                (d | src_bits(src), d, next(1))
            }
        }
        Op::Neg { dst, .. } | Op::End { dst, .. } | Op::Bswap { dst, .. } => {
            (bit(dst.index()), bit(dst.index()), next(1))
        }
        Op::MovSx { dst, src, .. } => (bit(src.index()), bit(dst.index()), next(1)),
        Op::AddrSpaceCast { dst, src, .. } => (bit(src.index()), bit(dst.index()), next(1)),
        Op::LdImm64 { dst, .. } => (0, bit(dst.index()), next(2)),
        Op::Load { dst, src, .. }
        | Op::LoadSx { dst, src, .. }
        | Op::LoadAcquire { dst, src, .. } => (bit(src.index()), bit(dst.index()), next(1)),
        Op::Store { dst, src, .. } => (bit(dst.index()) | src_bits(src), 0, next(1)),
        Op::StoreRelease { dst, src, .. } => (bit(dst.index()) | bit(src.index()), 0, next(1)),
        Op::Atomic { op, dst, src, .. } => {
            let mut u = bit(dst.index()) | bit(src.index());
            let mut d = 0;
            if op == AtomicOp::CmpXchg {
                u |= bit(0);
                d = bit(0);
            } else if op.fetches() {
                d = bit(src.index());
            }
            (u, d, next(1))
        }
        Op::LdAbs { .. } => (bit(6), CALLER_SAVED, next(1)),
        Op::LdInd { src, .. } => (bit(6) | bit(src.index()), CALLER_SAVED, next(1)),
        Op::Ja { off } => (0, 0, vec![jump(i64::from(off))]),
        Op::Gotol { off } => (0, 0, vec![jump(i64::from(off))]),
        Op::MayGoto { off } => (0, 0, vec![pc + 1, jump(i64::from(off))]),
        Op::Jmp { dst, src, off, .. } => (
            bit(dst.index()) | src_bits(src),
            0,
            vec![pc + 1, jump(i64::from(off))],
        ),
        Op::Call(
            CallTarget::Helper { .. } | CallTarget::Local { .. } | CallTarget::Kfunc { .. },
        ) => (ARGS, CALLER_SAVED, next(1)),
        Op::Exit => (bit(0), 0, Vec::new()),
    }
}

/// Live-in register masks (bit `r` for `rR`) per instruction; r10 is
/// never included. `ops[pc]` is `None` for the second slot of `LD_IMM64`
/// and for undecodable instructions (treated as reading everything).
pub(crate) fn compute(ops: &[Option<Op>]) -> Vec<u16> {
    let info: Vec<UseDef> = ops
        .iter()
        .enumerate()
        .map(|(pc, op)| match op {
            Some(op) => use_def(pc, op),
            None => (0x3ff, 0, Vec::new()),
        })
        .collect();
    fixpoint(&info, 0x3ff)
}

/// One instruction of a backward register dataflow: the registers it reads,
/// the ones it writes, and its successors.
pub(crate) type UseDef = (u16, u16, Vec<usize>);

/// Live-in masks of a backward "may be read later" dataflow over `info`
/// (live-out is the union of the successors' live-in), iterated to its
/// least fixpoint; each mask is limited to the registers in `keep`.
pub(crate) fn fixpoint(info: &[UseDef], keep: u16) -> Vec<u16> {
    let mut live = vec![0u16; info.len()];
    let mut changed = true;
    while changed {
        changed = false;
        for (pc, (u, d, succ)) in info.iter().enumerate().rev() {
            let out = live_out(&live, succ);
            let inn = (u | (out & !d)) & keep;
            if inn != live[pc] {
                live[pc] = inn;
                changed = true;
            }
        }
    }
    live
}

/// The union of the live-in masks of `succ`.
pub(crate) fn live_out(live: &[u16], succ: &[usize]) -> u16 {
    succ.iter()
        .filter_map(|&s| live.get(s))
        .fold(0u16, |a, &b| a | b)
}
