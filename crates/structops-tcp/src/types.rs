//! The host types: Rust mirrors of the kernel's TCP socket structs and of
//! `tcp_congestion_ops`, named as in `vmlinux.h` so that congestion-control programs
//! compiled against it relocate through CO-RE.
//!
//! The layout is this crate's own (`#[repr(C)]`, emitted to BTF by `#[derive(Btf)]`), not
//! the kernel's: CO-RE finds every field by name. What must match the kernel is the
//! *nesting*, because programs cast between the views of one socket:
//! `tcp_sock` starts with `inet_connection_sock`, which starts with `inet_sock`, which
//! starts with `sock`, which starts with `sock_common` — so `tcp_sk(sk)`, `inet_csk(sk)`
//! and `sk` are one address. Field types have the kernel's sizes, and the bitfields the
//! programs read (`icsk_ca_state`) are bitfields here too.
//!
//! Only the fields a congestion control or the simulator uses are present: every field the
//! kernel's selftest CC programs read or write, and what the native CUBIC, DCTCP, BBR and
//! the simulator's TCP need. A program that reads a field this host lacks fails to load
//! (CO-RE cannot relocate it), as it would against a kernel without that field.

use std::ffi::{c_int, c_long, c_ulong};

use structops_btf::host::CChar;
use structops_btf_derive::Btf;

/// `TCP_CA_NAME_MAX`.
pub const TCP_CA_NAME_MAX: usize = 16;
/// `ICSK_CA_PRIV_SIZE`: bytes of per-socket congestion-control state.
pub const ICSK_CA_PRIV_SIZE: usize = 104;
/// `TCP_INFINITE_SSTHRESH`.
pub const TCP_INFINITE_SSTHRESH: u32 = 0x7fff_ffff;
/// `TCP_INIT_CWND`.
pub const TCP_INIT_CWND: u32 = 10;

/// `TCP_ECN_OK`.
pub const TCP_ECN_OK: u8 = 1;
/// `TCP_ECN_QUEUE_CWR`.
pub const TCP_ECN_QUEUE_CWR: u8 = 2;
/// `TCP_ECN_DEMAND_CWR`.
pub const TCP_ECN_DEMAND_CWR: u8 = 4;
/// `TCP_ECN_SEEN`.
pub const TCP_ECN_SEEN: u8 = 8;

/// `ICSK_ACK_SCHED`.
pub const ICSK_ACK_SCHED: u8 = 1;
/// `ICSK_ACK_TIMER`.
pub const ICSK_ACK_TIMER: u8 = 2;
/// `ICSK_ACK_PUSHED`.
pub const ICSK_ACK_PUSHED: u8 = 4;
/// `ICSK_ACK_PUSHED2`.
pub const ICSK_ACK_PUSHED2: u8 = 8;
/// `ICSK_ACK_NOW`.
pub const ICSK_ACK_NOW: u8 = 16;

/// `TCP_CONG_NON_RESTRICTED`.
pub const TCP_CONG_NON_RESTRICTED: u32 = 0x1;
/// `TCP_CONG_NEEDS_ECN`.
pub const TCP_CONG_NEEDS_ECN: u32 = 0x2;
/// `TCP_CONG_NEEDS_ACCECN`.
pub const TCP_CONG_NEEDS_ACCECN: u32 = 0x4;

/// `CA_ACK_SLOWPATH` (`in_ack_event` flags).
pub const CA_ACK_SLOWPATH: u32 = 1 << 0;
/// `CA_ACK_WIN_UPDATE`.
pub const CA_ACK_WIN_UPDATE: u32 = 1 << 1;
/// `CA_ACK_ECE`.
pub const CA_ACK_ECE: u32 = 1 << 2;

/// `FLAG_DATA` (`cong_control`'s `flag`): the ACK carried data.
pub const FLAG_DATA: i32 = 0x01;
/// `FLAG_WIN_UPDATE`.
pub const FLAG_WIN_UPDATE: i32 = 0x02;
/// `FLAG_DATA_ACKED`.
pub const FLAG_DATA_ACKED: i32 = 0x04;
/// `FLAG_RETRANS_DATA_ACKED`.
pub const FLAG_RETRANS_DATA_ACKED: i32 = 0x08;
/// `FLAG_SYN_ACKED`.
pub const FLAG_SYN_ACKED: i32 = 0x10;
/// `FLAG_DATA_SACKED`.
pub const FLAG_DATA_SACKED: i32 = 0x20;
/// `FLAG_ECE`.
pub const FLAG_ECE: i32 = 0x40;
/// `FLAG_LOST_RETRANS`.
pub const FLAG_LOST_RETRANS: i32 = 0x80;
/// `FLAG_SLOWPATH`.
pub const FLAG_SLOWPATH: i32 = 0x100;
/// `FLAG_SND_UNA_ADVANCED`.
pub const FLAG_SND_UNA_ADVANCED: i32 = 0x400;
/// `FLAG_ACKED`.
pub const FLAG_ACKED: i32 = FLAG_DATA_ACKED | FLAG_SYN_ACKED;
/// `FLAG_FORWARD_PROGRESS`.
pub const FLAG_FORWARD_PROGRESS: i32 = FLAG_ACKED | FLAG_DATA_SACKED;

/// `SK_PACING_NONE`.
pub const SK_PACING_NONE: u32 = 0;
/// `SK_PACING_NEEDED`.
pub const SK_PACING_NEEDED: u32 = 1;
/// `SK_PACING_FQ`.
pub const SK_PACING_FQ: u32 = 2;

/// `enum tcp_ca_event`: what `cwnd_event` is told.
#[derive(Btf, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
#[btf(name = "tcp_ca_event", crate = "structops_btf")]
pub enum TcpCaEvent {
    /// First transmit when no packets are in flight.
    #[btf(name = "CA_EVENT_TX_START")]
    TxStart = 0,
    /// Congestion window restart after idle.
    #[btf(name = "CA_EVENT_CWND_RESTART")]
    CwndRestart = 1,
    /// End of congestion recovery.
    #[btf(name = "CA_EVENT_COMPLETE_CWR")]
    CompleteCwr = 2,
    /// Loss timeout.
    #[btf(name = "CA_EVENT_LOSS")]
    Loss = 3,
    /// ECT set, but not CE marked.
    #[btf(name = "CA_EVENT_ECN_NO_CE")]
    EcnNoCe = 4,
    /// Received CE marked IP packet.
    #[btf(name = "CA_EVENT_ECN_IS_CE")]
    EcnIsCe = 5,
}

impl TcpCaEvent {
    /// The event with the raw value `v`.
    pub fn from_raw(v: u64) -> Option<TcpCaEvent> {
        Some(match v {
            0 => TcpCaEvent::TxStart,
            1 => TcpCaEvent::CwndRestart,
            2 => TcpCaEvent::CompleteCwr,
            3 => TcpCaEvent::Loss,
            4 => TcpCaEvent::EcnNoCe,
            5 => TcpCaEvent::EcnIsCe,
            _ => return None,
        })
    }
}

/// `enum tcp_ca_state` (the values of `icsk_ca_state`).
#[derive(Btf, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
#[btf(name = "tcp_ca_state", crate = "structops_btf")]
pub enum TcpCaState {
    /// Nothing bad has been observed.
    #[btf(name = "TCP_CA_Open")]
    Open = 0,
    /// Dupacks or SACKs seen: reordering or loss suspected.
    #[btf(name = "TCP_CA_Disorder")]
    Disorder = 1,
    /// cwnd reduced because of ECN (or local congestion).
    #[btf(name = "TCP_CA_CWR")]
    Cwr = 2,
    /// Fast retransmit / recovery.
    #[btf(name = "TCP_CA_Recovery")]
    Recovery = 3,
    /// Retransmission timeout.
    #[btf(name = "TCP_CA_Loss")]
    Loss = 4,
}

impl TcpCaState {
    /// The state with the raw value `v`.
    pub fn from_raw(v: u8) -> Option<TcpCaState> {
        Some(match v {
            0 => TcpCaState::Open,
            1 => TcpCaState::Disorder,
            2 => TcpCaState::Cwr,
            3 => TcpCaState::Recovery,
            4 => TcpCaState::Loss,
            _ => return None,
        })
    }
}

/// `struct sock_common`: the part of a socket shared with request and timewait sockets.
#[derive(Btf, Clone, Copy, Debug, Default)]
#[repr(C)]
#[btf(name = "sock_common", crate = "structops_btf")]
pub struct SockCommon {
    /// Foreign IPv4 address.
    pub skc_daddr: u32,
    /// Bound local IPv4 address.
    pub skc_rcv_saddr: u32,
    /// Hash value for lookup tables.
    pub skc_hash: u32,
    /// Destination port (network order).
    pub skc_dport: u16,
    /// Local port.
    pub skc_num: u16,
    /// Address family.
    pub skc_family: u16,
    /// Connection state (`TCP_ESTABLISHED`, ...).
    pub skc_state: u8,
    /// `skc_reuse:4, skc_reuseport:1, skc_ipv6only:1, skc_net_refcnt:1`.
    #[btf(bitfields = "skc_reuse:4, skc_reuseport:1, skc_ipv6only:1, skc_net_refcnt:1")]
    pub skc_bits: u8,
    /// Bound device index.
    pub skc_bound_dev_if: c_int,
    /// Socket cookie.
    pub skc_cookie: u64,
}

/// `struct sock`.
#[derive(Btf, Clone, Copy, Debug, Default)]
#[repr(C)]
#[btf(name = "sock", crate = "structops_btf")]
pub struct Sock {
    /// The common part (`sk_state` is `__sk_common.skc_state`).
    pub __sk_common: SockCommon,
    /// `enum sk_pacing`: whether pacing is needed (writable by CC programs).
    pub sk_pacing_status: u32,
    /// Pacing rate in bytes per second (writable by CC programs).
    pub sk_pacing_rate: c_ulong,
    /// Maximum pacing rate (`SO_MAX_PACING_RATE`).
    pub sk_max_pacing_rate: c_ulong,
    /// Send buffer size in bytes.
    pub sk_sndbuf: c_int,
    /// Largest GSO burst in segments.
    pub sk_gso_max_segs: u16,
    /// Pacing shift (`sk_pacing_shift`, 10 by default: 1 ms of data per TSO burst).
    pub sk_pacing_shift: u8,
    /// Largest GSO packet in bytes (CUBIC's HyStart sizes its ACK-delay cushion by it).
    pub sk_gso_max_size: u32,
}

/// `struct inet_sock`.
#[derive(Btf, Clone, Copy, Debug, Default)]
#[repr(C)]
#[btf(name = "inet_sock", crate = "structops_btf")]
pub struct InetSock {
    /// The socket.
    pub sk: Sock,
    /// Source address.
    pub inet_saddr: u32,
    /// Unicast TTL.
    pub uc_ttl: i16,
    /// Source port.
    pub inet_sport: u16,
    /// TOS byte.
    pub tos: u8,
}

/// The delayed-ACK state of `inet_connection_sock` (`icsk_ack`, anonymous in the kernel;
/// CO-RE matches it by the member name).
#[derive(Btf, Clone, Copy, Debug, Default)]
#[repr(C)]
#[btf(name = "inet_connection_sock_ack", crate = "structops_btf")]
pub struct IcskAck {
    /// `ICSK_ACK_*` bits: an ACK is pending (writable by CC programs).
    pub pending: u8,
    /// Scheduled number of quick acks.
    pub quick: u8,
    /// Interactive session.
    pub pingpong: u8,
    /// Number of attempts.
    pub retry: u8,
    /// `ato:8, lrcv_flowlabel:20, dst_quick_ack:1, unused:3`.
    #[btf(bitfields = "ato:8, lrcv_flowlabel:20, dst_quick_ack:1, unused:3")]
    pub bits: u32,
    /// Timestamp of the last received data packet.
    pub lrcvtime: u32,
    /// Size of the last incoming segment.
    pub last_seg_size: u16,
    /// MSS used for delayed ACK decisions.
    pub rcv_mss: u16,
}

/// `struct inet_connection_sock`.
#[derive(Btf, Clone, Copy, Debug)]
#[repr(C)]
#[btf(name = "inet_connection_sock", crate = "structops_btf")]
pub struct InetConnectionSock {
    /// The inet socket.
    pub icsk_inet: InetSock,
    /// Retransmit timeout in jiffies.
    pub icsk_rto: u32,
    /// Minimum RTO in jiffies.
    pub icsk_rto_min: u32,
    /// Maximum RTO in jiffies.
    pub icsk_rto_max: u32,
    /// The congestion control this socket runs (`icsk_ca_ops`).
    pub icsk_ca_ops: *const TcpCongestionOps,
    /// `icsk_ca_state:5, icsk_ca_initialized:1, icsk_ca_setsockopt:1,
    /// icsk_ca_dst_locked:1` — read with [`InetConnectionSock::ca_state`].
    #[btf(
        bitfields = "icsk_ca_state:5, icsk_ca_initialized:1, icsk_ca_setsockopt:1, icsk_ca_dst_locked:1"
    )]
    pub icsk_ca_bits: u8,
    /// Number of unrecovered RTO timeouts.
    pub icsk_retransmits: u8,
    /// Scheduled timer event (`ICSK_TIME_*`).
    pub icsk_pending: u8,
    /// Exponential backoff of the RTO.
    pub icsk_backoff: u8,
    /// Unanswered zero-window probes.
    pub icsk_probes_out: u8,
    /// Delayed ACK control.
    pub icsk_ack: IcskAck,
    /// Per-socket congestion-control state (`inet_csk_ca(sk)`; writable by CC programs).
    pub icsk_ca_priv: [u64; ICSK_CA_PRIV_SIZE / 8],
}

impl Default for InetConnectionSock {
    fn default() -> InetConnectionSock {
        InetConnectionSock {
            icsk_inet: InetSock::default(),
            icsk_rto: 0,
            icsk_rto_min: 0,
            icsk_rto_max: 0,
            icsk_ca_ops: std::ptr::null(),
            icsk_ca_bits: 0,
            icsk_retransmits: 0,
            icsk_pending: 0,
            icsk_backoff: 0,
            icsk_probes_out: 0,
            icsk_ack: IcskAck::default(),
            icsk_ca_priv: [0; ICSK_CA_PRIV_SIZE / 8],
        }
    }
}

impl InetConnectionSock {
    /// `icsk_ca_state`.
    pub fn ca_state(&self) -> u8 {
        self.icsk_ca_bits & 0x1f
    }

    /// Sets `icsk_ca_state` (5 bits).
    pub fn set_ca_state(&mut self, state: u8) {
        self.icsk_ca_bits = (self.icsk_ca_bits & !0x1f) | (state & 0x1f);
    }

    /// `icsk_ca_initialized`.
    pub fn ca_initialized(&self) -> bool {
        self.icsk_ca_bits & 0x20 != 0
    }

    /// Sets `icsk_ca_initialized`.
    pub fn set_ca_initialized(&mut self, on: bool) {
        self.icsk_ca_bits = (self.icsk_ca_bits & !0x20) | if on { 0x20 } else { 0 };
    }

    /// `icsk_ca_setsockopt`.
    pub fn ca_setsockopt(&self) -> bool {
        self.icsk_ca_bits & 0x40 != 0
    }

    /// Sets `icsk_ca_setsockopt`.
    pub fn set_ca_setsockopt(&mut self, on: bool) {
        self.icsk_ca_bits = (self.icsk_ca_bits & !0x40) | if on { 0x40 } else { 0 };
    }
}

/// `struct minmax_sample`.
#[derive(Btf, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
#[btf(name = "minmax_sample", crate = "structops_btf")]
pub struct MinmaxSample {
    /// Time the measurement was taken.
    pub t: u32,
    /// Value measured.
    pub v: u32,
}

/// `struct minmax`: a windowed min/max filter (Kathleen Nichols' algorithm, as the
/// kernel's `lib/win_minmax.c`).
#[derive(Btf, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
#[btf(name = "minmax", crate = "structops_btf")]
pub struct Minmax {
    /// Best, second best and third best samples.
    pub s: [MinmaxSample; 3],
}

/// `struct tcp_sock`: the socket every congestion-control member is handed (as a
/// `struct sock *` that the verifier types as `tcp_sock`).
#[derive(Btf, Clone, Copy, Debug)]
#[repr(C)]
#[btf(name = "tcp_sock", crate = "structops_btf")]
pub struct TcpSock {
    /// The connection socket (`inet_csk(sk)`).
    pub inet_conn: InetConnectionSock,
    /// Next sequence number expected from the peer.
    pub rcv_nxt: u32,
    /// Next sequence number to send.
    pub snd_nxt: u32,
    /// First byte not yet acknowledged.
    pub snd_una: u32,
    /// The peer's receive window.
    pub snd_wnd: u32,
    /// Current effective MSS.
    pub mss_cache: u32,
    /// Smoothed RTT in µs, shifted left by 3 (`srtt_us >> 3` is the RTT).
    pub srtt_us: u32,
    /// Medium deviation of the RTT (µs, shifted by 2).
    pub mdev_us: u32,
    /// Maximal `mdev_us` over the last RTT.
    pub mdev_max_us: u32,
    /// Smoothed `mdev_max_us`.
    pub rttvar_us: u32,
    /// Sequence number to update `rttvar` at.
    pub rtt_seq: u32,
    /// Windowed minimum RTT (µs).
    pub rtt_min: Minmax,
    /// Packets in flight ("packets out"), including retransmitted ones still counted.
    pub packets_out: u32,
    /// Retransmitted packets out.
    pub retrans_out: u32,
    /// SACKed packets.
    pub sacked_out: u32,
    /// Packets marked lost.
    pub lost_out: u32,
    /// Total data packets delivered, including retransmits.
    pub delivered: u32,
    /// Like `delivered`, but only those with CE marks.
    pub delivered_ce: u32,
    /// Limited until "delivered" reaches this value (writable by CC programs).
    pub app_limited: u32,
    /// Slow start size threshold (writable by CC programs).
    pub snd_ssthresh: u32,
    /// Sending congestion window (writable by CC programs).
    pub snd_cwnd: u32,
    /// Linear increase counter (writable by CC programs).
    pub snd_cwnd_cnt: u32,
    /// Do not allow `snd_cwnd` to grow above this.
    pub snd_cwnd_clamp: u32,
    /// `tcp_jiffies32` of the last cwnd change (writable by CC programs).
    pub snd_cwnd_stamp: u32,
    /// cwnd right before starting loss recovery.
    pub prior_cwnd: u32,
    /// ssthresh saved at recovery start.
    pub prior_ssthresh: u32,
    /// Total data packets delivered in recovery (PRR).
    pub prr_delivered: u32,
    /// Total packets sent during recovery (PRR).
    pub prr_out: u32,
    /// `snd_nxt` at the onset of congestion.
    pub high_seq: u32,
    /// `snd_una` upon a new recovery episode.
    pub undo_marker: u32,
    /// Number of undoable retransmissions.
    pub undo_retrans: c_int,
    /// Total retransmits for the entire connection.
    pub total_retrans: u32,
    /// Timestamp of the first retransmission.
    pub retrans_stamp: u32,
    /// `tcp_jiffies32` of the last sent data packet.
    pub lsndtime: u32,
    /// Packet reordering metric.
    pub reordering: u32,
    /// Largest `packets_out` in the last window.
    pub max_packets_out: u32,
    /// Total data segments sent.
    pub data_segs_out: u32,
    /// Total segments sent.
    pub segs_out: u32,
    /// Delivery rate sample: packets delivered in the interval.
    pub rate_delivered: u32,
    /// Delivery rate sample: the interval in µs.
    pub rate_interval_us: u32,
    /// `is_sack_reneg:1, is_cwnd_limited:1`.
    #[btf(bitfields = "is_sack_reneg:1, is_cwnd_limited:1")]
    pub limit_bits: u8,
    /// `TCP_ECN_*` bits (writable by CC programs).
    pub ecn_flags: u8,
    /// `rate_app_limited:1`.
    #[btf(bitfields = "rate_app_limited:1")]
    pub rate_bits: u8,
    /// Most recent packet received or sent, in µs (`tcp_clock_us()`).
    pub tcp_mstamp: u64,
    /// Cache of `tcp_clock_ns()` in ns.
    pub tcp_clock_cache: u64,
    /// Start of the window send phase (delivery rate sampling).
    pub first_tx_mstamp: u64,
    /// Time `delivered` was last updated.
    pub delivered_mstamp: u64,
    /// Bytes acknowledged.
    pub bytes_acked: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Departure time (ns, `tcp_clock_cache`'s clock) scheduled for the next data packet
    /// (earliest departure time pacing; BBR's `bbr_packets_in_net_at_edt` reads it).
    pub tcp_wstamp_ns: u64,
    /// Total data packets lost, including retransmissions (BBR's long-term sampling).
    pub lost: u32,
}

impl Default for TcpSock {
    fn default() -> TcpSock {
        TcpSock {
            inet_conn: InetConnectionSock::default(),
            rcv_nxt: 0,
            snd_nxt: 0,
            snd_una: 0,
            snd_wnd: 0,
            mss_cache: 0,
            srtt_us: 0,
            mdev_us: 0,
            mdev_max_us: 0,
            rttvar_us: 0,
            rtt_seq: 0,
            rtt_min: Minmax::default(),
            packets_out: 0,
            retrans_out: 0,
            sacked_out: 0,
            lost_out: 0,
            delivered: 0,
            delivered_ce: 0,
            app_limited: 0,
            snd_ssthresh: TCP_INFINITE_SSTHRESH,
            snd_cwnd: TCP_INIT_CWND,
            snd_cwnd_cnt: 0,
            snd_cwnd_clamp: !0,
            snd_cwnd_stamp: 0,
            prior_cwnd: 0,
            prior_ssthresh: 0,
            prr_delivered: 0,
            prr_out: 0,
            high_seq: 0,
            undo_marker: 0,
            undo_retrans: 0,
            total_retrans: 0,
            retrans_stamp: 0,
            lsndtime: 0,
            reordering: 3,
            max_packets_out: 0,
            data_segs_out: 0,
            segs_out: 0,
            rate_delivered: 0,
            rate_interval_us: 0,
            limit_bits: 0,
            ecn_flags: 0,
            rate_bits: 0,
            tcp_mstamp: 0,
            tcp_clock_cache: 0,
            first_tx_mstamp: 0,
            delivered_mstamp: 0,
            bytes_acked: 0,
            bytes_received: 0,
            tcp_wstamp_ns: 0,
            lost: 0,
        }
    }
}

impl TcpSock {
    /// The socket as the `struct sock *` congestion-control members take.
    pub fn as_sock(&mut self) -> *mut Sock {
        (self as *mut TcpSock).cast()
    }

    /// The `struct sock` view.
    pub fn sk(&self) -> &Sock {
        &self.inet_conn.icsk_inet.sk
    }

    /// The mutable `struct sock` view.
    pub fn sk_mut(&mut self) -> &mut Sock {
        &mut self.inet_conn.icsk_inet.sk
    }

    /// `inet_csk(sk)`.
    pub fn icsk(&self) -> &InetConnectionSock {
        &self.inet_conn
    }

    /// `inet_csk(sk)`, mutable.
    pub fn icsk_mut(&mut self) -> &mut InetConnectionSock {
        &mut self.inet_conn
    }

    /// `inet_csk_ca(sk)` viewed as `T`.
    ///
    /// # Panics
    ///
    /// At compile time (post-monomorphization) if `T` does not fit in
    /// `ICSK_CA_PRIV_SIZE` bytes or needs more than 8-byte alignment.
    pub fn ca<T: CaPriv>(&self) -> &T {
        const { assert!(size_of::<T>() <= ICSK_CA_PRIV_SIZE && align_of::<T>() <= 8) };
        // SAFETY: `icsk_ca_priv` is 8-aligned and holds ICSK_CA_PRIV_SIZE bytes (checked
        // above against T); `CaPriv` types are plain data valid for any bit pattern.
        unsafe { &*self.inet_conn.icsk_ca_priv.as_ptr().cast::<T>() }
    }

    /// `inet_csk_ca(sk)` viewed as `T`, mutable.
    pub fn ca_mut<T: CaPriv>(&mut self) -> &mut T {
        const { assert!(size_of::<T>() <= ICSK_CA_PRIV_SIZE && align_of::<T>() <= 8) };
        // SAFETY: as in `ca`, and the borrow is exclusive.
        unsafe { &mut *self.inet_conn.icsk_ca_priv.as_mut_ptr().cast::<T>() }
    }

    /// `tcp_snd_cwnd(tp)`.
    pub fn snd_cwnd(&self) -> u32 {
        self.snd_cwnd
    }

    /// `tcp_in_slow_start(tp)`.
    pub fn in_slow_start(&self) -> bool {
        self.snd_cwnd < self.snd_ssthresh
    }

    /// `tcp_packets_in_flight(tp)`.
    pub fn packets_in_flight(&self) -> u32 {
        self.packets_out
            .wrapping_sub(self.sacked_out.wrapping_add(self.lost_out))
            .wrapping_add(self.retrans_out)
    }

    /// `tcp_is_cwnd_limited(sk)`.
    pub fn is_cwnd_limited(&self) -> bool {
        if self.limit_bits & 0x2 != 0 {
            return true;
        }
        // In slow start, make sure cwnd grows to twice what was ACKed.
        self.in_slow_start() && self.snd_cwnd < self.max_packets_out.wrapping_mul(2)
    }

    /// Sets `is_cwnd_limited`.
    pub fn set_cwnd_limited(&mut self, on: bool) {
        self.limit_bits = (self.limit_bits & !0x2) | if on { 0x2 } else { 0 };
    }

    /// `tcp_min_rtt(tp)`: the windowed minimum RTT in µs.
    pub fn min_rtt(&self) -> u32 {
        self.rtt_min.s[0].v
    }

    /// `ca_state` of the connection socket.
    pub fn ca_state(&self) -> u8 {
        self.inet_conn.ca_state()
    }
}

/// A congestion control's per-socket state, kept in `icsk_ca_priv`.
///
/// # Safety
///
/// The type must be plain data (`#[repr(C)]` integers and arrays of them): every bit
/// pattern is a valid value, since the bytes may have been written by a BPF program.
pub unsafe trait CaPriv: Copy + 'static {}

/// `struct ack_sample`: what `pkts_acked` is told.
#[derive(Btf, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
#[btf(name = "ack_sample", crate = "structops_btf")]
pub struct AckSample {
    /// Packets newly acknowledged.
    pub pkts_acked: u32,
    /// RTT sample in µs, -1 if none.
    pub rtt_us: i32,
    /// Packets in flight before the ACK.
    pub in_flight: u32,
}

/// `struct rate_sample`: a delivery-rate sample, what `cong_control` is told.
#[derive(Btf, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
#[btf(name = "rate_sample", crate = "structops_btf")]
pub struct RateSample {
    /// Starting timestamp for the interval.
    pub prior_mstamp: u64,
    /// `tp->delivered` at `prior_mstamp`.
    pub prior_delivered: u32,
    /// `tp->delivered_ce` at `prior_mstamp`.
    pub prior_delivered_ce: u32,
    /// Packets delivered over the interval.
    pub delivered: i32,
    /// Packets delivered with CE marks over the interval.
    pub delivered_ce: i32,
    /// Time for `delivered` to be delivered (µs).
    pub interval_us: c_long,
    /// Send interval (µs).
    pub snd_interval_us: u32,
    /// Receive interval (µs).
    pub rcv_interval_us: u32,
    /// RTT of the last (S)ACKed packet (µs), -1 if none.
    pub rtt_us: c_long,
    /// Packets marked lost upon this ACK.
    pub losses: c_int,
    /// Packets newly (S)ACKed upon this ACK.
    pub acked_sacked: u32,
    /// Packets in flight before this ACK.
    pub prior_in_flight: u32,
    /// End sequence of the most recently (S)ACKed packet.
    pub last_end_seq: u32,
    /// Whether the sample is from an application-limited interval.
    pub is_app_limited: bool,
    /// Whether the sample is from a retransmission.
    pub is_retrans: bool,
    /// Whether the ACK was (likely) delayed.
    pub is_ack_delayed: bool,
}

/// `struct list_head`.
#[derive(Btf, Clone, Copy, Debug)]
#[repr(C)]
#[btf(name = "list_head", crate = "structops_btf")]
pub struct ListHead {
    /// Next entry.
    pub next: *mut ListHead,
    /// Previous entry.
    pub prev: *mut ListHead,
}

/// `struct module`, opaque (only the `owner` pointer's target type).
#[derive(Btf, Clone, Copy, Debug)]
#[repr(C)]
#[btf(name = "module", crate = "structops_btf")]
pub struct Module {
    /// Placeholder: the host has no modules.
    pub state: u32,
}

/// `union tcp_cc_info`, opaque: `get_info` is not supported for BPF programs.
#[derive(Btf, Clone, Copy)]
#[repr(C)]
#[btf(name = "tcp_cc_info", crate = "structops_btf")]
pub union TcpCcInfo {
    /// The raw bytes (the kernel's largest member, `tcp_bbr_info`, is 20 bytes).
    pub raw: [u32; 5],
}

/// `struct tcp_congestion_ops`, member for member as in Linux 6.18 (so that the
/// `.struct_ops` sections of programs compiled against `vmlinux.h` map onto it by name).
/// Unlike the kernel's it is not cacheline aligned (152 bytes, not 192): an ops table's
/// `kdata` is 8-byte aligned. Function members are the native entry points of the implementing
/// programs (or native Rust functions, for the built-in congestion controls).
#[derive(Btf, Clone, Copy, Debug)]
#[repr(C)]
#[btf(name = "tcp_congestion_ops", crate = "structops_btf")]
pub struct TcpCongestionOps {
    /// Return the slow start threshold (required).
    pub ssthresh: Option<unsafe extern "C" fn(sk: *mut Sock) -> u32>,
    /// Do new cwnd calculation (required unless `cong_control`).
    pub cong_avoid: Option<unsafe extern "C" fn(sk: *mut Sock, ack: u32, acked: u32)>,
    /// Call before changing ca_state.
    pub set_state: Option<unsafe extern "C" fn(sk: *mut Sock, new_state: u8)>,
    /// Call when a cwnd event occurs.
    pub cwnd_event: Option<unsafe extern "C" fn(sk: *mut Sock, ev: TcpCaEvent)>,
    /// Call when an ACK arrives.
    pub in_ack_event: Option<unsafe extern "C" fn(sk: *mut Sock, flags: u32)>,
    /// Hook for packet ACK accounting.
    pub pkts_acked: Option<unsafe extern "C" fn(sk: *mut Sock, sample: *const AckSample)>,
    /// Override `sysctl_tcp_min_tso_segs`.
    pub min_tso_segs: Option<unsafe extern "C" fn(sk: *mut Sock) -> u32>,
    /// Call when packets are delivered to update cwnd and pacing rate, after all the ca
    /// state processing (replaces `cong_avoid`).
    pub cong_control:
        Option<unsafe extern "C" fn(sk: *mut Sock, ack: u32, flag: c_int, rs: *const RateSample)>,
    /// New value of cwnd after loss (required).
    pub undo_cwnd: Option<unsafe extern "C" fn(sk: *mut Sock) -> u32>,
    /// Returns the multiplier used in `tcp_sndbuf_expand`.
    pub sndbuf_expand: Option<unsafe extern "C" fn(sk: *mut Sock) -> u32>,
    /// Get info for `inet_diag` (not supported for programs).
    pub get_info: Option<
        unsafe extern "C" fn(
            sk: *mut Sock,
            ext: u32,
            attr: *mut c_int,
            info: *mut TcpCcInfo,
        ) -> usize,
    >,
    /// The name (NUL-terminated), C `char`s as in vmlinux.
    pub name: [CChar; TCP_CA_NAME_MAX],
    /// The owning module (`BPF_MODULE_OWNER` for programs).
    pub owner: *mut Module,
    /// The registry's list linkage (unused here).
    pub list: ListHead,
    /// Hash of the name.
    pub key: u32,
    /// `TCP_CONG_*` flags.
    pub flags: u32,
    /// Initialize private data (optional).
    pub init: Option<unsafe extern "C" fn(sk: *mut Sock)>,
    /// Cleanup private data (optional).
    pub release: Option<unsafe extern "C" fn(sk: *mut Sock)>,
}

// SAFETY: `TcpCongestionOps` is `#[derive(Btf)]`'s source of the host BTF struct
// `tcp_congestion_ops` (see `btf::host_btf`), so its layout is that struct's by
// construction; function members take entry point addresses or 0.
unsafe impl structops::OpsStruct for TcpCongestionOps {
    const NAME: &'static str = "tcp_congestion_ops";
}

impl TcpCongestionOps {
    /// An empty table named `name` (truncated to 15 bytes) with `flags`.
    pub const fn empty(name: &str, flags: u32) -> TcpCongestionOps {
        let mut n = [CChar(0); TCP_CA_NAME_MAX];
        let b = name.as_bytes();
        let mut i = 0;
        while i < b.len() && i < TCP_CA_NAME_MAX - 1 {
            n[i] = CChar(b[i]);
            i += 1;
        }
        TcpCongestionOps {
            ssthresh: None,
            cong_avoid: None,
            set_state: None,
            cwnd_event: None,
            in_ack_event: None,
            pkts_acked: None,
            min_tso_segs: None,
            cong_control: None,
            undo_cwnd: None,
            sndbuf_expand: None,
            get_info: None,
            name: n,
            owner: std::ptr::null_mut(),
            list: ListHead {
                next: std::ptr::null_mut(),
                prev: std::ptr::null_mut(),
            },
            key: 0,
            flags,
            init: None,
            release: None,
        }
    }

    /// The name, up to its NUL.
    pub fn name(&self) -> &str {
        let bytes = self.name_bytes();
        let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).unwrap_or("")
    }

    /// The name's 16 bytes, NUL padding included.
    pub fn name_bytes(&self) -> &[u8; TCP_CA_NAME_MAX] {
        // SAFETY: `CChar` is `repr(transparent)` over `u8`, so `[CChar; N]` and
        // `[u8; N]` have the same layout.
        unsafe { &*(&raw const self.name).cast::<[u8; TCP_CA_NAME_MAX]>() }
    }
}

// SAFETY: the table holds function pointers and plain data; the raw pointers (`owner`,
// `list`) are never dereferenced by this crate.
unsafe impl Send for TcpCongestionOps {}
// SAFETY: as above; the table is immutable once built.
unsafe impl Sync for TcpCongestionOps {}
