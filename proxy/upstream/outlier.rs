//! Passive outlier ejection: the outcomes of real requests take a failing
//! endpoint out of rotation before active checks would notice.
//!
//! Pure state per endpoint ([`State`]), driven with `now` by the attempt
//! loop through [`super::Region::report`]:
//!
//! - A failure is a connect error, a timeout, a request that failed on a
//!   fresh connection, or a 502/503/504 answered by the upstream. Any other
//!   response (whatever its status) is a success and clears the streak.
//! - `consecutive_failures` failures in a row eject the endpoint until
//!   `now + eject_for × 2^(ejections − 1)`, capped at 10 × `eject_for`.
//!   The count of ejections starts over once an endpoint has stayed in
//!   rotation for 10 × `eject_for` since its last ejection ended.
//! - Ejection ends by time. The endpoint then comes back on probation: its
//!   first failure ejects it again (for longer); its first success ends the
//!   probation. A dead endpoint thus costs one failed attempt per ejection
//!   period, not `consecutive_failures` of them.
//! - Outcomes that arrive while the endpoint is ejected (requests that were
//!   already in flight) are ignored.
//! - At most [`cap`] endpoints of a region are ejected at once: the
//!   fraction `max_ejected` of its endpoints, rounded down, but at least one
//!   when `max_ejected > 0` and the region has two endpoints or more (as
//!   Envoy does); `max_ejected = 0` disables ejection. A lone endpoint is
//!   ejected only when `max_ejected = 1`. An ejection refused by the cap is
//!   asked again at the next failure.

use std::time::{Duration, Instant};

use crate::config::schema;

/// Repeated ejections grow up to this multiple of `eject_for`.
pub const MAX_MULTIPLE: u32 = 10;

/// The `outlier = {...}` settings of a service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub consecutive_failures: u32,
    pub eject_for: Duration,
    pub max_ejected: f64,
}

impl From<&schema::Outlier> for Policy {
    fn from(o: &schema::Outlier) -> Policy {
        Policy {
            consecutive_failures: o.consecutive_failures.max(1),
            eject_for: o.eject_for.0,
            max_ejected: o.max_ejected.clamp(0.0, 1.0),
        }
    }
}

impl Policy {
    /// How long the `ejections`-th ejection in a row lasts.
    pub fn duration(&self, ejections: u32) -> Duration {
        let doubling = 1u32 << ejections.saturating_sub(1).min(16);
        self.eject_for
            .saturating_mul(doubling.min(MAX_MULTIPLE))
            .min(self.eject_for.saturating_mul(MAX_MULTIPLE))
    }
}

/// The most endpoints of a region of `total` that may be ejected at once.
pub fn cap(total: usize, max_ejected: f64) -> usize {
    if max_ejected <= 0.0 || total == 0 {
        return 0;
    }
    let share = (max_ejected.min(1.0) * total as f64).floor() as usize;
    if total >= 2 { share.max(1) } else { share }
}

/// The outlier state of one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    failures: u32,
    /// Ejections in a row (see the module doc for when it starts over).
    ejections: u32,
    /// End of the last ejection.
    until: Option<Instant>,
    probation: bool,
}

impl State {
    pub fn is_ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    pub fn ejected_until(&self) -> Option<Instant> {
        self.until
    }

    /// Records one attempt's outcome; true when the endpoint should now be
    /// ejected (the caller checks the region's [`cap`], then calls
    /// [`State::eject`]).
    pub fn record(&mut self, ok: bool, now: Instant, policy: &Policy) -> bool {
        if self.is_ejected(now) {
            return false;
        }
        if ok {
            self.failures = 0;
            self.probation = false;
            return false;
        }
        self.failures = self.failures.saturating_add(1);
        self.probation || self.failures >= policy.consecutive_failures.max(1)
    }

    /// Ejects the endpoint; returns when the ejection ends.
    pub fn eject(&mut self, now: Instant, policy: &Policy) -> Instant {
        let rested = self.until.is_some_and(|until| {
            now.saturating_duration_since(until) >= policy.eject_for.saturating_mul(MAX_MULTIPLE)
        });
        self.ejections = if rested {
            1
        } else {
            self.ejections.saturating_add(1)
        };
        let until = now + policy.duration(self.ejections);
        self.until = Some(until);
        self.failures = 0;
        self.probation = true;
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            consecutive_failures: 3,
            eject_for: Duration::from_secs(10),
            max_ejected: 0.5,
        }
    }

    #[test]
    fn durations_double_up_to_ten_times() {
        let p = policy();
        let got: Vec<u64> = (1..=7).map(|n| p.duration(n).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 80, 100, 100, 100]);
        assert_eq!(p.duration(0).as_secs(), 10);
        assert_eq!(p.duration(u32::MAX).as_secs(), 100);
    }

    #[test]
    fn caps() {
        // (total, max_ejected, cap)
        let table = [
            (0, 0.5, 0),
            (1, 0.5, 0),
            (1, 1.0, 1),
            (2, 0.5, 1),
            (2, 0.1, 1),
            (2, 0.0, 0),
            (3, 0.5, 1),
            (4, 0.5, 2),
            (10, 0.1, 1),
            (10, 0.35, 3),
            (10, 1.0, 10),
            (5, 2.0, 5),
        ];
        for (total, max, want) in table {
            assert_eq!(cap(total, max), want, "cap({total}, {max})");
        }
    }

    /// Steps: (seconds since start, outcome) → (wants ejection, ejected after).
    #[test]
    fn ejection_table() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = State::default();
        let steps: &[(u64, bool, bool, bool)] = &[
            // two failures then a success: the streak starts over
            (0, false, false, false),
            (0, false, false, false),
            (0, true, false, false),
            (1, false, false, false),
            (1, false, false, false),
            // third in a row: ejected for 10 s (until t=12)
            (2, false, true, true),
            // outcomes while ejected are ignored
            (3, false, false, true),
            (3, true, false, true),
            // back at t=12 on probation: one failure ejects for 20 s (until 32)
            (12, false, true, true),
            (31, true, false, true),
            // back at 32, a success ends the probation
            (32, true, false, false),
            (33, false, false, false),
            (33, false, false, false),
            // third failure: third ejection in a row, 40 s (until 73)
            (33, false, true, true),
            (72, false, false, true),
            // back at 73; a long healthy run (≥ 100 s) resets the count
            (73, true, false, false),
            (300, false, false, false),
            (300, false, false, false),
            (300, false, true, true),
        ];
        for (i, &(at, ok, wants, ejected)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(at);
            let want = s.record(ok, now, &p);
            assert_eq!(want, wants, "step {i}: wants ejection");
            if want {
                s.eject(now, &p);
            }
            assert_eq!(s.is_ejected(now), ejected, "step {i}: ejected");
        }
        // The count started over: the last ejection lasts 10 s.
        assert_eq!(s.ejected_until(), Some(t0 + Duration::from_secs(310)));
    }

    #[test]
    fn repeat_ejections_grow_and_cap() {
        let p = policy();
        let t0 = Instant::now();
        let mut s = State::default();
        let mut now = t0;
        for _ in 0..2 {
            assert!(!s.record(false, now, &p));
        }
        assert!(s.record(false, now, &p));
        let mut lengths = Vec::new();
        for _ in 0..7 {
            let until = s.eject(now, &p);
            lengths.push((until - now).as_secs());
            now = until;
            assert!(s.record(false, now, &p), "probation: one failure ejects");
        }
        assert_eq!(lengths, [10, 20, 40, 80, 100, 100, 100]);
    }

    #[test]
    fn refused_ejection_is_asked_again() {
        let p = policy();
        let now = Instant::now();
        let mut s = State::default();
        assert!(!s.record(false, now, &p));
        assert!(!s.record(false, now, &p));
        assert!(s.record(false, now, &p));
        // the cap refused: not ejected, the next failure asks again
        assert!(!s.is_ejected(now));
        assert!(s.record(false, now, &p));
        // a success clears it
        assert!(!s.record(true, now, &p));
        assert!(!s.record(false, now, &p));
    }

    /// The hook over real endpoints: a region of four with
    /// `max_ejected = 0.5` never has more than two out at once.
    #[test]
    fn region_report_respects_the_cap() {
        use crate::upstream::Region;
        let addrs: Vec<String> = (1..=4).map(|p| format!("127.0.0.1:{p}")).collect();
        let region = Region::new("r", addrs, Default::default());
        let p = Policy {
            consecutive_failures: 2,
            eject_for: Duration::from_secs(10),
            max_ejected: 0.5,
        };
        let now = Instant::now();
        let endpoints = region.endpoints.load_full();
        for e in endpoints.iter() {
            assert_eq!(region.report(e, false, &p, now), None);
        }
        let ejected: Vec<Option<Duration>> = endpoints
            .iter()
            .map(|e| region.report(e, false, &p, now))
            .collect();
        assert_eq!(
            ejected,
            [
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(10)),
                None,
                None
            ]
        );
        assert_eq!(region.healthy(), 2);
        assert_eq!(region.healthy_fraction(now), 0.5);
        assert!(endpoints[0].is_ejected(now) && !endpoints[2].is_ejected(now));
        // When the first two come back, the refused ones are ejected at
        // their next failure.
        let later = now + Duration::from_secs(10);
        assert_eq!(region.healthy_fraction(later), 1.0);
        assert!(region.report(&endpoints[2], false, &p, later).is_some());
        assert!(region.report(&endpoints[3], false, &p, later).is_some());
        // Back on probation, the first two are refused by the cap now.
        assert_eq!(region.report(&endpoints[0], false, &p, later), None);
        assert!(!endpoints[0].is_ejected(later));
        // A success on an endpoint whose ejection ended clears its mark.
        assert!(region.report(&endpoints[0], true, &p, later).is_none());
        assert!(!endpoints[0].has_ejection_mark());
    }
}
