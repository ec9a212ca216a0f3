//! HTTP/3: QUIC connections (quinn) on the UDP port of a TLS listener with
//! `http3 = true`. Each request goes through `service::handle`, the same
//! path as HTTP/1.1 and HTTP/2; only the body types at the edges differ.
//!
//! Bounds: `max_connections` permits shared with TCP (a connection beyond
//! them is refused), QUIC's own stream limit per connection (see
//! `listener::quic`), the handshake and each request head within
//! `header_read_timeout`, head size within `max_header_bytes` (h3 answers
//! 431 itself), and the transport idle timeout.

pub mod body;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::conn::ConnInfo;
use super::observe::Observed;
use crate::app::App;
use crate::drain::Drain;
use crate::snapshot::Limits;

type Connection = h3::server::Connection<h3_quinn::Connection, Bytes>;
type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type SendStream = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// The `Alt-Svc` value that announces HTTP/3 on `port` for a day.
pub fn alt_svc(port: u16) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok()
}

/// Accepts QUIC connections, each holding one `max_connections` permit.
/// Once the drain starts new connections are refused until `Server::run`
/// closes the endpoint; open ones finish their requests.
pub async fn accept_loop(
    endpoint: quinn::Endpoint,
    name: Arc<str>,
    app: Arc<App>,
    permits: Arc<Semaphore>,
    drain: Drain,
) {
    let stop = drain.watch();
    let mut drain = Some(drain);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
            _ = stop.drained(), if drain.is_some() => {
                // This loop must not hold the drain up while it refuses.
                drain = None;
                continue;
            }
        };
        let (Some(drain), Ok(permit)) = (&drain, permits.clone().try_acquire_owned()) else {
            incoming.refuse();
            continue;
        };
        tokio::spawn(serve_connection(
            incoming,
            name.clone(),
            app.clone(),
            drain.clone(),
            permit,
        ));
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    listener: Arc<str>,
    app: Arc<App>,
    drain: Drain,
    _permit: OwnedSemaphorePermit,
) {
    let limits = app.snapshot().limits.clone();
    let peer = incoming.remote_address();
    let handshake = async {
        match incoming.accept() {
            Ok(connecting) => connecting.await,
            Err(e) => Err(e),
        }
    };
    let conn = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(conn)) => {
            app.metrics.handshake(&listener, "ok");
            conn
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, listener = &*listener, error = %e, "QUIC handshake failed");
            app.metrics.handshake(&listener, "failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, listener = &*listener, "QUIC handshake timed out");
            app.metrics.handshake(&listener, "timeout");
            return;
        }
    };
    let info = Arc::new(ConnInfo::new(listener, peer, true, None));
    info.count_open("h3", &app);
    let max_head = u64::try_from(limits.max_header_bytes).unwrap_or(u64::MAX);
    let mut builder = h3::server::builder();
    builder.max_field_section_size(max_head);
    let built = builder.build::<_, Bytes>(h3_quinn::Connection::new(conn));
    let h3 = match tokio::time::timeout(limits.header_read_timeout, built).await {
        Ok(Ok(h3)) => h3,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/3 connection setup failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP/3 connection setup timed out");
            return;
        }
    };
    serve_requests(h3, info, app, limits, drain).await;
}

/// Runs each request in its own task until the connection ends; on drain
/// sends GOAWAY, lets the accepted requests finish, then closes.
async fn serve_requests(
    mut h3: Connection,
    info: Arc<ConnInfo>,
    app: Arc<App>,
    limits: Limits,
    drain: Drain,
) {
    let mut requests = JoinSet::new();
    let stop = drain.watch();
    let mut closing = false;
    let mut signalled = false;
    loop {
        if !closing && (signalled || drain.is_draining()) {
            closing = true;
            if let Err(e) = h3.shutdown(0).await {
                tracing::debug!(peer = %info.peer, error = %e, "HTTP/3 GOAWAY failed");
                break;
            }
        }
        if closing && requests.is_empty() {
            break;
        }
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    requests.spawn(serve_request(resolver, info.clone(), app.clone(), limits.clone()));
                }
                Ok(None) => break,
                Err(e) => {
                    if !e.is_h3_no_error() {
                        tracing::debug!(peer = %info.peer, error = %e, "HTTP/3 connection ended");
                    }
                    break;
                }
            },
            // Also when the control is gone: nothing waits for the drain.
            _ = stop.drained(), if !closing => signalled = true,
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
        }
    }
    // The connection stays open (and `drain` held) while requests finish.
    while requests.join_next().await.is_some() {}
    drop(h3);
    drop(drain);
}

async fn serve_request(resolver: Resolver, info: Arc<ConnInfo>, app: Arc<App>, limits: Limits) {
    let (req, stream) =
        match tokio::time::timeout(limits.header_read_timeout, resolver.resolve_request()).await {
            Ok(Ok(resolved)) => resolved,
            Ok(Err(e)) => {
                tracing::debug!(peer = %info.peer, error = %e, "HTTP/3 request refused");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %info.peer, "HTTP/3 request head timed out");
                return;
            }
        };
    let (mut send, recv) = stream.split();
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = body::RequestBody::new(recv, app.max_body_bytes(), content_length);
    let (mut parts, ()) = req.into_parts();
    let (response, _) = super::service::handle(&mut parts, body, info.clone(), &app).await;
    if let Err(e) = respond(&mut send, response).await {
        tracing::debug!(peer = %info.peer, error = %e, "HTTP/3 response not completed");
    }
}

/// Sends the head, streams the body's frames, then trailers, then FIN.
async fn respond(send: &mut SendStream, response: Response<Observed>) -> Result<(), RespondError> {
    let (mut parts, mut body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    send.send_response(Response::from_parts(parts, ())).await?;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                // The source failed mid-body (an upstream died): the
                // client must not take a truncated body for a whole one.
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return Err(RespondError::Body(e));
            }
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    Ok(send.finish().await?)
}

#[derive(Debug, thiserror::Error)]
enum RespondError {
    #[error(transparent)]
    Stream(#[from] h3::error::StreamError),
    #[error("response body failed: {0}")]
    Body(std::io::Error),
}

/// HTTP/3 forbids connection-specific fields (RFC 9114 §4.2).
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}
