//! Read and write marks (`mark_reg_read`, `propagate_liveness`).
//!
//! A read of a register or stack slot that the current path has not
//! written since its last checkpoint depends on the value the checkpoint
//! saw, so the mark walks up the chain of remembered parent states until
//! a state whose segment wrote it. A finished state whose register was
//! never marked read may differ there from a later state without harm
//! (`regsafe`).

use crate::state::{LIVE_READ, LIVE_WRITTEN};
use crate::verifier::Verifier;

/// A register or a stack slot of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// Register r0..r10.
    Reg(usize),
    /// Stack slot `spi`.
    Slot(usize),
}

impl Verifier<'_> {
    fn cur_live(&self, frame: usize, loc: Loc) -> u8 {
        let Some(f) = self.cur.frames.get(frame) else {
            return 0;
        };
        match loc {
            Loc::Reg(r) => f.reg_live.get(r).copied().unwrap_or(0),
            Loc::Slot(s) => f.stack_live.get(s).copied().unwrap_or(0),
        }
    }

    /// `mark_reg_read` / `mark_stack_read`: the current path depends on
    /// the value `loc` of `frame` had at the last checkpoint.
    pub(crate) fn mark_read(&mut self, frame: usize, loc: Loc) {
        if self.cur_live(frame, loc) & LIVE_WRITTEN != 0 {
            return;
        }
        let Some(uid) = self.cur.frames.get(frame).map(|f| f.uid) else {
            return;
        };
        let mut parent = self.cur_parent;
        let mut walk = 0u32;
        while let Some(p) = parent {
            let Some(st) = self.stored.get_mut(p) else {
                break;
            };
            let Some(f) = st.state.frames.get_mut(frame) else {
                break;
            };
            if f.uid != uid {
                break;
            }
            let live = match loc {
                Loc::Reg(r) => f.reg_live.get_mut(r),
                Loc::Slot(s) => f.stack_live.get_mut(s),
            };
            let Some(live) = live else {
                break;
            };
            if *live & LIVE_READ != 0 {
                break;
            }
            *live |= LIVE_READ;
            walk += 1;
            if *live & LIVE_WRITTEN != 0 {
                break;
            }
            parent = st.parent;
        }
        self.longest_mark_read_walk = self.longest_mark_read_walk.max(walk);
    }

    /// A write that fully defines `loc` screens later reads from the
    /// parents (`REG_LIVE_WRITTEN`).
    pub(crate) fn mark_written(&mut self, frame: usize, loc: Loc) {
        let Some(f) = self.cur.frames.get_mut(frame) else {
            return;
        };
        match loc {
            Loc::Reg(r) => {
                if let Some(l) = f.reg_live.get_mut(r) {
                    *l |= LIVE_WRITTEN;
                }
            }
            Loc::Slot(s) => {
                if s >= f.stack_live.len() {
                    f.stack_live.resize(s + 1, 0);
                }
                if let Some(l) = f.stack_live.get_mut(s) {
                    *l |= LIVE_WRITTEN;
                }
            }
        }
    }

    /// `propagate_liveness`: the current state was pruned against stored
    /// state `old`; whatever the continuation from `old` read, the current
    /// path reads too.
    pub(crate) fn propagate_liveness(&mut self, old: usize) {
        let Some(st) = self.stored.get(old) else {
            return;
        };
        let mut reads = Vec::new();
        let cur_frames = self.cur.frames.len();
        for (fi, f) in st.state.frames.iter().enumerate().take(cur_frames) {
            let first = if fi + 1 < cur_frames { 6 } else { 0 };
            for r in first..10 {
                if f.reg_live[r] & LIVE_READ != 0 {
                    reads.push((fi, Loc::Reg(r)));
                }
            }
            let slots = f.stack.len().min(self.cur.frames[fi].stack.len());
            for s in 0..slots {
                if f.stack_live.get(s).copied().unwrap_or(0) & LIVE_READ != 0 {
                    reads.push((fi, Loc::Slot(s)));
                }
            }
        }
        for (fi, loc) in reads {
            self.mark_read(fi, loc);
        }
    }

    /// After a checkpoint the current path starts a new segment: nothing
    /// written or read yet, nothing precise.
    pub(crate) fn reset_marks(&mut self) {
        for f in self.cur.frames.iter_mut() {
            f.reg_live = [0; 11];
            f.stack_live.iter_mut().for_each(|l| *l = 0);
            for r in f.regs.iter_mut() {
                r.precise = false;
            }
            for s in f.stack.iter_mut() {
                s.spilled.precise = false;
            }
        }
    }
}
