//! The simulated clock: what `jiffies`, `tcp_jiffies32`, `tcp_clock_us()` and the BPF time
//! helpers (`bpf_ktime_get_ns`, `bpf_jiffies64`) read while a simulation runs.
//!
//! A simulation runs on one thread and sets the time of that thread ([`set_now_ns`]) before
//! every event; native congestion controls and the runtime's clock hook (installed by
//! [`crate::TcpHost`]) read it from there, so BPF and native code see the same instant and
//! several simulations can run at once on different threads.
//!
//! Time starts as the kernel's does: `jiffies` begins 300 seconds before its 32-bit wrap
//! (`INITIAL_JIFFIES`), so code that mishandles `tcp_jiffies32` wraparound shows it within
//! five simulated minutes.

use std::cell::Cell;

/// The `CONFIG_HZ` the host presents by default (Debian's kernels use 250).
pub const DEFAULT_HZ: u32 = 250;

thread_local! {
    /// (simulated ns since the start, HZ, the boot offset at that HZ).
    static NOW: Cell<(u64, u32, u64)> =
        const { Cell::new((0, DEFAULT_HZ, boot_offset_ns(DEFAULT_HZ))) };
}

/// Sets this thread's simulated time, in ns since the simulation started.
pub fn set_now_ns(ns: u64) {
    NOW.with(|c| {
        let (_, hz, off) = c.get();
        c.set((ns, hz, off));
    });
}

/// This thread's simulated time, in ns since the simulation started.
pub fn now_ns() -> u64 {
    NOW.with(|c| c.get().0)
}

/// Sets this thread's `CONFIG_HZ` (0 is taken as [`DEFAULT_HZ`]).
pub fn set_hz(hz: u32) {
    let hz = if hz == 0 { DEFAULT_HZ } else { hz };
    NOW.with(|c| c.set((c.get().0, hz, boot_offset_ns(hz))));
}

/// This thread's `CONFIG_HZ`.
pub fn hz() -> u32 {
    NOW.with(|c| c.get().1)
}

/// The monotonic clock (`ktime_get_ns()`): the simulated time plus the boot offset that
/// puts `jiffies` at `INITIAL_JIFFIES` when the simulation starts.
pub fn ktime_ns() -> u64 {
    let (ns, _, off) = NOW.with(|c| c.get());
    off.wrapping_add(ns)
}

/// `(u64)INITIAL_JIFFIES` in ns at `hz`: `2^32 - 300 * HZ` ticks.
const fn boot_offset_ns(hz: u32) -> u64 {
    let ticks = (1u64 << 32) - 300 * hz as u64;
    (ticks as u128 * 1_000_000_000 / hz as u128) as u64 + 1
}

/// `get_jiffies_64()`, computed from [`ktime_ns`] exactly as the runtime's `bpf_jiffies64`
/// does ([`structops::exec::jiffies`]: `ns * HZ / 10^9`).
pub fn jiffies64() -> u64 {
    let (ns, hz, off) = NOW.with(|c| c.get());
    structops::exec::jiffies(off.wrapping_add(ns), u64::from(hz))
}

/// `tcp_jiffies32`.
pub fn tcp_jiffies32() -> u32 {
    jiffies64() as u32
}

/// `tcp_clock_us()`: the monotonic clock in µs.
pub fn tcp_clock_us() -> u64 {
    ktime_ns() / 1000
}

/// `usecs_to_jiffies(us)` (rounded up, as the kernel's).
pub fn usecs_to_jiffies(us: u64) -> u64 {
    (u128::from(us) * u128::from(hz())).div_ceil(1_000_000) as u64
}

/// `msecs_to_jiffies(ms)` (rounded up).
pub fn msecs_to_jiffies(ms: u64) -> u64 {
    (u128::from(ms) * u128::from(hz())).div_ceil(1000) as u64
}

/// `jiffies_to_usecs(j)`.
pub fn jiffies_to_usecs(j: u64) -> u64 {
    (u128::from(j) * 1_000_000 / u128::from(hz())) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jiffies_start_300_seconds_before_the_wrap() {
        set_hz(1000);
        set_now_ns(0);
        assert_eq!(jiffies64(), (1u64 << 32) - 300_000);
        set_now_ns(300_000_000_000);
        assert_eq!(tcp_jiffies32(), 0, "tcp_jiffies32 wraps after 300 s");
        set_hz(250);
        set_now_ns(4_000_000);
        assert_eq!(jiffies64(), (1u64 << 32) - 75_000 + 1);
        assert_eq!(usecs_to_jiffies(4001), 2);
        assert_eq!(msecs_to_jiffies(4), 1);
        assert_eq!(jiffies_to_usecs(1), 4000);
    }
}
