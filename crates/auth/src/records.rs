//! The policy records a domain publishes, looked up for diagnostics (`tern check DOMAIN`): SPF,
//! DMARC, MTA-STS and TLS-RPT TXT records as their text and as mail-auth parses them, and the
//! forward-confirmed reverse DNS of an address. The verdicts (what is good, what to fix) are
//! the caller's; this module only says what DNS holds, through the verifier's resolver.

use std::net::IpAddr;
use std::sync::Arc;

pub use mail_auth::dmarc::{DmarcRecord, Policy as DmarcPolicy};
use mail_auth::dns::TxtRecordParser;
use mail_auth::iprev::IprevResult;
pub use mail_auth::mta_sts::{MtaStsRecord, ReportUri, TlsRptRecord};
pub use mail_auth::spf::SpfRecord;

use crate::Verifier;

/// What one kind of policy record looks like in DNS.
#[derive(Debug)]
pub enum Published<T> {
    /// No TXT record of this kind (the name may hold other TXT records).
    Missing,
    /// More than one record of this kind: receivers treat that as an error.
    Several(Vec<String>),
    /// One record, which does not parse.
    Invalid {
        /// The record's text.
        text: String,
        /// mail-auth's reason.
        reason: String,
    },
    /// One record, parsed.
    Found {
        /// The record's text.
        text: String,
        /// The parsed record.
        record: Arc<T>,
    },
    /// The lookup failed (timeout, SERVFAIL): nothing can be said.
    Failed(String),
}

/// Reverse DNS of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseDns {
    /// A PTR name resolves back to the address.
    Confirmed(String),
    /// PTR names exist but none resolves back to the address.
    Unconfirmed(Vec<String>),
    /// No PTR record.
    Missing,
    /// The lookup failed.
    Failed(String),
}

/// A record kind: the version tag that starts it (compared without regard to case).
trait Kind: TxtRecordParser {
    const VERSION: &'static str;
}

impl Kind for SpfRecord {
    const VERSION: &'static str = "spf1";
}

impl Kind for DmarcRecord {
    const VERSION: &'static str = "DMARC1";
}

impl Kind for MtaStsRecord {
    const VERSION: &'static str = "STSv1";
}

impl Kind for TlsRptRecord {
    const VERSION: &'static str = "TLSRPTv1";
}

impl Verifier {
    /// The SPF record of `domain` (RFC 7208 §4.5: exactly one `v=spf1` TXT record).
    pub async fn spf_record(&self, domain: &str) -> Published<SpfRecord> {
        self.published(domain).await
    }

    /// The DMARC record published at `_dmarc.DOMAIN` (the domain itself only; the tree walk
    /// to a parent is the caller's).
    pub async fn dmarc_record(&self, domain: &str) -> Published<DmarcRecord> {
        self.published(&format!("_dmarc.{domain}")).await
    }

    /// The MTA-STS announcement at `_mta-sts.DOMAIN` (RFC 8461 §3.1).
    pub async fn mta_sts_record(&self, domain: &str) -> Published<MtaStsRecord> {
        self.published(&format!("_mta-sts.{domain}")).await
    }

    /// The TLS reporting record at `_smtp._tls.DOMAIN` (RFC 8460 §3).
    pub async fn tls_rpt_record(&self, domain: &str) -> Published<TlsRptRecord> {
        self.published(&format!("_smtp._tls.{domain}")).await
    }

    /// Whether `ip` has a PTR name that resolves back to it (FCrDNS; mail-auth's `iprev`,
    /// RFC 8601 §3).
    pub async fn reverse_dns(&self, ip: IpAddr) -> ReverseDns {
        let ip = ip.to_canonical();
        let output = self.authenticator.verify_iprev(ip).await;
        let names: Vec<String> = output
            .ptr
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|name| name.trim_end_matches('.').to_string())
            .collect();
        match output.result() {
            IprevResult::Pass => {
                ReverseDns::Confirmed(names.into_iter().next().unwrap_or_default())
            }
            _ if !names.is_empty() => ReverseDns::Unconfirmed(names),
            IprevResult::PermError(_) | IprevResult::Fail(_) => ReverseDns::Missing,
            IprevResult::TempError(e) => ReverseDns::Failed(e.to_string()),
            IprevResult::None => ReverseDns::Missing,
        }
    }

    async fn published<T: Kind>(&self, name: &str) -> Published<T> {
        let texts = match tern_dns::txt_texts(self.resolver(), name).await {
            Ok(texts) => texts,
            Err(e) => return Published::Failed(e),
        };
        let mut ours: Vec<String> =
            texts.into_iter().filter(|text| has_version(text, T::VERSION)).collect();
        match ours.len() {
            0 => Published::Missing,
            1 => {
                let text = ours.remove(0);
                match T::parse(text.as_bytes()) {
                    Ok(record) => Published::Found { text, record: Arc::new(record) },
                    Err(e) => Published::Invalid { text, reason: e.to_string() },
                }
            }
            _ => Published::Several(ours),
        }
    }
}

/// Whether `text` starts with `v=VERSION` followed by a separator or its end.
fn has_version(text: &str, version: &str) -> bool {
    let text = text.trim_start();
    let Some(rest) = text.get(..2).filter(|v| v.eq_ignore_ascii_case("v=")).map(|_| &text[2..])
    else {
        return false;
    };
    let rest = rest.trim_start();
    rest.get(..version.len()).is_some_and(|v| v.eq_ignore_ascii_case(version))
        && rest[version.len()..].chars().next().is_none_or(|c| c == ' ' || c == ';')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_matched_whole_and_without_case() {
        assert!(has_version("v=spf1 mx -all", "spf1"));
        assert!(has_version("V=SPF1", "spf1"));
        assert!(has_version("v=DMARC1; p=none", "DMARC1"));
        assert!(has_version("v=DMARC1;p=none", "DMARC1"));
        assert!(!has_version("v=spf10 -all", "spf1"));
        assert!(!has_version("google-site-verification=x", "spf1"));
        assert!(!has_version("v=", "spf1"));
    }

    #[test]
    fn kinds_parse_their_records() {
        assert!(SpfRecord::parse(b"v=spf1 mx -all").is_ok());
        assert!(DmarcRecord::parse(b"v=DMARC1; p=reject").is_ok());
        assert!(MtaStsRecord::parse(b"v=STSv1; id=20261203").is_ok());
        assert!(TlsRptRecord::parse(b"v=TLSRPTv1; rua=mailto:tls@example.org").is_ok());
        assert!(MtaStsRecord::parse(b"v=STSv1;").is_err());
    }
}
