//! Weighted choice between a route's backends.
//!
//! The weights are turned once, at compile time, into a smooth weighted
//! round-robin schedule (nginx's algorithm: 5:1:1 gives a a b a c a a, not
//! a a a a a b c); a request takes the next slot of it with one atomic add.
//! Every cycle of the schedule sends exactly `weight` to each backend, and
//! weight 0 sends nothing. Weights too large for a schedule fall back to
//! walking the cumulative weights, which is exact per cycle but bunched.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Backend;

#[derive(Debug, Default)]
pub struct Split {
    backends: Vec<Backend>,
    /// `cumulative[i]` = sum of weights of backends `0..=i`.
    cumulative: Vec<u64>,
    /// Backend index per slot, when the reduced weights sum to at most
    /// `MAX_SCHEDULE`.
    schedule: Vec<u16>,
    next: AtomicU64,
}

impl Split {
    pub fn new(backends: Vec<Backend>) -> Split {
        let cumulative = backends
            .iter()
            .scan(0u64, |sum, b| {
                *sum += u64::from(b.weight);
                Some(*sum)
            })
            .collect();
        let schedule = schedule(&backends.iter().map(|b| b.weight).collect::<Vec<_>>());
        Split {
            backends,
            cumulative,
            schedule,
            next: AtomicU64::new(0),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend for the next request, or `None` when all weights are 0
    /// or every weighted backend is down. A backend that is down (a service
    /// without a healthy endpoint) has effective weight 0: its share goes to
    /// the others.
    pub fn pick(&self) -> Option<&Backend> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let i = if self.schedule.is_empty() {
            self.cumulative.partition_point(|&c| c <= slot % total)
        } else {
            usize::from(self.schedule[(slot % self.schedule.len() as u64) as usize])
        };
        match self.backends.get(i) {
            Some(backend) if backend.available() => Some(backend),
            _ => self.pick_available(slot),
        }
    }

    /// The same walk over the backends that are up (the rare path).
    fn pick_available(&self, slot: u64) -> Option<&Backend> {
        let up = |b: &&Backend| b.available() && b.weight > 0;
        let total: u64 = self
            .backends
            .iter()
            .filter(up)
            .map(|b| u64::from(b.weight))
            .sum();
        if total == 0 {
            return None;
        }
        let mut slot = slot % total;
        for backend in self.backends.iter().filter(up) {
            if slot < u64::from(backend.weight) {
                return Some(backend);
            }
            slot -= u64::from(backend.weight);
        }
        None
    }

    /// Weight of each backend after taking out those that are down.
    pub fn effective_weight(&self, backend: &Backend) -> u32 {
        if backend.available() {
            backend.weight
        } else {
            0
        }
    }
}

/// The longest schedule kept; beyond it the cumulative walk is used.
const MAX_SCHEDULE: u64 = 10_000;

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Smooth weighted round robin over weights divided by their common
/// divisor; empty when there is nothing to schedule or it would be too long.
fn schedule(weights: &[u32]) -> Vec<u16> {
    let divisor = weights
        .iter()
        .map(|&w| u64::from(w))
        .filter(|&w| w > 0)
        .fold(0, gcd);
    if divisor == 0 || weights.len() > usize::from(u16::MAX) {
        return Vec::new();
    }
    let reduced: Vec<i64> = weights
        .iter()
        .map(|&w| (u64::from(w) / divisor) as i64)
        .collect();
    let total: i64 = reduced.iter().sum();
    if total as u64 > MAX_SCHEDULE {
        return Vec::new();
    }
    let mut current = vec![0i64; reduced.len()];
    let mut slots = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in reduced.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        slots.push(best as u16);
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(slots: &[u16], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in slots {
            c[usize::from(s)] += 1;
        }
        c
    }

    #[test]
    fn schedules_are_exact_and_smooth() {
        assert_eq!(schedule(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            schedule(&[95, 5]).len(),
            20,
            "reduced by the common divisor"
        );
        assert_eq!(counts(&schedule(&[95, 5]), 2), vec![19, 1]);
        assert_eq!(counts(&schedule(&[3, 1, 0]), 3), vec![3, 1, 0]);
        assert_eq!(schedule(&[0, 0]), Vec::<u16>::new());
        assert_eq!(
            schedule(&[1_000_000, 1]),
            Vec::<u16>::new(),
            "too long: cumulative walk"
        );
        // 50/50 alternates rather than sending 50 in a row to one side.
        assert_eq!(schedule(&[50, 50]), vec![0, 1]);
    }

    #[test]
    fn split_accuracy_within_a_point_over_ten_thousand() {
        for weights in [[95u32, 5, 0], [33, 33, 34], [1, 2, 97], [70, 20, 10]] {
            let slots = schedule(&weights);
            let total: u32 = weights.iter().sum();
            let mut got = [0usize; 3];
            for k in 0..10_000 {
                got[usize::from(slots[k % slots.len()])] += 1;
            }
            for i in 0..3 {
                let want = f64::from(weights[i]) / f64::from(total) * 100.0;
                let share = got[i] as f64 / 100.0;
                assert!(
                    (share - want).abs() <= 1.0,
                    "{weights:?}: {share} vs {want}"
                );
            }
        }
    }
}
