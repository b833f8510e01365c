//! Program contexts: the memory `r1` points at when a networking program runs.
//!
//! The kernel gives XDP and skb programs a uapi view (`struct xdp_md`,
//! `struct __sk_buff`) whose loads the verifier rewrites into loads from the real
//! `xdp_buff`/`sk_buff` (`convert_ctx_accesses`). Here the context *is* the uapi struct,
//! filled in before the run, followed by the runtime's own fields (the 64-bit packet
//! pointers the helpers work with):
//!
//! - [`XdpBuff`]: `struct xdp_md` at offset 0, then `data`, `data_end`, `data_meta`,
//!   `data_hard_start` as real addresses;
//! - [`SkBuff`]: `struct __sk_buff` (192 bytes) at offset 0, then the packet pointers,
//!   then the [`BpfSock`] its `sk` field points to.
//!
//! The uapi fields `data`, `data_end` and `data_meta` are 32 bits wide, too narrow for
//! an address. After verification the runtime rewrites every load of them
//! (`VerifierEnv::convert_ctx_access` in the runtime's verify module) into a 64-bit
//! load of the real pointer at [`XdpBuff::DATA`], [`XdpBuff::DATA_END`],
//! [`XdpBuff::DATA_META`], [`SkBuff::DATA`] or [`SkBuff::DATA_END`] (an skb run has no
//! metadata: its `data_meta` is `data`), so packets may sit anywhere in memory. All
//! other fields, narrow loads included, are read and written in the uapi view itself.
//! The 32-bit views still hold the low 32 bits of the pointers: programs loaded
//! unverified (which are not rewritten) read them, so their test runs place packets
//! below 4 GiB where the truncation loses nothing (see [`crate::test_run`]).

use std::ptr::addr_of_mut;

/// `sizeof(struct xdp_md)`.
pub const XDP_MD_SIZE: usize = 24;
/// `sizeof(struct __sk_buff)`.
pub const SK_BUFF_SIZE: usize = 192;

/// `struct xdp_md`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpMd {
    /// `data`: the low 32 bits of the packet start in a run.
    pub data: u32,
    /// `data_end`.
    pub data_end: u32,
    /// `data_meta`.
    pub data_meta: u32,
    /// `ingress_ifindex`.
    pub ingress_ifindex: u32,
    /// `rx_queue_index`.
    pub rx_queue_index: u32,
    /// `egress_ifindex`.
    pub egress_ifindex: u32,
}

impl XdpMd {
    /// The bytes of the struct, as `ctx_in`/`ctx_out` carry it.
    pub fn to_bytes(&self) -> [u8; XDP_MD_SIZE] {
        let mut out = [0u8; XDP_MD_SIZE];
        let words = [
            self.data,
            self.data_end,
            self.data_meta,
            self.ingress_ifindex,
            self.rx_queue_index,
            self.egress_ifindex,
        ];
        for (o, w) in out.chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_ne_bytes());
        }
        out
    }

    /// The struct from `ctx_in` bytes (missing bytes are zero).
    pub fn from_bytes(b: &[u8]) -> XdpMd {
        let w = |i: usize| {
            let mut x = [0u8; 4];
            for (d, s) in x.iter_mut().zip(b.iter().skip(i * 4)) {
                *d = *s;
            }
            u32::from_ne_bytes(x)
        };
        XdpMd {
            data: w(0),
            data_end: w(1),
            data_meta: w(2),
            ingress_ifindex: w(3),
            rx_queue_index: w(4),
            egress_ifindex: w(5),
        }
    }
}

/// The runtime's `xdp_buff`: the program sees [`XdpMd`] at offset 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpBuff {
    /// The uapi view.
    pub md: XdpMd,
    /// The packet start.
    pub data: u64,
    /// One past the packet's last byte.
    pub data_end: u64,
    /// The metadata start (`data_meta <= data`).
    pub data_meta: u64,
    /// The start of the buffer (headroom included).
    pub data_hard_start: u64,
    /// The buffer size (`frame_sz`).
    pub frame_sz: u32,
    /// Padding.
    pub pad: u32,
}

impl XdpBuff {
    /// Offset of [`XdpBuff::data`].
    pub const DATA: usize = 24;
    /// Offset of [`XdpBuff::data_end`].
    pub const DATA_END: usize = 32;
    /// Offset of [`XdpBuff::data_meta`].
    pub const DATA_META: usize = 40;

    /// Sets the three packet pointers, in both views.
    ///
    /// # Safety
    ///
    /// `this` must point to a live `XdpBuff` that nothing holds a reference to.
    pub(crate) unsafe fn set_pointers(
        this: *mut XdpBuff,
        data_meta: u64,
        data: u64,
        data_end: u64,
    ) {
        // SAFETY: (caller) valid for writes; fields written through raw pointers.
        unsafe {
            addr_of_mut!((*this).data_meta).write(data_meta);
            addr_of_mut!((*this).data).write(data);
            addr_of_mut!((*this).data_end).write(data_end);
            addr_of_mut!((*this).md.data_meta).write(data_meta as u32);
            addr_of_mut!((*this).md.data).write(data as u32);
            addr_of_mut!((*this).md.data_end).write(data_end as u32);
        }
    }
}

/// Offsets of the `struct __sk_buff` fields a run fills in or reads back.
pub mod sk_buff {
    /// `len`.
    pub const LEN: usize = 0;
    /// `pkt_type`.
    pub const PKT_TYPE: usize = 4;
    /// `mark`.
    pub const MARK: usize = 8;
    /// `queue_mapping`.
    pub const QUEUE_MAPPING: usize = 12;
    /// `protocol` (network byte order in the low 16 bits).
    pub const PROTOCOL: usize = 16;
    /// `vlan_present`.
    pub const VLAN_PRESENT: usize = 20;
    /// `vlan_tci`.
    pub const VLAN_TCI: usize = 24;
    /// `vlan_proto`.
    pub const VLAN_PROTO: usize = 28;
    /// `priority`.
    pub const PRIORITY: usize = 32;
    /// `ingress_ifindex`.
    pub const INGRESS_IFINDEX: usize = 36;
    /// `ifindex`.
    pub const IFINDEX: usize = 40;
    /// `tc_index`.
    pub const TC_INDEX: usize = 44;
    /// `cb[5]`.
    pub const CB: usize = 48;
    /// `hash`.
    pub const HASH: usize = 68;
    /// `tc_classid`.
    pub const TC_CLASSID: usize = 72;
    /// `data`.
    pub const DATA: usize = 76;
    /// `data_end`.
    pub const DATA_END: usize = 80;
    /// `napi_id`.
    pub const NAPI_ID: usize = 84;
    /// `family`.
    pub const FAMILY: usize = 88;
    /// `remote_ip4`.
    pub const REMOTE_IP4: usize = 92;
    /// `local_ip4`.
    pub const LOCAL_IP4: usize = 96;
    /// `remote_ip6[4]`.
    pub const REMOTE_IP6: usize = 100;
    /// `local_ip6[4]`.
    pub const LOCAL_IP6: usize = 116;
    /// `data_meta`.
    pub const DATA_META: usize = 140;
    /// `tstamp`.
    pub const TSTAMP: usize = 152;
    /// `wire_len`.
    pub const WIRE_LEN: usize = 160;
    /// `gso_segs`.
    pub const GSO_SEGS: usize = 164;
    /// `gso_size`.
    pub const GSO_SIZE: usize = 176;
    /// `sk`: a pointer to the packet's socket.
    pub const SK: usize = 168;
    /// `hwtstamp`.
    pub const HWTSTAMP: usize = 184;
}

/// `sizeof(struct bpf_sock)`.
pub const BPF_SOCK_SIZE: usize = 80;

/// `struct bpf_sock`: the view of a socket that loads through a socket pointer see
/// (`__sk_buff->sk`, `bpf_sk_fullsock`). Like the contexts, the runtime keeps the uapi
/// struct itself, so the verifier's `bpf_sock_is_valid_access` rules map each load onto
/// a field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfSock {
    /// `bound_dev_if`.
    pub bound_dev_if: u32,
    /// `family` (`AF_*`).
    pub family: u32,
    /// `type` (`SOCK_*`).
    pub sk_type: u32,
    /// `protocol` (`IPPROTO_*`).
    pub protocol: u32,
    /// `mark`.
    pub mark: u32,
    /// `priority`.
    pub priority: u32,
    /// `src_ip4` (network byte order).
    pub src_ip4: u32,
    /// `src_ip6` (network byte order).
    pub src_ip6: [u32; 4],
    /// `src_port` (host byte order).
    pub src_port: u32,
    /// `dst_port` (network byte order) and its 16 bits of padding.
    pub dst_port: u32,
    /// `dst_ip4` (network byte order).
    pub dst_ip4: u32,
    /// `dst_ip6` (network byte order).
    pub dst_ip6: [u32; 4],
    /// `state` (`TCP_*`).
    pub state: u32,
    /// `rx_queue_mapping` (-1: none).
    pub rx_queue_mapping: i32,
}

impl BpfSock {
    /// `TCP_CLOSE`: the state `sock_init_data` leaves a new socket in.
    pub const TCP_CLOSE: u32 = 7;
    /// `TCP_TIME_WAIT`.
    pub const TCP_TIME_WAIT: u32 = 6;
    /// `TCP_LISTEN`.
    pub const TCP_LISTEN: u32 = 10;
    /// `TCP_NEW_SYN_RECV`.
    pub const TCP_NEW_SYN_RECV: u32 = 12;
    /// `IPPROTO_TCP`.
    pub const IPPROTO_TCP: u32 = 6;

    /// `sk_fullsock`: not a timewait or request socket.
    pub fn is_fullsock(&self) -> bool {
        !matches!(self.state, Self::TCP_TIME_WAIT | Self::TCP_NEW_SYN_RECV)
    }
}

/// The runtime's `sk_buff`: the program sees `struct __sk_buff` at offset 0.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkBuff {
    /// The uapi view.
    pub uapi: [u8; SK_BUFF_SIZE],
    /// `skb->data`: where the program's packet view starts.
    pub data: u64,
    /// One past the packet's last byte.
    pub data_end: u64,
    /// The MAC header.
    pub mac_header: u64,
    /// The network header.
    pub network_header: u64,
    /// `skb->len`.
    pub len: u32,
    /// Padding.
    pub pad: u32,
    /// The socket `__sk_buff->sk` points to in a test run (the kernel's
    /// `bpf_prog_test_run_skb` gives every skb a dummy socket).
    pub sock: BpfSock,
}

impl SkBuff {
    /// Offset of [`SkBuff::sock`].
    pub const SOCK: usize = SK_BUFF_SIZE + 40;
}

impl Default for SkBuff {
    fn default() -> SkBuff {
        SkBuff {
            uapi: [0; SK_BUFF_SIZE],
            data: 0,
            data_end: 0,
            mac_header: 0,
            network_header: 0,
            len: 0,
            pad: 0,
            sock: BpfSock::default(),
        }
    }
}

impl SkBuff {
    /// Offset of [`SkBuff::data`] (what loads of `__sk_buff.data` and `data_meta`
    /// are rewritten to).
    pub const DATA: usize = SK_BUFF_SIZE;
    /// Offset of [`SkBuff::data_end`].
    pub const DATA_END: usize = SK_BUFF_SIZE + 8;

    /// Reads the `u32` field at `off` of the uapi view.
    pub fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        if let Some(s) = self.uapi.get(off..off + 4) {
            b.copy_from_slice(s);
        }
        u32::from_ne_bytes(b)
    }

    /// Writes the `u32` field at `off` of the uapi view.
    pub fn set_u32(&mut self, off: usize, v: u32) {
        if let Some(d) = self.uapi.get_mut(off..off + 4) {
            d.copy_from_slice(&v.to_ne_bytes());
        }
    }

    /// Reads the `u64` field at `off` of the uapi view.
    pub fn get_u64(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.uapi.get(off..off + 8) {
            b.copy_from_slice(s);
        }
        u64::from_ne_bytes(b)
    }

    /// Writes the `u64` field at `off` of the uapi view.
    pub fn set_u64(&mut self, off: usize, v: u64) {
        if let Some(d) = self.uapi.get_mut(off..off + 8) {
            d.copy_from_slice(&v.to_ne_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_uapi() {
        assert_eq!(std::mem::size_of::<XdpMd>(), XDP_MD_SIZE);
        assert_eq!(std::mem::offset_of!(XdpBuff, data), XdpBuff::DATA);
        assert_eq!(std::mem::offset_of!(XdpBuff, data_end), XdpBuff::DATA_END);
        assert_eq!(std::mem::offset_of!(XdpBuff, data_meta), XdpBuff::DATA_META);
        assert_eq!(std::mem::offset_of!(SkBuff, data), SkBuff::DATA);
        assert_eq!(std::mem::offset_of!(SkBuff, data_end), SkBuff::DATA_END);
        assert_eq!(std::mem::offset_of!(SkBuff, sock), SkBuff::SOCK);
        assert_eq!(std::mem::size_of::<BpfSock>(), BPF_SOCK_SIZE);
        assert_eq!(std::mem::offset_of!(BpfSock, src_port), 44);
        assert_eq!(std::mem::offset_of!(BpfSock, dst_ip4), 52);
        assert_eq!(std::mem::offset_of!(BpfSock, rx_queue_mapping), 76);
        let md = XdpMd {
            data: 1,
            data_end: 2,
            data_meta: 3,
            ingress_ifindex: 4,
            rx_queue_index: 5,
            egress_ifindex: 6,
        };
        assert_eq!(XdpMd::from_bytes(&md.to_bytes()), md);
        assert_eq!(XdpMd::from_bytes(&[7, 0]).data, 7);
        let mut skb = SkBuff::default();
        skb.set_u32(sk_buff::MARK, 9);
        skb.set_u64(sk_buff::TSTAMP, u64::MAX);
        assert_eq!(
            (skb.get_u32(sk_buff::MARK), skb.get_u64(sk_buff::TSTAMP)),
            (9, u64::MAX)
        );
        assert_eq!(skb.get_u32(400), 0, "out of range reads are zero");
    }
}
