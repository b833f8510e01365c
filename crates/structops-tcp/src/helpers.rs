//! The helpers the TCP host gives congestion-control programs beyond the runtime's own
//! (`bpf_tcp_ca_get_func_proto`): `bpf_tcp_send_ack`, and `bpf_setsockopt` /
//! `bpf_getsockopt` for `SOL_TCP` / `TCP_CONGESTION` with the kernel's recursion rule.
//!
//! Every implementation receives the program's `struct sock *`, which the verifier
//! proved to be the trusted socket the host passed the member (a [`Socket`]); in checked
//! runs the pointer is checked against the run's memory first.

use std::sync::Arc;

use structops::helpers::{Arg, ArgType, HelperProto, HostHelper, Ret, TypeFlags};
use structops::{Access, Errno, ProgType, Runtime};
use structops_vm::{Caller, Mode, VmError};

use crate::host::{Socket, socket_of};
use crate::types::{TCP_CA_NAME_MAX, TcpSock};

/// `BPF_FUNC_setsockopt`.
pub const FUNC_SETSOCKOPT: i32 = 49;
/// `BPF_FUNC_getsockopt`.
pub const FUNC_GETSOCKOPT: i32 = 57;
/// `BPF_FUNC_tcp_send_ack`.
pub const FUNC_TCP_SEND_ACK: i32 = 116;
/// `SOL_TCP`.
pub const SOL_TCP: u64 = 6;
/// `TCP_CONGESTION`.
pub const TCP_CONGESTION: u64 = 13;

fn neg(e: Errno) -> u64 {
    (-i64::from(e.0)) as u64
}

/// The socket a helper was given (`None` if it is not a live [`Socket`], which a
/// verified program can only cause when a host calls a member with a `tcp_sock` of its
/// own); checked against the run's memory in checked runs.
fn socket<'a>(caller: &mut Caller<'_>, addr: u64) -> Result<Option<&'a mut Socket>, VmError> {
    if caller.mode() == Mode::Checked {
        caller.check(addr, size_of::<TcpSock>() as u64, Access::ReadWrite)?;
    }
    // SAFETY: the members run on the socket through a raw pointer, and nothing else
    // uses it during the helper call.
    Ok(unsafe { socket_of(addr) })
}

/// `bpf_sk_setsockopt` for `SOL_TCP`/`TCP_CONGESTION` (`sol_tcp_sockopt_congestion`):
/// `EINVAL` for an `optlen` under 2 or another option, `ENOTSUPP` for "cdg", `EBUSY`
/// while a `TCP_CONGESTION` change of this socket is in progress (a program's `init`
/// switching the congestion control, whose new `init` tries again), `ENOENT` for an
/// unknown name.
fn setsockopt(sock: &mut Socket, level: u64, optname: u64, optval: &[u8]) -> Result<(), Errno> {
    if level != SOL_TCP || optname != TCP_CONGESTION {
        return Err(Errno::EINVAL);
    }
    if optval.len() < 2 {
        return Err(Errno::EINVAL);
    }
    // "cdg" keeps a pointer in icsk_ca_priv that a program could overwrite.
    if optval.len() >= 3 && optval.starts_with(b"cdg") {
        let rest = &optval[3..];
        if rest.is_empty() || rest[0] == 0 {
            return Err(Errno::ENOTSUPP);
        }
    }
    if sock.chg_cc_in_progress() {
        return Err(Errno::EBUSY);
    }
    // do_tcp_setsockopt: at most TCP_CA_NAME_MAX - 1 bytes, up to a NUL.
    let n = optval.len().min(TCP_CA_NAME_MAX - 1);
    let end = optval[..n].iter().position(|&c| c == 0).unwrap_or(n);
    let name = std::str::from_utf8(&optval[..end]).map_err(|_| Errno::ENOENT)?;
    sock.set_chg_cc_in_progress(true);
    let r = sock.set_congestion_control(name);
    sock.set_chg_cc_in_progress(false);
    r
}

/// `bpf_sk_getsockopt` for `SOL_TCP`/`TCP_CONGESTION`: the name, NUL-terminated within
/// `optval`.
fn getsockopt(sock: &Socket, level: u64, optname: u64, optval: &mut [u8]) -> Result<(), Errno> {
    if level != SOL_TCP || optname != TCP_CONGESTION || optval.len() < 2 {
        return Err(Errno::EINVAL);
    }
    let ops = sock.ca_ops().ok_or(Errno::EINVAL)?;
    let len = (optval.len() - 1).min(TCP_CA_NAME_MAX);
    optval[..len].copy_from_slice(&ops.name_bytes()[..len]);
    optval[len..].fill(0);
    Ok(())
}

fn proto(id: i32, name: &'static str, args: [Arg; 5]) -> HelperProto {
    HelperProto {
        id,
        name,
        ret: Ret::INTEGER,
        args,
        gpl_only: false,
        might_sleep: false,
        pkt_access: false,
    }
}

/// Registers the helpers with `rt`.
///
/// # Errors
///
/// The name and errno of the first registration the runtime refused.
pub(crate) fn register(rt: &Runtime) -> Result<(), (&'static str, Errno)> {
    let types = vec![ProgType::STRUCT_OPS];
    let send_ack = HostHelper {
        proto: proto(
            FUNC_TCP_SEND_ACK,
            "tcp_send_ack",
            [
                Arg::new(ArgType::PtrToBtfId),
                Arg::new(ArgType::Anything),
                Arg::DONTCARE,
                Arg::DONTCARE,
                Arg::DONTCARE,
            ],
        ),
        prog_types: types.clone(),
        func: Arc::new(|caller: &mut Caller<'_>, a: [u64; 5]| {
            let Some(sock) = socket(caller, a[0])? else {
                return Ok(neg(Errno::EINVAL));
            };
            // The kernel's bpf_tcp_send_ack is __tcp_send_ack(sk, rcv_nxt): the same
            // hook native congestion controls call.
            let sk: *mut Socket = sock;
            crate::cc::hooks::send_ack(sk.cast(), a[1] as u32);
            Ok(0)
        }),
    };
    let set = HostHelper {
        proto: proto(
            FUNC_SETSOCKOPT,
            "setsockopt",
            [
                Arg::new(ArgType::PtrToBtfIdSockCommon),
                Arg::new(ArgType::Anything),
                Arg::new(ArgType::Anything),
                Arg::with(ArgType::PtrToMem, TypeFlags::MEM_RDONLY),
                Arg::new(ArgType::ConstSize),
            ],
        ),
        prog_types: types.clone(),
        func: Arc::new(|caller: &mut Caller<'_>, a: [u64; 5]| {
            let len = (a[4] as usize).min(4096);
            let mut buf = vec![0u8; len];
            caller.read(a[3], &mut buf)?;
            let Some(sock) = socket(caller, a[0])? else {
                return Ok(neg(Errno::EINVAL));
            };
            Ok(match setsockopt(sock, a[1], a[2], &buf) {
                Ok(()) => 0,
                Err(e) => neg(e),
            })
        }),
    };
    let get = HostHelper {
        proto: proto(
            FUNC_GETSOCKOPT,
            "getsockopt",
            [
                Arg::new(ArgType::PtrToBtfIdSockCommon),
                Arg::new(ArgType::Anything),
                Arg::new(ArgType::Anything),
                Arg::with(
                    ArgType::PtrToMem,
                    TypeFlags::MEM_UNINIT.union(TypeFlags::MEM_WRITE),
                ),
                Arg::new(ArgType::ConstSize),
            ],
        ),
        prog_types: types,
        func: Arc::new(|caller: &mut Caller<'_>, a: [u64; 5]| {
            let len = (a[4] as usize).min(4096);
            let mut buf = vec![0u8; len];
            let r = match socket(caller, a[0])? {
                None => Err(Errno::EINVAL),
                Some(sock) => getsockopt(sock, a[1], a[2], &mut buf),
            };
            let r = match r {
                Ok(()) => 0,
                Err(e) => {
                    // The kernel zeroes the buffer on an error.
                    buf.fill(0);
                    neg(e)
                }
            };
            caller.write(a[3], &buf)?;
            Ok(r)
        }),
    };
    for (name, h) in [
        ("bpf_tcp_send_ack", send_ack),
        ("bpf_setsockopt", set),
        ("bpf_getsockopt", get),
    ] {
        rt.register_helper(h).map_err(|e| (name, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostConfig, TcpHost};

    #[test]
    fn tcp_congestion_sockopt_follows_the_kernel() {
        let host = TcpHost::new(HostConfig::default()).unwrap();
        let mut s = host.socket();
        s.set_congestion_control("reno").unwrap();
        let mut name = [0xffu8; 16];
        getsockopt(&s, SOL_TCP, TCP_CONGESTION, &mut name).unwrap();
        assert_eq!(&name[..5], b"reno\0");
        assert_eq!(getsockopt(&s, SOL_TCP, 1, &mut name), Err(Errno::EINVAL));
        assert_eq!(
            setsockopt(&mut s, SOL_TCP, TCP_CONGESTION, b"cdg\0"),
            Err(Errno::ENOTSUPP)
        );
        assert_eq!(
            setsockopt(&mut s, SOL_TCP, TCP_CONGESTION, b"nosuch\0"),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            setsockopt(&mut s, SOL_TCP, TCP_CONGESTION, b"x"),
            Err(Errno::EINVAL)
        );
        s.set_chg_cc_in_progress(true);
        assert_eq!(
            setsockopt(&mut s, SOL_TCP, TCP_CONGESTION, b"reno\0"),
            Err(Errno::EBUSY)
        );
        s.set_chg_cc_in_progress(false);
        setsockopt(&mut s, SOL_TCP, TCP_CONGESTION, b"reno\0").unwrap();
        assert_eq!(s.ca_name(), "reno");
    }

    #[test]
    fn only_live_sockets_are_found() {
        let host = TcpHost::new(HostConfig::default()).unwrap();
        let s = host.socket();
        let addr = std::ptr::from_ref::<Socket>(&s).expose_provenance() as u64;
        // SAFETY: nothing else uses the socket while the reference lives.
        assert!(unsafe { socket_of(addr) }.is_some());
        let plain = Box::new(TcpSock::default());
        let plain_addr = std::ptr::from_ref::<TcpSock>(&plain).expose_provenance() as u64;
        // SAFETY: as above; the lookup finds nothing and dereferences nothing.
        assert!(
            unsafe { socket_of(plain_addr) }.is_none(),
            "a bare tcp_sock"
        );
        assert!(unsafe { socket_of(0) }.is_none());
        drop(s);
        // SAFETY: as above.
        assert!(unsafe { socket_of(addr) }.is_none(), "a dropped socket");
    }
}
