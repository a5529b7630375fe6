//! Listeners: bind, accept under a connection limit, run one session task per connection, and
//! stop accepting when shutdown is signalled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tern_protocol::Reply;
use tern_protocol::reply::Status;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span};

use crate::config::{ListenerConfig, SmtpConfig};
use crate::session::Session;
use crate::tls::TlsProvider;
use tern_ingest::{Directory, Door};

/// What every session shares.
pub struct Context {
    /// Limits and settings.
    pub config: SmtpConfig,
    /// Our name in the greeting, EHLO and Received headers.
    pub hostname: String,
    /// Where recipients are routed and finished messages go.
    pub door: Arc<Door>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// TLS for STARTTLS and implicit-TLS listeners; without it STARTTLS is not offered.
    pub tls: Option<Arc<dyn TlsProvider>>,
    /// Accounts for AUTH; without it AUTH is not offered.
    pub directory: Option<Arc<dyn Directory>>,
    /// The mail server's connection rules (admission, limits, tarpit, AUTH throttling);
    /// without them (the catcher) clients are bound only by the session limits. The rules
    /// about messages are the door's.
    pub mta: Option<Arc<crate::Mta>>,
}

/// Failures of the inbound server that stop it from starting.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The accept queue asked of the kernel for each listener (Linux caps it at
/// `net.core.somaxconn`, 4096 by default). Tokio's `TcpListener::bind` asks for 128: a burst
/// of a few hundred connects then overflows the queue while the accept loop catches up, and
/// Linux silently drops the handshake's last ACK, leaving clients that believe they are
/// connected waiting a minute or more for a banner.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds every address, failing on the first that cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, SmtpError> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in addrs {
        listeners.push(listen(addr).map_err(|source| SmtpError::Bind { addr, source })?);
    }
    Ok(listeners)
}

/// Binds one address with `SO_REUSEADDR` and a [`LISTEN_BACKLOG`]-deep accept queue (for the
/// HTTP listener too). Must be called inside a Tokio runtime.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts on every listener until `ctx.shutdown` is cancelled; sessions are spawned on
/// `tracker` so the caller can wait for them to finish.
pub async fn serve(
    listeners: Vec<(TcpListener, ListenerConfig)>,
    ctx: Arc<Context>,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let sessions = Arc::new(AtomicU64::new(0));
    let mut accepting = Vec::new();
    for (listener, settings) in listeners {
        // Plain `127.0.0.1:1025` in the log, not a debug form.
        let addr =
            listener.local_addr().map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
        info!(%addr, role = %settings.role.name(), "SMTP listening");
        accepting.push(tokio::spawn(accept_loop(
            listener,
            Arc::new(settings),
            ctx.clone(),
            tracker.clone(),
            permits.clone(),
            sessions.clone(),
        )));
    }
    for task in accepting {
        let _ = task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    settings: Arc<ListenerConfig>,
    ctx: Arc<Context>,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    sessions: Arc<AtomicU64>,
) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let guard = match ctx.mta.as_ref().map(|mta| mta.admit(peer.ip())) {
            Some(Err(denial)) => {
                info!(peer = %peer, reason = %denial, "connection refused by policy");
                tracker.spawn(refuse(
                    stream,
                    Reply::new(
                        denial.code,
                        Status(denial.status.0, denial.status.1, denial.status.2),
                        denial.text.to_string(),
                    ),
                ));
                continue;
            }
            Some(Ok(guard)) => guard,
            None => None,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("tern_smtp_connections_refused_total").increment(1);
            tracker.spawn(refuse(
                stream,
                Reply::new(421, Status(4, 3, 2), "Too many connections, try again later"),
            ));
            continue;
        };
        metrics::counter!("tern_smtp_sessions_total").increment(1);
        let n = sessions.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("session", n, peer = %peer);
        let ctx = ctx.clone();
        let settings = settings.clone();
        tracker.spawn(
            async move {
                debug!("connected");
                let active = metrics::gauge!("tern_smtp_sessions_active");
                active.increment(1.0);
                Session::new(stream, peer, ctx, settings).run().await;
                active.decrement(1.0);
                drop(permit);
                drop(guard);
            }
            .instrument(span),
        );
    }
}

/// Answers a connection that will not get a session, then closes it.
async fn refuse(mut stream: TcpStream, reply: Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(reply.to_wire().as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
