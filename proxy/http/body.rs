//! The one response body type every stage returns, and small constructors.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// A response body: boxed so that files, errors and (later) proxied and
/// compressed streams share one type across HTTP/1, HTTP/2 and HTTP/3.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// The error a request body may carry, whatever protocol it came over.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body from any client protocol: hyper's `Incoming` (HTTP/1.1,
/// HTTP/2) or `http::h3::RequestBody`. The request path is generic over it,
/// so TCP requests keep hyper's body as it is, with no extra box.
pub trait RequestBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static
{
}

impl<B> RequestBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + 'static
{
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
