//! `structops tcp simulate`: TCP flows through a simulated dumbbell, each running a
//! congestion control — a BPF object's `tcp_congestion_ops` map (bundled or a file) or a
//! native one — with a summary table, JSON, and cwnd/goodput plots. With no arguments:
//! four flows of the bundled BPF CUBIC through 100 Mbit/s, 20 ms RTT, one BDP of buffer,
//! for 30 simulated seconds.

mod net;
mod plot;
mod report;
mod serve;

use net::{Dumbbell, NetArgs};
mod spec;
mod units;

pub use plot::PlotError;

use std::fs;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use structops::loader::LoadedObject;
use structops_tcp::sim::{self, Callback, RunOptions, SimResult};
use structops_tcp::types::{TCP_CA_NAME_MAX, TcpCongestionOps};
use structops_tcp::{HostConfig, HostError, LoadedCc, TcpHost};

use crate::error::CliError;
use crate::inproc::Engine;
use crate::output::Output;
use plot::{Chart, Line};
use report::{FlowRow, GroupView, Report, ScenarioView, SwapView};
use spec::{Bundled, CcSpec, SwapSpec};
use units::Buffer;

/// `structops tcp ...`.
#[derive(Debug, Subcommand)]
pub enum TcpCmd {
    /// Simulate TCP flows through a dumbbell bottleneck, each running a congestion
    /// control: a BPF object's tcp_congestion_ops map or a native one. Prints a summary
    /// table (or JSON) and writes cwnd and goodput plots (SVG and PNG).
    Simulate(SimulateArgs),
    /// Run the simulator in real time (or faster) behind a control socket: flows switch to
    /// the congestion control registered through it; its status shows per-flow goodput.
    Serve(serve::ServeArgs),
}

/// `structops tcp simulate`.
#[derive(Debug, Args)]
#[command(after_help = "\
With no options: 4 flows of the bundled BPF CUBIC (so_cubic) through a 100Mbit \
bottleneck, 20ms RTT, one BDP of drop-tail buffer, 30s simulated, seed 1.

SPEC is one of:
  FILE.o[:MAP]   a BPF object's struct_ops map (MAP may be omitted when there is one)
  native:NAME    a native congestion control: reno, cubic, dctcp, bbr
  bundled:NAME   a BPF object built into this binary: cubic (so_cubic), reno (so_reno),
                 dctcp (so_dctcp)
Each --cc is a flow group; the --flows are split evenly over the groups, the first \
groups taking one more when they do not divide. A BPF table's name must not clash with \
another registered congestion control (the native ones are reno, cubic, dctcp and bbr).

--swap-at TIME:FILE.o[:MAP] link-updates, at TIME, the first group loaded from a \
.struct_ops.link map to the object's map: the new table must carry the same .name (as \
the kernel's tcp_update_congestion_control requires). Its flows re-initialise at their \
next congestion-control call.

Plots (cwnd.svg, cwnd.png, goodput.svg, goodput.png) go to --out.")]
pub struct SimulateArgs {
    /// A flow group's congestion control (repeatable): FILE.o[:MAP], native:NAME or
    /// bundled:NAME [default: bundled:cubic].
    #[arg(long = "cc", value_name = "SPEC", value_parser = spec::cc_spec)]
    pub cc: Vec<CcSpec>,
    /// The flows and the bottleneck.
    #[command(flatten)]
    pub net: NetArgs,
    /// Simulated time: 30s, 500ms.
    #[arg(long, value_name = "TIME", default_value = "30s", value_parser = units::duration_ns)]
    pub duration: u64,
    /// Where BPF programs run.
    #[arg(long, value_enum, default_value_t = Engine::Jit)]
    pub engine: Engine,
    /// Directory for the plots (created if missing).
    #[arg(long, value_name = "DIR", default_value = "structops-tcp-out")]
    pub out: PathBuf,
    /// At TIME, link-update the first group loaded from a .struct_ops.link map to
    /// FILE.o's MAP (same .name required).
    #[arg(long = "swap-at", value_name = "TIME:FILE.o[:MAP]", value_parser = spec::swap_spec)]
    pub swap_at: Option<SwapSpec>,
}

/// Runs a `tcp` command.
pub fn run(cmd: TcpCmd, out: &Output) -> Result<(), CliError> {
    match cmd {
        TcpCmd::Simulate(args) => simulate(&args, out),
        TcpCmd::Serve(args) => serve::run(&args, out),
    }
}

/// A usage error of `tcp simulate` (exit status 2).
fn usage(message: String) -> CliError {
    CliError::Usage {
        command: &["tcp", "simulate"],
        message,
    }
}

/// The flows of each group and their RTTs, checked against each other.
struct Plan {
    /// Per group: its spec and flow indices.
    groups: Vec<(CcSpec, Vec<usize>)>,
    /// The flows' RTTs and the buffer.
    dumbbell: Dumbbell,
}

impl Plan {
    fn new(a: &SimulateArgs) -> Result<Plan, CliError> {
        let specs = if a.cc.is_empty() {
            vec![CcSpec::Bundled(Bundled::Cubic)]
        } else {
            a.cc.clone()
        };
        let n = a.net.flows as usize;
        if n < specs.len() {
            return Err(usage(format!(
                "--flows {n} is fewer than the {} --cc groups (each group needs a flow)",
                specs.len()
            )));
        }
        let dumbbell = a.net.dumbbell(&["tcp", "simulate"])?;
        if let Some(w) = &a.swap_at
            && w.at_ns >= a.duration
        {
            return Err(usage(format!(
                "--swap-at {} is not before the end of the run (--duration {})",
                units::fmt_time(w.at_ns),
                units::fmt_time(a.duration)
            )));
        }
        // Split the flows evenly, the first groups taking the remainder.
        let (per, extra) = (n / specs.len(), n % specs.len());
        let mut next = 0;
        let groups = specs
            .into_iter()
            .enumerate()
            .map(|(g, s)| {
                let k = per + usize::from(g < extra);
                let ids = (next..next + k).collect();
                next += k;
                (s, ids)
            })
            .collect();
        Ok(Plan { groups, dumbbell })
    }
}

/// A congestion control resolved for a group.
struct Resolved {
    /// The registered name the flows use.
    name: String,
    /// The registration, for BPF ones.
    loaded: Option<LoadedCc>,
}

/// Reads the bytes of a BPF spec (the file, or the bundled object), with the path and
/// map to name.
fn object_bytes(spec: &CcSpec) -> Result<(Vec<u8>, String, Option<String>), CliError> {
    match spec {
        CcSpec::File { path, map } => {
            let bytes = fs::read(path).map_err(|source| CliError::Read {
                path: path.clone(),
                source,
            })?;
            Ok((bytes, path.display().to_string(), map.clone()))
        }
        CcSpec::Bundled(b) => Ok((b.bytes().to_vec(), b.path(), Some(b.map().to_string()))),
        CcSpec::Native(n) => Err(CliError::Unsupported {
            what: format!("native:{} is not a BPF object", n.name()),
        }),
    }
}

/// The host's error, naming the step.
fn host_err(step: String) -> impl FnOnce(HostError) -> CliError {
    move |source| CliError::Tcp {
        step,
        source: Box::new(source),
    }
}

/// Registers (or finds) a group's congestion control.
fn resolve(host: &TcpHost, spec: &CcSpec) -> Result<Resolved, CliError> {
    if let CcSpec::Native(n) = spec {
        let complete = |o: &TcpCongestionOps| {
            o.ssthresh.is_some()
                && o.undo_cwnd.is_some()
                && (o.cong_avoid.is_some() || o.cong_control.is_some())
        };
        let ok = structops_tcp::cc::builtins()
            .into_iter()
            .any(|o| o.name() == n.name() && complete(o));
        if !ok {
            return Err(CliError::Unsupported {
                what: format!("native:{} is not implemented in this build", n.name()),
            });
        }
        return Ok(Resolved {
            name: n.name().to_string(),
            loaded: None,
        });
    }
    let (bytes, path, map) = object_bytes(spec)?;
    let loaded = host
        .load_object(&bytes, &path, map.as_deref())
        .map_err(host_err("--cc".into()))?;
    Ok(Resolved {
        name: loaded.name.clone(),
        loaded: Some(loaded),
    })
}

/// The `.name` of `obj`'s struct_ops map `map` as it will be registered (from the value
/// laid out for the host's `tcp_congestion_ops`).
fn table_name(obj: &LoadedObject, map: &str) -> Option<String> {
    let st = obj
        .object()
        .maps()
        .iter()
        .find(|m| m.name() == map)?
        .struct_ops()?;
    let kern = st.kern()?;
    let off = kern.data_offset as usize + std::mem::offset_of!(TcpCongestionOps, name);
    let raw = kern.vdata.get(off..off + TCP_CA_NAME_MAX)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// The struct_ops maps of a loaded object.
fn struct_ops_maps(obj: &LoadedObject) -> Vec<String> {
    obj.object()
        .maps()
        .iter()
        .filter(|m| m.struct_ops().is_some())
        .map(|m| m.name().to_string())
        .collect()
}

/// Is `cc` registered through a `.struct_ops.link` map (so it can be link-updated)?
fn is_link(cc: &LoadedCc) -> bool {
    cc.object()
        .map(&cc.map)
        .and_then(|m| m.struct_ops())
        .is_some_and(|s| s.is_link_map())
}

/// What a live swap needs: the group it updates, the new object and its map.
struct Swap {
    at_ns: u64,
    group: usize,
    bytes: Vec<u8>,
    path: String,
    map: String,
    spec: String,
}

/// Checks `--swap-at` before the run: a group to update, an object that loads, a map
/// with the same table name.
fn prepare_swap(
    host: &TcpHost,
    w: &SwapSpec,
    resolved: &[Resolved],
    group_of: &[usize],
) -> Result<Swap, CliError> {
    let Some((slot, cc)) = resolved
        .iter()
        .enumerate()
        .find_map(|(i, r)| r.loaded.as_ref().filter(|c| is_link(c)).map(|c| (i, c)))
    else {
        return Err(CliError::Unsupported {
            what: "--swap-at: no --cc group was loaded from a .struct_ops.link map (a live \
                   swap is a link update)"
                .into(),
        });
    };
    let group = group_of.iter().position(|&s| s == slot).unwrap_or(0);
    let (bytes, path, map) = object_bytes(&w.spec)?;
    let step = format!("--swap-at {}", w.spec);
    let obj = host.load(&bytes, &path).map_err(host_err(step.clone()))?;
    let maps = struct_ops_maps(&obj);
    let map = match (map, maps.as_slice()) {
        (Some(m), _) if maps.contains(&m) => m,
        (None, [only]) => only.clone(),
        (m, _) => {
            return Err(CliError::NoSuchMap {
                name: m.unwrap_or_else(|| "(the only struct_ops map)".into()),
                path,
                available: maps,
            });
        }
    };
    match table_name(&obj, &map) {
        Some(n) if n == cc.name => {}
        n => {
            return Err(CliError::Unsupported {
                what: format!(
                    "--swap-at: {path} map {map} registers {:?}, but a link update must keep \
                     the name {:?} of the table it replaces",
                    n.unwrap_or_default(),
                    cc.name
                ),
            });
        }
    }
    Ok(Swap {
        at_ns: w.at_ns,
        group,
        bytes,
        path,
        map,
        spec: w.spec.to_string(),
    })
}

/// The time-series sample interval: about 600 samples per run, between 1 ms and 100 ms.
fn sample_interval(duration_ns: u64) -> u64 {
    (duration_ns / 600).clamp(sim::MS, 100 * sim::MS)
}

fn simulate(a: &SimulateArgs, out: &Output) -> Result<(), CliError> {
    let plan = Plan::new(a)?;
    let host = TcpHost::new(HostConfig {
        engine: a.engine.into(),
        ..HostConfig::default()
    })
    .map_err(host_err("setting up the TCP host".into()))?;
    host.enter();

    // One registration per distinct spec; groups with the same spec share it.
    let mut resolved: Vec<Resolved> = Vec::new();
    let mut specs: Vec<&CcSpec> = Vec::new();
    let mut group_of = Vec::new();
    for (spec, _) in &plan.groups {
        let slot = match specs.iter().position(|s| *s == spec) {
            Some(i) => i,
            None => {
                resolved.push(resolve(&host, spec)?);
                specs.push(spec);
                specs.len() - 1
            }
        };
        group_of.push(slot);
    }
    let swap = match &a.swap_at {
        Some(w) => Some(prepare_swap(&host, w, &resolved, &group_of)?),
        None => None,
    };

    let mut group_of_flow = vec![0; a.net.flows as usize];
    for (g, (_, ids)) in plan.groups.iter().enumerate() {
        for &i in ids {
            group_of_flow[i] = group_of[g];
        }
    }
    let sc = a.net.scenario(
        &plan.dumbbell,
        |i| &resolved[group_of_flow[i]].name,
        a.duration,
        sample_interval(a.duration),
    );

    let bar = progress_bar(out.json);
    let mut on_progress = |f: f64| bar.set_position((f.clamp(0.0, 1.0) * 1000.0) as u64);
    let mut swap_result: Option<Result<(), HostError>> = None;
    let mut callbacks = Vec::new();
    if let Some(w) = &swap {
        let slot = group_of[w.group];
        if let Some(cc) = resolved[slot].loaded.as_mut() {
            let result = &mut swap_result;
            callbacks.push(Callback {
                at_ns: w.at_ns,
                f: Box::new(move |host: &TcpHost| {
                    *result = Some(host.update(cc, &w.bytes, &w.path, Some(&w.map)));
                }),
            });
        }
    }
    let r = sim::run_with(
        &host,
        &sc,
        RunOptions {
            progress: Some(&mut on_progress),
            callbacks,
        },
    )
    .map_err(|source| CliError::Sim { source })?;
    bar.finish_and_clear();

    let swap_view = swap.as_ref().map(|w| SwapView {
        at_ns: w.at_ns,
        group: w.group,
        cc: resolved[group_of[w.group]].name.clone(),
        to: w.spec.clone(),
        error: match &swap_result {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("the simulation ended before the swap time".into()),
        },
    });
    let mut report = build_report(a, &plan, &resolved, &group_of, &r, swap_view);
    let charts = charts(&r, &report);
    fs::create_dir_all(&a.out).map_err(|source| CliError::Read {
        path: a.out.clone(),
        source,
    })?;
    for (stem, chart) in [("cwnd", &charts.0), ("goodput", &charts.1)] {
        let paths = plot::write(&a.out, stem, chart).map_err(CliError::Plot)?;
        report
            .plots
            .extend(paths.iter().map(|p| p.display().to_string()));
    }

    if out.json {
        let v = serde_json::to_value(&report).map_err(|e| CliError::Unsupported {
            what: format!("JSON encoding of the report: {e}"),
        })?;
        out.json(&v)?;
    } else {
        out.text(&report.text())?;
    }
    if let Some(Some(e)) = report.swap.as_ref().map(|s| &s.error) {
        return Err(CliError::Unsupported {
            what: format!("--swap-at: {e}"),
        });
    }
    Ok(())
}

/// The progress bar on stderr: hidden with --json, and by indicatif when stderr is not
/// a terminal.
fn progress_bar(json: bool) -> ProgressBar {
    let target = if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(1000), target);
    if let Ok(style) = ProgressStyle::with_template(
        "simulating {bar:40.cyan/blue} {percent:>3}%  elapsed {elapsed}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn build_report(
    a: &SimulateArgs,
    plan: &Plan,
    resolved: &[Resolved],
    group_of: &[usize],
    r: &SimResult,
    swap: Option<SwapView>,
) -> Report {
    let groups = plan
        .groups
        .iter()
        .enumerate()
        .map(|(g, (spec, ids))| {
            let res = &resolved[group_of[g]];
            GroupView {
                spec: spec.to_string(),
                cc: res.name.clone(),
                object: res.loaded.as_ref().map(|c| c.path.clone()),
                map: res.loaded.as_ref().map(|c| c.map.clone()),
                flows: ids.clone(),
            }
        })
        .collect();
    let flows = r
        .flows
        .iter()
        .map(|f| FlowRow {
            id: f.flow,
            cc: f.cc.clone(),
            rtt_ns: f.rtt_ns,
            goodput_bps: f.goodput_bps,
            retransmits: f.retransmits,
            rtos: f.rtos,
            drops: f.drops,
            ce_marks: f.ce_marks,
            final_cwnd: f.final_cwnd,
        })
        .collect();
    let buffer = match a.net.buffer {
        Buffer::Bdp(k) => format!("{k}bdp"),
        Buffer::Bytes(b) => format!("{b}B"),
    };
    Report {
        scenario: ScenarioView {
            flows: a.net.flows as usize,
            bw_bps: a.net.bw,
            buffer_bytes: plan.dumbbell.buffer_bytes,
            buffer,
            ecn_threshold_pkts: a.net.ecn_threshold,
            loss: a.net.loss,
            duration_ns: a.duration,
            seed: a.net.seed,
            engine: match a.engine {
                Engine::Jit => "jit".into(),
                Engine::Interp => "interp".into(),
            },
            sample_interval_ns: sample_interval(a.duration),
        },
        groups,
        flows,
        total_goodput_bps: r.total_goodput_bps,
        utilization: r.total_goodput_bps / a.net.bw as f64,
        mean_queue_delay_ns: r.queue.mean_delay_ns,
        p99_queue_delay_ns: r.queue.p99_delay_ns,
        drops: r.queue.drops,
        jain: r.jain,
        events: r.events,
        wall_ns: r.wall_ns,
        events_per_sec: r.events_per_sec,
        swap,
        plots: Vec::new(),
    }
}

/// The cwnd (packets) and goodput (Mbit/s) charts, one line per flow.
fn charts(r: &SimResult, report: &Report) -> (Chart, Chart) {
    let x_max = r.duration_ns as f64 / 1e9;
    let name = |i: usize| {
        let f = report.flows.get(i);
        format!(
            "flow {i} {} {}",
            f.map(|f| f.cc.as_str()).unwrap_or(""),
            f.map(|f| units::fmt_time(f.rtt_ns)).unwrap_or_default()
        )
    };
    let max_rtt = report.flows.iter().map(|f| f.rtt_ns).max().unwrap_or(0);
    let window_ns = goodput_window(r.duration_ns, max_rtt);
    let mut cwnd = Vec::new();
    let mut goodput = Vec::new();
    for (i, s) in r.series.iter().enumerate() {
        cwnd.push(Line {
            name: name(i),
            points: s
                .iter()
                .map(|x| (x.t_ns as f64 / 1e9, f64::from(x.cwnd)))
                .collect(),
        });
        goodput.push(Line {
            name: name(i),
            points: windowed_rate(s.iter().map(|x| (x.t_ns, x.goodput_bytes)), window_ns),
        });
    }
    let marker = report.swap.as_ref().map(|w| {
        // The object's file name, not its whole path, fits in the legend.
        let to = w.to.rsplit('/').next().unwrap_or(&w.to);
        (w.at_ns as f64 / 1e9, format!("swap to {to}"))
    });
    let sc = &report.scenario;
    let what = format!(
        "{} flows, {}, {}",
        sc.flows,
        units::fmt_bw(sc.bw_bps),
        units::fmt_time(sc.duration_ns)
    );
    (
        Chart {
            title: format!("cwnd ({what})"),
            y_desc: "cwnd (packets)".into(),
            x_max,
            lines: cwnd,
            marker: marker.clone(),
        },
        Chart {
            title: format!("goodput ({what})"),
            y_desc: format!("goodput (Mbit/s, {} average)", units::fmt_time(window_ns)),
            x_max,
            lines: goodput,
            marker,
        },
    )
}

/// The averaging window of the goodput plot: deliveries come in bursts of an RTT or
/// less, so a rate per sample interval is noise. A fiftieth of the run, at least five
/// RTTs, rounded to 10 ms.
fn goodput_window(duration_ns: u64, max_rtt_ns: u64) -> u64 {
    let w = (duration_ns / 50).max(5 * max_rtt_ns).max(10 * sim::MS);
    w.div_ceil(10 * sim::MS) * 10 * sim::MS
}

/// Rates (Mbit/s) over the trailing `window_ns` at each sample `(t_ns, bytes since the
/// previous sample)`; shorter at the start.
fn windowed_rate(samples: impl Iterator<Item = (u64, u64)>, window_ns: u64) -> Vec<(f64, f64)> {
    let samples: Vec<(u64, u64)> = samples.collect();
    let mut out = Vec::with_capacity(samples.len());
    let (mut lo, mut bytes) = (0usize, 0u64);
    for (hi, &(t, b)) in samples.iter().enumerate() {
        bytes += b;
        while lo < hi && samples[lo].0 + window_ns <= t {
            bytes -= samples[lo].1;
            lo += 1;
        }
        // The window starts at the sample before `lo` (or at 0).
        let start = if lo == 0 { 0 } else { samples[lo - 1].0 };
        let span = t.saturating_sub(start).max(1);
        out.push((
            t as f64 / 1e9,
            bytes as f64 * 8.0 / (span as f64 / 1e9) / 1e6,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodput_windows() {
        assert_eq!(goodput_window(30 * sim::SEC, 20 * sim::MS), 600 * sim::MS);
        assert_eq!(goodput_window(2 * sim::SEC, 20 * sim::MS), 100 * sim::MS);
        assert_eq!(goodput_window(sim::SEC, 33 * sim::MS), 170 * sim::MS);
    }

    #[test]
    fn windowed_rates() {
        // 1250 bytes every ms = 10 Mbit/s, averaged over 4 ms.
        let s = (1..=20).map(|k| (k * sim::MS, 1250));
        let r = windowed_rate(s, 4 * sim::MS);
        assert_eq!(r.len(), 20);
        for (t, v) in r {
            assert!((v - 10.0).abs() < 1e-9, "{t}: {v}");
        }
        // A burst is spread over the window.
        let s = [
            (sim::MS, 0),
            (2 * sim::MS, 4000),
            (3 * sim::MS, 0),
            (4 * sim::MS, 0),
        ];
        let r = windowed_rate(s.into_iter(), 2 * sim::MS);
        assert_eq!(r[1].1, 16.0);
        assert_eq!(r[2].1, 16.0);
        assert_eq!(r[3].1, 0.0);
    }
}
