//! Entry points for fuzzing what a peer controls on the HTTP side, for the targets in `fuzz/`
//! and the corpus replay in `tern-fuzz`'s tests: a captured message as every message view reads
//! it (parts, headers, text, HTML, links, codes, the HTML check) and the bodies of
//! `POST /api/v1/send` and `POST /v3/mail/send`. Each takes arbitrary bytes and must return without panicking; results
//! are dropped.

use crate::mime::Parsed;

/// Every view of the API and the UI over `raw`, as a captured message.
pub fn message_views(raw: &[u8]) {
    let Some(parsed) = Parsed::new(raw) else { return };
    for info in parsed.inline().into_iter().chain(parsed.attachments()) {
        if let Some((_, part)) = parsed.part(&info.part_id) {
            let _ = crate::mime::media_type(part);
            let _ = crate::mime::contents(part);
        }
    }
    let _ = parsed.headers();
    let _ = parsed.content_ids();
    let _ = parsed.header_raw("Subject");
    let text = parsed.text();
    let html = parsed.html();
    let _ = crate::extract::links(&text, html.as_deref().unwrap_or_default());
    let _ = crate::extract::codes(&text);
    if let Some(html) = html {
        let _ = crate::extract::codes(&tern_store::summary::html_to_text(&html));
        let _ = crate::htmlcheck::check(&html);
    }
}

/// The body of `POST /api/v1/send` (Mailpit's shape) and of `POST /v3/mail/send`
/// (SendGrid's): each parsed, checked and built into messages.
pub fn send_request(body: &[u8]) {
    crate::send::build_from_json(body);
    crate::sendgrid::build_from_json(body);
}
