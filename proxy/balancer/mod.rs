//! Which backend of a route serves a request: the weighted split.

pub mod affinity;
pub mod rollout;
pub mod split;

use std::sync::Arc;

pub use split::Split;

use crate::site::Site;
use crate::telemetry::metrics::BackendMetrics;
use crate::upstream::Service;

/// One weighted target of a route.
#[derive(Debug)]
pub struct Backend {
    pub name: Arc<str>,
    /// The configured weight; the split holds the current one.
    pub weight: u32,
    pub target: Target,
    pub metrics: BackendMetrics,
}

impl Backend {
    /// Sites are always up; a service is up while any endpoint is healthy.
    pub fn available(&self) -> bool {
        match &self.target {
            Target::Site(_) => true,
            Target::Service(service) => service.available(),
        }
    }
}

#[derive(Debug)]
pub enum Target {
    Site(Arc<Site>),
    Service(Arc<Service>),
}
