//! AUTHORIZATION: USER/PASS (RFC 1939) and AUTH PLAIN (RFC 5034), only over TLS (or on a
//! loopback listener that allows plaintext, as SMTP AUTH). A login is throttled as SMTP AUTH
//! is: a growing delay per earlier failure, then a lockout; the attempt counts as failed
//! before it starts, so hanging up mid-way still spends it. Unknown logins cost the same work
//! as known ones (the account store checks a dummy hash). A good login locks its maildrop
//! (`[IN-USE]` when another session holds it) and takes the snapshot.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tern_protocol::sasl::{self, SaslError};
use tern_smtp::connection::Input;
use tern_smtp::session::verify_password;
use tern_store::SearchQuery;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::{Flow, Session, State, Stop, Transaction};
use crate::command::Command;
use crate::maildrop::Maildrop;
use crate::server::Logins;
use crate::wire;

/// The maildrop name the catcher's login locks.
const CATCHER_MAILDROP: &str = "*";

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// USER, PASS, AUTH and APOP in the AUTHORIZATION state.
    pub(super) async fn authorize(&mut self, command: Command) -> Result<Flow, Stop> {
        if matches!(command, Command::Apop) {
            return Ok(self.error("APOP is not supported; use USER and PASS, or AUTH PLAIN"));
        }
        if !self.credentials_allowed() {
            return Ok(self.error("credentials are accepted only over TLS: send STLS first"));
        }
        match command {
            Command::User(name) => {
                // Said of every name, so USER does not tell which logins exist.
                self.ok("send PASS");
                self.state = State::Authorization { user: Some(name) };
                Ok(Flow::Continue)
            }
            Command::Pass(password) => {
                let State::Authorization { user: Some(login) } = &self.state else {
                    return Ok(self.error("send USER first"));
                };
                let login = login.clone();
                self.state = State::Authorization { user: None };
                self.log_in(login, password).await
            }
            Command::Auth { mechanism: None, .. } => {
                self.ok("SASL mechanisms follow");
                self.multiline(std::iter::once(b"PLAIN".as_slice()));
                Ok(Flow::Continue)
            }
            Command::Auth { mechanism: Some(mechanism), initial } => {
                if mechanism != "PLAIN" {
                    return Ok(self.error(&format!(
                        "unsupported SASL mechanism {mechanism:?}; PLAIN is offered"
                    )));
                }
                self.auth_plain(initial).await
            }
            _ => Ok(self.error("unexpected command")),
        }
    }

    /// AUTH PLAIN with an initial response, or with an empty `+ ` challenge first.
    async fn auth_plain(&mut self, initial: Option<String>) -> Result<Flow, Stop> {
        let decoded = match initial {
            Some(initial) => sasl::decode_response(&initial),
            None => {
                self.conn.queue_bytes(b"+ \r\n");
                let max = self.ctx.config.max_line_bytes;
                match self.guarded(|conn| conn.read_line(max)).await?.ok_or(Stop::Eof)? {
                    Input::TooLong => Err(SaslError::Malformed("over-long")),
                    Input::Line(line) => {
                        let text = String::from_utf8_lossy(&line);
                        sasl::decode_response(text.trim_end_matches(['\r', '\n']))
                    }
                }
            }
        };
        let creds = match decoded.and_then(|d| sasl::decode_plain(&d)) {
            Ok(creds) => creds,
            Err(SaslError::Cancelled) => return Ok(self.error("authentication cancelled")),
            Err(e) => return Ok(self.error(&e.to_string())),
        };
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.login) {
            // Acting as someone else is not supported: a failed login, throttled as one.
            return self.log_in(String::new(), String::new()).await;
        }
        self.log_in(creds.login, creds.password).await
    }

    /// Checks the credentials under the throttle, then locks and opens the maildrop.
    async fn log_in(&mut self, login: String, password: String) -> Result<Flow, Stop> {
        let ip = self.peer.ip();
        let throttle = &self.ctx.mta.auth_throttle;
        let now = std::time::Instant::now();
        let delay = match throttle.check(ip, now) {
            Ok(delay) => delay,
            Err(_) => {
                warn!(ip = %ip, "POP3 login locked out");
                self.conn.queue_bytes(b"-ERR [SYS/TEMP] too many failed logins; try later\r\n");
                return Ok(Flow::Close);
            }
        };
        throttle.record_failure(ip, now);
        let verified = self.verify(login, password).await;
        if !delay.is_zero() {
            self.pause(delay).await?;
        }
        let Some(login) = verified else {
            warn!(ip = %ip, "POP3 login failed");
            metrics::counter!("tern_pop3_logins_total", "result" => "failed").increment(1);
            return Ok(self.error("[AUTH] invalid login or password"));
        };
        self.ctx.mta.auth_throttle.record_success(ip);
        metrics::counter!("tern_pop3_logins_total", "result" => "ok").increment(1);
        self.open(login).await
    }

    /// The login, when the password is right.
    async fn verify(&self, login: String, password: String) -> Option<String> {
        match &self.ctx.logins {
            Logins::Accounts(directory) => {
                let user = verify_password(directory.clone(), login, password).await;
                user.map(|u| u.login)
            }
            Logins::Catcher { login: want_login, password: want_password } => {
                // Digests compared whole, both always: no early exit tells which part differs.
                let same = |a: &str, b: &str| Sha256::digest(a) == Sha256::digest(b);
                let matches = same(&login, want_login) & same(&password, want_password);
                matches.then_some(login)
            }
        }
    }

    /// Locks the login's maildrop and takes its snapshot.
    async fn open(&mut self, login: String) -> Result<Flow, Stop> {
        let (maildrop, scope) = match &self.ctx.logins {
            Logins::Accounts(_) => {
                (login.clone(), Some(SearchQuery::default().for_account(&login)))
            }
            Logins::Catcher { .. } => (CATCHER_MAILDROP.to_string(), None),
        };
        let Some(lock) = self.ctx.lock(&maildrop) else {
            return Ok(self.error("[IN-USE] the maildrop is open in another session"));
        };
        let snapshot = snapshot(self.ctx.clone(), scope).await;
        let maildrop = match snapshot {
            Ok(maildrop) => maildrop,
            Err(e) => {
                warn!(error = %e, "reading the maildrop failed");
                return Ok(self.error("[SYS/TEMP] cannot read the maildrop; try later"));
            }
        };
        let (count, octets) = maildrop.stat();
        info!(login = %login, messages = count, octets, "POP3 login");
        self.ok(&format!("{login} has {count} messages ({octets} octets)"));
        self.state = State::Transaction(Box::new(Transaction { login, maildrop, _lock: lock }));
        Ok(Flow::Continue)
    }
}

/// The newest `max_messages` messages in `scope` (all without one), oldest first, each with
/// its size as POP3 sends it.
async fn snapshot(
    ctx: Arc<crate::Context>,
    scope: Option<SearchQuery>,
) -> Result<Maildrop, String> {
    let limit = u64::try_from(ctx.config.max_messages).unwrap_or(u64::MAX);
    let read = tokio::task::spawn_blocking(move || {
        ctx.readers.with(|store| {
            let page = store.page(scope.as_ref(), 0, limit)?;
            let mut messages = Vec::with_capacity(page.rows.len());
            for row in page.rows.iter().rev() {
                // Deleted since the page was read: not part of the maildrop.
                if let Some(message) = store.message(&row.id)? {
                    messages.push((row.id, wire::size(&message.full_message())));
                }
            }
            Ok(Maildrop::new(messages))
        })
    })
    .await;
    match read {
        Ok(Ok(maildrop)) => Ok(maildrop),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
