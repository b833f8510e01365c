//! The arithmetic whose kernel semantics are not Rust's: division and
//! modulo by zero, signed overflow, shifts.
//!
//! The kernel's interpreter (`___bpf_prog_run`) and its JITs agree on
//! these only because the verifier first patches every `DIV`/`MOD` with a
//! register operand (`do_misc_fixups`): a zero divisor yields 0 for
//! division and leaves the dividend for modulo (its low 32 bits,
//! zero-extended, for 32-bit ops), and a signed divisor of -1 becomes a
//! negation (division) or 0 (modulo), so `INT_MIN / -1` is `INT_MIN`.
//! Immediate divisors of 0 are rejected by the verifier; we give them the
//! same meaning as register ones.

/// `dst / src`, unsigned, 64-bit; 0 when `src == 0`.
#[inline(always)]
pub(crate) fn div64(a: u64, b: u64) -> u64 {
    a.checked_div(b).unwrap_or(0)
}

/// `dst s/ src`, 64-bit; 0 when `src == 0`, wrapping for `MIN / -1`.
#[inline(always)]
pub(crate) fn sdiv64(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        (a as i64).wrapping_div(b as i64) as u64
    }
}

/// `dst % src`, unsigned, 64-bit; `dst` when `src == 0`.
#[inline(always)]
pub(crate) fn mod64(a: u64, b: u64) -> u64 {
    a.checked_rem(b).unwrap_or(a)
}

/// `dst s% src`, 64-bit; `dst` when `src == 0`, 0 for `MIN % -1`.
#[inline(always)]
pub(crate) fn smod64(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        (a as i64).wrapping_rem(b as i64) as u64
    }
}

/// 32-bit `dst / src`; 0 when `src == 0`.
#[inline(always)]
pub(crate) fn div32(a: u32, b: u32) -> u32 {
    a.checked_div(b).unwrap_or(0)
}

/// 32-bit `dst s/ src`; 0 when `src == 0`, wrapping for `MIN / -1`.
#[inline(always)]
pub(crate) fn sdiv32(a: u32, b: u32) -> u32 {
    if b == 0 {
        0
    } else {
        (a as i32).wrapping_div(b as i32) as u32
    }
}

/// 32-bit `dst % src`; `dst` when `src == 0`.
#[inline(always)]
pub(crate) fn mod32(a: u32, b: u32) -> u32 {
    a.checked_rem(b).unwrap_or(a)
}

/// 32-bit `dst s% src`; `dst` when `src == 0`, 0 for `MIN % -1`.
#[inline(always)]
pub(crate) fn smod32(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        (a as i32).wrapping_rem(b as i32) as u32
    }
}

/// 64-bit arithmetic shift right by `b & 63`.
#[inline(always)]
pub(crate) fn arsh64(a: u64, b: u64) -> u64 {
    ((a as i64) >> (b & 63)) as u64
}

/// 32-bit arithmetic shift right by `b & 31`.
#[inline(always)]
pub(crate) fn arsh32(a: u32, b: u32) -> u32 {
    ((a as i32) >> (b & 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_by_zero_follows_the_verifier_patches() {
        assert_eq!(div64(7, 0), 0);
        assert_eq!(sdiv64(7, 0), 0);
        assert_eq!(mod64(7, 0), 7);
        assert_eq!(smod64(u64::MAX, 0), u64::MAX);
        assert_eq!(div32(7, 0), 0);
        assert_eq!(mod32(7, 0), 7);
        assert_eq!(smod32(u32::MAX, 0), u32::MAX);
    }

    #[test]
    fn signed_overflow_wraps_like_a_negation() {
        let min64 = i64::MIN as u64;
        assert_eq!(sdiv64(min64, u64::MAX), min64);
        assert_eq!(smod64(min64, u64::MAX), 0);
        let min32 = i32::MIN as u32;
        assert_eq!(sdiv32(min32, u32::MAX), min32);
        assert_eq!(smod32(min32, u32::MAX), 0);
        // Truncation towards zero; the remainder takes the dividend's sign.
        assert_eq!(sdiv32(-7i32 as u32, 2), -3i32 as u32);
        assert_eq!(smod32(-7i32 as u32, 2), -1i32 as u32);
        assert_eq!(smod64(7, -2i64 as u64), 1);
    }

    #[test]
    fn arithmetic_shifts_mask_the_amount() {
        assert_eq!(arsh64(i64::MIN as u64, 64), i64::MIN as u64);
        assert_eq!(arsh64(i64::MIN as u64, 63), u64::MAX);
        assert_eq!(arsh32(0x8000_0000, 33), 0xc000_0000);
    }
}
