//! Decoding raw slots into [`Op`]s, with the kernel's structural checks.
//!
//! The rules mirror what the 6.12 kernel flags as malformed encoding before
//! or while it verifies a program: `bpf_opcode_in_insntable()` and
//! `resolve_pseudo_ldimm64()` (unknown opcodes, `LDX` reserved fields, the
//! shape of `LD_IMM64`), and the reserved-field checks of `check_alu_op()`,
//! `check_cond_jmp_op()`, `check_ld_imm()`, `check_ld_abs()`,
//! `check_atomic()` and the `do_check()` class dispatch. Register numbers
//! above 10 are rejected (`check_reg_arg()`'s "R%d is invalid").
//!
//! Deliberate differences from the kernel, each making decode *stricter*:
//!
//! - The kernel applies the `do_check()`-time reserved-field checks only to
//!   instructions its path walk reaches; we apply all checks to every
//!   instruction, so a malformed instruction in provably dead code is an
//!   error here. Use [`decode_at`] to decode lazily if that matters.
//! - The kernel never looks at `off` of `exit` nor at the second slot's
//!   `imm` of a `BPF_PSEUDO_FUNC` `LD_IMM64`; we require both to be 0 (LLVM
//!   and libbpf always emit 0) so that [`Op`] need not carry ignored bits.
//!
//! Conversely, everything that depends on program state rather than on the
//! encoding is left to the verifier: writes to r10, division by a zero
//! immediate, shift amounts, jump targets, helper ids, map fds.

use std::fmt;

use thiserror::Error;

use crate::insn::{Insn, ParseError};
use crate::op::{AluOp, AtomicOp, Bits, CallTarget, Cond, Endian, Imm64, Op, Source, Width};
use crate::opcode as oc;
use crate::reg::Reg;

/// An instruction field, named as in `struct bpf_insn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The destination register nibble.
    DstReg,
    /// The source register nibble (also the pseudo-source selector).
    SrcReg,
    /// The 16-bit offset.
    Off,
    /// The 32-bit immediate.
    Imm,
    /// The immediate of the second `LD_IMM64` slot.
    Imm2,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::DstReg => "dst_reg",
            Field::SrcReg => "src_reg",
            Field::Off => "off",
            Field::Imm => "imm",
            Field::Imm2 => "imm of the second slot",
        })
    }
}

/// Why a sequence of slots is not a well-formed eBPF program.
///
/// Every variant names the slot index (`pc`) of the offending instruction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The opcode byte is not a public eBPF instruction
    /// (mirrors `bpf_opcode_in_insntable()`).
    #[error("insn {pc}: unknown opcode {code:02x}")]
    UnknownOpcode {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
    },
    /// A field this instruction does not use is not zero.
    #[error("insn {pc} ({code:02x}): reserved field {field} is {value}, must be 0")]
    ReservedField {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
        /// The offending field.
        field: Field,
        /// Its value.
        value: i32,
    },
    /// A field holds a value outside the set the encoding defines.
    #[error("insn {pc} ({code:02x}): invalid {field} {value}, expected {expected}")]
    InvalidField {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
        /// The offending field.
        field: Field,
        /// Its value.
        value: i32,
        /// The accepted values, in words.
        expected: &'static str,
    },
    /// A register operand is above r10.
    #[error("insn {pc} ({code:02x}): {field} R{reg} is invalid")]
    InvalidRegister {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
        /// [`Field::DstReg`] or [`Field::SrcReg`].
        field: Field,
        /// The register number, 11 to 15.
        reg: u8,
    },
    /// `STX | ATOMIC` with an `imm` that is no atomic operation, or one
    /// not defined for this width (read-modify-write needs W or DW).
    #[error("insn {pc} ({code:02x}): invalid atomic operation {imm:#x}")]
    UnknownAtomicOp {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
        /// The `imm` field.
        imm: i32,
    },
    /// `LD_IMM64` or `CALL` with a `src_reg` that selects no pseudo source.
    #[error("insn {pc} ({code:02x}): unknown pseudo source {src}")]
    UnknownPseudoSrc {
        /// Slot index.
        pc: usize,
        /// The opcode byte.
        code: u8,
        /// The `src_reg` field.
        src: u8,
    },
    /// `LD_IMM64` in the last slot, with no room for its second half.
    #[error("insn {pc}: ld_imm64 is truncated, its second slot is missing")]
    TruncatedLdImm64 {
        /// Slot index of the first half.
        pc: usize,
    },
    /// The second slot of `LD_IMM64` has a non-zero code, register or offset.
    #[error("insn {pc}: invalid bpf_ld_imm64 insn, second slot is {next:?}")]
    InvalidLdImm64Tail {
        /// Slot index of the first half.
        pc: usize,
        /// The second slot.
        next: Insn,
    },
}

impl DecodeError {
    /// The slot index the error is about.
    pub const fn pc(&self) -> usize {
        match *self {
            DecodeError::UnknownOpcode { pc, .. }
            | DecodeError::ReservedField { pc, .. }
            | DecodeError::InvalidField { pc, .. }
            | DecodeError::InvalidRegister { pc, .. }
            | DecodeError::UnknownAtomicOp { pc, .. }
            | DecodeError::UnknownPseudoSrc { pc, .. }
            | DecodeError::TruncatedLdImm64 { pc }
            | DecodeError::InvalidLdImm64Tail { pc, .. } => pc,
        }
    }
}

/// Errors of decoding straight from bytes: a length error or a decode error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The bytes are not a whole number of slots.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The slots are not a well-formed program.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Checks of one slot, carrying the slot and its index for error reports.
struct Check<'a> {
    pc: usize,
    insn: &'a Insn,
}

impl Check<'_> {
    fn code(&self) -> u8 {
        self.insn.code
    }

    fn unknown(&self) -> DecodeError {
        DecodeError::UnknownOpcode {
            pc: self.pc,
            code: self.insn.code,
        }
    }

    fn zero(&self, field: Field) -> Result<(), DecodeError> {
        let value = match field {
            Field::DstReg => i32::from(self.insn.dst_reg()),
            Field::SrcReg => i32::from(self.insn.src_reg()),
            Field::Off => i32::from(self.insn.off),
            Field::Imm | Field::Imm2 => self.insn.imm,
        };
        if value == 0 {
            Ok(())
        } else {
            Err(DecodeError::ReservedField {
                pc: self.pc,
                code: self.insn.code,
                field,
                value,
            })
        }
    }

    fn invalid(&self, field: Field, value: i32, expected: &'static str) -> DecodeError {
        DecodeError::InvalidField {
            pc: self.pc,
            code: self.insn.code,
            field,
            value,
            expected,
        }
    }

    fn reg(&self, field: Field) -> Result<Reg, DecodeError> {
        let n = match field {
            Field::SrcReg => self.insn.src_reg(),
            _ => self.insn.dst_reg(),
        };
        Reg::new(n).ok_or(DecodeError::InvalidRegister {
            pc: self.pc,
            code: self.insn.code,
            field,
            reg: n,
        })
    }

    fn dst(&self) -> Result<Reg, DecodeError> {
        self.reg(Field::DstReg)
    }

    fn src(&self) -> Result<Reg, DecodeError> {
        self.reg(Field::SrcReg)
    }
}

/// Decodes the instruction starting at slot `pc` of `insns`.
///
/// Returns the op and the number of slots it used (2 for `LD_IMM64`, else
/// 1). This is the building block of [`decode`]; call it directly to decode
/// lazily, one reachable instruction at a time.
///
/// # Errors
///
/// A [`DecodeError`] naming `pc` if the slot is malformed, or
/// [`DecodeError::TruncatedLdImm64`] if `pc` is out of range.
pub fn decode_at(insns: &[Insn], pc: usize) -> Result<(Op, usize), DecodeError> {
    let insn = insns.get(pc).ok_or(DecodeError::TruncatedLdImm64 { pc })?;
    let c = Check { pc, insn };
    let code = insn.code;
    let op = match oc::class(code) {
        oc::LD => return decode_ld(&c, insns.get(pc + 1)),
        oc::LDX => decode_ldx(&c)?,
        oc::ST => decode_st(&c)?,
        oc::STX => decode_stx(&c)?,
        oc::ALU => decode_alu(&c, Bits::B32)?,
        oc::ALU64 => decode_alu(&c, Bits::B64)?,
        oc::JMP => decode_jmp(&c, Bits::B64)?,
        _ => decode_jmp(&c, Bits::B32)?,
    };
    Ok((op, 1))
}

fn decode_ld(c: &Check<'_>, next: Option<&Insn>) -> Result<(Op, usize), DecodeError> {
    let code = c.code();
    let width = Width::from_code(code);
    match oc::mode(code) {
        oc::IMM if width == Width::DW => {
            let next = next.ok_or(DecodeError::TruncatedLdImm64 { pc: c.pc })?;
            if next.code != 0 || next.dst_reg() != 0 || next.src_reg() != 0 || next.off != 0 {
                return Err(DecodeError::InvalidLdImm64Tail {
                    pc: c.pc,
                    next: *next,
                });
            }
            let tail = Check {
                pc: c.pc,
                insn: next,
            };
            let (lo, hi) = (c.insn.imm, next.imm);
            let imm = match c.insn.src_reg() {
                oc::PSEUDO_IMM => Imm64::Const((u64::from(hi as u32) << 32) | u64::from(lo as u32)),
                oc::PSEUDO_MAP_FD => {
                    tail.zero(Field::Imm2)?;
                    Imm64::MapFd { fd: lo }
                }
                oc::PSEUDO_MAP_VALUE => Imm64::MapValue {
                    fd: lo,
                    offset: hi as u32,
                },
                oc::PSEUDO_BTF_ID => Imm64::BtfId {
                    btf_id: lo as u32,
                    btf_fd: hi,
                },
                oc::PSEUDO_FUNC => {
                    tail.zero(Field::Imm2)?;
                    Imm64::Func { offset: lo }
                }
                oc::PSEUDO_MAP_IDX => {
                    tail.zero(Field::Imm2)?;
                    Imm64::MapIdx { idx: lo as u32 }
                }
                oc::PSEUDO_MAP_IDX_VALUE => Imm64::MapIdxValue {
                    idx: lo as u32,
                    offset: hi as u32,
                },
                src => {
                    return Err(DecodeError::UnknownPseudoSrc {
                        pc: c.pc,
                        code,
                        src,
                    });
                }
            };
            c.zero(Field::Off)?;
            Ok((Op::LdImm64 { dst: c.dst()?, imm }, 2))
        }
        oc::ABS | oc::IND if width != Width::DW => {
            // check_ld_abs(): r0 is implied, off unused.
            c.zero(Field::DstReg)?;
            c.zero(Field::Off)?;
            let op = if oc::mode(code) == oc::ABS {
                c.zero(Field::SrcReg)?;
                Op::LdAbs {
                    width,
                    imm: c.insn.imm,
                }
            } else {
                Op::LdInd {
                    width,
                    src: c.src()?,
                    imm: c.insn.imm,
                }
            };
            Ok((op, 1))
        }
        _ => Err(c.unknown()),
    }
}

fn decode_ldx(c: &Check<'_>) -> Result<Op, DecodeError> {
    let code = c.code();
    let width = Width::from_code(code);
    let sx = match oc::mode(code) {
        oc::MEM => false,
        oc::MEMSX if width != Width::DW => true,
        _ => return Err(c.unknown()),
    };
    c.zero(Field::Imm)?;
    let (dst, src, off) = (c.dst()?, c.src()?, c.insn.off);
    Ok(if sx {
        Op::LoadSx {
            width,
            dst,
            src,
            off,
        }
    } else {
        Op::Load {
            width,
            dst,
            src,
            off,
        }
    })
}

fn decode_st(c: &Check<'_>) -> Result<Op, DecodeError> {
    if oc::mode(c.code()) != oc::MEM {
        return Err(c.unknown());
    }
    c.zero(Field::SrcReg)?;
    Ok(Op::Store {
        width: Width::from_code(c.code()),
        dst: c.dst()?,
        off: c.insn.off,
        src: Source::Imm(c.insn.imm),
    })
}

fn decode_stx(c: &Check<'_>) -> Result<Op, DecodeError> {
    let code = c.code();
    let width = Width::from_code(code);
    let (off, imm) = (c.insn.off, c.insn.imm);
    match oc::mode(code) {
        oc::MEM => {
            c.zero(Field::Imm)?;
            Ok(Op::Store {
                width,
                dst: c.dst()?,
                off,
                src: Source::Reg(c.src()?),
            })
        }
        oc::ATOMIC => {
            let bad = DecodeError::UnknownAtomicOp {
                pc: c.pc,
                code,
                imm,
            };
            if imm == oc::LOAD_ACQ {
                Ok(Op::LoadAcquire {
                    width,
                    dst: c.dst()?,
                    src: c.src()?,
                    off,
                })
            } else if imm == oc::STORE_REL {
                Ok(Op::StoreRelease {
                    width,
                    dst: c.dst()?,
                    off,
                    src: c.src()?,
                })
            } else {
                let op = AtomicOp::from_imm(imm).ok_or(bad.clone())?;
                if !matches!(width, Width::W | Width::DW) {
                    return Err(bad);
                }
                Ok(Op::Atomic {
                    width,
                    op,
                    dst: c.dst()?,
                    off,
                    src: c.src()?,
                })
            }
        }
        _ => Err(c.unknown()),
    }
}

fn decode_alu(c: &Check<'_>, bits: Bits) -> Result<Op, DecodeError> {
    let code = c.code();
    let (off, imm) = (c.insn.off, c.insn.imm);
    let is_x = oc::src(code) == oc::X;
    match oc::op(code) {
        oc::NEG => {
            if is_x {
                return Err(c.unknown());
            }
            c.zero(Field::SrcReg)?;
            c.zero(Field::Off)?;
            c.zero(Field::Imm)?;
            Ok(Op::Neg {
                bits,
                dst: c.dst()?,
            })
        }
        oc::END => {
            // ALU64 | END | TO_BE is not an instruction; ALU64 | END is bswap.
            if bits == Bits::B64 && is_x {
                return Err(c.unknown());
            }
            c.zero(Field::SrcReg)?;
            c.zero(Field::Off)?;
            let width = match Width::from_bits(i64::from(imm)) {
                Some(w @ (Width::H | Width::W | Width::DW)) => w,
                _ => return Err(c.invalid(Field::Imm, imm, "16, 32 or 64")),
            };
            let dst = c.dst()?;
            Ok(match (bits, is_x) {
                (Bits::B64, _) => Op::Bswap { width, dst },
                (Bits::B32, false) => Op::End {
                    order: Endian::Le,
                    width,
                    dst,
                },
                (Bits::B32, true) => Op::End {
                    order: Endian::Be,
                    width,
                    dst,
                },
            })
        }
        oc::MOV if is_x => {
            if bits == Bits::B64 && off == oc::ADDR_SPACE_CAST {
                if imm != 1 && imm != 1 << 16 {
                    return Err(c.invalid(Field::Imm, imm, "1 (as 1 to 0) or 0x10000 (as 0 to 1)"));
                }
                return Ok(Op::AddrSpaceCast {
                    dst: c.dst()?,
                    src: c.src()?,
                    dst_as: (imm as u32 >> 16) as u16,
                    src_as: imm as u16,
                });
            }
            let from = match (bits, off) {
                (_, 0) => None,
                (_, 8) => Some(Width::B),
                (_, 16) => Some(Width::H),
                (Bits::B64, 32) => Some(Width::W),
                (Bits::B32, _) => {
                    return Err(c.invalid(Field::Off, off.into(), "0, 8 or 16"));
                }
                (Bits::B64, _) => {
                    return Err(c.invalid(Field::Off, off.into(), "0, 1, 8, 16 or 32"));
                }
            };
            c.zero(Field::Imm)?;
            let (dst, src) = (c.dst()?, c.src()?);
            Ok(match from {
                None => Op::Alu {
                    bits,
                    op: AluOp::Mov,
                    dst,
                    src: Source::Reg(src),
                },
                Some(from) => Op::MovSx {
                    bits,
                    dst,
                    src,
                    from,
                },
            })
        }
        opc => {
            let op = match opc {
                oc::ADD => AluOp::Add,
                oc::SUB => AluOp::Sub,
                oc::MUL => AluOp::Mul,
                oc::DIV => AluOp::Div,
                oc::MOD => AluOp::Mod,
                oc::OR => AluOp::Or,
                oc::AND => AluOp::And,
                oc::XOR => AluOp::Xor,
                oc::LSH => AluOp::Lsh,
                oc::RSH => AluOp::Rsh,
                oc::ARSH => AluOp::Arsh,
                oc::MOV => AluOp::Mov,
                _ => return Err(c.unknown()),
            };
            // `off == 1` selects the signed variant of div and mod (cpu v4).
            let op = match (op, off) {
                (_, 0) => op,
                (AluOp::Div, 1) => AluOp::SDiv,
                (AluOp::Mod, 1) => AluOp::SMod,
                (AluOp::Div | AluOp::Mod, _) => {
                    return Err(c.invalid(Field::Off, off.into(), "0 or 1 (signed)"));
                }
                _ => {
                    c.zero(Field::Off)?;
                    op
                }
            };
            let src = if is_x {
                c.zero(Field::Imm)?;
                Source::Reg(c.src()?)
            } else {
                c.zero(Field::SrcReg)?;
                Source::Imm(imm)
            };
            Ok(Op::Alu {
                bits,
                op,
                dst: c.dst()?,
                src,
            })
        }
    }
}

fn decode_jmp(c: &Check<'_>, bits: Bits) -> Result<Op, DecodeError> {
    let code = c.code();
    let (off, imm) = (c.insn.off, c.insn.imm);
    let is_x = oc::src(code) == oc::X;
    let opc = oc::op(code);
    match (bits, opc) {
        (_, oc::JA) => {
            if is_x {
                return Err(c.unknown());
            }
            c.zero(Field::DstReg)?;
            c.zero(Field::SrcReg)?;
            if bits == Bits::B64 {
                c.zero(Field::Imm)?;
                Ok(Op::Ja { off })
            } else {
                c.zero(Field::Off)?;
                Ok(Op::Gotol { off: imm })
            }
        }
        (Bits::B64, oc::CALL) if !is_x => {
            c.zero(Field::DstReg)?;
            let target = match c.insn.src_reg() {
                oc::CALL_HELPER => {
                    c.zero(Field::Off)?;
                    CallTarget::Helper { id: imm }
                }
                oc::PSEUDO_CALL => {
                    c.zero(Field::Off)?;
                    CallTarget::Local { offset: imm }
                }
                oc::PSEUDO_KFUNC_CALL => CallTarget::Kfunc {
                    btf_id: imm as u32,
                    btf_fd_idx: off,
                },
                src => {
                    return Err(DecodeError::UnknownPseudoSrc {
                        pc: c.pc,
                        code,
                        src,
                    });
                }
            };
            Ok(Op::Call(target))
        }
        (Bits::B64, oc::EXIT) if !is_x => {
            c.zero(Field::DstReg)?;
            c.zero(Field::SrcReg)?;
            c.zero(Field::Off)?;
            c.zero(Field::Imm)?;
            Ok(Op::Exit)
        }
        (Bits::B64, oc::JCOND) if !is_x => {
            if c.insn.src_reg() != oc::MAY_GOTO {
                return Err(DecodeError::UnknownPseudoSrc {
                    pc: c.pc,
                    code,
                    src: c.insn.src_reg(),
                });
            }
            c.zero(Field::DstReg)?;
            c.zero(Field::Imm)?;
            if off == 0 {
                return Err(c.invalid(Field::Off, 0, "a non-zero jump offset"));
            }
            Ok(Op::MayGoto { off })
        }
        _ => {
            let cond = Cond::from_op_code(opc).ok_or_else(|| c.unknown())?;
            let src = if is_x {
                c.zero(Field::Imm)?;
                Source::Reg(c.src()?)
            } else {
                c.zero(Field::SrcReg)?;
                Source::Imm(imm)
            };
            Ok(Op::Jmp {
                bits,
                cond,
                dst: c.dst()?,
                src,
                off,
            })
        }
    }
}

/// A decoded program: its ops together with the slot index each starts at.
///
/// Slot indices (`pc`) are what jump offsets, call offsets, line info and
/// verifier logs count in; an `LD_IMM64` covers two of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    ops: Vec<Op>,
    pcs: Vec<usize>,
    slots: usize,
}

impl Program {
    /// Decodes every instruction of `insns`; see [`decode`].
    ///
    /// # Errors
    ///
    /// The first malformed instruction's [`DecodeError`].
    pub fn decode(insns: &[Insn]) -> Result<Self, DecodeError> {
        let mut prog = Program::default();
        let mut pc = 0;
        while pc < insns.len() {
            let (op, n) = decode_at(insns, pc)?;
            prog.push(op);
            pc += n;
        }
        Ok(prog)
    }

    /// Splits `bytes` into slots and decodes them.
    ///
    /// # Errors
    ///
    /// [`Error::Parse`] for a length that is not a multiple of 8, otherwise
    /// [`Error::Decode`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Ok(Self::decode(&Insn::parse_slice(bytes)?)?)
    }

    /// Builds a program from ops, assigning slot indices in order.
    pub fn from_ops(ops: impl IntoIterator<Item = Op>) -> Self {
        let mut prog = Program::default();
        for op in ops {
            prog.push(op);
        }
        prog
    }

    /// Appends an op after the last one.
    pub fn push(&mut self, op: Op) {
        self.pcs.push(self.slots);
        self.slots += op.slots();
        self.ops.push(op);
    }

    /// The ops in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The ops with the slot index each starts at.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (usize, Op)> + '_ {
        self.pcs.iter().copied().zip(self.ops.iter().copied())
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the program has no ops.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of instruction slots (the kernel's `insn_cnt`).
    pub fn slot_count(&self) -> usize {
        self.slots
    }

    /// Index into [`Program::ops`] of the op starting at slot `pc`; `None`
    /// past the end or in the middle of an `LD_IMM64`.
    pub fn index_of_pc(&self, pc: usize) -> Option<usize> {
        self.pcs.binary_search(&pc).ok()
    }

    /// The op starting at slot `pc`; `None` past the end or in the middle of
    /// an `LD_IMM64`.
    pub fn op_at(&self, pc: usize) -> Option<Op> {
        self.index_of_pc(pc).and_then(|i| self.ops.get(i).copied())
    }

    /// The slot index of the op at index `i` of [`Program::ops`].
    pub fn pc_of(&self, i: usize) -> Option<usize> {
        self.pcs.get(i).copied()
    }

    /// Encodes the program back into slots.
    pub fn encode(&self) -> Vec<Insn> {
        let mut out = Vec::with_capacity(self.slots);
        for op in &self.ops {
            out.extend_from_slice(&op.encode());
        }
        out
    }

    /// Encodes the program as little-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        Insn::slice_to_bytes(&self.encode())
    }
}

impl FromIterator<Op> for Program {
    fn from_iter<I: IntoIterator<Item = Op>>(iter: I) -> Self {
        Program::from_ops(iter)
    }
}

/// Decodes a whole program, validating every instruction and the two-slot
/// shape of `LD_IMM64`.
///
/// # Errors
///
/// The first malformed instruction's [`DecodeError`].
///
/// ```
/// use structops_isa::{AluOp, Bits, DecodeError, Insn, Op, Reg, Source, decode};
///
/// // r0 = 7; exit
/// let prog = decode(&[Insn::new(0xb7, 0, 0, 0, 7), Insn::new(0x95, 0, 0, 0, 0)])?;
/// let mov = Op::Alu { bits: Bits::B64, op: AluOp::Mov, dst: Reg::R0, src: Source::Imm(7) };
/// assert_eq!(prog.ops(), [mov, Op::Exit]);
///
/// // The kernel's structural checks: fields an instruction does not use must be 0...
/// let stray_src = [Insn::new(0xb7, 0, 1, 0, 7), Insn::new(0x95, 0, 0, 0, 0)];
/// assert!(matches!(decode(&stray_src), Err(DecodeError::ReservedField { pc: 0, .. })));
/// // ...and LD_IMM64 needs its second slot.
/// let half = [Insn::new(0x18, 1, 0, 0, 1)];
/// assert_eq!(decode(&half), Err(DecodeError::TruncatedLdImm64 { pc: 0 }));
/// # Ok::<(), DecodeError>(())
/// ```
pub fn decode(insns: &[Insn]) -> Result<Program, DecodeError> {
    Program::decode(insns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Result<Op, DecodeError> {
        decode_at(&[Insn::new(code, dst, src, off, imm)], 0).map(|(op, _)| op)
    }

    #[test]
    fn decodes_basic_alu() {
        assert_eq!(
            one(0xb7, 0, 0, 0, 0),
            Ok(Op::Alu {
                bits: Bits::B64,
                op: AluOp::Mov,
                dst: Reg::R0,
                src: Source::Imm(0)
            })
        );
        assert_eq!(
            one(0x3f, 1, 2, 1, 0),
            Ok(Op::Alu {
                bits: Bits::B64,
                op: AluOp::SDiv,
                dst: Reg::R1,
                src: Source::Reg(Reg::R2)
            })
        );
        assert_eq!(
            one(0xbc, 1, 2, 8, 0),
            Ok(Op::MovSx {
                bits: Bits::B32,
                dst: Reg::R1,
                src: Reg::R2,
                from: Width::B
            })
        );
    }

    #[test]
    fn rejects_unknown_opcodes() {
        for code in [
            0x8c, 0xdf, 0x86, 0x8d, 0x96, 0x0d, 0xe4, 0xf7, 0xf5, 0x99, 0xa0,
        ] {
            assert_eq!(
                one(code, 0, 0, 0, 0),
                Err(DecodeError::UnknownOpcode { pc: 0, code }),
                "{code:#x}"
            );
        }
    }

    #[test]
    fn rejects_reserved_fields() {
        // mov r0, 1 with src_reg set.
        assert!(matches!(
            one(0xb7, 0, 1, 0, 1),
            Err(DecodeError::ReservedField {
                field: Field::SrcReg,
                value: 1,
                ..
            })
        ));
        // add r0, r1 with imm set.
        assert!(matches!(
            one(0x0f, 0, 1, 0, 1),
            Err(DecodeError::ReservedField {
                field: Field::Imm,
                ..
            })
        ));
        // add with off 1 (only div/mod are signed).
        assert!(matches!(
            one(0x07, 0, 0, 1, 1),
            Err(DecodeError::ReservedField {
                field: Field::Off,
                ..
            })
        ));
        assert!(matches!(
            one(0x37, 0, 0, 2, 1),
            Err(DecodeError::InvalidField {
                field: Field::Off,
                ..
            })
        ));
        // w-mov sign-extending from 32 bits is not defined.
        assert!(matches!(
            one(0xbc, 0, 1, 32, 0),
            Err(DecodeError::InvalidField {
                field: Field::Off,
                ..
            })
        ));
        // ldx with imm.
        assert!(matches!(
            one(0x61, 0, 1, 0, 3),
            Err(DecodeError::ReservedField {
                field: Field::Imm,
                ..
            })
        ));
        // exit with imm.
        assert!(matches!(
            one(0x95, 0, 0, 0, 3),
            Err(DecodeError::ReservedField {
                field: Field::Imm,
                ..
            })
        ));
        // ja with imm, gotol with off.
        assert!(matches!(
            one(0x05, 0, 0, 1, 3),
            Err(DecodeError::ReservedField {
                field: Field::Imm,
                ..
            })
        ));
        assert!(matches!(
            one(0x06, 0, 0, 1, 3),
            Err(DecodeError::ReservedField {
                field: Field::Off,
                ..
            })
        ));
        // helper call with off.
        assert!(matches!(
            one(0x85, 0, 0, 1, 3),
            Err(DecodeError::ReservedField {
                field: Field::Off,
                ..
            })
        ));
        // may_goto with zero offset.
        assert!(matches!(
            one(0xe5, 0, 0, 0, 0),
            Err(DecodeError::InvalidField {
                field: Field::Off,
                ..
            })
        ));
        // end with bad width.
        assert!(matches!(
            one(0xd4, 1, 0, 0, 8),
            Err(DecodeError::InvalidField {
                field: Field::Imm,
                value: 8,
                ..
            })
        ));
        // ld_abs with dst.
        assert!(matches!(
            one(0x30, 1, 0, 0, 8),
            Err(DecodeError::ReservedField {
                field: Field::DstReg,
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_pseudo_sources() {
        // call with src_reg 3 selects nothing.
        assert_eq!(
            one(0x85, 0, 3, 0, 1),
            Err(DecodeError::UnknownPseudoSrc {
                pc: 0,
                code: 0x85,
                src: 3
            })
        );
        // JCOND with a condition other than may_goto.
        assert!(matches!(
            one(0xe5, 0, 1, 1, 0),
            Err(DecodeError::UnknownPseudoSrc { src: 1, .. })
        ));
        // addr_space_cast only converts between address spaces 0 and 1.
        assert!(matches!(
            one(0xbf, 1, 2, 1, 2),
            Err(DecodeError::InvalidField {
                field: Field::Imm,
                value: 2,
                ..
            })
        ));
        // The kernel-internal per-cpu move (off -1) is not public encoding.
        assert!(matches!(
            one(0xbf, 1, 2, -1, 0),
            Err(DecodeError::InvalidField {
                field: Field::Off,
                value: -1,
                ..
            })
        ));
        // kfunc calls keep their module BTF index in off.
        assert_eq!(
            one(0x85, 0, 2, 4, 99),
            Ok(Op::Call(CallTarget::Kfunc {
                btf_id: 99,
                btf_fd_idx: 4
            }))
        );
        // ld_ind uses src_reg; ld_abs must not.
        assert_eq!(
            one(0x40, 0, 7, 0, -2),
            Ok(Op::LdInd {
                width: Width::W,
                src: Reg::R7,
                imm: -2
            })
        );
        assert!(matches!(
            one(0x20, 0, 7, 0, 0),
            Err(DecodeError::ReservedField {
                field: Field::SrcReg,
                ..
            })
        ));
        // exit's off is ignored by the kernel but must be 0 here.
        assert!(matches!(
            one(0x95, 0, 0, 1, 0),
            Err(DecodeError::ReservedField {
                field: Field::Off,
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_registers() {
        assert_eq!(
            one(0xbf, 11, 1, 0, 0),
            Err(DecodeError::InvalidRegister {
                pc: 0,
                code: 0xbf,
                field: Field::DstReg,
                reg: 11
            })
        );
        assert_eq!(
            one(0x61, 1, 15, 0, 0),
            Err(DecodeError::InvalidRegister {
                pc: 0,
                code: 0x61,
                field: Field::SrcReg,
                reg: 15
            })
        );
        // r10 as a destination is a verifier matter.
        assert!(one(0xb7, 10, 0, 0, 0).is_ok());
    }

    #[test]
    fn atomics() {
        assert_eq!(
            one(0xdb, 1, 2, -8, 0x01),
            Ok(Op::Atomic {
                width: Width::DW,
                op: AtomicOp::FetchAdd,
                dst: Reg::R1,
                off: -8,
                src: Reg::R2
            })
        );
        assert_eq!(
            one(0xdb, 1, 2, 0, 0x02),
            Err(DecodeError::UnknownAtomicOp {
                pc: 0,
                code: 0xdb,
                imm: 2
            })
        );
        // Byte-wide read-modify-write is not defined ...
        assert!(matches!(
            one(0xd3, 1, 2, 0, 0),
            Err(DecodeError::UnknownAtomicOp { .. })
        ));
        // ... but byte-wide load-acquire is.
        assert_eq!(
            one(0xd3, 0, 1, 0, 0x100),
            Ok(Op::LoadAcquire {
                width: Width::B,
                dst: Reg::R0,
                src: Reg::R1,
                off: 0
            })
        );
    }

    #[test]
    fn ld_imm64_shapes() {
        let first = Insn::new(0x18, 1, 0, 0, 0x10);
        let second = Insn::new(0, 0, 0, 0, 0x20);
        assert_eq!(
            decode_at(&[first, second], 0),
            Ok((
                Op::LdImm64 {
                    dst: Reg::R1,
                    imm: Imm64::Const(0x20_0000_0010)
                },
                2
            ))
        );
        assert_eq!(
            decode_at(&[first], 0),
            Err(DecodeError::TruncatedLdImm64 { pc: 0 })
        );
        let bad = Insn::new(0x95, 0, 0, 0, 0);
        assert_eq!(
            decode_at(&[first, bad], 0),
            Err(DecodeError::InvalidLdImm64Tail { pc: 0, next: bad })
        );
        let map = Insn::new(0x18, 1, 1, 0, 3);
        assert!(matches!(
            decode_at(&[map, second], 0),
            Err(DecodeError::ReservedField {
                field: Field::Imm2,
                ..
            })
        ));
        let weird = Insn::new(0x18, 1, 7, 0, 3);
        assert_eq!(
            decode_at(&[weird, second], 0),
            Err(DecodeError::UnknownPseudoSrc {
                pc: 0,
                code: 0x18,
                src: 7
            })
        );
        let value = Insn::new(0x18, 2, 2, 0, 3);
        assert_eq!(
            decode_at(&[value, second], 0),
            Ok((
                Op::LdImm64 {
                    dst: Reg::R2,
                    imm: Imm64::MapValue {
                        fd: 3,
                        offset: 0x20
                    }
                },
                2
            ))
        );
    }

    #[test]
    fn program_tracks_slot_indices() {
        let insns = [
            Insn::new(0x18, 1, 0, 0, 1),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(0xb7, 0, 0, 0, 0),
            Insn::new(0x95, 0, 0, 0, 0),
        ];
        let prog = decode(&insns).unwrap();
        assert_eq!(prog.len(), 3);
        assert_eq!(prog.slot_count(), 4);
        assert_eq!(prog.index_of_pc(2), Some(1));
        assert_eq!(prog.op_at(1), None);
        assert_eq!(prog.op_at(3), Some(Op::Exit));
        assert_eq!(prog.pc_of(2), Some(3));
        assert_eq!(prog.encode(), insns);
        let pcs: Vec<usize> = prog.iter().map(|(pc, _)| pc).collect();
        assert_eq!(pcs, vec![0, 2, 3]);
        // The error names the slot.
        let err = decode(&[insns[0], insns[2]]).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidLdImm64Tail {
                pc: 0,
                next: insns[2]
            }
        );
        assert_eq!(err.pc(), 0);
        assert_eq!(
            Program::from_bytes(&[0; 9]),
            Err(Error::Parse(ParseError::InvalidLength { len: 9 }))
        );
    }
}
