//! TLS for QUIC (HTTP/3): its own rustls config, TLS 1.3 only (QUIC has no
//! other) with ALPN `h3`, and the same certificates and SNI choice as the
//! TCP listener. The endpoint keeps one config for its life, so the
//! certificate is looked up in the current snapshot at every handshake:
//! a reload that rotates certificates reaches QUIC too.

use std::sync::{Arc, Weak};

use quinn::crypto::rustls::QuicServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsError;
use crate::app::App;

/// Resolves through the listener's TCP resolver in the current snapshot.
#[derive(Debug)]
struct CurrentCerts {
    /// Weak: the endpoint must not keep the whole app alive.
    app: Weak<App>,
    listener: Arc<str>,
}

impl ResolvesServerCert for CurrentCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let app = self.app.upgrade()?;
        let snapshot = app.snapshot();
        let tls = snapshot.listener(&self.listener)?.tls.as_ref()?;
        tls.server_config.cert_resolver.resolve(hello)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QuicTlsError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the crypto provider cannot do QUIC: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The QUIC crypto config of one TLS listener.
pub fn server_config(app: &Arc<App>, listener: Arc<str>) -> Result<QuicServerConfig, QuicTlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(super::certs::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::from)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CurrentCerts {
            app: Arc::downgrade(app),
            listener,
        }));
    config.alpn_protocols = vec![b"h3".to_vec()];
    Ok(QuicServerConfig::try_from(config)?)
}
