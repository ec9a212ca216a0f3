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

    /// The backend for the next request, or `None` when all weights are 0.
    pub fn pick(&self) -> Option<&Backend> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        if self.backends.len() == 1 {
            return self.backends.first();
        }
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % total;
        let i = self.cumulative.partition_point(|&c| c <= slot);
        self.backends.get(i)
    }
}
