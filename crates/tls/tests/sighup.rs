//! SIGHUP makes the watcher re-read the certificate files. Its own test binary, because it
//! signals the whole test process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TempDir, handshake, served_certificate, test_cert, trusting, write_pair};
use tern_tls::ReloadingAcceptor;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    // Installs tokio's SIGHUP handler before anything sends one, so an early signal cannot take
    // the default action and kill the test process.
    let _keep_handler = signal(SignalKind::hangup()).expect("SIGHUP handler");

    let dir = TempDir::new();
    let (old, new) = (test_cert(1), test_cert(2));
    let config = write_pair(&dir, &old);
    let acceptor = Arc::new(ReloadingAcceptor::new(&config, "ignored.test").expect("acceptor"));
    let shutdown = CancellationToken::new();
    // Polling once an hour: only the signal can explain a reload within this test.
    let watcher = tokio::spawn(
        Arc::clone(&acceptor).watch_every(Duration::from_secs(3600), shutdown.clone()),
    );
    let client = trusting(&[&old.der, &new.der]);

    write_pair(&dir, &new);

    let mut served = old.der.clone();
    for _ in 0..100 {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (stream, _server) =
            handshake(acceptor.acceptor(), client.clone()).await.expect("handshake");
        served = served_certificate(&stream);
        if served == new.der {
            break;
        }
    }
    assert_eq!(served, new.der, "SIGHUP never reloaded the certificate");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("watcher stops")
        .expect("watcher task");
}
