//! Reading what a registry sends without trusting its sizes: a response
//! body read up to a limit, and a blob written to disk while hashed and cut
//! off at the size its descriptor declares.

use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::Digest as _;
use tokio::io::AsyncWrite;
use weir_core::Digest;

use crate::client::Progress;

pub(crate) enum ReadError {
    TooLong,
    Http(reqwest::Error),
}

/// A response body, up to `limit` bytes: more is an error, and is not read.
pub(crate) async fn read_limited(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(ReadError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Streams a blob to disk while hashing and counting it, refusing more
/// bytes than declared (a registry cannot fill the disk).
pub(crate) struct VerifyingWriter<'p, W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
    limit: u64,
    pub(crate) overflowed: bool,
    progress: &'p dyn Progress,
}

impl<'p, W> VerifyingWriter<'p, W> {
    pub(crate) fn new(inner: W, limit: u64, progress: &'p dyn Progress) -> Self {
        VerifyingWriter { inner, hasher: sha2::Sha256::new(), written: 0, limit, overflowed: false, progress }
    }

    pub(crate) fn finish(self) -> (u64, Digest) {
        let hex = hex::encode(self.hasher.finalize());
        (self.written, format!("sha256:{hex}").parse().expect("sha256 hex is a digest"))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for VerifyingWriter<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.written + buf.len() as u64 > self.limit {
            self.overflowed = true;
            return Poll::Ready(Err(std::io::Error::other("more bytes than the manifest declares")));
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.hasher.update(&buf[..n]);
                this.written += n as u64;
                this.progress.advance(n as u64);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
