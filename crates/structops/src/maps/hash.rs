//! `HASH`, `PERCPU_HASH`, `LRU_HASH`, `LRU_PERCPU_HASH` and `HASH_OF_MAPS`
//! (`kernel/bpf/hashtab.c` semantics).
//!
//! Layout: `roundup_pow_of_two(max_entries)` buckets, each a mutex for writers and a
//! singly linked list of nodes that readers walk without locks. The bucket of a key is
//! the kernel's `jhash` of the key with the map's seed (0 under `BPF_F_ZERO_SEED`), and
//! new nodes go to the head of their bucket, so `get_next_key` visits keys in the
//! kernel's order.
//!
//! Reclamation: an update of an existing key publishes a new node and unlinks the old one
//! (copy-on-write, as the kernel does for non-per-CPU maps), a delete unlinks; unlinked
//! nodes are freed by `crossbeam-epoch` after every thread that could see them has left
//! its read section. A value pointer handed to a program therefore stays valid while the
//! program's [`crossbeam_epoch::Guard`] is held, even if the element is deleted
//! meanwhile. Per-CPU values are updated in place, like the kernel, under the node's
//! sequence lock. "Preallocation" is modelled by its visible effect only (the element
//! limit); nodes are allocated on insert.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::area::{SeqLock, copy_in, copy_out, zero};
use super::jhash::htab_hash;
use super::lru::Lru;
use super::{BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, Map};
use crate::errno::Errno;
use crate::memcg::MemCgroup;

/// Which hash map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `HASH`.
    Plain,
    /// `PERCPU_HASH`.
    Percpu,
    /// `LRU_HASH`.
    Lru,
    /// `LRU_PERCPU_HASH`.
    LruPercpu,
    /// `HASH_OF_MAPS`.
    OfMaps,
}

impl Flavor {
    fn percpu(self) -> bool {
        matches!(self, Flavor::Percpu | Flavor::LruPercpu)
    }
}

/// A node's value.
pub(crate) enum NodeVal {
    /// `round_up(value_size, 8)` bytes, times the CPU count for per-CPU maps.
    Words(Box<[AtomicU64]>),
    /// The inner map of a `HASH_OF_MAPS` element.
    Map(Arc<Map>),
}

/// One element.
pub(crate) struct Node {
    next: Atomic<Node>,
    hash: u32,
    /// The LRU slot, for LRU maps.
    slot: u32,
    seq: SeqLock,
    key: Box<[u8]>,
    val: NodeVal,
}

impl Node {
    /// The element's key.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The element's value.
    pub(crate) fn val(&self) -> &NodeVal {
        &self.val
    }
}

struct Bucket {
    lock: Mutex<()>,
    head: Atomic<Node>,
}

/// What an update stores.
pub(crate) enum NewVal<'a> {
    /// From the syscall side: `value_size` bytes, or for per-CPU maps
    /// `round_up(value_size, 8) * ncpus` bytes, one slice per CPU.
    Sys(&'a [u8]),
    /// From a program: `value_size` bytes for the calling CPU (others zeroed on insert).
    Prog(&'a [u8], u32),
    /// An inner map.
    Map(Arc<Map>),
}

/// The hash table.
pub(crate) struct HashTab {
    buckets: Box<[Bucket]>,
    mask: u32,
    seed: u32,
    flavor: Flavor,
    value_size: u32,
    /// Words per CPU slot.
    elem_words: usize,
    ncpus: u32,
    max_entries: u32,
    count: AtomicU32,
    lru: Option<Lru>,
    /// Without preallocation: what each element is charged as it is added (boxed: most
    /// tables preallocate, and the map enum stays small).
    per_elem: Option<Box<ElemCharge>>,
}

/// The account a table's elements are charged to, and the size of one.
pub(crate) struct ElemCharge {
    /// The runtime's map memory account.
    pub(crate) cg: Arc<MemCgroup>,
    /// Bytes per element.
    pub(crate) bytes: u64,
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HashTab {
    /// A table for `max_entries` elements (already adjusted for per-CPU LRU rounding);
    /// `per_elem` charges each element as it is added (`BPF_F_NO_PREALLOC`).
    pub(crate) fn new(
        flavor: Flavor,
        value_size: u32,
        max_entries: u32,
        seed: u32,
        ncpus: u32,
        percpu_lru: bool,
        per_elem: Option<Box<ElemCharge>>,
    ) -> HashTab {
        let n_buckets = max_entries.max(1).next_power_of_two();
        let buckets = (0..n_buckets)
            .map(|_| Bucket {
                lock: Mutex::new(()),
                head: Atomic::null(),
            })
            .collect();
        let lru = matches!(flavor, Flavor::Lru | Flavor::LruPercpu)
            .then(|| Lru::new(max_entries, percpu_lru, ncpus));
        HashTab {
            buckets,
            mask: n_buckets - 1,
            seed,
            flavor,
            value_size,
            elem_words: (value_size as usize).div_ceil(8),
            ncpus: ncpus.max(1),
            max_entries,
            count: AtomicU32::new(0),
            lru,
            per_elem,
        }
    }

    fn bucket(&self, hash: u32) -> &Bucket {
        // `mask + 1 == buckets.len()`, so the index is always in range.
        &self.buckets[(hash & self.mask) as usize]
    }

    /// The node for `key` (`lookup_nulls_elem_raw`).
    pub(crate) fn lookup<'g>(&'g self, key: &[u8], guard: &'g Guard) -> Option<&'g Node> {
        let hash = htab_hash(key, self.seed);
        find(&self.bucket(hash).head, hash, key, guard).map(|(_, n)| n)
    }

    /// The program-side lookup: marks LRU elements referenced.
    pub(crate) fn lookup_prog<'g>(&'g self, key: &[u8], guard: &'g Guard) -> Option<&'g Node> {
        let n = self.lookup(key, guard)?;
        if let Some(lru) = &self.lru {
            lru.set_ref(n.slot);
        }
        Some(n)
    }

    /// Copies a node's value out for the syscall side (all CPUs for per-CPU maps).
    pub(crate) fn copy_value(&self, n: &Node, out: &mut [u8]) {
        if let NodeVal::Words(w) = &n.val {
            if self.flavor.percpu() {
                let stride = self.elem_words * 8;
                n.seq.read(|| {
                    for (cpu, chunk) in out.chunks_mut(stride).enumerate() {
                        if let Some(src) = w.get(cpu * self.elem_words..) {
                            copy_out(src, chunk);
                        }
                    }
                });
            } else {
                let len = (self.value_size as usize).min(out.len());
                n.seq
                    .read(|| copy_out(w, out.get_mut(..len).unwrap_or(&mut [])));
            }
        }
    }

    /// The address of the calling CPU's value in `n`, for programs.
    pub(crate) fn value_ptr(&self, n: &Node, cpu: u32) -> *mut u8 {
        match &n.val {
            NodeVal::Words(w) => {
                let off = if self.flavor.percpu() {
                    (cpu % self.ncpus) as usize * self.elem_words
                } else {
                    0
                };
                w.get(off..)
                    .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut u8)
            }
            NodeVal::Map(m) => Arc::as_ptr(m) as *mut u8,
        }
    }

    fn words(&self) -> usize {
        if self.flavor.percpu() {
            self.elem_words * self.ncpus as usize
        } else {
            self.elem_words
        }
    }

    /// Stores `v` into fresh words (`alloc_htab_elem` + `pcpu_init_value`).
    fn fill(&self, words: &[AtomicU64], v: &NewVal<'_>) {
        match v {
            NewVal::Sys(src) if self.flavor.percpu() => {
                for (cpu, chunk) in src.chunks(self.elem_words * 8).enumerate() {
                    if let Some(dst) = words.get(cpu * self.elem_words..) {
                        copy_in(dst, chunk);
                    }
                }
            }
            NewVal::Prog(src, cpu) if self.flavor.percpu() => {
                let off = (*cpu % self.ncpus) as usize * self.elem_words;
                if let Some(dst) = words.get(off..) {
                    copy_in(dst, src.get(..self.value_size as usize).unwrap_or(src));
                }
            }
            NewVal::Sys(src) | NewVal::Prog(src, _) => {
                copy_in(words, src.get(..self.value_size as usize).unwrap_or(src));
            }
            NewVal::Map(_) => {}
        }
    }

    /// Overwrites an existing per-CPU value in place (`pcpu_copy_value`).
    fn overwrite(&self, n: &Node, v: &NewVal<'_>) {
        if let NodeVal::Words(w) = &n.val {
            n.seq.write(|| match v {
                NewVal::Sys(_) => self.fill(w, v),
                NewVal::Prog(src, cpu) => {
                    let off = (*cpu % self.ncpus) as usize * self.elem_words;
                    if let Some(dst) = w.get(off..) {
                        copy_in(dst, src.get(..self.value_size as usize).unwrap_or(src));
                    }
                }
                NewVal::Map(_) => {}
            });
        }
    }

    fn new_node(&self, key: &[u8], hash: u32, slot: u32, v: NewVal<'_>) -> Owned<Node> {
        let val = match v {
            NewVal::Map(m) => NodeVal::Map(m),
            other => {
                let w: Box<[AtomicU64]> = (0..self.words()).map(|_| AtomicU64::new(0)).collect();
                if self.flavor.percpu() {
                    zero(&w);
                }
                self.fill(&w, &other);
                NodeVal::Words(w)
            }
        };
        Owned::new(Node {
            next: Atomic::null(),
            hash,
            slot,
            seq: SeqLock::default(),
            key: key.into(),
            val,
        })
    }

    fn try_reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c < self.max_entries).then_some(c + 1)
            })
            .is_ok()
    }

    /// Removes the element in LRU `slot` (`htab_lru_map_delete_node`).
    fn del_slot(&self, slot: u32, hash: u32, guard: &Guard) -> bool {
        let b = self.bucket(hash);
        let _g = lock(&b.lock);
        let mut prev = &b.head;
        loop {
            let cur = prev.load(Ordering::Acquire, guard);
            // SAFETY: nodes reachable from a bucket are only freed after a grace period,
            // and `guard` pins the current epoch.
            let Some(n) = (unsafe { cur.as_ref() }) else {
                return false;
            };
            if n.slot == slot {
                prev.store(n.next.load(Ordering::Acquire, guard), Ordering::Release);
                // SAFETY: unlinked under the bucket lock; readers may still hold it, so
                // it is freed after the grace period.
                unsafe { guard.defer_destroy(cur) };
                return true;
            }
            prev = &n.next;
        }
    }

    fn pop_lru(&self, lru: &Lru, cpu: u32, hash: u32, guard: &Guard) -> Option<u32> {
        lru.pop_free(cpu, hash, &mut |slot, h| self.del_slot(slot, h, guard))
    }

    /// `map_update_elem` for every flavor. `cpu` is the calling CPU slot (LRU lists and
    /// program-side per-CPU values).
    pub(crate) fn update(
        &self,
        key: &[u8],
        v: NewVal<'_>,
        flags: u64,
        cpu: u32,
        guard: &Guard,
    ) -> Result<(), Errno> {
        let percpu = self.flavor.percpu();
        let lru_flavor = matches!(self.flavor, Flavor::Lru | Flavor::LruPercpu);
        if percpu || lru_flavor {
            if flags > BPF_EXIST {
                return Err(Errno::EINVAL);
            }
        } else if flags & !BPF_F_LOCK > BPF_EXIST {
            return Err(Errno::EINVAL);
        } else if flags & BPF_F_LOCK != 0 {
            // No value of ours carries a `bpf_spin_lock`.
            return Err(Errno::EINVAL);
        }
        let hash = htab_hash(key, self.seed);
        // LRU maps take their slot before the bucket lock, since freeing one may evict
        // (`htab_lru_map_update_elem`).
        let mut slot = None;
        if let Some(lru) = &self.lru
            && !(percpu && flags == BPF_EXIST)
        {
            slot = Some(self.pop_lru(lru, cpu, hash, guard).ok_or(Errno::ENOMEM)?);
        }
        let b = self.bucket(hash);
        let g = lock(&b.lock);
        let old = find(&b.head, hash, key, guard);
        let check = match (&old, flags & !BPF_F_LOCK) {
            (Some(_), BPF_NOEXIST) => Err(Errno::EEXIST),
            (None, BPF_EXIST) => Err(Errno::ENOENT),
            _ => Ok(()),
        };
        if let Err(e) = check {
            drop(g);
            if let (Some(lru), Some(s)) = (&self.lru, slot) {
                lru.push_free(s);
            }
            return Err(e);
        }
        if percpu && let Some((_, n)) = old {
            if let Some(lru) = &self.lru {
                lru.set_ref(n.slot);
            }
            self.overwrite(n, &v);
            drop(g);
            if let (Some(lru), Some(s)) = (&self.lru, slot) {
                lru.push_free(s);
            }
            return Ok(());
        }
        if self.lru.is_none() && old.is_none() {
            // A full map is `E2BIG` before any allocation; then the element's memory
            // (`alloc_htab_elem`: `ENOMEM` when the memcg is full).
            if !self.try_reserve() {
                return Err(Errno::E2BIG);
            }
            if let Some(ElemCharge { cg, bytes }) = self.per_elem.as_deref()
                && let Err(e) = cg.try_charge(*bytes)
            {
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(e);
            }
        }
        let new = self.new_node(key, hash, slot.unwrap_or(0), v);
        new.next
            .store(b.head.load(Ordering::Acquire, guard), Ordering::Relaxed);
        b.head.store(new.into_shared(guard), Ordering::Release);
        if let Some((_, o)) = old {
            // A replaced LRU element starts referenced.
            if let (Some(lru), Some(s)) = (&self.lru, slot) {
                lru.set_ref(s);
            }
            unlink(&b.head, o, guard);
            let old_slot = o.slot;
            drop(g);
            if let Some(lru) = &self.lru {
                lru.push_free(old_slot);
            }
        }
        Ok(())
    }

    /// `map_delete_elem`: `ENOENT` if the key is absent.
    pub(crate) fn delete(&self, key: &[u8], guard: &Guard) -> Result<(), Errno> {
        let hash = htab_hash(key, self.seed);
        let b = self.bucket(hash);
        let g = lock(&b.lock);
        let Some((_, n)) = find(&b.head, hash, key, guard) else {
            return Err(Errno::ENOENT);
        };
        let slot = n.slot;
        unlink(&b.head, n, guard);
        drop(g);
        match &self.lru {
            Some(lru) => lru.push_free(slot),
            None => {
                self.count.fetch_sub(1, Ordering::AcqRel);
                if let Some(ElemCharge { cg, bytes }) = self.per_elem.as_deref() {
                    cg.uncharge(*bytes);
                }
            }
        }
        Ok(())
    }

    /// `htab_map_get_next_key`: the key after `key` in bucket order, or the first key
    /// when `key` is `None` or absent; `ENOENT` after the last.
    pub(crate) fn get_next_key(
        &self,
        key: Option<&[u8]>,
        out: &mut [u8],
        guard: &Guard,
    ) -> Result<(), Errno> {
        let mut start = 0usize;
        if let Some(k) = key {
            let hash = htab_hash(k, self.seed);
            if let Some((_, n)) = find(&self.bucket(hash).head, hash, k, guard) {
                // SAFETY: protected by `guard` (see `del_slot`).
                if let Some(next) = unsafe { n.next.load(Ordering::Acquire, guard).as_ref() } {
                    put_key(out, &next.key);
                    return Ok(());
                }
                start = (hash & self.mask) as usize + 1;
            }
        }
        for b in self.buckets.get(start..).unwrap_or(&[]) {
            // SAFETY: as above.
            if let Some(n) = unsafe { b.head.load(Ordering::Acquire, guard).as_ref() } {
                put_key(out, &n.key);
                return Ok(());
            }
        }
        Err(Errno::ENOENT)
    }

    /// Every node, in bucket order (for clearing and iteration).
    pub(crate) fn for_each<'g>(&'g self, guard: &'g Guard, mut f: impl FnMut(&'g Node) -> bool) {
        for b in self.buckets.iter() {
            let mut cur = b.head.load(Ordering::Acquire, guard);
            // SAFETY: as above.
            while let Some(n) = unsafe { cur.as_ref() } {
                if !f(n) {
                    return;
                }
                cur = n.next.load(Ordering::Acquire, guard);
            }
        }
    }
}

impl Drop for HashTab {
    fn drop(&mut self) {
        if let Some(ElemCharge { cg, bytes }) = self.per_elem.as_deref() {
            cg.uncharge(u64::from(*self.count.get_mut()).saturating_mul(*bytes));
        }
        // SAFETY: `&mut self`: no reader can hold a node of this table any more (programs
        // and the syscall side hold the map while they use it).
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for b in self.buckets.iter() {
            let mut cur = b.head.swap(Shared::null(), Ordering::AcqRel, guard);
            while !cur.is_null() {
                // SAFETY: unreachable now and never freed before (see above).
                let owned = unsafe { cur.into_owned() };
                cur = owned.next.load(Ordering::Relaxed, guard);
                drop(owned);
            }
        }
    }
}

fn put_key(out: &mut [u8], key: &[u8]) {
    let n = out.len().min(key.len());
    if let (Some(d), Some(s)) = (out.get_mut(..n), key.get(..n)) {
        d.copy_from_slice(s);
    }
}

/// The node with `key` in the list at `head`, with the link that points at it.
fn find<'g>(
    head: &'g Atomic<Node>,
    hash: u32,
    key: &[u8],
    guard: &'g Guard,
) -> Option<(&'g Atomic<Node>, &'g Node)> {
    let mut prev = head;
    loop {
        // SAFETY: nodes are freed only after a grace period; `guard` pins the epoch.
        let n = unsafe { prev.load(Ordering::Acquire, guard).as_ref() }?;
        if n.hash == hash && *n.key == *key {
            return Some((prev, n));
        }
        prev = &n.next;
    }
}

/// Unlinks `target` from the list at `head` (bucket lock held) and defers its freeing.
fn unlink(head: &Atomic<Node>, target: &Node, guard: &Guard) {
    let mut prev = head;
    loop {
        let cur = prev.load(Ordering::Acquire, guard);
        // SAFETY: as in `find`.
        let Some(n) = (unsafe { cur.as_ref() }) else {
            return;
        };
        if std::ptr::eq(n, target) {
            prev.store(n.next.load(Ordering::Acquire, guard), Ordering::Release);
            // SAFETY: unlinked under the bucket lock and unreachable for new readers;
            // current readers are covered by the deferral.
            unsafe { guard.defer_destroy(cur) };
            return;
        }
        prev = &n.next;
    }
}
