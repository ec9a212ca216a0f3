//! `max_body_bytes` on the bytes a request body really carries, for bodies
//! that arrive as frames and have no length to check up front (`service`
//! checks a `Content-Length`). HTTP/1.1 counts in its own decoder
//! (`h1`); HTTP/3's body counts with [`Allowance`]; HTTP/2's body is
//! wrapped in [`Limited`].
//!
//! Going over before the request is answered should get the client a 413,
//! as HTTP/1.1 does. The count happens where the body is read, deep in the
//! handler (or in a task of the upstream client), so a body that goes over
//! while its [`Watch`] listens does not fail: it stops, and the connection,
//! woken, drops the handler (and the upstream request with it) and answers
//! 413 itself. Had it failed, the proxy would have answered first, with a
//! 400 for the client's broken body. Once nobody listens (the request is
//! answered, or gone), going over fails the body: the upstream sees its
//! request body end in an error, never the byte past the limit.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The body went over `max_body_bytes`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body over max_body_bytes ({limit})")]
pub struct TooLarge {
    pub limit: u64,
}

/// A body's data bytes counted against `max_body_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    received: u64,
    limit: u64,
}

impl Allowance {
    pub fn new(limit: u64) -> Allowance {
        Allowance { received: 0, limit }
    }

    /// Counts `len` more bytes; an error once they are more than the limit.
    pub fn take(&mut self, len: usize) -> Result<(), TooLarge> {
        self.received = self.received.saturating_add(len as u64);
        if self.received > self.limit {
            return Err(TooLarge { limit: self.limit });
        }
        Ok(())
    }

    pub fn received(&self) -> u64 {
        self.received
    }
}

/// What polling a [`Limited`] body gives.
type Polled<E> = Poll<Option<Result<Frame<Bytes>, LimitedError<E>>>>;

#[derive(Debug, thiserror::Error)]
pub enum LimitedError<E> {
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error(transparent)]
    Body(E),
}

/// [`Shared::state`]: a watch waits for the answer; the body went over
/// while it did; nobody waits any more.
const LISTENING: u8 = 0;
const TRIPPED: u8 = 1;
const RELEASED: u8 = 2;

/// What a [`Limited`] body and its [`Watch`] share.
#[derive(Debug)]
struct Shared {
    state: AtomicU8,
    /// The task of the watch, woken when the body trips.
    watch: Mutex<Option<Waker>>,
    /// The task reading a tripped body, woken when the watch lets go.
    body: Mutex<Option<Waker>>,
}

impl Shared {
    fn register(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Some(kept) if kept.will_wake(waker) => {}
            kept => *kept = Some(waker.clone()),
        }
    }

    fn wake(slot: &Mutex<Option<Waker>>) {
        let waker = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Reading,
    /// Over the limit while watched: pending until the watch lets go.
    Stalled,
    Done,
}

/// A request body that never yields more than `limit` bytes of data.
#[derive(Debug)]
pub struct Limited<B> {
    /// Dropped once over the limit: nothing more is read.
    inner: Option<B>,
    allowance: Allowance,
    phase: Phase,
    shared: Option<Arc<Shared>>,
}

impl<B: http_body::Body<Data = Bytes> + Unpin> Limited<B> {
    /// Wraps `inner`, with the [`Watch`] that learns when it goes over;
    /// no watch for a body that has already ended (a GET's).
    pub fn new(inner: B, limit: u64) -> (Limited<B>, Option<Watch>) {
        let shared = (!inner.is_end_stream()).then(|| {
            Arc::new(Shared {
                state: AtomicU8::new(LISTENING),
                watch: Mutex::new(None),
                body: Mutex::new(None),
            })
        });
        let watch = shared.clone().map(|shared| Watch { shared, limit });
        let body = Limited {
            inner: Some(inner),
            allowance: Allowance::new(limit),
            phase: Phase::Reading,
            shared,
        };
        (body, watch)
    }

    /// Over the limit: stall while a watch listens, else fail.
    fn over(&mut self, cx: &mut Context<'_>, e: TooLarge) -> Polled<B::Error> {
        self.inner = None;
        if let Some(shared) = &self.shared {
            Shared::register(&shared.body, cx.waker());
            let tripped = shared
                .state
                .compare_exchange(LISTENING, TRIPPED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if tripped {
                Shared::wake(&shared.watch);
                self.phase = Phase::Stalled;
                return Poll::Pending;
            }
        }
        self.phase = Phase::Done;
        Poll::Ready(Some(Err(e.into())))
    }
}

impl<B: http_body::Body<Data = Bytes> + Unpin> http_body::Body for Limited<B> {
    type Data = Bytes;
    type Error = LimitedError<B::Error>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<B::Error> {
        let this = self.get_mut();
        match this.phase {
            Phase::Reading => {}
            Phase::Done => return Poll::Ready(None),
            Phase::Stalled => {
                let limit = this.allowance.limit;
                let Some(shared) = &this.shared else {
                    return Poll::Ready(None);
                };
                Shared::register(&shared.body, cx.waker());
                if shared.state() != RELEASED {
                    return Poll::Pending;
                }
                this.phase = Phase::Done;
                return Poll::Ready(Some(Err(TooLarge { limit }.into())));
            }
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                this.phase = Phase::Done;
                return Poll::Ready(Some(Err(LimitedError::Body(e))));
            }
            None => {
                this.phase = Phase::Done;
                return Poll::Ready(None);
            }
        };
        if let Some(data) = frame.data_ref()
            && let Err(e) = this.allowance.take(data.len())
        {
            return this.over(cx, e);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match (&self.inner, self.phase) {
            (Some(inner), Phase::Reading) => inner.is_end_stream(),
            (_, Phase::Stalled) => false,
            _ => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, self.phase) {
            (Some(inner), Phase::Reading) => inner.size_hint(),
            (_, Phase::Stalled) => SizeHint::default(),
            _ => SizeHint::with_exact(0),
        }
    }
}

/// Learns when its [`Limited`] body goes over before the request is
/// answered. Dropping it lets a stalled body fail.
#[derive(Debug)]
pub struct Watch {
    shared: Arc<Shared>,
    limit: u64,
}

impl Watch {
    /// Runs `handler` to its answer, unless the body goes over first: then
    /// the error, with `handler` unfinished for the caller to drop (after
    /// it has noted why, for the handler's own drop to log).
    pub async fn guard<F: Future>(&self, mut handler: Pin<&mut F>) -> Result<F::Output, TooLarge> {
        let over = TooLarge { limit: self.limit };
        poll_fn(|cx| {
            if self.shared.state() == TRIPPED {
                return Poll::Ready(Err(over));
            }
            if let Poll::Ready(answer) = handler.as_mut().poll(cx) {
                // Answered: a body going over from now on fails instead.
                self.release();
                return Poll::Ready(Ok(answer));
            }
            Shared::register(&self.shared.watch, cx.waker());
            if self.shared.state() == TRIPPED {
                return Poll::Ready(Err(over));
            }
            Poll::Pending
        })
        .await
    }

    fn release(&self) {
        if self.shared.state.swap(RELEASED, Ordering::AcqRel) == TRIPPED {
            Shared::wake(&self.shared.body);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.release();
    }
}
