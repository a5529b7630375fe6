//! HELO and EHLO: the client names itself; EHLO also learns what Tern supports.

use tern_protocol::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Hello, Phase, Session};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn ehlo(&mut self, name: String) -> Reply {
        self.hello = Some(Hello { name, extended: true });
        self.phase = Phase::Idle;
        let mut lines = vec![
            self.ctx.hostname.clone().into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.ctx.config.max_message_bytes).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        // RFC 3207: STARTTLS is not offered again once TLS is up.
        if self.ctx.tls.is_some() && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() && self.auth.is_none() {
            lines.push(format!("AUTH {}", self.mechanisms()).into());
        }
        Reply::plain(250, lines)
    }

    pub(super) fn helo(&mut self, name: String) -> Reply {
        self.hello = Some(Hello { name, extended: false });
        self.phase = Phase::Idle;
        Reply::plain(250, vec![self.ctx.hostname.clone().into()])
    }
}
