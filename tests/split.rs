//! SPEC "Promises in numbers": split accuracy within ±1 point over 10,000
//! requests, here through the real server on one keep-alive connection.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::{config, weir};

#[tokio::test]
async fn ten_thousand_requests_split_95_5_within_a_point() {
    let w = weir()
        .file("blue/id.txt", "blue")
        .file("green/id.txt", "green")
        .start(&config(
            "[[routes]]\npath = \"/\"\nbackends = [{ site = \"blue\", weight = 95 }, { site = \"green\", weight = 5 }]\n\n[sites.blue]\nroot = \"blue\"\n\n[sites.green]\nroot = \"green\"\n",
        ))
        .await;
    let addr = w.addr("web");
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut green = 0u32;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    for i in 0..10_000 {
        assert!(tokio::time::Instant::now() < deadline, "too slow at {i}");
        let req = http::Request::builder()
            .uri("/id.txt")
            .header("host", "split")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let reply = client.send_request(req).await.unwrap();
        assert_eq!(reply.status(), 200);
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        green += u32::from(&body[..] == b"green");
    }
    let share = f64::from(green) / 100.0;
    assert!((share - 5.0).abs() <= 1.0, "green got {share}% of 10,000");
}
