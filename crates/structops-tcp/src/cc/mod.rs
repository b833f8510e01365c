//! The built-in (native Rust) congestion controls, written against the same host types
//! as BPF programs and exposed the same way: a [`TcpCongestionOps`] whose function members
//! are `extern "C"` functions taking `struct sock *`. The simulator calls a native and a
//! BPF congestion control through the same table, as the kernel calls a built-in module
//! and a BPF struct_ops map.
//!
//! Each module follows the kernel's implementation of the algorithm (its integer
//! arithmetic, so that traces can be compared), and its `extern "C"` functions double as
//! the kfuncs the kernel exports for BPF programs (`tcp_reno_cong_avoid`,
//! `cubictcp_cong_avoid`, ...; see [`crate::kfuncs`]).

pub mod bbr;
pub mod cubic;
pub mod dctcp;
pub mod hooks;
pub mod minmax;
pub mod reno;

use crate::types::{Sock, TcpCongestionOps, TcpSock};

/// `tcp_sk(sk)`.
///
/// # Safety
///
/// `sk` must point to a live [`TcpSock`] (every `struct sock *` the host hands a
/// congestion control does) that nothing else accesses during the returned borrow.
pub unsafe fn tcp_sk<'a>(sk: *mut Sock) -> &'a mut TcpSock {
    // SAFETY: the caller's contract; `TcpSock` starts with the `sock` it embeds.
    unsafe { &mut *sk.cast::<TcpSock>() }
}

/// The built-in congestion controls, in registration order (`reno` first, as the kernel's
/// default fallback).
pub fn builtins() -> [&'static TcpCongestionOps; 4] {
    [&reno::RENO, &cubic::CUBIC, &dctcp::DCTCP, &bbr::BBR]
}

/// Is `ops` one of the built-in static tables (the [`builtins`] or DCTCP's Reno
/// fallback)?
pub fn is_builtin_table(ops: *const TcpCongestionOps) -> bool {
    builtins().iter().any(|b| std::ptr::eq(*b, ops)) || std::ptr::eq(&dctcp::DCTCP_RENO, ops)
}
