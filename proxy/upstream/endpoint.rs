//! An endpoint: one `IP:PORT` of a service, with the live counters that the
//! balancer reads. Keyed by (service, address), so reloads can carry it over.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Requests sent and not yet answered (least_request reads it).
    pub in_flight: AtomicUsize,
    /// Judged by health checks and outlier ejection; true until they say otherwise.
    pub healthy: AtomicBool,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}
