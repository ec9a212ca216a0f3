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
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_filter(filter::filter_fn(|meta| meta.target() != TARGET));
    let access =
        AccessLayer::new(stdout).with_filter(filter::filter_fn(|meta| meta.target() == TARGET));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(diagnostics)
        .with(access)
        .try_init();
    LogGuard(guard)
}
