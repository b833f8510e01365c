//! Errors of CO-RE relocation: resolving a relocation against a target BTF and patching
//! the instruction it names.

use structops_btf::{BtfError, Kind, TypeId};

/// `EINVAL`, libbpf's answer for most malformed relocations.
pub const EINVAL: i32 = 22;
/// `E2BIG`: an access string or bitfield too large to handle.
pub const E2BIG: i32 = 7;
/// `ERANGE`: a relocated memory offset that does not fit an instruction's `off`.
pub const ERANGE: i32 = 34;

/// Why a CO-RE relocation could not be resolved or applied. Resolution errors name the
/// local root type id of the relocation; patch errors name the instruction index.
///
/// [`CoreError::errno`] gives the (positive) errno libbpf 1.5 fails with in the same
/// situation, so a loader can report errno for errno.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// A BTF query (type id, string offset, size) failed.
    #[error("CO-RE relocation of local type [{type_id}]: {source}")]
    Btf {
        /// The type being looked at when it failed.
        type_id: TypeId,
        /// The underlying BTF error.
        #[source]
        source: BtfError,
    },
    /// The access string does not parse or does not fit the local type
    /// (`bpf_core_parse_spec` returning `-EINVAL`).
    #[error("CO-RE relocation of local type [{type_id}]: bad access string {access:?}: {reason}")]
    InvalidAccessString {
        /// Local root type id.
        type_id: TypeId,
        /// The access string.
        access: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The access string walks through a type that is neither a struct, a union nor an
    /// array.
    #[error(
        "CO-RE relocation of local type [{type_id}]: access {access:?} (at idx {index}) captures type [{captured}] of unexpected kind {kind}"
    )]
    UnexpectedKind {
        /// Local root type id.
        type_id: TypeId,
        /// The access string.
        access: String,
        /// Position in the access string.
        index: usize,
        /// The type reached there.
        captured: TypeId,
        /// Its kind.
        kind: Kind,
    },
    /// A spec (local or target) needs more than [`SPEC_MAX_LEN`](super::SPEC_MAX_LEN)
    /// accessors (`-E2BIG`).
    #[error(
        "CO-RE relocation of local type [{type_id}]: spec has more than {max} accessors (struct/union/array nesting too deep)"
    )]
    SpecTooLong {
        /// Local root type id.
        type_id: TypeId,
        /// The limit.
        max: usize,
    },
    /// A bit offset computation overflowed 32 bits.
    #[error("CO-RE relocation of local type [{type_id}]: field bit offset overflows")]
    OffsetOverflow {
        /// Local root type id.
        type_id: TypeId,
    },
    /// A type comparison recursed deeper than libbpf allows (32 levels), or met a cycle.
    #[error(
        "CO-RE relocation of local type [{type_id}]: comparing with target [{target_id}] recursed too deep"
    )]
    TooDeep {
        /// Local root type id.
        type_id: TypeId,
        /// The candidate being compared.
        target_id: TypeId,
    },
    /// Candidate search needs a named local type (`bpf_core_find_cands`).
    #[error(
        "CO-RE relocation of local type [{type_id}]: <{kind}> relocation doesn't support anonymous types"
    )]
    AnonymousType {
        /// Local root type id.
        type_id: TypeId,
        /// The relocation kind.
        kind: &'static str,
    },
    /// The relocation kind cannot apply to an array element access (only byte offset and
    /// byte size can).
    #[error(
        "CO-RE relocation of local type [{type_id}]: <{kind}> can't be applied to array access"
    )]
    ArrayAccess {
        /// Local root type id.
        type_id: TypeId,
        /// The relocation kind.
        kind: &'static str,
    },
    /// A bitfield that no load of at most 8 bytes covers (`-E2BIG`).
    #[error("CO-RE relocation of local type [{type_id}]: <{kind}> can't be satisfied for bitfield")]
    BitfieldTooWide {
        /// Local root type id.
        type_id: TypeId,
        /// The relocation kind.
        kind: &'static str,
    },
    /// A bitfield member whose type is not an integer or enum.
    #[error(
        "CO-RE relocation of local type [{type_id}]: bitfield member of type [{member_type}] has no integer size"
    )]
    BadBitfieldType {
        /// Local root type id.
        type_id: TypeId,
        /// The member's resolved type.
        member_type: TypeId,
    },
    /// Two matching candidates put the field at different bit offsets.
    #[error(
        "CO-RE relocation of local type [{type_id}]: field offset ambiguity: {first} != {other}"
    )]
    FieldOffsetAmbiguity {
        /// Local root type id.
        type_id: TypeId,
        /// Bit offset from the first matching candidate.
        first: u32,
        /// Bit offset from a later one.
        other: u32,
    },
    /// Two matching candidates disagree on the relocated value or on poisoning.
    #[error(
        "CO-RE relocation of local type [{type_id}]: relocation decision ambiguity: {} {other_val} != {} {first_val}",
        if *other_poison { "failure" } else { "success" },
        if *first_poison { "failure" } else { "success" }
    )]
    DecisionAmbiguity {
        /// Local root type id.
        type_id: TypeId,
        /// The first matching candidate's poison decision.
        first_poison: bool,
        /// Its value.
        first_val: u64,
        /// A later candidate's poison decision.
        other_poison: bool,
        /// Its value.
        other_val: u64,
    },
    /// A relocation whose instruction byte offset is not a multiple of 8.
    #[error("CO-RE relocation: insn_off {insn_off} is not a multiple of 8")]
    MisalignedInsnOff {
        /// The record's `insn_off`.
        insn_off: u32,
    },
    /// The relocation's instruction index is past the end of the program.
    #[error("CO-RE relocation: insn #{insn_idx} out of range (program has {len} insns)")]
    InsnOutOfRange {
        /// Instruction index.
        insn_idx: usize,
        /// Program length in instructions.
        len: usize,
    },
    /// An `LD_IMM64` relocated at the last slot of the program.
    #[error("CO-RE relocation: insn #{insn_idx} (LDIMM64) is truncated")]
    LdImm64Truncated {
        /// Instruction index.
        insn_idx: usize,
    },
    /// An `LD_IMM64` with a pseudo source, a non-zero offset or a malformed second slot.
    #[error("CO-RE relocation: insn #{insn_idx} (LDIMM64) has unexpected form")]
    LdImm64Form {
        /// Instruction index.
        insn_idx: usize,
    },
    /// An instruction CO-RE cannot relocate (not ALU/ALU64 with an immediate, LDX/ST/STX
    /// or LD_IMM64).
    #[error(
        "CO-RE relocation: trying to relocate unrecognized insn #{insn_idx}, code:{code:#x}, src:{src:#x}, dst:{dst:#x}, off:{off:#x}, imm:{imm:#x}"
    )]
    UnrecognizedInsn {
        /// Instruction index.
        insn_idx: usize,
        /// Opcode byte.
        code: u8,
        /// Source register nibble.
        src: u8,
        /// Destination register nibble.
        dst: u8,
        /// Offset field.
        off: i16,
        /// Immediate field.
        imm: i32,
    },
    /// The instruction does not hold the value the local BTF says the compiler put there.
    #[error(
        "CO-RE relocation: unexpected insn #{insn_idx} ({class}) value: got {got}, exp {expected} -> {new}"
    )]
    UnexpectedValue {
        /// Instruction index.
        insn_idx: usize,
        /// `ALU/ALU64`, `LDX/ST/STX` or `LDIMM64`.
        class: &'static str,
        /// What the instruction holds.
        got: i64,
        /// What it should hold.
        expected: u64,
        /// What it would have been patched to.
        new: u64,
    },
    /// A relocated memory offset that does not fit the 16-bit `off` field (`-ERANGE`).
    #[error("CO-RE relocation: insn #{insn_idx} (LDX/ST/STX) value too big: {value}")]
    OffsetTooBig {
        /// Instruction index.
        insn_idx: usize,
        /// The new offset.
        value: u64,
    },
    /// A load/store whose access size is not the local field size, when the size must
    /// change.
    #[error(
        "CO-RE relocation: insn #{insn_idx} (LDX/ST/STX) unexpected mem size: got {got}, exp {expected}"
    )]
    UnexpectedMemSize {
        /// Instruction index.
        insn_idx: usize,
        /// The instruction's access size in bytes (-1 if none).
        got: i32,
        /// The local field size.
        expected: u32,
    },
    /// The target field size is not 1, 2, 4 or 8 bytes, so no load/store can access it.
    #[error("CO-RE relocation: insn #{insn_idx} (LDX/ST/STX) invalid new mem size: {size}")]
    InvalidNewMemSize {
        /// Instruction index.
        insn_idx: usize,
        /// The target field size.
        size: u32,
    },
}

impl CoreError {
    /// The positive errno libbpf 1.5 returns for this failure.
    pub fn errno(&self) -> i32 {
        match self {
            CoreError::SpecTooLong { .. } | CoreError::BitfieldTooWide { .. } => E2BIG,
            CoreError::OffsetTooBig { .. } => ERANGE,
            _ => EINVAL,
        }
    }

    pub(crate) fn btf(type_id: TypeId) -> impl FnOnce(BtfError) -> CoreError {
        move |source| CoreError::Btf { type_id, source }
    }
}

/// Result alias for this module.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
