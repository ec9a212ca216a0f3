//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status`,
//! `/config`, `POST /reload`, and the dashboard at `/`.

mod status;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::app::App;
use crate::http::body::{self, Body};
use crate::telemetry::metrics;

const DASHBOARD: &str = include_str!("dashboard.html");

/// Serves admin requests until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(req, &app).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, app: &Arc<App>) -> Response<Body> {
    let method = req.method().clone();
    match (req.uri().path(), method) {
        ("/healthz", Method::GET | Method::HEAD) => text(StatusCode::OK, "ok\n"),
        ("/readyz", Method::GET | Method::HEAD) => {
            if app.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        ("/metrics", Method::GET | Method::HEAD) => {
            let snapshot = app.snapshot();
            app.metrics.observe_services(&snapshot.services);
            app.metrics.observe_routes(snapshot.router.routes());
            with_type(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                metrics::render(app.registry()),
            )
        }
        ("/status", Method::GET | Method::HEAD) => {
            let mut doc = status::status(&app.snapshot());
            doc["listeners"] = status::listeners(&app.snapshot(), &app.sockets());
            json(StatusCode::OK, &doc)
        }
        ("/config", Method::GET | Method::HEAD) => json(StatusCode::OK, &app.snapshot().effective),
        ("/reload", Method::POST) => match app.reload().await {
            Ok(generation) => json(
                StatusCode::OK,
                &serde_json::json!({ "ok": true, "generation": generation }),
            ),
            Err(errors) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "ok": false, "errors": errors }),
            ),
        },
        ("/", Method::GET | Method::HEAD) => {
            with_type(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
        }
        ("/healthz" | "/readyz" | "/metrics" | "/status" | "/config" | "/", _) => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        ("/reload", _) => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    text: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut response = Response::new(body::full(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, text: &'static str) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", text)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_owned());
    text.push('\n');
    with_type(status, "application/json", text)
}
