//! The HTTP listener: accepts connections up to a cap, serves each with hyper's HTTP/1 server
//! under read deadlines, and stops in bounded time. It owns sockets, timers and the connection
//! count; what a request may do is the router's business.
//!
//! - The request head must arrive within `header_timeout` of the connection being ready for
//!   one (just opened, or its previous response sent), so the same deadline closes slow
//!   headers (slowloris) and idle keep-alive connections. hyper enforces it; it closes the
//!   socket without an answer.
//! - A request body must have fully arrived within `body_timeout` of its head; a handler then
//!   reads an error and answers `400`, and the connection closes.
//! - Over `max_connections` open connections, a new one is answered `503` and closed.
//! - At shutdown the listener closes, idle connections close, requests in flight get
//!   `shutdown_grace` to finish (long polls, server-sent events and websockets watch the
//!   shutdown token and end at once), then whatever is still open is closed.
//!
//! A websocket leaves hyper once upgraded: it no longer counts against the cap and ends with
//! the shutdown token, not here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Layer as _, ServiceExt as _};
use tower_http::timeout::{RequestBodyDeadline, RequestBodyDeadlineLayer};
use tracing::{debug, warn};

/// Default seconds to send a complete request head (and most idle time between requests).
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;
/// Default seconds for a request body to arrive, counted from its head.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 60;
/// Default most open HTTP connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default seconds connections get to finish after shutdown is signalled.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 5;

/// Longest time spent answering a connection over the cap.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The listener's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to send a complete request head once the connection is ready for one.
    pub header_timeout: Duration,
    /// Time for a request body to arrive, counted from its head.
    pub body_timeout: Duration,
    /// Most open connections; more are answered `503` and closed.
    pub max_connections: usize,
    /// Time connections get to finish after shutdown before they are closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs(DEFAULT_HEADER_TIMEOUT_SECS),
            body_timeout: Duration::from_secs(DEFAULT_BODY_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECS),
        }
    }
}

/// The router with the body deadline, as every connection serves it.
type App = RequestBodyDeadline<Router>;

/// Serves `router` on `listener` until `shutdown`, then closes every connection within
/// `limits.shutdown_grace` (plus the time a refusal may take).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let app = RequestBodyDeadlineLayer::new(limits.body_timeout).layer(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    // Cancelled when the grace is over: connections still open are dropped.
    let closing = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("tern_http_connections_refused_total").increment(1);
            connections.spawn(refuse(stream));
            continue;
        };
        let connection = Connection {
            app: app.clone(),
            header_timeout: limits.header_timeout,
            shutdown: shutdown.clone(),
            closing: closing.clone(),
            _permit: permit,
        };
        connections.spawn(connection.serve(stream, peer));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait()).await.is_err() {
        warn!(
            open = connections.len(),
            "closing HTTP connections still open after the shutdown grace"
        );
        closing.cancel();
        connections.wait().await;
    }
}

/// One accepted connection and what it needs until it ends.
struct Connection {
    app: App,
    header_timeout: Duration,
    shutdown: CancellationToken,
    closing: CancellationToken,
    /// Held while the connection is open: its place under the cap.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        // Handlers read the peer (e.g. for `Received:` headers) as axum's `ConnectInfo`.
        let app = self.app.map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
            .with_upgrades();
        tokio::pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = self.shutdown.cancelled() => {
                // Idle connections close now; a request in flight may finish.
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = self.closing.cancelled() => return,
                }
            }
        };
        if let Err(e) = result {
            debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Answers a connection over the cap with `503` and closes it, reading what the client sent
/// meanwhile so the close does not reset the connection before the answer is read.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "Error": "too many connections (http.max_connections); try again shortly"
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
