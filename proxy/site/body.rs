//! A file streamed in bounded chunks: what large files, their sidecars and
//! their ranges are sent as.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Chunk size of a streamed file: a response holds about one chunk in memory.
pub const CHUNK: usize = 64 * 1024;

/// A file body read in chunks of at most [`CHUNK`] bytes, never more than
/// the `len` announced in Content-Length.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    /// Streams `len` bytes from the file's current position.
    pub fn new(file: File, len: u64) -> FileBody {
        FileBody {
            file: tokio::fs::File::from_std(file),
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK as u64) as usize;
        // Chunks are split off one allocation until it runs out; the
        // buffer is kept across `Pending` (tokio's File reads into its own
        // buffer and copies on the next poll).
        if this.buf.len() < want {
            this.buf = BytesMut::zeroed(CHUNK);
        }
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    // The file shrank after Content-Length was sent: fail
                    // the body so the connection is cut, not left hanging.
                    this.remaining = 0;
                    let err = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank");
                    return Poll::Ready(Some(Err(err)));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(n).freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
