//! Trailer fields through a real loopback socket: a request body's
//! trailers go in its last chunk (a body sent with a length leaves them),
//! and a chunked response's trailer section comes out as its body's last
//! frame, without the fields no trailer carries on.

use std::future::poll_fn;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in fields {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

/// A body of `data`, then `trailers`.
fn body(data: &'static str, trailers: HeaderMap, length: Option<u64>) -> Body {
    use http_body_util::BodyExt;
    Frames {
        frames: [
            Frame::data(Bytes::from_static(data.as_bytes())),
            Frame::trailers(trailers),
        ]
        .into(),
        length,
    }
    .boxed()
}

/// An upstream that reads one request (to the end of its body, as its
/// framing says), answers `response`, and gives back the request's bytes.
async fn upstream(
    response: Vec<u8>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the request ended: {raw:?}");
            raw.extend_from_slice(&chunk[..n]);
            let Some((len, framing)) = request_framing(&raw) else {
                continue;
            };
            let mut decoder = Decoder::new(framing, 64 * 1024);
            let mut body = BytesMut::from(&raw[len..]);
            let done = loop {
                match decoder.decode(&mut body).unwrap() {
                    Decoded::Data(_) => {}
                    Decoded::More => break false,
                    Decoded::End | Decoded::Trailers(_) => break true,
                }
            };
            if done {
                break;
            }
        }
        stream.write_all(&response).await.unwrap();
        let _ = tx.send(raw);
        // Held open: the response must end by its framing.
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    (addr, rx)
}

/// Sends a POST of `request_body` on a new connection to `addr`: the
/// response head and body.
async fn post(addr: std::net::SocketAddr, request_body: Body) -> (Response<()>, ResponseBody) {
    let headers = map(&[("host", "up")]);
    let outgoing = Outgoing {
        method: &Method::POST,
        target: "/t",
        headers: &headers,
        added: &[],
    };
    let conn = Connection::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let (response, _, body) = conn
        .send(outgoing, request_body, deadline)
        .await
        .expect("a response head");
    (response, body)
}

/// Sends a POST of `request_body` to an upstream answering `response`:
/// the request's bytes, the response body's data and trailers (or its
/// error), and whether the connection came back for reuse.
async fn exchange(
    request_body: Body,
    response: &[u8],
) -> (Vec<u8>, Result<(Vec<u8>, Option<HeaderMap>), String>, bool) {
    let (addr, upstream) = upstream(response.to_vec()).await;
    let (_, mut body) = post(addr, request_body).await;
    let mut data = Vec::new();
    let mut trailers = None;
    let got = loop {
        match poll_fn(|cx| body.poll_frame(cx)).await {
            None => break Ok((data, trailers)),
            Some(Err(e)) => break Err(e.to_string()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => {
                    assert!(trailers.is_none(), "two trailers frames");
                    trailers = Some(frame.into_trailers().expect("trailers"));
                }
            },
        }
    };
    let reusable = body.finished().is_some_and(|conn| conn.buf.is_empty());
    (upstream.await.expect("the request"), got, reusable)
}

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn a_request_bodys_trailers_go_in_its_last_chunk() {
    let trailers = map(&[
        ("x-checksum", "42"),
        ("content-length", "9"),
        ("grpc-status", "0"),
        ("connection", "close"),
        ("x-checksum", "43"),
    ]);
    let (addr, upstream) = upstream(ANSWER.to_vec()).await;
    let (response, _) = post(addr, body("hello", trailers, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let sent = upstream.await.unwrap();
    let sent = String::from_utf8(sent).unwrap();
    assert!(
        sent.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{sent:?}"
    );
    assert!(
        sent.ends_with(
            "\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: 42\r\nx-checksum: 43\r\ngrpc-status: 0\r\n\r\n"
        ),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_request_body_sent_with_its_length_leaves_its_trailers() {
    let trailers = map(&[("x-checksum", "42")]);
    let (sent, got, _) = exchange(body("hello", trailers, Some(5)), ANSWER).await;
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.contains("\r\ncontent-length: 5\r\n"), "{sent:?}");
    assert!(sent.ends_with("\r\n\r\nhello"), "{sent:?}");
    assert_eq!(got, Ok((b"ok".to_vec(), None)));
}

#[tokio::test]
async fn a_chunked_responses_trailers_are_its_last_frame() {
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, x-hop\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 42\r\nX-Hop: 1\r\nContent-Length: 3\r\nGrpc-Message: a b\r\n\r\n";
    let (_, got, reusable) = exchange(body("x", HeaderMap::new(), None), response).await;
    let (data, trailers) = got.expect("a body");
    assert_eq!(data, b"hello");
    assert_eq!(
        trailers,
        Some(map(&[("x-checksum", "42"), ("grpc-message", "a b")])),
        "what the head's Connection names, and the length, left out"
    );
    assert!(reusable, "the connection is reused after its trailers");
    // Only fields that may not go on: no trailers frame at all.
    let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n";
    let (_, got, reusable) = exchange(body("x", HeaderMap::new(), None), response).await;
    assert_eq!(got, Ok((b"a".to_vec(), None)));
    assert!(reusable);
}

#[tokio::test]
async fn an_upstreams_trailer_section_over_the_limit_fails_its_body() {
    let mut response =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Big: ".to_vec();
    response.extend(std::iter::repeat_n(b'b', MAX_HEAD));
    response.extend_from_slice(b"\r\n\r\n");
    let (_, got, reusable) = exchange(body("x", HeaderMap::new(), None), &response).await;
    let error = got.expect_err("the body fails");
    assert!(error.contains("trailers too long"), "{error}");
    assert!(!reusable);
    // A malformed one fails too.
    let response =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nno colon\r\n\r\n";
    let (_, got, reusable) = exchange(body("x", HeaderMap::new(), None), response).await;
    assert!(got.is_err(), "{got:?}");
    assert!(!reusable);
}
