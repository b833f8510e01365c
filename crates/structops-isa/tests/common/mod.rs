//! Shared proptest strategies: every valid `Op`, and raw slots biased
//! towards almost-valid encodings.

use proptest::prelude::*;
use proptest::strategy::Union;
use structops_isa::{
    AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Insn, Op, Reg, Source, Width,
};

pub fn reg() -> impl Strategy<Value = Reg> {
    (0u8..=10).prop_map(|n| Reg::new(n).expect("0..=10 is a register"))
}

pub fn bits() -> impl Strategy<Value = Bits> {
    prop_oneof![Just(Bits::B32), Just(Bits::B64)]
}

pub fn width() -> impl Strategy<Value = Width> {
    proptest::sample::select(Width::ALL.to_vec())
}

pub fn bhw() -> impl Strategy<Value = Width> {
    proptest::sample::select(vec![Width::B, Width::H, Width::W])
}

pub fn hwdw() -> impl Strategy<Value = Width> {
    proptest::sample::select(vec![Width::H, Width::W, Width::DW])
}

pub fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![any::<i32>(), -16i32..16, Just(i32::MIN), Just(i32::MAX)]
}

pub fn off() -> impl Strategy<Value = i16> {
    prop_oneof![any::<i16>(), -16i16..16]
}

pub fn source() -> impl Strategy<Value = Source> {
    prop_oneof![imm().prop_map(Source::Imm), reg().prop_map(Source::Reg)]
}

pub fn imm64() -> impl Strategy<Value = Imm64> {
    prop_oneof![
        any::<u64>().prop_map(Imm64::Const),
        (0u64..32).prop_map(Imm64::Const),
        imm().prop_map(|fd| Imm64::MapFd { fd }),
        (imm(), any::<u32>()).prop_map(|(fd, offset)| Imm64::MapValue { fd, offset }),
        (any::<u32>(), imm()).prop_map(|(btf_id, btf_fd)| Imm64::BtfId { btf_id, btf_fd }),
        imm().prop_map(|offset| Imm64::Func { offset }),
        any::<u32>().prop_map(|idx| Imm64::MapIdx { idx }),
        (any::<u32>(), any::<u32>()).prop_map(|(idx, offset)| Imm64::MapIdxValue { idx, offset }),
    ]
}

/// Every op that `Op::validate` accepts, and nothing else.
pub fn op() -> impl Strategy<Value = Op> {
    let alu_op = proptest::sample::select(AluOp::ALL.to_vec());
    let cond = proptest::sample::select(Cond::ALL.to_vec());
    let atomic_op = proptest::sample::select(AtomicOp::ALL.to_vec());
    Union::new(vec![
        (bits(), alu_op, reg(), source())
            .prop_map(|(bits, op, dst, src)| Op::Alu { bits, op, dst, src })
            .boxed(),
        (bits(), reg())
            .prop_map(|(bits, dst)| Op::Neg { bits, dst })
            .boxed(),
        (reg(), reg(), bhw())
            .prop_map(|(dst, src, from)| Op::MovSx {
                bits: Bits::B64,
                dst,
                src,
                from,
            })
            .boxed(),
        (reg(), reg(), prop_oneof![Just(Width::B), Just(Width::H)])
            .prop_map(|(dst, src, from)| Op::MovSx {
                bits: Bits::B32,
                dst,
                src,
                from,
            })
            .boxed(),
        (
            prop_oneof![Just(Endian::Le), Just(Endian::Be)],
            hwdw(),
            reg(),
        )
            .prop_map(|(order, width, dst)| Op::End { order, width, dst })
            .boxed(),
        (hwdw(), reg())
            .prop_map(|(width, dst)| Op::Bswap { width, dst })
            .boxed(),
        (reg(), reg(), any::<bool>())
            .prop_map(|(dst, src, to_arena)| Op::AddrSpaceCast {
                dst,
                src,
                dst_as: u16::from(to_arena),
                src_as: u16::from(!to_arena),
            })
            .boxed(),
        (bits(), cond, reg(), source(), off())
            .prop_map(|(bits, cond, dst, src, off)| Op::Jmp {
                bits,
                cond,
                dst,
                src,
                off,
            })
            .boxed(),
        off().prop_map(|off| Op::Ja { off }).boxed(),
        imm().prop_map(|off| Op::Gotol { off }).boxed(),
        off()
            .prop_filter("may_goto needs an offset", |o| *o != 0)
            .prop_map(|off| Op::MayGoto { off })
            .boxed(),
        prop_oneof![
            imm().prop_map(|id| CallTarget::Helper { id }),
            (0i32..212).prop_map(|id| CallTarget::Helper { id }),
            imm().prop_map(|offset| CallTarget::Local { offset }),
            (any::<u32>(), off())
                .prop_map(|(btf_id, btf_fd_idx)| CallTarget::Kfunc { btf_id, btf_fd_idx }),
        ]
        .prop_map(Op::Call)
        .boxed(),
        Just(Op::Exit).boxed(),
        (width(), reg(), reg(), off())
            .prop_map(|(width, dst, src, off)| Op::Load {
                width,
                dst,
                src,
                off,
            })
            .boxed(),
        (bhw(), reg(), reg(), off())
            .prop_map(|(width, dst, src, off)| Op::LoadSx {
                width,
                dst,
                src,
                off,
            })
            .boxed(),
        (width(), reg(), off(), source())
            .prop_map(|(width, dst, off, src)| Op::Store {
                width,
                dst,
                off,
                src,
            })
            .boxed(),
        (
            prop_oneof![Just(Width::W), Just(Width::DW)],
            atomic_op,
            reg(),
            off(),
            reg(),
        )
            .prop_map(|(width, op, dst, off, src)| Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            })
            .boxed(),
        (width(), reg(), reg(), off())
            .prop_map(|(width, dst, src, off)| Op::LoadAcquire {
                width,
                dst,
                src,
                off,
            })
            .boxed(),
        (width(), reg(), off(), reg())
            .prop_map(|(width, dst, off, src)| Op::StoreRelease {
                width,
                dst,
                off,
                src,
            })
            .boxed(),
        (reg(), imm64())
            .prop_map(|(dst, imm)| Op::LdImm64 { dst, imm })
            .boxed(),
        (bhw(), imm())
            .prop_map(|(width, imm)| Op::LdAbs { width, imm })
            .boxed(),
        (bhw(), reg(), imm())
            .prop_map(|(width, src, imm)| Op::LdInd { width, src, imm })
            .boxed(),
    ])
}

/// Opcode bytes, mostly ones the kernel knows.
fn code() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(known_codes()),
        1 => any::<u8>(),
    ]
}

/// Every opcode some valid op encodes to.
pub fn known_codes() -> Vec<u8> {
    let mut v = Vec::new();
    for class in [0x04u8, 0x07] {
        for op in 0..=0xd {
            for src in [0u8, 8] {
                v.push(class | (op << 4) | src);
            }
        }
    }
    for class in [0x05u8, 0x06] {
        for op in 0..=0xe {
            for src in [0u8, 8] {
                v.push(class | (op << 4) | src);
            }
        }
    }
    for size in [0u8, 8, 0x10, 0x18] {
        for mode in [0u8, 0x20, 0x40, 0x60, 0x80, 0xc0] {
            for class in 0..4 {
                v.push(mode | size | class);
            }
        }
    }
    v
}

fn field_imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0),
        Just(1),
        proptest::sample::select(vec![
            8, 16, 32, 64, 0x100, 0x110, 0x10000, 0x01, 0x41, 0x51, 0xa1, 0xe1, 0xf1, 0x40, 0x50,
            0xa0
        ]),
        any::<i32>(),
    ]
}

fn field_off() -> impl Strategy<Value = i16> {
    prop_oneof![
        Just(0),
        proptest::sample::select(vec![1, 8, 16, 32, -1]),
        any::<i16>(),
    ]
}

fn nibble() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=10, 1 => 0u8..16, 2 => Just(0u8)]
}

/// One raw slot biased towards almost-valid encodings.
pub fn raw_insn() -> impl Strategy<Value = Insn> {
    (code(), nibble(), nibble(), field_off(), field_imm())
        .prop_map(|(code, dst, src, off, imm)| Insn::new(code, dst, src, off, imm))
}

/// A valid op's slots with one field of one slot replaced.
fn mutated_op() -> impl Strategy<Value = Vec<Insn>> {
    (op(), any::<bool>(), 0u8..6, raw_insn()).prop_map(|(op, second, field, junk)| {
        let mut slots = op.encode().to_vec();
        let i = usize::from(second && slots.len() > 1);
        if let Some(s) = slots.get_mut(i) {
            match field {
                0 => s.code = junk.code,
                1 => s.set_dst_reg(junk.dst_reg()),
                2 => s.set_src_reg(junk.src_reg()),
                3 => s.off = junk.off,
                4 => s.imm = junk.imm,
                _ => *s = junk,
            }
        }
        slots
    })
}

/// Raw programs: mostly valid ops, some with one field mutated, some
/// random slots, and `LD_IMM64` heads that may lose their second slot.
pub fn raw_program() -> impl Strategy<Value = Vec<Insn>> {
    let item = prop_oneof![
        6 => op().prop_map(|op| op.encode().to_vec()),
        2 => mutated_op(),
        1 => raw_insn().prop_map(|i| vec![i]),
        1 => (nibble(), 0u8..8, field_imm()).prop_map(|(dst, src, lo)| {
            vec![Insn::new(0x18, dst, src, 0, lo)]
        }),
    ];
    proptest::collection::vec(item, 0..12).prop_map(|v| v.into_iter().flatten().collect())
}
