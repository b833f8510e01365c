//! The LRU element lists of `LRU_HASH` and `LRU_PERCPU_HASH`, with the kernel's eviction
//! policy (`kernel/bpf/bpf_lru_list.c`): active/inactive/free lists with a reference bit,
//! rotation of at most `nr_scans` nodes, per-CPU local free and pending lists with
//! stealing for the common LRU, and one LRU per CPU under `BPF_F_NO_COMMON_LRU`.
//!
//! Reproducing the policy (not just "some LRU") makes eviction choices equal to the
//! kernel's for the same operation sequence on the same CPU, which the differential
//! tests check. All lists sit under one mutex (the kernel uses one lock per list); the
//! reference bits are atomics outside it, set lock-free by program lookups.
//!
//! Nodes are slot numbers `0..n`; list heads are sentinel slots `n..`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

const ACTIVE: u8 = 0;
const INACTIVE: u8 = 1;
const FREE: u8 = 2;
const LOCAL_FREE: u8 = 3;
const LOCAL_PENDING: u8 = 4;

/// `LOCAL_FREE_TARGET` and `LOCAL_NR_SCANS`.
const LOCAL_FREE_TARGET: u32 = 128;
/// `PERCPU_FREE_TARGET` and `PERCPU_NR_SCANS`.
const PERCPU_FREE_TARGET: u32 = 4;

/// One `bpf_lru_list`: three list heads, the active/inactive counts and the inactive
/// rotation cursor.
#[derive(Clone, Copy)]
struct LruList {
    heads: [u32; 3],
    counts: [u32; 2],
    next_inactive_rotation: u32,
}

/// One CPU's `bpf_lru_locallist`.
#[derive(Clone, Copy)]
struct LocalList {
    free: u32,
    pending: u32,
    next_steal: u32,
}

struct State {
    prev: Vec<u32>,
    next: Vec<u32>,
    ty: Vec<u8>,
    cpu: Vec<u16>,
    hash: Vec<u32>,
    /// The common LRU's global list, or one list per CPU.
    lists: Vec<LruList>,
    /// The common LRU's per-CPU local lists (empty for a per-CPU LRU).
    local: Vec<LocalList>,
}

/// Removes the element in `slot` (with hash `hash`) from its hash table; false if it was
/// not there (the kernel's `del_from_htab`).
pub(crate) type DelFromHtab<'a> = &'a mut dyn FnMut(u32, u32) -> bool;

/// The LRU of one map.
pub(crate) struct Lru {
    state: Mutex<State>,
    refbit: Box<[AtomicU8]>,
    percpu: bool,
    ncpus: u32,
    target_free: u32,
    nr_scans: u32,
}

impl State {
    fn del(&mut self, i: u32) {
        let (p, n) = (self.prev[i as usize], self.next[i as usize]);
        self.next[p as usize] = n;
        self.prev[n as usize] = p;
    }

    fn add(&mut self, i: u32, head: u32) {
        let n = self.next[head as usize];
        self.next[head as usize] = i;
        self.prev[i as usize] = head;
        self.next[i as usize] = n;
        self.prev[n as usize] = i;
    }

    fn mv(&mut self, i: u32, head: u32) {
        self.del(i);
        self.add(i, head);
    }

    fn empty(&self, head: u32) -> bool {
        self.next[head as usize] == head
    }
}

impl Lru {
    /// An LRU over `n` slots, all free, populated like `bpf_lru_populate`.
    pub(crate) fn new(n: u32, percpu: bool, ncpus: u32) -> Lru {
        let ncpus = ncpus.max(1);
        let nheads = if percpu { 3 * ncpus } else { 3 + 2 * ncpus };
        let total = (n + nheads) as usize;
        let mut st = State {
            prev: (0..total as u32).collect(),
            next: (0..total as u32).collect(),
            ty: vec![FREE; n as usize],
            cpu: vec![0; n as usize],
            hash: vec![0; n as usize],
            lists: Vec::new(),
            local: Vec::new(),
        };
        let list_at = |base: u32| LruList {
            heads: [base, base + 1, base + 2],
            counts: [0, 0],
            next_inactive_rotation: base + 1,
        };
        if percpu {
            for c in 0..ncpus {
                st.lists.push(list_at(n + 3 * c));
            }
            let per = (n / ncpus).max(1);
            let mut i = 0u32;
            'cpus: for c in 0..ncpus {
                let free = n + 3 * c + 2;
                loop {
                    if i >= n {
                        break 'cpus;
                    }
                    st.cpu[i as usize] = c as u16;
                    st.add(i, free);
                    i += 1;
                    if i == n {
                        break 'cpus;
                    }
                    if i.is_multiple_of(per) {
                        break;
                    }
                }
            }
        } else {
            st.lists.push(list_at(n));
            for c in 0..ncpus {
                st.local.push(LocalList {
                    free: n + 3 + 2 * c,
                    pending: n + 4 + 2 * c,
                    next_steal: c,
                });
            }
            for i in 0..n {
                st.add(i, n + 2);
            }
        }
        Lru {
            state: Mutex::new(st),
            refbit: (0..n).map(|_| AtomicU8::new(0)).collect(),
            percpu,
            ncpus,
            target_free: if percpu {
                PERCPU_FREE_TARGET
            } else {
                ((n / ncpus) / 2).clamp(1, LOCAL_FREE_TARGET)
            },
            nr_scans: if percpu {
                PERCPU_FREE_TARGET
            } else {
                LOCAL_FREE_TARGET
            },
        }
    }

    /// Marks `slot` referenced (`bpf_lru_node_set_ref`), lock-free.
    pub(crate) fn set_ref(&self, slot: u32) {
        if let Some(r) = self.refbit.get(slot as usize)
            && r.load(Ordering::Relaxed) == 0
        {
            r.store(1, Ordering::Relaxed);
        }
    }

    fn is_ref(&self, i: u32) -> bool {
        self.refbit
            .get(i as usize)
            .is_some_and(|r| r.load(Ordering::Relaxed) != 0)
    }

    fn clear_ref(&self, i: u32) {
        if let Some(r) = self.refbit.get(i as usize) {
            r.store(0, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free slot for an element with `hash`, evicting if needed
    /// (`bpf_lru_pop_free`); `None` when nothing can be freed.
    pub(crate) fn pop_free(&self, cpu: u32, hash: u32, del: DelFromHtab<'_>) -> Option<u32> {
        let cpu = cpu % self.ncpus;
        let mut st = self.lock();
        if self.percpu {
            self.percpu_pop_free(&mut st, cpu, hash, del)
        } else {
            self.common_pop_free(&mut st, cpu, hash, del)
        }
    }

    /// Returns `slot` to the free lists (`bpf_lru_push_free`).
    pub(crate) fn push_free(&self, slot: u32) {
        let mut st = self.lock();
        let Some(&t) = st.ty.get(slot as usize) else {
            return;
        };
        if self.percpu {
            let c = st.cpu[slot as usize] as usize;
            if let Some(mut l) = st.lists.get(c).copied() {
                self.node_move(&mut st, &mut l, slot, FREE);
                st.lists[c] = l;
            }
            return;
        }
        if t == FREE || t == LOCAL_FREE {
            return;
        }
        if t == LOCAL_PENDING {
            let c = st.cpu[slot as usize] as usize;
            if let Some(loc) = st.local.get(c).copied() {
                st.ty[slot as usize] = LOCAL_FREE;
                self.clear_ref(slot);
                st.mv(slot, loc.free);
            }
            return;
        }
        let mut l = st.lists[0];
        self.node_move(&mut st, &mut l, slot, FREE);
        st.lists[0] = l;
    }

    fn count_inc(l: &mut LruList, t: u8) {
        if let Some(c) = l.counts.get_mut(t as usize) {
            *c += 1;
        }
    }

    fn count_dec(l: &mut LruList, t: u8) {
        if let Some(c) = l.counts.get_mut(t as usize) {
            *c = c.wrapping_sub(1);
        }
    }

    fn node_move_to_free(&self, st: &mut State, l: &mut LruList, i: u32, head: u32, t: u8) {
        if l.next_inactive_rotation == i {
            l.next_inactive_rotation = st.prev[i as usize];
        }
        Self::count_dec(l, st.ty[i as usize]);
        st.ty[i as usize] = t;
        st.mv(i, head);
    }

    fn node_move_in(&self, st: &mut State, l: &mut LruList, i: u32, t: u8) {
        Self::count_inc(l, t);
        st.ty[i as usize] = t;
        self.clear_ref(i);
        st.mv(i, l.heads[t as usize]);
    }

    fn node_move(&self, st: &mut State, l: &mut LruList, i: u32, t: u8) {
        let old = st.ty[i as usize];
        if old != t {
            Self::count_dec(l, old);
            Self::count_inc(l, t);
            st.ty[i as usize] = t;
        }
        self.clear_ref(i);
        if l.next_inactive_rotation == i {
            l.next_inactive_rotation = st.prev[i as usize];
        }
        st.mv(i, l.heads[t as usize]);
    }

    fn rotate_active(&self, st: &mut State, l: &mut LruList) {
        let head = l.heads[ACTIVE as usize];
        let first = st.next[head as usize];
        let mut node = st.prev[head as usize];
        let mut i = 0;
        while node != head {
            let tmp = st.prev[node as usize];
            let t = if self.is_ref(node) { ACTIVE } else { INACTIVE };
            self.node_move(st, l, node, t);
            i += 1;
            if i == self.nr_scans || node == first {
                break;
            }
            node = tmp;
        }
    }

    fn rotate_inactive(&self, st: &mut State, l: &mut LruList) {
        let head = l.heads[INACTIVE as usize];
        if st.empty(head) {
            return;
        }
        let mut last = st.next[l.next_inactive_rotation as usize];
        if last == head {
            last = st.next[last as usize];
        }
        let mut cur = l.next_inactive_rotation;
        let mut next = head;
        let mut i = 0;
        // `steps` only guards against a corrupted list; the kernel's walk ends at `last`
        // or after `nr_scans` nodes.
        let mut steps = 0usize;
        let bound = st.next.len() + self.nr_scans as usize + 2;
        while i < self.nr_scans && steps < bound {
            steps += 1;
            if cur == head {
                cur = st.prev[cur as usize];
                continue;
            }
            next = st.prev[cur as usize];
            if self.is_ref(cur) {
                self.node_move(st, l, cur, ACTIVE);
            }
            if cur == last {
                break;
            }
            cur = next;
            i += 1;
        }
        l.next_inactive_rotation = next;
    }

    fn shrink_inactive(
        &self,
        st: &mut State,
        l: &mut LruList,
        tgt: u32,
        free: u32,
        t: u8,
        del: DelFromHtab<'_>,
    ) -> u32 {
        let head = l.heads[INACTIVE as usize];
        let mut node = st.prev[head as usize];
        let (mut n, mut i) = (0, 0);
        while node != head {
            let tmp = st.prev[node as usize];
            if self.is_ref(node) {
                self.node_move(st, l, node, ACTIVE);
            } else if del(node, st.hash[node as usize]) {
                self.node_move_to_free(st, l, node, free, t);
                n += 1;
                if n == tgt {
                    break;
                }
            }
            i += 1;
            if i == self.nr_scans {
                break;
            }
            node = tmp;
        }
        n
    }

    fn rotate(&self, st: &mut State, l: &mut LruList) {
        if l.counts[INACTIVE as usize] < l.counts[ACTIVE as usize] {
            self.rotate_active(st, l);
        }
        self.rotate_inactive(st, l);
    }

    fn shrink(
        &self,
        st: &mut State,
        l: &mut LruList,
        tgt: u32,
        free: u32,
        t: u8,
        del: DelFromHtab<'_>,
    ) -> u32 {
        let n = self.shrink_inactive(st, l, tgt, free, t, del);
        if n > 0 {
            return n;
        }
        let force = if st.empty(l.heads[INACTIVE as usize]) {
            l.heads[ACTIVE as usize]
        } else {
            l.heads[INACTIVE as usize]
        };
        let mut node = st.prev[force as usize];
        while node != force {
            let tmp = st.prev[node as usize];
            if del(node, st.hash[node as usize]) {
                self.node_move_to_free(st, l, node, free, t);
                return 1;
            }
            node = tmp;
        }
        0
    }

    fn percpu_pop_free(
        &self,
        st: &mut State,
        cpu: u32,
        hash: u32,
        del: DelFromHtab<'_>,
    ) -> Option<u32> {
        let mut l = *st.lists.get(cpu as usize)?;
        self.rotate(st, &mut l);
        let free = l.heads[FREE as usize];
        if st.empty(free) {
            self.shrink(st, &mut l, PERCPU_FREE_TARGET, free, FREE, del);
        }
        let mut got = None;
        if !st.empty(free) {
            let node = st.next[free as usize];
            st.hash[node as usize] = hash;
            self.clear_ref(node);
            self.node_move(st, &mut l, node, INACTIVE);
            got = Some(node);
        }
        st.lists[cpu as usize] = l;
        got
    }

    fn local_pop_free(st: &mut State, loc: LocalList) -> Option<u32> {
        let node = st.next[loc.free as usize];
        if node == loc.free {
            return None;
        }
        st.del(node);
        Some(node)
    }

    fn local_pop_pending(
        &self,
        st: &mut State,
        loc: LocalList,
        del: DelFromHtab<'_>,
    ) -> Option<u32> {
        for force in [false, true] {
            let mut node = st.prev[loc.pending as usize];
            while node != loc.pending {
                let tmp = st.prev[node as usize];
                if (!self.is_ref(node) || force) && del(node, st.hash[node as usize]) {
                    st.del(node);
                    return Some(node);
                }
                node = tmp;
            }
        }
        None
    }

    fn add_pending(&self, st: &mut State, loc: LocalList, cpu: u32, node: u32, hash: u32) {
        st.hash[node as usize] = hash;
        st.cpu[node as usize] = cpu as u16;
        st.ty[node as usize] = LOCAL_PENDING;
        self.clear_ref(node);
        st.add(node, loc.pending);
    }

    fn pop_free_to_local(&self, st: &mut State, loc: LocalList, del: DelFromHtab<'_>) {
        let mut l = st.lists[0];
        // Flush the pending list into the LRU lists.
        let mut node = st.prev[loc.pending as usize];
        while node != loc.pending {
            let tmp = st.prev[node as usize];
            let t = if self.is_ref(node) { ACTIVE } else { INACTIVE };
            self.node_move_in(st, &mut l, node, t);
            node = tmp;
        }
        self.rotate(st, &mut l);
        let free = l.heads[FREE as usize];
        let mut nfree = 0;
        let mut node = st.next[free as usize];
        while node != free {
            let tmp = st.next[node as usize];
            self.node_move_to_free(st, &mut l, node, loc.free, LOCAL_FREE);
            nfree += 1;
            if nfree == self.target_free {
                break;
            }
            node = tmp;
        }
        if nfree < self.target_free {
            self.shrink(
                st,
                &mut l,
                self.target_free - nfree,
                loc.free,
                LOCAL_FREE,
                del,
            );
        }
        st.lists[0] = l;
    }

    fn common_pop_free(
        &self,
        st: &mut State,
        cpu: u32,
        hash: u32,
        del: DelFromHtab<'_>,
    ) -> Option<u32> {
        let loc = *st.local.get(cpu as usize)?;
        let mut node = Self::local_pop_free(st, loc);
        if node.is_none() {
            self.pop_free_to_local(st, loc, del);
            node = Self::local_pop_free(st, loc);
        }
        if let Some(n) = node {
            self.add_pending(st, loc, cpu, n, hash);
            return Some(n);
        }
        let first = loc.next_steal;
        let mut steal = first;
        loop {
            let sl = st.local[steal as usize];
            node = Self::local_pop_free(st, sl);
            if node.is_none() {
                node = self.local_pop_pending(st, sl, del);
            }
            steal = (steal + 1) % self.ncpus;
            if node.is_some() || steal == first {
                break;
            }
        }
        st.local[cpu as usize].next_steal = steal;
        let n = node?;
        self.add_pending(st, loc, cpu, n, hash);
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_then_evicts_unreferenced_first() {
        let lru = Lru::new(4, false, 1);
        let mut popped = Vec::new();
        for h in 0..4 {
            let s = lru.pop_free(0, h, &mut |_, _| unreachable!()).unwrap();
            assert!(!popped.contains(&s));
            popped.push(s);
        }
        // Reference every slot but the oldest: it is the one evicted.
        for &s in &popped[1..] {
            lru.set_ref(s);
        }
        let mut evicted = Vec::new();
        let s = lru
            .pop_free(0, 9, &mut |slot, _| {
                evicted.push(slot);
                true
            })
            .unwrap();
        assert_eq!(evicted, vec![popped[0]]);
        assert_eq!(s, popped[0]);
    }

    #[test]
    fn percpu_lists_and_push_free() {
        let lru = Lru::new(4, true, 2);
        let a = lru.pop_free(0, 1, &mut |_, _| false).unwrap();
        let b = lru.pop_free(1, 2, &mut |_, _| false).unwrap();
        assert_ne!(a, b);
        lru.push_free(a);
        assert_eq!(lru.pop_free(0, 3, &mut |_, _| false), Some(a));
        // CPU 1's two slots, then nothing without eviction.
        assert!(lru.pop_free(1, 4, &mut |_, _| false).is_some());
        assert_eq!(lru.pop_free(1, 5, &mut |_, _| false), None);
    }
}
