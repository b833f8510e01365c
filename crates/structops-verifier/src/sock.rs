//! Loads through socket pointers: which fields of the uapi socket views a
//! program may read (`bpf_sock_common_is_valid_access`,
//! `bpf_sock_is_valid_access`, `bpf_tcp_sock_is_valid_access`,
//! `bpf_xdp_sock_is_valid_access` of `net/core/filter.c`).
//!
//! The rules depend only on the uapi structs (`struct bpf_sock`,
//! `struct bpf_tcp_sock`, `struct bpf_xdp_sock`), not on the program type,
//! so they live here rather than behind [`crate::VerifierEnv`]. Socket
//! pointers are never written through.

use crate::env::SockPtr;

/// Offsets in `struct bpf_sock`.
mod bpf_sock {
    pub const FAMILY: i32 = 4;
    pub const TYPE: i32 = 8;
    pub const PROTOCOL: i32 = 12;
    pub const PRIORITY_END: i32 = 24;
    pub const SRC_IP4: i32 = 24;
    pub const SRC_IP6: i32 = 28;
    pub const SRC_PORT: i32 = 44;
    pub const DST_PORT: i32 = 48;
    pub const DST_PORT_END: i32 = 50;
    pub const DST_IP4: i32 = 52;
    pub const DST_IP6: i32 = 56;
    pub const STATE: i32 = 72;
    pub const RX_QUEUE_MAPPING: i32 = 76;
    /// `sizeof(struct bpf_sock)`.
    pub const SIZE: i32 = 80;
}

/// Offsets in `struct bpf_tcp_sock`.
mod bpf_tcp_sock {
    pub const BYTES_RECEIVED: i32 = 80;
    pub const BYTES_ACKED: i32 = 88;
    /// `offsetofend(struct bpf_tcp_sock, icsk_retransmits)`.
    pub const END: i32 = 112;
}

/// `offsetofend(struct bpf_xdp_sock, queue_id)`.
const BPF_XDP_SOCK_END: i32 = 4;

/// `bpf_ctx_narrow_access_ok`.
fn narrow_ok(size: i32, size_default: i32) -> bool {
    size <= size_default && size > 0 && size & (size - 1) == 0
}

/// `bpf_sock_is_valid_access`.
fn sock_valid(off: i32, size: i32) -> bool {
    use bpf_sock::*;
    if !(0..SIZE).contains(&off) || size <= 0 || off % size != 0 {
        return false;
    }
    let in_range = |start: i32, len: i32| (start..start + len).contains(&off);
    if matches!(
        off,
        STATE | FAMILY | TYPE | PROTOCOL | SRC_PORT | RX_QUEUE_MAPPING
    ) || in_range(SRC_IP4, 4)
        || in_range(SRC_IP6, 16)
        || in_range(DST_IP4, 4)
        || in_range(DST_IP6, 16)
    {
        return narrow_ok(size, 4);
    }
    if (DST_PORT..DST_PORT_END).contains(&off) {
        let field = if size == 4 { 4 } else { 2 };
        return narrow_ok(size, field);
    }
    if (DST_PORT_END..DST_IP4).contains(&off) {
        return false;
    }
    size == 4
}

/// `bpf_sock_common_is_valid_access`: no `type` to `priority` (they are not
/// in `struct sock_common`).
fn sock_common_valid(off: i32, size: i32) -> bool {
    if (bpf_sock::TYPE..bpf_sock::PRIORITY_END).contains(&off) {
        return false;
    }
    sock_valid(off, size)
}

/// `bpf_tcp_sock_is_valid_access`.
fn tcp_sock_valid(off: i32, size: i32) -> bool {
    use bpf_tcp_sock::*;
    if !(0..END).contains(&off) || size <= 0 || off % size != 0 {
        return false;
    }
    match off {
        BYTES_RECEIVED | BYTES_ACKED => size == 8,
        _ => size == 4,
    }
}

/// `bpf_xdp_sock_is_valid_access`.
fn xdp_sock_valid(off: i32, size: i32) -> bool {
    (0..BPF_XDP_SOCK_END).contains(&off) && size == 4 && off % size == 0
}

/// Whether a load of `size` bytes at `off` through a socket pointer of
/// `kind` is allowed (the `check_sock_access` switch).
pub(crate) fn valid_access(kind: SockPtr, off: i32, size: u32) -> bool {
    let Ok(size) = i32::try_from(size) else {
        return false;
    };
    match kind {
        SockPtr::SockCommon => sock_common_valid(off, size),
        SockPtr::Socket => sock_valid(off, size),
        SockPtr::TcpSock => tcp_sock_valid(off, size),
        SockPtr::XdpSock => xdp_sock_valid(off, size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_sock_fields_follow_filter_c() {
        let s = SockPtr::Socket;
        // Narrow loads of addresses and the exact-offset fields.
        assert!(valid_access(s, 24, 1) && valid_access(s, 25, 1) && valid_access(s, 26, 2));
        assert!(valid_access(s, 4, 2) && !valid_access(s, 5, 1));
        assert!(valid_access(s, 44, 2) && !valid_access(s, 46, 2));
        // dst_port: 2 bytes, or the whole 4-byte word; the padding is refused.
        assert!(valid_access(s, 48, 4) && valid_access(s, 48, 2) && valid_access(s, 49, 1));
        assert!(!valid_access(s, 50, 2) && !valid_access(s, 51, 1));
        // Plain fields: 4 bytes only.
        assert!(valid_access(s, 0, 4) && !valid_access(s, 0, 2) && !valid_access(s, 16, 8));
        assert!(valid_access(s, 76, 4) && !valid_access(s, 80, 4) && !valid_access(s, -4, 4));
        assert!(!valid_access(s, 6, 4), "misaligned");
        // sock_common: type..priority are full-socket fields.
        let c = SockPtr::SockCommon;
        for off in [8, 12, 16, 20] {
            assert!(valid_access(s, off, 4) && !valid_access(c, off, 4));
        }
        assert!(valid_access(c, 4, 4) && valid_access(c, 72, 4));
    }

    #[test]
    fn tcp_and_xdp_sock_fields() {
        let t = SockPtr::TcpSock;
        assert!(valid_access(t, 0, 4) && !valid_access(t, 0, 2));
        assert!(valid_access(t, 80, 8) && valid_access(t, 88, 8) && !valid_access(t, 80, 4));
        assert!(valid_access(t, 108, 4) && !valid_access(t, 112, 4));
        let x = SockPtr::XdpSock;
        assert!(valid_access(x, 0, 4) && !valid_access(x, 4, 4) && !valid_access(x, 0, 8));
    }
}
