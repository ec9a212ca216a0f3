//! Metrics (Prometheus via prometheus-client) and logs (tracing): the
//! diagnostic log on stderr, the access log as JSON lines on stdout.

pub mod access;
pub mod announce;
pub mod logging;
pub mod metrics;
