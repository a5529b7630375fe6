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
        if !decision.delay.is_zero() {
            // The client hears nothing during the wait, replies queued before included.
            self.flush().await?;
            self.pause(decision.delay).await?;
        }
        match decision.act {
            Act::Pass => Ok(Outcome::Proceed),
            Act::Reply(reply) => Ok(Outcome::Answer(reply)),
            Act::Drop => Ok(Outcome::Drop),
            Act::Disconnect => {
                info!(source = %decision.source, "chaos: disconnecting");
                Err(Stop::Closed)
            }
        }
    }
}
