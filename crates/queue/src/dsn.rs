//! Delivery status notifications (RFC 3464): the bytes of a bounce, a delay warning or a
//! success report about one queued message.
//!
//! Pure code: no I/O and no clock (the caller passes the time). This module owns the DSN's
//! layout, an RFC 6522 `multipart/report` with three parts: a human-readable explanation, the
//! machine-readable `message/delivery-status` fields, and the original message or its header
//! section (chosen per RFC 3461 §4.3 `RET=`). Deciding *whether* a report is due (`NOTIFY=`,
//! never to the null sender) and sending it belong to the scheduler.
//!
//! Everything it writes ends lines in CRLF and keeps lines within 998 octets. Text from clients
//! and remote servers that lands in a header or a status field has its control characters
//! (CR and LF above all) replaced by spaces, so it can never start a field of its own.
//!
//! The MIME is written by hand rather than with `mail-builder`: the structure is fixed, and
//! `message/*` parts must go out unencoded (RFC 2046 §5.2.1 forbids base64 there).

use std::borrow::Cow;

use memchr::memmem;

/// Originals larger than this, in bytes, are returned as their header section only.
pub const MAX_RETURNED_BYTES: usize = 10 * 1024 * 1024;

/// Column at which generated header fields are folded and text is wrapped.
const WRAP_COLUMN: usize = 78;
/// Longest run of bytes without a space kept on one generated line; longer runs are split.
const MAX_UNBROKEN_BYTES: usize = 900;
/// Longest line, in octets without its CRLF, that 7bit or 8bit transfer encoding allows
/// (RFC 5322 §2.1.1).
const MAX_LINE_BYTES: usize = 998;

/// What a report says happened, to the message as a whole or to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Delivery failed permanently; the message will not be retried.
    Failed,
    /// Delivery has not succeeded yet and is still being retried.
    Delayed,
    /// The message was delivered to the recipient's mailbox.
    Delivered,
    /// The message was passed to a next hop that does not support DSN, so no further report
    /// will come.
    Relayed,
}

impl ReportKind {
    /// The RFC 3464 `Action:` value.
    pub fn action(self) -> &'static str {
        match self {
            ReportKind::Failed => "failed",
            ReportKind::Delayed => "delayed",
            ReportKind::Delivered => "delivered",
            ReportKind::Relayed => "relayed",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            ReportKind::Failed => "Undelivered Mail Returned to Sender",
            ReportKind::Delayed => "Delayed Mail (still being retried)",
            ReportKind::Delivered | ReportKind::Relayed => "Successful Mail Delivery Report",
        }
    }

    /// The status code used when the caller's is not a valid RFC 3463 code.
    fn default_status(self) -> &'static str {
        match self {
            ReportKind::Failed => "5.0.0",
            ReportKind::Delayed => "4.0.0",
            ReportKind::Delivered | ReportKind::Relayed => "2.0.0",
        }
    }

    fn adjective(self) -> &'static str {
        match self {
            ReportKind::Failed => "Undelivered",
            ReportKind::Delayed => "Delayed",
            ReportKind::Delivered => "Delivered",
            ReportKind::Relayed => "Relayed",
        }
    }
}

/// One recipient's part of a report.
#[derive(Debug, Clone)]
pub struct ReportRecipient {
    /// The recipient as Tern tried it.
    pub address: String,
    /// `ORCPT=` as the client gave it (xtext-decoded), with its type: `rfc822;bob@x.example`.
    pub orcpt: Option<String>,
    /// What happened to this recipient.
    pub action: ReportKind,
    /// RFC 3463 status code, e.g. `5.1.1`; an invalid one becomes the action's generic code.
    pub status: String,
    /// The server that answered, with its type: `dns; mx1.example.com` (`dns;` is added when
    /// no type is given).
    pub remote_mta: Option<String>,
    /// Its answer, with its type: `smtp; 550 5.1.1 No such user` for a reply a peer sent;
    /// a value without a type is Tern's own verdict and gets `x-tern;` (RFC 3464 section
    /// 2.3.6: `smtp` is only for SMTP replies).
    pub diagnostic: Option<String>,
    /// When delivery to this recipient was last attempted, in Unix milliseconds.
    pub last_attempt_ms: Option<i64>,
    /// Until when Tern keeps retrying, in Unix milliseconds; written for delayed recipients only.
    pub will_retry_until_ms: Option<i64>,
}

/// Everything a report is built from.
///
/// The caller must not build a report for the null sender (RFC 3461 §6.2: a DSN is never sent
/// to `<>`), and should pass at least one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// What the report is about; decides the subject, the text and the default `RET=`.
    pub kind: ReportKind,
    /// Our hostname: `Reporting-MTA:` and the `From:` domain.
    pub reporting_mta: &'a str,
    /// The original envelope sender; the report is addressed to it.
    pub sender: &'a str,
    /// `ENVID=` as the client gave it (xtext-decoded).
    pub original_envid: Option<&'a str>,
    /// `RET=` as the client gave it: `FULL`, `HDRS` or absent (any other value counts as absent).
    pub ret: Option<&'a str>,
    /// When the original was received, in Unix milliseconds.
    pub arrival_ms: i64,
    /// The time of the report, in Unix milliseconds.
    pub now_ms: i64,
    /// The original's queue id.
    pub message_id: &'a str,
    /// The recipients the report is about.
    pub recipients: &'a [ReportRecipient],
    /// The original as stored: its `Received:` header, then the client's bytes.
    pub original: &'a [u8],
}

/// Builds the DSN message: headers and body, every line ending in CRLF.
///
/// The result is 8-bit (send it with `BODY=8BITMIME`) when it is not all ASCII; its header
/// section holds UTF-8 (needing `SMTPUTF8`) only if the sender's address does.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    let host = hostname(report.reporting_mta);
    let original = ReturnedOriginal::choose(report);
    let text = human_text(report, &host, original.whole);
    let status = delivery_status(report, &host);
    let parts = [
        Part {
            content_type: "text/plain; charset=utf-8",
            description: "Notification".to_owned(),
            body: text.as_bytes(),
        },
        Part {
            // RFC 6533: fields holding UTF-8 need the "global" type.
            content_type: if status.is_ascii() {
                "message/delivery-status"
            } else {
                "message/global-delivery-status"
            },
            description: "Delivery report".to_owned(),
            body: status.as_bytes(),
        },
        Part {
            content_type: original.content_type(),
            description: original.description(report.kind),
            body: &original.bytes,
        },
    ];
    let boundary = boundary(report.message_id, &parts);
    let eight_bit = parts.iter().any(|part| !part.body.is_ascii());

    let mut head = String::new();
    field(&mut head, "From", &format!("Mail Delivery System <MAILER-DAEMON@{host}>"));
    field(&mut head, "To", &format!("<{}>", clean(report.sender)));
    field(&mut head, "Subject", report.kind.subject());
    field(&mut head, "Date", &rfc5322_date(report.now_ms));
    field(&mut head, "Message-ID", &message_id(report, &host));
    field(&mut head, "Auto-Submitted", "auto-replied");
    field(&mut head, "MIME-Version", "1.0");
    field(
        &mut head,
        "Content-Type",
        &format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\""),
    );
    field(&mut head, "Content-Transfer-Encoding", transfer_encoding(eight_bit));
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    let size = head.len() + parts.iter().map(|p| p.body.len() + 200).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.as_bytes());
    for part in &parts {
        part.write(&mut out, &boundary);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The header section of `message`, up to and including the blank line that ends it; the
/// whole message when it has no blank line. Accepts CRLF and bare LF line ends.
pub fn headers_of(message: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < message.len() {
        let end = memchr::memchr(b'\n', &message[start..]).map_or(message.len(), |i| start + i + 1);
        if matches!(&message[start..end], b"\r\n" | b"\n") {
            return &message[..end];
        }
        start = end;
    }
    message
}

/// One body part of the report.
struct Part<'a> {
    content_type: &'static str,
    description: String,
    /// CRLF-terminated lines (or empty).
    body: &'a [u8],
}

impl Part<'_> {
    /// Writes the delimiter, the part's headers and its body. The CRLF before the next
    /// delimiter belongs to that delimiter (RFC 2046 §5.1.1), so the body keeps its last CRLF.
    fn write(&self, out: &mut Vec<u8>, boundary: &str) {
        let mut head = format!("\r\n--{boundary}\r\n");
        field(&mut head, "Content-Type", self.content_type);
        field(&mut head, "Content-Description", &self.description);
        field(&mut head, "Content-Transfer-Encoding", transfer_encoding(!self.body.is_ascii()));
        head.push_str("\r\n");
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(self.body);
    }
}

/// The third part: the original or its header section (RFC 3461 §4.3).
struct ReturnedOriginal<'a> {
    /// The whole message (`message/rfc822`) rather than its headers (`text/rfc822-headers`).
    whole: bool,
    /// Its header section holds UTF-8 (RFC 6532), so the "global" types apply.
    global: bool,
    /// CRLF-normalized bytes.
    bytes: Cow<'a, [u8]>,
}

impl<'a> ReturnedOriginal<'a> {
    /// `RET=FULL` returns the message, `RET=HDRS` its headers; without `RET=` a failure
    /// returns the message and other reports only headers (as Postfix does). A message over
    /// [`MAX_RETURNED_BYTES`], or with a body line too long for 8bit, is cut to its headers.
    fn choose(report: &Report<'a>) -> ReturnedOriginal<'a> {
        let ret = report.ret.map(str::trim);
        let asked_whole = match ret {
            Some(r) if r.eq_ignore_ascii_case("FULL") => true,
            Some(r) if r.eq_ignore_ascii_case("HDRS") => false,
            _ => report.kind == ReportKind::Failed,
        };
        let headers = headers_of(report.original);
        let global = !headers.is_ascii();
        if asked_whole && report.original.len() <= MAX_RETURNED_BYTES {
            let bytes = crlf_lines(report.original);
            if longest_line(&bytes) <= MAX_LINE_BYTES {
                return ReturnedOriginal { whole: true, global, bytes };
            }
        }
        ReturnedOriginal { whole: false, global, bytes: crlf_lines(headers) }
    }

    fn content_type(&self) -> &'static str {
        match (self.whole, self.global) {
            (true, false) => "message/rfc822",
            (true, true) => "message/global",
            (false, false) => "text/rfc822-headers",
            (false, true) => "message/global-headers",
        }
    }

    fn description(&self, kind: ReportKind) -> String {
        let adjective = kind.adjective();
        if self.whole {
            format!("{adjective} Message")
        } else {
            format!("{adjective} Message Headers")
        }
    }
}

/// The explanation for people: what happened, then one paragraph per recipient.
fn human_text(report: &Report<'_>, host: &str, whole: bool) -> String {
    let attached =
        if whole { "A copy of it is attached below." } else { "Its headers are attached below." };
    let intro = match report.kind {
        ReportKind::Failed => format!(
            "Your message could not be delivered to the recipients listed below, and no \
             further attempts will be made. {attached}"
        ),
        ReportKind::Delayed => format!(
            "Your message has not yet been delivered to the recipients listed below. This is \
             only a warning: there is no need to send it again. Delivery will be retried, and \
             you will hear again if it is given up. {attached}"
        ),
        ReportKind::Delivered => format!(
            "Your message was delivered to the recipients listed below. You receive this \
             report because you asked for one. {attached}"
        ),
        ReportKind::Relayed => format!(
            "Your message was passed on to the next mail server for the recipients listed \
             below. That server does not send delivery reports, so this is the last report \
             about them. {attached}"
        ),
    };
    let mut out = String::new();
    paragraph(&mut out, &format!("This is the mail system at {host}."));
    paragraph(&mut out, &intro);
    if report.kind == ReportKind::Failed {
        paragraph(
            &mut out,
            &format!("If you need help, write to <postmaster@{host}> and include this report."),
        );
    }
    paragraph(
        &mut out,
        &format!(
            "Queue id {}, received {}.",
            clean(report.message_id),
            rfc5322_date(report.arrival_ms)
        ),
    );
    for rcpt in report.recipients {
        recipient_text(&mut out, rcpt);
    }
    out
}

fn recipient_text(out: &mut String, rcpt: &ReportRecipient) {
    let status = status_code(&rcpt.status, rcpt.action);
    let what = match rcpt.action {
        ReportKind::Failed => "delivery failed",
        ReportKind::Delayed => "not delivered yet",
        ReportKind::Delivered => "delivered",
        ReportKind::Relayed => "relayed to a server that sends no reports",
    };
    paragraph_line(out, &format!("<{}>: {what} (status {status})", clean(&rcpt.address)), "    ");
    if let Some(orcpt) = &rcpt.orcpt {
        indented(out, &format!("Originally addressed to: {}", untyped(orcpt)));
    }
    if let Some(mta) = &rcpt.remote_mta {
        indented(out, &format!("Remote server: {}", untyped(mta)));
    }
    if let Some(diagnostic) = &rcpt.diagnostic {
        indented(out, &format!("It said: {}", untyped(diagnostic)));
    }
    if let Some(at) = rcpt.last_attempt_ms {
        indented(out, &format!("Last attempt: {}", rfc5322_date(at)));
    }
    if let (ReportKind::Delayed, Some(until)) = (rcpt.action, rcpt.will_retry_until_ms) {
        indented(out, &format!("Delivery will be retried until {}.", rfc5322_date(until)));
    }
    out.push_str("\r\n");
}

/// The `message/delivery-status` body: per-message fields, then one block per recipient,
/// each block preceded by a blank line (RFC 3464 §2.1).
fn delivery_status(report: &Report<'_>, host: &str) -> String {
    let mut out = String::new();
    if let Some(envid) = report.original_envid {
        field(&mut out, "Original-Envelope-Id", &clean(envid));
    }
    field(&mut out, "Reporting-MTA", &format!("dns; {host}"));
    field(&mut out, "X-Tern-Queue-ID", &clean(report.message_id));
    field(&mut out, "Arrival-Date", &rfc5322_date(report.arrival_ms));
    for rcpt in report.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = &rcpt.orcpt {
            field(&mut out, "Original-Recipient", &typed(orcpt, "rfc822"));
        }
        let address = clean(&rcpt.address);
        // RFC 6533 §3: a UTF-8 address has its own type.
        let address_type = if address.is_ascii() { "rfc822" } else { "utf-8" };
        field(&mut out, "Final-Recipient", &format!("{address_type}; {address}"));
        field(&mut out, "Action", rcpt.action.action());
        field(&mut out, "Status", &status_code(&rcpt.status, rcpt.action));
        if let Some(mta) = &rcpt.remote_mta {
            field(&mut out, "Remote-MTA", &typed(mta, "dns"));
        }
        if let Some(diagnostic) = &rcpt.diagnostic {
            field(&mut out, "Diagnostic-Code", &typed(diagnostic, LOCAL_DIAGNOSTIC_TYPE));
        }
        if let Some(at) = rcpt.last_attempt_ms {
            field(&mut out, "Last-Attempt-Date", &rfc5322_date(at));
        }
        if let (ReportKind::Delayed, Some(until)) = (rcpt.action, rcpt.will_retry_until_ms) {
            field(&mut out, "Will-Retry-Until", &rfc5322_date(until));
        }
    }
    out
}

/// `<queue-id.now.kind@host>`: unique per report, yet the same for the same inputs.
fn message_id(report: &Report<'_>, host: &str) -> String {
    let id = token(report.message_id);
    format!("<{id}.{}.{}@{host}>", report.now_ms, report.kind.action())
}

/// A boundary whose delimiter occurs in no part, so no body can end the report early.
fn boundary(message_id: &str, parts: &[Part<'_>]) -> String {
    let id = token(message_id);
    let mut n: u64 = 0;
    loop {
        let boundary = format!("tern-dsn-{id}-{n}");
        let delimiter = format!("--{boundary}");
        if parts.iter().all(|part| memmem::find(part.body, delimiter.as_bytes()).is_none()) {
            return boundary;
        }
        n += 1;
    }
}

/// Appends `Name: value` and CRLF, folded before spaces so lines stay short.
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    fold(out, name.len() + 2, value, " ");
    out.push_str("\r\n");
}

/// Appends a wrapped paragraph and a blank line.
fn paragraph(out: &mut String, text: &str) {
    paragraph_line(out, text, "");
    out.push_str("\r\n");
}

/// Appends `text` wrapped, continuation lines starting with `indent`, and a CRLF.
fn paragraph_line(out: &mut String, text: &str, indent: &str) {
    fold(out, 0, text, indent);
    out.push_str("\r\n");
}

fn indented(out: &mut String, text: &str) {
    out.push_str("    ");
    fold(out, 4, text, "        ");
    out.push_str("\r\n");
}

/// Appends `text` to a line already `column` bytes long, breaking at spaces past
/// [`WRAP_COLUMN`]: the space is replaced by CRLF and `continuation`. With `continuation`
/// = `" "` this is RFC 5322 folding and unfolds to the same text. A run longer than
/// [`MAX_UNBROKEN_BYTES`] is split (unfolding then shows a space in it), so no line can pass
/// [`MAX_LINE_BYTES`].
fn fold(out: &mut String, mut column: usize, text: &str, continuation: &str) {
    for (i, mut word) in text.split(' ').enumerate() {
        if i > 0 {
            if column + 1 + word.len() > WRAP_COLUMN && column > continuation.len() {
                out.push_str("\r\n");
                out.push_str(continuation);
                column = continuation.len();
            } else {
                out.push(' ');
                column += 1;
            }
        }
        while word.len() > MAX_UNBROKEN_BYTES {
            let cut = word.floor_char_boundary(MAX_UNBROKEN_BYTES);
            out.push_str(&word[..cut]);
            out.push_str("\r\n");
            out.push_str(continuation);
            column = continuation.len();
            word = &word[cut..];
        }
        out.push_str(word);
        column += word.len();
    }
}

/// `text` with every control character (CR, LF, TAB, NUL, ...) replaced by a space and the
/// ends trimmed: safe inside a header or status field.
fn clean(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    cleaned.trim().to_owned()
}

/// A typed field value (`type; value`, RFC 3464 §2.1.2), adding `default_type` when the value
/// has no type of its own.
/// The diagnostic type of Tern's own verdicts (DNS answers, expiry, local failures).
const LOCAL_DIAGNOSTIC_TYPE: &str = "x-tern";

fn typed(value: &str, default_type: &str) -> String {
    let value = clean(value);
    match split_type(&value) {
        Some((kind, rest)) => format!("{kind}; {rest}"),
        None => format!("{default_type}; {value}"),
    }
}

/// The value without its type, for people.
fn untyped(value: &str) -> String {
    let value = clean(value);
    match split_type(&value) {
        Some((_, rest)) => rest.to_owned(),
        None => value,
    }
}

/// Splits `type;rest` where the type is an atom such as `rfc822`, `dns`, `smtp` or `x-local`.
fn split_type(value: &str) -> Option<(&str, &str)> {
    let (kind, rest) = value.split_once(';')?;
    let kind = kind.trim();
    let is_type = !kind.is_empty()
        && kind.len() <= 32
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    is_type.then(|| (kind, rest.trim()))
}

/// The status code if it is a valid RFC 3463 code (`class.subject.detail`), else the
/// action's generic one.
fn status_code(status: &str, action: ReportKind) -> String {
    let status = status.trim();
    let mut fields = status.split('.');
    let valid = matches!(fields.next(), Some("2" | "4" | "5"))
        && fields.by_ref().take(2).filter(|f| is_number(f)).count() == 2
        && fields.next().is_none();
    if valid { status.to_owned() } else { action.default_status().to_owned() }
}

fn is_number(field: &str) -> bool {
    (1..=3).contains(&field.len()) && field.bytes().all(|b| b.is_ascii_digit())
}

/// Our hostname reduced to characters valid in a domain, for `From:`, `Message-ID:` and
/// `Reporting-MTA:`.
fn hostname(name: &str) -> String {
    let host: String =
        name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')).collect();
    let host = host.trim_matches('.');
    if host.is_empty() { "localhost".to_owned() } else { host.to_owned() }
}

/// `text` reduced to letters, digits, `-` and `_` (at most 40), for ids and boundaries.
fn token(text: &str) -> String {
    let token: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    if token.is_empty() { "dsn".to_owned() } else { token }
}

fn transfer_encoding(eight_bit: bool) -> &'static str {
    if eight_bit { "8bit" } else { "7bit" }
}

/// `bytes` with every bare CR or LF made a CRLF, ending in CRLF unless empty; borrowed when
/// already so (as anything received over SMTP is).
fn crlf_lines(bytes: &[u8]) -> Cow<'_, [u8]> {
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| match b {
        b'\r' => bytes.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && bytes[i - 1] == b'\r',
        _ => true,
    });
    if well_formed && (bytes.is_empty() || bytes.ends_with(b"\r\n")) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

/// Length in octets of the longest CRLF-terminated line, without its CRLF.
fn longest_line(bytes: &[u8]) -> usize {
    bytes.split(|&b| b == b'\n').map(|line| line.len().saturating_sub(1)).max().unwrap_or(0)
}

/// An RFC 5322 date in UTC: `Tue, 14 Nov 2023 22:13:20 +0000`.
fn rfc5322_date(unix_ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = unix_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MessagePart, PartId};

    const ORIGINAL: &[u8] =
        b"Received: from client.example by mx.tern.test; Tue, 14 Nov 2023 22:13:20 +0000\r\n\
From: Alice <alice@client.example>\r\n\
To: bob@remote.example\r\n\
Subject: Hello\r\n\
\r\n\
Hi Bob,\r\n\
see you.\r\n";

    fn failed_rcpt() -> ReportRecipient {
        ReportRecipient {
            address: "bob@remote.example".into(),
            orcpt: Some("rfc822;Bob@Remote.example".into()),
            action: ReportKind::Failed,
            status: "5.1.1".into(),
            remote_mta: Some("dns; mx1.remote.example".into()),
            diagnostic: Some("smtp; 550 5.1.1 No such user".into()),
            last_attempt_ms: Some(1_700_000_100_000),
            will_retry_until_ms: None,
        }
    }

    fn delayed_rcpt() -> ReportRecipient {
        ReportRecipient {
            address: "carol@slow.example".into(),
            orcpt: None,
            action: ReportKind::Delayed,
            status: "4.4.1".into(),
            remote_mta: None,
            diagnostic: Some("connection refused".into()),
            last_attempt_ms: Some(1_700_000_100_000),
            will_retry_until_ms: Some(1_700_432_000_000),
        }
    }

    fn report<'a>(kind: ReportKind, recipients: &'a [ReportRecipient]) -> Report<'a> {
        Report {
            kind,
            reporting_mta: "mx.tern.test",
            sender: "alice@client.example",
            original_envid: Some("env-42"),
            ret: None,
            arrival_ms: 1_700_000_000_000,
            now_ms: 1_700_000_200_000,
            message_id: "01HF0000000000000000000000",
            recipients,
            original: ORIGINAL,
        }
    }

    /// The parsed report's three parts as (content type, part).
    fn parts(raw: &[u8]) -> (mail_parser::Message<'_>, Vec<PartId>) {
        let message = MessageParser::default().parse(raw).expect("parses");
        let root = message.root_part();
        let ct = root.content_type().expect("content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let ids: Vec<PartId> = root.children().map(|part| part.id()).collect();
        assert_eq!(ids.len(), 3, "three parts");
        (message, ids)
    }

    fn part<'m>(message: &'m mail_parser::Message<'_>, id: PartId) -> MessagePart<'m> {
        message.part(id).expect("a part")
    }

    /// The raw value of the report's last header called `name`, after its colon.
    fn header_raw<'m>(message: &'m mail_parser::Message<'_>, name: &str) -> Option<&'m str> {
        std::str::from_utf8(message.headers().get(name)?.raw_value()).ok()
    }

    fn content_type(message: &mail_parser::Message<'_>, id: PartId) -> String {
        let ct = part(message, id).content_type().expect("content type");
        format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
    }

    /// The delivery-status body as blocks of unfolded (name, value) fields.
    fn status_blocks(body: &[u8]) -> Vec<Vec<(String, String)>> {
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        let unfolded = text.replace("\r\n ", " ");
        unfolded
            .split("\r\n\r\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                block
                    .split("\r\n")
                    .filter(|line| !line.is_empty())
                    .map(|line| {
                        let (name, value) = line.split_once(':').expect("a field");
                        (name.to_owned(), value.trim().to_owned())
                    })
                    .collect()
            })
            .collect()
    }

    fn value<'b>(block: &'b [(String, String)], name: &str) -> Option<&'b str> {
        block.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn part_body<'b>(raw: &'b [u8], message: &mail_parser::Message<'_>, id: PartId) -> &'b [u8] {
        let part = part(message, id);
        &raw[part.offset_body() as usize..part.offset_end() as usize]
    }

    fn assert_crlf_and_short(raw: &[u8]) {
        for (i, &b) in raw.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}"),
                b'\n' => assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}"),
                _ => {}
            }
        }
        assert!(raw.ends_with(b"\r\n"));
        let longest = longest_line(raw);
        assert!(longest <= MAX_LINE_BYTES, "a line of {longest} octets");
    }

    #[test]
    fn a_bounce_has_the_three_parts_and_the_fields() {
        let rcpts = [failed_rcpt()];
        let raw = build(&report(ReportKind::Failed, &rcpts));
        assert_crlf_and_short(&raw);
        let (message, ids) = parts(&raw);
        assert_eq!(message.subject(), Some("Undelivered Mail Returned to Sender"));
        let from = message.from().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(from, Some("MAILER-DAEMON@mx.tern.test"));
        let to = message.to().and_then(|a| a.first()).and_then(|a| a.address());
        assert_eq!(to, Some("alice@client.example"));
        assert_eq!(message.date().map(|d| d.to_timestamp()), Some(1_700_000_200));
        assert_eq!(
            message.message_id(),
            Some("01HF0000000000000000000000.1700000200000.failed@mx.tern.test")
        );
        assert_eq!(header_raw(&message, "Auto-Submitted").map(str::trim), Some("auto-replied"));

        assert_eq!(content_type(&message, ids[0]), "text/plain");
        let text = part(&message, ids[0]).text().expect("text");
        assert!(text.contains("<bob@remote.example>: delivery failed (status 5.1.1)"), "{text}");
        assert!(text.contains("It said: 550 5.1.1 No such user"), "{text}");
        assert!(text.contains("Remote server: mx1.remote.example"), "{text}");

        assert_eq!(content_type(&message, ids[1]), "message/delivery-status");
        let blocks = status_blocks(part_body(&raw, &message, ids[1]));
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        let (per_message, rcpt) = (&blocks[0], &blocks[1]);
        assert_eq!(value(per_message, "Original-Envelope-Id"), Some("env-42"));
        assert_eq!(value(per_message, "Reporting-MTA"), Some("dns; mx.tern.test"));
        assert_eq!(value(per_message, "Arrival-Date"), Some("Tue, 14 Nov 2023 22:13:20 +0000"));
        assert_eq!(value(rcpt, "Original-Recipient"), Some("rfc822; Bob@Remote.example"));
        assert_eq!(value(rcpt, "Final-Recipient"), Some("rfc822; bob@remote.example"));
        assert_eq!(value(rcpt, "Action"), Some("failed"));
        assert_eq!(value(rcpt, "Status"), Some("5.1.1"));
        assert_eq!(value(rcpt, "Remote-MTA"), Some("dns; mx1.remote.example"));
        assert_eq!(value(rcpt, "Diagnostic-Code"), Some("smtp; 550 5.1.1 No such user"));
        assert_eq!(value(rcpt, "Last-Attempt-Date"), Some("Tue, 14 Nov 2023 22:15:00 +0000"));
        assert_eq!(value(rcpt, "Will-Retry-Until"), None);

        // No RET= on a failure: the whole message comes back.
        assert_eq!(content_type(&message, ids[2]), "message/rfc822");
        assert_eq!(part_body(&raw, &message, ids[2]), ORIGINAL);
        let inner = part(&message, ids[2]).nested().expect("nested message");
        assert_eq!(inner.subject(), Some("Hello"));
    }

    #[test]
    fn a_delay_warning_says_until_when() {
        let rcpts = [delayed_rcpt()];
        let raw = build(&report(ReportKind::Delayed, &rcpts));
        assert_crlf_and_short(&raw);
        let (message, ids) = parts(&raw);
        assert_eq!(message.subject(), Some("Delayed Mail (still being retried)"));
        let text = part(&message, ids[0]).text().expect("text");
        assert!(text.contains("retried until Sun, 19 Nov 2023 22:13:20 +0000"), "{text}");
        let blocks = status_blocks(part_body(&raw, &message, ids[1]));
        let rcpt = &blocks[1];
        assert_eq!(value(rcpt, "Action"), Some("delayed"));
        assert_eq!(value(rcpt, "Status"), Some("4.4.1"));
        assert_eq!(value(rcpt, "Will-Retry-Until"), Some("Sun, 19 Nov 2023 22:13:20 +0000"));
        // A diagnostic without a type gets `smtp;`; no ORCPT, no Original-Recipient.
        assert_eq!(value(rcpt, "Diagnostic-Code"), Some("x-tern; connection refused"));
        assert_eq!(value(rcpt, "Original-Recipient"), None);
        // No RET= on a delay warning: headers only.
        assert_eq!(content_type(&message, ids[2]), "text/rfc822-headers");
        assert_eq!(part_body(&raw, &message, ids[2]), headers_of(ORIGINAL));
    }

    #[test]
    fn ret_decides_what_comes_back() {
        let big =
            [ORIGINAL, &vec![b'x'; 100][..], b"\r\n"].concat().repeat(MAX_RETURNED_BYTES / 100);
        assert!(big.len() > MAX_RETURNED_BYTES);
        let long_line = [ORIGINAL, &vec![b'y'; 1200][..], b"\r\n"].concat();
        let cases: [(Option<&str>, ReportKind, &[u8], &str); 9] = [
            (None, ReportKind::Failed, ORIGINAL, "message/rfc822"),
            (None, ReportKind::Delayed, ORIGINAL, "text/rfc822-headers"),
            (None, ReportKind::Delivered, ORIGINAL, "text/rfc822-headers"),
            (Some("HDRS"), ReportKind::Failed, ORIGINAL, "text/rfc822-headers"),
            (Some("FULL"), ReportKind::Delayed, ORIGINAL, "message/rfc822"),
            (Some("full"), ReportKind::Relayed, ORIGINAL, "message/rfc822"),
            (Some("bogus"), ReportKind::Failed, ORIGINAL, "message/rfc822"),
            (Some("FULL"), ReportKind::Failed, &big, "text/rfc822-headers"),
            (Some("FULL"), ReportKind::Failed, &long_line, "text/rfc822-headers"),
        ];
        for (ret, kind, original, expected) in cases {
            let rcpts = [ReportRecipient { action: kind, ..failed_rcpt() }];
            let raw = build(&Report { ret, original, ..report(kind, &rcpts) });
            let (message, ids) = parts(&raw);
            assert_eq!(content_type(&message, ids[2]), expected, "RET={ret:?} {kind:?}");
            let body = part_body(&raw, &message, ids[2]);
            if expected == "message/rfc822" {
                assert_eq!(body, original);
            } else {
                assert_eq!(body, headers_of(original));
            }
        }
    }

    #[test]
    fn success_and_relayed_reports() {
        for (kind, action) in
            [(ReportKind::Delivered, "delivered"), (ReportKind::Relayed, "relayed")]
        {
            let rcpts = [ReportRecipient {
                action: kind,
                status: "2.0.0".into(),
                diagnostic: Some("smtp; 250 2.0.0 Ok: queued".into()),
                ..failed_rcpt()
            }];
            let raw = build(&report(kind, &rcpts));
            let (message, ids) = parts(&raw);
            assert_eq!(message.subject(), Some("Successful Mail Delivery Report"));
            let blocks = status_blocks(part_body(&raw, &message, ids[1]));
            assert_eq!(value(&blocks[1], "Action"), Some(action));
            assert_eq!(value(&blocks[1], "Status"), Some("2.0.0"));
            assert!(message.message_id().expect("id").contains(&format!(".{action}@")));
        }
    }

    #[test]
    fn header_injection_is_neutralised() {
        let rcpts = [ReportRecipient {
            address: "bob@remote.example\r\nAction: delivered".into(),
            status: "5.1.1\r\nX-Evil: 1".into(),
            diagnostic: Some("smtp; 550 no\r\n\r\nFinal-Recipient: rfc822; evil@x".into()),
            remote_mta: Some("mx\nX-Evil: 2".into()),
            ..failed_rcpt()
        }];
        let raw = build(&Report {
            sender: "alice@client.example>\r\nBcc: victim@elsewhere.example",
            reporting_mta: "mx.tern.test\r\nX-Evil: 3",
            original_envid: Some("e\r\nX-Evil: 4"),
            ..report(ReportKind::Failed, &rcpts)
        });
        assert_crlf_and_short(&raw);
        let text = String::from_utf8_lossy(&raw);
        for line in text.split("\r\n") {
            assert!(!line.starts_with("Bcc:") && !line.starts_with("X-Evil"), "{line}");
        }
        let (message, ids) = parts(&raw);
        assert!(header_raw(&message, "Bcc").is_none());
        let blocks = status_blocks(part_body(&raw, &message, ids[1]));
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        let rcpt = &blocks[1];
        assert_eq!(rcpt.iter().filter(|(n, _)| n == "Action").count(), 1);
        assert_eq!(rcpt.iter().filter(|(n, _)| n == "Final-Recipient").count(), 1);
        assert_eq!(value(rcpt, "Action"), Some("failed"));
        // An invalid status code falls back to the action's generic one.
        assert_eq!(value(rcpt, "Status"), Some("5.0.0"));
        assert_eq!(value(&blocks[0], "Reporting-MTA"), Some("dns; mx.tern.testX-Evil3"));
    }

    #[test]
    fn an_eight_bit_original_comes_back_byte_exact() {
        let original: &[u8] = b"From: =?utf-8?q?Andr=C3=A9?= <andre@client.example>\r\n\
Subject: caf\xc3\xa9\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\nVoil\xe0, d\xe9j\xe0 vu.\r\n\xff\xfe\x00 raw\r\n";
        let rcpts = [failed_rcpt()];
        let raw =
            build(&Report { original, ret: Some("FULL"), ..report(ReportKind::Failed, &rcpts) });
        assert_crlf_and_short(&raw);
        let (message, ids) = parts(&raw);
        let global = part(&message, ids[2]);
        // UTF-8 in the original's headers (RFC 6532) makes it message/global (RFC 6533).
        assert_eq!(content_type(&message, ids[2]), "message/global");
        assert_eq!(global.content_transfer_encoding(), Some("8bit"));
        assert_eq!(part_body(&raw, &message, ids[2]), original);
        assert_eq!(header_raw(&message, "Content-Transfer-Encoding").map(str::trim), Some("8bit"));
        // A Latin-1 body alone keeps message/rfc822.
        let latin: &[u8] = b"Subject: x\r\n\r\nd\xe9j\xe0\r\n";
        let raw = build(&Report { original: latin, ..report(ReportKind::Failed, &rcpts) });
        let (message, ids) = parts(&raw);
        assert_eq!(content_type(&message, ids[2]), "message/rfc822");
        assert_eq!(part(&message, ids[2]).content_transfer_encoding(), Some("8bit"));
        assert_eq!(part_body(&raw, &message, ids[2]), latin);
    }

    #[test]
    fn long_diagnostics_are_folded_within_the_line_limit() {
        let unbroken = "z".repeat(1500);
        let words = "word ".repeat(600);
        let rcpts = [ReportRecipient {
            diagnostic: Some(format!("smtp; 550 5.7.1 {words}{unbroken} end")),
            address: format!("{}@remote.example", "l".repeat(1100)),
            ..failed_rcpt()
        }];
        let raw = build(&report(ReportKind::Failed, &rcpts));
        assert_crlf_and_short(&raw);
        let (message, ids) = parts(&raw);
        let blocks = status_blocks(part_body(&raw, &message, ids[1]));
        let diagnostic = value(&blocks[1], "Diagnostic-Code").expect("diagnostic");
        // Folding at spaces unfolds to the same words; the unbroken run gains one split.
        assert!(diagnostic.starts_with(&format!("smtp; 550 5.7.1 {words}")), "{diagnostic}");
        assert!(diagnostic.ends_with(" end"));
        assert_eq!(diagnostic.replace(' ', "").len(), "smtp;5505.7.1".len() + 2400 + 1500 + 3);
    }

    #[test]
    fn the_boundary_never_occurs_in_the_original() {
        let rcpts = [failed_rcpt()];
        let original = b"Subject: tricky\r\n\r\n--tern-dsn-01HF0000000000000000000000-0\r\n\
--tern-dsn-01HF0000000000000000000000-1--\r\n";
        let raw = build(&Report { original, ..report(ReportKind::Failed, &rcpts) });
        let (message, ids) = parts(&raw);
        assert_eq!(part_body(&raw, &message, ids[2]), &original[..]);
        let ct = message.root_part().content_type().expect("content type");
        assert_eq!(ct.attribute("boundary"), Some("tern-dsn-01HF0000000000000000000000-2"));
    }

    #[test]
    fn bare_line_ends_in_the_original_become_crlf() {
        let rcpts = [failed_rcpt()];
        let original = b"Subject: lf\nFrom: a@b.example\n\nline one\rline two\nno final newline";
        let raw = build(&Report { original, ..report(ReportKind::Failed, &rcpts) });
        assert_crlf_and_short(&raw);
        let (message, ids) = parts(&raw);
        assert_eq!(
            part_body(&raw, &message, ids[2]),
            b"Subject: lf\r\nFrom: a@b.example\r\n\r\nline one\r\nline two\r\nno final newline\r\n"
        );
    }

    #[test]
    fn reports_are_deterministic() {
        let rcpts = [failed_rcpt(), delayed_rcpt()];
        let a = build(&report(ReportKind::Failed, &rcpts));
        assert_eq!(a, build(&report(ReportKind::Failed, &rcpts)));
        let later =
            build(&Report { now_ms: 1_700_000_300_000, ..report(ReportKind::Failed, &rcpts) });
        let (first, second) =
            (MessageParser::default().parse(&a), MessageParser::default().parse(&later));
        assert_ne!(
            first.as_ref().and_then(|m| m.message_id()),
            second.as_ref().and_then(|m| m.message_id())
        );
    }

    #[test]
    fn utf8_addresses_use_the_global_types() {
        let rcpts =
            [ReportRecipient { address: "jürgen@beispiel.example".into(), ..failed_rcpt() }];
        let raw = build(&report(ReportKind::Failed, &rcpts));
        let (message, ids) = parts(&raw);
        assert_eq!(content_type(&message, ids[1]), "message/global-delivery-status");
        let blocks = status_blocks(part_body(&raw, &message, ids[1]));
        assert_eq!(value(&blocks[1], "Final-Recipient"), Some("utf-8; jürgen@beispiel.example"));
    }

    #[test]
    fn header_sections() {
        assert_eq!(headers_of(b"A: 1\r\nB: 2\r\n\r\nbody\r\n"), b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(headers_of(b"A: 1\n\nbody\n\nmore"), b"A: 1\n\n");
        assert_eq!(headers_of(b"A: 1\r\nB: 2\r\n"), b"A: 1\r\nB: 2\r\n");
        assert_eq!(headers_of(b"\r\nbody"), b"\r\n");
        assert_eq!(headers_of(b""), b"");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_700_000_000_999), "Tue, 14 Nov 2023 22:13:20 +0000");
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
        assert_eq!(rfc5322_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(4_107_542_400_000), "Mon, 01 Mar 2100 00:00:00 +0000");
    }

    /// A second, independent MIME parser: Python's `email` package with its strict policy.
    #[test]
    fn python_email_reads_the_report() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        const SCRIPT: &str = r#"
import email, email.policy, sys
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
print("subject", msg["subject"])
print("report-type", msg.get_param("report-type"))
for part in msg.walk():
    print("part", part.get_content_type(), "defects", len(part.defects))
    if part.get_content_type() == "message/delivery-status":
        for block in part.get_payload():
            if block["Action"]:
                print("rcpt", block["Final-Recipient"], block["Action"], block["Status"])
"#;
        let rcpts = [failed_rcpt(), delayed_rcpt()];
        let raw = build(&report(ReportKind::Failed, &rcpts));
        let child = Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("python3 not found; skipping");
                return;
            }
            Err(e) => panic!("cannot run python3: {e}"),
        };
        child.stdin.take().expect("stdin").write_all(&raw).expect("write");
        let output = child.wait_with_output().expect("python3 runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        let expected = "\
subject Undelivered Mail Returned to Sender
report-type delivery-status
part multipart/report defects 0
part text/plain defects 0
part message/delivery-status defects 0
rcpt rfc822; bob@remote.example failed 5.1.1
rcpt rfc822; carol@slow.example delayed 4.4.1
part text/plain defects 0
part text/plain defects 0
part text/plain defects 0
part message/rfc822 defects 0
part text/plain defects 0
";
        assert_eq!(stdout, expected);
    }
}
