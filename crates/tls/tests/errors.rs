//! Misconfigurations are refused with an error that names the file or setting at fault.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use common::{TempDir, test_cert, write_pair};
use tern_tls::{TlsConfig, TlsError};

fn load_error(config: &TlsConfig) -> TlsError {
    config.load("mx.tern.test").expect_err("configuration must be refused")
}

#[test]
fn only_cert_path_names_the_missing_key_path() {
    let config = TlsConfig { cert_path: Some("/etc/tern/cert.pem".into()), key_path: None };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::MissingKeyPath { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("tls.key_path"), "{message}");
    assert!(message.contains("/etc/tern/cert.pem"), "{message}");
}

#[test]
fn only_key_path_names_the_missing_cert_path() {
    let config = TlsConfig { cert_path: None, key_path: Some("/etc/tern/key.pem".into()) };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::MissingCertPath { .. }), "{error:?}");
    assert!(error.to_string().contains("tls.cert_path"), "{error}");
}

#[test]
fn mismatched_key_names_both_files() {
    let dir = TempDir::new();
    let config = TlsConfig {
        cert_path: Some(dir.write("cert.pem", test_cert(1).cert_pem)),
        key_path: Some(dir.write("other-key.pem", test_cert(2).key_pem)),
    };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&dir.path().join("cert.pem").display().to_string()), "{message}");
    assert!(message.contains(&dir.path().join("other-key.pem").display().to_string()), "{message}");
    assert!(message.contains("does not match"), "{message}");
}

#[test]
fn missing_certificate_file_is_named() {
    let dir = TempDir::new();
    let mut config = write_pair(&dir, &test_cert(1));
    config.cert_path = Some(dir.path().join("absent.pem"));
    let error = load_error(&config);
    assert!(matches!(error, TlsError::ReadCertificate { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.pem"), "{error}");
}

#[test]
fn missing_key_file_is_named() {
    let dir = TempDir::new();
    let mut config = write_pair(&dir, &test_cert(1));
    config.key_path = Some(dir.path().join("absent-key.pem"));
    let error = load_error(&config);
    assert!(matches!(error, TlsError::ReadKey { .. }), "{error:?}");
    assert!(error.to_string().contains("absent-key.pem"), "{error}");
}

#[test]
fn certificate_file_without_certificates_is_refused() {
    let dir = TempDir::new();
    let cert = test_cert(1);
    let config = TlsConfig {
        cert_path: Some(dir.write("cert.pem", "not a certificate\n")),
        key_path: Some(dir.write("key.pem", &cert.key_pem)),
    };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::NoCertificate { .. }), "{error:?}");
    assert!(error.to_string().contains("cert.pem"), "{error}");
}

#[test]
fn key_file_holding_only_a_certificate_is_refused() {
    let dir = TempDir::new();
    let cert = test_cert(1);
    let config = TlsConfig {
        cert_path: Some(dir.write("cert.pem", &cert.cert_pem)),
        key_path: Some(dir.write("key.pem", &cert.cert_pem)),
    };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::NoKey { .. }), "{error:?}");
    assert!(error.to_string().contains("key.pem"), "{error}");
}

#[test]
fn truncated_pem_is_refused() {
    let dir = TempDir::new();
    let cert = test_cert(1);
    let truncated = &cert.cert_pem[..cert.cert_pem.len() / 2];
    let config = TlsConfig {
        cert_path: Some(dir.write("cert.pem", truncated)),
        key_path: Some(dir.write("key.pem", &cert.key_pem)),
    };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::CertificatePem { .. }), "{error:?}");
    assert!(error.to_string().contains("not valid PEM"), "{error}");
}

#[test]
fn unparsable_key_is_refused() {
    let dir = TempDir::new();
    let cert = test_cert(1);
    let config = TlsConfig {
        cert_path: Some(dir.write("cert.pem", &cert.cert_pem)),
        key_path: Some(
            dir.write("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        ),
    };
    let error = load_error(&config);
    assert!(matches!(error, TlsError::UnusableKey { .. }), "{error:?}");
}

#[test]
fn invalid_hostname_for_self_signed_certificate_is_refused() {
    for hostname in ["mx.tërn.test", "mail host", ""] {
        let error = load_error_for_host(hostname);
        assert!(matches!(error, TlsError::InvalidHostname { .. }), "{error:?}");
        assert!(error.to_string().contains(&format!("{hostname:?}")), "{error}");
    }
}

fn load_error_for_host(hostname: &str) -> TlsError {
    TlsConfig::default().load(hostname).expect_err("hostname must be refused")
}

#[test]
fn config_parses_and_rejects_unknown_fields() {
    let config: TlsConfig =
        toml::from_str("cert_path = \"/a.pem\"\nkey_path = \"/b.pem\"\n").expect("parse");
    assert_eq!(config.cert_path.as_deref(), Some(std::path::Path::new("/a.pem")));
    assert_eq!(config.key_path.as_deref(), Some(std::path::Path::new("/b.pem")));
    assert_eq!(toml::from_str::<TlsConfig>("").expect("empty"), TlsConfig::default());

    let error = toml::from_str::<TlsConfig>("cert_path = \"/a.pem\"\nkey_file = \"/b.pem\"\n")
        .expect_err("unknown field");
    assert!(error.to_string().contains("key_file"), "{error}");
}
