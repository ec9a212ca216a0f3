//! Regional failover: which region of a service takes the traffic.
//!
//! Pure state ([`State`]) stepped with `now` and every region's healthy
//! fraction (healthy endpoints / endpoints; 0 for a region without
//! endpoints), in priority order:
//!
//! - A region *qualifies* when its fraction is ≥ `min_healthy` and it has a
//!   healthy endpoint at all.
//! - The first step picks the first qualifying region, or, when none does,
//!   the one with the highest fraction (ties: priority order).
//! - While the active region qualifies it keeps the traffic, unless a
//!   region of higher priority has qualified continuously for
//!   `failback_after`: then the traffic fails back to it (the first such).
//! - When the active region stops qualifying, the traffic moves at once, by
//!   the first-step rule.
//!
//! The state is stepped lazily, whenever the active region is asked for
//! (every request, `/status`, metrics): "continuously" means every step
//! since the region was first seen qualifying found it qualifying.
//!
//! Without a `failover` section a service uses `min_healthy = 0.7` and
//! fails back at once (`failback_after = 0`).

use std::time::{Duration, Instant};

use crate::config::schema;

pub const DEFAULT_MIN_HEALTHY: f64 = 0.7;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub min_healthy: f64,
    pub failback_after: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            min_healthy: DEFAULT_MIN_HEALTHY,
            failback_after: Duration::ZERO,
        }
    }
}

impl From<Option<&schema::Failover>> for Policy {
    fn from(f: Option<&schema::Failover>) -> Policy {
        match f {
            Some(f) => Policy {
                min_healthy: f.min_healthy.clamp(0.0, 1.0),
                failback_after: f.failback_after.0,
            },
            None => Policy::default(),
        }
    }
}

/// The failover state of one service.
#[derive(Debug, Default)]
pub struct State {
    active: Option<usize>,
    /// Per region: since when it has qualified, as far as steps saw.
    good_since: Vec<Option<Instant>>,
    /// Reused buffer of fractions (see [`State::step_with`]).
    scratch: Vec<f64>,
}

impl State {
    /// The active region, if a step ran.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Steps with the fraction of region `i` given by `fraction(i)`, for
    /// `regions` regions, without allocating after the first call.
    pub fn step_with(
        &mut self,
        regions: usize,
        fraction: impl Fn(usize) -> f64,
        now: Instant,
        policy: &Policy,
    ) -> Option<usize> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend((0..regions).map(fraction));
        let active = self.step(&scratch, now, policy);
        self.scratch = scratch;
        active
    }

    /// Steps with every region's healthy fraction; returns the active
    /// region (`None` only when there are no regions).
    pub fn step(&mut self, fractions: &[f64], now: Instant, policy: &Policy) -> Option<usize> {
        if fractions.is_empty() {
            self.active = None;
            return None;
        }
        let qualifies = |f: f64| f > 0.0 && f >= policy.min_healthy;
        self.good_since.resize(fractions.len(), None);
        for (since, &f) in self.good_since.iter_mut().zip(fractions) {
            if qualifies(f) {
                since.get_or_insert(now);
            } else {
                *since = None;
            }
        }
        let preferred = fractions
            .iter()
            .position(|&f| qualifies(f))
            .unwrap_or_else(|| {
                // Highest fraction; the earliest region wins ties.
                let mut best = 0;
                for (i, &f) in fractions.iter().enumerate() {
                    if f > fractions[best] {
                        best = i;
                    }
                }
                best
            });
        let next = match self.active {
            Some(active) if active < fractions.len() && qualifies(fractions[active]) => (0..active)
                .find(|&i| {
                    self.good_since[i].is_some_and(|since| {
                        now.saturating_duration_since(since) >= policy.failback_after
                    })
                })
                .unwrap_or(active),
            _ => preferred,
        };
        self.active = Some(next);
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_healthy: 0.7,
            failback_after: Duration::from_secs(1),
        }
    }

    /// Runs (ms since start, fractions, expected active) in order.
    fn run(policy: Policy, steps: &[(u64, &[f64], usize)]) {
        let t0 = Instant::now();
        let mut s = State::default();
        for (i, &(at, fractions, want)) in steps.iter().enumerate() {
            let got = s.step(fractions, t0 + Duration::from_millis(at), &policy);
            assert_eq!(got, Some(want), "step {i} at {at} ms with {fractions:?}");
        }
    }

    #[test]
    fn primary_keeps_traffic_while_at_least_min_healthy() {
        run(
            policy(),
            &[
                (0, &[1.0, 1.0], 0),
                (10, &[0.75, 1.0], 0),
                (20, &[0.7, 1.0], 0),
                // below min_healthy: move at once
                (30, &[0.5, 1.0], 1),
            ],
        );
    }

    #[test]
    fn failback_waits_for_failback_after_of_continuous_health() {
        run(
            policy(),
            &[
                (0, &[0.5, 1.0], 1),
                // primary good from 100 ms
                (100, &[1.0, 1.0], 1),
                (600, &[1.0, 1.0], 1),
                // flaps at 700: the clock starts over at 800
                (700, &[0.5, 1.0], 1),
                (800, &[0.75, 1.0], 1),
                (1700, &[0.75, 1.0], 1),
                (1799, &[1.0, 1.0], 1),
                (1800, &[1.0, 1.0], 0),
                (5000, &[1.0, 0.0], 0),
            ],
        );
    }

    #[test]
    fn none_qualifying_picks_the_highest_fraction_ties_by_priority() {
        run(
            policy(),
            &[
                (0, &[0.25, 0.5, 0.5], 1),
                (10, &[0.5, 0.5, 0.6], 2),
                (20, &[0.6, 0.6, 0.6], 0),
                (30, &[0.0, 0.0, 0.0], 0),
                // a lower region qualifies: it takes over at once
                (40, &[0.0, 0.0, 1.0], 2),
                // the middle one qualifies: failback after 1 s
                (50, &[0.0, 1.0, 1.0], 2),
                (1050, &[0.0, 1.0, 1.0], 1),
            ],
        );
    }

    #[test]
    fn degraded_active_moves_to_a_recovering_higher_region_at_once() {
        run(
            policy(),
            &[
                (0, &[0.0, 1.0], 1),
                (100, &[1.0, 1.0], 1),
                // secondary falls below min before the failback timer ran out
                (200, &[1.0, 0.5], 0),
            ],
        );
    }

    #[test]
    fn zero_failback_and_empty_regions() {
        let p = Policy::default();
        run(p, &[(0, &[0.0, 1.0], 1), (1, &[1.0, 1.0], 0)]);
        // min_healthy 0: a region without healthy endpoints still does not qualify
        let p = Policy {
            min_healthy: 0.0,
            failback_after: Duration::ZERO,
        };
        run(p, &[(0, &[0.0, 0.1], 1), (1, &[0.1, 0.1], 0)]);
        let mut s = State::default();
        assert_eq!(s.step(&[], Instant::now(), &p), None);
        assert_eq!(
            s.step_with(2, |i| [0.0, 1.0][i], Instant::now(), &p),
            Some(1)
        );
        assert_eq!(s.active(), Some(1));
    }

    #[test]
    fn a_third_region_takes_over_when_two_are_degraded() {
        run(
            policy(),
            &[
                (0, &[1.0, 1.0, 1.0], 0),
                (10, &[0.5, 0.6, 1.0], 2),
                (20, &[0.5, 1.0, 1.0], 2),
                (1020, &[0.5, 1.0, 1.0], 1),
                (1030, &[1.0, 1.0, 1.0], 1),
                (2030, &[1.0, 1.0, 1.0], 0),
            ],
        );
    }
}
