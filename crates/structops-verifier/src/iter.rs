//! Open-coded iterators (`bpf_iter_<type>_new/next/destroy`, what
//! `bpf_for` and `bpf_repeat` expand to): the iterator's state lives in
//! stack slots of the program (`STACK_ITER`), `new` constructs it and
//! takes a reference that `destroy` drops, and `next` forks the path into
//! "returned NULL" (the iterator is drained) and "returned an element"
//! (another iteration), mirroring `process_iter_arg` and
//! `process_iter_next_call`.
//!
//! Iterator loops converge by state equivalence at the `next` call, not by
//! walking every iteration: the walk checkpoints every `next` call, and
//! an iteration that reaches `next` in a state the previous iteration's
//! checkpoint covers (compared without liveness or precision marks, which
//! are not final inside the loop) ends there. Scalars that changed between
//! iterations and are not precise are widened to unknown first
//! (`widen_imprecise_scalars`), so counters do not keep states apart.

use structops_btf::{Btf, Param, TypeKind};
use structops_isa::{CallTarget, Op};

use crate::env::KfuncFlags;
use crate::error::{EFAULT, EINVAL, Reject};
use crate::liveness::Loc;
use crate::mem::Access;
use crate::state::{IterPhase, IterSlot, Reg, RegFlags, RegType, SlotType, StackSlot};
use crate::verifier::{Res, Verifier};

/// `BPF_REG_SIZE`.
const SLOT: i64 = 8;
/// `ITER_PREFIX`: iterator structs are named `bpf_iter_<type>`.
const ITER_PREFIX: &str = "bpf_iter_";

/// The iterator an iterator kfunc's argument names (`meta->iter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IterArg {
    /// Frame whose stack holds it.
    pub frameno: usize,
    /// Its first (highest) slot.
    pub spi: usize,
    /// The reference it holds.
    pub ref_obj_id: u32,
}

/// Why `stack_slot_obj_get_spi` found no slot.
enum SpiError {
    /// Not a slot position at all (logged, `EINVAL`).
    Invalid,
    /// Past the allocated stack (`ERANGE`).
    Range,
}

/// `btf_check_iter_arg`: the iterator struct argument `arg` of `proto`
/// points to, if it is a `bpf_iter_*` struct.
fn iter_arg_struct(btf: &Btf, params: &[Param], arg: usize) -> Option<u32> {
    let p = params.get(arg)?;
    let t = btf.resolve(p.ty).ok()?;
    let Ok(TypeKind::Ptr { target }) = btf.ty(t).map(|t| &t.kind) else {
        return None;
    };
    let st = btf.resolve(*target).ok()?;
    let ty = btf.ty(st).ok()?;
    if !matches!(ty.kind, TypeKind::Struct(_)) {
        return None;
    }
    let name = btf.name(ty.name_off).ok()?;
    name.starts_with(ITER_PREFIX).then_some(st)
}

impl Verifier<'_> {
    /// Marks every call of an iterator `next` kfunc as a prune point with a
    /// forced checkpoint (`visit_insn`): convergence is decided there.
    pub(crate) fn mark_iter_next_calls(&mut self) {
        self.iter_next = vec![false; self.ops.len()];
        for pc in 0..self.ops.len() {
            let Some(Some(Ok(Op::Call(CallTarget::Kfunc { btf_id, .. })))) = self.ops.get(pc)
            else {
                continue;
            };
            let next = self
                .env
                .kfunc(*btf_id)
                .is_some_and(|d| d.flags.has(KfuncFlags::ITER_NEXT));
            if next {
                self.iter_next[pc] = true;
                if let Some(p) = self.cfg.prune_point.get_mut(pc) {
                    *p = true;
                }
                if let Some(f) = self.cfg.force_checkpoint.get_mut(pc) {
                    *f = true;
                }
            }
        }
    }

    /// `iter_type_str`: the iterator struct's name without `bpf_iter_`.
    pub(crate) fn iter_type_str(&self, btf_id: u32) -> String {
        self.env
            .host_btf()
            .and_then(|b| b.ty(btf_id).ok().and_then(|t| b.name(t.name_off).ok()))
            .map(|n| n.strip_prefix(ITER_PREFIX).unwrap_or(n).to_owned())
            .unwrap_or_default()
    }

    /// Whether the iterator `r1` points to at an iterator `next` call is
    /// active (the convergence test of `is_state_visited`).
    pub(crate) fn iter_arg_active(&self) -> bool {
        let r1 = &self.cur.cur().regs[1];
        if r1.ty != RegType::Stack || !r1.v.var_off.is_const() {
            return false;
        }
        let off = i64::from(r1.off) + r1.v.var_off.value() as i64;
        let spi = (-off - 1) / SLOT;
        if spi < 0 {
            return false;
        }
        self.cur
            .frames
            .get(r1.frameno as usize)
            .and_then(|f| f.stack.get(spi as usize))
            .is_some_and(|s| s.is_iter() && s.iter.phase == IterPhase::Active)
    }

    /// `stack_slot_obj_get_spi` for an iterator of `nr_slots` slots at the
    /// stack pointer in `regno`.
    fn iter_get_spi(&mut self, regno: usize, nr_slots: usize) -> Result<usize, SpiError> {
        let reg = self.reg(regno).clone();
        if !reg.v.var_off.is_const() {
            self.verbose("iter has to be at a constant offset\n");
            return Err(SpiError::Invalid);
        }
        let off = i64::from(reg.off) + reg.v.var_off.value() as i64;
        if off % SLOT != 0 {
            self.verbose(&format!("cannot pass in iter at an offset={off}\n"));
            return Err(SpiError::Invalid);
        }
        // C division: truncates toward zero.
        let spi = (-off - 1) / SLOT;
        if spi + 1 < nr_slots as i64 {
            self.verbose(&format!("cannot pass in iter at an offset={off}\n"));
            return Err(SpiError::Invalid);
        }
        let allocated = self
            .cur
            .frames
            .get(reg.frameno as usize)
            .map_or(0, |f| f.stack.len()) as i64;
        if spi - nr_slots as i64 + 1 < 0 || spi >= allocated {
            return Err(SpiError::Range);
        }
        Ok(spi as usize)
    }

    fn iter_slot(&self, frameno: usize, spi: usize) -> Option<&StackSlot> {
        self.cur.frames.get(frameno).and_then(|f| f.stack.get(spi))
    }

    /// `process_iter_arg`: argument `argno` (register `argno + 1`) of
    /// kfunc `fname` is an iterator of struct `btf_id`. `new` constructs it
    /// (taking a reference acquired at `pc`); `next`, `destroy` and other
    /// users need it constructed, and `destroy` ends it.
    pub(crate) fn process_iter_arg(
        &mut self,
        btf: &Btf,
        params: &[Param],
        argno: usize,
        flags: KfuncFlags,
        pc: usize,
    ) -> Res<Option<IterArg>> {
        let regno = argno + 1;
        let reg = self.reg(regno).clone();
        if reg.ty != RegType::Stack {
            return Err(Reject::new(
                EINVAL,
                format!("arg#{argno} expected pointer to an iterator on stack"),
            ));
        }
        let Some(btf_id) = iter_arg_struct(btf, params, argno) else {
            return Err(Reject::new(
                EINVAL,
                format!("expected valid iter pointer as arg #{argno}"),
            ));
        };
        let nr_slots = (btf.size_of(btf_id).unwrap_or(0) / SLOT as u32) as usize;
        let tname = self.iter_type_str(btf_id);
        let frameno = reg.frameno as usize;
        if flags.has(KfuncFlags::ITER_NEW) {
            // is_iter_reg_valid_uninit: past the allocated stack is fine
            // (the writes below grow it).
            let uninit = match self.iter_get_spi(regno, nr_slots) {
                Err(SpiError::Range) => true,
                Err(SpiError::Invalid) => false,
                Ok(spi) => (0..nr_slots).all(|i| {
                    self.iter_slot(frameno, spi - i)
                        .is_none_or(|s| !s.slot_type.contains(&SlotType::Iter))
                }),
            };
            if !uninit {
                return Err(Reject::new(
                    EINVAL,
                    format!("expected uninitialized iter_{tname} as arg #{argno}"),
                ));
            }
            for i in 0..nr_slots {
                self.check_mem_access(
                    pc,
                    regno,
                    (i as i64 * SLOT) as i32,
                    SLOT as u32,
                    Access::Write,
                    None,
                    false,
                    None,
                )?;
            }
            self.mark_stack_slots_iter(regno, pc, btf_id, nr_slots)?;
            return Ok(None);
        }
        let spi = match self.iter_get_spi(regno, nr_slots) {
            Ok(spi) if self.iter_reg_valid_init(frameno, spi, btf_id, nr_slots) => spi,
            _ => {
                return Err(Reject::new(
                    EINVAL,
                    format!("expected an initialized iter_{tname} as arg #{argno}"),
                ));
            }
        };
        // mark_iter_read
        for i in 0..nr_slots {
            self.mark_read(frameno, Loc::Slot(spi - i));
        }
        let ref_obj_id = self
            .iter_slot(frameno, spi)
            .map_or(0, |s| s.iter.ref_obj_id);
        if flags.has(KfuncFlags::ITER_DESTROY) {
            self.unmark_stack_slots_iter(frameno, spi, nr_slots, ref_obj_id, regno)?;
        }
        Ok(Some(IterArg {
            frameno,
            spi,
            ref_obj_id,
        }))
    }

    /// `is_iter_reg_valid_init`: slots `spi` down hold one constructed
    /// iterator of struct `btf_id`.
    fn iter_reg_valid_init(
        &self,
        frameno: usize,
        spi: usize,
        btf_id: u32,
        nr_slots: usize,
    ) -> bool {
        (0..nr_slots).all(|i| {
            let Some(s) = self.iter_slot(frameno, spi - i) else {
                return false;
            };
            // Only the first slot carries the reference.
            (s.iter.ref_obj_id != 0) == (i == 0)
                && s.iter.btf_id == btf_id
                && s.slot_type.iter().all(|t| *t == SlotType::Iter)
        })
    }

    /// `mark_stack_slots_iter`: the slots become a fresh active iterator
    /// holding a new reference.
    fn mark_stack_slots_iter(
        &mut self,
        regno: usize,
        pc: usize,
        btf_id: u32,
        nr_slots: usize,
    ) -> Res<()> {
        let frameno = self.reg(regno).frameno as usize;
        let spi = match self.iter_get_spi(regno, nr_slots) {
            Ok(spi) => spi,
            Err(_) => {
                return Err(Reject::new(
                    EFAULT,
                    "verifier internal error: iterator slots not allocated",
                ));
            }
        };
        let id = self.next_id();
        self.cur.refs.push(crate::state::RefState { id, insn: pc });
        for i in 0..nr_slots {
            let Some(s) = self
                .cur
                .frames
                .get_mut(frameno)
                .and_then(|f| f.stack.get_mut(spi - i))
            else {
                continue;
            };
            s.spilled = Reg::default();
            s.slot_type = [SlotType::Iter; 8];
            s.iter = IterSlot {
                btf_id,
                ref_obj_id: if i == 0 { id } else { 0 },
                phase: IterPhase::Active,
                depth: 0,
            };
            self.mark_written(frameno, Loc::Slot(spi - i));
        }
        Ok(())
    }

    /// `unmark_stack_slots_iter`: `destroy` drops the reference (and every
    /// pointer derived from the iterator) and frees the slots.
    fn unmark_stack_slots_iter(
        &mut self,
        frameno: usize,
        spi: usize,
        nr_slots: usize,
        ref_obj_id: u32,
        regno: usize,
    ) -> Res<()> {
        self.release_reference(ref_obj_id, regno)?;
        for i in 0..nr_slots {
            if let Some(s) = self
                .cur
                .frames
                .get_mut(frameno)
                .and_then(|f| f.stack.get_mut(spi - i))
            {
                *s = StackSlot::default();
            }
            self.mark_written(frameno, Loc::Slot(spi - i));
        }
        Ok(())
    }

    /// `process_iter_next_call`: at a `next` call of an active iterator
    /// the path forks. The current path takes NULL (the iterator is
    /// drained from then on); a queued path takes an element, one
    /// iteration deeper, with scalars widened against the previous
    /// iteration so that the loop converges.
    pub(crate) fn process_iter_next_call(&mut self, pc: usize, it: IterArg) -> Res<()> {
        let phase = self
            .iter_slot(it.frameno, it.spi)
            .map(|s| s.iter.phase)
            .ok_or_else(|| {
                Reject::new(EFAULT, "verifier internal error: iterator slot vanished")
            })?;
        if phase == IterPhase::Active {
            // The forced checkpoint at this call is the current state's parent.
            let parent_ok = self.cur_parent.is_some_and(|p| {
                self.stored.get(p).is_some_and(|s| {
                    s.insn == pc
                        && s.state.frames.len() == self.cur.frames.len()
                        && s.state
                            .frames
                            .iter()
                            .zip(self.cur.frames.iter())
                            .all(|(a, b)| a.callsite == b.callsite)
                })
            });
            if !parent_ok {
                return Err(Reject::new(
                    EFAULT,
                    "bug: bad parent state for iter next call",
                ));
            }
            let prev = self.find_prev_entry(pc, true);
            let mut queued = self.cur.clone();
            if let Some(s) = queued
                .frames
                .get_mut(it.frameno)
                .and_then(|f| f.stack.get_mut(it.spi))
            {
                s.iter.phase = IterPhase::Active;
                s.iter.depth += 1;
            }
            if let Some(prev) = prev {
                let saved = std::mem::replace(&mut self.cur, queued);
                self.widen_imprecise_scalars(prev);
                queued = std::mem::replace(&mut self.cur, saved);
            }
            // mark_ptr_not_null_reg
            let r0 = &mut queued.cur_mut().regs[0];
            r0.flags = r0.flags.without(RegFlags::MAYBE_NULL);
            self.push_branch(queued, pc + 1, pc)?;
        }
        if let Some(s) = self
            .cur
            .frames
            .get_mut(it.frameno)
            .and_then(|f| f.stack.get_mut(it.spi))
        {
            s.iter.phase = IterPhase::Drained;
        }
        *self.reg_mut(0) = Reg::known(0);
        Ok(())
    }
}
