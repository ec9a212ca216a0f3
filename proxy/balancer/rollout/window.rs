//! One step window of `to`: request and error counts and a fixed-size
//! latency histogram, all atomics, so recording costs a few relaxed adds
//! and memory stays bounded however many requests pass.
//!
//! Buckets grow by 2^(1/8) (about 9%) from 100 µs; the p99 is reported as
//! the upper bound of its bucket, so it errs high by at most 9%. Anything
//! over ~100 s lands in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::machine::Figures;

const BUCKETS: usize = 160;
const FIRST_BOUND_MICROS: f64 = 100.0;
const STEPS_PER_DOUBLING: f64 = 8.0;

#[derive(Debug)]
pub struct Window {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Default for Window {
    fn default() -> Window {
        Window {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Window {
    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.buckets[bucket(elapsed)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn figures(&self) -> Figures {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        Figures {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            p99: quantile(&counts, 0.99),
        }
    }
}

fn bucket(elapsed: Duration) -> usize {
    let micros = elapsed.as_secs_f64() * 1e6;
    if micros <= FIRST_BOUND_MICROS {
        return 0;
    }
    let k = ((micros / FIRST_BOUND_MICROS).log2() * STEPS_PER_DOUBLING).ceil();
    (k as usize).min(BUCKETS - 1)
}

fn upper_bound(bucket: usize) -> Duration {
    let micros = FIRST_BOUND_MICROS * (bucket as f64 / STEPS_PER_DOUBLING).exp2();
    Duration::from_secs_f64(micros / 1e6)
}

/// The upper bound of the bucket holding quantile `q`; `None` when empty.
fn quantile(counts: &[u64], q: f64) -> Option<Duration> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the q-quantile, 1-based: the 99th of 100 is rank 99.
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(upper_bound(i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_durations_within_nine_percent() {
        for ms in [0.05, 0.1, 0.15, 1.0, 7.3, 250.0, 999.0, 1000.0, 30_000.0] {
            let d = Duration::from_secs_f64(ms / 1000.0);
            let bound = upper_bound(bucket(d));
            assert!(bound >= d, "{ms} ms -> {bound:?}");
            if ms > 0.1 {
                assert!(bound.as_secs_f64() <= d.as_secs_f64() * 1.091, "{ms} ms");
            }
        }
        assert_eq!(bucket(Duration::from_secs(100_000)), BUCKETS - 1);
    }

    #[test]
    fn p99_counts_the_slow_tail() {
        let w = Window::default();
        assert_eq!(w.figures(), Figures::default());
        for _ in 0..98 {
            w.record(200, Duration::from_millis(10));
        }
        w.record(503, Duration::from_millis(10));
        w.record(200, Duration::from_secs(2));
        let f = w.figures();
        assert_eq!((f.requests, f.errors), (100, 1));
        let p99 = f.p99.expect("a p99");
        assert!(p99 >= Duration::from_millis(10) && p99 < Duration::from_millis(11));
        // One more slow one puts the 99th percentile in the slow bucket.
        w.record(200, Duration::from_secs(2));
        let p99 = w.figures().p99.expect("a p99");
        assert!(p99 >= Duration::from_secs(2), "{p99:?}");
    }
}
