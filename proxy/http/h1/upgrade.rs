//! Handing the connection over: to a tunnel after `101 Switching Protocols`
//! (the request carries a `ClientUpgrade` to wait on), or to HTTP/2 when
//! the first bytes were its preface. Bytes already read come out first.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// Any connection stream, boxed once it leaves HTTP/1.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's side of an upgraded connection.
pub type Upgraded = Rewind<Box<dyn Io>>;

/// In the extensions of an HTTP/1.1 upgrade request: resolves to the
/// connection once the `101` has been written. Clone, as extensions must
/// be; the first `take` gets it.
#[derive(Debug, Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

#[derive(Debug, thiserror::Error)]
#[error("the client connection was not handed over")]
pub struct NotUpgraded;

impl ClientUpgrade {
    pub fn pair() -> (oneshot::Sender<Upgraded>, ClientUpgrade) {
        let (tx, rx) = oneshot::channel();
        (tx, ClientUpgrade(Arc::new(Mutex::new(Some(rx)))))
    }

    /// Waits for the connection (fails if the response was not a 101).
    pub async fn connection(self) -> Result<Upgraded, NotUpgraded> {
        let rx = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match rx {
            Some(rx) => rx.await.map_err(|_| NotUpgraded),
            None => Err(NotUpgraded),
        }
    }
}

/// A stream with bytes already read in front of it.
pub struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> std::fmt::Debug for Rewind<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewind")
            .field("prefix", &self.prefix.len())
            .finish_non_exhaustive()
    }
}

impl<I> Rewind<I> {
    pub fn new(inner: I, prefix: Bytes) -> Rewind<I> {
        Rewind { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
