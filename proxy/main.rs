//! The `weir` command line: run, check, serve, version. Exit codes: 0 ok,
//! 1 bad config or usage, 2 runtime failure.

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rustls::sign::CertifiedKey;
use tokio::signal::unix::{SignalKind, signal};

use weir::app::Server;
use weir::config::{self, ConfigError, Document};
use weir::telemetry::announce::{self, Listening};
use weir::tls::certs::MemoryCerts;
use weir::tls::selfsigned::SelfSigned;

mod allocator;

/// mimalloc instead of glibc's malloc: the request path makes a few dozen
/// short-lived allocations per request; with glibc weir used 20-40% more
/// CPU per request across the load scenarios (benches/load.sh).
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Edge reverse proxy and traffic router"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML or YAML); default ./weir.toml, else the embedded default.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run with a config file (the default command).
    Run,
    /// Validate a config file and print every problem.
    Check,
    /// Serve a directory as a static site with PWA-safe defaults.
    Serve {
        /// Directory to serve (default: the current one).
        #[arg(value_parser = existing_dir)]
        dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080, with --tls 127.0.0.1:8443].
        #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
        listen: Option<SocketAddr>,
        /// Serve HTTPS (h2 and http/1.1) with a fresh self-signed certificate
        /// for localhost, held only in memory; its SHA-256 fingerprint is printed.
        #[arg(long)]
        tls: bool,
    },
    /// Print the version.
    Version,
}

const USAGE_ERROR: u8 = 1;
const RUNTIME_ERROR: u8 = 2;
/// Threads for blocking work (file opens and reads), beyond the workers.
const BLOCKING_THREADS: usize = 32;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return if usage {
                ExitCode::from(USAGE_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Version => {
            println!("weir {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check => check(cli.config.as_deref()),
        Command::Run => match run_document(cli.config.as_deref()) {
            Ok(doc) => run(doc, None),
            Err(e) => config_failed(&e),
        },
        Command::Serve { dir, listen, tls } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let serving = |fingerprint| announce::Serve {
                dir: dir.display().to_string(),
                fingerprint,
            };
            if !tls {
                let listen = listen.unwrap_or(SERVE_LISTEN);
                return match serve_document(&dir, listen, None) {
                    Ok(doc) => run(doc, Some(serving(None))),
                    Err(e) => config_failed(&e),
                };
            }
            let listen = listen.unwrap_or(SERVE_TLS_LISTEN);
            // The pair stays in memory: the listener gets it from the
            // document, not from a file.
            let (fingerprint, certified) = match SelfSigned::generate()
                .and_then(|cert| Ok((cert.fingerprint(), cert.certified_key()?)))
            {
                Ok(made) => made,
                Err(e) => {
                    eprintln!("weir: {e}");
                    return ExitCode::from(RUNTIME_ERROR);
                }
            };
            match serve_document(&dir, listen, Some(certified)) {
                Ok(doc) => run(doc, Some(serving(Some(fingerprint)))),
                Err(e) => config_failed(&e),
            }
        }
    }
}

fn check(file: Option<&Path>) -> ExitCode {
    let Some(file) = file else {
        eprintln!("weir check: missing -c FILE");
        return ExitCode::from(USAGE_ERROR);
    };
    match config::load(file) {
        Ok(doc) => {
            let c = &doc.config;
            println!(
                "{}: ok ({} listeners, {} routes, {} sites, {} services)",
                file.display(),
                c.listeners.len(),
                c.routes.len(),
                c.sites.len(),
                c.services.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => config_failed(&e),
    }
}

fn config_failed(e: &ConfigError) -> ExitCode {
    for line in e.lines() {
        eprintln!("{line}");
    }
    if let ConfigError::Invalid(all) = e {
        eprintln!(
            "{} error{} found",
            all.len(),
            if all.len() == 1 { "" } else { "s" }
        );
    }
    ExitCode::from(USAGE_ERROR)
}

/// `-c FILE`, else `./weir.toml` when present, else the embedded default.
fn run_document(file: Option<&Path>) -> Result<Document, ConfigError> {
    match file {
        Some(file) => config::load(file),
        None if Path::new("weir.toml").is_file() => config::load(Path::new("weir.toml")),
        None => config::embedded_default(),
    }
}

/// `weir serve` listens here unless `--listen` says otherwise.
const SERVE_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// `weir serve --tls` listens here unless `--listen` says otherwise.
const SERVE_TLS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);

/// The name of `weir serve`'s one listener.
const SERVE_LISTENER: &str = "serve";

/// `weir serve`: one listener (TLS with `cert`, held in memory, when given),
/// one site with SPA fallback, admin on an ephemeral port so several can run
/// side by side.
fn serve_document(
    dir: &Path,
    listen: SocketAddr,
    cert: Option<Arc<CertifiedKey>>,
) -> Result<Document, ConfigError> {
    let mut memory_certs = MemoryCerts::default();
    let tls = match cert {
        Some(cert) => {
            memory_certs.add(SERVE_LISTENER, cert);
            "[listeners.tls]\ncerts = []\n"
        }
        None => "",
    };
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = {name}\nbind = [{listen}]\n{tls}\
         [[routes]]\npath = \"/\"\nbackends = [{{ site = \"serve\" }}]\n\
         [sites.serve]\nroot = {root}\nspa = true\nprecompressed = [\"br\", \"zstd\", \"gzip\"]\n",
        name = toml_string(SERVE_LISTENER),
        listen = toml_string(&listen.to_string()),
        root = toml_string(&dir.to_string_lossy()),
    );
    config::load_str_with_certs(
        &text,
        Path::new("<serve>"),
        config::Format::Toml,
        PathBuf::from("."),
        memory_certs,
    )
}

/// `weir serve DIR`: a problem with DIR is a usage error naming it, not a
/// config error pointing into the generated config.
fn existing_dir(arg: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(arg);
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => Err("not a directory".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// `--listen ADDR`: an IP address and port, as `bind` takes them.
fn listen_addr(arg: &str) -> Result<SocketAddr, String> {
    arg.parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8080 or [::]:8080".to_owned())
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Runs `doc` until SIGTERM or SIGINT; `serve` says it was made by `weir serve`.
fn run(doc: Document, serve: Option<announce::Serve>) -> ExitCode {
    let _logs = weir::telemetry::logging::init();
    if let Err(e) = weir::balancer::affinity::key_from_env() {
        eprintln!("weir: {e}");
        return ExitCode::from(USAGE_ERROR);
    }
    let workers = doc
        .config
        .runtime
        .workers
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    // One worker: tokio's single-threaded scheduler, which wakes tasks
    // without the atomics and queues that work stealing needs.
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    // File reads run on the blocking pool; a bounded one bounds the threads
    // (and their stacks and allocator arenas) a burst of file requests makes.
    builder.max_blocking_threads(BLOCKING_THREADS);
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::from(RUNTIME_ERROR);
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(&doc).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("weir: {e}");
                return ExitCode::from(match e {
                    weir::app::StartError::Config(_) => USAGE_ERROR,
                    _ => RUNTIME_ERROR,
                });
            }
        };
        // Handlers go in before the URLs are printed: whoever reads them may
        // signal at once, and an unhandled TERM or HUP would kill the process.
        let shutdown = terminated();
        let hup = signal(SignalKind::hangup());
        announce(&server, &doc, serve);
        let app = server.app().clone();
        tokio::spawn(async move {
            let Ok(mut hup) = hup else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = app.reload().await;
            }
        });
        // Requests still open when the grace ends were logged by `run`;
        // the shutdown itself was orderly.
        server.run(shutdown).await;
        ExitCode::SUCCESS
    })
}

/// Prints where weir listens, on one line: a sentence on a terminal, else JSON.
fn announce(server: &Server, doc: &Document, serve: Option<announce::Serve>) {
    let listening = Listening {
        listeners: doc
            .config
            .listeners
            .iter()
            .map(|listener| announce::Bound {
                name: listener.name.clone(),
                addrs: server.local_addrs(&listener.name),
                tls: listener.tls.is_some(),
            })
            .collect(),
        admin: server.admin_addr(),
        serve,
    };
    let mut stdout = std::io::stdout().lock();
    let line = listening.line(stdout.is_terminal());
    // A closed stdout must not stop weir from serving.
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed by this call,
/// not when the future is first polled, so a signal that arrives in between
/// is kept rather than killing the process.
fn terminated() -> impl Future<Output = ()> {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
