//! Version affinity and the override header: which backend a request goes
//! to before the weighted split gets a say.
//!
//! Order (SPEC "Details"): a valid `override_header` naming an available
//! backend wins (weight 0 allowed: that is how a canary is tested), then a
//! valid affinity cookie naming a backend with effective weight > 0, then
//! the split. Only a choice made by the split sets a cookie, so a client
//! whose pinned backend went to weight 0 or lost its last healthy endpoint
//! is re-pinned by weight.
//!
//! The cookie value is `NAME.SIG`: the backend *name* (so a pin survives a
//! reload that keeps that backend) and a truncated HMAC-SHA256 of route
//! name and backend name, so a client can't pick a backend by editing the
//! cookie, nor move a pin from one route to another. The key is a random
//! 32-byte secret made at first use and kept for the life of the process:
//! pins survive reloads but not a restart (the client is then re-pinned by
//! weight, which is harmless). A configured secret, for pins that survive
//! restarts and are shared by replicas, can come later.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use ring::hmac;

use super::{Backend, Split};

/// Bytes of the HMAC tag kept in the cookie: 128 bits is plenty against
/// forging, and it keeps the cookie short.
const TAG_BYTES: usize = 16;
/// `TAG_BYTES` in unpadded base64url.
const TAG_CHARS: usize = (TAG_BYTES * 8).div_ceil(6);

/// A route's `affinity = { cookie, max_age }`, compiled.
#[derive(Debug)]
pub struct Affinity {
    cookie: Box<str>,
    /// Everything after the value except `Secure`, which depends on the
    /// connection: `; Path=/; HttpOnly; SameSite=Lax[; Max-Age=N]`.
    attributes: Box<str>,
}

/// How the backend of a request was chosen.
#[derive(Debug, Clone, Copy)]
pub enum Choice<'a> {
    /// Named by the route's `override_header`.
    Forced(&'a Backend),
    /// Named by a valid affinity cookie.
    Pinned(&'a Backend),
    /// The weighted split's pick.
    Picked(&'a Backend),
}

impl Affinity {
    pub fn new(cookie: &str, max_age: Option<std::time::Duration>) -> Affinity {
        let mut attributes = String::from("; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            attributes.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        Affinity {
            cookie: cookie.into(),
            attributes: attributes.into(),
        }
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// The backend a request's cookie pins it to on `route`, if the cookie
    /// is there and its signature is valid. The first cookie of that name
    /// decides, as browsers send the most specific one first.
    pub fn pinned<'h>(&self, route: &str, headers: &'h HeaderMap) -> Option<&'h str> {
        let value = cookie_value(headers, &self.cookie)?;
        verify(route, value)
    }

    /// `Set-Cookie` pinning the client to `backend`; `None` when the name
    /// can't be carried in a cookie value.
    pub fn set_cookie(&self, route: &str, backend: &str, tls: bool) -> Option<HeaderValue> {
        if !backend.bytes().all(is_cookie_octet) {
            return None;
        }
        let secure = if tls { "; Secure" } else { "" };
        let text = format!(
            "{}={}{}{secure}",
            self.cookie,
            sign(route, backend),
            self.attributes
        );
        HeaderValue::try_from(text).ok()
    }
}

impl<'a> Choice<'a> {
    pub fn backend(self) -> &'a Backend {
        match self {
            Choice::Forced(b) | Choice::Pinned(b) | Choice::Picked(b) => b,
        }
    }
}

/// Chooses the backend of a request on a route named `route`; `None` when
/// the split has nothing to offer (every backend weight 0 or down). Costs
/// nothing over `split.pick()` when the route has neither feature.
pub fn choose<'a>(
    route: &str,
    split: &'a Split,
    affinity: Option<&Affinity>,
    override_header: Option<&HeaderName>,
    headers: &HeaderMap,
) -> Option<Choice<'a>> {
    let named = |name: &[u8]| split.backends().iter().find(|b| b.name.as_bytes() == name);
    if let Some(forced) = override_header
        .and_then(|h| headers.get(h))
        .and_then(|v| named(v.as_bytes()))
        .filter(|b| b.available())
    {
        return Some(Choice::Forced(forced));
    }
    if let Some(pinned) = affinity
        .and_then(|a| a.pinned(route, headers))
        .and_then(|name| {
            let i = split.backends().iter().position(|b| &*b.name == name)?;
            split
                .backends()
                .get(i)
                .filter(|_| split.effective_weight(i) > 0)
        })
    {
        return Some(Choice::Pinned(pinned));
    }
    split.pick().map(Choice::Picked)
}

/// The environment variable holding a signing key shared by replicas.
pub const KEY_ENV: &str = "WEIR_AFFINITY_KEY";

/// The shortest `WEIR_AFFINITY_KEY` taken.
const MIN_KEY_BYTES: usize = 16;

/// `WEIR_AFFINITY_KEY`, when set: an error if it is too short to be a key.
pub fn key_from_env() -> Result<Option<String>, String> {
    match std::env::var(KEY_ENV) {
        Ok(secret) if secret.len() >= MIN_KEY_BYTES => Ok(Some(secret)),
        Ok(_) => Err(format!(
            "{KEY_ENV} must be at least {MIN_KEY_BYTES} bytes (a random secret shared by every replica)"
        )),
        Err(_) => Ok(None),
    }
}

/// The process-wide signing key, made on first use: `WEIR_AFFINITY_KEY`,
/// so that every replica (and the next process) honours the pins of the
/// others, or else a random one of this process's own.
fn key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        if let Ok(Some(secret)) = key_from_env() {
            return hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        }
        let rng = ring::rand::SystemRandom::new();
        // 32 bytes from the OS generator; failing here means the OS has no
        // randomness to give, and nothing secure can run.
        hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .expect("system randomness for the affinity key")
    })
}

/// The base64url tag of `route`'s pin to `backend`.
fn tag(route: &str, backend: &str) -> [u8; TAG_CHARS] {
    let mut ctx = hmac::Context::with_key(key());
    ctx.update(route.as_bytes());
    ctx.update(b"\0");
    ctx.update(backend.as_bytes());
    let full = ctx.sign();
    base64url(&full.as_ref()[..TAG_BYTES])
}

/// The cookie value `NAME.SIG` pinning a client to `backend` on `route`.
pub fn sign(route: &str, backend: &str) -> String {
    let tag = tag(route, backend);
    let mut value = String::with_capacity(backend.len() + 1 + TAG_CHARS);
    value.push_str(backend);
    value.push('.');
    // base64url output is ASCII.
    value.extend(tag.iter().map(|&b| char::from(b)));
    value
}

/// The backend named by a cookie value when its signature for `route` is
/// valid. The tag is compared in constant time; `hmac::verify` can't be
/// used as it wants the whole 32-byte tag and the cookie keeps 16.
pub fn verify<'v>(route: &str, value: &'v str) -> Option<&'v str> {
    let (backend, sig) = value.rsplit_once('.')?;
    if backend.is_empty() || sig.len() != TAG_CHARS {
        return None;
    }
    let want = tag(route, backend);
    let diff = want
        .iter()
        .zip(sig.as_bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    (std::hint::black_box(diff) == 0).then_some(backend)
}

/// The value of the first cookie called `name` in the request's `Cookie`
/// headers (HTTP/2 may send one header per cookie).
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// RFC 6265 `cookie-octet`: what a cookie value may hold unquoted.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

/// Unpadded base64url of exactly `TAG_BYTES` bytes.
fn base64url(bytes: &[u8]) -> [u8; TAG_CHARS] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = [0u8; TAG_CHARS];
    let mut acc = 0u32;
    let mut bits = 0;
    let mut n = 0;
    for &byte in bytes {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out[n] = ALPHABET[((acc >> bits) & 63) as usize];
            n += 1;
        }
    }
    if bits > 0 {
        out[n] = ALPHABET[((acc << (6 - bits)) & 63) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_the_rfc_alphabet() {
        // 16 bytes of 0xfb 0xff ... exercise '-' and '_'.
        let out = base64url(&[0xfb; TAG_BYTES]);
        assert_eq!(&out, b"-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(&base64url(&[0; TAG_BYTES]), b"AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn signed_values_verify_only_for_their_route_and_backend() {
        let value = sign("app", "green");
        assert_eq!(verify("app", &value), Some("green"));
        assert_eq!(verify("other", &value), None, "bound to the route");
        let forged = value.replacen("green", "blue", 1);
        assert_eq!(verify("app", &forged), None, "name swapped");
        let mut flipped = value.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(verify("app", std::str::from_utf8(&flipped).unwrap()), None);
        for bad in [
            "",
            "green",
            "green.",
            ".AAAA",
            "b.AAAA",
            "green.AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(verify("app", bad), None, "{bad:?}");
        }
        // Names with dots split at the last one.
        let dotted = sign("app", "api.v2");
        assert_eq!(verify("app", &dotted), Some("api.v2"));
    }

    #[test]
    fn reads_the_named_cookie_from_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; weir=x.y"));
        headers.append(header::COOKIE, HeaderValue::from_static("weir=second"));
        assert_eq!(cookie_value(&headers, "weir"), Some("x.y"));
        assert_eq!(cookie_value(&headers, "a"), Some("1"));
        assert_eq!(cookie_value(&headers, "we"), None);
    }

    #[test]
    fn set_cookie_carries_the_attributes() {
        let a = Affinity::new("weir_api", Some(std::time::Duration::from_secs(3600)));
        let plain = a.set_cookie("r", "green", false).unwrap();
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("weir_api=green."), "{plain}");
        assert!(
            plain.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600"),
            "{plain}"
        );
        let tls = a.set_cookie("r", "green", true).unwrap();
        assert!(tls.to_str().unwrap().ends_with("; Secure"));
        let session = Affinity::new("s", None)
            .set_cookie("r", "b", false)
            .unwrap();
        assert!(!session.to_str().unwrap().contains("Max-Age"));
        assert_eq!(a.set_cookie("r", "bad name", false), None);
    }
}
