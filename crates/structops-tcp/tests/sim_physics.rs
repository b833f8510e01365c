//! Physics sanity of the simulator with native congestion controls (issue 7's acceptance
//! items): a Reno flow fills the bottleneck, CUBIC flows share it fairly, DCTCP holds the
//! queue near its marking threshold.

use structops_tcp::sim::{self, FlowSpec, MS, SEC, Scenario};
use structops_tcp::{HostConfig, TcpHost};

fn host() -> TcpHost {
    TcpHost::new(HostConfig::default()).unwrap()
}

#[test]
fn single_reno_flow_fills_the_bottleneck() {
    let host = host();
    let bw = 100_000_000;
    let rtt = 20 * MS;
    let sc = Scenario {
        flows: vec![FlowSpec::new("reno", rtt)],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, rtt),
        duration_ns: 30 * SEC,
        ..Scenario::default()
    };
    let r = sim::run(&host, &sc, None).unwrap();
    // Payload goodput can reach at most MSS/1500 of the link rate.
    let max = bw as f64 * f64::from(sim::MSS) / f64::from(sim::WIRE_BYTES);
    let ratio = r.total_goodput_bps / max;
    println!(
        "reno: goodput {:.2} Mbit/s = {:.4} of the payload capacity; retrans {}, rtos {}, recoveries {}, drops {}, mean queue {:.1} pkts, p99 delay {} us, {} events, {:.0} events/s",
        r.total_goodput_bps / 1e6,
        ratio,
        r.flows[0].retransmits,
        r.flows[0].rtos,
        r.flows[0].recoveries,
        r.queue.drops,
        r.queue.mean_len_pkts,
        r.queue.p99_delay_ns / 1000,
        r.events,
        r.events_per_sec
    );
    assert!(ratio >= 0.93, "goodput ratio {ratio}");
    assert!(
        r.flows[0].recoveries > 0,
        "the buffer overflows now and then"
    );
    assert_eq!(r.flows[0].rtos, 0, "fast recovery handles every loss");
}

#[test]
fn two_cubic_flows_with_equal_rtts_share_fairly() {
    let host = host();
    let bw = 100_000_000;
    let rtt = 20 * MS;
    let sc = Scenario {
        flows: vec![
            FlowSpec::new("cubic", rtt),
            // The second flow joins later, into a full pipe.
            FlowSpec {
                start_ns: 2 * SEC,
                ..FlowSpec::new("cubic", rtt)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, rtt),
        duration_ns: 60 * SEC,
        ..Scenario::default()
    };
    let r = sim::run(&host, &sc, None).unwrap();
    let (t0, t1) = (20 * SEC, 60 * SEC);
    let jain = r.jain_between(t0, t1);
    let g0 = r.goodput_between(0, t0, t1) / 1e6;
    let g1 = r.goodput_between(1, t0, t1) / 1e6;
    println!(
        "cubic x2: Jain {jain:.4} over the last 40 s ({g0:.1} / {g1:.1} Mbit/s), total {:.1} Mbit/s, drops {}, mean queue {:.1} pkts",
        r.total_goodput_bps / 1e6,
        r.queue.drops,
        r.queue.mean_len_pkts
    );
    assert!(jain >= 0.95, "Jain {jain}");
    assert!(g0 + g1 > 90.0, "the pair fills the link: {g0} + {g1}");
    assert!(r.flows.iter().all(|f| f.recoveries > 0));
}

#[test]
fn dctcp_holds_the_queue_near_its_marking_threshold() {
    let host = host();
    let bw = 100_000_000;
    let rtt = 20 * MS;
    let k = 20u32;
    let sc = Scenario {
        flows: vec![
            FlowSpec::new("dctcp", rtt),
            FlowSpec {
                start_ns: SEC,
                ..FlowSpec::new("dctcp", rtt)
            },
        ],
        bw_bps: bw,
        buffer_bytes: Scenario::bdp_bytes(bw, rtt),
        ecn_threshold_pkts: Some(k),
        duration_ns: 30 * SEC,
        ..Scenario::default()
    };
    let r = sim::run(&host, &sc, None).unwrap();
    let q = r.mean_queue_between(10 * SEC, 30 * SEC);
    let max = bw as f64 * f64::from(sim::MSS) / f64::from(sim::WIRE_BYTES);
    println!(
        "dctcp x2, K={k}: mean queue {q:.1} pkts over the last 20 s ({:.1} over the run), drops {} of {} offered, CE marks {}, goodput {:.4} of capacity, Jain {:.4}, p99 delay {} us",
        r.queue.mean_len_pkts,
        r.queue.drops,
        r.queue.offered,
        r.queue.ce_marks,
        r.total_goodput_bps / max,
        r.jain,
        r.queue.p99_delay_ns / 1000
    );
    assert!(
        (0.5 * f64::from(k)..=2.0 * f64::from(k)).contains(&q),
        "mean queue {q}"
    );
    assert!(
        r.queue.drops * 1000 <= r.queue.offered,
        "drops {}",
        r.queue.drops
    );
    assert!(r.queue.ce_marks > 0);
    assert!(r.total_goodput_bps >= 0.9 * max, "ECN keeps the link busy");
    assert!(r.flows.iter().all(|f| f.rtos == 0));
}
