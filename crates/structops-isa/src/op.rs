//! The typed instruction, [`Op`], and its encoding back to raw slots.

use std::ops::Deref;

use crate::insn::Insn;
use crate::opcode as oc;
use crate::reg::Reg;

/// Whether an ALU or JMP operation works on 32 or 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bits {
    /// `ALU` / `JMP32`: the low 32 bits (`wN`); ALU results are zero-extended.
    B32,
    /// `ALU64` / `JMP`: the whole 64-bit register (`rN`).
    B64,
}

impl Bits {
    /// The letter the kernel's disassembler uses for registers of this width.
    pub const fn reg_prefix(self) -> char {
        match self {
            Bits::B32 => 'w',
            Bits::B64 => 'r',
        }
    }
}

/// The access width of loads, stores and atomics (`BPF_SIZE`), also reused
/// for the 16/32/64-bit variants of byte swaps and sign extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    /// 8 bits.
    B,
    /// 16 bits.
    H,
    /// 32 bits.
    W,
    /// 64 bits.
    DW,
}

impl Width {
    /// All widths, narrowest first.
    pub const ALL: [Width; 4] = [Width::B, Width::H, Width::W, Width::DW];

    /// Size in bytes: 1, 2, 4 or 8.
    pub const fn bytes(self) -> usize {
        match self {
            Width::B => 1,
            Width::H => 2,
            Width::W => 4,
            Width::DW => 8,
        }
    }

    /// Size in bits: 8, 16, 32 or 64.
    pub const fn bits(self) -> u32 {
        (self.bytes() as u32) * 8
    }

    /// The `BPF_SIZE` field value.
    pub const fn size_code(self) -> u8 {
        match self {
            Width::B => oc::B,
            Width::H => oc::H,
            Width::W => oc::W,
            Width::DW => oc::DW,
        }
    }

    /// The width whose `BPF_SIZE` field is `size_code(code)`.
    pub const fn from_code(code: u8) -> Width {
        match oc::size(code) {
            oc::B => Width::B,
            oc::H => Width::H,
            oc::W => Width::W,
            _ => Width::DW,
        }
    }

    /// The width of `bits` bits, if it is 8, 16, 32 or 64.
    pub const fn from_bits(bits: i64) -> Option<Width> {
        match bits {
            8 => Some(Width::B),
            16 => Some(Width::H),
            32 => Some(Width::W),
            64 => Some(Width::DW),
            _ => None,
        }
    }

    /// The unsigned C type name the disassembler prints (`u8` .. `u64`).
    pub const fn unsigned_name(self) -> &'static str {
        match self {
            Width::B => "u8",
            Width::H => "u16",
            Width::W => "u32",
            Width::DW => "u64",
        }
    }

    /// The signed C type name the disassembler prints (`s8` .. `s64`).
    pub const fn signed_name(self) -> &'static str {
        match self {
            Width::B => "s8",
            Width::H => "s16",
            Width::W => "s32",
            Width::DW => "s64",
        }
    }
}

/// The second operand of ALU, JMP and store instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// `BPF_K`: the 32-bit immediate (sign-extended for 64-bit operations).
    Imm(i32),
    /// `BPF_X`: a register.
    Reg(Reg),
}

impl From<Reg> for Source {
    fn from(r: Reg) -> Source {
        Source::Reg(r)
    }
}

impl From<i32> for Source {
    fn from(imm: i32) -> Source {
        Source::Imm(imm)
    }
}

/// A two-operand ALU operation (`BPF_OP` of the `ALU`/`ALU64` classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `dst += src`
    Add,
    /// `dst -= src`
    Sub,
    /// `dst *= src`
    Mul,
    /// `dst /= src`, unsigned; division by zero yields 0.
    Div,
    /// `dst s/= src`, signed (cpu v4, `DIV` with `off == 1`).
    SDiv,
    /// `dst %= src`, unsigned; modulo by zero leaves `dst` unchanged.
    Mod,
    /// `dst s%= src`, signed (cpu v4, `MOD` with `off == 1`).
    SMod,
    /// `dst |= src`
    Or,
    /// `dst &= src`
    And,
    /// `dst ^= src`
    Xor,
    /// `dst <<= src`
    Lsh,
    /// `dst >>= src`, logical.
    Rsh,
    /// `dst s>>= src`, arithmetic.
    Arsh,
    /// `dst = src`
    Mov,
}

impl AluOp {
    /// Every ALU operation.
    pub const ALL: [AluOp; 14] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Or,
        AluOp::And,
        AluOp::Xor,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Arsh,
        AluOp::Mov,
    ];

    /// The `BPF_OP` bits and the `off` value that select this operation.
    pub const fn encoding(self) -> (u8, i16) {
        match self {
            AluOp::Add => (oc::ADD, 0),
            AluOp::Sub => (oc::SUB, 0),
            AluOp::Mul => (oc::MUL, 0),
            AluOp::Div => (oc::DIV, 0),
            AluOp::SDiv => (oc::DIV, 1),
            AluOp::Mod => (oc::MOD, 0),
            AluOp::SMod => (oc::MOD, 1),
            AluOp::Or => (oc::OR, 0),
            AluOp::And => (oc::AND, 0),
            AluOp::Xor => (oc::XOR, 0),
            AluOp::Lsh => (oc::LSH, 0),
            AluOp::Rsh => (oc::RSH, 0),
            AluOp::Arsh => (oc::ARSH, 0),
            AluOp::Mov => (oc::MOV, 0),
        }
    }

    /// The compound-assignment spelling of the kernel's disassembler (`+=`).
    pub const fn symbol(self) -> &'static str {
        match self {
            AluOp::Add => "+=",
            AluOp::Sub => "-=",
            AluOp::Mul => "*=",
            AluOp::Div => "/=",
            AluOp::SDiv => "s/=",
            AluOp::Mod => "%=",
            AluOp::SMod => "s%=",
            AluOp::Or => "|=",
            AluOp::And => "&=",
            AluOp::Xor => "^=",
            AluOp::Lsh => "<<=",
            AluOp::Rsh => ">>=",
            AluOp::Arsh => "s>>=",
            AluOp::Mov => "=",
        }
    }
}

/// The condition of a conditional jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>` unsigned
    Gt,
    /// `>=` unsigned
    Ge,
    /// `<` unsigned
    Lt,
    /// `<=` unsigned
    Le,
    /// `s>` signed
    Sgt,
    /// `s>=` signed
    Sge,
    /// `s<` signed
    Slt,
    /// `s<=` signed
    Sle,
    /// `&` (jump if any bit is common)
    Set,
}

impl Cond {
    /// Every condition.
    pub const ALL: [Cond; 11] = [
        Cond::Eq,
        Cond::Ne,
        Cond::Gt,
        Cond::Ge,
        Cond::Lt,
        Cond::Le,
        Cond::Sgt,
        Cond::Sge,
        Cond::Slt,
        Cond::Sle,
        Cond::Set,
    ];

    /// The `BPF_OP` bits of this condition.
    pub const fn op_code(self) -> u8 {
        match self {
            Cond::Eq => oc::JEQ,
            Cond::Ne => oc::JNE,
            Cond::Gt => oc::JGT,
            Cond::Ge => oc::JGE,
            Cond::Lt => oc::JLT,
            Cond::Le => oc::JLE,
            Cond::Sgt => oc::JSGT,
            Cond::Sge => oc::JSGE,
            Cond::Slt => oc::JSLT,
            Cond::Sle => oc::JSLE,
            Cond::Set => oc::JSET,
        }
    }

    /// The condition whose `BPF_OP` bits are `op`.
    pub const fn from_op_code(op: u8) -> Option<Cond> {
        Some(match op {
            oc::JEQ => Cond::Eq,
            oc::JNE => Cond::Ne,
            oc::JGT => Cond::Gt,
            oc::JGE => Cond::Ge,
            oc::JLT => Cond::Lt,
            oc::JLE => Cond::Le,
            oc::JSGT => Cond::Sgt,
            oc::JSGE => Cond::Sge,
            oc::JSLT => Cond::Slt,
            oc::JSLE => Cond::Sle,
            oc::JSET => Cond::Set,
            _ => return None,
        })
    }

    /// The operator the kernel's disassembler prints (`==`, `s>`, `&`, ...).
    pub const fn symbol(self) -> &'static str {
        match self {
            Cond::Eq => "==",
            Cond::Ne => "!=",
            Cond::Gt => ">",
            Cond::Ge => ">=",
            Cond::Lt => "<",
            Cond::Le => "<=",
            Cond::Sgt => "s>",
            Cond::Sge => "s>=",
            Cond::Slt => "s<",
            Cond::Sle => "s<=",
            Cond::Set => "&",
        }
    }
}

/// Byte order of the `ALU | END` conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endian {
    /// `le16`/`le32`/`le64`: to little endian (a truncation on LE hosts).
    Le,
    /// `be16`/`be32`/`be64`: to big endian (a swap on LE hosts).
    Be,
}

/// Read-modify-write operations of `STX | ATOMIC` (the value in `imm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `lock *(dst + off) += src`
    Add,
    /// `lock *(dst + off) &= src`
    And,
    /// `lock *(dst + off) |= src`
    Or,
    /// `lock *(dst + off) ^= src`
    Xor,
    /// `src = atomic_fetch_add(dst + off, src)`
    FetchAdd,
    /// `src = atomic_fetch_and(dst + off, src)`
    FetchAnd,
    /// `src = atomic_fetch_or(dst + off, src)`
    FetchOr,
    /// `src = atomic_fetch_xor(dst + off, src)`
    FetchXor,
    /// `src = atomic_xchg(dst + off, src)`
    Xchg,
    /// `r0 = atomic_cmpxchg(dst + off, r0, src)`
    CmpXchg,
}

impl AtomicOp {
    /// Every read-modify-write operation.
    pub const ALL: [AtomicOp; 10] = [
        AtomicOp::Add,
        AtomicOp::And,
        AtomicOp::Or,
        AtomicOp::Xor,
        AtomicOp::FetchAdd,
        AtomicOp::FetchAnd,
        AtomicOp::FetchOr,
        AtomicOp::FetchXor,
        AtomicOp::Xchg,
        AtomicOp::CmpXchg,
    ];

    /// The `imm` value that selects this operation.
    pub const fn imm(self) -> i32 {
        match self {
            AtomicOp::Add => oc::ATOMIC_ADD,
            AtomicOp::And => oc::ATOMIC_AND,
            AtomicOp::Or => oc::ATOMIC_OR,
            AtomicOp::Xor => oc::ATOMIC_XOR,
            AtomicOp::FetchAdd => oc::ATOMIC_ADD | oc::FETCH,
            AtomicOp::FetchAnd => oc::ATOMIC_AND | oc::FETCH,
            AtomicOp::FetchOr => oc::ATOMIC_OR | oc::FETCH,
            AtomicOp::FetchXor => oc::ATOMIC_XOR | oc::FETCH,
            AtomicOp::Xchg => oc::XCHG,
            AtomicOp::CmpXchg => oc::CMPXCHG,
        }
    }

    /// The operation selected by `imm`, if it is a read-modify-write one.
    pub const fn from_imm(imm: i32) -> Option<AtomicOp> {
        let mut i = 0;
        while i < AtomicOp::ALL.len() {
            if AtomicOp::ALL[i].imm() == imm {
                return Some(AtomicOp::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// Whether the old memory value is loaded into a register (`src`, or
    /// `r0` for [`AtomicOp::CmpXchg`]).
    pub const fn fetches(self) -> bool {
        self.imm() & oc::FETCH != 0
    }
}

/// The payload of a `LD_IMM64`, selected by its pseudo source (`src_reg`).
///
/// Every variant keeps the raw fields losslessly, so object loaders can
/// rewrite them (for example [`Imm64::MapIdx`] to [`Imm64::MapFd`]) and
/// re-encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Imm64 {
    /// Source 0: a plain 64-bit constant.
    Const(u64),
    /// Source 1 (`BPF_PSEUDO_MAP_FD`): the map with this fd (the kernel's
    /// xlated dumps put the map id here instead).
    MapFd {
        /// The map fd (or id in a dump).
        fd: i32,
    },
    /// Source 2 (`BPF_PSEUDO_MAP_VALUE`): address of byte `offset` of the
    /// value of a single-element map (global data).
    MapValue {
        /// The map fd (or id in a dump).
        fd: i32,
        /// Byte offset into the value (second slot's `imm`).
        offset: u32,
    },
    /// Source 3 (`BPF_PSEUDO_BTF_ID`): address of a kernel variable (ksym).
    BtfId {
        /// BTF id of the `VAR`.
        btf_id: u32,
        /// Fd of the module BTF holding it, 0 for vmlinux (second slot's `imm`).
        btf_fd: i32,
    },
    /// Source 4 (`BPF_PSEUDO_FUNC`): address of the subprogram at
    /// `pc + offset + 1` (a callback).
    Func {
        /// Offset of the callback relative to the next instruction slot.
        offset: i32,
    },
    /// Source 5 (`BPF_PSEUDO_MAP_IDX`): the map at `fd_array[idx]`.
    MapIdx {
        /// Index into the `fd_array` load attribute.
        idx: u32,
    },
    /// Source 6 (`BPF_PSEUDO_MAP_IDX_VALUE`): byte `offset` of the value of
    /// the map at `fd_array[idx]`.
    MapIdxValue {
        /// Index into the `fd_array` load attribute.
        idx: u32,
        /// Byte offset into the value (second slot's `imm`).
        offset: u32,
    },
}

impl Imm64 {
    /// The pseudo source number (`src_reg` of the first slot).
    pub const fn pseudo_src(&self) -> u8 {
        match self {
            Imm64::Const(_) => oc::PSEUDO_IMM,
            Imm64::MapFd { .. } => oc::PSEUDO_MAP_FD,
            Imm64::MapValue { .. } => oc::PSEUDO_MAP_VALUE,
            Imm64::BtfId { .. } => oc::PSEUDO_BTF_ID,
            Imm64::Func { .. } => oc::PSEUDO_FUNC,
            Imm64::MapIdx { .. } => oc::PSEUDO_MAP_IDX,
            Imm64::MapIdxValue { .. } => oc::PSEUDO_MAP_IDX_VALUE,
        }
    }

    /// The two 32-bit `imm` fields: first slot, second slot.
    pub const fn imm_pair(&self) -> (i32, i32) {
        match *self {
            Imm64::Const(v) => (v as u32 as i32, (v >> 32) as u32 as i32),
            Imm64::MapFd { fd } => (fd, 0),
            Imm64::MapValue { fd, offset } => (fd, offset as i32),
            Imm64::BtfId { btf_id, btf_fd } => (btf_id as i32, btf_fd),
            Imm64::Func { offset } => (offset, 0),
            Imm64::MapIdx { idx } => (idx as i32, 0),
            Imm64::MapIdxValue { idx, offset } => (idx as i32, offset as i32),
        }
    }

    /// The 64-bit value the two `imm` fields spell, `imm2 << 32 | imm1`
    /// (what the kernel's disassembler prints for unnamed sources).
    pub const fn raw(&self) -> u64 {
        let (lo, hi) = self.imm_pair();
        ((hi as u32 as u64) << 32) | (lo as u32 as u64)
    }
}

/// What a `CALL` instruction calls, selected by its `src_reg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallTarget {
    /// `src_reg == 0`: the helper function with this id (`BPF_FUNC_*`).
    Helper {
        /// Helper id (`imm`); the kernel rewrites it to an address offset
        /// after verification, so dumps can carry any value.
        id: i32,
    },
    /// `src_reg == 1` (`BPF_PSEUDO_CALL`): the BPF subprogram at
    /// `pc + offset + 1`.
    Local {
        /// Offset relative to the next instruction slot (`imm`).
        offset: i32,
    },
    /// `src_reg == 2` (`BPF_PSEUDO_KFUNC_CALL`): a kernel function.
    Kfunc {
        /// BTF id of the `FUNC` (`imm`).
        btf_id: u32,
        /// Index into `fd_array` of the module BTF defining it, 0 for
        /// vmlinux (`off`).
        btf_fd_idx: i16,
    },
}

/// One decoded eBPF instruction.
///
/// Produced once by [`decode`](crate::decode()) and matched on by every later
/// stage. Every field is one the encoding actually uses, and every value
/// round-trips through [`Op::encode`] (for ops that [`Op::validate`] accepts).
/// Register operands that the instruction only reads or writes are plain
/// [`Reg`]s; memory operands are `(base register, off)` pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `dst op= src` for the two-operand ALU operations, including `mov`.
    Alu {
        /// 32- or 64-bit operation.
        bits: Bits,
        /// The operation.
        op: AluOp,
        /// Destination (and first operand).
        dst: Reg,
        /// Second operand.
        src: Source,
    },
    /// `dst = -dst`
    Neg {
        /// 32- or 64-bit operation.
        bits: Bits,
        /// The register negated in place.
        dst: Reg,
    },
    /// `dst = (s8/s16/s32)src`, sign-extending move (cpu v4, `MOV | X` with
    /// `off` 8, 16 or 32; 32 is only valid for 64-bit moves).
    MovSx {
        /// 32- or 64-bit operation.
        bits: Bits,
        /// Destination.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// Width of the low part of `src` that is sign-extended (B, H or W).
        from: Width,
    },
    /// `dst = le16/le32/le64 dst` or `be..`: `ALU | END` byte-order conversion.
    End {
        /// Target byte order.
        order: Endian,
        /// Converted width (H, W or DW).
        width: Width,
        /// The register converted in place.
        dst: Reg,
    },
    /// `dst = bswap16/32/64 dst`: unconditional swap (cpu v4, `ALU64 | END`).
    Bswap {
        /// Swapped width (H, W or DW).
        width: Width,
        /// The register swapped in place.
        dst: Reg,
    },
    /// `dst = addr_space_cast(src, dst_as, src_as)`: arena pointer cast
    /// (`ALU64 | MOV | X` with `off == 1`).
    AddrSpaceCast {
        /// Destination.
        dst: Reg,
        /// Source pointer.
        src: Reg,
        /// Address space of the result (high half of `imm`).
        dst_as: u16,
        /// Address space of the source (low half of `imm`).
        src_as: u16,
    },
    /// `if dst cond src goto pc + off + 1`
    Jmp {
        /// Compare 64 bits (`JMP`) or the low 32 (`JMP32`).
        bits: Bits,
        /// The condition.
        cond: Cond,
        /// First operand.
        dst: Reg,
        /// Second operand.
        src: Source,
        /// Jump offset relative to the next slot.
        off: i16,
    },
    /// `goto pc + off + 1` (`JMP | JA`).
    Ja {
        /// Jump offset relative to the next slot.
        off: i16,
    },
    /// `gotol pc + off + 1`: long jump with a 32-bit offset (cpu v4,
    /// `JMP32 | JA`, offset in `imm`).
    Gotol {
        /// Jump offset relative to the next slot.
        off: i32,
    },
    /// `may_goto pc + off + 1`: jump once the loop budget is exhausted,
    /// fall through otherwise (`JMP | JCOND`, `src_reg == BPF_MAY_GOTO`).
    MayGoto {
        /// Jump offset relative to the next slot; never 0.
        off: i16,
    },
    /// `call` a helper, subprogram or kfunc.
    Call(CallTarget),
    /// `exit`: return `r0` from the current function.
    Exit,
    /// `dst = *(width *)(src + off)`, zero-extending (`LDX | MEM`).
    Load {
        /// Access width.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Base pointer.
        src: Reg,
        /// Byte offset from `src`.
        off: i16,
    },
    /// `dst = *(s8/s16/s32 *)(src + off)`, sign-extending (cpu v4,
    /// `LDX | MEMSX`; width B, H or W).
    LoadSx {
        /// Access width.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Base pointer.
        src: Reg,
        /// Byte offset from `src`.
        off: i16,
    },
    /// `*(width *)(dst + off) = src`: `STX | MEM` for a register source,
    /// `ST | MEM` for an immediate.
    Store {
        /// Access width.
        width: Width,
        /// Base pointer.
        dst: Reg,
        /// Byte offset from `dst`.
        off: i16,
        /// Stored value; an immediate is truncated (or sign-extended for DW).
        src: Source,
    },
    /// Atomic read-modify-write on `*(width *)(dst + off)` with operand
    /// `src` (`STX | ATOMIC`, width W or DW).
    Atomic {
        /// Access width.
        width: Width,
        /// The operation.
        op: AtomicOp,
        /// Base pointer.
        dst: Reg,
        /// Byte offset from `dst`.
        off: i16,
        /// Operand; receives the old value for fetching operations other
        /// than `cmpxchg`.
        src: Reg,
    },
    /// `dst = load_acquire((width *)(src + off))` (`STX | ATOMIC`,
    /// `imm == BPF_LOAD_ACQ`, Linux 6.15+).
    LoadAcquire {
        /// Access width.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Base pointer.
        src: Reg,
        /// Byte offset from `src`.
        off: i16,
    },
    /// `store_release((width *)(dst + off), src)` (`STX | ATOMIC`,
    /// `imm == BPF_STORE_REL`, Linux 6.15+).
    StoreRelease {
        /// Access width.
        width: Width,
        /// Base pointer.
        dst: Reg,
        /// Byte offset from `dst`.
        off: i16,
        /// Stored register.
        src: Reg,
    },
    /// `dst = imm64`: the two-slot `LD | IMM | DW`.
    LdImm64 {
        /// Destination.
        dst: Reg,
        /// What is loaded.
        imm: Imm64,
    },
    /// Legacy packet load `r0 = ntoh(*(width *)skb[imm])` (`LD | ABS`;
    /// width B, H or W; `r6` holds the skb implicitly).
    LdAbs {
        /// Access width.
        width: Width,
        /// Packet offset.
        imm: i32,
    },
    /// Legacy packet load `r0 = ntoh(*(width *)skb[src + imm])` (`LD | IND`).
    LdInd {
        /// Access width.
        width: Width,
        /// Register holding the variable part of the packet offset.
        src: Reg,
        /// Constant part of the packet offset.
        imm: i32,
    },
}

/// The 1 or 2 raw slots an [`Op`] encodes to. Dereferences to `&[Insn]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    slots: [Insn; 2],
    len: usize,
}

impl Encoded {
    const fn one(insn: Insn) -> Self {
        Self {
            slots: [insn, Insn::new(0, 0, 0, 0, 0)],
            len: 1,
        }
    }

    const fn two(first: Insn, second: Insn) -> Self {
        Self {
            slots: [first, second],
            len: 2,
        }
    }

    /// The encoded slots.
    pub fn as_slice(&self) -> &[Insn] {
        // `len` is 1 or 2 by construction.
        self.slots.get(..self.len).unwrap_or(&self.slots)
    }

    /// The first slot (the one carrying the opcode).
    pub const fn first(&self) -> Insn {
        self.slots[0]
    }
}

impl Deref for Encoded {
    type Target = [Insn];

    fn deref(&self) -> &[Insn] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Encoded {
    type Item = &'a Insn;
    type IntoIter = std::slice::Iter<'a, Insn>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

const fn alu_class(bits: Bits) -> u8 {
    match bits {
        Bits::B32 => oc::ALU,
        Bits::B64 => oc::ALU64,
    }
}

const fn jmp_class(bits: Bits) -> u8 {
    match bits {
        Bits::B32 => oc::JMP32,
        Bits::B64 => oc::JMP,
    }
}

const fn src_parts(src: Source) -> (u8, u8, i32) {
    match src {
        Source::Imm(imm) => (oc::K, 0, imm),
        Source::Reg(r) => (oc::X, r.num(), 0),
    }
}

impl Op {
    /// Encodes this op into its raw slot(s), the inverse of
    /// [`decode`](crate::decode()). Encoding never fails; an op that breaks a
    /// constraint the type cannot express (say an atomic `add` on a byte)
    /// encodes to slots that decoding rejects. [`Op::validate`] checks that.
    pub const fn encode(&self) -> Encoded {
        let one = match *self {
            Op::Alu { bits, op, dst, src } => {
                let (opc, off) = op.encoding();
                let (s, sreg, imm) = src_parts(src);
                Insn::new(alu_class(bits) | opc | s, dst.num(), sreg, off, imm)
            }
            Op::Neg { bits, dst } => Insn::new(alu_class(bits) | oc::NEG, dst.num(), 0, 0, 0),
            Op::MovSx {
                bits,
                dst,
                src,
                from,
            } => Insn::new(
                alu_class(bits) | oc::MOV | oc::X,
                dst.num(),
                src.num(),
                from.bits() as i16,
                0,
            ),
            Op::End { order, width, dst } => {
                let s = match order {
                    Endian::Le => oc::TO_LE,
                    Endian::Be => oc::TO_BE,
                };
                Insn::new(oc::ALU | oc::END | s, dst.num(), 0, 0, width.bits() as i32)
            }
            Op::Bswap { width, dst } => Insn::new(
                oc::ALU64 | oc::END | oc::TO_LE,
                dst.num(),
                0,
                0,
                width.bits() as i32,
            ),
            Op::AddrSpaceCast {
                dst,
                src,
                dst_as,
                src_as,
            } => Insn::new(
                oc::ALU64 | oc::MOV | oc::X,
                dst.num(),
                src.num(),
                oc::ADDR_SPACE_CAST,
                (((dst_as as u32) << 16) | src_as as u32) as i32,
            ),
            Op::Jmp {
                bits,
                cond,
                dst,
                src,
                off,
            } => {
                let (s, sreg, imm) = src_parts(src);
                Insn::new(
                    jmp_class(bits) | cond.op_code() | s,
                    dst.num(),
                    sreg,
                    off,
                    imm,
                )
            }
            Op::Ja { off } => Insn::new(oc::JA_CODE, 0, 0, off, 0),
            Op::Gotol { off } => Insn::new(oc::GOTOL_CODE, 0, 0, 0, off),
            Op::MayGoto { off } => Insn::new(oc::MAY_GOTO_CODE, 0, oc::MAY_GOTO, off, 0),
            Op::Call(target) => match target {
                CallTarget::Helper { id } => Insn::new(oc::CALL_CODE, 0, oc::CALL_HELPER, 0, id),
                CallTarget::Local { offset } => {
                    Insn::new(oc::CALL_CODE, 0, oc::PSEUDO_CALL, 0, offset)
                }
                CallTarget::Kfunc { btf_id, btf_fd_idx } => Insn::new(
                    oc::CALL_CODE,
                    0,
                    oc::PSEUDO_KFUNC_CALL,
                    btf_fd_idx,
                    btf_id as i32,
                ),
            },
            Op::Exit => Insn::new(oc::EXIT_CODE, 0, 0, 0, 0),
            Op::Load {
                width,
                dst,
                src,
                off,
            } => Insn::new(
                oc::LDX | oc::MEM | width.size_code(),
                dst.num(),
                src.num(),
                off,
                0,
            ),
            Op::LoadSx {
                width,
                dst,
                src,
                off,
            } => Insn::new(
                oc::LDX | oc::MEMSX | width.size_code(),
                dst.num(),
                src.num(),
                off,
                0,
            ),
            Op::Store {
                width,
                dst,
                off,
                src,
            } => match src {
                Source::Imm(imm) => {
                    Insn::new(oc::ST | oc::MEM | width.size_code(), dst.num(), 0, off, imm)
                }
                Source::Reg(r) => Insn::new(
                    oc::STX | oc::MEM | width.size_code(),
                    dst.num(),
                    r.num(),
                    off,
                    0,
                ),
            },
            Op::Atomic {
                width,
                op,
                dst,
                off,
                src,
            } => Insn::new(
                oc::STX | oc::ATOMIC | width.size_code(),
                dst.num(),
                src.num(),
                off,
                op.imm(),
            ),
            Op::LoadAcquire {
                width,
                dst,
                src,
                off,
            } => Insn::new(
                oc::STX | oc::ATOMIC | width.size_code(),
                dst.num(),
                src.num(),
                off,
                oc::LOAD_ACQ,
            ),
            Op::StoreRelease {
                width,
                dst,
                off,
                src,
            } => Insn::new(
                oc::STX | oc::ATOMIC | width.size_code(),
                dst.num(),
                src.num(),
                off,
                oc::STORE_REL,
            ),
            Op::LdImm64 { dst, imm } => {
                let (lo, hi) = imm.imm_pair();
                return Encoded::two(
                    Insn::new(oc::LD_IMM64, dst.num(), imm.pseudo_src(), 0, lo),
                    Insn::new(0, 0, 0, 0, hi),
                );
            }
            Op::LdAbs { width, imm } => {
                Insn::new(oc::LD | oc::ABS | width.size_code(), 0, 0, 0, imm)
            }
            Op::LdInd { width, src, imm } => {
                Insn::new(oc::LD | oc::IND | width.size_code(), 0, src.num(), 0, imm)
            }
        };
        Encoded::one(one)
    }

    /// The opcode byte of the first slot, as the disassembler prints it.
    pub const fn code(&self) -> u8 {
        self.encode().first().code
    }

    /// Number of instruction slots this op occupies: 2 for `LD_IMM64`, else 1.
    pub const fn slots(&self) -> usize {
        if self.is_ld_imm64() { 2 } else { 1 }
    }

    /// Whether this is the two-slot `LD_IMM64`.
    pub const fn is_ld_imm64(&self) -> bool {
        matches!(self, Op::LdImm64 { .. })
    }

    /// Whether control never falls through to the next op (`exit` and the
    /// unconditional jumps).
    pub const fn is_terminator(&self) -> bool {
        matches!(self, Op::Exit | Op::Ja { .. } | Op::Gotol { .. })
    }

    /// The jump offset (relative to the next slot) of a jump (`Jmp`, `Ja`,
    /// `Gotol`, `MayGoto`); `None` for everything else, including calls.
    pub const fn jump_offset(&self) -> Option<i32> {
        match *self {
            Op::Jmp { off, .. } | Op::Ja { off } | Op::MayGoto { off } => Some(off as i32),
            Op::Gotol { off } => Some(off),
            _ => None,
        }
    }

    /// The slot index this jump at `pc` targets (`pc + off + 1`), or `None`
    /// when this is not a jump or the target would be negative or overflow.
    /// Whether the target is inside the program is the verifier's question.
    pub fn jump_target(&self, pc: usize) -> Option<usize> {
        relative_target(pc, self.jump_offset()?)
    }

    /// The slot index of the subprogram referenced by a bpf-to-bpf call or
    /// an `LD_IMM64` of `BPF_PSEUDO_FUNC` at `pc`.
    pub fn subprog_target(&self, pc: usize) -> Option<usize> {
        match *self {
            Op::Call(CallTarget::Local { offset })
            | Op::LdImm64 {
                imm: Imm64::Func { offset },
                ..
            } => relative_target(pc, offset),
            _ => None,
        }
    }

    /// Checks that this op encodes to slots that decode back to it, i.e.
    /// that it respects the constraints the field types cannot express
    /// (atomic widths, `END` widths, non-zero `may_goto` offsets, ...).
    ///
    /// # Errors
    ///
    /// The [`DecodeError`](crate::DecodeError) decoding reports for the
    /// encoded slots, with `pc` 0.
    pub fn validate(&self) -> Result<(), crate::DecodeError> {
        let enc = self.encode();
        let (op, _) = crate::decode::decode_at(&enc, 0)?;
        debug_assert_eq!(&op, self, "encode/decode disagree");
        Ok(())
    }
}

fn relative_target(pc: usize, off: i32) -> Option<usize> {
    let target = i64::try_from(pc)
        .ok()?
        .checked_add(i64::from(off))?
        .checked_add(1)?;
    usize::try_from(target).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_common_forms() {
        let mov = Op::Alu {
            bits: Bits::B64,
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Source::Imm(0),
        };
        assert_eq!(mov.encode().as_slice(), &[Insn::new(0xb7, 0, 0, 0, 0)]);
        let sdiv = Op::Alu {
            bits: Bits::B32,
            op: AluOp::SDiv,
            dst: Reg::R1,
            src: Source::Reg(Reg::R2),
        };
        assert_eq!(sdiv.encode().first(), Insn::new(0x3c, 1, 2, 1, 0));
        let ld = Op::LdImm64 {
            dst: Reg::R1,
            imm: Imm64::Const(0x1122_3344_5566_7788),
        };
        let enc = ld.encode();
        assert_eq!(enc.len(), 2);
        assert_eq!(enc[0], Insn::new(0x18, 1, 0, 0, 0x5566_7788));
        assert_eq!(enc[1], Insn::new(0, 0, 0, 0, 0x1122_3344));
        assert_eq!(ld.slots(), 2);
        assert!(ld.is_ld_imm64());
        assert_eq!(ld.code(), 0x18);
    }

    #[test]
    fn imm64_raw_combines_both_halves() {
        assert_eq!(Imm64::Const(u64::MAX).raw(), u64::MAX);
        assert_eq!(Imm64::MapValue { fd: 5, offset: 8 }.raw(), (8u64 << 32) | 5);
        assert_eq!(Imm64::MapFd { fd: -1 }.raw(), 0xffff_ffff);
    }

    #[test]
    fn atomic_imm_table_is_consistent() {
        for op in AtomicOp::ALL {
            assert_eq!(AtomicOp::from_imm(op.imm()), Some(op));
        }
        assert_eq!(AtomicOp::from_imm(0x100), None);
        assert!(AtomicOp::CmpXchg.fetches());
        assert!(!AtomicOp::Add.fetches());
    }

    #[test]
    fn cond_table_is_consistent() {
        for c in Cond::ALL {
            assert_eq!(Cond::from_op_code(c.op_code()), Some(c));
        }
        assert_eq!(Cond::from_op_code(oc::CALL), None);
    }

    #[test]
    fn jump_targets() {
        assert_eq!(Op::Ja { off: -1 }.jump_target(0), Some(0));
        assert_eq!(Op::Ja { off: -2 }.jump_target(0), None);
        assert_eq!(Op::Gotol { off: 10 }.jump_target(5), Some(16));
        assert_eq!(Op::Exit.jump_target(5), None);
        assert_eq!(
            Op::Call(CallTarget::Local { offset: 3 }).subprog_target(2),
            Some(6)
        );
        assert_eq!(Op::Call(CallTarget::Helper { id: 1 }).jump_target(2), None);
        assert!(Op::Exit.is_terminator());
    }

    #[test]
    fn widths() {
        assert_eq!(Width::DW.bytes(), 8);
        assert_eq!(Width::H.bits(), 16);
        for w in Width::ALL {
            assert_eq!(Width::from_code(w.size_code()), w);
            assert_eq!(Width::from_bits(i64::from(w.bits())), Some(w));
        }
        assert_eq!(Width::from_bits(24), None);
    }
}
