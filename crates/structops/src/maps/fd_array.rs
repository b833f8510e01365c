//! `PROG_ARRAY` and `ARRAY_OF_MAPS`: arrays of object references
//! (`bpf_fd_array_map_*` in `kernel/bpf/arraymap.c`).
//!
//! Each slot is an epoch-protected pointer: programs read it without locks (a tail call,
//! an inner-map lookup), writers swap it, and the old entry (and the reference it holds)
//! is dropped after a grace period.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::Map;
use crate::errno::Errno;

/// What a `PROG_ARRAY` slot holds: a program, as the program subsystem defines it.
///
/// The program runtime implements this for its loaded programs; a slot keeps the program
/// alive until it is replaced or deleted and the grace period has passed.
///
/// `Any` is a supertrait so that the program subsystem can recover its own type from a
/// slot (`&dyn TailCallTarget` upcasts to `&dyn Any`).
pub trait TailCallTarget: std::any::Any + Send + Sync + 'static {
    /// The program's id (what a syscall-side lookup of the slot returns).
    fn prog_id(&self) -> u32;
}

/// One occupied slot.
pub enum Slot {
    /// A `PROG_ARRAY` entry.
    Prog(Arc<dyn TailCallTarget>),
    /// An `ARRAY_OF_MAPS` entry.
    Map(Arc<Map>),
}

impl Slot {
    /// The id a syscall-side lookup reports (`map_fd_sys_lookup_elem`).
    pub fn id(&self) -> u32 {
        match self {
            Slot::Prog(p) => p.prog_id(),
            Slot::Map(m) => m.id(),
        }
    }
}

/// The slots of a `PROG_ARRAY` or `ARRAY_OF_MAPS`.
pub(crate) struct FdArray {
    slots: Box<[Atomic<Slot>]>,
}

impl FdArray {
    /// `max_entries` empty slots.
    pub(crate) fn new(max_entries: u32) -> FdArray {
        FdArray {
            slots: (0..max_entries).map(|_| Atomic::null()).collect(),
        }
    }

    /// The entry at `index`, valid while `guard` is held.
    pub(crate) fn get<'g>(&'g self, index: u32, guard: &'g Guard) -> Option<&'g Slot> {
        let s = self.slots.get(index as usize)?;
        // SAFETY: entries are freed only after a grace period; `guard` pins the epoch.
        unsafe { s.load(Ordering::Acquire, guard).as_ref() }
    }

    /// Stores `new` (or clears) at `index`; `E2BIG` past the end, and for a clear,
    /// `ENOENT` if the slot was empty (`__fd_array_map_delete_elem`).
    pub(crate) fn set(&self, index: u32, new: Option<Slot>, guard: &Guard) -> Result<(), Errno> {
        let s = self.slots.get(index as usize).ok_or(Errno::E2BIG)?;
        let clearing = new.is_none();
        let old = match new {
            Some(v) => s.swap(Owned::new(v), Ordering::AcqRel, guard),
            None => s.swap(Shared::null(), Ordering::AcqRel, guard),
        };
        if old.is_null() {
            return if clearing { Err(Errno::ENOENT) } else { Ok(()) };
        }
        // SAFETY: `old` is no longer reachable from the array; readers that loaded it
        // before the swap are covered by the deferral.
        unsafe { guard.defer_destroy(old) };
        Ok(())
    }

    /// Empties every slot (`bpf_fd_array_map_clear`).
    pub(crate) fn clear(&self, guard: &Guard) {
        for i in 0..self.slots.len() as u32 {
            let _ = self.set(i, None, guard);
        }
    }
}

impl Drop for FdArray {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nobody can read the slots any more.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for s in self.slots.iter() {
            let old = s.swap(Shared::null(), Ordering::AcqRel, guard);
            if !old.is_null() {
                // SAFETY: unreachable and never freed before.
                drop(unsafe { old.into_owned() });
            }
        }
    }
}
