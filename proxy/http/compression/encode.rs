//! The encoders: a whole buffer at once (`compress`, for the static file
//! cache) or a body on the fly (`compress_stream`, for proxied responses and
//! large files). Both go through the same async-compression readers so the
//! levels are set in one place.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use async_compression::Level;
use async_compression::brotli::EncoderParams;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::Coding;
use crate::http::body::Body;

/// Brotli quality. async-compression defaults to 11, which CRATES.md measured
/// at ~100x the time of q5 for a smaller-than-1% gain.
const BROTLI_QUALITY: i32 = 5;
const ZSTD_LEVEL: i32 = 3;
const GZIP_LEVEL: i32 = 6;

/// Window (log2 bytes) for on-the-fly brotli and zstd; gzip's is fixed at
/// 32 KiB. The defaults (brotli 4 MiB, zstd 2 MiB at level 3) cost that much
/// memory per response, and brotli holds back up to twice its window of
/// input before it emits a meta-block when the input keeps coming. 512 KiB
/// is ngx_brotli's default and loses little on web content.
const STREAM_WINDOW_LOG: u8 = 19;

/// Largest read from the encoder, so the largest frame, whatever the input.
const CHUNK: usize = 32 * 1024;
/// Below this much room left in the read buffer, start a new one rather
/// than hand out tiny frames.
const MIN_SPARE: usize = 4 * 1024;

type Reader<'a> = Pin<Box<dyn AsyncRead + Send + Sync + 'a>>;

/// Compresses a whole buffer. Meant for the static file cache, where it runs
/// once per file version; it is CPU work with no I/O, so a caller on the
/// async runtime should run big inputs under `spawn_blocking`.
pub fn compress(bytes: &[u8], coding: Coding) -> io::Result<Bytes> {
    let mut reader = encoder(bytes, coding, Window::Default);
    let mut out = Vec::with_capacity(bytes.len() / 2 + 64);
    let mut cx = Context::from_waker(Waker::noop());
    // The input is a slice, which is always ready, so the encoder never
    // waits and one poll runs the whole read to completion.
    match pin!(reader.read_to_end(&mut out)).poll(&mut cx) {
        Poll::Ready(result) => result.map(|_| Bytes::from(out)),
        Poll::Pending => Err(io::Error::other("encoder waited on an in-memory input")),
    }
}

/// Wraps a body so it is compressed on the fly with bounded memory: input
/// chunks are pulled only as the consumer reads, frames are at most `CHUNK`
/// bytes, and whenever the input has nothing ready the encoder flushes what
/// it holds, so a slow upstream's bytes reach the client without waiting for
/// the end. Trailers of the input are dropped (a coded body is a new
/// representation; gRPC is not a compressible type).
pub fn compress_stream(body: Body, coding: Coding) -> Body {
    if coding == Coding::Identity {
        return body;
    }
    let input = StreamReader::new(body.into_data_stream());
    EncodedBody {
        reader: encoder(input, coding, Window::Stream),
        buf: BytesMut::new(),
        done: false,
    }
    .boxed()
}

/// Which window the encoder uses: the codec's default for whole buffers,
/// where memory is transient and ratio counts, or `STREAM_WINDOW_LOG`.
#[derive(Clone, Copy)]
enum Window {
    Default,
    Stream,
}

fn encoder<'a, R>(input: R, coding: Coding, window: Window) -> Reader<'a>
where
    R: AsyncBufRead + Send + Sync + 'a,
{
    let stream = matches!(window, Window::Stream);
    match coding {
        Coding::Identity => Box::pin(input),
        Coding::Brotli => {
            let mut params = EncoderParams::default().quality(Level::Precise(BROTLI_QUALITY));
            if stream {
                params = params.window_size(i32::from(STREAM_WINDOW_LOG));
            }
            Box::pin(BrotliEncoder::with_params(input, params))
        }
        Coding::Zstd => {
            let window_log = CParameter::window_log(u32::from(STREAM_WINDOW_LOG));
            let params: &[CParameter] = if stream { &[window_log] } else { &[] };
            let level = Level::Precise(ZSTD_LEVEL);
            Box::pin(ZstdEncoder::with_quality_and_params(input, level, params))
        }
        Coding::Gzip => Box::pin(GzipEncoder::with_quality(input, Level::Precise(GZIP_LEVEL))),
    }
}

/// The encoder's output as a body: one data frame per read.
struct EncodedBody {
    reader: Reader<'static>,
    buf: BytesMut,
    done: bool,
}

impl http_body::Body for EncodedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        // `buf` is empty here (every read is split off whole). Reading into
        // the tail of the last allocation saves a copy; a fresh one bounds
        // the frame size exactly, unlike `reserve`, which may round up.
        if this.buf.capacity() < MIN_SPARE {
            this.buf = BytesMut::with_capacity(CHUNK);
        }
        match tokio_util::io::poll_read_buf(this.reader.as_mut(), cx, &mut this.buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(0)) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze())))),
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
