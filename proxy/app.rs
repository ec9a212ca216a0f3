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
use crate::listener::set::{SocketError, Sockets};
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
    /// The listening sockets; a reload binds and closes them by the diff.
    sockets: std::sync::Mutex<Sockets>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] SocketError),
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
            sockets: Default::default(),
        }))
    }

    /// The current snapshot; a request keeps this one value to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// `max_body_bytes` of the config now in force: read as each request
    /// with a body starts, so a reload binds open connections' next
    /// requests too (their head limits stay those they opened with).
    pub fn max_body_bytes(&self) -> u64 {
        self.snapshot.load().limits.max_body_bytes
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The socket set (never held across an await).
    pub fn sockets(&self) -> std::sync::MutexGuard<'_, Sockets> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads the config file again and swaps in the new snapshot; on any
    /// error the old one keeps serving. Returns the new generation.
    pub async fn reload(self: &Arc<Self>) -> Result<u64, Vec<String>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let current = self.snapshot();
        let Some(file) = current.file.clone() else {
            return Err(vec![
                "this config is embedded: there is no file to reload".to_owned(),
            ]);
        };
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let (app, previous) = (self.clone(), current.clone());
        let outcome = reload_thread::run(move || {
            let doc = config::load(&file).map_err(|e| e.lines())?;
            config::compile(&doc, generation, &app.metrics, Some(&previous)).map_err(|e| e.lines())
        })
        .await
        .map_err(|e| vec![format!("reload failed: {e}")])
        .and_then(|compiled| compiled)
        .and_then(|next| {
            if next.admin != current.admin {
                return Err(vec![format!(
                    "admin.listen changed ({} -> {}): restart weir to move the admin listener",
                    current.admin, next.admin
                )]);
            }
            let mut sockets = self.sockets();
            let added = sockets
                .bind_new(self, &next)
                .map_err(|e| vec![e.to_string()])?;
            next.settle_redirects(&sockets);
            Ok((next, added))
        });
        match outcome {
            Ok((next, added)) => {
                let generation = next.generation;
                self.generation.store(generation, Ordering::Relaxed);
                next.start_tasks();
                let changes = crate::reload::describe(&current, &next);
                let next = Arc::new(next);
                self.snapshot.store(next.clone());
                let removed = self.sockets().settle(&next);
                self.metrics.reload(true);
                tracing::info!(
                    generation,
                    changes = %changes,
                    sockets_added = ?added,
                    sockets_removed = ?removed,
                    "config reloaded"
                );
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

/// A bound, not yet serving, weir.
pub struct Server {
    app: Arc<App>,
    admin: TcpListener,
}

impl Server {
    /// Compiles `doc` and binds every listener and the admin port.
    pub async fn bind(doc: &Document) -> Result<Server, StartError> {
        let app = App::new(doc)?;
        let snapshot = app.snapshot();
        let sockets = Sockets::bind(&app, &snapshot)?;
        snapshot.settle_redirects(&sockets);
        *app.sockets() = sockets;
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
        Ok(Server { app, admin })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The addresses a listener is bound to (useful with port 0).
    pub fn local_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.app.sockets().local_addrs(listener)
    }

    /// The UDP addresses a listener serves HTTP/3 on.
    pub fn quic_addrs(&self, listener: &str) -> Vec<SocketAddr> {
        self.app.sockets().quic_addrs(listener)
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then drains: readiness turns 503,
    /// listeners close, in-flight requests get `shutdown_grace` to finish.
    /// Returns false when some were still running at the deadline.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> bool {
        let Server { app, admin } = self;
        let limits = app.snapshot().limits.clone();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let (control, drain) = crate::drain::channel();
        app.sockets().start(&app, permits, drain.clone());
        // Reload on config and certificate file changes until run ends.
        let _watch = crate::reload::spawn(app.clone());
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = tokio::spawn(crate::admin::serve(admin, app.clone(), admin_stopped));
        drop(drain);

        shutdown.await;
        app.ready.store(false, Ordering::Release);
        app.sockets().stop_serving();
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
        let quic = app.sockets().quic_endpoints();
        close_quic(&quic).await;
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        clean
    }
}

/// Closes the QUIC endpoints (connections still open after the grace get
/// CONNECTION_CLOSE) and gives the close packets a moment to leave.
async fn close_quic(endpoints: &[quinn::Endpoint]) {
    for endpoint in endpoints {
        endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    }
    for endpoint in endpoints {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
    }
}

/// Reading and compiling a config (file IO, parsing, certificates) runs on
/// one long-lived thread: off the runtime's workers, and always the same
/// thread, so the allocator does not grow an arena for each new thread of
/// tokio's blocking pool (RSS under load crept up by 14% over 1,000
/// reloads that way).
mod reload_thread {
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    #[derive(Debug, thiserror::Error)]
    #[error("the reload thread is gone")]
    pub struct Gone;

    fn sender() -> &'static Mutex<Option<mpsc::Sender<Job>>> {
        static SENDER: OnceLock<Mutex<Option<mpsc::Sender<Job>>>> = OnceLock::new();
        SENDER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("weir-reload".into())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        // A panicking job fails its own reload, not the next ones.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            Mutex::new(spawned.ok().map(|_| tx))
        })
    }

    /// Runs `job` on the reload thread and waits for its answer.
    pub async fn run<T: Send + 'static>(
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Gone> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        {
            let sender = sender().lock().unwrap_or_else(|e| e.into_inner());
            sender.as_ref().ok_or(Gone)?.send(job).map_err(|_| Gone)?;
        }
        rx.await.map_err(|_| Gone)
    }
}
