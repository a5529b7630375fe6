//! End-to-end tests of the HTTP API against the real `tern serve`: mail goes in over SMTP (or
//! `POST /api/v1/send`) and is read back over HTTP with a small blocking client. Every JSON
//! answer of a Mailpit-compatible endpoint is validated against Mailpit's published schema
//! (`tests/api/reference/mailpit-swagger.json`) and against Tern's own `openapi.json`; the
//! extensions are validated against Tern's document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

#[path = "api/http.rs"]
mod http;
#[path = "api/schema.rs"]
mod schema;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use http::{EventStream, WebSocket};
use schema::{check_both, tern};
use support::{Client, TernServer, text};

// ---------------------------------------------------------------------------------------
// Fixtures

/// Decoded bytes of the inline image in [`report`] and their digests.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake-logo-bytes";
const PNG_BASE64: &str = "iVBORw0KGgpmYWtlLWxvZ28tYnl0ZXM=";
const PNG_MD5: &str = "473b2bebba1f355af31c2f3c4f981e09";
const PNG_SHA1: &str = "ddbf491aa549e97e36dfb707fbd621c76cc663b1";
const PNG_SHA256: &str = "81d653e59a178112110d2dd58f4e2cb44beb4ec0f97f6bc88def689cb78543b8";
/// Decoded bytes of the PDF attachment and their digests.
const PDF: &[u8] = b"%PDF-1.4\n% quarterly report\n%%EOF\n";
const PDF_BASE64: &str = "JVBERi0xLjQKJSBxdWFydGVybHkgcmVwb3J0CiUlRU9GCg==";
const PDF_MD5: &str = "461bb4b94ebe2090c6062f70e5aae0a2";
const PDF_SHA1: &str = "5d62d77a5399efc430fa0cafbb2f1bbf0b5bd086";
const PDF_SHA256: &str = "183531d3f127bbcc5cb5d8ea2a59ef41ad9b91ae0a6d5b9ebfc4cd7a58553b34";

/// A message with every kind of part: text and HTML alternatives, an inline image referenced
/// by `cid:`, a PDF attachment and an HTML attachment. PartIDs: 1.1 text, 1.2 html, 2 image,
/// 3 pdf, 4 html attachment.
fn report() -> String {
    format!(
        "From: \"Alice Example\" <alice@example.org>
To: Bob <bob@example.com>, carol@example.com
Cc: Dave <dave@example.net>
Reply-To: replies@example.org
Subject: Quarterly report
Message-ID: <report-1@example.org>
Date: Tue, 03 Mar 2026 10:20:30 +0100
List-Unsubscribe: <mailto:unsub@example.org>, <https://example.org/unsub>
MIME-Version: 1.0
X-Multi: first
X-Multi: second
X-Folded: part one
 part two
Content-Type: multipart/mixed; boundary=\"XX\"

--XX
Content-Type: multipart/alternative; boundary=\"YY\"

--YY
Content-Type: text/plain; charset=utf-8

Hello Bob, the report is attached.
--YY
Content-Type: text/html; charset=utf-8

<p>Hello Bob, <img src=\"cid:logo@example.org\"> <img src=\"https://tracker.example/pixel.png\"></p>
--YY--
--XX
Content-Type: image/png
Content-ID: <logo@example.org>
Content-Disposition: inline; filename=\"logo.png\"
Content-Transfer-Encoding: base64

{PNG_BASE64}
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename=\"report.pdf\"
Content-Transfer-Encoding: base64

{PDF_BASE64}
--XX
Content-Type: text/html; charset=utf-8
Content-Disposition: attachment; filename=\"page.html\"

<script>alert(1)</script>
--XX--
"
    )
}

/// A plain one-part message.
fn simple(from: &str, to: &str, subject: &str, body: &str) -> String {
    format!("From: {from}\nTo: {to}\nSubject: {subject}\n\n{body}\n")
}

/// `\n` line ends become CRLF; lines starting with `.` are dot-stuffed.
fn wire(message: &str) -> Vec<u8> {
    let mut out = String::new();
    for line in message.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// The bytes the server should store for `message`: CRLF line ends, no dot-stuffing.
fn stored(message: &str) -> Vec<u8> {
    message.lines().flat_map(|l| format!("{l}\r\n").into_bytes()).collect()
}

/// Delivers one message over SMTP and returns its id.
fn deliver(server: &TernServer, mail_from: &str, rcpts: &[&str], message: &str) -> String {
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO client.test", "250");
    let id = client.send_message(mail_from, rcpts, &wire(message));
    client.cmd("QUIT", "221");
    id
}

/// Delivers a plain message with this subject to `rcpt` and returns its id.
fn deliver_simple(server: &TernServer, rcpt: &str, subject: &str, body: &str) -> String {
    let message = simple("Sender <sender@example.org>", rcpt, subject, body);
    deliver(server, "sender@example.org", &[rcpt], &message)
}

/// Percent-encodes a query parameter value.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Small API helpers, each validating what it reads

/// `GET path` of a `MessagesSummary`, validated against both documents.
fn list(server: &TernServer, path: &str) -> Value {
    let page = http::get(server.http, path).json_with(200);
    check_both("MessagesSummary", "MessagesSummary", &page);
    page
}

/// `GET /api/v1/search?query=...`.
fn search(server: &TernServer, query: &str) -> Value {
    list(server, &format!("/api/v1/search?query={}", enc(query)))
}

/// The subjects of a page, in order.
fn subjects(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("messages is an array")
        .iter()
        .map(|m| m["Subject"].as_str().expect("Subject is a string").to_string())
        .collect()
}

/// The ids of a list of summaries.
fn ids(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("an array of summaries")
        .iter()
        .map(|m| m["ID"].as_str().expect("ID is a string").to_string())
        .collect()
}

/// `GET /api/v1/message/{id}`, validated against both documents.
fn message(server: &TernServer, id: &str) -> Value {
    let message = http::get(server.http, &format!("/api/v1/message/{id}")).json_with(200);
    check_both("Message", "Message", &message);
    message
}

/// The `Read` flag of `id` as the list shows it (reading the list changes nothing).
fn is_read(server: &TernServer, id: &str) -> bool {
    let page = list(server, "/api/v1/messages?limit=1000");
    let messages = page["messages"].as_array().expect("messages");
    let row = messages.iter().find(|m| m["ID"] == id).expect("the message is listed");
    row["Read"].as_bool().expect("Read is a boolean")
}

/// Asserts a 4xx answer with Tern's JSON error body and returns the message.
fn assert_error(response: &http::Response, status: u16) -> String {
    let body = response.json_with(status);
    tern().check("Error", &body);
    body["Error"].as_str().expect("Error is a string").to_string()
}

/// `{"IDs": [...]}` and friends.
fn put_read(server: &TernServer, body: Value) {
    let response = http::send_json(server.http, "PUT", "/api/v1/messages", &body);
    assert_eq!((response.status, response.text().as_str()), (200, "ok"), "PUT {body}");
    assert!(response.header("content-type").unwrap_or_default().starts_with("text/plain"));
}

// ---------------------------------------------------------------------------------------
// Listing and search

#[test]
fn messages_list_pages_newest_first_with_counts() {
    let server = TernServer::start("");
    let empty = list(&server, "/api/v1/messages");
    assert_eq!((empty["total"].clone(), empty["messages"].clone()), (json!(0), json!([])));
    let sent: Vec<String> = (1..=5)
        .map(|n| deliver_simple(&server, "bob@example.com", &format!("Message {n}"), "hello"))
        .collect();

    let page = list(&server, "/api/v1/messages");
    assert_eq!(subjects(&page), ["Message 5", "Message 4", "Message 3", "Message 2", "Message 1"]);
    assert_eq!(ids(&page["messages"]), sent.iter().rev().cloned().collect::<Vec<_>>());
    for (field, want) in
        [("total", 5), ("unread", 5), ("messages_count", 5), ("messages_unread", 5), ("start", 0)]
    {
        assert_eq!(page[field], want, "{field}");
    }

    let page = list(&server, "/api/v1/messages?start=1&limit=2");
    assert_eq!(subjects(&page), ["Message 4", "Message 3"]);
    assert_eq!((page["start"].clone(), page["total"].clone()), (json!(1), json!(5)));
    assert_eq!(page["messages_count"], 5, "counts ignore paging");

    let past_the_end = list(&server, "/api/v1/messages?start=10");
    assert_eq!(past_the_end["messages"], json!([]));
    assert_eq!(past_the_end["total"], 5);

    message(&server, &sent[0]);
    let page = list(&server, "/api/v1/messages");
    assert_eq!((page["unread"].clone(), page["messages_unread"].clone()), (json!(4), json!(4)));
    let summary = &page["messages"][4];
    assert_eq!(summary["Read"], true, "the opened message is read");
    assert_eq!(summary["From"], json!({"Name": "Sender", "Address": "sender@example.org"}));
    assert_eq!(summary["To"], json!([{"Name": "", "Address": "bob@example.com"}]));
    assert_eq!((summary["Cc"].clone(), summary["ReplyTo"].clone()), (json!([]), json!([])));
    assert_eq!(summary["Snippet"], "hello");
    // Size is the message as `/raw` serves it (Tern's Received header included), as in Mailpit.
    let id = summary["ID"].as_str().expect("ID");
    let raw = http::get(server.http, &format!("/api/v1/message/{id}/raw")).text();
    assert_eq!(summary["Size"], raw.len());
    assert!(
        raw.ends_with(
            std::str::from_utf8(&stored(&simple(
                "Sender <sender@example.org>",
                "bob@example.com",
                "Message 1",
                "hello"
            )))
            .expect("utf-8")
        )
    );
}

#[test]
fn search_finds_encoded_text_phrases_and_filters() {
    let server = TernServer::start("");
    let base64_body = "From: chef@example.org\nTo: bob@example.com\nSubject: Recipe\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nVGhlIHNlY3JldCBpbmdyZWRpZW50IGlzIHBpbmVhcHBsZS4NCg==\n";
    let pineapple = deliver(&server, "chef@example.org", &["bob@example.com"], base64_body);
    let encoded_subject = "From: travel@example.org\nTo: bob@example.com\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nCaf=C3=A9 au lait on the terrace\n";
    let cologne = deliver(&server, "travel@example.org", &["bob@example.com"], encoded_subject);
    let fox = deliver(
        &server,
        "alice@example.org",
        &["bob+news@example.com"],
        &simple("alice@example.org", "bob+news@example.com", "Story", "the quick brown fox jumps"),
    );
    let dogs = deliver(
        &server,
        "alice@example.org",
        &["carol@example.com"],
        &simple("alice@example.org", "carol@example.com", "Dogs", "brown dogs are quick"),
    );
    // From alice@, To bob@ and carol@ in its headers, but delivered to erin@ only.
    let report = deliver(&server, "alice@example.org", &["erin@example.com"], &report());

    let found = |query: &str| {
        let page = search(&server, query);
        assert_eq!(page["total"], 5, "{query}: total counts the whole mailbox");
        let mut found = ids(&page["messages"]);
        assert_eq!(page["messages_count"], found.len(), "{query}: messages_count");
        found.sort();
        found
    };
    let these = |list: &[&String]| {
        let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        list.sort();
        list
    };
    assert_eq!(found("pineapple"), [pineapple.as_str()], "a word in a base64 body");
    assert_eq!(found("PineApple"), [pineapple.as_str()], "words ignore case");
    assert_eq!(found("Köln"), [cologne.as_str()], "a word in an RFC 2047 subject");
    assert_eq!(found("subject:Grüße"), [cologne.as_str()], "subject: on the decoded subject");
    assert_eq!(found("café"), [cologne.as_str()], "a word in a quoted-printable body");
    assert_eq!(found("\"quick brown\""), [fox.as_str()], "a phrase keeps its order");
    assert_eq!(found("quick brown"), these(&[&fox, &dogs]), "words are ANDed in any order");
    assert_eq!(found("brown -fox"), [dogs.as_str()], "- negates");
    assert_eq!(found("brown !fox"), [dogs.as_str()], "! negates");
    assert_eq!(found("from:alice@example.org"), these(&[&fox, &dogs, &report]));
    assert_eq!(found("from:chef@example.org pineapple"), [pineapple.as_str()]);
    assert_eq!(found("-from:alice@example.org"), these(&[&pineapple, &cologne]));
    assert_eq!(found("to:carol@example.com"), these(&[&dogs, &report]));
    assert_eq!(found("cc:dave@example.net"), [report.as_str()]);
    assert_eq!(found("addressed:dave@example.net"), [report.as_str()]);
    assert_eq!(found("Subject:\"quarterly REPORT\""), [report.as_str()], "prefixes ignore case");
    assert_eq!(found("message-id:report-1@example.org"), [report.as_str()]);
    assert_eq!(found("header:X-Multi=second"), [report.as_str()]);
    assert_eq!(found("has:attachment"), [report.as_str()]);
    assert_eq!(found("report.pdf"), [report.as_str()], "attachment names are searchable");
    assert_eq!(found("larger:700"), [report.as_str()]);
    assert_eq!(found("smaller:700").len(), 4);
    assert_eq!(
        found("inbox:bob@example.com"),
        these(&[&pineapple, &cologne, &fox]),
        "bob+news@ is filed under bob@; headers do not file mail"
    );
    assert_eq!(found("inbox:erin@example.com"), [report.as_str()]);
    assert_eq!(found("tag:news"), [fox.as_str()], "plus-addressing tags the message");
    assert_eq!(found("nothing-matches-this"), Vec::<String>::new());
    message(&server, &report);
    assert_eq!(found("is:read"), [report.as_str()]);
    assert_eq!(found("is:unread").len(), 4);

    let page = search(&server, "brown");
    assert_eq!(page["messages_unread"], 2);
    assert_eq!(page["unread"], 4);
    assert_eq!(page["tags"], json!(["news"]));
    let paged = list(&server, &format!("/api/v1/search?query={}&start=1&limit=1", enc("brown")));
    assert_eq!(ids(&paged["messages"]), [fox.as_str()], "newest first, then paged");
    assert_eq!((paged["messages_count"].clone(), paged["start"].clone()), (json!(2), json!(1)));
}

// ---------------------------------------------------------------------------------------
// One message

#[test]
fn message_has_mailpit_fields_parts_and_the_envelope() {
    let server = TernServer::start("");
    let rcpts = ["bob@example.com", "carol@example.com", "hidden@example.com"];
    let id = deliver(&server, "bounce@example.org", &rcpts, &report());
    let m = message(&server, &id);

    assert_eq!(m["ID"], id);
    assert_eq!(m["MessageID"], "report-1@example.org");
    assert_eq!(m["From"], json!({"Name": "Alice Example", "Address": "alice@example.org"}));
    assert_eq!(
        m["To"],
        json!([{"Name": "Bob", "Address": "bob@example.com"}, {"Name": "", "Address": "carol@example.com"}])
    );
    assert_eq!(m["Cc"], json!([{"Name": "Dave", "Address": "dave@example.net"}]));
    assert_eq!(
        m["Bcc"],
        json!([{"Name": "", "Address": "hidden@example.com"}]),
        "envelope recipients no header names show as Bcc"
    );
    assert_eq!(m["ReplyTo"], json!([{"Name": "", "Address": "replies@example.org"}]));
    assert_eq!(m["ReturnPath"], "bounce@example.org");
    assert_eq!(m["Subject"], "Quarterly report");
    let date = m["Date"].as_str().expect("Date");
    assert!(
        ["2026-03-03T09:20:30.000Z", "2026-03-03T09:20:30Z", "2026-03-03T10:20:30+01:00"]
            .contains(&date),
        "Date is the Date header's instant: {date}"
    );
    assert_eq!((m["Tags"].clone(), m["Username"].clone()), (json!([]), json!("")));
    assert_eq!(m["Text"].as_str().expect("Text").trim(), "Hello Bob, the report is attached.");
    assert!(m["HTML"].as_str().expect("HTML").contains("<img src=\"cid:logo@example.org\">"));
    let raw =
        http::get(server.http, &format!("/api/v1/message/{}/raw", m["ID"].as_str().expect("ID")))
            .text();
    assert_eq!(m["Size"], raw.len(), "Size is the message as /raw serves it");
    assert!(raw.ends_with(std::str::from_utf8(&stored(&report())).expect("utf-8")));
    assert_eq!(
        m["ListUnsubscribe"],
        json!({"Header": "<mailto:unsub@example.org>, <https://example.org/unsub>",
               "Links": ["mailto:unsub@example.org", "https://example.org/unsub"],
               "Errors": "", "HeaderPost": ""})
    );

    assert_eq!(
        m["Inline"],
        json!([{"PartID": "2", "FileName": "logo.png", "ContentType": "image/png",
                "ContentID": "logo@example.org", "Size": PNG.len(),
                "Checksums": {"MD5": PNG_MD5, "SHA1": PNG_SHA1, "SHA256": PNG_SHA256}}])
    );
    let attachments = m["Attachments"].as_array().expect("Attachments");
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    assert_eq!(
        attachments[0],
        json!({"PartID": "3", "FileName": "report.pdf", "ContentType": "application/pdf",
               "ContentID": "", "Size": PDF.len(),
               "Checksums": {"MD5": PDF_MD5, "SHA1": PDF_SHA1, "SHA256": PDF_SHA256}})
    );
    assert_eq!(
        (&attachments[1]["PartID"], &attachments[1]["FileName"], &attachments[1]["ContentType"]),
        (&json!("4"), &json!("page.html"), &json!("text/html"))
    );

    let envelope = &m["Envelope"];
    assert_eq!(envelope["MailFrom"], "bounce@example.org");
    assert_eq!(envelope["Recipients"], json!(rcpts));
    assert_eq!(envelope["Helo"], "client.test");
    assert!(envelope["ClientAddress"].as_str().expect("ClientAddress").starts_with("127.0.0.1:"));
    assert_eq!((envelope["TLS"].clone(), envelope["Auth"].clone()), (Value::Null, Value::Null));
    assert!(envelope["ReceivedAt"].as_str().expect("ReceivedAt").ends_with('Z'));

    let page = list(&server, "/api/v1/messages");
    let summary = &page["messages"][0];
    assert!(summary["Attachments"].as_u64().expect("Attachments") >= 2, "{summary}");
    assert_eq!(summary["Bcc"], m["Bcc"]);
    assert!(summary["Snippet"].as_str().expect("Snippet").contains("Hello Bob"));
}

#[test]
fn envelope_keeps_the_session_and_the_mail_and_rcpt_parameters() {
    let server = TernServer::start("");
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO params.test", "250");
    client.cmd("MAIL FROM:<bounce@example.org> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=env1", "250 ");
    client.cmd(
        "RCPT TO:<bob@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.com",
        "250 ",
    );
    client.cmd("RCPT TO:<carol@example.com>", "250 ");
    client.cmd("DATA", "354 ");
    client.send(&wire(&simple("a@example.org", "bob@example.com", "Params", "x")));
    client.send(b".\r\n");
    let id = support::queue_id(&client.reply()).expect("queued");
    client.cmd("QUIT", "221");

    let envelope = &message(&server, &id)["Envelope"];
    tern().check("Envelope", envelope);
    assert_eq!(envelope["Helo"], "params.test");
    assert_eq!(
        (&envelope["Body"], &envelope["SMTPUTF8"], &envelope["Ret"], &envelope["EnvID"]),
        (&json!("8BITMIME"), &json!(true), &json!("HDRS"), &json!("env1"))
    );
    assert_eq!(envelope["TrustedClient"], true, "the catcher trusts every client");
    assert_eq!(
        envelope["RecipientDetails"],
        json!([
            {"Address": "bob@example.com", "Notify": ["SUCCESS", "FAILURE"],
             "ORCPT": "rfc822;bob@example.com", "Route": "capture"},
            {"Address": "carol@example.com", "Notify": [], "ORCPT": null, "Route": "capture"},
        ])
    );
}

#[test]
fn opening_a_message_marks_it_read_but_headers_and_raw_do_not() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Unread", "body");
    assert!(!is_read(&server, &id));
    assert_eq!(http::get(server.http, &format!("/api/v1/message/{id}/headers")).status, 200);
    assert_eq!(http::get(server.http, &format!("/api/v1/message/{id}/raw")).status, 200);
    assert!(!is_read(&server, &id), "headers and raw leave it unread");
    message(&server, &id);
    assert!(is_read(&server, &id), "GET message marks it read");
    let other = deliver_simple(&server, "bob@example.com", "Viewed", "body");
    assert_eq!(http::get(server.http, &format!("/view/{other}.txt")).status, 200);
    assert!(is_read(&server, &other), "a view marks it read");
}

#[test]
fn headers_are_canonical_lists_of_raw_values() {
    let server = TernServer::start("");
    let id = deliver(&server, "bounce@example.org", &["bob@example.com"], &report());
    let response = http::get(server.http, &format!("/api/v1/message/{id}/headers"));
    let headers = response.json_with(200);
    check_both("#/responses/MessageHeadersResponse", "MessageHeaders", &headers);
    assert_eq!(headers["X-Multi"], json!(["first", "second"]), "one entry per occurrence");
    assert_eq!(headers["X-Folded"], json!(["part one part two"]), "folded lines are unfolded");
    assert_eq!(headers["Message-Id"], json!(["<report-1@example.org>"]), "canonical names");
    assert_eq!(headers["Mime-Version"], json!(["1.0"]));
    assert_eq!(headers["Content-Type"], json!(["multipart/mixed; boundary=\"XX\""]));
    let received = headers["Received"][0].as_str().expect("Tern's Received header is listed");
    assert!(received.contains(&format!("(Tern) with ESMTP id {id}")), "{received}");
    let text = response.text();
    let names: Vec<&str> =
        headers.as_object().expect("object").keys().map(String::as_str).collect();
    let positions: Vec<usize> =
        names.iter().map(|n| text.find(&format!("\"{n}\":")).expect("key in body")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "keys are sorted: {names:?}");

    let encoded = "From: a@example.org\nTo: b@example.com\nSubject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\n\nx\n";
    let id = deliver(&server, "a@example.org", &["b@example.com"], encoded);
    let headers = http::get(server.http, &format!("/api/v1/message/{id}/headers")).json_with(200);
    assert_eq!(headers["Subject"], json!(["=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?="]), "not decoded");
}

#[test]
fn raw_is_the_received_header_and_the_exact_bytes_sent() {
    let server = TernServer::start("");
    let text = simple(
        "a@example.org",
        "b@example.com",
        "Raw",
        "line one\n.leading dot\n\n  spaced  \nend",
    );
    let id = deliver(&server, "a@example.org", &["b@example.com"], &text);
    let response = http::get(server.http, &format!("/api/v1/message/{id}/raw"));
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(response.header("content-disposition"), None);
    let sent = stored(&text);
    assert!(
        response.body.ends_with(&sent),
        "the client's bytes, dot-unstuffed, follow:\n{}",
        response.text()
    );
    let trace = String::from_utf8(response.body[..response.body.len() - sent.len()].to_vec())
        .expect("the trace header is text");
    assert!(trace.starts_with("Received: from client.test ([127.0.0.1])\r\n"), "{trace:?}");
    assert!(trace.contains(&format!("by tern.test (Tern) with ESMTP id {id}")), "{trace:?}");
    assert!(trace.contains("for <b@example.com>;") && trace.ends_with("\r\n"), "{trace:?}");

    let download = http::get(server.http, &format!("/api/v1/message/{id}/raw?dl=1"));
    assert_eq!(download.body, response.body);
    assert_eq!(
        download.header("content-disposition"),
        Some(format!("attachment; filename=\"{id}.eml\"").as_str())
    );
}

#[test]
fn parts_download_decoded_with_safe_headers() {
    let server = TernServer::start("");
    let id = deliver(&server, "a@example.org", &["bob@example.com"], &report());
    let part =
        |part_id: &str| http::get(server.http, &format!("/api/v1/message/{id}/part/{part_id}"));

    let pdf = part("3");
    assert_eq!(pdf.status, 200);
    assert_eq!(pdf.body, PDF, "decoded from base64");
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert_eq!(pdf.header("content-disposition"), Some("inline; filename=\"report.pdf\""));
    assert_eq!(pdf.header("content-security-policy"), Some("sandbox; default-src 'none'"));

    let png = part("2");
    assert_eq!((png.status, png.body.as_slice()), (200, PNG));
    assert_eq!(png.header("content-type"), Some("image/png"));

    let html = part("4");
    assert_eq!(html.status, 200);
    assert!(html.text().starts_with("<script>alert(1)</script>"), "{}", html.text());
    assert_eq!(html.header("content-type"), Some("text/html"), "declared, but downloaded");
    assert_eq!(html.header("content-disposition"), Some("attachment; filename=\"page.html\""));
    assert_eq!(html.header("x-content-type-options"), Some("nosniff"));

    assert_error(&part("9"), 404);
    assert_error(&part("1.1"), 404);
    assert!(!is_read(&server, &id), "downloading a part leaves the message unread");
}

/// An XHTML document whose script a browser would run if it rendered it as a page.
const XHTML_SCRIPT: &str = "<html xmlns=\"http://www.w3.org/1999/xhtml\"><body><script>window.ran = 1</script></body></html>";

/// A part of [`active_parts`]: its Content-Type line, file name and body.
const ACTIVE_PARTS: &[(&str, &str, &str)] = &[
    ("application/foo+xml", "a.xml", XHTML_SCRIPT),
    ("application/rss+xml", "feed.rss", XHTML_SCRIPT),
    ("application/vnd.wap.xhtml+xml", "wap.xhtml", XHTML_SCRIPT),
    (
        "image/svg+xml",
        "logo.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>window.ran = 1</script></svg>",
    ),
    ("text/html", "page.html", "<script>window.ran = 1</script>"),
    ("multipart/x-mixed-replace", "stream", "<script>window.ran = 1</script>"),
    // A browser takes the last type of a list: this one would be HTML.
    ("text/plain,text/html", "list.txt", "<script>window.ran = 1</script>"),
    ("image/png", "pixel.png", "not really a png"),
    ("application/pdf", "doc.pdf", "%PDF-1.4"),
    ("text/plain", "notes.txt", "plain notes"),
    ("text/csv", "r\u{e9}sum\u{e9} \"1\".csv", "a,b"),
];

/// A message carrying each of [`ACTIVE_PARTS`] as an inline part with a file name; PartID
/// `n + 2` is entry `n` (PartID 1 is the text body).
fn active_parts() -> String {
    let mut message = String::from(
        "From: stranger@example.org\nTo: bob@example.com\nSubject: Active content\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"ZZ\"\n\n--ZZ\nContent-Type: text/plain\n\nSee the parts.\n",
    );
    for (content_type, name, body) in ACTIVE_PARTS {
        message.push_str(&format!(
            "--ZZ\nContent-Type: {content_type}\nContent-Disposition: inline; filename*=UTF-8''{}\n\n{body}\n",
            enc(name)
        ));
    }
    message.push_str("--ZZ--\n");
    message
}

#[test]
fn only_displayable_parts_open_inline_and_every_part_is_sandboxed() {
    let server = TernServer::start("");
    let id = deliver(&server, "stranger@example.org", &["bob@example.com"], &active_parts());
    // (served Content-Type, inline?) for each entry of ACTIVE_PARTS.
    let expected = [
        ("application/foo+xml", false),
        ("application/rss+xml", false),
        ("application/vnd.wap.xhtml+xml", false),
        ("image/svg+xml", false),
        ("text/html", false),
        ("multipart/x-mixed-replace", false),
        ("application/octet-stream", false),
        ("image/png", true),
        ("application/pdf", true),
        ("text/plain; charset=utf-8", true),
        ("text/csv", false),
    ];
    for (n, ((declared, name, body), (served, inline))) in
        ACTIVE_PARTS.iter().zip(expected).enumerate()
    {
        let part = http::get(server.http, &format!("/api/v1/message/{id}/part/{}", n + 2));
        assert_eq!(part.status, 200, "{declared}: {}", part.text());
        assert_eq!(part.text(), *body, "{declared}: the bytes are served unchanged");
        assert_eq!(part.header("content-type"), Some(served), "{declared}");
        assert_eq!(
            part.header("content-security-policy"),
            Some("sandbox; default-src 'none'"),
            "{declared}"
        );
        assert_eq!(part.header("x-content-type-options"), Some("nosniff"), "{declared}");
        let disposition = part.header("content-disposition").unwrap_or_default();
        let kind = if inline { "inline;" } else { "attachment;" };
        assert!(disposition.starts_with(kind), "{declared}: {disposition}");
        if name.is_ascii() {
            assert!(disposition.ends_with(&format!("filename=\"{name}\"")), "{disposition}");
        }
    }
    let csv = http::get(server.http, &format!("/api/v1/message/{id}/part/12"));
    assert_eq!(
        csv.header("content-disposition"),
        Some(
            "attachment; filename=\"r_sum_ _1_.csv\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.csv"
        )
    );

    for path in [format!("/api/v1/message/{id}/raw"), format!("/view/{id}.txt")] {
        let response = http::get(server.http, &path);
        assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"), "{path}");
        assert_eq!(
            response.header("content-security-policy"),
            Some("sandbox; default-src 'none'"),
            "{path}"
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
}

#[test]
fn html_view_blocks_remote_content_unless_asked_and_rewrites_cid() {
    let server = TernServer::start("");
    let id = deliver(&server, "a@example.org", &["bob@example.com"], &report());
    let view = http::get(server.http, &format!("/view/{id}.html"));
    assert_eq!(view.status, 200);
    assert_eq!(view.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = view.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(csp.starts_with("sandbox allow-popups;"), "opened on its own, still sandboxed: {csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("img-src 'self' data:") && !csp.contains("img-src *"), "{csp}");
    assert!(!csp.contains("script-src"), "no scripts: {csp}");
    let body = view.text();
    assert!(body.contains(&format!("<img src=\"/api/v1/message/{id}/part/2\">")), "{body}");
    assert!(!body.contains("cid:"), "{body}");
    assert!(
        body.contains("https://tracker.example/pixel.png"),
        "the remote URL stays; the CSP blocks it"
    );

    let remote = http::get(server.http, &format!("/view/{id}.html?remote=1"));
    let csp = remote.header("content-security-policy").expect("a Content-Security-Policy");
    assert!(csp.contains("img-src *"), "remote=1 allows remote images: {csp}");
    assert!(csp.contains("default-src 'none'"), "still no scripts: {csp}");
    assert!(csp.starts_with("sandbox allow-popups;"), "{csp}");

    let txt = http::get(server.http, &format!("/view/{id}.txt"));
    assert_eq!(txt.status, 200);
    assert_eq!(txt.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(txt.text().trim(), "Hello Bob, the report is attached.");

    let plain = deliver_simple(&server, "bob@example.com", "No HTML", "just text");
    let error = assert_error(&http::get(server.http, &format!("/view/{plain}.html")), 404);
    assert_eq!(error, "This message does not contain a HTML part");
    assert_eq!(http::get(server.http, &format!("/view/{plain}.txt")).text().trim(), "just text");
}

#[test]
fn latest_is_the_newest_message_or_the_newest_match() {
    let server = TernServer::start("");
    let error = assert_error(&http::get(server.http, "/api/v1/message/latest"), 404);
    assert_eq!(error, "Message not found");
    let first = deliver_simple(&server, "bob@example.com", "First one", "alpha");
    let second = deliver_simple(&server, "bob@example.com", "Second one", "beta");

    assert_eq!(message(&server, "latest")["ID"], second);
    let matching =
        http::get(server.http, &format!("/api/v1/message/latest?query={}", enc("subject:first")));
    let matching = matching.json_with(200);
    check_both("Message", "Message", &matching);
    assert_eq!(matching["ID"], first);
    let none =
        http::get(server.http, &format!("/api/v1/message/latest?query={}", enc("subject:third")));
    assert_eq!(assert_error(&none, 404), "Message not found");

    let raw = http::get(server.http, "/api/v1/message/latest/raw");
    assert!(raw.text().ends_with("beta\r\n"), "{}", raw.text());
    let headers =
        http::get(server.http, &format!("/api/v1/message/latest/headers?query={}", enc("alpha")));
    assert_eq!(headers.json_with(200)["Subject"], json!(["First one"]));
    assert_eq!(http::get(server.http, "/view/latest.txt").text().trim(), "beta");
    let links = http::get(server.http, "/api/v1/message/latest/links").json_with(200);
    assert_eq!(links["ID"], second);
}

// ---------------------------------------------------------------------------------------
// Read flags and deletion

#[test]
fn read_flags_change_by_ids_by_search_and_for_all() {
    let server = TernServer::start("");
    let a = deliver_simple(&server, "bob@example.com", "Alpha", "one");
    let b = deliver_simple(&server, "bob@example.com", "Beta", "two");
    let c = deliver_simple(&server, "bob@example.com", "Gamma", "three");
    let unread = || list(&server, "/api/v1/messages")["unread"].as_u64().expect("unread");

    put_read(&server, json!({"IDs": [a], "Read": true}));
    assert!(is_read(&server, &a) && !is_read(&server, &b));
    put_read(&server, json!({"IDs": ["01ZZZZZZZZZZZZZZZZZZZZZZZZ", "not-an-id"], "Read": true}));
    assert_eq!(unread(), 2, "unknown ids are ignored");
    put_read(&server, json!({"Read": true}));
    assert_eq!(unread(), 0, "no IDs and no Search: every message");
    put_read(&server, json!({"IDs": [b]}));
    assert!(!is_read(&server, &b), "Read defaults to false");
    put_read(&server, json!({}));
    assert_eq!(unread(), 3);
    put_read(&server, json!({"Search": "subject:gamma", "Read": true}));
    assert!(is_read(&server, &c) && !is_read(&server, &a) && !is_read(&server, &b));
    assert_eq!(search(&server, "is:read")["messages_count"], 1);
    assert_eq!(search(&server, "is:unread")["messages_count"], 2);

    let both = http::send_json(
        server.http,
        "PUT",
        "/api/v1/messages",
        &json!({"IDs": [a], "Search": "x", "Read": true}),
    );
    assert_error(&both, 400);
}

#[test]
fn delete_by_ids_by_search_and_everything() {
    let server = TernServer::start("");
    let a = deliver_simple(&server, "bob@example.com", "Keep me", "one");
    let b = deliver_simple(&server, "bob@example.com", "Drop me", "two");
    let c = deliver_simple(&server, "bob@example.com", "Search me", "three");
    let d = deliver_simple(&server, "bob@example.com", "Search me too", "four");
    let remaining = || ids(&list(&server, "/api/v1/messages")["messages"]);

    let response = http::send_json(
        server.http,
        "DELETE",
        "/api/v1/messages",
        &json!({"IDs": [b, "01ZZZZZZZZZZZZZZZZZZZZZZZZ"]}),
    );
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    assert_eq!(remaining(), [d.clone(), c.clone(), a.clone()]);
    assert_error(&http::get(server.http, &format!("/api/v1/message/{b}")), 404);

    let response =
        http::delete(server.http, &format!("/api/v1/search?query={}", enc("subject:search")));
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    assert_eq!(remaining(), [a.as_str()]);
    let none =
        http::delete(server.http, &format!("/api/v1/search?query={}", enc("nothing-matches")));
    assert_eq!((none.status, none.text().as_str()), (200, "ok"), "no match is fine");

    let response = http::delete(server.http, "/api/v1/messages");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    assert_eq!(remaining(), Vec::<String>::new(), "no body deletes everything");
    deliver_simple(&server, "bob@example.com", "Again", "x");
    let response = http::send_json(server.http, "DELETE", "/api/v1/messages", &json!({"IDs": []}));
    assert_eq!(response.status, 200);
    assert_eq!(list(&server, "/api/v1/messages")["total"], 0, "empty IDs deletes everything");
}

// ---------------------------------------------------------------------------------------
// The send API

#[test]
fn send_api_stores_a_message_like_smtp_does() {
    let server = TernServer::start("");
    let request = json!({
        "From": {"Email": "app@example.org", "Name": "App Sender"},
        "To": [{"Email": "user@example.com", "Name": "User One"}],
        "Cc": [{"Email": "cc@example.com"}],
        "Bcc": ["secret@example.com"],
        "ReplyTo": [{"Email": "help@example.org", "Name": "Help"}],
        "Subject": "Welcome aboard",
        "Text": "Your verification code is 123456",
        "HTML": "<p>Welcome <img src=\"cid:logo\"></p>",
        "Attachments": [
            {"Content": PDF_BASE64, "Filename": "terms.pdf", "ContentType": "application/pdf"},
            {"Content": format!("data:image/png;base64,{PNG_BASE64}"), "Filename": "logo.png",
             "ContentType": "image/png", "ContentID": "logo"}
        ],
        "Tags": ["signup", "Test"],
        "Headers": {"X-Campaign": "spring"}
    });
    let response = http::send_json(server.http, "POST", "/api/v1/send", &request).json_with(200);
    check_both("#/responses/SendMessageResponse", "SendResponse", &response);
    let id = response["ID"].as_str().expect("ID").to_string();

    let m = message(&server, &id);
    assert_eq!(m["Subject"], "Welcome aboard");
    assert_eq!(m["From"], json!({"Name": "App Sender", "Address": "app@example.org"}));
    assert_eq!(m["To"], json!([{"Name": "User One", "Address": "user@example.com"}]));
    assert_eq!(m["Cc"], json!([{"Name": "", "Address": "cc@example.com"}]));
    assert_eq!(m["Bcc"], json!([{"Name": "", "Address": "secret@example.com"}]));
    assert_eq!(m["ReplyTo"], json!([{"Name": "Help", "Address": "help@example.org"}]));
    assert_eq!(m["ReturnPath"], "app@example.org");
    let mut tags: Vec<String> = serde_json::from_value(m["Tags"].clone()).expect("Tags");
    tags.sort_by_key(|t| t.to_lowercase());
    assert_eq!(tags, ["signup", "Test"]);
    assert_eq!(m["Text"].as_str().expect("Text").trim(), "Your verification code is 123456");
    assert!(m["HTML"].as_str().expect("HTML").contains("<img src=\"cid:logo\">"));
    let attachments = m["Attachments"].as_array().expect("Attachments");
    let pdf = attachments.iter().find(|a| a["FileName"] == "terms.pdf").expect("terms.pdf");
    assert_eq!(pdf["Checksums"], json!({"MD5": PDF_MD5, "SHA1": PDF_SHA1, "SHA256": PDF_SHA256}));
    assert_eq!(pdf["ContentType"], "application/pdf");
    let inline = m["Inline"].as_array().expect("Inline");
    assert_eq!(inline.len(), 1, "{inline:?}");
    assert_eq!((&inline[0]["ContentID"], &inline[0]["Size"]), (&json!("logo"), &json!(PNG.len())));
    assert_eq!(inline[0]["Checksums"]["SHA256"], PNG_SHA256, "data: prefix tolerated");
    let envelope = &m["Envelope"];
    assert_eq!(envelope["MailFrom"], "app@example.org");
    assert_eq!(
        envelope["Recipients"],
        json!(["user@example.com", "cc@example.com", "secret@example.com"])
    );
    assert_eq!(envelope["Helo"], "api");

    let part = http::get(
        server.http,
        &format!("/api/v1/message/{id}/part/{}", pdf["PartID"].as_str().expect("PartID")),
    );
    assert_eq!(part.body, PDF);
    let headers = http::get(server.http, &format!("/api/v1/message/{id}/headers")).json_with(200);
    assert_eq!(headers["X-Campaign"], json!(["spring"]));
    assert!(headers.get("Bcc").is_none(), "Bcc is never written as a header");
    let raw = http::get(server.http, &format!("/api/v1/message/{id}/raw")).text();
    assert!(raw.starts_with("Received: from api ([127.0.0.1])"), "{raw}");
    let view = http::get(server.http, &format!("/view/{id}.html")).text();
    let logo = inline[0]["PartID"].as_str().expect("PartID");
    assert!(view.contains(&format!("/api/v1/message/{id}/part/{logo}")), "{view}");

    let page = list(&server, "/api/v1/messages");
    assert_eq!(ids(&page["messages"]), [id.as_str()]);
    assert_eq!(search(&server, "tag:signup")["messages_count"], 1);
    let codes = http::get(server.http, &format!("/api/v1/message/{id}/codes")).json_with(200);
    assert_eq!(codes["Codes"][0]["Code"], "123456");
}

#[test]
fn send_api_refuses_invalid_requests_with_json_errors() {
    let server = TernServer::start("");
    let valid = json!({"From": {"Email": "a@example.org"}, "To": [{"Email": "b@example.com"}], "Subject": "s"});
    let with = |patch: Value| {
        let mut body = valid.clone();
        for (key, value) in patch.as_object().expect("patch object") {
            body[key] = value.clone();
        }
        serde_json::to_vec(&body).expect("serialise")
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{\"From\": ".to_vec(), "JSON"),
        ("an empty body", Vec::new(), "JSON"),
        ("a wrong type", with(json!({"To": "b@example.com"})), "JSON"),
        ("no From", with(json!({"From": {"Email": ""}})), "from not set"),
        ("no Subject", with(json!({"Subject": ""})), "subject not set"),
        ("no recipients", with(json!({"To": []})), "no recipients"),
        ("a bad To", with(json!({"To": [{"Email": "not an address"}]})), "invalid To address"),
        ("a bad Cc", with(json!({"Cc": [{"Email": "nobody"}]})), "invalid Cc address"),
        ("a bad Bcc", with(json!({"Bcc": ["@example.com"]})), "invalid Bcc address"),
        ("a bad Reply-To", with(json!({"ReplyTo": [{"Email": "x"}]})), "invalid Reply-To address"),
        (
            "a reserved header",
            with(json!({"Headers": {"Subject": "x"}})),
            "cannot overwrite header",
        ),
        (
            "X-Tags beside Tags",
            with(json!({"Tags": ["t"], "Headers": {"x-tags": "u"}})),
            "cannot overwrite header",
        ),
        (
            "a header with CRLF",
            with(json!({"Headers": {"X-Evil": "a\r\nBcc: x@y.example"}})),
            "line breaks",
        ),
        (
            "bad base64",
            with(json!({"Attachments": [{"Content": "!!!", "Filename": "f.bin"}]})),
            "error decoding base64",
        ),
    ];
    for (what, body, want) in cases {
        let response = http::send_bytes(server.http, "POST", "/api/v1/send", &body);
        assert_eq!(response.status, 400, "{what}: {}", response.text());
        let error = response.json();
        check_both("#/responses/JSONErrorResponse", "Error", &error);
        let text = error["Error"].as_str().expect("Error");
        assert!(text.contains(want), "{what}: {text:?} should mention {want:?}");
    }
    assert_eq!(list(&server, "/api/v1/messages")["total"], 0, "nothing was stored");
}

// ---------------------------------------------------------------------------------------
// Application endpoints

#[test]
fn info_and_webui_describe_the_server() {
    let server = TernServer::start("");
    let tagged = simple("a@example.org", "b@example.com", "Tagged", "x")
        .replace("Subject:", "X-Tags: alpha, beta\nSubject:");
    deliver(&server, "a@example.org", &["b@example.com"], &tagged);
    let read = deliver_simple(&server, "b@example.com", "Plain", "y");
    message(&server, &read);

    let info = http::get(server.http, "/api/v1/info").json_with(200);
    check_both("AppInformation", "AppInformation", &info);
    assert_eq!((info["Messages"].clone(), info["Unread"].clone()), (json!(2), json!(1)));
    assert_eq!(info["Tags"], json!({"alpha": 1, "beta": 1}));
    assert_eq!(info["Version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["LatestVersion"], "disabled");
    assert!(info["Database"].as_str().expect("Database").ends_with("tern.db"));
    assert!(info["DatabaseSize"].as_u64().expect("DatabaseSize") > 0);
    assert_eq!(info["RuntimeStats"]["SMTPAccepted"], 2);

    let webui = http::get(server.http, "/api/v1/webui").json_with(200);
    check_both("WebUIConfiguration", "WebUIConfiguration", &webui);
    assert_eq!(webui["MessageRelay"]["Enabled"], false);
    assert_eq!(webui["HideDeleteAllButton"], false);
}

#[test]
fn tags_are_listed_set_renamed_and_deleted_as_in_mailpit() {
    let server = TernServer::start("");
    let tagged = simple("a@example.org", "b@example.com", "Tagged", "x")
        .replace("Subject:", "X-Tags: alpha\nSubject:");
    let a = deliver(&server, "a@example.org", &["b@example.com"], &tagged);
    let b = deliver_simple(&server, "b@example.com", "Plain", "y");
    let tags = || http::get(server.http, "/api/v1/tags").json_with(200);
    assert_eq!(tags(), json!(["alpha"]));

    let put = |path: &str, body: Value| http::send_json(server.http, "PUT", path, &body);
    let set = put("/api/v1/tags", json!({"IDs": [a, b], "Tags": ["signup", " Tag 2 ", "signup"]}));
    assert_eq!((set.status, set.text()), (200, "ok".to_string()));
    assert_eq!(tags(), json!(["Tag 2", "signup"]), "replaced, trimmed, once each");
    assert_eq!(message(&server, &a)["Tags"], json!(["Tag 2", "signup"]));
    assert_eq!(search(&server, "tag:signup")["messages_count"], json!(2));

    let renamed = put("/api/v1/tags/signup", json!({"Name": "welcome"}));
    assert_eq!((renamed.status, renamed.text()), (200, "ok".to_string()));
    assert_eq!(tags(), json!(["Tag 2", "welcome"]));
    assert_eq!(search(&server, "tag:welcome")["messages_count"], json!(2));
    assert_eq!(search(&server, "tag:signup")["messages_count"], json!(0));

    let deleted = http::delete(server.http, "/api/v1/tags/Tag%202");
    assert_eq!((deleted.status, deleted.text()), (200, "ok".to_string()));
    assert_eq!(tags(), json!(["welcome"]));
    assert_eq!(list(&server, "/api/v1/messages")["total"], json!(2), "the messages stay");

    let cleared = put("/api/v1/tags", json!({"IDs": [b], "Tags": []}));
    assert_eq!(cleared.status, 200);
    assert_eq!(message(&server, &b)["Tags"], json!([]));
    assert_eq!(message(&server, &a)["Tags"], json!(["welcome"]));

    for (path, body, wanted) in [
        ("/api/v1/tags", json!({"IDs": [a]}), "Tags is required"),
        ("/api/v1/tags", json!({"Tags": ["x"]}), "IDs is required"),
        ("/api/v1/tags", json!({"IDs": [a], "Tags": ["a,b"]}), "comma"),
        ("/api/v1/tags/welcome", json!({"Name": "  "}), "cannot be empty"),
    ] {
        let refused = put(path, body);
        assert_eq!(refused.status, 400, "{path}: {}", refused.text());
        let error = refused.json()["Error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(wanted), "{path}: {error:?} should say {wanted:?}");
    }
    assert_eq!(tags(), json!(["welcome"]), "refused requests change nothing");
}

#[test]
fn health_metrics_and_openapi_endpoints_answer() {
    let server = TernServer::start("");
    for path in ["/livez", "/readyz"] {
        let response = http::get(server.http, path);
        assert_eq!((response.status, response.body.len()), (200, 0), "{path}");
    }
    deliver_simple(&server, "b@example.com", "Counted", "x");
    let metrics = http::get(server.http, "/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.text());
    assert!(metrics.header("content-type").unwrap_or_default().starts_with("text/plain"));
    let text = metrics.text();
    assert!(text.contains("tern_messages_accepted_total"), "{text}");

    let openapi = http::get(server.http, "/api/v1/openapi.json").json_with(200);
    let file =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../http/openapi.json"))
            .expect("openapi.json");
    assert_eq!(openapi, serde_json::from_str::<Value>(&file).expect("openapi.json is JSON"));
}

// ---------------------------------------------------------------------------------------
// Extensions: inboxes, links, codes

#[test]
fn inboxes_fold_plus_addresses_and_delete_by_inbox() {
    let server = TernServer::start("");
    let news = deliver_simple(&server, "bob+news@example.com", "News", "x");
    deliver_simple(&server, "Bob@Example.com", "Direct", "y");
    deliver_simple(&server, "carol@example.com", "Carol's", "z");
    message(&server, &news);

    let inboxes = http::get(server.http, "/api/v1/inboxes").json_with(200);
    tern().check("Inboxes", &inboxes);
    let mut listed: Vec<Value> = inboxes["Inboxes"].as_array().expect("Inboxes").clone();
    listed.sort_by_key(|i| i["Address"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        listed,
        [
            json!({"Address": "bob@example.com", "Total": 2, "Unread": 1}),
            json!({"Address": "carol@example.com", "Total": 1, "Unread": 1})
        ]
    );

    let deleted =
        http::delete(server.http, "/api/v1/inboxes/bob%2Bother@example.com").json_with(200);
    tern().check("InboxDeleted", &deleted);
    assert_eq!(deleted, json!({"Inbox": "bob@example.com", "Deleted": 2}), "the address is folded");
    assert_eq!(subjects(&list(&server, "/api/v1/messages")), ["Carol's"]);
    let inboxes = http::get(server.http, "/api/v1/inboxes").json_with(200);
    assert_eq!(
        inboxes,
        json!({"Inboxes": [{"Address": "carol@example.com", "Total": 1, "Unread": 1}]})
    );
    let none = http::delete(server.http, "/api/v1/inboxes/nobody@example.com").json_with(200);
    assert_eq!(none["Deleted"], 0);
}

/// Delivers a "Sign in" message with a text and an HTML alternative.
fn deliver_sign_in(server: &TernServer, text: &str, html: &str) -> String {
    let message = format!(
        "From: login@example.org
To: bob@example.com
Subject: Sign in
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=\"AA\"

--AA
Content-Type: text/plain

{text}
--AA
Content-Type: text/html

{html}
--AA--
"
    );
    deliver(server, "login@example.org", &["bob@example.com"], &message)
}

/// The message's one code, with its context, as `/codes` finds it.
fn only_code(server: &TernServer, id: &str) -> (String, String) {
    let codes = http::get(server.http, &format!("/api/v1/message/{id}/codes")).json_with(200);
    tern().check("Codes", &codes);
    let codes = codes["Codes"].as_array().expect("Codes");
    assert_eq!(codes.len(), 1, "{codes:?}");
    (text(&codes[0], "Code").to_string(), text(&codes[0], "Context").to_string())
}

#[test]
fn links_and_codes_are_extracted_from_the_bodies() {
    let server = TernServer::start("");
    let id = deliver_sign_in(
        &server,
        "Your verification code is 482913.\nVisit https://example.com/confirm?token=abc to confirm.",
        "<p>Code: <b>482913</b> <a href=\"https://example.com/confirm?token=abc&amp;x=1\">confirm</a>
<img src=\"http://cdn.example/logo.png\"></p>",
    );
    let links = http::get(server.http, &format!("/api/v1/message/{id}/links")).json_with(200);
    tern().check("Links", &links);
    assert_eq!(links["ID"], id);
    assert_eq!(
        links["Links"],
        json!([
            "https://example.com/confirm?token=abc&x=1",
            "http://cdn.example/logo.png",
            "https://example.com/confirm?token=abc"
        ])
    );
    let (code, context) = only_code(&server, &id);
    assert_eq!(code, "482913");
    assert!(context.contains("verification code is 482913"), "{context}");
    assert!(!is_read(&server, &id), "links and codes leave the message unread");
}

#[test]
fn codes_only_in_the_html_part_are_found() {
    let server = TernServer::start("");
    let id = deliver_sign_in(
        &server,
        "Please see the HTML version of this message.",
        "<p>Your code is <b>482913</b></p>",
    );
    let (code, context) = only_code(&server, &id);
    assert_eq!(code, "482913");
    assert!(context.contains("code is 482913"), "{context}");
}

/// A web site on loopback for the link check: `/ok` answers 200, `/missing` 404, `/no-head`
/// refuses HEAD (405) but answers GET with 200. Every request line it reads is recorded; it
/// serves until the test process ends.
fn link_site() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the site");
    let address = listener.local_addr().expect("address");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The whole head is read before answering: closing with unread bytes resets the
            // connection, which could cost the client the answer.
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let line = line.trim_end().to_string();
            let mut header = String::from("-");
            while header.trim_end() != "" {
                header.clear();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    break;
                }
            }
            let status = match line.split(' ').take(2).collect::<Vec<_>>()[..] {
                ["HEAD", "/no-head"] => "405 Method Not Allowed",
                [_, "/missing"] => "404 Not Found",
                _ => "200 OK",
            };
            log.lock().unwrap().push(line);
            let answer =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (address, seen)
}

/// A message whose HTML links to `/ok`, `/missing` and `/no-head` of `site` and to `refused`.
fn linked_message(site: std::net::SocketAddr, refused: &str) -> String {
    format!(
        "From: links@example.org\nTo: bob@example.com\nSubject: Links\nMIME-Version: 1.0\n\
         Content-Type: text/html\n\n<a href=\"http://{site}/ok\">ok</a> \
         <a href=\"http://{site}/missing\">missing</a> <a href=\"http://{site}/no-head\">get</a> \
         <a href=\"{refused}\">refused</a>\n"
    )
}

/// A loopback URL where nothing listens.
fn refused_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}/gone", closed.local_addr().expect("address"))
}

/// `GET path` with curl: the status and the body.
fn curl(server: &TernServer, path: &str) -> (u16, Value) {
    let url = format!("http://{}{path}", server.http);
    let out = support::run("curl", &["-sS", "-w", "\n%{http_code}", &url], None);
    let (body, status) = out.trim_end().rsplit_once('\n').expect("status line");
    (status.parse().expect("status"), serde_json::from_str(body).expect("JSON body"))
}

#[test]
fn link_check_reports_each_links_status_when_turned_on() {
    let (site, seen) = link_site();
    let refused = refused_url();
    let server = TernServer::start(
        "[http]\nlink_check = true\nlink_check_private_addresses = true\nlink_check_timeout_secs = 5\n",
    );
    let id = deliver(
        &server,
        "links@example.org",
        &["bob@example.com"],
        &linked_message(site, &refused),
    );
    let webui = http::get(server.http, "/api/v1/webui").json_with(200);
    tern().check("WebUIConfiguration", &webui);
    assert_eq!(webui["LinkCheck"]["Enabled"], true);

    let (status, report) = curl(&server, &format!("/api/v1/message/{id}/link-check"));
    assert_eq!(status, 200, "{report}");
    check_both("LinkCheckResponse", "LinkCheckResponse", &report);
    assert_eq!(
        report,
        json!({"Errors": 2, "Links": [
            {"URL": format!("http://{site}/ok"), "StatusCode": 200, "Status": "OK"},
            {"URL": format!("http://{site}/missing"), "StatusCode": 404, "Status": "Not Found"},
            {"URL": format!("http://{site}/no-head"), "StatusCode": 200, "Status": "OK"},
            {"URL": refused, "StatusCode": 0, "Status": "connection refused"},
        ]})
    );
    let seen = seen.lock().unwrap().clone();
    for line in ["HEAD /ok HTTP/1.1", "HEAD /no-head HTTP/1.1", "GET /no-head HTTP/1.1"] {
        assert!(seen.iter().any(|s| s == line), "the site saw {seen:?}, not {line}");
    }
    assert!(!seen.iter().any(|s| s.starts_with("GET /ok")), "GET only where HEAD is refused");

    let (status, error) = curl(&server, &format!("/api/v1/message/{id}/link-check?follow=maybe"));
    assert_eq!(
        (status, error["Error"].as_str().unwrap_or_default().contains("follow")),
        (400, true)
    );
    let (status, _) = curl(&server, "/api/v1/message/latest/link-check?follow=true");
    assert_eq!(status, 200);
}

#[test]
fn link_check_is_off_by_default_and_never_requests_internal_addresses_unless_allowed() {
    let (site, seen) = link_site();
    let message = linked_message(site, &refused_url());

    let off = TernServer::start("");
    let id = deliver(&off, "links@example.org", &["bob@example.com"], &message);
    let (status, error) = curl(&off, &format!("/api/v1/message/{id}/link-check"));
    assert_eq!(status, 403, "{error}");
    tern().check("Error", &error);
    assert!(error["Error"].as_str().unwrap().contains("[http] link_check = true"), "{error}");
    assert_eq!(http::get(off.http, "/api/v1/webui").json_with(200)["LinkCheck"]["Enabled"], false);

    let guarded = TernServer::start("[http]\nlink_check = true\n");
    let id = deliver(&guarded, "links@example.org", &["bob@example.com"], &message);
    let (status, report) = curl(&guarded, &format!("/api/v1/message/{id}/link-check"));
    assert_eq!((status, report["Errors"].clone()), (200, json!(4)), "{report}");
    for link in report["Links"].as_array().unwrap() {
        assert_eq!(
            (link["StatusCode"].clone(), link["Status"].clone()),
            (json!(451), json!("Blocked private/reserved address"))
        );
    }
    assert!(seen.lock().unwrap().is_empty(), "the site was requested: {:?}", seen.lock().unwrap());
}

// ---------------------------------------------------------------------------------------
// Wait-for

/// Starts `GET path` on another thread; the answer arrives on the channel with the time it
/// was fully read.
fn spawn_get(server: &TernServer, path: String) -> mpsc::Receiver<(http::Response, Instant)> {
    let addr = server.http;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let response = http::get(addr, &path);
        let _ = tx.send((response, Instant::now()));
    });
    rx
}

fn wait_result(response: &http::Response) -> Value {
    let body = response.json_with(200);
    tern().check("WaitResult", &body);
    body
}

#[test]
fn wait_returns_at_once_when_a_match_is_already_stored() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Present", "already here");
    let started = Instant::now();
    let response = http::get(
        server.http,
        &format!("/api/v1/wait?query={}&timeout=10s", enc("subject:present")),
    );
    let elapsed = started.elapsed();
    let body = wait_result(&response);
    assert_eq!((body["count"].clone(), ids(&body["messages"])), (json!(1), vec![id]));
    assert!(elapsed < Duration::from_secs(5), "answered in {elapsed:?}");
    check_both("MessageSummary", "MessageSummary", &body["messages"][0]);
}

#[test]
fn wait_wakes_when_a_matching_message_arrives() {
    let server = TernServer::start("");
    let mut after = deliver_simple(&server, "bob@example.com", "Unrelated", "x");
    let mut delays = Vec::new();
    for round in 1..=5 {
        let pending = spawn_get(
            &server,
            format!("/api/v1/wait?query={}&after={after}&timeout=10s", enc("subject:wakeup")),
        );
        // An SMTP transaction ready to end, so only the final dot is timed.
        let mut client = Client::greeted(server.addr);
        client.cmd("EHLO client.test", "250");
        client.cmd("MAIL FROM:<sender@example.org>", "250");
        client.cmd("RCPT TO:<bob@example.com>", "250");
        client.cmd("DATA", "354");
        thread::sleep(Duration::from_millis(300));
        assert!(pending.try_recv().is_err(), "the wait holds until a match arrives");
        let dot = Instant::now();
        client.send(&wire(&simple(
            "sender@example.org",
            "bob@example.com",
            &format!("Wakeup {round}"),
            "now",
        )));
        client.send(b".\r\n");
        let reply = client.reply();
        let acked = Instant::now();
        let id = support::queue_id(&reply).expect("queued");
        let (response, answered) =
            pending.recv_timeout(Duration::from_secs(15)).expect("the wait answers");
        let body = wait_result(&response);
        assert_eq!(ids(&body["messages"]), [id.as_str()]);
        let wake_ms = if answered >= acked {
            answered.duration_since(acked).as_secs_f64() * 1000.0
        } else {
            -(acked.duration_since(answered).as_secs_f64() * 1000.0)
        };
        println!(
            "wait wake-up round {round}: 250 came {:.2} ms after the final dot; the wait answered {wake_ms:+.2} ms after the 250",
            acked.duration_since(dot).as_secs_f64() * 1000.0
        );
        delays.push(wake_ms);
        after = id;
    }
    println!("wait wake-up after the 250, ms: {delays:.2?}");
}

#[test]
fn wait_times_out_with_a_408_json_error() {
    let server = TernServer::start("");
    let started = Instant::now();
    let response = http::get(
        server.http,
        &format!("/api/v1/wait?query={}&timeout=300ms", enc("subject:never")),
    );
    let elapsed = started.elapsed();
    let error = assert_error(&response, 408);
    assert!(error.contains("timed out"), "{error}");
    assert!(elapsed >= Duration::from_millis(300), "waited the full timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "and not much more: {elapsed:?}");
}

#[test]
fn wait_with_count_holds_until_that_many_match() {
    let server = TernServer::start("");
    let pending = spawn_get(
        &server,
        format!("/api/v1/wait?query={}&count=3&timeout=20s", enc("subject:batch")),
    );
    thread::sleep(Duration::from_millis(200));
    let first = deliver_simple(&server, "bob@example.com", "Batch 1", "x");
    deliver_simple(&server, "bob@example.com", "Other", "not counted");
    let second = deliver_simple(&server, "bob@example.com", "Batch 2", "x");
    thread::sleep(Duration::from_millis(300));
    assert!(pending.try_recv().is_err(), "two of three is not enough");
    let third = deliver_simple(&server, "bob@example.com", "Batch 3", "x");
    let (response, _) = pending.recv_timeout(Duration::from_secs(15)).expect("the wait answers");
    let body = wait_result(&response);
    assert_eq!(body["count"], 3);
    assert_eq!(ids(&body["messages"]), [first, second, third], "oldest first");
}

#[test]
fn wait_after_an_id_ignores_that_message_and_older_ones() {
    let server = TernServer::start("");
    let older = deliver_simple(&server, "bob@example.com", "Signal 0", "x");
    let marker = deliver_simple(&server, "bob@example.com", "Signal 1", "x");
    let query = enc("subject:signal");
    let now =
        wait_result(&http::get(server.http, &format!("/api/v1/wait?query={query}&timeout=5s")));
    assert_eq!(ids(&now["messages"]), [older], "without after, the oldest match");

    let pending =
        spawn_get(&server, format!("/api/v1/wait?query={query}&after={marker}&timeout=10s"));
    thread::sleep(Duration::from_millis(300));
    assert!(pending.try_recv().is_err(), "nothing newer than the marker yet");
    let newer = deliver_simple(&server, "bob@example.com", "Signal 2", "x");
    let (response, _) = pending.recv_timeout(Duration::from_secs(15)).expect("the wait answers");
    assert_eq!(ids(&wait_result(&response)["messages"]), [newer]);
}

// ---------------------------------------------------------------------------------------
// Live events

#[test]
fn server_sent_events_report_new_read_and_deleted_messages() {
    let server = TernServer::start("");
    let mut events = EventStream::open(server.http, "/api/v1/events");
    assert_eq!(events.status, 200);
    let content_type =
        events.headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.clone());
    assert_eq!(content_type.as_deref(), Some("text/event-stream"));

    let id = deliver_simple(&server, "bob@example.com", "Live", "x");
    let new = events.wait_for("new", |data| data["ID"] == id);
    check_both("MessageSummary", "MessageSummary", &new);
    assert_eq!((new["Subject"].clone(), new["Read"].clone()), (json!("Live"), json!(false)));

    put_read(&server, json!({"IDs": [id], "Read": true}));
    let update = events
        .wait_for("update", |data| data["IDs"].as_array().is_some_and(|a| a.contains(&json!(id))));
    assert_eq!(update["Read"], true);

    http::send_json(server.http, "DELETE", "/api/v1/messages", &json!({"IDs": [id]}));
    events.wait_for("delete", |data| data["IDs"] == json!([id]));
}

#[test]
fn websocket_pushes_mailpit_event_frames() {
    let server = TernServer::start("");
    let mut socket = WebSocket::connect(server.http, "/api/events");
    let stats = socket.next_json();
    assert_eq!(stats["Type"], "stats", "{stats}");
    assert_eq!(
        (stats["Data"]["Total"].clone(), stats["Data"]["Unread"].clone()),
        (json!(0), json!(0))
    );
    tern().check("Event", &stats);

    let id = deliver_simple(&server, "bob@example.com", "Over the socket", "x");
    let new = loop {
        let frame = socket.next_json();
        tern().check("Event", &frame);
        if frame["Type"] == "new" {
            break frame;
        }
    };
    assert_eq!(new["Data"]["ID"], id);
    check_both("MessageSummary", "MessageSummary", &new["Data"]);

    message(&server, &id);
    let update = loop {
        let frame = socket.next_json();
        if frame["Type"] == "update" {
            break frame;
        }
    };
    assert_eq!(update["Data"], json!({"ID": id, "Read": true}));

    http::send_json(server.http, "DELETE", "/api/v1/messages", &json!({"IDs": [id]}));
    let delete = loop {
        let frame = socket.next_json();
        if frame["Type"] == "delete" {
            break frame;
        }
    };
    assert_eq!(delete["Data"], json!({"ID": id}));
}

// ---------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_parameters_bodies_and_searches_get_400_json_errors() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Target", "x");
    let cases: Vec<(&str, String, &[u8])> = vec![
        ("GET", "/api/v1/messages?limit=abc".into(), b""),
        ("GET", "/api/v1/messages?start=-1".into(), b""),
        ("GET", format!("/api/v1/search?query={}", enc("larger:lots")), b""),
        ("GET", format!("/api/v1/search?query={}", enc("before:someday")), b""),
        ("GET", "/api/v1/search?query=".into(), b""),
        ("GET", "/api/v1/search".into(), b""),
        ("GET", format!("/api/v1/search?query=x&limit={}", enc("1.5")), b""),
        ("DELETE", format!("/api/v1/search?query={}", enc("larger:lots")), b""),
        ("DELETE", "/api/v1/search".into(), b""),
        ("PUT", "/api/v1/messages".into(), b"{\"IDs\": ["),
        ("PUT", "/api/v1/messages".into(), b"{\"Read\": \"yes\"}"),
        ("PUT", "/api/v1/messages".into(), b"{\"Search\": \"larger:lots\", \"Read\": true}"),
        ("DELETE", "/api/v1/messages".into(), b"not json"),
        ("DELETE", "/api/v1/messages".into(), b"{\"IDs\": \"all\"}"),
        ("GET", "/api/v1/wait?timeout=soon".into(), b""),
        ("GET", "/api/v1/wait?timeout=2h".into(), b""),
        ("GET", "/api/v1/wait?count=0".into(), b""),
        ("GET", "/api/v1/wait?count=many".into(), b""),
        ("GET", "/api/v1/wait?after=nonsense".into(), b""),
        ("GET", format!("/api/v1/wait?query={}", enc("larger:lots")), b""),
        ("GET", format!("/api/v1/message/latest?query={}", enc("larger:lots")), b""),
    ];
    for (method, path, body) in cases {
        let response = http::send_bytes(server.http, method, &path, body);
        assert_eq!(
            response.status,
            400,
            "{method} {path} {}: {}",
            String::from_utf8_lossy(body),
            response.text()
        );
        let error = assert_error(&response, 400);
        assert!(!error.is_empty(), "{method} {path}: the error says what is wrong");
    }
    assert_eq!(list(&server, "/api/v1/messages")["total"], 1, "nothing was deleted");
    assert!(!is_read(&server, &id), "nothing was marked");
}

#[test]
fn unknown_messages_parts_and_paths_get_404_json_errors() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Exists", "x");
    let missing = tern_store::MessageId::generate().to_string();
    for path in [
        "/api/v1/message/nope".to_string(),
        format!("/api/v1/message/{missing}"),
        format!("/api/v1/message/{missing}/headers"),
        format!("/api/v1/message/{missing}/raw"),
        format!("/api/v1/message/{missing}/part/1"),
        format!("/api/v1/message/{missing}/links"),
        format!("/api/v1/message/{missing}/codes"),
        format!("/api/v1/message/{id}/part/7"),
        format!("/view/{missing}.html"),
        format!("/view/{missing}.txt"),
        format!("/view/{id}.pdf"),
        "/api/v1/no-such-endpoint".to_string(),
        "/api/v2/messages".to_string(),
    ] {
        assert_error(&http::get(server.http, &path), 404);
    }
    let error = assert_error(&http::get(server.http, "/api/v1/nothing/here"), 404);
    assert_eq!(error, "no such endpoint");
    assert_eq!(
        assert_error(&http::get(server.http, &format!("/api/v1/message/{missing}")), 404),
        "Message not found"
    );
}

// ---------------------------------------------------------------------------------------
// Known differences from Mailpit, reported and not yet fixed: each test states Mailpit's
// behaviour and is ignored until the server matches it
// (`cargo test --ignore-rust-version -- --ignored`).

#[test]
fn summary_attachment_count_leaves_out_inline_parts() {
    let server = TernServer::start("");
    deliver(&server, "a@example.org", &["bob@example.com"], &report());
    let page = list(&server, "/api/v1/messages");
    assert_eq!(
        page["messages"][0]["Attachments"], 2,
        "the PDF and the HTML file, not the inline logo"
    );
}

#[test]
fn marking_read_with_an_empty_body_is_refused() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Read me", "x");
    put_read(&server, json!({"IDs": [id], "Read": true}));
    let response = http::send_bytes(server.http, "PUT", "/api/v1/messages", b"");
    assert_error(&response, 400);
    assert!(is_read(&server, &id), "an empty body changes nothing");
}

#[test]
fn request_bodies_are_read_like_gos_decoder_reads_them() {
    let server = TernServer::start("");
    let id = deliver_simple(&server, "bob@example.com", "Case", "x");
    let response = http::send_json(
        server.http,
        "PUT",
        "/api/v1/messages",
        &json!({"ids": [id], "read": true}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(is_read(&server, &id), "lower-case keys work");
    let response = http::send_json(
        server.http,
        "PUT",
        "/api/v1/messages",
        &json!({"Read": false, "Extra": 1}),
    );
    assert_eq!(response.status, 200, "unknown fields are ignored: {}", response.text());
    let send = json!({"from": {"email": "a@example.org"}, "to": [{"email": "b@example.com"}], "subject": "lower"});
    let response = http::send_json(server.http, "POST", "/api/v1/send", &send);
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn html_view_rewrites_unquoted_and_upper_case_cid_references() {
    let server = TernServer::start("");
    let request = json!({"From": {"Email": "a@example.org"}, "To": [{"Email": "b@example.com"}],
        "Subject": "cids", "HTML": "<img src=cid:logo> <img src=\"CID:logo\">",
        "Attachments": [{"Content": PNG_BASE64, "Filename": "logo.png", "ContentType": "image/png", "ContentID": "logo"}]});
    let id = http::send_json(server.http, "POST", "/api/v1/send", &request).json_with(200)["ID"]
        .as_str()
        .expect("ID")
        .to_string();
    let view = http::get(server.http, &format!("/view/{id}.html")).text();
    assert!(!view.to_lowercase().contains("cid:"), "{view}");
}

#[test]
fn info_counts_deleted_messages_and_accepted_bytes() {
    let server = TernServer::start("");
    let message = simple("a@example.org", "b@example.com", "Counted", "x");
    deliver(&server, "a@example.org", &["b@example.com"], &message);
    http::delete(server.http, "/api/v1/messages");
    let info = http::get(server.http, "/api/v1/info").json_with(200);
    assert_eq!(info["RuntimeStats"]["MessagesDeleted"], 1);
    assert!(
        info["RuntimeStats"]["SMTPAcceptedSize"].as_u64().expect("size")
            >= stored(&message).len() as u64
    );
}
