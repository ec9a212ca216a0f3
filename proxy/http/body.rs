//! The one response body type every stage returns, and small constructors.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// A response body: boxed so that files, errors and (later) proxied and
/// compressed streams share one type across HTTP/1, HTTP/2 and HTTP/3.
pub type Body = BoxBody<Bytes, std::io::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
