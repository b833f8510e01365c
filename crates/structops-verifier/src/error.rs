//! Verification errors: the kernel's errno and its message.

use thiserror::Error;

/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EBADF`.
pub const EBADF: i32 = 9;
/// `EACCES`.
pub const EACCES: i32 = 13;
/// `EFAULT`.
pub const EFAULT: i32 = 14;
/// `ENOMEM`.
pub const ENOMEM: i32 = 12;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// `E2BIG`.
pub const E2BIG: i32 = 7;
/// `ENOSPC`.
pub const ENOSPC: i32 = 28;
/// `ERANGE`.
pub const ERANGE: i32 = 34;
/// `ENOTSUPP` (kernel-internal, 524).
pub const ENOTSUPP: i32 = 524;

/// Why a program was rejected: the errno `BPF_PROG_LOAD` would return and
/// the message line the kernel's log ends with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("insn {pc}: {message} (errno {errno})")]
pub struct VerifyError {
    /// The kernel errno (`EACCES`, `EINVAL`, `E2BIG`, `ENOTSUPP`, ...).
    pub errno: i32,
    /// The instruction being verified when the error was found (0 for
    /// whole-program checks).
    pub pc: usize,
    /// The kernel's message, without the trailing newline.
    pub message: String,
    /// The verifier log up to and including the error (empty at level 0).
    pub log: String,
}

/// An error before it is attached to a log: errno and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub errno: i32,
    pub message: String,
}

impl Reject {
    pub(crate) fn new(errno: i32, message: impl Into<String>) -> Reject {
        Reject {
            errno,
            message: message.into(),
        }
    }
}

/// `Err(Reject)` with `EACCES`.
macro_rules! eacces {
    ($($t:tt)*) => { Err($crate::error::Reject::new($crate::error::EACCES, format!($($t)*))) };
}
/// `Err(Reject)` with `EINVAL`.
macro_rules! einval {
    ($($t:tt)*) => { Err($crate::error::Reject::new($crate::error::EINVAL, format!($($t)*))) };
}
pub(crate) use eacces;
pub(crate) use einval;
