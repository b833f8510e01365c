//! [`ExecMemory`]: W^X pages for compiled code.
//!
//! Code is written into fresh anonymous pages mapped read+write, then the
//! mapping is switched to read+execute before anything can run it; it is
//! never writable and executable at once. The pages are unmapped when the
//! last owner (an `Arc` inside every [`JitProgram`](super::JitProgram)
//! clone) drops it.

use std::ptr::NonNull;

use super::JitError;

/// A read+execute mapping holding finished machine code.
#[derive(Debug)]
pub(crate) struct ExecMemory {
    base: NonNull<u8>,
    /// Mapped length: the code length rounded up to whole pages.
    mapped: usize,
    /// Bytes of code.
    len: usize,
}

// SAFETY: the mapping is immutable once built (read+execute only) and
// owned exclusively by this value; sharing addresses between threads is
// what executing it from several threads needs.
unsafe impl Send for ExecMemory {}
// SAFETY: as above; no method mutates.
unsafe impl Sync for ExecMemory {}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&s| s > 0)
        .unwrap_or(4096)
}

impl ExecMemory {
    /// Maps `code.len()` bytes read+write, lets `patch` finish them in
    /// place (relocations need the final address), then maps them
    /// read+execute.
    pub(crate) fn new(
        code: &[u8],
        patch: impl FnOnce(&mut [u8], u64) -> Result<(), JitError>,
    ) -> Result<ExecMemory, JitError> {
        let page = page_size();
        let mapped = code
            .len()
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or(JitError::Memory {
                op: "size",
                errno: libc::ENOMEM,
            })?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(JitError::Memory {
                op: "mmap",
                errno: errno(),
            });
        }
        let Some(base) = NonNull::new(p.cast::<u8>()) else {
            return Err(JitError::Memory {
                op: "mmap",
                errno: libc::ENOMEM,
            });
        };
        // From here on, dropping `mem` unmaps.
        let mem = ExecMemory {
            base,
            mapped,
            len: code.len(),
        };
        // SAFETY: the mapping is `mapped >= code.len()` bytes, readable and
        // writable, and nothing else refers to it yet.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base.as_ptr(), code.len()) };
        bytes.copy_from_slice(code);
        patch(bytes, mem.addr())?;
        // SAFETY: our own mapping; after this it is never written again.
        let rc = unsafe {
            libc::mprotect(
                base.as_ptr().cast(),
                mapped,
                libc::PROT_READ | libc::PROT_EXEC,
            )
        };
        if rc != 0 {
            return Err(JitError::Memory {
                op: "mprotect",
                errno: errno(),
            });
        }
        Ok(mem)
    }

    /// Address of the first byte of code.
    pub(crate) fn addr(&self) -> u64 {
        self.base.as_ptr().expose_provenance() as u64
    }

    /// Bytes mapped: the code rounded up to whole pages (at least one).
    pub(crate) fn mapped_len(&self) -> usize {
        self.mapped
    }

    /// Bytes of code (not counting the rest of the last page).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The code, for disassembly and tests.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are mapped readable for the
        // lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    /// Whether `addr` lies inside the mapping's code.
    #[cfg(test)]
    pub(crate) fn contains(&self, addr: u64) -> bool {
        addr >= self.addr() && addr < self.addr() + self.len as u64
    }
}

impl Drop for ExecMemory {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `mapped` bytes; no code in it can be
        // running, because every running program holds a reference.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped);
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protection of the page holding `addr`, from /proc/self/maps.
    fn protection(addr: u64) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (lo, hi) = range.split_once('-')?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            let hi = u64::from_str_radix(hi, 16).ok()?;
            (addr >= lo && addr < hi).then(|| rest.split(' ').next().unwrap_or("").to_string())
        })
    }

    #[test]
    fn code_is_mapped_read_execute_and_never_writable() {
        let mut seen_during_patch = None;
        let mem = ExecMemory::new(&[0xc3; 100], |bytes, addr| {
            seen_during_patch = protection(addr);
            bytes[0] = 0x90;
            Ok(())
        })
        .unwrap();
        assert_eq!(mem.bytes()[0], 0x90);
        assert_eq!(mem.bytes()[1], 0xc3);
        assert_eq!(mem.len(), 100);
        assert_eq!(
            mem.mapped_len(),
            page_size(),
            "100 bytes take one whole page"
        );
        assert!(mem.contains(mem.addr() + 99));
        if let Some(p) = seen_during_patch {
            assert!(p.starts_with("rw-"), "while patching: {p}");
        }
        if let Some(p) = protection(mem.addr()) {
            assert!(p.starts_with("r-x"), "after finishing: {p}");
        }
    }

    #[test]
    fn patch_errors_unmap_and_propagate() {
        let err = ExecMemory::new(&[0; 8], |_, _| Err(JitError::Relocation { kind: "test" }))
            .unwrap_err();
        assert!(matches!(err, JitError::Relocation { kind: "test" }));
    }
}
