//! End-to-end tests of `structops tcp simulate`: short runs with native, bundled and
//! file congestion controls (table, JSON, plot files), the no-argument main job, a live
//! swap, and the error contract for bad input (exit 2 for usage, 1 for failures, a
//! message, never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_structops"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("structops runs")
}

fn structops(args: &[&str]) -> Output {
    run_in(Path::new(ROOT), args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory for one test's plots.
fn out_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("structops-tcp-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The four plots exist in `dir` and are an SVG document and a PNG image each.
fn assert_plots(dir: &Path) {
    for stem in ["cwnd", "goodput"] {
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg"),
            "{stem}.svg: {}",
            &svg[..svg.len().min(80)]
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{stem}.svg is complete");
        assert!(svg.contains("<polyline"), "{stem}.svg has lines");
        let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}.png");
        assert!(png.len() > 5000, "{stem}.png has content");
    }
}

/// The table's flow rows: (id, cc, goodput Mbit/s, retransmits).
fn rows(table: &str) -> Vec<(usize, String, f64, u64)> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [id, cc, _rtt, goodput, retrans] => Some((
                    id.parse().ok()?,
                    cc.to_string(),
                    goodput.parse().ok()?,
                    retrans.parse().ok()?,
                )),
                _ => None,
            }
        })
        .collect()
}

/// A value after `label` on its line of the summary (`Jain fairness    0.99`).
fn figure(table: &str, label: &str) -> f64 {
    let line = table
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no '{label}' line in\n{table}"));
    line[label.len()..]
        .split_whitespace()
        .find_map(|w| {
            w.trim_end_matches(|c: char| c.is_ascii_alphabetic() || "%,".contains(c))
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no number after '{label}' in\n{table}"))
}

#[test]
fn native_and_bundled_groups_share_the_bottleneck() {
    let dir = out_dir("groups");
    let o = structops(&[
        "tcp",
        "simulate",
        "--duration",
        "2s",
        "--cc",
        "native:reno",
        "--cc",
        "bundled:cubic",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}\n{text}", stderr(&o));
    let rows = rows(&text);
    let ids: Vec<usize> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, [0, 1, 2, 3], "{text}");
    let ccs: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(ccs, ["reno", "reno", "so_cubic", "so_cubic"], "{text}");
    // Every flow moves data; together they fill most of 100 Mbit/s and no more.
    let total: f64 = rows.iter().map(|r| r.2).sum();
    assert!(rows.iter().all(|r| r.2 > 5.0), "{text}");
    assert!(total > 70.0 && total <= 100.0, "{text}");
    let util = figure(&text, "utilization");
    assert!((util - total).abs() < 0.2, "{text}");
    let jain = figure(&text, "Jain fairness");
    assert!(jain > 0.25 && jain <= 1.0, "{text}");
    // A one-BDP buffer at 20 ms: queueing delay at most ~20 ms.
    let qdelay = figure(&text, "queueing delay   mean");
    assert!(qdelay > 0.0 && qdelay < 25.0, "{text}");
    assert!(figure(&text, "events") > 1000.0, "{text}");
    assert!(text.contains("flows 0-1: reno (native)"), "{text}");
    assert!(
        text.contains("flows 2-3: so_cubic (bundled:cubic, map cubic)"),
        "{text}"
    );
    for f in ["cwnd.svg", "cwnd.png", "goodput.svg", "goodput.png"] {
        assert!(
            text.contains(&format!("wrote {}", dir.join(f).display())),
            "{text}"
        );
    }
    assert_plots(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_has_the_same_summary() {
    let dir = out_dir("json");
    let o = structops(&[
        "--json",
        "tcp",
        "simulate",
        "--duration",
        "1s",
        "--flows",
        "3",
        "--cc",
        "bundled:reno",
        "--rtt",
        "10ms,20ms,40ms",
        "--bw",
        "50Mbit",
        "--engine",
        "interp",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).is_empty(),
        "no progress bar with --json: {}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let flows = v["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 3);
    let rtts: Vec<u64> = flows
        .iter()
        .map(|f| f["rtt_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(rtts, [10_000_000, 20_000_000, 40_000_000]);
    assert!(flows.iter().all(|f| f["cc"] == "so_reno"));
    let sum: f64 = flows
        .iter()
        .map(|f| f["goodput_bps"].as_f64().unwrap())
        .sum();
    let total = v["total_goodput_bps"].as_f64().unwrap();
    assert!(
        (sum - total).abs() < 1.0 && total > 20e6 && total <= 50e6,
        "{v:#}"
    );
    assert_eq!(v["scenario"]["engine"], "interp");
    assert_eq!(v["scenario"]["bw_bps"], 50_000_000);
    // 1 BDP at the largest RTT: 50 Mbit/s x 40 ms / 8.
    assert_eq!(v["scenario"]["buffer_bytes"], 250_000);
    assert!(v["events_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(v["plots"].as_array().unwrap().len(), 4);
    assert_plots(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's main command: no arguments, the bundled BPF CUBIC, plots in
/// `./structops-tcp-out`.
#[test]
fn no_arguments_runs_the_default_scenario() {
    let dir = out_dir("default");
    let o = run_in(&dir, &["tcp", "simulate"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}\n{text}", stderr(&o));
    assert!(
        text.starts_with("4 flows through 100Mbit (1bdp buffer, 250000 bytes, drop-tail), 30s"),
        "{text}"
    );
    let rows = rows(&text);
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows.iter().all(|r| r.1 == "so_cubic"), "{text}");
    let total: f64 = rows.iter().map(|r| r.2).sum();
    assert!(total > 85.0 && total <= 100.0, "{text}");
    assert!(figure(&text, "Jain fairness") > 0.8, "{text}");
    assert_plots(&dir.join("structops-tcp-out"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn swap_at_link_updates_mid_run() {
    let dir = out_dir("swap");
    let o = structops(&[
        "tcp",
        "simulate",
        "--duration",
        "2s",
        "--flows",
        "2",
        "--swap-at",
        "1s:bpf/cubic.bpf.o:cubic",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}\n{text}", stderr(&o));
    assert!(
        text.contains("swap at 1s: so_cubic -> bpf/cubic.bpf.o:cubic: done"),
        "{text}"
    );
    let svg = std::fs::read_to_string(dir.join("cwnd.svg")).unwrap();
    assert!(svg.contains("swap"), "the swap is marked on the plot");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--cc", "native:vegas"],
            "unknown native congestion control 'vegas'",
        ),
        (
            &["--cc", "bundled:bbr"],
            "unknown bundled congestion control 'bbr'",
        ),
        (&["--cc", "x.o:"], "empty map name"),
        (&["--bw", "100"], "needs a unit"),
        (&["--bw", "100mbps"], "bits per second"),
        (&["--bw", "fast"], "does not start with a number"),
        (&["--duration", "0s"], "greater than zero"),
        (&["--duration", "30"], "needs a unit"),
        (&["--duration", "2h"], "unknown time unit"),
        (&["--rtt", "10ms,20ms"], "--rtt lists 2 RTTs for 4 flows"),
        (&["--rtt", "10ms,,20ms"], "does not start with a number"),
        (&["--flows", "0"], "--flows"),
        (
            &[
                "--flows",
                "1",
                "--cc",
                "native:reno",
                "--cc",
                "native:cubic",
            ],
            "fewer than the 2 --cc groups",
        ),
        (&["--loss", "1.5"], "must be below 1"),
        (&["--buffer", "10"], "less than one 1500-byte packet"),
        (&["--buffer", "3parsecs"], "unknown buffer unit"),
        (&["--ecn-threshold", "0"], "--ecn-threshold"),
        (&["--engine", "gpu"], "--engine"),
        (
            &["--swap-at", "5s:bpf/cubic.bpf.o", "--duration", "2s"],
            "not before the end of the run",
        ),
        (
            &["--swap-at", "1s:native:reno"],
            "not a native congestion control",
        ),
        (
            &["--swap-at", "bpf/cubic.bpf.o"],
            "expected TIME:FILE.o[:MAP]",
        ),
    ];
    for (args, msg) in cases {
        let mut all = vec!["tcp", "simulate"];
        all.extend_from_slice(args);
        let o = structops(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected '{msg}' in\n{err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains("try '--help'"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn failures_exit_1_with_the_step_and_errno() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad_ctx.o");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--cc", "/nonexistent/cc.bpf.o"],
            &["reading /nonexistent/cc.bpf.o", "ENOENT"],
        ),
        (&["--cc", "Cargo.toml"], &["--cc", "Cargo.toml"]),
        (&["--cc", "bpf/maps.bpf.o"], &["no struct_ops map", "Hint:"]),
        (&["--cc", fixture], &["--cc"]),
        (
            &["--cc", "bpf/cubic.bpf.o:nosuchmap"],
            &["no struct_ops map named nosuchmap"],
        ),
        // The same table registered twice: the kernel's EEXIST.
        (
            &["--cc", "bundled:cubic", "--cc", "bpf/cubic.bpf.o"],
            &["EEXIST", "already registered"],
        ),
        (
            &["--swap-at", "1s:bpf/reno.bpf.o"],
            &["\"so_reno\"", "\"so_cubic\""],
        ),
        (
            &["--cc", "native:reno", "--swap-at", "1s:bpf/cubic.bpf.o"],
            &[".struct_ops.link"],
        ),
        (
            &["--swap-at", "1s:bpf/cubic.bpf.o:reno"],
            &["no map named 'reno'", "maps: cubic"],
        ),
        // The plots cannot be written.
        (&["--out", "/proc/version/x"], &["/proc/version/x"]),
    ];
    for (args, msgs) in cases {
        let mut all = vec!["tcp", "simulate", "--duration", "1500ms"];
        if !args.contains(&"--out") {
            all.extend_from_slice(&["--out", "/tmp/structops-tcp-fail"]);
        }
        all.extend_from_slice(args);
        let o = structops(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}{}", stdout(&o));
        assert!(err.starts_with("Error: "), "{args:?}: {err}");
        for m in *msgs {
            assert!(err.contains(m), "{args:?}: expected '{m}' in\n{err}");
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all("/tmp/structops-tcp-fail");
}

#[test]
fn help_documents_the_specs() {
    let o = structops(&["tcp", "simulate", "--help"]);
    assert!(o.status.success());
    insta::assert_snapshot!(stdout(&o));
}
