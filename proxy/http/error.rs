//! The one place a refusal becomes an HTTP response: status, a short body
//! and a `weir-error` header naming the reason.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{self, Body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No route matches host and path.
    NoRoute,
    /// Every backend of the route has weight 0.
    NoBackend,
    /// The route points at a service and proxying is not built yet.
    NotImplemented,
    /// `Content-Length` over `max_body_bytes`.
    BodyTooLarge,
    /// The request is not something a route can be chosen for.
    BadRequest,
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::NoRoute => StatusCode::NOT_FOUND,
            Reject::NoBackend | Reject::NotImplemented => StatusCode::SERVICE_UNAVAILABLE,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// The `weir-error` value.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NoRoute => "no-route",
            Reject::NoBackend => "no-healthy-backend",
            Reject::NotImplemented => "not-implemented",
            Reject::BodyTooLarge => "body-too-large",
            Reject::BadRequest => "bad-request",
        }
    }

    fn retry_after(self) -> Option<&'static str> {
        match self {
            Reject::NoBackend | Reject::NotImplemented => Some("5"),
            _ => None,
        }
    }

    pub fn response(self) -> Response<Body> {
        let status = self.status();
        let text = format!(
            "{}\n",
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
        );
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert("weir-error", HeaderValue::from_static(self.reason()));
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        if self == Reject::BodyTooLarge {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
