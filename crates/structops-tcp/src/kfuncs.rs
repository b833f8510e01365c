//! The kfuncs the TCP host exports to congestion-control programs: the kernel's
//! `tcp_reno_*`, `tcp_slow_start`, `tcp_cong_avoid_ai` and the CUBIC, DCTCP and BBR
//! functions, implemented by the built-in congestion controls of [`crate::cc`].
//!
//! Each is registered under its name in the host BTF ([`crate::btf`]) for struct_ops
//! programs. The verifier checks a call against the `FUNC`'s prototype and passes only
//! trusted socket pointers (a member's own `sk`); in unchecked runs the implementation
//! relies on that. In checked runs (the interpreter's checked mode) every pointer
//! argument is checked against the run's memory first, and a call with a bad one stops
//! the run.

use std::ffi::c_int;
use std::sync::Arc;

use structops::helpers::HostFn;
use structops::{Access, Errno, KfuncFlags, ProgType, Runtime};
use structops_vm::{Caller, Mode, VmError};

use crate::cc;
use crate::types::{AckSample, RateSample, Sock, TcpCaEvent, TcpSock};

/// A native function of one of the kfunc shapes of [`crate::btf`].
#[derive(Clone, Copy)]
enum Native {
    Void(unsafe extern "C" fn(*mut Sock)),
    U32(unsafe extern "C" fn(*mut Sock) -> u32),
    CongAvoid(unsafe extern "C" fn(*mut Sock, u32, u32)),
    State(unsafe extern "C" fn(*mut Sock, u8)),
    Event(unsafe extern "C" fn(*mut Sock, TcpCaEvent)),
    Flags(unsafe extern "C" fn(*mut Sock, u32)),
    Acked(unsafe extern "C" fn(*mut Sock, *const AckSample)),
    Control(unsafe extern "C" fn(*mut Sock, u32, c_int, *const RateSample)),
    SlowStart(unsafe extern "C" fn(*mut TcpSock, u32) -> u32),
    Ai(unsafe extern "C" fn(*mut TcpSock, u32, u32)),
}

/// Every kfunc and its implementation.
fn table() -> Vec<(&'static str, Native)> {
    use Native::*;
    vec![
        ("tcp_reno_ssthresh", U32(cc::reno::tcp_reno_ssthresh)),
        (
            "tcp_reno_cong_avoid",
            CongAvoid(cc::reno::tcp_reno_cong_avoid),
        ),
        ("tcp_reno_undo_cwnd", U32(cc::reno::tcp_reno_undo_cwnd)),
        ("tcp_slow_start", SlowStart(cc::reno::tcp_slow_start)),
        ("tcp_cong_avoid_ai", Ai(cc::reno::tcp_cong_avoid_ai)),
        ("cubictcp_init", Void(cc::cubic::cubictcp_init)),
        (
            "cubictcp_recalc_ssthresh",
            U32(cc::cubic::cubictcp_recalc_ssthresh),
        ),
        (
            "cubictcp_cong_avoid",
            CongAvoid(cc::cubic::cubictcp_cong_avoid),
        ),
        ("cubictcp_state", State(cc::cubic::cubictcp_state)),
        ("cubictcp_cwnd_event", Event(cc::cubic::cubictcp_cwnd_event)),
        ("cubictcp_acked", Acked(cc::cubic::cubictcp_acked)),
        ("dctcp_init", Void(cc::dctcp::dctcp_init)),
        ("dctcp_update_alpha", Flags(cc::dctcp::dctcp_update_alpha)),
        ("dctcp_cwnd_event", Event(cc::dctcp::dctcp_cwnd_event)),
        ("dctcp_ssthresh", U32(cc::dctcp::dctcp_ssthresh)),
        ("dctcp_cwnd_undo", U32(cc::dctcp::dctcp_cwnd_undo)),
        ("dctcp_state", State(cc::dctcp::dctcp_state)),
        ("bbr_init", Void(cc::bbr::bbr_init)),
        ("bbr_main", Control(cc::bbr::bbr_main)),
        ("bbr_sndbuf_expand", U32(cc::bbr::bbr_sndbuf_expand)),
        ("bbr_undo_cwnd", U32(cc::bbr::bbr_undo_cwnd)),
        ("bbr_cwnd_event", Event(cc::bbr::bbr_cwnd_event)),
        ("bbr_ssthresh", U32(cc::bbr::bbr_ssthresh)),
        ("bbr_min_tso_segs", U32(cc::bbr::bbr_min_tso_segs)),
        ("bbr_set_state", State(cc::bbr::bbr_set_state)),
    ]
}

/// Checks, in a checked run, that the program may access `len` bytes at `addr`.
fn check(caller: &mut Caller<'_>, addr: u64, len: usize, access: Access) -> Result<(), VmError> {
    if caller.mode() == Mode::Checked {
        caller.check(addr, len as u64, access)?;
    }
    Ok(())
}

fn ptr<T>(addr: u64) -> *mut T {
    std::ptr::with_exposed_provenance_mut(addr as usize)
}

/// The [`HostFn`] that calls `native` with the argument registers.
fn host_fn(native: Native) -> HostFn {
    Arc::new(move |caller: &mut Caller<'_>, a: [u64; 5]| {
        let sk_len = size_of::<TcpSock>();
        check(caller, a[0], sk_len, Access::ReadWrite)?;
        let sk: *mut Sock = ptr(a[0]);
        // SAFETY (every arm): `a[0]` is a trusted socket pointer — in unchecked runs the
        // verifier proved it is the `struct sock *` the host passed the member, a live
        // `TcpSock`; in checked runs it was just checked to be memory of the run of that
        // size. Sample pointers are checked likewise. Scalars are truncated to their C
        // types as the calling convention does.
        let r = unsafe {
            match native {
                Native::Void(f) => {
                    f(sk);
                    0
                }
                Native::U32(f) => u64::from(f(sk)),
                Native::CongAvoid(f) => {
                    f(sk, a[1] as u32, a[2] as u32);
                    0
                }
                Native::State(f) => {
                    f(sk, a[1] as u8);
                    0
                }
                Native::Event(f) => {
                    // An event outside `enum tcp_ca_event` has no Rust value: ignored.
                    if let Some(ev) = TcpCaEvent::from_raw(a[1] & 0xffff_ffff) {
                        f(sk, ev);
                    }
                    0
                }
                Native::Flags(f) => {
                    f(sk, a[1] as u32);
                    0
                }
                Native::Acked(f) => {
                    check(caller, a[1], size_of::<AckSample>(), Access::Read)?;
                    f(sk, ptr::<AckSample>(a[1]));
                    0
                }
                Native::Control(f) => {
                    check(caller, a[3], size_of::<RateSample>(), Access::Read)?;
                    f(sk, a[1] as u32, a[2] as c_int, ptr::<RateSample>(a[3]));
                    0
                }
                Native::SlowStart(f) => u64::from(f(sk.cast(), a[1] as u32)),
                Native::Ai(f) => {
                    f(sk.cast(), a[1] as u32, a[2] as u32);
                    0
                }
            }
        };
        Ok(r)
    })
}

/// Registers every kfunc with `rt` (whose host BTF is [`crate::btf::host_btf`]).
///
/// # Errors
///
/// The name and errno of the first registration the runtime refused.
pub(crate) fn register(rt: &Runtime) -> Result<(), (&'static str, Errno)> {
    for (name, native) in table() {
        rt.register_kfunc(
            name,
            KfuncFlags::NONE,
            vec![ProgType::STRUCT_OPS],
            host_fn(native),
        )
        .map_err(|e| (name, e))?;
    }
    Ok(())
}

/// The names of the kfuncs with an implementation.
pub fn implemented() -> Vec<&'static str> {
    table().into_iter().map(|(n, _)| n).collect()
}
