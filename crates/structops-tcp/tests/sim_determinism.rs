//! The simulator is deterministic: a seed reproduces a run exactly, another seed (with
//! random loss) gives another run, tracing does not perturb it, and callbacks run at
//! their simulated time.

use std::cell::Cell;

use structops_tcp::sim::{self, Callback, FlowSpec, MS, RunOptions, SEC, Scenario, SimResult};
use structops_tcp::{HostConfig, TcpHost, clock};

fn host() -> TcpHost {
    TcpHost::new(HostConfig::default()).unwrap()
}

fn scenario(seed: u64, loss: f64, trace: bool) -> Scenario {
    let bw = 40_000_000;
    Scenario {
        flows: vec![
            FlowSpec::new("cubic", 20 * MS),
            FlowSpec {
                start_ns: 150 * MS,
                ..FlowSpec::new("reno", 45 * MS)
            },
            FlowSpec {
                start_ns: 400 * MS,
                ecn: true,
                ..FlowSpec::new("cubic", 10 * MS)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, 20 * MS),
        ecn_threshold_pkts: Some(30),
        loss,
        duration_ns: 5 * SEC,
        seed,
        trace,
        ..Scenario::default()
    }
}

/// The result without its wall-clock figures.
fn physics(mut r: SimResult) -> SimResult {
    r.wall_ns = 0;
    r.events_per_sec = 0.0;
    r
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let host = host();
    let a = physics(sim::run(&host, &scenario(5, 0.01, true), None).unwrap());
    let b = physics(sim::run(&host, &scenario(5, 0.01, true), None).unwrap());
    assert!(a.trace.len() > 1000);
    assert!(a.queue.random_losses > 0 && a.queue.ce_marks > 0);
    assert_eq!(a, b, "same seed, same everything");
    let c = physics(sim::run(&host, &scenario(6, 0.01, true), None).unwrap());
    assert_ne!(a.trace, c.trace, "another seed loses other packets");
    // Tracing only observes.
    let d = physics(sim::run(&host, &scenario(5, 0.01, false), None).unwrap());
    assert!(d.trace.is_empty());
    assert_eq!(d.flows, a.flows);
    assert_eq!(d.series, a.series);
    assert_eq!(d.events, a.events);
}

#[test]
fn callbacks_run_at_their_time_and_progress_reaches_one() {
    let host = host();
    let sc = scenario(1, 0.0, false);
    let seen = Cell::new(Vec::new());
    let mut fractions = Vec::new();
    let mut progress = |f: f64| fractions.push(f);
    let r = sim::run_with(
        &host,
        &sc,
        RunOptions {
            progress: Some(&mut progress),
            callbacks: vec![
                Callback {
                    at_ns: 2 * SEC,
                    f: Box::new(|h: &TcpHost| {
                        let mut v = seen.take();
                        v.push((clock::now_ns(), h.available().len()));
                        seen.set(v);
                    }),
                },
                Callback {
                    at_ns: 9 * SEC, // after the end: never runs
                    f: Box::new(|_: &TcpHost| seen.set(vec![(0, 0)])),
                },
            ],
        },
    )
    .unwrap();
    let seen = seen.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, 2 * SEC);
    assert!(seen[0].1 >= 4, "the host's registry");
    assert!(r.total_goodput_bps > 0.5 * sc.bw_bps as f64);
    assert!(fractions.len() >= 100, "{}", fractions.len());
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(fractions.last().copied(), Some(1.0));
}

#[test]
fn invalid_scenarios_and_unknown_ccs_are_refused() {
    let host = host();
    let mut sc = scenario(1, 0.0, false);
    sc.flows[1].cc = "no_such_cc".into();
    match sim::run(&host, &sc, None) {
        Err(sim::SimError::UnknownCc { flow, name, .. }) => {
            assert_eq!((flow, name.as_str()), (1, "no_such_cc"))
        }
        other => panic!("{other:?}"),
    }
    for bad in [
        Scenario {
            flows: vec![],
            ..Scenario::default()
        },
        Scenario {
            bw_bps: 0,
            ..Scenario::default()
        },
        Scenario {
            buffer_bytes: 1000,
            ..Scenario::default()
        },
        Scenario {
            loss: 1.0,
            ..Scenario::default()
        },
        Scenario {
            sample_interval_ns: 0,
            ..Scenario::default()
        },
        Scenario {
            sample_interval_ns: 1,
            ..Scenario::default()
        },
    ] {
        assert!(
            matches!(
                sim::run(&host, &bad, None),
                Err(sim::SimError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn extreme_but_valid_scenarios_run() {
    let host = host();
    // A buffer of u64::MAX bytes, a 1 µs RTT, a slow link, 1 ms of simulated time.
    let sc = Scenario {
        flows: vec![
            FlowSpec::new("reno", 1000),
            FlowSpec::new("bbr", 3600 * SEC),
        ],
        bw_bps: 1,
        buffer_bytes: u64::MAX,
        duration_ns: MS,
        sample_interval_ns: 1000,
        ..Scenario::default()
    };
    let r = sim::run(&host, &sc, None).unwrap();
    assert_eq!(r.series[0].len(), 1000);
    assert_eq!(
        r.total_goodput_bps, 0.0,
        "a 1 bit/s link delivers nothing in 1 ms"
    );
    // A fast link with a one-packet buffer and heavy loss.
    let sc = Scenario {
        flows: vec![FlowSpec::new("cubic", 5 * MS); 3],
        bw_bps: 10_000_000_000,
        buffer_bytes: 1500,
        loss: 0.2,
        duration_ns: 2 * SEC,
        ..Scenario::default()
    };
    let r = sim::run(&host, &sc, None).unwrap();
    assert!(r.queue.drops > 0 && r.queue.random_losses > 0);
    assert!(r.flows.iter().all(|f| f.rtos > 0 && f.delivered_bytes > 0));
}
