//! The listening socket itself: a burst of connects larger than Tokio's default backlog (128)
//! must all complete and be accepted, even while nothing is accepting yet.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// As many clients as the 500-session durability test opens at once.
const BURST: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connects_waits_in_the_accept_queue() {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if somaxconn.is_some_and(|max| max < BURST) {
        eprintln!("net.core.somaxconn is {somaxconn:?}, below {BURST}: the kernel caps the queue");
        return;
    }
    let listener = tern_smtp::server::listen("127.0.0.1:0".parse().expect("addr")).expect("listen");
    let addr: SocketAddr = listener.local_addr().expect("local addr");

    // Every connect completes its handshake with no accept running: the kernel queues it.
    // With a 128-deep queue the 130th SYN is dropped and its connect times out.
    let clients = tokio::task::spawn_blocking(move || {
        (0..BURST)
            .map(|n| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("connect {n} of {BURST} with nobody accepting: {e}"))
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("connect task");

    // Each queued connection is then accepted and greeted.
    let server = tokio::spawn(async move {
        for _ in 0..BURST {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.write_all(b"220 hi\r\n").await.expect("greet");
        }
    });
    let greeted = tokio::task::spawn_blocking(move || {
        clients
            .into_iter()
            .enumerate()
            .map(|(n, mut client)| {
                client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                let mut greeting = [0u8; 8];
                client
                    .read_exact(&mut greeting)
                    .unwrap_or_else(|e| panic!("client {n} was never greeted: {e}"));
                greeting
            })
            .filter(|g| g == b"220 hi\r\n")
            .count()
    })
    .await
    .expect("read task");
    server.await.expect("accept task");
    assert_eq!(greeted, BURST);
}
