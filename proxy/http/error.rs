//! The one place a refusal becomes an HTTP response: status, a short body
//! and a `weir-error` header naming the reason.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{self, Body};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No route matches host and path.
    NoRoute,
    /// A site has no file at this path.
    NotFound,
    /// A path a site refuses to resolve (traversal, NUL, encoded slash).
    BadPath,
    /// Sites answer GET and HEAD only.
    MethodNotAllowed,
    /// A file could not be read; details go to the log, not the client.
    Internal,
    /// Every backend of the route has weight 0, or none of those weighted
    /// has a healthy endpoint; retry after N seconds (when one is expected
    /// back, see `upstream::failover::retry_after`).
    NoBackend(u64),
    /// A method weir serves for no resource: CONNECT (it tunnels nothing).
    MethodNotImplemented,
    /// `Content-Length` over `max_body_bytes`.
    BodyTooLarge,
    /// The request is not something a route can be chosen for.
    BadRequest,
    /// The route's service has no healthy endpoint left to try; retry
    /// after N seconds (as for `NoBackend`).
    NoHealthyEndpoint(u64),
    /// No connection to the upstream could be made.
    UpstreamConnect,
    /// The upstream failed before sending a response head.
    UpstreamFailed,
    /// The upstream did not answer within the route's timeout.
    UpstreamTimeout,
    /// The client went over the route's `rate_limit`; retry after N seconds.
    RateLimited(u64),
    /// A request head was not complete within `header_read_timeout`.
    HeadTimeout,
    /// A request head over `max_header_bytes` (or too many fields).
    HeadTooLarge,
}

impl Reject {
    pub fn status(self) -> StatusCode {
        match self {
            Reject::NoRoute | Reject::NotFound => StatusCode::NOT_FOUND,
            Reject::BadPath => StatusCode::BAD_REQUEST,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Reject::NoBackend(_) => StatusCode::SERVICE_UNAVAILABLE,
            Reject::MethodNotImplemented => StatusCode::NOT_IMPLEMENTED,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BadRequest => StatusCode::BAD_REQUEST,
            Reject::NoHealthyEndpoint(_) => StatusCode::SERVICE_UNAVAILABLE,
            Reject::UpstreamConnect | Reject::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Reject::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The `weir-error` value.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::NoRoute => "no-route",
            Reject::NotFound => "not-found",
            Reject::BadPath => "bad-path",
            Reject::MethodNotAllowed => "method-not-allowed",
            Reject::Internal => "io",
            Reject::NoBackend(_) => "no-healthy-backend",
            Reject::MethodNotImplemented => "method-not-implemented",
            Reject::BodyTooLarge => "body-too-large",
            Reject::BadRequest => "bad-request",
            Reject::NoHealthyEndpoint(_) => "no-healthy-endpoint",
            Reject::UpstreamConnect => "upstream-connect-failed",
            Reject::UpstreamFailed => "upstream-failed",
            Reject::UpstreamTimeout => "upstream-timeout",
            Reject::RateLimited(_) => "rate-limited",
            Reject::HeadTimeout => "header-timeout",
            Reject::HeadTooLarge => "header-too-large",
        }
    }

    fn retry_after(self) -> Option<HeaderValue> {
        match self {
            Reject::NoBackend(seconds)
            | Reject::NoHealthyEndpoint(seconds)
            | Reject::RateLimited(seconds) => Some(HeaderValue::from(seconds.max(1))),
            _ => None,
        }
    }

    /// The short text body every refusal carries.
    fn text(self) -> String {
        let reason = self.status().canonical_reason().unwrap_or("error");
        format!("{}\n", reason.to_ascii_lowercase())
    }

    pub fn response(self) -> Response<Body> {
        let status = self.status();
        let text = self.text();
        let len = text.len();
        let mut response = Response::new(body::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        headers.insert("weir-error", HeaderValue::from_static(self.reason()));
        if self == Reject::MethodNotAllowed {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, seconds);
        }
        // A body not read, or what a client that asked for a tunnel sends
        // next (its TLS handshake, say): neither is a next request.
        if matches!(self, Reject::BodyTooLarge | Reject::MethodNotImplemented) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// The refusal as HTTP/1.1 bytes, for an answer written before a
    /// request could be parsed; it always closes the connection.
    pub fn http1_bytes(self) -> Vec<u8> {
        let status = self.status();
        let text = self.text();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nweir-error: {}\r\nconnection: close\r\ndate: ",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            text.len(),
            self.reason(),
        )
        .into_bytes();
        super::h1::encode::date(&mut out);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(text.as_bytes());
        out
    }
}
