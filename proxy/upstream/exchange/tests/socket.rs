//! A response body through a real loopback socket, written by the
//! upstream in pieces: read exactly, or an error when cut short.

use std::future::poll_fn;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::request::Sent;
use super::*;

/// How the upstream frames the body it sends.
#[derive(Debug, Clone)]
enum Framed {
    Length,
    /// Chunks of these sizes in turn, some with an extension, hex digits
    /// in either case, a trailer field after the last.
    Chunked {
        sizes: Vec<usize>,
        extensions: bool,
        upper: bool,
        trailers: bool,
    },
    UntilClose,
    /// An answer to HEAD: a length, and no body.
    Head,
}

/// How the upstream ends the exchange.
#[derive(Debug, Clone)]
enum Ending {
    /// Open for the next request.
    KeepAlive,
    /// Says `Connection: close`, and closes after the body.
    Close,
    /// Closes before the framed body's end, this far into it.
    CutShort(prop::sample::Index),
}

impl Framed {
    fn response(&self, body: &[u8], close: bool) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\nServer: up\r\n".to_vec();
        if close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        match self {
            Framed::Length | Framed::Head => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            }
            Framed::UntilClose => out.extend_from_slice(b"Connection: close\r\n\r\n"),
            Framed::Chunked { .. } => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
        }
        match self {
            Framed::Length | Framed::UntilClose => out.extend_from_slice(body),
            Framed::Head => {}
            Framed::Chunked {
                sizes,
                extensions,
                upper,
                trailers,
            } => {
                let mut rest = body;
                for (i, &size) in sizes.iter().cycle().enumerate() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, after) = rest.split_at(size.min(rest.len()));
                    rest = after;
                    let size = if *upper {
                        format!("{:X}", chunk.len())
                    } else {
                        format!("{:x}", chunk.len())
                    };
                    out.extend_from_slice(size.as_bytes());
                    if *extensions && i % 2 == 0 {
                        out.extend_from_slice(b";name=\"va;lue\"");
                    }
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n");
                if *trailers {
                    out.extend_from_slice(b"X-Checksum: 1\r\n");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }
}

fn framed() -> impl Strategy<Value = Framed> {
    let chunked = (
        prop::collection::vec(1..700usize, 1..5),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(sizes, extensions, upper, trailers)| Framed::Chunked {
            sizes,
            extensions,
            upper,
            trailers,
        });
    prop_oneof![1 => Just(Framed::Length), 2 => chunked, 1 => Just(Framed::UntilClose), 1 => Just(Framed::Head)]
}

/// The request body as the upstream read it, after the request head.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let framing = loop {
        assert!(
            stream.read_buf(&mut buf).await.unwrap() > 0,
            "closed in the request head"
        );
        if let Some((len, framing)) = request_framing(&buf) {
            let _ = buf.split_to(len);
            break framing;
        }
    };
    let mut decoder = Decoder::new(framing, 64 * 1024);
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buf).unwrap() {
            Decoded::Data(data) => body.extend_from_slice(&data),
            Decoded::End | Decoded::Trailers(_) => return body,
            Decoded::More => assert!(
                stream.read_buf(&mut buf).await.unwrap() > 0,
                "closed in the request body"
            ),
        }
    }
}

/// What one exchange over loopback gave.
#[derive(Debug)]
struct Through {
    /// The request body as the upstream read it.
    sent: Vec<u8>,
    /// The response body weir read, or the error that ended it.
    got: Result<Vec<u8>, String>,
    /// The trailers frame that ended it.
    trailers: Option<HeaderMap>,
    /// The body said it was at its end when it ended.
    ended: bool,
    /// The connection went back for reuse, nothing left in its buffer.
    reusable: bool,
}

async fn over_loopback(
    request: Sent,
    framed: Framed,
    ending: Ending,
    body: Vec<u8>,
    cuts: Vec<prop::sample::Index>,
) -> Through {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut response = framed.response(&body, matches!(ending, Ending::Close));
    if let Ending::CutShort(at) = ending {
        let head = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let framed_body = response.len() - head;
        if framed_body > 0 {
            response.truncate(head + at.index(framed_body));
        }
    }
    let close = matches!(framed, Framed::UntilClose) || !matches!(ending, Ending::KeepAlive);
    let upstream = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let sent = read_request(&mut stream).await;
        let mut ends = cut_at(&cuts, response.len());
        ends.push(response.len());
        ends.sort_unstable();
        let mut from = 0;
        for end in ends {
            stream.write_all(&response[from..end]).await.unwrap();
            from = end;
            // The exchange reads each piece before the next comes.
            tokio::task::yield_now().await;
        }
        if !close {
            // Held open: the body must end by its framing, not the close.
            let _ = stream.read(&mut [0u8; 1]).await;
        }
        sent
    });
    let method = match (&framed, &request) {
        (Framed::Head, _) => Method::HEAD,
        (_, Sent::Nothing) => Method::GET,
        _ => Method::POST,
    };
    let headers = HeaderMap::new();
    let outgoing = Outgoing {
        method: &method,
        target: "/x",
        headers: &headers,
        added: &[],
    };
    let conn = Connection::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    let read = async {
        let (_, _, mut body) = conn
            .send(outgoing, request.body(), deadline)
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let mut trailers = None;
        while let Some(frame) = poll_fn(|cx| body.poll_frame(cx)).await {
            let frame = frame.map_err(|e| e.to_string())?;
            match frame.into_data() {
                Ok(data) => got.extend_from_slice(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        let ended = body.is_end_stream();
        Ok((
            got,
            trailers,
            ended,
            body.finished().is_some_and(|conn| conn.buf.is_empty()),
        ))
    };
    let (got, trailers, ended, reusable) = match read.await {
        Ok((got, trailers, ended, reusable)) => (Ok(got), trailers, ended, reusable),
        Err(e) => (Err(e), None, false, false),
    };
    Through {
        sent: upstream.await.unwrap(),
        got,
        trailers,
        ended,
        reusable,
    }
}

proptest! {
    // A case takes milliseconds; one that hangs waits out its timeout at
    // each step of shrinking, so those are few.
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    })]

    /// Over a real socket, in whatever pieces the upstream writes: the
    /// request body arrives whole, the response body comes out exactly (an
    /// error when the upstream closes before its framed end, never a clean
    /// end), and the connection is reusable after a framed body unless the
    /// upstream said `close`.
    #[test]
    fn a_body_comes_through_a_socket_exactly(
        request in prop_oneof![
            Just(Sent::Nothing),
            prop::collection::vec(any::<u8>(), 0..2000).prop_map(Sent::Known),
            prop::collection::vec(any::<u8>(), 0..2000).prop_map(Sent::Streamed),
        ],
        framed in framed(),
        ending in prop_oneof![
            2 => Just(Ending::KeepAlive),
            1 => Just(Ending::Close),
            1 => any::<prop::sample::Index>().prop_map(Ending::CutShort),
        ],
        body in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let exchange = over_loopback(request.clone(), framed.clone(), ending.clone(), body.clone(), cuts);
        let through = runtime
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(3), exchange).await })
            .expect("in time");
        prop_assert_eq!(&through.sent[..], request.bytes());
        // What the framing leaves nothing of to cut: no body at all, or the
        // one whose end is the close.
        let uncut = match framed {
            Framed::Head | Framed::UntilClose => true,
            Framed::Length => body.is_empty(),
            Framed::Chunked { .. } => false,
        };
        let want = if matches!(framed, Framed::Head) { Vec::new() } else { body };
        let until_close = matches!(framed, Framed::UntilClose);
        match ending {
            Ending::CutShort(_) if !uncut => {
                prop_assert!(through.got.is_err(), "a body cut short ended cleanly");
                prop_assert!(!through.reusable);
            }
            Ending::CutShort(_) => prop_assert!(through.got.is_ok()),
            _ => {
                let trailed = matches!(framed, Framed::Chunked { trailers: true, .. });
                let mut checksum = HeaderMap::new();
                checksum.insert("x-checksum", HeaderValue::from_static("1"));
                prop_assert_eq!(through.trailers, trailed.then_some(checksum));
                prop_assert_eq!(through.got, Ok(want));
                // One read to the close cannot know its end ahead.
                prop_assert_eq!(through.ended, !until_close);
                let reused = matches!(ending, Ending::KeepAlive) && !until_close;
                prop_assert_eq!(through.reusable, reused);
            }
        }
    }
}
