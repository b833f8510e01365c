//! BBR v1: the kernel's `tcp_bbr.c` (Linux 6.12), in Rust.
//!
//! BBR models the path with two numbers, the bottleneck bandwidth (a windowed max of
//! delivery-rate samples over ten packet-timed rounds) and the round-trip propagation
//! delay (a windowed min of RTT samples over ten seconds), and paces at a gain times the
//! bandwidth while capping in-flight data at a gain times their product. Its state machine
//! is STARTUP (gain 2.885 until the bandwidth stops growing by 25% for three rounds),
//! DRAIN (gain 1/2.885 until the queue STARTUP built is gone), PROBE_BW (an eight-phase
//! gain cycle 1.25, 0.75, 1 x 6) and PROBE_RTT (cwnd 4 for at least 200 ms and one round
//! whenever the min RTT has not been refreshed for ten seconds). It also detects token
//! bucket policers ("long-term" sampling) and provisions extra cwnd for ACK aggregation.
//!
//! The state is the kernel's `struct bbr`, byte for byte (104 bytes in `icsk_ca_priv`,
//! bitfields packed into `u32` words as the kernel's compiler packs them on x86-64), and
//! every computation keeps the kernel's integer types, widths and order of operations,
//! so a BPF implementation written against `vmlinux.h` can reproduce it exactly.
//!
//! Where the kernel calls into the TCP stack, this module has its own equivalents:
//! `tcp_packets_in_flight` is [`TcpSock::packets_in_flight`], `tcp_stamp_us_delta` is
//! [`stamp_us_delta`], `msecs_to_jiffies` and `tcp_jiffies32` come from [`crate::clock`],
//! and `get_random_u32_below` (which picks the first PROBE_BW phase) is replaced by a
//! deterministic draw from the socket's own fields, [`random_below`], so that simulations
//! are reproducible. The host must zero `icsk_ca_priv` before `init`, as the kernel's
//! `tcp_assign_congestion_control` does (`bbr_init` leaves the gains to the first ACK).

use std::ffi::c_int;

use super::minmax::{minmax_get, minmax_reset, minmax_running_max};
use super::tcp_sk;
use crate::clock;
use crate::types::{
    CaPriv, Minmax, RateSample, SK_PACING_NEEDED, SK_PACING_NONE, Sock, TCP_CONG_NON_RESTRICTED,
    TCP_INFINITE_SSTHRESH, TCP_INIT_CWND, TcpCaEvent, TcpCaState, TcpCongestionOps, TcpSock,
};

/// Scale of bandwidths: packets per µs `<< BW_SCALE` (a unit of ~715 bit/s at 1500 bytes).
pub const BW_SCALE: u32 = 24;
/// `1 << BW_SCALE`.
pub const BW_UNIT: u64 = 1 << BW_SCALE;
/// Scale of gains and other fractions.
pub const BBR_SCALE: u32 = 8;
/// A gain of 1.0.
pub const BBR_UNIT: u32 = 1 << BBR_SCALE;

/// `BBR_STARTUP`: ramp up the sending rate rapidly to fill the pipe.
pub const BBR_STARTUP: u32 = 0;
/// `BBR_DRAIN`: drain the queue created during STARTUP.
pub const BBR_DRAIN: u32 = 1;
/// `BBR_PROBE_BW`: discover and share bandwidth, pacing around the estimate.
pub const BBR_PROBE_BW: u32 = 2;
/// `BBR_PROBE_RTT`: cut in-flight data to the minimum to probe the min RTT.
pub const BBR_PROBE_RTT: u32 = 3;

/// `CYCLE_LEN`: phases in a PROBE_BW pacing gain cycle.
pub const CYCLE_LEN: u32 = 8;
/// `bbr_bw_rtts`: window of the bandwidth filter, in rounds.
pub const BW_RTTS: u32 = CYCLE_LEN + 2;
/// `bbr_min_rtt_win_sec`: window of the min RTT filter, in seconds.
pub const MIN_RTT_WIN_SEC: u32 = 10;
/// `bbr_probe_rtt_mode_ms`: minimum time in PROBE_RTT at the minimum cwnd.
pub const PROBE_RTT_MODE_MS: u32 = 200;
/// `bbr_min_tso_rate`: below this rate (bit/s) skip TSO.
pub const MIN_TSO_RATE: u64 = 1_200_000;
/// `bbr_pacing_margin_percent`: pace ~1% below the estimated bandwidth.
pub const PACING_MARGIN_PERCENT: u64 = 1;
/// `bbr_high_gain`: 2/ln(2), STARTUP's pacing and cwnd gain.
pub const HIGH_GAIN: u32 = BBR_UNIT * 2885 / 1000 + 1;
/// `bbr_drain_gain`: 1/high_gain, DRAIN's pacing gain.
pub const DRAIN_GAIN: u32 = BBR_UNIT * 1000 / 2885;
/// `bbr_cwnd_gain`: PROBE_BW's cwnd gain.
pub const CWND_GAIN: u32 = BBR_UNIT * 2;
/// `bbr_pacing_gain`: the PROBE_BW gain cycle (probe, drain, cruise x 6).
pub const PACING_GAIN: [u32; CYCLE_LEN as usize] = [
    BBR_UNIT * 5 / 4,
    BBR_UNIT * 3 / 4,
    BBR_UNIT,
    BBR_UNIT,
    BBR_UNIT,
    BBR_UNIT,
    BBR_UNIT,
    BBR_UNIT,
];
/// `bbr_cycle_rand`: the first PROBE_BW phase is drawn from this many.
pub const CYCLE_RAND: u32 = 7;
/// `bbr_cwnd_min_target`: packets kept in flight at least (and PROBE_RTT's cwnd).
pub const CWND_MIN_TARGET: u32 = 4;
/// `bbr_full_bw_thresh`: growth (1.25x) that means more bandwidth may be available.
pub const FULL_BW_THRESH: u32 = BBR_UNIT * 5 / 4;
/// `bbr_full_bw_cnt`: rounds without that growth after which the pipe is full.
pub const FULL_BW_CNT: u32 = 3;
/// `bbr_lt_intvl_min_rtts`: minimum rounds of a long-term sampling interval.
pub const LT_INTVL_MIN_RTTS: u32 = 4;
/// `bbr_lt_loss_thresh`: lost/delivered above 50/256 (~20%) makes an interval lossy.
pub const LT_LOSS_THRESH: u32 = 50;
/// `bbr_lt_bw_ratio`: two intervals within 1/8 of each other have consistent bandwidth.
pub const LT_BW_RATIO: u32 = BBR_UNIT / 8;
/// `bbr_lt_bw_diff`: or within 4 kbit/s (in bytes per second).
pub const LT_BW_DIFF: u64 = 4000 / 8;
/// `bbr_lt_bw_max_rtts`: rounds to use the long-term (policed) bandwidth.
pub const LT_BW_MAX_RTTS: u32 = 48;
/// `bbr_extra_acked_gain`: gain of the ACK aggregation cwnd.
pub const EXTRA_ACKED_GAIN: u32 = BBR_UNIT;
/// `bbr_extra_acked_win_rtts`: window of the extra-acked filter, in rounds.
pub const EXTRA_ACKED_WIN_RTTS: u32 = 5;
/// `bbr_ack_epoch_acked_reset_thresh`: packets after which an ACK epoch restarts.
pub const ACK_EPOCH_ACKED_RESET_THRESH: u32 = 1 << 20;
/// `bbr_extra_acked_max_us`: the aggregation cwnd is at most this much time at `bw`.
pub const EXTRA_ACKED_MAX_US: u64 = 100 * 1000;

/// `MAX_TCP_HEADER` of the oracle kernel: `L1_CACHE_ALIGN(128 + MAX_HEADER)` with
/// 64-byte cache lines and `MAX_HEADER == LL_MAX_HEADER == 32` (no WLAN, Hyper-V or IP
/// tunnels configured; a Debian distribution kernel has 320 here).
pub const MAX_TCP_HEADER: u32 = 192;
/// `GSO_LEGACY_MAX_SIZE`.
pub const GSO_LEGACY_MAX_SIZE: u32 = 65536;

const USEC_PER_SEC: u64 = 1_000_000;
const USEC_PER_MSEC: u32 = 1000;
const NSEC_PER_USEC: u64 = 1000;

/// `struct bbr`: BBR's per-socket state in `icsk_ca_priv`, laid out as the kernel's. The
/// kernel's bitfields live in the `*_bits` words; read and write them with the accessor
/// methods, which truncate stores to the field's width as C does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Bbr {
    /// Min RTT (µs) in the `MIN_RTT_WIN_SEC` window.
    pub min_rtt_us: u32,
    /// `tcp_jiffies32` when `min_rtt_us` was taken.
    pub min_rtt_stamp: u32,
    /// End time (jiffies) of PROBE_RTT, 0 while it is not scheduled.
    pub probe_rtt_done_stamp: u32,
    /// Max recent delivery rate, packets/µs `<< BW_SCALE`, over `BW_RTTS` rounds.
    pub bw: Minmax,
    /// Packet-timed rounds elapsed.
    pub rtt_cnt: u32,
    /// `tp->delivered` at the end of the current round.
    pub next_rtt_delivered: u32,
    /// Start (µs) of the current gain cycle phase.
    pub cycle_mstamp: u64,
    /// `mode:3, prev_ca_state:3, packet_conservation:1, round_start:1, idle_restart:1,
    /// probe_rtt_round_done:1, unused:13, lt_is_sampling:1, lt_rtt_cnt:7, lt_use_bw:1`.
    pub mode_bits: u32,
    /// Long-term delivery rate estimate, packets/µs `<< BW_SCALE`.
    pub lt_bw: u32,
    /// Long-term interval start: `tp->delivered`.
    pub lt_last_delivered: u32,
    /// Long-term interval start: `tp->delivered_mstamp` in ms.
    pub lt_last_stamp: u32,
    /// Long-term interval start: `tp->lost`.
    pub lt_last_lost: u32,
    /// `pacing_gain:10, cwnd_gain:10, full_bw_reached:1, full_bw_cnt:2, cycle_idx:3,
    /// has_seen_rtt:1, unused_b:5`.
    pub gain_bits: u32,
    /// cwnd saved on entering loss recovery or PROBE_RTT.
    pub prior_cwnd: u32,
    /// Recent bandwidth, to tell whether the pipe is full.
    pub full_bw: u32,
    /// Start (µs) of the ACK sampling epoch.
    pub ack_epoch_mstamp: u64,
    /// Max excess data ACKed per epoch, in two alternating windows.
    pub extra_acked: [u16; 2],
    /// `ack_epoch_acked:20, extra_acked_win_rtts:5, extra_acked_win_idx:1, unused_c:6`.
    pub ack_bits: u32,
}

// SAFETY: `Bbr` is `#[repr(C)]` integers and arrays of them; every bit pattern is valid.
unsafe impl CaPriv for Bbr {}

/// Declares `Bbr`'s bitfields: a getter and a truncating setter per field, and (for the
/// layout test) a table of (kernel name, storage word offset, shift, width).
macro_rules! bitfields {
    ($($word:ident { $($get:ident / $set:ident : $shift:literal, $width:literal;)* })*) => {
        impl Bbr {
            $($(
                #[doc = concat!("The `", stringify!($get), ":", stringify!($width), "` bitfield.")]
                pub fn $get(&self) -> u32 {
                    (self.$word >> $shift) & ((1u32 << $width) - 1)
                }

                #[doc = concat!("Stores `", stringify!($get), "`, truncated to ",
                    stringify!($width), " bits as a C bitfield store is.")]
                pub fn $set(&mut self, v: u32) {
                    let mask = ((1u32 << $width) - 1) << $shift;
                    self.$word = (self.$word & !mask) | ((v << $shift) & mask);
                }
            )*)*
        }

        #[cfg(test)]
        const BITFIELDS: &[(&str, usize, u32, u32)] = &[
            $($((stringify!($get), std::mem::offset_of!(Bbr, $word), $shift, $width),)*)*
        ];
    };
}

bitfields! {
    mode_bits {
        mode / set_mode: 0, 3;
        prev_ca_state / set_prev_ca_state: 3, 3;
        packet_conservation / set_packet_conservation: 6, 1;
        round_start / set_round_start: 7, 1;
        idle_restart / set_idle_restart: 8, 1;
        probe_rtt_round_done / set_probe_rtt_round_done: 9, 1;
        lt_is_sampling / set_lt_is_sampling: 23, 1;
        lt_rtt_cnt / set_lt_rtt_cnt: 24, 7;
        lt_use_bw / set_lt_use_bw: 31, 1;
    }
    gain_bits {
        pacing_gain / set_pacing_gain: 0, 10;
        cwnd_gain / set_cwnd_gain: 10, 10;
        full_bw_reached / set_full_bw_reached: 20, 1;
        full_bw_cnt / set_full_bw_cnt: 21, 2;
        cycle_idx / set_cycle_idx: 23, 3;
        has_seen_rtt / set_has_seen_rtt: 26, 1;
    }
    ack_bits {
        ack_epoch_acked / set_ack_epoch_acked: 0, 20;
        extra_acked_win_rtts / set_extra_acked_win_rtts: 20, 5;
        extra_acked_win_idx / set_extra_acked_win_idx: 25, 1;
    }
}

fn st(tp: &TcpSock) -> &Bbr {
    tp.ca::<Bbr>()
}

fn st_mut(tp: &mut TcpSock) -> &mut Bbr {
    tp.ca_mut::<Bbr>()
}

/// `before(seq1, seq2)`: `seq1` is earlier, modulo 2^32.
fn before(seq1: u32, seq2: u32) -> bool {
    (seq1.wrapping_sub(seq2) as i32) < 0
}

/// `after(seq2, seq1)`.
fn after(seq2: u32, seq1: u32) -> bool {
    before(seq1, seq2)
}

/// `tcp_stamp_us_delta(t1, t0)`: `t1 - t0` in µs, 0 if negative, truncated to `u32`.
pub fn stamp_us_delta(t1: u64, t0: u64) -> u32 {
    (t1.wrapping_sub(t0) as i64).max(0) as u32
}

/// MurmurHash3's 32-bit finalizer: spreads every seed bit over the whole word, so that
/// nearby seeds start unrelated xorshift sequences.
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// One step of Marsaglia's xorshift32.
fn xorshift32(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    x
}

/// The stand-in for `get_random_u32_below(ceil)` (`ceil <= 256`): deterministic, so that a
/// simulation is reproducible, and computed from the socket alone, so that a BPF
/// implementation can draw the same number.
///
/// The seed is `skc_hash ^ skc_daddr ^ rol(skc_rcv_saddr, 7) ^ (skc_dport << 16 |
/// skc_num) ^ rol(delivered, 13) ^ low(delivered_mstamp) ^ high(delivered_mstamp)`, mixed
/// by MurmurHash3's finalizer (a result of 0 is replaced by `0x9e3779b9`): per
/// connection, and fresh at every call, since `delivered` and `delivered_mstamp` advance.
/// Each draw steps xorshift32 and takes its top byte `r`; as in the kernel's
/// constant-`ceil` path, `ceil * r` is accepted when its low byte is at least
/// `256 % ceil`, and the result is `ceil * r >> 8`. After 8 rejected draws (chance below
/// 10^-14 for `ceil == 7`) the last draw is taken as is, to bound the loop.
pub fn random_below(tp: &TcpSock, ceil: u32) -> u32 {
    if ceil <= 1 {
        return 0;
    }
    let c = &tp.sk().__sk_common;
    let mut x = fmix32(
        c.skc_hash
            ^ c.skc_daddr
            ^ c.skc_rcv_saddr.rotate_left(7)
            ^ ((u32::from(c.skc_dport) << 16) | u32::from(c.skc_num))
            ^ tp.delivered.rotate_left(13)
            ^ tp.delivered_mstamp as u32
            ^ (tp.delivered_mstamp >> 32) as u32,
    );
    if x == 0 {
        x = 0x9e37_79b9;
    }
    let reject_below = 256 % ceil;
    let mut mult = 0;
    for _ in 0..8 {
        x = xorshift32(x);
        mult = ceil.wrapping_mul(x >> 24);
        if ceil.is_power_of_two() || (mult & 0xff) >= reject_below {
            break;
        }
    }
    mult >> 8
}

/// `bbr_full_bw_reached`.
fn full_bw_reached(tp: &TcpSock) -> bool {
    st(tp).full_bw_reached() != 0
}

/// `bbr_max_bw`: the windowed max delivery rate.
fn max_bw(tp: &TcpSock) -> u32 {
    minmax_get(&st(tp).bw)
}

/// `bbr_bw`: the bandwidth estimate (the long-term one while policed).
fn bw(tp: &TcpSock) -> u32 {
    let s = st(tp);
    if s.lt_use_bw() != 0 {
        s.lt_bw
    } else {
        minmax_get(&s.bw)
    }
}

/// `bbr_extra_acked`: the max extra ACKed over the last 5-10 rounds.
fn extra_acked(tp: &TcpSock) -> u16 {
    let s = st(tp);
    s.extra_acked[0].max(s.extra_acked[1])
}

/// `bbr_rate_bytes_per_sec`: a rate in packets/µs `<< BW_SCALE` times a gain, in bytes
/// per second, less the pacing margin (in the kernel's overflow-avoiding order).
fn rate_bytes_per_sec(tp: &TcpSock, rate: u64, gain: u32) -> u64 {
    let mut rate = rate.wrapping_mul(u64::from(tp.mss_cache));
    rate = rate.wrapping_mul(u64::from(gain));
    rate >>= BBR_SCALE;
    rate = rate.wrapping_mul(USEC_PER_SEC / 100 * (100 - PACING_MARGIN_PERCENT));
    rate >> BW_SCALE
}

/// `bbr_bw_to_pacing_rate`: capped by `sk_max_pacing_rate`.
fn bw_to_pacing_rate(tp: &TcpSock, bw: u32, gain: u32) -> u64 {
    let rate = rate_bytes_per_sec(tp, u64::from(bw), gain);
    rate.min(tp.sk().sk_max_pacing_rate)
}

/// `bbr_init_pacing_rate_from_rtt`: high_gain * cwnd / RTT (1 ms before any sample).
fn init_pacing_rate_from_rtt(tp: &mut TcpSock) {
    let rtt_us = if tp.srtt_us != 0 {
        st_mut(tp).set_has_seen_rtt(1);
        (tp.srtt_us >> 3).max(1)
    } else {
        USEC_PER_MSEC
    };
    let bw = u64::from(tp.snd_cwnd) * BW_UNIT / u64::from(rtt_us);
    // bbr_bw_to_pacing_rate takes a u32 bw.
    let rate = bw_to_pacing_rate(tp, bw as u32, HIGH_GAIN);
    tp.sk_mut().sk_pacing_rate = rate;
}

/// `bbr_set_pacing_rate`: pace at `bw * gain`; before the pipe is full, only upwards.
fn set_pacing_rate(tp: &mut TcpSock, bw: u32, gain: u32) {
    let rate = bw_to_pacing_rate(tp, bw, gain);
    if st(tp).has_seen_rtt() == 0 && tp.srtt_us != 0 {
        init_pacing_rate_from_rtt(tp);
    }
    if full_bw_reached(tp) || rate > tp.sk().sk_pacing_rate {
        tp.sk_mut().sk_pacing_rate = rate;
    }
}

/// `bbr_min_tso_segs`: 1 segment per TSO burst below `MIN_TSO_RATE`, else 2.
pub fn min_tso_segs(tp: &TcpSock) -> u32 {
    if tp.sk().sk_pacing_rate < MIN_TSO_RATE >> 3 {
        1
    } else {
        2
    }
}

/// `bbr_tso_segs_goal`: `tcp_tso_autosize` without the driver's `sk_gso_max_size`: the
/// segments paced out in `2^-sk_pacing_shift` seconds, at least `min_tso_segs`, at most
/// 127. (With `mss_cache == 0`, where the kernel would divide by zero, the quotient is
/// taken as 0, as BPF's division defines it.)
fn tso_segs_goal(tp: &TcpSock) -> u32 {
    let sk = tp.sk();
    let per_burst = sk
        .sk_pacing_rate
        .wrapping_shr(u32::from(sk.sk_pacing_shift));
    let bytes = per_burst.min(u64::from(GSO_LEGACY_MAX_SIZE - 1 - MAX_TCP_HEADER)) as u32;
    let segs = bytes
        .checked_div(tp.mss_cache)
        .unwrap_or(0)
        .max(min_tso_segs(tp));
    segs.min(0x7f)
}

/// `bbr_save_cwnd`: remember the last known good cwnd, to restore after losses or
/// PROBE_RTT.
fn save_cwnd(tp: &mut TcpSock) {
    let cwnd = tp.snd_cwnd;
    let s = st_mut(tp);
    if s.prev_ca_state() < TcpCaState::Recovery as u32 && s.mode() != BBR_PROBE_RTT {
        s.prior_cwnd = cwnd;
    } else {
        s.prior_cwnd = s.prior_cwnd.max(cwnd);
    }
}

/// `bbr_cwnd_event`: on restart from idle while app-limited, pace at the estimate.
fn cwnd_event(tp: &mut TcpSock, event: TcpCaEvent) {
    if event != TcpCaEvent::TxStart || tp.app_limited == 0 {
        return;
    }
    let now = tp.tcp_mstamp;
    let s = st_mut(tp);
    s.set_idle_restart(1);
    s.ack_epoch_mstamp = now;
    s.set_ack_epoch_acked(0);
    // Avoid pointless buffer overflows: pace at the estimate when restarting app-limited.
    match s.mode() {
        BBR_PROBE_BW => {
            let bw = bw(tp);
            set_pacing_rate(tp, bw, BBR_UNIT);
        }
        BBR_PROBE_RTT => check_probe_rtt_done(tp),
        _ => {}
    }
}

/// `bbr_bdp`: `ceil(bw * min_rtt * gain)`, in packets; the initial cwnd before any RTT.
fn bdp(tp: &TcpSock, bw: u32, gain: u32) -> u32 {
    let min_rtt_us = st(tp).min_rtt_us;
    if min_rtt_us == u32::MAX {
        return TCP_INIT_CWND;
    }
    let w = u64::from(bw) * u64::from(min_rtt_us);
    // Apply the gain, drop the BW_SCALE shift, and round up.
    let scaled = w.wrapping_mul(u64::from(gain)) >> BBR_SCALE;
    (scaled.wrapping_add(BW_UNIT - 1) / BW_UNIT) as u32
}

/// `bbr_quantization_budget`: room for three full-sized TSO bursts in flight, rounded up
/// to even; two more packets in the probing phase so that small BDPs still probe.
fn quantization_budget(tp: &TcpSock, cwnd: u32) -> u32 {
    let mut cwnd = cwnd.wrapping_add(3u32.wrapping_mul(tso_segs_goal(tp)));
    cwnd = cwnd.wrapping_add(1) & !1;
    let s = st(tp);
    if s.mode() == BBR_PROBE_BW && s.cycle_idx() == 0 {
        cwnd = cwnd.wrapping_add(2);
    }
    cwnd
}

/// `bbr_inflight`: the in-flight target for `bw` and `gain`.
fn inflight(tp: &TcpSock, bw: u32, gain: u32) -> u32 {
    let bdp = bdp(tp, bw, gain);
    quantization_budget(tp, bdp)
}

/// `bbr_packets_in_net_at_edt`: the packets likely still in the network when the next
/// paced packet departs (at `tcp_wstamp_ns`).
fn packets_in_net_at_edt(tp: &TcpSock, inflight_now: u32) -> u32 {
    let now_ns = tp.tcp_clock_cache;
    let edt_ns = tp.tcp_wstamp_ns.max(now_ns);
    let interval_us = (edt_ns - now_ns) / NSEC_PER_USEC;
    let interval_delivered = (u64::from(bw(tp)).wrapping_mul(interval_us) >> BW_SCALE) as u32;
    let mut inflight_at_edt = inflight_now;
    if st(tp).pacing_gain() > BBR_UNIT {
        // Increasing in-flight: include the packet departing at the EDT.
        inflight_at_edt = inflight_at_edt.wrapping_add(tso_segs_goal(tp));
    }
    if interval_delivered >= inflight_at_edt {
        return 0;
    }
    inflight_at_edt - interval_delivered
}

/// `bbr_ack_aggregation_cwnd`: the cwnd increment for ACK aggregation, once the pipe is
/// full, at most `EXTRA_ACKED_MAX_US` worth of `bw`.
fn ack_aggregation_cwnd(tp: &TcpSock) -> u32 {
    if !full_bw_reached(tp) {
        return 0;
    }
    let max_aggr_cwnd = (u64::from(bw(tp)) * EXTRA_ACKED_MAX_US / BW_UNIT) as u32;
    let aggr_cwnd = (EXTRA_ACKED_GAIN * u32::from(extra_acked(tp))) >> BBR_SCALE;
    aggr_cwnd.min(max_aggr_cwnd)
}

/// `bbr_set_cwnd_to_recover_or_restore`: packet conservation in the first round of
/// recovery, the saved cwnd when recovery ends. Returns whether conservation applies,
/// and the new cwnd.
fn set_cwnd_to_recover_or_restore(tp: &mut TcpSock, rs: &RateSample, acked: u32) -> (bool, u32) {
    let prev_state = st(tp).prev_ca_state();
    let state = u32::from(tp.ca_state());
    let recovery = TcpCaState::Recovery as u32;
    let mut cwnd = tp.snd_cwnd;

    // An ACK for P packets should release at most 2*P: first deduct the lost packets,
    // then `set_cwnd` slow-starts toward the target.
    if rs.losses > 0 {
        cwnd = (cwnd.wrapping_sub(rs.losses as u32) as i32).max(1) as u32;
    }

    if state == recovery && prev_state != recovery {
        // First round of recovery: packet conservation, starting a round now.
        let delivered = tp.delivered;
        let s = st_mut(tp);
        s.set_packet_conservation(1);
        s.next_rtt_delivered = delivered;
        // Cut unused cwnd from app behavior, TSQ or TSO deferral.
        cwnd = tp.packets_in_flight().wrapping_add(acked);
    } else if prev_state >= recovery && state < recovery {
        // Leaving recovery: restore the cwnd saved before it.
        let s = st_mut(tp);
        cwnd = cwnd.max(s.prior_cwnd);
        s.set_packet_conservation(0);
    }
    st_mut(tp).set_prev_ca_state(state);

    if st(tp).packet_conservation() != 0 {
        return (true, cwnd.max(tp.packets_in_flight().wrapping_add(acked)));
    }
    (false, cwnd)
}

/// `bbr_set_cwnd`: slow-start toward the target cwnd (while the bandwidth estimate grows
/// or after losses drew cwnd below it), or snap down to it once the pipe is full.
fn set_cwnd(tp: &mut TcpSock, rs: &RateSample, acked: u32, bw: u32, gain: u32) {
    let mut cwnd = tp.snd_cwnd;
    'done: {
        if acked == 0 {
            break 'done; // nothing fully ACKed: just apply the caps
        }
        let (conserving, c) = set_cwnd_to_recover_or_restore(tp, rs, acked);
        cwnd = c;
        if conserving {
            break 'done;
        }
        let mut target = bdp(tp, bw, gain);
        // Room for the excess ACKed data that aggregation shows in the ACK stream.
        target = target.wrapping_add(ack_aggregation_cwnd(tp));
        target = quantization_budget(tp, target);
        if full_bw_reached(tp) {
            // Only cut cwnd once the pipe has been filled.
            cwnd = cwnd.wrapping_add(acked).min(target);
        } else if cwnd < target || tp.delivered < TCP_INIT_CWND {
            cwnd = cwnd.wrapping_add(acked);
        }
        cwnd = cwnd.max(CWND_MIN_TARGET);
    }
    tp.snd_cwnd = cwnd.min(tp.snd_cwnd_clamp);
    if st(tp).mode() == BBR_PROBE_RTT {
        // Drain the queue and refresh min_rtt.
        tp.snd_cwnd = tp.snd_cwnd.min(CWND_MIN_TARGET);
    }
}

/// `bbr_is_next_cycle_phase`: the phase ends after a min RTT (gain 1), after a min RTT
/// with in-flight at the probe target or a loss (gain > 1), or after a min RTT or once
/// in-flight is down to the BDP (gain < 1).
fn is_next_cycle_phase(tp: &TcpSock, rs: &RateSample) -> bool {
    let s = st(tp);
    let is_full_length = stamp_us_delta(tp.delivered_mstamp, s.cycle_mstamp) > s.min_rtt_us;
    let gain = s.pacing_gain();
    if gain == BBR_UNIT {
        return is_full_length;
    }
    let inflight_now = packets_in_net_at_edt(tp, rs.prior_in_flight);
    let bw = max_bw(tp);
    if gain > BBR_UNIT {
        return is_full_length && (rs.losses != 0 || inflight_now >= inflight(tp, bw, gain));
    }
    is_full_length || inflight_now <= inflight(tp, bw, BBR_UNIT)
}

/// `bbr_advance_cycle_phase`.
fn advance_cycle_phase(tp: &mut TcpSock) {
    let now = tp.delivered_mstamp;
    let s = st_mut(tp);
    s.set_cycle_idx((s.cycle_idx() + 1) & (CYCLE_LEN - 1));
    s.cycle_mstamp = now;
}

/// `bbr_update_cycle_phase`: gain cycling in PROBE_BW.
fn update_cycle_phase(tp: &mut TcpSock, rs: &RateSample) {
    if st(tp).mode() == BBR_PROBE_BW && is_next_cycle_phase(tp, rs) {
        advance_cycle_phase(tp);
    }
}

/// `bbr_reset_startup_mode`.
fn reset_startup_mode(tp: &mut TcpSock) {
    st_mut(tp).set_mode(BBR_STARTUP);
}

/// `bbr_reset_probe_bw_mode`: enter PROBE_BW at a random phase other than the draining
/// one (`CYCLE_LEN - 1 - random(0..7)`, then advanced).
fn reset_probe_bw_mode(tp: &mut TcpSock) {
    let r = random_below(tp, CYCLE_RAND);
    let s = st_mut(tp);
    s.set_mode(BBR_PROBE_BW);
    s.set_cycle_idx((CYCLE_LEN - 1).wrapping_sub(r));
    advance_cycle_phase(tp);
}

/// `bbr_reset_mode`: back to STARTUP, or to PROBE_BW if the pipe was filled.
fn reset_mode(tp: &mut TcpSock) {
    if !full_bw_reached(tp) {
        reset_startup_mode(tp);
    } else {
        reset_probe_bw_mode(tp);
    }
}

/// `bbr_reset_lt_bw_sampling_interval`: start a long-term sampling interval.
fn reset_lt_bw_sampling_interval(tp: &mut TcpSock) {
    let (stamp_ms, delivered, lost) = (tp.delivered_mstamp / 1000, tp.delivered, tp.lost);
    let s = st_mut(tp);
    s.lt_last_stamp = stamp_ms as u32;
    s.lt_last_delivered = delivered;
    s.lt_last_lost = lost;
    s.set_lt_rtt_cnt(0);
}

/// `bbr_reset_lt_bw_sampling`: forget long-term sampling entirely.
fn reset_lt_bw_sampling(tp: &mut TcpSock) {
    let s = st_mut(tp);
    s.lt_bw = 0;
    s.set_lt_use_bw(0);
    s.set_lt_is_sampling(0);
    reset_lt_bw_sampling_interval(tp);
}

/// `bbr_lt_bw_interval_done`: two consecutive lossy intervals with consistent bandwidth
/// mean a policer; use their average.
fn lt_bw_interval_done(tp: &mut TcpSock, bw: u32) {
    let lt_bw = st(tp).lt_bw;
    if lt_bw != 0 {
        // The kernel's abs() of a u32 takes it as int.
        let diff = (bw.wrapping_sub(lt_bw) as i32).wrapping_abs() as u32;
        if diff.wrapping_mul(BBR_UNIT) <= LT_BW_RATIO.wrapping_mul(lt_bw)
            || rate_bytes_per_sec(tp, u64::from(diff), BBR_UNIT) <= LT_BW_DIFF
        {
            let s = st_mut(tp);
            s.lt_bw = bw.wrapping_add(lt_bw) >> 1;
            s.set_lt_use_bw(1);
            s.set_pacing_gain(BBR_UNIT); // try to avoid drops
            s.set_lt_rtt_cnt(0);
            return;
        }
    }
    st_mut(tp).lt_bw = bw;
    reset_lt_bw_sampling_interval(tp);
}

/// `bbr_lt_bw_sampling`: token-bucket policer detection. Sampling starts at the first
/// loss; an interval lasts 4 to 16 rounds and ends at a loss; a lossy interval (over
/// 20%) yields a long-term bandwidth sample.
fn lt_bw_sampling(tp: &mut TcpSock, rs: &RateSample) {
    let s = st(tp);
    if s.lt_use_bw() != 0 {
        if s.mode() == BBR_PROBE_BW && s.round_start() != 0 {
            let s = st_mut(tp);
            s.set_lt_rtt_cnt(s.lt_rtt_cnt() + 1);
            if s.lt_rtt_cnt() >= LT_BW_MAX_RTTS {
                reset_lt_bw_sampling(tp); // stop using lt_bw
                reset_probe_bw_mode(tp); // restart gain cycling
            }
        }
        return;
    }

    // Wait for the first loss, so that the policer has exhausted its tokens.
    if st(tp).lt_is_sampling() == 0 {
        if rs.losses == 0 {
            return;
        }
        reset_lt_bw_sampling_interval(tp);
        st_mut(tp).set_lt_is_sampling(1);
    }

    // Out of data: the sample would underestimate; start over.
    if rs.is_app_limited {
        reset_lt_bw_sampling(tp);
        return;
    }

    let s = st_mut(tp);
    if s.round_start() != 0 {
        s.set_lt_rtt_cnt(s.lt_rtt_cnt() + 1);
    }
    if s.lt_rtt_cnt() < LT_INTVL_MIN_RTTS {
        return;
    }
    if s.lt_rtt_cnt() > 4 * LT_INTVL_MIN_RTTS {
        reset_lt_bw_sampling(tp); // interval too long
        return;
    }

    // End the interval at a loss: the tokens are exhausted.
    if rs.losses == 0 {
        return;
    }

    let s = st(tp);
    let lost = tp.lost.wrapping_sub(s.lt_last_lost);
    let delivered = tp.delivered.wrapping_sub(s.lt_last_delivered);
    if delivered == 0 || (lost << BBR_SCALE) < LT_LOSS_THRESH.wrapping_mul(delivered) {
        return;
    }

    // The interval's average delivery rate.
    let t = (tp.delivered_mstamp / 1000).wrapping_sub(u64::from(s.lt_last_stamp)) as u32;
    if (t as i32) < 1 {
        return; // less than a millisecond: wait
    }
    if t >= u32::MAX / USEC_PER_MSEC {
        reset_lt_bw_sampling(tp); // too long to multiply
        return;
    }
    let t = t * USEC_PER_MSEC;
    let bw = u64::from(delivered) * BW_UNIT / u64::from(t);
    lt_bw_interval_done(tp, bw as u32);
}

/// `bbr_update_bw`: count rounds and feed the delivery rate into the max filter
/// (app-limited samples only when they do not lower it).
fn update_bw(tp: &mut TcpSock, rs: &RateSample) {
    st_mut(tp).set_round_start(0);
    if rs.delivered < 0 || rs.interval_us <= 0 {
        return; // not a valid observation
    }

    if !before(rs.prior_delivered, st(tp).next_rtt_delivered) {
        let delivered = tp.delivered;
        let s = st_mut(tp);
        s.next_rtt_delivered = delivered;
        s.rtt_cnt = s.rtt_cnt.wrapping_add(1);
        s.set_round_start(1);
        s.set_packet_conservation(0);
    }

    lt_bw_sampling(tp, rs);

    // Both are positive here, so the kernel's signed division is this one.
    let bw = (rs.delivered as u64 * BW_UNIT) / rs.interval_us as u64;
    if !rs.is_app_limited || bw >= u64::from(max_bw(tp)) {
        let s = st_mut(tp);
        minmax_running_max(&mut s.bw, BW_RTTS, s.rtt_cnt, bw as u32);
    }
}

/// `bbr_update_ack_aggregation`: the windowed max of data ACKed beyond what `bw`
/// predicts since the epoch started.
fn update_ack_aggregation(tp: &mut TcpSock, rs: &RateSample) {
    if rs.acked_sacked == 0 || rs.delivered < 0 || rs.interval_us <= 0 {
        return;
    }

    let s = st_mut(tp);
    if s.round_start() != 0 {
        s.set_extra_acked_win_rtts(0x1f.min(s.extra_acked_win_rtts() + 1));
        if s.extra_acked_win_rtts() >= EXTRA_ACKED_WIN_RTTS {
            s.set_extra_acked_win_rtts(0);
            let idx = if s.extra_acked_win_idx() != 0 { 0 } else { 1 };
            s.set_extra_acked_win_idx(idx);
            s.extra_acked[idx as usize] = 0;
        }
    }

    // Packets expected to be delivered over the epoch.
    let epoch_us = stamp_us_delta(tp.delivered_mstamp, st(tp).ack_epoch_mstamp);
    let mut expected_acked = (u64::from(bw(tp)) * u64::from(epoch_us) / BW_UNIT) as u32;

    // Restart the epoch when ACKs arrive slower than expected, or after very many.
    let (delivered_mstamp, cwnd) = (tp.delivered_mstamp, tp.snd_cwnd);
    let s = st_mut(tp);
    if s.ack_epoch_acked() <= expected_acked
        || s.ack_epoch_acked().wrapping_add(rs.acked_sacked) >= ACK_EPOCH_ACKED_RESET_THRESH
    {
        s.set_ack_epoch_acked(0);
        s.ack_epoch_mstamp = delivered_mstamp;
        expected_acked = 0;
    }

    // Excess data delivered beyond expectations.
    s.set_ack_epoch_acked(0xfffff.min(s.ack_epoch_acked().wrapping_add(rs.acked_sacked)));
    let extra = s.ack_epoch_acked().wrapping_sub(expected_acked).min(cwnd);
    let idx = s.extra_acked_win_idx() as usize;
    if extra > u32::from(s.extra_acked[idx]) {
        s.extra_acked[idx] = extra as u16;
    }
}

/// `bbr_check_full_bw_reached`: the pipe is full after `FULL_BW_CNT` non-app-limited
/// rounds without 25% bandwidth growth.
fn check_full_bw_reached(tp: &mut TcpSock, rs: &RateSample) {
    if full_bw_reached(tp) || st(tp).round_start() == 0 || rs.is_app_limited {
        return;
    }
    let max_bw = max_bw(tp);
    let s = st_mut(tp);
    let bw_thresh = ((u64::from(s.full_bw) * u64::from(FULL_BW_THRESH)) >> BBR_SCALE) as u32;
    if max_bw >= bw_thresh {
        s.full_bw = max_bw;
        s.set_full_bw_cnt(0);
        return;
    }
    s.set_full_bw_cnt(s.full_bw_cnt() + 1);
    s.set_full_bw_reached(u32::from(s.full_bw_cnt() >= FULL_BW_CNT));
}

/// `bbr_check_drain`: STARTUP filled the pipe: DRAIN, until what is in flight fits the
/// BDP, then PROBE_BW.
fn check_drain(tp: &mut TcpSock) {
    if st(tp).mode() == BBR_STARTUP && full_bw_reached(tp) {
        st_mut(tp).set_mode(BBR_DRAIN);
        tp.snd_ssthresh = inflight(tp, max_bw(tp), BBR_UNIT);
    }
    if st(tp).mode() == BBR_DRAIN
        && packets_in_net_at_edt(tp, tp.packets_in_flight()) <= inflight(tp, max_bw(tp), BBR_UNIT)
    {
        reset_probe_bw_mode(tp); // the queue is drained
    }
}

/// `bbr_check_probe_rtt_done`: PROBE_RTT's time is up: restore cwnd and leave.
fn check_probe_rtt_done(tp: &mut TcpSock) {
    let now = clock::tcp_jiffies32();
    let done = st(tp).probe_rtt_done_stamp;
    if !(done != 0 && after(now, done)) {
        return;
    }
    st_mut(tp).min_rtt_stamp = now; // wait a while until the next PROBE_RTT
    tp.snd_cwnd = tp.snd_cwnd.max(st(tp).prior_cwnd);
    reset_mode(tp);
}

/// `bbr_update_min_rtt`: track the min RTT over `MIN_RTT_WIN_SEC`; when it expires,
/// PROBE_RTT: hold in-flight at `CWND_MIN_TARGET` for `PROBE_RTT_MODE_MS` and a round.
fn update_min_rtt(tp: &mut TcpSock, rs: &RateSample) {
    let now = clock::tcp_jiffies32();
    let s = st(tp);
    let filter_expired = after(
        now,
        s.min_rtt_stamp
            .wrapping_add(MIN_RTT_WIN_SEC.wrapping_mul(clock::hz())),
    );
    if rs.rtt_us >= 0
        && (rs.rtt_us < i64::from(s.min_rtt_us) || (filter_expired && !rs.is_ack_delayed))
    {
        let s = st_mut(tp);
        s.min_rtt_us = rs.rtt_us as u32;
        s.min_rtt_stamp = now;
    }

    let s = st(tp);
    if PROBE_RTT_MODE_MS > 0 && filter_expired && s.idle_restart() == 0 && s.mode() != BBR_PROBE_RTT
    {
        st_mut(tp).set_mode(BBR_PROBE_RTT); // dip, drain the queue
        save_cwnd(tp); // to restore it afterwards
        st_mut(tp).probe_rtt_done_stamp = 0;
    }

    if st(tp).mode() == BBR_PROBE_RTT {
        // Ignore low-rate samples during this mode.
        let limit = tp.delivered.wrapping_add(tp.packets_in_flight());
        tp.app_limited = if limit != 0 { limit } else { 1 };
        // Keep the minimum in flight for max(200 ms, 1 round).
        let in_flight = tp.packets_in_flight();
        let delivered = tp.delivered;
        let s = st_mut(tp);
        if s.probe_rtt_done_stamp == 0 && in_flight <= CWND_MIN_TARGET {
            let wait = clock::msecs_to_jiffies(u64::from(PROBE_RTT_MODE_MS)) as u32;
            s.probe_rtt_done_stamp = now.wrapping_add(wait);
            s.set_probe_rtt_round_done(0);
            s.next_rtt_delivered = delivered;
        } else if s.probe_rtt_done_stamp != 0 {
            if s.round_start() != 0 {
                s.set_probe_rtt_round_done(1);
            }
            if s.probe_rtt_round_done() != 0 {
                check_probe_rtt_done(tp);
            }
        }
    }
    // The restart after idle ends once an ACK for new data arrives.
    if rs.delivered > 0 {
        st_mut(tp).set_idle_restart(0);
    }
}

/// `bbr_update_gains`: the pacing and cwnd gains of the mode (and cycle phase).
fn update_gains(tp: &mut TcpSock) {
    let s = st_mut(tp);
    let (pacing, cwnd) = match s.mode() {
        BBR_STARTUP => (HIGH_GAIN, HIGH_GAIN),
        BBR_DRAIN => (DRAIN_GAIN, HIGH_GAIN), // slow pacing to drain, keep cwnd
        BBR_PROBE_BW => {
            let pacing = if s.lt_use_bw() != 0 {
                BBR_UNIT
            } else {
                PACING_GAIN[(s.cycle_idx() & (CYCLE_LEN - 1)) as usize]
            };
            (pacing, CWND_GAIN)
        }
        BBR_PROBE_RTT => (BBR_UNIT, BBR_UNIT),
        // A mode written by something else (the kernel warns once): leave the gains.
        _ => return,
    };
    s.set_pacing_gain(pacing);
    s.set_cwnd_gain(cwnd);
}

/// `bbr_update_model`.
fn update_model(tp: &mut TcpSock, rs: &RateSample) {
    update_bw(tp, rs);
    update_ack_aggregation(tp, rs);
    update_cycle_phase(tp, rs);
    check_full_bw_reached(tp, rs);
    check_drain(tp);
    update_min_rtt(tp, rs);
    update_gains(tp);
}

/// `bbr_main` on a socket: update the model, then set the pacing rate and cwnd.
pub fn main(tp: &mut TcpSock, rs: &RateSample) {
    update_model(tp, rs);
    let bw = bw(tp);
    let pacing_gain = st(tp).pacing_gain();
    set_pacing_rate(tp, bw, pacing_gain);
    let cwnd_gain = st(tp).cwnd_gain();
    set_cwnd(tp, rs, rs.acked_sacked, bw, cwnd_gain);
}

/// `bbr_init` on a socket.
pub fn init(tp: &mut TcpSock) {
    tp.snd_ssthresh = TCP_INFINITE_SSTHRESH;
    let (delivered, min_rtt, now) = (tp.delivered, tp.min_rtt(), clock::tcp_jiffies32());
    let s = st_mut(tp);
    s.prior_cwnd = 0;
    s.rtt_cnt = 0;
    s.next_rtt_delivered = delivered;
    s.set_prev_ca_state(TcpCaState::Open as u32);
    s.set_packet_conservation(0);

    s.probe_rtt_done_stamp = 0;
    s.set_probe_rtt_round_done(0);
    s.min_rtt_us = min_rtt;
    s.min_rtt_stamp = now;

    let rtt_cnt = s.rtt_cnt;
    minmax_reset(&mut s.bw, rtt_cnt, 0);

    s.set_has_seen_rtt(0);
    init_pacing_rate_from_rtt(tp);

    let s = st_mut(tp);
    s.set_round_start(0);
    s.set_idle_restart(0);
    s.set_full_bw_reached(0);
    s.full_bw = 0;
    s.set_full_bw_cnt(0);
    s.cycle_mstamp = 0;
    s.set_cycle_idx(0);
    reset_lt_bw_sampling(tp);
    reset_startup_mode(tp);

    let now_us = tp.tcp_mstamp;
    let s = st_mut(tp);
    s.ack_epoch_mstamp = now_us;
    s.set_ack_epoch_acked(0);
    s.set_extra_acked_win_rtts(0);
    s.set_extra_acked_win_idx(0);
    s.extra_acked = [0, 0];

    let sk = tp.sk_mut();
    if sk.sk_pacing_status == SK_PACING_NONE {
        sk.sk_pacing_status = SK_PACING_NEEDED;
    }
}

/// `bbr_undo_cwnd` on a socket: a spurious slow-down; restart full-pipe detection and
/// long-term sampling, keep cwnd.
pub fn undo_cwnd(tp: &mut TcpSock) -> u32 {
    let s = st_mut(tp);
    s.full_bw = 0;
    s.set_full_bw_cnt(0);
    reset_lt_bw_sampling(tp);
    tp.snd_cwnd
}

/// `bbr_ssthresh` on a socket: entering loss recovery; save cwnd, keep ssthresh.
pub fn ssthresh(tp: &mut TcpSock) -> u32 {
    save_cwnd(tp);
    tp.snd_ssthresh
}

/// `bbr_set_state` on a socket: an RTO counts as the end of a round with a loss.
pub fn set_state(tp: &mut TcpSock, new_state: u8) {
    if new_state != TcpCaState::Loss as u8 {
        return;
    }
    let rs = RateSample {
        losses: 1,
        ..RateSample::default()
    };
    let s = st_mut(tp);
    s.set_prev_ca_state(TcpCaState::Loss as u32);
    s.full_bw = 0;
    s.set_round_start(1); // treat the RTO like the end of a round
    lt_bw_sampling(tp, &rs);
}

/// `bbr_init` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn bbr_init(sk: *mut Sock) {
    // SAFETY: the caller's contract.
    init(unsafe { tcp_sk(sk) })
}

/// `bbr_main` as the `cong_control` member and kfunc (`ack` and `flag` are unused, as in
/// the kernel). A null `rs`, which the kernel would dereference, does nothing.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`]; `rs` null or pointing to a live [`RateSample`].
pub unsafe extern "C" fn bbr_main(sk: *mut Sock, _ack: u32, _flag: c_int, rs: *const RateSample) {
    // SAFETY: the caller's contract.
    let Some(rs) = (unsafe { rs.as_ref() }) else {
        return;
    };
    // SAFETY: the caller's contract.
    main(unsafe { tcp_sk(sk) }, rs)
}

/// `bbr_sndbuf_expand` as a member and kfunc: provision 3 * cwnd, since BBR may slow-start
/// even during recovery.
///
/// # Safety
///
/// None needed (`sk` is not read); `unsafe` for the member's type.
pub unsafe extern "C" fn bbr_sndbuf_expand(_sk: *mut Sock) -> u32 {
    3
}

/// `bbr_undo_cwnd` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn bbr_undo_cwnd(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    undo_cwnd(unsafe { tcp_sk(sk) })
}

/// `bbr_cwnd_event` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`]; `event` a valid [`TcpCaEvent`].
pub unsafe extern "C" fn bbr_cwnd_event(sk: *mut Sock, event: TcpCaEvent) {
    // SAFETY: the caller's contract.
    cwnd_event(unsafe { tcp_sk(sk) }, event)
}

/// `bbr_ssthresh` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn bbr_ssthresh(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    ssthresh(unsafe { tcp_sk(sk) })
}

/// `bbr_min_tso_segs` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn bbr_min_tso_segs(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    min_tso_segs(unsafe { tcp_sk(sk) })
}

/// `bbr_set_state` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn bbr_set_state(sk: *mut Sock, new_state: u8) {
    // SAFETY: the caller's contract.
    set_state(unsafe { tcp_sk(sk) }, new_state)
}

/// The kernel's `tcp_bbr_cong_ops` ("bbr"), without `get_info` (not offered to hosts).
pub static BBR: TcpCongestionOps = {
    let mut ops = TcpCongestionOps::empty("bbr", TCP_CONG_NON_RESTRICTED);
    ops.init = Some(bbr_init);
    ops.cong_control = Some(bbr_main);
    ops.sndbuf_expand = Some(bbr_sndbuf_expand);
    ops.undo_cwnd = Some(bbr_undo_cwnd);
    ops.cwnd_event = Some(bbr_cwnd_event);
    ops.ssthresh = Some(bbr_ssthresh);
    ops.min_tso_segs = Some(bbr_min_tso_segs);
    ops.set_state = Some(bbr_set_state);
    ops
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ICSK_CA_PRIV_SIZE, MinmaxSample};

    const RTT_US: u64 = 10_000;
    const MSS: u32 = 1448;

    /// A socket after the handshake (min RTT and srtt of `RTT_US`) with BBR initialized,
    /// and the thread's clock at `start_ns`.
    fn socket(start_ns: u64) -> TcpSock {
        clock::set_hz(250);
        clock::set_now_ns(start_ns);
        let mut tp = TcpSock {
            mss_cache: MSS,
            srtt_us: (RTT_US as u32) << 3,
            ..TcpSock::default()
        };
        tp.sk_mut().sk_max_pacing_rate = u64::MAX;
        tp.sk_mut().sk_pacing_shift = 10;
        tp.sk_mut().__sk_common.skc_num = 40_000;
        tp.sk_mut().__sk_common.skc_dport = 5201;
        minmax_reset(&mut tp.rtt_min, clock::tcp_jiffies32(), RTT_US as u32);
        tp.tcp_mstamp = clock::tcp_clock_us();
        tp.delivered_mstamp = tp.tcp_mstamp;
        tp.tcp_clock_cache = clock::ktime_ns();
        // SAFETY: a live socket, not otherwise borrowed.
        unsafe { (BBR.init.unwrap())(tp.as_sock()) };
        tp
    }

    /// A path whose bottleneck delivers at most `cap` packets per round trip.
    struct Path {
        tp: TcpSock,
        now_ns: u64,
        cap: u32,
    }

    impl Path {
        fn new(cap: u32) -> Path {
            let now_ns = 1_000_000;
            Path {
                tp: socket(now_ns),
                now_ns,
                cap,
            }
        }

        /// Advances the clock by `step_us` and delivers `delivered` packets in one ACK
        /// that closes a round (its prior_delivered is the round's start), with an RTT
        /// sample of `rtt_us`; `in_flight_after` packets stay out. The sample is
        /// app-limited while `tp.app_limited` is set, which ends once `delivered` passes
        /// it (as `tcp_rate_gen` does).
        fn ack(
            &mut self,
            step_us: u64,
            delivered: u32,
            rtt_us: i64,
            in_flight_after: u32,
        ) -> RateSample {
            self.now_ns += step_us * 1000;
            clock::set_now_ns(self.now_ns);
            let tp = &mut self.tp;
            let rs = RateSample {
                prior_delivered: tp.delivered,
                delivered: delivered as i32,
                interval_us: step_us as i64,
                rtt_us,
                acked_sacked: delivered,
                prior_in_flight: tp.snd_cwnd,
                is_app_limited: tp.app_limited != 0,
                ..RateSample::default()
            };
            tp.tcp_mstamp = clock::tcp_clock_us();
            tp.delivered_mstamp = tp.tcp_mstamp;
            tp.tcp_clock_cache = clock::ktime_ns();
            tp.delivered += delivered;
            if tp.app_limited != 0 && after(tp.delivered, tp.app_limited) {
                tp.app_limited = 0;
            }
            tp.packets_out = in_flight_after;
            // SAFETY: live socket and sample.
            unsafe { (BBR.cong_control.unwrap())(tp.as_sock(), 0, 0, &rs) };
            rs
        }

        /// One round trip sending a full cwnd through the bottleneck; the queue keeps
        /// what the bottleneck did not deliver in flight.
        fn round(&mut self) -> RateSample {
            let cwnd = self.tp.snd_cwnd;
            let delivered = cwnd.min(self.cap);
            self.ack(RTT_US, delivered, RTT_US as i64, cwnd - delivered)
        }

        fn bbr(&self) -> &Bbr {
            self.tp.ca::<Bbr>()
        }
    }

    /// bw (packets per µs << 24) of `pkts` per `us`.
    fn bw_of(pkts: u64, us: u64) -> u32 {
        (pkts * BW_UNIT / us) as u32
    }

    #[test]
    fn state_is_the_kernels_struct_bbr_bit_for_bit() {
        assert_eq!(size_of::<Bbr>(), 104);
        assert!(size_of::<Bbr>() <= ICSK_CA_PRIV_SIZE);
        let mut b = Bbr::default();
        b.set_full_bw_cnt(5);
        assert_eq!(b.full_bw_cnt(), 1, "stores truncate to the width");
        b.set_pacing_gain(HIGH_GAIN);
        b.set_cwnd_gain(1023);
        assert_eq!(
            (b.pacing_gain(), b.cwnd_gain(), b.full_bw_cnt()),
            (739, 1023, 1)
        );
        b.set_lt_use_bw(1);
        assert_eq!(b.mode_bits, 1 << 31);

        let path = "/sys/kernel/btf/vmlinux";
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("skipping the kernel comparison: cannot read {path}: {e}");
                return;
            }
        };
        let btf = structops_btf::Btf::parse(&bytes).unwrap();
        let Some(id) = btf.find_by_name_kind("bbr", structops_btf::Kind::Struct) else {
            eprintln!("skipping the kernel comparison: no struct bbr (CONFIG_TCP_CONG_BBR=m?)");
            return;
        };
        let kflag = btf.ty(id).unwrap().composite().unwrap().kflag;
        assert_eq!(btf.size_of(id).unwrap() as usize, size_of::<Bbr>());
        let plain = [
            ("min_rtt_us", std::mem::offset_of!(Bbr, min_rtt_us)),
            ("min_rtt_stamp", std::mem::offset_of!(Bbr, min_rtt_stamp)),
            (
                "probe_rtt_done_stamp",
                std::mem::offset_of!(Bbr, probe_rtt_done_stamp),
            ),
            ("bw", std::mem::offset_of!(Bbr, bw)),
            ("rtt_cnt", std::mem::offset_of!(Bbr, rtt_cnt)),
            (
                "next_rtt_delivered",
                std::mem::offset_of!(Bbr, next_rtt_delivered),
            ),
            ("cycle_mstamp", std::mem::offset_of!(Bbr, cycle_mstamp)),
            ("lt_bw", std::mem::offset_of!(Bbr, lt_bw)),
            (
                "lt_last_delivered",
                std::mem::offset_of!(Bbr, lt_last_delivered),
            ),
            ("lt_last_stamp", std::mem::offset_of!(Bbr, lt_last_stamp)),
            ("lt_last_lost", std::mem::offset_of!(Bbr, lt_last_lost)),
            ("prior_cwnd", std::mem::offset_of!(Bbr, prior_cwnd)),
            ("full_bw", std::mem::offset_of!(Bbr, full_bw)),
            (
                "ack_epoch_mstamp",
                std::mem::offset_of!(Bbr, ack_epoch_mstamp),
            ),
            ("extra_acked", std::mem::offset_of!(Bbr, extra_acked)),
        ];
        for (name, off) in plain {
            let (m, bit) = btf.member_by_name(id, name).unwrap().unwrap();
            assert_eq!(
                (bit as usize, m.bitfield_size(kflag)),
                (off * 8, 0),
                "{name}"
            );
        }
        for &(name, word, shift, width) in BITFIELDS {
            let (m, bit) = btf.member_by_name(id, name).unwrap().unwrap();
            assert_eq!(
                (bit, m.bitfield_size(kflag)),
                (word as u32 * 8 + shift, width),
                "{name}"
            );
        }
    }

    #[test]
    fn init_starts_up_with_a_pacing_rate_of_high_gain_times_cwnd_over_rtt() {
        let tp = socket(0);
        let b = tp.ca::<Bbr>();
        assert_eq!(b.mode(), BBR_STARTUP);
        assert_eq!(b.min_rtt_us, RTT_US as u32);
        assert_eq!(b.min_rtt_stamp, clock::tcp_jiffies32());
        assert_eq!(b.has_seen_rtt(), 1);
        assert_eq!(tp.snd_ssthresh, TCP_INFINITE_SSTHRESH);
        assert_eq!(tp.sk().sk_pacing_status, SK_PACING_NEEDED);
        // 2.885 * 10 packets * 1448 bytes / 10 ms, 1% margin.
        let want = 2.885 * 10.0 * f64::from(MSS) / 0.010 * 0.99;
        let got = tp.sk().sk_pacing_rate as f64;
        assert!((got / want - 1.0).abs() < 0.002, "{got} vs {want}");
        assert_eq!(b.bw.s, [MinmaxSample { t: 0, v: 0 }; 3]);
    }

    #[test]
    fn startup_grows_at_high_gain_and_drains_after_three_rounds_without_growth() {
        let mut p = Path::new(100);
        let mut last_rate = p.tp.sk().sk_pacing_rate;
        let mut cwnds = vec![p.tp.snd_cwnd];
        // Rounds 1-5 double the delivery rate (10, 20, 40, 80 and the cap, 100).
        for _ in 0..5 {
            p.round();
            assert_eq!(p.bbr().mode(), BBR_STARTUP);
            assert_eq!(
                (p.bbr().pacing_gain(), p.bbr().cwnd_gain()),
                (HIGH_GAIN, HIGH_GAIN)
            );
            assert_eq!(p.bbr().full_bw_cnt(), 0, "bw grew by 25% or more");
            assert!(
                p.tp.sk().sk_pacing_rate >= last_rate,
                "pacing rate never drops"
            );
            last_rate = p.tp.sk().sk_pacing_rate;
            cwnds.push(p.tp.snd_cwnd);
        }
        assert_eq!(
            cwnds,
            [10, 20, 40, 80, 160, 260],
            "cwnd grows by what was acked"
        );
        assert_eq!(p.bbr().rtt_cnt, 5, "one round per ACK");
        let bw = bw_of(100, RTT_US);
        assert_eq!(max_bw(&p.tp), bw);
        // Pacing at 2.885 x the bottleneck rate (1% margin).
        let want = 2.885 * 100.0 * f64::from(MSS) / 0.010 * 0.99;
        let got = p.tp.sk().sk_pacing_rate as f64;
        assert!((got / want - 1.0).abs() < 0.002, "{got} vs {want}");

        // An app-limited round does not count as a round without growth.
        let cwnd = p.tp.snd_cwnd;
        p.now_ns += RTT_US * 1000;
        clock::set_now_ns(p.now_ns);
        let rs = RateSample {
            prior_delivered: p.tp.delivered,
            delivered: 5,
            interval_us: RTT_US as i64,
            rtt_us: RTT_US as i64,
            acked_sacked: 5,
            prior_in_flight: cwnd,
            is_app_limited: true,
            ..RateSample::default()
        };
        p.tp.delivered += 5;
        main(&mut p.tp, &rs);
        assert_eq!(p.bbr().full_bw_cnt(), 0);
        assert_eq!(
            max_bw(&p.tp),
            bw,
            "a low app-limited sample is filtered out"
        );

        // Three rounds at the cap: full bandwidth reached on the third.
        p.round();
        assert_eq!((p.bbr().mode(), p.bbr().full_bw_cnt()), (BBR_STARTUP, 1));
        p.round();
        assert_eq!((p.bbr().mode(), p.bbr().full_bw_cnt()), (BBR_STARTUP, 2));
        assert_eq!(p.bbr().full_bw_reached(), 0);
        // Still a standing queue: DRAIN, pacing at 1/2.885, ssthresh at the in-flight
        // target for 1.0 x BDP (with the TSO budget of the STARTUP pacing rate).
        let rate_before = p.tp.sk().sk_pacing_rate;
        p.round();
        assert_eq!(p.bbr().full_bw_reached(), 1);
        assert_eq!(p.bbr().mode(), BBR_DRAIN);
        assert_eq!(
            (p.bbr().pacing_gain(), p.bbr().cwnd_gain()),
            (DRAIN_GAIN, HIGH_GAIN)
        );
        assert_eq!(DRAIN_GAIN, 88);
        let bdp = bdp(&p.tp, bw, BBR_UNIT);
        assert_eq!(bdp, 100, "100 packets per 10 ms x 10 ms");
        let tso_segs = ((rate_before >> 10) as u32 / MSS).clamp(2, 127);
        assert_eq!(p.tp.snd_ssthresh, (bdp + 3 * tso_segs + 1) & !1);
        let drain_rate = p.tp.sk().sk_pacing_rate as f64;
        let want = 88.0 / 256.0 * 100.0 * f64::from(MSS) / 0.010 * 0.99;
        assert!(
            (drain_rate / want - 1.0).abs() < 0.002,
            "{drain_rate} vs {want}"
        );

        // The queue drains: in flight at the BDP -> PROBE_BW, never in the 0.75 phase.
        p.ack(RTT_US, 100, RTT_US as i64, 40);
        assert_eq!(p.bbr().mode(), BBR_PROBE_BW);
        assert_ne!(p.bbr().cycle_idx(), 1);
        assert_eq!(
            p.bbr().pacing_gain(),
            PACING_GAIN[p.bbr().cycle_idx() as usize]
        );
        assert_eq!(p.bbr().cwnd_gain(), CWND_GAIN);
    }

    /// A path in PROBE_BW (STARTUP and DRAIN done), at 100 packets per round.
    fn probe_bw_path() -> Path {
        let mut p = Path::new(100);
        while p.bbr().mode() == BBR_STARTUP {
            p.round();
        }
        p.ack(RTT_US, 100, RTT_US as i64, 40);
        assert_eq!(p.bbr().mode(), BBR_PROBE_BW);
        p
    }

    #[test]
    fn probe_bw_cycles_through_the_eight_gains() {
        let mut p = probe_bw_path();
        let mut idx = p.bbr().cycle_idx();
        // Each phase lasts a min RTT (a round of 10.5 ms > 10 ms), the probing phase
        // also until in flight reaches 1.25 x BDP (a full cwnd is, here).
        let mut seen = Vec::new();
        for _ in 0..16 {
            let cwnd = p.tp.snd_cwnd;
            p.ack(RTT_US + 500, 100, RTT_US as i64, cwnd.saturating_sub(100));
            idx = (idx + 1) % CYCLE_LEN;
            assert_eq!(p.bbr().cycle_idx(), idx);
            assert_eq!(p.bbr().pacing_gain(), PACING_GAIN[idx as usize]);
            seen.push(p.bbr().pacing_gain());
            assert_eq!(p.bbr().cycle_mstamp, p.tp.delivered_mstamp);
        }
        assert_eq!(seen.iter().filter(|&&g| g == 320).count(), 2);
        assert_eq!(seen.iter().filter(|&&g| g == 192).count(), 2);
        assert_eq!(seen.iter().filter(|&&g| g == 256).count(), 12);
        // Pacing follows the gain: at 1.0, 0.99 x the bottleneck rate.
        while p.bbr().cycle_idx() != 2 {
            p.ack(RTT_US + 500, 100, RTT_US as i64, 60);
        }
        let want = 100.0 * f64::from(MSS) / 0.0105 * 0.99;
        let got = p.tp.sk().sk_pacing_rate as f64;
        assert!((got / want - 1.0).abs() < 0.002, "{got} vs {want}");
    }

    #[test]
    fn probe_bw_phases_end_on_their_inflight_targets() {
        let mut p = probe_bw_path();
        // Move to the probing phase (gain 1.25).
        while p.bbr().cycle_idx() != 0 {
            p.ack(RTT_US + 500, 100, RTT_US as i64, 60);
        }
        assert_eq!(p.bbr().pacing_gain(), 320);
        // Full length but in flight below 1.25 x BDP and no loss: keep probing.
        p.tp.snd_cwnd = 50;
        p.ack(RTT_US + 500, 50, RTT_US as i64, 0);
        assert_eq!(p.bbr().cycle_idx(), 0);
        // A loss ends it.
        p.tp.snd_cwnd = 50;
        p.now_ns += RTT_US * 1000;
        let rs = RateSample {
            prior_delivered: p.tp.delivered,
            delivered: 50,
            interval_us: RTT_US as i64,
            rtt_us: RTT_US as i64,
            acked_sacked: 50,
            prior_in_flight: 50,
            losses: 1,
            ..RateSample::default()
        };
        clock::set_now_ns(p.now_ns);
        p.tp.delivered_mstamp = clock::tcp_clock_us();
        p.tp.delivered += 50;
        p.tp.lost += 1;
        main(&mut p.tp, &rs);
        assert_eq!((p.bbr().cycle_idx(), p.bbr().pacing_gain()), (1, 192));
        // The draining phase (0.75) ends early, before a min RTT, once in flight is at
        // the BDP.
        p.tp.snd_cwnd = 90;
        p.ack(2_000, 20, RTT_US as i64, 0);
        assert_eq!((p.bbr().cycle_idx(), p.bbr().pacing_gain()), (2, BBR_UNIT));
        // The cruising phase (1.0) ignores in flight and waits for a min RTT.
        p.ack(2_000, 20, RTT_US as i64, 0);
        assert_eq!(p.bbr().cycle_idx(), 2);
    }

    #[test]
    fn probe_rtt_after_ten_seconds_without_a_new_min_rtt() {
        let mut p = probe_bw_path();
        let stamp = p.bbr().min_rtt_stamp;
        let hz = u64::from(clock::hz());
        let jiffy_ns = 1_000_000_000 / hz;
        let cwnd_before = p.tp.snd_cwnd;
        assert!(cwnd_before > CWND_MIN_TARGET);
        // Exactly 10 s after the min RTT sample: not expired yet.
        let expiry_ns = clock::now_ns()
            - (clock::tcp_jiffies32().wrapping_sub(stamp)) as u64 * jiffy_ns
            + 10 * hz * jiffy_ns;
        let step_us = (expiry_ns - p.now_ns) / 1000;
        p.ack(step_us, 100, 12_000, 60);
        assert_eq!(clock::tcp_jiffies32(), stamp + 10 * clock::hz());
        assert_eq!(p.bbr().mode(), BBR_PROBE_BW);
        assert_eq!(
            p.bbr().min_rtt_us,
            RTT_US as u32,
            "a larger sample does not replace it"
        );
        let cwnd_before = p.tp.snd_cwnd;
        // One jiffy later: PROBE_RTT, the (not delayed) sample becomes the min RTT,
        // cwnd is saved and cut to 4.
        p.ack(jiffy_ns / 1000, 40, 12_000, 60);
        let now = clock::tcp_jiffies32();
        assert_eq!(p.bbr().mode(), BBR_PROBE_RTT);
        assert_eq!((p.bbr().min_rtt_us, p.bbr().min_rtt_stamp), (12_000, now));
        assert_eq!(p.bbr().prior_cwnd, cwnd_before);
        assert_eq!(p.tp.snd_cwnd, CWND_MIN_TARGET);
        assert_eq!(
            (p.bbr().pacing_gain(), p.bbr().cwnd_gain()),
            (BBR_UNIT, BBR_UNIT)
        );
        assert_eq!(
            p.bbr().probe_rtt_done_stamp,
            0,
            "60 packets still in flight"
        );
        assert_eq!(p.tp.app_limited, p.tp.delivered + 60);
        // In flight down to 4: hold for 200 ms (50 jiffies at HZ=250) and a round.
        p.ack(RTT_US, 56, 12_000, 4);
        let done = clock::tcp_jiffies32() + 50;
        assert_eq!(p.bbr().probe_rtt_done_stamp, done);
        p.ack(RTT_US, 4, 12_000, 4);
        assert_eq!(p.bbr().probe_rtt_round_done(), 1, "a round has passed");
        assert_eq!(p.bbr().mode(), BBR_PROBE_RTT, "but not 200 ms");
        while clock::tcp_jiffies32() <= done {
            assert_eq!(p.bbr().mode(), BBR_PROBE_RTT);
            assert_eq!(p.tp.snd_cwnd, CWND_MIN_TARGET);
            p.ack(RTT_US * 2, 4, 12_000, 4);
        }
        // Done: back to PROBE_BW (the pipe was full), cwnd restored toward the saved one,
        // the next PROBE_RTT 10 s from now.
        assert_eq!(p.bbr().mode(), BBR_PROBE_BW);
        assert_eq!(p.bbr().min_rtt_stamp, clock::tcp_jiffies32());
        assert!(p.tp.snd_cwnd > CWND_MIN_TARGET);
        let bw = bw(&p.tp);
        assert_eq!(
            bw,
            bw_of(100, RTT_US),
            "low app-limited samples did not lower bw"
        );
        let target = quantization_budget(
            &p.tp,
            bdp(&p.tp, bw, CWND_GAIN) + ack_aggregation_cwnd(&p.tp),
        );
        assert_eq!(p.tp.snd_cwnd, (cwnd_before + 4).min(target));
    }

    #[test]
    fn a_new_min_rtt_postpones_probe_rtt() {
        let mut p = probe_bw_path();
        p.ack(5_000_000, 100, 9_000, 60);
        assert_eq!(p.bbr().min_rtt_us, 9_000);
        p.ack(6_000_000, 100, 12_000, 60);
        assert_eq!(p.bbr().mode(), BBR_PROBE_BW, "9 ms is 6 s old");
        p.ack(4_100_000, 100, 12_000, 60);
        assert_eq!(p.bbr().mode(), BBR_PROBE_RTT, "and now 10.1 s");
    }

    #[test]
    fn recovery_conserves_packets_then_restores_cwnd() {
        let mut p = probe_bw_path();
        let cwnd = p.tp.snd_cwnd;
        // SAFETY: live socket.
        let ssthresh = unsafe { bbr_ssthresh(p.tp.as_sock()) };
        assert_eq!(ssthresh, p.tp.snd_ssthresh, "BBR keeps ssthresh");
        assert_eq!(p.bbr().prior_cwnd, cwnd, "and saves cwnd");
        p.tp.icsk_mut().set_ca_state(TcpCaState::Recovery as u8);
        let rs = p.ack(1_000, 5, RTT_US as i64, 20);
        assert_eq!(rs.acked_sacked, 5);
        assert_eq!(p.bbr().packet_conservation(), 1);
        assert_eq!(p.bbr().prev_ca_state(), TcpCaState::Recovery as u32);
        assert_eq!(p.tp.snd_cwnd, 20 + 5, "in flight + acked");
        assert_eq!(
            p.bbr().next_rtt_delivered,
            p.tp.delivered,
            "a round starts now"
        );
        // Recovery ends: the saved cwnd is back (and capped by the target).
        p.tp.icsk_mut().set_ca_state(TcpCaState::Open as u8);
        p.ack(RTT_US + 500, 30, RTT_US as i64, 20);
        assert_eq!(p.bbr().packet_conservation(), 0);
        let target = quantization_budget(
            &p.tp,
            bdp(&p.tp, bw(&p.tp), CWND_GAIN) + ack_aggregation_cwnd(&p.tp),
        );
        assert_eq!(p.tp.snd_cwnd, (cwnd + 30).min(target));
    }

    #[test]
    fn rto_starts_long_term_sampling_and_a_policer_is_detected() {
        let mut p = probe_bw_path();
        // SAFETY: live socket.
        unsafe { bbr_set_state(p.tp.as_sock(), TcpCaState::Loss as u8) };
        assert_eq!(p.bbr().prev_ca_state(), TcpCaState::Loss as u32);
        assert_eq!((p.bbr().full_bw, p.bbr().round_start()), (0, 1));
        assert_eq!(p.bbr().lt_is_sampling(), 1);
        assert_eq!(p.bbr().lt_last_delivered, p.tp.delivered);
        // Two lossy intervals (25% lost) of 4 rounds each at the same rate: policed.
        p.tp.icsk_mut().set_ca_state(TcpCaState::Open as u8);
        for interval in 0..2 {
            for r in 0..4 {
                p.now_ns += RTT_US * 1000;
                clock::set_now_ns(p.now_ns);
                p.tp.delivered_mstamp = clock::tcp_clock_us();
                let losses = if r == 3 { 25 } else { 0 };
                p.tp.lost += losses as u32;
                let rs = RateSample {
                    prior_delivered: p.tp.delivered,
                    delivered: 25,
                    interval_us: RTT_US as i64,
                    rtt_us: RTT_US as i64,
                    acked_sacked: 25,
                    prior_in_flight: 40,
                    losses,
                    ..RateSample::default()
                };
                p.tp.delivered += 25;
                main(&mut p.tp, &rs);
            }
            if interval == 0 {
                assert_eq!(p.bbr().lt_use_bw(), 0);
                assert_eq!(p.bbr().lt_bw, bw_of(100, 4 * RTT_US));
            }
        }
        assert_eq!(p.bbr().lt_use_bw(), 1, "consistent lossy intervals");
        assert_eq!(
            bw(&p.tp),
            bw_of(100, 4 * RTT_US),
            "paced at the policed rate"
        );
        assert_eq!(p.bbr().pacing_gain(), BBR_UNIT);
        // undo_cwnd forgets it, returning cwnd as is.
        p.tp.snd_cwnd = 77;
        // SAFETY: live socket.
        assert_eq!(unsafe { bbr_undo_cwnd(p.tp.as_sock()) }, 77);
        assert_eq!(p.tp.snd_cwnd, 77);
        let b = p.bbr();
        assert_eq!((b.full_bw, b.full_bw_cnt()), (0, 0));
        assert_eq!((b.lt_bw, b.lt_use_bw(), b.lt_is_sampling()), (0, 0, 0));
    }

    #[test]
    fn undo_cwnd_resets_full_bw_detection() {
        let mut p = Path::new(100);
        for _ in 0..7 {
            p.round();
        }
        assert_eq!(p.bbr().full_bw_cnt(), 2);
        assert_ne!(p.bbr().full_bw, 0);
        let cwnd = p.tp.snd_cwnd;
        // SAFETY: live socket.
        assert_eq!(unsafe { (BBR.undo_cwnd.unwrap())(p.tp.as_sock()) }, cwnd);
        assert_eq!((p.bbr().full_bw, p.bbr().full_bw_cnt()), (0, 0));
        // Full-pipe detection starts over: three more rounds are needed.
        p.round();
        assert_eq!(p.bbr().full_bw_cnt(), 0, "full_bw re-learned");
        p.round();
        p.round();
        assert_eq!(p.bbr().mode(), BBR_STARTUP);
        p.round();
        assert_eq!(p.bbr().mode(), BBR_DRAIN);
    }

    #[test]
    fn min_tso_segs_sndbuf_expand_and_the_table() {
        let mut tp = socket(0);
        tp.sk_mut().sk_pacing_rate = 149_999;
        // SAFETY: live socket.
        unsafe {
            assert_eq!(bbr_min_tso_segs(tp.as_sock()), 1, "below 1.2 Mbit/s");
            tp.sk_mut().sk_pacing_rate = 150_000;
            assert_eq!((BBR.min_tso_segs.unwrap())(tp.as_sock()), 2);
            assert_eq!((BBR.sndbuf_expand.unwrap())(tp.as_sock()), 3);
        }
        // The TSO goal: 1 ms of pacing (shift 10) in segments, at most 127.
        tp.sk_mut().sk_pacing_rate = 14_480_000;
        assert_eq!(tso_segs_goal(&tp), 14_480_000 / 1024 / MSS);
        tp.sk_mut().sk_pacing_rate = u64::MAX / 2;
        assert_eq!(
            tso_segs_goal(&tp),
            (GSO_LEGACY_MAX_SIZE - 1 - MAX_TCP_HEADER) / MSS
        );
        tp.mss_cache = 100;
        assert_eq!(tso_segs_goal(&tp), 127);
        assert_eq!(BBR.name(), "bbr");
        assert_eq!(BBR.flags, TCP_CONG_NON_RESTRICTED);
        assert!(BBR.cong_avoid.is_none() && BBR.get_info.is_none());
        assert!(BBR.in_ack_event.is_none() && BBR.pkts_acked.is_none());
    }

    #[test]
    fn restart_from_idle_paces_at_the_estimate() {
        let mut p = probe_bw_path();
        while p.bbr().pacing_gain() != 320 {
            p.ack(RTT_US + 500, 100, RTT_US as i64, 60);
        }
        let probing = p.tp.sk().sk_pacing_rate;
        p.tp.app_limited = 1;
        // SAFETY: live socket.
        unsafe { bbr_cwnd_event(p.tp.as_sock(), TcpCaEvent::TxStart) };
        assert_eq!(p.bbr().idle_restart(), 1);
        assert_eq!(p.bbr().ack_epoch_mstamp, p.tp.tcp_mstamp);
        let rate = p.tp.sk().sk_pacing_rate;
        assert!(rate < probing, "1.0 x bw, not 1.25");
        assert_eq!(rate, bw_to_pacing_rate(&p.tp, bw(&p.tp), BBR_UNIT));
        // Other events and non-app-limited restarts change nothing.
        p.tp.app_limited = 0;
        p.tp.sk_mut().sk_pacing_rate = 1;
        // SAFETY: live socket.
        unsafe { bbr_cwnd_event(p.tp.as_sock(), TcpCaEvent::TxStart) };
        assert_eq!(p.tp.sk().sk_pacing_rate, 1);
        // An ACK of new data ends the restart.
        p.ack(RTT_US, 10, RTT_US as i64, 0);
        assert_eq!(p.bbr().idle_restart(), 0);
    }

    #[test]
    fn the_random_phase_is_deterministic_per_socket_and_covers_its_range() {
        let mut tp = TcpSock::default();
        let mut hist = [0u32; 7];
        for d in 0..7000u32 {
            tp.delivered = d;
            let r = random_below(&tp, CYCLE_RAND);
            assert_eq!(r, random_below(&tp, CYCLE_RAND), "deterministic");
            hist[r as usize] += 1;
        }
        for (v, &n) in hist.iter().enumerate() {
            assert!(
                (800..1200).contains(&n),
                "value {v} drawn {n} times of 7000"
            );
        }
        assert_eq!(random_below(&tp, 1), 0);
        tp.sk_mut().__sk_common.skc_hash = 1;
        let a: Vec<u32> = (0..32)
            .map(|d| {
                tp.delivered = d;
                random_below(&tp, 7)
            })
            .collect();
        tp.sk_mut().__sk_common.skc_hash = 2;
        let b: Vec<u32> = (0..32)
            .map(|d| {
                tp.delivered = d;
                random_below(&tp, 7)
            })
            .collect();
        assert_ne!(a, b, "another connection, another sequence");
    }

    #[test]
    fn minimum_cwnd_and_clamp_apply() {
        let mut p = probe_bw_path();
        p.tp.snd_cwnd_clamp = 30;
        p.ack(RTT_US + 500, 100, RTT_US as i64, 0);
        assert_eq!(p.tp.snd_cwnd, 30, "snd_cwnd_clamp caps cwnd");
        p.tp.snd_cwnd_clamp = u32::MAX;
        // A huge loss cannot take cwnd below 4 outside recovery.
        p.tp.snd_cwnd = 3;
        p.ack(RTT_US + 500, 1, RTT_US as i64, 0);
        assert!(p.tp.snd_cwnd >= CWND_MIN_TARGET);
    }

    /// Arbitrary state (as a BPF program may leave in `icsk_ca_priv`), socket fields and
    /// samples: no overflow panic in debug builds, and the caps hold after every ACK.
    #[test]
    fn arbitrary_state_and_samples_keep_the_caps() {
        let mut x = 0x2545_f491_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        clock::set_hz(250);
        for i in 0..20_000u64 {
            clock::set_now_ns(next() >> 8);
            let mut tp = TcpSock {
                mss_cache: if i % 17 == 0 { 0 } else { next() as u32 % 9000 },
                srtt_us: next() as u32,
                snd_cwnd: next() as u32 % 5000,
                snd_cwnd_clamp: if i % 3 == 0 {
                    next() as u32 % 1000
                } else {
                    u32::MAX
                },
                packets_out: next() as u32 % 5000,
                sacked_out: next() as u32 % 100,
                retrans_out: next() as u32 % 100,
                delivered: next() as u32,
                lost: next() as u32,
                app_limited: next() as u32 % 2,
                tcp_mstamp: next(),
                delivered_mstamp: next(),
                tcp_clock_cache: next(),
                tcp_wstamp_ns: next(),
                ..TcpSock::default()
            };
            tp.sk_mut().sk_pacing_rate = next();
            tp.sk_mut().sk_max_pacing_rate = next();
            tp.sk_mut().sk_pacing_shift = next() as u8;
            tp.icsk_mut().set_ca_state((next() % 5) as u8);
            for w in tp.icsk_mut().icsk_ca_priv.iter_mut() {
                *w = next();
            }
            let rs = RateSample {
                prior_delivered: next() as u32,
                delivered: next() as i32,
                interval_us: next() as i64 % 1_000_000,
                rtt_us: next() as i64 % 1_000_000,
                losses: next() as i32 % 4,
                acked_sacked: next() as u32 % 200,
                prior_in_flight: next() as u32,
                is_app_limited: next() % 2 == 0,
                is_ack_delayed: next() % 2 == 0,
                ..RateSample::default()
            };
            match next() % 8 {
                0 => cwnd_event(&mut tp, TcpCaEvent::TxStart),
                1 => set_state(&mut tp, (next() % 5) as u8),
                2 => {
                    ssthresh(&mut tp);
                }
                3 => {
                    undo_cwnd(&mut tp);
                }
                _ => {}
            }
            main(&mut tp, &rs);
            assert!(tp.snd_cwnd <= tp.snd_cwnd_clamp, "clamp, iteration {i}");
            if st(&tp).mode() == BBR_PROBE_RTT {
                assert!(
                    tp.snd_cwnd <= CWND_MIN_TARGET,
                    "PROBE_RTT cap, iteration {i}"
                );
            }
            assert!(min_tso_segs(&tp) == 1 || min_tso_segs(&tp) == 2);
            assert!((1..=127).contains(&tso_segs_goal(&tp)));
        }
    }
}
