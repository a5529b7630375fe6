//! Helpers shared by the integration tests: throw-away directories, certificates generated with
//! rcgen, and a client that completes a TLS handshake over an in-memory pipe.

// Each test file uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{CertificateParams, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The name every test certificate is issued for and every test client asks for.
pub const SERVER_NAME: &str = "mail.test";

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tern-tls-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` inside the directory and returns the full path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for [`SERVER_NAME`] and its key, as PEM and DER.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

/// A fresh key pair and a certificate for [`SERVER_NAME`] carrying `serial`, so tests can tell
/// certificates apart.
pub fn test_cert(serial: u64) -> TestCert {
    let key = KeyPair::generate().expect("generate key");
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()]).expect("params");
    params.serial_number = Some(SerialNumber::from(serial));
    let cert = params.self_signed(&key).expect("self-sign");
    TestCert { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
}

/// A ring-backed client trusting exactly `trusted`, speaking only `versions`.
pub fn client_config(
    trusted: &[&CertificateDer<'static>],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).expect("trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("client versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A client for TLS 1.2 and 1.3 trusting `trusted`.
pub fn trusting(trusted: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    client_config(trusted, rustls::ALL_VERSIONS)
}

pub type ClientStream = client::TlsStream<DuplexStream>;
pub type ServerStream = server::TlsStream<DuplexStream>;

/// Runs both ends of a handshake over an in-memory pipe, the client asking for `server_name`.
pub async fn handshake_as(
    acceptor: TlsAcceptor,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Result<(ClientStream, ServerStream), String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let (client_side, server_side) = tokio::join!(
        TlsConnector::from(client).connect(name, client_io),
        acceptor.accept(server_io)
    );
    match (client_side, server_side) {
        (Ok(client), Ok(server)) => Ok((client, server)),
        (client, server) => Err(format!(
            "client: {:?}, server: {:?}",
            client.err().map(|e| e.to_string()),
            server.err().map(|e| e.to_string())
        )),
    }
}

/// [`handshake_as`] for [`SERVER_NAME`].
pub async fn handshake(
    acceptor: TlsAcceptor,
    client: Arc<ClientConfig>,
) -> Result<(ClientStream, ServerStream), String> {
    handshake_as(acceptor, client, SERVER_NAME).await
}

/// The certificate the server presented to `client`.
pub fn served_certificate(client: &ClientStream) -> CertificateDer<'static> {
    let (_, connection) = client.get_ref();
    connection.peer_certificates().expect("server certificate")[0].clone()
}

/// Sends a line each way over an established pair, proving the session still carries data.
pub async fn exchange(client: &mut ClientStream, server: &mut ServerStream) {
    client.write_all(b"EHLO client.test\r\n").await.expect("client write");
    client.flush().await.expect("client flush");
    let mut buf = [0u8; 18];
    server.read_exact(&mut buf).await.expect("server read");
    assert_eq!(&buf, b"EHLO client.test\r\n");
    server.write_all(b"250 ok\r\n").await.expect("server write");
    server.flush().await.expect("server flush");
    let mut buf = [0u8; 8];
    client.read_exact(&mut buf).await.expect("client read");
    assert_eq!(&buf, b"250 ok\r\n");
}

/// Waits until a file written now gets a later modification time than `path` has, so that a
/// rewrite is visible to a watcher even on a file system with coarse timestamps.
pub async fn wait_for_newer_mtime(dir: &TempDir, path: &Path) {
    let old = std::fs::metadata(path).and_then(|m| m.modified()).expect("mtime");
    for _ in 0..1000 {
        let probe = dir.write("mtime-probe", "");
        if std::fs::metadata(probe).and_then(|m| m.modified()).expect("mtime") > old {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("the file system clock did not move past {}", path.display());
}

/// Writes `cert` as `cert.pem` and `key.pem` in `dir` and returns a config naming them.
pub fn write_pair(dir: &TempDir, cert: &TestCert) -> tern_tls::TlsConfig {
    tern_tls::TlsConfig {
        cert_path: Some(dir.write("cert.pem", &cert.cert_pem)),
        key_path: Some(dir.write("key.pem", &cert.key_pem)),
    }
}
