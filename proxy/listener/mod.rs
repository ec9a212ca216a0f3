//! Listeners: bind every address of a `[[listeners]]` entry, accept
//! connections within `max_connections`, and hand each to `http::conn`
//! (TCP) or, with `http3 = true`, `http::h3` (QUIC, `quic`).

pub mod quic;
pub mod redirect;
pub mod set;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use crate::app::App;
use crate::config::schema::TlsVersion;
use crate::drain::Drain;

/// A compiled `[[listeners]]` entry.
#[derive(Debug)]
pub struct Spec {
    pub name: Arc<str>,
    pub binds: Vec<SocketAddr>,
    /// The TLS listener to 308-redirect to, when `redirect_https` is set.
    pub redirect_https: Option<Redirect>,
    pub http3: bool,
    pub tls: Option<TlsSpec>,
}

/// A `redirect_https` target: the TLS listener and the port it listens
/// on (made known once it is bound when its config says port 0).
#[derive(Debug)]
pub struct Redirect {
    pub listener: Arc<str>,
    port: AtomicU16,
}

impl Redirect {
    pub fn new(listener: Arc<str>, port: u16) -> Redirect {
        Redirect {
            listener,
            port: AtomicU16::new(port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Takes the port the target is bound to, if the config left it to
    /// the system (port 0).
    pub fn settle(&self, sockets: &set::Sockets) {
        if self.port() == 0
            && let Some(bound) = sockets.local_addrs(&self.listener).first()
        {
            self.port.store(bound.port(), Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
pub struct TlsSpec {
    /// The first one is the default for unknown or missing SNI.
    pub certs: Vec<Arc<CertifiedKey>>,
    pub min_version: TlsVersion,
    pub hsts: Option<String>,
    /// `hsts` as the `Strict-Transport-Security` value, checked at compile.
    pub hsts_header: Option<http::HeaderValue>,
    pub server_config: Arc<rustls::ServerConfig>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot bind listener {listener:?} to {addr}: {source}")]
pub struct BindError {
    pub listener: String,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds one address with SO_REUSEADDR and a deep accept backlog.
pub fn bind(listener: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    let error = |source| BindError {
        listener: listener.to_owned(),
        addr,
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.set_nodelay(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(4096).map_err(error)
}

/// Accepts until the drain starts, each connection holding one permit of
/// the process-wide `max_connections`.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    app: Arc<App>,
    permits: Arc<Semaphore>,
    drain: Drain,
    mut removed: tokio::sync::watch::Receiver<bool>,
) {
    let stop = drain.watch();
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.drained() => return,
            _ = removed.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = &*name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.drained() => return,
            _ = removed.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        // A reload may turn `http3` on or off: asked per connection.
        let alt_svc = app
            .snapshot()
            .listener(&name)
            .filter(|spec| spec.http3 && spec.tls.is_some())
            .and_then(|_| crate::http::h3::alt_svc(port));
        let app = app.clone();
        let name = name.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            crate::http::conn::serve(stream, peer, name, alt_svc, app, drain).await;
            drop(permit);
        });
    }
}
