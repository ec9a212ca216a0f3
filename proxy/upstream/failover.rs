//! Regional failover: how a service's traffic is shared between its
//! regions, in priority order (Envoy's priority levels with an
//! overprovisioning factor of `1 / min_healthy`).
//!
//! Pure state ([`State`]) stepped with `now` and every region's healthy
//! fraction `f` (healthy endpoints / endpoints; 0 without endpoints):
//!
//! - A region's *capacity* is `min(1, f / min_healthy)`: a region at or
//!   above `min_healthy` can take all the traffic, one below it only that
//!   share (with `min_healthy = 0.7`, a region at half health takes 71%).
//! - Shares are handed out in priority order: the first region takes what
//!   its capacity allows, the shortfall spills to the next, and so on.
//!   What no region can take is spread over them in proportion to their
//!   shares; with no healthy endpoint anywhere the first region gets it all
//!   (and answers 503).
//! - Failback: a region that fell below `min_healthy` keeps the capacity it
//!   had at its worst until it has stayed at or above `min_healthy` for
//!   `failback_after`, so a recovering primary takes back its traffic only
//!   then. Meanwhile it still takes what the other regions cannot.
//!
//! The state is stepped lazily, whenever a region is chosen (every
//! request, `/status`, metrics): "stayed" means every step since the region
//! was first seen qualifying found it qualifying.
//!
//! Without a `failover` section a service uses `min_healthy = 0.7` and
//! fails back at once (`failback_after = 0`).
//!
//! When no region has an endpoint to pick, the 503 says in `Retry-After`
//! when one can be expected back ([`retry_after`]).

use std::time::{Duration, Instant};

use super::{Region, Service, health};
use crate::config::schema;

/// `Retry-After` seconds when nothing says when an endpoint comes back (no
/// endpoints, or endpoints down by checks the service no longer runs).
pub const RETRY_AFTER_UNKNOWN: u64 = 5;

/// The longest `Retry-After` given, however far off the return is.
pub const MAX_RETRY_AFTER: u64 = 60;

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
#[derive(Debug, Default, Clone)]
pub struct State {
    regions: Vec<RegionState>,
    /// The share of the traffic of each region after the last step.
    shares: Vec<f64>,
    /// Reused buffer of fractions (see [`State::step_with`]).
    scratch: Vec<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RegionState {
    /// Since when it has qualified, as far as steps saw.
    good_since: Option<Instant>,
    /// While it recovers: the capacity it had at its worst.
    capped: Option<f64>,
}

impl State {
    /// Each region's share of the traffic after the last step (summing to
    /// 1, or empty when there are no regions).
    pub fn shares(&self) -> &[f64] {
        &self.shares
    }

    /// The first region with a share: the one `/status` calls active.
    pub fn active(&self) -> Option<usize> {
        self.shares.iter().position(|&s| s > 0.0)
    }

    /// Steps with the fraction of region `i` given by `fraction(i)`, for
    /// `regions` regions, without allocating after the first call.
    pub fn step_with(
        &mut self,
        regions: usize,
        fraction: impl Fn(usize) -> f64,
        now: Instant,
        policy: &Policy,
    ) -> &[f64] {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend((0..regions).map(fraction));
        self.step(&scratch, now, policy);
        self.scratch = scratch;
        &self.shares
    }

    /// Steps with every region's healthy fraction; returns the shares.
    pub fn step(&mut self, fractions: &[f64], now: Instant, policy: &Policy) -> &[f64] {
        let m = policy.min_healthy;
        let capacity = |f: f64| {
            if f <= 0.0 {
                0.0
            } else if m <= 0.0 {
                1.0
            } else {
                (f / m).min(1.0)
            }
        };
        self.regions.resize(fractions.len(), RegionState::default());
        self.shares.clear();
        self.shares.resize(fractions.len(), 0.0);
        let mut left = 1.0;
        // First pass: each region up to its (possibly capped) capacity.
        for (i, (state, &f)) in self.regions.iter_mut().zip(fractions).enumerate() {
            let live = capacity(f);
            if f > 0.0 && f >= m {
                let since = *state.good_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= policy.failback_after {
                    state.capped = None;
                }
            } else {
                state.good_since = None;
                state.capped = Some(live);
            }
            let cap = state.capped.map_or(live, |c| c.min(live));
            let share = cap.min(left);
            self.shares[i] = share;
            left -= share;
        }
        // Second pass: recovering regions take what the others could not.
        for (share, &f) in self.shares.iter_mut().zip(fractions) {
            let more = (capacity(f) - *share).clamp(0.0, left);
            *share += more;
            left -= more;
        }
        let total: f64 = self.shares.iter().sum();
        if total > 0.0 {
            for share in &mut self.shares {
                *share /= total;
            }
        } else if let Some(first) = self.shares.first_mut() {
            *first = 1.0;
        }
        &self.shares
    }
}

/// Picks a region by `shares` for the `n`th request: a golden-ratio
/// sequence spreads consecutive requests evenly, so a 71/29 share is
/// 71/29 over any hundred requests, not only on average.
pub fn pick(shares: &[f64], n: u64) -> Option<usize> {
    const GOLDEN: f64 = 0.618_033_988_749_894_9;
    let u = (n as f64 * GOLDEN).fract();
    let mut acc = 0.0;
    let mut last = None;
    for (i, &share) in shares.iter().enumerate() {
        if share <= 0.0 {
            continue;
        }
        acc += share;
        last = Some(i);
        if u < acc {
            return Some(i);
        }
    }
    last
}

/// `Retry-After` seconds for a 503 of `services` (the route's weighted
/// backends, or the one service a request went to) having no endpoint to
/// pick at `now`: until the soonest of their endpoints can be picked again,
/// rounded up, from 1 to [`MAX_RETRY_AFTER`]; [`RETRY_AFTER_UNKNOWN`] when
/// none can be foreseen. Reads every endpoint: only for the 503.
pub fn retry_after<'a>(services: impl IntoIterator<Item = &'a Service>, now: Instant) -> u64 {
    let soonest = services
        .into_iter()
        .filter_map(|service| {
            let recovery = service.health.as_ref().map(health::recovery);
            back_in(&service.regions, recovery, now)
        })
        .min();
    soonest.map_or(RETRY_AFTER_UNKNOWN, whole_seconds)
}

/// How long until the soonest endpoint of `regions` can be picked again
/// (see [`super::Endpoint::back_in`]; `recovery` is what active checks
/// need to bring one back, when the service has them).
pub fn back_in(regions: &[Region], recovery: Option<Duration>, now: Instant) -> Option<Duration> {
    regions
        .iter()
        .filter_map(|region| {
            let endpoints = region.endpoints.load();
            endpoints
                .iter()
                .filter_map(|e| e.back_in(now, recovery))
                .min()
        })
        .min()
}

/// `wait` in whole seconds for `Retry-After`: rounded up, never 0, at most
/// [`MAX_RETRY_AFTER`].
pub fn whole_seconds(wait: Duration) -> u64 {
    let up = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    up.clamp(1, MAX_RETRY_AFTER)
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

    /// Runs (ms since start, fractions, expected shares in percent) in order.
    fn run(policy: Policy, steps: &[(u64, &[f64], &[u32])]) {
        let t0 = Instant::now();
        let mut s = State::default();
        for (i, &(at, fractions, want)) in steps.iter().enumerate() {
            let got: Vec<u32> = s
                .step(fractions, t0 + Duration::from_millis(at), &policy)
                .iter()
                .map(|share| (share * 100.0).round() as u32)
                .collect();
            assert_eq!(got, want, "step {i} at {at} ms with {fractions:?}");
        }
    }

    #[test]
    fn primary_keeps_traffic_while_at_least_min_healthy() {
        run(
            policy(),
            &[
                (0, &[1.0, 1.0], &[100, 0]),
                (10, &[0.75, 1.0], &[100, 0]),
                (20, &[0.7, 1.0], &[100, 0]),
            ],
        );
    }

    #[test]
    fn below_min_healthy_the_shortfall_spills_to_the_next_region() {
        run(
            policy(),
            &[
                // 0.5 / 0.7: the primary keeps 71%, the rest spills.
                (0, &[0.5, 1.0], &[71, 29]),
                (10, &[0.25, 1.0], &[36, 64]),
                (20, &[0.0, 1.0], &[0, 100]),
                // Two degraded regions: the third takes what is left.
                (30, &[0.35, 0.35, 1.0], &[50, 50, 0]),
                (40, &[0.35, 0.14, 1.0], &[50, 20, 30]),
            ],
        );
    }

    #[test]
    fn failback_waits_for_failback_after_of_continuous_health() {
        run(
            policy(),
            &[
                (0, &[0.0, 1.0], &[0, 100]),
                // primary good from 100 ms: still capped at its worst
                (100, &[1.0, 1.0], &[0, 100]),
                (600, &[1.0, 1.0], &[0, 100]),
                // flaps at 700 to half health: spills as degraded, and the
                // clock starts over at 800
                (700, &[0.35, 1.0], &[50, 50]),
                (800, &[0.75, 1.0], &[50, 50]),
                (1799, &[1.0, 1.0], &[50, 50]),
                (1800, &[1.0, 1.0], &[100, 0]),
                (5000, &[1.0, 0.0], &[100, 0]),
            ],
        );
    }

    #[test]
    fn a_recovering_region_takes_what_the_others_cannot() {
        run(
            policy(),
            &[
                (0, &[0.0, 1.0], &[0, 100]),
                (100, &[1.0, 1.0], &[0, 100]),
                // the secondary degrades before the failback timer ran out
                (200, &[1.0, 0.35], &[50, 50]),
                (300, &[1.0, 0.0], &[100, 0]),
            ],
        );
    }

    #[test]
    fn nothing_healthy_anywhere_goes_to_the_first_region() {
        run(policy(), &[(0, &[0.0, 0.0], &[100, 0])]);
        // All degraded: the shares scale up to the whole.
        run(policy(), &[(0, &[0.14, 0.14, 0.0], &[50, 50, 0])]);
    }

    #[test]
    fn zero_failback_and_min_healthy_and_empty_regions() {
        let p = Policy::default();
        run(
            p,
            &[(0, &[0.0, 1.0], &[0, 100]), (1, &[1.0, 1.0], &[100, 0])],
        );
        // min_healthy 0: any healthy endpoint makes a region whole.
        let p = Policy {
            min_healthy: 0.0,
            failback_after: Duration::ZERO,
        };
        run(
            p,
            &[(0, &[0.0, 0.1], &[0, 100]), (1, &[0.1, 0.1], &[100, 0])],
        );
        let mut s = State::default();
        assert!(s.step(&[], Instant::now(), &p).is_empty());
        assert_eq!(s.active(), None);
        s.step_with(2, |i| [0.0, 1.0][i], Instant::now(), &p);
        assert_eq!(s.active(), Some(1));
    }

    #[test]
    fn pick_follows_the_shares_evenly() {
        let shares = [0.71, 0.29, 0.0];
        let mut counts = [0; 3];
        for n in 0..100 {
            counts[pick(&shares, n).unwrap()] += 1;
        }
        assert!((70..=72).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[2], 0);
        assert_eq!(pick(&[0.0, 1.0], 7), Some(1));
        assert_eq!(pick(&[], 7), None);
        // Any run of ten requests already splits close to the shares.
        let first: usize = (0..10).filter(|&n| pick(&shares, n) == Some(1)).count();
        assert!((2..=4).contains(&first), "{first}");
    }

    #[test]
    fn whole_seconds_round_up_within_bounds() {
        let ms = Duration::from_millis;
        let table = [
            (0, 1),
            (1, 1),
            (999, 1),
            (1000, 1),
            (1001, 2),
            (29_400, 30),
            (30_000, 30),
            (60_000, 60),
            (60_001, 60),
            (300_000, 60),
        ];
        for (wait, want) in table {
            assert_eq!(whole_seconds(ms(wait)), want, "{wait} ms");
        }
        assert_eq!(whole_seconds(Duration::MAX), MAX_RETRY_AFTER);
    }

    /// Over real endpoints: the soonest return among every region wins; an
    /// endpoint down by checks counts only when checks will bring it back.
    #[test]
    fn back_in_is_the_soonest_return_in_any_region() {
        use std::sync::atomic::Ordering;
        let region = |name: &str, ports: &[u16]| {
            let addrs = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            Region::new(name, addrs, Default::default())
        };
        let regions = [region("a", &[1, 2]), region("b", &[3])];
        let endpoints: Vec<_> = regions
            .iter()
            .flat_map(|r| r.endpoints.load_full().to_vec())
            .collect();
        let now = Instant::now();
        let s = Duration::from_secs;
        for (e, secs) in endpoints.iter().zip([40, 25, 90]) {
            e.set_ejected_until(Some(now + s(secs)));
        }
        assert_eq!(back_in(&regions, None, now), Some(s(25)));
        assert_eq!(back_in(&regions, None, now + s(10)), Some(s(15)));
        // The soonest one is down by checks as well: 40 s for the next.
        endpoints[1].healthy.store(false, Ordering::Relaxed);
        assert_eq!(back_in(&regions, None, now), Some(s(40)));
        assert_eq!(back_in(&regions, Some(s(30)), now), Some(s(30)));
        // All down by checks, none ejected.
        for e in &endpoints {
            e.set_ejected_until(None);
            e.healthy.store(false, Ordering::Relaxed);
        }
        assert_eq!(back_in(&regions, Some(s(3)), now), Some(s(3)));
        assert_eq!(back_in(&regions, None, now), None);
        // No endpoints at all: nothing to foresee.
        assert_eq!(back_in(&[region("empty", &[])], Some(s(3)), now), None);
    }
}
