//! An HTTP/3 request body as an `http_body::Body`: DATA frames are read
//! from the QUIC stream only as the consumer polls (so QUIC flow control is
//! the backpressure), then the trailers, within `max_body_bytes`.

use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

use crate::http::body_limit::{Allowance, TooLarge};

/// The receiving half of a request stream.
pub type RecvStream = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Bytes and time spent reading what is left of a body nobody consumed, so
/// the client's stream can end cleanly instead of being stopped.
const DRAIN_BYTES: u64 = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error("request stream: {0}")]
    Stream(#[from] h3::error::StreamError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Trailers,
    Done,
}

pub struct RequestBody {
    /// `None` only once dropped.
    stream: Option<RecvStream>,
    state: State,
    /// What `new` read while looking for the end of the stream.
    first: Option<Result<Frame<Bytes>, BodyError>>,
    allowance: Allowance,
    content_length: Option<u64>,
}

impl RequestBody {
    /// Wraps `stream`. Looks once, without waiting, for data or the end:
    /// a GET whose HEADERS came with FIN is then known to have no body, so
    /// the proxy may retry it and sends it upstream without one.
    pub fn new(stream: RecvStream, limit: u64, content_length: Option<u64>) -> RequestBody {
        let mut body = RequestBody {
            stream: Some(stream),
            state: State::Data,
            first: None,
            allowance: Allowance::new(limit),
            content_length,
        };
        let mut cx = Context::from_waker(Waker::noop());
        if let Poll::Ready(first) = body.poll_next(&mut cx) {
            body.first = first;
        }
        body
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match self.state {
                State::Data => match ready!(stream.poll_recv_data(cx)) {
                    Ok(Some(mut chunk)) => {
                        let data = chunk.copy_to_bytes(chunk.remaining());
                        if let Err(e) = self.allowance.take(data.len()) {
                            self.state = State::Done;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(None) => self.state = State::Trailers,
                    Err(e) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
                State::Trailers => {
                    let polled = ready!(stream.poll_recv_trailers(cx));
                    self.state = State::Done;
                    return Poll::Ready(match polled {
                        Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    });
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.state == State::Done
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            return SizeHint::with_exact(0);
        }
        match self.content_length {
            Some(len) => SizeHint::with_exact(len.saturating_sub(self.allowance.received())),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    /// Dropping an unread QUIC stream sends STOP_SENDING, which makes a
    /// client's `finish()` fail even after a full response. Read a bounded
    /// remainder first (in a task: drop cannot wait).
    fn drop(&mut self) {
        if self.state == State::Done {
            return;
        }
        let (Some(mut stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0u64;
                while let Ok(Some(chunk)) = stream.recv_data().await {
                    read += chunk.remaining() as u64;
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        });
    }
}
