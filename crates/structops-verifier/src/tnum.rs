//! Tristate numbers: which bits of a 64-bit value are known, and to what.
//!
//! A [`Tnum`] is a pair `(value, mask)`: every bit set in `mask` is unknown,
//! every other bit is known to equal the corresponding bit of `value`. It
//! stands for the set of all `x` with `x & !mask == value`. The operations
//! mirror `kernel/bpf/tnum.c` bit for bit (the kernel's verifier decides
//! with them, and our verdicts must equal its verdicts), including the
//! improved multiplication, `tnum_union`, `tnum_step` and the byte swaps of
//! Linux 6.17 to 6.18.

use std::fmt;

/// A tracked ("tristate") number: known bits in `value`, unknown bits in
/// `mask`.
///
/// The invariant `value & mask == 0` holds for every `Tnum`: the
/// constructors establish it and every operation preserves it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tnum {
    value: u64,
    mask: u64,
}

/// `x << s` for shift amounts that may reach 64 (then 0, where C would be
/// undefined; the kernel never shifts that far).
const fn shl(x: u64, s: u32) -> u64 {
    if s >= 64 { 0 } else { x << s }
}

/// `x >> s`, 0 for shift amounts of 64 and more.
const fn shr(x: u64, s: u32) -> u64 {
    if s >= 64 { 0 } else { x >> s }
}

/// Arithmetic `x >> s`, the sign fill for shift amounts of 64 and more.
const fn sar(x: i64, s: u32) -> i64 {
    if s >= 64 { x >> 63 } else { x >> s }
}

/// The kernel's `fls64`: 1-based index of the highest set bit, 0 for 0.
const fn fls64(x: u64) -> u32 {
    64 - x.leading_zeros()
}

impl Tnum {
    /// Nothing is known (`tnum_unknown`).
    pub const UNKNOWN: Tnum = Tnum {
        value: 0,
        mask: u64::MAX,
    };

    /// Everything is known to be zero.
    pub const ZERO: Tnum = Tnum { value: 0, mask: 0 };

    /// A tnum from its parts. Bits of `value` under `mask` are cleared, so
    /// the invariant `value & mask == 0` holds.
    pub const fn new(value: u64, mask: u64) -> Tnum {
        Tnum {
            value: value & !mask,
            mask,
        }
    }

    /// The known bits (0 where unknown).
    pub const fn value(self) -> u64 {
        self.value
    }

    /// The unknown bits.
    pub const fn mask(self) -> u64 {
        self.mask
    }

    /// A fully known value (`tnum_const`).
    pub const fn constant(value: u64) -> Tnum {
        Tnum { value, mask: 0 }
    }

    /// The smallest tnum holding every value of `min..=max` (`tnum_range`):
    /// the bits above the highest bit in which `min` and `max` differ are
    /// known, the others unknown. Like the kernel, it assumes `min <= max`.
    pub const fn range(min: u64, max: u64) -> Tnum {
        let bits = fls64(min ^ max);
        if bits > 63 {
            return Tnum::UNKNOWN;
        }
        let delta = (1u64 << bits) - 1;
        Tnum {
            value: min & !delta,
            mask: delta,
        }
    }

    /// Shift left by a constant (`tnum_lshift`).
    pub const fn lshift(self, shift: u32) -> Tnum {
        Tnum {
            value: shl(self.value, shift),
            mask: shl(self.mask, shift),
        }
    }

    /// Logical shift right by a constant (`tnum_rshift`).
    pub const fn rshift(self, shift: u32) -> Tnum {
        Tnum {
            value: shr(self.value, shift),
            mask: shr(self.mask, shift),
        }
    }

    /// Arithmetic shift right of the whole 64 bits by a constant
    /// (`tnum_arshift` with bitness 64). An unknown sign bit stays unknown
    /// and spreads, a known one spreads as itself.
    pub const fn arshift(self, shift: u32) -> Tnum {
        Tnum {
            value: sar(self.value as i64, shift) as u64,
            mask: sar(self.mask as i64, shift) as u64,
        }
    }

    /// Arithmetic shift right of the low 32 bits by a constant, the result
    /// zero-extended (`tnum_arshift` with bitness 32).
    pub const fn arshift32(self, shift: u32) -> Tnum {
        let s = if shift >= 32 { 31 } else { shift };
        Tnum {
            value: ((self.value as u32 as i32) >> s) as u32 as u64,
            mask: ((self.mask as u32 as i32) >> s) as u32 as u64,
        }
    }

    /// Sum modulo 2^64 (`tnum_add`): a bit is unknown when an unknown
    /// operand bit or a carry that depends on unknown bits can reach it.
    pub const fn add(self, other: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(other.mask);
        let sv = self.value.wrapping_add(other.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | other.mask;
        Tnum {
            value: sv & !mu,
            mask: mu,
        }
    }

    /// Difference modulo 2^64 (`tnum_sub`).
    pub const fn sub(self, other: Tnum) -> Tnum {
        let dv = self.value.wrapping_sub(other.value);
        let alpha = dv.wrapping_add(self.mask);
        let beta = dv.wrapping_sub(other.mask);
        let chi = alpha ^ beta;
        let mu = chi | self.mask | other.mask;
        Tnum {
            value: dv & !mu,
            mask: mu,
        }
    }

    /// Two's complement negation, `0 - self` (`tnum_neg`).
    pub const fn neg(self) -> Tnum {
        Tnum::ZERO.sub(self)
    }

    /// Bitwise and (`tnum_and`).
    pub const fn and(self, other: Tnum) -> Tnum {
        let alpha = self.value | self.mask;
        let beta = other.value | other.mask;
        let v = self.value & other.value;
        Tnum {
            value: v,
            mask: alpha & beta & !v,
        }
    }

    /// Bitwise or (`tnum_or`).
    pub const fn or(self, other: Tnum) -> Tnum {
        let v = self.value | other.value;
        let mu = self.mask | other.mask;
        Tnum {
            value: v,
            mask: mu & !v,
        }
    }

    /// Bitwise exclusive or (`tnum_xor`).
    pub const fn xor(self, other: Tnum) -> Tnum {
        let v = self.value ^ other.value;
        let mu = self.mask | other.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// Product modulo 2^64 (`tnum_mul`, the Linux 6.17+ algorithm): for
    /// each bit of `self` from the bottom, add the correspondingly shifted
    /// `other` when the bit is a known 1, and join "added" with "not added"
    /// when it is unknown.
    pub const fn mul(self, other: Tnum) -> Tnum {
        let mut a = self;
        let mut b = other;
        let mut acc = Tnum::ZERO;
        while a.value != 0 || a.mask != 0 {
            if a.value & 1 != 0 {
                acc = acc.add(b);
            } else if a.mask & 1 != 0 {
                acc = acc.union(acc.add(b));
            }
            a = a.rshift(1);
            b = b.lshift(1);
        }
        acc
    }

    /// Whether some value could be in both (`tnum_overlap`): the bits known
    /// in both agree.
    pub const fn overlaps(self, other: Tnum) -> bool {
        let mu = !self.mask & !other.mask;
        self.value & mu == other.value & mu
    }

    /// The values in both (`tnum_intersect`). Where the two disagree on a
    /// known bit (the intersection is empty) the kernel's answer is a known
    /// 1, and so is ours.
    pub const fn intersect(self, other: Tnum) -> Tnum {
        let v = self.value | other.value;
        let mu = self.mask & other.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// The smallest tnum holding the values of both (`tnum_union`).
    pub const fn union(self, other: Tnum) -> Tnum {
        let v = self.value & other.value;
        let mu = (self.value ^ other.value) | self.mask | other.mask;
        Tnum {
            value: v & !mu,
            mask: mu,
        }
    }

    /// The low `size` bytes, the rest known zero (`tnum_cast`); sizes of 8
    /// and more keep all 64 bits.
    pub const fn cast(self, size: u32) -> Tnum {
        let keep = if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        };
        Tnum {
            value: self.value & keep,
            mask: self.mask & keep,
        }
    }

    /// The low 32 bits, zero-extended (`tnum_subreg`).
    pub const fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// The high 32 bits, the low 32 known zero (`tnum_clear_subreg`).
    pub const fn clear_subreg(self) -> Tnum {
        self.rshift(32).lshift(32)
    }

    /// The high 32 bits of `self` with the low 32 bits of `subreg`
    /// (`tnum_with_subreg`).
    pub const fn with_subreg(self, subreg: Tnum) -> Tnum {
        self.clear_subreg().or(subreg.subreg())
    }

    /// The high 32 bits of `self` with the low 32 bits known to be `value`
    /// (`tnum_const_subreg`).
    pub const fn with_const_subreg(self, value: u32) -> Tnum {
        self.with_subreg(Tnum::constant(value as u64))
    }

    /// Whether every bit is known (`tnum_is_const`).
    pub const fn is_const(self) -> bool {
        self.mask == 0
    }

    /// Whether the low 32 bits are all known (`tnum_subreg_is_const`).
    pub const fn subreg_is_const(self) -> bool {
        self.mask as u32 == 0
    }

    /// Whether this is exactly the constant `value` (`tnum_equals_const`).
    pub const fn equals_const(self, value: u64) -> bool {
        self.is_const() && self.value == value
    }

    /// Whether no bit is known (`tnum_is_unknown`).
    pub const fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// Whether every value is a multiple of `size`, which the kernel
    /// expects to be a power of two (`tnum_is_aligned`; size 0 is aligned).
    pub const fn is_aligned(self, size: u64) -> bool {
        if size == 0 {
            return true;
        }
        (self.value | self.mask) & (size.wrapping_sub(1)) == 0
    }

    /// Whether every value of `other` is a value of `self` (`tnum_in`).
    pub const fn contains(self, other: Tnum) -> bool {
        if other.mask & !self.mask != 0 {
            return false;
        }
        self.value == other.value & !self.mask
    }

    /// Whether the concrete `x` is one of this tnum's values.
    pub const fn contains_value(self, x: u64) -> bool {
        x & !self.mask == self.value
    }

    /// The smallest value of this tnum greater than `z` (`tnum_step`).
    /// When `z` is at or above the largest value, the largest value; when
    /// `z` is below the smallest, the smallest.
    pub const fn step(self, z: u64) -> u64 {
        let max = self.value | self.mask;
        if z >= max {
            return max;
        }
        if z < self.value {
            return self.value;
        }
        // Every value is `value + s` for a submask `s` of `mask`; we need
        // the smallest submask above `d`. Bits of `d` outside the mask force
        // the answer to differ from `d` above the highest of them, so fill
        // everything up to there, then increment "within the mask" by
        // letting the carry ripple through the non-mask positions.
        let d = z - self.value;
        let outside = fls64(d & !self.mask);
        let low = if outside >= 64 {
            u64::MAX
        } else {
            (1u64 << outside) - 1
        };
        let filled = d | low | !self.mask;
        self.value | (filled.wrapping_add(1) & self.mask)
    }

    /// Swap the two low bytes, the rest known zero (`tnum_bswap16`).
    pub const fn bswap16(self) -> Tnum {
        Tnum {
            value: (self.value as u16).swap_bytes() as u64,
            mask: (self.mask as u16).swap_bytes() as u64,
        }
    }

    /// Reverse the four low bytes, the rest known zero (`tnum_bswap32`).
    pub const fn bswap32(self) -> Tnum {
        Tnum {
            value: (self.value as u32).swap_bytes() as u64,
            mask: (self.mask as u32).swap_bytes() as u64,
        }
    }

    /// Reverse all eight bytes (`tnum_bswap64`).
    pub const fn bswap64(self) -> Tnum {
        Tnum {
            value: self.value.swap_bytes(),
            mask: self.mask.swap_bytes(),
        }
    }

    /// The tristate binary expansion, most significant bit first, `x` for
    /// unknown bits (`tnum_sbin`).
    pub fn sbin(self) -> String {
        (0..64)
            .rev()
            .map(|bit| {
                if (self.mask >> bit) & 1 == 1 {
                    'x'
                } else if (self.value >> bit) & 1 == 1 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect()
    }
}

/// Formats as the verifier log prints a register's `var_off`:
/// `(0x0; 0xff)`, always the pair even for constants.
impl fmt::Display for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:#x}; {:#x})", self.value, self.mask)
    }
}

impl fmt::Debug for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tnum({:#x}; {:#x})", self.value, self.mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tnums with few unknown bits, so members can be enumerated.
    fn small_tnum() -> impl Strategy<Value = Tnum> {
        (any::<u64>(), proptest::collection::vec(0u32..64, 0..6)).prop_map(|(v, bits)| {
            let mask = bits.iter().fold(0u64, |m, b| m | (1 << b));
            Tnum::new(v, mask)
        })
    }

    fn any_tnum() -> impl Strategy<Value = Tnum> {
        prop_oneof![
            small_tnum(),
            (any::<u64>(), any::<u64>()).prop_map(|(v, m)| Tnum::new(v, m)),
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Tnum::range(a.min(b), a.max(b))),
        ]
    }

    /// A member of `t` chosen by `pick`.
    fn member(t: Tnum, pick: u64) -> u64 {
        t.value() | (pick & t.mask())
    }

    fn members(t: Tnum) -> Vec<u64> {
        let mut out = vec![];
        let mut s = 0u64;
        loop {
            out.push(t.value() | s);
            if s == t.mask() {
                break;
            }
            s = (s | !t.mask()).wrapping_add(1) & t.mask();
        }
        out
    }

    #[test]
    fn range_and_constants() {
        assert_eq!(Tnum::range(0, 2), Tnum::new(0, 3));
        assert_eq!(Tnum::range(5, 5), Tnum::constant(5));
        assert_eq!(Tnum::range(0, u64::MAX), Tnum::UNKNOWN);
        assert_eq!(Tnum::range(0x10, 0x1f), Tnum::new(0x10, 0xf));
        assert!(Tnum::constant(7).is_const());
        assert!(Tnum::UNKNOWN.is_unknown());
        assert!(Tnum::new(0xff, 0xff00_0000_0000).subreg_is_const());
        assert_eq!(Tnum::new(0xf, 0x3), Tnum::new(0xc, 0x3));
    }

    #[test]
    fn printing() {
        assert_eq!(Tnum::new(0, 0xff).to_string(), "(0x0; 0xff)");
        assert_eq!(Tnum::constant(0).to_string(), "(0x0; 0x0)");
        let s = Tnum::new(0b10, 0b101).sbin();
        assert_eq!(s.len(), 64);
        assert!(s.ends_with("x1x"));
        assert!(s.starts_with("000"));
    }

    #[test]
    fn subreg_helpers() {
        let t = Tnum::new(0x1234_0000_0000, 0xffff_0000_00ff);
        assert_eq!(t.subreg(), Tnum::new(0, 0xff));
        assert_eq!(
            t.clear_subreg(),
            Tnum::new(0x1234_0000_0000, 0xffff_0000_0000)
        );
        assert_eq!(
            t.with_const_subreg(7),
            Tnum::new(0x1234_0000_0007, 0xffff_0000_0000)
        );
        assert_eq!(
            Tnum::new(0x8000_0000, 0).arshift32(4),
            Tnum::constant(0xf800_0000)
        );
        assert_eq!(
            Tnum::new(0, 0x8000_0000).arshift32(31),
            Tnum::new(0, 0xffff_ffff)
        );
        assert_eq!(Tnum::new(0x1200, 0x00f0).bswap16(), Tnum::new(0x12, 0xf000));
    }

    #[test]
    fn alignment() {
        assert!(Tnum::new(0x10, 0x30).is_aligned(16));
        assert!(!Tnum::new(0x10, 0x38).is_aligned(16));
        assert!(Tnum::UNKNOWN.is_aligned(0));
        assert!(Tnum::UNKNOWN.is_aligned(1));
    }

    proptest! {
        #[test]
        fn binary_ops_are_sound(a in any_tnum(), b in any_tnum(), pa: u64, pb: u64) {
            let (x, y) = (member(a, pa), member(b, pb));
            prop_assert!(a.add(b).contains_value(x.wrapping_add(y)));
            prop_assert!(a.sub(b).contains_value(x.wrapping_sub(y)));
            prop_assert!(a.mul(b).contains_value(x.wrapping_mul(y)));
            prop_assert!(a.and(b).contains_value(x & y));
            prop_assert!(a.or(b).contains_value(x | y));
            prop_assert!(a.xor(b).contains_value(x ^ y));
            prop_assert!(a.union(b).contains_value(x));
            prop_assert!(a.union(b).contains_value(y));
            prop_assert!(a.neg().contains_value(x.wrapping_neg()));
            if b.contains_value(x) {
                prop_assert!(a.intersect(b).contains_value(x));
                prop_assert!(a.overlaps(b));
            }
        }

        #[test]
        fn unary_ops_are_sound(a in any_tnum(), p: u64, s in 0u32..64) {
            let x = member(a, p);
            prop_assert!(a.contains_value(x));
            prop_assert!(a.lshift(s).contains_value(x << s));
            prop_assert!(a.rshift(s).contains_value(x >> s));
            prop_assert!(a.arshift(s).contains_value(((x as i64) >> s) as u64));
            let s32 = s % 32;
            prop_assert!(a.arshift32(s32).contains_value(((x as u32 as i32) >> s32) as u32 as u64));
            prop_assert!(a.subreg().contains_value(x & 0xffff_ffff));
            prop_assert!(a.cast(2).contains_value(x & 0xffff));
            prop_assert!(a.bswap16().contains_value((x as u16).swap_bytes() as u64));
            prop_assert!(a.bswap32().contains_value((x as u32).swap_bytes() as u64));
            prop_assert!(a.bswap64().contains_value(x.swap_bytes()));
            prop_assert!(Tnum::constant(x).contains(Tnum::constant(x)));
            prop_assert!(a.contains(Tnum::constant(x)));
        }

        #[test]
        fn range_contains_its_bounds(lo: u64, hi: u64, p: u64) {
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let t = Tnum::range(lo, hi);
            prop_assert!(t.contains_value(lo));
            prop_assert!(t.contains_value(hi));
            let mid = lo + p % (hi - lo).saturating_add(1).max(1);
            prop_assert!(t.contains_value(mid.min(hi)));
        }

        #[test]
        fn step_is_the_next_member(t in small_tnum(), z: u64, near: u64) {
            let all = members(t);
            let max = t.value() | t.mask();
            for z in [z, member(t, near), member(t, near).wrapping_sub(1), member(t, near).wrapping_add(1)] {
                let want = if z >= max {
                    max
                } else {
                    all.iter().copied().filter(|&m| m > z).min().unwrap_or(max)
                };
                prop_assert_eq!(t.step(z), want, "t={:?} z={:#x}", t, z);
            }
        }

        #[test]
        fn contains_matches_membership(a in small_tnum(), b in small_tnum()) {
            let all_in = members(b).iter().all(|&m| a.contains_value(m));
            prop_assert_eq!(a.contains(b), all_in);
        }
    }
}
