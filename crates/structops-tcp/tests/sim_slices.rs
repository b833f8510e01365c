//! `sim::Sim`: a run advanced in slices is the one-shot run event for event; between
//! slices the flows can be read and switched to another congestion control (what
//! `structops tcp serve` does).

use structops_tcp::sim::{self, FlowSpec, Hook, MS, RunOptions, SEC, Scenario, Sim, SimResult};
use structops_tcp::{HostConfig, TcpHost};

fn host() -> TcpHost {
    TcpHost::new(HostConfig::default()).unwrap()
}

fn scenario(trace: bool) -> Scenario {
    let bw = 30_000_000;
    Scenario {
        flows: vec![
            FlowSpec::new("reno", 20 * MS),
            FlowSpec {
                start_ns: 120 * MS,
                ..FlowSpec::new("cubic", 35 * MS)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, 20 * MS),
        loss: 0.003,
        duration_ns: 3 * SEC,
        seed: 9,
        sample_interval_ns: 50 * MS,
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
fn slices_are_the_one_shot_run() {
    let host = host();
    let sc = scenario(true);
    let once = physics(sim::run(&host, &sc, None).unwrap());
    assert!(once.trace.len() > 1000 && once.queue.random_losses > 0);

    let mut s = Sim::new(&host, &sc, RunOptions::default()).unwrap();
    assert_eq!(s.flow(1).unwrap().cc, "cubic");
    assert!(!s.flow(1).unwrap().started);
    let mut t = 0;
    let mut seen_delivery = 0;
    while !s.is_done() {
        // Odd slices, not dividing any RTT or the sample interval.
        t += 7 * MS + 3;
        s.run_until(t).unwrap();
        assert_eq!(s.now_ns(), t.min(sc.duration_ns));
        let f = s.flow(0).unwrap();
        assert!(f.delivered_bytes >= seen_delivery, "deliveries only grow");
        seen_delivery = f.delivered_bytes;
    }
    assert_eq!(s.now_ns(), sc.duration_ns);
    assert!(s.run_until(u64::MAX).is_ok(), "past the end is a no-op");
    let events = s.events();
    let sliced = physics(s.finish());
    assert_eq!(sliced.events, events);
    assert_eq!(sliced, once, "slicing changes nothing");
    assert_eq!(
        seen_delivery, once.flows[0].delivered_bytes,
        "the flow state between slices is the one the result sums up"
    );
}

#[test]
fn switching_a_flow_between_slices() {
    let host = host();
    let sc = scenario(true);
    let once = physics(sim::run(&host, &sc, None).unwrap());

    let mut s = Sim::new(&host, &sc, RunOptions::default()).unwrap();
    // Before its start, a flow takes the new congestion control from the start.
    s.set_congestion_control(1, "reno").unwrap();
    assert_eq!(s.flow(1).unwrap().cc, "reno");
    assert!(matches!(
        s.set_congestion_control(0, "nope"),
        Err(sim::SimError::UnknownCc { .. })
    ));
    assert!(matches!(
        s.set_congestion_control(5, "reno"),
        Err(sim::SimError::Invalid { .. })
    ));
    s.run_until(SEC).unwrap();
    assert_eq!(s.flow(1).unwrap().cc, "reno");
    assert!(s.flow(1).unwrap().started);
    let cwnd_before = s.flow(0).unwrap().cwnd;
    s.set_congestion_control(0, "cubic").unwrap();
    let f0 = s.flow(0).unwrap();
    assert_eq!(f0.cc, "cubic");
    assert_eq!(f0.map_id, None, "a native congestion control has no map");
    // tcp_reinit_congestion_control keeps the window (CUBIC's init leaves it).
    assert_eq!(f0.cwnd, cwnd_before);
    // Switching to the one it runs does nothing.
    s.set_congestion_control(0, "cubic").unwrap();
    s.run_until(2 * SEC).unwrap();
    let r = physics(s.finish());
    let inits: Vec<_> = r
        .trace
        .iter()
        .filter(|e| e.hook == Hook::Init && e.flow == 0)
        .map(|e| e.time_ns)
        .collect();
    assert_eq!(
        inits,
        vec![0, SEC],
        "one init at the start, one at the switch"
    );
    assert_ne!(r.trace, once.trace);
    assert_eq!(
        r.flows[1].cc, "cubic",
        "the result names the scenario's flows"
    );
}

#[test]
fn a_bpf_flow_names_its_struct_ops_map() {
    let host = host();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bpf/reno.bpf.o");
    let bytes = std::fs::read(path).unwrap();
    let cc = host.load_object(&bytes, path, None).unwrap();
    let map_id = cc.object().map(&cc.map).unwrap().id();
    let sc = Scenario {
        flows: vec![FlowSpec::new("reno", 20 * MS)],
        duration_ns: SEC,
        ..scenario(false)
    };
    let mut s = Sim::new(&host, &sc, RunOptions::default())
        .unwrap()
        .without_series();
    s.run_until(100 * MS).unwrap();
    assert_eq!(s.flow(0).unwrap().map_id, None);
    s.set_congestion_control(0, &cc.name).unwrap();
    assert_eq!(s.flow(0).unwrap().map_id, Some(map_id));
    assert_eq!(s.flow(0).unwrap().cc, "so_reno");
    s.run_until(SEC).unwrap();
    let r = s.finish();
    assert!(r.series[0].is_empty() && r.queue_series.is_empty());
    assert!(r.flows[0].delivered_bytes > 0);
}
