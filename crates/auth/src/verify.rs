//! Verifying a received message: SPF for the HELO and MAIL FROM identities (RFC 7208), every
//! DKIM signature up to a limit (RFC 6376, RFC 8463), the ARC chain (RFC 8617) and DMARC
//! (RFC 7489 as revised by RFC 9989: the DNS tree walk finds the policy and organisational
//! domains). mail-auth does the protocol work; this module decides what to ask, applies the
//! limits, renders `Authentication-Results` (RFC 8601) and turns the results into
//! [`Results`], which the check chain acts on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::headers::HeaderWriter;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, MessageAuthenticator,
    Parameters, ReceivedSpf, SpfOutput, SpfResult,
};

use crate::cache::{Caches, DEFAULT_CACHE_ENTRIES, StaticRecords};
use crate::config::{AuthConfig, ConfigError};
use crate::results::{DkimCheck, Results, SpfCheck};

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// A configured value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The DNS resolver could not be built.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

/// The SMTP facts the checks need.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// What it said in HELO/EHLO.
    pub helo: &'a str,
    /// The reverse path (empty for the null sender).
    pub mail_from: &'a str,
}

impl<'a> Session<'a> {
    /// The client's address as SPF must see it: a dual-stack listener reports an IPv4 client
    /// as `::ffff:a.b.c.d`, which is IPv4 (RFC 7208 §5).
    fn client_ip(&self) -> IpAddr {
        self.ip.to_canonical()
    }

    /// The HELO name, without the brackets of an address literal.
    fn helo_name(&self) -> &'a str {
        self.helo.trim_start_matches('[').trim_end_matches(']')
    }

    /// The domain SPF judges for MAIL FROM: the sender's, or the HELO name's for the null sender.
    fn mail_from_domain(&self) -> &'a str {
        self.mail_from.rsplit_once('@').map_or(self.helo_name(), |(_, domain)| domain)
    }
}

/// Checks messages; one per server, shared by every session (the DNS caches live here).
pub struct Verifier {
    pub(crate) authenticator: MessageAuthenticator,
    caches: Arc<Caches>,
    hostname: String,
    max_dkim_signatures: usize,
    received_spf: bool,
}

impl Verifier {
    /// A verifier asking `dns_servers` (the system's when empty), each query bounded by
    /// `dns_timeout`; `hostname` is the authserv-id of the `Authentication-Results` it writes.
    pub fn new(
        config: &AuthConfig,
        hostname: &str,
        dns_servers: &[SocketAddr],
        dns_timeout: Duration,
    ) -> Result<Self, VerifierError> {
        let records = StaticRecords::parse(&config.records)?;
        let (resolver_config, options) = tern_dns::settings(dns_servers, dns_timeout);
        let authenticator = MessageAuthenticator::new(resolver_config, options)
            .map_err(|e| VerifierError::Resolver(e.to_string()))?;
        Ok(Verifier {
            authenticator,
            caches: Arc::new(Caches::new(records, DEFAULT_CACHE_ENTRIES)),
            hostname: hostname.to_ascii_lowercase(),
            max_dkim_signatures: config.max_dkim_signatures,
            received_spf: config.received_spf,
        })
    }

    /// The resolver behind the checks, for the rest of the server to share (MX lookups).
    pub fn resolver(&self) -> &tern_dns::TokioResolver {
        self.authenticator.resolver()
    }

    /// The authserv-id this verifier writes (and whose forged copies are removed).
    pub fn authserv_id(&self) -> &str {
        &self.hostname
    }

    /// SPF alone for the MAIL FROM identity of `session` (the HELO identity when the reverse
    /// path is empty), as RFC 7208's `check_host()` defines it.
    pub async fn check_spf(&self, session: Session<'_>) -> SpfCheck {
        let (ip, helo) = (session.client_ip(), session.helo_name());
        let params = SpfParameters::mail_from(ip, helo, &self.hostname, session.mail_from);
        let output =
            self.authenticator.verify_spf(Parameters::new(params).with_cache(&*self.caches)).await;
        SpfCheck::new(&output, "mailfrom", session.mail_from, session.mail_from_domain())
    }

    /// Runs every check on `raw` (the message as the client sent it) for `session`.
    pub async fn verify(&self, session: Session<'_>, raw: &[u8]) -> Results {
        self.verify_and_seal(session, raw, None).await
    }

    /// [`Verifier::verify`], and when `sealer` has keys for this server's domain (the
    /// authserv-id or a parent of it), an ARC set (RFC 8617) over the message and these
    /// results, for a message Tern forwards: the next hop can then trust our verdict when
    /// forwarding has broken SPF (and a footer DKIM).
    pub async fn verify_and_seal(
        &self,
        session: Session<'_>,
        raw: &[u8],
        sealer: Option<&crate::Signer>,
    ) -> Results {
        let caches = &*self.caches;
        let (ip, helo) = (session.client_ip(), session.helo_name());
        let helo_params = SpfParameters::helo(ip, helo, &self.hostname);
        let spf_helo =
            self.authenticator.verify_spf(Parameters::new(helo_params).with_cache(caches)).await;
        let from_params = SpfParameters::mail_from(ip, helo, &self.hostname, session.mail_from);
        let spf =
            self.authenticator.verify_spf(Parameters::new(from_params).with_cache(caches)).await;
        let spf_domain = session.mail_from_domain();

        let Some(mut message) = AuthenticatedMessage::parse_with_opts(raw, None, false) else {
            // No header at all: nothing DKIM, ARC or DMARC could judge.
            return self.results_without_message(&spf, &spf_helo, &from_params, &helo_params);
        };
        let (unchecked, partial) = self.screen_signatures(&mut message);
        let message = message;
        let dkim =
            self.authenticator.verify_dkim(Parameters::new(&message).with_cache(caches)).await;
        let dkim = without_unchecked(dkim, unchecked);
        let arc = self.authenticator.verify_arc(Parameters::new(&message).with_cache(caches)).await;
        let dmarc = self
            .authenticator
            .verify_dmarc(
                Parameters::new(DmarcParameters::new(&message, &dkim, spf_domain, &spf))
                    .with_cache(caches),
            )
            .await;

        let from = message.first_from_address();
        let results_field = AuthenticationResults::new(&self.hostname)
            .with_spf_result(&spf_helo, &helo_params)
            .with_spf_result(&spf, &from_params)
            .with_dkim_results(&dkim, from)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc);
        let header = results_field.to_header();
        let arc_set = sealer
            .and_then(|sealer| sealer.seal(&self.hostname, &message, &results_field, &arc, raw));
        let mut results = Results {
            authserv_id: self.hostname.clone(),
            spf: SpfCheck::new(&spf, "mailfrom", session.mail_from, spf_domain),
            spf_helo: SpfCheck::new(&spf_helo, "helo", helo, helo),
            dkim: dkim.iter().map(DkimCheck::new).collect(),
            dkim_unchecked: unchecked,
            arc: crate::results::result_name(arc.result()).0.to_string(),
            dmarc: crate::results::DmarcCheck::new(&dmarc, message.from_addresses().len()),
            header: with_note(header, unchecked, partial),
            received_spf: None,
            arc_set,
        };
        if self.received_spf {
            results.received_spf = Some(ReceivedSpf::new(&spf, &from_params).to_header());
        }
        results.record();
        results
    }

    fn results_without_message(
        &self,
        spf: &SpfOutput,
        spf_helo: &SpfOutput,
        from_params: &SpfParameters<'_>,
        helo_params: &SpfParameters<'_>,
    ) -> Results {
        let header = AuthenticationResults::new(&self.hostname)
            .with_spf_result(spf_helo, helo_params)
            .with_spf_result(spf, from_params)
            .to_header();
        let results = Results {
            authserv_id: self.hostname.clone(),
            spf: SpfCheck::new(spf, "mailfrom", "", spf.domain()),
            spf_helo: SpfCheck::new(spf_helo, "helo", "", spf_helo.domain()),
            dkim: Vec::new(),
            dkim_unchecked: 0,
            arc: "none".into(),
            dmarc: crate::results::DmarcCheck::none(),
            header,
            received_spf: None,
            arc_set: None,
        };
        results.record();
        results
    }
}

/// Notes, as comments on a last line of the header, the signatures that were not checked
/// and those whose `l=` left part of the body unsigned.
fn with_note(header: String, unchecked: usize, partial: usize) -> String {
    let mut notes = Vec::new();
    if partial > 0 {
        notes.push(format!("({partial} DKIM signature(s) leave content after l= unsigned)"));
    }
    if unchecked > 0 {
        notes.push(format!("({unchecked} further DKIM signature(s) not checked)"));
    }
    if notes.is_empty() {
        return header;
    }
    let trimmed = header.trim_end_matches("\r\n");
    format!("{trimmed}\r\n\t{}\r\n", notes.join(" "))
}

/// The error that marks a signature past the limit (dropped from the results).
const PAST_LIMIT: DkimError = DkimError::UnsupportedVersion;

/// The outputs without the entries of signatures that were past the limit.
fn without_unchecked(outputs: Vec<DkimOutput<'_>>, mut unchecked: usize) -> Vec<DkimOutput<'_>> {
    let past_limit = DkimResult::Neutral(mail_auth::Error::Dkim(PAST_LIMIT));
    outputs
        .into_iter()
        .filter(|output| {
            let drop =
                unchecked > 0 && output.signature().is_none() && output.result() == &past_limit;
            unchecked = unchecked.saturating_sub(usize::from(drop));
            !drop
        })
        .collect()
}

impl Verifier {
    /// Keeps the first `max_dkim_signatures` signatures for verification, and of those only
    /// the ones whose `l=` (if any) covers the whole body: content appended after the signed
    /// part would otherwise ride on their pass (RFC 6376 §8.2); they are `neutral`. Returns
    /// how many were past the limit and how many were partial.
    fn screen_signatures(&self, message: &mut AuthenticatedMessage<'_>) -> (usize, usize) {
        let body = message.raw_body().to_vec();
        let (mut seen, mut partial) = (0usize, 0usize);
        let limit = self.max_dkim_signatures;
        message.retain_dkim_signatures(|signature| {
            seen = seen.saturating_add(1);
            if seen > limit {
                return Err(PAST_LIMIT);
            }
            let relaxed = matches!(signature.cb, mail_auth::dkim::Canonicalization::Relaxed);
            if signature.l > 0 && signature.l < canonical_body_len(&body, relaxed) {
                partial = partial.saturating_add(1);
                return Err(DkimError::BodyLengthTag);
            }
            Ok(())
        });
        (seen.saturating_sub(limit), partial)
    }
}

/// The length of `body` after DKIM body canonicalization (RFC 6376 §3.4.3, §3.4.4).
pub fn canonical_body_len(body: &[u8], relaxed: bool) -> u64 {
    let mut total = 0u64;
    let mut pending_empty = 0u64;
    let text = body.strip_suffix(b"\r\n").unwrap_or(body);
    let mut any = false;
    for line in text.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let len = if relaxed { relaxed_line_len(line) } else { line.len() as u64 };
        if len == 0 {
            pending_empty = pending_empty.saturating_add(1);
            continue;
        }
        any = true;
        // Empty lines inside the body stay; only the trailing run goes.
        total = total.saturating_add(pending_empty.saturating_mul(2)).saturating_add(len + 2);
        pending_empty = 0;
    }
    match (any, relaxed) {
        (true, _) => total,
        // An empty body is CRLF in simple canonicalization, empty in relaxed.
        (false, false) => 2,
        (false, true) => 0,
    }
}

/// A line in relaxed canonicalization: runs of whitespace are one space, none at the end.
fn relaxed_line_len(line: &[u8]) -> u64 {
    let mut len = 0u64;
    let mut in_space = false;
    for &byte in line {
        if byte == b' ' || byte == b'\t' {
            in_space = true;
        } else {
            // A run before this byte (leading ones too) is one space; a run at the end, none.
            len += if in_space { 2 } else { 1 };
            in_space = false;
        }
    }
    len
}

impl SpfCheck {
    fn new(output: &SpfOutput, identity: &str, address: &str, domain: &str) -> Self {
        SpfCheck {
            result: spf_name(output.result()).to_string(),
            identity: identity.to_string(),
            address: address.to_string(),
            domain: domain.to_ascii_lowercase(),
            explanation: output.explanation().map(str::to_string),
        }
    }
}

fn spf_name(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_body_lengths_follow_rfc_6376() {
        // RFC 6376 §3.4.5's example body: " C \r\nD \t E\r\n\r\n\r\n".
        let body = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(canonical_body_len(body, false), b" C \r\nD \t E\r\n".len() as u64);
        assert_eq!(canonical_body_len(body, true), b" C\r\nD E\r\n".len() as u64);
        assert_eq!(canonical_body_len(b"", false), 2);
        assert_eq!(canonical_body_len(b"", true), 0);
        assert_eq!(canonical_body_len(b"\r\n\r\n", true), 0);
        assert_eq!(canonical_body_len(b"a\r\n\r\nb", false), b"a\r\n\r\nb\r\n".len() as u64);
        assert_eq!(canonical_body_len(b"x  \t\r\n", true), 3);
    }
}
