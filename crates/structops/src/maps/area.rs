//! Value memory: zeroed, 8-byte aligned (page aligned for mmap-able maps), at a fixed
//! address for the owner's whole life, and copied in and out word by word with atomic
//! loads and stores so that the syscall side and programs can share it without data
//! races in the Rust sense. Consistency across words is the job of [`SeqLock`].

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::errno::Errno;

/// A fixed, zeroed allocation of `len` bytes.
pub(crate) struct ValueArea {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
}

// SAFETY: the area is plain memory; all shared access goes through atomics (from Rust)
// or through raw pointers handed to programs, whose accesses the verifier bounds.
unsafe impl Send for ValueArea {}
// SAFETY: as above.
unsafe impl Sync for ValueArea {}

impl ValueArea {
    /// `len` zeroed bytes aligned to `align` (a power of two, at least 8). `ENOMEM` if the
    /// allocator refuses.
    pub(crate) fn zeroed(len: usize, align: usize) -> Result<ValueArea, Errno> {
        let size = len
            .max(1)
            .checked_next_multiple_of(8)
            .ok_or(Errno::ENOMEM)?;
        let layout = Layout::from_size_align(size, align.max(8)).map_err(|_| Errno::ENOMEM)?;
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or(Errno::ENOMEM)?;
        Ok(ValueArea { ptr, layout, len })
    }

    /// The first byte; stable for the area's life.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `n` words starting at byte offset `off` (a multiple of 8), or `None` if they
    /// are not inside the area.
    pub(crate) fn words(&self, off: usize, n: usize) -> Option<&[AtomicU64]> {
        if !off.is_multiple_of(8) || off.checked_add(n.checked_mul(8)?)? > self.layout.size() {
            return None;
        }
        // SAFETY: in bounds (checked above), 8-aligned (base alignment >= 8, offset a
        // multiple of 8), and `AtomicU64` has the layout of `u64`; the memory lives as
        // long as `self`.
        Some(unsafe { std::slice::from_raw_parts(self.as_ptr().add(off).cast::<AtomicU64>(), n) })
    }
}

impl Drop for ValueArea {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Copies the first `out.len()` bytes of `words` out.
pub(crate) fn copy_out(words: &[AtomicU64], out: &mut [u8]) {
    for (w, chunk) in words.iter().zip(out.chunks_mut(8)) {
        let bytes = w.load(Ordering::Relaxed).to_ne_bytes();
        chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&[]));
    }
}

/// Copies `src` into the first `src.len()` bytes of `words`; bytes of a last partial
/// word beyond `src` are kept.
pub(crate) fn copy_in(words: &[AtomicU64], src: &[u8]) {
    for (w, chunk) in words.iter().zip(src.chunks(8)) {
        if chunk.len() == 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        } else {
            let mut b = w.load(Ordering::Relaxed).to_ne_bytes();
            if let Some(d) = b.get_mut(..chunk.len()) {
                d.copy_from_slice(chunk);
            }
            w.store(u64::from_ne_bytes(b), Ordering::Relaxed);
        }
    }
}

/// Zeroes `words`.
pub(crate) fn zero(words: &[AtomicU64]) {
    for w in words {
        w.store(0, Ordering::Relaxed);
    }
}

/// A sequence lock for one value: writers from the syscall side and from helpers
/// serialize on it, readers retry until they copied a stable value. Programs' direct
/// stores into a value bypass it, as they bypass any lock in the kernel.
#[derive(Default)]
pub(crate) struct SeqLock(AtomicU32);

impl SeqLock {
    /// Runs `f` as the only writer.
    pub(crate) fn write<R>(&self, f: impl FnOnce() -> R) -> R {
        loop {
            let s = self.0.load(Ordering::Relaxed);
            if s & 1 == 0
                && self
                    .0
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                fence(Ordering::Release);
                let r = f();
                self.0.store(s.wrapping_add(2), Ordering::Release);
                return r;
            }
            std::hint::spin_loop();
        }
    }

    /// Runs `f` (a copy out) until it ran without a concurrent writer.
    pub(crate) fn read(&self, mut f: impl FnMut()) {
        loop {
            let s1 = self.0.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                f();
                fence(Ordering::Acquire);
                if self.0.load(Ordering::Relaxed) == s1 {
                    return;
                }
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_copy_round_trip() {
        let a = ValueArea::zeroed(4096, 4096).unwrap();
        assert_eq!(a.as_ptr() as usize % 4096, 0);
        let w = a.words(8, 2).unwrap();
        copy_in(w, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        let mut out = [0u8; 16];
        copy_out(w, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0, 0]);
        assert!(a.words(4096, 1).is_none());
        assert!(a.words(4, 1).is_none());
        let s = SeqLock::default();
        let mut n = 0;
        s.write(|| zero(w));
        s.read(|| n += 1);
        assert_eq!(n, 1);
    }
}
