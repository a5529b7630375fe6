//! The search language (Mailpit's syntax plus `inbox:` and `header:Name=value`), parsed into a
//! [`SearchQuery`]: a backend-neutral list of terms. Each backend compiles it to its own query
//! language (SQLite: `sqlite/search.rs`, an FTS5 `MATCH` plus SQL clauses); this module knows
//! no SQL.
//!
//! # Syntax
//!
//! A query is a list of terms separated by whitespace; every term must hold (AND). Double
//! quotes group words (`"hello world"`, `subject:"weekly report"`) and are removed; an
//! unterminated quote runs to the end. A term starting with an unquoted `-` or `!` (and longer
//! than that one character) is negated. Filter names are case-insensitive and must not be
//! quoted (`"to:bob"` is a phrase, not a filter).
//!
//! | Term | Matches messages … |
//! |------|--------------------|
//! | `word` | with a word starting with `word` (`exam` finds `example`; a word of one or two letters must match whole, `ex` finds only `ex`) in the subject, a sender/recipient name or address, a text or HTML body, or an attachment name |
//! | `"two words"` | with those words in that order, each whole (no prefix), in one of the same fields |
//! | `%`, `&`, `#` (no letter or digit) | whose subject contains that text literally (FTS cannot index it) |
//! | `from:V` `to:V` `cc:V` `bcc:V` `reply-to:V` | with a mailbox in that header whose name or address contains `V` |
//! | `addressed:V` | where any of From, To, Cc, Bcc, Reply-To matches `V` |
//! | `subject:V` | whose decoded subject contains `V` |
//! | `message-id:V` | whose Message-ID (without `<>`) contains `V` |
//! | `tag:V` | tagged exactly `V` (case-insensitive) |
//! | `is:read` `is:unread` `is:tagged` | read / unread / with at least one tag |
//! | `has:attachment` `has:attachments` | with at least one attachment |
//! | `larger:S` `smaller:S` | whose raw size is strictly above / below `S` (`500`, `1.5k`, `2 MB`, `1g`: units b, k/kb, m/mb, g/gb, powers of 1024) |
//! | `after:T` `before:T` | received at or after / strictly before `T` |
//! | `inbox:ADDR` | filed under inbox `ADDR` (an envelope recipient, plus-tag folded, case-insensitive) |
//! | `header:Name=V` | with a header `Name` whose value starts with the words of `V` (the last one a prefix, by the same rule as words) |
//! | `header:Name` | with a header `Name` |
//!
//! "Contains" is a literal substring test (`%`, `_` and `\` are ordinary characters),
//! case-insensitive for every cased character, not only ASCII. Words are matched through the
//! FTS5 index: case-insensitive and diacritic-insensitive (`cafe` finds `Café`), tokens split at
//! punctuation, so `abc_def` is the phrase `abc def` and `50% off` is `50 off`.
//!
//! Times `T` are `YYYY-MM-DD` (also `YYYY/MM/DD` and `YYYYMMDD`), optionally followed by
//! `THH:MM[:SS[.fff]]` and a zone (`Z`, `+HH:MM`, `+HHMM`), or a Unix timestamp in seconds
//! (9 to 11 digits) or milliseconds (12 or 13 digits). Without a zone, UTC. A date alone means
//! its midnight, so `after:2024-05-01` includes 1 May and `before:2024-05-01` ends with 30 April;
//! `after:T` and `before:T` split the mailbox into two disjoint halves.
//!
//! A negation is the exact complement of its term: `-larger:1k` is `size <= 1024`.
//!
//! A word made of several tokens (`john.doe@example.com`, `abc_def`) is a phrase of them,
//! its last token a prefix under the same length rule. Prefix-matching one or two letters would
//! expand to most of the index's terms (hundreds of milliseconds on 100,000 messages), hence the
//! rule.
//!
//! Unknown `name:` prefixes (`foo:bar`, `http://x`) are plain text; a known filter with an
//! empty value (`to:`) is ignored, and one with a malformed value is a [`SearchError`].
//!
//! `header:` matches a phrase in the FTS `headers` column, which holds `Name: value` lines:
//! the name's words directly followed by the value's. It can be fooled by the same words
//! inside another header's value (`Subject: about x-mailer acme`), and `header:Mailer=…` also
//! matches `X-Mailer`.
//!
//! # Differences from Mailpit
//!
//! - Plain words are token-prefix matches, not substrings: `ample` does not find `example`.
//! - Invalid `larger:`/`smaller:`/`before:`/`after:` values, and unknown `is:`/`has:` values,
//!   are errors instead of being ignored or searched as text.
//! - Times are UTC (Mailpit uses the server's zone or a `tz` parameter) and accept fewer
//!   formats; a negated size or time filter is the exact complement (Mailpit excludes the
//!   boundary from both forms).
//! - `has:inline` is not supported (the store keeps no inline count).

use crate::inbox::Inbox;

/// Longest accepted query, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// Most terms in one query; each becomes a clause and SQLite limits expression depth.
pub const MAX_TERMS: usize = 100;

/// A word's last token prefix-matches only when at least this long (in characters).
pub const MIN_PREFIX_CHARS: usize = 3;

/// A query that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A filter value is malformed, e.g. `larger:lots` or `before:2024-13-45`.
    #[error("invalid value for {filter}: {value:?} (expected {expected})")]
    BadValue {
        /// The filter, e.g. `larger`.
        filter: String,
        /// The value given.
        value: String,
        /// What the filter accepts.
        expected: &'static str,
    },
    /// The query is longer than [`MAX_QUERY_BYTES`].
    #[error("search query too long: {len} bytes (at most {max})")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The query has more than [`MAX_TERMS`] terms.
    #[error("search query has too many terms: {count} (at most {max})")]
    TooManyTerms {
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// A header holding mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    From,
    To,
    Cc,
    Bcc,
    ReplyTo,
}

impl Field {
    pub(crate) const ALL: &'static [Field] =
        &[Field::From, Field::To, Field::Cc, Field::Bcc, Field::ReplyTo];
}

/// One condition of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Term {
    /// Full-text match: a word (its last token a prefix) or an exact phrase.
    Text { text: String, phrase: bool },
    /// Text without a single word character, which FTS cannot index: a subject substring.
    Symbols(String),
    /// Some mailbox of these headers has a name or address containing the value.
    Address { fields: &'static [Field], value: String },
    /// The subject contains the value.
    Subject(String),
    /// The Message-ID contains the value.
    MessageId(String),
    /// The message has this tag (case-insensitive).
    Tag(String),
    /// The read flag is this.
    Read(bool),
    /// The message has at least one tag.
    Tagged,
    /// The message has at least one attachment.
    Attachment,
    /// Size in bytes strictly above.
    Larger(i64),
    /// Size in bytes strictly below.
    Smaller(i64),
    /// Received strictly before this time (ms since the epoch).
    Before(i64),
    /// Received at or after this time (ms since the epoch).
    After(i64),
    /// Filed under this folded inbox address.
    Inbox(String),
    /// Messages with a copy in this account's mailbox; never parsed from user input, only
    /// added by [`SearchQuery::for_account`].
    Account(String),
    /// A header with this name whose value starts with these words (empty: any value).
    Header { name: String, value: String },
}

/// A parsed search: conditions ANDed, each possibly negated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    terms: Vec<(bool, Term)>,
}

/// A token of the query: quotes removed, with how much of its start was outside quotes.
#[derive(Debug, PartialEq, Eq)]
struct Token {
    text: String,
    /// Byte length of the prefix of `text` that precedes the first quote.
    bare: usize,
    /// The token contained a quote.
    quoted: bool,
}

/// Splits a query at unquoted whitespace, removing quotes (Mailpit's tokenizer, but any
/// whitespace separates and control characters count as spaces).
fn tokenize(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut current = Token { text: String::new(), bare: 0, quoted: false };
    let mut in_quotes = false;
    let mut finish = |current: &mut Token| {
        let mut token =
            std::mem::replace(current, Token { text: String::new(), bare: 0, quoted: false });
        if !token.quoted {
            token.bare = token.text.len();
        }
        // Trim, keeping `bare` pointing at the same characters.
        let leading = token.text.len() - token.text.trim_start().len();
        token.text = token.text.trim().to_string();
        token.bare = token.bare.saturating_sub(leading).min(token.text.len());
        if !token.text.is_empty() {
            tokens.push(token);
        }
    };
    for c in input.chars() {
        let c = if c.is_control() || c == '\u{feff}' { ' ' } else { c };
        if c == '"' {
            if !current.quoted {
                current.bare = current.text.len();
                current.quoted = true;
            }
            in_quotes = !in_quotes;
        } else if c.is_whitespace() && !in_quotes {
            finish(&mut current);
        } else {
            current.text.push(c);
        }
    }
    finish(&mut current);
    tokens
}

/// Whether the FTS5 `unicode61` tokenizer keeps `c` in a token (categories L*, N*, Co).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{ffffd}' | '\u{100000}'..='\u{10fffd}')
}

fn has_words(text: &str) -> bool {
    text.chars().any(is_word_char)
}

/// Characters in the last token of `text`, as FTS5 would split it.
pub(crate) fn last_token_chars(text: &str) -> usize {
    text.chars().rev().skip_while(|c| !is_word_char(*c)).take_while(|c| is_word_char(*c)).count()
}

fn bad(filter: &str, value: &str, expected: &'static str) -> SearchError {
    SearchError::BadValue { filter: filter.to_string(), value: value.to_string(), expected }
}

/// Removes surrounding angle brackets, as in `<a@example.com>` or `<id@host>`.
fn strip_angles(value: &str) -> &str {
    let value = value.trim();
    let value = value.strip_prefix('<').unwrap_or(value);
    value.strip_suffix('>').unwrap_or(value).trim()
}

impl SearchQuery {
    /// Parses a query string.
    pub fn parse(input: &str) -> Result<SearchQuery, SearchError> {
        if input.len() > MAX_QUERY_BYTES {
            return Err(SearchError::TooLong { len: input.len(), max: MAX_QUERY_BYTES });
        }
        let mut terms = Vec::new();
        for token in tokenize(input) {
            if let Some(term) = parse_token(token)? {
                terms.push(term);
            }
        }
        if terms.len() > MAX_TERMS {
            return Err(SearchError::TooManyTerms { count: terms.len(), max: MAX_TERMS });
        }
        Ok(SearchQuery { terms })
    }

    /// True when the query has no conditions (it matches everything): the input was empty,
    /// only quotes, or only filters with empty values such as `to:`.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, each with whether it is negated (for the backends that compile them).
    pub(crate) fn terms(&self) -> &[(bool, Term)] {
        &self.terms
    }

    /// This query restricted to the mailbox of `login` (what an account sees through the API).
    pub fn for_account(mut self, login: &str) -> SearchQuery {
        self.terms.push((false, Term::Account(login.to_string())));
        self
    }
}

/// One token to a term: `None` when it contributes nothing (a filter with an empty value).
fn parse_token(token: Token) -> Result<Option<(bool, Term)>, SearchError> {
    let Token { mut text, mut bare, quoted } = token;
    let mut negated = false;
    if bare >= 1 && text.chars().count() > 1 && (text.starts_with('-') || text.starts_with('!')) {
        negated = true;
        text.remove(0);
        bare -= 1;
    }
    if let Some(colon) = text[..bare].find(':') {
        let name = text[..colon].to_ascii_lowercase();
        let value = &text[colon + 1..];
        if let Some(term) = parse_filter(&name, value)? {
            return Ok(term.map(|term| (negated, term)));
        }
    }
    if text.is_empty() {
        return Ok(None);
    }
    let term =
        if has_words(&text) { Term::Text { text, phrase: quoted } } else { Term::Symbols(text) };
    Ok(Some((negated, term)))
}

/// A filter term: `Ok(None)` when `name` is no filter (the token is plain text),
/// `Ok(Some(None))` when the value is empty (the filter is ignored).
fn parse_filter(name: &str, value: &str) -> Result<Option<Option<Term>>, SearchError> {
    let fields: &'static [Field] = match name {
        "from" => &[Field::From],
        "to" => &[Field::To],
        "cc" => &[Field::Cc],
        "bcc" => &[Field::Bcc],
        "reply-to" => &[Field::ReplyTo],
        "addressed" => Field::ALL,
        _ => &[],
    };
    let known = !fields.is_empty()
        || matches!(
            name,
            "subject"
                | "message-id"
                | "tag"
                | "is"
                | "has"
                | "larger"
                | "smaller"
                | "before"
                | "after"
                | "inbox"
                | "header"
        );
    if !known {
        return Ok(None);
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(Some(None));
    }
    filter_term(name, fields, value, trimmed).map(Some)
}

/// The term of a known filter `name` with a non-empty `value` (`trimmed`), or `None` when
/// nothing is left of the value (e.g. `to:<>`).
fn filter_term(
    name: &str,
    fields: &'static [Field],
    value: &str,
    trimmed: &str,
) -> Result<Option<Term>, SearchError> {
    let term = match name {
        _ if !fields.is_empty() => {
            let value = strip_angles(trimmed);
            if value.is_empty() {
                return Ok(None);
            }
            Term::Address { fields, value: value.to_string() }
        }
        "subject" => Term::Subject(value.to_string()),
        "message-id" => {
            let value = strip_angles(trimmed);
            if value.is_empty() {
                return Ok(None);
            }
            Term::MessageId(value.to_string())
        }
        "tag" => Term::Tag(trimmed.to_string()),
        "is" => match trimmed.to_ascii_lowercase().as_str() {
            "read" => Term::Read(true),
            "unread" => Term::Read(false),
            "tagged" => Term::Tagged,
            _ => return Err(bad(name, value, "read, unread or tagged")),
        },
        "has" => match trimmed.to_ascii_lowercase().as_str() {
            "attachment" | "attachments" => Term::Attachment,
            _ => return Err(bad(name, value, "attachment")),
        },
        "larger" | "smaller" => {
            let bytes = parse_size(trimmed)
                .ok_or_else(|| bad(name, value, "a size such as 500, 10k, 1.5mb or 2g"))?;
            if name == "larger" { Term::Larger(bytes) } else { Term::Smaller(bytes) }
        }
        "before" | "after" => {
            let ms = parse_time(trimmed).ok_or_else(|| {
                bad(
                    name,
                    value,
                    "a date YYYY-MM-DD, optionally with THH:MM[:SS] and a zone, or a Unix time",
                )
            })?;
            if name == "before" { Term::Before(ms) } else { Term::After(ms) }
        }
        "inbox" => {
            let value = strip_angles(trimmed);
            if value.is_empty() {
                return Ok(None);
            }
            Term::Inbox(Inbox::of(value).address)
        }
        "header" => header_term(name, value, trimmed)?,
        // Unreachable: parse_filter lets only known names through.
        _ => return Ok(None),
    };
    Ok(Some(term))
}

/// `header:Name=value` or `header:Name`.
fn header_term(name: &str, value: &str, trimmed: &str) -> Result<Term, SearchError> {
    let (header, wanted) = trimmed.split_once('=').unwrap_or((trimmed, ""));
    let (header, wanted) = (header.trim(), wanted.trim());
    if !has_words(header) {
        return Err(bad(name, value, "Name=value or Name, the name having letters or digits"));
    }
    if !wanted.is_empty() && !has_words(wanted) {
        return Err(bad(name, value, "a value with letters or digits (values match by words)"));
    }
    Ok(Term::Header { name: header.to_string(), value: wanted.to_string() })
}

/// Bytes in a size such as `500`, `10k`, `1.5 MB`, `2g` (powers of 1024).
fn parse_size(value: &str) -> Option<i64> {
    let lower = value.to_ascii_lowercase();
    let digits_end = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let multiplier: u128 = match unit {
        "" | "b" | "bytes" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    if whole.len() > 20 || fraction.len() > 9 {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let fraction_value: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
    let scale = 10u128.pow(fraction.len() as u32);
    let bytes = whole * multiplier + fraction_value * multiplier / scale;
    i64::try_from(bytes).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Parses exactly `n` ASCII digits at the start of `s`.
fn take_digits(s: &str, n: usize) -> Option<(i64, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// Milliseconds since the epoch of a date, date-time or Unix timestamp (see the module docs).
fn parse_time(value: &str) -> Option<i64> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.len() {
            8 => {
                let (year, rest) = take_digits(value, 4)?;
                let (month, rest) = take_digits(rest, 2)?;
                let (day, _) = take_digits(rest, 2)?;
                date_ms(year, month, day)
            }
            9..=11 => value.parse::<i64>().ok()?.checked_mul(1000),
            12 | 13 => value.parse().ok(),
            _ => None,
        };
    }
    let (year, rest) = take_digits(value, 4)?;
    let sep = rest.chars().next()?;
    if sep != '-' && sep != '/' {
        return None;
    }
    let (month, rest) = take_digits(&rest[1..], 2)?;
    let rest = rest.strip_prefix(sep)?;
    let (day, rest) = take_digits(rest, 2)?;
    let midnight = date_ms(year, month, day)?;
    if rest.is_empty() {
        return Some(midnight);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hour, rest) = take_digits(rest, 2)?;
    let (minute, mut rest) = take_digits(rest.strip_prefix(':')?, 2)?;
    let mut second = 0;
    let mut millis = 0;
    if let Some(after) = rest.strip_prefix(':') {
        (second, rest) = take_digits(after, 2)?;
        if let Some(after) = rest.strip_prefix('.') {
            let len = after.bytes().take_while(u8::is_ascii_digit).count();
            if len == 0 {
                return None;
            }
            let fraction = &after[..len.min(3)];
            millis = fraction.parse::<i64>().ok()? * 10i64.pow(3 - fraction.len() as u32);
            rest = &after[len..];
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset_minutes = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let zone = &rest[1..];
            let (zone_hours, zone) = take_digits(zone, 2)?;
            let zone = zone.strip_prefix(':').unwrap_or(zone);
            let zone_minutes = if zone.is_empty() { 0 } else { take_digits(zone, 2)?.0 };
            if take_digits(zone, 2).is_some_and(|(_, tail)| !tail.is_empty())
                || zone_hours > 23
                || zone_minutes > 59
            {
                return None;
            }
            sign * (zone_hours * 60 + zone_minutes)
        }
    };
    let local = midnight + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    Some(local - offset_minutes * 60_000)
}

fn date_ms(year: i64, month: i64, day: i64) -> Option<i64> {
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Term {
        Term::Text { text: t.into(), phrase: false }
    }

    fn phrase(t: &str) -> Term {
        Term::Text { text: t.into(), phrase: true }
    }

    fn addr(fields: &'static [Field], v: &str) -> Term {
        Term::Address { fields, value: v.into() }
    }

    const DAY: i64 = 86_400_000;
    /// 2024-05-01T00:00:00Z.
    const MAY_1: i64 = 1_714_521_600_000;

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn parses_terms() {
        let cases: Vec<(&str, Vec<(bool, Term)>)> = vec![
            ("", vec![]),
            ("   \t\n ", vec![]),
            ("\"\"", vec![]),
            ("hello", vec![(false, text("hello"))]),
            ("hello world", vec![(false, text("hello")), (false, text("world"))]),
            ("\"hello world\"", vec![(false, phrase("hello world"))]),
            ("\"unterminated phrase", vec![(false, phrase("unterminated phrase"))]),
            ("-spam", vec![(true, text("spam"))]),
            ("!spam", vec![(true, text("spam"))]),
            ("-\"two words\"", vec![(true, phrase("two words"))]),
            ("\"-5 degrees\"", vec![(false, phrase("-5 degrees"))]),
            ("-", vec![(false, Term::Symbols("-".into()))]),
            ("%", vec![(false, Term::Symbols("%".into()))]),
            ("-%", vec![(true, Term::Symbols("%".into()))]),
            ("Café", vec![(false, text("Café"))]),
            ("from:bob", vec![(false, addr(&[Field::From], "bob"))]),
            ("FROM:Bob", vec![(false, addr(&[Field::From], "Bob"))]),
            ("to:<a@b.example>", vec![(false, addr(&[Field::To], "a@b.example"))]),
            ("cc:c", vec![(false, addr(&[Field::Cc], "c"))]),
            ("bcc:c", vec![(false, addr(&[Field::Bcc], "c"))]),
            ("reply-to:r", vec![(false, addr(&[Field::ReplyTo], "r"))]),
            ("addressed:x", vec![(false, addr(Field::ALL, "x"))]),
            ("-from:bob", vec![(true, addr(&[Field::From], "bob"))]),
            ("to:\"John Doe\"", vec![(false, addr(&[Field::To], "John Doe"))]),
            (
                "subject:\"this is\" a",
                vec![(false, Term::Subject("this is".into())), (false, text("a"))],
            ),
            (
                "subject:hello world",
                vec![(false, Term::Subject("hello".into())), (false, text("world"))],
            ),
            ("subject:\"50% today\"", vec![(false, Term::Subject("50% today".into()))]),
            ("subject:a\\b", vec![(false, Term::Subject("a\\b".into()))]),
            ("message-id:<x@y>", vec![(false, Term::MessageId("x@y".into()))]),
            ("tag:\"Tag 1\"", vec![(false, Term::Tag("Tag 1".into()))]),
            ("is:read", vec![(false, Term::Read(true))]),
            ("IS:UNREAD", vec![(false, Term::Read(false))]),
            ("!is:read", vec![(true, Term::Read(true))]),
            ("is:tagged", vec![(false, Term::Tagged)]),
            ("has:attachment", vec![(false, Term::Attachment)]),
            ("has:attachments", vec![(false, Term::Attachment)]),
            (
                "larger:1k smaller:10k",
                vec![(false, Term::Larger(1024)), (false, Term::Smaller(10240))],
            ),
            ("larger:\"1 MB\"", vec![(false, Term::Larger(1 << 20))]),
            ("larger:1.5M", vec![(false, Term::Larger(1_572_864))]),
            ("smaller:2gb", vec![(false, Term::Smaller(2 << 30))]),
            ("larger:1234567890", vec![(false, Term::Larger(1_234_567_890))]),
            ("after:2024-05-01", vec![(false, Term::After(MAY_1))]),
            ("before:2024/05/02", vec![(false, Term::Before(MAY_1 + DAY))]),
            ("before:20240501", vec![(false, Term::Before(MAY_1))]),
            ("after:2024-05-01T10:30", vec![(false, Term::After(MAY_1 + 37_800_000))]),
            ("after:2024-05-01T10:30:15.25Z", vec![(false, Term::After(MAY_1 + 37_815_250))]),
            ("after:2024-05-01T10:30+02:00", vec![(false, Term::After(MAY_1 + 30_600_000))]),
            ("after:2024-05-01T10:30-0130", vec![(false, Term::After(MAY_1 + 43_200_000))]),
            ("after:\"2024-05-01 10:30\"", vec![(false, Term::After(MAY_1 + 37_800_000))]),
            ("after:1714521600", vec![(false, Term::After(MAY_1))]),
            ("after:1714521600123", vec![(false, Term::After(MAY_1 + 123))]),
            ("before:2024-02-29", vec![(false, Term::Before(1_709_164_800_000))]),
            ("before:1970-01-01", vec![(false, Term::Before(0))]),
            ("inbox:A+X@D.example", vec![(false, Term::Inbox("a@d.example".into()))]),
            (
                "header:X-Mailer=Acme",
                vec![(false, Term::Header { name: "X-Mailer".into(), value: "Acme".into() })],
            ),
            (
                "header:X-Mailer=\"Acme Mail\"",
                vec![(false, Term::Header { name: "X-Mailer".into(), value: "Acme Mail".into() })],
            ),
            (
                "-header:X-Spam",
                vec![(true, Term::Header { name: "X-Spam".into(), value: String::new() })],
            ),
            // Unknown prefixes and URLs are plain text; quoted filters are phrases.
            ("foo:bar", vec![(false, text("foo:bar"))]),
            ("http://example.com/x", vec![(false, text("http://example.com/x"))]),
            ("\"to:bob\"", vec![(false, phrase("to:bob"))]),
            ("re:hello", vec![(false, text("re:hello"))]),
            // Empty filter values are ignored.
            ("to: subject: tag: larger: before:", vec![]),
            ("from:<>", vec![]),
            // FTS and SQL syntax is just text.
            ("a OR b", vec![(false, text("a")), (false, text("OR")), (false, text("b"))]),
            ("NEAR(a", vec![(false, text("NEAR(a"))]),
            (
                "') OR 1=1 --",
                vec![
                    (false, Term::Symbols("')".into())),
                    (false, text("OR")),
                    (false, text("1=1")),
                    (true, Term::Symbols("-".into())),
                ],
            ),
        ];
        for (input, expected) in cases {
            let got = SearchQuery::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.terms, expected, "parsing {input:?}");
            assert_eq!(got.is_empty(), expected.is_empty(), "{input:?}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("larger:lots", "larger"),
            ("smaller:1.2.3", "smaller"),
            ("larger:1.2.3M", "larger"),
            ("larger:10tb", "larger"),
            ("larger:-5", "larger"),
            ("larger:1.", "larger"),
            ("larger:99999999999999999999g", "larger"),
            ("before:2024-13-45", "before"),
            ("before:2023-02-29", "before"),
            ("after:2024-04-31", "after"),
            ("after:yesterday", "after"),
            ("after:2024-05-01T24:00", "after"),
            ("after:2024-05-01T10", "after"),
            ("after:2024-05-01T10:00+2", "after"),
            ("after:2024-05-01T10:00+02:00x", "after"),
            ("after:2024-5-1", "after"),
            ("after:1234", "after"),
            ("is:starred", "is"),
            ("is:untagged", "is"),
            ("has:pdf", "has"),
            ("has:inline", "has"),
            ("header:=x", "header"),
            ("header:%%=x", "header"),
            ("header:X-A=%%", "header"),
            ("-larger:big", "larger"),
        ];
        for (input, filter) in cases {
            match SearchQuery::parse(input) {
                Err(SearchError::BadValue { filter: f, .. }) => assert_eq!(f, filter, "{input}"),
                other => panic!("{input:?} parsed as {other:?}"),
            }
        }
        let message = SearchQuery::parse("larger:lots").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid value for larger: \"lots\" (expected a size such as 500, 10k, 1.5mb or 2g)"
        );
    }

    #[test]
    fn limits_size() {
        let long = "a".repeat(MAX_QUERY_BYTES + 1);
        assert_eq!(
            SearchQuery::parse(&long),
            Err(SearchError::TooLong { len: MAX_QUERY_BYTES + 1, max: MAX_QUERY_BYTES })
        );
        let many = vec!["w"; MAX_TERMS + 1].join(" ");
        assert_eq!(
            SearchQuery::parse(&many),
            Err(SearchError::TooManyTerms { count: MAX_TERMS + 1, max: MAX_TERMS })
        );
        assert!(SearchQuery::parse(&vec!["w"; MAX_TERMS].join(" ")).is_ok());
    }

    #[test]
    fn tokenizer_follows_mailpit() {
        let texts = |input: &str| tokenize(input).into_iter().map(|t| t.text).collect::<Vec<_>>();
        assert_eq!(texts("this is a test"), ["this", "is", "a", "test"]);
        assert_eq!(texts("\"this is\" a test"), ["this is", "a", "test"]);
        assert_eq!(texts("subject:this is a test"), ["subject:this", "is", "a", "test"]);
        assert_eq!(texts("subject:\"this is\" \"a test\""), ["subject:this is", "a test"]);
        assert_eq!(texts("subject:\"this 'is\""), ["subject:this 'is"]);
        assert_eq!(texts("!\"this is\""), ["!this is"]);
        assert_eq!(texts("\"a\"=\"b c\""), ["a=b c"]);
        assert_eq!(texts("  \" padded \"  "), ["padded"]);
        assert_eq!(texts("tab\tnew\nline\0nul"), ["tab", "new", "line", "nul"]);
        let token = &tokenize("  -subject:\"x y\"")[0];
        assert_eq!((token.text.as_str(), token.bare, token.quoted), ("-subject:x y", 9, true));
    }

    #[test]
    fn sizes() {
        for (input, bytes) in [
            ("1m", 1 << 20),
            ("1mb", 1 << 20),
            ("1 M", 1 << 20),
            ("1 MB", 1 << 20),
            ("1k", 1024),
            ("1kb", 1024),
            ("1 K", 1024),
            ("1 kB", 1024),
            ("1.5M", 1_572_864),
            ("0", 0),
            ("10b", 10),
            ("1g", 1 << 30),
            ("0.5k", 512),
        ] {
            assert_eq!(parse_size(input), Some(bytes), "{input}");
        }
        for input in ["invalid", "1.2.3", "1.2.3M", "k", "", ".5k", "1  k", "1kk", "1e3"] {
            assert_eq!(parse_size(input), None, "{input}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(parse_time("2024-05-01"), Some(MAY_1));
        assert_eq!(parse_time("2000-02-29"), Some(951_782_400_000));
        assert_eq!(parse_time("1900-02-29"), None);
    }
}
