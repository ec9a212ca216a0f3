//! The pooled HTTP client of one service. Plain-TCP HTTP/1.1 services use
//! `pool` (keep-alive connections per endpoint over hyper's connection
//! API); h2c (prior knowledge) and TLS services (always verified, ALPN
//! choosing h2 or HTTP/1.1) use hyper-util's general client, keyed by the
//! endpoint address in the URI, with a bounded idle pool and idle timeout.
//!
//! hyper-rustls provides the TLS connector: a maintained, small wrapper of
//! tokio-rustls for hyper-util's client, with ALPN and server-name override.

use std::path::Path;
use std::task::{Context, Poll};

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Uri, Version};
use http_body_util::BodyExt;
use std::time::Duration;

use hyper_rustls::FixedServerNameResolver;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::exchange::Outgoing;
use super::pool::Attempt;
use crate::config::schema::{Protocol, UpstreamTls};
use crate::http::body::Body;
use crate::http::raw::WithFields;

type General = Client<MarkConnects<HttpsConnector<HttpConnector>>, Body>;

/// The client of a service: cheap to clone, shared by reloads that keep
/// the service's transport.
#[derive(Clone, Debug)]
pub enum Pool {
    /// Plain TCP, HTTP/1.1.
    Plain(Arc<super::pool::Pool>),
    /// h2c or TLS.
    General(Box<General>),
}

/// Why an attempt got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Plain(#[from] super::pool::SendError),
    #[error(transparent)]
    General(#[from] hyper_util::client::legacy::Error),
    /// The general client gave no response by the attempt's deadline.
    #[error("no response from the upstream in time")]
    TimedOut,
}

impl SendError {
    /// No connection could be opened, so nothing was sent.
    pub fn is_connect(&self) -> bool {
        use super::pool::SendError as Plain;
        match self {
            SendError::Plain(e) => {
                matches!(e, Plain::Connect { .. } | Plain::ConnectTimeout { .. })
            }
            SendError::General(e) => e.is_connect(),
            SendError::TimedOut => false,
        }
    }

    /// No response by the attempt's deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SendError::TimedOut | SendError::Plain(super::pool::SendError::TimedOut { .. })
        )
    }
}

impl Pool {
    /// Sends one request as `to` says (`request.target` is its path and
    /// query there) over HTTP/1.1, or `version` on the general client.
    /// Returns the response and whether it went over a pooled connection
    /// (only those can be "stale": closed by the upstream as they were
    /// reused).
    pub async fn send(
        &self,
        scheme: &str,
        to: Attempt,
        request: Outgoing<'_>,
        version: Version,
        body: Body,
    ) -> (Result<WithFields<Body>, SendError>, bool) {
        match self {
            Pool::Plain(pool) => {
                let (sent, reused) = pool.send(to, request, body).await;
                let sent = sent
                    .map(|(r, fields)| (r.map(|b| b.boxed()), fields))
                    .map_err(SendError::from);
                (sent, reused)
            }
            Pool::General(client) => {
                let Ok(uri) = Uri::try_from(format!("{scheme}://{}{}", to.addr, request.target))
                else {
                    return (Err(bad_target()), false);
                };
                let mut req = Request::new(body);
                *req.method_mut() = request.method.clone();
                *req.version_mut() = version;
                *req.uri_mut() = uri;
                let mut headers = request.headers.clone();
                for (name, value) in request.added {
                    headers.append(name.clone(), value.clone());
                }
                *req.headers_mut() = headers;
                let attempt =
                    tokio::time::timeout_at(to.deadline, track_connects(client.request(req)));
                let Ok((sent, connected)) = attempt.await else {
                    return (Err(SendError::TimedOut), true);
                };
                let sent = sent
                    .map(|r| (r.map(|b| b.map_err(std::io::Error::other).boxed()), None))
                    .map_err(SendError::from);
                (sent, !connected)
            }
        }
    }
}

/// A target that is not a valid URI (it came from a parsed request, so
/// this does not happen); reported as a failed attempt.
fn bad_target() -> SendError {
    SendError::Plain(super::pool::SendError::Connect {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid request target"),
    })
}

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

use super::pool::{CONNECT_TIMEOUT, IDLE_TIMEOUT, MAX_IDLE as MAX_IDLE_PER_ENDPOINT};

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
    #[error(
        "the endpoints name several hosts ({hosts}): set tls.server_name to the name their certificates carry"
    )]
    SeveralHosts { hosts: String },
    #[error("no system root certificates found")]
    NoSystemRoots,
    #[error(transparent)]
    Tls(#[from] rustls::Error),
}

/// The TLS side of a service whose configured endpoints are `endpoints`:
/// `None` for plain HTTP.
pub fn tls_settings(
    tls: Option<&UpstreamTls>,
    base: &Path,
    endpoints: &[&str],
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
    // Without a server_name, the host the endpoints name is the one to
    // verify: their resolved addresses are not what a certificate names.
    let server_name = match server_name {
        Some(name) => Some(name),
        None => endpoint_host(endpoints)?,
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

/// The one host name among `endpoints` (`None` when they are all
/// addresses); several names need a `server_name` to say which to verify.
fn endpoint_host(endpoints: &[&str]) -> Result<Option<ServerName<'static>>, ClientError> {
    let mut hosts: Vec<String> = endpoints
        .iter()
        .filter_map(|e| super::dns::Name::parse(e))
        .map(|name| {
            let host = name.host.strip_suffix('.').unwrap_or(&name.host);
            host.to_ascii_lowercase()
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    match hosts.as_slice() {
        [] => Ok(None),
        [host] => ServerName::try_from(host.clone())
            .map(Some)
            .map_err(|_| ClientError::ServerName { name: host.clone() }),
        _ => Err(ClientError::SeveralHosts {
            hosts: hosts.join(", "),
        }),
    }
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    roots: Arc<RootCertStore>,
    /// Name to verify (and send as SNI) instead of the endpoint's address.
    server_name: Option<ServerName<'static>>,
}

/// The pooled client of a service.
pub fn pool(protocol: Protocol, tls: Option<&TlsSettings>) -> Result<Pool, ClientError> {
    if tls.is_none() && protocol != Protocol::H2c {
        return Ok(Pool::Plain(super::pool::Pool::new()));
    }
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
    Ok(Pool::General(Box::new(
        client.build(MarkConnects { inner: connector }),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoints_one_host_is_the_name_verified() {
        let name = |endpoints: &[&str]| {
            endpoint_host(endpoints).map(|n| n.map(|n| n.to_str().into_owned()))
        };
        assert_eq!(name(&["127.0.0.1:443", "[::1]:443"]).ok(), Some(None));
        assert_eq!(name(&[]).ok(), Some(None));
        assert_eq!(
            name(&["API.internal:443", "api.internal.:8443", "10.0.0.1:443"]).ok(),
            Some(Some("api.internal".to_owned()))
        );
        assert!(matches!(
            endpoint_host(&["a.internal:443", "b.internal:443"]),
            Err(ClientError::SeveralHosts { .. })
        ));
    }
}
