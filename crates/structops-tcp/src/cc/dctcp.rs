//! DCTCP (RFC 8257): the kernel's `net/ipv4/tcp_dctcp.c` and `tcp_dctcp.h` (Linux 6.12).
//!
//! DCTCP is Reno whose multiplicative decrease follows the fraction of CE-marked packets:
//! once per RTT (`in_ack_event`, when `snd_una` passes the `next_seq` recorded at the
//! last update) the sender folds the fraction `F` of packets delivered with CE marks into
//! `alpha ← (1 − g)·alpha + g·F` (`g = 1/2^dctcp_shift_g`, `alpha` scaled to 1024), and on
//! congestion sets ssthresh to `cwnd·(1 − alpha/2)`. A loss (fast recovery or RTO) still
//! halves the window. As a receiver it echoes CE exactly: when the CE state of arriving
//! packets changes, a delayed ACK for the earlier packets is sent at once with the old
//! state (through [`super::hooks::send_ack`]) and an immediate ACK is
//! requested (`ICSK_ACK_NOW`).
//!
//! The state lives in `icsk_ca_priv` ([`Dctcp`]), laid out as the kernel's `struct dctcp`,
//! so the project's BPF DCTCP (`bpf/dctcp.bpf.c`) keeps the same bytes. The integer
//! arithmetic is the kernel's, wrapping included.
//!
//! Protective Load Balancing (`tcp_plb_*`) is part of the kernel's DCTCP, but does
//! nothing unless `net.ipv4.tcp_plb_enabled` is set (it is 0 by default), and this host
//! has no such setting: only `tcp_plb_init`'s reset of the state is kept.
//!
//! **Fallback.** A connection that did not negotiate ECN (`TCP_ECN_OK` clear in
//! `ecn_flags`) cannot run DCTCP: `dctcp_init` then switches the socket to
//! [`DCTCP_RENO`] by writing `icsk_ca_ops`, and stops sending ECT ([`fallback_to_reno`]).
//! A host that calls `init` through a table must therefore read `icsk_ca_ops` again
//! afterwards, as the kernel's `tcp_init_congestion_control` does implicitly. The BPF
//! DCTCP cannot write `icsk_ca_ops`; in that case it leaves the socket as it is (see
//! `bpf/dctcp.bpf.c`), and a host that wants the kernel's behaviour for it can call
//! [`fallback_to_reno`] after its `init` when `TCP_ECN_OK` is clear.

use std::ffi::c_int;

use super::hooks;
use super::reno::{tcp_reno_cong_avoid, tcp_reno_ssthresh, tcp_reno_undo_cwnd};
use super::tcp_sk;
use crate::types::{
    CaPriv, ICSK_ACK_NOW, ICSK_ACK_TIMER, Sock, TCP_CONG_NEEDS_ECN, TCP_ECN_DEMAND_CWR, TCP_ECN_OK,
    TcpCaEvent, TcpCaState, TcpCcInfo, TcpCongestionOps, TcpSock,
};

/// `DCTCP_MAX_ALPHA`: `alpha` is a fraction scaled to 1024.
pub const DCTCP_MAX_ALPHA: u32 = 1024;
/// `dctcp_shift_g`: the EWMA gain is `g = 1/2^4` (the module parameter's default).
pub const DCTCP_SHIFT_G: u32 = 4;
/// `dctcp_alpha_on_init`: `alpha` starts at its maximum (the module parameter's default),
/// so the first congestion signal halves the window as Reno would.
pub const DCTCP_ALPHA_ON_INIT: u32 = DCTCP_MAX_ALPHA;

/// `TCP_CLOSE` (`sk_state`).
const TCP_CLOSE: u8 = 7;
/// `TCP_LISTEN` (`sk_state`).
const TCP_LISTEN: u8 = 10;
/// `INET_ECN_MASK`: the ECN bits of the TOS byte.
const INET_ECN_MASK: u8 = 3;
/// `INET_DIAG_VEGASINFO`.
const INET_DIAG_VEGASINFO: u32 = 3;
/// `INET_DIAG_DCTCPINFO`.
const INET_DIAG_DCTCPINFO: u32 = 9;

/// `struct tcp_plb_state`: Protective Load Balancing's per-socket state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TcpPlbState {
    /// `consec_cong_rounds:5, unused:3`.
    pub bits: u8,
    /// Padding before `pause_until` (never written).
    pub _pad: [u8; 3],
    /// `tcp_jiffies32` until which PLB is paused after an RTO.
    pub pause_until: u32,
}

/// `struct dctcp`: DCTCP's state in `icsk_ca_priv` (36 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Dctcp {
    /// `tp->delivered` at the start of the current observation window.
    pub old_delivered: u32,
    /// `tp->delivered_ce` at the start of the current observation window.
    pub old_delivered_ce: u32,
    /// `rcv_nxt` when the CE state was last updated: what a delayed ACK for the packets
    /// received in the old state acknowledges.
    pub prior_rcv_nxt: u32,
    /// The EWMA of the fraction of CE-marked packets, scaled to [`DCTCP_MAX_ALPHA`].
    pub dctcp_alpha: u32,
    /// The observation window ends when `snd_una` reaches this.
    pub next_seq: u32,
    /// 1 if the last packet received was CE-marked.
    pub ce_state: u32,
    /// cwnd when it was last reduced (what `undo_cwnd` restores).
    pub loss_cwnd: u32,
    /// PLB's state (inert: PLB is disabled).
    pub plb: TcpPlbState,
}

// SAFETY: `#[repr(C)]` integers only; every bit pattern is a valid `Dctcp`.
unsafe impl CaPriv for Dctcp {}

/// `struct tcp_dctcp_info` (`union tcp_cc_info`'s `dctcp`): what `get_info` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TcpDctcpInfo {
    /// 1 unless the socket fell back to Reno.
    pub dctcp_enabled: u16,
    /// [`Dctcp::ce_state`].
    pub dctcp_ce_state: u16,
    /// [`Dctcp::dctcp_alpha`].
    pub dctcp_alpha: u32,
    /// Bytes delivered with CE marks in the current window.
    pub dctcp_ab_ecn: u32,
    /// Bytes delivered in the current window.
    pub dctcp_ab_tot: u32,
}

/// `before(seq1, seq2)`: sequence-number comparison modulo 2^32.
fn before(seq1: u32, seq2: u32) -> bool {
    (seq1.wrapping_sub(seq2) as i32) < 0
}

/// `dctcp_reset`: start a new observation window at the current send state.
fn reset(tp: &mut TcpSock) {
    let (snd_nxt, delivered, delivered_ce) = (tp.snd_nxt, tp.delivered, tp.delivered_ce);
    let ca = tp.ca_mut::<Dctcp>();
    ca.next_seq = snd_nxt;
    ca.old_delivered = delivered;
    ca.old_delivered_ce = delivered_ce;
}

/// The kernel's fallback for a connection without ECN: run [`DCTCP_RENO`] from now on
/// (`icsk_ca_ops`) and stop marking outgoing packets ECT (`INET_ECN_dontxmit`, which
/// clears the ECN bits of the TOS byte).
pub fn fallback_to_reno(tp: &mut TcpSock) {
    tp.icsk_mut().icsk_ca_ops = &DCTCP_RENO;
    tp.inet_conn.icsk_inet.tos &= !INET_ECN_MASK;
}

/// `dctcp_init`: with ECN negotiated (or on a listening or closed socket), reset the
/// state; otherwise [`fallback_to_reno`].
pub fn init(tp: &mut TcpSock) {
    let state = tp.sk().__sk_common.skc_state;
    if tp.ecn_flags & TCP_ECN_OK == 0 && state != TCP_LISTEN && state != TCP_CLOSE {
        fallback_to_reno(tp);
        return;
    }
    let rcv_nxt = tp.rcv_nxt;
    let ca = tp.ca_mut::<Dctcp>();
    ca.prior_rcv_nxt = rcv_nxt;
    ca.dctcp_alpha = DCTCP_ALPHA_ON_INIT.min(DCTCP_MAX_ALPHA);
    ca.loss_cwnd = 0;
    ca.ce_state = 0;
    reset(tp);
    // tcp_plb_init: consec_cong_rounds = 0, pause_until = 0.
    let plb = &mut tp.ca_mut::<Dctcp>().plb;
    plb.bits &= !0x1f;
    plb.pause_until = 0;
}

/// `dctcp_ssthresh`: remember cwnd for undo and reduce it by `alpha/2`, to at least 2.
pub fn ssthresh(tp: &mut TcpSock) -> u32 {
    let cwnd = tp.snd_cwnd;
    let ca = tp.ca_mut::<Dctcp>();
    ca.loss_cwnd = cwnd;
    cwnd.wrapping_sub(cwnd.wrapping_mul(ca.dctcp_alpha) >> 11)
        .max(2)
}

/// `dctcp_update_alpha` (`in_ack_event`): once per window of data, fold the fraction of
/// CE-marked deliveries into `alpha` and start the next window.
pub fn update_alpha(tp: &mut TcpSock, _flags: u32) {
    let ca = *tp.ca::<Dctcp>();
    if before(tp.snd_una, ca.next_seq) {
        return;
    }
    let delivered = tp.delivered.wrapping_sub(ca.old_delivered);
    let mut delivered_ce = tp.delivered_ce.wrapping_sub(ca.old_delivered_ce);
    let mut alpha = ca.dctcp_alpha;
    // (The kernel feeds delivered_ce/delivered to PLB here; PLB is disabled.)

    // alpha = (1 - g) * alpha + g * F; min_not_zero(alpha, alpha >> g): an alpha below
    // 2^g decays to 0 at once.
    let decay = alpha >> DCTCP_SHIFT_G;
    alpha = alpha.wrapping_sub(if decay == 0 { alpha } else { decay });
    if delivered_ce != 0 {
        delivered_ce <<= 10 - DCTCP_SHIFT_G;
        delivered_ce /= delivered.max(1);
        alpha = alpha.wrapping_add(delivered_ce).min(DCTCP_MAX_ALPHA);
    }
    tp.ca_mut::<Dctcp>().dctcp_alpha = alpha;
    reset(tp);
}

/// `dctcp_react_to_loss`: remember cwnd for undo and halve it (to at least 2).
fn react_to_loss(tp: &mut TcpSock) {
    let cwnd = tp.snd_cwnd;
    tp.ca_mut::<Dctcp>().loss_cwnd = cwnd;
    tp.snd_ssthresh = (cwnd >> 1).max(2);
}

/// `dctcp_state`: entering fast recovery is a loss. (An RTO is handled by
/// `CA_EVENT_LOSS`, so that the window is reduced only once per RTT.)
pub fn state(tp: &mut TcpSock, new_state: u8) {
    if new_state == TcpCaState::Recovery as u8 && new_state != tp.ca_state() {
        react_to_loss(tp);
    }
}

/// `dctcp_ece_ack_cwr`: echo the CE state in the ACKs (`TCP_ECN_DEMAND_CWR` makes the
/// stack set ECE).
fn ece_ack_cwr(tp: &mut TcpSock, ce_state: u32) {
    if ce_state == 1 {
        tp.ecn_flags |= TCP_ECN_DEMAND_CWR;
    } else {
        tp.ecn_flags &= !TCP_ECN_DEMAND_CWR;
    }
}

/// `dctcp_ece_ack_update`: DCTCP's receiver state machine (`ce_state` 1 if the last
/// packet was CE-marked). On a change of state an ACK is requested at once; if one was
/// being delayed, it is sent first, acknowledging what arrived in the old state.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`]; the `send_ack` hook may access the socket, so no reference
/// to it is held across that call.
unsafe fn ece_ack_update(sk: *mut Sock, ev: TcpCaEvent) {
    let new_ce_state = u32::from(ev == TcpCaEvent::EcnIsCe);
    // SAFETY: the caller's contract; this borrow ends before the hook runs.
    let tp = unsafe { tcp_sk(sk) };
    let ca = *tp.ca::<Dctcp>();
    if ca.ce_state != new_ce_state {
        if tp.icsk().icsk_ack.pending & ICSK_ACK_TIMER != 0 {
            ece_ack_cwr(tp, ca.ce_state);
            hooks::send_ack(sk, ca.prior_rcv_nxt);
        }
        // SAFETY: the caller's contract; the hook has returned.
        unsafe { tcp_sk(sk) }.icsk_mut().icsk_ack.pending |= ICSK_ACK_NOW;
    }
    // SAFETY: as above.
    let tp = unsafe { tcp_sk(sk) };
    let rcv_nxt = tp.rcv_nxt;
    let ca = tp.ca_mut::<Dctcp>();
    ca.prior_rcv_nxt = rcv_nxt;
    ca.ce_state = new_ce_state;
    ece_ack_cwr(tp, new_ce_state);
}

/// `dctcp_cwnd_undo`: the window before the last reduction, if larger.
pub fn cwnd_undo(tp: &TcpSock) -> u32 {
    tp.snd_cwnd.max(tp.ca::<Dctcp>().loss_cwnd)
}

/// `dctcp_get_info`'s report for `tp` (`dctcp_enabled` 0 after the fallback).
pub fn info(tp: &TcpSock) -> TcpDctcpInfo {
    if std::ptr::eq(tp.icsk().icsk_ca_ops, &DCTCP_RENO) {
        return TcpDctcpInfo::default();
    }
    let ca = tp.ca::<Dctcp>();
    TcpDctcpInfo {
        dctcp_enabled: 1,
        dctcp_ce_state: ca.ce_state as u16,
        dctcp_alpha: ca.dctcp_alpha,
        dctcp_ab_ecn: tp
            .mss_cache
            .wrapping_mul(tp.delivered_ce.wrapping_sub(ca.old_delivered_ce)),
        dctcp_ab_tot: tp
            .mss_cache
            .wrapping_mul(tp.delivered.wrapping_sub(ca.old_delivered)),
    }
}

/// `dctcp_init` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_init(sk: *mut Sock) {
    // SAFETY: the caller's contract.
    init(unsafe { tcp_sk(sk) })
}

/// `dctcp_ssthresh` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_ssthresh(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    ssthresh(unsafe { tcp_sk(sk) })
}

/// `dctcp_update_alpha` as the `in_ack_event` member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_update_alpha(sk: *mut Sock, flags: u32) {
    // SAFETY: the caller's contract.
    update_alpha(unsafe { tcp_sk(sk) }, flags)
}

/// `dctcp_state` as the `set_state` member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_state(sk: *mut Sock, new_state: u8) {
    // SAFETY: the caller's contract.
    state(unsafe { tcp_sk(sk) }, new_state)
}

/// `dctcp_cwnd_event` as a member and kfunc: CE state changes
/// (`CA_EVENT_ECN_IS_CE`/`_NO_CE`) and RTOs (`CA_EVENT_LOSS`); other events are ignored.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_cwnd_event(sk: *mut Sock, ev: TcpCaEvent) {
    match ev {
        // SAFETY: the caller's contract.
        TcpCaEvent::EcnIsCe | TcpCaEvent::EcnNoCe => unsafe { ece_ack_update(sk, ev) },
        // SAFETY: the caller's contract.
        TcpCaEvent::Loss => react_to_loss(unsafe { tcp_sk(sk) }),
        TcpCaEvent::TxStart | TcpCaEvent::CwndRestart | TcpCaEvent::CompleteCwr => {}
    }
}

/// `dctcp_cwnd_undo` as the `undo_cwnd` member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn dctcp_cwnd_undo(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    cwnd_undo(unsafe { tcp_sk(sk) })
}

/// `dctcp_get_info` (the `get_info` member of [`DCTCP`] and [`DCTCP_RENO`]): fills
/// `info->dctcp` when `ext` asks for `INET_DIAG_DCTCPINFO` (or `INET_DIAG_VEGASINFO`).
///
/// # Safety
///
/// `sk` as for [`tcp_sk`]; `attr` and `info` must be valid for writes.
pub unsafe extern "C" fn dctcp_get_info(
    sk: *mut Sock,
    ext: u32,
    attr: *mut c_int,
    info_out: *mut TcpCcInfo,
) -> usize {
    if ext & (1 << (INET_DIAG_DCTCPINFO - 1)) == 0 && ext & (1 << (INET_DIAG_VEGASINFO - 1)) == 0 {
        return 0;
    }
    // SAFETY: the caller's contract.
    let report = info(unsafe { tcp_sk(sk) });
    // SAFETY: the caller's contract; `tcp_cc_info` (20 bytes, 4-aligned) holds the
    // 16-byte, 4-aligned `tcp_dctcp_info`.
    unsafe {
        info_out.cast::<TcpDctcpInfo>().write(report);
        attr.write(INET_DIAG_DCTCPINFO as c_int);
    }
    size_of::<TcpDctcpInfo>()
}

/// The kernel's `dctcp` ("dctcp", `TCP_CONG_NEEDS_ECN`): DCTCP over Reno's growth.
pub static DCTCP: TcpCongestionOps = {
    let mut ops = TcpCongestionOps::empty("dctcp", TCP_CONG_NEEDS_ECN);
    ops.init = Some(dctcp_init);
    ops.in_ack_event = Some(dctcp_update_alpha);
    ops.cwnd_event = Some(dctcp_cwnd_event);
    ops.ssthresh = Some(dctcp_ssthresh);
    ops.cong_avoid = Some(tcp_reno_cong_avoid);
    ops.undo_cwnd = Some(dctcp_cwnd_undo);
    ops.set_state = Some(dctcp_state);
    ops.get_info = Some(dctcp_get_info);
    ops
};

/// The kernel's `dctcp_reno` ("dctcp-reno"): what a DCTCP socket without ECN runs
/// ([`fallback_to_reno`]). Not registered by name, as in the kernel.
pub static DCTCP_RENO: TcpCongestionOps = {
    let mut ops = TcpCongestionOps::empty("dctcp-reno", 0);
    ops.ssthresh = Some(tcp_reno_ssthresh);
    ops.cong_avoid = Some(tcp_reno_cong_avoid);
    ops.undo_cwnd = Some(tcp_reno_undo_cwnd);
    ops.get_info = Some(dctcp_get_info);
    ops
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cc::hooks::set_send_ack;
    use crate::types::{ICSK_ACK_SCHED, TCP_CA_NAME_MAX};
    use std::cell::RefCell;

    const TCP_ESTABLISHED: u8 = 1;

    type CongAvoidFn = unsafe extern "C" fn(*mut Sock, u32, u32);

    fn ecn_socket() -> TcpSock {
        let mut tp = TcpSock {
            ecn_flags: TCP_ECN_OK,
            snd_nxt: 1000,
            snd_una: 1000,
            rcv_nxt: 5000,
            delivered: 100,
            delivered_ce: 7,
            ..TcpSock::default()
        };
        tp.sk_mut().__sk_common.skc_state = TCP_ESTABLISHED;
        // SAFETY: `tp` is live and unborrowed.
        unsafe { dctcp_init(tp.as_sock()) };
        tp
    }

    /// One observation window: `n` packets delivered, `ce` of them marked.
    fn window(tp: &mut TcpSock, n: u32, ce: u32) {
        tp.delivered += n;
        tp.delivered_ce += ce;
        tp.snd_una = tp.snd_nxt;
        tp.snd_nxt += n * 1000;
        // SAFETY: `tp` is live and unborrowed.
        unsafe { dctcp_update_alpha(tp.as_sock(), 0) };
    }

    #[test]
    fn init_resets_the_window_at_the_current_send_state() {
        let tp = ecn_socket();
        let ca = tp.ca::<Dctcp>();
        assert_eq!(
            *ca,
            Dctcp {
                old_delivered: 100,
                old_delivered_ce: 7,
                prior_rcv_nxt: 5000,
                dctcp_alpha: DCTCP_MAX_ALPHA,
                next_seq: 1000,
                ce_state: 0,
                loss_cwnd: 0,
                plb: TcpPlbState::default(),
            }
        );
        assert!(std::ptr::eq(tp.icsk().icsk_ca_ops, std::ptr::null()));
        assert_eq!(size_of::<Dctcp>(), 36, "the kernel's struct dctcp");
    }

    #[test]
    fn without_ecn_init_falls_back_to_dctcp_reno() {
        let mut tp = TcpSock::default();
        tp.sk_mut().__sk_common.skc_state = TCP_ESTABLISHED;
        tp.inet_conn.icsk_inet.tos = 0x12; // DSCP bits and ECT(0)
        tp.icsk_mut().icsk_ca_priv[0] = 0x55;
        // SAFETY: `tp` is live and unborrowed.
        unsafe { dctcp_init(tp.as_sock()) };
        assert!(std::ptr::eq(tp.icsk().icsk_ca_ops, &DCTCP_RENO));
        assert_eq!(tp.inet_conn.icsk_inet.tos, 0x10, "ECT cleared, DSCP kept");
        assert_eq!(tp.icsk().icsk_ca_priv[0], 0x55, "state untouched");
        assert_eq!(DCTCP_RENO.name(), "dctcp-reno");
        assert_eq!(info(&tp), TcpDctcpInfo::default(), "dctcp disabled");

        // A listening or closed socket initialises even without ECN.
        let mut tp = TcpSock::default();
        tp.sk_mut().__sk_common.skc_state = TCP_LISTEN;
        // SAFETY: `tp` is live and unborrowed.
        unsafe { dctcp_init(tp.as_sock()) };
        assert!(tp.icsk().icsk_ca_ops.is_null());
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, DCTCP_MAX_ALPHA);
    }

    #[test]
    fn alpha_converges_to_the_marked_fraction() {
        let mut tp = ecn_socket();
        // Before snd_una reaches next_seq nothing changes.
        tp.delivered += 10;
        tp.snd_una = 999;
        update_alpha(&mut tp, 0);
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, DCTCP_MAX_ALPHA);
        assert_eq!(tp.ca::<Dctcp>().old_delivered, 100);

        // 25% marked: alpha converges to 256 = 1024/4, up to the EWMA's truncation: its
        // fixed points are the alphas with alpha >> 4 == 256 >> 4, reached from above.
        for _ in 0..200 {
            window(&mut tp, 100, 25);
        }
        let alpha = tp.ca::<Dctcp>().dctcp_alpha;
        assert_eq!(alpha, 271, "the largest fixed point");
        let mut from_below = ecn_socket();
        from_below.ca_mut::<Dctcp>().dctcp_alpha = 0;
        for _ in 0..200 {
            window(&mut from_below, 100, 25);
        }
        assert_eq!(from_below.ca::<Dctcp>().dctcp_alpha, 256);
        let ca = *tp.ca::<Dctcp>();
        assert_eq!(
            (ca.old_delivered, ca.old_delivered_ce, ca.next_seq),
            (tp.delivered, tp.delivered_ce, tp.snd_nxt)
        );

        // One step of the EWMA, exactly: alpha - alpha/16 + (50 << 6) / 100.
        window(&mut tp, 100, 50);
        assert_eq!(
            tp.ca::<Dctcp>().dctcp_alpha,
            alpha - (alpha >> 4) + 32,
            "alpha {alpha}"
        );

        // No marks: alpha decays to 0, and below 16 falls to 0 at once.
        for _ in 0..100 {
            window(&mut tp, 100, 0);
        }
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, 0);
        tp.ca_mut::<Dctcp>().dctcp_alpha = 15;
        window(&mut tp, 100, 0);
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, 0);

        // All marked: alpha rises to the maximum and stays there.
        for _ in 0..200 {
            window(&mut tp, 10, 10);
        }
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, DCTCP_MAX_ALPHA);

        // A window with nothing delivered but marks counts as delivered = 1.
        tp.ca_mut::<Dctcp>().dctcp_alpha = 0;
        window(&mut tp, 0, 1);
        assert_eq!(tp.ca::<Dctcp>().dctcp_alpha, 64);
    }

    #[test]
    fn ssthresh_reduces_by_half_alpha() {
        let mut tp = ecn_socket();
        tp.snd_cwnd = 100;
        for (alpha, want) in [(1024, 50), (512, 75), (256, 88), (0, 100), (20, 100)] {
            tp.ca_mut::<Dctcp>().dctcp_alpha = alpha;
            // SAFETY: `tp` is live and unborrowed.
            let got = unsafe { dctcp_ssthresh(tp.as_sock()) };
            assert_eq!(got, 100 - 100 * alpha / 2048, "alpha {alpha}");
            assert_eq!(got, want);
            assert_eq!(tp.ca::<Dctcp>().loss_cwnd, 100);
        }
        tp.snd_cwnd = 3;
        tp.ca_mut::<Dctcp>().dctcp_alpha = 1024;
        assert_eq!(ssthresh(&mut tp), 2, "at least 2");
        tp.snd_cwnd = 1;
        assert_eq!(ssthresh(&mut tp), 2);
    }

    #[test]
    fn loss_halves_and_undo_restores() {
        let mut tp = ecn_socket();
        tp.snd_cwnd = 40;
        tp.ca_mut::<Dctcp>().dctcp_alpha = 0; // loss ignores alpha
        // SAFETY: `tp` is live and unborrowed.
        unsafe { dctcp_cwnd_event(tp.as_sock(), TcpCaEvent::Loss) };
        assert_eq!((tp.snd_ssthresh, tp.ca::<Dctcp>().loss_cwnd), (20, 40));

        // Entering recovery halves too, but only on the transition.
        tp.snd_cwnd = 30;
        // SAFETY: as above.
        unsafe { dctcp_state(tp.as_sock(), TcpCaState::Recovery as u8) };
        assert_eq!((tp.snd_ssthresh, tp.ca::<Dctcp>().loss_cwnd), (15, 30));
        tp.icsk_mut().set_ca_state(TcpCaState::Recovery as u8);
        tp.snd_cwnd = 10;
        state(&mut tp, TcpCaState::Recovery as u8);
        assert_eq!((tp.snd_ssthresh, tp.ca::<Dctcp>().loss_cwnd), (15, 30));
        state(&mut tp, TcpCaState::Loss as u8);
        assert_eq!(tp.snd_ssthresh, 15, "RTOs are handled by CA_EVENT_LOSS");

        tp.snd_cwnd = 3;
        react_to_loss(&mut tp);
        assert_eq!(tp.snd_ssthresh, 2);

        tp.snd_cwnd = 12;
        tp.ca_mut::<Dctcp>().loss_cwnd = 30;
        // SAFETY: as above.
        assert_eq!(unsafe { dctcp_cwnd_undo(tp.as_sock()) }, 30);
        tp.snd_cwnd = 31;
        assert_eq!(cwnd_undo(&tp), 31);

        // Events DCTCP ignores change nothing.
        let before = tp;
        for ev in [
            TcpCaEvent::TxStart,
            TcpCaEvent::CwndRestart,
            TcpCaEvent::CompleteCwr,
        ] {
            // SAFETY: as above.
            unsafe { dctcp_cwnd_event(tp.as_sock(), ev) };
        }
        assert_eq!(tp.icsk().icsk_ca_priv, before.icsk().icsk_ca_priv);
        assert_eq!(tp.snd_ssthresh, before.snd_ssthresh);
    }

    thread_local! {
        static ACKS: RefCell<Vec<(u32, u8)>> = const { RefCell::new(Vec::new()) };
    }

    /// Records the ACK and, as the kernel's ACK path does, the ECN flags it carries.
    fn record_ack(sk: *mut Sock, rcv_nxt: u32) {
        // SAFETY: the hook is called with the live socket and no borrow of it.
        let tp = unsafe { tcp_sk(sk) };
        ACKS.with(|a| a.borrow_mut().push((rcv_nxt, tp.ecn_flags)));
        // The hook may change the socket: an ACK sent clears the delayed-ACK timer.
        tp.icsk_mut().icsk_ack.pending &= !ICSK_ACK_TIMER;
    }

    #[test]
    fn ce_state_changes_request_acks() {
        let prev = set_send_ack(Some(record_ack));
        let mut tp = ecn_socket();
        let acks = || ACKS.with(|a| a.take());
        let ev = |tp: &mut TcpSock, ev| {
            // SAFETY: `tp` is live and unborrowed.
            unsafe { dctcp_cwnd_event(tp.as_sock(), ev) }
        };

        // No change (NO_CE in state 0): no ACK requested.
        tp.rcv_nxt = 6000;
        ev(&mut tp, TcpCaEvent::EcnNoCe);
        assert_eq!(tp.icsk().icsk_ack.pending, 0);
        assert_eq!(tp.ca::<Dctcp>().prior_rcv_nxt, 6000);
        assert_eq!(tp.ecn_flags & TCP_ECN_DEMAND_CWR, 0);

        // 0 -> 1 without a delayed ACK: immediate ACK requested, nothing sent.
        tp.rcv_nxt = 7000;
        ev(&mut tp, TcpCaEvent::EcnIsCe);
        assert_eq!(tp.icsk().icsk_ack.pending, ICSK_ACK_NOW);
        assert_eq!(tp.ca::<Dctcp>().ce_state, 1);
        assert_eq!(tp.ca::<Dctcp>().prior_rcv_nxt, 7000);
        assert_ne!(tp.ecn_flags & TCP_ECN_DEMAND_CWR, 0, "echo CE");
        assert!(acks().is_empty());

        // 1 -> 0 with a delayed ACK pending: it is sent for prior_rcv_nxt with the old
        // state (ECE), then the new state is echoed.
        tp.icsk_mut().icsk_ack.pending = ICSK_ACK_SCHED | ICSK_ACK_TIMER;
        tp.rcv_nxt = 9000;
        ev(&mut tp, TcpCaEvent::EcnNoCe);
        assert_eq!(acks(), vec![(7000, TCP_ECN_OK | TCP_ECN_DEMAND_CWR)]);
        assert_eq!(
            tp.icsk().icsk_ack.pending,
            ICSK_ACK_SCHED | ICSK_ACK_NOW,
            "read after the hook cleared the timer"
        );
        assert_eq!(tp.ca::<Dctcp>().ce_state, 0);
        assert_eq!(tp.ca::<Dctcp>().prior_rcv_nxt, 9000);
        assert_eq!(tp.ecn_flags, TCP_ECN_OK);

        // 0 -> 1 with a delayed ACK: the ACK carries no ECE.
        tp.icsk_mut().icsk_ack.pending = ICSK_ACK_TIMER;
        tp.rcv_nxt = 9500;
        ev(&mut tp, TcpCaEvent::EcnIsCe);
        assert_eq!(acks(), vec![(9000, TCP_ECN_OK)]);
        assert_eq!(tp.ecn_flags, TCP_ECN_OK | TCP_ECN_DEMAND_CWR);

        // Staying in state 1 with a delayed ACK: no ACK.
        tp.icsk_mut().icsk_ack.pending = ICSK_ACK_TIMER;
        ev(&mut tp, TcpCaEvent::EcnIsCe);
        assert!(acks().is_empty());
        assert_eq!(tp.icsk().icsk_ack.pending, ICSK_ACK_TIMER);
        set_send_ack(prev);
    }

    #[test]
    fn the_tables_are_the_kernels() {
        assert_eq!(DCTCP.name(), "dctcp");
        assert_eq!(DCTCP.flags, TCP_CONG_NEEDS_ECN);
        assert!(DCTCP.name.len() == TCP_CA_NAME_MAX);
        assert!(
            DCTCP
                .cong_avoid
                .is_some_and(|f| std::ptr::fn_addr_eq(f, tcp_reno_cong_avoid as CongAvoidFn))
        );
        assert!(DCTCP.cong_control.is_none() && DCTCP.pkts_acked.is_none());
        assert_eq!(DCTCP_RENO.flags, 0);

        let mut tp = ecn_socket();
        tp.mss_cache = 1000;
        tp.delivered += 10;
        tp.delivered_ce += 4;
        let mut info_out = TcpCcInfo { raw: [0; 5] };
        let mut attr = 0;
        // SAFETY: `tp`, `attr` and `info_out` are live and unborrowed.
        let n = unsafe { dctcp_get_info(tp.as_sock(), 1 << 8, &mut attr, &mut info_out) };
        assert_eq!((n, attr), (16, INET_DIAG_DCTCPINFO as c_int));
        // SAFETY: `raw` covers the whole union.
        let raw = unsafe { info_out.raw };
        assert_eq!(raw[..4], [1, 1024, 4000, 10000]);
        // SAFETY: as above.
        let n = unsafe { dctcp_get_info(tp.as_sock(), 1 << 1, &mut attr, &mut info_out) };
        assert_eq!(n, 0, "neither DCTCPINFO nor VEGASINFO asked for");
    }
}
