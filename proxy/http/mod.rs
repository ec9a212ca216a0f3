//! HTTP: serving a TCP connection (`conn`) or a QUIC one (`h3`), answering
//! a request (`service`), the one place errors become status codes
//! (`error`), and the body wrapper that records metrics and the access log
//! when a response ends (`observe`), `max_body_bytes` on HTTP/2 and HTTP/3
//! bodies as they arrive (`body_limit`), and the files the kernel sends
//! itself on plain TCP (`sendfile`).

pub mod body;
pub mod body_limit;
pub mod compression;
pub mod conn;
pub mod error;
pub mod h1;
pub mod h3;
pub mod observe;
pub mod rate_limit;
pub mod raw;
pub mod sendfile;
pub mod service;
