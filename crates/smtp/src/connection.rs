//! Framing over one client stream: a read buffer, a write buffer and nothing else.
//!
//! Replies are queued and flushed only when the session is about to wait for input (or the
//! write buffer grows large), so a pipelined batch of commands gets one write of replies
//! (RFC 2920). Every read is bounded: command lines by the line limit (excess is discarded up to
//! the next LF), DATA and BDAT bodies by consuming the buffer as they go.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tern_protocol::{LineScan, Reply, scan_line};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::tls::MaybeTls;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Pending reply bytes that force a flush even while pipelined input remains.
pub const MAX_PENDING_WRITE: usize = 64 * 1024;

/// What the next command line read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// One complete line, terminator included.
    Line(BytesMut),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// One client stream with its buffers.
pub struct Connection<S> {
    stream: MaybeTls<S>,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Connection {
            stream: MaybeTls::Plain(stream),
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: Vec::with_capacity(1024),
        }
    }

    /// Queues a reply; it is sent at the next flush.
    pub fn queue(&mut self, reply: &Reply) {
        reply.write_to(&mut self.write_buf);
    }

    /// Queues bytes already in wire form (another protocol's replies on this framing: POP3).
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.write_buf.extend_from_slice(bytes);
    }

    /// Bytes of replies not yet written.
    pub fn pending_write(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes every queued reply.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.stream.flush().await?;
            self.write_buf.clear();
        }
        Ok(())
    }

    /// Flushes queued replies, then reads more input. Returns `false` at end of stream.
    pub async fn fill(&mut self) -> io::Result<bool> {
        self.flush().await?;
        self.read_buf.reserve(READ_CHUNK);
        let n = self.stream.read_buf(&mut self.read_buf).await?;
        Ok(n > 0)
    }

    /// Input received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.read_buf
    }

    /// Marks `n` buffered bytes as consumed.
    pub fn consume(&mut self, n: usize) {
        self.read_buf.advance(n);
    }

    /// True when a complete line is already buffered (more pipelined commands to answer).
    pub fn has_buffered_line(&self) -> bool {
        memchr::memchr(b'\n', &self.read_buf).is_some()
    }

    /// Reads one command line of at most `max_len` bytes. `Ok(None)` is end of stream.
    pub async fn read_line(&mut self, max_len: usize) -> io::Result<Option<Input>> {
        loop {
            match scan_line(&self.read_buf, max_len) {
                LineScan::Line(n) => return Ok(Some(Input::Line(self.read_buf.split_to(n)))),
                LineScan::Incomplete => {
                    if !self.fill().await? {
                        return Ok(None);
                    }
                }
                LineScan::TooLong => return self.discard_line().await,
            }
        }
    }

    /// Drops input up to and including the next LF, reading as needed, never buffering more
    /// than one read's worth.
    async fn discard_line(&mut self) -> io::Result<Option<Input>> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.read_buf) {
                self.read_buf.advance(pos.saturating_add(1));
                return Ok(Some(Input::TooLong));
            }
            self.read_buf.clear();
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Shuts the write side down after flushing, so the client sees a clean close.
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }

    /// The stream, e.g. to read TLS facts.
    pub fn stream(&self) -> &MaybeTls<S> {
        &self.stream
    }

    /// Switches to TLS (RFC 3207): queued replies are sent first, and any input the client
    /// pipelined after the command that started TLS is discarded, never executed.
    pub async fn start_tls(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        self.flush().await?;
        self.read_buf.clear();
        self.stream.upgrade(acceptor).await
    }

    /// [`Connection::start_tls`] within `limit` (a client that stalls the handshake gets a
    /// `TimedOut` error); true once TLS is up, false (logged) when the connection is useless.
    pub async fn start_tls_within(&mut self, acceptor: TlsAcceptor, limit: Duration) -> bool {
        match tokio::time::timeout(limit, self.start_tls(acceptor)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                false
            }
        }
    }
}
