//! Installs the process-wide subscriber: diagnostics to stderr (filtered by
//! `WEIR_LOG`, default `info`), access lines to stdout through a
//! non-blocking writer.

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, filter};

use super::access::{AccessLayer, TARGET};

/// Keeps the stdout writer's worker alive; drop it last to flush.
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

pub fn init() -> LogGuard {
    let (stdout, guard) = tracing_appender::non_blocking(std::io::stdout());
    // Static filters only: their answer is cached per callsite, so the
    // trace-level spans of hyper and h2 cost nothing. A dynamic filter
    // (`filter_fn`) is asked on every span, and the registry then builds
    // each span (8% of a TLS HTTP/2 request's CPU in a profile).
    let env = EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(env.add_directive(access_off()));
    let access = AccessLayer::new(stdout)
        .with_filter(filter::Targets::new().with_target(TARGET, tracing::Level::TRACE));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(diagnostics)
        .with(access)
        .try_init();
    LogGuard(guard)
}

/// `weir::access=off`: access lines never reach the diagnostics.
fn access_off() -> filter::Directive {
    // The directive is a constant; parsing it cannot fail.
    format!("{TARGET}=off")
        .parse()
        .unwrap_or_else(|_| filter::LevelFilter::OFF.into())
}
