//! The object model shared by every kind of runtime object: ids, reference counts and
//! handles.
//!
//! Mirrors the kernel's scheme for maps, programs, BTF objects and links:
//! - every object gets a u32 id from a per-kind table, allocated like
//!   `idr_alloc_cyclic(idr, obj, 1, INT_MAX)`: cyclically from 1, never reused while the
//!   object is alive;
//! - an object is kept alive by `Arc` references (the kernel's `refcnt`); internal
//!   references (a map held by a program, an inner map held by an outer map) are plain
//!   `Arc`s;
//! - user references (`usercnt`, the kernel's fds and pins) are [`Handle`]s; when the last
//!   handle goes, the object's [`KernelObject::release_uref`] runs (a `PROG_ARRAY` clears
//!   itself then);
//! - the id stays reachable through the table until the last reference is dropped:
//!   lookups by id upgrade a weak reference, which fails once the object is dying, like
//!   `bpf_map_inc_not_zero`.
//!
//! New kinds (programs, links) plug in by implementing [`KernelObject`] and owning an
//! [`IdTable`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::errno::Errno;

/// Largest id plus one: ids are allocated in `[1, INT_MAX)`.
pub const ID_LIMIT: u32 = i32::MAX as u32;

/// The kinds of objects with their own id space (`BPF_*_GET_NEXT_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjKind {
    /// Maps (`BPF_MAP_GET_NEXT_ID`).
    Map,
    /// Programs (`BPF_PROG_GET_NEXT_ID`); the table exists, programs come with `prog_load`.
    Prog,
    /// BTF objects (`BPF_BTF_GET_NEXT_ID`).
    Btf,
    /// Links (`BPF_LINK_GET_NEXT_ID`); the table exists, links come with `link_create`.
    Link,
}

/// The access a handle grants from the syscall side (the fd's `f_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// Read and write (no `BPF_F_RDONLY`/`BPF_F_WRONLY`).
    ReadWrite,
    /// `BPF_F_RDONLY`: lookups and `get_next_key` only.
    ReadOnly,
    /// `BPF_F_WRONLY`: updates, deletes and freeze only.
    WriteOnly,
}

impl AccessMode {
    /// `BPF_F_RDONLY` (bit 3).
    pub const F_RDONLY: u32 = 1 << 3;
    /// `BPF_F_WRONLY` (bit 4).
    pub const F_WRONLY: u32 = 1 << 4;

    /// The mode for `flags`, as `bpf_get_file_flag`: both bits set is `EINVAL`.
    pub fn from_flags(flags: u32) -> Result<AccessMode, Errno> {
        match (flags & Self::F_RDONLY != 0, flags & Self::F_WRONLY != 0) {
            (true, true) => Err(Errno::EINVAL),
            (true, false) => Ok(AccessMode::ReadOnly),
            (false, true) => Ok(AccessMode::WriteOnly),
            (false, false) => Ok(AccessMode::ReadWrite),
        }
    }

    /// May the holder read (`FMODE_CAN_READ`)?
    pub fn can_read(self) -> bool {
        self != AccessMode::WriteOnly
    }

    /// May the holder write (`FMODE_CAN_WRITE`)?
    pub fn can_write(self) -> bool {
        self != AccessMode::ReadOnly
    }
}

/// What every runtime object carries: its id and its user-reference count.
pub struct ObjHeader {
    id: u32,
    usercnt: AtomicU64,
    table: Weak<dyn IdRemove>,
}

impl ObjHeader {
    /// The object's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The number of live user references ([`Handle`]s).
    pub fn user_refs(&self) -> u64 {
        self.usercnt.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ObjHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjHeader")
            .field("id", &self.id)
            .field("usercnt", &self.user_refs())
            .finish()
    }
}

impl Drop for ObjHeader {
    fn drop(&mut self) {
        // The last reference is gone: the id becomes free (`bpf_map_free_id`).
        if let Some(t) = self.table.upgrade() {
            t.remove(self.id);
        }
    }
}

/// A runtime object with an id and handles.
pub trait KernelObject: Send + Sync + 'static {
    /// The id space this object lives in.
    const KIND: ObjKind;

    /// The object's header.
    fn header(&self) -> &ObjHeader;

    /// Runs when the last user reference (handle) is dropped, as the kernel's
    /// `map_release_uref`. The object itself may live on through internal references.
    fn release_uref(&self) {}
}

trait IdRemove: Send + Sync {
    fn remove(&self, id: u32);
}

struct IdState<T> {
    /// Where the next cyclic search starts.
    next: u32,
    entries: BTreeMap<u32, Weak<T>>,
}

/// A per-kind id table: the kernel's `map_idr`/`prog_idr`/`btf_idr`/`link_idr`.
pub struct IdTable<T> {
    state: Mutex<IdState<T>>,
    /// Most ids taken at once (objects alive or being freed): the runtime's bound on
    /// objects of this kind, where the kernel's only bound is the id space itself.
    limit: usize,
}

impl<T> fmt::Debug for IdTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("IdTable")
            .field("next", &st.next)
            .field("live", &st.entries.len())
            .finish()
    }
}

impl<T> IdTable<T> {
    fn lock(&self) -> MutexGuard<'_, IdState<T>> {
        // A panic while holding this lock cannot leave the map half-updated (every
        // mutation is a single insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: KernelObject> IdTable<T> {
    /// An empty table whose first id is 1, bounded only by the id space.
    pub fn new() -> Arc<IdTable<T>> {
        IdTable::with_limit(usize::MAX)
    }

    /// An empty table that holds at most `limit` ids at once.
    pub fn with_limit(limit: usize) -> Arc<IdTable<T>> {
        Arc::new(IdTable {
            state: Mutex::new(IdState {
                next: 1,
                entries: BTreeMap::new(),
            }),
            limit,
        })
    }

    /// Allocates an id and publishes the object `make(header)` under it; returns the
    /// first (internal) reference. The caller wraps it in a [`Handle`] for the user.
    ///
    /// `ENOSPC` when all ids in `[1, INT_MAX)` are taken (`idr_alloc_cyclic`), or when
    /// the table's limit is: the runtime's smaller id space fails the same way.
    pub fn register(self: &Arc<Self>, make: impl FnOnce(ObjHeader) -> T) -> Result<Arc<T>, Errno> {
        let mut st = self.lock();
        if st.entries.len() >= self.limit {
            return Err(Errno::ENOSPC);
        }
        let id = free_id(&st.entries, st.next)
            .or_else(|| free_id(&st.entries, 1))
            .ok_or(Errno::ENOSPC)?;
        let table: Weak<dyn IdRemove> = Arc::downgrade(self) as Weak<IdTable<T>>;
        let obj = Arc::new(make(ObjHeader {
            id,
            usercnt: AtomicU64::new(0),
            table,
        }));
        st.entries.insert(id, Arc::downgrade(&obj));
        st.next = if id + 1 >= ID_LIMIT { 1 } else { id + 1 };
        Ok(obj)
    }

    /// The live object with `id`, taking a reference (`ENOENT` if there is none or it is
    /// being freed).
    pub fn get(&self, id: u32) -> Result<Arc<T>, Errno> {
        self.lock()
            .entries
            .get(&id)
            .and_then(Weak::upgrade)
            .ok_or(Errno::ENOENT)
    }

    /// The smallest id greater than `start_id` (`idr_get_next`), including objects that
    /// are being freed, as the kernel's table does. `ENOENT` past the last.
    pub fn next_id(&self, start_id: u32) -> Result<u32, Errno> {
        let st = self.lock();
        let from = start_id.saturating_add(1);
        st.entries
            .range(from..)
            .next()
            .map(|(&id, _)| id)
            .ok_or(Errno::ENOENT)
    }

    /// The number of ids taken (objects alive or being freed).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no id is taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live object, in id order.
    pub fn live(&self) -> Vec<Arc<T>> {
        self.lock()
            .entries
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }
}

impl<T: KernelObject> IdRemove for IdTable<T> {
    fn remove(&self, id: u32) {
        let mut st = self.lock();
        // Only remove the entry if it is the dead object (ids are never handed out twice
        // while an entry exists, so a present entry with a live referent is another one).
        if st.entries.get(&id).is_some_and(|w| w.strong_count() == 0) {
            st.entries.remove(&id);
        }
    }
}

/// The smallest id `>= start` below [`ID_LIMIT`] not in `entries`.
fn free_id<T>(entries: &BTreeMap<u32, Weak<T>>, start: u32) -> Option<u32> {
    let mut candidate = start.max(1);
    for (&id, _) in entries.range(candidate..) {
        if id != candidate {
            break;
        }
        candidate = candidate.checked_add(1)?;
    }
    (candidate < ID_LIMIT).then_some(candidate)
}

/// A user reference to an object: the analog of a file descriptor or a pin.
///
/// Holding a handle keeps the object alive; cloning it adds a user reference; dropping
/// the last handle runs [`KernelObject::release_uref`]. The handle carries the access
/// mode its "fd" was opened with.
pub struct Handle<T: KernelObject> {
    obj: Arc<T>,
    mode: AccessMode,
}

impl<T: KernelObject> Handle<T> {
    /// A new user reference to `obj` with `mode` (`bpf_map_inc_with_uref` + new fd).
    pub fn new(obj: Arc<T>, mode: AccessMode) -> Handle<T> {
        obj.header().usercnt.fetch_add(1, Ordering::AcqRel);
        Handle { obj, mode }
    }

    /// The object's id.
    pub fn id(&self) -> u32 {
        self.obj.header().id()
    }

    /// The access this handle grants from the syscall side.
    pub fn mode(&self) -> AccessMode {
        self.mode
    }

    /// An internal (non-user) reference to the object.
    pub fn object(&self) -> &Arc<T> {
        &self.obj
    }
}

impl<T: KernelObject> Clone for Handle<T> {
    fn clone(&self) -> Handle<T> {
        Handle::new(self.obj.clone(), self.mode)
    }
}

impl<T: KernelObject> Drop for Handle<T> {
    fn drop(&mut self) {
        if self.obj.header().usercnt.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.obj.release_uref();
        }
    }
}

impl<T: KernelObject> Deref for Handle<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.obj
    }
}

impl<T: KernelObject> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("kind", &T::KIND)
            .field("id", &self.id())
            .field("mode", &self.mode)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Obj {
        header: ObjHeader,
        released: Arc<AtomicUsize>,
    }

    impl KernelObject for Obj {
        const KIND: ObjKind = ObjKind::Map;
        fn header(&self) -> &ObjHeader {
            &self.header
        }
        fn release_uref(&self) {
            self.released.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn make(t: &Arc<IdTable<Obj>>, r: &Arc<AtomicUsize>) -> Handle<Obj> {
        let obj = t
            .register(|header| Obj {
                header,
                released: r.clone(),
            })
            .unwrap();
        Handle::new(obj, AccessMode::ReadWrite)
    }

    #[test]
    fn ids_cyclic_and_freed_with_last_reference() {
        let t = IdTable::<Obj>::new();
        let r = Arc::new(AtomicUsize::new(0));
        let a = make(&t, &r);
        let b = make(&t, &r);
        assert_eq!((a.id(), b.id()), (1, 2));
        assert_eq!(t.next_id(0), Ok(1));
        assert_eq!(t.next_id(1), Ok(2));
        assert_eq!(t.next_id(2), Err(Errno::ENOENT));
        let internal = a.object().clone();
        drop(a);
        assert_eq!(r.load(Ordering::SeqCst), 1, "last handle released the uref");
        assert!(
            t.get(1).is_ok(),
            "an internal reference keeps the id reachable"
        );
        drop(internal);
        assert_eq!(t.get(1).err(), Some(Errno::ENOENT));
        // Cyclic: the freed id 1 is not reused before the counter wraps.
        let c = make(&t, &r);
        assert_eq!(c.id(), 3);
        drop(b);
        assert_eq!(t.next_id(0), Ok(3));
    }

    #[test]
    fn wraps_to_smallest_free_id() {
        let t = IdTable::<Obj>::new();
        let r = Arc::new(AtomicUsize::new(0));
        let keep = make(&t, &r);
        t.lock().next = ID_LIMIT - 1;
        let last = make(&t, &r);
        assert_eq!(last.id(), ID_LIMIT - 1);
        let wrapped = make(&t, &r);
        assert_eq!(wrapped.id(), 2, "id 1 is still taken");
        assert_eq!(keep.id(), 1);
    }

    #[test]
    fn limit_is_enospc_until_an_id_is_freed() {
        let t = IdTable::<Obj>::with_limit(2);
        let r = Arc::new(AtomicUsize::new(0));
        let a = make(&t, &r);
        let _b = make(&t, &r);
        let third = t.register(|header| Obj {
            header,
            released: r.clone(),
        });
        assert_eq!(third.err(), Some(Errno::ENOSPC));
        drop(a);
        assert_eq!(t.len(), 1);
        assert_eq!(make(&t, &r).id(), 3);
    }

    #[test]
    fn access_modes() {
        assert_eq!(AccessMode::from_flags(0), Ok(AccessMode::ReadWrite));
        assert_eq!(AccessMode::from_flags(1 << 3), Ok(AccessMode::ReadOnly));
        assert_eq!(AccessMode::from_flags(1 << 4), Ok(AccessMode::WriteOnly));
        assert_eq!(AccessMode::from_flags(3 << 3), Err(Errno::EINVAL));
        assert!(!AccessMode::ReadOnly.can_write() && !AccessMode::WriteOnly.can_read());
    }
}
