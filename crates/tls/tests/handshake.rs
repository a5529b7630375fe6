//! Handshakes a real client completes against the configurations this crate builds: from PEM
//! files in every accepted key encoding, from a generated self-signed certificate, and only
//! with TLS 1.2 or 1.3.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{
    TempDir, client_config, handshake, handshake_as, served_certificate, test_cert, trusting,
    write_pair,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tern_tls::{PROTOCOL_VERSIONS, TlsConfig, build_server_config, describe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

fn acceptor_for(config: &TlsConfig, hostname: &str) -> (TlsAcceptor, Vec<CertificateDer<'static>>) {
    let material = config.load(hostname).expect("load TLS material");
    let server_config = build_server_config(&material).expect("server config");
    (TlsAcceptor::from(server_config), material.cert_chain().to_vec())
}

#[tokio::test]
async fn pem_files_from_rcgen_serve_a_trusted_handshake() {
    let dir = TempDir::new();
    let cert = test_cert(7);
    let (acceptor, chain) = acceptor_for(&write_pair(&dir, &cert), "ignored.test");
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0], cert.der);

    let (mut client, mut server) =
        handshake(acceptor, trusting(&[&cert.der])).await.expect("handshake");

    assert_eq!(served_certificate(&client), cert.der);
    common::exchange(&mut client, &mut server).await;
}

#[tokio::test]
async fn one_file_holding_certificate_and_key_serves() {
    let dir = TempDir::new();
    let cert = test_cert(8);
    let both = dir.write("combined.pem", format!("{}{}", cert.key_pem, cert.cert_pem));
    let config = TlsConfig { cert_path: Some(both.clone()), key_path: Some(both) };
    let (acceptor, _) = acceptor_for(&config, "ignored.test");

    let (client, _server) = handshake(acceptor, trusting(&[&cert.der])).await.expect("handshake");
    assert_eq!(served_certificate(&client), cert.der);
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

async fn fixture_handshake(stem: &str) {
    let cert_path = fixture(&format!("{stem}.crt"));
    let trusted = CertificateDer::from_pem_file(&cert_path).expect("fixture certificate");
    let config =
        TlsConfig { cert_path: Some(cert_path), key_path: Some(fixture(&format!("{stem}.key"))) };
    let (acceptor, _) = acceptor_for(&config, "ignored.test");

    let (client, _server) = handshake(acceptor, trusting(&[&trusted])).await.expect("handshake");
    assert_eq!(served_certificate(&client), trusted);
}

#[tokio::test]
async fn pkcs1_rsa_key_is_accepted() {
    fixture_handshake("rsa-pkcs1").await;
}

#[tokio::test]
async fn sec1_ec_key_is_accepted() {
    fixture_handshake("ec-sec1").await;
}

#[tokio::test]
async fn self_signed_certificate_is_trusted_by_a_client_that_pins_it() {
    let (acceptor, chain) = acceptor_for(&TlsConfig::default(), "mx.tern.test");
    assert_eq!(chain.len(), 1);

    for name in ["mx.tern.test", "localhost", "127.0.0.1", "::1"] {
        let (client, _server) = handshake_as(acceptor.clone(), trusting(&[&chain[0]]), name)
            .await
            .unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
        assert_eq!(served_certificate(&client), chain[0]);
    }
    let wrong = handshake_as(acceptor, trusting(&[&chain[0]]), "other.test").await;
    assert!(wrong.is_err(), "the certificate must not be valid for names it does not list");
}

#[tokio::test]
async fn self_signed_certificate_for_an_ip_hostname() {
    let (acceptor, chain) = acceptor_for(&TlsConfig::default(), "192.0.2.25");
    let (client, _server) =
        handshake_as(acceptor, trusting(&[&chain[0]]), "192.0.2.25").await.expect("handshake");
    assert_eq!(served_certificate(&client), chain[0]);
}

#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn generating_a_self_signed_certificate_warns_loudly() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let subscriber =
        tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    tracing::subscriber::with_default(subscriber, || {
        TlsConfig::default().load("mx.tern.test").expect("self-signed");
    });
    let text = String::from_utf8(log.0.lock().expect("log buffer").clone()).expect("utf-8 log");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("SELF-SIGNED"), "{text}");
    assert!(text.contains("will NOT trust"), "{text}");
    assert!(text.contains("tls.cert_path and tls.key_path"), "{text}");
}

#[test]
fn only_tls_1_2_and_1_3_are_enabled() {
    let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
    assert_eq!(versions, [rustls::ProtocolVersion::TLSv1_3, rustls::ProtocolVersion::TLSv1_2]);

    // The built configuration, not just the constant: rustls lists its enabled versions in Debug.
    let config = build_server_config(&TlsConfig::default().load("mx.tern.test").expect("load"))
        .expect("config");
    let debug = format!("{config:?}");
    let enabled = debug
        .split("versions: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("versions field");
    assert!(enabled.contains("TLSv1_2") && enabled.contains("TLSv1_3"), "{enabled}");
    assert!(!enabled.contains("TLSv1_0") && !enabled.contains("TLSv1_1"), "{enabled}");
    assert!(config.alpn_protocols.is_empty(), "no ALPN protocols");
}

#[tokio::test]
async fn describe_names_protocol_and_cipher_for_each_version() {
    let dir = TempDir::new();
    let cert = test_cert(9);
    let (acceptor, _) = acceptor_for(&write_pair(&dir, &cert), "ignored.test");

    let tls13 = client_config(&[&cert.der], &[&rustls::version::TLS13]);
    let (_client, server) = handshake(acceptor.clone(), tls13).await.expect("TLS 1.3 handshake");
    let (protocol, cipher) = describe(server.get_ref().1);
    assert_eq!(protocol, "TLSv1.3");
    assert!(cipher.starts_with("TLS13_"), "{cipher}");

    let tls12 = client_config(&[&cert.der], &[&rustls::version::TLS12]);
    let (_client, server) = handshake(acceptor, tls12).await.expect("TLS 1.2 handshake");
    let (protocol, cipher) = describe(server.get_ref().1);
    assert_eq!(protocol, "TLSv1.2");
    assert!(cipher.starts_with("TLS_ECDHE_ECDSA_WITH_"), "{cipher}");
}

#[tokio::test]
async fn alpn_is_not_negotiated() {
    let dir = TempDir::new();
    let cert = test_cert(10);
    let (acceptor, _) = acceptor_for(&write_pair(&dir, &cert), "ignored.test");
    let mut client = (*trusting(&[&cert.der])).clone();
    client.alpn_protocols = vec![b"smtp".to_vec()];

    let (_client, server) = handshake(acceptor, Arc::new(client)).await.expect("handshake");
    assert_eq!(server.get_ref().1.alpn_protocol(), None);
}

/// A TLS 1.1 ClientHello (legacy version 3.2, no `supported_versions` extension) offering
/// suites a TLS 1.1 server would take. rustls cannot speak 1.1 as a client, so it is written by
/// hand. `with_tls12_extensions` adds signature algorithms and groups, as a modern library
/// capped at 1.1 sends them, so the refusal is about the version and nothing else.
fn tls11_client_hello(with_tls12_extensions: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version: TLS 1.1
    body.extend([0x5a; 32]); // random
    body.push(0); // no session id
    // Cipher suites: ECDHE_RSA_WITH_AES_256_CBC_SHA, RSA_WITH_AES_128_CBC_SHA.
    body.extend([0x00, 0x04, 0xc0, 0x14, 0x00, 0x2f]);
    body.extend([0x01, 0x00]); // compression: null only
    if with_tls12_extensions {
        // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
        let signature_algorithms =
            [0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01];
        // supported_groups: x25519, secp256r1
        let supported_groups = [0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17];
        // ec_point_formats: uncompressed
        let ec_point_formats = [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00];
        let extensions = [&signature_algorithms[..], &supported_groups, &ec_point_formats].concat();
        body.extend(u16::try_from(extensions.len()).expect("short extensions").to_be_bytes());
        body.extend(&extensions);
    }
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).expect("short hello")];
    handshake.extend(body);
    let mut record =
        vec![0x16, 0x03, 0x02, 0x00, u8::try_from(handshake.len()).expect("short record")];
    record.extend(handshake);
    record
}

/// Sends `hello` to a fresh server and returns the server's error and the bytes it answered.
async fn refused(hello: Vec<u8>) -> (std::io::Error, Vec<u8>) {
    let (acceptor, _) = acceptor_for(&TlsConfig::default(), "mx.tern.test");
    let (mut client_io, server_io) = tokio::io::duplex(64 * 1024);

    let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
    client_io.write_all(&hello).await.expect("send hello");
    let error = server.await.expect("server task").expect_err("TLS 1.1 must be refused");
    let mut reply = Vec::new();
    client_io.read_to_end(&mut reply).await.expect("read reply");
    (error, reply)
}

/// The server answers with a fatal alert record (content type 21), never a ServerHello.
fn assert_fatal_alert(reply: &[u8], description: u8) {
    assert!(reply.len() >= 7, "{reply:?}");
    assert_eq!(reply[0], 21, "alert record expected: {reply:?}");
    assert_eq!(reply[5], 2, "fatal alert expected: {reply:?}");
    assert_eq!(reply[6], description, "alert description: {reply:?}");
}

#[tokio::test]
async fn a_tls_1_1_client_hello_is_refused() {
    let (error, reply) = refused(tls11_client_hello(true)).await;
    assert!(error.to_string().contains("Tls12NotOffered"), "{error}");
    assert_fatal_alert(&reply, 70); // protocol_version
}

#[tokio::test]
async fn a_legacy_tls_1_1_client_hello_is_refused() {
    let (error, reply) = refused(tls11_client_hello(false)).await;
    assert!(error.to_string().contains("incompatible"), "{error}");
    assert_fatal_alert(&reply, 40); // handshake_failure
}
