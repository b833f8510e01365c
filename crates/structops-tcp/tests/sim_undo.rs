//! Undo of spurious congestion-window reductions (Eifel detection by TCP timestamps): a
//! delay spike longer than the RTO makes the retransmission timer fire although nothing
//! was lost; the first ACK of the original transmissions echoes a timestamp older than
//! the retransmission, and the sender calls `undo_cwnd` (`tcp_try_undo_loss`). The BPF
//! CUBIC does so call for call as the native one, on both engines.

use std::path::PathBuf;

use structops::Engine;
use structops_tcp::sim::{self, DelaySpike, FlowSpec, Hook, MS, SEC, Scenario, SimResult};
use structops_tcp::{HostConfig, TcpHost};

/// `TCP_CA_Open`.
const OPEN: u8 = 0;
/// `TCP_CA_Loss`.
const LOSS: u8 = 4;

fn object(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../bpf")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// One flow over 20 Mbit/s and 20 ms; with `spike`, packets leaving the bottleneck in
/// [2 s, 2.05 s) take 600 ms longer (the RTO is about 220 ms), those after them queue
/// behind.
fn scenario(cc: &str, spike: bool) -> Scenario {
    let bw = 20_000_000;
    let rtt = 20 * MS;
    let mut flow = FlowSpec::new(cc, rtt);
    if spike {
        flow.delay_spikes = vec![DelaySpike {
            at_ns: 2 * SEC,
            extra_ns: 600 * MS,
            duration_ns: 50 * MS,
        }];
    }
    Scenario {
        flows: vec![flow],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, rtt),
        duration_ns: 4 * SEC,
        seed: 3,
        trace: true,
        ..Scenario::default()
    }
}

/// Checks the first RTO and the undo after it; returns (cwnd before the RTO, cwnd
/// after the undo).
fn check_undo(r: &SimResult, what: &str) -> (u32, u32) {
    let f = &r.flows[0];
    assert!(f.rtos >= 1, "{what}: no RTO ({f:?})");
    assert!(f.undos >= 1, "{what}: no undo ({f:?})");
    let t = &r.trace;
    let undo_calls = t.iter().filter(|e| e.hook == Hook::UndoCwnd).count() as u64;
    assert_eq!(undo_calls, f.undos, "{what}: undo calls in the trace");
    // tcp_enter_loss: ssthresh (cwnd still the old one), CA_EVENT_LOSS, then Loss.
    let loss = t
        .iter()
        .position(|e| e.hook == Hook::SetState && e.ca_state == LOSS)
        .unwrap_or_else(|| panic!("{what}: never in Loss"));
    assert!(
        t[loss].time_ns >= 2 * SEC,
        "{what}: an RTO before the spike at {} ns",
        t[loss].time_ns
    );
    let ss = (0..loss)
        .rev()
        .find(|&i| t[i].hook == Hook::Ssthresh)
        .unwrap_or_else(|| panic!("{what}: no ssthresh call before Loss"));
    let pre_cwnd = t[ss].snd_cwnd;
    let pre_ssthresh = t[..ss].last().map_or(u32::MAX, |e| e.snd_ssthresh);
    assert!(
        t[loss].snd_cwnd < pre_cwnd,
        "{what}: the RTO did not reduce cwnd"
    );
    let undo = (loss..t.len())
        .find(|&i| t[i].hook == Hook::UndoCwnd)
        .unwrap_or_else(|| panic!("{what}: no undo after the RTO"));
    let u = &t[undo];
    // Reno's and CUBIC's undo_cwnd: max(cwnd, prior_cwnd), prior_cwnd the cwnd at the
    // RTO; snd_ssthresh back to prior_ssthresh = max(ssthresh, 3/4 cwnd) at the RTO.
    assert!(
        u.snd_cwnd >= pre_cwnd,
        "{what}: cwnd {} after the undo, {} before the RTO",
        u.snd_cwnd,
        pre_cwnd
    );
    assert!(
        u.snd_ssthresh >= pre_ssthresh.min(pre_cwnd * 3 / 4),
        "{what}: ssthresh {} after the undo, {} before the RTO",
        u.snd_ssthresh,
        pre_ssthresh
    );
    assert!(
        u.time_ns > 2 * SEC + 600 * MS,
        "{what}: undone before the delayed packets arrived ({} ns)",
        u.time_ns
    );
    // tcp_try_undo_loss leaves Loss for Open at once.
    let next_state = t[undo + 1..]
        .iter()
        .find(|e| e.hook == Hook::SetState)
        .unwrap_or_else(|| panic!("{what}: no state change after the undo"));
    assert_eq!(next_state.ca_state, OPEN, "{what}: state after the undo");
    assert_eq!(
        next_state.time_ns, u.time_ns,
        "{what}: Open on the same ACK"
    );
    (pre_cwnd, u.snd_cwnd)
}

#[test]
fn spurious_rto_is_undone_native_and_bpf() {
    for engine in [Engine::Interp, Engine::Jit] {
        let host = TcpHost::new(HostConfig {
            engine,
            ..HostConfig::default()
        })
        .unwrap();
        let bpf = host
            .load_object(&object("cubic.bpf.o"), "cubic.bpf.o", None)
            .unwrap();
        for cc in ["reno", "cubic"] {
            let r = sim::run(&host, &scenario(cc, true), None).unwrap();
            let (pre, post) = check_undo(&r, cc);
            println!(
                "{cc} on {engine:?}: {} RTOs, {} undos, cwnd {pre} before the RTO, {post} \
                 after the undo",
                r.flows[0].rtos, r.flows[0].undos
            );
        }
        let native = sim::run(&host, &scenario("cubic", true), None).unwrap();
        let b = sim::run(&host, &scenario(&bpf.name, true), None).unwrap();
        let what = format!("{} on {engine:?}", bpf.name);
        check_undo(&b, &what);
        assert_eq!(native.trace.len(), b.trace.len(), "{what}: trace lengths");
        if let Some(i) = (0..native.trace.len()).find(|&i| native.trace[i] != b.trace[i]) {
            panic!(
                "{what}: traces differ at call {i}: native {:?}, bpf {:?}",
                native.trace[i], b.trace[i]
            );
        }
        assert_eq!(native.flows[0].undos, b.flows[0].undos, "{what}");
        assert_eq!(native.events, b.events, "{what}");
    }
}

#[test]
fn undo_restores_the_window_the_rto_took() {
    // Without Eifel the RTO would leave the flow in slow start from one segment: the
    // undo gives the window back, so the spike costs less than a cold restart would.
    let host = TcpHost::new(HostConfig::default()).unwrap();
    let r = sim::run(&host, &scenario("reno", true), None).unwrap();
    let (pre, _) = check_undo(&r, "reno");
    let after: Vec<_> = r.series[0]
        .iter()
        .filter(|s| s.t_ns > 2 * SEC + 700 * MS && s.t_ns <= 2 * SEC + 900 * MS)
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|s| s.cwnd * 2 >= pre),
        "cwnd fell below half the pre-RTO {pre} after the undo: {after:?}"
    );
}

#[test]
fn clean_drop_tail_runs_undo_nothing() {
    // Drop-tail losses are real: every retransmission is needed, no timestamp echo
    // predates one, so no reduction is undone.
    let host = TcpHost::new(HostConfig::default()).unwrap();
    for cc in ["reno", "cubic"] {
        let bw = 50_000_000;
        let sc = Scenario {
            flows: vec![
                FlowSpec::new(cc, 20 * MS),
                FlowSpec {
                    start_ns: 300 * MS,
                    ..FlowSpec::new(cc, 37 * MS)
                },
            ],
            bw_bps: bw,
            buffer_bytes: Scenario::bdp_bytes(bw, 20 * MS),
            duration_ns: 8 * SEC,
            seed: 11,
            ..Scenario::default()
        };
        let r = sim::run(&host, &sc, None).unwrap();
        let retrans: u64 = r.flows.iter().map(|f| f.retransmits).sum();
        let recoveries: u64 = r.flows.iter().map(|f| f.recoveries).sum();
        assert!(
            retrans > 0 && recoveries > 0,
            "{cc}: no losses to recover from"
        );
        for f in &r.flows {
            assert_eq!(f.undos, 0, "{cc}: flow {} undid a real loss: {f:?}", f.flow);
        }
        println!(
            "{cc}: {recoveries} recoveries, {retrans} retransmissions, {} drops, 0 undos",
            r.queue.drops
        );
    }
}

#[test]
fn a_spike_below_the_rto_times_nothing_out_and_bad_spikes_are_refused() {
    let host = TcpHost::new(HostConfig::default()).unwrap();
    let mut sc = scenario("reno", true);
    sc.flows[0].delay_spikes[0].extra_ns = 60 * MS;
    let r = sim::run(&host, &sc, None).unwrap();
    let f = &r.flows[0];
    assert_eq!((f.rtos, f.undos), (0, 0), "a 60 ms spike: {f:?}");
    // The spike did delay the path: the smoothed RTT saw it.
    let peak = r.series[0]
        .iter()
        .filter(|s| s.t_ns > 2 * SEC)
        .map(|s| s.srtt_us)
        .max()
        .unwrap();
    assert!(peak > 40_000, "srtt peaked at {peak} us");

    sc.flows[0].delay_spikes[0].extra_ns = 2 * 3600 * SEC;
    assert!(matches!(
        sim::run(&host, &sc, None),
        Err(sim::SimError::Invalid { .. })
    ));
}
