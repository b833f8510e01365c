//! `RINGBUF` (`kernel/bpf/ringbuf.c` semantics): a multi-producer, single-consumer
//! byte ring with 8-byte record headers.
//!
//! A record is an 8-byte header (`len` with the busy bit 31 and the discard bit 30, then
//! the page offset of the header from the ring's metadata page) followed by the data,
//! the whole rounded up to 8 bytes. Producers reserve under a lock, write their data,
//! then commit by flipping the header with an atomic exchange; the consumer reads up to
//! the first busy record. Positions are byte counters masked by `size - 1`.
//!
//! The kernel maps the data pages twice so that a record that wraps is contiguous. Here
//! the data area is twice the ring size instead: a record that runs past the end simply
//! continues into the second half, which is never otherwise addressed. The page before
//! the data holds a pointer back to the ring, so that `bpf_ringbuf_submit(sample)` can
//! find its ring from the sample alone, as the kernel does with the header's page offset.

use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::area::ValueArea;
use super::array::PAGE_SIZE;
use crate::errno::Errno;

/// `BPF_RINGBUF_BUSY_BIT`.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// `BPF_RINGBUF_DISCARD_BIT`.
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// `BPF_RINGBUF_HDR_SZ`.
pub const BPF_RINGBUF_HDR_SZ: u32 = 8;
/// `BPF_RB_NO_WAKEUP`: do not notify the consumer on commit.
pub const BPF_RB_NO_WAKEUP: u64 = 1 << 0;
/// `BPF_RB_FORCE_WAKEUP`: notify the consumer on commit unconditionally.
pub const BPF_RB_FORCE_WAKEUP: u64 = 1 << 1;
/// `bpf_ringbuf_query` flag: bytes not yet consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_query` flag: the ring's size.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// `bpf_ringbuf_query` flag: the consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// `bpf_ringbuf_query` flag: the producer position.
pub const BPF_RB_PROD_POS: u64 = 3;
/// `RINGBUF_MAX_RECORD_SZ`.
const MAX_RECORD: u64 = (u32::MAX / 4) as u64;

struct Inner {
    /// One metadata page, then `2 * size` data bytes.
    area: ValueArea,
    mask: u64,
    consumer_pos: AtomicU64,
    producer_pos: AtomicU64,
    /// The producers' lock, guarding `pending_pos` (the kernel's `rb->spinlock`).
    pending_pos: Mutex<u64>,
    wake_gen: Mutex<u64>,
    wake: Condvar,
    notify: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// A ring buffer.
pub struct RingBuf {
    inner: Box<Inner>,
}

impl std::fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuf")
            .field("size", &self.size())
            .field(
                "consumer_pos",
                &self.inner.consumer_pos.load(Ordering::Relaxed),
            )
            .field(
                "producer_pos",
                &self.inner.producer_pos.load(Ordering::Relaxed),
            )
            .finish()
    }
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

impl Inner {
    fn data(&self) -> *mut u8 {
        // SAFETY: the area is at least one page plus the data.
        unsafe { self.area.as_ptr().add(PAGE_SIZE) }
    }

    fn header(&self, pos: u64) -> &AtomicU32 {
        // SAFETY: `pos & mask < size` and the area holds `2 * size` data bytes; headers
        // are 8-aligned (every record length is a multiple of 8, the data page aligned).
        unsafe {
            &*self
                .data()
                .add((pos & self.mask) as usize)
                .cast::<AtomicU32>()
        }
    }

    fn wake(&self) {
        let mut g = self.wake_gen.lock().unwrap_or_else(|p| p.into_inner());
        *g = g.wrapping_add(1);
        drop(g);
        self.wake.notify_all();
        if let Some(f) = self
            .notify
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            f();
        }
    }

    fn commit(&self, sample: *mut u8, flags: u64, discard: bool) {
        // SAFETY: `sample` came from `reserve`, so its header is 8 bytes before it.
        let hdr_ptr = unsafe { sample.sub(BPF_RINGBUF_HDR_SZ as usize) };
        // SAFETY: as in `header`.
        let hdr = unsafe { &*hdr_ptr.cast::<AtomicU32>() };
        let mut new_len = hdr.load(Ordering::Relaxed) ^ BPF_RINGBUF_BUSY_BIT;
        if discard {
            new_len |= BPF_RINGBUF_DISCARD_BIT;
        }
        hdr.swap(new_len, Ordering::AcqRel);
        let rec_pos = (hdr_ptr as usize).wrapping_sub(self.data() as usize) as u64;
        let cons_pos = self.consumer_pos.load(Ordering::Acquire) & self.mask;
        if flags & BPF_RB_FORCE_WAKEUP != 0
            || (cons_pos == rec_pos && flags & BPF_RB_NO_WAKEUP == 0)
        {
            self.wake();
        }
    }
}

impl RingBuf {
    /// A ring of `size` data bytes (a power-of-2 multiple of the page size, checked by
    /// the caller).
    pub(crate) fn new(size: u32) -> Result<RingBuf, Errno> {
        let data = 2usize
            .checked_mul(size as usize)
            .and_then(|d| d.checked_add(PAGE_SIZE))
            .ok_or(Errno::ENOMEM)?;
        let area = ValueArea::zeroed(data, PAGE_SIZE)?;
        let inner = Box::new(Inner {
            area,
            mask: u64::from(size) - 1,
            consumer_pos: AtomicU64::new(0),
            producer_pos: AtomicU64::new(0),
            pending_pos: Mutex::new(0),
            wake_gen: Mutex::new(0),
            wake: Condvar::new(),
            notify: Mutex::new(None),
        });
        let back: *const Inner = &*inner;
        // SAFETY: the metadata page is ours, page aligned, and `Inner` is boxed, so its
        // address is stable for the ring's life.
        unsafe { inner.area.as_ptr().cast::<*const Inner>().write(back) };
        Ok(RingBuf { inner })
    }

    /// Data bytes in the ring.
    pub fn size(&self) -> u64 {
        self.inner.mask + 1
    }

    /// `bpf_ringbuf_reserve`: room for `size` bytes, or `None` (no room, too big, or
    /// non-zero `flags`). The returned memory is the program's until
    /// [`RingBuf::submit`] or [`RingBuf::discard`].
    pub fn reserve(&self, size: u64, flags: u64) -> Option<NonNull<u8>> {
        if flags != 0 || size > MAX_RECORD {
            return None;
        }
        let inner = &*self.inner;
        let len = round8(size + u64::from(BPF_RINGBUF_HDR_SZ));
        if len > self.size() {
            return None;
        }
        let cons_pos = inner.consumer_pos.load(Ordering::Acquire);
        let mut pend = inner.pending_pos.lock().unwrap_or_else(|p| p.into_inner());
        let mut pend_pos = *pend;
        let prod_pos = inner.producer_pos.load(Ordering::Relaxed);
        let new_prod_pos = prod_pos + len;
        while prod_pos > pend_pos {
            let hdr_len = inner.header(pend_pos).load(Ordering::Acquire);
            if hdr_len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let l = hdr_len & !BPF_RINGBUF_DISCARD_BIT;
            pend_pos += round8(u64::from(l) + u64::from(BPF_RINGBUF_HDR_SZ));
        }
        *pend = pend_pos;
        if new_prod_pos - cons_pos > inner.mask || new_prod_pos - pend_pos > inner.mask {
            return None;
        }
        let off = (prod_pos & inner.mask) as usize;
        let hdr = inner.header(prod_pos);
        hdr.store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        // SAFETY: the header's second word, inside the data area.
        let pg = unsafe { &*inner.data().add(off + 4).cast::<AtomicU32>() };
        pg.store(((off + PAGE_SIZE) / PAGE_SIZE) as u32, Ordering::Relaxed);
        inner.producer_pos.store(new_prod_pos, Ordering::Release);
        drop(pend);
        // SAFETY: inside the data area (see `header`).
        NonNull::new(unsafe { inner.data().add(off + BPF_RINGBUF_HDR_SZ as usize) })
    }

    /// `bpf_ringbuf_submit`: publishes a reserved record.
    ///
    /// # Safety
    /// `sample` must come from [`RingBuf::reserve`] on this ring and not be committed yet.
    pub unsafe fn submit(&self, sample: NonNull<u8>, flags: u64) {
        self.inner.commit(sample.as_ptr(), flags, false);
    }

    /// `bpf_ringbuf_discard`: drops a reserved record.
    ///
    /// # Safety
    /// As for [`RingBuf::submit`].
    pub unsafe fn discard(&self, sample: NonNull<u8>, flags: u64) {
        self.inner.commit(sample.as_ptr(), flags, true);
    }

    /// `bpf_ringbuf_output`: copies `data` as one record. `EINVAL` for unknown flags,
    /// `EAGAIN` without room.
    pub fn output(&self, data: &[u8], flags: u64) -> Result<(), Errno> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(Errno::EINVAL);
        }
        let rec = self.reserve(data.len() as u64, 0).ok_or(Errno::EAGAIN)?;
        // SAFETY: `reserve` gave `data.len()` writable bytes at `rec`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), rec.as_ptr(), data.len());
            self.submit(rec, flags);
        }
        Ok(())
    }

    /// `bpf_ringbuf_query`.
    pub fn query(&self, flags: u64) -> u64 {
        let i = &*self.inner;
        match flags {
            BPF_RB_AVAIL_DATA => {
                i.producer_pos.load(Ordering::Acquire) - i.consumer_pos.load(Ordering::Acquire)
            }
            BPF_RB_RING_SIZE => self.size(),
            BPF_RB_CONS_POS => i.consumer_pos.load(Ordering::Acquire),
            BPF_RB_PROD_POS => i.producer_pos.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// Consumes every committed record in order, calling `f` with each non-discarded
    /// record's data, until the first record still being written or until `f` breaks;
    /// returns how many records `f` saw (like libbpf's `ring_buffer__consume`).
    pub fn consume(&self, mut f: impl FnMut(&[u8]) -> ControlFlow<()>) -> usize {
        let i = &*self.inner;
        let mut seen = 0;
        let mut cons = i.consumer_pos.load(Ordering::Acquire);
        loop {
            let prod = i.producer_pos.load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let len = i.header(cons).load(Ordering::Acquire);
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let data_len = len & !BPF_RINGBUF_DISCARD_BIT;
            let mut stop = false;
            if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                let off = (cons & i.mask) as usize + BPF_RINGBUF_HDR_SZ as usize;
                // SAFETY: a committed record of `data_len` bytes, contiguous in the
                // doubled data area; producers do not touch it until it is consumed.
                let rec =
                    unsafe { std::slice::from_raw_parts(i.data().add(off), data_len as usize) };
                seen += 1;
                stop = f(rec).is_break();
            }
            cons += round8(u64::from(data_len) + u64::from(BPF_RINGBUF_HDR_SZ));
            i.consumer_pos.store(cons, Ordering::Release);
            if stop {
                break;
            }
        }
        seen
    }

    /// Bytes committed or reserved and not yet consumed.
    pub fn avail(&self) -> u64 {
        self.query(BPF_RB_AVAIL_DATA)
    }

    /// Blocks until a producer wakes the consumer (see `BPF_RB_NO_WAKEUP` /
    /// `BPF_RB_FORCE_WAKEUP`) or `timeout` passes; returns true if woken. Returns at once
    /// if data is already available.
    pub fn wait(&self, timeout: Duration) -> bool {
        let i = &*self.inner;
        let g = i.wake_gen.lock().unwrap_or_else(|p| p.into_inner());
        if self.avail() > 0 {
            return true;
        }
        let start = *g;
        let (g, res) = i
            .wake
            .wait_timeout_while(g, timeout, |gen_now| *gen_now == start)
            .unwrap_or_else(|p| p.into_inner());
        drop(g);
        !res.timed_out()
    }

    /// Installs a callback run on every wake-up (for hosts with their own event loop,
    /// like an eventfd); `None` removes it.
    pub fn set_notify(&self, f: Option<Box<dyn Fn() + Send + Sync>>) {
        *self.inner.notify.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

/// `bpf_ringbuf_submit`/`bpf_ringbuf_discard` given only the sample, as the helpers are
/// called: the ring is found through the header's page offset.
///
/// # Safety
/// `sample` must come from [`RingBuf::reserve`] on a live ring and not be committed yet.
pub unsafe fn commit_sample(sample: NonNull<u8>, flags: u64, discard: bool) {
    let s = sample.as_ptr();
    // SAFETY: (caller) the header precedes the sample; its page offset word counts pages
    // from the metadata page, which holds the ring's address.
    unsafe {
        let hdr = s.sub(BPF_RINGBUF_HDR_SZ as usize);
        let pg = u64::from((*hdr.add(4).cast::<AtomicU32>()).load(Ordering::Relaxed));
        let page = (hdr as usize) & !(PAGE_SIZE - 1);
        let meta = page - (pg as usize) * PAGE_SIZE;
        let inner = *(meta as *const *const Inner);
        (*inner).commit(s, flags, discard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_commit_consume_and_wrap() {
        let rb = RingBuf::new(4096).unwrap();
        assert_eq!(rb.query(BPF_RB_RING_SIZE), 4096);
        assert!(rb.reserve(8, 1).is_none(), "flags must be zero");
        assert!(rb.reserve(4096, 0).is_none(), "bigger than the ring");
        let a = rb.reserve(5, 0).unwrap();
        let b = rb.reserve(3, 0).unwrap();
        // SAFETY: fresh reservations of 5 and 3 bytes.
        unsafe {
            a.as_ptr()
                .copy_from_nonoverlapping([1u8, 2, 3, 4, 5].as_ptr(), 5);
            b.as_ptr().copy_from_nonoverlapping([9u8, 9, 9].as_ptr(), 3);
            rb.submit(b, 0);
        }
        // `a` is still busy: nothing can be consumed past it.
        assert_eq!(rb.consume(|_| ControlFlow::Continue(())), 0);
        // SAFETY: `a` is reserved and not committed.
        unsafe { commit_sample(a, 0, false) };
        let mut got = Vec::new();
        assert_eq!(
            rb.consume(|r| {
                got.push(r.to_vec());
                ControlFlow::Continue(())
            }),
            2
        );
        assert_eq!(got, vec![vec![1, 2, 3, 4, 5], vec![9, 9, 9]]);
        assert_eq!(rb.query(BPF_RB_CONS_POS), 32);
        // Fill past the end so a record wraps.
        for i in 0..200u32 {
            if rb.output(&i.to_le_bytes().repeat(4), 0) == Err(Errno::EAGAIN) {
                break;
            }
            if i % 3 == 0 {
                rb.consume(|r| {
                    assert_eq!(r.len(), 16);
                    ControlFlow::Continue(())
                });
            }
        }
        assert_eq!(rb.output(&[0], 4), Err(Errno::EINVAL));
        let d = rb.reserve(1, 0).unwrap();
        // SAFETY: reserved above.
        unsafe { rb.discard(d, BPF_RB_NO_WAKEUP) };
        let n = rb.consume(|_| ControlFlow::Continue(()));
        assert!(n > 0);
        assert_eq!(rb.avail(), 0);
    }

    #[test]
    fn wakeup_notifies_waiter() {
        let rb = std::sync::Arc::new(RingBuf::new(4096).unwrap());
        let r2 = rb.clone();
        let t = std::thread::spawn(move || r2.wait(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(50));
        rb.output(&[1, 2, 3], BPF_RB_FORCE_WAKEUP).unwrap();
        assert!(t.join().unwrap());
        // NO_WAKEUP with a consumer caught up: no notification, the wait times out
        // (data is consumed first so the early return does not fire).
        rb.consume(|_| ControlFlow::Continue(()));
        let count = std::sync::Arc::new(AtomicU64::new(0));
        let c2 = count.clone();
        rb.set_notify(Some(Box::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
        })));
        rb.output(&[1], BPF_RB_NO_WAKEUP).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 0);
        rb.consume(|_| ControlFlow::Continue(()));
        rb.output(&[1], 0).unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1, "consumer caught up: woken");
    }
}
