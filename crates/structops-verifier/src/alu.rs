//! Transfer functions of the ALU instructions on scalars: what the kernel's
//! verifier knows about `dst` after `dst op= src`, given what it knew about
//! both before (`adjust_scalar_min_max_vals` and the scalar cases of
//! `check_alu_op`).
//!
//! Every function returns a synced value. Operations the kernel does not
//! track (division, modulo, shifts by an unknown or too large amount) give
//! [`ScalarValue::unknown`], as in the kernel.
//!
//! Linux 6.18 differs from 6.12 here, and we follow 6.18: `neg` is tracked
//! as `0 - dst`, byte swaps move the tnum's bytes, multiplication bounds
//! come from overflow-checked products of both signed and unsigned bounds,
//! and `add`/`sub` keep unsigned bounds when every or no sum wraps.

use structops_isa::{AluOp, Bits, Endian, Width};

use crate::scalar::ScalarValue;

impl ScalarValue {
    /// The value of an immediate operand: `imm` sign-extended to 64 bits,
    /// as the kernel builds its fake source register for `BPF_K`.
    pub const fn from_imm(imm: i32) -> ScalarValue {
        ScalarValue::constant(imm as i64 as u64)
    }
}

/// Whether the kernel computes bounds for `op` with this source at all
/// (`is_safe_to_compute_dst_reg_range`): shifts need a constant amount
/// below the width, division and modulo are never tracked.
fn is_trackable(op: AluOp, src: &ScalarValue, bits: Bits) -> bool {
    let (src_const, width) = match bits {
        Bits::B32 => (
            src.var_off.subreg_is_const()
                && src.s32_min == src.s32_max
                && src.u32_min == src.u32_max,
            32,
        ),
        Bits::B64 => (
            src.var_off.is_const() && src.smin == src.smax && src.umin == src.umax,
            64,
        ),
    };
    match op {
        AluOp::Add | AluOp::Sub | AluOp::And | AluOp::Xor | AluOp::Or | AluOp::Mul => true,
        // The kernel compares the 64-bit maximum even for 32-bit shifts.
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => src_const && src.umax < width,
        AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod | AluOp::Mov => false,
    }
}

/// `dst op= src` on scalars, for every [`AluOp`] including `Mov`
/// (`adjust_scalar_min_max_vals`, and `check_alu_op` for moves). For a
/// `BPF_K` instruction pass [`ScalarValue::from_imm`] as `src`.
///
/// The kernel first splits the state for `and`/`or` with a constant when
/// `dst` is `[-1, 0]`; see [`split_for_bitwise`]. This function computes
/// one side.
pub fn alu(dst: &ScalarValue, op: AluOp, src: &ScalarValue, bits: Bits) -> ScalarValue {
    if op == AluOp::Mov {
        return mov(src, bits);
    }
    if !is_trackable(op, src, bits) {
        return ScalarValue::unknown();
    }
    let alu32 = bits == Bits::B32;
    let mut d = *dst;
    match op {
        AluOp::Add => {
            add32(&mut d, src);
            add64(&mut d, src);
            d.var_off = d.var_off.add(src.var_off);
        }
        AluOp::Sub => {
            sub32(&mut d, src);
            sub64(&mut d, src);
            d.var_off = d.var_off.sub(src.var_off);
        }
        AluOp::Mul => {
            d.var_off = d.var_off.mul(src.var_off);
            mul32(&mut d, src);
            mul64(&mut d, src);
        }
        AluOp::And => {
            d.var_off = d.var_off.and(src.var_off);
            and32(&mut d, src);
            and64(&mut d, src);
        }
        AluOp::Or => {
            d.var_off = d.var_off.or(src.var_off);
            or32(&mut d, src);
            or64(&mut d, src);
        }
        AluOp::Xor => {
            d.var_off = d.var_off.xor(src.var_off);
            xor32(&mut d, src);
            xor64(&mut d, src);
        }
        AluOp::Lsh if alu32 => lsh32(&mut d, src),
        AluOp::Lsh => lsh64(&mut d, src),
        AluOp::Rsh if alu32 => rsh32(&mut d, src),
        AluOp::Rsh => rsh64(&mut d, src),
        AluOp::Arsh if alu32 => arsh32(&mut d, src),
        AluOp::Arsh => arsh64(&mut d, src),
        AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod | AluOp::Mov => {}
    }
    if alu32 {
        d.zext_32_to_64();
    }
    d.sync();
    d
}

/// `dst = src` (64-bit: a copy) or `wdst = wsrc` (the low half,
/// zero-extended), as `check_alu_op` does it for scalars.
pub fn mov(src: &ScalarValue, bits: Bits) -> ScalarValue {
    let mut d = *src;
    if bits == Bits::B32 {
        d.zext_32_to_64();
        d.sync();
    }
    d
}

/// `dst = (s8/s16/s32) src` (64-bit) or `wdst = (s8/s16) wsrc` (32-bit,
/// zero-extended): `coerce_reg_to_size_sx` / `coerce_subreg_to_size_sx`.
/// A `from` of [`Width::DW`], which no instruction encodes, is a plain move.
pub fn movsx(src: &ScalarValue, from: Width, bits: Bits) -> ScalarValue {
    let size = from.bytes() as u32;
    if size >= 8 {
        return mov(src, bits);
    }
    let mut d = *src;
    match bits {
        Bits::B64 => d.coerce_to_size_sx(size),
        Bits::B32 => {
            d.coerce_subreg_to_size_sx(size.min(2));
            d.zext_32_to_64();
            d.sync();
        }
    }
    d
}

/// `dst = -dst`, tracked since Linux 6.14 as `0 - dst` with the `sub`
/// transfer function and `tnum_neg`.
pub fn neg(dst: &ScalarValue, bits: Bits) -> ScalarValue {
    let mut d = ScalarValue::constant(0);
    sub32(&mut d, dst);
    sub64(&mut d, dst);
    d.var_off = dst.var_off.neg();
    if bits == Bits::B32 {
        d.zext_32_to_64();
    }
    d.sync();
    d
}

/// `dst = le16/le32/le64 dst` or `be..` (`ALU | END`) on a little-endian
/// host, tracked since Linux 6.19 (and in 6.18 stable): `be` swaps the
/// tnum's bytes and resets the bounds, `le` only truncates; 16 and 32
/// bits then zero-extend (`scalar_byte_swap`).
pub fn end(dst: &ScalarValue, order: Endian, width: Width) -> ScalarValue {
    byte_swap(dst, order == Endian::Be, width)
}

/// `dst = bswap16/32/64 dst` (`ALU64 | END`): an unconditional swap, like
/// [`end`] with [`Endian::Be`] on a little-endian host.
pub fn bswap(dst: &ScalarValue, width: Width) -> ScalarValue {
    byte_swap(dst, true, width)
}

fn byte_swap(dst: &ScalarValue, swap: bool, width: Width) -> ScalarValue {
    let mut d = *dst;
    if swap {
        d.var_off = match width {
            Width::H => d.var_off.bswap16(),
            Width::W => d.var_off.bswap32(),
            Width::B | Width::DW => d.var_off.bswap64(),
        };
        d.mark_unbounded();
    }
    match width {
        Width::H => d.coerce_to_size(2),
        Width::W => d.coerce_to_size(4),
        Width::B | Width::DW => {}
    }
    d.sync();
    d
}

/// The kernel's `maybe_fork_scalars`: before `and`/`or` with a constant
/// source, a `dst` known to be `-1` or `0` (in 64 bits, or else in its low
/// 32) is split in two. Returns `(now, queued)`: the current path continues
/// with `now` (the `-1` case) through [`alu`], and the kernel queues a
/// second path that re-executes the same instruction with `queued` (the
/// `0` case). In the 32-bit case only the low halves change.
///
/// `None` when the kernel does not split.
pub fn split_for_bitwise(
    dst: &ScalarValue,
    op: AluOp,
    src: &ScalarValue,
) -> Option<(ScalarValue, ScalarValue)> {
    if !matches!(op, AluOp::And | AluOp::Or) || !src.var_off.is_const() {
        return None;
    }
    if dst.smin == -1 && dst.smax == 0 {
        Some((ScalarValue::constant(u64::MAX), ScalarValue::constant(0)))
    } else if dst.s32_min == -1 && dst.s32_max == 0 {
        let (mut now, mut queued) = (*dst, *dst);
        now.mark32_known(u32::MAX);
        queued.mark32_known(0);
        Some((now, queued))
    } else {
        None
    }
}

fn add32(d: &mut ScalarValue, s: &ScalarValue) {
    match (
        d.s32_min.checked_add(s.s32_min),
        d.s32_max.checked_add(s.s32_max),
    ) {
        (Some(lo), Some(hi)) => (d.s32_min, d.s32_max) = (lo, hi),
        _ => (d.s32_min, d.s32_max) = (i32::MIN, i32::MAX),
    }
    // If all sums wrap or none does, the wrapped bounds stay ordered.
    let (lo, lo_wrapped) = d.u32_min.overflowing_add(s.u32_min);
    let (hi, hi_wrapped) = d.u32_max.overflowing_add(s.u32_max);
    (d.u32_min, d.u32_max) = if !lo_wrapped && hi_wrapped {
        (0, u32::MAX)
    } else {
        (lo, hi)
    };
}

fn add64(d: &mut ScalarValue, s: &ScalarValue) {
    match (d.smin.checked_add(s.smin), d.smax.checked_add(s.smax)) {
        (Some(lo), Some(hi)) => (d.smin, d.smax) = (lo, hi),
        _ => (d.smin, d.smax) = (i64::MIN, i64::MAX),
    }
    let (lo, lo_wrapped) = d.umin.overflowing_add(s.umin);
    let (hi, hi_wrapped) = d.umax.overflowing_add(s.umax);
    (d.umin, d.umax) = if !lo_wrapped && hi_wrapped {
        (0, u64::MAX)
    } else {
        (lo, hi)
    };
}

fn sub32(d: &mut ScalarValue, s: &ScalarValue) {
    match (
        d.s32_min.checked_sub(s.s32_max),
        d.s32_max.checked_sub(s.s32_min),
    ) {
        (Some(lo), Some(hi)) => (d.s32_min, d.s32_max) = (lo, hi),
        _ => (d.s32_min, d.s32_max) = (i32::MIN, i32::MAX),
    }
    let (lo, lo_wrapped) = d.u32_min.overflowing_sub(s.u32_max);
    let (hi, hi_wrapped) = d.u32_max.overflowing_sub(s.u32_min);
    (d.u32_min, d.u32_max) = if lo_wrapped && !hi_wrapped {
        (0, u32::MAX)
    } else {
        (lo, hi)
    };
}

fn sub64(d: &mut ScalarValue, s: &ScalarValue) {
    match (d.smin.checked_sub(s.smax), d.smax.checked_sub(s.smin)) {
        (Some(lo), Some(hi)) => (d.smin, d.smax) = (lo, hi),
        _ => (d.smin, d.smax) = (i64::MIN, i64::MAX),
    }
    let (lo, lo_wrapped) = d.umin.overflowing_sub(s.umax);
    let (hi, hi_wrapped) = d.umax.overflowing_sub(s.umin);
    (d.umin, d.umax) = if lo_wrapped && !hi_wrapped {
        (0, u64::MAX)
    } else {
        (lo, hi)
    };
}

fn mul32(d: &mut ScalarValue, s: &ScalarValue) {
    match (
        d.u32_max.checked_mul(s.u32_max),
        d.u32_min.checked_mul(s.u32_min),
    ) {
        (Some(hi), Some(lo)) => (d.u32_min, d.u32_max) = (lo, hi),
        _ => (d.u32_min, d.u32_max) = (0, u32::MAX),
    }
    let products = [
        d.s32_min.checked_mul(s.s32_min),
        d.s32_min.checked_mul(s.s32_max),
        d.s32_max.checked_mul(s.s32_min),
        d.s32_max.checked_mul(s.s32_max),
    ];
    (d.s32_min, d.s32_max) = match products {
        [Some(a), Some(b), Some(c), Some(e)] => (a.min(b).min(c).min(e), a.max(b).max(c).max(e)),
        _ => (i32::MIN, i32::MAX),
    };
}

fn mul64(d: &mut ScalarValue, s: &ScalarValue) {
    match (d.umax.checked_mul(s.umax), d.umin.checked_mul(s.umin)) {
        (Some(hi), Some(lo)) => (d.umin, d.umax) = (lo, hi),
        _ => (d.umin, d.umax) = (0, u64::MAX),
    }
    let products = [
        d.smin.checked_mul(s.smin),
        d.smin.checked_mul(s.smax),
        d.smax.checked_mul(s.smin),
        d.smax.checked_mul(s.smax),
    ];
    (d.smin, d.smax) = match products {
        [Some(a), Some(b), Some(c), Some(e)] => (a.min(b).min(c).min(e), a.max(b).max(c).max(e)),
        _ => (i64::MIN, i64::MAX),
    };
}

/// Signed 32-bit bounds from unsigned ones when they do not cross the
/// sign bit, else unbounded.
fn s32_from_u32(d: &mut ScalarValue) {
    if (d.u32_min as i32) <= (d.u32_max as i32) {
        d.s32_min = d.u32_min as i32;
        d.s32_max = d.u32_max as i32;
    } else {
        d.s32_min = i32::MIN;
        d.s32_max = i32::MAX;
    }
}

/// Signed 64-bit bounds from unsigned ones when they do not cross the
/// sign bit, else unbounded.
fn s64_from_u64(d: &mut ScalarValue) {
    if (d.umin as i64) <= (d.umax as i64) {
        d.smin = d.umin as i64;
        d.smax = d.umax as i64;
    } else {
        d.smin = i64::MIN;
        d.smax = i64::MAX;
    }
}

/// `__mark_reg_known`: the whole value becomes `value`.
fn set_known(d: &mut ScalarValue, value: u64) {
    *d = ScalarValue::constant(value);
}

// The bitwise operations run after `d.var_off` already holds the result's
// bits.

fn and32(d: &mut ScalarValue, s: &ScalarValue) {
    let t = d.var_off.subreg();
    if s.var_off.subreg_is_const() && t.is_const() {
        d.mark32_known(t.value() as u32);
        return;
    }
    // The minimum comes from the known ones, the maximum cannot exceed
    // either operand's.
    d.u32_min = t.value() as u32;
    d.u32_max = d.u32_max.min(s.u32_max);
    s32_from_u32(d);
}

fn and64(d: &mut ScalarValue, s: &ScalarValue) {
    if s.var_off.is_const() && d.var_off.is_const() {
        set_known(d, d.var_off.value());
        return;
    }
    d.umin = d.var_off.value();
    d.umax = d.umax.min(s.umax);
    s64_from_u64(d);
    d.update_bounds();
}

fn or32(d: &mut ScalarValue, s: &ScalarValue) {
    let t = d.var_off.subreg();
    if s.var_off.subreg_is_const() && t.is_const() {
        d.mark32_known(t.value() as u32);
        return;
    }
    d.u32_min = d.u32_min.max(s.u32_min);
    d.u32_max = (t.value() | t.mask()) as u32;
    s32_from_u32(d);
}

fn or64(d: &mut ScalarValue, s: &ScalarValue) {
    if s.var_off.is_const() && d.var_off.is_const() {
        set_known(d, d.var_off.value());
        return;
    }
    d.umin = d.umin.max(s.umin);
    d.umax = d.var_off.value() | d.var_off.mask();
    s64_from_u64(d);
    d.update_bounds();
}

fn xor32(d: &mut ScalarValue, s: &ScalarValue) {
    let t = d.var_off.subreg();
    if s.var_off.subreg_is_const() && t.is_const() {
        d.mark32_known(t.value() as u32);
        return;
    }
    d.u32_min = t.value() as u32;
    d.u32_max = (t.value() | t.mask()) as u32;
    s32_from_u32(d);
}

fn xor64(d: &mut ScalarValue, s: &ScalarValue) {
    if s.var_off.is_const() && d.var_off.is_const() {
        set_known(d, d.var_off.value());
        return;
    }
    d.umin = d.var_off.value();
    d.umax = d.var_off.value() | d.var_off.mask();
    s64_from_u64(d);
    d.update_bounds();
}

/// The 32-bit bounds of a left shift by `umin..=umax` (`__scalar32_min_max_lsh`).
fn lsh32_bounds(d: &mut ScalarValue, umin: u64, umax: u64) {
    d.s32_min = i32::MIN;
    d.s32_max = i32::MAX;
    // A set top bit could be shifted out.
    if umax > 31 || u64::from(d.u32_max) > 1u64 << (31 - umax) {
        d.u32_min = 0;
        d.u32_max = u32::MAX;
    } else {
        d.u32_min <<= umin;
        d.u32_max <<= umax;
    }
}

fn lsh32(d: &mut ScalarValue, s: &ScalarValue) {
    let (umin, umax) = (u64::from(s.u32_min), u64::from(s.u32_max));
    let sub = d.var_off.subreg();
    lsh32_bounds(d, umin, umax);
    d.var_off = sub.lshift(umin as u32).subreg();
    d.mark64_unbounded();
    d.update_bounds32();
}

fn lsh64(d: &mut ScalarValue, s: &ScalarValue) {
    let (umin, umax) = (s.umin, s.umax);
    // `__scalar64_min_max_lsh`, which reads the 32-bit bounds before they
    // are shifted: `<< 32` moves the signed 32-bit range up intact (the
    // compiler's sign-extension idiom).
    if umin == 32 && umax == 32 {
        d.smax = i64::from(d.s32_max) << 32;
        d.smin = i64::from(d.s32_min) << 32;
    } else {
        d.smax = i64::MAX;
        d.smin = i64::MIN;
    }
    if d.umax > 1u64 << (63 - umax.min(63)) {
        d.umin = 0;
        d.umax = u64::MAX;
    } else {
        d.umin <<= umin;
        d.umax <<= umax;
    }
    lsh32_bounds(d, umin, umax);
    d.var_off = d.var_off.lshift(umin as u32);
    d.update_bounds();
}

fn rsh32(d: &mut ScalarValue, s: &ScalarValue) {
    let (umin, umax) = (s.u32_min, s.u32_max);
    let sub = d.var_off.subreg();
    d.s32_min = i32::MIN;
    d.s32_max = i32::MAX;
    d.var_off = sub.rshift(umin);
    d.u32_min = d.u32_min.checked_shr(umax).unwrap_or(0);
    d.u32_max = d.u32_max.checked_shr(umin).unwrap_or(0);
    d.mark64_unbounded();
    d.update_bounds32();
}

fn rsh64(d: &mut ScalarValue, s: &ScalarValue) {
    let (umin, umax) = (s.umin as u32, s.umax as u32);
    d.smin = i64::MIN;
    d.smax = i64::MAX;
    d.var_off = d.var_off.rshift(umin);
    d.umin = d.umin.checked_shr(umax).unwrap_or(0);
    d.umax = d.umax.checked_shr(umin).unwrap_or(0);
    d.mark32_unbounded();
    d.update_bounds();
}

fn arsh32(d: &mut ScalarValue, s: &ScalarValue) {
    // The amount is a known constant below 32 here.
    let amount = s.u32_min.min(31);
    d.s32_min >>= amount;
    d.s32_max >>= amount;
    d.var_off = d.var_off.subreg().arshift32(amount);
    d.u32_min = 0;
    d.u32_max = u32::MAX;
    d.mark64_unbounded();
    d.update_bounds32();
}

fn arsh64(d: &mut ScalarValue, s: &ScalarValue) {
    let amount = s.umin.min(63) as u32;
    d.smin >>= amount;
    d.smax >>= amount;
    d.var_off = d.var_off.arshift(amount);
    d.umin = 0;
    d.umax = u64::MAX;
    d.mark32_unbounded();
    d.update_bounds();
}
