//! The running server: the shared `App` state (one `ArcSwap<Snapshot>`,
//! metrics, readiness) and `Server`, which binds every listener, serves, and
//! drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{self, ConfigError, Document};
use crate::listener::{self, BindError};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// State shared by every task: the live snapshot and what outlives it.
pub struct App {
    snapshot: ArcSwap<Snapshot>,
    registry: Registry,
    pub metrics: Metrics,
    generation: AtomicU64,
    ready: AtomicBool,
    reload_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Quic(#[from] listener::quic::QuicError),
    #[error("cannot bind admin listener {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl App {
    /// Compiles `doc` as generation 1.
    pub fn new(doc: &Document) -> Result<Arc<App>, ConfigError> {
        let mut registry = Registry::with_prefix("weir");
        let metrics = Metrics::new(&mut registry);
        let snapshot = config::compile(doc, 1, &metrics, None)?;
        snapshot.start_tasks();
        Ok(Arc::new(App {
            snapshot: ArcSwap::from_pointee(snapshot),
            registry,
            metrics,
            generation: AtomicU64::new(1),
            ready: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The current snapshot; a request keeps this one value to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads the config file again and swaps in the new snapshot; on any
    /// error the old one keeps serving. Returns the new generation.
    pub async fn reload(&self) -> Result<u64, Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let current = self.snapshot();
        let Some(file) = current.file.clone() else {
            return Err(vec![
                "this config is embedded: there is no file to reload".to_owned(),
            ]);
        };
        let outcome = tokio::task::spawn_blocking(move || config::load(&file))
            .await
            .map_err(|e| vec![format!("reload task failed: {e}")])
            .and_then(|loaded| loaded.map_err(|e| e.lines()))
            .and_then(|doc| {
                let generation = self.generation.load(Ordering::Relaxed) + 1;
                config::compile(&doc, generation, &self.metrics, Some(&current))
                    .map_err(|e| e.lines())
            })
            .and_then(|next| {
                if same_listeners(&current, &next) {
                    Ok(next)
                } else {
                    Err(vec![
                        "listeners or the admin address changed: restart weir to apply (live rebinding is not supported yet)".to_owned(),
                    ])
                }
            });
        match outcome {
            Ok(next) => {
                let generation = next.generation;
                self.generation.store(generation, Ordering::Relaxed);
                next.start_tasks();
                self.snapshot.store(Arc::new(next));
                self.metrics.reload(true);
                tracing::info!(generation, "config reloaded");
                Ok(generation)
            }
            Err(errors) => {
                self.metrics.reload(false);
                for error in &errors {
                    tracing::error!(%error, "config reload rejected; the old config keeps serving");
                }
                Err(errors)
            }
        }
    }
}

fn same_listeners(a: &Snapshot, b: &Snapshot) -> bool {
    a.admin == b.admin
        && a.listeners.len() == b.listeners.len()
        && a.listeners.iter().zip(&b.listeners).all(|(x, y)| {
            x.name == y.name
                && x.binds == y.binds
                && x.tls.is_some() == y.tls.is_some()
                && x.http3 == y.http3
        })
}

/// A bound, not yet serving, weir.
pub struct Server {
    app: Arc<App>,
    listeners: Vec<(Arc<str>, TcpListener)>,
    /// QUIC endpoints of listeners with `http3 = true`, on the TCP ports.
    quic: Vec<(Arc<str>, quinn::Endpoint)>,
    admin: TcpListener,
}

impl Server {
    /// Compiles `doc` and binds every listener and the admin port.
    pub async fn bind(doc: &Document) -> Result<Server, StartError> {
        let app = App::new(doc)?;
        let snapshot = app.snapshot();
        let mut listeners = Vec::new();
        let mut quic = Vec::new();
        for spec in &snapshot.listeners {
            for addr in &spec.binds {
                let tcp = listener::bind(&spec.name, *addr)?;
                if spec.http3 && spec.tls.is_some() {
                    // Port 0 becomes the port TCP got, so Alt-Svc can name one.
                    let udp = tcp.local_addr().unwrap_or(*addr);
                    let endpoint = listener::quic::bind(&app, &spec.name, udp, &snapshot.limits)?;
                    quic.push((spec.name.clone(), endpoint));
                }
                listeners.push((spec.name.clone(), tcp));
            }
        }
        let admin =
            TcpListener::bind(snapshot.admin)
                .await
                .map_err(|source| StartError::Admin {
                    addr: snapshot.admin,
                    source,
                })?;
        // Ready means "config loaded and listeners bound": connections that
        // arrive before the accept loops start wait in the backlog.
        app.ready.store(true, Ordering::Release);
        Ok(Server {
            app,
            listeners,
            quic,
            admin,
        })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The addresses a listener is bound to (useful with port 0).
    pub fn local_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(name, _)| &**name == listener)
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// The UDP addresses a listener serves HTTP/3 on.
    pub fn quic_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.quic
            .iter()
            .filter(|(name, _)| &**name == listener)
            .filter_map(|(_, e)| e.local_addr().ok())
            .collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then drains: readiness turns 503,
    /// listeners close, in-flight requests get `shutdown_grace` to finish.
    /// Returns false when some were still running at the deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let Server {
            app,
            listeners,
            quic,
            admin,
        } = self;
        let limits = app.snapshot().limits.clone();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let (control, drain) = crate::drain::channel();
        for (name, socket) in listeners {
            tokio::spawn(listener::accept_loop(
                socket,
                name,
                app.clone(),
                permits.clone(),
                drain.clone(),
            ));
        }
        for (name, endpoint) in &quic {
            tokio::spawn(crate::http::h3::accept_loop(
                endpoint.clone(),
                name.clone(),
                app.clone(),
                permits.clone(),
                drain.clone(),
            ));
        }
        // Reload on config and certificate file changes until run ends.
        let _watch = crate::reload::spawn(app.clone());
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(crate::admin::serve(admin, app.clone(), admin_stopped));
        drop(drain);

        shutdown.await;
        app.ready.store(false, Ordering::Release);
        tracing::info!(
            open_tasks = control.live(),
            "draining: readiness is 503, listeners closed"
        );
        control.start();
        let grace = app.snapshot().limits.shutdown_grace;
        let clean = control.wait(grace).await;
        if !clean {
            tracing::warn!(
                still_open = control.live(),
                "shutdown grace ended with connections still open"
            );
        }
        close_quic(&quic).await;
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        clean
    }
}

/// Closes the QUIC endpoints (connections still open after the grace get
/// CONNECTION_CLOSE) and gives the close packets a moment to leave.
async fn close_quic(endpoints: &[(Arc<str>, quinn::Endpoint)]) {
    for (_, endpoint) in endpoints {
        endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    }
    for (_, endpoint) in endpoints {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}
