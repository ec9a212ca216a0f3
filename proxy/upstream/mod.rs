//! Upstream services: which endpoint, and the call. Proxying lands in a
//! later issue; for now a service carries its regions and endpoints (for
//! `/status`) and a route to it answers 503 `not-implemented`.

/// A compiled upstream service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    /// In priority order; `endpoints = [...]` is one region named "default".
    pub regions: Vec<Region>,
}

#[derive(Debug)]
pub struct Region {
    pub name: String,
    /// `IP:PORT` or `NAME:PORT` as configured.
    pub endpoints: Vec<String>,
}
