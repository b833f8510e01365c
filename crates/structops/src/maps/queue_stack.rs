//! `BPF_MAP_TYPE_QUEUE` and `BPF_MAP_TYPE_STACK` (`kernel/bpf/queue_stack_maps.c`):
//! keyless maps of `max_entries` values in a ring of `max_entries + 1` slots, read in
//! FIFO (queue) or LIFO (stack) order.
//!
//! Programs use them through `bpf_map_push_elem` / `bpf_map_pop_elem` /
//! `bpf_map_peek_elem`; the syscall side maps `BPF_MAP_UPDATE_ELEM` to push,
//! `BPF_MAP_LOOKUP_ELEM` to peek and `BPF_MAP_LOOKUP_AND_DELETE_ELEM` to pop. Pushing
//! onto a full map fails with `E2BIG`, unless `BPF_EXIST` asks to overwrite the oldest
//! value. The ring is guarded by a lock, as the kernel guards it with a spinlock.

use std::sync::Mutex;

use super::{BPF_EXIST, BPF_NOEXIST};
use crate::errno::Errno;

/// The ring: `head` is the next slot to write, `tail` the oldest value; equal when
/// empty, `head + 1 == tail` (mod `size`) when full.
struct Ring {
    head: u32,
    tail: u32,
    elements: Vec<u8>,
}

/// A queue or stack map's storage.
pub(crate) struct QueueStack {
    /// LIFO order (`BPF_MAP_TYPE_STACK`).
    stack: bool,
    value_size: usize,
    /// Slots: `max_entries + 1`.
    size: u32,
    ring: Mutex<Ring>,
}

impl QueueStack {
    /// An empty map of `max_entries` values of `value_size` bytes; the sizes were
    /// checked by `queue_stack_map_alloc_check` (so the product fits in a `u32`).
    pub(crate) fn new(stack: bool, value_size: u32, max_entries: u32) -> QueueStack {
        let size = max_entries.saturating_add(1);
        QueueStack {
            stack,
            value_size: value_size as usize,
            size,
            ring: Mutex::new(Ring {
                head: 0,
                tail: 0,
                elements: vec![0; size as usize * value_size as usize],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot<'r>(&self, ring: &'r mut Ring, index: u32) -> &'r mut [u8] {
        let start = index as usize * self.value_size;
        ring.elements
            .get_mut(start..start + self.value_size)
            .unwrap_or(&mut [])
    }

    /// `queue_stack_map_push_elem`: appends `value` (at least `value_size` bytes).
    /// `BPF_EXIST` makes room on a full map by dropping the oldest value; `BPF_NOEXIST`
    /// or any other flag is `EINVAL`; a full map without `BPF_EXIST` is `E2BIG`.
    pub(crate) fn push(&self, value: &[u8], flags: u64) -> Result<(), Errno> {
        let replace = flags & BPF_EXIST != 0;
        if flags & BPF_NOEXIST != 0 || flags > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        let src = value.get(..self.value_size).ok_or(Errno::EFAULT)?;
        let mut ring = self.lock();
        let next = if ring.head + 1 >= self.size {
            0
        } else {
            ring.head + 1
        };
        if next == ring.tail {
            if !replace {
                return Err(Errno::E2BIG);
            }
            ring.tail = if ring.tail + 1 >= self.size {
                0
            } else {
                ring.tail + 1
            };
        }
        let head = ring.head;
        self.slot(&mut ring, head).copy_from_slice(src);
        ring.head = next;
        Ok(())
    }

    /// `__queue_map_get` / `__stack_map_get`: copies the next value (the oldest for a
    /// queue, the newest for a stack) into `out`, removing it with `delete`. An empty map
    /// zeroes `out` and is `ENOENT`.
    pub(crate) fn get(&self, out: &mut [u8], delete: bool) -> Result<(), Errno> {
        let out = out.get_mut(..self.value_size).ok_or(Errno::EFAULT)?;
        let mut ring = self.lock();
        if ring.head == ring.tail {
            out.fill(0);
            return Err(Errno::ENOENT);
        }
        let index = if self.stack {
            ring.head.checked_sub(1).unwrap_or(self.size - 1)
        } else {
            ring.tail
        };
        out.copy_from_slice(self.slot(&mut ring, index));
        if delete {
            if self.stack {
                ring.head = index;
            } else {
                ring.tail = if ring.tail + 1 >= self.size {
                    0
                } else {
                    ring.tail + 1
                };
            }
        }
        Ok(())
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        let ring = self.lock();
        ((ring.head + self.size - ring.tail) % self.size) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: u32) -> [u8; 4] {
        x.to_ne_bytes()
    }

    fn get(q: &QueueStack, delete: bool) -> Result<u32, Errno> {
        let mut b = [0xffu8; 4];
        let r = q.get(&mut b, delete);
        r.map(|()| u32::from_ne_bytes(b)).inspect_err(|_| {
            assert_eq!(b, [0; 4], "an empty map zeroes the value");
        })
    }

    #[test]
    fn queue_is_fifo_and_exist_overwrites_the_oldest() {
        let q = QueueStack::new(false, 4, 3);
        assert_eq!(get(&q, false), Err(Errno::ENOENT));
        for i in 1..=3 {
            q.push(&v(i), 0).unwrap();
        }
        assert_eq!(q.push(&v(4), 0), Err(Errno::E2BIG));
        assert_eq!(q.push(&v(4), BPF_NOEXIST), Err(Errno::EINVAL));
        assert_eq!(q.push(&v(4), 3), Err(Errno::EINVAL));
        q.push(&v(4), BPF_EXIST).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(get(&q, false), Ok(2), "1 was overwritten");
        assert_eq!(get(&q, true), Ok(2));
        assert_eq!(get(&q, true), Ok(3));
        assert_eq!(get(&q, true), Ok(4));
        assert_eq!(get(&q, true), Err(Errno::ENOENT));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn stack_is_lifo_across_the_ring_end() {
        let s = QueueStack::new(true, 4, 2);
        for round in 0..5 {
            s.push(&v(round * 10 + 1), 0).unwrap();
            s.push(&v(round * 10 + 2), 0).unwrap();
            assert_eq!(s.push(&v(9), 0), Err(Errno::E2BIG));
            assert_eq!(get(&s, false), Ok(round * 10 + 2));
            assert_eq!(get(&s, true), Ok(round * 10 + 2));
            assert_eq!(get(&s, true), Ok(round * 10 + 1));
            assert_eq!(get(&s, true), Err(Errno::ENOENT));
        }
        // A full stack with BPF_EXIST drops the oldest (the tail), keeps LIFO order.
        s.push(&v(1), 0).unwrap();
        s.push(&v(2), 0).unwrap();
        s.push(&v(3), BPF_EXIST).unwrap();
        assert_eq!(get(&s, true), Ok(3));
        assert_eq!(get(&s, true), Ok(2));
        assert_eq!(get(&s, true), Err(Errno::ENOENT));
    }
}
