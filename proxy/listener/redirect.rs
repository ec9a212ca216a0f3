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
