//! Memory a program may touch: the interpreter's own stack, and
//! [`Region`]s of host memory (the context, packets, granted map values).
//!
//! Programs hold real host addresses in their registers, in both modes:
//! `r10` points into the interpreter's stack allocation and `r1` at the
//! context. Checked mode compares every access with the allowed ranges
//! before it dereferences; unchecked mode dereferences directly.

use std::marker::PhantomData;
use std::ptr::NonNull;

/// Bytes of one stack frame (the kernel's `MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;

/// Most frames alive at once: the main program plus nested bpf-to-bpf
/// calls and callbacks (the kernel's `MAX_CALL_FRAMES`).
pub const MAX_CALL_FRAMES: usize = 8;

/// Whether a region may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Loads only.
    Read,
    /// Loads, stores and atomics.
    ReadWrite,
}

/// A range of host memory a program may use in checked mode, borrowed for
/// `'a` so that it outlives the run it is given to.
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    raw: RawRegion,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Region<'a> {
    /// A region the program may only read.
    pub fn read_only(bytes: &'a [u8]) -> Region<'a> {
        Region {
            raw: RawRegion::new(
                bytes.as_ptr().expose_provenance() as u64,
                bytes.len(),
                false,
            ),
            _borrow: PhantomData,
        }
    }

    /// A region the program may read and write.
    pub fn read_write(bytes: &'a mut [u8]) -> Region<'a> {
        Region {
            raw: RawRegion::new(
                bytes.as_mut_ptr().expose_provenance() as u64,
                bytes.len(),
                true,
            ),
            _borrow: PhantomData,
        }
    }

    /// A read-write region over 64-bit words, such as the argument array a
    /// struct_ops program receives as its context.
    pub fn read_write_u64s(words: &'a mut [u64]) -> Region<'a> {
        Region {
            raw: RawRegion::new(
                words.as_mut_ptr().expose_provenance() as u64,
                std::mem::size_of_val(words),
                true,
            ),
            _borrow: PhantomData,
        }
    }

    /// A region of `len` bytes at `addr`.
    ///
    /// # Safety
    ///
    /// For as long as any run uses the region, the bytes must be valid for
    /// reads (and writes, with [`Access::ReadWrite`]) through pointers made
    /// from `addr` with exposed provenance (`ptr as u64` exposes it), and
    /// nothing may hold a Rust reference to them that a program's writes
    /// would invalidate. Concurrent access by other threads is the same
    /// data race as in the kernel (BPF programs share map values with
    /// user space); it is the embedder's to accept.
    pub unsafe fn from_raw_parts(addr: u64, len: usize, access: Access) -> Region<'a> {
        Region {
            raw: RawRegion::new(addr, len, access == Access::ReadWrite),
            _borrow: PhantomData,
        }
    }

    /// Address of the first byte.
    pub fn addr(&self) -> u64 {
        self.raw.start
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.raw.end - self.raw.start
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.raw.end == self.raw.start
    }

    /// Whether the program may write it.
    pub fn access(&self) -> Access {
        if self.raw.writable {
            Access::ReadWrite
        } else {
            Access::Read
        }
    }

    pub(crate) fn raw(&self) -> RawRegion {
        self.raw
    }
}

/// A region without its lifetime, as the interpreter stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawRegion {
    pub(crate) start: u64,
    /// One past the last byte; never below `start`.
    pub(crate) end: u64,
    pub(crate) writable: bool,
}

impl RawRegion {
    pub(crate) fn new(start: u64, len: usize, writable: bool) -> RawRegion {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        RawRegion {
            start,
            // A region reaching past the address space is cut at its end.
            end: start.saturating_add(len),
            writable,
        }
    }

    /// Whether `[addr, end)` lies inside and the access is permitted.
    pub(crate) fn allows(&self, addr: u64, end: u64, write: bool) -> bool {
        addr >= self.start && end <= self.end && (self.writable || !write)
    }
}

/// Words of the whole stack: [`MAX_CALL_FRAMES`] frames of [`STACK_SIZE`].
const STACK_WORDS: usize = MAX_CALL_FRAMES * STACK_SIZE / 8;

/// The interpreter's stack: one 8-aligned allocation holding every frame,
/// frame `k` at bytes `[k * 512, (k + 1) * 512)`, plus one "initialized"
/// flag per byte for checked mode.
///
/// The allocation is only ever accessed through raw pointers made from its
/// exposed address (as a program's loads and stores are), never through a
/// Rust reference while it exists, so those pointers stay valid.
pub(crate) struct Stack {
    mem: NonNull<u64>,
    /// Exposed address of the first byte.
    pub(crate) base: u64,
    /// Per byte: written since its frame was entered.
    pub(crate) init: Box<[bool]>,
}

// SAFETY: `Stack` exclusively owns its allocation (like a `Box<[u64]>`);
// the raw pointer is only a way to avoid reference-based access.
unsafe impl Send for Stack {}
// SAFETY: no method mutates through `&Stack`.
unsafe impl Sync for Stack {}

impl Stack {
    pub(crate) fn new() -> Stack {
        let words: Box<[u64]> = vec![0u64; STACK_WORDS].into_boxed_slice();
        let mem = NonNull::from(Box::leak(words)).cast::<u64>();
        Stack {
            base: mem.as_ptr().expose_provenance() as u64,
            mem,
            init: vec![false; STACK_WORDS * 8].into_boxed_slice(),
        }
    }

    /// The frame pointer (`r10`) of frame `depth`: one past its last byte.
    pub(crate) fn frame_pointer(&self, depth: usize) -> u64 {
        let top = (depth.min(MAX_CALL_FRAMES - 1) + 1) * STACK_SIZE;
        self.base.wrapping_add(top as u64)
    }

    /// One past the last byte of the frames `0..=depth`.
    pub(crate) fn live_end(&self, depth: usize) -> u64 {
        self.frame_pointer(depth)
    }

    /// Zeroes frame `depth` and marks it uninitialized, as on entry.
    /// Zeroes frame `depth`, and with `track` marks its bytes unwritten (the
    /// initialization tracking only checked runs read).
    pub(crate) fn reset_frame(&mut self, depth: usize, track: bool) {
        let depth = depth.min(MAX_CALL_FRAMES - 1);
        let start = depth * STACK_SIZE;
        // SAFETY: `start + STACK_SIZE <= STACK_WORDS * 8`, inside the
        // allocation; bytes have no invalid values.
        unsafe {
            self.mem
                .as_ptr()
                .cast::<u8>()
                .add(start)
                .write_bytes(0, STACK_SIZE);
        }
        if track && let Some(flags) = self.init.get_mut(start..start + STACK_SIZE) {
            flags.fill(false);
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.mem.as_ptr(), STACK_WORDS);
        // SAFETY: `mem` came from `Box::leak` of a `Box<[u64]>` of exactly
        // `STACK_WORDS` words and is freed only here.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_aligned_and_disjoint() {
        let stack = Stack::new();
        assert_eq!(stack.base % 8, 0);
        assert_eq!(stack.frame_pointer(0), stack.base + 512);
        assert_eq!(stack.frame_pointer(7), stack.base + 4096);
        // Depths past the last frame are clamped rather than leaving the
        // allocation.
        assert_eq!(stack.frame_pointer(9), stack.base + 4096);
    }

    #[test]
    fn regions_check_bounds_and_permissions() {
        let mut buf = [0u8; 16];
        let region = Region::read_write(&mut buf);
        let raw = region.raw();
        assert!(raw.allows(raw.start, raw.start + 16, true));
        assert!(!raw.allows(raw.start + 1, raw.start + 17, false));
        assert!(!raw.allows(raw.start - 1, raw.start + 1, false));
        assert_eq!(region.len(), 16);
        assert_eq!(region.access(), Access::ReadWrite);
        let ro = [0u8; 4];
        let region = Region::read_only(&ro);
        assert!(!region.raw().allows(region.addr(), region.addr() + 4, true));
        assert!(region.raw().allows(region.addr(), region.addr() + 4, false));
    }

    #[test]
    fn raw_regions_saturate_at_the_end_of_the_address_space() {
        let raw = RawRegion::new(u64::MAX - 1, 100, false);
        assert_eq!(raw.end, u64::MAX);
    }
}
