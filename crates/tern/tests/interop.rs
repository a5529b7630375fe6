//! Interoperability: the real `tern` binary driven by SMTP clients we did not write.
//!
//! Each test starts its own server through [`support::TernServer`], lets a third-party client
//! talk to it over loopback, takes the queue id from the client's view of the `250 2.0.0 Ok:
//! queued as <ULID>` reply, and then reads the store to check what was kept: the exact bytes
//! (after dot-unstuffing), the envelope (reverse path, recipients and their DSN parameters,
//! BODY=, SMTPUTF8, RET, ENVID, HELO name, client address), the `Received:` header and counts.
//!
//! Clients covered:
//! - Python's `smtplib` (standard library): a full transaction, several messages on one
//!   connection, BODY=8BITMIME with raw 8-bit bytes, SMTPUTF8 addresses, the null reverse path,
//!   an empty body, DSN parameters and dot-stuffing of lines that begin with `.`.
//!   smtplib neither pipelines nor speaks BDAT, so those use a raw Python socket: MAIL/RCPT/DATA
//!   in one write, and BDAT chunks cut at awkward places (inside a CRLF, around `CRLF.CRLF`).
//! - `swaks`: a plain send, `--pipeline`, several recipients, raw `--no-data-fixup` data and
//!   `--quit-after RCPT`.
//! - `curl`'s SMTP upload: a CRLF file stored byte for byte, an LF-only file refused (bare LF),
//!   and the same file accepted once `--crlf` makes curl convert it.
//!
//! A missing client fails the test with a message naming it (`scripts/test` installs them all).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{TernServer, queue_id, text};
use tern_store::StoredMessage;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Every interop script talks to one server: its port comes first in `ARGS`, and `Raw()` and
/// `Recorder()` connect to it (on top of [`support::PY_PRELUDE`]).
const PY_SERVER: &str = r#"
PORT = int(ARGS[0])
ARGS = ARGS[1:]
_RawTo, _RecorderTo = Raw, Recorder

def Raw():
    return _RawTo(PORT)

class Recorder(_RecorderTo):
    def __init__(self):
        super().__init__(PORT)
"#;

/// Runs `script` against `server` with `args`, feeding `stdin`, and returns the JSON object it
/// emitted.
fn python(server: &TernServer, script: &str, args: &[&str], stdin: Option<&[u8]>) -> Value {
    let program = format!("{PY_SERVER}\n{script}");
    let port = server.addr.port().to_string();
    let mut argv = vec![port.as_str()];
    argv.extend_from_slice(args);
    support::python_input(&program, &argv, stdin)
}

/// A list-of-strings field of a JSON result.
fn texts(value: &Value, key: &str) -> Vec<String> {
    value[key]
        .as_array()
        .unwrap_or_else(|| panic!("result has no list {key:?}: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("{key:?} holds a non-string: {v}")).into())
        .collect()
}

/// The queue id in a reply the client saw, or a failure that shows the reply.
fn id_from(reply: &str) -> String {
    queue_id(reply)
        .unwrap_or_else(|| panic!("expected `250 2.0.0 Ok: queued as ID`, got {reply:?}"))
}

/// Every queue id announced in a client transcript (swaks `<-  250 …`, curl `< 250 …`).
fn ids_in_transcript(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|line| {
            let at = line.find("250 2.0.0 Ok: queued as ")?;
            queue_id(&line[at..])
        })
        .collect()
}

/// The stored message for an acknowledged id; acknowledged but absent is a failure.
fn stored(server: &TernServer, id: &str) -> StoredMessage {
    server.message(id).unwrap_or_else(|| {
        panic!("{id} was acknowledged but is not in the store; server stderr:\n{}", server.stderr())
    })
}

/// Asserts byte equality, printing both sides escaped so CR, LF and 8-bit bytes are visible.
#[track_caller]
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what} differ\n  stored:   b\"{}\"\n  expected: b\"{}\"",
        actual.escape_ascii(),
        expected.escape_ascii()
    );
}

fn recipients(message: &StoredMessage) -> Vec<&str> {
    message.envelope.recipients.iter().map(|r| r.address.as_str()).collect()
}

/// A stored ORCPT, kept with its address type as `rfc822;ADDRESS`.
fn orcpt_address(rcpt: &tern_store::Recipient) -> Option<&str> {
    rcpt.orcpt.as_deref()
}

fn received(message: &StoredMessage) -> String {
    String::from_utf8(message.received_header.clone()).expect("Received: header is UTF-8")
}

/// Runs a program that may legitimately fail; only a missing program panics.
fn run_status<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{program} is not installed or cannot run ({e}); scripts/test installs it")
    })
}

/// Lowercase hex, for handing raw bytes to a Python script on its command line.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DATA lines swaks reports sending (` -> ` lines between the 354 and the lone `.`),
/// joined with CRLF: what the server must have stored, after unstuffing.
fn swaks_data(transcript: &str) -> Vec<u8> {
    let mut lines = transcript.lines().skip_while(|line| !line.starts_with("<-  354"));
    assert!(lines.next().is_some(), "swaks transcript has no 354 reply:\n{transcript}");
    let mut data = Vec::new();
    for line in lines {
        let Some(sent) = line.strip_prefix(" -> ") else { continue };
        if sent == "." {
            return data;
        }
        let unstuffed = sent.strip_prefix('.').filter(|rest| rest.starts_with('.')).unwrap_or(sent);
        data.extend_from_slice(unstuffed.as_bytes());
        data.extend_from_slice(b"\r\n");
    }
    panic!("swaks transcript has no final `.`:\n{transcript}");
}

fn swaks(server: &TernServer, extra: &[&str]) -> String {
    let port = server.addr.port().to_string();
    let mut args = vec!["-s", "127.0.0.1", "-p", port.as_str(), "--helo", "client.example"];
    args.extend_from_slice(extra);
    support::run("swaks", &args, None)
}

// ---------------------------------------------------------------------------------------------
// Python smtplib
// ---------------------------------------------------------------------------------------------

#[test]
fn smtplib_sendmail_stores_exact_bytes_and_envelope() {
    let server = TernServer::start("");
    let message = b"From: Alice <alice@client.example>\r\nTo: Bob <bob@tern.test>\r\n\
        Subject: interop hello\r\nMessage-ID: <one@client.example>\r\n\r\n\
        Hello Bob,\r\n  indented line with trailing space \r\n\r\nBye.\r\n";
    let result = python(
        &server,
        r#"
msg = sys.stdin.buffer.read()
s = Recorder()
code, _ = s.ehlo()
features = sorted(s.esmtp_features)
refused = s.sendmail("alice@client.example", ["bob@tern.test"], msg)
queued = s.replies[-1]
s.quit()
emit(ehlo=code, features=features, refused=refused, queued=queued, quit=s.replies[-1])
"#,
        &[],
        Some(message),
    );
    assert_eq!(result["ehlo"], 250, "{result}");
    let features = texts(&result, "features");
    for extension in ["pipelining", "size", "8bitmime", "smtputf8", "chunking", "dsn"] {
        assert!(features.iter().any(|f| f == extension), "EHLO lacks {extension}: {features:?}");
    }
    assert_eq!(result["refused"], serde_json::json!({}), "smtplib saw refused recipients");
    assert!(text(&result, "quit").starts_with("221 "), "{result}");

    let id = id_from(text(&result, "queued"));
    let stored = stored(&server, &id);
    assert_bytes(&stored.raw, message, "stored bytes");
    assert_eq!(stored.id.to_string(), id);
    let env = &stored.envelope;
    assert_eq!(env.mail_from, "alice@client.example");
    assert_eq!(recipients(&stored), ["bob@tern.test"]);
    assert_eq!(env.helo, "client.example");
    assert_eq!(env.client.ip().to_string(), "127.0.0.1");
    assert_eq!(env.body, None, "smtplib sent no BODY=");
    assert!(!env.smtputf8);
    assert_eq!((env.ret.as_deref(), env.envid.as_deref()), (None, None));
    assert!(env.recipients[0].notify.is_empty() && env.recipients[0].orcpt.is_none());
    let header = received(&stored);
    assert!(header.starts_with("Received: from client.example ([127.0.0.1])\r\n"), "{header}");
    assert!(header.contains(&format!("by tern.test (Tern) with ESMTP id {id}")), "{header}");
    assert!(header.contains("for <bob@tern.test>;"), "{header}");
    assert!(header.ends_with("\r\n"), "{header:?}");
    assert_eq!(stored.summary.subject, "interop hello");
    // Size counts the message as delivered: Tern's trace header plus the client's bytes.
    assert_eq!(stored.summary.size, (stored.received_header.len() + message.len()) as u64);
    assert_eq!(server.count(), 1);
}

#[test]
fn smtplib_several_messages_on_one_connection_are_stored_separately() {
    let server = TernServer::start("");
    let result = python(
        &server,
        r#"
s = Recorder()
s.ehlo()
queued = []
for i in range(3):
    msg = ("Subject: message %d\r\n\r\nbody of message %d\r\n" % (i, i)).encode()
    rcpts = ["r%d-%d@tern.test" % (i, n) for n in range(i + 1)]
    s.sendmail("sender%d@client.example" % i, rcpts, msg)
    queued.append(s.replies[-1])
    if i == 1:
        s.rset()
s.quit()
emit(queued=queued)
"#,
        &[],
        None,
    );
    let queued = texts(&result, "queued");
    assert_eq!(queued.len(), 3, "{result}");
    let ids: Vec<String> = queued.iter().map(|reply| id_from(reply)).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "queue ids repeat: {ids:?}");
    let mut ports = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let stored = stored(&server, id);
        assert_bytes(
            &stored.raw,
            format!("Subject: message {i}\r\n\r\nbody of message {i}\r\n").as_bytes(),
            &format!("message {i}"),
        );
        assert_eq!(stored.envelope.mail_from, format!("sender{i}@client.example"));
        let expected: Vec<String> = (0..=i).map(|n| format!("r{i}-{n}@tern.test")).collect();
        assert_eq!(recipients(&stored), expected, "message {i} recipients");
        ports.push(stored.envelope.client.port());
    }
    assert!(ports.iter().all(|p| *p == ports[0]), "not one connection: client ports {ports:?}");
    assert_eq!(server.count(), 3);
}

#[test]
fn pipelined_mail_rcpt_data_in_one_write_get_one_reply_each() {
    let server = TernServer::start("");
    let result = python(
        &server,
        r#"
r = Raw()
banner = r.reply()
r.send(b"EHLO client.example\r\n")
ehlo = r.reply()
# One write: MAIL, three RCPTs (the middle one malformed) and DATA, as RFC 2920 allows.
r.send(b"MAIL FROM:<pipe@client.example>\r\nRCPT TO:<one@tern.test>\r\n"
       b"RCPT TO:<not an address>\r\nRCPT TO:<two@tern.test>\r\nDATA\r\n")
group = [r.reply() for _ in range(5)]
# The body, its end and the next transaction up to DATA, again in one write.
r.send(b"Subject: first\r\n\r\npipelined one\r\n.\r\n"
       b"RSET\r\nMAIL FROM:<pipe2@client.example>\r\nRCPT TO:<three@tern.test>\r\nDATA\r\n")
second = [r.reply() for _ in range(5)]
r.send(b"Subject: second\r\n\r\npipelined two\r\n.\r\nQUIT\r\n")
last = [r.reply() for _ in range(2)]
emit(ehlo=ehlo, group=group, second=second, last=last)
"#,
        &[],
        None,
    );
    assert!(text(&result, "ehlo").contains("PIPELINING"), "{result}");
    let group = texts(&result, "group");
    let codes: Vec<&str> = group.iter().map(|r| &r[..3]).collect();
    // The malformed recipient is refused (501 or 553 are both proper), the rest go on.
    assert_eq!(codes[..2], ["250", "250"], "replies: {group:?}");
    assert!(codes[2].starts_with('5') && group[2][4..].starts_with("5.1."), "{group:?}");
    assert_eq!(codes[3..], ["250", "354"], "replies: {group:?}");
    let second = texts(&result, "second");
    let codes: Vec<&str> = second.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "250", "354"], "replies: {second:?}");
    let last = texts(&result, "last");
    assert!(last[1].starts_with("221 "), "{last:?}");

    let first = stored(&server, &id_from(&second[0]));
    assert_bytes(&first.raw, b"Subject: first\r\n\r\npipelined one\r\n", "first message");
    assert_eq!(first.envelope.mail_from, "pipe@client.example");
    assert_eq!(recipients(&first), ["one@tern.test", "two@tern.test"]);
    assert!(!received(&first).contains("\tfor <"), "two recipients must not be named");

    let next = stored(&server, &id_from(&last[0]));
    assert_bytes(&next.raw, b"Subject: second\r\n\r\npipelined two\r\n", "second message");
    assert_eq!(next.envelope.mail_from, "pipe2@client.example");
    assert_eq!(recipients(&next), ["three@tern.test"]);
    assert_eq!(first.envelope.client, next.envelope.client, "one connection");
    assert_eq!(server.count(), 2);
}

#[test]
fn bdat_chunks_are_stored_as_their_exact_concatenation() {
    let server = TernServer::start("");
    // Chunk 1 ends inside a CRLF (its CR), chunk 2 starts with the LF and holds `CRLF.CRLF`,
    // chunk 3 ends with `CRLF.CRLF`, which in BDAT is data, and `..` is not unstuffed.
    let chunks: [&[u8]; 4] = [
        b"From: <chunky@client.example>\r\nSubject: chunked\r\n\r\nline one ends in a split\r",
        b"\nthis chunk began with the LF of a split CRLF\r\n.\r\nthat lone dot was data\r\n",
        b"..two dots stay two dots in BDAT\r\n.\r\n",
        b"after the fake end, 8-bit too: caf\xc3\xa9 \xe9\r\n",
    ];
    let chunk_args: Vec<String> = chunks.iter().map(|c| hex(c)).collect();
    let chunk_args: Vec<&str> = chunk_args.iter().map(String::as_str).collect();
    let result = python(
        &server,
        r#"
chunks = [bytes.fromhex(a) for a in ARGS]
r = Raw()
r.reply()
r.send(b"EHLO client.example\r\n")
ehlo = r.reply()

# Transaction 1: one chunk at a time, each written differently, then an empty LAST chunk.
r.send(b"MAIL FROM:<chunky@client.example>\r\n")
r.reply()
r.send(b"RCPT TO:<bdat@tern.test>\r\n")
r.reply()
step = []
for i, chunk in enumerate(chunks):
    command = b"BDAT %d\r\n" % len(chunk)
    if i % 3 == 0:
        r.send(command + chunk)
    elif i % 3 == 1:
        r.send(command)
        time.sleep(0.05)
        r.send(chunk)
    else:
        half = len(chunk) // 2
        r.send(command + chunk[:half])
        time.sleep(0.05)
        r.send(chunk[half:])
    step.append(r.reply())
r.send(b"BDAT 0 LAST\r\n")
step.append(r.reply())

# Transaction 2: the whole thing pipelined in a single write, LAST on the final data chunk.
blob = b"MAIL FROM:<all-at-once@client.example>\r\nRCPT TO:<bdat2@tern.test>\r\n"
for chunk in chunks[:-1]:
    blob += b"BDAT %d\r\n" % len(chunk) + chunk
blob += b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1] + b"QUIT\r\n"
r.send(blob)
piped = [r.reply() for _ in range(2 + len(chunks) + 1)]
emit(ehlo=ehlo, step=step, piped=piped)
"#,
        &chunk_args,
        None,
    );
    assert!(text(&result, "ehlo").contains("CHUNKING"), "{result}");
    let expected = chunks.concat();

    let step = texts(&result, "step");
    for (reply, chunk) in step.iter().zip(chunks) {
        assert_eq!(reply, &format!("250 2.0.0 Ok: {} octets received", chunk.len()));
    }
    let one = stored(&server, &id_from(&step[chunks.len()]));
    assert_bytes(&one.raw, &expected, "chunk-by-chunk BDAT message");
    assert_eq!(one.envelope.mail_from, "chunky@client.example");
    assert_eq!(recipients(&one), ["bdat@tern.test"]);

    let piped = texts(&result, "piped");
    let codes: Vec<&str> = piped.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "250", "250", "250", "250", "221"], "replies: {piped:?}");
    let two = stored(&server, &id_from(&piped[5]));
    assert_bytes(&two.raw, &expected, "pipelined BDAT message");
    assert_eq!(two.envelope.mail_from, "all-at-once@client.example");
    assert_eq!(recipients(&two), ["bdat2@tern.test"]);
    assert_eq!(server.count(), 2);
}

#[test]
fn smtplib_body_8bitmime_keeps_raw_8bit_bytes() {
    let server = TernServer::start("");
    let mut message = b"From: <eight@client.example>\r\nSubject: 8-bit\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
        latin-1 e-acute: \xe9\r\nUTF-8: caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n"
        .to_vec();
    message.extend((0x80..=0xffu8).collect::<Vec<u8>>());
    message.extend_from_slice(b"\r\n");
    let result = python(
        &server,
        r#"
msg = sys.stdin.buffer.read()
s = Recorder()
s.sendmail("eight@client.example", ["bit@tern.test"], msg, mail_options=["BODY=8BITMIME"])
queued = s.replies[-1]
s.quit()
emit(queued=queued)
"#,
        &[],
        Some(&message),
    );
    let stored = stored(&server, &id_from(text(&result, "queued")));
    assert_bytes(&stored.raw, &message, "8-bit body");
    assert_eq!(stored.envelope.body.as_deref(), Some("8BITMIME"));
    assert!(!stored.envelope.smtputf8);
}

#[test]
fn smtplib_smtputf8_addresses_are_stored_as_given() {
    let server = TernServer::start("");
    let from = "δοκιμή@παράδειγμα.δοκιμή";
    let to = ["用户@例子.广告", "ascii@tern.test", "Ünïcödé@tern.test"];
    let message = format!(
        "From: {from}\r\nTo: {}\r\nSubject: Καλημέρα κόσμε\r\n\r\nUTF-8 headers and addresses.\r\n",
        to[0]
    );
    let result = python(
        &server,
        r#"
msg = sys.stdin.buffer.read()
s = Recorder()
s.sendmail(ARGS[0], ARGS[1:], msg, mail_options=["SMTPUTF8"])
queued = s.replies[-1]
s.quit()
emit(queued=queued)
"#,
        &[from, to[0], to[1], to[2]],
        Some(message.as_bytes()),
    );
    let id = id_from(text(&result, "queued"));
    let stored = stored(&server, &id);
    assert_bytes(&stored.raw, message.as_bytes(), "SMTPUTF8 message");
    assert_eq!(stored.envelope.mail_from, from);
    assert_eq!(recipients(&stored), to);
    assert!(stored.envelope.smtputf8, "SMTPUTF8 not recorded");
    let header = received(&stored);
    assert!(header.contains(&format!("with UTF8SMTP id {id}")), "{header}");
    assert_eq!(stored.summary.subject, "Καλημέρα κόσμε");
}

#[test]
fn smtplib_null_reverse_path_is_stored_empty() {
    let server = TernServer::start("");
    let message = b"From: MAILER-DAEMON@client.example\r\nSubject: bounce\r\n\r\nundeliverable\r\n";
    let result = python(
        &server,
        r#"
msg = sys.stdin.buffer.read()
s = Recorder()
s.sendmail("", ["postmaster@tern.test"], msg)
queued = s.replies[-1]
s.quit()
emit(queued=queued)
"#,
        &[],
        Some(message),
    );
    let stored = stored(&server, &id_from(text(&result, "queued")));
    assert_eq!(stored.envelope.mail_from, "", "the null sender <> must be kept as empty");
    assert_eq!(recipients(&stored), ["postmaster@tern.test"]);
    assert_bytes(&stored.raw, message, "bounce body");
}

#[test]
fn smtplib_empty_body_is_stored_as_zero_bytes() {
    let server = TernServer::start("");
    // sendmail() would add a CRLF to an empty message, so DATA and the lone dot go by hand.
    let result = python(
        &server,
        r#"
s = Recorder()
s.ehlo()
s.mail("empty@client.example")
s.rcpt("void@tern.test")
s.putcmd("DATA")
go_ahead = s.getreply()
s.send(b".\r\n")
s.getreply()
queued = s.replies[-1]
s.quit()
emit(go_ahead=go_ahead[0], queued=queued)
"#,
        &[],
        None,
    );
    assert_eq!(result["go_ahead"], 354, "{result}");
    let stored = stored(&server, &id_from(text(&result, "queued")));
    assert_bytes(&stored.raw, b"", "empty body");
    assert_eq!(stored.summary.size, stored.received_header.len() as u64);
    assert_eq!(stored.envelope.mail_from, "empty@client.example");
    assert_eq!(recipients(&stored), ["void@tern.test"]);
}

#[test]
fn smtplib_dsn_parameters_are_stored_in_the_envelope() {
    let server = TernServer::start("");
    let result = python(
        &server,
        r#"
msg = b"Subject: dsn\r\n\r\nplease tell me\r\n"
s = Recorder()
s.sendmail("dsn@client.example", ["n1@tern.test", "n2@tern.test"], msg,
           mail_options=["RET=HDRS", "ENVID=abc123"],
           rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@y.example"])
first = s.replies[-1]
# Per-recipient parameters and xtext (RFC 3461: "+2B" is "+", "+3D" is "=").
s.mail("dsn2@client.example", ["RET=FULL", "ENVID=id+2Bwith+3Dxtext"])
s.rcpt("never@tern.test", ["NOTIFY=NEVER"])
s.rcpt("delay@tern.test", ["NOTIFY=DELAY", "ORCPT=rfc822;a+2Bb@y.example"])
s.rcpt("plain@tern.test")
s.data(msg)
second = s.replies[-1]
s.quit()
emit(first=first, second=second)
"#,
        &[],
        None,
    );
    let first = stored(&server, &id_from(text(&result, "first")));
    let env = &first.envelope;
    assert_eq!(env.ret.as_deref(), Some("HDRS"));
    assert_eq!(env.envid.as_deref(), Some("abc123"));
    assert_eq!(recipients(&first), ["n1@tern.test", "n2@tern.test"]);
    for rcpt in &env.recipients {
        assert_eq!(rcpt.notify, ["SUCCESS", "FAILURE"], "{}", rcpt.address);
        assert_eq!(orcpt_address(rcpt), Some("rfc822;x@y.example"), "{}", rcpt.address);
    }

    let second = stored(&server, &id_from(text(&result, "second")));
    let env = &second.envelope;
    assert_eq!(env.ret.as_deref(), Some("FULL"));
    assert_eq!(env.envid.as_deref(), Some("id+with=xtext"), "ENVID must be xtext-decoded");
    assert_eq!(recipients(&second), ["never@tern.test", "delay@tern.test", "plain@tern.test"]);
    let [never, delay, plain] = &env.recipients[..] else { panic!("three recipients") };
    assert_eq!(
        (never.notify.as_slice(), never.orcpt.as_deref()),
        (&["NEVER".to_string()][..], None)
    );
    assert_eq!(delay.notify, ["DELAY"]);
    assert_eq!(orcpt_address(delay), Some("rfc822;a+b@y.example"), "ORCPT must be xtext-decoded");
    assert!(plain.notify.is_empty() && plain.orcpt.is_none(), "{plain:?}");
}

#[test]
fn smtplib_dot_stuffed_lines_round_trip_exactly() {
    let server = TernServer::start("");
    let message = b"Subject: dots\r\n\r\n.hidden line\r\n..two dots\r\n.\r\n...\r\n\
        a line with . inside\r\n. space after dot\r\n.\r\n.last line starts with a dot\r\n";
    let result = python(
        &server,
        r#"
msg = sys.stdin.buffer.read()
s = Recorder()
s.sendmail("dots@client.example", ["dots@tern.test"], msg)
queued = s.replies[-1]
s.quit()
emit(queued=queued)
"#,
        &[],
        Some(message),
    );
    let stored = stored(&server, &id_from(text(&result, "queued")));
    assert_bytes(&stored.raw, message, "dot-stuffed message after unstuffing");
}

// ---------------------------------------------------------------------------------------------
// swaks
// ---------------------------------------------------------------------------------------------

#[test]
fn swaks_plain_send_is_stored_as_swaks_sent_it() {
    let server = TernServer::start("");
    let transcript = swaks(
        &server,
        &["-f", "swaks@client.example", "-t", "dest@tern.test", "--header", "Subject: from swaks"],
    );
    let ids = ids_in_transcript(&transcript);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{transcript}");
    let stored = stored(&server, &ids[0]);
    assert_bytes(&stored.raw, &swaks_data(&transcript), "swaks DATA");
    assert_eq!(stored.envelope.mail_from, "swaks@client.example");
    assert_eq!(recipients(&stored), ["dest@tern.test"]);
    assert_eq!(stored.envelope.helo, "client.example");
    assert_eq!(stored.summary.subject, "from swaks");
    assert_eq!(server.count(), 1);
}

#[test]
fn swaks_pipeline_sends_the_envelope_in_one_group() {
    let server = TernServer::start("");
    let transcript = swaks(
        &server,
        &["--pipeline", "-f", "piper@client.example", "-t", "p1@tern.test,p2@tern.test"],
    );
    // With --pipeline swaks writes MAIL, RCPT, RCPT and DATA before reading any reply.
    let sent_before_replies = transcript
        .lines()
        .skip_while(|line| !line.starts_with(" -> MAIL FROM"))
        .take_while(|line| line.starts_with(" -> "))
        .count();
    assert_eq!(sent_before_replies, 4, "swaks did not pipeline:\n{transcript}");
    let ids = ids_in_transcript(&transcript);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{transcript}");
    let stored = stored(&server, &ids[0]);
    assert_bytes(&stored.raw, &swaks_data(&transcript), "swaks DATA");
    assert_eq!(stored.envelope.mail_from, "piper@client.example");
    assert_eq!(recipients(&stored), ["p1@tern.test", "p2@tern.test"]);
}

#[test]
fn swaks_several_recipients_are_kept_in_order_and_case() {
    let server = TernServer::start("");
    let to = ["first@tern.test", "Second.Mixed@Tern.Test", "third@elsewhere.example"];
    let transcript = swaks(&server, &["-f", "Many@Client.Example", "-t", &to.join(",")]);
    let ids = ids_in_transcript(&transcript);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{transcript}");
    let stored = stored(&server, &ids[0]);
    assert_eq!(stored.envelope.mail_from, "Many@Client.Example");
    assert_eq!(recipients(&stored), to);
    assert!(!received(&stored).contains("\tfor <"), "several recipients must not be named");
    assert_eq!(server.count(), 1);
}

#[test]
fn swaks_raw_data_without_fixup_is_stored_byte_exact() {
    let server = TernServer::start("");
    // Sent verbatim (swaks neither stuffs nor terminates with --no-data-fixup): stuffed dots,
    // trailing blanks, a tab continuation, UTF-8, empty lines before the end.
    let wire = "From: raw@client.example\r\nSubject: raw\r\n\tfolded\r\n\r\n\
        ..leading dot, stuffed\r\n...two leading dots, stuffed\r\ntrailing blanks   \r\n\
        UTF-8 \u{e9}\u{fc}\u{65e5}\u{672c}\r\n\r\n\r\n.\r\n";
    let expected = "From: raw@client.example\r\nSubject: raw\r\n\tfolded\r\n\r\n\
        .leading dot, stuffed\r\n..two leading dots, stuffed\r\ntrailing blanks   \r\n\
        UTF-8 \u{e9}\u{fc}\u{65e5}\u{672c}\r\n\r\n\r\n";
    let transcript = swaks(
        &server,
        &["-f", "raw@client.example", "-t", "raw@tern.test", "--no-data-fixup", "--data", wire],
    );
    let ids = ids_in_transcript(&transcript);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{transcript}");
    let stored = stored(&server, &ids[0]);
    assert_bytes(&stored.raw, expected.as_bytes(), "raw swaks data");
}

#[test]
fn swaks_quit_after_rcpt_leaves_nothing_stored() {
    let server = TernServer::start("");
    let transcript = swaks(
        &server,
        &["-f", "quitter@client.example", "-t", "ghost@tern.test", "--quit-after", "RCPT"],
    );
    assert!(transcript.contains(" -> RCPT TO:<ghost@tern.test>"), "{transcript}");
    assert!(transcript.contains("<-  221 "), "no QUIT reply:\n{transcript}");
    assert!(!transcript.contains(" -> DATA"), "{transcript}");
    assert_eq!(server.count(), 0, "an abandoned transaction was stored");

    // The server still works, and the abandoned recipient does not leak into the next message.
    let transcript = swaks(&server, &["-f", "after@client.example", "-t", "real@tern.test"]);
    let ids = ids_in_transcript(&transcript);
    assert_eq!(ids.len(), 1, "{transcript}");
    assert_eq!(recipients(&stored(&server, &ids[0])), ["real@tern.test"]);
    assert_eq!(server.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------------

fn curl_upload(server: &TernServer, file: &std::path::Path, extra: &[&str]) -> Output {
    let url = format!("smtp://127.0.0.1:{}/client.example", server.addr.port());
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("-v"),
        OsStr::new("-sS"),
        OsStr::new(&url),
        OsStr::new("--mail-from"),
        OsStr::new("curl@client.example"),
        OsStr::new("--mail-rcpt"),
        OsStr::new("c1@tern.test"),
        OsStr::new("--mail-rcpt"),
        OsStr::new("c2@tern.test"),
        OsStr::new("--upload-file"),
        file.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    run_status("curl", &args)
}

fn transcript(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn curl_upload_of_a_crlf_file_is_stored_byte_exact() {
    let server = TernServer::start("");
    let file = server.data.join("crlf.eml");
    let message = b"From: curl@client.example\r\nSubject: curl upload\r\n\r\n\
        .a line curl must dot-stuff\r\n.\r\n8-bit: caf\xc3\xa9\r\nlast line\r\n";
    std::fs::write(&file, message).expect("write message file");
    let output = curl_upload(&server, &file, &[]);
    let log = transcript(&output);
    assert!(output.status.success(), "curl failed:\n{log}");
    let ids = ids_in_transcript(&log);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{log}");
    let stored = stored(&server, &ids[0]);
    assert_bytes(&stored.raw, message, "uploaded file");
    assert_eq!(stored.envelope.helo, "client.example", "curl's EHLO name is the URL path");
    assert_eq!(stored.envelope.mail_from, "curl@client.example");
    assert_eq!(recipients(&stored), ["c1@tern.test", "c2@tern.test"]);
    assert_eq!(server.count(), 1);
}

#[test]
fn curl_upload_of_an_lf_file_is_refused_unless_crlf_is_asked_for() {
    let server = TernServer::start("");
    let file = server.data.join("lf.eml");
    std::fs::write(&file, b"Subject: lf only\n\nunix line ends\n.dot line\n").expect("write file");

    // curl sends the bytes as they are: bare LFs, which Tern refuses (SMTP smuggling defence).
    let output = curl_upload(&server, &file, &[]);
    let log = transcript(&output);
    assert!(!output.status.success(), "curl reported success for bare LFs:\n{log}");
    assert!(log.contains("550 5.6.0"), "expected the bare-LF refusal:\n{log}");
    assert_eq!(server.count(), 0, "a message with bare LFs was stored");

    // With --crlf curl converts line ends, and the converted bytes are what is stored.
    let output = curl_upload(&server, &file, &["--crlf"]);
    let log = transcript(&output);
    assert!(output.status.success(), "curl --crlf failed:\n{log}");
    let ids = ids_in_transcript(&log);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{log}");
    let stored = stored(&server, &ids[0]);
    assert_bytes(
        &stored.raw,
        b"Subject: lf only\r\n\r\nunix line ends\r\n.dot line\r\n",
        "curl --crlf upload",
    );
    assert_eq!(server.count(), 1);
}
