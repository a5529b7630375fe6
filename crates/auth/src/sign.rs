//! DKIM signing of the mail Tern sends for its users, once, when the message comes in. The
//! signing domain is the `From:` domain, or the nearest parent domain that has keys (a
//! signature by the organisational domain still aligns under DMARC's relaxed mode). Every key
//! of that domain signs: with the default keys, one RSA-2048 and one Ed25519 signature, so
//! verifiers that know only RSA still pass (RFC 8463 §5).
//!
//! Signed fields: the ones RFC 6376 §5.4.1 recommends that the message has, with `From`
//! over-signed (listed once more than it occurs, so no second `From:` can be added);
//! relaxed/relaxed canonicalization, which survives the re-folding relays do.

use std::collections::HashMap;

use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::headers::HeaderWriter as _;

use crate::keys::KeyFile;

/// The fields RFC 6376 §5.4.1 recommends signing.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The keys, by domain.
#[derive(Default)]
pub struct Signer {
    keys: HashMap<String, Vec<KeyFile>>,
}

impl Signer {
    /// A signer over `keys` (from [`crate::keys::load_dir`]).
    pub fn new(keys: Vec<KeyFile>) -> Self {
        let mut by_domain: HashMap<String, Vec<KeyFile>> = HashMap::new();
        for key in keys {
            by_domain.entry(key.domain.clone()).or_default().push(key);
        }
        Signer { keys: by_domain }
    }

    /// Whether any key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The domain whose keys sign mail from `domain`: itself or its nearest parent with keys.
    pub fn signing_domain(&self, domain: &str) -> Option<&str> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = domain.as_str();
        loop {
            if let Some((name, _)) = self.keys.get_key_value(candidate) {
                return Some(name.as_str());
            }
            candidate = candidate.split_once('.')?.1;
            if !candidate.contains('.') {
                return None;
            }
        }
    }

    /// `DKIM-Signature:` fields (folded, each with its CRLF) for `raw`, one per key of the
    /// domain that signs for its `From:` address; none when no key fits or the message has
    /// no `From:`.
    pub fn sign(&self, raw: &[u8]) -> Vec<String> {
        let head = head_of(raw);
        let Some(from_domain) = from_domain(head) else { return Vec::new() };
        let Some(domain) = self.signing_domain(&from_domain) else { return Vec::new() };
        let fields = fields_to_sign(head);
        let mut headers = Vec::new();
        for key in self.keys.get(domain).into_iter().flatten() {
            let signed = DkimSigner::from_key(key.key.clone())
                .domain(domain)
                .selector(&key.selector)
                .headers(fields.iter().cloned())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(raw);
            match signed {
                Ok(signature) => headers.push(signature.to_header()),
                Err(e) => {
                    tracing::warn!(domain, selector = %key.selector, error = %e, "DKIM signing failed")
                }
            }
        }
        headers
    }
}

impl Signer {
    /// An ARC set sealing `message` with `results` as the server called `hostname`: with the
    /// first key of its domain (or the nearest parent with keys; RSA first, as most ARC
    /// verifiers know only RSA). None without a key, or when the chain cannot be sealed (one
    /// that failed already, RFC 8617 §5.1.2).
    pub fn seal(
        &self,
        hostname: &str,
        message: &mail_auth::AuthenticatedMessage<'_>,
        results: &mail_auth::AuthenticationResults<'_>,
        arc: &mail_auth::ArcOutput<'_>,
        raw: &[u8],
    ) -> Option<Vec<String>> {
        let domain = self.signing_domain(hostname)?;
        let keys = self.keys.get(domain)?;
        let key = keys
            .iter()
            .find(|k| k.algorithm == crate::keys::Algorithm::Rsa)
            .or_else(|| keys.first())?;
        if !arc.can_be_sealed() {
            return None;
        }
        let mut fields = fields_to_sign(head_of(raw));
        fields.push("DKIM-Signature".into());
        let sealed = mail_auth::arc::ArcSealer::from_key(key.key.clone())
            .domain(domain)
            .selector(&key.selector)
            .headers(fields)
            .seal(message, results, arc);
        match sealed {
            Ok(set) => Some(split_fields(&set.to_header())),
            Err(e) => {
                tracing::warn!(domain, error = %e, "ARC sealing failed");
                None
            }
        }
    }
}

/// Header text holding several fields, one string per field (folds kept, CRLFs dropped).
fn split_fields(text: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for line in text.split("\r\n").filter(|line| !line.is_empty()) {
        match fields.last_mut() {
            Some(field) if line.starts_with([' ', '\t']) => {
                field.push_str("\r\n");
                field.push_str(line);
            }
            _ => fields.push(line.to_string()),
        }
    }
    fields
}

/// The header section of `raw` (up to the empty line).
fn head_of(raw: &[u8]) -> &[u8] {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |at| at + 2);
    &raw[..end]
}

/// The names of the header fields in `head`, unfolded.
fn field_names(head: &[u8]) -> impl Iterator<Item = &str> {
    head.split(|&b| b == b'\n')
        .filter(|line| !line.first().is_some_and(|b| *b == b' ' || *b == b'\t'))
        .filter_map(|line| std::str::from_utf8(line).ok()?.split_once(':').map(|(n, _)| n.trim()))
}

/// The recommended fields the message has, `From` once more than it occurs.
fn fields_to_sign(head: &[u8]) -> Vec<String> {
    let present: Vec<&str> = field_names(head).collect();
    let mut fields: Vec<String> = SIGNED_FIELDS
        .iter()
        .filter(|name| present.iter().any(|p| p.eq_ignore_ascii_case(name)))
        .map(|name| name.to_string())
        .collect();
    fields.push("From".into());
    fields
}

/// The domain of the first address in the first `From:` field.
fn from_domain(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut value = None;
    for line in text.split('\n') {
        match (&mut value, line.starts_with([' ', '\t'])) {
            (Some(v), true) => {
                let v: &mut String = v;
                v.push_str(line.trim_end_matches('\r'));
            }
            (Some(_), false) => break,
            (None, _) => {
                if let Some((name, rest)) = line.split_once(':')
                    && name.trim().eq_ignore_ascii_case("from")
                {
                    value = Some(rest.trim_end_matches('\r').to_string());
                }
            }
        }
    }
    let value = value?;
    // The address is inside <…> when there is a display name.
    let address = match (value.rfind('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.as_str(),
    };
    let domain = address.trim().rsplit_once('@')?.1.trim().trim_end_matches(['>', ';', ',']);
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_domain_and_the_fields_to_sign_come_from_the_header() {
        let head = b"Subject: hi\r\nFrom: \"Ann, Jr.\"\r\n <ann@Mail.Example.com>\r\nTo: b@x.test\r\nX-Other: 1\r\n\r\n";
        assert_eq!(from_domain(head).as_deref(), Some("mail.example.com"));
        assert_eq!(fields_to_sign(head), ["From", "Subject", "To", "From"]);
        assert_eq!(from_domain(b"From: plain@example.org\r\n\r\n").as_deref(), Some("example.org"));
        assert_eq!(from_domain(b"Subject: none\r\n\r\n"), None);
    }

    #[test]
    fn a_parent_domain_with_keys_signs_for_its_subdomains() {
        let dir = std::env::temp_dir().join(format!("tern-signer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key =
            crate::keys::generate(&dir, "example.com", "s1", crate::keys::Algorithm::Ed25519, 0)
                .expect("key");
        let signer = Signer::new(vec![key]);
        assert_eq!(signer.signing_domain("mail.Example.com"), Some("example.com"));
        assert_eq!(signer.signing_domain("example.com"), Some("example.com"));
        assert_eq!(signer.signing_domain("example.org"), None);
        assert_eq!(signer.signing_domain("com"), None);
        let signed = signer.sign(b"From: a@mail.example.com\r\nSubject: x\r\n\r\nbody\r\n");
        let [header] = signed.as_slice() else { panic!("one signature: {signed:?}") };
        assert!(header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"), "{header}");
        assert!(header.contains("d=example.com") && header.contains("s=s1"), "{header}");
        assert!(signer.sign(b"Subject: no from\r\n\r\nbody\r\n").is_empty());
        std::fs::remove_dir_all(&dir).expect("cleaned");
    }
}
