//! Upstream services: which endpoint, and the call.
//!
//! - `endpoint`: one address with its live counters.
//! - `select`: the load-balancing policy inside a region.
//! - `dns`: names in endpoints, re-resolved at their TTL.
//! - `client`: the pooled HTTP client of a service.
//! - `forward`: hop-by-hop and forwarding headers.
//! - `retry`: which failures may be retried, within a budget.
//! - `proxy`: one request through attempts to a response (or a refusal).
//! - `tunnel`: upgraded connections (WebSocket) copied both ways.

pub mod client;
pub mod dns;
pub mod endpoint;
pub mod forward;
pub mod proxy;
pub mod retry;
pub mod select;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

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
    pub budget: retry::Budget,
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
        Region {
            name: name.into(),
            configured,
            endpoints: ArcSwap::from_pointee(literal),
            cursor: select::Cursor::default(),
            attempts,
        }
    }
}
