//! Which endpoint of a region serves one attempt: the `load_balance` policy.
//!
//! Pure functions over the region's endpoints: no I/O, no locks and no
//! allocation per pick. The candidates of an attempt are the endpoints that
//! are healthy and whose address the request has not tried yet (an attempt
//! never goes twice to the same endpoint); with none left, `pick` returns
//! `None` and the caller decides (next region, panic mode, 503).
//!
//! - `round_robin`: a per-region [`Cursor`] walks the candidates, so every
//!   `n` picks over a stable set of `n` candidates reach each one once.
//! - `least_request`: power of two choices: two distinct candidates drawn at
//!   random, the one with fewer requests in flight wins.
//! - `hash:header:NAME`, `hash:cookie:NAME`, `hash:ip`: rendezvous (highest
//!   random weight) hashing of the request's key ([`hash_key`]) over the
//!   candidates. Removing an endpoint moves only the keys it had; an
//!   unhealthy or tried endpoint passes its keys to their second choice,
//!   spread over the rest. A request without a key (header or cookie absent)
//!   falls back to round robin.
//!
//! Hashes are FNV-1a with a 64-bit finalizer: fixed constants, so a key maps
//! to the same endpoint in every process, build and replica.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;
use http::header::COOKIE;
use http::header::{HeaderName, HeaderValue};

use crate::config::schema::LoadBalance;
use crate::upstream::endpoint::Endpoint;

#[cfg(test)]
mod tests;

/// Per-region picking state that lives across requests (the round-robin
/// cursor). Shared by all requests to the region; updated with one relaxed
/// atomic add per round-robin pick.
#[derive(Debug, Default)]
pub struct Cursor {
    next: AtomicUsize,
}

impl Cursor {
    pub fn new() -> Cursor {
        Cursor::default()
    }

    fn advance(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// The request's key for hash policies: the header's value
/// (`hash:header:NAME`, first value), the cookie's value (`hash:cookie:NAME`,
/// from every `Cookie` header, `name=value; other=x`, quotes around the
/// value dropped) or the client IP (`hash:ip`, an IPv4-mapped IPv6 address
/// counts as its IPv4 address).
///
/// `None` when the policy is not a hash policy, or the header or cookie is
/// absent or empty: the pick then falls back to round robin.
pub fn hash_key(policy: &LoadBalance, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
    match policy {
        LoadBalance::RoundRobin | LoadBalance::LeastRequest => None,
        LoadBalance::HashHeader(name) => value_key(headers.get(name.as_str())?),
        LoadBalance::HashCookie(name) => {
            let value = find_cookie(headers, name.as_bytes())?;
            (!value.is_empty()).then(|| hash_bytes(value))
        }
        LoadBalance::HashIp => Some(match client_ip.to_canonical() {
            IpAddr::V4(ip) => hash_bytes(&ip.octets()),
            IpAddr::V6(ip) => hash_bytes(&ip.octets()),
        }),
    }
}

/// [`hash_key`] of the request as it goes upstream: a field weir adds
/// (`added`, which stand in for the client's fields of those names) first.
pub fn upstream_hash_key(
    policy: &LoadBalance,
    headers: &HeaderMap,
    added: &[(HeaderName, HeaderValue)],
    client_ip: IpAddr,
) -> Option<u64> {
    if let LoadBalance::HashHeader(name) = policy
        && let Some((_, value)) = added
            .iter()
            .find(|(added, _)| added.as_str().eq_ignore_ascii_case(name))
    {
        return value_key(value);
    }
    hash_key(policy, headers, client_ip)
}

fn value_key(value: &HeaderValue) -> Option<u64> {
    let value = value.as_bytes().trim_ascii();
    (!value.is_empty()).then(|| hash_bytes(value))
}

/// Picks one endpoint among `endpoints` that is healthy and whose address is
/// not in `tried`. `None` when no candidate is left.
///
/// `key` is [`hash_key`]'s answer for the request; it is read by the hash
/// policies only, and a hash policy without a key uses round robin. The
/// random draws of `least_request` come from fastrand's thread-local
/// generator; [`pick_with_rng`] takes a generator instead.
pub fn pick<'a>(
    policy: &LoadBalance,
    endpoints: &'a [Arc<Endpoint>],
    key: Option<u64>,
    tried: &[SocketAddr],
    cursor: &Cursor,
) -> Option<&'a Arc<Endpoint>> {
    pick_by(policy, endpoints, key, tried, cursor, |n| {
        fastrand::usize(..n)
    })
}

/// [`pick`] with the random draws of `least_request` taken from `rng`
/// (deterministic with a seeded generator).
pub fn pick_with_rng<'a>(
    policy: &LoadBalance,
    endpoints: &'a [Arc<Endpoint>],
    key: Option<u64>,
    tried: &[SocketAddr],
    cursor: &Cursor,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Endpoint>> {
    pick_by(policy, endpoints, key, tried, cursor, |n| rng.usize(..n))
}

/// `draw(n)` returns a uniform index in `0..n` (`n >= 1`).
fn pick_by<'a>(
    policy: &LoadBalance,
    endpoints: &'a [Arc<Endpoint>],
    key: Option<u64>,
    tried: &[SocketAddr],
    cursor: &Cursor,
    draw: impl FnMut(usize) -> usize,
) -> Option<&'a Arc<Endpoint>> {
    let hashed = matches!(
        policy,
        LoadBalance::HashHeader(_) | LoadBalance::HashCookie(_) | LoadBalance::HashIp
    );
    match (policy, key) {
        (LoadBalance::LeastRequest, _) => least_request(endpoints, tried, draw),
        (_, Some(key)) if hashed => rendezvous(endpoints, tried, key),
        _ => round_robin(endpoints, tried, cursor),
    }
}

fn is_candidate(endpoint: &Endpoint, tried: &[SocketAddr]) -> bool {
    endpoint.is_healthy() && !tried.contains(&endpoint.addr)
}

fn candidates<'a>(
    endpoints: &'a [Arc<Endpoint>],
    tried: &[SocketAddr],
) -> impl Iterator<Item = &'a Arc<Endpoint>> {
    endpoints.iter().filter(move |e| is_candidate(e, tried))
}

/// The `n`-th candidate; if health changed since the candidates were
/// counted and there is no `n`-th any more, the first one left.
fn nth_candidate<'a>(
    endpoints: &'a [Arc<Endpoint>],
    tried: &[SocketAddr],
    n: usize,
) -> Option<&'a Arc<Endpoint>> {
    candidates(endpoints, tried)
        .nth(n)
        .or_else(|| candidates(endpoints, tried).next())
}

fn round_robin<'a>(
    endpoints: &'a [Arc<Endpoint>],
    tried: &[SocketAddr],
    cursor: &Cursor,
) -> Option<&'a Arc<Endpoint>> {
    let count = candidates(endpoints, tried).count();
    if count == 0 {
        return None;
    }
    nth_candidate(endpoints, tried, cursor.advance() % count)
}

fn least_request<'a>(
    endpoints: &'a [Arc<Endpoint>],
    tried: &[SocketAddr],
    mut draw: impl FnMut(usize) -> usize,
) -> Option<&'a Arc<Endpoint>> {
    let count = candidates(endpoints, tried).count();
    match count {
        0 => None,
        1 => nth_candidate(endpoints, tried, 0),
        _ => {
            // Two distinct indices in 0..count.
            let first = draw(count);
            let mut second = draw(count - 1);
            if second >= first {
                second += 1;
            }
            let (mut a, mut b) = (None, None);
            for (i, endpoint) in candidates(endpoints, tried).enumerate() {
                if i == first {
                    a = Some(endpoint);
                } else if i == second {
                    b = Some(endpoint);
                }
            }
            match (a, b) {
                // Ties go to the first draw, itself uniform.
                (Some(a), Some(b)) => Some(if b.in_flight() < a.in_flight() { b } else { a }),
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => nth_candidate(endpoints, tried, 0),
            }
        }
    }
}

fn rendezvous<'a>(
    endpoints: &'a [Arc<Endpoint>],
    tried: &[SocketAddr],
    key: u64,
) -> Option<&'a Arc<Endpoint>> {
    let mut best: Option<(u64, &'a Arc<Endpoint>)> = None;
    for endpoint in candidates(endpoints, tried) {
        let score = score(key, &endpoint.addr);
        // Strictly greater: on an (improbable) tie the first endpoint in
        // order wins, deterministically.
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, endpoint));
        }
    }
    best.map(|(_, endpoint)| endpoint)
}

/// The rendezvous weight of `addr` for `key`: a 128-bit multiply of the two
/// hashes folded to 64 bits, then finalized, so every bit of both inputs
/// moves every bit of the score.
fn score(key: u64, addr: &SocketAddr) -> u64 {
    let product = u128::from(key ^ 0xa076_1d64_78bd_642f)
        * u128::from(hash_addr(addr) ^ 0xe703_7ed1_a0b4_28db);
    fmix64((product as u64) ^ ((product >> 64) as u64))
}

/// A stable hash of an endpoint's address (IP and port; an IPv6 scope id
/// counts too, as two scopes are two endpoints).
fn hash_addr(addr: &SocketAddr) -> u64 {
    let mut h = Fnv1a::new();
    match addr {
        SocketAddr::V4(a) => {
            h.write(&[4]);
            h.write(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            h.write(&[6]);
            h.write(&a.ip().octets());
            h.write(&a.scope_id().to_be_bytes());
        }
    }
    h.write(&addr.port().to_be_bytes());
    h.finish()
}

/// The value of cookie `name` in the request's `Cookie` header(s), trimmed
/// and without surrounding double quotes. The first occurrence wins.
fn find_cookie<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            (pair[..eq].trim_ascii() == name).then(|| unquote(pair[eq + 1..].trim_ascii()))
        })
}

fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// FNV-1a over `bytes`, finalized.
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    h.finish()
}

/// 64-bit FNV-1a; `finish` runs the MurmurHash3 finalizer over it, because
/// FNV's low bits mix poorly for short, similar inputs (addresses that
/// differ in one octet).
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Fnv1a {
        Fnv1a(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

/// MurmurHash3's 64-bit finalizer (a bijection with full avalanche).
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}
