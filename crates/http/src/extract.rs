//! Test helpers' extractions: every link in a message, and the one-time codes it likely holds.

/// Words that announce a one-time code nearby.
const CODE_WORDS: &[&str] = &[
    "code",
    "codes",
    "otp",
    "verification",
    "verify",
    "passcode",
    "pin",
    "token",
    "one-time",
    "confirmation",
    "confirm",
    "security",
    "login",
    "sign-in",
    "2fa",
    "mfa",
];
/// How many words away from such a word a code may stand.
const CODE_WINDOW_WORDS: usize = 8;

/// URLs in the text body and in the HTML (`href`/`src` attributes and bare URLs), in order of
/// first appearance, without duplicates.
pub fn links(text: &str, html: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for source in [html, text] {
        for url in urls(source) {
            let url = url.replace("&amp;", "&");
            if !found.contains(&url) {
                found.push(url);
            }
        }
    }
    found
}

/// Every `http://` or `https://` URL in `text`, ending at whitespace, a quote or `<>`.
fn urls(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = ["http://", "https://"].iter().filter_map(|p| lower[from..].find(p)).min()
    {
        let start = from + pos;
        let end = text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(text.len(), |e| start + e);
        let url = text[start..end].trim_end_matches(['.', ',', ';', ':', ')', ']', '!', '?']);
        if url.len() > "https://".len() {
            out.push(url);
        }
        from = end.max(start + 1);
    }
    out
}

/// A likely one-time code and the words around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub code: String,
    pub context: String,
}

/// Tokens of 4–8 digits, or 4–8 upper-case letters and digits with at least one digit, that
/// stand within a few words of a word like "code", "OTP" or "verification".
pub fn codes(text: &str) -> Vec<Code> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let near_keyword = |i: usize| {
        let lo = i.saturating_sub(CODE_WINDOW_WORDS);
        let hi = (i + CODE_WINDOW_WORDS + 1).min(words.len());
        words[lo..hi].iter().any(|w| {
            let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-').to_lowercase();
            CODE_WORDS.contains(&w.as_str())
        })
    };
    let mut out: Vec<Code> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let token = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if !looks_like_code(token) || !near_keyword(i) || out.iter().any(|c| c.code == token) {
            continue;
        }
        let lo = i.saturating_sub(5);
        let hi = (i + 6).min(words.len());
        out.push(Code { code: token.to_string(), context: words[lo..hi].join(" ") });
    }
    out
}

fn looks_like_code(token: &str) -> bool {
    let len_ok = (4..=8).contains(&token.len());
    let digits = token.chars().filter(char::is_ascii_digit).count();
    let all_digits = digits == token.len();
    let upper_mix =
        token.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) && digits > 0;
    len_ok && (all_digits || upper_mix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_in_text_and_html() {
        let html = r#"<a href="https://example.com/confirm?a=1&amp;b=2">go</a> <img src='http://cdn.example/x.png'>"#;
        let text =
            "Visit https://example.com/confirm?a=1&b=2. Or http://other.example/path, thanks";
        assert_eq!(
            links(text, html),
            [
                "https://example.com/confirm?a=1&b=2",
                "http://cdn.example/x.png",
                "http://other.example/path"
            ]
        );
        assert!(links("no links here, just http:// alone", "").is_empty());
    }

    #[test]
    fn finds_codes_near_keywords_only() {
        let found = codes("Your verification code is 482913. It expires in 10 minutes.");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, "482913");
        assert!(found[0].context.contains("verification code is 482913"));
        assert_eq!(codes("Use OTP: A7K9Q2 to sign in")[0].code, "A7K9Q2");
        assert!(codes("Order 123456 shipped on 2024 to 1600 Main Street").is_empty());
        assert!(codes("Your code is HELLO").is_empty(), "no digit, not a code");
    }
}
