//! State equivalence for pruning (`states_equal`, `regsafe`, `stacksafe`).
//!
//! Without liveness and precision marks every register and stack slot
//! counts as read and every scalar as precise, so a state is covered by an
//! old one only if each old value contains the new one. This prunes less
//! than the kernel but never prunes a state the kernel would not.

use std::collections::HashMap;

use crate::env::Privileges;
use crate::scalar::ScalarValue;
use crate::state::{Frame, Reg, RegType, SlotType, State};

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

fn regs_exact(old: &Reg, cur: &Reg, ids: &mut IdMap) -> bool {
    old.ty == cur.ty
        && old.flags == cur.flags
        && old.v == cur.v
        && old.off == cur.off
        && old.map == cur.map
        && old.mem_size == cur.mem_size
        && old.range == cur.range
        && old.btf_id == cur.btf_id
        && old.frameno == cur.frameno
        && old.subprog == cur.subprog
        && ids.check(old.id, cur.id)
        && ids.check(old.ref_obj_id, cur.ref_obj_id)
}

/// `regsafe`: may `cur` continue where `old` was proven safe?
fn regsafe(old: &Reg, cur: &Reg, exact: bool, ids: &mut IdMap) -> bool {
    if exact {
        return regs_exact(old, cur, ids);
    }
    if old.ty == RegType::NotInit {
        return true;
    }
    if cur.ty == RegType::NotInit {
        return false;
    }
    if old.ty != cur.ty || old.flags != cur.flags {
        return false;
    }
    match old.ty {
        RegType::Scalar => ids.check_scalar(old.id, cur.id) && range_within(&old.v, &cur.v),
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

fn stacksafe(old: &Frame, cur: &Frame, exact: bool, privs: Privileges, ids: &mut IdMap) -> bool {
    for (spi, os) in old.stack.iter().enumerate() {
        let cs = cur.stack.get(spi);
        for i in 0..8 {
            let ot = os.slot_type[i];
            let ct = cs.map_or(SlotType::Invalid, |c| c.slot_type[i]);
            if exact {
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
            if !regsafe(&os.spilled, &cs.spilled, exact, ids) {
                return false;
            }
        }
    }
    if exact && cur.stack.len() > old.stack.len() {
        return cur.stack[old.stack.len()..]
            .iter()
            .all(|s| s.slot_type.iter().all(|t| *t == SlotType::Invalid));
    }
    true
}

fn func_states_equal(
    old: &Frame,
    cur: &Frame,
    exact: bool,
    privs: Privileges,
    ids: &mut IdMap,
) -> bool {
    if old.callsite != cur.callsite || old.subprog != cur.subprog || old.callback != cur.callback {
        return false;
    }
    for (o, c) in old.regs.iter().zip(cur.regs.iter()) {
        if !regsafe(o, c, exact, ids) {
            return false;
        }
    }
    stacksafe(old, cur, exact, privs, ids)
}

/// `states_equal`: with `exact`, the states must be the same (loop
/// detection); otherwise `old` must cover `cur`.
pub(crate) fn states_equal(old: &State, cur: &State, exact: bool, privs: Privileges) -> bool {
    if old.frames.len() != cur.frames.len() {
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
        .all(|(o, c)| func_states_equal(o, c, exact, privs, &mut ids))
}
