//! BPF = native in the simulator: the project's BPF Reno, CUBIC and DCTCP (`bpf/*.bpf.o`)
//! drive the same scenario to the same congestion-control trace, call for call, as the
//! native implementations, on both engines.

use std::path::PathBuf;

use structops::Engine;
use structops_tcp::sim::{self, FlowSpec, MS, SEC, Scenario, SimResult};
use structops_tcp::{HostConfig, TcpHost};

fn object(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bpf")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn scenario(cc: &str, ecn_k: Option<u32>, loss: f64) -> Scenario {
    let bw = 50_000_000;
    Scenario {
        flows: vec![
            FlowSpec::new(cc, 20 * MS),
            FlowSpec {
                start_ns: 300 * MS,
                ..FlowSpec::new(cc, 37 * MS)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, 20 * MS),
        ecn_threshold_pkts: ecn_k,
        loss,
        duration_ns: 4 * SEC,
        seed: 11,
        trace: true,
        ..Scenario::default()
    }
}

fn compare(native: &SimResult, bpf: &SimResult, what: &str) {
    assert!(native.trace.len() > 1000, "{what}: a short trace");
    let n = native.trace.len().min(bpf.trace.len());
    if let Some(i) = (0..n).find(|&i| native.trace[i] != bpf.trace[i]) {
        panic!(
            "{what}: traces differ at call {i}: native {:?}, bpf {:?}",
            native.trace[i], bpf.trace[i]
        );
    }
    assert_eq!(native.trace.len(), bpf.trace.len(), "{what}: trace lengths");
    for (a, b) in native.flows.iter().zip(&bpf.flows) {
        assert_eq!(a.delivered_bytes, b.delivered_bytes, "{what}");
        assert_eq!(a.retransmits, b.retransmits, "{what}");
    }
    assert_eq!(native.events, bpf.events, "{what}");
}

#[test]
fn bpf_reno_cubic_dctcp_trace_equals_native() {
    let cases = [
        ("reno", "reno.bpf.o", None, 0.002),
        ("cubic", "cubic.bpf.o", None, 0.002),
        ("dctcp", "dctcp.bpf.o", Some(15), 0.0),
    ];
    for engine in [Engine::Interp, Engine::Jit] {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        for (native, obj, k, loss) in cases {
            let cc = host.load_object(&object(obj), obj, None).unwrap();
            let a = sim::run(&host, &scenario(native, k, loss), None).unwrap();
            let b = sim::run(&host, &scenario(&cc.name, k, loss), None).unwrap();
            let what = format!("{native} vs {} on {engine:?}", cc.name);
            compare(&a, &b, &what);
            println!(
                "{what}: {} calls equal; {} events; native {:.2} M events/s, bpf {:.2} M events/s",
                a.trace.len(),
                a.events,
                a.events_per_sec / 1e6,
                b.events_per_sec / 1e6
            );
        }
    }
}

#[test]
fn hot_swap_mid_run_reinitialises_the_flows() {
    let host = TcpHost::new(HostConfig::default()).unwrap();
    let bytes = object("cubic.bpf.o");
    let mut cc = host.load_object(&bytes, "cubic.bpf.o", None).unwrap();
    let sc = scenario(&cc.name, None, 0.002);
    let plain = sim::run(&host, &sc, None).unwrap();
    let swap_at = 2 * SEC;
    let mut swaps = 0;
    let swapped = sim::run_with(
        &host,
        &sc,
        sim::RunOptions {
            progress: None,
            callbacks: vec![sim::Callback {
                at_ns: swap_at,
                f: Box::new(|h: &TcpHost| {
                    h.update(&mut cc, &bytes, "cubic.bpf.o", None).unwrap();
                    swaps += 1;
                }),
            }],
        },
    )
    .unwrap();
    assert_eq!(swaps, 1);
    let before = |r: &SimResult| -> Vec<_> {
        r.trace
            .iter()
            .filter(|e| e.time_ns < swap_at)
            .copied()
            .collect()
    };
    assert_eq!(before(&plain), before(&swapped), "identical up to the swap");
    assert_ne!(plain.trace, swapped.trace, "the new table starts afresh");
    // Both flows keep running on the new table.
    for f in &swapped.flows {
        assert!(f.goodput_bps > 5e6, "{f:?}");
    }
    let after = |r: &SimResult| -> f64 {
        (0..2)
            .map(|i| r.goodput_between(i, swap_at, sc.duration_ns))
            .sum()
    };
    println!(
        "goodput after the swap: {:.1} Mbit/s; without: {:.1}",
        after(&swapped) / 1e6,
        after(&plain) / 1e6
    );
    assert!(after(&swapped) > 0.8 * after(&plain), "{}", after(&swapped));
}
