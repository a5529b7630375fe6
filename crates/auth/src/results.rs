//! What the checks found, as plain owned values: the `Authentication-Results` field to add,
//! one entry per method for logs, metrics and the API, and the [`Decision`] the configured
//! policy makes of them.

use mail_auth::dmarc::Policy;
use mail_auth::{DkimOutput, DkimResult, DmarcOutput, DmarcResult};
use serde::Serialize;

use crate::config::{Action, AuthConfig, OnTempError};

/// The SPF result for one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfCheck {
    /// `pass`, `fail`, `softfail`, `neutral`, `none`, `temperror` or `permerror`.
    pub result: String,
    /// `mailfrom` or `helo`.
    pub identity: String,
    /// The address or name checked.
    pub address: String,
    /// The domain whose record was evaluated.
    pub domain: String,
    /// The domain's explanation of a `fail` (`exp=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// The result of one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DkimCheck {
    /// `pass`, `fail`, `neutral`, `temperror` or `permerror`.
    pub result: String,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// The algorithm (`rsa-sha256`, `ed25519-sha256`, ...).
    pub algorithm: String,
    /// Why it did not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The DMARC result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmarcCheck {
    /// `pass`, `fail`, `none`, `temperror` or `permerror`.
    pub result: String,
    /// The author domain (of `From:`).
    pub domain: String,
    /// The policy the domain asks for a failure: `none`, `quarantine` or `reject` (already
    /// lowered one step when the record says `t=y`).
    pub policy: String,
    /// Why it did not pass, or why DMARC did not apply (two `From:` domains, none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything the checks found about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Results {
    /// The authserv-id: this server's name.
    pub authserv_id: String,
    /// SPF for the MAIL FROM identity.
    pub spf: SpfCheck,
    /// SPF for the HELO identity.
    pub spf_helo: SpfCheck,
    /// Each DKIM signature checked, in the message's order.
    pub dkim: Vec<DkimCheck>,
    /// Signatures past `auth.max_dkim_signatures`, not checked.
    pub dkim_unchecked: usize,
    /// The ARC chain: `pass`, `fail` or `none`.
    pub arc: String,
    /// DMARC.
    pub dmarc: DmarcCheck,
    /// The `Authentication-Results:` field, folded, with its CRLF.
    #[serde(skip)]
    pub header: String,
    /// The `Received-SPF:` field, when configured.
    #[serde(skip)]
    pub received_spf: Option<String>,
    /// `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results`, one field each,
    /// when the message was sealed.
    #[serde(skip)]
    pub arc_set: Option<Vec<String>>,
}

/// What the policy makes of the results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it in.
    Accept,
    /// Let it in, tagged `junk`, for this reason.
    Junk(String),
    /// Refuse it for good (`550 5.7.1` and this text).
    Reject(String),
    /// Refuse it for now (`451 4.7.x`): the enhanced code's last number and the text.
    Defer(u8, String),
}

impl DkimCheck {
    pub(crate) fn new(output: &DkimOutput<'_>) -> Self {
        let (result, reason) = result_name(output.result());
        let signature = output.signature();
        DkimCheck {
            result: result.into(),
            domain: signature.map(|s| s.d.to_ascii_lowercase()).unwrap_or_default(),
            selector: signature.map(|s| s.s.clone()).unwrap_or_default(),
            algorithm: signature.map(|s| algorithm_name(s.a).to_string()).unwrap_or_default(),
            reason,
        }
    }
}

/// A DKIM (or ARC) result's RFC 8601 name, and the error behind it.
pub(crate) fn result_name(result: &DkimResult) -> (&'static str, Option<String>) {
    match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

fn algorithm_name(algorithm: mail_auth::crypto::Algorithm) -> &'static str {
    use mail_auth::crypto::Algorithm;
    match algorithm {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
        _ => "other",
    }
}

impl DmarcCheck {
    pub(crate) fn new(output: &DmarcOutput, from_addresses: usize) -> Self {
        let (result, reason) = match output.result() {
            DmarcResult::Pass => ("pass", None),
            DmarcResult::Fail(e) => ("fail", Some(e.to_string())),
            DmarcResult::TempError(e) => ("temperror", Some(e.to_string())),
            DmarcResult::PermError(e) => ("permerror", Some(e.to_string())),
            DmarcResult::None if output.domain().is_empty() => {
                let why = match from_addresses {
                    0 => "no From: address",
                    _ => "From: names more than one domain",
                };
                ("none", Some(why.to_string()))
            }
            DmarcResult::None => ("none", None),
        };
        DmarcCheck {
            result: result.into(),
            domain: output.domain().to_string(),
            policy: output.policy().to_string(),
            reason,
        }
    }

    pub(crate) fn none() -> Self {
        DmarcCheck {
            result: "none".into(),
            domain: String::new(),
            policy: Policy::None.to_string(),
            reason: Some("no message header".into()),
        }
    }
}

impl Results {
    /// What `config` says to do with a message that has these results. DMARC speaks first
    /// (its domain's own policy), then an SPF `fail`, then DNS failures.
    pub fn decide(&self, config: &AuthConfig) -> Decision {
        if self.dmarc.result == "fail" {
            let action = match self.dmarc.policy.as_str() {
                "reject" => config.dmarc_reject,
                "quarantine" => config.dmarc_quarantine,
                _ => Action::Accept,
            };
            let why = format!(
                "DMARC policy of {} ({}) refuses unauthenticated mail",
                self.dmarc.domain, self.dmarc.policy
            );
            match action {
                Action::Reject => return Decision::Reject(why),
                Action::Junk => return Decision::Junk(why),
                Action::Accept => {}
            }
        }
        if self.spf.result == "fail" {
            let why = match &self.spf.explanation {
                Some(explanation) => format!("SPF of {} fails: {explanation}", self.spf.domain),
                None => format!("SPF of {} does not allow this client", self.spf.domain),
            };
            match config.spf_fail {
                Action::Reject => return Decision::Reject(why),
                Action::Junk => return Decision::Junk(why),
                Action::Accept => {}
            }
        }
        if config.temperror == OnTempError::Defer {
            if self.dmarc.result == "temperror" {
                let why = format!("DNS lookup for DMARC of {} failed", self.dmarc.domain);
                return Decision::Defer(5, why);
            }
            if self.spf.result == "temperror" {
                return Decision::Defer(
                    27,
                    format!("SPF of {} could not be checked: DNS failed", self.spf.domain),
                );
            }
        }
        Decision::Accept
    }

    /// One log line and the Prometheus counters (`tern_auth_results_total{method,result}`).
    pub(crate) fn record(&self) {
        let dkim: Vec<String> =
            self.dkim.iter().map(|d| format!("{}:{}", d.domain, d.result)).collect();
        tracing::info!(
            spf = %self.spf.result,
            spf_domain = %self.spf.domain,
            spf_helo = %self.spf_helo.result,
            dkim = %dkim.join(","),
            arc = %self.arc,
            dmarc = %self.dmarc.result,
            dmarc_domain = %self.dmarc.domain,
            dmarc_policy = %self.dmarc.policy,
            "authentication results"
        );
        let count = |method: &'static str, result: &str| {
            metrics::counter!("tern_auth_results_total", "method" => method, "result" => result.to_string())
                .increment(1);
        };
        count("spf", &self.spf.result);
        count("spf_helo", &self.spf_helo.result);
        for dkim in &self.dkim {
            count("dkim", &dkim.result);
        }
        if self.dkim.is_empty() {
            count("dkim", "none");
        }
        count("arc", &self.arc);
        count("dmarc", &self.dmarc.result);
    }
}

/// One `method=result` of an `Authentication-Results` field (RFC 8601 §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodResult {
    /// `spf`, `dkim`, `dmarc`, `arc`, ...
    #[serde(rename = "Method")]
    pub method: String,
    /// `pass`, `fail`, `none`, ...
    #[serde(rename = "Result")]
    pub result: String,
    /// `ptype.property=value` pairs (`smtp.mailfrom`, `header.d`, `header.from`, ...).
    #[serde(rename = "Properties")]
    pub properties: std::collections::BTreeMap<String, String>,
    /// The comments that came with it (mail-auth puts the reason there).
    #[serde(rename = "Comment", skip_serializing_if = "String::is_empty")]
    pub comment: String,
}

/// The results of the `Authentication-Results` fields in `head` (what Tern put above a stored
/// message), in order: the first field's authserv-id, and every result of the fields with it.
pub fn parse_results(head: &[u8]) -> (String, Vec<MethodResult>) {
    let mut authserv: Option<String> = None;
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<String> = Vec::new();
    for line in text.split("\r\n") {
        match (line.starts_with([' ', '\t']), fields.last_mut()) {
            (true, Some(field)) => field.push_str(line),
            _ => fields.push(line.to_string()),
        }
    }
    let mut results = Vec::new();
    for field in fields {
        let Some((name, value)) = field.split_once(':') else { continue };
        if !name.trim().eq_ignore_ascii_case("authentication-results") {
            continue;
        }
        let (value, comments) = without_comments(value);
        let mut parts = value.split(';');
        let id = parts.next().unwrap_or_default().split_whitespace().next().unwrap_or_default();
        let authserv_id = authserv.get_or_insert_with(|| id.to_ascii_lowercase());
        if !id.eq_ignore_ascii_case(authserv_id) {
            continue;
        }
        // mail-auth writes one comment per result, right after it: pair them in order.
        let mut comments = comments.into_iter();
        for part in parts {
            let mut words = part.split_whitespace();
            let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
                continue;
            };
            let properties = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
                .collect();
            let comment = if part.contains('\u{1}') {
                comments.next().unwrap_or_default()
            } else {
                String::new()
            };
            results.push(MethodResult {
                method: method.to_ascii_lowercase(),
                result: result.to_ascii_lowercase(),
                properties,
                comment,
            });
        }
    }
    (authserv.unwrap_or_default(), results)
}

/// `value` with its (nested) comments replaced by a marker byte, and the comments' text.
fn without_comments(value: &str) -> (String, Vec<String>) {
    let (mut out, mut comments, mut depth, mut current) =
        (String::new(), Vec::new(), 0usize, String::new());
    for c in value.chars() {
        match c {
            '(' => {
                if depth > 0 {
                    current.push(c);
                }
                depth = depth.saturating_add(1);
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    comments.push(std::mem::take(&mut current).trim().to_string());
                    out.push_str(" \u{1} ");
                } else {
                    current.push(c);
                }
            }
            c if depth > 0 => current.push(c),
            c => out.push(c),
        }
    }
    (out, comments)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn our_results_are_read_back_and_others_ignored() {
        let head = b"Received: from x\r\nAuthentication-Results: mx.tern.test;\r\n\tdkim=pass header.d=example.com header.s=s1 header.b=abc;\r\n\tspf=fail (no match (at all)) smtp.mailfrom=a@example.com;\r\n\tdmarc=pass header.from=example.com\r\nAuthentication-Results: other.example; spf=pass\r\n";
        let (id, results) = parse_results(head);
        assert_eq!(id, "mx.tern.test");
        let summary: Vec<_> =
            results.iter().map(|r| (r.method.as_str(), r.result.as_str())).collect();
        assert_eq!(summary, [("dkim", "pass"), ("spf", "fail"), ("dmarc", "pass")]);
        assert_eq!(results[0].properties["header.d"], "example.com");
        assert_eq!(results[1].comment, "no match (at all)");
        assert_eq!(results[1].properties["smtp.mailfrom"], "a@example.com");
        assert_eq!(results.len(), 3, "another server's field is not ours");
        assert_eq!(parse_results(b"Received: from x\r\n"), (String::new(), Vec::new()));
    }
}
