//! The dumbbell options shared by `tcp simulate` and `tcp serve`: the flows, the
//! bottleneck and the run's seed, parsed once and turned into a [`Scenario`] the same way.

use clap::Args;
use structops_tcp::sim::{self, FlowSpec, Scenario};

use super::units::{self, Buffer, RttList};
use crate::error::CliError;

/// One bottleneck link shared by every flow (`--flows`, `--bw`, `--rtt`, `--buffer`,
/// `--ecn-threshold`, `--loss`, `--seed`).
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Number of flows (`tcp simulate` splits them evenly over its --cc groups).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub flows: u32,
    /// Bottleneck rate: 100Mbit, 1Gbit, 500kbit.
    #[arg(long, value_name = "RATE", default_value = "100Mbit", value_parser = units::bandwidth)]
    pub bw: u64,
    /// Round-trip propagation delay: 20ms; a comma list gives one per flow (10ms,40ms).
    #[arg(long, value_name = "TIME[,TIME...]", default_value = "20ms", value_parser = units::rtt_list)]
    pub rtt: RttList,
    /// Bottleneck buffer: bytes (150000, 64KiB) or a multiple of the bandwidth-delay
    /// product at the largest RTT (1bdp, 0.5bdp).
    #[arg(long, value_name = "SIZE", default_value = "1bdp", value_parser = units::buffer)]
    pub buffer: Buffer,
    /// Mark ECN-capable packets CE when this many packets already wait (all flows then
    /// negotiate ECN); without it the queue is drop-tail.
    #[arg(long = "ecn-threshold", value_name = "PKTS", value_parser = clap::value_parser!(u32).range(1..))]
    pub ecn_threshold: Option<u32>,
    /// Random loss probability per data packet: 0.001 or 0.1%.
    #[arg(long, value_name = "P", default_value = "0", value_parser = units::loss)]
    pub loss: f64,
    /// Seed of the run's random numbers (same seed, same run).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The options resolved against each other: an RTT per flow and the buffer in bytes.
#[derive(Debug)]
pub struct Dumbbell {
    /// Per flow, in nanoseconds.
    pub rtts: Vec<u64>,
    /// The bottleneck buffer.
    pub buffer_bytes: u64,
}

impl NetArgs {
    /// Checks the options against each other: `--rtt` gives one RTT or one per flow, and
    /// `--buffer` holds at least one packet. Errors are usage errors of `command`.
    pub fn dumbbell(&self, command: &'static [&'static str]) -> Result<Dumbbell, CliError> {
        let usage = |message| CliError::Usage { command, message };
        let n = self.flows as usize;
        let rtts = match self.rtt.0.as_slice() {
            [one] => vec![*one; n],
            list if list.len() == n => list.to_vec(),
            list => {
                return Err(usage(format!(
                    "--rtt lists {} RTTs for {n} flows (give one, or one per flow)",
                    list.len()
                )));
            }
        };
        let max_rtt = rtts.iter().copied().max().unwrap_or(0);
        let buffer_bytes = self.buffer.bytes(self.bw, max_rtt);
        if buffer_bytes < u64::from(sim::WIRE_BYTES) {
            return Err(usage(format!(
                "--buffer gives {buffer_bytes} bytes, less than one {}-byte packet",
                sim::WIRE_BYTES
            )));
        }
        Ok(Dumbbell { rtts, buffer_bytes })
    }

    /// The scenario: flow `i` runs the congestion control `cc_of(i)` at `d.rtts[i]`, with
    /// ECN when `--ecn-threshold` is given.
    pub fn scenario<'a>(
        &self,
        d: &Dumbbell,
        cc_of: impl Fn(usize) -> &'a str,
        duration_ns: u64,
        sample_interval_ns: u64,
    ) -> Scenario {
        Scenario {
            flows: d
                .rtts
                .iter()
                .enumerate()
                .map(|(i, &rtt)| FlowSpec {
                    ecn: self.ecn_threshold.is_some(),
                    ..FlowSpec::new(cc_of(i), rtt)
                })
                .collect(),
            bw_bps: self.bw,
            buffer_bytes: d.buffer_bytes,
            ecn_threshold_pkts: self.ecn_threshold,
            loss: self.loss,
            duration_ns,
            seed: self.seed,
            sample_interval_ns,
            trace: false,
        }
    }
}
