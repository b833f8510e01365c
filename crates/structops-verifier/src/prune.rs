//! State equivalence for pruning (`states_equal`, `regsafe`, `stacksafe`).
//!
//! A remembered state covers the current one when every register and
//! stack slot that some path after it read ([`LIVE_READ`]) holds a value
//! the old one contains; scalars only need to be contained when precision
//! backtracking marked them `precise` (their exact range decided some
//! check). [`Exact::RangeWithin`] ignores both marks (the old state's
//! exploration is not finished, so its marks are not final), and
//! [`Exact::Equal`] asks for equal states (infinite-loop detection).

use std::collections::HashMap;

use crate::env::Privileges;
use crate::scalar::ScalarValue;
use crate::state::{Frame, IterPhase, LIVE_READ, Reg, RegType, SlotType, State};

/// How strictly `states_equal` compares (`enum exact_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exact {
    /// Liveness and precision marks apply (`NOT_EXACT`).
    Marks,
    /// Every value contained, marks ignored (`RANGE_WITHIN`).
    RangeWithin,
    /// Equal states (`EXACT`).
    Equal,
}

/// Maps ids of the old state to ids of the current one (`check_ids`).
struct IdMap {
    map: HashMap<u32, u32>,
    rev: HashMap<u32, u32>,
    tmp: u32,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            map: HashMap::new(),
            rev: HashMap::new(),
            tmp: 1 << 31,
        }
    }
}

impl IdMap {
    /// `check_ids`: both zero, or a consistent bijection.
    fn check(&mut self, old: u32, cur: u32) -> bool {
        if (old == 0) != (cur == 0) {
            return false;
        }
        if old == 0 {
            return true;
        }
        match (self.map.get(&old), self.rev.get(&cur)) {
            (Some(&c), _) => c == cur,
            (None, Some(_)) => false,
            (None, None) => {
                self.map.insert(old, cur);
                self.rev.insert(cur, old);
                true
            }
        }
    }

    /// `check_scalar_ids`: a zero id is a fresh one on either side.
    fn check_scalar(&mut self, old: u32, cur: u32) -> bool {
        let mut fresh = |x: u32| {
            if x == 0 {
                self.tmp += 1;
                self.tmp
            } else {
                x
            }
        };
        let (o, c) = (fresh(old), fresh(cur));
        self.check(o, c)
    }
}

fn range_within(old: &ScalarValue, cur: &ScalarValue) -> bool {
    old.umin <= cur.umin
        && old.umax >= cur.umax
        && old.smin <= cur.smin
        && old.smax >= cur.smax
        && old.u32_min <= cur.u32_min
        && old.u32_max >= cur.u32_max
        && old.s32_min <= cur.s32_min
        && old.s32_max >= cur.s32_max
        && old.var_off.contains(cur.var_off)
}

/// Every field but the ids, `frameno` and `precise` is the same.
fn same_but_ids(old: &Reg, cur: &Reg) -> bool {
    old.ty == cur.ty
        && old.flags == cur.flags
        && old.v == cur.v
        && old.off == cur.off
        && old.map == cur.map
        && old.mem_size == cur.mem_size
        && old.range == cur.range
        && old.btf_id == cur.btf_id
        && old.subprog == cur.subprog
}

fn regs_exact(old: &Reg, cur: &Reg, ids: &mut IdMap) -> bool {
    same_but_ids(old, cur)
        && old.frameno == cur.frameno
        && ids.check(old.id, cur.id)
        && ids.check(old.ref_obj_id, cur.ref_obj_id)
}

/// `regsafe`: may `cur` continue where `old` was proven safe? `live` is
/// the old register's liveness.
fn regsafe(
    old: &Reg,
    cur: &Reg,
    live: u8,
    exact: Exact,
    privs: Privileges,
    ids: &mut IdMap,
) -> bool {
    if exact == Exact::Marks && live & LIVE_READ == 0 {
        return true;
    }
    if exact == Exact::Equal {
        return regs_exact(old, cur, ids);
    }
    if old.ty == RegType::NotInit {
        return exact == Exact::Marks || cur.ty == RegType::NotInit;
    }
    if cur.ty == RegType::NotInit {
        return false;
    }
    if old.ty != cur.ty || old.flags != cur.flags {
        return false;
    }
    match old.ty {
        RegType::Scalar => {
            if regs_exact(old, cur, ids) {
                return true;
            }
            // Without CAP_BPF every scalar is precise (`__mark_reg_unknown`).
            if exact == Exact::Marks && !old.precise && privs.bpf_capable {
                return true;
            }
            ids.check_scalar(old.id, cur.id) && range_within(&old.v, &cur.v)
        }
        RegType::MapValue | RegType::MapKey | RegType::Mem => {
            old.off == cur.off
                && old.map == cur.map
                && old.mem_size == cur.mem_size
                && range_within(&old.v, &cur.v)
                && ids.check(old.id, cur.id)
                && ids.check(old.ref_obj_id, cur.ref_obj_id)
        }
        RegType::Packet | RegType::PacketMeta => {
            old.range <= cur.range
                && old.off == cur.off
                && ids.check(old.id, cur.id)
                && range_within(&old.v, &cur.v)
        }
        _ => regs_exact(old, cur, ids),
    }
}

fn stacksafe(old: &Frame, cur: &Frame, exact: Exact, privs: Privileges, ids: &mut IdMap) -> bool {
    for (spi, os) in old.stack.iter().enumerate() {
        let live = old.stack_live.get(spi).copied().unwrap_or(LIVE_READ);
        if exact == Exact::Marks && live & LIVE_READ == 0 {
            continue;
        }
        let exact_bool = exact == Exact::Equal;
        let cs = cur.stack.get(spi);
        for i in 0..8 {
            let ot = os.slot_type[i];
            let ct = cs.map_or(SlotType::Invalid, |c| c.slot_type[i]);
            if exact_bool {
                if ot != ct {
                    return false;
                }
                continue;
            }
            if ot == SlotType::Invalid {
                continue;
            }
            if privs.allow_uninit_stack && ot == SlotType::Misc {
                continue;
            }
            if ot == SlotType::Misc && ct == SlotType::Zero {
                continue;
            }
            if ot != ct {
                return false;
            }
        }
        if os.is_spill() {
            let Some(cs) = cs else {
                return false;
            };
            if !regsafe(&os.spilled, &cs.spilled, LIVE_READ, exact, privs, ids) {
                return false;
            }
        } else if os.is_iter() {
            // The depth is not compared: it only tells iterations apart for
            // the infinite-loop check (`iter_active_depths_differ`).
            let Some(cs) = cs else {
                return false;
            };
            let (o, c) = (&os.iter, &cs.iter);
            if o.btf_id != c.btf_id || o.phase != c.phase || !ids.check(o.ref_obj_id, c.ref_obj_id)
            {
                return false;
            }
        }
    }
    if exact == Exact::Equal && cur.stack.len() > old.stack.len() {
        return cur.stack[old.stack.len()..]
            .iter()
            .all(|s| s.slot_type.iter().all(|t| *t == SlotType::Invalid));
    }
    true
}

fn func_states_equal(
    old: &Frame,
    cur: &Frame,
    static_live: u16,
    exact: Exact,
    privs: Privileges,
    ids: &mut IdMap,
) -> bool {
    if old.callsite != cur.callsite || old.subprog != cur.subprog || old.callback != cur.callback {
        return false;
    }
    for (i, (o, c)) in old.regs.iter().zip(cur.regs.iter()).enumerate() {
        // Registers no path reads before writing them are dead whatever
        // the exploration found (`clean_func_state` with static liveness).
        if exact != Exact::Equal && i < 10 && static_live & (1 << i) == 0 {
            continue;
        }
        if !regsafe(o, c, old.reg_live[i], exact, privs, ids) {
            return false;
        }
    }
    stacksafe(old, cur, exact, privs, ids)
}

/// `iter_active_depths_differ`: some iterator active in `old` is at a
/// different iteration in `cur`, so equal states there are successive
/// iterations of an iterator loop, not an infinite loop.
pub(crate) fn iter_active_depths_differ(old: &State, cur: &State) -> bool {
    old.frames.iter().zip(cur.frames.iter()).any(|(fo, fc)| {
        fo.stack.iter().enumerate().any(|(spi, so)| {
            so.slot_type[0] == SlotType::Iter
                && so.iter.phase == IterPhase::Active
                && fc.stack.get(spi).map_or(0, |s| s.iter.depth) != so.iter.depth
        })
    })
}

/// `states_maybe_looping`: the innermost frames' registers are the same field for field,
/// ids included. The kernel compares the raw `bpf_reg_state`s up to `parent` (type,
/// offset, the pointer's union, bounds, `id`, `ref_obj_id`; not `frameno`, liveness or
/// `precise`), so a loop whose body hands a register a fresh id every round is never
/// reported as infinite, however equal the states are otherwise.
pub(crate) fn states_maybe_looping(old: &State, cur: &State) -> bool {
    if old.frames.len() != cur.frames.len() {
        return false;
    }
    let (Some(fo), Some(fc)) = (old.frames.last(), cur.frames.last()) else {
        return false;
    };
    fo.regs
        .iter()
        .zip(fc.regs.iter())
        .all(|(o, c)| same_but_ids(o, c) && o.id == c.id && o.ref_obj_id == c.ref_obj_id)
}

/// `states_equal`: with [`Exact::Equal`], the states must be the same
/// (loop detection); otherwise `old` must cover `cur`. `static_live[i]`
/// is the mask of registers live in frame `i` at this point.
pub(crate) fn states_equal(
    old: &State,
    cur: &State,
    static_live: &[u16],
    exact: Exact,
    privs: Privileges,
) -> bool {
    if old.frames.len() != cur.frames.len() {
        return false;
    }
    if old.may_goto_depth != cur.may_goto_depth && exact == Exact::Equal {
        return false;
    }
    let mut ids = IdMap::default();
    if old.refs.len() != cur.refs.len() {
        return false;
    }
    for (o, c) in old.refs.iter().zip(cur.refs.iter()) {
        if !ids.check(o.id, c.id) {
            return false;
        }
    }
    old.frames
        .iter()
        .zip(cur.frames.iter())
        .enumerate()
        .all(|(i, (o, c))| {
            let live = static_live.get(i).copied().unwrap_or(0x3ff);
            func_states_equal(o, c, live, exact, privs, &mut ids)
        })
}
