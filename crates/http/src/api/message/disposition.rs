//! How bytes a message controls are labelled for a browser: which parts open inline (an
//! allow-list of types a browser only displays), which download, the Content-Type and a
//! Content-Disposition whose file name cannot break the header, and the sandbox every such
//! response carries. Mail comes from strangers (in MTA mode from anyone on the Internet) and is
//! served on the UI's own origin, so nothing here may let a browser run what a sender wrote.
//! It owns the headers only; finding and decoding the part is `mime`'s.

use axum::http::{HeaderMap, HeaderValue, header};

/// For every response whose bytes a message controls: a document opened top-level gets an
/// opaque origin and runs nothing, whatever type a browser decides it has.
pub const SANDBOX_CSP: &str = "sandbox; default-src 'none'";

/// Types a browser displays without running anything: raster images, PDF (its viewer runs no
/// page script) and plain text. Each maps the declared type to the one served.
const INLINE_TYPES: &[(&str, &str)] = &[
    ("image/png", "image/png"),
    ("image/jpeg", "image/jpeg"),
    // A common misspelling in mail.
    ("image/jpg", "image/jpeg"),
    ("image/gif", "image/gif"),
    ("image/webp", "image/webp"),
    ("image/bmp", "image/bmp"),
    ("image/avif", "image/avif"),
    ("application/pdf", "application/pdf"),
    // `mime` hands text parts over decoded to UTF-8.
    ("text/plain", "text/plain; charset=utf-8"),
];

/// The headers for a part declared as `declared` (a bare, lower-case media type) named
/// `file_name`: allow-listed types open inline, everything else downloads under its declared
/// type when that is a well-formed `type/subtype` (Mailpit's clients read it), else as
/// `application/octet-stream`.
pub fn part_headers(declared: &str, file_name: &str) -> HeaderMap {
    let inline =
        INLINE_TYPES.iter().find(|(known, _)| *known == declared).map(|(_, served)| served);
    let content_type = match inline {
        Some(served) => HeaderValue::from_static(served),
        None if is_plain_media_type(declared) => {
            HeaderValue::from_str(declared).unwrap_or(HeaderValue::from_static(OCTET_STREAM))
        }
        None => HeaderValue::from_static(OCTET_STREAM),
    };
    let mut headers = sandboxed();
    headers.insert(header::CONTENT_TYPE, content_type);
    let kind = if inline.is_some() { "inline" } else { "attachment" };
    headers.insert(header::CONTENT_DISPOSITION, content_disposition(kind, file_name));
    headers
}

const OCTET_STREAM: &str = "application/octet-stream";

/// The sandbox and `nosniff`, for any response carrying bytes a message controls.
pub fn sandboxed() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SANDBOX_CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers
}

/// `type/subtype` of RFC 6838 restricted-name characters and nothing else: no parameters, no
/// commas (a browser takes the last of a comma-separated list, so `x/y,text/html` would be
/// HTML), no spaces.
fn is_plain_media_type(value: &str) -> bool {
    let restricted = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && part.len() <= 127
            && chars.all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    value.split_once('/').is_some_and(|(kind, sub)| restricted(kind) && restricted(sub))
}

/// `kind; filename="…"` with an ASCII fallback (quotes, backslashes, controls and non-ASCII
/// replaced) and, when the name is not plain ASCII, RFC 6266's `filename*=UTF-8''…`. The name
/// comes from the sender, so nothing in it reaches the header unescaped.
pub fn content_disposition(kind: &'static str, file_name: &str) -> HeaderValue {
    if file_name.is_empty() {
        return HeaderValue::from_static(kind);
    }
    let fallback: String =
        file_name
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' { c } else { '_' }
            })
            .collect();
    let mut value = format!("{kind}; filename=\"{fallback}\"");
    if fallback != file_name {
        value.push_str("; filename*=UTF-8''");
        value.push_str(&percent_encode(file_name));
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(kind))
}

/// RFC 8187 `value-chars`: attr-chars as they are, every other byte as `%XX`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(declared: &str) -> (String, String) {
        let headers = part_headers(declared, "f");
        let text = |name| headers[name].to_str().expect("ASCII").to_string();
        assert_eq!(text(header::CONTENT_SECURITY_POLICY), SANDBOX_CSP, "{declared}");
        assert_eq!(text(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{declared}");
        (text(header::CONTENT_TYPE), text(header::CONTENT_DISPOSITION))
    }

    #[test]
    fn only_displayable_types_open_inline() {
        let table = [
            ("image/png", "image/png", "inline"),
            ("image/jpg", "image/jpeg", "inline"),
            ("application/pdf", "application/pdf", "inline"),
            ("text/plain", "text/plain; charset=utf-8", "inline"),
            ("image/svg+xml", "image/svg+xml", "attachment"),
            ("text/html", "text/html", "attachment"),
            ("application/foo+xml", "application/foo+xml", "attachment"),
            ("application/rss+xml", "application/rss+xml", "attachment"),
            ("application/vnd.wap.xhtml+xml", "application/vnd.wap.xhtml+xml", "attachment"),
            ("multipart/x-mixed-replace", "multipart/x-mixed-replace", "attachment"),
            ("text/csv", "text/csv", "attachment"),
            ("x/y,text/html", OCTET_STREAM, "attachment"),
            ("text/plain ;x", OCTET_STREAM, "attachment"),
            ("text", OCTET_STREAM, "attachment"),
            ("", OCTET_STREAM, "attachment"),
        ];
        for (declared, served, kind) in table {
            assert_eq!(shown(declared), (served.to_string(), format!("{kind}; filename=\"f\"")));
        }
    }

    #[test]
    fn file_names_cannot_break_the_header() {
        let value = |name: &str| {
            content_disposition("attachment", name).to_str().expect("ASCII").to_string()
        };
        assert_eq!(value("a b.pdf"), "attachment; filename=\"a b.pdf\"");
        assert_eq!(value(""), "attachment");
        assert_eq!(
            value("x\"; filename=evil.html\r\nSet-Cookie: a=b"),
            "attachment; filename=\"x_; filename=evil.html__Set-Cookie: a=b\"; \
             filename*=UTF-8''x%22%3B%20filename%3Devil.html%0D%0ASet-Cookie%3A%20a%3Db"
        );
        assert_eq!(
            value("résumé.pdf"),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
    }
}
