//! What `tcp simulate` prints: the run's summary as a table or as JSON.

use serde::Serialize;

use super::units::{fmt_bw, fmt_time};

/// The scenario as run.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioView {
    /// Number of flows.
    pub flows: usize,
    /// Bottleneck rate (bit/s).
    pub bw_bps: u64,
    /// Bottleneck buffer (bytes).
    pub buffer_bytes: u64,
    /// The buffer as given (`1bdp`, `150000`, ...).
    pub buffer: String,
    /// CE-marking threshold (packets), if any.
    pub ecn_threshold_pkts: Option<u32>,
    /// Random loss probability.
    pub loss: f64,
    /// Simulated time (ns).
    pub duration_ns: u64,
    /// Seed.
    pub seed: u64,
    /// `jit` or `interp`.
    pub engine: String,
    /// Time-series sample interval (ns).
    pub sample_interval_ns: u64,
}

/// One flow group (`--cc`).
#[derive(Clone, Debug, Serialize)]
pub struct GroupView {
    /// The spec as given (`bundled:cubic`, `native:reno`, `x.bpf.o:map`).
    pub spec: String,
    /// The congestion control's registered name.
    pub cc: String,
    /// The object it was loaded from, if BPF.
    pub object: Option<String>,
    /// The struct_ops map, if BPF.
    pub map: Option<String>,
    /// The flows of the group.
    pub flows: Vec<usize>,
}

/// One flow's results.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    /// Flow index.
    pub id: usize,
    /// Congestion control (registered name).
    pub cc: String,
    /// Round-trip propagation delay (ns).
    pub rtt_ns: u64,
    /// Goodput (bit/s).
    pub goodput_bps: f64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Retransmission timeouts.
    pub rtos: u64,
    /// Its packets dropped at the bottleneck.
    pub drops: u64,
    /// Its packets marked CE.
    pub ce_marks: u64,
    /// `snd_cwnd` at the end (packets).
    pub final_cwnd: u32,
}

/// The live swap (`--swap-at`).
#[derive(Clone, Debug, Serialize)]
pub struct SwapView {
    /// Simulated time of the link update (ns).
    pub at_ns: u64,
    /// The group whose link was updated.
    pub group: usize,
    /// The congestion control's name (unchanged by the update).
    pub cc: String,
    /// The new table's spec.
    pub to: String,
    /// `None` when the update succeeded, else why not.
    pub error: Option<String>,
}

/// The run's summary.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: ScenarioView,
    /// The flow groups.
    pub groups: Vec<GroupView>,
    /// Per flow.
    pub flows: Vec<FlowRow>,
    /// Sum of the goodputs (bit/s).
    pub total_goodput_bps: f64,
    /// Total goodput / bottleneck rate.
    pub utilization: f64,
    /// Mean queueing delay at the bottleneck (ns).
    pub mean_queue_delay_ns: f64,
    /// 99th percentile queueing delay (ns).
    pub p99_queue_delay_ns: u64,
    /// Packets dropped at the full buffer.
    pub drops: u64,
    /// Jain's fairness index over the goodputs.
    pub jain: f64,
    /// Simulator events processed.
    pub events: u64,
    /// Wall-clock time of the simulation (ns).
    pub wall_ns: u64,
    /// Events per wall-clock second.
    pub events_per_sec: f64,
    /// The live swap, if one was asked for.
    pub swap: Option<SwapView>,
    /// The plot files written.
    pub plots: Vec<String>,
}

/// `ns` as milliseconds with two decimals.
fn ms(ns: f64) -> String {
    format!("{:.2}ms", ns / 1e6)
}

/// A count with SI suffix (`12.3M`).
fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl Report {
    /// The summary as text: a header, one row per flow, the totals.
    pub fn text(&self) -> String {
        let sc = &self.scenario;
        let mut s = String::new();
        let queue = match sc.ecn_threshold_pkts {
            Some(k) => format!("ECN marking above {k} packets"),
            None => "drop-tail".to_string(),
        };
        s.push_str(&format!(
            "{} flows through {} ({} buffer, {} bytes, {queue}{}), {} simulated, seed {}, {}\n",
            sc.flows,
            fmt_bw(sc.bw_bps),
            sc.buffer,
            sc.buffer_bytes,
            if sc.loss > 0.0 {
                format!(", {}% random loss", sc.loss * 100.0)
            } else {
                String::new()
            },
            fmt_time(sc.duration_ns),
            sc.seed,
            sc.engine,
        ));
        for g in &self.groups {
            let from = match (&g.object, &g.map) {
                (Some(_), Some(m)) if g.spec.starts_with("bundled:") => {
                    format!("{}, map {m}", g.spec)
                }
                (Some(o), Some(m)) => format!("{o}, map {m}"),
                _ => "native".to_string(),
            };
            s.push_str(&format!(
                "  flows {}: {} ({from})\n",
                ranges(&g.flows),
                g.cc,
            ));
        }
        if let Some(w) = &self.swap {
            s.push_str(&format!(
                "  swap at {}: {} -> {}: {}\n",
                fmt_time(w.at_ns),
                w.cc,
                w.to,
                w.error.as_deref().unwrap_or("done")
            ));
        }
        s.push('\n');
        let ccw = self
            .flows
            .iter()
            .map(|f| f.cc.len())
            .max()
            .unwrap_or(0)
            .max(2);
        s.push_str(&format!(
            "{:>4}  {:<ccw$}  {:>8}  {:>14}  {:>11}\n",
            "flow", "cc", "rtt", "goodput Mbit/s", "retransmits"
        ));
        for f in &self.flows {
            s.push_str(&format!(
                "{:>4}  {:<ccw$}  {:>8}  {:>14.2}  {:>11}\n",
                f.id,
                f.cc,
                fmt_time(f.rtt_ns),
                f.goodput_bps / 1e6,
                f.retransmits
            ));
        }
        let retrans: u64 = self.flows.iter().map(|f| f.retransmits).sum();
        s.push_str(&format!(
            "{:>4}  {:<ccw$}  {:>8}  {:>14.2}  {:>11}\n\n",
            "all",
            "",
            "",
            self.total_goodput_bps / 1e6,
            retrans
        ));
        s.push_str(&format!(
            "utilization      {:.1}% of {}\n",
            self.utilization * 100.0,
            fmt_bw(sc.bw_bps)
        ));
        s.push_str(&format!(
            "queueing delay   mean {}, p99 {}\n",
            ms(self.mean_queue_delay_ns),
            ms(self.p99_queue_delay_ns as f64)
        ));
        s.push_str(&format!("Jain fairness    {:.4}\n", self.jain));
        s.push_str(&format!(
            "events           {} in {:.2}s wall ({} events/s)\n",
            self.events,
            self.wall_ns as f64 / 1e9,
            si(self.events_per_sec)
        ));
        if !self.plots.is_empty() {
            s.push('\n');
            for p in &self.plots {
                s.push_str(&format!("wrote {p}\n"));
            }
        }
        s
    }
}

/// Flow indices as ranges: `0-3`, `0, 2, 4-5`.
fn ranges(ids: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            ids[i].to_string()
        } else {
            format!("{}-{}", ids[i], ids[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[0, 2, 4, 5]), "0, 2, 4-5");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn counts() {
        assert_eq!(si(12_345_678.0), "12.35M");
        assert_eq!(si(999.0), "999");
        assert_eq!(ms(1_500_000.0), "1.50ms");
    }
}
