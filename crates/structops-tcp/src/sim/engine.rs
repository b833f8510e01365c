//! The event loop: what every event does, the shared state of a run ([`Ctx`]) and the
//! result.

use std::marker::PhantomData;
use std::time::Instant;

use serde::Serialize;

use super::event::{EventQueue, Kind};
use super::link::{Bottleneck, Offer, QPkt};
use super::rng::Rng;
use super::tcp::Flow;
use super::{
    DelaySpike, FlowSample, FlowSummary, Hook, MSS, QueueSample, QueueSummary, RunOptions, SEC,
    Scenario, SimError, SimResult, TraceEntry, WIRE_BYTES, jain,
};
use crate::clock;
use crate::host::TcpHost;
use crate::types::TcpSock;

/// The state a run's flows share.
pub(crate) struct Ctx {
    /// Simulated time (ns since the start).
    pub now: u64,
    /// `tcp_clock_us()` now.
    pub now_us: u64,
    /// `tcp_clock_ns()` now.
    pub ktime_ns: u64,
    /// `tcp_jiffies32` now.
    pub jiffies: u32,
    /// `CONFIG_HZ`.
    pub hz: u32,
    /// `ktime_ns()` at simulated time 0.
    boot_ns: u64,
    pub events: EventQueue,
    pub link: Bottleneck,
    /// Per flow: forward propagation delay after the bottleneck (ns).
    pub fwd_ns: Vec<u64>,
    /// Per flow: its forward path's delay spikes.
    spikes: Vec<Vec<DelaySpike>>,
    /// Per flow: when its latest data packet reaches the receiver (ns), which later
    /// packets may not precede.
    last_arrival: Vec<u64>,
    rng: Rng,
    loss: f64,
    pub random_losses: u64,
    pub trace: Option<Vec<TraceEntry>>,
}

impl Ctx {
    /// Moves the clock (this thread's, which congestion controls read) to `t`, and
    /// caches what the TCP code reads of it: the same values as [`clock::ktime_ns`],
    /// [`clock::tcp_clock_us`] and [`clock::tcp_jiffies32`], computed without their
    /// 128-bit divisions.
    fn set_time(&mut self, t: u64) {
        clock::set_now_ns(t);
        self.now = t;
        self.ktime_ns = self.boot_ns.wrapping_add(t);
        self.now_us = self.ktime_ns / 1000;
        self.jiffies = match self.ktime_ns.checked_mul(u64::from(self.hz)) {
            Some(x) => x / SEC,
            None => (u128::from(self.ktime_ns) * u128::from(self.hz) / u128::from(SEC)) as u64,
        } as u32;
        debug_assert_eq!(self.ktime_ns, clock::ktime_ns());
        debug_assert_eq!(self.jiffies, clock::tcp_jiffies32());
    }

    /// `tcp_time_stamp_ms` at simulated time `t` (ns): the TSval of a packet sent then.
    pub(crate) fn ts_ms(&self, t: u64) -> u32 {
        (self.boot_ns.wrapping_add(t) / 1_000_000) as u32
    }

    /// `j` jiffies in ns.
    pub(crate) fn jiffies_to_ns(&self, j: u64) -> u64 {
        match j.checked_mul(SEC) {
            Some(x) => x / u64::from(self.hz),
            None => (u128::from(j) * u128::from(SEC) / u128::from(self.hz)) as u64,
        }
    }

    /// Records the sender's state after a congestion-control call.
    pub(crate) fn record(&mut self, flow: u32, hook: Hook, tp: &TcpSock) {
        if let Some(t) = &mut self.trace {
            t.push(TraceEntry {
                time_ns: self.now,
                flow,
                hook,
                snd_cwnd: tp.snd_cwnd,
                snd_ssthresh: tp.snd_ssthresh,
                ca_state: tp.ca_state(),
            });
        }
    }

    /// A sender puts segment `idx` of `flow` on the wire: random loss, then the
    /// bottleneck.
    pub(crate) fn transmit(&mut self, flow: u32, idx: u64, flags: u8) {
        if self.rng.chance(self.loss) {
            self.random_losses += 1;
            return;
        }
        let p = QPkt {
            idx,
            enq_ns: self.now,
            flow,
            flags,
        };
        if self.link.offer(self.now, p) == Offer::Serve {
            self.events
                .push(self.now + self.link.tx_ns, Kind::LinkDone, u32::MAX);
        }
    }

    /// The packet in service is serialized: it propagates to its receiver and the next
    /// one starts.
    fn link_done(&mut self) {
        let (done, more) = self.link.depart(self.now);
        if let Some(p) = done {
            let f = p.flow as usize;
            let fwd = self.fwd_ns.get(f).copied().unwrap_or(0);
            let extra: u64 = self.spikes.get(f).map_or(0, |sp| {
                sp.iter()
                    .filter(|d| self.now >= d.at_ns && self.now - d.at_ns < d.duration_ns)
                    .map(|d| d.extra_ns)
                    .sum()
            });
            let mut at = self.now + fwd + extra;
            if let Some(last) = self.last_arrival.get_mut(f) {
                at = at.max(*last);
                *last = at;
            }
            // Senders reach the bottleneck at once: the packet was sent when it joined
            // the queue.
            let tsval = self.ts_ms(p.enq_ns);
            self.events
                .push_full(at, Kind::Data, p.flow, p.idx, 0, 0, p.flags, tsval);
        }
        if more {
            self.events
                .push(self.now + self.link.tx_ns, Kind::LinkDone, u32::MAX);
        }
    }
}

/// A run in progress, advanced in slices of simulated time: [`Sim::run_until`] processes
/// the events up to a time and returns, so the caller can look at the flows
/// ([`Sim::flow`]), change their congestion controls ([`Sim::set_congestion_control`])
/// or pace the run against the wall clock between slices. [`Sim::finish`] gives the
/// [`SimResult`]. A run advanced in slices, with nothing changed between them, is the
/// run [`run_with`](super::run_with) does, event for event.
///
/// The simulated clock congestion controls read is the calling thread's: create, step
/// and finish a `Sim` on one thread (it is not `Send`).
///
/// # Example
///
/// One flow on the BPF CUBIC of `bpf/cubic.bpf.c`, switched to the native Reno halfway
/// (`setsockopt(TCP_CONGESTION)` on both ends):
///
/// ```
/// use structops_tcp::sim::{FlowSpec, MS, RunOptions, Scenario, Sim};
/// use structops_tcp::{HostConfig, TcpHost};
///
/// let host = TcpHost::new(HostConfig::default())?;
/// let _cubic = host.load_object(include_bytes!("../../../../bpf/cubic.bpf.o"), "cubic.bpf.o", None)?;
/// let sc = Scenario {
///     flows: vec![FlowSpec::new("so_cubic", 10 * MS)],
///     bw_bps: 10_000_000,
///     buffer_bytes: Scenario::bdp_bytes(10_000_000, 10 * MS),
///     duration_ns: 400 * MS,
///     ..Scenario::default()
/// };
/// let mut sim = Sim::new(&host, &sc, RunOptions::default())?;
/// sim.run_until(200 * MS)?;
/// let flow = sim.flow(0).expect("one flow");
/// assert_eq!(flow.cc, "so_cubic");
/// assert!(flow.map_id.is_some()); // a struct_ops table runs it
/// assert!(flow.delivered_bytes > 0);
///
/// sim.set_congestion_control(0, "reno")?;
/// sim.run_until(400 * MS)?;
/// let flow = sim.flow(0).expect("one flow");
/// assert_eq!((flow.cc.as_str(), flow.map_id), ("reno", None));
/// let result = sim.finish();
/// assert_eq!(result.duration_ns, 400 * MS);
/// assert!(result.total_goodput_bps > 5e6, "{}", result.total_goodput_bps);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Sim<'h, 'o> {
    host: &'h TcpHost,
    sc: &'h Scenario,
    opts: RunOptions<'o>,
    ctx: Ctx,
    flows: Vec<Flow>,
    /// Per flow: the congestion control it starts with (the scenario's, unless changed
    /// before its start).
    start_cc: Vec<String>,
    series: Vec<Vec<FlowSample>>,
    queue_series: Vec<QueueSample>,
    record_series: bool,
    last_delivered: Vec<u64>,
    last_integral: u128,
    last_sample_t: u64,
    events: u64,
    progress_step: u64,
    end: u64,
    wall: Instant,
    /// The thread-local clock ties a run to its thread.
    _thread: PhantomData<*const ()>,
}

impl std::fmt::Debug for Sim<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now_ns", &self.ctx.now)
            .field("end_ns", &self.end)
            .field("flows", &self.flows.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// One flow between two slices of a [`Sim`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowState {
    /// The flow's index.
    pub flow: usize,
    /// Whether it has started.
    pub started: bool,
    /// The congestion control its sender runs now (the one it will start with, before
    /// it starts).
    pub cc: String,
    /// The id of the struct_ops map whose table the sender runs (`None` for a native
    /// congestion control, or before the start).
    pub map_id: Option<u32>,
    /// `snd_cwnd`.
    pub cwnd: u32,
    /// `snd_ssthresh`.
    pub ssthresh: u32,
    /// Smoothed RTT (µs).
    pub srtt_us: u32,
    /// `icsk_ca_state`.
    pub ca_state: u8,
    /// Payload bytes delivered in order to the receiver.
    pub delivered_bytes: u64,
    /// The sender's `bytes_acked`.
    pub bytes_acked: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
}

impl<'h, 'o> Sim<'h, 'o> {
    /// Sets up `sc` on `host` (on the calling thread, whose simulated clock it sets) at
    /// simulated time 0, before any event. `opts` are those of
    /// [`run_with`](super::run_with).
    ///
    /// # Errors
    ///
    /// [`SimError`]: an invalid scenario or an unknown congestion control.
    pub fn new(
        host: &'h TcpHost,
        sc: &'h Scenario,
        opts: RunOptions<'o>,
    ) -> Result<Sim<'h, 'o>, SimError> {
        sc.validate()?;
        let available = host.available();
        for (i, f) in sc.flows.iter().enumerate() {
            if !available.contains(&f.cc) {
                return Err(SimError::UnknownCc {
                    flow: i,
                    name: f.cc.clone(),
                    available: available.join(", "),
                });
            }
        }
        let wall = Instant::now();
        host.enter();
        let n = sc.flows.len();
        let tx_ns = (u128::from(WIRE_BYTES) * 8 * u128::from(SEC))
            .div_ceil(u128::from(sc.bw_bps))
            .max(1) as u64;
        let cap = (sc.buffer_bytes / u64::from(WIRE_BYTES)) as usize;
        let mut rng = Rng::new(sc.seed);
        let mut flows = Vec::with_capacity(n);
        let mut fwd_ns = Vec::with_capacity(n);
        for (i, f) in sc.flows.iter().enumerate() {
            let fwd = f.rtt_ns / 2;
            fwd_ns.push(fwd);
            let isn = rng.next_u64() as u32;
            flows.push(Flow::new(
                i as u32,
                host.socket(),
                host.socket(),
                f.rtt_ns - fwd,
                f.rtt_ns,
                isn,
            ));
        }
        let mut ctx = Ctx {
            now: 0,
            now_us: 0,
            ktime_ns: 0,
            jiffies: 0,
            hz: host.hz(),
            boot_ns: {
                clock::set_now_ns(0);
                clock::ktime_ns()
            },
            events: EventQueue::new(n),
            link: Bottleneck::new(tx_ns, cap, sc.ecn_threshold_pkts, n),
            fwd_ns,
            spikes: sc.flows.iter().map(|f| f.delay_spikes.clone()).collect(),
            last_arrival: vec![0; n],
            rng,
            loss: sc.loss,
            random_losses: 0,
            trace: sc.trace.then(Vec::new),
        };
        ctx.set_time(0);
        let end = sc.duration_ns;
        for (i, f) in sc.flows.iter().enumerate() {
            if f.start_ns <= end {
                ctx.events.push(f.start_ns, Kind::Start, i as u32);
            }
        }
        ctx.events.push(sc.sample_interval_ns, Kind::Sample, 0);
        let progress_step = (end / 100).max(1);
        if opts.progress.is_some() {
            ctx.events.push(progress_step, Kind::Progress, 0);
        }
        for (i, cb) in opts.callbacks.iter().enumerate() {
            if cb.at_ns < end {
                ctx.events
                    .push_full(cb.at_ns, Kind::Callback, 0, i as u64, 0, 0, 0, 0);
            }
        }

        let samples = ((end / sc.sample_interval_ns) as usize + 1).min(1 << 16);
        Ok(Sim {
            host,
            sc,
            opts,
            ctx,
            flows,
            start_cc: sc.flows.iter().map(|f| f.cc.clone()).collect(),
            series: (0..n).map(|_| Vec::with_capacity(samples)).collect(),
            queue_series: Vec::with_capacity(samples),
            record_series: true,
            last_delivered: vec![0u64; n],
            last_integral: 0,
            last_sample_t: 0,
            events: 0,
            progress_step,
            end,
            wall,
            _thread: PhantomData,
        })
    }

    /// Records no time series ([`SimResult::series`] and [`SimResult::queue_series`]
    /// stay empty): for long or open-ended runs driven in slices.
    pub fn without_series(mut self) -> Sim<'h, 'o> {
        self.record_series = false;
        self.series = (0..self.flows.len()).map(|_| Vec::new()).collect();
        self.queue_series = Vec::new();
        self
    }

    /// Simulated time (ns): the last slice's end, or the last event's time.
    pub fn now_ns(&self) -> u64 {
        self.ctx.now
    }

    /// The scenario's end (ns).
    pub fn end_ns(&self) -> u64 {
        self.end
    }

    /// Whether the run reached its end (no event is left before it).
    pub fn is_done(&self) -> bool {
        self.ctx.now >= self.end || self.ctx.events.peek_time().is_none_or(|t| t > self.end)
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Packets waiting at the bottleneck now.
    pub fn queue_len(&self) -> usize {
        self.ctx.link.len()
    }

    /// The number of flows.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Flow `i` now.
    pub fn flow(&self, i: usize) -> Option<FlowState> {
        let fl = self.flows.get(i)?;
        let on = fl.started;
        Some(FlowState {
            flow: i,
            started: on,
            cc: if on {
                fl.sk.ca_name()
            } else {
                self.start_cc.get(i).cloned().unwrap_or_default()
            },
            map_id: if on { fl.sk.ca_map_id() } else { None },
            cwnd: fl.sk.snd_cwnd,
            ssthresh: fl.sk.snd_ssthresh,
            srtt_us: fl.sk.srtt_us >> 3,
            ca_state: fl.sk.ca_state(),
            delivered_bytes: fl.rcv.delivered * u64::from(MSS),
            bytes_acked: fl.sk.bytes_acked,
            retransmits: fl.snd.retransmits,
            rtos: fl.snd.rtos,
        })
    }

    /// Switches flow `i` to the registered congestion control `name` now, as
    /// `setsockopt(TCP_CONGESTION)` on both ends of an established connection does
    /// (`tcp_set_congestion_control`: `release`, `icsk_ca_priv` zeroed, `init`;
    /// nothing happens for the one it runs). A flow that has not started yet starts
    /// with it.
    ///
    /// # Errors
    ///
    /// [`SimError::Invalid`] for no such flow, [`SimError::UnknownCc`] or
    /// [`SimError::SetCc`] for a name that is not registered.
    pub fn set_congestion_control(&mut self, i: usize, name: &str) -> Result<(), SimError> {
        let Some(fl) = self.flows.get_mut(i) else {
            return Err(SimError::Invalid {
                what: format!("no flow {i}"),
            });
        };
        if !fl.started {
            let available = self.host.available();
            if !available.iter().any(|a| a == name) {
                return Err(SimError::UnknownCc {
                    flow: i,
                    name: name.to_string(),
                    available: available.join(", "),
                });
            }
            if let Some(c) = self.start_cc.get_mut(i) {
                *c = name.to_string();
            }
            return Ok(());
        }
        fl.set_congestion_control(&mut self.ctx, self.host, name)
            .map_err(|errno| SimError::SetCc {
                flow: i,
                name: name.to_string(),
                errno,
            })
    }

    /// Processes every event up to simulated time `t_ns` (at most the scenario's end),
    /// then sets the clock to it.
    ///
    /// # Errors
    ///
    /// [`SimError::SetCc`] when a flow starting in the slice cannot set its congestion
    /// control (it was unregistered).
    pub fn run_until(&mut self, t_ns: u64) -> Result<(), SimError> {
        let limit = t_ns.min(self.end);
        self.advance(limit)?;
        if limit > self.ctx.now {
            self.ctx.set_time(limit);
        }
        Ok(())
    }

    /// Processes every event at or before `limit`.
    fn advance(&mut self, limit: u64) -> Result<(), SimError> {
        let Sim {
            host,
            sc,
            opts,
            ctx,
            flows,
            start_cc,
            series,
            queue_series,
            record_series,
            last_delivered,
            last_integral,
            last_sample_t,
            events,
            progress_step,
            end,
            ..
        } = self;
        let (host, sc, end) = (*host, *sc, *end);
        while ctx.events.peek_time().is_some_and(|t| t <= limit) {
            let Some(ev) = ctx.events.pop() else {
                break;
            };
            ctx.set_time(ev.time);
            *events += 1;
            let f = ev.flow as usize;
            match ev.kind {
                Kind::LinkDone => ctx.link_done(),
                Kind::Data => {
                    if let Some(fl) = flows.get_mut(f) {
                        fl.on_data(ctx, ev.a, ev.flags, ev.ts);
                    }
                }
                Kind::Ack => {
                    if let Some(fl) = flows.get_mut(f) {
                        let sack = (ev.c > 0).then(|| {
                            let lo = ev.a + u64::from(ev.b);
                            (lo, lo + u64::from(ev.c))
                        });
                        fl.on_ack(ctx, ev.a, sack, ev.flags != 0, ev.ts);
                    }
                }
                Kind::XmitTimer => {
                    if let Some(fl) = flows.get_mut(f) {
                        fl.on_xmit_timer(ctx, ev.time);
                    }
                }
                Kind::DelackTimer => {
                    if let Some(fl) = flows.get_mut(f) {
                        fl.on_delack_timer(ctx, ev.time);
                    }
                }
                Kind::PacingTimer => {
                    if let Some(fl) = flows.get_mut(f) {
                        fl.on_pacing_timer(ctx, ev.time);
                    }
                }
                Kind::Start => {
                    if let (Some(fl), Some(spec), Some(cc)) =
                        (flows.get_mut(f), sc.flows.get(f), start_cc.get(f))
                    {
                        fl.start(ctx, host, cc, spec.ecn)
                            .map_err(|errno| SimError::SetCc {
                                flow: f,
                                name: cc.clone(),
                                errno,
                            })?;
                    }
                }
                Kind::Sample => {
                    for (i, fl) in flows.iter().enumerate() {
                        let d = fl.rcv.delivered;
                        let on = fl.started;
                        if *record_series {
                            series[i].push(FlowSample {
                                t_ns: ev.time,
                                cwnd: if on { fl.sk.snd_cwnd } else { 0 },
                                ssthresh: if on { fl.sk.snd_ssthresh } else { 0 },
                                srtt_us: fl.sk.srtt_us >> 3,
                                ca_state: fl.sk.ca_state(),
                                goodput_bytes: (d - last_delivered[i]) * u64::from(MSS),
                            });
                        }
                        last_delivered[i] = d;
                    }
                    let integral = ctx.link.len_integral(ev.time);
                    let dt = ev.time - *last_sample_t;
                    if *record_series {
                        queue_series.push(QueueSample {
                            t_ns: ev.time,
                            len_pkts: ctx.link.len() as u32,
                            mean_len_pkts: if dt == 0 {
                                0.0
                            } else {
                                (integral - *last_integral) as f64 / dt as f64
                            },
                        });
                    }
                    *last_integral = integral;
                    *last_sample_t = ev.time;
                    ctx.events
                        .push(ev.time + sc.sample_interval_ns, Kind::Sample, 0);
                }
                Kind::Progress => {
                    if let Some(p) = opts.progress.as_mut() {
                        p(ev.time as f64 / end as f64);
                    }
                    ctx.events.push(ev.time + *progress_step, Kind::Progress, 0);
                }
                Kind::Callback => {
                    if let Some(cb) = opts.callbacks.get_mut(ev.a as usize) {
                        (cb.f)(host);
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the run at the scenario's end (whatever was simulated of it) and sums it up.
    pub fn finish(mut self) -> SimResult {
        if let Some(p) = self.opts.progress.as_mut() {
            p(1.0);
        }
        let Sim {
            sc,
            ctx,
            flows,
            series,
            queue_series,
            events,
            end,
            wall,
            ..
        } = self;
        let mut ctx = ctx;
        let n = flows.len();
        let wall_ns = wall.elapsed().as_nanos() as u64;
        let mut summaries = Vec::with_capacity(n);
        for (i, (fl, spec)) in flows.iter().zip(&sc.flows).enumerate() {
            let active = end.saturating_sub(spec.start_ns);
            let bytes = fl.rcv.delivered * u64::from(MSS);
            let q = ctx.link.per_flow[i];
            summaries.push(FlowSummary {
                flow: i,
                cc: spec.cc.clone(),
                rtt_ns: spec.rtt_ns,
                start_ns: spec.start_ns,
                delivered_bytes: bytes,
                goodput_bps: if active == 0 {
                    0.0
                } else {
                    bytes as f64 * 8.0 * SEC as f64 / active as f64
                },
                retransmits: fl.snd.retransmits,
                rtos: fl.snd.rtos,
                recoveries: fl.snd.recoveries,
                undos: fl.snd.undos,
                drops: q.drops,
                ce_marks: q.marks,
                mean_queue_delay_ns: if q.served == 0 {
                    0.0
                } else {
                    q.delay_sum as f64 / q.served as f64
                },
                final_cwnd: fl.sk.snd_cwnd,
                srtt_us: fl.sk.srtt_us >> 3,
                min_rtt_us: fl.sk.min_rtt(),
            });
        }
        let goodputs: Vec<f64> = summaries.iter().map(|s| s.goodput_bps).collect();
        let jain_all = jain(&goodputs);
        let integral = ctx.link.len_integral(end);
        let link = &ctx.link;
        let queue = QueueSummary {
            capacity_pkts: link.cap as u64,
            offered: link.offered,
            drops: link.drops,
            random_losses: ctx.random_losses,
            ce_marks: link.marks,
            mean_delay_ns: link.delays.mean(),
            p99_delay_ns: link.delays.quantile(0.99),
            max_delay_ns: link.delays.max(),
            mean_len_pkts: integral as f64 / end as f64,
            max_len_pkts: link.max_len as u64,
        };
        SimResult {
            duration_ns: end,
            total_goodput_bps: summaries
                .iter()
                .map(|s| s.delivered_bytes as f64 * 8.0 * SEC as f64 / end as f64)
                .sum(),
            jain: jain_all,
            flows: summaries,
            queue,
            series,
            queue_series,
            trace: ctx.trace.take().unwrap_or_default(),
            events,
            wall_ns,
            events_per_sec: if wall_ns == 0 {
                0.0
            } else {
                events as f64 * SEC as f64 / wall_ns as f64
            },
        }
    }
}

/// Runs the scenario to its end.
pub(crate) fn simulate(
    host: &TcpHost,
    sc: &Scenario,
    opts: RunOptions<'_>,
) -> Result<SimResult, SimError> {
    let mut sim = Sim::new(host, sc, opts)?;
    sim.advance(sim.end)?;
    Ok(sim.finish())
}
