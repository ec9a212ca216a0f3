//! The UDP side of a TLS listener with `http3 = true`: a quinn endpoint on
//! the same address and port as the TCP socket.

use std::net::SocketAddr;
use std::sync::Arc;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::app::App;
use crate::snapshot::Limits;
use crate::tls::quic::QuicTlsError;

/// Concurrent requests per QUIC connection (HTTP/2's default is similar).
const MAX_STREAMS: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("cannot bind listener {listener:?} to UDP {addr} for HTTP/3: {source}")]
    Bind {
        listener: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {listener:?}: cannot set up QUIC TLS: {source}")]
    Tls {
        listener: String,
        source: QuicTlsError,
    },
}

/// Binds `addr` (its port is the TCP listener's, chosen already when the
/// configured port was 0) and starts the endpoint.
pub fn bind(
    app: &Arc<App>,
    listener: &Arc<str>,
    addr: SocketAddr,
    limits: &Limits,
) -> Result<quinn::Endpoint, QuicError> {
    let crypto = crate::tls::quic::server_config(app, listener.clone()).map_err(|source| {
        QuicError::Tls {
            listener: listener.to_string(),
            source,
        }
    })?;
    let mut transport = TransportConfig::default();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    // Out of QUIC's range (years) means "no idle timeout", as configured.
    transport.max_idle_timeout(IdleTimeout::try_from(limits.idle_timeout).ok());
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, addr).map_err(|source| QuicError::Bind {
        listener: listener.to_string(),
        addr,
        source,
    })
}
