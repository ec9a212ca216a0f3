use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http_body::Frame;
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::Coding::{self, Brotli, Gzip, Identity, Zstd};
use super::*;
use crate::config::schema::Encoding;
use crate::http::body::Body;

const CODINGS: [Coding; 3] = [Brotli, Zstd, Gzip];
const ALL: &[Coding] = &[Brotli, Zstd, Gzip];

// ---- negotiation ----

#[test]
fn negotiation_table() {
    #[rustfmt::skip]
    let table: &[(&[&str], &[Coding], Option<Coding>)] = &[
        // No preference expressed: identity.
        (&[], ALL, Some(Identity)),
        (&[""], ALL, Some(Identity)),
        (&["   "], ALL, Some(Identity)),
        // Plain lists: server preference breaks the q=1 tie.
        (&["gzip"], ALL, Some(Gzip)),
        (&["br"], ALL, Some(Brotli)),
        (&["gzip, br"], ALL, Some(Brotli)),
        (&["gzip, deflate, br, zstd"], ALL, Some(Brotli)),
        (&["gzip, br, zstd"], &[Gzip, Zstd, Brotli], Some(Gzip)),
        (&["zstd, br;q=0.9"], ALL, Some(Zstd)),
        // q-values beat server preference.
        (&["br;q=1, gzip;q=0.5"], ALL, Some(Brotli)),
        (&["br;q=0.5, gzip;q=1"], ALL, Some(Gzip)),
        (&["br;q=0.8, zstd;q=0.8, gzip;q=0.9"], ALL, Some(Gzip)),
        (&["br;q=0.8, zstd;q=0.8, gzip;q=0.7"], &[Zstd, Brotli, Gzip], Some(Zstd)),
        (&["br;q=0.001"], ALL, Some(Brotli)),
        (&["br;q=1.000"], ALL, Some(Brotli)),
        (&["gzip;q=0."], ALL, Some(Identity)),
        // q=0 forbids.
        (&["br;q=0, gzip"], ALL, Some(Gzip)),
        (&["br;q=0"], ALL, Some(Identity)),
        // `*` covers codings not named.
        (&["*"], ALL, Some(Brotli)),
        (&["*"], &[Gzip], Some(Gzip)),
        (&["*;q=0.5, gzip;q=0.6"], ALL, Some(Gzip)),
        (&["*;q=0.7, gzip;q=0.6"], ALL, Some(Brotli)),
        (&["br;q=0, *"], ALL, Some(Zstd)),
        (&["*;q=0, gzip"], ALL, Some(Gzip)),
        // identity: the fallback, unless forbidden or preferred.
        (&["identity"], ALL, Some(Identity)),
        (&["identity;q=0"], ALL, None),
        (&["identity;q=0, gzip"], ALL, Some(Gzip)),
        (&["identity;q=1, gzip;q=0.5"], ALL, Some(Identity)),
        (&["identity, gzip"], ALL, Some(Gzip)),
        (&["*;q=0"], ALL, None),
        (&["*;q=0, identity"], ALL, Some(Identity)),
        (&["*;q=0, identity;q=0.1"], ALL, Some(Identity)),
        (&["br;q=0, gzip;q=0, zstd;q=0"], ALL, Some(Identity)),
        (&["br;q=0, gzip;q=0, zstd;q=0, identity;q=0"], ALL, None),
        // Case and whitespace.
        (&["BR"], ALL, Some(Brotli)),
        (&["GZip;Q=0.5, Br;q=0.4"], ALL, Some(Gzip)),
        (&["  br ; q=0.2 ,\tgzip ; q = 0.3 "], ALL, Some(Gzip)),
        (&["IDENTITY;q=0, *;Q=0"], ALL, None),
        // Several header values are one list.
        (&["br;q=0.5", "gzip;q=0.9"], ALL, Some(Gzip)),
        (&["deflate", "gzip"], ALL, Some(Gzip)),
        (&["identity;q=0", "*;q=0"], ALL, None),
        // Aliases and unknown codings.
        (&["x-gzip"], ALL, Some(Gzip)),
        (&["X-GZIP;q=0.5, br;q=0.4"], ALL, Some(Gzip)),
        (&["compress, deflate, sdch"], ALL, Some(Identity)),
        (&["b r, gzip;q=0.5"], ALL, Some(Gzip)),
        (&["br;level=5;q=0.5, gzip;q=0.4"], ALL, Some(Brotli)),
        // Malformed entries are skipped, not fatal.
        (&["br;q=abc, gzip;q=0.1"], ALL, Some(Gzip)),
        (&["br;q=2, gzip;q=0.1"], ALL, Some(Gzip)),
        (&["br;q=abc"], ALL, Some(Identity)),
        (&["br;q=1.0001"], ALL, Some(Identity)),
        (&["br;q=1.5"], ALL, Some(Identity)),
        (&["gzip;q=-0.5"], ALL, Some(Identity)),
        (&["gzip;q=.5"], ALL, Some(Identity)),
        (&["gzip;q="], ALL, Some(Identity)),
        (&["gzip;q"], ALL, Some(Identity)),
        (&["identity;q=zero"], ALL, Some(Identity)),
        (&[",,, ,gzip,"], ALL, Some(Gzip)),
        (&[";;;, =, ;q=1, gzip"], ALL, Some(Gzip)),
        (&["gzip, \u{ff}br"], ALL, Some(Gzip)),
        // The first mention of a coding counts.
        (&["br;q=0.5, br;q=0"], ALL, Some(Brotli)),
        (&["br;q=0, br"], ALL, Some(Identity)),
        // Only offered codings are chosen.
        (&["gzip"], &[Brotli, Zstd], Some(Identity)),
        (&["gzip"], &[], Some(Identity)),
        (&["*"], &[], Some(Identity)),
        (&["identity;q=0"], &[], None),
    ];
    for (values, offered, want) in table {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_bytes(v.as_bytes()).expect("test header value"))
            .collect();
        let got = negotiate(values.iter(), offered);
        assert_eq!(
            got, *want,
            "Accept-Encoding {values:?}, offered {offered:?}"
        );
    }
}

#[test]
fn negotiation_reads_a_bounded_number_of_entries() {
    let filler = (0..64)
        .map(|i| format!("x-{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let late = HeaderValue::from_str(&format!("{filler}, br")).unwrap();
    assert_eq!(negotiate([&late].into_iter(), ALL), Some(Identity));
    let early = HeaderValue::from_str(&format!("br, {filler}")).unwrap();
    assert_eq!(negotiate([&early].into_iter(), ALL), Some(Brotli));
}

#[test]
fn negotiation_reads_non_utf8_values() {
    let value = HeaderValue::from_bytes(b"\xfe\xff, gzip").unwrap();
    assert_eq!(negotiate([&value].into_iter(), ALL), Some(Gzip));
}

proptest! {
    #[test]
    fn negotiation_never_panics_and_picks_an_offer(
        values in prop::collection::vec("[ -~\t]{0,80}", 0..4),
        offered in prop::sample::subsequence(ALL.to_vec(), 0..=3),
    ) {
        let values: Vec<HeaderValue> = values
            .iter()
            .filter_map(|v| HeaderValue::from_str(v).ok())
            .collect();
        if let Some(coding) = negotiate(values.iter(), &offered) {
            prop_assert!(coding == Identity || offered.contains(&coding));
        }
    }
}

// ---- what to compress ----

#[test]
fn compressible_table() {
    let table = [
        ("text/html; charset=utf-8", true),
        ("TEXT/CSS", true),
        (" text/css ; charset=utf-8", true),
        ("text/plain", true),
        ("text/javascript; charset=utf-8", true),
        ("application/javascript", true),
        ("application/json", true),
        ("application/manifest+json", true),
        ("application/ld+json", true),
        ("application/xml", true),
        ("application/atom+xml", true),
        ("image/svg+xml", true),
        ("application/wasm", true),
        ("font/ttf", true),
        ("font/otf", true),
        ("application/vnd.ms-fontobject", true),
        ("image/png", false),
        ("image/jpeg", false),
        ("image/webp", false),
        ("image/avif", false),
        ("image/gif", false),
        ("video/mp4", false),
        ("audio/mpeg", false),
        ("font/woff", false),
        ("font/woff2", false),
        ("application/font-woff", false),
        ("application/zip", false),
        ("application/gzip", false),
        ("application/x-gzip", false),
        ("application/x-brotli", false),
        ("application/zstd", false),
        ("application/x-7z-compressed", false),
        ("application/vnd.rar", false),
        ("application/x-rar-compressed", false),
        ("application/x-bzip2", false),
        ("application/x-xz", false),
        ("application/pdf", false),
        ("application/epub+zip", false),
        ("application/octet-stream", false),
        ("", false),
        ("text", false),
        ("text/", false),
        ("garbage;;;", false),
    ];
    for (content_type, want) in table {
        assert_eq!(compressible(content_type), want, "{content_type:?}");
    }
}

#[test]
fn no_transform_table() {
    let table: &[(&[&str], bool)] = &[
        (&[], false),
        (&["no-transform"], true),
        (&["public, No-Transform"], true),
        (&["max-age=60", " NO-TRANSFORM "], true),
        (&["public,no-transform,max-age=5"], true),
        (&["max-age=60"], false),
        (&["no-transformer"], false),
        (&["private=\"no-transform\""], false),
        (&["no-store"], false),
    ];
    for (values, want) in table {
        let mut headers = HeaderMap::new();
        for v in *values {
            headers.append(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        assert_eq!(no_transform(&headers), *want, "{values:?}");
    }
}

// ---- codings and headers ----

#[test]
fn coding_tokens_and_suffixes() {
    let table = [
        (Identity, "identity", None),
        (Brotli, "br", Some(".br")),
        (Zstd, "zstd", Some(".zst")),
        (Gzip, "gzip", Some(".gz")),
    ];
    for (coding, token, suffix) in table {
        assert_eq!(coding.token(), token);
        assert_eq!(coding.sidecar_suffix(), suffix);
    }
    assert_eq!(Coding::from_config(Encoding::Brotli), Brotli);
    assert_eq!(Coding::from_config(Encoding::Zstd), Zstd);
    assert_eq!(Coding::from_config(Encoding::Gzip), Gzip);
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn all<'a>(map: &'a HeaderMap, name: &header::HeaderName) -> Vec<&'a str> {
    map.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[test]
fn mark_sets_encoding_and_keeps_length_when_buffered() {
    let mut map = headers(&[(header::CONTENT_LENGTH, "10")]);
    mark(&mut map, Gzip, false);
    assert_eq!(all(&map, &header::CONTENT_ENCODING), ["gzip"]);
    assert_eq!(all(&map, &header::CONTENT_LENGTH), ["10"]);
    assert_eq!(all(&map, &header::VARY), ["Accept-Encoding"]);
}

#[test]
fn mark_drops_length_and_ranges_when_streaming() {
    let mut map = headers(&[
        (header::CONTENT_LENGTH, "10"),
        (header::ACCEPT_RANGES, "bytes"),
        (header::CONTENT_ENCODING, "identity"),
    ]);
    mark(&mut map, Brotli, true);
    assert_eq!(all(&map, &header::CONTENT_ENCODING), ["br"]);
    assert!(map.get(header::CONTENT_LENGTH).is_none());
    assert!(map.get(header::ACCEPT_RANGES).is_none());
    assert_eq!(all(&map, &header::VARY), ["Accept-Encoding"]);
}

#[test]
fn mark_identity_only_adds_vary() {
    let mut map = headers(&[
        (header::CONTENT_LENGTH, "10"),
        (header::ACCEPT_RANGES, "bytes"),
    ]);
    mark(&mut map, Identity, true);
    assert!(map.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(all(&map, &header::CONTENT_LENGTH), ["10"]);
    assert_eq!(all(&map, &header::ACCEPT_RANGES), ["bytes"]);
    assert_eq!(all(&map, &header::VARY), ["Accept-Encoding"]);
}

#[test]
fn vary_table() {
    let table: &[(&[&str], &[&str])] = &[
        (&[], &["Accept-Encoding"]),
        (&["Origin"], &["Origin, Accept-Encoding"]),
        (&["Origin", "Cookie"], &["Origin, Cookie, Accept-Encoding"]),
        (&["Origin,  ,Cookie"], &["Origin, Cookie, Accept-Encoding"]),
        (&["accept-encoding"], &["accept-encoding"]),
        (
            &["Origin", "Accept-Encoding"],
            &["Origin", "Accept-Encoding"],
        ),
        (&["Origin, ACCEPT-ENCODING"], &["Origin, ACCEPT-ENCODING"]),
        (&["*"], &["*"]),
        (&[""], &["Accept-Encoding"]),
    ];
    for (before, after) in table {
        let mut map = HeaderMap::new();
        for v in *before {
            map.append(header::VARY, HeaderValue::from_str(v).unwrap());
        }
        add_vary_accept_encoding(&mut map);
        add_vary_accept_encoding(&mut map);
        assert_eq!(all(&map, &header::VARY), *after, "Vary {before:?}");
    }
}

// ---- encoders ----

/// A body that hands out fixed chunks, always ready, counting what it gave.
struct Chunks {
    chunks: VecDeque<Bytes>,
    pulled: Arc<AtomicUsize>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let chunk = self.chunks.pop_front();
        if let Some(chunk) = &chunk {
            self.pulled.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn chunked(data: &[u8], sizes: &[usize]) -> (Body, Arc<AtomicUsize>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut chunks = VecDeque::new();
    let mut rest = Bytes::copy_from_slice(data);
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        chunks.push_back(rest.split_to((*size).clamp(1, rest.len())));
    }
    let body = Chunks {
        chunks,
        pulled: pulled.clone(),
    };
    (body.boxed(), pulled)
}

/// A body fed by a channel: pending until the test sends or hangs up.
struct Channel(mpsc::Receiver<io::Result<Bytes>>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

fn decoder<'a>(
    input: impl tokio::io::AsyncBufRead + Unpin + Send + 'a,
    coding: Coding,
) -> Pin<Box<dyn AsyncRead + Send + 'a>> {
    match coding {
        Identity => Box::pin(input),
        Brotli => Box::pin(BrotliDecoder::new(input)),
        Zstd => Box::pin(ZstdDecoder::new(input)),
        Gzip => Box::pin(GzipDecoder::new(input)),
    }
}

async fn decode(data: &[u8], coding: Coding) -> Vec<u8> {
    let mut out = Vec::new();
    decoder(data, coding)
        .read_to_end(&mut out)
        .await
        .expect("decodes");
    out
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Text that compresses well without being one repeated byte.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {line:08}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        line += 1;
    }
    out.truncate(len);
    out
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64 * 1024),
        (0usize..64 * 1024).prop_map(text),
        ("[a-z <>/]{1,40}", 0usize..2048).prop_map(|(unit, times)| unit.repeat(times).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compress_round_trips(data in input()) {
        for coding in CODINGS {
            let packed = compress(&data, coding).expect("compresses");
            prop_assert_eq!(block_on(decode(&packed, coding)), data.clone(), "{:?}", coding);
        }
    }

    #[test]
    fn compress_stream_round_trips(
        data in input(),
        sizes in prop::collection::vec(1usize..20_000, 1..8),
    ) {
        for coding in CODINGS {
            let (body, pulled) = chunked(&data, &sizes);
            let packed = block_on(compress_stream(body, coding).collect())
                .expect("streams")
                .to_bytes();
            prop_assert_eq!(pulled.load(Ordering::Relaxed), data.len());
            prop_assert_eq!(block_on(decode(&packed, coding)), data.clone(), "{:?}", coding);
        }
    }
}

#[test]
fn identity_passes_through() {
    let data = text(5000);
    assert_eq!(compress(&data, Identity).unwrap(), data);
    let (body, _) = chunked(&data, &[100]);
    let out = block_on(compress_stream(body, Identity).collect()).unwrap();
    assert_eq!(out.to_bytes(), data);
}

#[test]
fn empty_input_round_trips() {
    for coding in CODINGS {
        let packed = compress(b"", coding).unwrap();
        assert!(
            !packed.is_empty(),
            "{coding:?}: a coded empty body has a frame"
        );
        assert_eq!(block_on(decode(&packed, coding)), b"");
        let streamed = block_on(compress_stream(crate::http::body::empty(), coding).collect());
        let streamed = streamed.unwrap().to_bytes();
        assert_eq!(block_on(decode(&streamed, coding)), b"", "{coding:?}");
    }
}

#[test]
fn compression_shrinks_text() {
    let data = text(64 * 1024);
    for coding in CODINGS {
        let packed = compress(&data, coding).unwrap();
        assert!(
            packed.len() < data.len() / 4,
            "{coding:?}: {}",
            packed.len()
        );
    }
}

/// Each output chunk is flushed as soon as the input stalls, so a slow
/// upstream's first bytes reach the client before its body ends: the first
/// compressed frame alone decodes to the first input chunk.
#[tokio::test]
async fn first_output_arrives_before_input_ends() {
    for coding in CODINGS {
        let (tx, rx) = mpsc::channel(4);
        let mut out = compress_stream(Channel(rx).boxed(), coding);
        let first = text(4096);
        tx.send(Ok(Bytes::from(first.clone()))).await.unwrap();

        let frame = tokio::time::timeout(Duration::from_secs(10), out.frame())
            .await
            .unwrap_or_else(|_| panic!("{coding:?}: no output while the input is open"))
            .expect("a frame")
            .expect("no error");
        let head = frame.into_data().expect("data");

        // Decode that frame alone, with the stream still open behind it.
        let (mut write, read) = tokio::io::duplex(1 << 20);
        write.write_all(&head).await.unwrap();
        let mut decoded = vec![0; first.len()];
        tokio::time::timeout(
            Duration::from_secs(10),
            decoder(BufReader::new(read), coding).read_exact(&mut decoded),
        )
        .await
        .unwrap_or_else(|_| panic!("{coding:?}: first frame does not hold the first chunk"))
        .unwrap();
        assert_eq!(decoded, first, "{coding:?}");

        let second = text(10_000);
        tx.send(Ok(Bytes::from(second.clone()))).await.unwrap();
        drop(tx);
        let tail = out.collect().await.unwrap().to_bytes();
        let whole = [head.as_ref(), tail.as_ref()].concat();
        assert_eq!(decode(&whole, coding).await, [first, second].concat());
    }
}

#[tokio::test]
async fn input_errors_reach_the_output() {
    for coding in CODINGS {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Bytes::from(text(1000)))).await.unwrap();
        tx.send(Err(io::Error::other("upstream reset")))
            .await
            .unwrap();
        drop(tx);
        let err = compress_stream(Channel(rx).boxed(), coding)
            .collect()
            .await
            .expect_err("the error surfaces");
        assert!(
            err.to_string().contains("upstream reset"),
            "{coding:?}: {err}"
        );
    }
}

/// 8 MiB through the streaming encoder. With an input that is always ready
/// the encoder fills one output buffer (32 KiB) before it yields a frame, so
/// at ~100:1 the first frame comes after a few MiB of input; what matters is
/// that it comes before the end, and that frames stay small.
#[tokio::test]
async fn large_body_streams_in_bounded_frames() {
    const TOTAL: usize = 8 << 20;
    let data = text(TOTAL);
    for coding in CODINGS {
        let (body, pulled) = chunked(&data, &[64 * 1024]);
        let mut out = compress_stream(body, coding);
        let mut packed = Vec::new();
        let mut pulled_at_frames = Vec::new();
        while let Some(frame) = out.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(
                chunk.len() <= 256 * 1024,
                "{coding:?}: frame of {}",
                chunk.len()
            );
            pulled_at_frames.push(pulled.load(Ordering::Relaxed));
            packed.extend_from_slice(&chunk);
        }
        let before_end = pulled_at_frames.iter().filter(|&&p| p < TOTAL).count();
        assert!(
            before_end >= 1,
            "{coding:?}: no output before the input was used up: {pulled_at_frames:?}"
        );
        assert_eq!(pulled.load(Ordering::Relaxed), TOTAL);
        assert!(decode(&packed, coding).await == data, "{coding:?}");
    }
}
