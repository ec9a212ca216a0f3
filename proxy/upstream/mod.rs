//! Upstream services: which endpoint, and the call.
//!
//! - `endpoint`: one address with its live counters.
//! - `select`: the load-balancing policy inside a region.
//! - `dns`: names in endpoints, re-resolved at their TTL.
//! - `client`: the pooled HTTP client of a service.
//! - `pool`: keep-alive HTTP/1.1 connections to plain-TCP endpoints.
//! - `forward`: hop-by-hop and forwarding headers.
//! - `retry`: which failures may be retried, within a budget.
//! - `outlier`: passive ejection of endpoints that keep failing.
//! - `failover`: how the traffic is shared between regions (`min_healthy`,
//!   spillover, failback).
//! - `proxy`: one request through attempts to a response (or a refusal).
//! - `tunnel`: upgraded connections (WebSocket) copied both ways.

pub mod client;
pub mod dns;
pub mod endpoint;
pub mod exchange;
pub mod failover;
pub mod forward;
pub mod health;
pub mod outlier;
pub mod pool;
pub mod proxy;
pub mod retry;
pub mod select;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::schema::{LoadBalance, Protocol};
use crate::telemetry::metrics::Attempts;
pub use endpoint::Endpoint;

/// A compiled upstream service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    /// In priority order; `endpoints = [...]` is one region named "default".
    pub regions: Vec<Region>,
    pub protocol: Protocol,
    pub load_balance: LoadBalance,
    pub pool: client::Pool,
    /// Active health checks, when configured.
    pub health: Option<crate::config::schema::Health>,
    /// `https` for TLS services, else `http`.
    pub scheme: &'static str,
    pub budget: retry::Budget,
    /// Passive outlier ejection, when `outlier` is configured.
    pub outlier: Option<outlier::Policy>,
    /// `failover` settings (defaults when absent, see `failover`).
    pub failover: failover::Policy,
    /// Which region is active; stepped by `active_region_at`, never held
    /// across an await.
    pub failover_state: Mutex<failover::State>,
    /// Requests that drew a region so far (see `failover::pick`).
    pub region_draws: AtomicU64,
}

#[derive(Debug)]
pub struct Region {
    pub name: Arc<str>,
    /// `IP:PORT` or `NAME:PORT` as configured.
    pub configured: Vec<String>,
    /// The addresses those resolve to right now.
    pub endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    pub cursor: select::Cursor,
    pub attempts: Attempts,
    /// Configured endpoints that name a host, kept resolved by `dns::watch`.
    pub names: Vec<Arc<dns::Name>>,
    /// Serializes ejection decisions, so the `max_ejected` cap holds.
    pub eject_lock: Mutex<()>,
}

impl Region {
    /// A region whose configured endpoints are all `IP:PORT` is ready at
    /// once; names join when DNS answers.
    pub fn new(name: &str, configured: Vec<String>, attempts: Attempts) -> Region {
        let literal: Vec<Arc<Endpoint>> = configured
            .iter()
            .filter_map(|e| e.parse::<SocketAddr>().ok())
            .map(|addr| Arc::new(Endpoint::new(addr)))
            .collect();
        let names = configured
            .iter()
            .filter_map(|e| dns::Name::parse(e))
            .map(Arc::new)
            .collect();
        Region {
            name: name.into(),
            configured,
            endpoints: ArcSwap::from_pointee(literal),
            cursor: select::Cursor::default(),
            attempts,
            names,
            eject_lock: Mutex::new(()),
        }
    }

    /// A region like [`Region::new`], taking over what `previous` (the same
    /// region of the snapshot being replaced) knows: the DNS state of the
    /// names it shares and the `Endpoint` (health, outlier, in-flight) of
    /// every address it still has.
    pub fn carried(
        name: &str,
        configured: Vec<String>,
        attempts: Attempts,
        previous: Option<&Region>,
    ) -> Region {
        let mut region = Region::new(name, configured, attempts);
        let Some(previous) = previous else {
            return region;
        };
        for name in &mut region.names {
            if let Some(kept) = previous
                .names
                .iter()
                .find(|p| p.host == name.host && p.port == name.port)
            {
                *name = kept.clone();
            }
        }
        region.endpoints.store(previous.endpoints.load_full());
        region.refresh_endpoints();
        region
    }

    /// Rebuilds the endpoint set from the literal addresses and what every
    /// name resolves to now. An address that stays keeps its `Endpoint`
    /// (and so its counters and health); one that leaves is dropped from
    /// the set, while requests already holding it finish.
    pub fn refresh_endpoints(&self) {
        let current = self.endpoints.load();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        let literal = self
            .configured
            .iter()
            .filter_map(|e| e.parse::<SocketAddr>().ok());
        let resolved = self.names.iter().flat_map(|n| n.addrs());
        for addr in literal.chain(resolved) {
            if next.iter().any(|e| e.addr == addr) {
                continue;
            }
            let kept = current.iter().find(|e| e.addr == addr).cloned();
            next.push(kept.unwrap_or_else(|| Arc::new(Endpoint::new(addr))));
        }
        self.endpoints.store(Arc::new(next));
    }
}

impl Service {
    /// Whether any region has an endpoint that is not known to be down.
    pub fn available(&self) -> bool {
        self.regions.iter().any(|r| r.healthy() > 0)
    }

    /// The first region taking traffic now (see `failover`); `None` only
    /// when the service has no region.
    pub fn active_region(&self) -> Option<&Region> {
        let index = self.with_shares(Instant::now(), failover::State::active);
        self.regions.get(index?)
    }

    /// Each region's share of the traffic now, in priority order.
    pub fn shares(&self) -> Vec<f64> {
        self.with_shares(Instant::now(), |state| state.shares().to_vec())
    }

    /// The region for the next request, drawn by the regions' shares.
    pub fn pick_region(&self) -> Option<&Region> {
        // One region takes everything, healthy or not: no state to step.
        if self.regions.len() == 1 {
            return self.regions.first();
        }
        let n = self.region_draws.fetch_add(1, Ordering::Relaxed);
        let index = self.with_shares(Instant::now(), |state| failover::pick(state.shares(), n));
        self.regions.get(index?)
    }

    /// Steps the failover state with every region's healthy fraction at
    /// `now` and reads it with `read`, holding the lock only for that.
    fn with_shares<T>(&self, now: Instant, read: impl FnOnce(&failover::State) -> T) -> T {
        let mut state = self
            .failover_state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        state.step_with(
            self.regions.len(),
            |i| self.regions[i].healthy_fraction(now),
            now,
            &self.failover,
        );
        read(&state)
    }

    /// Reports one attempt's outcome on `endpoint` of `region` to passive
    /// outlier ejection (a no-op without `outlier`).
    pub fn report(&self, region: &Region, endpoint: &Endpoint, ok: bool) {
        let Some(policy) = &self.outlier else {
            return;
        };
        if let Some(until) = region.report(endpoint, ok, policy, Instant::now()) {
            tracing::warn!(
                service = %self.name,
                region = %region.name,
                endpoint = %endpoint.addr,
                for_ms = until.as_millis() as u64,
                "endpoint ejected after consecutive failures"
            );
        }
    }
}

impl Region {
    /// Endpoints the balancer may pick now (passing checks, not ejected).
    pub fn healthy(&self) -> usize {
        self.endpoints
            .load()
            .iter()
            .filter(|e| e.is_healthy())
            .count()
    }

    /// Healthy endpoints / endpoints at `now`; 0 without endpoints.
    pub fn healthy_fraction(&self, now: Instant) -> f64 {
        let endpoints = self.endpoints.load();
        if endpoints.is_empty() {
            return 0.0;
        }
        let healthy = endpoints.iter().filter(|e| e.is_healthy_at(now)).count();
        healthy as f64 / endpoints.len() as f64
    }

    /// Feeds one outcome to `endpoint`'s outlier state and ejects it when
    /// its failures call for it and the region's `max_ejected` cap allows;
    /// returns the ejection's length when it did.
    pub fn report(
        &self,
        endpoint: &Endpoint,
        ok: bool,
        policy: &outlier::Policy,
        now: Instant,
    ) -> Option<Duration> {
        let mut state = endpoint.outlier.lock().unwrap_or_else(|e| e.into_inner());
        let wants = state.record(ok, now, policy);
        if !wants {
            // An ejection that ended: drop its mark, so picks skip the clock.
            if !state.is_ejected(now) && endpoint.has_ejection_mark() {
                endpoint.set_ejected_until(None);
            }
            return None;
        }
        let _cap = self.eject_lock.lock().unwrap_or_else(|e| e.into_inner());
        let endpoints = self.endpoints.load();
        let ejected = endpoints.iter().filter(|e| e.is_ejected(now)).count();
        if ejected >= outlier::cap(endpoints.len(), policy.max_ejected) {
            return None;
        }
        let until = state.eject(now, policy);
        endpoint.set_ejected_until(Some(until));
        Some(until - now)
    }
}

/// Starts the active health checks of every service that configures them.
pub fn start_health(services: &[Arc<Service>], stop: &tokio::sync::watch::Sender<bool>) {
    for service in services {
        if let Some(check) = service.health.clone() {
            tokio::spawn(health::watch(service.clone(), check, stop.subscribe()));
        }
    }
}

/// Starts one resolver task per named endpoint of every service; they stop
/// when `stop` turns true (the snapshot that owns the services is gone).
pub fn start_dns(
    services: &[Arc<Service>],
    config: Option<&crate::config::schema::Dns>,
    stop: &tokio::sync::watch::Sender<bool>,
) {
    if services
        .iter()
        .all(|s| s.regions.iter().all(|r| r.names.is_empty()))
    {
        return;
    }
    let resolver = match dns::Resolver::new(config) {
        Ok(resolver) => Arc::new(resolver),
        Err(e) => {
            tracing::error!(error = %e, "no DNS resolver: named endpoints stay unresolved");
            return;
        }
    };
    for service in services {
        for (index, region) in service.regions.iter().enumerate() {
            for name in &region.names {
                let service = service.clone();
                let on_change = move |_| {
                    if let Some(region) = service.regions.get(index) {
                        region.refresh_endpoints();
                    }
                };
                tokio::spawn(dns::watch(
                    name.clone(),
                    resolver.clone(),
                    on_change,
                    stop.subscribe(),
                ));
            }
        }
    }
}
