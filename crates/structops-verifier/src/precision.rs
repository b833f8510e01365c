//! Precision backtracking (`mark_chain_precision`, `backtrack_insn`,
//! `propagate_precision`).
//!
//! Scalars are compared by range in state pruning only if their exact
//! value decided some check: a pointer offset, a helper's size argument,
//! a conditional jump the verifier resolved, a return value range. When
//! that happens the verifier walks the current path backwards through
//! the instruction history, finds every register and spilled stack slot
//! the value was computed from, and marks them `precise` in the
//! remembered parent states.

use structops_isa::{AtomicOp, CallTarget, Op, Source};

use crate::state::{HistEntry, RegType, SlotType};
use crate::verifier::{Res, Verifier};

/// Registers r1..r5 (`BPF_REGMASK_ARGS`).
const ARGS: u32 = 0b11_1110;

/// Which registers and stack slots of each frame still need precision
/// (`struct backtrack_state`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Bt {
    frame: usize,
    regs: [u32; 8],
    stack: [u64; 8],
}

/// Backtracking gave up (`-ENOTSUPP` and the kernel's "backtracking bug"
/// cases): everything becomes precise instead.
struct GiveUp;

impl Bt {
    pub(crate) fn new(frame: usize) -> Bt {
        Bt {
            frame,
            ..Bt::default()
        }
    }

    fn empty(&self) -> bool {
        self.regs.iter().all(|&m| m == 0) && self.stack.iter().all(|&m| m == 0)
    }

    pub(crate) fn set_reg(&mut self, frame: usize, r: usize) {
        if let Some(m) = self.regs.get_mut(frame) {
            *m |= 1 << r;
        }
    }

    pub(crate) fn set_slot(&mut self, frame: usize, spi: usize) {
        if spi < 64
            && let Some(m) = self.stack.get_mut(frame)
        {
            *m |= 1 << spi;
        }
    }

    fn reg(&self, r: usize) -> bool {
        self.regs[self.frame] & (1 << r) != 0
    }

    fn set(&mut self, r: usize) {
        self.regs[self.frame] |= 1 << r;
    }

    fn clear(&mut self, r: usize) {
        self.regs[self.frame] &= !(1 << r);
    }

    fn slot(&self, frame: usize, spi: usize) -> bool {
        spi < 64 && self.stack.get(frame).is_some_and(|m| m & (1 << spi) != 0)
    }

    fn clear_slot(&mut self, frame: usize, spi: usize) {
        if spi < 64
            && let Some(m) = self.stack.get_mut(frame)
        {
            *m &= !(1 << spi);
        }
    }

    fn enter_subprog(&mut self) -> Result<(), GiveUp> {
        if self.frame + 1 >= self.regs.len() {
            return Err(GiveUp);
        }
        self.frame += 1;
        Ok(())
    }

    fn exit_subprog(&mut self) -> Result<(), GiveUp> {
        if self.frame == 0 {
            return Err(GiveUp);
        }
        self.frame -= 1;
        Ok(())
    }

    /// `bt_sync_linked_regs`: scalars refined together need precision
    /// together.
    fn sync_linked(&mut self, h: Option<&HistEntry>) {
        let Some(h) = h else {
            return;
        };
        let is_set = |bt: &Bt, &(f, l): &(u32, u32)| {
            let f = f as usize;
            if l < 16 {
                bt.regs.get(f).is_some_and(|m| m & (1 << l) != 0)
            } else {
                bt.slot(f, (l - 16) as usize)
            }
        };
        if !h.linked.iter().any(|e| is_set(self, e)) {
            return;
        }
        for &(f, l) in &h.linked {
            if l < 16 {
                self.set_reg(f as usize, l as usize);
            } else {
                self.set_slot(f as usize, (l - 16) as usize);
            }
        }
    }
}

/// Which state a backtracking step is in.
#[derive(Clone, Copy)]
enum At {
    Cur,
    Stored(usize),
}

impl Verifier<'_> {
    /// `mark_chain_precision`: register `r` of the current frame needs
    /// its exact value.
    pub(crate) fn mark_precise(&mut self, r: usize) -> Res<()> {
        if self.reg(r).ty != RegType::Scalar {
            return Ok(());
        }
        let mut bt = Bt::new(self.cur.curframe());
        bt.set(r);
        self.backtrack(bt);
        Ok(())
    }

    /// `bt_set_frame_slot` + `mark_chain_precision_batch`: the spilled
    /// scalar in stack slot `spi` of frame `frame` needs its exact value.
    pub(crate) fn mark_slot_precise(&mut self, frame: usize, spi: usize) {
        let mut bt = Bt::new(self.cur.curframe());
        bt.set_slot(frame, spi);
        self.backtrack(bt);
    }

    /// `propagate_precision`: the current state was pruned against stored
    /// state `old`; what is precise there must be precise on this path.
    pub(crate) fn propagate_precision(&mut self, old: usize) {
        let Some(st) = self.stored.get(old) else {
            return;
        };
        let mut bt = Bt::new(self.cur.curframe());
        for (fi, f) in st.state.frames.iter().enumerate() {
            for (r, reg) in f.regs.iter().enumerate().take(10) {
                if reg.ty == RegType::Scalar && reg.precise {
                    bt.set_reg(fi, r);
                }
            }
            for (spi, s) in f.stack.iter().enumerate() {
                if s.is_spill() && s.spilled.ty == RegType::Scalar && s.spilled.precise {
                    bt.set_slot(fi, spi);
                }
            }
        }
        self.backtrack(bt);
    }

    /// `__mark_chain_precision` with a prepared mask.
    fn backtrack(&mut self, mut bt: Bt) {
        if !self.privileges().bpf_capable || bt.empty() {
            return;
        }
        let mut at = At::Cur;
        let mut first = self.cur.first_insn;
        let mut last = self.insn_idx;
        let mut subseq: Option<usize> = None;
        let mut skip_first = true;
        let mut hist: Vec<HistEntry> = self.cur.hist.clone();
        loop {
            let mut hist_end = hist.len();
            let mut i = last;
            loop {
                if skip_first {
                    skip_first = false;
                } else {
                    let h = hist_end
                        .checked_sub(1)
                        .and_then(|k| hist.get(k))
                        .filter(|h| h.idx == i);
                    if self.backtrack_insn(i, subseq, h, &mut bt).is_err() {
                        self.mark_all_precise();
                        return;
                    }
                }
                if bt.empty() {
                    return;
                }
                subseq = Some(i);
                if i == first && (hist_end == 0 || (hist_end == 1 && hist[0].idx == i)) {
                    break;
                }
                if let Some(h) = hist_end.checked_sub(1).and_then(|k| hist.get(k))
                    && h.idx == i
                {
                    i = h.prev;
                    hist_end -= 1;
                } else if i == 0 {
                    self.mark_all_precise();
                    return;
                } else {
                    i -= 1;
                }
            }
            let parent = match at {
                At::Cur => self.cur_parent,
                At::Stored(k) => self.stored.get(k).and_then(|s| s.parent),
            };
            let Some(p) = parent else {
                break;
            };
            if self.mark_in_parent(p, &mut bt).is_err() {
                self.mark_all_precise();
                return;
            }
            if bt.empty() {
                return;
            }
            let st = &self.stored[p].state;
            subseq = Some(first);
            last = st.last_insn;
            first = st.first_insn;
            hist = st.hist.clone();
            at = At::Stored(p);
        }
        if !bt.empty() {
            self.mark_all_precise();
        }
    }

    /// Marks the requested registers and slots precise in stored state
    /// `p`; those already precise need no further walk.
    fn mark_in_parent(&mut self, p: usize, bt: &mut Bt) -> Result<(), GiveUp> {
        let st = &mut self.stored[p].state;
        for fr in (0..=bt.frame).rev() {
            let Some(f) = st.frames.get_mut(fr) else {
                return Err(GiveUp);
            };
            for r in 0..11 {
                if bt.regs[fr] & (1 << r) == 0 {
                    continue;
                }
                let reg = &mut f.regs[r];
                if reg.ty != RegType::Scalar || reg.precise {
                    bt.regs[fr] &= !(1 << r);
                } else {
                    reg.precise = true;
                }
            }
            for spi in 0..64 {
                if !bt.slot(fr, spi) {
                    continue;
                }
                let Some(s) = f.stack.get_mut(spi) else {
                    return Err(GiveUp);
                };
                if !(s.is_spill() && s.spilled.ty == RegType::Scalar) || s.spilled.precise {
                    bt.clear_slot(fr, spi);
                } else {
                    s.spilled.precise = true;
                }
            }
        }
        Ok(())
    }

    /// `mark_all_scalars_precise`: every scalar of every parent state.
    fn mark_all_precise(&mut self) {
        let mut p = self.cur_parent;
        while let Some(i) = p {
            let Some(st) = self.stored.get_mut(i) else {
                break;
            };
            for f in st.state.frames.iter_mut() {
                for r in f.regs.iter_mut() {
                    if r.ty == RegType::Scalar {
                        r.precise = true;
                    }
                }
                for s in f.stack.iter_mut() {
                    if s.slot_type.contains(&SlotType::Spill) && s.spilled.ty == RegType::Scalar {
                        s.spilled.precise = true;
                    }
                }
            }
            p = st.parent;
        }
    }

    /// `backtrack_insn`: what instruction `idx` needs precise before it,
    /// given what is needed after it.
    fn backtrack_insn(
        &self,
        idx: usize,
        subseq: Option<usize>,
        h: Option<&HistEntry>,
        bt: &mut Bt,
    ) -> Result<(), GiveUp> {
        let Some(Some(Ok(op))) = self.ops.get(idx) else {
            // Second half of LD_IMM64.
            return Ok(());
        };
        bt.sync_linked(h);
        let stack = h.and_then(|h| h.stack);
        match *op {
            Op::Alu { op, dst, src, .. } => {
                let d = dst.index();
                if !bt.reg(d) {
                    return Ok(());
                }
                if op == structops_isa::AluOp::Mov {
                    bt.clear(d);
                    if let Source::Reg(s) = src
                        && s.index() != 10
                    {
                        bt.set(s.index());
                    }
                } else if let Source::Reg(s) = src
                    && s.index() != 10
                {
                    bt.set(s.index());
                }
            }
            Op::MovSx { dst, src, .. } => {
                if bt.reg(dst.index()) {
                    bt.clear(dst.index());
                    if src.index() != 10 {
                        bt.set(src.index());
                    }
                }
            }
            Op::Neg { .. } | Op::End { .. } | Op::Bswap { .. } | Op::AddrSpaceCast { .. } => {}
            Op::Load { dst, .. } | Op::LoadSx { dst, .. } | Op::LoadAcquire { dst, .. } => {
                self.backtrack_fill(dst.index(), stack, bt);
            }
            Op::Atomic { op, dst, src, .. } if op.fetches() || op == AtomicOp::CmpXchg => {
                let _ = dst;
                let load = if op == AtomicOp::CmpXchg {
                    0
                } else {
                    src.index()
                };
                self.backtrack_fill(load, stack, bt);
            }
            Op::Atomic { dst, src, .. } => {
                self.backtrack_spill(dst.index(), Some(src.index()), stack, bt)?;
            }
            Op::Store { dst, src, .. } => {
                let s = match src {
                    Source::Reg(r) => Some(r.index()),
                    Source::Imm(_) => None,
                };
                self.backtrack_spill(dst.index(), s, stack, bt)?;
            }
            Op::StoreRelease { dst, src, .. } => {
                self.backtrack_spill(dst.index(), Some(src.index()), stack, bt)?;
            }
            Op::LdImm64 { dst, .. } => bt.clear(dst.index()),
            Op::LdAbs { .. } | Op::LdInd { .. } => {
                if bt.reg(0) {
                    return Err(GiveUp);
                }
            }
            Op::Ja { .. } | Op::Gotol { .. } | Op::MayGoto { .. } => {}
            Op::Jmp { dst, src, .. } => {
                if let Source::Reg(s) = src
                    && (bt.reg(dst.index()) || bt.reg(s.index()))
                {
                    bt.set(dst.index());
                    bt.set(s.index());
                }
            }
            Op::Call(CallTarget::Local { .. }) => {
                // Going backwards out of a static subprogram into its caller:
                // only its arguments can still be wanted.
                if bt.regs[bt.frame] & !ARGS != 0 || bt.stack[bt.frame] != 0 {
                    return Err(GiveUp);
                }
                let args = bt.regs[bt.frame];
                bt.regs[bt.frame] = 0;
                bt.exit_subprog()?;
                bt.regs[bt.frame] |= args;
            }
            Op::Call(target) => {
                let callback_return = matches!(target, CallTarget::Helper { id }
                    if crate::cfg::is_callback_helper(id))
                    && subseq.is_some_and(|s| s != idx + 1);
                if callback_return {
                    // From the callback's entry back to the helper call.
                    if bt.regs[bt.frame] & !ARGS != 0 || bt.stack[bt.frame] != 0 {
                        return Err(GiveUp);
                    }
                    bt.regs[bt.frame] = 0;
                    bt.exit_subprog()?;
                } else {
                    bt.clear(0);
                    if bt.regs[bt.frame] & ARGS != 0 {
                        return Err(GiveUp);
                    }
                }
            }
            Op::Exit => {
                let from_call = subseq
                    .and_then(|s| s.checked_sub(1))
                    .and_then(|k| self.ops.get(k))
                    .is_some_and(|o| matches!(o, Some(Ok(Op::Call(CallTarget::Local { .. })))));
                let r0 = from_call && bt.reg(0);
                if from_call && bt.regs[bt.frame] & ARGS != 0 {
                    return Err(GiveUp);
                }
                bt.clear(0);
                bt.enter_subprog()?;
                if r0 {
                    bt.set(0);
                }
                return Ok(());
            }
        }
        bt.sync_linked(h);
        Ok(())
    }

    fn backtrack_fill(&self, load: usize, stack: Option<(u32, u32)>, bt: &mut Bt) {
        if !bt.reg(load) {
            return;
        }
        bt.clear(load);
        if let Some((f, spi)) = stack {
            bt.set_slot(f as usize, spi as usize);
        }
    }

    fn backtrack_spill(
        &self,
        dst: usize,
        src: Option<usize>,
        stack: Option<(u32, u32)>,
        bt: &mut Bt,
    ) -> Result<(), GiveUp> {
        if bt.reg(dst) {
            return Err(GiveUp);
        }
        let Some((f, spi)) = stack else {
            return Ok(());
        };
        let (f, spi) = (f as usize, spi as usize);
        if !bt.slot(f, spi) {
            return Ok(());
        }
        bt.clear_slot(f, spi);
        if let Some(s) = src {
            bt.set(s);
        }
        Ok(())
    }
}
