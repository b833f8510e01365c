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
