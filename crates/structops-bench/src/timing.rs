//! The quick modes' stopwatch.

use std::time::Instant;

use crate::Settings;

/// Nanoseconds per call of `f`: the iteration count is doubled until one batch takes
/// [`Settings::batch_time`], then [`Settings::batches`] batches are timed and the
/// fastest batch's mean is returned (the minimum is the figure least disturbed by other
/// work on a shared machine).
pub fn ns_per_iter<F: FnMut()>(settings: &Settings, mut f: F) -> f64 {
    let mut n: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        let e = t.elapsed();
        if e >= settings.batch_time || n >= 1 << 32 {
            break;
        }
        n = n.saturating_mul(2);
    }
    let mut best = f64::INFINITY;
    for _ in 0..settings.batches.max(1) {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}
