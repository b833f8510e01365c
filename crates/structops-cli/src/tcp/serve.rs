//! `structops tcp serve`: the TCP simulator paced against the wall clock, with a control
//! socket. `structops --host PATH struct_ops register x.bpf.o` switches every flow to the
//! newly registered congestion control at the next slice, `link update` replaces its
//! implementation under the same name, `struct_ops unregister` switches the flows back;
//! the status (per-flow goodput, congestion control, map) is read through the socket.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use structops_control::{Role, Serve, ServeConfig};
use structops_tcp::sim::{FlowState, RunOptions, SEC, Sim};
use structops_tcp::{HostConfig, TcpHost};

use super::net::NetArgs;
use super::spec::{self, CcSpec};
use super::units;
use super::{host_err, resolve};
use crate::error::CliError;
use crate::inproc::Engine;
use crate::output::Output;

/// `structops tcp serve`.
#[derive(Debug, Args)]
#[command(after_help = "\
Runs the dumbbell of `tcp simulate` paced against the wall clock (--speed times real \
time) and serves its runtime on a control socket, so that `structops --host PATH ...` \
(or a structops_control::ControlClient) inspects and changes it while it runs.

Congestion-control policy: every flow runs the NEWEST congestion control registered \
after startup (the last one `tcp_available_congestion_control` lists that was not there \
when serving began), or the startup --cc when there is none. So `struct_ops register \
x.bpf.o` switches every flow to x's table at the next slice, `struct_ops unregister` \
switches them back, and `link update` replaces the implementation under the same name \
(the flows re-initialise at their next congestion-control call). A switch is \
setsockopt(TCP_CONGESTION) on both ends of each connection: release, icsk_ca_priv \
zeroed, init; the window and ECN stay as they are.

Status (the control socket's status request): simulated and wall time, speed, the \
available congestion controls, and per flow its congestion control, the struct_ops map \
serving it, goodput over the last simulated second, cwnd, srtt, retransmits and bytes \
acked.

Prints `serving PATH` on stdout once the socket accepts connections. Runs until \
--duration of simulated time, or SIGINT/SIGTERM; then stops serving (the socket file is \
removed) and exits 0.")]
pub struct ServeArgs {
    /// The control socket to create (must not exist).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The flows' congestion control while none is registered through the socket:
    /// FILE.o[:MAP], native:NAME or bundled:NAME.
    #[arg(long = "cc", value_name = "SPEC", default_value = "bundled:cubic", value_parser = spec::cc_spec)]
    pub cc: CcSpec,
    /// The flows and the bottleneck.
    #[command(flatten)]
    pub net: NetArgs,
    /// Where BPF programs run.
    #[arg(long, value_enum, default_value_t = Engine::Jit)]
    pub engine: Engine,
    /// Simulated seconds per wall-clock second (`max`: as fast as possible).
    #[arg(long, value_name = "X", default_value = "1", value_parser = speed)]
    pub speed: f64,
    /// Stop after this much simulated time [default: run until SIGINT/SIGTERM].
    #[arg(long, value_name = "TIME", value_parser = units::duration_ns)]
    pub duration: Option<u64>,
    /// Simulated time between two looks at the registry and the status.
    #[arg(long, value_name = "TIME", default_value = "10ms", value_parser = units::duration_ns)]
    pub slice: u64,
    /// Also allow this uid on the socket, read-write or read-only (repeatable; the
    /// owner is allowed read-write unless given here).
    #[arg(long = "allow-uid", value_name = "UID[:ro|:rw]", value_parser = allow_uid)]
    pub allow_uid: Vec<(u32, Role)>,
}

/// `--speed`: a positive finite factor, or `max`.
fn speed(s: &str) -> Result<f64, String> {
    if matches!(s, "max" | "inf") {
        return Ok(f64::INFINITY);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number or 'max'")),
    }
}

/// `--allow-uid UID[:ro|:rw]`.
fn allow_uid(s: &str) -> Result<(u32, Role), String> {
    let (uid, role) = match s.split_once(':') {
        None => (s, Role::ReadWrite),
        Some((u, "rw")) => (u, Role::ReadWrite),
        Some((u, "ro")) => (u, Role::ReadOnly),
        Some((_, r)) => return Err(format!("'{r}' is not ro or rw")),
    };
    let uid = uid
        .parse::<u32>()
        .map_err(|_| format!("'{uid}' is not a numeric uid"))?;
    Ok((uid, role))
}

/// How long an open-ended run may simulate (1000 days): far beyond any session, and
/// far within the simulator's u64 nanoseconds.
const OPEN_END_NS: u64 = 1000 * 86_400 * SEC;

/// The window goodput is averaged over (simulated).
const GOODPUT_WINDOW_NS: u64 = SEC;

/// The status is rebuilt at most this often (wall clock), and after every switch.
const STATUS_EVERY: Duration = Duration::from_millis(50);

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::Release);
}

/// Routes SIGINT and SIGTERM to [`STOP`].
fn install_signal_handlers() -> Result<(), CliError> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags); the
        // handler only stores to an atomic, which is async-signal-safe.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut sa.sa_mask);
            libc::sigaction(sig, &raw const sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(CliError::Runtime {
                step: format!("installing the handler of signal {sig}"),
                errno: structops::Errno::EINVAL,
            });
        }
    }
    Ok(())
}

fn usage(message: String) -> CliError {
    CliError::Usage {
        command: &["tcp", "serve"],
        message,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The status is replaced whole, so a poisoned lock still holds a consistent value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The flows' congestion control by the policy: the newest one registered after
/// startup, else the fallback.
fn policy_cc(available: &[String], startup: &[String], fallback: &str) -> String {
    available
        .iter()
        .rev()
        .find(|n| !startup.contains(n))
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

/// Per-flow delivered bytes at past slice ends, for goodput over a trailing window.
struct Window {
    marks: VecDeque<(u64, Vec<u64>)>,
}

impl Window {
    /// Records the deliveries at `t` and drops marks no longer needed as a base.
    fn push(&mut self, t: u64, delivered: Vec<u64>) {
        self.marks.push_back((t, delivered));
        // Keep the newest mark at or before `t - window` as the base.
        while self.marks.len() > 1
            && self
                .marks
                .get(1)
                .is_some_and(|(t1, _)| t1 + GOODPUT_WINDOW_NS <= t)
        {
            self.marks.pop_front();
        }
    }

    /// Flow `i`'s goodput (Mbit/s) from the oldest mark to the newest; `None` until the
    /// marks span a whole window. (Over a shorter span, ACKs that arrive together at its
    /// edge would read as more than the bottleneck delivers.)
    fn mbps(&self, i: usize) -> Option<f64> {
        let ((t0, d0), (t1, d1)) = (self.marks.front()?, self.marks.back()?);
        let (a, b) = (d0.get(i)?, d1.get(i)?);
        if t1.saturating_sub(*t0) < GOODPUT_WINDOW_NS {
            return None;
        }
        Some(b.saturating_sub(*a) as f64 * 8.0 / ((t1 - t0) as f64 / 1e9) / 1e6)
    }
}

/// What the status shows besides the flows.
struct StatusCtx<'a> {
    a: &'a ServeArgs,
    buffer_bytes: u64,
    rtts: &'a [u64],
    fallback: &'a str,
    wall: Instant,
}

fn status(
    c: &StatusCtx<'_>,
    s: &Sim<'_, '_>,
    flows: &[FlowState],
    window: &Window,
    available: &[String],
    cc: &str,
    last_error: Option<&str>,
) -> Value {
    let rows: Vec<Value> = flows
        .iter()
        .map(|f| {
            json!({
                "id": f.flow,
                "started": f.started,
                "cc": f.cc,
                "map_id": f.map_id,
                "rtt_ns": c.rtts.get(f.flow).copied().unwrap_or(0),
                "goodput_mbps": window.mbps(f.flow),
                "cwnd": f.cwnd,
                "ssthresh": f.ssthresh,
                "srtt_us": f.srtt_us,
                "ca_state": f.ca_state,
                "retransmits": f.retransmits,
                "rtos": f.rtos,
                "bytes_acked": f.bytes_acked,
                "delivered_bytes": f.delivered_bytes,
            })
        })
        .collect();
    // Null until a whole window has been simulated, like each flow's.
    let total: Option<f64> = flows.iter().map(|f| window.mbps(f.flow)).sum();
    json!({
        "sim_time_ns": s.now_ns(),
        "sim_time_s": s.now_ns() as f64 / 1e9,
        "wall_s": c.wall.elapsed().as_secs_f64(),
        "speed": if c.a.speed.is_finite() { json!(c.a.speed) } else { json!("max") },
        "duration_ns": c.a.duration,
        "done": s.is_done(),
        "events": s.events(),
        "bottleneck": {
            "bw_bps": c.a.net.bw,
            "buffer_bytes": c.buffer_bytes,
            "queue_pkts": s.queue_len(),
        },
        "available": available,
        "fallback_cc": c.fallback,
        "cc": cc,
        "goodput_window_ns": GOODPUT_WINDOW_NS,
        "total_goodput_mbps": total,
        "flows": rows,
        "last_error": last_error,
    })
}

/// Sleeps until `due`, waking early on a stop signal.
fn sleep_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due || STOP.load(Ordering::Acquire) {
            return;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(20)));
    }
}

/// Runs `tcp serve`.
pub fn run(a: &ServeArgs, out: &Output) -> Result<(), CliError> {
    // The control socket logs what it refuses; a long-running host shows it on stderr.
    crate::logger::init();
    let dumbbell = a.net.dumbbell(&["tcp", "serve"])?;
    if a.slice == 0 {
        return Err(usage("--slice must be positive".into()));
    }

    let host = TcpHost::new(HostConfig {
        engine: a.engine.into(),
        ..HostConfig::default()
    })
    .map_err(host_err("setting up the TCP host".into()))?;
    host.enter();
    // Held to the end: the startup congestion control's registration.
    let fallback = resolve(&host, &a.cc)?;
    let startup = host.available();

    let duration = a.duration.unwrap_or(OPEN_END_NS);
    // No series is kept; the sample events only cost one event each.
    let sc = a.net.scenario(
        &dumbbell,
        |_| &fallback.name,
        duration,
        (duration / 1000).max(SEC),
    );
    let mut s = Sim::new(&host, &sc, RunOptions::default())
        .map_err(|source| CliError::Sim { source })?
        .without_series();

    let ctx = StatusCtx {
        a,
        buffer_bytes: dumbbell.buffer_bytes,
        rtts: &dumbbell.rtts,
        fallback: &fallback.name,
        wall: Instant::now(),
    };
    let mut window = Window {
        marks: VecDeque::new(),
    };
    let flows: Vec<FlowState> = (0..dumbbell.rtts.len()).filter_map(|i| s.flow(i)).collect();
    window.push(0, flows.iter().map(|f| f.delivered_bytes).collect());
    let shared = Arc::new(Mutex::new(status(
        &ctx,
        &s,
        &flows,
        &window,
        &startup,
        &fallback.name,
        None,
    )));

    install_signal_handlers()?;
    let mut config = ServeConfig::default();
    for &(uid, role) in &a.allow_uid {
        config = config.allow(uid, role);
    }
    let hook = shared.clone();
    let config = config.status(move || lock(&hook).clone());
    let server = host
        .runtime_arc()
        .serve(&a.socket, config)
        .map_err(|e| CliError::Runtime {
            step: format!("serving the control socket: {e}"),
            errno: match &e {
                structops_control::ServeError::Exists { .. } => structops::Errno::EEXIST,
                structops_control::ServeError::Io { source, .. } => match source.kind() {
                    std::io::ErrorKind::NotFound => structops::Errno::ENOENT,
                    std::io::ErrorKind::PermissionDenied => structops::Errno::EACCES,
                    std::io::ErrorKind::AddrInUse => structops::Errno::EEXIST,
                    _ => structops::Errno::EINVAL,
                },
            },
        })?;
    if out.json {
        out.json(&json!({ "serving": a.socket.display().to_string() }))?;
    } else {
        out.text(&format!("serving {}\n", a.socket.display()))?;
    }

    // Per flow: the congestion control the policy last set on it.
    let mut applied = vec![fallback.name.clone(); dumbbell.rtts.len()];
    let mut last_error: Option<String> = None;
    let mut last_status = Instant::now();
    let result = loop {
        if STOP.load(Ordering::Acquire) {
            break Ok("signal");
        }
        let available = host.available();
        let cc = policy_cc(&available, &startup, &fallback.name);
        let mut switched = false;
        for (i, done) in applied.iter_mut().enumerate() {
            if *done == cc {
                continue;
            }
            match s.set_congestion_control(i, &cc) {
                Ok(()) => {
                    *done = cc.clone();
                    switched = true;
                }
                // Unregistered in between: the next slice sees it gone.
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        let target = s.now_ns().saturating_add(a.slice);
        if let Err(e) = s.run_until(target) {
            break Err(CliError::Sim { source: e });
        }
        let flows: Vec<FlowState> = (0..dumbbell.rtts.len()).filter_map(|i| s.flow(i)).collect();
        window.push(
            s.now_ns(),
            flows.iter().map(|f| f.delivered_bytes).collect(),
        );
        let done = s.is_done();
        if switched || done || last_status.elapsed() >= STATUS_EVERY {
            let v = status(
                &ctx,
                &s,
                &flows,
                &window,
                &available,
                &cc,
                last_error.as_deref(),
            );
            let old = std::mem::replace(&mut *lock(&shared), v);
            drop(old);
            last_status = Instant::now();
        }
        if done {
            break Ok("end of --duration");
        }
        if a.speed.is_finite() {
            let ahead = Duration::from_secs_f64(s.now_ns() as f64 / 1e9 / a.speed);
            sleep_until(ctx.wall + ahead);
        }
    };
    // Stop serving first (the socket file goes away, registrations made through it are
    // detached), then close the flows.
    drop(server);
    let why = result?;
    let final_status = lock(&shared).clone();
    let sim_ns = s.now_ns();
    let r = s.finish();
    drop(fallback);
    if out.json {
        return out.json(&final_status);
    }
    let bytes: u64 = r.flows.iter().map(|f| f.delivered_bytes).sum();
    out.text(&format!(
        "stopped ({why}) after {} simulated, {} events, {:.2} Mbit/s delivered on average\n",
        units::fmt_time(sim_ns),
        r.events,
        bytes as f64 * 8.0 / (sim_ns.max(1) as f64 / 1e9) / 1e6,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use structops_tcp::sim::MS;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn policy_takes_the_newest_registration() {
        let startup = names(&["reno", "cubic", "dctcp", "bbr", "so_cubic"]);
        assert_eq!(policy_cc(&startup, &startup, "so_cubic"), "so_cubic");
        let mut now = startup.clone();
        now.push("so_demo".into());
        assert_eq!(policy_cc(&now, &startup, "so_cubic"), "so_demo");
        now.push("other".into());
        assert_eq!(policy_cc(&now, &startup, "so_cubic"), "other");
        // The native fallback is not the last of the startup list.
        assert_eq!(policy_cc(&startup[..4], &startup[..4], "reno"), "reno");
    }

    #[test]
    fn options() {
        assert_eq!(speed("20").unwrap(), 20.0);
        assert!(speed("max").unwrap().is_infinite());
        assert!(speed("0").is_err() && speed("-1").is_err() && speed("x").is_err());
        assert_eq!(allow_uid("1000").unwrap(), (1000, Role::ReadWrite));
        assert_eq!(allow_uid("7:ro").unwrap(), (7, Role::ReadOnly));
        assert!(allow_uid("7:rx").is_err() && allow_uid("bob").is_err());
    }

    #[test]
    fn goodput_window() {
        let mut w = Window {
            marks: VecDeque::new(),
        };
        // 125,000 bytes per 100 ms = 10 Mbit/s.
        for k in 0..=30u64 {
            w.push(k * 100 * MS, vec![k * 125_000]);
        }
        assert!((w.mbps(0).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(w.marks.front().map(|m| m.0), Some(2 * SEC));
        assert_eq!(w.mbps(3), None);
        // Less than a window simulated: no figure yet.
        let mut w = Window {
            marks: VecDeque::new(),
        };
        for k in 0..10u64 {
            w.push(k * 100 * MS, vec![k * 125_000]);
        }
        assert_eq!(w.mbps(0), None);
        w.push(SEC, vec![1_250_000]);
        assert!((w.mbps(0).unwrap() - 10.0).abs() < 1e-9);
    }
}
