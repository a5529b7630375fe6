//! Hot reload: a new certificate reaches new handshakes while sessions already established
//! keep working, and a bad certificate never replaces a good one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    TempDir, exchange, handshake, served_certificate, test_cert, trusting, wait_for_newer_mtime,
    write_pair,
};
use tern_tls::{ReloadingAcceptor, TlsConfig, TlsError};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_established_sessions() {
    let dir = TempDir::new();
    let (old, new) = (test_cert(1), test_cert(2));
    let config = write_pair(&dir, &old);
    let acceptor = ReloadingAcceptor::new(&config, "ignored.test").expect("acceptor");
    let client = trusting(&[&old.der, &new.der]);

    let (mut old_client, mut old_server) =
        handshake(acceptor.acceptor(), client.clone()).await.expect("first handshake");
    assert_eq!(served_certificate(&old_client), old.der);

    write_pair(&dir, &new);
    acceptor.reload().expect("reload");

    let (mut new_client, mut new_server) =
        handshake(acceptor.acceptor(), client).await.expect("handshake after reload");
    assert_eq!(served_certificate(&new_client), new.der);
    exchange(&mut new_client, &mut new_server).await;

    // The session from before the reload still carries data, on its original certificate.
    exchange(&mut old_client, &mut old_server).await;
    assert_eq!(served_certificate(&old_client), old.der);
}

#[tokio::test]
async fn failed_reload_keeps_the_previous_certificate() {
    let dir = TempDir::new();
    let (good, other) = (test_cert(1), test_cert(2));
    let config = write_pair(&dir, &good);
    let acceptor = ReloadingAcceptor::new(&config, "ignored.test").expect("acceptor");

    // A renewal caught half-way: new certificate, old key.
    dir.write("cert.pem", &other.cert_pem);
    let error = acceptor.reload().expect_err("mismatched pair must not load");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");

    let client = trusting(&[&good.der, &other.der]);
    let (served, _server) = handshake(acceptor.acceptor(), client).await.expect("handshake");
    assert_eq!(served_certificate(&served), good.der);
}

#[tokio::test]
async fn reload_of_a_self_signed_certificate_keeps_it() {
    let acceptor = ReloadingAcceptor::new(&TlsConfig::default(), "mx.tern.test").expect("acceptor");
    let before = acceptor.current();
    acceptor.reload().expect("nothing to reload");
    assert!(Arc::ptr_eq(&before, &acceptor.current()));
}

#[tokio::test]
async fn watch_reloads_when_the_files_change() {
    let dir = TempDir::new();
    let (old, new) = (test_cert(1), test_cert(2));
    let config = write_pair(&dir, &old);
    let acceptor = Arc::new(ReloadingAcceptor::new(&config, "ignored.test").expect("acceptor"));
    let shutdown = CancellationToken::new();
    let watcher = tokio::spawn(
        Arc::clone(&acceptor).watch_every(Duration::from_millis(20), shutdown.clone()),
    );
    let client = trusting(&[&old.der, &new.der]);

    wait_for_newer_mtime(&dir, &dir.path().join("cert.pem")).await;
    write_pair(&dir, &new);

    let mut served = old.der.clone();
    for _ in 0..250 {
        let (stream, _server) =
            handshake(acceptor.acceptor(), client.clone()).await.expect("handshake");
        served = served_certificate(&stream);
        if served == new.der {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served, new.der, "the watcher never picked up the new files");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
}

#[tokio::test]
async fn watch_retries_after_a_half_written_renewal() {
    let dir = TempDir::new();
    let (old, new) = (test_cert(1), test_cert(2));
    let config = write_pair(&dir, &old);
    let acceptor = Arc::new(ReloadingAcceptor::new(&config, "ignored.test").expect("acceptor"));
    let shutdown = CancellationToken::new();
    let poll = Duration::from_millis(20);
    let watcher = tokio::spawn(Arc::clone(&acceptor).watch_every(poll, shutdown.clone()));
    let client = trusting(&[&old.der, &new.der]);

    // The new certificate lands first; its key has not been written yet.
    wait_for_newer_mtime(&dir, &dir.path().join("cert.pem")).await;
    dir.write("cert.pem", &new.cert_pem);
    tokio::time::sleep(poll * 5).await;
    let (stream, _server) =
        handshake(acceptor.acceptor(), client.clone()).await.expect("handshake");
    assert_eq!(served_certificate(&stream), old.der, "a mismatched pair must not be served");

    wait_for_newer_mtime(&dir, &dir.path().join("key.pem")).await;
    dir.write("key.pem", &new.key_pem);
    let mut served = old.der.clone();
    for _ in 0..250 {
        let (stream, _server) =
            handshake(acceptor.acceptor(), client.clone()).await.expect("handshake");
        served = served_certificate(&stream);
        if served == new.der {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    assert_eq!(served, new.der, "the completed renewal was never picked up");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
}
