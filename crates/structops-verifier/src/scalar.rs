//! The kernel's abstract value of a scalar register: a [`Tnum`] plus
//! unsigned and signed bounds of the whole 64 bits and of the low 32 bits,
//! kept consistent with each other by [`ScalarValue::sync`] (the kernel's
//! `reg_bounds_sync`).
//!
//! Each method names the `kernel/bpf/verifier.c` function whose semantics it
//! reproduces. Where Linux 6.18 (the oracle our differential test runs
//! against) differs from 6.12, we follow 6.18 and say so.

use std::fmt;

use thiserror::Error;

use crate::tnum::Tnum;

/// What the verifier knows about a scalar: its bits ([`Tnum`]) and eight
/// bounds. A concrete 64-bit value `x` is described when it matches
/// `var_off`, lies in `umin..=umax` and (as `i64`) in `smin..=smax`, and its
/// low 32 bits lie in `u32_min..=u32_max` and (as `i32`) in
/// `s32_min..=s32_max` (see [`ScalarValue::contains`]).
///
/// The fields are public like the kernel's `struct bpf_reg_state`, because
/// the transfer functions update them one at a time, and a value may be
/// transiently out of sync. After every transfer function of this crate it
/// is synced; on a branch that cannot be taken it may be empty (see
/// [`ScalarValue::check_invariants`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalarValue {
    /// Known and unknown bits (`var_off`).
    pub var_off: Tnum,
    /// Unsigned 64-bit minimum (`umin_value`).
    pub umin: u64,
    /// Unsigned 64-bit maximum (`umax_value`).
    pub umax: u64,
    /// Signed 64-bit minimum (`smin_value`).
    pub smin: i64,
    /// Signed 64-bit maximum (`smax_value`).
    pub smax: i64,
    /// Unsigned minimum of the low 32 bits (`u32_min_value`).
    pub u32_min: u32,
    /// Unsigned maximum of the low 32 bits (`u32_max_value`).
    pub u32_max: u32,
    /// Signed minimum of the low 32 bits (`s32_min_value`).
    pub s32_min: i32,
    /// Signed maximum of the low 32 bits (`s32_max_value`).
    pub s32_max: i32,
}

/// Why a [`ScalarValue`] describes no value the kernel would accept as
/// consistent (the kernel's `reg_bounds_sanity_check`, which prints
/// `REG INVARIANTS VIOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BoundsViolation {
    /// A minimum is above its maximum ("range bounds violation").
    #[error("range bounds violation {}", .value.invariants_text())]
    Range {
        /// The offending value.
        value: ScalarValue,
    },
    /// The tnum is a constant but the 64-bit bounds do not all equal it
    /// ("const tnum out of sync with range bounds").
    #[error("const tnum out of sync with range bounds {}", .value.invariants_text())]
    ConstTnum {
        /// The offending value.
        value: ScalarValue,
    },
    /// The low 32 bits of the tnum are a constant but the 32-bit bounds do
    /// not all equal it ("const subreg tnum out of sync with range bounds").
    #[error("const subreg tnum out of sync with range bounds {}", .value.invariants_text())]
    ConstSubregTnum {
        /// The offending value.
        value: ScalarValue,
    },
}

impl Default for ScalarValue {
    fn default() -> Self {
        ScalarValue::unknown()
    }
}

impl fmt::Debug for ScalarValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Scalar{{u64=[{:#x}, {:#x}] s64=[{}, {}] u32=[{:#x}, {:#x}] s32=[{}, {}] var_off={}}}",
            self.umin,
            self.umax,
            self.smin,
            self.smax,
            self.u32_min,
            self.u32_max,
            self.s32_min,
            self.s32_max,
            self.var_off
        )
    }
}

impl ScalarValue {
    /// A scalar about which nothing is known (`__mark_reg_unknown`).
    pub const fn unknown() -> ScalarValue {
        ScalarValue {
            var_off: Tnum::UNKNOWN,
            umin: 0,
            umax: u64::MAX,
            smin: i64::MIN,
            smax: i64::MAX,
            u32_min: 0,
            u32_max: u32::MAX,
            s32_min: i32::MIN,
            s32_max: i32::MAX,
        }
    }

    /// The scalar known to be `value` (`___mark_reg_known`).
    pub const fn constant(value: u64) -> ScalarValue {
        ScalarValue {
            var_off: Tnum::constant(value),
            umin: value,
            umax: value,
            smin: value as i64,
            smax: value as i64,
            u32_min: value as u32,
            u32_max: value as u32,
            s32_min: value as u32 as i32,
            s32_max: value as u32 as i32,
        }
    }

    /// An otherwise unknown scalar with these known bits, bounds synced
    /// from them.
    pub fn from_tnum(var_off: Tnum) -> ScalarValue {
        let mut v = ScalarValue {
            var_off,
            ..ScalarValue::unknown()
        };
        v.sync();
        v
    }

    /// The scalar known to lie in `min..=max` (unsigned), bounds synced.
    pub fn from_urange(min: u64, max: u64) -> ScalarValue {
        let mut v = ScalarValue {
            umin: min,
            umax: max,
            ..ScalarValue::unknown()
        };
        v.sync();
        v
    }

    /// Whether the concrete 64-bit `x` is one of the values described.
    pub const fn contains(&self, x: u64) -> bool {
        let lo = x as u32;
        self.var_off.contains_value(x)
            && self.umin <= x
            && x <= self.umax
            && self.smin <= x as i64
            && x as i64 <= self.smax
            && self.u32_min <= lo
            && lo <= self.u32_max
            && self.s32_min <= lo as i32
            && lo as i32 <= self.s32_max
    }

    /// Whether the 64-bit value is known (`tnum_is_const(var_off)`).
    pub const fn is_const(&self) -> bool {
        self.var_off.is_const()
    }

    /// Whether the low 32 bits are known (`tnum_subreg_is_const`).
    pub const fn subreg_is_const(&self) -> bool {
        self.var_off.subreg_is_const()
    }

    /// The kernel's `is_reg_const`: the tnum (of the whole register, or
    /// of its low half for 32-bit comparisons) is a constant.
    pub const fn is_const_at(&self, bits32: bool) -> bool {
        if bits32 {
            self.subreg_is_const()
        } else {
            self.is_const()
        }
    }

    /// The kernel's `reg_const_value`: the known value, or its low 32 bits.
    pub const fn const_value_at(&self, bits32: bool) -> u64 {
        if bits32 {
            self.var_off.value() as u32 as u64
        } else {
            self.var_off.value()
        }
    }

    /// All eight bounds unbounded, the tnum kept (`__mark_reg_unbounded`).
    pub fn mark_unbounded(&mut self) {
        self.mark64_unbounded();
        self.mark32_unbounded();
    }

    /// The 64-bit bounds unbounded (`__mark_reg64_unbounded`).
    pub fn mark64_unbounded(&mut self) {
        self.smin = i64::MIN;
        self.smax = i64::MAX;
        self.umin = 0;
        self.umax = u64::MAX;
    }

    /// The 32-bit bounds unbounded (`__mark_reg32_unbounded`).
    pub fn mark32_unbounded(&mut self) {
        self.s32_min = i32::MIN;
        self.s32_max = i32::MAX;
        self.u32_min = 0;
        self.u32_max = u32::MAX;
    }

    /// The low 32 bits become the constant `value`; the 64-bit bounds are
    /// left alone (`__mark_reg32_known`).
    pub fn mark32_known(&mut self, value: u32) {
        self.var_off = self.var_off.with_const_subreg(value);
        self.s32_min = value as i32;
        self.s32_max = value as i32;
        self.u32_min = value;
        self.u32_max = value;
    }

    /// Tightens the 32-bit bounds with what the tnum's low half implies
    /// (`__update_reg32_bounds`).
    pub fn update_bounds32(&mut self) {
        let t = self.var_off.subreg();
        let (v, m) = (t.value() as u32, t.mask() as u32);
        // The smallest signed value sets an unknown sign bit and clears the
        // other unknown bits; the largest does the opposite.
        self.s32_min = self.s32_min.max((v | (m & 0x8000_0000)) as i32);
        self.s32_max = self.s32_max.min((v | (m & 0x7fff_ffff)) as i32);
        self.u32_min = self.u32_min.max(v);
        self.u32_max = self.u32_max.min(v | m);
    }

    /// Tightens the 64-bit bounds with what the tnum implies
    /// (`__update_reg64_bounds`), including the Linux 6.18 refinement (a
    /// stable backport of "Improve bounds when tnum has a single possible
    /// value") that makes the register a constant when the unsigned range
    /// and the tnum share exactly one value.
    pub fn update_bounds64(&mut self) {
        let (v, m) = (self.var_off.value(), self.var_off.mask());
        self.smin = self.smin.max((v | (m & (1 << 63))) as i64);
        self.smax = self.smax.min((v | (m & !(1 << 63))) as i64);
        self.umin = self.umin.max(v);
        self.umax = self.umax.min(v | m);

        let next = self.var_off.step(self.umin);
        let umin_in_tnum = self.var_off.contains_value(self.umin);
        let tmax = v | m;
        if umin_in_tnum && next > self.umax {
            // Only umin is in both.
            *self = ScalarValue::constant(self.umin);
        } else if !umin_in_tnum && next == tmax {
            // Only the tnum's largest value can be in both.
            *self = ScalarValue::constant(tmax);
        } else if !umin_in_tnum && next <= self.umax && self.var_off.step(next) > self.umax {
            // Only the first member above umin is in both.
            *self = ScalarValue::constant(next);
        }
    }

    /// Both halves of [`ScalarValue::update_bounds32`] and
    /// [`ScalarValue::update_bounds64`] (`__update_reg_bounds`).
    pub fn update_bounds(&mut self) {
        self.update_bounds32();
        self.update_bounds64();
    }

    /// Derives 32-bit bounds from the 64-bit ones and signed from unsigned
    /// in 32 bits (`__reg32_deduce_bounds`).
    pub fn deduce_bounds32(&mut self) {
        // If the upper halves of the 64-bit range are equal, its low halves
        // form a range as well.
        if self.umin >> 32 == self.umax >> 32 {
            self.u32_min = self.u32_min.max(self.umin as u32);
            self.u32_max = self.u32_max.min(self.umax as u32);
            if (self.umin as i32) <= (self.umax as i32) {
                self.s32_min = self.s32_min.max(self.umin as i32);
                self.s32_max = self.s32_max.min(self.umax as i32);
            }
        }
        if self.smin >> 32 == self.smax >> 32 {
            if (self.smin as u32) <= (self.smax as u32) {
                self.u32_min = self.u32_min.max(self.smin as u32);
                self.u32_max = self.u32_max.min(self.smax as u32);
            }
            if (self.smin as i32) <= (self.smax as i32) {
                self.s32_min = self.s32_min.max(self.smin as i32);
                self.s32_max = self.s32_max.min(self.smax as i32);
            }
        }
        // Upper halves that are two consecutive numbers while the low
        // halves go from negative to non-negative: the low halves still
        // form a signed range.
        if ((self.umin >> 32) as u32).wrapping_add(1) == (self.umax >> 32) as u32
            && (self.umin as i32) < 0
            && (self.umax as i32) >= 0
        {
            self.s32_min = self.s32_min.max(self.umin as i32);
            self.s32_max = self.s32_max.min(self.umax as i32);
        }
        if ((self.smin >> 32) as u32).wrapping_add(1) == (self.smax >> 32) as u32
            && (self.smin as i32) < 0
            && (self.smax as i32) >= 0
        {
            self.s32_min = self.s32_min.max(self.smin as i32);
            self.s32_max = self.s32_max.min(self.smax as i32);
        }
        // An unsigned range that does not cross the sign bit is a signed
        // range too.
        if (self.u32_min as i32) <= (self.u32_max as i32) {
            self.s32_min = self.s32_min.max(self.u32_min as i32);
            self.s32_max = self.s32_max.min(self.u32_max as i32);
        }
        if (self.s32_min as u32) <= (self.s32_max as u32) {
            // A signed range that does not cross zero is an unsigned range.
            self.u32_min = self.u32_min.max(self.s32_min as u32);
            self.u32_max = self.u32_max.min(self.s32_max as u32);
        } else if self.u32_max < self.s32_min as u32 {
            // The signed range wraps; the unsigned one only meets its
            // non-negative part.
            self.s32_min = self.u32_min as i32;
            self.u32_max = self.u32_max.min(self.s32_max as u32);
        } else if (self.s32_max as u32) < self.u32_min {
            // ... or only its negative part.
            self.s32_max = self.u32_max as i32;
            self.u32_min = self.u32_min.max(self.s32_min as u32);
        }
    }

    /// Signed from unsigned and back in 64 bits (`__reg64_deduce_bounds`).
    pub fn deduce_bounds64(&mut self) {
        if (self.umin as i64) <= (self.umax as i64) {
            self.smin = self.smin.max(self.umin as i64);
            self.smax = self.smax.min(self.umax as i64);
        }
        if (self.smin as u64) <= (self.smax as u64) {
            self.umin = self.umin.max(self.smin as u64);
            self.umax = self.umax.min(self.smax as u64);
        } else if self.umax < self.smin as u64 {
            // The signed range wraps around zero and the unsigned range
            // only meets its non-negative part.
            self.smin = self.umin as i64;
            self.umax = self.umax.min(self.smax as u64);
        } else if (self.smax as u64) < self.umin {
            // ... or only its negative part.
            self.smax = self.umax as i64;
            self.umin = self.umin.max(self.smin as u64);
        }
    }

    /// Tightens 64-bit bounds with the 32-bit ones (`__reg_deduce_mixed_bounds`).
    pub fn deduce_mixed_bounds(&mut self) {
        const HI: u64 = !0xffff_ffff;
        // Replace the low halves of the 64-bit bounds by the 32-bit bounds.
        let new_umin = (self.umin & HI) | u64::from(self.u32_min);
        let new_umax = (self.umax & HI) | u64::from(self.u32_max);
        self.umin = self.umin.max(new_umin);
        self.umax = self.umax.min(new_umax);
        let new_smin = ((self.smin as u64 & HI) | u64::from(self.u32_min)) as i64;
        let new_smax = ((self.smax as u64 & HI) | u64::from(self.u32_max)) as i64;
        self.smin = self.smin.max(new_smin);
        self.smax = self.smax.min(new_smax);

        if (self.s32_min as u32) <= (self.s32_max as u32) {
            let lo = u64::from(self.s32_min as u32);
            let hi = u64::from(self.s32_max as u32);
            let new_umin = (self.umin & HI) | lo;
            let new_umax = (self.umax & HI) | hi;
            self.umin = self.umin.max(new_umin);
            self.umax = self.umax.min(new_umax);
            let new_smin = ((self.smin as u64 & HI) | lo) as i64;
            let new_smax = ((self.smax as u64 & HI) | hi) as i64;
            self.smin = self.smin.max(new_smin);
            self.smax = self.smax.min(new_smax);
        }

        // After a sign-extending load the 64-bit range may span
        // [S32_MIN, S32_MAX] sign-extended; a non-negative low half then
        // rules out the all-ones upper half.
        if self.s32_min >= 0 && self.smin >= i64::from(i32::MIN) && self.smax <= i64::from(i32::MAX)
        {
            self.smin = i64::from(self.s32_min);
            self.smax = i64::from(self.s32_max);
            self.umin = self.s32_min as u64;
            self.umax = self.s32_max as u64;
            self.var_off = self
                .var_off
                .intersect(Tnum::range(self.smin as u64, self.smax as u64));
        }
    }

    /// All three deductions (`__reg_deduce_bounds`).
    pub fn deduce_bounds(&mut self) {
        self.deduce_bounds32();
        self.deduce_bounds64();
        self.deduce_mixed_bounds();
    }

    /// Learns known bits from the unsigned bounds (`__reg_bound_offset`).
    pub fn bound_offset(&mut self) {
        let var64 = self.var_off.intersect(Tnum::range(self.umin, self.umax));
        let var32 = var64.subreg().intersect(Tnum::range(
            u64::from(self.u32_min),
            u64::from(self.u32_max),
        ));
        self.var_off = var64.clear_subreg().or(var32);
    }

    /// Brings tnum and bounds in agreement (`reg_bounds_sync`): bounds
    /// from bits, three rounds of deduction between the bounds, bits from
    /// bounds, and bounds from bits again.
    pub fn sync(&mut self) {
        self.update_bounds();
        self.deduce_bounds();
        self.deduce_bounds();
        self.deduce_bounds();
        self.bound_offset();
        self.update_bounds();
    }

    /// Every bound in hex and the tnum, as the kernel's
    /// `REG INVARIANTS VIOLATION` message prints them.
    fn invariants_text(&self) -> String {
        format!(
            "u64=[{:#x}, {:#x}] s64=[{:#x}, {:#x}] u32=[{:#x}, {:#x}] s32=[{:#x}, {:#x}] var_off=({:#x}, {:#x})",
            self.umin,
            self.umax,
            self.smin,
            self.smax,
            self.u32_min,
            self.u32_max,
            self.s32_min,
            self.s32_max,
            self.var_off.value(),
            self.var_off.mask()
        )
    }

    /// The kernel's `reg_bounds_sanity_check`: every minimum at most its
    /// maximum, and constant tnums matched by their bounds.
    ///
    /// # Errors
    ///
    /// The [`BoundsViolation`] found, which means the value describes no
    /// concrete value (a branch that cannot be taken).
    pub fn check_invariants(&self) -> Result<(), BoundsViolation> {
        let value = *self;
        if self.umin > self.umax
            || self.smin > self.smax
            || self.u32_min > self.u32_max
            || self.s32_min > self.s32_max
        {
            return Err(BoundsViolation::Range { value });
        }
        if self.var_off.is_const() {
            let u = self.var_off.value();
            if self.umin != u || self.umax != u || self.smin != u as i64 || self.smax != u as i64 {
                return Err(BoundsViolation::ConstTnum { value });
            }
        }
        if self.var_off.subreg_is_const() {
            let u = self.var_off.value() as u32;
            if self.u32_min != u
                || self.u32_max != u
                || self.s32_min != u as i32
                || self.s32_max != u as i32
            {
                return Err(BoundsViolation::ConstSubregTnum { value });
            }
        }
        Ok(())
    }

    /// Copies the 32-bit bounds into the 64-bit ones after a zero
    /// extension (`__reg_assign_32_into_64`).
    pub fn assign_32_into_64(&mut self) {
        self.umin = u64::from(self.u32_min);
        self.umax = u64::from(self.u32_max);
        if self.s32_min >= 0 && self.s32_max >= 0 {
            self.smin = i64::from(self.s32_min);
            self.smax = i64::from(self.s32_max);
        } else {
            self.smin = 0;
            self.smax = i64::from(u32::MAX);
        }
    }

    /// The zero extension every 32-bit ALU operation performs
    /// (`zext_32_to_64`). Does not sync.
    pub fn zext_32_to_64(&mut self) {
        self.var_off = self.var_off.subreg();
        self.assign_32_into_64();
    }

    /// Truncates to the low `size` bytes (1, 2 or 4), zero-extended
    /// (`coerce_reg_to_size`), and syncs.
    pub fn coerce_to_size(&mut self, size: u32) {
        self.var_off = self.var_off.cast(size);
        let keep = if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        if self.umin & !keep == self.umax & !keep {
            self.umin &= keep;
            self.umax &= keep;
        } else {
            self.umin = 0;
            self.umax = keep;
        }
        self.smin = self.umin as i64;
        self.smax = self.umax as i64;
        // Narrower than 32 bits truncates the 32-bit view as well; let the
        // 64-bit bounds fill it in.
        if size < 4 {
            self.mark32_unbounded();
        }
        self.sync();
    }

    /// Sign-extends the low `size` bytes (1, 2 or 4) to 64 bits
    /// (`coerce_reg_to_size_sx`). Does not sync.
    pub fn coerce_to_size_sx(&mut self, size: u32) {
        let sext = |x: u64| -> i64 {
            match size {
                1 => i64::from(x as i8),
                2 => i64::from(x as i16),
                _ => i64::from(x as i32),
            }
        };
        if self.var_off.is_const() {
            *self = ScalarValue::constant(sext(self.var_off.value()) as u64);
            return;
        }
        let bits = size * 8;
        let top_max = (self.smax as u64) >> bits;
        let top_min = (self.smin as u64) >> bits;
        if top_max == top_min {
            let a = sext(self.smax as u64);
            let b = sext(self.smin as u64);
            let (lo, hi) = (a.min(b), a.max(b));
            if (hi >= 0) == (lo >= 0) {
                self.smin = lo;
                self.smax = hi;
                self.s32_min = lo as i32;
                self.s32_max = hi as i32;
                self.umin = lo as u64;
                self.umax = hi as u64;
                self.u32_min = lo as u32;
                self.u32_max = hi as u32;
                self.var_off = Tnum::range(lo as u64, hi as u64);
                return;
            }
        }
        // `set_sext64_default_val`.
        let (lo, hi) = match size {
            1 => (i64::from(i8::MIN), i64::from(i8::MAX)),
            2 => (i64::from(i16::MIN), i64::from(i16::MAX)),
            _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
        };
        self.smin = lo;
        self.s32_min = lo as i32;
        self.smax = hi;
        self.s32_max = hi as i32;
        self.umin = 0;
        self.u32_min = 0;
        self.umax = u64::MAX;
        self.u32_max = u32::MAX;
        self.var_off = Tnum::UNKNOWN;
    }

    /// Sign-extends the low `size` bytes (1 or 2) into the low 32 bits
    /// (`coerce_subreg_to_size_sx`). Does not sync or zero-extend.
    pub fn coerce_subreg_to_size_sx(&mut self, size: u32) {
        let sext = |x: u32| -> i32 {
            match size {
                1 => i32::from(x as i8),
                _ => i32::from(x as i16),
            }
        };
        if self.var_off.is_const() {
            // The kernel sign-extends into the whole tnum but only the
            // 32-bit bounds (the caller zero-extends right after).
            let v = sext(self.var_off.value() as u32);
            self.var_off = Tnum::constant(v as i64 as u64);
            self.s32_min = v;
            self.s32_max = v;
            self.u32_min = v as u32;
            self.u32_max = v as u32;
            return;
        }
        let bits = size * 8;
        let top_max = (self.s32_max as u32) >> bits;
        let top_min = (self.s32_min as u32) >> bits;
        if top_max == top_min {
            let a = sext(self.s32_max as u32);
            let b = sext(self.s32_min as u32);
            let (lo, hi) = (a.min(b), a.max(b));
            if (hi >= 0) == (lo >= 0) {
                self.s32_min = lo;
                self.s32_max = hi;
                self.u32_min = lo as u32;
                self.u32_max = hi as u32;
                self.var_off = Tnum::range(lo as i64 as u64, hi as i64 as u64).subreg();
                return;
            }
        }
        // `set_sext32_default_val`.
        let (lo, hi) = match size {
            1 => (i32::from(i8::MIN), i32::from(i8::MAX)),
            _ => (i32::from(i16::MIN), i32::from(i16::MAX)),
        };
        self.s32_min = lo;
        self.s32_max = hi;
        self.u32_min = 0;
        self.u32_max = u32::MAX;
        self.var_off = Tnum::UNKNOWN.subreg();
    }
}
