//! Weighted choice between a route's backends.
//!
//! The weights are turned once, at compile time, into a smooth weighted
//! round-robin schedule (nginx's algorithm: 5:1:1 gives a a b a c a a, not
//! a a a a a b c); a request takes the next slot of it with one atomic add.
//! Every cycle of the schedule sends exactly `weight` to each backend, and
//! weight 0 sends nothing. Weights too large for a schedule fall back to
//! walking the cumulative weights, which is exact per cycle but bunched.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::Backend;

#[derive(Debug, Default)]
pub struct Split {
    backends: Vec<Backend>,
    /// The current weights; replaced whole when a rollout moves them.
    table: ArcSwap<Table>,
    next: AtomicU64,
}

/// Weights turned into what `pick` walks.
#[derive(Debug, Default)]
struct Table {
    weights: Vec<u32>,
    /// `cumulative[i]` = sum of weights of backends `0..=i`.
    cumulative: Vec<u64>,
    /// Backend index per slot, when the reduced weights sum to at most
    /// `MAX_SCHEDULE`.
    schedule: Vec<u16>,
}

impl Table {
    fn new(weights: Vec<u32>) -> Table {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        let schedule = schedule(&weights);
        Table {
            weights,
            cumulative,
            schedule,
        }
    }
}

impl Split {
    /// A split by the backends' configured weights.
    pub fn new(backends: Vec<Backend>) -> Split {
        let weights = backends.iter().map(|b| b.weight).collect();
        Split::with_weights(backends, weights)
    }

    /// A split whose weights differ from the configured ones (a rollout).
    pub fn with_weights(backends: Vec<Backend>, weights: Vec<u32>) -> Split {
        Split {
            backends,
            table: ArcSwap::from_pointee(Table::new(weights)),
            next: AtomicU64::new(0),
        }
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The configured weights, in backend order.
    pub fn base_weights(&self) -> Vec<u32> {
        self.backends.iter().map(|b| b.weight).collect()
    }

    /// Replaces the weights (one per backend); a no-op when unchanged.
    pub fn set_weights(&self, weights: Vec<u32>) {
        if self.table.load().weights != weights {
            self.table.store(Arc::new(Table::new(weights)));
        }
    }

    /// The current weight of backend `index` (0 when out of range).
    pub fn weight(&self, index: usize) -> u32 {
        self.table.load().weights.get(index).copied().unwrap_or(0)
    }

    /// The backend for the next request, or `None` when all weights are 0
    /// or every weighted backend is down. A backend that is down (a service
    /// without a healthy endpoint) has effective weight 0: its share goes to
    /// the others.
    pub fn pick(&self) -> Option<&Backend> {
        let table = self.table.load();
        let total = *table.cumulative.last()?;
        if total == 0 {
            return None;
        }
        let slot = self.next.fetch_add(1, Ordering::Relaxed);
        let i = if table.schedule.is_empty() {
            table.cumulative.partition_point(|&c| c <= slot % total)
        } else {
            usize::from(table.schedule[(slot % table.schedule.len() as u64) as usize])
        };
        match self.backends.get(i) {
            Some(backend) if backend.available() => Some(backend),
            _ => self.pick_available(&table.weights, slot),
        }
    }

    /// The same walk over the backends that are up (the rare path).
    fn pick_available(&self, weights: &[u32], slot: u64) -> Option<&Backend> {
        let up = || {
            self.backends
                .iter()
                .zip(weights)
                .filter(|(b, w)| **w > 0 && b.available())
                .map(|(b, w)| (b, u64::from(*w)))
        };
        let total: u64 = up().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut slot = slot % total;
        for (backend, weight) in up() {
            if slot < weight {
                return Some(backend);
            }
            slot -= weight;
        }
        None
    }

    /// Weight of backend `index` after taking out those that are down.
    pub fn effective_weight(&self, index: usize) -> u32 {
        match self.backends.get(index) {
            Some(backend) if backend.available() => self.weight(index),
            _ => 0,
        }
    }

    /// Index of `backend`, which must be one of this split's.
    pub fn index_of(&self, backend: &Backend) -> Option<usize> {
        self.backends.iter().position(|b| std::ptr::eq(b, backend))
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
