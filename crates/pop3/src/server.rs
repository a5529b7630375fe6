//! POP3 listeners: accept under a connection limit and the mail server's per-client admission,
//! run one session task per connection, stop accepting at shutdown. Also the maildrop locks:
//! one session per maildrop at a time (RFC 1939 section 4).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_queue::Spool;
use tern_smtp::{Directory, Mta, TlsProvider};
use tern_store::StoreRead;
use tern_store::pool::Pool;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span};

use crate::config::Pop3Config;
use crate::session::Session;

/// Who may log in, and so what a maildrop holds.
pub enum Logins {
    /// The mail server: accounts log in with their passwords and see their own mailbox.
    Accounts(Arc<dyn Directory>),
    /// The catcher: one configured login sees every captured message.
    Catcher {
        /// The login.
        login: String,
        /// Its password.
        password: String,
    },
}

/// What every session shares.
pub struct Context {
    /// Limits and settings.
    pub config: Pop3Config,
    /// Our name in the greeting.
    pub hostname: String,
    /// Who may log in.
    pub logins: Logins,
    /// Read handles on the store (maildrops, messages).
    pub readers: Pool<Box<dyn StoreRead>>,
    /// The store's single writer: deletions at QUIT.
    pub spool: Spool,
    /// TLS for STLS and the implicit-TLS listeners (the certificate reloads between
    /// handshakes).
    pub tls: Arc<dyn TlsProvider>,
    /// The throttle on failed logins (shared with SMTP AUTH in the mail server) and, with
    /// `admit_clients`, per-client admission (access lists, connection counts and rate).
    pub mta: Arc<Mta>,
    /// Apply `mta`'s admission to new connections: the mail server does; the catcher, whose
    /// SMTP limits nobody either, only throttles failed logins.
    pub admit_clients: bool,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Maildrops with a session in the TRANSACTION state.
    locks: Mutex<HashSet<String>>,
}

impl Context {
    /// The shared state of every session.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is a separate piece of the server's wiring, given once in `tern serve`"
    )]
    pub fn new(
        config: Pop3Config,
        hostname: String,
        logins: Logins,
        readers: Pool<Box<dyn StoreRead>>,
        spool: Spool,
        tls: Arc<dyn TlsProvider>,
        mta: Arc<Mta>,
        admit_clients: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Context {
            config,
            hostname,
            logins,
            readers,
            spool,
            tls,
            mta,
            admit_clients,
            shutdown,
            locks: Mutex::default(),
        }
    }

    /// Locks `maildrop` for one session; `None` when another session holds it.
    pub(crate) fn lock(self: &Arc<Self>, maildrop: &str) -> Option<MaildropLock> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks
            .insert(maildrop.to_string())
            .then(|| MaildropLock { ctx: self.clone(), maildrop: maildrop.to_string() })
    }
}

/// Holds a maildrop for its session; released when dropped, however the session ends.
pub(crate) struct MaildropLock {
    ctx: Arc<Context>,
    maildrop: String,
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        let mut locks = self.ctx.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.remove(&self.maildrop);
    }
}

/// Accepts on every listener until `ctx.shutdown` is cancelled. Each listener is paired
/// with whether TLS starts at once (995) or on STLS (110).
pub async fn serve(listeners: Vec<(TcpListener, bool)>, ctx: Arc<Context>, tracker: TaskTracker) {
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let sessions = Arc::new(AtomicU64::new(0));
    let mut accepting = Vec::new();
    for (listener, implicit_tls) in listeners {
        // Plain `127.0.0.1:1025` in the log, not a debug form.
        let addr =
            listener.local_addr().map_or_else(|e| format!("unknown ({e})"), |a| a.to_string());
        info!(%addr, implicit_tls, "POP3 listening");
        let accept = Accept {
            ctx: ctx.clone(),
            tracker: tracker.clone(),
            permits: permits.clone(),
            sessions: sessions.clone(),
            implicit_tls,
        };
        accepting.push(tokio::spawn(accept.run(listener)));
    }
    for task in accepting {
        let _ = task.await;
    }
}

/// One listener's accept loop and what it shares with the others.
struct Accept {
    ctx: Arc<Context>,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    sessions: Arc<AtomicU64>,
    implicit_tls: bool,
}

impl Accept {
    async fn run(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => self.start(stream, peer),
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    error!(error = %e, "POP3 accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn start(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let admitted = self.ctx.admit_clients.then(|| self.ctx.mta.admit(peer.ip()));
        let guard = match admitted.transpose() {
            Ok(guard) => guard,
            Err(denial) => {
                info!(peer = %peer, reason = %denial, "POP3 connection refused by policy");
                metrics::counter!("tern_pop3_connections_refused_total").increment(1);
                self.tracker.spawn(refuse(stream, format!("-ERR [SYS/TEMP] {}\r\n", denial.text)));
                return;
            }
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            metrics::counter!("tern_pop3_connections_refused_total").increment(1);
            self.tracker.spawn(refuse(
                stream,
                "-ERR [SYS/TEMP] too many connections, try later\r\n".into(),
            ));
            return;
        };
        metrics::counter!("tern_pop3_sessions_total").increment(1);
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("pop3", n, peer = %peer);
        let session = Session::new(stream, peer, self.ctx.clone());
        let implicit_tls = self.implicit_tls;
        self.tracker.spawn(
            async move {
                let active = metrics::gauge!("tern_pop3_sessions_active");
                active.increment(1.0);
                session.run(implicit_tls).await;
                active.decrement(1.0);
                drop(permit);
                drop(guard);
            }
            .instrument(span),
        );
    }
}

/// Answers a connection that will not get a session, then closes it.
async fn refuse(mut stream: TcpStream, line: String) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
