//! Bodies the kernel sends from the page cache. A cached file whose bytes
//! are still those of an open file goes out with sendfile(2) on plain-TCP
//! HTTP/1.1, instead of being copied from weir's memory into the socket:
//! that copy was a third of the CPU of a 75 KB response. TLS, HTTP/2 and
//! HTTP/3 send the cached bytes as before.
//!
//! The file is held open from the moment it was read, so a file replaced
//! by a rename (how deploys publish) keeps sending the content the cache
//! has. One rewritten in place sends what it holds now until the cache
//! notices the change; one cut short ends the response early and closes
//! the connection, as a file truncated mid-stream does.

use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Below this, copying the bytes costs less than a second system call.
pub const MIN_LEN: u64 = 16 * 1024;
/// Files held open for sending, over all sites; past it a cached file is
/// sent from memory.
const MAX_HELD: usize = 1024;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// An open file kept for sending, counted against [`MAX_HELD`].
#[derive(Debug)]
pub struct HeldFile(File);

impl HeldFile {
    /// Keeps `file`, whose content is `len` bytes, when that is worth it
    /// and the budget allows.
    pub fn hold(file: File, len: u64) -> Option<Arc<HeldFile>> {
        if len < MIN_LEN || !cfg!(target_os = "linux") {
            return None;
        }
        HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_HELD).then_some(n + 1)
        })
        .ok()?;
        Some(Arc::new(HeldFile(file)))
    }

    /// Files held open now.
    pub fn held() -> usize {
        HELD.load(Ordering::Relaxed)
    }
}

impl Drop for HeldFile {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response extension: the body's data frame `bytes` is also `len` bytes
/// of `file` from `offset`. The writer checks the frame is that very
/// buffer, so a body replaced or cut on the way is never swapped for the
/// file.
#[derive(Debug, Clone)]
pub struct FileSlice {
    file: Arc<HeldFile>,
    offset: u64,
    at: usize,
    len: usize,
}

impl FileSlice {
    pub fn new(file: Arc<HeldFile>, offset: u64, bytes: &Bytes) -> FileSlice {
        FileSlice {
            file,
            offset,
            at: bytes.as_ptr() as usize,
            len: bytes.len(),
        }
    }

    /// Whether `data` is exactly the buffer this slice stands for.
    pub fn is(&self, data: &Bytes) -> bool {
        data.as_ptr() as usize == self.at && data.len() == self.len
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> usize {
        self.len
    }

    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len);
        self.offset += n as u64;
        self.len -= n;
    }
}

/// A client connection's stream, and whether the kernel can send files on
/// it. Only plain TCP can; the defaults write through `AsyncWrite`.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn sends_files(&self) -> bool {
        false
    }

    /// Writes `bufs`, telling the kernel more follows (`MSG_MORE`), so a
    /// head and the file after it leave in the same segments.
    fn poll_write_more(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self).poll_write_vectored(cx, bufs)
    }

    /// Sends what is left of `slice` as far as the socket takes it; the
    /// caller advances the slice by the count.
    fn poll_sendfile(
        &mut self,
        _cx: &mut Context<'_>,
        _slice: &FileSlice,
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {}

#[cfg(target_os = "linux")]
impl Transport for TcpStream {
    fn sends_files(&self) -> bool {
        true
    }

    fn poll_write_more(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        use rustix::net::{SendAncillaryBuffer, SendFlags};
        poll_writable(self, cx, |stream| {
            let flags = SendFlags::MORE | SendFlags::NOSIGNAL;
            rustix::net::sendmsg(stream, bufs, &mut SendAncillaryBuffer::default(), flags)
        })
    }

    fn poll_sendfile(
        &mut self,
        cx: &mut Context<'_>,
        slice: &FileSlice,
    ) -> Poll<io::Result<usize>> {
        poll_writable(self, cx, |stream| {
            let mut offset = slice.offset;
            rustix::fs::sendfile(stream, &slice.file.0, Some(&mut offset), slice.len)
        })
    }
}

#[cfg(not(target_os = "linux"))]
impl Transport for TcpStream {}

/// Runs `op` once the socket is writable, until it does not block.
#[cfg(target_os = "linux")]
fn poll_writable(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    op: impl Fn(&TcpStream) -> rustix::io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        std::task::ready!(stream.poll_write_ready(cx))?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            op(stream).map_err(io::Error::from)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            done => return Poll::Ready(done),
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::future::poll_fn;
    use std::io::Write;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn held(bytes: &[u8]) -> Arc<HeldFile> {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        HeldFile::hold(file, bytes.len() as u64).expect("held")
    }

    #[test]
    fn small_files_are_not_held() {
        let file = tempfile::tempfile().expect("temp file");
        assert!(HeldFile::hold(file, MIN_LEN - 1).is_none());
    }

    #[test]
    fn a_slice_is_its_own_buffer_only() {
        let bytes = Bytes::from(content(MIN_LEN as usize));
        let slice = FileSlice::new(held(&bytes), 0, &bytes);
        assert!(slice.is(&bytes));
        assert!(slice.is(&bytes.clone()), "a clone shares the buffer");
        assert!(
            !slice.is(&Bytes::from(bytes.to_vec())),
            "equal bytes elsewhere"
        );
        assert!(!slice.is(&bytes.slice(1..)), "a cut body");
    }

    /// A head written with MSG_MORE, then a file's middle with sendfile,
    /// arrive in order over real loopback TCP.
    #[tokio::test]
    async fn head_then_file_over_tcp() {
        let bytes = Bytes::from(content(300 * 1024));
        let file = held(&bytes);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.expect("read");
            got
        });
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        assert!(stream.sends_files());
        let head = b"HTTP/1.1 200 OK\r\n\r\n";
        let written = poll_fn(|cx| stream.poll_write_more(cx, &[IoSlice::new(head)]))
            .await
            .expect("head");
        assert_eq!(written, head.len());
        let middle = bytes.slice(1000..250_000);
        let mut slice = FileSlice::new(file, 1000, &middle);
        while slice.remaining() > 0 {
            let sent = poll_fn(|cx| stream.poll_sendfile(cx, &slice))
                .await
                .expect("sendfile");
            assert!(sent > 0, "the file has the bytes");
            slice.advance(sent);
        }
        drop(stream);
        let got = reader.await.expect("reader");
        assert_eq!(&got[..head.len()], head);
        assert!(
            got[head.len()..] == middle[..],
            "the file's middle, in order"
        );
    }
}
