//! Weighted choice between a route's backends.
//!
//! A counter walks the cumulative weights, so every `total` requests send
//! exactly `weight` to each backend; weight 0 sends nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Backend;

#[derive(Debug, Default)]
pub struct Split {
    backends: Vec<Backend>,
    /// `cumulative[i]` = sum of weights of backends `0..=i`.
    cumulative: Vec<u64>,
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
        Split {
            backends,
            cumulative,
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
        let i = self.cumulative.partition_point(|&c| c <= slot % total);
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
