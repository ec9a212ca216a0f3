//! TLS termination: one rustls `ServerConfig` per listener and snapshot,
//! certificates chosen by SNI against their SANs (the first is the default),
//! ALPN `h2` and `http/1.1`.

pub mod certs;
pub mod quic;
pub mod selfsigned;
pub mod sni;

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::app::App;
use crate::config::schema::TlsVersion;
use crate::http::conn::ConnInfo;

#[derive(Debug, thiserror::Error)]
#[error("cannot build the TLS configuration: {0}")]
pub struct TlsError(#[from] rustls::Error);

/// The server config a listener's handshakes use.
pub fn server_config(
    certs: Vec<Arc<rustls::sign::CertifiedKey>>,
    min_version: TlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(certs::provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(sni::Resolver::new(certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Completes the handshake within `deadline`; `None` when it fails.
pub async fn accept(
    stream: TcpStream,
    info: &ConnInfo,
    app: &App,
    deadline: Duration,
) -> Option<TlsStream<TcpStream>> {
    let config = app
        .snapshot()
        .listener(&info.listener)?
        .tls
        .as_ref()?
        .server_config
        .clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (stream, result) = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => (Some(stream), "ok"),
        Ok(Err(e)) => {
            // A client that sent garbage is not an incident: one debug line.
            tracing::debug!(peer = %info.peer, listener = &*info.listener, error = %e, "TLS handshake failed");
            (None, "failed")
        }
        Err(_) => {
            tracing::debug!(peer = %info.peer, listener = &*info.listener, "TLS handshake timed out");
            (None, "timeout")
        }
    };
    app.metrics.handshake(&info.listener, result);
    stream
}
