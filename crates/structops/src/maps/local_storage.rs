//! Host-object local storage: the analog of `SK_STORAGE`/`TASK_STORAGE`
//! (`kernel/bpf/bpf_local_storage.c`).
//!
//! A [`HostObject`] stands for something the host owns (a socket, a task, a
//! connection). A local-storage map holds at most one value per host object; the value
//! lives with the object, is created by an update or by a program's `get` with
//! `BPF_LOCAL_STORAGE_GET_F_CREATE`, and is deleted explicitly or when the object is
//! released. Replaced and deleted values are freed after an epoch grace period, so a
//! pointer a program got stays valid while its read section lasts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crossbeam_epoch::Guard;

use super::area::{SeqLock, copy_in, copy_out};
use super::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST};
use crate::errno::Errno;
use crate::memcg::{Charge, MemCgroup};

/// `BPF_LOCAL_STORAGE_GET_F_CREATE`.
pub const BPF_LOCAL_STORAGE_GET_F_CREATE: u64 = 1;

static NEXT_HOST_ID: AtomicU64 = AtomicU64::new(1);

/// One stored value.
pub(crate) struct Elem {
    seq: SeqLock,
    words: Box<[AtomicU64]>,
}

struct Entry {
    /// The owning map's storage, identified by address while it is alive.
    map: Weak<StorageCore>,
    elem: Arc<Elem>,
    /// The value's memory, returned when the entry leaves its owner (the element
    /// itself may live on until readers are done).
    _charge: Charge,
}

/// What a value is charged beyond its bytes: the `bpf_local_storage_elem` header, as
/// `BPF_LOCAL_STORAGE_MAX_VALUE_SIZE` counts it.
const ELEM_OVERHEAD: u64 = 128;

struct HostInner {
    id: u64,
    released: AtomicBool,
    entries: Mutex<Vec<Entry>>,
}

/// An object owned by the host that local-storage maps can attach values to.
///
/// Cloning shares the object. Its values are deleted by [`HostObject::release`] or when
/// the last clone is dropped.
#[derive(Clone)]
pub struct HostObject(Arc<HostInner>);

impl std::fmt::Debug for HostObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostObject")
            .field("id", &self.0.id)
            .field("released", &self.0.released.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for HostObject {
    fn default() -> Self {
        HostObject::new()
    }
}

impl HostObject {
    /// A new host object with a fresh id.
    pub fn new() -> HostObject {
        HostObject(Arc::new(HostInner {
            id: NEXT_HOST_ID.fetch_add(1, Ordering::Relaxed),
            released: AtomicBool::new(false),
            entries: Mutex::new(Vec::new()),
        }))
    }

    /// The object's id (unique in the process, never reused).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Releases the object: deletes its values from every map (the kernel's
    /// `bpf_sk_storage_free` when a socket is destroyed). Later updates fail with
    /// `ENOENT`; programs' `get` returns nothing.
    pub fn release(&self) {
        self.0.released.store(true, Ordering::Release);
        self.0.drain();
    }

    /// Is the object released?
    pub fn is_released(&self) -> bool {
        self.0.released.load(Ordering::Acquire)
    }
}

impl HostInner {
    fn drain(&self) {
        let taken = std::mem::take(&mut *lock(&self.entries));
        let guard = crossbeam_epoch::pin();
        for e in taken {
            if let Some(core) = e.map.upgrade() {
                lock(&core.owners).remove(&self.id);
            }
            let elem = e.elem;
            guard.defer(move || drop(elem));
        }
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.drain();
    }
}

/// The map side: which owners have a value in this map.
pub(crate) struct StorageCore {
    value_size: u32,
    memcg: Arc<MemCgroup>,
    owners: Mutex<HashMap<u64, Weak<HostInner>>>,
}

/// A local-storage map's storage.
pub(crate) struct LocalStorageMap {
    core: Arc<StorageCore>,
}

impl LocalStorageMap {
    /// An empty map for values of `value_size` bytes, charged to `memcg`.
    pub(crate) fn new(value_size: u32, memcg: Arc<MemCgroup>) -> LocalStorageMap {
        LocalStorageMap {
            core: Arc::new(StorageCore {
                value_size,
                memcg,
                owners: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn is_mine(&self, e: &Entry) -> bool {
        std::ptr::eq(e.map.as_ptr(), Arc::as_ptr(&self.core))
    }

    fn find(&self, owner: &HostObject) -> Option<Arc<Elem>> {
        lock(&owner.0.entries)
            .iter()
            .find(|e| self.is_mine(e))
            .map(|e| e.elem.clone())
    }

    fn new_elem(&self, value: Option<&[u8]>) -> Arc<Elem> {
        let words: Box<[AtomicU64]> = (0..(self.core.value_size as usize).div_ceil(8))
            .map(|_| AtomicU64::new(0))
            .collect();
        if let Some(v) = value {
            copy_in(&words, v.get(..self.core.value_size as usize).unwrap_or(v));
        }
        Arc::new(Elem {
            seq: SeqLock::default(),
            words,
        })
    }

    /// Syscall-side lookup: `ENOENT` if `owner` has no value here.
    pub(crate) fn lookup(&self, owner: &HostObject, out: &mut [u8]) -> Result<(), Errno> {
        let e = self.find(owner).ok_or(Errno::ENOENT)?;
        let out = out
            .get_mut(..self.core.value_size as usize)
            .ok_or(Errno::EFAULT)?;
        e.seq.read(|| copy_out(&e.words, out));
        Ok(())
    }

    /// `bpf_local_storage_update`: creates or replaces `owner`'s value.
    pub(crate) fn update(&self, owner: &HostObject, value: &[u8], flags: u64) -> Result<(), Errno> {
        if flags & !BPF_F_LOCK > BPF_EXIST || flags & BPF_F_LOCK != 0 {
            return Err(Errno::EINVAL);
        }
        if owner.is_released() {
            return Err(Errno::ENOENT);
        }
        let new = self.new_elem(Some(value));
        let guard = crossbeam_epoch::pin();
        let mut entries = lock(&owner.0.entries);
        match entries.iter_mut().find(|e| self.is_mine(e)) {
            Some(e) => {
                if flags & !BPF_F_LOCK == BPF_NOEXIST {
                    return Err(Errno::EEXIST);
                }
                let old = std::mem::replace(&mut e.elem, new);
                guard.defer(move || drop(old));
            }
            None => {
                if flags & !BPF_F_LOCK == BPF_EXIST {
                    return Err(Errno::ENOENT);
                }
                // `bpf_selem_alloc`: `ENOMEM` when the memcg is full.
                let bytes = u64::from(self.core.value_size.next_multiple_of(8)) + ELEM_OVERHEAD;
                let charge = Charge::new(&self.core.memcg, bytes)?;
                entries.push(Entry {
                    map: Arc::downgrade(&self.core),
                    elem: new,
                    _charge: charge,
                });
                lock(&self.core.owners).insert(owner.id(), Arc::downgrade(&owner.0));
            }
        }
        Ok(())
    }

    /// Deletes `owner`'s value: `ENOENT` if there is none.
    pub(crate) fn delete(&self, owner: &HostObject) -> Result<(), Errno> {
        let guard = crossbeam_epoch::pin();
        let mut entries = lock(&owner.0.entries);
        let pos = entries
            .iter()
            .position(|e| self.is_mine(e))
            .ok_or(Errno::ENOENT)?;
        let e = entries.swap_remove(pos);
        drop(entries);
        lock(&self.core.owners).remove(&owner.id());
        let elem = e.elem;
        guard.defer(move || drop(elem));
        Ok(())
    }

    /// `bpf_*_storage_get` for programs: the value's address, creating it (from `init`
    /// or zeroed) when `flags` has `BPF_LOCAL_STORAGE_GET_F_CREATE`. Valid while
    /// `guard` is held.
    pub(crate) fn get_ptr(
        &self,
        owner: &HostObject,
        init: Option<&[u8]>,
        flags: u64,
        _guard: &Guard,
    ) -> Option<*mut u8> {
        if let Some(e) = self.find(owner) {
            return Some(e.words.as_ptr() as *mut u8);
        }
        if flags & BPF_LOCAL_STORAGE_GET_F_CREATE == 0 || owner.is_released() {
            return None;
        }
        let v = init.map(<[u8]>::to_vec);
        match self.update(owner, v.as_deref().unwrap_or(&[]), BPF_NOEXIST) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(_) => return None,
        }
        // The element just inserted stays in the owner's list until deleted, and a
        // deletion defers the free past `_guard`.
        self.find(owner).map(|e| e.words.as_ptr() as *mut u8)
    }

    /// Number of owners with a value here.
    pub(crate) fn len(&self) -> usize {
        lock(&self.core.owners).len()
    }
}

impl Drop for LocalStorageMap {
    fn drop(&mut self) {
        // The map is going away: take its values off every owner
        // (`bpf_local_storage_map_free`).
        let owners: Vec<Weak<HostInner>> =
            lock(&self.core.owners).drain().map(|(_, w)| w).collect();
        let guard = crossbeam_epoch::pin();
        for w in owners {
            if let Some(o) = w.upgrade() {
                let mut entries = lock(&o.entries);
                let mut i = 0;
                while i < entries.len() {
                    if entries.get(i).is_some_and(|e| self.is_mine(e)) {
                        let e = entries.swap_remove(i);
                        let elem = e.elem;
                        guard.defer(move || drop(elem));
                    } else {
                        i += 1;
                    }
                }
            }
        }
    }
}
