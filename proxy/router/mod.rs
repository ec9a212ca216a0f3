//! Which route answers a request: a pure function of the listener, the host
//! and the path. Most specific host wins (exact, then the longest
//! `*.suffix`, then any host); within a host, the longest path prefix that
//! matches on a segment boundary.

pub mod host;
pub mod path;

use std::collections::HashMap;
use std::sync::Arc;

use crate::balancer::Split;

pub use host::HostMatch;

/// A compiled route: where a matching request goes.
#[derive(Debug)]
pub struct Route {
    /// `name = ...` from the config, else `host+path`.
    pub name: Arc<str>,
    pub host: HostMatch,
    pub prefix: String,
    pub strip_prefix: bool,
    /// Listener names this route answers on; `None` means all.
    pub listeners: Option<Box<[Arc<str>]>>,
    pub split: Split,
    pub options: Options,
    /// `[routes.rollout]`: moves the split's weights over time.
    pub rollout: Option<crate::balancer::rollout::Rollout>,
    /// Counts the requests this route answers itself (429, 503).
    pub refused: crate::telemetry::metrics::Refused,
}

/// What a route sets for requests proxied to services.
#[derive(Debug, Default)]
pub struct Options {
    /// The whole request, retries included (up to the response head).
    pub timeout: Option<std::time::Duration>,
    /// One attempt.
    pub try_timeout: Option<std::time::Duration>,
    /// Extra attempts for requests that are safe to repeat.
    pub retries: u32,
    pub rate_limit: Option<Arc<crate::http::rate_limit::RateLimiter>>,
    /// `affinity = { cookie, max_age }`: pin a client to its backend.
    pub affinity: Option<crate::balancer::affinity::Affinity>,
    /// `override_header`: a request naming a backend in it goes there.
    pub override_header: Option<http::HeaderName>,
}

impl Route {
    /// Judges the rollout's window and brings the split's weights in line
    /// with its step (also when another snapshot's task moved it).
    pub fn tick_rollout(&self, now: std::time::Instant) {
        if let Some(rollout) = &self.rollout {
            rollout.tick(&self.name, now);
            self.split
                .set_weights(rollout.weights(&self.split.base_weights()));
        }
    }

    /// A weight of the split in the config's units: a rollout scales the
    /// split's weights by 100 to keep every step exact.
    pub fn weight_in_config_units(&self, weight: u32) -> f64 {
        match self.rollout {
            Some(_) => f64::from(weight) / 100.0,
            None => f64::from(weight),
        }
    }

    fn serves(&self, listener: &str, path: &str) -> bool {
        path::prefix_matches(&self.prefix, path)
            && self
                .listeners
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| &**n == listener))
    }
}

/// All routes of a snapshot, indexed by host.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Vec<usize>>,
    /// `".example.com"` -> routes; looked up once per dot of the host.
    wildcard: HashMap<String, Vec<usize>>,
    any: Vec<usize>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let mut router = Router {
            routes: routes.into_iter().map(Arc::new).collect(),
            ..Router::default()
        };
        for (i, route) in router.routes.iter().enumerate() {
            match &route.host {
                HostMatch::Any => router.any.push(i),
                HostMatch::Exact(h) => router.exact.entry(h.clone()).or_default().push(i),
                HostMatch::Suffix(s) => router.wildcard.entry(s.clone()).or_default().push(i),
            }
        }
        let routes = &router.routes;
        // Longest prefix first; ties keep config order (stable sort).
        let by_prefix = |bucket: &mut Vec<usize>| {
            bucket.sort_by_key(|&i| std::cmp::Reverse(routes[i].prefix.len()))
        };
        router.exact.values_mut().for_each(by_prefix);
        router.wildcard.values_mut().for_each(by_prefix);
        by_prefix(&mut router.any);
        router
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The route for a request on `listener` to `host` (lowercase, no port)
    /// and `path`, or `None` for a 404.
    pub fn find(&self, listener: &str, host: &str, path: &str) -> Option<&Arc<Route>> {
        let first = |bucket: &[usize]| {
            bucket
                .iter()
                .map(|&i| &self.routes[i])
                .find(|r| r.serves(listener, path))
        };
        if let Some(found) = self.exact.get(host).and_then(|b| first(b)) {
            return Some(found);
        }
        if !self.wildcard.is_empty() {
            // Longest suffix first: ".b.example.com" before ".example.com".
            // The first label is never part of a suffix.
            let dots = host.match_indices('.').map(|(i, _)| i).filter(|&i| i > 0);
            for dot in dots {
                if let Some(found) = self.wildcard.get(&host[dot..]).and_then(|b| first(b)) {
                    return Some(found);
                }
            }
        }
        first(&self.any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: Option<&str>, prefix: &str, listeners: Option<&[&str]>) -> Route {
        Route {
            name: name.into(),
            host: HostMatch::parse(host),
            prefix: prefix.to_owned(),
            strip_prefix: false,
            listeners: listeners.map(|l| l.iter().map(|&n| Arc::from(n)).collect()),
            split: Split::default(),
            options: Options::default(),
            rollout: None,
            refused: Default::default(),
        }
    }

    #[test]
    fn most_specific_host_then_longest_prefix() {
        let router = Router::new(vec![
            route("any-root", None, "/", None),
            route("any-api", None, "/api/", None),
            route("app-root", Some("app.example.com"), "/", None),
            route("app-api", Some("app.example.com"), "/api/", Some(&["tls"])),
            route("wild", Some("*.example.com"), "/", None),
            route("deep-wild", Some("*.eu.example.com"), "/static", None),
        ]);
        let cases = [
            ("web", "app.example.com", "/api/x", "app-root"),
            ("tls", "app.example.com", "/api/x", "app-api"),
            ("tls", "app.example.com", "/", "app-root"),
            ("web", "other.example.com", "/api/x", "wild"),
            ("web", "a.eu.example.com", "/static/x", "deep-wild"),
            ("web", "a.eu.example.com", "/staticx", "wild"),
            ("web", "example.com", "/api/v1", "any-api"),
            ("web", "badexample.com", "/", "any-root"),
            ("web", ".example.com", "/", "any-root"),
            ("web", "elsewhere.org", "/apix", "any-root"),
        ];
        for (listener, host, path, want) in cases {
            let got = router.find(listener, host, path).map(|r| &*r.name);
            assert_eq!(got, Some(want), "{listener} {host} {path}");
        }
    }

    #[test]
    fn no_route_is_none() {
        let router = Router::new(vec![route("api", Some("a.test"), "/api", None)]);
        assert!(router.find("web", "a.test", "/").is_none());
        assert!(router.find("web", "b.test", "/api").is_none());
        assert!(router.find("web", "a.test", "/apix").is_none());
        assert!(router.find("web", "a.test", "/api").is_some());
    }
}
