//! The sockets weir listens on, and how a reload changes them: each one is
//! known by its listener's name and configured address. A reload keeps the
//! sockets it still wants (never rebound, so nothing queued is lost),
//! binds the ones it adds before the new config is published (a bind
//! failure fails the reload, old config kept), and stops accepting on the
//! ones it removes; connections they already accepted finish on their own.
//!
//! TLS on or off is read per connection from the snapshot, so it can change
//! on a kept socket; `http3` adds or removes the UDP socket beside it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::quic::QuicError;
use super::{BindError, Spec};
use crate::app::App;
use crate::drain::Drain;
use crate::snapshot::{Limits, Snapshot};

/// Ports tried for a port-0 listener whose UDP twin found its port taken.
const PORT_TRIES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(transparent)]
    Tcp(#[from] BindError),
    #[error(transparent)]
    Quic(#[from] QuicError),
}

/// One bound socket.
struct Socket {
    listener: Arc<str>,
    /// The address as configured (port 0 stays 0 here).
    configured: SocketAddr,
    local: SocketAddr,
    kind: Kind,
    /// Tells its accept loop to stop.
    stop: watch::Sender<bool>,
    started: bool,
}

enum Kind {
    /// The listener waits here until its accept loop starts.
    Tcp(Option<TcpListener>),
    Quic(quinn::Endpoint),
}

/// What the accept loops share once serving started.
struct Serving {
    app: Arc<App>,
    permits: Arc<Semaphore>,
    drain: Drain,
}

/// Every socket of the running config.
#[derive(Default)]
pub struct Sockets {
    sockets: Vec<Socket>,
    serving: Option<Serving>,
}

impl Sockets {
    /// Binds every address of `snapshot`'s listeners.
    pub fn bind(app: &Arc<App>, snapshot: &Snapshot) -> Result<Sockets, SocketError> {
        let mut sockets = Sockets::default();
        sockets.bind_missing(app, snapshot, &snapshot.limits)?;
        Ok(sockets)
    }

    /// Starts an accept loop on every socket; later additions start at once.
    pub fn start(&mut self, app: &Arc<App>, permits: Arc<Semaphore>, drain: Drain) {
        self.serving = Some(Serving {
            app: app.clone(),
            permits,
            drain,
        });
        for i in 0..self.sockets.len() {
            self.spawn(i);
        }
    }

    /// Binds what `next` adds, before it is published; on a failure the
    /// sockets bound so far are closed again and nothing changed.
    pub fn bind_new(
        &mut self,
        app: &Arc<App>,
        next: &Snapshot,
    ) -> Result<Vec<String>, SocketError> {
        let before = self.sockets.len();
        if let Err(e) = self.bind_missing(app, next, &next.limits) {
            self.sockets.truncate(before);
            return Err(e);
        }
        Ok(self.sockets[before..]
            .iter()
            .map(Socket::describe)
            .collect())
    }

    /// Once `next` is published: stops accepting on the sockets it no
    /// longer has and starts the ones `bind_new` added. Returns the removed.
    pub fn settle(&mut self, next: &Snapshot) -> Vec<String> {
        let (kept, gone): (Vec<Socket>, Vec<Socket>) = std::mem::take(&mut self.sockets)
            .into_iter()
            .partition(|s| wanted(next, s));
        self.sockets = kept;
        let removed = gone.iter().map(Socket::describe).collect();
        for socket in gone {
            socket.close(next.limits.shutdown_grace);
        }
        for i in 0..self.sockets.len() {
            self.spawn(i);
        }
        removed
    }

    /// Lets go of what the accept loops share (the drain among it), so the
    /// drain can finish; a reload during shutdown starts no new loop.
    pub fn stop_serving(&mut self) {
        self.serving = None;
    }

    /// Local addresses of `listener`'s TCP sockets.
    pub fn local_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.addrs(listener, false)
    }

    /// Local addresses of `listener`'s QUIC sockets.
    pub fn quic_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.addrs(listener, true)
    }

    /// The QUIC endpoints, to close at shutdown.
    pub fn quic_endpoints(&self) -> Vec<quinn::Endpoint> {
        self.sockets
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Quic(endpoint) => Some(endpoint.clone()),
                Kind::Tcp(_) => None,
            })
            .collect()
    }

    fn addrs(&self, listener: &str, quic: bool) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter(|s| &*s.listener == listener && matches!(s.kind, Kind::Quic(_)) == quic)
            .map(|s| s.local)
            .collect()
    }

    fn find(&self, listener: &str, configured: SocketAddr, quic: bool) -> Option<&Socket> {
        self.sockets.iter().find(|s| {
            &*s.listener == listener
                && s.configured == configured
                && matches!(s.kind, Kind::Quic(_)) == quic
        })
    }

    /// Binds every socket `snapshot` wants that is not bound yet, appending.
    fn bind_missing(
        &mut self,
        app: &Arc<App>,
        snapshot: &Snapshot,
        limits: &Limits,
    ) -> Result<(), SocketError> {
        for spec in &snapshot.listeners {
            for &addr in &spec.binds {
                let quic = wants_quic(spec) && self.find(&spec.name, addr, true).is_none();
                match self.find(&spec.name, addr, false).map(|s| s.local) {
                    Some(local) if quic => {
                        let endpoint = super::quic::bind(app, &spec.name, local, limits)?;
                        self.push_quic(spec, addr, local, endpoint);
                    }
                    Some(_) => {}
                    None => self.bind_pair(app, spec, addr, quic, limits)?,
                }
            }
        }
        Ok(())
    }

    /// Binds a TCP socket for `addr` and, with `quic`, a UDP one on the
    /// port TCP got, so that Alt-Svc can name one port. With port 0 the
    /// UDP port may be another socket's: then both are bound anew.
    fn bind_pair(
        &mut self,
        app: &Arc<App>,
        spec: &Spec,
        addr: SocketAddr,
        quic: bool,
        limits: &Limits,
    ) -> Result<(), SocketError> {
        let mut tries = 0;
        loop {
            let tcp = super::bind(&spec.name, addr)?;
            let local = tcp.local_addr().unwrap_or(addr);
            let endpoint = if quic {
                match super::quic::bind(app, &spec.name, local, limits) {
                    Ok(endpoint) => Some(endpoint),
                    Err(QuicError::Bind { source, .. })
                        if addr.port() == 0
                            && source.kind() == std::io::ErrorKind::AddrInUse
                            && tries < PORT_TRIES =>
                    {
                        tries += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            self.push(spec, addr, local, Kind::Tcp(Some(tcp)));
            if let Some(endpoint) = endpoint {
                self.push_quic(spec, addr, local, endpoint);
            }
            return Ok(());
        }
    }

    fn push_quic(
        &mut self,
        spec: &Spec,
        addr: SocketAddr,
        local: SocketAddr,
        endpoint: quinn::Endpoint,
    ) {
        let local = endpoint.local_addr().unwrap_or(local);
        self.push(spec, addr, local, Kind::Quic(endpoint));
    }

    fn push(&mut self, spec: &Spec, configured: SocketAddr, local: SocketAddr, kind: Kind) {
        self.sockets.push(Socket {
            listener: spec.name.clone(),
            configured,
            local,
            kind,
            stop: watch::channel(false).0,
            started: false,
        });
    }

    /// Starts the accept loop of socket `i`, once serving has started and
    /// unless it runs already.
    fn spawn(&mut self, i: usize) {
        let (Some(serving), Some(socket)) = (&self.serving, self.sockets.get_mut(i)) else {
            return;
        };
        if std::mem::replace(&mut socket.started, true) {
            return;
        }
        let stop = socket.stop.subscribe();
        let name = socket.listener.clone();
        match &mut socket.kind {
            Kind::Tcp(listener) => {
                if let Some(listener) = listener.take() {
                    tokio::spawn(super::accept_loop(
                        listener,
                        name,
                        serving.app.clone(),
                        serving.permits.clone(),
                        serving.drain.clone(),
                        stop,
                    ));
                }
            }
            Kind::Quic(endpoint) => {
                tokio::spawn(crate::http::h3::accept_loop(
                    endpoint.clone(),
                    name,
                    serving.app.clone(),
                    serving.permits.clone(),
                    serving.drain.clone(),
                ));
            }
        }
    }
}

impl Socket {
    fn describe(&self) -> String {
        let proto = match self.kind {
            Kind::Tcp(_) => "tcp",
            Kind::Quic(_) => "udp",
        };
        format!("{} {proto} {}", self.listener, self.local)
    }

    /// Stops accepting. TCP: the accept loop ends and drops the socket.
    /// QUIC: new connections are refused at once, open ones get `grace` to
    /// finish before the endpoint closes.
    fn close(self, grace: std::time::Duration) {
        let _ = self.stop.send(true);
        if let Kind::Quic(endpoint) = self.kind {
            endpoint.set_server_config(None);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
                endpoint.close(quinn::VarInt::from_u32(0), b"listener removed");
            });
        }
    }
}

fn wants_quic(spec: &Spec) -> bool {
    spec.http3 && spec.tls.is_some()
}

/// Whether `next` still has the socket.
fn wanted(next: &Snapshot, socket: &Socket) -> bool {
    next.listener(&socket.listener).is_some_and(|spec| {
        spec.binds.contains(&socket.configured)
            && match socket.kind {
                Kind::Tcp(_) => true,
                Kind::Quic(_) => wants_quic(spec),
            }
    })
}
