//! The connection's byte stream, plain or TLS, and the seam through which the server gets a
//! TLS acceptor (the certificate can be reloaded between handshakes).
//!
//! STARTTLS swaps the stream in place: the plaintext stream is moved into a handshake and
//! comes back as TLS; if the handshake fails the connection is closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Hands out the acceptor for a new handshake.
pub trait TlsProvider: Send + Sync + 'static {
    /// The acceptor with the current certificate.
    fn acceptor(&self) -> TlsAcceptor;
}

/// A stream before or after TLS.
pub enum MaybeTls<S> {
    /// Plaintext.
    Plain(S),
    /// Encrypted.
    Tls(Box<TlsStream<S>>),
    /// Moved into a handshake that failed; every operation errors.
    Broken,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MaybeTls<S> {
    /// Performs the server side of a TLS handshake over the plaintext stream.
    pub async fn upgrade(&mut self, acceptor: TlsAcceptor) -> io::Result<()> {
        let MaybeTls::Plain(plain) = std::mem::replace(self, MaybeTls::Broken) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = acceptor.accept(plain).await?;
        *self = MaybeTls::Tls(Box::new(tls));
        Ok(())
    }

    /// Protocol version and cipher suite, when TLS is active.
    pub fn tls_facts(&self) -> Option<(String, String)> {
        let MaybeTls::Tls(tls) = self else { return None };
        let (_, conn) = tls.get_ref();
        let protocol = conn.protocol_version().map(|v| match v {
            rustls_version::TLSv1_3 => "TLSv1.3".to_string(),
            rustls_version::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        })?;
        let cipher = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()))?;
        Some((protocol, cipher))
    }
}

use tokio_rustls::rustls::ProtocolVersion as rustls_version;

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed earlier")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            MaybeTls::Broken => Poll::Ready(Err(broken())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            MaybeTls::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            MaybeTls::Broken => Poll::Ready(Err(broken())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            MaybeTls::Broken => Poll::Ready(Ok(())),
        }
    }
}
