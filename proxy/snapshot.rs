//! The runtime view of one config generation. Built once by
//! `config::compile`, published through one `ArcSwap`, read by every request
//! from start to end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::listener::Spec as ListenerSpec;
use crate::router::Router;
use crate::upstream::Service;

#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub loaded_at: SystemTime,
    /// The config file this came from; reloads read it again.
    pub file: Option<PathBuf>,
    pub admin: SocketAddr,
    pub workers: Option<usize>,
    pub listeners: Vec<Arc<ListenerSpec>>,
    pub router: Router,
    /// Every service, sorted by name (the routes hold their own references).
    pub services: Vec<Arc<Service>>,
    /// `[compression]` for proxied responses.
    pub compression: crate::upstream::proxy::Compression,
    pub limits: Limits,
    pub access_log: AccessLog,
    /// The effective config as JSON for `/config` (paths, never key material).
    pub effective: serde_json::Value,
    /// `[dns]`, for the resolver tasks of this snapshot's services.
    pub dns: Option<crate::config::schema::Dns>,
    /// Turns true when this snapshot is dropped: its background tasks stop.
    pub stop_tasks: tokio::sync::watch::Sender<bool>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = self.stop_tasks.send(true);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Json,
    Combined,
    Off,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Snapshot {
    /// Tells `redirect_https` listeners the port their TLS listener got,
    /// where the config left it to the system; once `sockets` are bound.
    pub fn settle_redirects(&self, sockets: &crate::listener::set::Sockets) {
        for listener in &self.listeners {
            if let Some(redirect) = &listener.redirect_https {
                redirect.settle(sockets);
            }
        }
    }

    /// Starts what this snapshot needs running beside requests (DNS).
    /// Needs a Tokio runtime; call once, right before it is published.
    pub fn start_tasks(&self) {
        crate::upstream::start_dns(&self.services, self.dns.as_ref(), &self.stop_tasks);
        crate::upstream::start_health(&self.services, &self.stop_tasks);
        crate::balancer::rollout::start(self.router.routes(), &self.stop_tasks);
    }

    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerSpec>> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}
