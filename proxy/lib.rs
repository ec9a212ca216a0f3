//! weir: an edge reverse proxy and traffic router.
//!
//! # The life of a request
//!
//! 1. **Listener** (`listener`): every `[[listeners]]` address is bound at
//!    start and kept in `listener::set`, which a reload diffs (bind added,
//!    close removed, keep the rest); `accept_loop` takes a `max_connections` permit per connection
//!    and hands the socket to `http::conn`. A TLS listener with
//!    `http3 = true` also binds the same port over UDP (`listener::quic`),
//!    whose QUIC connections share those permits and go to `http::h3`.
//! 2. **TLS** (`tls`): on a TLS listener the handshake runs under
//!    `header_read_timeout`; the certificate is picked by SNI (`tls::sni`).
//!    QUIC has its own config (`tls::quic`: TLS 1.3, ALPN `h3`) that asks
//!    the current snapshot's resolver, so reloaded certificates apply.
//! 3. **HTTP** (`http::conn`): HTTP/1.1 or HTTP/2 as ALPN agreed (on plain
//!    TCP the preface decides, so h2c prior knowledge works). HTTP/1.1 is
//!    weir's own (`http::h1`): head parsing that refuses ambiguous framing
//!    (400), the head size limit (431), the head deadline (408), chunked
//!    and sized bodies read only as fast as they are used, keep-alive,
//!    `100 Continue`, upgrades, and no buffer held while idle. HTTP/2 is
//!    hyper's, with the idle timeout and the drain from `http::conn`.
//!    HTTP/3 (`http::h3`): each request stream becomes a `Request` whose
//!    body streams from QUIC (`http::h3::body`), and the response is
//!    written back frame by frame; GOAWAY on drain.
//! 4. **Service** (`http::service`): generic over the request body, so
//!    h1, h2 (hyper's) and h3 each keep their own body type unboxed. Loads the
//!    current `Snapshot` once (the request uses that one value to its end),
//!    takes or makes `X-Request-Id`, refuses oversized bodies (413), answers
//!    `redirect_https` listeners with a 308 (`listener::redirect`), applies
//!    the route's per-IP `rate_limit` (429, `http::rate_limit`).
//! 5. **Router** (`router`): most specific host (exact, then longest
//!    `*.suffix`, then any), then the longest path prefix on a segment
//!    boundary, among routes open to this listener. No match: 404.
//! 6. **Balancer** (`balancer`): `override_header`, else a valid affinity
//!    cookie (`balancer::affinity`), else the route's smooth weighted
//!    `Split` picks a backend; backends without a healthy endpoint weigh 0.
//!    A `[routes.rollout]` (`balancer::rollout`) moves the split's weights
//!    step by step and records `to`'s answers into its window when they end.
//! 7. **Site** (`site`) answers from its in-memory cache or files under its
//!    root (negotiated encodings, conditionals, ranges, header rules), or
//!    **upstream** (`upstream::proxy`) draws a region by the failover
//!    shares (`upstream::failover`: spillover below `min_healthy`) and an
//!    endpoint (`upstream::select`), and sends the request over the
//!    service's client (`upstream::client`: keep-alive HTTP/1.1 connections
//!    per endpoint in `upstream::pool`, hyper-util for h2c and TLS), retrying
//!    what is safe (`upstream::retry`). Refusals become responses in one
//!    place, `http::error`.
//! 8. **Observe** (`http::observe`): the response gets HSTS and, on TCP
//!    TLS listeners with HTTP/3, `Alt-Svc`; its body is wrapped, and when it
//!    ends metrics are counted and one access-log line is written
//!    (`telemetry::access`, protocol `h1`, `h2` or `h3`).
//!
//! Beside the path: `config` reads a file (TOML or YAML), validates all of
//! it and compiles it into a `Snapshot`; `app` holds the `ArcSwap` that
//! publishes it and runs the server; `reload` watches the files and swaps
//! in a new snapshot; each snapshot runs its own background tasks (DNS in
//! `upstream::dns`, checks in `upstream::health`, the rollout ticker in
//! `balancer::rollout`) until it is dropped; `config::compile` carries live
//! state (endpoints with their health, DNS answers, pools, rate-limit
//! buckets, rollout progress, file caches) over from the snapshot it
//! replaces, matched by identity in `reload::carry`;
//! `admin` serves health, metrics, status, config and reload; `drain`
//! coordinates shutdown.
//!
//! # Lexicon
//!
//! - **listener**: a named set of bind addresses, plain or TLS.
//! - **route**: host + path prefix (+ listener filter) -> weighted backends.
//! - **backend**: one weighted target of a route: a site or a service.
//! - **site**: a directory of static files served with web-app defaults.
//! - **service**: an upstream application, made of regions.
//! - **region**: an ordered group of endpoints (failover goes region by region).
//! - **endpoint**: one `IP:PORT` of a service (a DNS name gives several).
//! - **snapshot**: the compiled, immutable runtime form of one config generation.
//! - **rollout**: a progressive shift of weight from one backend to another.

pub mod admin;
pub mod app;
pub mod balancer;
pub mod config;
pub mod drain;
pub mod http;
pub mod listener;
pub mod reload;
pub mod router;
pub mod site;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod upstream;
