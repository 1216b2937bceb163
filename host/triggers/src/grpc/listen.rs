//! Accepting gRPC connections: at most `max_connections` open at once (the
//! HTTP trigger's setting, counted for this listener on its own). One more
//! is closed at once — before HTTP/2 is up there is no status to send it —
//! and a failed `accept` (out of file descriptors) never ends the server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding its place among the open ones.
pub(crate) struct Counted {
    io: TcpStream,
    _open: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The listener's connections, at most `max_connections` open at once.
pub(crate) fn incoming(listener: TcpListener, max_connections: usize) -> impl Stream<Item = io::Result<Counted>> {
    let open = Arc::new(Semaphore::new(max_connections));
    futures_util::stream::unfold((listener, open), move |(listener, open)| async move {
        loop {
            match listener.accept().await {
                Ok((io, peer)) => match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let _ = io.set_nodelay(true);
                        return Some((Ok(Counted { io, _open: permit }), (listener, open)));
                    }
                    Err(_) => {
                        tracing::warn!(%peer, max_connections, "gRPC connection refused: max_connections are open");
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "accepting a gRPC connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn one_connection_past_the_limit_is_closed_and_a_freed_place_is_reused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = Box::pin(super::incoming(listener, 1));
        let _first_client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        // The second is accepted and closed while the first holds the only
        // place; once the first goes, the third gets it.
        let mut second_client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = tokio::spawn(async move { incoming.next().await.unwrap().unwrap() });
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), second_client.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection over the limit is closed: {read:?}");
        drop(first);
        let third_client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), accepted).await.unwrap().unwrap();
        assert_eq!(third.io.peer_addr().unwrap(), third_client.local_addr().unwrap());
    }
}
