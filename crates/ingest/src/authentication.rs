//! Message authentication as stages of the chain, at end of data.
//!
//! [`Authenticate`] judges mail from clients Tern does not trust (the world on an `mx`
//! listener; every client of the catcher when `auth.verify` is on): SPF, DKIM, ARC and DMARC,
//! the `Authentication-Results` field above the message, any field that forges our
//! authserv-id removed, and the configured policy's decision — refuse (`550 5.7.1`), put off
//! (`451 4.7.x`), or tag `junk`. In the catcher it only reports: a catcher never refuses mail.
//!
//! [`Sign`] DKIM-signs what trusted clients (authenticated users, trusted networks, the HTTP
//! API's administrator) send, once, as the message comes in: retries send the same bytes.

use std::sync::Arc;

use tern_auth::{AuthConfig, Decision, Session, Signer, Verifier};
use tern_policy::RelayPolicy;
use tern_protocol::Reply;
use tern_protocol::reply::Status;

use crate::check::{Check, Findings, Pending, Verdict};
use crate::door::{Client, Transaction};

/// The tag of a message the authentication policy calls junk.
pub const JUNK_TAG: &str = "junk";

/// SPF, DKIM, ARC and DMARC on mail from untrusted clients.
pub struct Authenticate {
    verifier: Arc<Verifier>,
    config: AuthConfig,
    /// Seals forwarded mail with ARC (the mail server, when keys exist and `dkim.arc_seal`).
    sealer: Option<Arc<Signer>>,
    /// The mail server's relay policy (who is trusted); `None` in the catcher, which then
    /// checks every SMTP client and never refuses.
    policy: Option<Arc<RelayPolicy>>,
}

impl Authenticate {
    /// The stage for the mail server: clients `policy` trusts are not checked.
    pub fn mta(verifier: Arc<Verifier>, config: AuthConfig, policy: Arc<RelayPolicy>) -> Self {
        Authenticate { verifier, config, sealer: None, policy: Some(policy) }
    }

    /// Seals what is forwarded (a local alias whose target is remote) with `signer`'s keys for
    /// this server's domain.
    pub fn with_sealer(mut self, signer: Arc<Signer>) -> Self {
        self.sealer = Some(signer);
        self
    }

    /// The stage for the catcher: every SMTP client is checked, nothing is refused.
    pub fn catcher(verifier: Arc<Verifier>, config: AuthConfig) -> Self {
        Authenticate { verifier, config, sealer: None, policy: None }
    }

    async fn judge(&self, client: &Client, tx: &Transaction, raw: &[u8]) -> Verdict {
        let session =
            Session { ip: client.peer.ip(), helo: &client.helo, mail_from: &tx.mail_from };
        // Only a local alias can send an untrusted client's mail to another domain.
        let forwarded = tx.recipients.iter().any(|r| r.route == tern_store::Route::Remote);
        let sealer = self.sealer.as_deref().filter(|_| forwarded);
        let results = self.verifier.verify_and_seal(session, raw, sealer).await;
        let mut findings = Findings {
            headers: results
                .arc_set
                .iter()
                .flatten()
                .cloned()
                .chain([results.header.clone()])
                .collect(),
            remove_results_of: Some(self.verifier.authserv_id().to_string()),
            ..Findings::default()
        };
        findings.headers.extend(results.received_spf.clone());
        let decision = results.decide(&self.config);
        match decision {
            Decision::Accept => {}
            Decision::Junk(reason) => {
                tracing::info!(reason = %reason, "tagged junk");
                findings.tags.push(JUNK_TAG.to_string());
            }
            // The catcher keeps everything: what would have been refused is tagged instead.
            Decision::Reject(reason) | Decision::Defer(_, reason) if self.policy.is_none() => {
                tracing::info!(reason = %reason, "would be refused; kept by the catcher");
                findings.tags.push(JUNK_TAG.to_string());
            }
            Decision::Reject(reason) => {
                return Verdict::Reject(Reply::new(550, Status(5, 7, 1), reason));
            }
            Decision::Defer(detail, reason) => {
                return Verdict::Defer(Reply::new(451, Status(4, 7, detail), reason));
            }
        }
        Verdict::Accept(findings)
    }
}

impl Check for Authenticate {
    fn name(&self) -> &'static str {
        "authentication"
    }

    fn at_data<'a>(
        &'a self,
        client: &'a Client,
        tx: &'a Transaction,
        raw: &'a [u8],
    ) -> Pending<'a> {
        // The HTTP API's messages are Tern's own users' (or, in the catcher, the tests').
        if client.admin || self.policy.as_deref().is_some_and(|policy| client.trusted_by(policy)) {
            return Verdict::accept().ready();
        }
        Box::pin(self.judge(client, tx, raw))
    }
}

/// DKIM signatures on mail from trusted clients.
pub struct Sign {
    signer: Arc<Signer>,
    policy: Arc<RelayPolicy>,
}

impl Sign {
    /// Signs with `signer` what the clients `policy` trusts send.
    pub fn new(signer: Arc<Signer>, policy: Arc<RelayPolicy>) -> Self {
        Sign { signer, policy }
    }
}

impl Check for Sign {
    fn name(&self) -> &'static str {
        "dkim-sign"
    }

    fn at_data<'a>(&'a self, client: &'a Client, _: &'a Transaction, raw: &'a [u8]) -> Pending<'a> {
        if !client.trusted_by(&self.policy) {
            return Verdict::accept().ready();
        }
        let headers = self.signer.sign(raw);
        Verdict::Accept(Findings { headers, ..Findings::default() }).ready()
    }
}
