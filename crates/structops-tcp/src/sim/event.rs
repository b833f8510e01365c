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
    /// A data segment reaches the receiver: `a` = segment index, `flags` = `PKT_*`.
    Data,
    /// An ACK reaches the sender: `a` = cumulative segment index, `b` = first SACKed
    /// segment relative to `a`, `c` = SACKed segments (0: no SACK), `flags` = `ACK_ECE`.
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
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The pending events.
#[derive(Debug)]
pub(crate) struct EventQueue {
    heap: BinaryHeap<Event>,
    next_seq: u64,
}

impl EventQueue {
    /// An empty queue with room for `cap` events.
    pub(crate) fn with_capacity(cap: usize) -> EventQueue {
        EventQueue {
            heap: BinaryHeap::with_capacity(cap),
            next_seq: 0,
        }
    }

    /// Schedules an event with all its fields.
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
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Event {
            time,
            seq,
            a,
            flow,
            b,
            kind,
            flags,
            c,
        });
    }

    /// Schedules an event without payload.
    pub(crate) fn push(&mut self, time: u64, kind: Kind, flow: u32) {
        self.push_full(time, kind, flow, 0, 0, 0, 0);
    }

    /// The earliest event.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.heap.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_ties_in_scheduling_order() {
        assert_eq!(size_of::<Event>(), 40);
        let mut q = EventQueue::with_capacity(4);
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
}
