//! The memory a runtime's maps and programs may hold: the analog of the memory cgroup
//! the kernel charges them to (`bpf_map_area_alloc`, `bpf_map_kmalloc_node` and
//! `bpf_mem_alloc` all allocate with `__GFP_ACCOUNT` against the map's memcg, and
//! `bpf_prog_alloc`/`bpf_prog_realloc` a program's pages against the loader's). The
//! same type also keeps the account of JIT memory ([`crate::RuntimeConfig::jit_memory_limit`],
//! the kernel's `bpf_jit_current` against `bpf_jit_limit`).
//!
//! Every map charges what it allocates at creation (its storage, or for maps that
//! allocate per element, its buckets) and, for those, each element as it is added; a
//! charge that would take the runtime past its limit fails with `ENOMEM`, as an
//! allocation fails when the memcg is at its `memory.max`. Charges are returned when the
//! element or the map goes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::errno::Errno;

/// A memory account: a limit and what is charged against it.
pub(crate) struct MemCgroup {
    limit: u64,
    used: AtomicU64,
}

impl fmt::Debug for MemCgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemCgroup")
            .field("limit", &self.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl MemCgroup {
    /// An account that admits at most `limit` bytes.
    pub(crate) fn new(limit: u64) -> Arc<MemCgroup> {
        Arc::new(MemCgroup {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// The limit.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Charges `bytes` (`try_charge`): `ENOMEM` if that would pass the limit, and then
    /// nothing is charged.
    pub(crate) fn try_charge(&self, bytes: u64) -> Result<(), Errno> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .map(drop)
            .map_err(|_| Errno::ENOMEM)
    }

    /// Returns `bytes` charged earlier.
    pub(crate) fn uncharge(&self, bytes: u64) {
        // Saturating: a bookkeeping slip must not wrap the account into "full".
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

/// A charge held until dropped.
pub(crate) struct Charge {
    cg: Arc<MemCgroup>,
    bytes: u64,
}

impl fmt::Debug for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Charge")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Charge {
    /// Charges `bytes` to `cg` (`ENOMEM` past its limit).
    pub(crate) fn new(cg: &Arc<MemCgroup>, bytes: u64) -> Result<Charge, Errno> {
        cg.try_charge(bytes)?;
        Ok(Charge {
            cg: cg.clone(),
            bytes,
        })
    }
}

impl Charge {
    /// Bytes charged.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grows the charge to `bytes`, as `bpf_prog_realloc` charges a program's larger
    /// allocation: the difference is charged (`ENOMEM` past the limit, and then the
    /// charge stays as it was). A smaller `bytes` changes nothing.
    pub(crate) fn grow_to(&mut self, bytes: u64) -> Result<(), Errno> {
        if bytes > self.bytes {
            self.cg.try_charge(bytes - self.bytes)?;
            self.bytes = bytes;
        }
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.cg.uncharge(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_up_to_the_limit_and_returns_on_drop() {
        let cg = MemCgroup::new(100);
        let a = Charge::new(&cg, 60).unwrap();
        assert_eq!(Charge::new(&cg, 41).err(), Some(Errno::ENOMEM));
        assert_eq!(cg.used(), 60, "a failed charge takes nothing");
        let b = Charge::new(&cg, 40).unwrap();
        assert_eq!(cg.used(), 100);
        drop(a);
        assert_eq!(cg.used(), 40);
        drop(b);
        assert_eq!(cg.used(), 0);
        assert_eq!(cg.try_charge(u64::MAX), Err(Errno::ENOMEM));
    }

    #[test]
    fn a_charge_grows_by_the_difference() {
        let cg = MemCgroup::new(100);
        let mut a = Charge::new(&cg, 30).unwrap();
        a.grow_to(80).unwrap();
        assert_eq!(cg.used(), 80);
        assert_eq!(a.grow_to(101), Err(Errno::ENOMEM));
        assert_eq!(cg.used(), 80, "a failed growth keeps the old charge");
        a.grow_to(10).unwrap();
        assert_eq!(cg.used(), 80, "it never shrinks");
        drop(a);
        assert_eq!(cg.used(), 0);
    }
}
