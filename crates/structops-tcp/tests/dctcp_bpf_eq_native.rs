//! The project's BPF DCTCP (`bpf/dctcp.bpf.o`, "so_dctcp") computes exactly what the
//! native DCTCP (`cc::dctcp`, "dctcp") computes: seeded, plausible sequences of a
//! sender's and a receiver's hook calls on both engines, compared after every call
//! (return values, ACKs sent, cwnd, ssthresh, cwnd_cnt, ecn_flags, icsk_ack.pending and
//! the icsk_ca_priv bytes).

mod cc_diff;

use std::collections::BTreeSet;

use cc_diff::{Pair, Rng, engines};
use structops_tcp::cc::dctcp::Dctcp;
use structops_tcp::types::{
    CA_ACK_ECE, CA_ACK_SLOWPATH, CA_ACK_WIN_UPDATE, ICSK_ACK_SCHED, ICSK_ACK_TIMER, TCP_ECN_OK,
    TCP_INFINITE_SSTHRESH, TcpCaEvent, TcpCaState,
};
use structops_tcp::{HostConfig, TcpHost};

const MSS: u32 = 1448;

/// What a run covered.
#[derive(Default)]
struct Coverage {
    calls: u64,
    acks: u64,
    alphas: BTreeSet<u32>,
    ssthresholds: BTreeSet<u32>,
    max_cwnd: u32,
    windows: u64,
}

/// One connection of `steps` hook-call rounds with the generator seeded by `seed`.
fn run(host: &TcpHost, seed: u64, steps: u32, cov: &mut Coverage) {
    let mut rng = Rng::new(seed);
    // Sequence numbers start anywhere, near the 2^32 wrap half of the time.
    let isn = if rng.chance(50) {
        u32::MAX - rng.below(200 * MSS)
    } else {
        rng.next() as u32
    };
    let irs = rng.next() as u32;
    let delivered0 = rng.below(10_000);
    let ce0 = rng.below(delivered0 + 1);
    let clamp = if rng.chance(20) { rng.range(4, 60) } else { !0 };
    let mut pair = Pair::new(host, "dctcp", "dctcp", "so_dctcp", |tp| {
        tp.snd_nxt = isn;
        tp.snd_una = isn;
        tp.rcv_nxt = irs;
        tp.delivered = delivered0;
        tp.delivered_ce = ce0;
        tp.mss_cache = MSS;
        tp.snd_cwnd_clamp = clamp;
        tp.ecn_flags = TCP_ECN_OK; // negotiated
    });
    pair.context = format!("seed {seed}");
    assert_eq!(pair.native.ca::<Dctcp>().next_seq, isn, "init ran");
    let mut mark_pct = 0;
    for step in 0..steps {
        pair.context = format!("seed {seed} step {step}");
        if step % 150 == 0 {
            mark_pct = [0, 3, 10, 30, 60, 100][rng.below(6) as usize];
        }
        pair.advance(u64::from(rng.range(1, 3_000_000)));
        let tp = &pair.native;
        let inflight = tp.snd_nxt.wrapping_sub(tp.snd_una) / MSS;
        let state = tp.ca_state();
        let cwnd = tp.snd_cwnd;
        match rng.below(100) {
            // The sender transmits.
            0..=29 => {
                let k = rng.range(0, cwnd.saturating_sub(inflight) + 2);
                if inflight == 0 && k > 0 {
                    pair.call("cwnd_event(TX_START)", |s| s.ca_event(TcpCaEvent::TxStart));
                }
                let limited = rng.chance(70);
                pair.env(|tp| {
                    tp.snd_nxt = tp.snd_nxt.wrapping_add(k * MSS);
                    tp.packets_out = inflight + k;
                    tp.max_packets_out = tp.max_packets_out.max(inflight + k);
                    tp.set_cwnd_limited(limited && inflight + k >= tp.snd_cwnd);
                });
            }
            // An ACK arrives.
            30..=69 => {
                if inflight == 0 {
                    continue;
                }
                let n = rng.range(1, inflight);
                let ce = (0..n).filter(|_| rng.chance(mark_pct)).count() as u32;
                let mut flags = 0;
                if rng.chance(50) {
                    flags |= CA_ACK_SLOWPATH;
                }
                if rng.chance(20) {
                    flags |= CA_ACK_WIN_UPDATE;
                }
                if ce > 0 {
                    flags |= CA_ACK_ECE;
                }
                let reset_max = rng.chance(10);
                pair.env(|tp| {
                    tp.snd_una = tp.snd_una.wrapping_add(n * MSS);
                    tp.delivered = tp.delivered.wrapping_add(n);
                    tp.delivered_ce = tp.delivered_ce.wrapping_add(ce);
                    tp.packets_out = inflight - n;
                    if reset_max {
                        tp.max_packets_out = inflight - n;
                    }
                });
                let before = pair.native.ca::<Dctcp>().next_seq;
                pair.call("in_ack_event", |s| s.ca_in_ack_event(flags));
                if pair.native.ca::<Dctcp>().next_seq != before {
                    cov.windows += 1;
                }
                cov.alphas.insert(pair.native.ca::<Dctcp>().dctcp_alpha);
                cov.max_cwnd = cov.max_cwnd.max(pair.native.snd_cwnd);
                let ack = pair.native.snd_una;
                match TcpCaState::from_raw(state) {
                    Some(TcpCaState::Open | TcpCaState::Disorder) => {
                        pair.call("cong_avoid", |s| s.ca_cong_avoid(ack, n));
                    }
                    Some(TcpCaState::Recovery | TcpCaState::Cwr) if rng.chance(30) => {
                        // tcp_end_cwnd_reduction, then back to Open.
                        pair.env(|tp| tp.snd_cwnd = tp.snd_ssthresh.max(1));
                        pair.call("set_state(Open)", |s| s.ca_set_state(TcpCaState::Open));
                    }
                    Some(TcpCaState::Loss) if rng.chance(20) => {
                        pair.call("set_state(Open)", |s| s.ca_set_state(TcpCaState::Open));
                    }
                    _ => {}
                }
            }
            // Data arrives at this end (the receiver's CE state machine).
            70..=86 => {
                let n = rng.range(1, 4);
                let pending = match rng.below(4) {
                    0 => 0,
                    1 => ICSK_ACK_SCHED,
                    _ => ICSK_ACK_SCHED | ICSK_ACK_TIMER,
                };
                pair.env(|tp| {
                    tp.rcv_nxt = tp.rcv_nxt.wrapping_add(n * MSS);
                    tp.icsk_mut().icsk_ack.pending = pending;
                });
                let ev = if rng.chance(mark_pct) {
                    TcpCaEvent::EcnIsCe
                } else {
                    TcpCaEvent::EcnNoCe
                };
                pair.call("cwnd_event(ECN)", |s| s.ca_event(ev));
            }
            // Fast retransmit: tcp_enter_recovery (ssthresh, then the state).
            87..=88 if state < TcpCaState::Recovery as u8 => {
                pair.env(|tp| {
                    tp.prior_cwnd = tp.snd_cwnd;
                    tp.prior_ssthresh = tp.snd_ssthresh;
                });
                let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                cov.ssthresholds.insert(ss);
                pair.env(|tp| tp.snd_ssthresh = ss);
                pair.call("set_state(Recovery)", |s| {
                    s.ca_set_state(TcpCaState::Recovery)
                });
                pair.env(|tp| tp.snd_cwnd = tp.snd_ssthresh.max(2));
            }
            // ECE: tcp_enter_cwr.
            89 if state < TcpCaState::Cwr as u8 => {
                pair.env(|tp| tp.prior_cwnd = tp.snd_cwnd);
                let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                cov.ssthresholds.insert(ss);
                pair.env(|tp| tp.snd_ssthresh = ss);
                pair.call("set_state(CWR)", |s| s.ca_set_state(TcpCaState::Cwr));
                pair.env(|tp| tp.snd_cwnd = tp.snd_ssthresh.max(1));
            }
            // RTO: tcp_enter_loss.
            90 => {
                pair.env(|tp| {
                    tp.prior_cwnd = tp.snd_cwnd;
                    tp.prior_ssthresh = tp.snd_ssthresh;
                });
                if state != TcpCaState::Loss as u8 {
                    let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                    pair.env(|tp| tp.snd_ssthresh = ss);
                }
                pair.call("cwnd_event(LOSS)", |s| s.ca_event(TcpCaEvent::Loss));
                pair.env(|tp| {
                    tp.snd_cwnd = 1;
                    tp.snd_cwnd_cnt = 0;
                    tp.snd_nxt = tp.snd_una;
                    tp.packets_out = 0;
                });
                pair.call("set_state(Loss)", |s| s.ca_set_state(TcpCaState::Loss));
            }
            // Spurious retransmission detected: tcp_undo_cwnd_reduction.
            91..=93 if state >= TcpCaState::Cwr as u8 => {
                let cwnd = pair.call("undo_cwnd", |s| s.ca_undo_cwnd());
                pair.env(|tp| {
                    tp.snd_cwnd = cwnd;
                    if tp.prior_ssthresh > tp.snd_ssthresh {
                        tp.snd_ssthresh = tp.prior_ssthresh;
                    }
                });
                pair.call("set_state(Open)", |s| s.ca_set_state(TcpCaState::Open));
            }
            // Events DCTCP ignores, and Disorder.
            94..=96 => {
                let ev = [TcpCaEvent::CwndRestart, TcpCaEvent::CompleteCwr][rng.below(2) as usize];
                pair.call("cwnd_event(other)", |s| s.ca_event(ev));
            }
            97..=99 if state == TcpCaState::Open as u8 => {
                pair.call("set_state(Disorder)", |s| {
                    s.ca_set_state(TcpCaState::Disorder)
                });
            }
            _ => {}
        }
        if pair.native.snd_ssthresh == TCP_INFINITE_SSTHRESH && rng.chance(1) {
            // Leave slow start now and then without a loss.
            let cwnd = pair.native.snd_cwnd;
            pair.env(|tp| tp.snd_ssthresh = cwnd);
        }
    }
    cov.calls += pair.calls;
    cov.acks += pair.acks;
}

#[test]
fn bpf_dctcp_equals_native_dctcp_on_both_engines() {
    for engine in engines() {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        let mut cov = Coverage::default();
        for seed in 0..24 {
            run(&host, seed, 1500, &mut cov);
        }
        println!(
            "{engine:?}: {} calls compared, {} ACKs, {} alpha windows, {} alpha values, {} ssthresh values, cwnd up to {}",
            cov.calls,
            cov.acks,
            cov.windows,
            cov.alphas.len(),
            cov.ssthresholds.len(),
            cov.max_cwnd
        );
        // The sequences reached what they are meant to exercise.
        assert!(cov.calls > 24 * 1000, "{} calls", cov.calls);
        assert!(
            cov.acks > 50,
            "the CE-change ACK was sent ({} times)",
            cov.acks
        );
        assert!(cov.windows > 500, "{} alpha windows", cov.windows);
        assert!(
            cov.alphas.len() > 100 && cov.alphas.contains(&0) && cov.alphas.contains(&1024),
            "alpha ranged over 0..=1024: {} values",
            cov.alphas.len()
        );
        assert!(
            cov.ssthresholds.len() > 20,
            "{} ssthresh values",
            cov.ssthresholds.len()
        );
    }
}

/// Without ECN the kernel's DCTCP switches the socket to "dctcp-reno", which a BPF
/// program cannot do: the native socket falls back (and stops sending ECT), the BPF one
/// keeps running so_dctcp with its state untouched. The one documented difference.
#[test]
fn without_ecn_only_the_native_dctcp_falls_back_to_reno() {
    let host = TcpHost::new(HostConfig::default()).unwrap();
    host.enter();
    let cc = host
        .load_object(&cc_diff::bpf_object("dctcp"), "bpf/dctcp.bpf.o", None)
        .unwrap();
    let mut native = host.socket();
    host.set_congestion_control(&mut native, "dctcp").unwrap();
    assert_eq!(native.ca_name(), "dctcp-reno");
    assert!(!native.ecn_xmit());
    let mut bpf = host.socket();
    host.set_congestion_control(&mut bpf, &cc.name).unwrap();
    assert_eq!(bpf.ca_name(), "so_dctcp");
    assert_eq!(bpf.icsk().icsk_ca_priv, [0; 13], "init returned at once");
    assert_eq!(
        native.icsk().icsk_ca_priv,
        bpf.icsk().icsk_ca_priv,
        "neither wrote its state"
    );
}
