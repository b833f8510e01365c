//! The event queue: a binary heap of compact events ordered by (time, sequence number),
//! so that events at the same instant run in the order they were scheduled and every
//! run is reproducible.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// What an event does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A flow opens its connection and starts sending.
    Start,
    /// The bottleneck finished serializing the packet in service.
    LinkDone,
    /// A data segment reaches the receiver: `a` = segment index, `flags` = `PKT_*`,
    /// `ts` = its TSval.
    Data,
    /// An ACK reaches the sender: `a` = cumulative segment index, `b` = first SACKed
    /// segment relative to `a`, `c` = SACKed segments (0: no SACK), `flags` = `ACK_ECE`,
    /// `ts` = its TSecr.
    Ack,
    /// The sender's retransmission / reordering timer (lazily re-armed).
    XmitTimer,
    /// The receiver's delayed-ACK timer (lazily re-armed).
    DelackTimer,
    /// The sender's pacing timer.
    PacingTimer,
    /// Record a time-series sample.
    Sample,
    /// Report progress.
    Progress,
    /// Run the scheduled callback `a`.
    Callback,
}

/// One event (40 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event {
    /// When, in simulated ns.
    pub time: u64,
    /// Scheduling order, the tie breaker.
    seq: u64,
    /// First payload word.
    pub a: u64,
    /// The flow.
    pub flow: u32,
    /// Second payload word.
    pub b: u32,
    /// What.
    pub kind: Kind,
    /// Packet flags.
    pub flags: u8,
    /// Third payload word.
    pub c: u16,
    /// The TCP timestamp a packet carries (TSval of data, TSecr of an ACK).
    pub ts: u32,
}

impl Event {
    /// (time, seq) as one number.
    fn key(&self) -> u128 {
        (u128::from(self.time) << 64) | u128::from(self.seq)
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Event) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first.
    fn cmp(&self, other: &Event) -> Ordering {
        // One 128-bit comparison: branch-free, where comparing the fields in turn
        // mispredicts on every other level of the heap.
        other.key().cmp(&self.key())
    }
}

/// The pending events.
///
/// Data packets of one flow reach its receiver in the order they left the bottleneck,
/// and its ACKs reach the sender in the order they were sent (each direction has one
/// fixed delay; a delay spike holds later packets behind earlier ones), so those events wait in per-flow FIFO lines and only each line's head
/// is in the heap. An event keeps the sequence number it was scheduled with, so the
/// order of events is exactly the heap's (time, sequence) order; the heap just stays
/// small (a few entries per flow instead of one per packet in flight).
#[derive(Debug)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Event>,
    next_seq: u64,
    /// Per line (`2 * flow` for data, `2 * flow + 1` for ACKs): events behind the head.
    lines: Vec<Line>,
}

#[derive(Debug, Default)]
struct Line {
    /// The line's head is in the heap.
    busy: bool,
    waiting: std::collections::VecDeque<Event>,
}

/// The FIFO line of an event, if it travels in one.
fn line_of(kind: Kind, flow: u32) -> Option<usize> {
    match kind {
        Kind::Data => Some(2 * flow as usize),
        Kind::Ack => Some(2 * flow as usize + 1),
        _ => None,
    }
}

impl EventQueue {
    /// An empty queue for `flows` flows.
    pub(crate) fn new(flows: usize) -> EventQueue {
        EventQueue {
            heap: BinaryHeap::with_capacity(64 + 8 * flows),
            next_seq: 0,
            lines: (0..2 * flows).map(|_| Line::default()).collect(),
        }
    }

    /// Schedules an event with all its fields. Data and ACK events of a flow must be
    /// scheduled in time order (they are: see the type's doc).
    #[expect(clippy::too_many_arguments, reason = "the event's fields, kept flat")]
    pub(crate) fn push_full(
        &mut self,
        time: u64,
        kind: Kind,
        flow: u32,
        a: u64,
        b: u32,
        c: u16,
        flags: u8,
        ts: u32,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let ev = Event {
            time,
            seq,
            a,
            flow,
            b,
            kind,
            flags,
            c,
            ts,
        };
        if let Some(line) = line_of(kind, flow).and_then(|l| self.lines.get_mut(l)) {
            if line.busy {
                line.waiting.push_back(ev);
                return;
            }
            line.busy = true;
        }
        self.heap.push(ev);
    }

    /// Schedules an event without payload.
    pub(crate) fn push(&mut self, time: u64, kind: Kind, flow: u32) {
        self.push_full(time, kind, flow, 0, 0, 0, 0, 0);
    }

    /// The time of the earliest event.
    pub(crate) fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.time)
    }

    /// The earliest event.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        let ev = self.heap.pop()?;
        if let Some(line) = line_of(ev.kind, ev.flow).and_then(|l| self.lines.get_mut(l)) {
            match line.waiting.pop_front() {
                Some(next) => self.heap.push(next),
                None => line.busy = false,
            }
        }
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_ties_in_scheduling_order() {
        assert_eq!(size_of::<Event>(), 40);
        let mut q = EventQueue::new(4);
        q.push(20, Kind::Sample, 0);
        q.push(10, Kind::Start, 1);
        q.push(10, Kind::Start, 2);
        q.push(5, Kind::Progress, 3);
        q.push(10, Kind::Start, 0);
        let order: Vec<(u64, u32)> = std::iter::from_fn(|| q.pop())
            .map(|e| (e.time, e.flow))
            .collect();
        assert_eq!(order, vec![(5, 3), (10, 1), (10, 2), (10, 0), (20, 0)]);
    }

    #[test]
    fn lines_keep_the_heap_order() {
        // The same schedule through lines and through a plain heap pops identically.
        let mut q = EventQueue::new(2);
        let mut plain = BinaryHeap::new();
        let mut t = 0u64;
        let mut x = 12345u64;
        for i in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += x % 3;
            let (kind, flow, delay) = match x % 5 {
                0 => (Kind::Data, 0, 7),
                1 => (Kind::Data, 1, 3),
                2 => (Kind::Ack, 0, 7),
                3 => (Kind::Ack, 1, 0),
                _ => (Kind::XmitTimer, 1, x % 11),
            };
            q.push_full(t + delay, kind, flow, i, 0, 0, 0, 0);
            plain.push(Event {
                time: t + delay,
                seq: i,
                a: i,
                flow,
                b: 0,
                kind,
                flags: 0,
                c: 0,
                ts: 0,
            });
            if x.is_multiple_of(4) {
                let (a, b) = (q.pop().map(|e| e.a), plain.pop().map(|e| e.a));
                assert_eq!(a, b);
            }
        }
        while let Some(e) = plain.pop() {
            assert_eq!(q.pop().map(|e| e.a), Some(e.a));
        }
        assert!(q.pop().is_none());
    }
}
