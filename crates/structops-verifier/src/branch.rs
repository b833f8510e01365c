//! Conditional jumps on scalars: whether the kernel decides a branch
//! statically (`is_scalar_branch_taken`), and what each side learns about
//! the two operands (`reg_set_min_max` with `regs_refine_cond_op`).
//!
//! The kernel refines through two pointers that may alias when a register
//! is compared with itself (`if r1 > r1`), with visible effects on the
//! result; [`refine_same_register`] reproduces that case.

use structops_isa::{Bits, Cond};

use crate::scalar::ScalarValue;
use crate::tnum::Tnum;

/// The relations `regs_refine_cond_op` applies: every [`Cond`] plus the
/// negation of `&` (the kernel's `BPF_JSET | BPF_X`), which the fall-through
/// side of a `JSET` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rel {
    Cond(Cond),
    NotSet,
}

/// The condition that holds on the fall-through side (`rev_opcode`).
const fn reverse(cond: Cond) -> Rel {
    Rel::Cond(match cond {
        Cond::Eq => Cond::Ne,
        Cond::Ne => Cond::Eq,
        Cond::Set => return Rel::NotSet,
        Cond::Ge => Cond::Lt,
        Cond::Gt => Cond::Le,
        Cond::Le => Cond::Gt,
        Cond::Lt => Cond::Ge,
        Cond::Sge => Cond::Slt,
        Cond::Sgt => Cond::Sle,
        Cond::Sle => Cond::Sgt,
        Cond::Slt => Cond::Sge,
    })
}

/// `b cond' a` equivalent to `a cond b` (`flip_opcode`).
pub const fn flip(cond: Cond) -> Cond {
    match cond {
        Cond::Eq | Cond::Ne | Cond::Set => cond,
        Cond::Ge => Cond::Le,
        Cond::Gt => Cond::Lt,
        Cond::Le => Cond::Ge,
        Cond::Lt => Cond::Gt,
        Cond::Sge => Cond::Sle,
        Cond::Sgt => Cond::Slt,
        Cond::Sle => Cond::Sge,
        Cond::Slt => Cond::Sgt,
    }
}

/// One operand's bounds as the comparison sees them: the 64-bit ones, or
/// the 32-bit ones widened, and the matching tnum.
struct View {
    t: Tnum,
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
}

impl View {
    fn of(v: &ScalarValue, bits32: bool) -> View {
        if bits32 {
            View {
                t: v.var_off.subreg(),
                umin: u64::from(v.u32_min),
                umax: u64::from(v.u32_max),
                smin: i64::from(v.s32_min),
                smax: i64::from(v.s32_max),
            }
        } else {
            View {
                t: v.var_off,
                umin: v.umin,
                umax: v.umax,
                smin: v.smin,
                smax: v.smax,
            }
        }
    }
}

/// Whether `a cond b` is decided by what is known (`is_scalar_branch_taken`):
/// `Some(true)` when the jump is always taken, `Some(false)` when never,
/// `None` when both sides are possible. The kernel then explores only the
/// decided side.
pub fn branch_taken(a: &ScalarValue, b: &ScalarValue, cond: Cond, bits: Bits) -> Option<bool> {
    let bits32 = bits == Bits::B32;
    let (x, y) = (View::of(a, bits32), View::of(b, bits32));
    match cond {
        Cond::Eq | Cond::Ne => {
            let eq = cond == Cond::Eq;
            if x.t.is_const() && y.t.is_const() {
                return Some((x.t.value() == y.t.value()) == eq);
            }
            let disjoint = !x.t.overlaps(y.t)
                || x.umin > y.umax
                || x.umax < y.umin
                || x.smin > y.smax
                || x.smax < y.smin
                || (!bits32
                    && (a.u32_min > b.u32_max
                        || a.u32_max < b.u32_min
                        || a.s32_min > b.s32_max
                        || a.s32_max < b.s32_min));
            // Different for sure: `==` never holds, `!=` always does.
            disjoint.then_some(!eq)
        }
        Cond::Set => {
            let (x, y, bconst) = if b.is_const_at(bits32) {
                (x, y, true)
            } else {
                (y, x, a.is_const_at(bits32))
            };
            if !bconst {
                return None;
            }
            if x.t.value() & y.t.value() != 0 {
                Some(true)
            } else if (x.t.value() | x.t.mask()) & y.t.value() == 0 {
                Some(false)
            } else {
                None
            }
        }
        Cond::Gt => decide(x.umin > y.umax, x.umax <= y.umin),
        Cond::Sgt => decide(x.smin > y.smax, x.smax <= y.smin),
        Cond::Lt => decide(x.umax < y.umin, x.umin >= y.umax),
        Cond::Slt => decide(x.smax < y.smin, x.smin >= y.smax),
        Cond::Ge => decide(x.umin >= y.umax, x.umax < y.umin),
        Cond::Sge => decide(x.smin >= y.smax, x.smax < y.smin),
        Cond::Le => decide(x.umax <= y.umin, x.umin > y.umax),
        Cond::Sle => decide(x.smax <= y.smin, x.smin > y.smax),
    }
}

fn decide(always: bool, never: bool) -> Option<bool> {
    if always {
        Some(true)
    } else if never {
        Some(false)
    } else {
        None
    }
}

/// What each side of an undecided conditional jump knows about its two
/// operands, each synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refined {
    /// `(dst, src)` where the jump is taken.
    pub taken: (ScalarValue, ScalarValue),
    /// `(dst, src)` on the fall-through side.
    pub not_taken: (ScalarValue, ScalarValue),
}

/// Refines `dst cond src` on both sides (`reg_set_min_max`). For an
/// immediate pass [`ScalarValue::from_imm`] as `src`.
///
/// The kernel calls this only for undecided jumps (see [`branch_taken`]);
/// on a side that cannot happen the result may fail
/// [`ScalarValue::check_invariants`].
pub fn refine(dst: &ScalarValue, src: &ScalarValue, cond: Cond, bits: Bits) -> Refined {
    let side = |rel: Rel| {
        let mut regs = [*dst, *src];
        refine_op(&mut regs, 0, 1, rel, bits == Bits::B32);
        let [mut a, mut b] = regs;
        a.sync();
        b.sync();
        (a, b)
    };
    Refined {
        not_taken: side(reverse(cond)),
        taken: side(Rel::Cond(cond)),
    }
}

/// Refines `r cond r` for a register compared with itself, where the kernel
/// refines through two aliasing pointers. Returns `(taken, not_taken)`.
pub fn refine_same_register(v: &ScalarValue, cond: Cond, bits: Bits) -> (ScalarValue, ScalarValue) {
    let side = |rel: Rel| {
        let mut regs = [*v];
        refine_op(&mut regs, 0, 0, rel, bits == Bits::B32);
        let [mut a] = regs;
        // The kernel syncs the same register twice.
        a.sync();
        a.sync();
        a
    };
    let not_taken = side(reverse(cond));
    (side(Rel::Cond(cond)), not_taken)
}

/// `regs_refine_cond_op` on `regs[i]` and `regs[j]`, which may be the same
/// register; each statement reads the fields as the previous one left
/// them, as the kernel's pointer code does.
fn refine_op(regs: &mut [ScalarValue], i: usize, j: usize, rel: Rel, bits32: bool) {
    // Greater-than forms become less-than forms with the operands swapped.
    let (i, j, rel) = match rel {
        Rel::Cond(c @ (Cond::Ge | Cond::Gt | Cond::Sge | Cond::Sgt)) => (j, i, Rel::Cond(flip(c))),
        other => (i, j, other),
    };
    let Some(&r1) = regs.get(i) else { return };
    let Some(&r2) = regs.get(j) else { return };
    match rel {
        Rel::Cond(Cond::Eq) => refine_eq(regs, i, j, bits32),
        Rel::Cond(Cond::Ne) => {
            let Some((k, val)) = const_operand(&r1, &r2, i, j, bits32) else {
                return;
            };
            let Some(r) = regs.get_mut(k) else { return };
            // A constant at the edge of the range moves the edge.
            if bits32 {
                if r.u32_min == val as u32 {
                    r.u32_min = r.u32_min.wrapping_add(1);
                }
                if r.u32_max == val as u32 {
                    r.u32_max = r.u32_max.wrapping_sub(1);
                }
                if r.s32_min == val as u32 as i32 {
                    r.s32_min = r.s32_min.wrapping_add(1);
                }
                if r.s32_max == val as u32 as i32 {
                    r.s32_max = r.s32_max.wrapping_sub(1);
                }
            } else {
                if r.umin == val {
                    r.umin = r.umin.wrapping_add(1);
                }
                if r.umax == val {
                    r.umax = r.umax.wrapping_sub(1);
                }
                if r.smin == val as i64 {
                    r.smin = r.smin.wrapping_add(1);
                }
                if r.smax == val as i64 {
                    r.smax = r.smax.wrapping_sub(1);
                }
            }
        }
        Rel::Cond(Cond::Set) => {
            let Some((k, val)) = const_operand(&r1, &r2, i, j, bits32) else {
                return;
            };
            // Only a single tested bit tells which bit is set.
            if !val.is_power_of_two() {
                return;
            }
            let Some(r) = regs.get_mut(k) else { return };
            r.var_off = if bits32 {
                r.var_off
                    .with_subreg(r.var_off.subreg().or(Tnum::constant(val)))
            } else {
                r.var_off.or(Tnum::constant(val))
            };
        }
        Rel::NotSet => {
            let Some((k, val)) = const_operand(&r1, &r2, i, j, bits32) else {
                return;
            };
            let Some(r) = regs.get_mut(k) else { return };
            // Forget the ranges first so that a dead branch cannot leave
            // them contradicting the narrowed tnum.
            r.mark_unbounded();
            r.var_off = if bits32 {
                r.var_off
                    .with_subreg(r.var_off.subreg().and(Tnum::constant(!val)))
            } else {
                r.var_off.and(Tnum::constant(!val))
            };
        }
        Rel::Cond(Cond::Le) => {
            if bits32 {
                let m = min_at(regs, i, |r| r.u32_max, j, |r| r.u32_max);
                set(regs, i, |r| r.u32_max = m);
                let m = max_at(regs, i, |r| r.u32_min, j, |r| r.u32_min);
                set(regs, j, |r| r.u32_min = m);
            } else {
                let m = min_at(regs, i, |r| r.umax, j, |r| r.umax);
                set(regs, i, |r| r.umax = m);
                let m = max_at(regs, i, |r| r.umin, j, |r| r.umin);
                set(regs, j, |r| r.umin = m);
            }
        }
        Rel::Cond(Cond::Lt) => {
            if bits32 {
                let m = min_at(regs, i, |r| r.u32_max, j, |r| r.u32_max.wrapping_sub(1));
                set(regs, i, |r| r.u32_max = m);
                let m = max_at(regs, i, |r| r.u32_min.wrapping_add(1), j, |r| r.u32_min);
                set(regs, j, |r| r.u32_min = m);
            } else {
                let m = min_at(regs, i, |r| r.umax, j, |r| r.umax.wrapping_sub(1));
                set(regs, i, |r| r.umax = m);
                let m = max_at(regs, i, |r| r.umin.wrapping_add(1), j, |r| r.umin);
                set(regs, j, |r| r.umin = m);
            }
        }
        Rel::Cond(Cond::Sle) => {
            if bits32 {
                let m = min_at(regs, i, |r| r.s32_max, j, |r| r.s32_max);
                set(regs, i, |r| r.s32_max = m);
                let m = max_at(regs, i, |r| r.s32_min, j, |r| r.s32_min);
                set(regs, j, |r| r.s32_min = m);
            } else {
                let m = min_at(regs, i, |r| r.smax, j, |r| r.smax);
                set(regs, i, |r| r.smax = m);
                let m = max_at(regs, i, |r| r.smin, j, |r| r.smin);
                set(regs, j, |r| r.smin = m);
            }
        }
        Rel::Cond(Cond::Slt) => {
            if bits32 {
                let m = min_at(regs, i, |r| r.s32_max, j, |r| r.s32_max.wrapping_sub(1));
                set(regs, i, |r| r.s32_max = m);
                let m = max_at(regs, i, |r| r.s32_min.wrapping_add(1), j, |r| r.s32_min);
                set(regs, j, |r| r.s32_min = m);
            } else {
                let m = min_at(regs, i, |r| r.smax, j, |r| r.smax.wrapping_sub(1));
                set(regs, i, |r| r.smax = m);
                let m = max_at(regs, i, |r| r.smin.wrapping_add(1), j, |r| r.smin);
                set(regs, j, |r| r.smin = m);
            }
        }
        // Swapped away above.
        Rel::Cond(Cond::Ge | Cond::Gt | Cond::Sge | Cond::Sgt) => {}
    }
}

/// For `!=`, `&` and not-`&`: the index of the non-constant operand and
/// the constant, preferring the second operand as the constant (the
/// kernel swaps only when the second is not constant). `None` when neither
/// is constant.
fn const_operand(
    r1: &ScalarValue,
    r2: &ScalarValue,
    i: usize,
    j: usize,
    bits32: bool,
) -> Option<(usize, u64)> {
    if r2.is_const_at(bits32) {
        Some((i, r2.const_value_at(bits32)))
    } else if r1.is_const_at(bits32) {
        Some((j, r1.const_value_at(bits32)))
    } else {
        None
    }
}

fn field<T: Default>(regs: &[ScalarValue], k: usize, f: impl Fn(&ScalarValue) -> T) -> T {
    regs.get(k).map(f).unwrap_or_default()
}

fn min_at<T: Ord + Default>(
    regs: &[ScalarValue],
    i: usize,
    f: impl Fn(&ScalarValue) -> T,
    j: usize,
    g: impl Fn(&ScalarValue) -> T,
) -> T {
    field(regs, i, f).min(field(regs, j, g))
}

fn max_at<T: Ord + Default>(
    regs: &[ScalarValue],
    i: usize,
    f: impl Fn(&ScalarValue) -> T,
    j: usize,
    g: impl Fn(&ScalarValue) -> T,
) -> T {
    field(regs, i, f).max(field(regs, j, g))
}

fn set(regs: &mut [ScalarValue], k: usize, f: impl FnOnce(&mut ScalarValue)) {
    if let Some(r) = regs.get_mut(k) {
        f(r);
    }
}

/// `==`: both operands become the intersection, statement by statement.
fn refine_eq(regs: &mut [ScalarValue], i: usize, j: usize, bits32: bool) {
    if bits32 {
        let v = max_at(regs, i, |r| r.u32_min, j, |r| r.u32_min);
        set(regs, i, |r| r.u32_min = v);
        let v = min_at(regs, i, |r| r.u32_max, j, |r| r.u32_max);
        set(regs, i, |r| r.u32_max = v);
        let v = max_at(regs, i, |r| r.s32_min, j, |r| r.s32_min);
        set(regs, i, |r| r.s32_min = v);
        let v = min_at(regs, i, |r| r.s32_max, j, |r| r.s32_max);
        set(regs, i, |r| r.s32_max = v);
        let Some(&r1) = regs.get(i) else { return };
        set(regs, j, |r| {
            r.u32_min = r1.u32_min;
            r.u32_max = r1.u32_max;
            r.s32_min = r1.s32_min;
            r.s32_max = r1.s32_max;
        });
        let t1 = field(regs, i, |r| r.var_off);
        let t2 = field(regs, j, |r| r.var_off);
        let t = t1.subreg().intersect(t2.subreg());
        set(regs, i, |r| r.var_off = r.var_off.with_subreg(t));
        set(regs, j, |r| r.var_off = r.var_off.with_subreg(t));
    } else {
        let v = max_at(regs, i, |r| r.umin, j, |r| r.umin);
        set(regs, i, |r| r.umin = v);
        let v = min_at(regs, i, |r| r.umax, j, |r| r.umax);
        set(regs, i, |r| r.umax = v);
        let v = max_at(regs, i, |r| r.smin, j, |r| r.smin);
        set(regs, i, |r| r.smin = v);
        let v = min_at(regs, i, |r| r.smax, j, |r| r.smax);
        set(regs, i, |r| r.smax = v);
        let Some(&r1) = regs.get(i) else { return };
        set(regs, j, |r| {
            r.umin = r1.umin;
            r.umax = r1.umax;
            r.smin = r1.smin;
            r.smax = r1.smax;
        });
        let t = field(regs, i, |r| r.var_off).intersect(field(regs, j, |r| r.var_off));
        set(regs, i, |r| r.var_off = t);
        set(regs, j, |r| r.var_off = t);
    }
}
