//! The event loop: what every event does, the shared state of a run ([`Ctx`]) and the
//! result.

use std::time::Instant;

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

/// Runs the scenario.
pub(crate) fn simulate(
    host: &TcpHost,
    sc: &Scenario,
    mut opts: RunOptions<'_>,
) -> Result<SimResult, SimError> {
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
    let mut series: Vec<Vec<FlowSample>> = (0..n).map(|_| Vec::with_capacity(samples)).collect();
    let mut queue_series = Vec::with_capacity(samples);
    let mut last_delivered = vec![0u64; n];
    let mut last_integral = 0u128;
    let mut last_sample_t = 0u64;
    let mut events = 0u64;

    while let Some(ev) = ctx.events.pop() {
        if ev.time > end {
            break;
        }
        ctx.set_time(ev.time);
        events += 1;
        let f = ev.flow as usize;
        match ev.kind {
            Kind::LinkDone => ctx.link_done(),
            Kind::Data => {
                if let Some(fl) = flows.get_mut(f) {
                    fl.on_data(&mut ctx, ev.a, ev.flags, ev.ts);
                }
            }
            Kind::Ack => {
                if let Some(fl) = flows.get_mut(f) {
                    let sack = (ev.c > 0).then(|| {
                        let lo = ev.a + u64::from(ev.b);
                        (lo, lo + u64::from(ev.c))
                    });
                    fl.on_ack(&mut ctx, ev.a, sack, ev.flags != 0, ev.ts);
                }
            }
            Kind::XmitTimer => {
                if let Some(fl) = flows.get_mut(f) {
                    fl.on_xmit_timer(&mut ctx, ev.time);
                }
            }
            Kind::DelackTimer => {
                if let Some(fl) = flows.get_mut(f) {
                    fl.on_delack_timer(&mut ctx, ev.time);
                }
            }
            Kind::PacingTimer => {
                if let Some(fl) = flows.get_mut(f) {
                    fl.on_pacing_timer(&mut ctx, ev.time);
                }
            }
            Kind::Start => {
                if let (Some(fl), Some(spec)) = (flows.get_mut(f), sc.flows.get(f)) {
                    fl.start(&mut ctx, host, &spec.cc, spec.ecn)
                        .map_err(|errno| SimError::SetCc {
                            flow: f,
                            name: spec.cc.clone(),
                            errno,
                        })?;
                }
            }
            Kind::Sample => {
                for (i, fl) in flows.iter().enumerate() {
                    let d = fl.rcv.delivered;
                    let on = fl.started;
                    series[i].push(FlowSample {
                        t_ns: ev.time,
                        cwnd: if on { fl.sk.snd_cwnd } else { 0 },
                        ssthresh: if on { fl.sk.snd_ssthresh } else { 0 },
                        srtt_us: fl.sk.srtt_us >> 3,
                        ca_state: fl.sk.ca_state(),
                        goodput_bytes: (d - last_delivered[i]) * u64::from(MSS),
                    });
                    last_delivered[i] = d;
                }
                let integral = ctx.link.len_integral(ev.time);
                let dt = ev.time - last_sample_t;
                queue_series.push(QueueSample {
                    t_ns: ev.time,
                    len_pkts: ctx.link.len() as u32,
                    mean_len_pkts: if dt == 0 {
                        0.0
                    } else {
                        (integral - last_integral) as f64 / dt as f64
                    },
                });
                last_integral = integral;
                last_sample_t = ev.time;
                ctx.events
                    .push(ev.time + sc.sample_interval_ns, Kind::Sample, 0);
            }
            Kind::Progress => {
                if let Some(p) = opts.progress.as_mut() {
                    p(ev.time as f64 / end as f64);
                }
                ctx.events.push(ev.time + progress_step, Kind::Progress, 0);
            }
            Kind::Callback => {
                if let Some(cb) = opts.callbacks.get_mut(ev.a as usize) {
                    (cb.f)(host);
                }
            }
        }
    }
    if let Some(p) = opts.progress.as_mut() {
        p(1.0);
    }

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
    Ok(SimResult {
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
    })
}
