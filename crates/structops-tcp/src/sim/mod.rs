//! A deterministic discrete-event network simulator: TCP flows through a dumbbell, each
//! flow's sender and receiver a [`Socket`](crate::Socket) calling its congestion control
//! (native or BPF) where Linux calls it.
//!
//! # Topology
//!
//! N bulk flows share one bottleneck link (rate `bw_bps`, a FIFO buffer of
//! `buffer_bytes`, drop-tail, optionally CE-marking ECN-capable packets when
//! `ecn_threshold_pkts` packets already wait). Senders reach the bottleneck instantly;
//! after it each flow has its own propagation delay (half its RTT forward, half back).
//! ACKs return over an uncongested path: propagation only, no queue, no loss. Every data
//! packet is one 1500-byte frame carrying [`MSS`] bytes of payload; optional random loss
//! drops data packets (Bernoulli, before the bottleneck) from the run's own seeded
//! generator, so a [`Scenario`] with a seed is reproducible bit for bit.
//!
//! # TCP
//!
//! The sender mirrors Linux's `tcp_ack` / `tcp_write_xmit` / `tcp_retransmit_timer`
//! (see the `tcp` module for the details and the kernel function each piece follows),
//! with SACK, RACK loss detection, tail loss probes, PRR, RTO with backoff, undo of
//! spurious reductions by timestamps (Eifel), ECN (ECE/CWR) and internal
//! pacing when the congestion control asks for it (`sk_pacing_status`). The receiver has
//! an unlimited window, delayed ACKs (every second segment, 16 quick ACKs at the start,
//! 40 ms timer), immediate ACKs for out-of-order data and on CE changes, and runs the same
//! congestion control so that DCTCP's receiver-side ECN echo works as in the kernel.
//!
//! # What the model leaves out (each a named simplification)
//!
//! - no SYN/FIN exchange: a flow starts established with one RTT sample of its path;
//! - no TSO/GSO, TSQ, qdisc or NIC queue at the sender (bursts enter the bottleneck at
//!   once); pacing only as the kernel's internal pacing (`SK_PACING_NEEDED`);
//! - TCP timestamps (ms, as `tcp_time_stamp_ms`) without PAWS drops (the network never
//!   reorders, so PAWS never would) and without `tsoffset`; undo only by timestamps
//!   (Eifel: `tcp_packet_delayed`), since there is no D-SACK (`undo_retrans` never
//!   reaches 0); no F-RTO; the tail loss probe always sends new data (the sender
//!   always has some), so a probe never ends in the TLP recovery of a retransmitted probe;
//! - no reordering on the network, so RACK's reordering window never grows and
//!   `tp->reordering` stays 3; RACK scans in sequence order (see `rack_detect_loss`);
//! - the receiver ACKs out-of-order data at once (no SACK compression), with a fixed
//!   40 ms delayed-ACK timeout (no ATO adaptation), and gets no `in_ack_event` calls;
//! - `tcp_cwnd_application_limited` / `slow_start_after_idle` never apply (bulk senders
//!   with unlimited data); at most 2^20 segments are kept in flight per flow.
//!
//! # Outputs
//!
//! [`SimResult`]: per-flow and total goodput, retransmissions, queueing delay (mean, p99)
//! and queue length at the bottleneck, Jain's fairness index, time series sampled every
//! `sample_interval_ns`, optionally the exact trace of every sender-side congestion-control
//! call ([`TraceEntry`], what the BPF = native comparison uses), and the engine's speed.

mod engine;
mod event;
mod link;
mod rng;
mod tcp;

use serde::Serialize;
use thiserror::Error;

use crate::host::TcpHost;

pub use engine::{FlowState, Sim};

/// Payload bytes per segment (`mss_cache`).
pub const MSS: u32 = 1448;
/// Bytes of a data packet on the wire (the bottleneck serializes this much per packet).
pub const WIRE_BYTES: u32 = 1500;

/// One flow of a [`Scenario`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowSpec {
    /// The congestion control's registered name (`"cubic"`, `"bpf_cubic"`, ...), used by
    /// both the sender and the receiver.
    pub cc: String,
    /// Round-trip propagation delay (ns), split evenly between the two directions.
    pub rtt_ns: u64,
    /// When the flow starts (ns).
    pub start_ns: u64,
    /// Negotiate RFC 3168 ECN even if the congestion control does not need it (the
    /// `net.ipv4.tcp_ecn = 1` of a classic ECN sender). Congestion controls with
    /// `TCP_CONG_NEEDS_ECN` always negotiate it.
    pub ecn: bool,
    /// Temporary extra delays on the flow's forward path (none by default), to provoke
    /// spurious retransmission timeouts.
    pub delay_spikes: Vec<DelaySpike>,
}

/// A temporary extra propagation delay on a flow's forward (data) path, after the
/// bottleneck: a data packet leaving the bottleneck in `[at_ns, at_ns + duration_ns)`
/// takes `extra_ns` longer to reach the receiver. The path stays FIFO: a packet never
/// arrives before one that left the bottleneck earlier (after the spike, packets queue
/// behind the delayed ones, as behind a stalled link).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DelaySpike {
    /// When the spike starts (ns).
    pub at_ns: u64,
    /// The extra one-way delay (ns).
    pub extra_ns: u64,
    /// How long packets entering the path get it (ns).
    pub duration_ns: u64,
}

impl FlowSpec {
    /// A flow running `cc` over a path of `rtt_ns`, starting at 0, without classic ECN.
    pub fn new(cc: &str, rtt_ns: u64) -> FlowSpec {
        FlowSpec {
            cc: cc.to_string(),
            rtt_ns,
            start_ns: 0,
            ecn: false,
            delay_spikes: Vec::new(),
        }
    }
}

/// A dumbbell experiment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// The flows.
    pub flows: Vec<FlowSpec>,
    /// Bottleneck rate (bit/s).
    pub bw_bps: u64,
    /// Bottleneck buffer (bytes; holds `buffer_bytes / 1500` packets waiting).
    pub buffer_bytes: u64,
    /// Mark ECT packets CE when at least this many packets already wait (None: no marking).
    pub ecn_threshold_pkts: Option<u32>,
    /// Probability that a data packet is lost before the bottleneck (0 = none).
    pub loss: f64,
    /// Simulated time (ns).
    pub duration_ns: u64,
    /// Seed of the run's random numbers (initial sequence numbers, random loss).
    pub seed: u64,
    /// Interval of the time series (ns).
    pub sample_interval_ns: u64,
    /// Record [`SimResult::trace`].
    pub trace: bool,
}

/// The most samples a run records per flow.
pub const MAX_SAMPLES: u64 = 10_000_000;

/// One millisecond in ns.
pub const MS: u64 = 1_000_000;
/// One second in ns.
pub const SEC: u64 = 1_000_000_000;

impl Default for Scenario {
    /// The issue's default: 4 CUBIC flows over 100 Mbit/s with a 20 ms RTT and one BDP of
    /// buffer, 30 s. (`"cubic"` is the native one; the CLI substitutes the bundled BPF
    /// CUBIC.)
    fn default() -> Scenario {
        let rtt = 20 * MS;
        let bw = 100_000_000;
        Scenario {
            flows: (0..4).map(|_| FlowSpec::new("cubic", rtt)).collect(),
            bw_bps: bw,
            buffer_bytes: Scenario::bdp_bytes(bw, rtt),
            ecn_threshold_pkts: None,
            loss: 0.0,
            duration_ns: 30 * SEC,
            seed: 1,
            sample_interval_ns: 100 * MS,
            trace: false,
        }
    }
}

impl Scenario {
    /// The bandwidth-delay product of `bw_bps` and `rtt_ns`, in bytes.
    pub fn bdp_bytes(bw_bps: u64, rtt_ns: u64) -> u64 {
        (u128::from(bw_bps) * u128::from(rtt_ns) / 8 / u128::from(SEC)) as u64
    }

    /// Checks the scenario, naming the first problem.
    ///
    /// # Errors
    ///
    /// [`SimError::Invalid`].
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Invalid { what: what.into() });
        if self.flows.is_empty() {
            return bad("no flows");
        }
        if self.flows.len() > u32::MAX as usize {
            return bad("too many flows");
        }
        if self.bw_bps == 0 {
            return bad("bandwidth is 0");
        }
        if self.buffer_bytes < u64::from(WIRE_BYTES) {
            return bad("buffer smaller than one 1500-byte packet");
        }
        if !(0.0..1.0).contains(&self.loss) {
            return bad("loss must be in [0, 1)");
        }
        if self.duration_ns == 0 {
            return bad("duration is 0");
        }
        if self.sample_interval_ns == 0 {
            return bad("sample interval is 0");
        }
        if self.duration_ns / self.sample_interval_ns > MAX_SAMPLES {
            return bad("more than 10 million samples per flow");
        }
        for f in &self.flows {
            if f.rtt_ns < 2 {
                return bad("a flow's RTT is below 2 ns");
            }
            if f.rtt_ns > 3600 * SEC {
                return bad("a flow's RTT is above one hour");
            }
            for d in &f.delay_spikes {
                if d.extra_ns > 3600 * SEC || d.duration_ns > 3600 * SEC {
                    return bad("a delay spike's delay or duration is above one hour");
                }
                if d.at_ns > u64::MAX / 2 {
                    return bad("a delay spike starts beyond the simulated time range");
                }
            }
        }
        Ok(())
    }
}

/// A congestion-control call of the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Hook {
    /// `init` (at connection start).
    Init,
    /// `ssthresh`, after `snd_ssthresh` took its value.
    Ssthresh,
    /// `cong_avoid`.
    CongAvoid,
    /// `cong_control`.
    CongControl,
    /// `set_state` (after `icsk_ca_state` changed).
    SetState,
    /// `cwnd_event`.
    CwndEvent,
    /// `in_ack_event`.
    InAckEvent,
    /// `pkts_acked`.
    PktsAcked,
    /// `min_tso_segs`.
    MinTsoSegs,
    /// `sndbuf_expand`.
    SndbufExpand,
    /// `undo_cwnd` (`tcp_undo_cwnd_reduction`), after `snd_cwnd` took its value and
    /// `snd_ssthresh` was restored.
    UndoCwnd,
}

/// The sender's congestion state right after one congestion-control call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TraceEntry {
    /// Simulated time (ns).
    pub time_ns: u64,
    /// The flow.
    pub flow: u32,
    /// Which call.
    pub hook: Hook,
    /// `snd_cwnd` after it.
    pub snd_cwnd: u32,
    /// `snd_ssthresh` after it.
    pub snd_ssthresh: u32,
    /// `icsk_ca_state` after it.
    pub ca_state: u8,
}

/// One flow at one sample time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlowSample {
    /// Sample time (ns).
    pub t_ns: u64,
    /// `snd_cwnd` (0 before the flow starts).
    pub cwnd: u32,
    /// `snd_ssthresh` (0 before the flow starts).
    pub ssthresh: u32,
    /// Smoothed RTT (µs; 0 before the flow starts).
    pub srtt_us: u32,
    /// `icsk_ca_state`.
    pub ca_state: u8,
    /// Payload bytes delivered in order to the receiver since the previous sample.
    pub goodput_bytes: u64,
}

/// The bottleneck queue at one sample time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QueueSample {
    /// Sample time (ns).
    pub t_ns: u64,
    /// Packets waiting at the sample time.
    pub len_pkts: u32,
    /// Time-averaged packets waiting since the previous sample.
    pub mean_len_pkts: f64,
}

/// What one flow achieved.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowSummary {
    /// The flow's index.
    pub flow: usize,
    /// Its congestion control (as named in the scenario).
    pub cc: String,
    /// Its RTT (ns).
    pub rtt_ns: u64,
    /// Its start (ns).
    pub start_ns: u64,
    /// Payload bytes delivered in order.
    pub delivered_bytes: u64,
    /// Goodput over the time it was active (bit/s).
    pub goodput_bps: f64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    /// Fast recoveries.
    pub recoveries: u64,
    /// Congestion-window reductions undone (`undo_cwnd` calls: a retransmission found
    /// spurious by its timestamp echo, Eifel detection).
    pub undos: u64,
    /// Its packets dropped at the full bottleneck buffer.
    pub drops: u64,
    /// Its packets marked CE.
    pub ce_marks: u64,
    /// Mean queueing delay of its packets at the bottleneck (ns).
    pub mean_queue_delay_ns: f64,
    /// `snd_cwnd` at the end.
    pub final_cwnd: u32,
    /// Smoothed RTT at the end (µs).
    pub srtt_us: u32,
    /// Minimum RTT seen (µs).
    pub min_rtt_us: u32,
}

/// The bottleneck over the whole run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueSummary {
    /// Buffer size in packets.
    pub capacity_pkts: u64,
    /// Packets offered to the link.
    pub offered: u64,
    /// Packets dropped at the full buffer.
    pub drops: u64,
    /// Packets lost to random loss (before the link).
    pub random_losses: u64,
    /// Packets marked CE.
    pub ce_marks: u64,
    /// Mean queueing delay (arrival to start of transmission), ns.
    pub mean_delay_ns: f64,
    /// 99th percentile of the queueing delay (ns, within 1.6%).
    pub p99_delay_ns: u64,
    /// Largest queueing delay (ns).
    pub max_delay_ns: u64,
    /// Time-averaged queue length (packets waiting).
    pub mean_len_pkts: f64,
    /// Largest queue length.
    pub max_len_pkts: u64,
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimResult {
    /// Simulated time (ns).
    pub duration_ns: u64,
    /// Per flow.
    pub flows: Vec<FlowSummary>,
    /// All payload delivered in order, over the whole run (bit/s).
    pub total_goodput_bps: f64,
    /// Jain's fairness index over the flows' goodputs (each over its active time).
    pub jain: f64,
    /// The bottleneck.
    pub queue: QueueSummary,
    /// Per flow, its samples.
    pub series: Vec<Vec<FlowSample>>,
    /// The queue's samples.
    pub queue_series: Vec<QueueSample>,
    /// Every sender-side congestion-control call (empty unless [`Scenario::trace`]).
    pub trace: Vec<TraceEntry>,
    /// Events processed.
    pub events: u64,
    /// Wall-clock time of the run (ns).
    pub wall_ns: u64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
}

impl SimResult {
    /// Flow `flow`'s goodput (bit/s) over the samples in `(t0_ns, t1_ns]`.
    pub fn goodput_between(&self, flow: usize, t0_ns: u64, t1_ns: u64) -> f64 {
        let Some(s) = self.series.get(flow) else {
            return 0.0;
        };
        let bytes: u64 = s
            .iter()
            .filter(|x| x.t_ns > t0_ns && x.t_ns <= t1_ns)
            .map(|x| x.goodput_bytes)
            .sum();
        if t1_ns <= t0_ns {
            return 0.0;
        }
        bytes as f64 * 8.0 * SEC as f64 / (t1_ns - t0_ns) as f64
    }

    /// Jain's fairness index of the flows' goodputs over `(t0_ns, t1_ns]`.
    pub fn jain_between(&self, t0_ns: u64, t1_ns: u64) -> f64 {
        let g: Vec<f64> = (0..self.series.len())
            .map(|f| self.goodput_between(f, t0_ns, t1_ns))
            .collect();
        jain(&g)
    }

    /// The time-averaged queue length (packets) over the samples in `(t0_ns, t1_ns]`.
    pub fn mean_queue_between(&self, t0_ns: u64, t1_ns: u64) -> f64 {
        let v: Vec<f64> = self
            .queue_series
            .iter()
            .filter(|x| x.t_ns > t0_ns && x.t_ns <= t1_ns)
            .map(|x| x.mean_len_pkts)
            .collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }
}

/// Jain's fairness index `(Σx)² / (n·Σx²)`: 1 when all equal, `1/n` when one takes all
/// (1 for no values or all zero).
pub fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let s2: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || s2 == 0.0 {
        1.0
    } else {
        s * s / (xs.len() as f64 * s2)
    }
}

/// Why a run could not be done.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scenario is not runnable.
    #[error("invalid scenario: {what}")]
    Invalid {
        /// What is wrong.
        what: String,
    },
    /// A flow names a congestion control the host does not have.
    #[error("flow {flow}: no congestion control named {name:?} (available: {available})")]
    UnknownCc {
        /// The flow.
        flow: usize,
        /// The name.
        name: String,
        /// What the host has, comma-separated.
        available: String,
    },
    /// Setting a flow's congestion control failed when it started (e.g. unregistered by
    /// a callback).
    #[error("flow {flow}: setting congestion control {name:?}: {errno}")]
    SetCc {
        /// The flow.
        flow: usize,
        /// The name.
        name: String,
        /// The host's errno.
        errno: structops::Errno,
    },
}

/// A callback run at a simulated time with the host (e.g. a hot swap: `--swap-at`).
pub struct Callback<'a> {
    /// When (ns).
    pub at_ns: u64,
    /// What.
    pub f: Box<dyn FnMut(&TcpHost) + 'a>,
}

/// Extras for [`run_with`].
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Called with the fraction of simulated time done (0..=1), about a hundred times.
    pub progress: Option<&'a mut dyn FnMut(f64)>,
    /// Callbacks at given simulated times (those at or after the end do not run).
    pub callbacks: Vec<Callback<'a>>,
}

/// Runs `sc` on `host` (on the calling thread, whose simulated clock it sets).
///
/// # Errors
///
/// [`SimError`]: an invalid scenario or an unknown congestion control.
///
/// # Example
///
/// ```
/// use structops_tcp::sim::{self, FlowSpec, Scenario, MS, SEC};
/// use structops_tcp::{HostConfig, TcpHost};
///
/// let host = TcpHost::new(HostConfig::default())?;
/// let sc = Scenario {
///     flows: vec![FlowSpec::new("reno", 10 * MS)],
///     bw_bps: 10_000_000,
///     buffer_bytes: Scenario::bdp_bytes(10_000_000, 10 * MS),
///     duration_ns: 2 * SEC,
///     ..Scenario::default()
/// };
/// let r = sim::run(&host, &sc, None)?;
/// assert!(r.total_goodput_bps > 5e6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run(
    host: &TcpHost,
    sc: &Scenario,
    progress: Option<&mut dyn FnMut(f64)>,
) -> Result<SimResult, SimError> {
    run_with(
        host,
        sc,
        RunOptions {
            progress,
            callbacks: Vec::new(),
        },
    )
}

/// [`run`] with callbacks at given simulated times (a hot swap at T: a callback calling
/// [`TcpHost::update`]; sockets running the replaced table re-initialise on their next
/// call).
///
/// # Errors
///
/// As [`run`].
pub fn run_with(
    host: &TcpHost,
    sc: &Scenario,
    opts: RunOptions<'_>,
) -> Result<SimResult, SimError> {
    engine::simulate(host, sc, opts)
}
