//! The dumbbell's bottleneck: one FIFO link with a rate, a buffer (drop-tail) and
//! optional ECN threshold marking, plus the statistics of its queue.

use std::collections::VecDeque;

/// The packet is ECN-capable (ECT(0)).
pub(crate) const PKT_ECT: u8 = 1;
/// The packet is marked Congestion Experienced.
pub(crate) const PKT_CE: u8 = 2;
/// The segment carries the TCP CWR flag.
pub(crate) const PKT_CWR: u8 = 4;

/// A packet in the bottleneck.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QPkt {
    /// Segment index within its flow.
    pub idx: u64,
    /// When it joined the queue (ns).
    pub enq_ns: u64,
    /// The flow.
    pub flow: u32,
    /// `PKT_*`.
    pub flags: u8,
}

/// What happened to a packet offered to the bottleneck.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The link was idle: the packet is in service now; schedule its departure.
    Serve,
    /// Queued behind others.
    Queued,
    /// The buffer was full.
    Dropped,
}

/// The bottleneck link and its queue.
#[derive(Debug)]
pub(crate) struct Bottleneck {
    /// Serialization time of one packet (ns).
    pub tx_ns: u64,
    /// Buffer size in packets (waiting packets; the one in service is on the wire).
    pub cap: usize,
    /// Mark ECT packets CE when this many packets already wait.
    pub ecn_k: Option<u32>,
    queue: VecDeque<QPkt>,
    /// The packet being serialized, if any.
    pub in_service: Option<QPkt>,
    /// Time integral of the queue length (packet·ns) up to `last_change`.
    len_integral: u128,
    last_change: u64,
    /// Queueing delays (arrival to start of service).
    pub delays: DelayHistogram,
    /// Packets dropped because the buffer was full.
    pub drops: u64,
    /// Packets marked CE.
    pub marks: u64,
    /// Packets offered.
    pub offered: u64,
    /// Largest queue length seen.
    pub max_len: usize,
    /// Per flow: (sum of queueing delays in ns, packets served, drops, CE marks).
    pub per_flow: Vec<FlowQueueStats>,
}

/// One flow's share of the bottleneck's statistics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FlowQueueStats {
    /// Sum of queueing delays (ns).
    pub delay_sum: u128,
    /// Packets that started service.
    pub served: u64,
    /// Packets dropped because the buffer was full.
    pub drops: u64,
    /// Packets marked CE.
    pub marks: u64,
}

impl Bottleneck {
    /// A link serializing a packet in `tx_ns`, buffering `cap` packets.
    pub(crate) fn new(tx_ns: u64, cap: usize, ecn_k: Option<u32>, flows: usize) -> Bottleneck {
        Bottleneck {
            tx_ns,
            cap,
            ecn_k,
            queue: VecDeque::with_capacity(cap.saturating_add(1).min(1 << 16)),
            in_service: None,
            len_integral: 0,
            last_change: 0,
            delays: DelayHistogram::new(),
            drops: 0,
            marks: 0,
            offered: 0,
            max_len: 0,
            per_flow: vec![FlowQueueStats::default(); flows],
        }
    }

    fn served(&mut self, p: &QPkt, delay: u64) {
        self.delays.record(delay);
        if let Some(f) = self.per_flow.get_mut(p.flow as usize) {
            f.delay_sum += u128::from(delay);
            f.served += 1;
        }
    }

    /// Packets waiting (not counting the one in service).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    fn account(&mut self, now: u64) {
        let dt = now.saturating_sub(self.last_change);
        self.len_integral += u128::from(dt) * self.queue.len() as u128;
        self.last_change = now;
    }

    /// The time integral of the queue length up to `now` (packet·ns).
    pub(crate) fn len_integral(&mut self, now: u64) -> u128 {
        self.account(now);
        self.len_integral
    }

    /// A packet arrives at the link at `now`.
    pub(crate) fn offer(&mut self, now: u64, mut p: QPkt) -> Offer {
        self.offered += 1;
        if self.in_service.is_none() {
            self.served(&p, 0);
            self.in_service = Some(p);
            return Offer::Serve;
        }
        if self.queue.len() >= self.cap {
            self.drops += 1;
            if let Some(f) = self.per_flow.get_mut(p.flow as usize) {
                f.drops += 1;
            }
            return Offer::Dropped;
        }
        if let Some(k) = self.ecn_k
            && p.flags & PKT_ECT != 0
            && self.queue.len() >= k as usize
        {
            p.flags |= PKT_CE;
            self.marks += 1;
            if let Some(f) = self.per_flow.get_mut(p.flow as usize) {
                f.marks += 1;
            }
        }
        self.account(now);
        p.enq_ns = now;
        self.queue.push_back(p);
        self.max_len = self.max_len.max(self.queue.len());
        Offer::Queued
    }

    /// The packet in service leaves at `now`; the next one (if any) starts service.
    /// Returns the departed packet and whether a new one is in service.
    pub(crate) fn depart(&mut self, now: u64) -> (Option<QPkt>, bool) {
        let done = self.in_service.take();
        self.account(now);
        if let Some(next) = self.queue.pop_front() {
            self.served(&next, now.saturating_sub(next.enq_ns));
            self.in_service = Some(next);
            (done, true)
        } else {
            (done, false)
        }
    }
}

/// A log-linear histogram of delays in ns (64 sub-buckets per power of two: at most
/// 1.6% relative error), with the exact sum for the mean.
#[derive(Clone, Debug)]
pub(crate) struct DelayHistogram {
    counts: Vec<u64>,
    sum: u128,
    n: u64,
    max: u64,
}

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;

impl DelayHistogram {
    pub(crate) fn new() -> DelayHistogram {
        DelayHistogram {
            counts: vec![0; ((64 - SUB_BITS as usize) + 2) * SUB as usize],
            sum: 0,
            n: 0,
            max: 0,
        }
    }

    fn bucket(v: u64) -> usize {
        if v < 2 * SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let e = msb - SUB_BITS;
        let m = v >> e; // in [SUB, 2*SUB)
        (u64::from(e) * SUB + m) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < 2 * SUB {
            return i;
        }
        let e = i / SUB - 1;
        let m = i - e * SUB;
        (m << e) + (1u64 << e) / 2
    }

    /// Records one delay.
    pub(crate) fn record(&mut self, v: u64) {
        let b = Self::bucket(v);
        if let Some(c) = self.counts.get_mut(b) {
            *c += 1;
        }
        self.sum += u128::from(v);
        self.n += 1;
        self.max = self.max.max(v);
    }

    /// Samples recorded.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.n
    }

    /// The mean (0 without samples).
    pub(crate) fn mean(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum as f64 / self.n as f64
        }
    }

    /// The largest sample.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The `q` quantile (0 < q <= 1), to the histogram's resolution.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_within_resolution() {
        let mut h = DelayHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 10_000);
        assert!((h.mean() - 5_000_500.0).abs() < 1e-6);
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 9_900_000.0).abs() / 9_900_000.0 < 0.02, "{p99}");
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5_000_000.0 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        for v in [0u64, 1, 127, 128, 129, 1 << 40, u64::MAX] {
            let b = DelayHistogram::bucket(v);
            assert!(b < h.counts.len(), "{v}");
            let mid = DelayHistogram::value(b) as f64;
            assert!((mid - v as f64).abs() <= v as f64 / 64.0 + 0.5, "{v} {mid}");
        }
    }

    #[test]
    fn drop_tail_and_ecn_threshold() {
        let mut l = Bottleneck::new(100, 3, Some(2), 1);
        let p = |flags| QPkt {
            idx: 0,
            enq_ns: 0,
            flow: 0,
            flags,
        };
        assert_eq!(l.offer(0, p(PKT_ECT)), Offer::Serve);
        for _ in 0..3 {
            assert_eq!(l.offer(0, p(PKT_ECT)), Offer::Queued);
        }
        assert_eq!(l.offer(0, p(PKT_ECT)), Offer::Dropped);
        assert_eq!(
            (l.drops, l.marks),
            (1, 1),
            "the third waiting packet is marked"
        );
        let (done, more) = l.depart(100);
        assert!(done.is_some() && more);
        assert_eq!(l.len(), 2);
        assert_eq!(l.len_integral(200), 3 * 100 + 2 * 100);
    }
}
