//! One test per op family, with the edge values where the kernel's
//! semantics differ from naive arithmetic. Every program runs in both
//! modes, which must agree.

mod common;

use common::{both, checked};
use structops_vm::{BPF_MAX_LOOPS, VmError};

const MIN64: u64 = i64::MIN as u64;

/// `r0 = a; r1 = b; <op>; exit` with 64-bit constants.
fn bin(a: u64, b: u64, op: &str) -> u64 {
    both(&format!("r0 = {a:#x} ll\nr1 = {b:#x} ll\n{op}\nexit"))
}

#[test]
fn alu64_wraps() {
    assert_eq!(bin(u64::MAX, 1, "r0 += r1"), 0);
    assert_eq!(bin(0, 1, "r0 -= r1"), u64::MAX);
    assert_eq!(bin(1 << 63, 2, "r0 *= r1"), 0);
    assert_eq!(bin(0xf0, 0x3c, "r0 |= r1"), 0xfc);
    assert_eq!(bin(0xf0, 0x3c, "r0 &= r1"), 0x30);
    assert_eq!(bin(0xf0, 0x3c, "r0 ^= r1"), 0xcc);
    assert_eq!(bin(5, 7, "r0 = r1"), 7);
    // Immediates are sign-extended to 64 bits.
    assert_eq!(both("r0 = 0\nr0 += -1\nexit"), u64::MAX);
    assert_eq!(both("r0 = -1\nexit"), u64::MAX);
    assert_eq!(
        both("r0 = 0\nr0 |= -2147483648\nexit"),
        0xffff_ffff_8000_0000
    );
}

#[test]
fn alu32_zero_extends() {
    assert_eq!(bin(u64::MAX, 1, "w0 += w1"), 0);
    assert_eq!(bin(0xffff_ffff_0000_0000, 0, "w0 -= w1"), 0);
    assert_eq!(bin(0, 1, "w0 -= w1"), 0xffff_ffff);
    assert_eq!(bin(0x1_0000_0003, 0x1_0000_0005, "w0 *= w1"), 15);
    assert_eq!(bin(u64::MAX, 0, "w0 |= w1"), 0xffff_ffff);
    assert_eq!(bin(7, u64::MAX, "w0 = w1"), 0xffff_ffff);
    // A 32-bit mov of an immediate does not sign-extend.
    assert_eq!(both("w0 = -1\nexit"), 0xffff_ffff);
    assert_eq!(both("r0 = -1\nw0 += 0\nexit"), 0xffff_ffff);
}

#[test]
fn division_by_zero() {
    // 64-bit: quotient 0, remainder the dividend.
    assert_eq!(bin(7, 0, "r0 /= r1"), 0);
    assert_eq!(bin(7, 0, "r0 %= r1"), 7);
    assert_eq!(bin(u64::MAX, 0, "r0 s/= r1"), 0);
    assert_eq!(bin(u64::MAX, 0, "r0 s%= r1"), u64::MAX);
    // 32-bit: the low half of the divisor decides, and the remainder is
    // the dividend's low half, zero-extended.
    assert_eq!(bin(0xdead_0000_0007, 0x1_0000_0000, "w0 /= w1"), 0);
    assert_eq!(bin(0xdead_0000_0007, 0x1_0000_0000, "w0 %= w1"), 7);
    assert_eq!(bin(u64::MAX, 0, "w0 s/= w1"), 0);
    assert_eq!(bin(u64::MAX, 0, "w0 s%= w1"), 0xffff_ffff);
    // Immediate divisors of 0 mean the same (the verifier rejects them).
    assert_eq!(both("r0 = 9\nr0 /= 0\nexit"), 0);
    assert_eq!(both("r0 = 9\nr0 %= 0\nexit"), 9);
    assert_eq!(both("r0 = -1\nw0 %= 0\nexit"), 0xffff_ffff);
}

#[test]
fn division_unsigned_and_signed() {
    assert_eq!(bin(u64::MAX, 2, "r0 /= r1"), u64::MAX / 2);
    assert_eq!(bin(u64::MAX, 10, "r0 %= r1"), 5);
    assert_eq!(bin(-7i64 as u64, 2, "r0 s/= r1"), -3i64 as u64);
    assert_eq!(bin(-7i64 as u64, 2, "r0 s%= r1"), -1i64 as u64);
    assert_eq!(bin(7, -2i64 as u64, "r0 s%= r1"), 1);
    // Signed 32-bit, zero-extended result.
    assert_eq!(
        bin(-7i32 as u32 as u64, 2, "w0 s/= w1"),
        u64::from(-3i32 as u32)
    );
    // The 64-bit immediate form sign-extends the divisor.
    assert_eq!(both("r0 = 10\nr0 s/= -2\nexit"), -5i64 as u64);
    assert_eq!(both("r0 = -1\nr0 /= -1\nexit"), 1);
    // The 32-bit immediate form is unsigned for `/`.
    assert_eq!(both("w0 = 10\nw0 /= -1\nexit"), 0);
}

#[test]
fn signed_division_overflow() {
    assert_eq!(bin(MIN64, u64::MAX, "r0 s/= r1"), MIN64);
    assert_eq!(bin(MIN64, u64::MAX, "r0 s%= r1"), 0);
    assert_eq!(both("r0 = 0x8000000000000000 ll\nr0 s/= -1\nexit"), MIN64);
    assert_eq!(both("r0 = 0x8000000000000000 ll\nr0 s%= -1\nexit"), 0);
    let min32 = u64::from(i32::MIN as u32);
    assert_eq!(bin(min32, u64::MAX, "w0 s/= w1"), min32);
    assert_eq!(bin(min32, u64::MAX, "w0 s%= w1"), 0);
    assert_eq!(both("w0 = -2147483648\nw0 s/= -1\nexit"), min32);
    assert_eq!(both("w0 = -2147483648\nw0 s%= -1\nexit"), 0);
}

#[test]
fn shifts_mask_the_amount() {
    assert_eq!(bin(1, 64, "r0 <<= r1"), 1);
    assert_eq!(bin(1, 65, "r0 <<= r1"), 2);
    assert_eq!(bin(MIN64, 127, "r0 >>= r1"), 1);
    assert_eq!(bin(MIN64, 63, "r0 s>>= r1"), u64::MAX);
    assert_eq!(bin(1, 32, "w0 <<= w1"), 1);
    assert_eq!(bin(0x8000_0000, 33, "w0 >>= w1"), 0x4000_0000);
    assert_eq!(bin(0x8000_0000, 31, "w0 s>>= w1"), 0xffff_ffff);
    // The 32-bit arithmetic shift works on the low half only.
    assert_eq!(bin(0x1_7fff_ffff, 4, "w0 s>>= w1"), 0x07ff_ffff);
    assert_eq!(both("r0 = 1\nr0 <<= 63\nexit"), MIN64);
    assert_eq!(both("r0 = -1\nr0 >>= 60\nexit"), 15);
    assert_eq!(both("r0 = -16\nr0 s>>= 2\nexit"), -4i64 as u64);
    assert_eq!(both("w0 = -16\nw0 s>>= 2\nexit"), u64::from(-4i32 as u32));
}

#[test]
fn negation() {
    assert_eq!(both("r0 = 5\nr0 = -r0\nexit"), -5i64 as u64);
    assert_eq!(both("r0 = 0x8000000000000000 ll\nr0 = -r0\nexit"), MIN64);
    assert_eq!(both("r0 = 5\nw0 = -w0\nexit"), u64::from(-5i32 as u32));
    assert_eq!(both("r0 = 0x100000000 ll\nw0 = -w0\nexit"), 0);
}

#[test]
fn sign_extending_moves() {
    assert_eq!(bin(0, 0x80, "r0 = (s8)r1"), u64::MAX - 0x7f);
    assert_eq!(bin(0, 0x7f, "r0 = (s8)r1"), 0x7f);
    assert_eq!(bin(0, 0x1_8000, "r0 = (s16)r1"), 0xffff_ffff_ffff_8000);
    assert_eq!(bin(0, 0x1_8000_0000, "r0 = (s32)r1"), 0xffff_ffff_8000_0000);
    assert_eq!(bin(0, 0xff, "w0 = (s8)w1"), 0xffff_ffff);
    assert_eq!(bin(0, 0xffff_8000, "w0 = (s16)w1"), 0xffff_8000);
    assert_eq!(bin(0, 0x7fff, "w0 = (s16)w1"), 0x7fff);
}

#[test]
fn byte_swaps() {
    let v = 0x0102_0304_0506_0708u64;
    let le = cfg!(target_endian = "little");
    assert_eq!(bin(v, 0, "r0 = be16 r0"), if le { 0x0807 } else { 0x0708 });
    assert_eq!(
        bin(v, 0, "r0 = be32 r0"),
        if le { 0x0807_0605 } else { 0x0506_0708 }
    );
    assert_eq!(
        bin(v, 0, "r0 = be64 r0"),
        if le { v.swap_bytes() } else { v }
    );
    assert_eq!(bin(v, 0, "r0 = le16 r0"), if le { 0x0708 } else { 0x0807 });
    assert_eq!(
        bin(v, 0, "r0 = le32 r0"),
        if le { 0x0506_0708 } else { 0x0807_0605 }
    );
    assert_eq!(
        bin(v, 0, "r0 = le64 r0"),
        if le { v } else { v.swap_bytes() }
    );
    assert_eq!(bin(v, 0, "r0 = bswap16 r0"), 0x0807);
    assert_eq!(bin(v, 0, "r0 = bswap32 r0"), 0x0807_0605);
    assert_eq!(bin(v, 0, "r0 = bswap64 r0"), v.swap_bytes());
}

/// Whether `if r0 <cond> r1` (or `w0`/`w1`) jumps for `a`, `b`.
fn jumps(a: u64, b: u64, cond: &str, bits32: bool) -> bool {
    let p = if bits32 { 'w' } else { 'r' };
    let src = format!(
        "r0 = {a:#x} ll\nr1 = {b:#x} ll\nif {p}0 {cond} {p}1 goto yes\nr0 = 0\nexit\nyes:\nr0 = 1\nexit"
    );
    both(&src) == 1
}

#[test]
fn conditional_jumps_64() {
    let m1 = u64::MAX;
    let cases: &[(&str, u64, u64, bool)] = &[
        ("==", 5, 5, true),
        ("==", 5, 6, false),
        ("!=", 5, 6, true),
        (">", m1, 1, true),
        (">", 1, 1, false),
        (">=", 1, 1, true),
        ("<", 1, m1, true),
        ("<=", m1, m1, true),
        ("<=", m1, 0, false),
        ("s>", 1, m1, true),
        ("s>", MIN64, 0, false),
        ("s>=", m1, m1, true),
        ("s<", m1, 0, true),
        ("s<", 0, MIN64, false),
        ("s<=", MIN64, i64::MAX as u64, true),
        ("&", 0b1010, 0b0101, false),
        ("&", 0b1010, 0b0011, true),
        // 64-bit compares see the high half.
        ("==", 0x1_0000_0000, 0, false),
    ];
    for &(cond, a, b, expect) in cases {
        assert_eq!(jumps(a, b, cond, false), expect, "{a:#x} {cond} {b:#x}");
    }
}

#[test]
fn conditional_jumps_32() {
    let cases: &[(&str, u64, u64, bool)] = &[
        ("==", 0x1_0000_0005, 5, true),
        ("!=", 0x1_0000_0005, 5, false),
        (">", 0xffff_ffff, 1, true),
        (">", 0x1_0000_0000, 1, false),
        (">=", 0, 0x1_0000_0000, true),
        ("<", 0x5_0000_0001, 2, true),
        ("<=", 3, 2, false),
        ("s>", 0x7fff_ffff, 0x8000_0000, true),
        ("s>=", 0xffff_ffff, 0, false),
        ("s<", 0x8000_0000, 0, true),
        ("s<=", 0x8000_0000, 0x8000_0000, true),
        ("&", 0x1_0000_0000, 0x1_0000_0000, false),
        ("&", 0x1_0000_0001, 1, true),
    ];
    for &(cond, a, b, expect) in cases {
        assert_eq!(jumps(a, b, cond, true), expect, "w: {a:#x} {cond} {b:#x}");
    }
}

#[test]
fn immediate_jumps_sign_extend_only_in_64_bits() {
    // r0 = 0xffffffff: equal to -1 in 32 bits, not in 64.
    let src = |p: char| {
        format!("r0 = 0xffffffff ll\nif {p}0 == -1 goto yes\nr0 = 0\nexit\nyes:\nr0 = 1\nexit")
    };
    assert_eq!(both(&src('r')), 0);
    assert_eq!(both(&src('w')), 1);
    assert_eq!(
        both("r0 = -1\nif r0 s< 0 goto yes\nr0 = 0\nexit\nyes:\nr0 = 1\nexit"),
        1
    );
    assert_eq!(
        both("r0 = 0x80000000 ll\nif w0 s< 0 goto yes\nr0 = 0\nexit\nyes:\nr0 = 1\nexit"),
        1
    );
}

#[test]
fn unconditional_jumps() {
    assert_eq!(both("r0 = 1\ngoto pc+1\nr0 = 2\nexit"), 1);
    assert_eq!(both("r0 = 1\ngotol pc+1\nr0 = 2\nexit"), 1);
    // A backward jump loop: sum 1..=10.
    assert_eq!(
        both("r0 = 0\nr1 = 10\nloop:\nr0 += r1\nr1 -= 1\nif r1 != 0 goto loop\nexit"),
        55
    );
    // Jumps count slots: this one skips a two-slot LD_IMM64.
    assert_eq!(both("r0 = 1\ngoto pc+2\nr0 = 2 ll\nexit"), 1);
}

#[test]
fn may_goto_falls_through_until_the_budget_is_spent() {
    // Counts how often may_goto falls through before it jumps.
    let n = both("r0 = 0\nloop:\nmay_goto pc+2\nr0 += 1\ngoto loop\nexit");
    assert_eq!(n, u64::from(BPF_MAX_LOOPS));
}

#[test]
fn may_goto_budget_is_per_call_frame() {
    // The callee's loop gets a full budget although the caller spent part
    // of its own; the caller's budget is restored afterwards.
    let n = both(
        "
        r6 = 0
        may_goto pc+1
        r6 += 0
        call f
        r6 += r0
        may_goto pc+1
        r6 += 1
        r0 = r6
        exit
    f:
        r0 = 0
    loop:
        may_goto pc+2
        r0 += 1
        goto loop
        exit
    ",
    );
    assert_eq!(n, u64::from(BPF_MAX_LOOPS) + 1);
}

#[test]
fn loads_and_stores_every_width() {
    let src = "
        r2 = 0x8182838485868788 ll
        *(u64 *)(r10 -8) = r2
        r0 = *(u8 *)(r10 -8)
        r3 = *(u16 *)(r10 -8)
        r0 += r3
        r3 = *(u32 *)(r10 -8)
        r0 += r3
        r3 = *(u64 *)(r10 -8)
        r0 += r3
        exit
    ";
    let v = 0x8182_8384_8586_8788u64;
    let expect = (v & 0xff)
        .wrapping_add(v & 0xffff)
        .wrapping_add(v & 0xffff_ffff)
        .wrapping_add(v);
    assert_eq!(both(src), expect);
}

#[test]
fn sign_extending_loads() {
    let base = "r2 = 0x8182838485868788 ll\n*(u64 *)(r10 -8) = r2\n";
    assert_eq!(
        both(&format!("{base}r0 = *(s8 *)(r10 -8)\nexit")),
        0x88u8 as i8 as i64 as u64
    );
    assert_eq!(
        both(&format!("{base}r0 = *(s16 *)(r10 -8)\nexit")),
        0x8788u16 as i16 as i64 as u64
    );
    assert_eq!(
        both(&format!("{base}r0 = *(s32 *)(r10 -8)\nexit")),
        0x8586_8788u32 as i32 as i64 as u64
    );
    assert_eq!(
        both(&format!("{base}r0 = *(s8 *)(r10 -1)\nexit")),
        0xffff_ffff_ffff_ff81
    );
}

#[test]
fn immediate_stores_truncate_or_sign_extend() {
    assert_eq!(
        both("*(u64 *)(r10 -8) = -2\nr0 = *(u64 *)(r10 -8)\nexit"),
        u64::MAX - 1
    );
    assert_eq!(
        both("*(u64 *)(r10 -8) = 0\n*(u16 *)(r10 -8) = -2\nr0 = *(u64 *)(r10 -8)\nexit"),
        0xfffe
    );
    assert_eq!(
        both("*(u64 *)(r10 -8) = 0\n*(u8 *)(r10 -7) = 0x1ff\nr0 = *(u64 *)(r10 -8)\nexit"),
        0xff00
    );
    assert_eq!(
        both("*(u32 *)(r10 -4) = -1\nr0 = *(u32 *)(r10 -4)\nexit"),
        0xffff_ffff
    );
}

#[test]
fn unaligned_plain_accesses_work() {
    assert_eq!(
        both("r1 = 0x1122334455667788 ll\n*(u64 *)(r10 -13) = r1\nr0 = *(u64 *)(r10 -13)\nexit"),
        0x1122_3344_5566_7788
    );
}

#[test]
fn context_accesses() {
    // The context starts zeroed; a store then load round-trips through it.
    assert_eq!(
        both("r2 = 77\n*(u32 *)(r1 +60) = r2\nr0 = *(u32 *)(r1 +60)\nexit"),
        77
    );
}

/// Runs an atomic op on `*(u64 *)(r10 -8) = init` with `r1 = operand`
/// (and `r0 = r0_init` for cmpxchg); returns `(memory, r0, r1)` packed
/// by the program as memory, then checks each via separate runs.
fn atomic(init: u64, operand: u64, r0_init: u64, op: &str) -> (u64, u64, u64) {
    let prologue = format!(
        "r2 = {init:#x} ll\n*(u64 *)(r10 -8) = r2\nr1 = {operand:#x} ll\nr0 = {r0_init:#x} ll\n{op}\n"
    );
    let mem = both(&format!("{prologue}r0 = *(u64 *)(r10 -8)\nexit"));
    let r0 = both(&format!("{prologue}exit"));
    let r1 = both(&format!("{prologue}r0 = r1\nexit"));
    (mem, r0, r1)
}

#[test]
fn atomics_64() {
    let (a, b) = (0xf0f0_0000_0000_00ffu64, 0x0ff0_0000_0000_0f0fu64);
    assert_eq!(
        atomic(a, b, 9, "lock *(u64 *)(r10 -8) += r1"),
        (a.wrapping_add(b), 9, b)
    );
    assert_eq!(
        atomic(a, b, 9, "lock *(u64 *)(r10 -8) &= r1"),
        (a & b, 9, b)
    );
    assert_eq!(
        atomic(a, b, 9, "lock *(u64 *)(r10 -8) |= r1"),
        (a | b, 9, b)
    );
    assert_eq!(
        atomic(a, b, 9, "lock *(u64 *)(r10 -8) ^= r1"),
        (a ^ b, 9, b)
    );
    let fetch = |name: &str| format!("r1 = atomic64_fetch_{name}((u64 *)(r10 -8), r1)");
    assert_eq!(atomic(a, b, 9, &fetch("add")), (a.wrapping_add(b), 9, a));
    assert_eq!(atomic(a, b, 9, &fetch("and")), (a & b, 9, a));
    assert_eq!(atomic(a, b, 9, &fetch("or")), (a | b, 9, a));
    assert_eq!(atomic(a, b, 9, &fetch("xor")), (a ^ b, 9, a));
    assert_eq!(
        atomic(a, b, 9, "r1 = atomic64_xchg((u64 *)(r10 -8), r1)"),
        (b, 9, a)
    );
    let cmpxchg = "r0 = atomic64_cmpxchg((u64 *)(r10 -8), r0, r1)";
    // Match: memory takes the new value; r0 gets the old one either way.
    assert_eq!(atomic(a, b, a, cmpxchg), (b, a, b));
    assert_eq!(atomic(a, b, 9, cmpxchg), (a, a, b));
}

#[test]
fn atomics_32_zero_extend_and_leave_the_other_half() {
    // The 32-bit ops work on the low half of the slot (little-endian).
    let a = 0xaaaa_aaaa_8000_0001u64;
    let b = 0xffff_ffff_8000_0001u64;
    let lo = |x: u64| x & 0xffff_ffff;
    let hi = a & 0xffff_ffff_0000_0000;
    if cfg!(target_endian = "little") {
        assert_eq!(
            atomic(a, b, 9, "lock *(u32 *)(r10 -8) += r1"),
            (hi | 2, 9, b)
        );
        assert_eq!(
            atomic(a, b, 9, "r1 = atomic_fetch_add((u32 *)(r10 -8), r1)"),
            (hi | 2, 9, lo(a))
        );
        assert_eq!(
            atomic(a, b, 9, "r1 = atomic_xchg((u32 *)(r10 -8), r1)"),
            (hi | lo(b), 9, lo(a))
        );
        // cmpxchg compares the low halves only and zero-extends into r0.
        assert_eq!(
            atomic(
                a,
                b,
                0x1234_5678_8000_0001,
                "r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)"
            ),
            (hi | lo(b), lo(a), b)
        );
        assert_eq!(
            atomic(a, b, 7, "r0 = atomic_cmpxchg((u32 *)(r10 -8), r0, r1)"),
            (a, lo(a), b)
        );
    }
}

#[test]
fn load_acquire_and_store_release() {
    assert_eq!(
        both(
            "r1 = 0x1122334455667788 ll
             store_release((u64 *)(r10 -8), r1)
             r0 = load_acquire((u64 *)(r10 -8))
             exit"
        ),
        0x1122_3344_5566_7788
    );
    assert_eq!(
        both(
            "*(u64 *)(r10 -8) = 0
             r1 = -1
             store_release((u16 *)(r10 -8), r1)
             r0 = load_acquire((u8 *)(r10 -8))
             r2 = load_acquire((u32 *)(r10 -8))
             r0 += r2
             exit"
        ),
        0xff + 0xffff
    );
}

#[test]
fn misaligned_atomics_are_refused() {
    let err = checked(
        "*(u64 *)(r10 -16) = 0\n*(u64 *)(r10 -8) = 0\nr1 = 1\nlock *(u64 *)(r10 -12) += r1\nexit",
    )
    .unwrap_err();
    assert!(
        matches!(err, VmError::MisalignedAtomic { pc: 3, len: 8, .. }),
        "{err}"
    );
    let err = checked("r1 = 1\nr0 = load_acquire((u16 *)(r10 -3))\nexit").unwrap_err();
    assert!(
        matches!(err, VmError::MisalignedAtomic { pc: 1, len: 2, .. }),
        "{err}"
    );
}

#[test]
fn ld_imm64_constants() {
    assert_eq!(both("r0 = 0xffffffffffffffff ll\nexit"), u64::MAX);
    assert_eq!(both("r0 = 0x100000000 ll\nexit"), 1 << 32);
}

#[test]
fn registers_start_zeroed_except_ctx_and_frame_pointer() {
    assert_eq!(both("r0 = r5\nr0 |= r9\nexit"), 0);
}
