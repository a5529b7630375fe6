//! Tern's TLS layer: where the server's certificate comes from and how rustls is set up with it.
//!
//! - [`config`]: the `[tls]` section ([`TlsConfig`]) and its resolution into [`TlsMaterial`] —
//!   a PEM certificate chain and private key read from files, or a self-signed certificate
//!   generated at start-up when none is configured.
//! - [`server_config`]: the one place that builds a rustls [`ServerConfig`](rustls::ServerConfig):
//!   ring provider, TLS 1.2 and 1.3 only, no client certificates, no ALPN. Also [`describe`],
//!   which names the negotiated protocol and cipher suite for logs and `Received:` headers.
//! - [`reload`]: [`ReloadingAcceptor`], which hands each new handshake the current configuration
//!   and swaps in a new one on SIGHUP or when the certificate files change, without touching
//!   sessions already established.
//!
//! This crate knows nothing of SMTP: the session decides when to start TLS (STARTTLS or implicit
//! TLS) and only asks this crate for an acceptor.

#![deny(missing_docs, rust_2018_idioms, unused_must_use)]

pub mod config;
pub mod error;
pub mod reload;
pub mod server_config;

pub use config::{CertificateOrigin, PemFiles, TlsConfig, TlsMaterial};
pub use error::TlsError;
pub use reload::{RELOAD_POLL_INTERVAL, ReloadingAcceptor};
pub use server_config::{PROTOCOL_VERSIONS, build_server_config, describe};
