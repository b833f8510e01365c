//! `bpf/cubic.bpf.c` ("so_cubic") computes exactly what the native CUBIC
//! (`structops_tcp::cc::cubic`, "cubic") computes: two sockets, one running each, are
//! driven through the same seeded, plausible TCP history — slow start with HyStart, ACKs
//! with RTT samples (and without), fast recovery with PRR, RTOs, undo, ECN CWR, idle
//! restarts with `CA_EVENT_TX_START`, the jiffies wrap — on both engines, and after every
//! hook the return value, `snd_cwnd`, `snd_ssthresh`, `snd_cwnd_cnt` and the 104 bytes of
//! `icsk_ca_priv` must be identical.

use structops::Engine;
use structops_tcp::cc::cubic::Bictcp;
use structops_tcp::clock;
use structops_tcp::host::Socket;
use structops_tcp::types::{
    AckSample, ICSK_CA_PRIV_SIZE, SK_PACING_FQ, SK_PACING_NONE, TCP_INFINITE_SSTHRESH, TcpCaEvent,
    TcpCaState, TcpSock,
};
use structops_tcp::{HostConfig, TcpHost};

const CUBIC_BPF_O: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bpf/cubic.bpf.o"
));

const MSS: u32 = 1448;

/// A small xorshift: the same seed gives the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `[lo, hi]`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

/// What the comparison looks at after every hook.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    ret: Option<u32>,
    snd_cwnd: u32,
    snd_ssthresh: u32,
    snd_cwnd_cnt: u32,
    ca_priv: [u64; ICSK_CA_PRIV_SIZE / 8],
}

fn seen(tp: &TcpSock, ret: Option<u32>) -> Seen {
    Seen {
        ret,
        snd_cwnd: tp.snd_cwnd,
        snd_ssthresh: tp.snd_ssthresh,
        snd_cwnd_cnt: tp.snd_cwnd_cnt,
        ca_priv: tp.icsk().icsk_ca_priv,
    }
}

/// Where the simulated connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Fast recovery or CWR, with the ACKs left until it ends.
    Reducing(TcpCaState, u32),
    /// After an RTO, with the ACKs left until it ends.
    Loss(u32),
}

/// What the history exercised (so that a change that makes it trivial fails).
#[derive(Debug, Default)]
struct Coverage {
    hooks: u64,
    hystart_exits: u32,
    epochs_with_k: u32,
    recoveries: u32,
    rtos: u32,
    undos: u32,
    idles: u32,
    connections: u32,
    max_cwnd: u32,
    /// ACKs in congestion avoidance before any loss (`last_max_cwnd == 0`) more than
    /// 1.5 s into the epoch, where the cubic term starts to count.
    pre_loss_late_acks: u32,
    /// Sum of cwnd after every ACK: a fingerprint of the trajectory.
    cwnd_sum: u64,
    jiffies_wrapped: bool,
}

/// The native and the BPF socket, and the TCP around them.
struct Pair<'h> {
    /// `[native, bpf]`.
    s: [Box<Socket>; 2],
    rng: Rng,
    now_ns: u64,
    phase: Phase,
    base_rtt_us: u64,
    bdp: u64,
    cov: Coverage,
    step: u64,
    engine: Engine,
    host: &'h TcpHost,
    /// The RTT every sample has, while set.
    fixed_rtt: Option<i32>,
    /// Until this step, no random losses, RTOs, CWR or idling before the first queue
    /// overflow: long congestion avoidance before any loss (`last_max_cwnd == 0`).
    calm_until: u64,
}

impl Pair<'_> {
    /// Applies a host-side change (what the kernel's TCP writes) to both sockets.
    fn set(&mut self, f: impl Fn(&mut TcpSock)) {
        for s in &mut self.s {
            f(s);
        }
    }

    /// Calls a hook on both sockets and compares everything afterwards.
    fn hook(&mut self, what: &str, f: impl Fn(&mut Socket) -> Option<u32>) -> Option<u32> {
        let a = f(&mut self.s[0]);
        let b = f(&mut self.s[1]);
        let (na, nb) = (seen(&self.s[0], a), seen(&self.s[1], b));
        assert_eq!(
            na, nb,
            "{:?} step {} after {what}: native (left) and BPF (right) differ",
            self.engine, self.step
        );
        self.cov.hooks += 1;
        a
    }

    fn native(&self) -> &TcpSock {
        &self.s[0]
    }

    fn cwnd(&self) -> u32 {
        self.native().snd_cwnd
    }

    /// Moves the clock (both sockets read the same thread clock) and `tcp_mstamp`.
    fn advance(&mut self, ns: u64) {
        let before = clock::tcp_jiffies32();
        self.now_ns += ns;
        clock::set_now_ns(self.now_ns);
        if clock::tcp_jiffies32() < before {
            self.cov.jiffies_wrapped = true;
        }
        let us = clock::tcp_clock_us();
        self.set(|tp| tp.tcp_mstamp = us);
    }

    /// Sends up to the window: `snd_nxt`, `lsndtime`, `max_packets_out`.
    fn send(&mut self) {
        let cwnd = self.cwnd();
        let now = clock::tcp_jiffies32();
        self.set(|tp| {
            tp.snd_nxt = tp.snd_una.wrapping_add(cwnd.wrapping_mul(MSS));
            tp.packets_out = cwnd;
            tp.max_packets_out = cwnd;
            tp.lsndtime = now;
        });
    }

    /// An RTT sample: the base RTT, queueing once cwnd exceeds the BDP, jitter; now and
    /// then none (-1) or 0.
    fn rtt_sample(&mut self) -> i32 {
        if self.rng.chance(1, 25) {
            return -1;
        }
        if self.rng.chance(1, 200) {
            return 0;
        }
        if let Some(r) = self.fixed_rtt {
            return r;
        }
        let cwnd = u64::from(self.cwnd());
        let queue = cwnd.saturating_sub(self.bdp) * self.base_rtt_us / self.bdp.max(1);
        let jitter = self.rng.range(0, self.base_rtt_us / 8);
        (self.base_rtt_us + queue + jitter).min(2_000_000) as i32
    }

    /// One ACK: `pkts_acked`, then `cong_avoid` (or the PRR reduction in CWR/Recovery).
    fn ack(&mut self) {
        // Now and then whole rounds of RTTs right at HyStart's delay threshold.
        let ca = *self.native().ca::<Bictcp>();
        if self.native().in_slow_start() && ca.delay_min > 0 && self.rng.chance(1, 40) {
            let thresh = (ca.delay_min >> 3).clamp(4000, 16000);
            let r = u64::from(ca.delay_min + thresh) + self.rng.range(0, 240) - 120;
            self.fixed_rtt = Some(r as i32);
        } else if self.fixed_rtt.is_some() && self.rng.chance(1, 60) {
            self.fixed_rtt = None;
        }
        let cwnd = u64::from(self.cwnd().max(1));
        let rtt = u64::try_from(self.rtt_sample()).unwrap_or(self.base_rtt_us);
        // ACKs spread over the RTT, some bunched (ACK trains), some stretched.
        let gap_us = if self.rng.chance(1, 4) {
            self.rng.range(0, 300)
        } else {
            rtt.max(1) * self.rng.range(50, 200) / 100 / cwnd
        };
        let ns = gap_us * 1000 + self.rng.range(0, 999);
        self.advance(ns);
        let acked = if self.rng.chance(1, 30) {
            self.rng.range(5, 40) as u32
        } else {
            self.rng.range(1, 3) as u32
        };
        let rtt_us = self.rtt_sample();
        let limited = !self.rng.chance(1, 12);
        // Now and then a partial segment, so snd_una lands anywhere against end_seq.
        let short = if self.rng.chance(1, 6) {
            self.rng.range(1, u64::from(MSS) - 1) as u32
        } else {
            0
        };
        // And ACKs ending right at the HyStart round's end (end_seq - 1 ..= end_seq + 1).
        let to_end = ca.end_seq.wrapping_sub(self.native().snd_una);
        let exact = (to_end < 4 * MSS * self.cwnd() && self.rng.chance(1, 8)).then(|| {
            ca.end_seq
                .wrapping_add(self.rng.range(0, 2) as u32)
                .wrapping_sub(1)
        });
        self.set(|tp| {
            tp.snd_una = match exact {
                Some(una) => una,
                None => tp.snd_una.wrapping_add(acked * MSS - short),
            };
            tp.set_cwnd_limited(limited);
        });
        let sample = AckSample {
            pkts_acked: acked,
            rtt_us,
            in_flight: self.cwnd(),
        };
        let in_ss = self.native().in_slow_start();
        let found_before = self.native().ca::<Bictcp>().found;
        self.hook("pkts_acked", |s| {
            s.ca_pkts_acked(&sample);
            None
        });
        if in_ss && found_before == 0 && self.native().ca::<Bictcp>().found == 1 {
            self.cov.hystart_exits += 1;
        }
        match self.phase {
            Phase::Reducing(state, left) => {
                // tcp_cwnd_reduction (PRR, roughly): down towards ssthresh.
                self.set(|tp| {
                    let target = tp.snd_ssthresh.max(1);
                    if tp.snd_cwnd > target {
                        tp.snd_cwnd = (tp.snd_cwnd - acked.min(tp.snd_cwnd - target)).max(1);
                    }
                });
                if left <= 1 {
                    self.end_reduction(state);
                } else {
                    self.phase = Phase::Reducing(state, left - 1);
                }
            }
            Phase::Loss(left) => {
                self.hook("cong_avoid (Loss)", |s| {
                    let ack = s.snd_una;
                    s.ca_cong_avoid(ack, acked);
                    None
                });
                if left <= 1 {
                    self.hook("set_state Open", |s| {
                        s.ca_set_state(TcpCaState::Open);
                        None
                    });
                    self.phase = Phase::Open;
                } else {
                    self.phase = Phase::Loss(left - 1);
                }
            }
            Phase::Open => {
                let k_before = self.native().ca::<Bictcp>().epoch_start;
                self.hook("cong_avoid", |s| {
                    let ack = s.snd_una;
                    s.ca_cong_avoid(ack, acked);
                    None
                });
                let ca = *self.native().ca::<Bictcp>();
                let epoch_age = clock::tcp_jiffies32().wrapping_sub(ca.epoch_start);
                if ca.last_max_cwnd == 0 && ca.epoch_start != 0 && epoch_age > clock::hz() * 3 / 2 {
                    self.cov.pre_loss_late_acks += 1;
                }
                if k_before == 0 && ca.epoch_start != 0 && ca.bic_k != 0 {
                    self.cov.epochs_with_k += 1;
                }
            }
        }
        self.cov.max_cwnd = self.cov.max_cwnd.max(self.cwnd());
        self.cov.cwnd_sum += u64::from(self.cwnd());
        self.send();
    }

    /// `tcp_init_cwnd_reduction` + `tcp_set_ca_state`: fast recovery or ECN CWR.
    fn start_reduction(&mut self, state: TcpCaState) {
        self.set(|tp| {
            tp.high_seq = tp.snd_nxt;
            tp.prior_cwnd = tp.snd_cwnd;
            tp.prior_ssthresh = if tp.in_slow_start() {
                tp.snd_ssthresh
            } else {
                tp.snd_ssthresh.max((tp.snd_cwnd >> 1) + (tp.snd_cwnd >> 2))
            };
        });
        let ss = self
            .hook("ssthresh", |s| Some(s.ca_ssthresh()))
            .unwrap_or(0);
        self.set(|tp| tp.snd_ssthresh = ss);
        self.hook("set_state", |s| {
            s.ca_set_state(state);
            None
        });
        let left = self.rng.range(2, 30) as u32;
        self.phase = Phase::Reducing(state, left);
        self.cov.recoveries += 1;
    }

    /// `tcp_end_cwnd_reduction`: cwnd = ssthresh, `CA_EVENT_COMPLETE_CWR`, Open.
    fn end_reduction(&mut self, _state: TcpCaState) {
        self.set(|tp| {
            if tp.snd_ssthresh < TCP_INFINITE_SSTHRESH {
                tp.snd_cwnd = tp.snd_ssthresh;
            }
        });
        self.hook("cwnd_event COMPLETE_CWR", |s| {
            s.ca_event(TcpCaEvent::CompleteCwr);
            None
        });
        self.hook("set_state Open", |s| {
            s.ca_set_state(TcpCaState::Open);
            None
        });
        self.phase = Phase::Open;
    }

    /// `tcp_enter_loss`: ssthresh, `CA_EVENT_LOSS`, cwnd 1, `TCP_CA_Loss`.
    fn rto(&mut self) {
        let ns = self.rng.range(200_000, 1_500_000) * 1000;
        self.advance(ns);
        let was_open = matches!(self.phase, Phase::Open);
        self.set(|tp| {
            tp.prior_ssthresh = tp.snd_ssthresh;
            tp.prior_cwnd = tp.snd_cwnd;
        });
        if was_open {
            let ss = self
                .hook("ssthresh (RTO)", |s| Some(s.ca_ssthresh()))
                .unwrap_or(0);
            self.set(|tp| tp.snd_ssthresh = ss);
        }
        self.hook("cwnd_event LOSS", |s| {
            s.ca_event(TcpCaEvent::Loss);
            None
        });
        self.set(|tp| {
            tp.snd_cwnd = 1;
            tp.snd_cwnd_cnt = 0;
        });
        self.hook("set_state Loss", |s| {
            s.ca_set_state(TcpCaState::Loss);
            None
        });
        self.phase = Phase::Loss(self.rng.range(3, 60) as u32);
        self.cov.rtos += 1;
    }

    /// `tcp_undo_cwnd_reduction`: the loss was spurious.
    fn undo(&mut self) {
        let cwnd = self
            .hook("undo_cwnd", |s| Some(s.ca_undo_cwnd()))
            .unwrap_or(0);
        self.set(|tp| {
            tp.snd_cwnd = cwnd;
            if tp.prior_ssthresh > tp.snd_ssthresh {
                tp.snd_ssthresh = tp.prior_ssthresh;
            }
        });
        self.hook("set_state Open (undo)", |s| {
            s.ca_set_state(TcpCaState::Open);
            None
        });
        self.phase = Phase::Open;
        self.cov.undos += 1;
    }

    /// Idle, then `tcp_cwnd_restart` and the first send (`CA_EVENT_TX_START`).
    fn idle(&mut self) {
        // Short pauses of a few jiffies, or long ones.
        let ns = if self.rng.chance(1, 3) {
            self.rng.range(0, 12_000_000)
        } else {
            self.rng.range(50_000, 4_000_000) * 1000
        };
        self.advance(ns);
        if self.rng.chance(1, 2) {
            self.hook("cwnd_event CWND_RESTART", |s| {
                s.ca_event(TcpCaEvent::CwndRestart);
                None
            });
            self.set(|tp| {
                if !tp.in_slow_start() {
                    tp.snd_ssthresh = tp.snd_ssthresh.max((tp.snd_cwnd >> 1) + (tp.snd_cwnd >> 2));
                }
                tp.snd_cwnd = (tp.snd_cwnd / 2).max(10).min(tp.snd_cwnd);
            });
        }
        self.hook("cwnd_event TX_START", |s| {
            s.ca_event(TcpCaEvent::TxStart);
            None
        });
        self.send();
        self.cov.idles += 1;
    }

    /// A new connection on the sockets (as the kernel reuses none, this stands for one):
    /// fresh window and sequence space, and `init` again by switching to Reno and back
    /// (`tcp_reinit_congestion_control` zeroes `icsk_ca_priv` before `init`).
    fn new_connection(&mut self) {
        let seq = self.rng.next() as u32;
        let cwnd = self.rng.range(2, 12) as u32;
        self.set(|tp| {
            tp.snd_cwnd = cwnd;
            tp.snd_ssthresh = TCP_INFINITE_SSTHRESH;
            tp.snd_cwnd_cnt = 0;
            tp.snd_una = seq;
            tp.snd_nxt = seq;
            tp.prior_cwnd = 0;
            tp.prior_ssthresh = 0;
        });
        self.base_rtt_us = self.rng.range(200, 150_000);
        self.bdp = self.rng.range(16, 500);
        self.fixed_rtt = None;
        // Calm connections leave slow start at an ssthresh of their own (as from the
        // route's metrics) and then avoid congestion for a long time before any loss.
        if self.rng.chance(1, 5) {
            self.calm_until = self.step + 2500;
            self.bdp = self.rng.range(100, 1000);
            let ss = self.rng.range(20, 200) as u32;
            self.set(|tp| tp.snd_ssthresh = ss);
        }
        let host = self.host;
        for (s, name) in self.s.iter_mut().zip(["cubic", "so_cubic"]) {
            host.set_congestion_control(s, "reno").unwrap();
            s.ca_set_state(TcpCaState::Open);
            host.set_congestion_control(s, name).unwrap();
        }
        self.hook("init (new connection)", |_| None);
        self.phase = Phase::Open;
        self.send();
        self.cov.connections += 1;
    }

    fn step(&mut self) {
        self.step += 1;
        // Losses mostly once the queue overflows (cwnd well above the BDP).
        // A calm connection loses nothing until it overflows the queue.
        let per_mille = if u64::from(self.cwnd()) > self.bdp * 3 / 2 {
            30
        } else if self.step < self.calm_until {
            0
        } else {
            2
        };
        if self.phase == Phase::Open && self.rng.range(0, 999) < per_mille {
            self.calm_until = 0;
            self.start_reduction(TcpCaState::Recovery);
            return;
        }
        let mut r = self.rng.range(0, 999);
        if self.step < self.calm_until && r < 40 {
            r = 999;
        }
        match (self.phase, r) {
            (Phase::Open, 8..=9) => self.start_reduction(TcpCaState::Cwr),
            (Phase::Open, 10..=13) => {
                // Dupacks: Disorder and back.
                self.hook("set_state Disorder", |s| {
                    s.ca_set_state(TcpCaState::Disorder);
                    None
                });
                self.hook("set_state Open", |s| {
                    s.ca_set_state(TcpCaState::Open);
                    None
                });
            }
            (_, 14) => self.rto(),
            (Phase::Reducing(..) | Phase::Loss(_), 15..=24) => self.undo(),
            (Phase::Open, 25..=30) => self.idle(),
            (_, 31..=33) => {
                // Pacing and GSO change (HyStart's ACK-delay cushion reads them).
                let rate = if self.rng.chance(1, 3) {
                    0
                } else {
                    self.rng.range(100_000, 2_000_000_000)
                };
                let status = if self.rng.chance(1, 2) {
                    SK_PACING_NONE
                } else {
                    SK_PACING_FQ
                };
                let gso = self.rng.range(0, 65536) as u32;
                self.set(|tp| {
                    tp.sk_mut().sk_pacing_rate = rate;
                    tp.sk_mut().sk_pacing_status = status;
                    tp.sk_mut().sk_gso_max_size = gso;
                });
            }
            (_, 35..=38) => self.new_connection(),
            (_, 34) => {
                // The path changes.
                self.base_rtt_us = self.rng.range(200, 300_000);
                self.bdp = self.rng.range(8, 600);
            }
            _ => self.ack(),
        }
    }
}

fn run(engine: Engine, hz: u32, seed: u64, steps: u64) -> Coverage {
    let host = TcpHost::new(HostConfig { engine, hz }).unwrap();
    host.enter();
    assert_eq!(clock::hz(), hz);
    let cc = host
        .load_object(CUBIC_BPF_O, "bpf/cubic.bpf.o", Some("cubic"))
        .unwrap();
    assert_eq!(cc.name, "so_cubic");
    // 299.5 s in: tcp_jiffies32 wraps half a second into the run.
    let start_ns = 299_500_000_000;
    clock::set_now_ns(start_ns);
    let mut rng = Rng(seed | 1);
    let base_rtt_us = rng.range(1000, 120_000);
    let bdp = rng.range(20, 400);
    let mut pair = Pair {
        s: [host.socket(), host.socket()],
        rng,
        now_ns: start_ns,
        phase: Phase::Open,
        base_rtt_us,
        bdp,
        cov: Coverage::default(),
        step: 0,
        engine,
        host: &host,
        fixed_rtt: None,
        calm_until: 0,
    };
    let us = clock::tcp_clock_us();
    pair.set(|tp| {
        tp.snd_una = 0x7fff_0000;
        tp.snd_nxt = 0x7fff_0000;
        tp.tcp_mstamp = us;
        tp.mss_cache = MSS;
    });
    // tcp_init_congestion_control through TCP_CONGESTION, as for a new connection.
    let [native, bpf] = &mut pair.s;
    host.set_congestion_control(native, "cubic").unwrap();
    host.set_congestion_control(bpf, "so_cubic").unwrap();
    assert_eq!(bpf.ca_name(), "so_cubic");
    assert_eq!(seen(native, None), seen(bpf, None), "{engine:?} after init");
    pair.send();
    for _ in 0..steps {
        pair.step();
    }
    let cov = std::mem::take(&mut pair.cov);
    drop(pair);
    drop(cc);
    println!("{engine:?} HZ={hz} seed={seed:#x}: {cov:?}");
    cov
}

/// Runs several seeds and checks that together they exercised every path.
fn differential(engine: Engine, hz: u32, seeds: &[u64]) {
    let mut total = Coverage::default();
    for &seed in seeds {
        let c = run(engine, hz, seed, 40_000);
        assert!(
            c.jiffies_wrapped,
            "seed {seed:#x}: the run crosses the jiffies wrap"
        );
        total.hooks += c.hooks;
        total.hystart_exits += c.hystart_exits;
        total.epochs_with_k += c.epochs_with_k;
        total.recoveries += c.recoveries;
        total.rtos += c.rtos;
        total.undos += c.undos;
        total.idles += c.idles;
        total.connections += c.connections;
        total.pre_loss_late_acks += c.pre_loss_late_acks;
        total.max_cwnd = total.max_cwnd.max(c.max_cwnd);
    }
    assert!(total.hooks > 10_000 * seeds.len() as u64, "{total:?}");
    assert!(
        total.hystart_exits > 10,
        "HyStart ended slow start: {total:?}"
    );
    assert!(
        total.epochs_with_k > 0,
        "epochs below W_max (K > 0): {total:?}"
    );
    assert!(
        total.recoveries > 0
            && total.rtos > 0
            && total.undos > 0
            && total.idles > 0
            && total.connections > 0,
        "{total:?}"
    );
    assert!(total.max_cwnd > 50, "{total:?}");
    assert!(total.pre_loss_late_acks > 200, "{total:?}");
}

const SEEDS: &[u64] = &[0x5eed_0001, 0xc0ff_ee00_1234, 0x9e37_79b9_7f4a_7c15];

#[test]
fn so_cubic_equals_native_cubic_interpreted() {
    differential(Engine::Interp, 250, SEEDS);
}

#[test]
fn so_cubic_equals_native_cubic_jitted() {
    differential(Engine::Jit, 250, SEEDS);
}

/// Other `CONFIG_HZ` values (1000, 100): `bpf_jiffies64`, the `CONFIG_HZ` kconfig value and the native
/// clock must agree on it too.
#[test]
fn so_cubic_equals_native_cubic_at_other_hz() {
    differential(Engine::Jit, 1000, &SEEDS[..2]);
    differential(Engine::Interp, 100, &SEEDS[2..]);
}
