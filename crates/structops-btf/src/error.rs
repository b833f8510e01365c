//! Errors of BTF parsing, validation and queries.

use crate::types::{Kind, TypeId};

/// An error found while parsing, validating or querying BTF. Every variant names where it
/// happened: a byte offset in the input, or the type id concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    /// The input is shorter than the structure it should hold.
    #[error("BTF truncated: need {need} bytes at offset {offset}, have {have}")]
    Truncated {
        /// Byte offset of the read.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes available from `offset`.
        have: usize,
    },
    /// Wrong magic number.
    #[error("BTF bad magic {magic:#06x} (expected 0xeb9f)")]
    BadMagic {
        /// The magic read.
        magic: u16,
    },
    /// Unsupported version.
    #[error("BTF unsupported version {version}")]
    BadVersion {
        /// The version read.
        version: u8,
    },
    /// Non-zero header flags.
    #[error("BTF unsupported flags {flags:#x}")]
    BadFlags {
        /// The flags read.
        flags: u8,
    },
    /// A header or section layout problem.
    #[error("BTF bad header: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: &'static str,
    },
    /// The input exceeds the kernel's `BTF_MAX_SIZE`.
    #[error("BTF too large: {size} bytes (max {max})")]
    TooLarge {
        /// Input size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// A string section problem.
    #[error("BTF bad string section: {reason}")]
    BadStrings {
        /// What is wrong.
        reason: &'static str,
    },
    /// A string offset that is out of range or not NUL-terminated.
    #[error("BTF bad string offset {offset}")]
    BadStringOffset {
        /// The offset.
        offset: u32,
    },
    /// A type record with an unknown kind.
    #[error("BTF type [{id}] at byte {offset}: unknown kind {kind}")]
    UnknownKind {
        /// Type id being parsed.
        id: TypeId,
        /// Byte offset of the record in the type section.
        offset: usize,
        /// The raw kind.
        kind: u32,
    },
    /// Too many types for the id space (`BTF_MAX_TYPE`).
    #[error("BTF has too many types (max {max})")]
    TooManyTypes {
        /// Limit.
        max: u32,
    },
    /// A type failed validation.
    #[error("BTF type [{id}] {kind}: {reason}")]
    InvalidType {
        /// Type id.
        id: TypeId,
        /// Its kind.
        kind: Kind,
        /// What is wrong, in the kernel's words where it has them.
        reason: String,
    },
    /// A type id that does not exist.
    #[error("BTF type id {id} out of range (have {count} types)")]
    NoSuchType {
        /// The id.
        id: TypeId,
        /// Number of ids (including void).
        count: u32,
    },
    /// A query needed a different kind of type.
    #[error("BTF type [{id}] is {actual}, expected {expected}")]
    WrongKind {
        /// Type id.
        id: TypeId,
        /// Kind found.
        actual: Kind,
        /// What was expected.
        expected: &'static str,
    },
    /// Type resolution looped or went too deep.
    #[error("BTF type [{id}]: reference chain too deep or cyclic")]
    ChainTooDeep {
        /// Where the chain started.
        id: TypeId,
    },
    /// A size computation overflowed or the type has no size.
    #[error("BTF type [{id}]: {reason}")]
    BadSize {
        /// Type id.
        id: TypeId,
        /// What is wrong.
        reason: &'static str,
    },
    /// The kernel's `BPF_BTF_LOAD` checks reject this BTF (see `Btf::validate`).
    #[error("BTF rejected (errno {errno}) at type [{id}]: {log}")]
    Rejected {
        /// The errno the kernel returns (`EINVAL` is 22, `ENOTSUPP` 524, ...).
        errno: i32,
        /// The type being checked (0 for header, string and whole-table errors).
        id: TypeId,
        /// The kernel's log lines for the error.
        log: String,
    },
    /// A `.BTF.ext` problem.
    #[error("BTF.ext: {reason} (at byte {offset})")]
    BadExt {
        /// Byte offset in `.BTF.ext`.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Result alias for this crate.
pub type Result<T, E = BtfError> = std::result::Result<T, E>;
