//! Search against a real store: messages are parsed from raw RFC 5322 text exactly as ingest
//! does, committed to SQLite, and each query's result set is compared with the expected one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use tern_store::{
    Envelope, MessageId, Mutation, NewMessage, Recipient, Route, SearchError, SearchQuery,
    Selection, SqliteStore, Store, StoreRead, Summary,
};

/// 2024-05-01T00:00:00Z in ms.
const MAY_1: i64 = 1_714_521_600_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("tern-search-test-{}", MessageId::generate()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_message(raw: &str, recipients: &[&str], received_at_ms: i64) -> NewMessage {
    let raw = raw.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes();
    let (summary, search_text) = Summary::extract_with_text(&raw);
    NewMessage {
        id: MessageId::generate(),
        envelope: Envelope {
            mail_from: "sender@example.org".into(),
            recipients: recipients
                .iter()
                .map(|address| Recipient {
                    address: address.to_string(),
                    notify: vec![],
                    orcpt: None,
                    route: Route::Capture,
                })
                .collect(),
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
            client: "127.0.0.1:4000".parse().expect("literal"),
            helo: "client.example".into(),
            tls: None,
            auth: None,
            trusted_client: true,
            received_at_ms,
        },
        received_header: b"Received: test\r\n".to_vec(),
        raw,
        summary,
        search_text,
    }
}

/// A store holding named messages.
struct Fixture {
    store: SqliteStore,
    names: HashMap<MessageId, &'static str>,
    sizes: BTreeMap<&'static str, u64>,
    _dir: TempDir,
}

impl Fixture {
    fn new(messages: Vec<(&'static str, NewMessage)>) -> Fixture {
        let dir = TempDir::new();
        let mut store = SqliteStore::open(&dir.0).expect("open");
        let batch: Vec<NewMessage> = messages.iter().map(|(_, m)| m.clone()).collect();
        store.commit_batch(&batch).expect("commit");
        let names = messages.iter().map(|(name, m)| (m.id, *name)).collect();
        // Sizes as the store records them (the row it will show).
        let sizes = messages.iter().map(|(name, m)| (*name, m.row().summary.size)).collect();
        Fixture { store, names, sizes, _dir: dir }
    }

    fn all(&self) -> BTreeSet<&'static str> {
        self.names.values().copied().collect()
    }

    fn id(&self, name: &str) -> MessageId {
        *self.names.iter().find(|(_, n)| **n == name).expect("known name").0
    }

    /// Names of the messages `query` finds, checked three ways: the page, its count, and
    /// the wait-for query.
    fn find(&self, query: &str) -> BTreeSet<&'static str> {
        let parsed = SearchQuery::parse(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
        let page =
            self.store.page(Some(&parsed), 0, 1000).unwrap_or_else(|e| panic!("{query:?}: {e}"));
        let found: BTreeSet<&'static str> = page.rows.iter().map(|r| self.names[&r.id]).collect();
        assert_eq!(page.matching as usize, found.len(), "{query:?}: count disagrees with rows");
        let unread = page.rows.iter().filter(|r| !r.read).count();
        assert_eq!(page.matching_unread as usize, unread, "{query:?}: unread count disagrees");
        // One row: full-text matches are then walked in page order instead of driving the
        // query (the page is full long before the list would be read), and the counts come
        // from FTS5 and the read flags instead of from the rows.
        for start in [0, 1] {
            let small = self.store.page(Some(&parsed), start, 1).expect("small page");
            let newest = page.rows.get(start as usize).map(|r| r.id);
            assert_eq!(small.rows.first().map(|r| r.id), newest, "{query:?}: row {start}");
            assert_eq!(
                (small.matching, small.matching_unread),
                (page.matching, page.matching_unread),
                "{query:?}: counts of a one-row page"
            );
        }
        let after = self.store.matching_after(Some(&parsed), None, 1000).expect("matching_after");
        let after: BTreeSet<&'static str> = after.iter().map(|r| self.names[&r.id]).collect();
        assert_eq!(after, found, "{query:?}: matching_after disagrees with page");
        found
    }

    /// Asserts each query finds exactly the named messages.
    fn check(&self, cases: &[(&str, &[&str])]) {
        let mut failures = Vec::new();
        for (query, expected) in cases {
            let expected: BTreeSet<&str> = expected.iter().copied().collect();
            let found = self.find(query);
            if found != expected {
                failures.push(format!("{query:?}: expected {expected:?}, found {found:?}"));
            }
        }
        assert!(failures.is_empty(), "{} queries failed:\n{}", failures.len(), failures.join("\n"));
    }

    /// Asserts `query` finds `expected` and its negation (`-query`) finds everything else.
    fn check_with_negation(&self, cases: &[(&str, &[&str])]) {
        let mut failures = Vec::new();
        for (query, expected) in cases {
            let expected: BTreeSet<&str> = expected.iter().copied().collect();
            let rest: BTreeSet<&str> = self.all().difference(&expected).copied().collect();
            for (q, want) in [(query.to_string(), &expected), (format!("-{query}"), &rest)] {
                let found = self.find(&q);
                if &found != want {
                    failures.push(format!("{q:?}: expected {want:?}, found {found:?}"));
                }
            }
        }
        assert!(failures.is_empty(), "{} queries failed:\n{}", failures.len(), failures.join("\n"));
    }
}

const DEFAULT_RCPT: &[&str] = &["someone@catch.example"];

fn main_fixture() -> Fixture {
    let june = MAY_1 + 31 * DAY;
    let lorem = |bytes: usize| "lorem ipsum dolor sit amet ".repeat(bytes / 27 + 1);
    let messages = vec![
        (
            "plain",
            new_message(
                "From: Alice Example <alice@example.com>
To: Bob <bob@example.net>
Subject: Weekly report
Message-ID: <plain-1@example.com>

The quick brown fox jumps over the lazy dog.
",
                DEFAULT_RCPT,
                june,
            ),
        ),
        (
            "b64",
            new_message(
                "From: Carol <carol@example.org>
To: dave@example.net
Subject: Base64 body
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

UGluZWFwcGxlIHNtb290aGllIHJlY2lwZTogYmxlbmQgenVjY2hpbmkgd2l0aCB5b2dodXJ0Lg0K
",
                DEFAULT_RCPT,
                june + HOUR,
            ),
        ),
        (
            "qp",
            new_message(
                "From: Erin <erin@example.org>
To: frank@example.net
Subject: QP body
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait with straw=
berry jam, thirty=20percent off.
",
                DEFAULT_RCPT,
                june + 2 * HOUR,
            ),
        ),
        (
            "encsubj",
            new_message(
                "From: Gustav <gustav@example.org>
To: ida@example.net
Subject: =?utf-8?b?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=

Servus.
",
                DEFAULT_RCPT,
                june + 3 * HOUR,
            ),
        ),
        (
            "html",
            new_message(
                "From: Grace <grace@example.org>
To: heidi@example.net
Subject: HTML only
Content-Type: text/html; charset=utf-8

<html><head><title>Newsletter</title></head><body><p>Hello <b>bold</b> <i>italic</i> world</p>
<a href=\"https://tracking.example/click\">Click here</a></body></html>
",
                DEFAULT_RCPT,
                june + 4 * HOUR,
            ),
        ),
        (
            "attach",
            new_message(
                "From: Ivan <ivan@example.org>
To: judy@example.net
Subject: Documents
Content-Type: multipart/mixed; boundary=\"XYZ\"

--XYZ
Content-Type: text/plain

See the attached documents.
--XYZ
Content-Type: application/pdf
Content-Disposition: attachment; filename=\"quarterly-report-2024.pdf\"
Content-Transfer-Encoding: base64

JVBERi0xLjQgZmFrZWNvbnRlbnQ=
--XYZ
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt

Curriculum
--XYZ--
",
                DEFAULT_RCPT,
                june + 5 * HOUR,
            ),
        ),
        (
            "addr",
            new_message(
                "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <jorg@example.org>
To: \"John Doe\" <john.doe@example.com>, Zed <zed@example.com>
Cc: Cathy Cc <cathy@cc.example>
Bcc: Barry Bcc <barry@bcc.example>
Reply-To: Rita Reply <rita@reply.example>
Subject: Addresses
Message-ID: <addr-42@mx.example.com>
X-Tags: Urgent, Tag 1
X-Mailer: Acme Mailer 2.0

Nothing to see.
",
                &[
                    "john.doe@example.com",
                    "zed@example.com",
                    "cathy@cc.example",
                    "barry@bcc.example",
                    "hidden@secret.example",
                ],
                june + 6 * HOUR,
            ),
        ),
        (
            "plus",
            new_message(
                "From: Mallory <mallory@example.org>
To: a+x@d.example
Subject: Plus addressed

Filed under a plus address.
",
                &["a+x@d.example"],
                june + 7 * HOUR,
            ),
        ),
        (
            "amp",
            new_message(
                "From: Oscar <oscar@example.org>
To: peggy@example.net
Subject: Tom & Jerry 100%

Cartoon.
",
                DEFAULT_RCPT,
                june + 8 * HOUR,
            ),
        ),
        (
            "medium",
            new_message(
                &format!("From: Trent <trent@example.org>\nSubject: Medium\n\n{}\n", lorem(3000)),
                DEFAULT_RCPT,
                june + 9 * HOUR,
            ),
        ),
        (
            "large",
            new_message(
                &format!("From: Trent <trent@example.org>\nSubject: Large\n\n{}\n", lorem(20_000)),
                DEFAULT_RCPT,
                june + 10 * HOUR,
            ),
        ),
        ("apr30", new_message("Subject: Date one\n\nlast of april\n", DEFAULT_RCPT, MAY_1 - 1)),
        ("may1", new_message("Subject: Date two\n\nfirst of may\n", DEFAULT_RCPT, MAY_1)),
        (
            "may2",
            new_message("Subject: Date three\n\nmay noon\n", DEFAULT_RCPT, MAY_1 + DAY + 12 * HOUR),
        ),
        ("empty", new_message("", &["nobody@catch.example"], june + 11 * HOUR)),
    ];
    let mut fixture = Fixture::new(messages);
    let read = vec![fixture.id("plain"), fixture.id("b64")];
    fixture.store.apply(&Mutation::SetRead(Selection::Ids(read), true)).expect("mark read");
    fixture
}

fn except(fixture: &Fixture, names: &[&str]) -> Vec<&'static str> {
    fixture.all().into_iter().filter(|n| !names.contains(n)).collect()
}

#[test]
fn words_in_decoded_text() {
    let f = main_fixture();
    f.check(&[
        // base64 body
        ("pineapple", &["b64"]),
        ("PINEAPPLE", &["b64"]),
        ("zucchini yoghurt", &["b64"]),
        // quoted-printable body, soft line break joined, =C3=A9 decoded
        ("strawberry", &["qp"]),
        ("\"thirty percent\"", &["qp"]),
        ("café", &["qp"]),
        ("cafe", &["qp"]),
        ("CAFÉ", &["qp"]),
        ("\"straw\"", &[]),
        ("straw=", &["qp"]),
        // RFC 2047 subject
        ("münchen", &["encsubj"]),
        ("MUNCHEN", &["encsubj"]),
        ("R3LDvMOfZSBhdXMgTcO8bmNoZW4", &[]),
        // HTML reduced to text: tag names and attributes are not words
        ("bold italic", &["html"]),
        ("\"click here\"", &["html"]),
        ("\"b\"", &[]),
        ("\"href\"", &[]),
        ("\"html\"", &["html"]),
        // attachment names (RFC 2231 too), not attachment contents
        ("quarterly", &["attach"]),
        ("\"quarterly report 2024\"", &["attach"]),
        ("resume", &["attach"]),
        ("fakecontent", &[]),
        // addresses and display names
        ("jorg", &["addr"]),
        ("müller", &["addr"]),
        ("john.doe@example.com", &["addr"]),
        ("rita", &["addr"]),
        // header values are only for header:
        ("acme", &[]),
    ]);
}

#[test]
fn prefixes_phrases_and_negation() {
    let f = main_fixture();
    f.check(&[
        ("smooth", &["b64"]),
        // one or two letters match whole words only
        ("qu", &[]),
        ("qui", &["plain"]),
        ("QUI", &["plain"]),
        ("au", &["qp"]),
        ("jo", &[]),
        ("john.doe@example.co", &[]),
        ("john.doe@example.com", &["addr"]),
        ("john.doe@exa", &["addr"]),
        ("\"smooth\"", &[]),
        ("\"smoothie\"", &["b64"]),
        ("pine smooth", &["b64"]),
        ("recipe smoothie", &["b64"]),
        ("\"smoothie recipe\"", &["b64"]),
        ("\"recipe smoothie\"", &[]),
        ("quick fox", &["plain"]),
        ("fox -smoothie", &["plain"]),
        ("fox !fox", &[]),
        ("fox -\"lazy dog\"", &[]),
        ("fox -\"lazy cat\"", &["plain"]),
        ("fox is:read", &["plain"]),
        ("fox is:unread", &[]),
    ]);
    let not_fox_smoothie = except(&f, &["plain", "b64"]);
    f.check(&[("-fox -smoothie", &not_fox_smoothie)]);
    f.check_with_negation(&[
        ("smoothie", &["b64"]),
        ("\"smoothie recipe\"", &["b64"]),
        ("münchen", &["encsubj"]),
    ]);
}

#[test]
fn address_filters() {
    let f = main_fixture();
    f.check_with_negation(&[
        ("from:jorg", &["addr"]),
        ("from:JÖRG", &["addr"]),
        ("from:\"jörg müller\"", &["addr"]),
        ("from:<jorg@example.org>", &["addr"]),
        ("from:muller", &[]),
        ("from:alice", &["plain"]),
        ("to:\"john doe\"", &["addr"]),
        ("to:JOHN.DOE@EXAMPLE.COM", &["addr"]),
        ("to:zed", &["addr"]),
        ("to:cathy", &[]),
        ("cc:cathy", &["addr"]),
        ("bcc:barry", &["addr"]),
        // an envelope recipient no header names is a blind copy
        ("bcc:hidden@secret", &["addr"]),
        ("reply-to:rita", &["addr"]),
        ("reply-to:reply.example", &["addr"]),
        ("addressed:rita", &["addr"]),
        ("addressed:hidden", &["addr"]),
        ("addressed:alice", &["plain"]),
        ("addressed:example.net", &["plain", "b64", "qp", "encsubj", "html", "attach", "amp"]),
        // JSON structure and keys are not names or addresses
        ("to:name", &[]),
        ("to:address", &[]),
        ("to::", &[]),
        ("addressed:}", &[]),
        ("to:\"\\\"\"", &[]),
    ]);
}

#[test]
fn field_filters() {
    let f = main_fixture();
    f.check_with_negation(&[
        ("subject:weekly", &["plain"]),
        ("subject:\"WEEKLY REPORT\"", &["plain"]),
        ("subject:münchen", &["encsubj"]),
        ("subject:MÜNCHEN", &["encsubj"]),
        ("subject:munchen", &[]),
        ("subject:eekl", &["plain"]),
        ("subject:&", &["amp"]),
        ("subject:100%", &["amp"]),
        ("message-id:addr-42", &["addr"]),
        ("message-id:<addr-42@mx.example.com>", &["addr"]),
        ("message-id:ADDR-42@MX", &["addr"]),
        ("message-id:example.com", &["plain", "addr"]),
        ("tag:urgent", &["addr"]),
        ("tag:URGENT", &["addr"]),
        ("tag:\"tag 1\"", &["addr"]),
        ("tag:tag", &[]),
        ("tag:x", &["plus"]),
        ("is:tagged", &["addr", "plus"]),
        ("is:read", &["plain", "b64"]),
        ("has:attachment", &["attach"]),
        ("has:attachments", &["attach"]),
        ("inbox:a@d.example", &["plus"]),
        ("inbox:A+Y@D.Example", &["plus"]),
        ("inbox:b@d.example", &[]),
        ("inbox:hidden@secret.example", &["addr"]),
        ("header:X-Mailer=Acme", &["addr"]),
        ("header:x-mailer=acme", &["addr"]),
        ("header:X-Mailer=\"Acme Mailer 2\"", &["addr"]),
        ("header:X-Mailer=Acm", &["addr"]),
        // one or two letters match whole words only
        ("header:X-Mailer=Ac", &[]),
        ("header:X-Mailer=Mailer", &[]),
        ("header:X-Mailer=Other", &[]),
        ("header:X-Mailer", &["addr"]),
        ("header:X-Tags=urgent", &["addr"]),
        ("header:Content-Transfer-Encoding=base64", &["b64"]),
    ]);
    let unread = except(&f, &["plain", "b64"]);
    f.check(&[("is:unread", &unread), ("!is:read", &unread), ("-is:unread", &["plain", "b64"])]);
    let catch_all = except(&f, &["addr", "plus", "empty"]);
    f.check(&[("inbox:someone@catch.example", &catch_all)]);
}

#[test]
fn sizes() {
    let f = main_fixture();
    let between: Vec<&str> =
        f.sizes.iter().filter(|(_, s)| **s > 1024 && **s < 10 * 1024).map(|(n, _)| *n).collect();
    assert_eq!(between, ["medium"]);
    f.check(&[("larger:1k smaller:10k", &["medium"]), ("larger:10KB", &["large"])]);
    let medium = f.sizes["medium"];
    let small: Vec<&str> = except(&f, &["medium", "large"]);
    f.check_with_negation(&[
        (&format!("larger:{medium}"), &["large"]),
        (&format!("smaller:{medium}"), &small),
        (&format!("larger:{}", medium - 1), &["medium", "large"]),
        ("larger:0", &except(&f, &[])),
        (&format!("smaller:{}", f.sizes["empty"] + 1), &["empty"]),
    ]);
}

#[test]
fn dates() {
    let f = main_fixture();
    let june = except(&f, &["apr30", "may1", "may2"]);
    let mut from_may1 = june.clone();
    from_may1.extend(["may1", "may2"]);
    let mut from_may2 = june.clone();
    from_may2.push("may2");
    f.check_with_negation(&[
        ("before:2024-05-01", &["apr30"]),
        ("after:2024-05-01", &from_may1),
        ("after:2024-05-02", &from_may2),
        ("after:2024-05-02T12:00", &from_may2),
        ("after:2024-05-02T12:00:00.001Z", &june),
        ("before:2024-05-01T00:00:00.001Z", &["apr30", "may1"]),
        ("before:2024-05-01T02:00+02:00", &["apr30"]),
        ("before:\"2024-05-01 00:00:01\"", &["apr30", "may1"]),
        ("before:1714521600", &["apr30"]),
        ("before:1714521600001", &["apr30", "may1"]),
        ("before:2024/05/02", &["apr30", "may1"]),
        ("before:20240502", &["apr30", "may1"]),
    ]);
    f.check(&[("after:2024-05-01 before:2024-05-02", &["may1"])]);
}

#[test]
fn hostile_input_is_just_text() {
    let f = main_fixture();
    let all = f.all();
    let hostile = [
        "'",
        "%",
        "_",
        "\\",
        "*",
        "a\"b",
        "') OR 1=1 --",
        "\" OR \"\"=\"",
        "' OR ''='",
        "x' OR 'x'='x",
        "1; DROP TABLE messages",
        "NEAR(quick brown)",
        "quick OR nothing",
        "quick AND",
        "NOT quick",
        "fox*",
        "^fox",
        "{subject}: fox",
        "subject : fox",
        "body:fox",
        "col:fox",
        "(",
        ")",
        "subject:%",
        "subject:_",
        "subject:'",
        "from:%",
        "to:_",
        "tag:%",
        "message-id:%",
        "inbox:%",
        "header:X-Mailer=\"Acme\" OR 1",
        "-\"",
        "日本語",
        "🙂",
    ];
    for query in hostile {
        let found = f.find(query);
        assert_ne!(found, all, "{query:?} matched everything");
    }
    // FTS syntax in a word stays a plain word.
    f.check(&[
        ("fox*", &["plain"]),
        ("^fox", &["plain"]),
        ("\"fox\"*", &["plain"]),
        ("NEAR(quick brown)", &[]),
        ("quick OR nothing", &[]),
        ("%", &["amp"]),
        ("&", &["amp"]),
        ("-&", &except(&f, &["amp"])),
        ("_", &[]),
        ("subject:%", &["amp"]),
        ("from:%", &[]),
    ]);
    // The store survives all of it.
    assert_eq!(f.store.count().expect("count"), all.len() as u64);
}

#[test]
fn empty_queries_match_everything() {
    let f = main_fixture();
    let all = f.all();
    for query in ["", "   ", "\"\"", "\u{0}\t", "to:", "from: subject:"] {
        assert!(SearchQuery::parse(query).expect(query).is_empty(), "{query:?}");
        assert_eq!(f.find(query), all, "{query:?}");
    }
}

#[test]
fn bad_values_are_errors() {
    for query in ["larger:lots", "before:2024-13-45", "after:yesterday", "is:starred", "has:pdf"] {
        assert!(
            matches!(SearchQuery::parse(query), Err(SearchError::BadValue { .. })),
            "{query:?}"
        );
    }
    // Through the store, the error surfaces as a search error (a 400, not a 500).
    let dir = TempDir::new();
    let mut store = SqliteStore::open(&dir.0).expect("open");
    let err = store
        .apply(&Mutation::Delete(Selection::Search("smaller:huge".into())))
        .expect_err("bad query");
    assert!(matches!(err, tern_store::StoreError::Search(_)), "{err:?}");
}

#[test]
fn search_selections_delete_and_mark() {
    let mut f = main_fixture();
    let deleted =
        f.store.apply(&Mutation::Delete(Selection::Search("from:alice".into()))).expect("delete");
    assert_eq!(deleted, vec![f.id("plain")]);
    f.names.retain(|_, n| *n != "plain");
    f.check(&[("fox", &[]), ("from:alice", &[])]);
    // The deleted message is gone from the full-text index too: negations still work.
    f.check(&[("-fox", &f.all().into_iter().collect::<Vec<_>>())]);
    f.store
        .apply(&Mutation::SetRead(Selection::Search("subject:münchen".into()), true))
        .expect("mark");
    f.check(&[("is:read", &["b64", "encsubj"])]);
    // The counters followed the delete and the marks.
    let all = f.store.page(None, 0, 0).expect("everything");
    assert_eq!((all.total, all.unread), (f.names.len() as u64, f.names.len() as u64 - 2));
}

/// Mailpit's search_test.go fixture: each message has unique addresses, subject and body.
#[test]
fn mailpit_numbered_fixture() {
    let messages: Vec<(&'static str, NewMessage)> = (0..60)
        .map(|i| {
            let raw = format!(
                "From: From {i} <from-{i}@example.com>
To: To {i} <to-{i}@example.com>, To2 {i} <to2-{i}@example.com>
Cc: CC {i} <cc-{i}@example.com>, CC2 {i} <cc2-{i}@example.com>
Reply-To: Reply To {i} <reply-to-{i}@example.com>
Subject: Subject line {i} end

This is the email body {i} <jdsauk;dwqmdqw;>.
"
            );
            let name: &'static str = Box::leak(i.to_string().into_boxed_str());
            (name, new_message(&raw, &[&format!("to-{i}@example.com")], MAY_1 + i * HOUR))
        })
        .collect();
    let f = Fixture::new(messages);
    for i in [0, 1, 5, 11, 50] {
        let name = i.to_string();
        let expected: BTreeSet<&str> = [name.as_str()].into_iter().collect();
        for query in [
            format!("from-{i}@example.com"),
            format!("from:from-{i}@example.com"),
            format!("to-{i}@example.com"),
            format!("to:to-{i}@example.com"),
            format!("to2-{i}@example.com"),
            format!("to:to2-{i}@example.com"),
            format!("cc-{i}@example.com"),
            format!("cc:cc-{i}@example.com"),
            format!("cc2-{i}@example.com"),
            format!("cc:cc2-{i}@example.com"),
            format!("reply-to-{i}@example.com"),
            format!("reply-to:\"reply-to-{i}@example.com\""),
            format!("\"Subject line {i} end\""),
            format!("subject:\"Subject line {i} end\""),
            format!("\"the email body {i} jdsauk dwqmdqw\""),
            format!("inbox:to-{i}@example.com"),
        ] {
            assert_eq!(f.find(&query), expected, "{query:?}");
        }
    }
    assert_eq!(f.find("This is the email body").len(), 60);
    assert_eq!(f.find("-from:from-1@example.com").len(), 59);
}

/// Mailpit's later literal-matching tests: `_`, `%` and `\` are ordinary characters.
#[test]
fn mailpit_literal_fixture() {
    let f = Fixture::new(vec![
        (
            "A",
            new_message(
                "From: from_a@example.com
To: to_a@example.com
Cc: cc_a@example.com
Bcc: blind_a@example.com
Reply-To: reply_a@example.com
Message-ID: <id_1@example.com>
Subject: Save 50% today

ref abc_def
",
                DEFAULT_RCPT,
                MAY_1,
            ),
        ),
        (
            "B",
            new_message(
                "From: fromxa@example.com
To: toxa@example.com
Cc: ccxa@example.com
Bcc: blindxa@example.com
Reply-To: replyxa@example.com
Message-ID: <idx1@example.com>
Subject: Save 50 on everything today

ref abcxdef
",
                DEFAULT_RCPT,
                MAY_1 + 1,
            ),
        ),
        (
            "C",
            new_message(
                "From: \"From & Co\" <co@example.com>
To: To & Co <toco@example.com>
Subject: dir a\\b

other
",
                DEFAULT_RCPT,
                MAY_1 + 2,
            ),
        ),
        (
            "D",
            new_message(
                "From: \"a\\\\b\" <back@example.com>
Subject: dir ab

other
",
                DEFAULT_RCPT,
                MAY_1 + 3,
            ),
        ),
    ]);
    f.check_with_negation(&[
        ("from:from_a", &["A"]),
        ("to:to_a", &["A"]),
        ("cc:cc_a", &["A"]),
        ("bcc:blind_a", &["A"]),
        ("reply-to:reply_a", &["A"]),
        ("addressed:from_a", &["A"]),
        ("addressed:to_a", &["A"]),
        ("addressed:cc_a", &["A"]),
        ("addressed:blind_a", &["A"]),
        ("addressed:reply_a", &["A"]),
        ("message-id:id_1", &["A"]),
        ("subject:\"50% today\"", &["A"]),
        ("abc_def", &["A"]),
        ("\"50% today\"", &["A"]),
        ("subject:a\\b", &["C"]),
        ("from:\"from & co\"", &["C"]),
        ("to:\"to & co\"", &["C"]),
        ("addressed:\"from & co\"", &["C"]),
        ("from:\"From and Co\"", &[]),
        ("from:a\\b", &["D"]),
    ]);
}

/// Counts of a page whose answer is one full-text match: every way of counting its unread
/// messages (probing the read ones, probing the unread ones, joining the whole match) agrees
/// with the rows, however many are read.
#[test]
fn counts_of_a_full_text_match_however_many_are_read() {
    let messages: Vec<(&'static str, NewMessage)> = (0..240)
        .map(|n| {
            let word = if n % 4 == 0 { "rare" } else { "plenty" };
            let name: &'static str = Box::leak(format!("m{n}").into_boxed_str());
            let raw = format!("Subject: number {n}\n\ncommon {word} words\n");
            (name, new_message(&raw, DEFAULT_RCPT, 1_000 + n))
        })
        .collect();
    let mut f = Fixture::new(messages);
    let mut ids: Vec<MessageId> = f.names.keys().copied().collect();
    ids.sort();
    for read in [0, 3, 60, 120, 200, 237, 240] {
        f.store.apply(&Mutation::SetRead(Selection::All, false)).expect("unread");
        let chosen = ids.iter().take(read).copied().collect();
        f.store.apply(&Mutation::SetRead(Selection::Ids(chosen), true)).expect("read");
        for query in ["common", "rare", "plenty", "common -rare", "nothing"] {
            let parsed = SearchQuery::parse(query).expect("query");
            let whole = f.store.page(Some(&parsed), 0, 1000).expect("page");
            let unread = whole.rows.iter().filter(|r| !r.read).count() as u64;
            assert_eq!(whole.matching, whole.rows.len() as u64, "{query} with {read} read");
            assert_eq!(whole.matching_unread, unread, "{query} with {read} read");
            let small = f.store.page(Some(&parsed), 0, 1).expect("small page");
            assert_eq!(
                (small.matching, small.matching_unread),
                (whole.matching, unread),
                "{query} with {read} read, one row"
            );
        }
        let all = f.store.page(None, 0, 1).expect("everything");
        assert_eq!((all.total, all.unread), (240, 240 - read as u64));
        let read_page = f.store.page(Some(&SearchQuery::parse("is:read").unwrap()), 0, 5).unwrap();
        assert_eq!((read_page.matching, read_page.matching_unread), (read as u64, 0));
        assert!(read_page.rows.iter().all(|r| r.read));
    }
    f.names.clear();
}
