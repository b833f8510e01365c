//! `ARRAY` and `PERCPU_ARRAY` (`kernel/bpf/arraymap.c` semantics).
//!
//! All values live in one zeroed allocation made at creation: element `i` is at
//! `i * round_up(value_size, 8)` (for per-CPU arrays, CPU `c`'s copy of element `i` is at
//! `(i * ncpus + c) * round_up(value_size, 8)`, so the syscall side's
//! `round_up(value_size, 8) * ncpus` layout is one contiguous copy). Addresses are stable
//! for the map's life and a program-side lookup is pointer arithmetic: no lock, no
//! atomic read-modify-write. `BPF_F_MMAPABLE` arrays are page aligned and page sized.
//! Syscall-side and helper writes of one element serialize on a per-element sequence
//! lock so that syscall-side reads never see a torn value.

use std::sync::atomic::AtomicU64;

use super::area::{SeqLock, ValueArea, copy_in, copy_out};
use super::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use crate::errno::Errno;

/// Page size of the mmap-able layout.
pub(crate) const PAGE_SIZE: usize = 4096;

/// An array map's storage.
pub(crate) struct ArrayMap {
    area: ValueArea,
    seq: Box<[SeqLock]>,
    elem_size: u32,
    value_size: u32,
    max_entries: u32,
    percpu: bool,
    ncpus: u32,
}

impl ArrayMap {
    /// Allocates `max_entries` zeroed values (`array_map_alloc`).
    pub(crate) fn new(
        value_size: u32,
        max_entries: u32,
        percpu: bool,
        mmapable: bool,
        ncpus: u32,
    ) -> Result<ArrayMap, Errno> {
        let elem_size = value_size.checked_next_multiple_of(8).ok_or(Errno::E2BIG)?;
        let ncpus = ncpus.max(1);
        let copies = if percpu { u64::from(ncpus) } else { 1 };
        let bytes = u64::from(max_entries) * u64::from(elem_size) * copies;
        let bytes = usize::try_from(bytes).map_err(|_| Errno::ENOMEM)?;
        let area = if mmapable {
            let len = bytes
                .checked_next_multiple_of(PAGE_SIZE)
                .ok_or(Errno::ENOMEM)?;
            ValueArea::zeroed(len, PAGE_SIZE)?
        } else {
            ValueArea::zeroed(bytes, 8)?
        };
        Ok(ArrayMap {
            area,
            seq: (0..max_entries).map(|_| SeqLock::default()).collect(),
            elem_size,
            value_size,
            max_entries,
            percpu,
            ncpus,
        })
    }

    fn words(&self, index: u32, cpu: u32, ncopies: u32) -> Option<&[AtomicU64]> {
        if index >= self.max_entries {
            return None;
        }
        let copies = if self.percpu { self.ncpus } else { 1 };
        let off =
            (u64::from(index) * u64::from(copies) + u64::from(cpu)) * u64::from(self.elem_size);
        let n = (self.elem_size / 8) as usize * ncopies as usize;
        self.area.words(usize::try_from(off).ok()?, n)
    }

    fn seq(&self, index: u32) -> Option<&SeqLock> {
        self.seq.get(index as usize)
    }

    /// The address of element `index` for CPU `cpu` (`array_map_lookup_elem`,
    /// `percpu_array_map_lookup_elem`), or `None` past `max_entries`.
    pub(crate) fn elem_ptr(&self, index: u32, cpu: u32) -> Option<*mut u8> {
        let cpu = if self.percpu { cpu % self.ncpus } else { 0 };
        self.words(index, cpu, 1).map(|w| w.as_ptr() as *mut u8)
    }

    /// The first value byte; element `i` is at `i * elem_size` (non-per-CPU arrays).
    pub(crate) fn base(&self) -> *mut u8 {
        self.area.as_ptr()
    }

    /// Bytes of the value area (page rounded for mmap-able arrays).
    pub(crate) fn area_len(&self) -> usize {
        self.area.len()
    }

    /// `round_up(value_size, 8)`.
    pub(crate) fn elem_size(&self) -> u32 {
        self.elem_size
    }

    /// Syscall-side lookup: `ENOENT` past the end; per-CPU arrays copy every CPU.
    pub(crate) fn copy_value(&self, index: u32, out: &mut [u8]) -> Result<(), Errno> {
        let copies = if self.percpu { self.ncpus } else { 1 };
        let w = self.words(index, 0, copies).ok_or(Errno::ENOENT)?;
        let seq = self.seq(index).ok_or(Errno::ENOENT)?;
        let len = if self.percpu {
            (self.elem_size * copies) as usize
        } else {
            self.value_size as usize
        };
        let out = out.get_mut(..len).ok_or(Errno::EFAULT)?;
        seq.read(|| copy_out(w, out));
        Ok(())
    }

    /// `array_map_update_elem` (syscall side and helpers, `cpu` = the calling CPU for a
    /// per-CPU array written by a program) and `bpf_percpu_array_update` (`all_cpus`).
    pub(crate) fn update(
        &self,
        index: u32,
        value: &[u8],
        flags: u64,
        cpu: u32,
        all_cpus: bool,
    ) -> Result<(), Errno> {
        if self.percpu && all_cpus {
            if flags > BPF_EXIST {
                return Err(Errno::EINVAL);
            }
        } else if flags & !BPF_F_LOCK > BPF_EXIST {
            return Err(Errno::EINVAL);
        }
        if index >= self.max_entries {
            return Err(Errno::E2BIG);
        }
        let noexist = if self.percpu && all_cpus {
            flags == BPF_NOEXIST
        } else {
            flags & BPF_NOEXIST != 0
        };
        if noexist {
            return Err(Errno::EEXIST);
        }
        if flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        let seq = self.seq(index).ok_or(Errno::E2BIG)?;
        if self.percpu && all_cpus {
            let w = self.words(index, 0, self.ncpus).ok_or(Errno::E2BIG)?;
            let len = (self.elem_size * self.ncpus) as usize;
            let src = value.get(..len).ok_or(Errno::EFAULT)?;
            seq.write(|| copy_in(w, src));
        } else {
            let c = if self.percpu { cpu % self.ncpus } else { 0 };
            let w = self.words(index, c, 1).ok_or(Errno::E2BIG)?;
            let src = value.get(..self.value_size as usize).ok_or(Errno::EFAULT)?;
            seq.write(|| copy_in(w, src));
        }
        Ok(())
    }

    /// `array_map_get_next_key`: index 0 for `None` or an index past the end, `ENOENT`
    /// after the last.
    pub(crate) fn get_next_key(max_entries: u32, key: Option<u32>) -> Result<u32, Errno> {
        let index = key.unwrap_or(u32::MAX);
        if index >= max_entries {
            return Ok(0);
        }
        if index == max_entries - 1 {
            return Err(Errno::ENOENT);
        }
        Ok(index + 1)
    }
}
