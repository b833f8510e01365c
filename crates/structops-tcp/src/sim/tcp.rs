//! The TCP endpoints of one flow: a bulk sender and a receiver, each a [`Socket`] whose
//! congestion control is called where Linux calls it.
//!
//! The sender follows `tcp_ack` (`net/ipv4/tcp_input.c`): SACK tagging, cleaning the
//! retransmission queue with RTT sampling (`tcp_rtt_estimator`, `tcp_set_rto`,
//! the `rtt_min` filter) and `pkts_acked`, `in_ack_event`, the loss-recovery state machine
//! (`tcp_fastretrans_alert` with RACK loss detection from `tcp_recovery.c`, PRR from
//! `tcp_cwnd_reduction`, CWR on ECE, undo of spurious reductions by timestamps:
//! `tcp_packet_delayed`, `tcp_try_undo_loss`, `tcp_try_undo_recovery`,
//! `tcp_undo_cwnd_reduction`), the delivery-rate sample (`tcp_rate.c`) and
//! `tcp_cong_control` (`cong_control`, or `cong_avoid` when the state allows it); it sends
//! as `tcp_write_xmit` and `tcp_xmit_retransmit_queue` do (cwnd test, `tcp_cwnd_validate`,
//! `CA_EVENT_TX_START`, internal pacing), and times out as `tcp_retransmit_timer` and
//! `tcp_rack_reo_timeout` do. The receiver ACKs as `__tcp_ack_snd_check` does (every
//! second full segment, quick ACKs, immediately on out-of-order data, the 40 ms delayed-ACK
//! timer), echoes timestamps as `tcp_replace_ts_recent` keeps them, and handles ECN as
//! `tcp_ecn_check_ce` (its congestion control sees
//! `CA_EVENT_ECN_IS_CE` / `CA_EVENT_ECN_NO_CE` and may ask for ACKs, as DCTCP does).
//!
//! Sequence space is kept in whole segments (`MSS` bytes each) as `u64` indices; the
//! socket's 32-bit sequence fields (`snd_una`, `snd_nxt`, `high_seq`, `rcv_nxt`, ...) are
//! kept in step for the congestion control to read.

use std::collections::VecDeque;

use super::engine::Ctx;
use super::event::Kind;
use super::link::{PKT_CE, PKT_CWR, PKT_ECT};
use super::{Hook, MSS};
use crate::cc::minmax::{minmax_reset, minmax_running_min};
use crate::host::{Socket, TcpHost};
use crate::types::{
    AckSample, CA_ACK_ECE, CA_ACK_SLOWPATH, CA_ACK_WIN_UPDATE, FLAG_DATA_ACKED, FLAG_DATA_SACKED,
    FLAG_ECE, FLAG_LOST_RETRANS, FLAG_RETRANS_DATA_ACKED, FLAG_SLOWPATH, FLAG_SND_UNA_ADVANCED,
    FLAG_WIN_UPDATE, ICSK_ACK_NOW, ICSK_ACK_SCHED, ICSK_ACK_TIMER, RateSample, SK_PACING_NEEDED,
    SK_PACING_NONE, TCP_ECN_DEMAND_CWR, TCP_ECN_OK, TCP_ECN_QUEUE_CWR, TCP_ECN_SEEN,
    TCP_INFINITE_SSTHRESH, TCP_INIT_CWND, TcpCaEvent, TcpCaState,
};

/// `FLAG_DSACKING_ACK` (never set: D-SACK is not modelled).
const FLAG_DSACKING_ACK: i32 = 0x800;
/// `FLAG_SET_XMIT_TIMER`.
const FLAG_SET_XMIT_TIMER: i32 = 0x1000;
/// `FLAG_ACK_MAYBE_DELAYED`.
const FLAG_ACK_MAYBE_DELAYED: i32 = 0x10000;
/// `FLAG_DATA` (never set on the sender: ACKs carry no data).
const FLAG_DATA: i32 = 0x01;
/// `FLAG_ACKED`.
const FLAG_ACKED: i32 = FLAG_DATA_ACKED;
/// `FLAG_NOT_DUP`.
const FLAG_NOT_DUP: i32 = FLAG_DATA | FLAG_WIN_UPDATE | FLAG_ACKED;
/// `FLAG_CA_ALERT`.
const FLAG_CA_ALERT: i32 = FLAG_DATA_SACKED | FLAG_ECE | FLAG_DSACKING_ACK;

/// `TCPCB_SACKED_ACKED`.
const SACKED_ACKED: u8 = 0x01;
/// `TCPCB_SACKED_RETRANS`: a retransmission is in flight.
const SACKED_RETRANS: u8 = 0x02;
/// `TCPCB_LOST`.
const LOST: u8 = 0x04;
/// `TCPCB_EVER_RETRANS`.
const EVER_RETRANS: u8 = 0x80;
/// `TCPCB_RETRANS`.
const RETRANS: u8 = SACKED_RETRANS | EVER_RETRANS;

const OPEN: u8 = TcpCaState::Open as u8;
const DISORDER: u8 = TcpCaState::Disorder as u8;
const CWR: u8 = TcpCaState::Cwr as u8;
const RECOVERY: u8 = TcpCaState::Recovery as u8;
const LOSS: u8 = TcpCaState::Loss as u8;

/// `ICSK_TIME_RETRANS`.
const ICSK_TIME_RETRANS: u8 = 1;
/// `ICSK_TIME_LOSS_PROBE`.
const ICSK_TIME_LOSS_PROBE: u8 = 5;
/// `ICSK_TIME_REO_TIMEOUT`.
const ICSK_TIME_REO_TIMEOUT: u8 = 6;

/// `TCP_MAX_QUICKACKS`.
const TCP_MAX_QUICKACKS: u8 = 16;
/// `TCP_TIMEOUT_MIN_US`: the slack added to RACK's reordering timeout.
const TCP_TIMEOUT_MIN_US: u64 = 2000;
/// `sysctl_tcp_min_rtt_wlen` (seconds).
const MIN_RTT_WLEN_S: u32 = 300;
/// `sysctl_tcp_reordering`.
const SYSCTL_REORDERING: u32 = 3;
/// `sysctl_tcp_min_tso_segs`.
const SYSCTL_MIN_TSO_SEGS: u32 = 2;
/// `sysctl_tcp_pacing_ss_ratio`.
const PACING_SS_RATIO: u64 = 200;
/// `sysctl_tcp_pacing_ca_ratio`.
const PACING_CA_RATIO: u64 = 120;
/// Bytes of a full segment as the pacing arithmetic sees it (`skb->len`: payload and a
/// 32-byte TCP header with timestamps).
const SKB_LEN: u64 = MSS as u64 + 32;
/// The most segments a sender keeps unacknowledged: the model's send buffer, a bound on
/// memory for congestion controls that open cwnd without limit.
const MAX_PACKETS_OUT: u32 = 1 << 20;

/// `before(a, b)` on 32-bit sequence numbers.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `after(a, b)`.
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// `tcp_stamp_us_delta(t1, t0)`.
fn us_delta(t1: u64, t0: u64) -> i64 {
    (t1.wrapping_sub(t0) as i64).max(0)
}

/// `tcp_skb_sent_after(t1, t2, seq1, seq2)`, with segment indices for sequences.
fn sent_after(t1: u64, t2: u64, seq1: u64, seq2: u64) -> bool {
    t1 > t2 || (t1 == t2 && seq1 > seq2)
}

/// A lazily re-armed timer: at most one event per timer is pending in the queue; moving
/// the deadline later costs nothing until the pending event fires and re-arms.
#[derive(Debug)]
pub(crate) struct Timer {
    armed: bool,
    deadline: u64,
    event_at: u64,
}

impl Timer {
    fn new() -> Timer {
        Timer {
            armed: false,
            deadline: 0,
            event_at: u64::MAX,
        }
    }

    fn arm(&mut self, ctx: &mut Ctx, kind: Kind, flow: u32, deadline: u64) {
        self.armed = true;
        self.deadline = deadline;
        if deadline < self.event_at {
            self.event_at = deadline;
            ctx.events.push(deadline, kind, flow);
        }
    }

    fn clear(&mut self) {
        self.armed = false;
    }

    /// The timer's event for time `t` popped: whether the timer expires now.
    fn fire(&mut self, ctx: &mut Ctx, kind: Kind, flow: u32, t: u64) -> bool {
        if t != self.event_at {
            return false; // superseded by an earlier event
        }
        self.event_at = u64::MAX;
        if !self.armed {
            return false;
        }
        if self.deadline > t {
            self.event_at = self.deadline;
            ctx.events.push(self.deadline, kind, flow);
            return false;
        }
        self.armed = false;
        true
    }
}

/// A segment in the retransmission queue (`tcp_skb_cb`).
#[derive(Clone, Copy, Debug, Default)]
struct Seg {
    /// Last (re)transmission time, µs (`skb_mstamp`).
    tx_us: u64,
    /// `tx.first_tx_mstamp`.
    first_tx_mstamp: u64,
    /// `tx.delivered_mstamp` (0 once SACKed: already counted in a rate sample).
    delivered_mstamp: u64,
    /// `tx.delivered`.
    delivered: u32,
    /// `tx.delivered_ce`.
    delivered_ce: u32,
    /// `TCPCB_*` bits.
    sacked: u8,
    /// `tx.is_app_limited`.
    app_limited: bool,
}

/// What SACK tagging found on one ACK (`tcp_sacktag_state`).
#[derive(Default)]
struct SackState {
    first_sackt: u64,
    last_sackt: u64,
    sack_delivered: u32,
}

/// `tp->rack`.
#[derive(Debug, Default)]
struct Rack {
    mstamp: u64,
    end: u64,
    rtt_us: u32,
    advanced: bool,
}

/// What the sender's timer is for (`icsk_pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum XmitTimer {
    Rto,
    Reo,
    /// Tail loss probe.
    Tlp,
}

/// The sending side of a flow.
#[derive(Debug)]
pub(crate) struct Sender {
    isn: u32,
    /// Index of `segs[0]`.
    base: u64,
    /// `snd_una`.
    pub una: u64,
    /// `snd_nxt`.
    pub nxt: u64,
    segs: VecDeque<Seg>,
    high_seq: u64,
    /// `tp->lost`: segments ever marked lost.
    lost: u32,
    rack: Rack,
    rtx_hint: u64,
    cwnd_usage_seq: u64,
    timer: Timer,
    timer_kind: XmitTimer,
    /// `tlp_high_seq`: `snd_nxt` when the outstanding loss probe was sent.
    tlp_high_seq: Option<u64>,
    pacing: Timer,
    wstamp_ns: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    /// Fast recoveries entered.
    pub recoveries: u64,
    /// `undo_cwnd` calls.
    pub undos: u64,
    /// `rx_opt.rcv_tsecr`: the TSecr of the latest ACK (every ACK carries timestamps).
    rcv_tsecr: u32,
}

/// A set of segment indices above `rcv_nxt` (the receiver's out-of-order queue), as a
/// bitmap over 64-segment words.
#[derive(Debug)]
pub(crate) struct OooSet {
    base: u64,
    words: VecDeque<u64>,
    n: u64,
}

impl OooSet {
    fn new() -> OooSet {
        OooSet {
            base: 0,
            words: VecDeque::new(),
            n: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn contains(&self, i: u64) -> bool {
        if i < self.base {
            return false;
        }
        let w = ((i - self.base) / 64) as usize;
        self.words
            .get(w)
            .is_some_and(|x| x >> ((i - self.base) % 64) & 1 != 0)
    }

    fn insert(&mut self, i: u64) {
        if i < self.base || self.contains(i) {
            return;
        }
        let w = ((i - self.base) / 64) as usize;
        while self.words.len() <= w {
            self.words.push_back(0);
        }
        self.words[w] |= 1 << ((i - self.base) % 64);
        self.n += 1;
    }

    /// Removes the run of segments starting at `next`; returns the first index not in
    /// the set (the new `rcv_nxt`).
    fn advance(&mut self, mut next: u64) -> u64 {
        while self.contains(next) {
            let w = ((next - self.base) / 64) as usize;
            self.words[w] &= !(1 << ((next - self.base) % 64));
            self.n -= 1;
            next += 1;
        }
        while self.base + 64 <= next && !self.words.is_empty() {
            self.words.pop_front();
            self.base += 64;
        }
        if self.words.is_empty() {
            self.base = next - next % 64;
        }
        next
    }
}

/// The receiving side of a flow.
#[derive(Debug)]
pub(crate) struct Receiver {
    /// `rcv_nxt`.
    pub rcv_nxt: u64,
    /// `rcv_wup`: `rcv_nxt` when the last ACK was sent.
    rcv_wup: u64,
    ooo: OooSet,
    /// `icsk_ack.quick`.
    quick: u8,
    /// Whether the delayed-ACK engine saw data (`icsk_ack.ato` set).
    ato_init: bool,
    delack: Timer,
    delack_deadline: u64,
    /// `rx_opt.ts_recent`: the TSval the receiver's ACKs echo.
    ts_recent: u32,
    /// Segments delivered in order.
    pub delivered: u64,
    scratch: Vec<u32>,
}

/// One flow: its two sockets and the TCP state around them.
pub(crate) struct Flow {
    pub id: u32,
    pub sk: Box<Socket>,
    pub rsk: Box<Socket>,
    /// Reverse-path (ACK) propagation delay, ns.
    pub rev_ns: u64,
    /// The path's round-trip propagation delay, µs (the handshake's RTT sample).
    pub base_rtt_us: u64,
    pub started: bool,
    pub snd: Sender,
    pub rcv: Receiver,
}

impl Flow {
    pub(crate) fn new(
        id: u32,
        sk: Box<Socket>,
        rsk: Box<Socket>,
        rev_ns: u64,
        rtt_ns: u64,
        isn: u32,
    ) -> Flow {
        Flow {
            id,
            sk,
            rsk,
            rev_ns,
            base_rtt_us: rtt_ns / 1000,
            started: false,
            snd: Sender {
                isn,
                base: 0,
                una: 0,
                nxt: 0,
                segs: VecDeque::new(),
                high_seq: 0,
                lost: 0,
                rack: Rack::default(),
                rtx_hint: 0,
                cwnd_usage_seq: 0,
                timer: Timer::new(),
                timer_kind: XmitTimer::Rto,
                tlp_high_seq: None,
                pacing: Timer::new(),
                wstamp_ns: 0,
                retransmits: 0,
                rtos: 0,
                recoveries: 0,
                undos: 0,
                rcv_tsecr: 0,
            },
            rcv: Receiver {
                rcv_nxt: 0,
                rcv_wup: 0,
                ooo: OooSet::new(),
                quick: 0,
                ato_init: false,
                delack: Timer::new(),
                delack_deadline: 0,
                ts_recent: 0,
                delivered: 0,
                scratch: Vec::new(),
            },
        }
    }

    /// `setsockopt(TCP_CONGESTION)` on both ends of the established connection at
    /// `ctx.now` (`tcp_set_congestion_control` -> `tcp_reinit_congestion_control`). ECN
    /// stays as negotiated at the start; the sender's `init` is traced when the table
    /// changes.
    pub(crate) fn set_congestion_control(
        &mut self,
        ctx: &mut Ctx,
        host: &TcpHost,
        cc: &str,
    ) -> Result<(), structops::Errno> {
        // Not a packet: `tcp_mstamp` stays the last packet's time, as in the kernel.
        let before = self.sk.ca_ops().map(std::ptr::from_ref);
        host.set_congestion_control(&mut self.sk, cc)?;
        if self.sk.ca_ops().map(std::ptr::from_ref) != before {
            self.trace(ctx, Hook::Init);
        }
        host.set_congestion_control(&mut self.rsk, cc)
    }

    /// The 32-bit sequence number of segment `idx`.
    fn seq(&self, idx: u64) -> u32 {
        self.snd.isn.wrapping_add((idx as u32).wrapping_mul(MSS))
    }

    fn trace(&self, ctx: &mut Ctx, hook: Hook) {
        if ctx.trace.is_some() {
            ctx.record(self.id, hook, &self.sk);
        }
    }

    fn state(&self) -> u8 {
        self.sk.ca_state()
    }

    // ----- congestion-control calls (each traced) -----

    fn set_state(&mut self, ctx: &mut Ctx, state: TcpCaState) {
        self.sk.ca_set_state(state);
        self.trace(ctx, Hook::SetState);
    }

    fn ca_event(&mut self, ctx: &mut Ctx, ev: TcpCaEvent) {
        self.sk.ca_event(ev);
        self.trace(ctx, Hook::CwndEvent);
    }

    /// `tp->snd_ssthresh = icsk_ca_ops->ssthresh(sk)`.
    fn recalc_ssthresh(&mut self, ctx: &mut Ctx) {
        let v = self.sk.ca_ssthresh();
        self.sk.snd_ssthresh = v;
        self.trace(ctx, Hook::Ssthresh);
    }

    // ----- connection start -----

    /// The connection is established at `ctx.now` (the handshake took the path's RTT and
    /// gave one RTT sample): set up both sockets, start the congestion controls
    /// (`tcp_init_transfer`) and send the initial window.
    pub(crate) fn start(
        &mut self,
        ctx: &mut Ctx,
        host: &TcpHost,
        cc: &str,
        ecn: bool,
    ) -> Result<(), structops::Errno> {
        let isn = self.snd.isn;
        let hz = ctx.hz;
        for sk in [&mut self.sk, &mut self.rsk] {
            sk.tcp_mstamp = ctx.now_us;
            sk.tcp_clock_cache = ctx.ktime_ns;
            sk.mss_cache = MSS;
            sk.snd_cwnd = TCP_INIT_CWND;
            sk.snd_ssthresh = TCP_INFINITE_SSTHRESH;
            sk.snd_cwnd_stamp = ctx.jiffies;
            // tcp_init_sock: app-limited until the first delivery, no RTT yet.
            sk.app_limited = !0;
            minmax_reset(&mut sk.rtt_min, ctx.jiffies, !0);
            sk.snd_una = isn;
            sk.snd_nxt = isn;
            sk.rcv_nxt = isn;
            sk.snd_wnd = u32::MAX;
            let icsk = sk.icsk_mut();
            icsk.icsk_rto = hz; // TCP_TIMEOUT_INIT
            icsk.icsk_rto_min = hz / 5;
            icsk.icsk_rto_max = 120 * hz;
            icsk.icsk_ack.rcv_mss = MSS as u16;
        }
        // The SYN's RTT sample (tcp_ack on the SYN-ACK: FLAG_SYN_ACKED).
        let rtt = self.base_rtt_us as i64;
        let mut rs = RateSample::default();
        self.ack_update_rtt(ctx, 0, rtt, -1, rtt, &mut rs);
        self.sk.inet_conn.icsk_backoff = 0;

        // ECN is negotiated in the handshake, before `init`, when the sender asks for it
        // (its congestion control needs it, or the flow asks for RFC 3168 ECN) and the
        // receiver accepts (tcp_ecn = 2). The host sets the congestion control and calls
        // `init` in one step, so TCP_ECN_OK is set first and withdrawn after `init` if
        // the congestion control turns out not to want ECN (only such a congestion
        // control's `init` sees it set).
        for sk in [&mut self.sk, &mut self.rsk] {
            sk.ecn_flags |= TCP_ECN_OK;
        }
        host.set_congestion_control(&mut self.sk, cc)?;
        self.trace(ctx, Hook::Init);
        host.set_congestion_control(&mut self.rsk, cc)?;
        if !(ecn || self.sk.needs_ecn()) {
            for sk in [&mut self.sk, &mut self.rsk] {
                sk.ecn_flags &= !TCP_ECN_OK;
            }
        }
        // The handshake's last segment gave the receiver its first TS.Recent.
        self.rcv.ts_recent = ctx.ts_ms(ctx.now);
        // tcp_init_buffer_space -> tcp_sndbuf_expand.
        self.sndbuf_expand(ctx);
        self.started = true;
        self.write_xmit(ctx, 0);
        Ok(())
    }

    /// `tcp_sndbuf_expand`: the send buffer for `max(cwnd, 10)` segments times the
    /// congestion control's multiplier (2 without `sndbuf_expand`). The model's sender
    /// always has data, so the value is informational.
    fn sndbuf_expand(&mut self, ctx: &mut Ctx) {
        let per_mss = (u64::from(MSS) + 320 + 576).next_power_of_two();
        let nr = u64::from(
            TCP_INIT_CWND
                .max(self.sk.snd_cwnd)
                .max(self.sk.reordering + 1),
        );
        let mult = match self.sk.ca_sndbuf_expand() {
            Some(m) => {
                self.trace(ctx, Hook::SndbufExpand);
                u64::from(m)
            }
            None => 2,
        };
        let mem = (per_mss * nr * mult).min(4 << 20);
        self.sk.sk_mut().sk_sndbuf = mem as i32;
    }

    // ----- sending -----

    fn in_cwnd_reduction(&self) -> bool {
        matches!(self.state(), CWR | RECOVERY)
    }

    fn ecn_ok(&self) -> bool {
        self.sk.ecn_flags & TCP_ECN_OK != 0
    }

    /// `tcp_event_data_sent` and `tcp_rate_skb_sent` for a segment (re)sent now.
    fn data_sent(&mut self, ctx: &mut Ctx) -> Seg {
        if self.sk.packets_in_flight() == 0 {
            self.ca_event(ctx, TcpCaEvent::TxStart);
        }
        let tp = &mut *self.sk;
        tp.lsndtime = ctx.jiffies;
        if tp.packets_out == 0 {
            tp.first_tx_mstamp = ctx.now_us;
            tp.delivered_mstamp = ctx.now_us;
        }
        tp.data_segs_out = tp.data_segs_out.wrapping_add(1);
        tp.segs_out = tp.segs_out.wrapping_add(1);
        // __tcp_transmit_skb's departure time and tcp_update_skb_after_send's pacing.
        let prior = self.snd.wstamp_ns;
        self.snd.wstamp_ns = self.snd.wstamp_ns.max(ctx.ktime_ns);
        let sk = tp.sk();
        if sk.sk_pacing_status != SK_PACING_NONE {
            let rate = sk.sk_pacing_rate;
            if rate != !0 && rate != 0 && tp.data_segs_out >= 10 {
                let mut len_ns = SKB_LEN * 1_000_000_000 / rate;
                let credit = self.snd.wstamp_ns - prior;
                len_ns -= (len_ns / 2).min(credit);
                self.snd.wstamp_ns += len_ns;
            }
        }
        Seg {
            tx_us: ctx.now_us,
            first_tx_mstamp: tp.first_tx_mstamp,
            delivered_mstamp: tp.delivered_mstamp,
            delivered: tp.delivered,
            delivered_ce: tp.delivered_ce,
            sacked: 0,
            app_limited: tp.app_limited != 0,
        }
    }

    /// Sends the next new segment (`tcp_transmit_skb` + `tcp_event_new_data_sent`).
    fn send_new(&mut self, ctx: &mut Ctx) {
        let seg = self.data_sent(ctx);
        let idx = self.snd.nxt;
        let mut flags = 0;
        if self.ecn_ok() {
            // tcp_ecn_send: new data is ECT and carries a queued CWR.
            flags |= PKT_ECT;
            if self.sk.ecn_flags & TCP_ECN_QUEUE_CWR != 0 {
                self.sk.ecn_flags &= !TCP_ECN_QUEUE_CWR;
                flags |= PKT_CWR;
            }
        }
        ctx.transmit(self.id, idx, flags);
        self.snd.segs.push_back(seg);
        self.snd.nxt += 1;
        self.sk.snd_nxt = self.seq(self.snd.nxt);
        let prior_packets = self.sk.packets_out;
        self.sk.packets_out += 1;
        if prior_packets == 0 || self.sk.icsk().icsk_pending == ICSK_TIME_LOSS_PROBE {
            self.rearm_rto(ctx);
        }
    }

    /// `tcp_retransmit_skb` of segment `idx`.
    fn retransmit(&mut self, ctx: &mut Ctx, idx: u64) {
        let fresh = self.data_sent(ctx);
        let i = (idx - self.snd.base) as usize;
        let Some(seg) = self.snd.segs.get_mut(i) else {
            return;
        };
        seg.tx_us = fresh.tx_us;
        seg.first_tx_mstamp = fresh.first_tx_mstamp;
        seg.delivered_mstamp = fresh.delivered_mstamp;
        seg.delivered = fresh.delivered;
        seg.delivered_ce = fresh.delivered_ce;
        seg.app_limited = fresh.app_limited;
        seg.sacked |= RETRANS;
        // Retransmissions are not ECT unless the congestion control needs ECN
        // (INET_ECN_dontxmit in tcp_ecn_send).
        let flags = if self.ecn_ok() && self.sk.needs_ecn() {
            PKT_ECT
        } else {
            0
        };
        ctx.transmit(self.id, idx, flags);
        let tp = &mut *self.sk;
        tp.retrans_out += 1;
        tp.total_retrans = tp.total_retrans.wrapping_add(1);
        // The stamp of the episode's first retransmission (tcp_retransmit_skb), which
        // Eifel detection compares echoed timestamps with.
        if tp.retrans_stamp == 0 {
            tp.retrans_stamp = ctx.ts_ms(ctx.now);
        }
        if tp.undo_retrans < 0 {
            tp.undo_retrans = 0;
        }
        tp.undo_retrans += 1;
        self.snd.retransmits += 1;
    }

    /// `tcp_pacing_check`: whether internal pacing holds the next packet back (and the
    /// pacing timer is armed for it).
    fn pacing_check(&mut self, ctx: &mut Ctx) -> bool {
        if self.sk.sk().sk_pacing_status != SK_PACING_NEEDED || self.snd.wstamp_ns <= ctx.ktime_ns {
            return false;
        }
        let at = ctx.now + (self.snd.wstamp_ns - ctx.ktime_ns);
        self.snd.pacing.arm(ctx, Kind::PacingTimer, self.id, at);
        true
    }

    /// `tcp_tso_segs`: the burst the pacer releases at once.
    fn tso_segs(&mut self, ctx: &mut Ctx) -> u32 {
        let min_tso = match self.sk.ca_min_tso_segs() {
            Some(v) => {
                self.trace(ctx, Hook::MinTsoSegs);
                v
            }
            None => SYSCTL_MIN_TSO_SEGS,
        };
        let sk = self.sk.sk();
        let gso_max_size: u64 = 65536;
        let mut bytes = sk
            .sk_pacing_rate
            .checked_shr(u32::from(sk.sk_pacing_shift))
            .unwrap_or(0);
        let r = self.sk.min_rtt() >> 9;
        if r < 32 {
            bytes += gso_max_size >> r;
        }
        let bytes = bytes.min(gso_max_size);
        let segs = ((bytes / u64::from(MSS)) as u32).max(min_tso);
        segs.min(u32::from(sk.sk_gso_max_segs)).max(1)
    }

    /// `tcp_write_xmit`: new data while cwnd (and the pacer) allow. `push_one` 2 is the
    /// loss probe's: one segment, even beyond cwnd.
    pub(crate) fn write_xmit(&mut self, ctx: &mut Ctx, push_one: u8) {
        let burst = self.tso_segs(ctx);
        let mut burst_left = 0;
        let mut sent = 0;
        loop {
            if burst_left == 0 {
                if self.pacing_check(ctx) {
                    break;
                }
                burst_left = burst;
            }
            let cwnd_room = self.sk.packets_in_flight() < self.sk.snd_cwnd;
            if (!cwnd_room && push_one != 2) || self.sk.packets_out >= MAX_PACKETS_OUT {
                break;
            }
            self.send_new(ctx);
            sent += 1;
            burst_left -= 1;
            if push_one != 0 {
                break;
            }
        }
        let cwnd_limited = self.sk.packets_in_flight() >= self.sk.snd_cwnd;
        if sent > 0 || cwnd_limited {
            self.cwnd_validate(ctx, cwnd_limited);
        }
        if sent > 0 {
            if self.in_cwnd_reduction() {
                self.sk.prr_out += sent;
            }
            if push_one != 2 {
                self.schedule_loss_probe(ctx, false);
            }
        }
    }

    /// `tcp_cwnd_validate`.
    fn cwnd_validate(&mut self, ctx: &mut Ctx, is_cwnd_limited: bool) {
        let tp = &mut *self.sk;
        if self.snd.una >= self.snd.cwnd_usage_seq
            || is_cwnd_limited
            || (tp.limit_bits & 0x2 == 0 && tp.packets_out > tp.max_packets_out)
        {
            tp.set_cwnd_limited(is_cwnd_limited);
            tp.max_packets_out = tp.packets_out;
            self.snd.cwnd_usage_seq = self.snd.nxt;
        }
        if tp.is_cwnd_limited() {
            tp.snd_cwnd_stamp = ctx.jiffies;
        }
    }

    /// `tcp_xmit_retransmit_queue`: retransmit segments marked lost while cwnd allows.
    fn xmit_retransmit_queue(&mut self, ctx: &mut Ctx) {
        if self.sk.packets_out == 0 {
            return;
        }
        let mut rearm = false;
        let mut hole_seen = false;
        let mut idx = self.snd.rtx_hint.max(self.snd.base);
        while idx < self.snd.nxt {
            if self.pacing_check(ctx) {
                break;
            }
            if self.sk.snd_cwnd as i64 - self.sk.packets_in_flight() as i64 <= 0 {
                break;
            }
            if self.sk.retrans_out >= self.sk.lost_out {
                break;
            }
            let sacked = self.snd.segs[(idx - self.snd.base) as usize].sacked;
            let needs = sacked & LOST != 0 && sacked & (SACKED_ACKED | SACKED_RETRANS) == 0;
            if !needs {
                if !hole_seen && sacked & LOST == 0 {
                    // Nothing below here needs a retransmission until something is
                    // marked lost again (which lowers the hint).
                    self.snd.rtx_hint = idx + 1;
                }
                if sacked & LOST == 0 && sacked & (SACKED_ACKED | SACKED_RETRANS) == 0 {
                    hole_seen = true;
                }
                idx += 1;
                continue;
            }
            if !hole_seen {
                self.snd.rtx_hint = idx + 1;
            }
            self.retransmit(ctx, idx);
            if self.in_cwnd_reduction() {
                self.sk.prr_out += 1;
            }
            if idx == self.snd.base && self.sk.icsk().icsk_pending != ICSK_TIME_REO_TIMEOUT {
                rearm = true;
            }
            idx += 1;
        }
        if rearm {
            let rto = self.rto_ns(ctx);
            self.arm_xmit_timer(ctx, XmitTimer::Rto, ctx.now + rto);
        }
    }

    // ----- timers -----

    fn rto_ns(&self, ctx: &Ctx) -> u64 {
        ctx.jiffies_to_ns(u64::from(self.sk.icsk().icsk_rto))
    }

    fn arm_xmit_timer(&mut self, ctx: &mut Ctx, kind: XmitTimer, at: u64) {
        self.snd.timer_kind = kind;
        self.sk.icsk_mut().icsk_pending = match kind {
            XmitTimer::Rto => ICSK_TIME_RETRANS,
            XmitTimer::Reo => ICSK_TIME_REO_TIMEOUT,
            XmitTimer::Tlp => ICSK_TIME_LOSS_PROBE,
        };
        self.snd.timer.arm(ctx, Kind::XmitTimer, self.id, at);
    }

    /// `tcp_rearm_rto`.
    fn rearm_rto(&mut self, ctx: &mut Ctx) {
        if self.sk.packets_out == 0 {
            self.snd.timer.clear();
            self.sk.icsk_mut().icsk_pending = 0;
            return;
        }
        let mut rto = self.rto_ns(ctx);
        let pending = self.sk.icsk().icsk_pending;
        if pending == ICSK_TIME_REO_TIMEOUT || pending == ICSK_TIME_LOSS_PROBE {
            // Offset the time elapsed since the head was sent.
            let delta = self.rto_delta_us(ctx).max(1) as u64;
            rto = ctx.jiffies_to_ns(usecs_to_jiffies(ctx, delta));
        }
        self.arm_xmit_timer(ctx, XmitTimer::Rto, ctx.now + rto);
    }

    /// `tcp_rto_delta_us`: how far in the future the RTO of the head segment is.
    fn rto_delta_us(&self, ctx: &Ctx) -> i64 {
        let rto_us = clock_jiffies_to_us(ctx, u64::from(self.sk.icsk().icsk_rto)) as i64;
        let head_tx = self.snd.segs.front().map_or(ctx.now_us, |s| s.tx_us);
        rto_us - us_delta(ctx.now_us, head_tx)
    }

    /// `tcp_set_xmit_timer`.
    fn set_xmit_timer(&mut self, ctx: &mut Ctx) {
        if !self.schedule_loss_probe(ctx, true) {
            self.rearm_rto(ctx);
        }
    }

    /// `tcp_schedule_loss_probe` (`tcp_early_retrans = 3`): a probe in two RTTs when
    /// in Open or CWR with data in flight.
    fn schedule_loss_probe(&mut self, ctx: &mut Ctx, advancing_rto: bool) -> bool {
        let state = self.state();
        if self.sk.packets_out == 0 || (state != OPEN && state != CWR) {
            return false;
        }
        let rto_min_us = clock_jiffies_to_us(ctx, u64::from(ctx.hz / 5));
        let mut timeout = if self.sk.srtt_us != 0 {
            let mut us = u64::from(self.sk.srtt_us >> 2);
            us += if self.sk.packets_out == 1 {
                rto_min_us
            } else {
                TCP_TIMEOUT_MIN_US
            };
            usecs_to_jiffies(ctx, us)
        } else {
            u64::from(ctx.hz) // TCP_TIMEOUT_INIT
        };
        let rto_delta_us = if advancing_rto {
            clock_jiffies_to_us(ctx, u64::from(self.sk.icsk().icsk_rto)) as i64
        } else {
            self.rto_delta_us(ctx)
        };
        if rto_delta_us > 0 {
            timeout = timeout.min(usecs_to_jiffies(ctx, rto_delta_us as u64));
        }
        let at = ctx.now + ctx.jiffies_to_ns(timeout);
        self.arm_xmit_timer(ctx, XmitTimer::Tlp, at);
        true
    }

    /// `tcp_send_loss_probe`: the bulk sender always has new data, so the probe is the
    /// next new segment (sent even if cwnd is full).
    fn send_loss_probe(&mut self, ctx: &mut Ctx) {
        if self.snd.tlp_high_seq.is_none() {
            let pcount = self.sk.packets_out;
            self.write_xmit(ctx, 2);
            if self.sk.packets_out > pcount {
                self.snd.tlp_high_seq = Some(self.snd.nxt);
                self.sk.icsk_mut().icsk_pending = 0;
            }
        }
        self.rearm_rto(ctx);
    }

    /// `tcp_process_tlp_ack` for a probe of new data: the probe is answered.
    fn process_tlp_ack(&mut self, cum: u64) {
        if let Some(h) = self.snd.tlp_high_seq
            && cum >= h
        {
            self.snd.tlp_high_seq = None;
        }
    }

    /// The sender's timer event popped (`tcp_write_timer_handler`).
    pub(crate) fn on_xmit_timer(&mut self, ctx: &mut Ctx, t: u64) {
        if !self.snd.timer.fire(ctx, Kind::XmitTimer, self.id, t) {
            return;
        }
        self.sk.tcp_mstamp = ctx.now_us;
        match self.snd.timer_kind {
            XmitTimer::Reo => self.rack_reo_timeout(ctx),
            XmitTimer::Tlp => self.send_loss_probe(ctx),
            XmitTimer::Rto => {
                self.sk.icsk_mut().icsk_pending = 0;
                self.retransmit_timer(ctx);
            }
        }
        // As in tcp_write_timer_handler, nothing else is sent: ACKs clock out the rest.
    }

    /// The pacing timer popped (`tcp_pace_kick` -> `tcp_tsq_write`).
    pub(crate) fn on_pacing_timer(&mut self, ctx: &mut Ctx, t: u64) {
        if !self.snd.pacing.fire(ctx, Kind::PacingTimer, self.id, t) {
            return;
        }
        self.sk.tcp_mstamp = ctx.now_us;
        if self.sk.lost_out > self.sk.retrans_out && self.sk.snd_cwnd > self.sk.packets_in_flight()
        {
            self.xmit_retransmit_queue(ctx);
        }
        self.write_xmit(ctx, 0);
    }

    /// `tcp_retransmit_timer`.
    fn retransmit_timer(&mut self, ctx: &mut Ctx) {
        if self.sk.packets_out == 0 {
            return;
        }
        self.snd.rtos += 1;
        self.enter_loss(ctx);
        self.sk.icsk_mut().icsk_retransmits = self.sk.icsk().icsk_retransmits.wrapping_add(1);
        let head = self.snd.base;
        self.retransmit(ctx, head);
        let icsk = self.sk.icsk_mut();
        icsk.icsk_backoff = icsk.icsk_backoff.wrapping_add(1);
        icsk.icsk_rto = (icsk.icsk_rto << 1).min(icsk.icsk_rto_max);
        let rto = self.rto_ns(ctx);
        self.arm_xmit_timer(ctx, XmitTimer::Rto, ctx.now + rto);
    }

    /// `tcp_enter_loss`.
    fn enter_loss(&mut self, ctx: &mut Ctx) {
        // tcp_timeout_mark_lost (no SACK reneging in this model).
        let head = self.snd.base;
        for idx in self.snd.base..self.snd.nxt {
            let tx = self.snd.segs[(idx - self.snd.base) as usize].tx_us;
            if idx != head && i64::from(self.snd.rack.rtt_us) - us_delta(ctx.now_us, tx) > 0 {
                continue; // recently sent: not lost yet
            }
            self.mark_lost(idx);
        }
        let state = self.state();
        if state <= DISORDER
            || !after(self.sk.high_seq, self.sk.snd_una)
            || (state == LOSS && self.sk.icsk().icsk_retransmits == 0)
        {
            self.sk.prior_ssthresh = self.current_ssthresh();
            self.sk.prior_cwnd = self.sk.snd_cwnd;
            self.recalc_ssthresh(ctx);
            self.ca_event(ctx, TcpCaEvent::Loss);
            self.init_undo();
        }
        let tp = &mut *self.sk;
        tp.snd_cwnd = tp.packets_in_flight() + 1;
        tp.snd_cwnd_cnt = 0;
        tp.snd_cwnd_stamp = ctx.jiffies;
        self.set_state(ctx, TcpCaState::Loss);
        self.set_high_seq();
        self.snd.tlp_high_seq = None;
        self.ecn_queue_cwr();
    }

    /// `tcp_rack_reo_timeout`.
    fn rack_reo_timeout(&mut self, ctx: &mut Ctx) {
        let prior_inflight = self.sk.packets_in_flight();
        self.rack_detect_loss(ctx);
        if prior_inflight != self.sk.packets_in_flight() {
            if self.state() != RECOVERY {
                self.enter_recovery(ctx, false);
                if !self.sk.has_cong_control() {
                    self.cwnd_reduction(1, 0, 0);
                }
            }
            self.xmit_retransmit_queue(ctx);
        }
        if self.sk.icsk().icsk_pending != ICSK_TIME_RETRANS {
            self.rearm_rto(ctx);
        }
    }

    // ----- ACK processing -----

    /// An ACK arrives: cumulative `cum`, newly SACKed segments `[sack_lo, sack_hi)`,
    /// ECE, TSecr. Mirrors `tcp_ack`, then `tcp_data_snd_check`.
    pub(crate) fn on_ack(
        &mut self,
        ctx: &mut Ctx,
        cum: u64,
        sack: Option<(u64, u64)>,
        ece: bool,
        tsecr: u32,
    ) {
        self.sk.tcp_mstamp = ctx.now_us;
        self.sk.tcp_clock_cache = ctx.ktime_ns;
        // tcp_parse_options: the ACK's timestamp option.
        self.snd.rcv_tsecr = tsecr;
        if cum < self.snd.una || cum > self.snd.nxt {
            return; // old or impossible (the reverse path keeps ACKs in order)
        }
        let mut flag = 0i32;
        let prior_una = self.snd.una;
        let prior_packets = self.sk.packets_out;
        let prior_delivered = self.sk.delivered;
        let prior_lost = self.snd.lost;
        if cum > prior_una {
            flag |= FLAG_SND_UNA_ADVANCED;
            self.sk.icsk_mut().icsk_retransmits = 0;
        }
        let mut rs = RateSample {
            prior_in_flight: self.sk.packets_in_flight(),
            ..RateSample::default()
        };
        let mut last_end = 0u64;
        let mut st = SackState::default();
        // Header prediction fails on a SACK option or the ECE flag: slow path.
        let slowpath = sack.is_some() || ece;
        if !slowpath && cum > prior_una {
            self.una_update(cum);
            flag |= FLAG_WIN_UPDATE;
        } else {
            if slowpath {
                flag |= FLAG_SLOWPATH;
            }
            if cum > prior_una {
                // tcp_ack_update_window: the ACK moves the window.
                flag |= FLAG_WIN_UPDATE;
                self.una_update(cum);
            }
            if let Some((lo, hi)) = sack {
                flag |= self.sacktag(ctx, lo, hi, &mut st, &mut rs, &mut last_end);
            }
            if ece && self.ecn_ok() {
                flag |= FLAG_ECE;
            }
            if st.sack_delivered > 0 {
                self.count_delivered(st.sack_delivered, flag & FLAG_ECE != 0);
            }
        }
        if prior_packets == 0 {
            self.in_ack_event(ctx, flag);
            self.write_xmit(ctx, 0);
            return;
        }
        flag |= self.clean_rtx_queue(ctx, flag & FLAG_ECE != 0, &st, &mut rs, &mut last_end);
        self.in_ack_event(ctx, flag);
        self.process_tlp_ack(cum);
        let mut rexmit = false;
        let dubious = flag & FLAG_NOT_DUP == 0 || flag & FLAG_CA_ALERT != 0 || self.state() != OPEN;
        if dubious {
            // (A SACK connection counts no Reno dupacks: num_dupack is unused.)
            self.fastretrans_alert(ctx, &mut flag, &mut rexmit);
        }
        if flag & FLAG_SET_XMIT_TIMER != 0 {
            self.set_xmit_timer(ctx);
        }
        let delivered = self.sk.delivered.wrapping_sub(prior_delivered);
        let lost = self.snd.lost.wrapping_sub(prior_lost);
        self.rate_gen(ctx, delivered, lost, &mut rs);
        let ack = self.seq(cum);
        self.cong_control(ctx, ack, delivered, flag, &rs);
        if rexmit {
            self.xmit_retransmit_queue(ctx);
        }
        self.write_xmit(ctx, 0);
        #[cfg(debug_assertions)]
        self.check_scoreboard();
    }

    /// Debug builds: the socket's counters agree with the retransmission queue
    /// (`tcp_verify_left_out` and more).
    #[cfg(debug_assertions)]
    fn check_scoreboard(&self) {
        let (mut sacked, mut lost, mut retrans) = (0u32, 0u32, 0u32);
        for s in &self.snd.segs {
            sacked += u32::from(s.sacked & SACKED_ACKED != 0);
            lost += u32::from(s.sacked & LOST != 0);
            retrans += u32::from(s.sacked & SACKED_RETRANS != 0);
        }
        let tp = &*self.sk;
        assert_eq!(tp.packets_out as usize, self.snd.segs.len(), "packets_out");
        assert_eq!(self.snd.base, self.snd.una, "queue head");
        assert_eq!(self.snd.base + self.snd.segs.len() as u64, self.snd.nxt);
        assert_eq!(
            (tp.sacked_out, tp.lost_out, tp.retrans_out),
            (sacked, lost, retrans),
            "sacked/lost/retrans out"
        );
        assert!(tp.sacked_out + tp.lost_out <= tp.packets_out);
    }

    /// `tcp_snd_una_update`.
    fn una_update(&mut self, cum: u64) {
        let delta = (cum - self.snd.una) * u64::from(MSS);
        self.snd.una = cum;
        let una = self.seq(cum);
        let tp = &mut *self.sk;
        tp.bytes_acked = tp.bytes_acked.wrapping_add(delta);
        tp.snd_una = una;
    }

    /// `tcp_count_delivered`.
    fn count_delivered(&mut self, n: u32, ece: bool) {
        let tp = &mut *self.sk;
        tp.delivered = tp.delivered.wrapping_add(n);
        if ece {
            tp.delivered_ce = tp.delivered_ce.wrapping_add(n);
        }
    }

    /// `tcp_in_ack_event`.
    fn in_ack_event(&mut self, ctx: &mut Ctx, flag: i32) {
        let mut ev = 0;
        if flag & FLAG_WIN_UPDATE != 0 {
            ev |= CA_ACK_WIN_UPDATE;
        }
        if flag & FLAG_SLOWPATH != 0 {
            ev |= CA_ACK_SLOWPATH;
            if flag & FLAG_ECE != 0 {
                ev |= CA_ACK_ECE;
            }
        }
        if self.sk.ca_ops().is_some_and(|o| o.in_ack_event.is_some()) {
            self.sk.ca_in_ack_event(ev);
            self.trace(ctx, Hook::InAckEvent);
        }
    }

    /// `tcp_rate_skb_delivered` for segment `idx`.
    fn rate_skb_delivered(
        &mut self,
        seg: &mut Seg,
        idx: u64,
        rs: &mut RateSample,
        last_end: &mut u64,
    ) {
        if seg.delivered_mstamp == 0 {
            return;
        }
        if rs.prior_delivered == 0
            || sent_after(seg.tx_us, self.sk.first_tx_mstamp, idx + 1, *last_end)
        {
            rs.prior_delivered_ce = seg.delivered_ce;
            rs.prior_delivered = seg.delivered;
            rs.prior_mstamp = seg.delivered_mstamp;
            rs.is_app_limited = seg.app_limited;
            rs.is_retrans = seg.sacked & RETRANS != 0;
            *last_end = idx + 1;
            rs.last_end_seq = self.seq(idx + 1);
            self.sk.first_tx_mstamp = seg.tx_us;
            rs.interval_us = us_delta(self.sk.first_tx_mstamp, seg.first_tx_mstamp);
        }
        if seg.sacked & SACKED_ACKED != 0 {
            seg.delivered_mstamp = 0;
        }
    }

    /// `tcp_rack_advance`.
    fn rack_advance(&mut self, ctx: &Ctx, sacked: u8, end: u64, xmit_us: u64) {
        let rtt_us = us_delta(ctx.now_us, xmit_us) as u32;
        if rtt_us < self.sk.min_rtt() && sacked & RETRANS != 0 {
            return;
        }
        let rack = &mut self.snd.rack;
        rack.advanced = true;
        rack.rtt_us = rtt_us;
        if sent_after(xmit_us, rack.mstamp, end, rack.end) {
            rack.mstamp = xmit_us;
            rack.end = end;
        }
    }

    /// `tcp_sacktag_write_queue` for one newly SACKed range.
    fn sacktag(
        &mut self,
        ctx: &Ctx,
        lo: u64,
        hi: u64,
        st: &mut SackState,
        rs: &mut RateSample,
        last_end: &mut u64,
    ) -> i32 {
        let mut flag = 0;
        for idx in lo.max(self.snd.una)..hi.min(self.snd.nxt) {
            let i = (idx - self.snd.base) as usize;
            let mut seg = self.snd.segs[i];
            if seg.sacked & SACKED_ACKED != 0 {
                continue;
            }
            // tcp_sacktag_one
            self.rack_advance(ctx, seg.sacked, idx + 1, seg.tx_us);
            if seg.sacked & SACKED_RETRANS != 0 {
                if seg.sacked & LOST != 0 {
                    seg.sacked &= !(LOST | SACKED_RETRANS);
                    self.sk.lost_out -= 1;
                    self.sk.retrans_out -= 1;
                }
            } else {
                if seg.sacked & RETRANS == 0 {
                    if st.first_sackt == 0 {
                        st.first_sackt = seg.tx_us;
                    }
                    st.last_sackt = seg.tx_us;
                }
                if seg.sacked & LOST != 0 {
                    seg.sacked &= !LOST;
                    self.sk.lost_out -= 1;
                }
            }
            seg.sacked |= SACKED_ACKED;
            flag |= FLAG_DATA_SACKED;
            self.sk.sacked_out += 1;
            st.sack_delivered += 1;
            self.rate_skb_delivered(&mut seg, idx, rs, last_end);
            self.snd.segs[i] = seg;
        }
        flag
    }

    /// `tcp_clean_rtx_queue`: drop what the cumulative ACK covers, sample the RTT, call
    /// `pkts_acked`.
    fn clean_rtx_queue(
        &mut self,
        ctx: &mut Ctx,
        ece: bool,
        st: &SackState,
        rs: &mut RateSample,
        last_end: &mut u64,
    ) -> i32 {
        let mut flag = 0;
        let mut first_ackt = 0u64;
        let mut last_ackt = 0u64;
        let mut pkts_acked = 0u32;
        while self.snd.base < self.snd.una {
            let Some(mut seg) = self.snd.segs.pop_front() else {
                break;
            };
            let idx = self.snd.base;
            self.snd.base += 1;
            if seg.sacked & RETRANS != 0 {
                if seg.sacked & SACKED_RETRANS != 0 {
                    self.sk.retrans_out -= 1;
                }
                flag |= FLAG_RETRANS_DATA_ACKED;
            } else if seg.sacked & SACKED_ACKED == 0 {
                last_ackt = seg.tx_us;
                if first_ackt == 0 {
                    first_ackt = last_ackt;
                }
            }
            if seg.sacked & SACKED_ACKED != 0 {
                self.sk.sacked_out -= 1;
            } else {
                self.count_delivered(1, ece);
                self.rack_advance(ctx, seg.sacked, idx + 1, seg.tx_us);
            }
            if seg.sacked & LOST != 0 {
                self.sk.lost_out -= 1;
            }
            self.sk.packets_out -= 1;
            pkts_acked += 1;
            self.rate_skb_delivered(&mut seg, idx, rs, last_end);
            flag |= FLAG_DATA_ACKED;
        }
        let mut seq_rtt = -1i64;
        let mut ca_rtt = -1i64;
        let mut sack_rtt = -1i64;
        if first_ackt != 0 && flag & FLAG_RETRANS_DATA_ACKED == 0 {
            seq_rtt = us_delta(ctx.now_us, first_ackt);
            ca_rtt = us_delta(ctx.now_us, last_ackt);
        }
        if st.first_sackt != 0 {
            sack_rtt = us_delta(ctx.now_us, st.first_sackt);
            ca_rtt = us_delta(ctx.now_us, st.last_sackt);
        }
        let rtt_update = self.ack_update_rtt(ctx, flag, seq_rtt, sack_rtt, ca_rtt, rs);
        if flag & FLAG_ACKED != 0 {
            flag |= FLAG_SET_XMIT_TIMER;
        } else if let Some(head) = self.snd.segs.front()
            && rtt_update
            && sack_rtt >= 0
            && sack_rtt > us_delta(ctx.now_us, head.tx_us)
        {
            flag |= FLAG_SET_XMIT_TIMER;
        }
        if self.sk.ca_ops().is_some_and(|o| o.pkts_acked.is_some()) {
            let sample = AckSample {
                pkts_acked,
                rtt_us: rs.rtt_us as i32,
                in_flight: MSS.wrapping_mul(self.sk.delivered.wrapping_sub(rs.prior_delivered)),
            };
            self.sk.ca_pkts_acked(&sample);
            self.trace(ctx, Hook::PktsAcked);
        }
        flag
    }

    /// `tcp_ack_update_rtt`: returns whether the RTT was sampled.
    fn ack_update_rtt(
        &mut self,
        ctx: &mut Ctx,
        flag: i32,
        seq_rtt: i64,
        sack_rtt: i64,
        ca_rtt: i64,
        rs: &mut RateSample,
    ) -> bool {
        let mut seq_rtt = if seq_rtt < 0 { sack_rtt } else { seq_rtt };
        let mut ca_rtt = ca_rtt;
        // RTTM: without a sample from the ACK's timing (Karn's rule on retransmitted
        // data), the echoed timestamp gives one when the ACK acknowledges new data.
        if seq_rtt < 0 && self.snd.rcv_tsecr != 0 && flag & FLAG_ACKED != 0 {
            seq_rtt = self.rtt_tsopt_us(ctx);
            ca_rtt = seq_rtt;
        }
        rs.rtt_us = ca_rtt;
        if seq_rtt < 0 {
            return false;
        }
        // tcp_update_rtt_min
        if !(flag & FLAG_ACK_MAYBE_DELAYED != 0 && ca_rtt as u32 > self.sk.min_rtt()) {
            let meas = if ca_rtt == 0 {
                clock_jiffies_to_us(ctx, 1) as u32
            } else {
                ca_rtt as u32
            };
            minmax_running_min(
                &mut self.sk.rtt_min,
                MIN_RTT_WLEN_S * ctx.hz,
                ctx.jiffies,
                meas,
            );
        }
        self.rtt_estimator(ctx, seq_rtt);
        // tcp_set_rto + tcp_bound_rto
        let tp = &mut *self.sk;
        let rto_us = u64::from(tp.srtt_us >> 3) + u64::from(tp.rttvar_us);
        let rto = usecs_to_jiffies(ctx, rto_us).min(u64::from(120 * ctx.hz)) as u32;
        tp.icsk_mut().icsk_rto = rto;
        tp.icsk_mut().icsk_backoff = 0;
        true
    }

    /// `tcp_rtt_tsopt_us(tp, 1)`: the RTT from the echoed timestamp (ms resolution),
    /// -1 if implausible.
    fn rtt_tsopt_us(&self, ctx: &Ctx) -> i64 {
        let delta = ctx.ts_ms(ctx.now).wrapping_sub(self.snd.rcv_tsecr);
        if delta >= i32::MAX as u32 / 1000 {
            return -1;
        }
        i64::from(delta.max(1)) * 1000
    }

    /// `tcp_rtt_estimator`.
    fn rtt_estimator(&mut self, ctx: &Ctx, mrtt_us: i64) {
        let rto_min_us = clock_jiffies_to_us(ctx, u64::from(ctx.hz / 5)) as u32;
        let tp = &mut *self.sk;
        let mut m = mrtt_us;
        let mut srtt = tp.srtt_us;
        if srtt != 0 {
            m -= i64::from(srtt >> 3);
            srtt = (i64::from(srtt) + m) as u32;
            if m < 0 {
                m = -m;
                m -= i64::from(tp.mdev_us >> 2);
                if m > 0 {
                    m >>= 3;
                }
            } else {
                m -= i64::from(tp.mdev_us >> 2);
            }
            tp.mdev_us = (i64::from(tp.mdev_us) + m) as u32;
            if tp.mdev_us > tp.mdev_max_us {
                tp.mdev_max_us = tp.mdev_us;
                if tp.mdev_max_us > tp.rttvar_us {
                    tp.rttvar_us = tp.mdev_max_us;
                }
            }
            if after(tp.snd_una, tp.rtt_seq) {
                if tp.mdev_max_us < tp.rttvar_us {
                    tp.rttvar_us -= (tp.rttvar_us - tp.mdev_max_us) >> 2;
                }
                tp.rtt_seq = tp.snd_nxt;
                tp.mdev_max_us = rto_min_us;
            }
        } else {
            srtt = (m << 3) as u32;
            tp.mdev_us = (m << 1) as u32;
            tp.rttvar_us = tp.mdev_us.max(rto_min_us);
            tp.mdev_max_us = tp.rttvar_us;
            tp.rtt_seq = tp.snd_nxt;
        }
        tp.srtt_us = srtt.max(1);
    }

    /// `tcp_rate_gen`.
    fn rate_gen(&mut self, ctx: &Ctx, delivered: u32, lost: u32, rs: &mut RateSample) {
        let tp = &mut *self.sk;
        if tp.app_limited != 0 && after(tp.delivered, tp.app_limited) {
            tp.app_limited = 0;
        }
        if delivered != 0 {
            tp.delivered_mstamp = ctx.now_us;
        }
        rs.acked_sacked = delivered;
        rs.losses = lost as i32;
        if rs.prior_mstamp == 0 {
            rs.delivered = -1;
            rs.interval_us = -1;
            return;
        }
        rs.delivered = tp.delivered.wrapping_sub(rs.prior_delivered) as i32;
        rs.delivered_ce = (tp.delivered_ce.wrapping_sub(rs.prior_delivered_ce) & 0xf_ffff) as i32;
        let snd_us = rs.interval_us;
        let ack_us = us_delta(tp.tcp_mstamp, rs.prior_mstamp);
        rs.interval_us = snd_us.max(ack_us);
        rs.snd_interval_us = snd_us as u32;
        rs.rcv_interval_us = ack_us as u32;
        if rs.interval_us < i64::from(tp.min_rtt()) {
            rs.interval_us = -1;
            return;
        }
        if !rs.is_app_limited
            || u64::from(rs.delivered as u32) * u64::from(tp.rate_interval_us)
                >= u64::from(tp.rate_delivered) * rs.interval_us as u64
        {
            tp.rate_delivered = rs.delivered as u32;
            tp.rate_interval_us = rs.interval_us as u32;
            tp.rate_bits = (tp.rate_bits & !1) | u8::from(rs.is_app_limited);
        }
    }

    /// `tcp_cong_control`.
    fn cong_control(
        &mut self,
        ctx: &mut Ctx,
        ack: u32,
        acked_sacked: u32,
        flag: i32,
        rs: &RateSample,
    ) {
        if self.sk.has_cong_control() {
            self.sk.ca_cong_control(ack, flag, rs);
            self.trace(ctx, Hook::CongControl);
            return;
        }
        if self.in_cwnd_reduction() {
            self.cwnd_reduction(acked_sacked as i32, rs.losses, flag);
        } else if self.may_raise_cwnd(flag) {
            self.sk.ca_cong_avoid(ack, acked_sacked);
            self.trace(ctx, Hook::CongAvoid);
            self.sk.snd_cwnd_stamp = ctx.jiffies;
        }
        self.update_pacing_rate();
    }

    /// `tcp_may_raise_cwnd`.
    fn may_raise_cwnd(&self, flag: i32) -> bool {
        if self.sk.reordering > SYSCTL_REORDERING {
            return flag & (FLAG_ACKED | FLAG_DATA_SACKED) != 0;
        }
        flag & FLAG_DATA_ACKED != 0
    }

    /// `tcp_update_pacing_rate`.
    fn update_pacing_rate(&mut self) {
        let tp = &mut *self.sk;
        let mut rate = u64::from(tp.mss_cache) * ((1_000_000 / 100) << 3);
        rate *= if tp.snd_cwnd < tp.snd_ssthresh / 2 {
            PACING_SS_RATIO
        } else {
            PACING_CA_RATIO
        };
        rate = rate.wrapping_mul(u64::from(tp.snd_cwnd.max(tp.packets_out)));
        if tp.srtt_us != 0 {
            rate /= u64::from(tp.srtt_us);
        }
        let max = tp.sk().sk_max_pacing_rate;
        tp.sk_mut().sk_pacing_rate = rate.min(max);
    }

    /// `tcp_cwnd_reduction`: proportional rate reduction.
    fn cwnd_reduction(&mut self, newly_acked_sacked: i32, newly_lost: i32, flag: i32) {
        let tp = &mut *self.sk;
        let delta = tp.snd_ssthresh.wrapping_sub(tp.packets_in_flight()) as i32;
        if newly_acked_sacked <= 0 || tp.prior_cwnd == 0 {
            return;
        }
        tp.prr_delivered = tp.prr_delivered.wrapping_add(newly_acked_sacked as u32);
        let mut sndcnt: i32;
        if delta < 0 {
            let dividend = u64::from(tp.snd_ssthresh) * u64::from(tp.prr_delivered)
                + u64::from(tp.prior_cwnd)
                - 1;
            sndcnt =
                (dividend / u64::from(tp.prior_cwnd)).wrapping_sub(u64::from(tp.prr_out)) as i32;
        } else {
            sndcnt = (tp.prr_delivered.wrapping_sub(tp.prr_out) as i32).max(newly_acked_sacked);
            if flag & FLAG_SND_UNA_ADVANCED != 0 && newly_lost == 0 {
                sndcnt = sndcnt.saturating_add(1);
            }
            sndcnt = sndcnt.min(delta);
        }
        sndcnt = sndcnt.max(i32::from(tp.prr_out == 0));
        tp.snd_cwnd = tp.packets_in_flight().wrapping_add_signed(sndcnt);
    }

    /// `tcp_end_cwnd_reduction`.
    fn end_cwnd_reduction(&mut self, ctx: &mut Ctx) {
        if self.sk.has_cong_control() {
            return;
        }
        let tp = &mut *self.sk;
        if tp.snd_ssthresh < TCP_INFINITE_SSTHRESH && (tp.ca_state() == CWR || tp.undo_marker != 0)
        {
            tp.snd_cwnd = tp.snd_ssthresh;
            tp.snd_cwnd_stamp = ctx.jiffies;
        }
        self.ca_event(ctx, TcpCaEvent::CompleteCwr);
    }

    /// `tcp_current_ssthresh`.
    fn current_ssthresh(&self) -> u32 {
        let tp = &*self.sk;
        if self.in_cwnd_reduction() {
            tp.snd_ssthresh
        } else {
            tp.snd_ssthresh
                .max((tp.snd_cwnd >> 1).wrapping_add(tp.snd_cwnd >> 2))
        }
    }

    fn set_high_seq(&mut self) {
        self.snd.high_seq = self.snd.nxt;
        self.sk.high_seq = self.sk.snd_nxt;
    }

    fn ecn_queue_cwr(&mut self) {
        if self.ecn_ok() {
            self.sk.ecn_flags |= TCP_ECN_QUEUE_CWR;
        }
    }

    /// `tcp_init_undo`.
    fn init_undo(&mut self) {
        let tp = &mut *self.sk;
        tp.undo_marker = tp.snd_una;
        tp.undo_retrans = if tp.retrans_out != 0 {
            tp.retrans_out as i32
        } else {
            -1
        };
    }

    /// `tcp_init_cwnd_reduction`.
    fn init_cwnd_reduction(&mut self, ctx: &mut Ctx) {
        self.set_high_seq();
        self.snd.tlp_high_seq = None;
        let tp = &mut *self.sk;
        tp.snd_cwnd_cnt = 0;
        tp.prior_cwnd = tp.snd_cwnd;
        tp.prr_delivered = 0;
        tp.prr_out = 0;
        self.recalc_ssthresh(ctx);
        self.ecn_queue_cwr();
    }

    /// `tcp_enter_cwr`.
    fn enter_cwr(&mut self, ctx: &mut Ctx) {
        self.sk.prior_ssthresh = 0;
        if self.state() < CWR {
            self.sk.undo_marker = 0;
            self.init_cwnd_reduction(ctx);
            self.set_state(ctx, TcpCaState::Cwr);
        }
    }

    /// `tcp_enter_recovery`.
    fn enter_recovery(&mut self, ctx: &mut Ctx, ece_ack: bool) {
        // Start the clock with the fast retransmit, for undo (tcp_retrans_stamp_cleanup).
        if !self.any_retrans_done() {
            self.sk.retrans_stamp = 0;
        }
        self.sk.prior_ssthresh = 0;
        self.init_undo();
        if !self.in_cwnd_reduction() {
            if !ece_ack {
                self.sk.prior_ssthresh = self.current_ssthresh();
            }
            self.init_cwnd_reduction(ctx);
        }
        self.set_state(ctx, TcpCaState::Recovery);
        self.snd.recoveries += 1;
    }

    /// `tcp_any_retrans_done`.
    fn any_retrans_done(&self) -> bool {
        self.sk.retrans_out != 0
            || self
                .snd
                .segs
                .front()
                .is_some_and(|s| s.sacked & EVER_RETRANS != 0)
    }

    /// `tcp_try_keep_open`.
    fn try_keep_open(&mut self, ctx: &mut Ctx) {
        let left_out = self.sk.sacked_out + self.sk.lost_out;
        let state = if left_out != 0 || self.any_retrans_done() {
            TcpCaState::Disorder
        } else {
            TcpCaState::Open
        };
        if self.state() != state as u8 {
            self.set_state(ctx, state);
            self.set_high_seq();
        }
    }

    /// `tcp_try_to_open`.
    fn try_to_open(&mut self, ctx: &mut Ctx, flag: i32) {
        if !self.any_retrans_done() {
            self.sk.retrans_stamp = 0;
        }
        if flag & FLAG_ECE != 0 {
            self.enter_cwr(ctx);
        }
        if self.state() != CWR {
            self.try_keep_open(ctx);
        }
    }

    /// `tcp_packet_delayed`: the ACK echoes a timestamp older than the episode's first
    /// retransmission, so an original transmission reached the receiver (Eifel); or
    /// nothing was retransmitted yet.
    fn packet_delayed(&self) -> bool {
        let stamp = self.sk.retrans_stamp;
        if stamp != 0 {
            let ecr = self.snd.rcv_tsecr;
            return ecr != 0 && before(ecr, stamp);
        }
        true
    }

    /// `tcp_may_undo`. Without D-SACK `undo_retrans` never returns to 0, so only a
    /// delayed packet (by its timestamp echo) allows an undo.
    fn may_undo(&self) -> bool {
        self.sk.undo_marker != 0 && (self.sk.undo_retrans == 0 || self.packet_delayed())
    }

    /// `tcp_undo_cwnd_reduction`: `snd_cwnd` from `undo_cwnd`, `snd_ssthresh` back to
    /// what it was before the reduction (and a queued CWR withdrawn,
    /// `tcp_ecn_withdraw_cwr`); with `unmark_loss`, nothing is considered lost any more.
    fn undo_cwnd_reduction(&mut self, ctx: &mut Ctx, unmark_loss: bool) {
        if unmark_loss {
            for seg in &mut self.snd.segs {
                seg.sacked &= !LOST;
            }
            self.sk.lost_out = 0;
            self.snd.rtx_hint = self.snd.base; // tcp_clear_all_retrans_hints
        }
        if self.sk.prior_ssthresh != 0 {
            let cwnd = self.sk.ca_undo_cwnd();
            let tp = &mut *self.sk;
            tp.snd_cwnd = cwnd;
            if tp.prior_ssthresh > tp.snd_ssthresh {
                tp.snd_ssthresh = tp.prior_ssthresh;
                tp.ecn_flags &= !TCP_ECN_QUEUE_CWR;
            }
            self.snd.undos += 1;
            self.trace(ctx, Hook::UndoCwnd);
        }
        self.sk.snd_cwnd_stamp = ctx.jiffies;
        self.sk.undo_marker = 0;
        self.snd.rack.advanced = true; // RACK re-examines losses
    }

    /// `tcp_try_undo_recovery` (SACK: the state returns to Open either way).
    fn try_undo_recovery(&mut self, ctx: &mut Ctx) {
        if self.may_undo() {
            self.undo_cwnd_reduction(ctx, false);
        }
        self.set_state(ctx, TcpCaState::Open);
    }

    /// `tcp_try_undo_loss(sk, false)` (no F-RTO): whether the RTO was found spurious and
    /// undone.
    fn try_undo_loss(&mut self, ctx: &mut Ctx) -> bool {
        if !self.may_undo() {
            return false;
        }
        self.undo_cwnd_reduction(ctx, true);
        self.sk.icsk_mut().icsk_retransmits = 0;
        self.set_state(ctx, TcpCaState::Open);
        true
    }

    /// `tcp_mark_skb_lost`.
    fn mark_lost(&mut self, idx: u64) {
        let seg = &mut self.snd.segs[(idx - self.snd.base) as usize];
        if seg.sacked & SACKED_ACKED != 0 {
            return;
        }
        self.snd.rtx_hint = self.snd.rtx_hint.min(idx);
        if seg.sacked & LOST != 0 {
            if seg.sacked & SACKED_RETRANS != 0 {
                seg.sacked &= !SACKED_RETRANS;
                self.sk.retrans_out -= 1;
                self.snd.lost = self.snd.lost.wrapping_add(1);
            }
        } else {
            seg.sacked |= LOST;
            self.sk.lost_out += 1;
            self.snd.lost = self.snd.lost.wrapping_add(1);
        }
    }

    /// `tcp_rack_reo_wnd` (no reordering is ever seen on this network).
    fn rack_reo_wnd(&self) -> u32 {
        if self.state() >= RECOVERY || self.sk.sacked_out >= self.sk.reordering {
            return 0;
        }
        (self.sk.min_rtt() >> 2).min(self.sk.srtt_us >> 3)
    }

    /// `tcp_rack_detect_loss`: marks lost what was sent before the most recently
    /// delivered segment and is older than its RTT plus the reordering window; returns
    /// the longest wait (µs) for segments not yet overdue.
    ///
    /// The kernel walks its send-time-ordered list; this walks sequence order, skipping
    /// retransmitted segments out of time order and stopping at the first never
    /// retransmitted one sent after RACK's reference (those are in send order).
    fn rack_detect_loss(&mut self, ctx: &Ctx) -> u32 {
        let reo_wnd = i64::from(self.rack_reo_wnd());
        let mut timeout = 0u32;
        let (mstamp, end, rtt) = (
            self.snd.rack.mstamp,
            self.snd.rack.end,
            self.snd.rack.rtt_us,
        );
        for idx in self.snd.base..self.snd.nxt {
            let seg = self.snd.segs[(idx - self.snd.base) as usize];
            if seg.sacked & SACKED_ACKED != 0
                || (seg.sacked & LOST != 0 && seg.sacked & SACKED_RETRANS == 0)
            {
                continue;
            }
            if !sent_after(mstamp, seg.tx_us, end, idx + 1) {
                if seg.sacked & EVER_RETRANS == 0 {
                    break;
                }
                continue;
            }
            let remaining = (i64::from(rtt) + reo_wnd - us_delta(ctx.now_us, seg.tx_us)) as i32;
            if remaining <= 0 {
                self.mark_lost(idx);
            } else {
                timeout = timeout.max(remaining as u32);
            }
        }
        timeout
    }

    /// `tcp_rack_mark_lost`: returns whether the reordering timer was armed.
    fn rack_mark_lost(&mut self, ctx: &mut Ctx) -> bool {
        if !self.snd.rack.advanced {
            return false;
        }
        self.snd.rack.advanced = false;
        let timeout = self.rack_detect_loss(ctx);
        if timeout != 0 {
            let j = usecs_to_jiffies(ctx, u64::from(timeout) + TCP_TIMEOUT_MIN_US);
            let at = ctx.now + ctx.jiffies_to_ns(j);
            self.arm_xmit_timer(ctx, XmitTimer::Reo, at);
            return true;
        }
        false
    }

    /// `tcp_identify_packet_loss`.
    fn identify_packet_loss(&mut self, ctx: &mut Ctx, flag: &mut i32) {
        if self.snd.segs.is_empty() {
            return;
        }
        let prior_retrans = self.sk.retrans_out;
        if self.rack_mark_lost(ctx) {
            *flag &= !FLAG_SET_XMIT_TIMER;
        }
        if prior_retrans > self.sk.retrans_out {
            *flag |= FLAG_LOST_RETRANS;
        }
    }

    /// `tcp_fastretrans_alert` (SACK, RACK; undo by timestamps only, no partial undo,
    /// no F-RTO).
    fn fastretrans_alert(&mut self, ctx: &mut Ctx, flag: &mut i32, rexmit: &mut bool) {
        let ece_ack = *flag & FLAG_ECE != 0;
        if self.sk.packets_out == 0 && self.sk.sacked_out != 0 {
            self.sk.sacked_out = 0;
        }
        if ece_ack {
            self.sk.prior_ssthresh = 0;
        }
        // D. Exit conditions: high_seq is ACKed.
        let state = self.state();
        if state == OPEN {
            self.sk.retrans_stamp = 0;
        } else if !before(self.sk.snd_una, self.sk.high_seq) {
            match state {
                // CWR is held until something above high_seq is ACKed, so that the
                // CWR flag reached the receiver.
                CWR if self.sk.snd_una != self.sk.high_seq => {
                    self.end_cwnd_reduction(ctx);
                    self.set_state(ctx, TcpCaState::Open);
                }
                RECOVERY => {
                    self.try_undo_recovery(ctx);
                    self.end_cwnd_reduction(ctx);
                }
                _ => {}
            }
        }
        // E. Process the state.
        let mut fall_to_default = false;
        match self.state() {
            RECOVERY => {
                self.identify_packet_loss(ctx, flag);
            }
            LOSS => {
                // tcp_process_loss
                let undone = *flag & FLAG_SND_UNA_ADVANCED != 0 && self.try_undo_loss(ctx);
                if !undone {
                    if !before(self.sk.snd_una, self.sk.high_seq) {
                        self.try_undo_recovery(ctx);
                    } else {
                        *rexmit = true;
                    }
                }
                self.identify_packet_loss(ctx, flag);
                if !(self.state() == OPEN || *flag & FLAG_LOST_RETRANS != 0) {
                    return;
                }
                fall_to_default = true;
            }
            _ => fall_to_default = true,
        }
        if fall_to_default {
            self.identify_packet_loss(ctx, flag);
            // tcp_time_to_recover with RACK: a segment is marked lost.
            if self.sk.lost_out == 0 {
                self.try_to_open(ctx, *flag);
                return;
            }
            self.enter_recovery(ctx, ece_ack);
        }
        *rexmit = true;
    }

    // ----- receiver -----

    /// A data segment with timestamp `tsval` reaches the receiver.
    pub(crate) fn on_data(&mut self, ctx: &mut Ctx, idx: u64, flags: u8, tsval: u32) {
        self.rsk.tcp_mstamp = ctx.now_us;
        self.rsk.tcp_clock_cache = ctx.ktime_ns;
        // tcp_replace_ts_recent: an in-window segment (tcp_sequence: it ends at or
        // after rcv_wup) starting at or below rcv_wup, the point the last ACK
        // acknowledged (later segments of a delayed-ACK pair do not count, RFC 7323),
        // becomes the one the ACKs echo, unless its TSval is older (tcp_paws_check;
        // with no reordering on the network PAWS never drops a segment). Older
        // duplicates are answered with the TS.Recent they find.
        let wup = self.rcv.rcv_wup;
        if idx <= wup && idx + 1 >= wup && tsval.wrapping_sub(self.rcv.ts_recent) as i32 >= 0 {
            self.rcv.ts_recent = tsval;
        }
        // tcp_ack on the data segment: tcp_ecn_accept_cwr.
        if flags & PKT_CWR != 0 {
            self.rsk.ecn_flags &= !TCP_ECN_DEMAND_CWR;
            self.rsk.icsk_mut().icsk_ack.pending |= ICSK_ACK_NOW;
        }
        let r = &mut self.rcv;
        if idx < r.rcv_nxt || r.ooo.contains(idx) {
            // Duplicate: tcp_enter_quickack_mode + an immediate (D-SACK) ACK.
            self.enter_quickack_mode(TCP_MAX_QUICKACKS);
            self.rsk.icsk_mut().icsk_ack.pending |= ICSK_ACK_SCHED;
            self.ack_snd_check(ctx, None);
            return;
        }
        if idx == r.rcv_nxt {
            let had_ooo = !r.ooo.is_empty();
            let next = r.ooo.advance(idx + 1);
            let n = next - r.rcv_nxt;
            r.rcv_nxt = next;
            r.delivered += n;
            let seq = self.seq(next);
            let tp = &mut *self.rsk;
            tp.rcv_nxt = seq;
            tp.bytes_received = tp.bytes_received.wrapping_add(n * u64::from(MSS));
            self.event_data_recv(ctx, flags);
            if had_ooo && self.rcv.ooo.is_empty() {
                self.rsk.icsk_mut().icsk_ack.pending |= ICSK_ACK_NOW;
            }
            self.ack_snd_check(ctx, None);
        } else {
            // tcp_data_queue_ofo
            self.ecn_check_ce(ctx, flags);
            self.rcv.ooo.insert(idx);
            self.rsk.icsk_mut().icsk_ack.pending |= ICSK_ACK_SCHED;
            self.ack_snd_check(ctx, Some(idx));
        }
    }

    /// `tcp_incr_quickack` / `tcp_enter_quickack_mode`.
    fn enter_quickack_mode(&mut self, n: u8) {
        self.rcv.quick = self.rcv.quick.max(n);
    }

    /// `tcp_event_data_recv`.
    fn event_data_recv(&mut self, ctx: &mut Ctx, flags: u8) {
        self.rsk.icsk_mut().icsk_ack.pending |= ICSK_ACK_SCHED;
        if !self.rcv.ato_init {
            self.rcv.ato_init = true;
            self.enter_quickack_mode(TCP_MAX_QUICKACKS);
        }
        self.rsk.icsk_mut().icsk_ack.lrcvtime = ctx.jiffies;
        self.ecn_check_ce(ctx, flags);
    }

    /// `tcp_ecn_check_ce`: the receiver's congestion control sees the ECN codepoint.
    fn ecn_check_ce(&mut self, ctx: &mut Ctx, flags: u8) {
        if self.rsk.ecn_flags & TCP_ECN_OK == 0 {
            return;
        }
        let demand_before = self.rsk.ecn_flags & TCP_ECN_DEMAND_CWR != 0;
        if flags & PKT_ECT == 0 {
            if self.rsk.ecn_flags & TCP_ECN_SEEN != 0 {
                self.enter_quickack_mode(2);
            }
            return;
        }
        if flags & PKT_CE != 0 {
            if self.rsk.needs_ecn() {
                self.rsk.ca_event(TcpCaEvent::EcnIsCe);
                self.send_requested_acks(ctx, demand_before);
            }
            if self.rsk.ecn_flags & TCP_ECN_DEMAND_CWR == 0 {
                self.enter_quickack_mode(2);
                self.rsk.ecn_flags |= TCP_ECN_DEMAND_CWR;
            }
        } else if self.rsk.needs_ecn() {
            self.rsk.ca_event(TcpCaEvent::EcnNoCe);
            self.send_requested_acks(ctx, demand_before);
        }
        self.rsk.ecn_flags |= TCP_ECN_SEEN;
    }

    /// Sends the ACKs the receiver's congestion control asked for (`tcp_send_ack` /
    /// `bpf_tcp_send_ack` with an `rcv_nxt`), echoing ECE as it stood before the call
    /// (DCTCP reflects the previous CE state on them).
    fn send_requested_acks(&mut self, ctx: &mut Ctx, ece: bool) {
        let mut reqs = std::mem::take(&mut self.rcv.scratch);
        reqs.extend(self.rsk.take_send_acks());
        let cur = self.seq(self.rcv.rcv_nxt);
        for &v in &reqs {
            let back = u64::from(cur.wrapping_sub(v) / MSS);
            let ece = ece && self.rsk.ecn_flags & TCP_ECN_OK != 0;
            if back == 0 {
                // An ACK of everything received: tcp_event_ack_sent applies.
                self.send_ack_ece(ctx, None, ece);
                continue;
            }
            let cum = self.rcv.rcv_nxt.saturating_sub(back);
            ctx.events.push_full(
                ctx.now + self.rev_ns,
                Kind::Ack,
                self.id,
                cum,
                0,
                0,
                u8::from(ece),
                self.rcv.ts_recent,
            );
        }
        reqs.clear();
        self.rcv.scratch = reqs;
    }

    /// `__tcp_ack_snd_check`.
    fn ack_snd_check(&mut self, ctx: &mut Ctx, sack: Option<u64>) {
        let pending = self.rsk.icsk().icsk_ack.pending;
        if pending & ICSK_ACK_SCHED == 0 {
            return;
        }
        let r = &self.rcv;
        if r.rcv_nxt - r.rcv_wup > 1 || r.quick > 0 || pending & ICSK_ACK_NOW != 0 {
            self.send_ack(ctx, sack);
        } else if r.ooo.is_empty() {
            self.send_delayed_ack(ctx);
        } else {
            // Out-of-order data is ACKed at once (SACK compression is not modelled).
            self.send_ack(ctx, sack);
        }
    }

    /// `tcp_send_delayed_ack` with the minimum ATO (40 ms).
    fn send_delayed_ack(&mut self, ctx: &mut Ctx) {
        let ato = ctx.jiffies_to_ns(u64::from((ctx.hz / 25).max(1)));
        let mut deadline = ctx.now + ato;
        let icsk = self.rsk.icsk_mut();
        if icsk.icsk_ack.pending & ICSK_ACK_TIMER != 0 {
            if self.rcv.delack_deadline <= ctx.now + (ato >> 2) {
                self.send_ack(ctx, None);
                return;
            }
            deadline = deadline.min(self.rcv.delack_deadline);
        }
        icsk.icsk_ack.pending |= ICSK_ACK_SCHED | ICSK_ACK_TIMER;
        self.rcv.delack_deadline = deadline;
        self.rcv
            .delack
            .arm(ctx, Kind::DelackTimer, self.id, deadline);
    }

    /// The delayed-ACK timer popped (`tcp_delack_timer_handler`).
    pub(crate) fn on_delack_timer(&mut self, ctx: &mut Ctx, t: u64) {
        if !self.rcv.delack.fire(ctx, Kind::DelackTimer, self.id, t) {
            return;
        }
        let icsk = self.rsk.icsk_mut();
        if icsk.icsk_ack.pending & ICSK_ACK_TIMER == 0 {
            return;
        }
        icsk.icsk_ack.pending &= !ICSK_ACK_TIMER;
        if icsk.icsk_ack.pending & ICSK_ACK_SCHED != 0 {
            self.rsk.tcp_mstamp = ctx.now_us;
            self.send_ack(ctx, None);
        }
    }

    /// `tcp_send_ack` for `rcv_nxt`, SACKing `sack` (the out-of-order segment that
    /// prompted it), then `tcp_event_ack_sent`.
    fn send_ack(&mut self, ctx: &mut Ctx, sack: Option<u64>) {
        let ece = self.rsk.ecn_flags & (TCP_ECN_OK | TCP_ECN_DEMAND_CWR)
            == TCP_ECN_OK | TCP_ECN_DEMAND_CWR;
        self.send_ack_ece(ctx, sack, ece);
    }

    /// [`Flow::send_ack`] with the ECE bit given.
    fn send_ack_ece(&mut self, ctx: &mut Ctx, sack: Option<u64>, ece: bool) {
        let r = &mut self.rcv;
        let (b, c) = match sack {
            Some(s) if s > r.rcv_nxt => ((s - r.rcv_nxt) as u32, 1),
            _ => (0, 0),
        };
        ctx.events.push_full(
            ctx.now + self.rev_ns,
            Kind::Ack,
            self.id,
            r.rcv_nxt,
            b,
            c,
            u8::from(ece),
            r.ts_recent,
        );
        // tcp_event_ack_sent: tcp_dec_quickack_mode, clear the delayed-ACK timer.
        let icsk = self.rsk.icsk_mut();
        if r.quick > 0 && icsk.icsk_ack.pending & ICSK_ACK_SCHED != 0 {
            r.quick -= 1;
        }
        icsk.icsk_ack.pending = 0;
        r.delack.clear();
        r.rcv_wup = r.rcv_nxt;
    }
}

/// `jiffies_to_usecs` at the run's HZ.
fn clock_jiffies_to_us(ctx: &Ctx, j: u64) -> u64 {
    j * 1_000_000 / u64::from(ctx.hz)
}

/// `usecs_to_jiffies` (rounded up) at the run's HZ.
fn usecs_to_jiffies(ctx: &Ctx, us: u64) -> u64 {
    (us * u64::from(ctx.hz)).div_ceil(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ooo_set_advances_over_runs() {
        let mut s = OooSet::new();
        assert!(s.is_empty());
        for i in [3u64, 4, 6, 70, 200] {
            s.insert(i);
        }
        s.insert(4);
        assert_eq!(s.n, 5);
        assert!(s.contains(70) && !s.contains(5));
        assert_eq!(s.advance(1), 1, "nothing at 1");
        assert_eq!(s.advance(3), 5);
        assert_eq!(s.advance(6), 7);
        assert!(!s.is_empty());
        assert_eq!(s.advance(70), 71);
        assert_eq!(s.advance(200), 201);
        assert!(s.is_empty());
        assert!(s.words.is_empty() || s.base + 64 > 201);
        s.insert(300);
        assert!(s.contains(300));
    }

    #[test]
    fn wrapping_sequence_comparisons() {
        assert!(before(0xffff_fff0, 5) && after(5, 0xffff_fff0));
        assert!(!before(5, 5) && !after(5, 5));
    }
}
