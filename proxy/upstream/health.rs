//! Active health checks: a task per service asks every endpoint for the
//! configured path at each interval (with jitter), and a pure threshold
//! counter turns the answers into the endpoint's health flag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::exchange::Outgoing;
use super::pool::Attempt;

use super::Service;
use crate::config::schema::Health;
use crate::http::body;

/// Consecutive results needed to change state.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub healthy: u32,
    pub unhealthy: u32,
}

/// The threshold machine of one endpoint: `unhealthy` failures in a row
/// make it unhealthy, `healthy` successes in a row make it healthy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub healthy: bool,
    streak: u32,
}

impl Default for Counter {
    /// A new endpoint starts healthy (SPEC: checks then judge it).
    fn default() -> Self {
        Counter {
            healthy: true,
            streak: 0,
        }
    }
}

impl Counter {
    /// A counter for an endpoint already known to be `healthy` (or not).
    pub fn starting(healthy: bool) -> Counter {
        Counter { healthy, streak: 0 }
    }

    /// Records one check; returns the new state when it changed.
    pub fn record(&mut self, ok: bool, t: Thresholds) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { t.healthy } else { t.unhealthy };
        if self.streak >= needed.max(1) {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

/// About how long the checks of `check` take to bring a down endpoint
/// back: `healthy` passes in a row, one per `interval` (jitter aside).
pub fn recovery(check: &Health) -> Duration {
    check.interval.0.saturating_mul(check.healthy.max(1))
}

/// Checks every endpoint of `service` until `stop` turns true.
pub async fn watch(
    service: Arc<Service>,
    check: Health,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let thresholds = Thresholds {
        healthy: check.healthy,
        unhealthy: check.unhealthy,
    };
    let mut counters: HashMap<SocketAddr, Counter> = HashMap::new();
    loop {
        let round = check_round(&service, &check, thresholds, &mut counters);
        tokio::select! {
            () = round => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // Up to 10% jitter keeps many weirs (or services) from checking in step.
        let jitter = check.interval.0.mul_f64(fastrand::f64() * 0.1);
        tokio::select! {
            () = tokio::time::sleep(check.interval.0 + jitter) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn check_round(
    service: &Service,
    check: &Health,
    thresholds: Thresholds,
    counters: &mut HashMap<SocketAddr, Counter>,
) {
    let mut probes = Vec::new();
    for region in &service.regions {
        for endpoint in region.endpoints.load().iter() {
            probes.push((endpoint.clone(), probe(service, endpoint.addr, check)));
        }
    }
    let addrs: Vec<SocketAddr> = probes.iter().map(|(e, _)| e.addr).collect();
    counters.retain(|addr, _| addrs.contains(addr));
    let (endpoints, futures): (Vec<_>, Vec<_>) = probes.into_iter().unzip();
    let results = join_all(futures).await;
    for (endpoint, ok) in endpoints.into_iter().zip(results) {
        // A new task (after a reload) starts from what the endpoint is.
        let counter = counters
            .entry(endpoint.addr)
            .or_insert_with(|| Counter::starting(endpoint.healthy.load(Ordering::Relaxed)));
        if let Some(now) = counter.record(ok, thresholds) {
            endpoint.healthy.store(now, Ordering::Relaxed);
            tracing::info!(
                service = %service.name,
                endpoint = %endpoint.addr,
                healthy = now,
                "endpoint health changed"
            );
        }
    }
}

/// One check: a 2xx or 3xx answer within the timeout.
async fn probe(service: &Service, addr: SocketAddr, check: &Health) -> bool {
    let Ok(target) = http::uri::PathAndQuery::try_from(check.path.as_str()) else {
        return false;
    };
    let mut headers = http::HeaderMap::with_capacity(2);
    if let Ok(host) = http::HeaderValue::from_str(&addr.to_string()) {
        headers.insert(http::header::HOST, host);
    }
    headers.insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static("weir-health-check"),
    );
    let request = Outgoing {
        method: &http::Method::GET,
        target: target.as_str(),
        headers: &headers,
        added: &[],
    };
    let version = http::Version::HTTP_11;
    let to = Attempt {
        addr,
        reuse: true,
        deadline: tokio::time::Instant::now() + check.timeout.0,
    };
    let sent = service
        .pool
        .send(service.scheme, to, request, version, body::empty());
    match sent.await {
        (Ok((response, _)), _) => {
            let ok = response.status().is_success() || response.status().is_redirection();
            // Drain so the pooled connection can be reused.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                http_body_util::BodyExt::collect(response.into_body()),
            )
            .await;
            ok
        }
        _ => false,
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn join_all<F: std::future::Future<Output = bool>>(futures: Vec<F>) -> Vec<bool> {
    let mut results = vec![false; futures.len()];
    // The futures borrow the service: poll them here instead of spawning.
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done = vec![false; pinned.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, fut) in pinned.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            match fut.as_mut().poll(cx) {
                std::task::Poll::Ready(ok) => {
                    results[i] = ok;
                    done[i] = true;
                }
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
    };

    #[test]
    fn thresholds_turn_health_on_and_off() {
        let mut c = Counter::default();
        assert!(c.healthy);
        assert_eq!(c.record(false, T), None);
        assert_eq!(c.record(false, T), None);
        assert_eq!(
            c.record(true, T),
            None,
            "a success resets the failure streak"
        );
        assert_eq!(c.record(false, T), None);
        assert_eq!(c.record(false, T), None);
        assert_eq!(c.record(false, T), Some(false));
        assert!(!c.healthy);
        assert_eq!(c.record(true, T), None);
        assert_eq!(c.record(false, T), None);
        assert_eq!(c.record(true, T), None);
        assert_eq!(c.record(true, T), Some(true));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let t = Thresholds {
            healthy: 0,
            unhealthy: 0,
        };
        let mut c = Counter::default();
        assert_eq!(c.record(false, t), Some(false));
        assert_eq!(c.record(true, t), Some(true));
    }

    #[test]
    fn recovery_is_healthy_intervals() {
        use crate::config::units::Duration as Every;
        let check = |interval_ms: u64, healthy: u32| Health {
            path: "/health".into(),
            interval: Every(Duration::from_millis(interval_ms)),
            timeout: Every(Duration::from_secs(1)),
            healthy,
            unhealthy: 3,
        };
        assert_eq!(recovery(&check(2000, 2)), Duration::from_secs(4));
        assert_eq!(recovery(&check(200, 10)), Duration::from_secs(2));
        // A threshold of 0 acts as 1, as in `Counter::record`.
        assert_eq!(recovery(&check(500, 0)), Duration::from_millis(500));
    }
}
