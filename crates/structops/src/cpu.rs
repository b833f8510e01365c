//! The calling thread's CPU slot, the runtime's `smp_processor_id()`.
//!
//! Per-CPU maps have a fixed number of slots, set on the runtime
//! ([`crate::RuntimeConfig::ncpus`]). Each thread gets a slot index the first time it
//! asks: threads are numbered round-robin in the order they first touch a per-CPU
//! value, and the slot is that number modulo the runtime's slot count. A host that pins
//! its threads to CPUs can say which slot a thread is with [`set_current_cpu`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT_THREAD: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static THREAD_SLOT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Fixes the calling thread's CPU number (taken modulo each runtime's slot count); `None`
/// returns it to the round-robin default.
pub fn set_current_cpu(cpu: Option<u32>) {
    THREAD_SLOT.with(|s| s.set(cpu));
}

/// The calling thread's CPU slot in a runtime with `ncpus` slots (`ncpus >= 1`).
pub fn current_cpu(ncpus: u32) -> u32 {
    let n = THREAD_SLOT.with(|s| match s.get() {
        Some(n) => n,
        None => {
            let n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            s.set(Some(n));
            n
        }
    });
    n % ncpus.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_and_round_robin() {
        set_current_cpu(Some(5));
        assert_eq!(current_cpu(4), 1);
        assert_eq!(current_cpu(8), 5);
        set_current_cpu(None);
        let a = current_cpu(1000);
        assert_eq!(current_cpu(1000), a, "stable per thread");
        let b = std::thread::spawn(|| current_cpu(1000)).join().unwrap();
        assert_ne!(a, b, "another thread gets another slot");
        assert_eq!(current_cpu(0), 0);
    }
}
