//! Soundness of the scalar domain: for random abstract values and random
//! concrete values they contain, every transfer function's result contains
//! the concrete result, every refined branch side contains the concrete
//! values that take it, and every "always/never taken" verdict is right.

use proptest::prelude::*;
use structops_isa::{AluOp, Bits, Cond, Endian, Width};
use structops_verifier::{ScalarValue, Tnum, alu, branch};

/// The concrete semantics of `dst op= src` (the kernel's interpreter).
fn concrete_alu(op: AluOp, x: u64, y: u64, bits: Bits) -> u64 {
    match bits {
        Bits::B64 => match op {
            AluOp::Add => x.wrapping_add(y),
            AluOp::Sub => x.wrapping_sub(y),
            AluOp::Mul => x.wrapping_mul(y),
            AluOp::Div => x.checked_div(y).unwrap_or(0),
            AluOp::Mod => x.checked_rem(y).unwrap_or(x),
            AluOp::SDiv => {
                if y == 0 {
                    0
                } else {
                    (x as i64).wrapping_div(y as i64) as u64
                }
            }
            AluOp::SMod => {
                if y == 0 {
                    x
                } else {
                    (x as i64).wrapping_rem(y as i64) as u64
                }
            }
            AluOp::Or => x | y,
            AluOp::And => x & y,
            AluOp::Xor => x ^ y,
            AluOp::Lsh => x << (y & 63),
            AluOp::Rsh => x >> (y & 63),
            AluOp::Arsh => ((x as i64) >> (y & 63)) as u64,
            AluOp::Mov => y,
        },
        Bits::B32 => {
            let (a, b) = (x as u32, y as u32);
            u64::from(match op {
                AluOp::Add => a.wrapping_add(b),
                AluOp::Sub => a.wrapping_sub(b),
                AluOp::Mul => a.wrapping_mul(b),
                AluOp::Div => a.checked_div(b).unwrap_or(0),
                AluOp::Mod => a.checked_rem(b).unwrap_or(a),
                AluOp::SDiv => {
                    if b == 0 {
                        0
                    } else {
                        (a as i32).wrapping_div(b as i32) as u32
                    }
                }
                AluOp::SMod => {
                    if b == 0 {
                        a
                    } else {
                        (a as i32).wrapping_rem(b as i32) as u32
                    }
                }
                AluOp::Or => a | b,
                AluOp::And => a & b,
                AluOp::Xor => a ^ b,
                AluOp::Lsh => a << (b & 31),
                AluOp::Rsh => a >> (b & 31),
                AluOp::Arsh => ((a as i32) >> (b & 31)) as u32,
                AluOp::Mov => b,
            })
        }
    }
}

fn concrete_cond(cond: Cond, x: u64, y: u64, bits: Bits) -> bool {
    let (x, y, sx, sy) = match bits {
        Bits::B64 => (x, y, x as i64, y as i64),
        Bits::B32 => (
            u64::from(x as u32),
            u64::from(y as u32),
            i64::from(x as u32 as i32),
            i64::from(y as u32 as i32),
        ),
    };
    match cond {
        Cond::Eq => x == y,
        Cond::Ne => x != y,
        Cond::Gt => x > y,
        Cond::Ge => x >= y,
        Cond::Lt => x < y,
        Cond::Le => x <= y,
        Cond::Sgt => sx > sy,
        Cond::Sge => sx >= sy,
        Cond::Slt => sx < sy,
        Cond::Sle => sx <= sy,
        Cond::Set => x & y != 0,
    }
}

fn sext(x: u64, from: Width) -> u64 {
    match from {
        Width::B => x as i8 as i64 as u64,
        Width::H => x as i16 as i64 as u64,
        Width::W => x as i32 as i64 as u64,
        Width::DW => x,
    }
}

const EDGES: [u64; 16] = [
    0,
    1,
    2,
    7,
    0xff,
    0x100,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
    0xffff_ffff_8000_0000,
    0xffff_ffff_0000_0000,
];

fn concrete() -> impl Strategy<Value = u64> {
    prop_oneof![
        proptest::sample::select(EDGES.to_vec()),
        any::<u64>(),
        (0u64..300),
        any::<i16>().prop_map(|v| v as i64 as u64),
        any::<u32>().prop_map(u64::from),
    ]
}

/// A bound on one side of `x`: `x` itself, near it, or far away.
fn below(x: u64, pick: u64, how: u8) -> u64 {
    match how % 4 {
        0 => x,
        1 => x.saturating_sub(pick % 64),
        2 => x.saturating_sub(pick % (x.saturating_add(1)).max(1)),
        _ => 0,
    }
}

fn above(x: u64, pick: u64, how: u8) -> u64 {
    match how % 4 {
        0 => x,
        1 => x.saturating_add(pick % 64),
        2 => x.saturating_add(pick % (u64::MAX - x).saturating_add(1).max(1)),
        _ => u64::MAX,
    }
}

/// An abstract value containing `x`: a random tnum over `x` and random
/// bounds around it in each of the four views, synced like the kernel.
fn abstract_around(x: u64) -> impl Strategy<Value = ScalarValue> {
    (
        prop_oneof![
            Just(0u64),
            Just(u64::MAX),
            any::<u64>(),
            (0u32..64).prop_map(|b| (1u64 << b) - 1)
        ],
        proptest::array::uniform8(any::<u64>()),
        proptest::array::uniform8(any::<u8>()),
    )
        .prop_map(move |(mask, picks, hows)| {
            let [p0, p1, p2, p3, p4, p5, p6, p7] = picks;
            let [h0, h1, h2, h3, h4, h5, h6, h7] = hows;
            let lo = x as u32;
            let sx = (x as i64 as u64) ^ (1 << 63); // order-preserving map of i64 to u64
            let slo = u64::from((lo as i32 as u32) ^ 0x8000_0000);
            let mut v = ScalarValue {
                var_off: Tnum::new(x, mask),
                umin: below(x, p0, h0),
                umax: above(x, p1, h1),
                smin: (below(sx, p2, h2) ^ (1 << 63)) as i64,
                smax: (above(sx, p3, h3) ^ (1 << 63)) as i64,
                u32_min: below(u64::from(lo), p4, h4) as u32,
                u32_max: above(u64::from(lo), p5, h5).min(u64::from(u32::MAX)) as u32,
                s32_min: ((below(slo, p6, h6) as u32) ^ 0x8000_0000) as i32,
                s32_max: ((above(slo, p7, h7).min(u64::from(u32::MAX)) as u32) ^ 0x8000_0000)
                    as i32,
            };
            assert!(v.contains(x), "construction lost {x:#x}: {v:?}");
            v.sync();
            v
        })
}

/// A pair (abstract value, member).
fn member_of() -> impl Strategy<Value = (ScalarValue, u64)> {
    concrete().prop_flat_map(|x| (abstract_around(x), Just(x)))
}

fn bits() -> impl Strategy<Value = Bits> {
    prop_oneof![Just(Bits::B32), Just(Bits::B64)]
}

/// The source operand: a register, or an immediate (sign-extended).
fn source() -> impl Strategy<Value = (ScalarValue, u64)> {
    prop_oneof![
        3 => member_of(),
        1 => any::<i32>().prop_map(|imm| (ScalarValue::from_imm(imm), imm as i64 as u64)),
        1 => (0i32..64).prop_map(|imm| (ScalarValue::from_imm(imm), imm as u64)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn sync_keeps_members((v, x) in member_of()) {
        let mut again = v;
        again.sync();
        prop_assert!(again.contains(x), "{v:?} lost {x:#x} after a second sync: {again:?}");
        prop_assert!(v.check_invariants().is_ok(), "{v:?}");
    }

    #[test]
    fn alu_is_sound(
        (d, x) in member_of(),
        (s, y) in source(),
        op in proptest::sample::select(AluOp::ALL.to_vec()),
        bits in bits(),
    ) {
        let want = concrete_alu(op, x, y, bits);
        let dst = match alu::split_for_bitwise(&d, op, &s) {
            Some((now, queued)) => {
                prop_assert!(now.contains(x) || queued.contains(x),
                    "split of {d:?} loses {x:#x}: {now:?} / {queued:?}");
                if now.contains(x) { now } else { queued }
            }
            None => d,
        };
        let got = alu::alu(&dst, op, &s, bits);
        prop_assert!(got.contains(want),
            "{op:?} {bits:?}: {x:#x} in {dst:?}, {y:#x} in {s:?} gives {want:#x}, not in {got:?}");
    }

    #[test]
    fn unary_ops_are_sound(
        (d, x) in member_of(),
        bits in bits(),
        width in proptest::sample::select(vec![Width::H, Width::W, Width::DW]),
        from in proptest::sample::select(vec![Width::B, Width::H, Width::W]),
        le: bool,
    ) {
        let n = alu::neg(&d, bits);
        let want = match bits {
            Bits::B64 => x.wrapping_neg(),
            Bits::B32 => u64::from((x as u32).wrapping_neg()),
        };
        prop_assert!(n.contains(want), "neg {bits:?} of {x:#x} in {d:?}: {want:#x} not in {n:?}");

        let swapped = match width {
            Width::H => u64::from((x as u16).swap_bytes()),
            Width::W => u64::from((x as u32).swap_bytes()),
            _ => x.swap_bytes(),
        };
        let truncated = match width {
            Width::H => x & 0xffff,
            Width::W => x & 0xffff_ffff,
            _ => x,
        };
        let order = if le { Endian::Le } else { Endian::Be };
        let e = alu::end(&d, order, width);
        let want = if le { truncated } else { swapped };
        prop_assert!(e.contains(want), "{order:?}{width:?} of {x:#x} in {d:?}: {want:#x} not in {e:?}");
        let b = alu::bswap(&d, width);
        prop_assert!(b.contains(swapped), "bswap{width:?} of {x:#x} in {d:?}: not in {b:?}");

        // 32-bit sign extension exists for 8 and 16 bits only.
        let from = if bits == Bits::B32 && from == Width::W { Width::H } else { from };
        let m = alu::movsx(&d, from, bits);
        let want = match bits {
            Bits::B64 => sext(x, from),
            Bits::B32 => sext(x, from) & 0xffff_ffff,
        };
        prop_assert!(m.contains(want), "movsx {bits:?} {from:?} of {x:#x} in {d:?}: {want:#x} not in {m:?}");
    }

    #[test]
    fn branches_are_sound(
        (a, x) in member_of(),
        (b, y) in source(),
        cond in proptest::sample::select(Cond::ALL.to_vec()),
        bits in bits(),
    ) {
        let holds = concrete_cond(cond, x, y, bits);
        if let Some(verdict) = branch::branch_taken(&a, &b, cond, bits) {
            prop_assert_eq!(verdict, holds,
                "{:?} {:?}: {:#x} in {:?} vs {:#x} in {:?} decided wrongly", cond, bits, x, a, y, b);
        }
        let sides = branch::refine(&a, &b, cond, bits);
        let (ra, rb) = if holds { sides.taken } else { sides.not_taken };
        prop_assert!(ra.contains(x) && rb.contains(y),
            "{cond:?} {bits:?} ({holds}): {x:#x} in {a:?}, {y:#x} in {b:?} -> {ra:?}, {rb:?}");

        let (taken, not_taken) = branch::refine_same_register(&a, cond, bits);
        let side = if concrete_cond(cond, x, x, bits) { taken } else { not_taken };
        prop_assert!(side.contains(x), "{cond:?} {bits:?} of {x:#x} in {a:?} with itself: {side:?}");
    }
}

/// Random walks: a concrete value follows random instructions and random
/// branch sides while the abstract value follows the transfer functions;
/// the abstract value must keep containing the concrete one. This reaches
/// the shapes real programs produce (masks, shifts, sign extensions, range
/// checks) better than independent random bounds.
#[derive(Clone, Debug)]
enum Step {
    Alu(AluOp, Bits, i32),
    Neg(Bits),
    End(Endian, Width),
    Bswap(Width),
    MovSx(Width, Bits),
    Branch(Cond, Bits, i32),
}

fn step() -> impl Strategy<Value = Step> {
    let imm = prop_oneof![
        any::<i32>(),
        0i32..64,
        -64i32..0,
        proptest::sample::select(vec![
            0xff,
            0xffff,
            0x7fff_ffff,
            -0x8000_0000,
            0x100,
            1 << 20
        ]),
    ];
    prop_oneof![
        6 => (proptest::sample::select(AluOp::ALL.to_vec()), bits(), imm.clone()).prop_map(|(o, b, i)| Step::Alu(o, b, i)),
        1 => bits().prop_map(Step::Neg),
        1 => (proptest::sample::select(vec![Endian::Le, Endian::Be]),
              proptest::sample::select(vec![Width::H, Width::W, Width::DW])).prop_map(|(e, w)| Step::End(e, w)),
        1 => proptest::sample::select(vec![Width::H, Width::W, Width::DW]).prop_map(Step::Bswap),
        1 => (proptest::sample::select(vec![Width::B, Width::H, Width::W]), bits()).prop_map(|(w, b)| {
            Step::MovSx(if b == Bits::B32 && w == Width::W { Width::H } else { w }, b)
        }),
        4 => (proptest::sample::select(Cond::ALL.to_vec()), bits(), imm).prop_map(|(c, b, i)| Step::Branch(c, b, i)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_walks_stay_sound(start in concrete(), steps in proptest::collection::vec(step(), 1..24)) {
        let mut x = start;
        let mut v = ScalarValue::unknown();
        for s in &steps {
            let before = v;
            match *s {
                Step::Alu(op, bits, imm) => {
                    // Division by a zero immediate and oversized shifts are
                    // rejected by the verifier before the domain sees them.
                    let bad_shift = matches!(op, AluOp::Lsh | AluOp::Rsh | AluOp::Arsh)
                        && (imm < 0 || imm >= if bits == Bits::B32 { 32 } else { 64 });
                    let div0 = matches!(op, AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod) && imm == 0;
                    if bad_shift || div0 {
                        continue;
                    }
                    let src = ScalarValue::from_imm(imm);
                    if let Some((now, queued)) = alu::split_for_bitwise(&v, op, &src) {
                        v = if now.contains(x) { now } else { queued };
                    }
                    x = concrete_alu(op, x, imm as i64 as u64, bits);
                    v = alu::alu(&v, op, &src, bits);
                }
                Step::Neg(bits) => {
                    x = match bits {
                        Bits::B64 => x.wrapping_neg(),
                        Bits::B32 => u64::from((x as u32).wrapping_neg()),
                    };
                    v = alu::neg(&v, bits);
                }
                Step::End(order, width) => {
                    x = match (order, width) {
                        (Endian::Le, Width::H) => x & 0xffff,
                        (Endian::Le, Width::W) => x & 0xffff_ffff,
                        (Endian::Be, Width::H) => u64::from((x as u16).swap_bytes()),
                        (Endian::Be, Width::W) => u64::from((x as u32).swap_bytes()),
                        (Endian::Be, _) => x.swap_bytes(),
                        (Endian::Le, _) => x,
                    };
                    v = alu::end(&v, order, width);
                }
                Step::Bswap(width) => {
                    x = match width {
                        Width::H => u64::from((x as u16).swap_bytes()),
                        Width::W => u64::from((x as u32).swap_bytes()),
                        _ => x.swap_bytes(),
                    };
                    v = alu::bswap(&v, width);
                }
                Step::MovSx(from, bits) => {
                    x = match bits {
                        Bits::B64 => sext(x, from),
                        Bits::B32 => sext(x, from) & 0xffff_ffff,
                    };
                    v = alu::movsx(&v, from, bits);
                }
                Step::Branch(cond, bits, imm) => {
                    let k = ScalarValue::from_imm(imm);
                    let y = imm as i64 as u64;
                    let holds = concrete_cond(cond, x, y, bits);
                    match branch::branch_taken(&v, &k, cond, bits) {
                        Some(verdict) => prop_assert_eq!(verdict, holds, "{:?} on {:?} at {:#x}", s, before, x),
                        None => {
                            let sides = branch::refine(&v, &k, cond, bits);
                            v = if holds { sides.taken.0 } else { sides.not_taken.0 };
                        }
                    }
                }
            }
            prop_assert!(v.contains(x), "after {s:?}: {x:#x} not in {v:?} (before: {before:?})");
        }
    }
}
