//! What a reload carries from the snapshot it replaces into the next one,
//! matched by identity: a route by name, a service by name, a region by
//! name, an endpoint by address, a site by name. `config::compile` asks
//! here; whatever has no match (or changed what it depends on) starts
//! fresh.
//!
//! Carried: rollout progress (when the section is unchanged), rate-limit
//! buckets (same route, same limit), endpoints with their health, outlier
//! and in-flight state, DNS answers (same name), the failover state (same
//! regions in the same order), the connection pool (same protocol, plain
//! TCP: a TLS service gets a new pool so changed CA files apply), and a
//! site's file cache (same root and encodings).

use std::sync::Arc;

use crate::balancer::Target;
use crate::router::Route;
use crate::site::Site;
use crate::snapshot::Snapshot;
use crate::upstream::Service;

/// The snapshot being replaced, if any.
#[derive(Clone, Copy)]
pub struct Previous<'a>(pub Option<&'a Snapshot>);

impl<'a> Previous<'a> {
    pub fn route(self, name: &str) -> Option<&'a Arc<Route>> {
        self.0?.router.routes().iter().find(|r| &*r.name == name)
    }

    pub fn service(self, name: &str) -> Option<&'a Arc<Service>> {
        self.0?.services.iter().find(|s| s.name == name)
    }

    pub fn site(self, name: &str) -> Option<&'a Arc<Site>> {
        self.0?
            .router
            .routes()
            .iter()
            .flat_map(|r| r.split.backends())
            .find_map(|b| match &b.target {
                Target::Site(site) if site.name == name => Some(site),
                _ => None,
            })
    }
}
