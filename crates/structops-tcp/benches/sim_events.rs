//! Simulated events per second with the bundled BPF CUBIC (JIT) and with the native
//! CUBIC, in one run: the default dumbbell (100 Mbit/s, 20 ms RTT, one BDP of buffer)
//! with 4 flows for 5 simulated seconds. Both runs process the same events (the BPF
//! CUBIC computes what the native one does), so criterion's element throughput is the
//! events/s figure; issue 7 asks for BPF ≥ 0.9 × native.
//!
//! `cargo bench -p structops-tcp --bench sim_events`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use structops::Engine;
use structops_tcp::sim::{self, SEC, Scenario};
use structops_tcp::{HostConfig, TcpHost};

fn scenario(cc: &str) -> Scenario {
    let mut sc = Scenario {
        duration_ns: 5 * SEC,
        ..Scenario::default()
    };
    for f in &mut sc.flows {
        f.cc = cc.to_string();
    }
    sc
}

fn bench(c: &mut Criterion) {
    let host = match TcpHost::new(HostConfig {
        engine: Engine::Jit,
        ..HostConfig::default()
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("skipped: the TCP host: {e}");
            return;
        }
    };
    let obj = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf/cubic.bpf.o");
    let loaded = std::fs::read(&obj)
        .map_err(|e| e.to_string())
        .and_then(|b| {
            host.load_object(&b, "cubic.bpf.o", None)
                .map_err(|e| e.to_string())
        });
    let cc = match loaded {
        Ok(cc) => cc,
        Err(e) => {
            eprintln!("skipped: {}: {e}", obj.display());
            return;
        }
    };
    let native = scenario("cubic");
    let bpf = scenario(&cc.name);
    let (Ok(rn), Ok(rb)) = (sim::run(&host, &native, None), sim::run(&host, &bpf, None)) else {
        eprintln!("skipped: the scenario does not run");
        return;
    };
    assert_eq!(
        rn.events, rb.events,
        "the BPF CUBIC runs the native's events"
    );
    let mut g = c.benchmark_group("sim_events");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(rn.events));
    g.bench_function("native_cubic", |b| {
        b.iter(|| black_box(sim::run(&host, &native, None).map(|r| r.events)))
    });
    g.bench_function("bpf_cubic_jit", |b| {
        b.iter(|| black_box(sim::run(&host, &bpf, None).map(|r| r.events)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
