//! Reading a stored message for display: its MIME tree numbered the way Mailpit numbers parts
//! (root `0`, children `1`, `2`, deeper `1.2` …), the Inline/Attachments split, text and HTML
//! bodies, and raw headers. Parsing happens per request for one message; lists never parse.

use std::{borrow::Cow, collections::BTreeMap};

use mail_parser::{Message, MessageParser, MessagePart, PartId, PartKind};
use md5::Digest as _;
use serde::Serialize;

/// A part listed under `Inline` or `Attachments`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartInfo {
    #[serde(rename = "PartID")]
    pub part_id: String,
    pub file_name: String,
    pub content_type: String,
    #[serde(rename = "ContentID")]
    pub content_id: String,
    pub size: u64,
    pub checksums: Checksums,
}

/// Digests of a part's decoded content, lowercase hex.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct Checksums {
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
}

/// How a leaf part is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Attachment,
    Inline,
    /// A body part (text/plain, text/html) that is not listed.
    Body,
}

/// A parsed message and its numbered leaf parts.
pub struct Parsed<'a> {
    pub message: Message<'a>,
    /// (PartID, id of the part in `message`, kind), depth-first.
    leaves: Vec<(String, PartId, Kind)>,
}

impl<'a> Parsed<'a> {
    /// Parses `raw`; `None` when it is not a message at all.
    pub fn new(raw: &'a [u8]) -> Option<Parsed<'a>> {
        let message = MessageParser::default().parse(raw)?;
        let mut leaves = Vec::new();
        number(message.root_part(), String::from("0"), true, &mut leaves);
        Some(Parsed { message, leaves })
    }

    /// Parts listed as inline (with a file name or Content-ID).
    pub fn inline(&self) -> Vec<PartInfo> {
        self.listed(Kind::Inline)
    }

    /// Parts listed as attachments (with a file name or Content-ID).
    pub fn attachments(&self) -> Vec<PartInfo> {
        self.listed(Kind::Attachment)
    }

    fn listed(&self, kind: Kind) -> Vec<PartInfo> {
        self.leaves
            .iter()
            .filter(|(_, _, k)| *k == kind)
            .filter_map(|(id, index, _)| {
                let info = part_info(id, self.message.part(*index)?);
                (!info.file_name.is_empty() || !info.content_id.is_empty()).then_some(info)
            })
            .collect()
    }

    /// A listed-or-not leaf part by its PartID.
    pub fn part(&self, part_id: &str) -> Option<(PartInfo, MessagePart<'_>)> {
        let (id, index, _) =
            self.leaves.iter().find(|(id, _, kind)| id == part_id && *kind != Kind::Body)?;
        let part = self.message.part(*index)?;
        Some((part_info(id, part), part))
    }

    /// The raw value of the message's last header called `name`, after its colon.
    pub fn header_raw(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.message.headers().get(name)?.raw_value()).ok()
    }

    /// Every leaf with a Content-ID: (Content-ID, PartID), for rewriting `cid:` links.
    pub fn content_ids(&self) -> Vec<(String, String)> {
        self.leaves
            .iter()
            .filter_map(|(id, index, _)| {
                let cid = self.message.part(*index)?.content_id()?;
                Some((cid.trim_matches(['<', '>']).to_string(), id.clone()))
            })
            .collect()
    }

    /// The text body: the text parts, or text made from the HTML when there are none.
    pub fn text(&self) -> String {
        let parts: Vec<String> = self.message.text_bodies().map(Cow::into_owned).collect();
        parts.join("\n--\n")
    }

    /// The first real `text/html` body, if any.
    pub fn html(&self) -> Option<String> {
        self.message
            .html_body()
            .filter(|part| matches!(part.kind(), PartKind::Html))
            .find_map(|part| part.text().map(Cow::into_owned))
    }

    /// Headers as Mailpit shows them: canonical names, in alphabetical order, each with its
    /// raw values unfolded and trimmed.
    pub fn headers(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for header in self.message.headers() {
            let Ok(value) = std::str::from_utf8(header.raw_value()) else { continue };
            let unfolded = value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            map.entry(canonical_header_name(header.raw_name())).or_default().push(unfolded);
        }
        map
    }
}

fn number(part: MessagePart<'_>, id: String, is_root: bool, out: &mut Vec<(String, PartId, Kind)>) {
    if part.is_multipart() {
        for (n, child) in part.children().enumerate() {
            let child_id = if is_root { (n + 1).to_string() } else { format!("{id}.{}", n + 1) };
            number(child, child_id, false, out);
        }
    } else {
        out.push((id, part.id(), classify(part)));
    }
}

/// Mailpit's split: `attachment` disposition or octet-stream → attachment; `inline`
/// disposition → inline; other non-text parts without disposition → inline; text bodies are
/// not listed.
fn classify(part: MessagePart<'_>) -> Kind {
    let disposition = part.content_disposition().map(|d| d.ctype().to_ascii_lowercase());
    let media = media_type(part);
    if disposition.as_deref() == Some("attachment") || media == "application/octet-stream" {
        Kind::Attachment
    } else if disposition.as_deref() == Some("inline") {
        Kind::Inline
    } else if media == "text/plain" || media == "text/html" {
        Kind::Body
    } else {
        Kind::Inline
    }
}

/// The bare media type, lower-case, `text/plain` when absent.
pub fn media_type(part: MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".into(),
    }
}

/// A leaf part's content as it is downloaded: text decoded to UTF-8, a nested message as
/// its bytes, anything else decoded from its transfer encoding.
pub fn contents<'m>(part: MessagePart<'m>) -> Cow<'m, [u8]> {
    if let Some(nested) = part.nested() {
        return Cow::Borrowed(nested.raw());
    }
    match part.text() {
        Some(Cow::Borrowed(text)) => Cow::Borrowed(text.as_bytes()),
        Some(Cow::Owned(text)) => Cow::Owned(text.into_bytes()),
        None => part.decoded(),
    }
}

fn part_info(id: &str, part: MessagePart<'_>) -> PartInfo {
    let content = contents(part);
    let content = content.as_ref();
    let content_id = part.content_id().unwrap_or_default().trim_matches(['<', '>']).to_string();
    PartInfo {
        part_id: id.to_string(),
        file_name: part.attachment_name().map(str::to_string).unwrap_or_else(|| content_id.clone()),
        content_type: media_type(part),
        content_id,
        size: content.len() as u64,
        checksums: Checksums {
            md5: hex(&md5::Md5::digest(content)),
            sha1: hex(&sha1::Sha1::digest(content)),
            sha256: hex(&sha2::Sha256::digest(content)),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `message-id` → `Message-Id`, as Go's textproto canonicalises MIME header keys.
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.extend(if upper {
            c.to_uppercase().collect::<Vec<_>>()
        } else {
            c.to_lowercase().collect()
        });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: text/plain\r\n\r\nplain body\r\n--YY\r\nContent-Type: text/html\r\n\r\n<p>html <img src=\"cid:logo@x\"></p>\r\n--YY--\r\n--XX\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n\r\nPNGDATA\r\n--XX\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--XX--\r\n";

    #[test]
    fn parts_are_numbered_and_split_like_mailpit() {
        let parsed = Parsed::new(MIXED).expect("parses");
        let attachments = parsed.attachments();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0].part_id, "3");
        assert_eq!(attachments[0].file_name, "report.pdf");
        assert_eq!(attachments[0].size, 5);
        assert_eq!(attachments[0].checksums.md5, "5d41402abc4b2a76b9719d911017c592");
        let inline = parsed.inline();
        assert_eq!(inline.len(), 1);
        assert_eq!((inline[0].part_id.as_str(), inline[0].content_id.as_str()), ("2", "logo@x"));
        assert_eq!(parsed.text().trim(), "plain body");
        assert!(parsed.html().expect("html").contains("cid:logo@x"));
        assert!(parsed.part("1.1").is_none(), "body parts are not downloadable");
        assert_eq!(contents(parsed.part("3").expect("pdf").1).as_ref(), b"hello");
        assert_eq!(parsed.content_ids(), vec![("logo@x".to_string(), "2".to_string())]);
        assert_eq!(parsed.headers()["Subject"], vec!["parts"]);
    }

    #[test]
    fn header_names_are_canonical() {
        assert_eq!(canonical_header_name("message-id"), "Message-Id");
        assert_eq!(canonical_header_name("X-MAILER"), "X-Mailer");
        assert_eq!(canonical_header_name("dkim-signature"), "Dkim-Signature");
    }
}
