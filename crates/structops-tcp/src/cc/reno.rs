//! Reno: the kernel's `tcp_reno_*`, `tcp_slow_start` and `tcp_cong_avoid_ai`
//! (`net/ipv4/tcp_cong.c`), the default congestion control and the building blocks
//! other algorithms (and BPF programs, as kfuncs) use.

use super::tcp_sk;
use crate::types::{Sock, TcpCongestionOps, TcpSock};

/// `tcp_slow_start(tp, acked)`: grow cwnd by `acked` up to ssthresh; returns the acked
/// packets left over.
pub fn slow_start(tp: &mut TcpSock, acked: u32) -> u32 {
    let cwnd = tp.snd_cwnd.wrapping_add(acked).min(tp.snd_ssthresh);
    let left = acked.wrapping_sub(cwnd.wrapping_sub(tp.snd_cwnd));
    tp.snd_cwnd = cwnd.min(tp.snd_cwnd_clamp);
    left
}

/// `tcp_cong_avoid_ai(tp, w, acked)`: additive increase of one packet per `w` acked.
pub fn cong_avoid_ai(tp: &mut TcpSock, w: u32, acked: u32) {
    // If credits accumulated at a higher w, apply them gently now.
    if tp.snd_cwnd_cnt >= w {
        tp.snd_cwnd_cnt = 0;
        tp.snd_cwnd = tp.snd_cwnd.wrapping_add(1);
    }
    tp.snd_cwnd_cnt = tp.snd_cwnd_cnt.wrapping_add(acked);
    if tp.snd_cwnd_cnt >= w {
        // `w` is never 0 here: snd_cwnd_cnt >= 0 == w only when w == 0, and the kernel
        // divides by it all the same; keep the division defined.
        let delta = tp.snd_cwnd_cnt.checked_div(w).unwrap_or(0);
        tp.snd_cwnd_cnt = tp.snd_cwnd_cnt.wrapping_sub(delta.wrapping_mul(w));
        tp.snd_cwnd = tp.snd_cwnd.wrapping_add(delta);
    }
    tp.snd_cwnd = tp.snd_cwnd.min(tp.snd_cwnd_clamp);
}

/// `tcp_reno_cong_avoid`.
pub fn reno_cong_avoid(tp: &mut TcpSock, _ack: u32, mut acked: u32) {
    if !tp.is_cwnd_limited() {
        return;
    }
    // In "safe" area, increase.
    if tp.in_slow_start() {
        acked = slow_start(tp, acked);
        if acked == 0 {
            return;
        }
    }
    // In dangerous area, increase slowly.
    let w = tp.snd_cwnd;
    cong_avoid_ai(tp, w, acked);
}

/// `tcp_reno_ssthresh`: half the window, at least 2.
pub fn reno_ssthresh(tp: &TcpSock) -> u32 {
    (tp.snd_cwnd >> 1).max(2)
}

/// `tcp_reno_undo_cwnd`.
pub fn reno_undo_cwnd(tp: &TcpSock) -> u32 {
    tp.snd_cwnd.max(tp.prior_cwnd)
}

/// `tcp_reno_ssthresh` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn tcp_reno_ssthresh(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    reno_ssthresh(unsafe { tcp_sk(sk) })
}

/// `tcp_reno_cong_avoid` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn tcp_reno_cong_avoid(sk: *mut Sock, ack: u32, acked: u32) {
    // SAFETY: the caller's contract.
    reno_cong_avoid(unsafe { tcp_sk(sk) }, ack, acked)
}

/// `tcp_reno_undo_cwnd` as a member and kfunc.
///
/// # Safety
///
/// `sk` as for [`tcp_sk`].
pub unsafe extern "C" fn tcp_reno_undo_cwnd(sk: *mut Sock) -> u32 {
    // SAFETY: the caller's contract.
    reno_undo_cwnd(unsafe { tcp_sk(sk) })
}

/// `tcp_slow_start` as a kfunc (it takes a `struct tcp_sock *`).
///
/// # Safety
///
/// `tp` must point to a live [`TcpSock`] not otherwise borrowed.
pub unsafe extern "C" fn tcp_slow_start(tp: *mut TcpSock, acked: u32) -> u32 {
    // SAFETY: the caller's contract.
    slow_start(unsafe { &mut *tp }, acked)
}

/// `tcp_cong_avoid_ai` as a kfunc.
///
/// # Safety
///
/// As [`tcp_slow_start`].
pub unsafe extern "C" fn tcp_cong_avoid_ai(tp: *mut TcpSock, w: u32, acked: u32) {
    // SAFETY: the caller's contract.
    cong_avoid_ai(unsafe { &mut *tp }, w, acked)
}

/// The kernel's `tcp_reno` ("reno"): ssthresh, cong_avoid and undo_cwnd.
pub static RENO: TcpCongestionOps = {
    let mut ops = TcpCongestionOps::empty("reno", crate::types::TCP_CONG_NON_RESTRICTED);
    ops.ssthresh = Some(tcp_reno_ssthresh);
    ops.cong_avoid = Some(tcp_reno_cong_avoid);
    ops.undo_cwnd = Some(tcp_reno_undo_cwnd);
    ops
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_stops_at_ssthresh_and_returns_the_rest() {
        let mut tp = TcpSock {
            snd_cwnd: 10,
            snd_ssthresh: 14,
            ..TcpSock::default()
        };
        assert_eq!(slow_start(&mut tp, 6), 2);
        assert_eq!(tp.snd_cwnd, 14);
        tp.snd_cwnd_clamp = 12;
        tp.snd_cwnd = 10;
        assert_eq!(slow_start(&mut tp, 2), 0);
        assert_eq!(tp.snd_cwnd, 12, "clamped");
    }

    #[test]
    fn additive_increase_is_one_packet_per_window() {
        let mut tp = TcpSock {
            snd_cwnd: 20,
            snd_ssthresh: 10,
            max_packets_out: 20,
            ..TcpSock::default()
        };
        tp.set_cwnd_limited(true);
        for _ in 0..19 {
            reno_cong_avoid(&mut tp, 0, 1);
        }
        assert_eq!((tp.snd_cwnd, tp.snd_cwnd_cnt), (20, 19));
        reno_cong_avoid(&mut tp, 0, 1);
        assert_eq!((tp.snd_cwnd, tp.snd_cwnd_cnt), (21, 0));
        tp.set_cwnd_limited(false);
        reno_cong_avoid(&mut tp, 0, 100);
        assert_eq!(tp.snd_cwnd, 21, "no growth when not cwnd-limited");
        assert_eq!(reno_ssthresh(&tp), 10);
        tp.prior_cwnd = 30;
        assert_eq!(reno_undo_cwnd(&tp), 30);
    }
}
