//! The simulator's speed: events per second for 4 CUBIC flows × 10 s through the default
//! dumbbell (100 Mbit/s, 20 ms, one BDP of buffer), with the native CUBIC and with the
//! project's BPF CUBIC (`bpf/cubic.bpf.o`) on the JIT. Run with
//! `cargo run --release -p structops-tcp --example sim_throughput`.

use std::path::PathBuf;

use structops::Engine;
use structops_tcp::sim::{self, SEC, Scenario};
use structops_tcp::{HostConfig, TcpHost};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = TcpHost::new(HostConfig {
        engine: Engine::Jit,
        ..HostConfig::default()
    })?;
    let obj = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bpf/cubic.bpf.o");
    let bytes = std::fs::read(&obj)?;
    let cc = host.load_object(&bytes, "cubic.bpf.o", None)?;
    let scenario = |name: &str| {
        let mut sc = Scenario {
            duration_ns: 10 * SEC,
            ..Scenario::default()
        };
        for f in &mut sc.flows {
            f.cc = name.to_string();
        }
        sc
    };
    let mut best = [0f64; 2];
    for round in 0..3 {
        for (i, name) in ["cubic", cc.name.as_str()].into_iter().enumerate() {
            let r = sim::run(&host, &scenario(name), None)?;
            println!(
                "round {round} {name:>9}: {} events in {:.1} ms = {:.2} M events/s, goodput {:.1} Mbit/s",
                r.events,
                r.wall_ns as f64 / 1e6,
                r.events_per_sec / 1e6,
                r.total_goodput_bps / 1e6
            );
            best[i] = best[i].max(r.events_per_sec);
        }
    }
    println!(
        "best: native {:.2} M events/s, bpf {:.2} M events/s, ratio {:.3}",
        best[0] / 1e6,
        best[1] / 1e6,
        best[1] / best[0]
    );
    Ok(())
}
