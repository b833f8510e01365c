//! The windowed min/max filter of `lib/win_minmax.c` (Kathleen Nichols' algorithm): the
//! best, second best and third best samples of a sliding window, updated in O(1) per
//! sample. BBR keeps its bandwidth estimate in one (a max over packet-timed rounds); the
//! simulator's TCP keeps `tcp_sock.rtt_min` in one (a min over jiffies).
//!
//! Times and values are `u32`, and time differences wrap as the kernel's do
//! (`val.t - m.s[0].t` in unsigned arithmetic), so a filter keyed by `tcp_jiffies32`
//! survives the jiffies wrap.

use crate::types::{Minmax, MinmaxSample};

/// `minmax_get`: the current best value.
pub fn minmax_get(m: &Minmax) -> u32 {
    m.s[0].v
}

/// `minmax_reset`: forgets every sample but `(t, meas)`; returns `meas`.
pub fn minmax_reset(m: &mut Minmax, t: u32, meas: u32) -> u32 {
    let val = MinmaxSample { t, v: meas };
    m.s = [val; 3];
    m.s[0].v
}

/// `minmax_running_max`: adds the sample `(t, meas)` to a max filter with a window of
/// `win` time units; returns the windowed maximum.
pub fn minmax_running_max(m: &mut Minmax, win: u32, t: u32, meas: u32) -> u32 {
    running(m, win, MinmaxSample { t, v: meas }, |new, old| new >= old)
}

/// `minmax_running_min`: adds the sample `(t, meas)` to a min filter with a window of
/// `win` time units; returns the windowed minimum.
pub fn minmax_running_min(m: &mut Minmax, win: u32, t: u32, meas: u32) -> u32 {
    running(m, win, MinmaxSample { t, v: meas }, |new, old| new <= old)
}

/// The body shared by the max and the min filter; `better(new, old)` is `>=` for a max
/// filter and `<=` for a min filter.
fn running(m: &mut Minmax, win: u32, val: MinmaxSample, better: fn(u32, u32) -> bool) -> u32 {
    // A new best, or the whole window has gone stale: start over from this sample.
    if better(val.v, m.s[0].v) || val.t.wrapping_sub(m.s[2].t) > win {
        return minmax_reset(m, val.t, val.v);
    }
    if better(val.v, m.s[1].v) {
        m.s[1] = val;
        m.s[2] = val;
    } else if better(val.v, m.s[2].v) {
        m.s[2] = val;
    }
    subwin_update(m, win, val)
}

/// `minmax_subwin_update`: as time passes, promote the 2nd and 3rd choices and refresh
/// them from the later quarters of the window.
fn subwin_update(m: &mut Minmax, win: u32, val: MinmaxSample) -> u32 {
    let dt = val.t.wrapping_sub(m.s[0].t);
    if dt > win {
        // The best sample left the window: the 2nd becomes the best and the 3rd the 2nd.
        // The 2nd may have left too (the 3rd was checked by the caller), so twice at most.
        m.s[0] = m.s[1];
        m.s[1] = m.s[2];
        m.s[2] = val;
        if val.t.wrapping_sub(m.s[0].t) > win {
            m.s[0] = m.s[1];
            m.s[1] = m.s[2];
            m.s[2] = val;
        }
    } else if m.s[1].t == m.s[0].t && dt > win / 4 {
        // A quarter of the window without a new 2nd choice: take one from the 2nd quarter.
        m.s[1] = val;
        m.s[2] = val;
    } else if m.s[2].t == m.s[1].t && dt > win / 2 {
        // Half the window without a new 3rd choice: take one from the last half.
        m.s[2] = val;
    }
    m.s[0].v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_filter_keeps_the_best_of_the_window_and_ages_it_out() {
        let mut m = Minmax::default();
        minmax_reset(&mut m, 0, 0);
        assert_eq!(minmax_running_max(&mut m, 10, 0, 100), 100, "new max");
        assert_eq!(minmax_running_max(&mut m, 10, 1, 50), 100);
        // A quarter of the window since the best: this sample becomes the 2nd and 3rd.
        assert_eq!(minmax_running_max(&mut m, 10, 3, 40), 100);
        assert_eq!((m.s[1].v, m.s[2].v), (40, 40));
        assert_eq!(minmax_running_max(&mut m, 10, 6, 30), 100);
        assert_eq!(m.s[2].v, 30, "half the window: a fresh 3rd choice");
        // t=11: the 100 from t=0 is out of the 10-unit window; the 2nd choice (40, t=3)
        // takes over.
        assert_eq!(minmax_running_max(&mut m, 10, 11, 20), 40);
        assert_eq!(m.s[0], MinmaxSample { t: 3, v: 40 });
        // Everything stale: reset to the sample.
        assert_eq!(minmax_running_max(&mut m, 10, 100, 7), 7);
        assert_eq!(m.s, [MinmaxSample { t: 100, v: 7 }; 3]);
    }

    #[test]
    fn min_filter_mirrors_the_max_filter_and_survives_time_wrap() {
        let mut m = Minmax::default();
        let t0 = u32::MAX - 2;
        minmax_reset(&mut m, t0, 500);
        assert_eq!(minmax_running_min(&mut m, 10, t0.wrapping_add(1), 600), 500);
        assert_eq!(minmax_running_min(&mut m, 10, t0.wrapping_add(2), 400), 400);
        assert_eq!(m.s[0].t, t0.wrapping_add(2));
        // Across the wrap: 5 units later is still inside the window.
        assert_eq!(minmax_running_min(&mut m, 10, t0.wrapping_add(7), 450), 400);
        assert_eq!(minmax_get(&m), 400);
        // 11 units after the best: it ages out and the later 450 is the minimum.
        assert_eq!(
            minmax_running_min(&mut m, 10, t0.wrapping_add(13), 900),
            450
        );
    }
}
