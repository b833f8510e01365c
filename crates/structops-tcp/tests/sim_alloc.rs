//! The simulator allocates nothing per event in steady state: a run twice as long
//! allocates (almost) no more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use structops_tcp::sim::{self, SEC, Scenario};
use structops_tcp::{HostConfig, TcpHost};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_event() {
    let host = TcpHost::new(HostConfig::default()).unwrap();
    let count = |secs: u64, loss: f64| {
        let sc = Scenario {
            duration_ns: secs * SEC,
            loss,
            ..Scenario::default()
        };
        let before = ALLOCS.load(Ordering::Relaxed);
        let r = sim::run(&host, &sc, None).unwrap();
        (ALLOCS.load(Ordering::Relaxed) - before, r.events)
    };
    for loss in [0.0, 0.001] {
        let (a5, e5) = count(5, loss);
        let (a10, e10) = count(10, loss);
        println!("loss {loss}: 5 s: {a5} allocations for {e5} events; 10 s: {a10} for {e10}");
        assert!(e10 > e5 + 50_000);
        // Growth of preallocated-or-amortized buffers only: far below one per 1000 events.
        assert!(
            a10.saturating_sub(a5) * 1000 < e10 - e5,
            "{a5} -> {a10} allocations"
        );
    }
}
