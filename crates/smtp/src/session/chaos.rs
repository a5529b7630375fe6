//! Carrying out chaos (`tern_ingest::chaos`) in the session: the engine decides at `MAIL`,
//! `RCPT`, `AUTH`, the start of `DATA`/`BDAT` and end of data; the session waits the delay,
//! then answers with the rule's reply, hangs up without a word, or says `250` and stores
//! nothing.

use tern_ingest::chaos::{Act, Chaos, Decision};
use tern_protocol::Reply;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::{Session, Stop};

/// What the session does after chaos had its say.
pub(super) enum Outcome {
    /// Go on as normal.
    Proceed,
    /// Answer this instead.
    Answer(Reply),
    /// Say the message is stored and store nothing (end of data).
    Drop,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Asks the engine (when chaos is on) and carries out the wait and a disconnect; the
    /// other acts come back for the caller.
    pub(super) async fn chaos(
        &mut self,
        ask: impl FnOnce(&Chaos) -> Option<Decision>,
    ) -> Result<Outcome, Stop> {
        let Some(decision) = self.ctx.door.chaos().and_then(|chaos| ask(chaos)) else {
            return Ok(Outcome::Proceed);
        };
        self.chaos_delay(decision.delay).await?;
        match decision.act {
            Act::Pass => Ok(Outcome::Proceed),
            Act::Reply(reply) => {
                // Asked for by the test, not earned by the client: no error count, no tarpit.
                self.uncounted = true;
                Ok(Outcome::Answer(reply))
            }
            Act::Drop => Ok(Outcome::Drop),
            Act::Disconnect => {
                info!(source = %decision.source, "chaos: disconnecting");
                Err(Stop::Closed)
            }
        }
    }

    /// Waits a chaos delay: replies queued before go out first; the session's deadline and
    /// shutdown still end it.
    pub(super) async fn chaos_delay(&mut self, delay: std::time::Duration) -> Result<(), Stop> {
        if delay.is_zero() {
            return Ok(());
        }
        self.flush().await?;
        let left = self.deadline.saturating_duration_since(tokio::time::Instant::now());
        self.pause(delay.min(left)).await?;
        if delay > left {
            return Err(Stop::SessionTimeout);
        }
        Ok(())
    }
}
