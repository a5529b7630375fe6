//! AUTH (RFC 4954): PLAIN, LOGIN and CRAM-MD5, offered only over TLS (or on a listener that
//! allows plaintext AUTH for loopback tests). Password checks run off the async threads.

use std::time::{SystemTime, UNIX_EPOCH};

use smtp_proto::{AUTH_CRAM_MD5, AUTH_LOGIN, AUTH_PLAIN};
use tern_protocol::Reply;
use tern_protocol::reply::{Status, canned};
use tern_protocol::sasl::{self, SaslError};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::{Flow, Phase, Session, Stop};
use crate::connection::Input;
use tern_ingest::AuthUser;

/// The mechanisms Tern always offers, in EHLO order; CRAM-MD5 follows when an account has it.
const MECHANISMS: &str = "PLAIN LOGIN";

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The EHLO `AUTH` line's mechanisms. The CRAM-MD5 check is one indexed lookup, made
    /// only on submission listeners.
    pub(super) fn mechanisms(&self) -> String {
        let cram = self.ctx.directory.as_ref().is_some_and(|d| d.cram_md5_enabled());
        if cram { format!("{MECHANISMS} CRAM-MD5") } else { MECHANISMS.to_string() }
    }

    /// AUTH may be used on this connection now.
    pub(super) fn auth_offered(&self) -> bool {
        self.ctx.directory.is_some()
            && self.listener.role.requires_auth()
            && (self.tls.is_some() || self.listener.allow_plaintext_auth)
    }

    pub(super) async fn authenticate(
        &mut self,
        mechanism: u64,
        initial: String,
    ) -> Result<Flow, Stop> {
        if self.hello.is_none() {
            return Ok(self.answer(canned::bad_sequence("Error: send EHLO first")));
        }
        if self.auth.is_some() {
            return Ok(self.answer(canned::bad_sequence("Error: already authenticated")));
        }
        if !matches!(self.phase, Phase::Idle) {
            return Ok(self.answer(canned::bad_sequence(
                "Error: AUTH not allowed during a mail transaction",
            )));
        }
        if self.ctx.directory.is_none() || !self.listener.role.requires_auth() {
            return Ok(self.answer(Reply::new(
                503,
                Status(5, 5, 1),
                "Error: authentication not enabled",
            )));
        }
        if !self.auth_offered() {
            return Ok(self.answer(Reply::new(
                538,
                Status(5, 7, 11),
                "Encryption required for requested authentication mechanism",
            )));
        }
        if ![AUTH_PLAIN, AUTH_LOGIN, AUTH_CRAM_MD5].contains(&mechanism) {
            return Ok(self.answer(Reply::new(
                504,
                Status(5, 5, 4),
                "Error: unsupported authentication mechanism",
            )));
        }
        if let super::chaos::Outcome::Answer(reply) = self.chaos(|chaos| chaos.at_auth()).await? {
            return Ok(self.answer(reply));
        }
        // Per-client throttling: a growing delay, then a temporary lockout. The attempt is
        // counted as failed before it starts, so a client that hangs up mid-exchange (or
        // before hearing the answer) has still spent one try; success clears the count. The
        // delay is waited before every answer, success included, so an early answer cannot
        // tell a client its guess was right.
        let mut delay = std::time::Duration::ZERO;
        if let Some(mta) = &self.ctx.mta {
            let now = std::time::Instant::now();
            match mta.auth_throttle.check(self.peer.ip(), now) {
                Ok(wait) => delay = wait,
                Err(denial) => {
                    warn!(ip = %self.peer.ip(), "authentication locked out");
                    self.conn.queue(&super::envelope::denial_reply(&denial));
                    return Ok(Flow::Close);
                }
            }
            mta.auth_throttle.record_failure(self.peer.ip(), now);
        }
        let outcome = match mechanism {
            AUTH_PLAIN => self.sasl_plain(initial).await?,
            AUTH_LOGIN => self.sasl_login(initial).await?,
            _ => self.sasl_cram().await?, // CRAM-MD5: the only other one, checked above
        };
        if !delay.is_zero() {
            self.pause(delay).await?;
        }
        if let (Some(mta), Ok(Some(_))) = (&self.ctx.mta, &outcome) {
            mta.auth_throttle.record_success(self.peer.ip());
        }
        let reply = match outcome {
            Ok(Some(user)) => {
                info!(login = %user.login, "authenticated");
                self.auth = Some(user);
                Reply::new(235, Status(2, 7, 0), "Authentication successful")
            }
            Ok(None) => {
                warn!(ip = %self.peer.ip(), "authentication failed");
                Reply::new(535, Status(5, 7, 8), "Authentication credentials invalid")
            }
            Err(SaslError::Cancelled) => {
                Reply::new(501, Status(5, 0, 0), "Authentication cancelled")
            }
            Err(e) => Reply::new(501, Status(5, 5, 2), format!("Error: {e}")),
        };
        Ok(self.answer(reply))
    }

    /// Sends a `334` challenge and reads the client's response line.
    async fn challenge(&mut self, text: String) -> Result<Result<Vec<u8>, SaslError>, Stop> {
        self.conn.queue(&Reply::plain(334, vec![text.into()]));
        match self.read_line().await? {
            Input::TooLong => Ok(Err(SaslError::Malformed("over-long"))),
            Input::Line(line) => {
                let text = String::from_utf8_lossy(&line);
                Ok(sasl::decode_response(text.trim_end_matches(['\r', '\n'])))
            }
        }
    }

    async fn sasl_plain(
        &mut self,
        initial: String,
    ) -> Result<Result<Option<AuthUser>, SaslError>, Stop> {
        let decoded = if initial.is_empty() {
            self.challenge(String::new()).await?
        } else {
            sasl::decode_response(&initial)
        };
        let creds = match decoded.and_then(|d| sasl::decode_plain(&d)) {
            Ok(creds) => creds,
            Err(e) => return Ok(Err(e)),
        };
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.login) {
            // Acting as someone else is not supported; treat as a failed login.
            return Ok(Ok(None));
        }
        Ok(Ok(self.verify(creds.login, creds.password).await))
    }

    async fn sasl_login(
        &mut self,
        initial: String,
    ) -> Result<Result<Option<AuthUser>, SaslError>, Stop> {
        let user = if initial.is_empty() {
            self.challenge(sasl::encode_challenge(b"Username:")).await?
        } else {
            sasl::decode_response(&initial)
        };
        let login = match user.and_then(|u| sasl::decode_login_field(&u)) {
            Ok(login) => login,
            Err(e) => return Ok(Err(e)),
        };
        let password = match self
            .challenge(sasl::encode_challenge(b"Password:"))
            .await?
            .and_then(|p| sasl::decode_login_field(&p))
        {
            Ok(password) => password,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(self.verify(login, password).await))
    }

    async fn sasl_cram(&mut self) -> Result<Result<Option<AuthUser>, SaslError>, Stop> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let challenge = sasl::cram_challenge(rand::random(), now, &self.ctx.hostname);
        let response = self.challenge(sasl::encode_challenge(challenge.as_bytes())).await?;
        let (login, digest) = match response.and_then(|r| sasl::decode_cram(&r)) {
            Ok(parts) => parts,
            Err(e) => return Ok(Err(e)),
        };
        let Some(directory) = self.ctx.directory.clone() else { return Ok(Ok(None)) };
        let looked_up = tokio::task::spawn_blocking(move || directory.cram_secret(&login)).await;
        let user = match looked_up {
            Ok(Ok(Some((secret, user))))
                if sasl::cram_verify(secret.as_bytes(), &challenge, &digest) =>
            {
                Some(user)
            }
            Ok(Err(e)) => {
                warn!(error = %e, "CRAM-MD5 lookup failed");
                None
            }
            _ => None,
        };
        Ok(Ok(user))
    }

    /// Checks a password on a blocking thread (argon2 is deliberately slow).
    async fn verify(&self, login: String, password: String) -> Option<AuthUser> {
        verify_password(self.ctx.directory.clone()?, login, password).await
    }
}

/// Checks a login and password on a blocking thread (argon2 is deliberately slow); a broken
/// directory is logged and counts as a failed login. Also POP3's check.
pub async fn verify_password(
    directory: std::sync::Arc<dyn tern_ingest::Directory>,
    login: String,
    password: String,
) -> Option<AuthUser> {
    match tokio::task::spawn_blocking(move || directory.verify(&login, &password)).await {
        Ok(Ok(user)) => user,
        Ok(Err(e)) => {
            warn!(error = %e, "password check failed");
            None
        }
        Err(e) => {
            warn!(error = %e, "password check task failed");
            None
        }
    }
}
