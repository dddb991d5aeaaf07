//! The orchestrator's listener: connections whose first request is for an operation under a
//! `down` + `close` rule are closed without an answer, so a client sees a dropped connection
//! instead of a 503 while the admin API stays reachable.

use super::faults::Operation;
use super::OrchestratorState;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A listener whose connections are closed without an answer when their first request is for
/// an operation under a `down` + `close` rule: the client sees the connection drop, not a 503.
/// The admin API stays reachable.
pub struct OrchestratorListener {
    inner: TcpListener,
    state: OrchestratorState,
}

impl OrchestratorListener {
    pub fn new(inner: TcpListener, state: OrchestratorState) -> OrchestratorListener {
        OrchestratorListener { inner, state }
    }
}

impl axum::serve::Listener for OrchestratorListener {
    type Io = GatedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GatedIo, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let io = GatedIo {
                        inner: stream,
                        state: self.state.clone(),
                        checked: false,
                        head: Vec::new(),
                        dropped: false,
                    };
                    return (io, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Longest request line looked at (the contract's paths are short).
const REQUEST_LINE_MAX: usize = 8 * 1024;

/// The contract operation a request line (`POST /v1/configs/apply HTTP/1.1`) is for.
fn operation_of(request_start: &[u8]) -> Option<Operation> {
    let line = request_start.split(|b| *b == b'\n').next()?;
    let target = std::str::from_utf8(line).ok()?.split_whitespace().nth(1)?;
    let path = target.split('?').next()?;
    Operation::ALL.into_iter().find(|op| op.path() == path)
}

fn dropped_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "injected: connection dropped",
    )
}

/// A connection that reads as closed when its first request is to be dropped.
pub struct GatedIo {
    inner: TcpStream,
    state: OrchestratorState,
    /// The request line has been looked at.
    checked: bool,
    /// The first request's bytes until its line is complete.
    head: Vec<u8>,
    /// The connection is being dropped: reads see end of stream, writes fail, so no answer
    /// (not even a 400 for the rest of the request) goes out.
    dropped: bool,
}

impl AsyncRead for GatedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.dropped {
            return Poll::Ready(Ok(()));
        }
        if this.checked {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let read = buf.filled().get(before..).unwrap_or_default();
            this.head.extend_from_slice(read);
            // Decide once the request line is complete (or cannot be: end of stream, too long).
            if read.is_empty() || this.head.contains(&b'\n') || this.head.len() >= REQUEST_LINE_MAX
            {
                this.checked = true;
                let head = std::mem::take(&mut this.head);
                if let Some(op) = operation_of(&head) {
                    if this.state.drop_connection(op) {
                        // Forget what was read: the server sees end of stream and closes.
                        buf.set_filled(before);
                        this.dropped = true;
                    }
                }
            }
        }
        polled
    }
}

impl AsyncWrite for GatedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.dropped {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.dropped {
            return Poll::Ready(Err(dropped_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_names_its_contract_operation_and_admin_paths_none() {
        assert_eq!(
            operation_of(b"POST /v1/configs/apply HTTP/1.1\r\nhost: x\r\n"),
            Some(Operation::Apply)
        );
        assert_eq!(
            operation_of(b"POST /v1/status?x=1 HTTP/1.1\r\n"),
            Some(Operation::Status)
        );
        assert_eq!(operation_of(b"PUT /admin/fail HTTP/1.1\r\n"), None);
        assert_eq!(operation_of(b"\xff\xfe garbage"), None);
    }
}
