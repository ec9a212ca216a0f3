//! The pooled HTTP client of one service: keep-alive connections per
//! endpoint (the pool is keyed by the endpoint address in the URI), a
//! bounded idle pool with an idle timeout; HTTP/1.1, h2c prior knowledge,
//! or TLS (always verified) with ALPN choosing h2 or HTTP/1.1.
//!
//! hyper-rustls provides the TLS connector: a maintained, small wrapper of
//! tokio-rustls for hyper-util's client, with ALPN and server-name override.

use std::path::Path;
use std::task::{Context, Poll};

use http::Uri;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::FixedServerNameResolver;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::schema::{Protocol, UpstreamTls};
use crate::http::body::Body;

pub type Pool = Client<MarkConnects<HttpsConnector<HttpConnector>>, Body>;

tokio::task_local! {
    /// Set by `MarkConnects` when a connection is opened while a request runs
    /// inside `track_connects`.
    static CONNECTED: std::cell::Cell<bool>;
}

/// Runs one attempt and tells whether it opened a new connection; when it
/// did not, it went over a pooled one (only those can be "stale": closed by
/// the upstream as they were reused).
pub async fn track_connects<F: std::future::Future>(attempt: F) -> (F::Output, bool) {
    CONNECTED
        .scope(std::cell::Cell::new(false), async move {
            let output = attempt.await;
            (output, CONNECTED.with(|c| c.get()))
        })
        .await
}

/// Marks the attempt that opened a connection (see `track_connects`).
#[derive(Debug, Clone)]
pub struct MarkConnects<C> {
    inner: C,
}

impl<C: tower_service::Service<Uri>> tower_service::Service<Uri> for MarkConnects<C> {
    type Response = C::Response;
    type Error = C::Error;
    type Future = C::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let _ = CONNECTED.try_with(|c| c.set(true));
        self.inner.call(uri)
    }
}

/// Idle keep-alive connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// An idle pooled connection is closed after this long; upstream servers
/// commonly close theirs after 60-75 s, so ours goes first.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read CA file {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable certificate")]
    NoCa { path: String },
    #[error("server_name {name:?} is not a DNS name or IP address")]
    ServerName { name: String },
    #[error("no system root certificates found")]
    NoSystemRoots,
    #[error(transparent)]
    Tls(#[from] rustls::Error),
}

/// The TLS side of a service: `None` for plain HTTP.
pub fn tls_settings(
    tls: Option<&UpstreamTls>,
    base: &Path,
) -> Result<Option<TlsSettings>, ClientError> {
    let (ca, server_name) = match tls {
        None | Some(UpstreamTls::Enabled(false)) => return Ok(None),
        Some(UpstreamTls::Enabled(true)) => (None, None),
        Some(UpstreamTls::Custom(options)) => {
            let name = match &options.server_name {
                Some(name) => Some(
                    ServerName::try_from(name.clone())
                        .map_err(|_| ClientError::ServerName { name: name.clone() })?,
                ),
                None => None,
            };
            (options.ca.as_ref(), name)
        }
    };
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            let path = crate::config::validate::resolve(base, ca);
            let shown = path.display().to_string();
            let pem = std::fs::read(&path).map_err(|source| ClientError::Ca {
                path: shown.clone(),
                source,
            })?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ClientError::NoCa { path: shown });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(ClientError::NoSystemRoots);
            }
        }
    }
    Ok(Some(TlsSettings {
        roots: Arc::new(roots),
        server_name,
    }))
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    roots: Arc<RootCertStore>,
    /// Name to verify (and send as SNI) instead of the endpoint's address.
    server_name: Option<ServerName<'static>>,
}

/// The pooled client of a service.
pub fn pool(protocol: Protocol, tls: Option<&TlsSettings>) -> Result<Pool, ClientError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let roots = tls.map_or_else(|| Arc::new(RootCertStore::empty()), |t| t.roots.clone());
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::certs::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    let builder = match tls.and_then(|t| t.server_name.clone()) {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name)),
        None => builder,
    };
    let connector = match protocol {
        Protocol::Http1 => builder.enable_http1().wrap_connector(http),
        Protocol::H2c | Protocol::Auto => builder.enable_all_versions().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_ENDPOINT)
        // The client's Host header is forwarded as it came.
        .set_host(false)
        // A pooled connection the upstream closed just before reuse: the
        // request was never sent, so the client retries it on a new one.
        .retry_canceled_requests(true)
        .http2_only(protocol == Protocol::H2c && tls.is_none());
    Ok(client.build(MarkConnects { inner: connector }))
}
