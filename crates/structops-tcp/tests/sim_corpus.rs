//! The kernel's own selftest congestion controls (conformance/build/corpus, compiled
//! unmodified from Linux 6.12) drive flows in the simulator, and the kernel's
//! `bpf_cubic` tracks the native CUBIC.

use std::path::PathBuf;

use structops::Engine;
use structops_tcp::sim::{self, FlowSpec, MS, SEC, Scenario, SimResult};
use structops_tcp::{HostConfig, TcpHost};

fn corpus(name: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/build/corpus")
        .join(name);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("skipped: {} ({e}); run conformance/build.sh", p.display());
            None
        }
    }
}

fn scenario(cc: &str, k: Option<u32>, secs: u64) -> Scenario {
    let bw = 100_000_000;
    let rtt = 20 * MS;
    Scenario {
        flows: vec![
            FlowSpec::new(cc, rtt),
            FlowSpec {
                start_ns: 500 * MS,
                ..FlowSpec::new(cc, rtt)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, rtt),
        ecn_threshold_pkts: k,
        duration_ns: secs * SEC,
        trace: true,
        ..Scenario::default()
    }
}

fn summary(r: &SimResult) -> String {
    format!(
        "{:.1} Mbit/s, Jain {:.4}, retrans {}, drops {}, CE {}, mean queue {:.1}",
        r.total_goodput_bps / 1e6,
        r.jain,
        r.flows.iter().map(|f| f.retransmits).sum::<u64>(),
        r.queue.drops,
        r.queue.ce_marks,
        r.queue.mean_len_pkts
    )
}

#[test]
fn kernel_selftest_ccs_drive_flows() {
    // A window of 10 segments per 20 ms RTT, for 5 s and for 4.5 s: in Mbit/s.
    let ten_segments = 10.0 * f64::from(sim::MSS) * 8.0 / 0.020 * (5.0 + 4.5) / 5.0 / 1e6;
    // (object, map, ECN threshold, total goodput range in Mbit/s)
    let cases = [
        ("bpf_cubic.bpf.o", "cubic", None, (90.0, 97.0)),
        // cong_control with its own PRR, which cannot write tp->prr_delivered (not a
        // writable field): each recovery collapses cwnd, and the kernel does the same.
        ("bpf_cc_cubic.bpf.o", "cc_cubic", None, (30.0, 97.0)),
        ("bpf_dctcp.bpf.o", "dctcp", Some(20), (75.0, 97.0)),
        // cong_control does nothing: cwnd stays at its initial 10.
        (
            "tcp_ca_update.bpf.o",
            "ca_update_1",
            None,
            (0.97 * ten_segments, 1.01 * ten_segments),
        ),
        // cwnd stays 10, paced at cwnd/srtt.
        (
            "tcp_ca_write_sk_pacing.bpf.o",
            "write_sk_pacing",
            None,
            (0.8 * ten_segments, 1.01 * ten_segments),
        ),
    ];
    for engine in [Engine::Interp, Engine::Jit] {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        for (obj, map, k, (lo, hi)) in cases {
            let Some(bytes) = corpus(obj) else {
                return;
            };
            let cc = host.load_object(&bytes, obj, Some(map)).unwrap();
            let r = sim::run(&host, &scenario(&cc.name, k, 5), None).unwrap();
            println!("{engine:?} {} ({obj}): {}", cc.name, summary(&r));
            let g = r.total_goodput_bps / 1e6;
            assert!((lo..=hi).contains(&g), "{}: {}", cc.name, summary(&r));
            assert!(r.flows.iter().all(|f| f.delivered_bytes > 0));
            if k.is_some() {
                assert!(
                    r.queue.ce_marks > 0 && r.queue.drops == 0,
                    "{}",
                    summary(&r)
                );
            }
        }
    }
}

#[test]
fn kernel_bpf_cubic_tracks_native_cubic() {
    let Some(bytes) = corpus("bpf_cubic.bpf.o") else {
        return;
    };
    let host = TcpHost::new(HostConfig {
        engine: Engine::Jit,
        ..HostConfig::default()
    })
    .unwrap();
    let cc = host
        .load_object(&bytes, "bpf_cubic.bpf.o", Some("cubic"))
        .unwrap();
    let native = sim::run(&host, &scenario("cubic", None, 30), None).unwrap();
    let bpf = sim::run(&host, &scenario(&cc.name, None, 30), None).unwrap();
    let first_diff = native
        .trace
        .iter()
        .zip(&bpf.trace)
        .position(|(a, b)| a != b);
    let mut cwnd_diff = 0f64;
    let mut n = 0f64;
    for (a, b) in native.series.iter().zip(&bpf.series) {
        for (x, y) in a.iter().zip(b) {
            cwnd_diff += (f64::from(x.cwnd) - f64::from(y.cwnd)).abs() / f64::from(x.cwnd.max(1));
            n += 1.0;
        }
    }
    let gd = (bpf.total_goodput_bps - native.total_goodput_bps) / native.total_goodput_bps;
    println!(
        "native cubic: {}\nkernel bpf_cubic: {}\nfirst differing call: {:?} of {} (at {:?} ns); mean relative cwnd difference over the samples {:.2}%; goodput difference {:+.3}%",
        summary(&native),
        summary(&bpf),
        first_diff,
        native.trace.len(),
        first_diff.map(|i| native.trace[i].time_ns),
        100.0 * cwnd_diff / n,
        100.0 * gd
    );
    assert!(gd.abs() < 0.03, "goodput differs by {gd}");
    assert!((native.jain - bpf.jain).abs() < 0.05);
}
