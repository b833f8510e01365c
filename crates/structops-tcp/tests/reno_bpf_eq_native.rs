//! The project's BPF Reno (`bpf/reno.bpf.o`, "so_reno") computes exactly what the native
//! Reno (`cc::reno`, "reno") computes: seeded, plausible sequences of a sender's hook
//! calls on both engines, compared after every call (return values, cwnd, ssthresh,
//! cwnd_cnt and the rest of the state a congestion control may write).

mod cc_diff;

use std::collections::BTreeSet;

use cc_diff::{Pair, Rng, engines};
use structops_tcp::types::{CA_ACK_SLOWPATH, TcpCaEvent, TcpCaState};
use structops_tcp::{HostConfig, TcpHost};

const MSS: u32 = 1448;

#[derive(Default)]
struct Coverage {
    calls: u64,
    /// cwnd growth in slow start, in congestion avoidance, clamped, not cwnd-limited.
    slow_start: u64,
    avoidance: u64,
    clamped: u64,
    not_limited: u64,
    cwnds: BTreeSet<u32>,
}

fn run(host: &TcpHost, seed: u64, steps: u32, cov: &mut Coverage) {
    let mut rng = Rng::new(seed);
    let isn = rng.next() as u32;
    let clamp = if rng.chance(30) { rng.range(2, 80) } else { !0 };
    let mut pair = Pair::new(host, "reno", "reno", "so_reno", |tp| {
        tp.snd_nxt = isn;
        tp.snd_una = isn;
        tp.mss_cache = MSS;
        tp.snd_cwnd_clamp = clamp;
    });
    for step in 0..steps {
        pair.context = format!("seed {seed} step {step}");
        pair.advance(u64::from(rng.range(1, 3_000_000)));
        let tp = &pair.native;
        let inflight = tp.snd_nxt.wrapping_sub(tp.snd_una) / MSS;
        let state = tp.ca_state();
        let cwnd = tp.snd_cwnd;
        match rng.below(100) {
            0..=29 => {
                let k = rng.range(0, cwnd.saturating_sub(inflight) + 2);
                let limited = rng.chance(80);
                pair.env(|tp| {
                    tp.snd_nxt = tp.snd_nxt.wrapping_add(k * MSS);
                    tp.packets_out = inflight + k;
                    tp.max_packets_out = tp.max_packets_out.max(inflight + k);
                    tp.set_cwnd_limited(limited && inflight + k >= tp.snd_cwnd);
                });
                if inflight == 0 && k > 0 {
                    pair.call("cwnd_event(TX_START)", |s| s.ca_event(TcpCaEvent::TxStart));
                }
            }
            30..=79 => {
                if inflight == 0 {
                    continue;
                }
                // Stretch ACKs now and then.
                let n = if rng.chance(10) {
                    inflight
                } else {
                    rng.range(1, inflight.min(4))
                };
                let reset_max = rng.chance(15);
                pair.env(|tp| {
                    tp.snd_una = tp.snd_una.wrapping_add(n * MSS);
                    tp.delivered = tp.delivered.wrapping_add(n);
                    tp.packets_out = inflight - n;
                    if reset_max {
                        tp.max_packets_out = inflight - n;
                    }
                });
                pair.call("in_ack_event", |s| s.ca_in_ack_event(CA_ACK_SLOWPATH));
                let ack = pair.native.snd_una;
                match TcpCaState::from_raw(state) {
                    Some(TcpCaState::Open | TcpCaState::Disorder) => {
                        let (before, ss) = (pair.native.snd_cwnd, pair.native.snd_ssthresh);
                        let limited = pair.native.is_cwnd_limited();
                        pair.call("cong_avoid", |s| s.ca_cong_avoid(ack, n));
                        let after = pair.native.snd_cwnd;
                        if !limited {
                            cov.not_limited += 1;
                        } else if after == clamp && before + n > clamp {
                            cov.clamped += 1;
                        } else if before < ss {
                            cov.slow_start += 1;
                        } else {
                            cov.avoidance += 1;
                        }
                        cov.cwnds.insert(after);
                    }
                    Some(_) if rng.chance(25) => {
                        pair.env(|tp| tp.snd_cwnd = tp.snd_ssthresh);
                        pair.call("set_state(Open)", |s| s.ca_set_state(TcpCaState::Open));
                    }
                    _ => {}
                }
            }
            // Fast retransmit.
            80..=84 if state < TcpCaState::Recovery as u8 => {
                pair.env(|tp| {
                    tp.prior_cwnd = tp.snd_cwnd;
                    tp.prior_ssthresh = tp.snd_ssthresh;
                });
                let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                // PRR may leave credits in cwnd_cnt above the new window.
                let keep_cnt = rng.chance(50);
                pair.env(|tp| {
                    tp.snd_ssthresh = ss;
                    if !keep_cnt {
                        tp.snd_cwnd_cnt = 0;
                    }
                });
                pair.call("set_state(Recovery)", |s| {
                    s.ca_set_state(TcpCaState::Recovery)
                });
                pair.env(|tp| tp.snd_cwnd = tp.snd_ssthresh);
            }
            // RTO.
            85..=86 => {
                pair.env(|tp| {
                    tp.prior_cwnd = tp.snd_cwnd;
                    tp.prior_ssthresh = tp.snd_ssthresh;
                });
                let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                pair.env(|tp| tp.snd_ssthresh = ss);
                pair.call("cwnd_event(LOSS)", |s| s.ca_event(TcpCaEvent::Loss));
                pair.env(|tp| {
                    tp.snd_cwnd = 1;
                    tp.snd_cwnd_cnt = 0;
                    tp.snd_nxt = tp.snd_una;
                    tp.packets_out = 0;
                });
                pair.call("set_state(Loss)", |s| s.ca_set_state(TcpCaState::Loss));
            }
            // Undo.
            87..=90 if state >= TcpCaState::Cwr as u8 => {
                let cwnd = pair.call("undo_cwnd", |s| s.ca_undo_cwnd());
                pair.env(|tp| {
                    tp.snd_cwnd = cwnd;
                    if tp.prior_ssthresh > tp.snd_ssthresh {
                        tp.snd_ssthresh = tp.prior_ssthresh;
                    }
                });
                pair.call("set_state(Open)", |s| s.ca_set_state(TcpCaState::Open));
            }
            // A window change from outside (a route's cwnd clamp, idle restart).
            91..=92 => {
                let cwnd = rng.range(1, 200);
                pair.env(|tp| tp.snd_cwnd = cwnd.min(tp.snd_cwnd_clamp));
                pair.call("cwnd_event(CWND_RESTART)", |s| {
                    s.ca_event(TcpCaEvent::CwndRestart)
                });
            }
            _ => {
                let ss = pair.call("ssthresh", |s| s.ca_ssthresh());
                assert!(ss >= 2);
                let undo = pair.call("undo_cwnd", |s| s.ca_undo_cwnd());
                assert!(undo >= pair.native.snd_cwnd);
            }
        }
    }
    cov.calls += pair.calls;
}

#[test]
fn bpf_reno_equals_native_reno_on_both_engines() {
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
            "{engine:?}: {} calls compared; cong_avoid: {} slow start, {} avoidance, {} clamped, {} not cwnd-limited; {} cwnd values",
            cov.calls,
            cov.slow_start,
            cov.avoidance,
            cov.clamped,
            cov.not_limited,
            cov.cwnds.len()
        );
        assert!(cov.calls > 24 * 1000, "{} calls", cov.calls);
        for (what, n) in [
            ("slow start", cov.slow_start),
            ("avoidance", cov.avoidance),
            ("clamped", cov.clamped),
            ("not cwnd-limited", cov.not_limited),
        ] {
            assert!(n > 50, "cong_avoid {what}: {n} calls");
        }
        assert!(cov.cwnds.len() > 50, "{} cwnd values", cov.cwnds.len());
    }
}
