//! An endpoint: one `IP:PORT` of a service, with the live counters that the
//! balancer reads. Keyed by (service, address), so reloads can carry it over.
//!
//! Two judges decide whether the balancer may pick it: active health
//! checks set `healthy`; passive outlier ejection (`outlier`) takes it out
//! until a time. [`Endpoint::is_healthy`] is both together.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::outlier;

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Requests sent and not yet answered (least_request reads it).
    pub in_flight: AtomicUsize,
    /// Judged by active health checks only; true until they say otherwise.
    pub healthy: AtomicBool,
    /// Passive outlier state (see `outlier`); only `Region::report` takes it.
    pub outlier: Mutex<outlier::State>,
    /// End of the current ejection, mirrored from `outlier` for lock-free
    /// reads: nanoseconds after [`epoch`] plus one; 0 when not ejected.
    ejected_until: AtomicU64,
}

/// The instant ejection ends are counted from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        let _ = epoch();
        Endpoint {
            addr,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            outlier: Mutex::new(outlier::State::default()),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Whether the balancer may pick it now: passing its active checks and
    /// not ejected.
    pub fn is_healthy(&self) -> bool {
        if !self.checked_healthy() {
            return false;
        }
        // No clock read unless an ejection was recorded.
        self.ejected_until.load(Ordering::Relaxed) == 0 || !self.is_ejected(Instant::now())
    }

    /// [`Endpoint::is_healthy`] at a given instant.
    pub fn is_healthy_at(&self, now: Instant) -> bool {
        self.checked_healthy() && !self.is_ejected(now)
    }

    /// What the active health checks say, ejection aside.
    pub fn checked_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive outlier ejection has it out of rotation at `now`.
    pub fn is_ejected(&self, now: Instant) -> bool {
        match self.ejected_until.load(Ordering::Relaxed) {
            0 => false,
            n => now < epoch() + Duration::from_nanos(n - 1),
        }
    }

    /// How long from `now` until the balancer may pick it again: zero when
    /// it may now; else the rest of its ejection, and at least `recovery`
    /// (what its active checks need to bring it back) while they have it
    /// down. `None` when it is down by checks and `recovery` is unknown.
    /// For the `Retry-After` of a 503 only: never on the request path.
    pub fn back_in(&self, now: Instant, recovery: Option<Duration>) -> Option<Duration> {
        let ejected = match self.ejected_until.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            n => (epoch() + Duration::from_nanos(n - 1)).saturating_duration_since(now),
        };
        if self.checked_healthy() {
            Some(ejected)
        } else {
            recovery.map(|recovery| recovery.max(ejected))
        }
    }

    /// Whether an ejection (current or ended) is still mirrored.
    pub(crate) fn has_ejection_mark(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) != 0
    }

    /// Mirrors the outlier state's ejection (called with `outlier` held).
    pub(crate) fn set_ejected_until(&self, until: Option<Instant>) {
        let encoded = until.map_or(0, |until| {
            let nanos = until.saturating_duration_since(epoch()).as_nanos();
            u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
        });
        self.ejected_until.store(encoded, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_and_checks_both_gate_health() {
        let e = Endpoint::new("127.0.0.1:1".parse().unwrap());
        let now = Instant::now();
        assert!(e.is_healthy() && !e.is_ejected(now));
        e.set_ejected_until(Some(now + Duration::from_secs(60)));
        assert!(e.is_ejected(now));
        assert!(!e.is_healthy());
        assert!(!e.is_healthy_at(now));
        assert!(e.checked_healthy(), "the check flag stays apart");
        assert!(!e.is_ejected(now + Duration::from_secs(60)));
        assert!(e.is_healthy_at(now + Duration::from_secs(61)));
        e.set_ejected_until(None);
        e.healthy.store(false, Ordering::Relaxed);
        assert!(!e.is_healthy() && !e.is_ejected(now));
    }

    #[test]
    fn back_in_is_the_rest_of_the_ejection_or_the_checks_recovery() {
        let e = Endpoint::new("127.0.0.1:1".parse().unwrap());
        let now = Instant::now();
        let s = Duration::from_secs;
        let checks = Some(s(4));
        assert_eq!(e.back_in(now, checks), Some(Duration::ZERO), "healthy now");
        e.set_ejected_until(Some(now + s(30)));
        assert_eq!(e.back_in(now, checks), Some(s(30)));
        assert_eq!(e.back_in(now + s(10), None), Some(s(20)));
        assert_eq!(e.back_in(now + s(31), None), Some(Duration::ZERO), "ended");
        // Down by checks too: whichever takes longer.
        e.healthy.store(false, Ordering::Relaxed);
        assert_eq!(e.back_in(now, checks), Some(s(30)));
        assert_eq!(e.back_in(now + s(28), checks), Some(s(4)));
        e.set_ejected_until(None);
        assert_eq!(e.back_in(now, checks), Some(s(4)));
        assert_eq!(e.back_in(now, None), None, "no checks to bring it back");
    }
}
