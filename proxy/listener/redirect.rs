//! `redirect_https`: a plain listener answers 308 to its TLS listener,
//! keeping host, path and query.

use http::{HeaderValue, Response, StatusCode, Uri, header};

use crate::http::body::{self, Body};
use crate::http::error::Reject;

pub fn to_https(uri: &Uri, host: Option<&str>, port: u16) -> Response<Body> {
    let Some(host) = host else {
        return Reject::BadRequest.response();
    };
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{authority}{path_and_query}");
    let Ok(location) = HeaderValue::from_str(&location) else {
        return Reject::BadRequest.response();
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Location` for a request to `target` with `Host: host` (made
    /// the way the request path makes it: lowercased, port dropped), to a
    /// TLS listener on `port`; `None` when the answer is not a redirect.
    fn location(target: &str, host: Option<&str>, port: u16) -> Option<String> {
        let uri: Uri = target.parse().expect("request target");
        let host = host.and_then(crate::router::host::normalize);
        let response = to_https(&uri, host.as_deref(), port);
        if response.status() != StatusCode::PERMANENT_REDIRECT {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            return None;
        }
        let location = response.headers().get(header::LOCATION)?;
        Some(location.to_str().expect("ASCII location").to_owned())
    }

    #[test]
    fn the_tls_port_is_named_unless_it_is_443() {
        let cases: &[(&str, Option<&str>, u16, Option<&str>)] = &[
            ("/", Some("example.com"), 443, Some("https://example.com/")),
            (
                "/a/b?x=1&y=2",
                Some("example.com"),
                443,
                Some("https://example.com/a/b?x=1&y=2"),
            ),
            (
                "/a/b?x=1",
                Some("example.com"),
                8443,
                Some("https://example.com:8443/a/b?x=1"),
            ),
            // The plain listener's port in Host is replaced, never kept.
            (
                "/p",
                Some("example.com:8080"),
                8443,
                Some("https://example.com:8443/p"),
            ),
            (
                "/p",
                Some("example.com:80"),
                443,
                Some("https://example.com/p"),
            ),
            (
                "/p?q",
                Some("Example.COM.:8080"),
                443,
                Some("https://example.com/p?q"),
            ),
            // IPv6 literals keep their brackets, with or without a port.
            (
                "/v6?q=1",
                Some("[::1]:8080"),
                8443,
                Some("https://[::1]:8443/v6?q=1"),
            ),
            ("/v6", Some("[::1]"), 443, Some("https://[::1]/v6")),
            (
                "/v6",
                Some("[2001:db8::1]:80"),
                443,
                Some("https://[2001:db8::1]/v6"),
            ),
            (
                "/",
                Some("127.0.0.1:8080"),
                8443,
                Some("https://127.0.0.1:8443/"),
            ),
            // An empty query is kept as sent.
            (
                "/e?",
                Some("example.com"),
                443,
                Some("https://example.com/e?"),
            ),
            // No host to send the client to: 400.
            ("/", None, 443, None),
            ("/", Some(""), 8443, None),
        ];
        for &(target, host, port, want) in cases {
            assert_eq!(
                location(target, host, port).as_deref(),
                want,
                "{target} with Host {host:?} to port {port}"
            );
        }
    }

    #[test]
    fn an_absolute_form_target_keeps_only_path_and_query() {
        let uri: Uri = "http://example.com:8080/a?b=c".parse().unwrap();
        let response = to_https(&uri, Some("example.com"), 8443);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://example.com:8443/a?b=c"
        );
    }
}
