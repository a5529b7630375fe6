//! The mail server (`mode = "mta"`) against real peers, over loopback.
//!
//! Every test starts its own `tern serve` with four listeners — `mx`, `submission` (STARTTLS),
//! `submissions` (implicit TLS) and a `submission` listener with `allow_plaintext_auth` — and
//! the self-signed certificate Tern generates when none is configured. Accounts and aliases are
//! made with the real `tern account add … --password-stdin` and `tern alias add` while the
//! server runs, and what was accepted is read back from the store: envelope (AUTH identity,
//! TLS protocol and cipher, each recipient's route), `Received:` header and exact bytes.
//!
//! Peers: `swaks` (`--tls`, `--tls-on-connect`, `--auth PLAIN|LOGIN|CRAM-MD5`), `curl
//! --ssl-reqd`, Python's `smtplib` (`starttls()`, `login()`) and `ssl` module, `msmtp`,
//! `openssl s_client`. A missing one fails its test naming it; `scripts/test` installs them.
//!
//! Covered: AUTH over STARTTLS and implicit TLS; STARTTLS command injection (CVE-2011-0411
//! class) and the session reset after STARTTLS; TLS 1.0/1.1 refused; where AUTH is offered;
//! every relay trick of the issue on an `mx` listener; relaying for authenticated users and
//! trusted networks; sender ownership; AUTH brute-force throttling and lockout; per-IP
//! connection limits and rate, messages per connection, recipients per message, access lists,
//! the error tarpit; local delivery through subaddresses, aliases and the catch-all.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Client, MtaListener, TernServer, is_tern_banner, queue_id, text};
use tern_store::{Route, StoredMessage};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The listeners every test gets, in this order.
const LISTENERS: [MtaListener; 4] = [
    MtaListener { role: "mx", allow_plaintext_auth: false },
    MtaListener { role: "submission", allow_plaintext_auth: false },
    MtaListener { role: "submissions", allow_plaintext_auth: false },
    MtaListener { role: "submission", allow_plaintext_auth: true },
];

/// `[limits]` lines that turn the error tarpit off, for tests that make many errors on purpose.
const NO_TARPIT: &str = "tarpit_max_delay_ms = 0";

/// A server config: `tern.test` is the local domain, `relay` and `limits` go into their
/// sections, `rest` is appended (other tables).
fn config(relay: &str, limits: &str, rest: &str) -> String {
    format!("[relay]\nlocal_domains = [\"tern.test\"]\n{relay}\n\n[limits]\n{limits}\n\n{rest}\n")
}

/// A running MTA-mode server and its listeners.
struct Mta {
    server: TernServer,
    mx: SocketAddr,
    submission: SocketAddr,
    submissions: SocketAddr,
    /// A `submission` listener with `allow_plaintext_auth = true`.
    plain_auth: SocketAddr,
}

impl Mta {
    fn start(toml: &str) -> Mta {
        Mta::start_when(toml, is_tern_banner)
    }

    fn start_when(toml: &str, ready: fn(&str) -> bool) -> Mta {
        let (server, addrs) = TernServer::start_mta(&LISTENERS, toml, ready);
        Mta {
            server,
            mx: addrs[0],
            submission: addrs[1],
            submissions: addrs[2],
            plain_auth: addrs[3],
        }
    }

    /// Runs `tern ARGS --data STORE` with `stdin`, insisting it succeeds.
    fn tern(&self, args: &[&str], stdin: &str) -> String {
        let store = self.server.store_dir();
        let mut argv: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        argv.push("--data".as_ref());
        argv.push(store.as_os_str());
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tern");
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        let out = child.wait_with_output().expect("wait for tern");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "tern {args:?} failed:\n{text}");
        text
    }

    /// `tern account add LOGIN --password-stdin EXTRA…`.
    fn account(&self, login: &str, password: &str, extra: &[&str]) {
        let mut args = vec!["account", "add", login, "--password-stdin"];
        args.extend_from_slice(extra);
        self.tern(&args, &format!("{password}\n"));
    }

    /// `tern alias add ADDRESS TARGET…`.
    fn alias(&self, address: &str, targets: &[&str]) {
        let mut args = vec!["alias", "add", address];
        args.extend_from_slice(targets);
        self.tern(&args, "");
    }

    /// The stored message for an acknowledged id; acknowledged but absent is a failure.
    fn stored(&self, id: &str) -> StoredMessage {
        self.server.message(id).unwrap_or_else(|| {
            panic!("{id} was acknowledged but is not stored; stderr:\n{}", self.server.stderr())
        })
    }

    fn port(addr: SocketAddr) -> String {
        addr.port().to_string()
    }
}

/// Standard base64 (RFC 4648 with padding), for SASL responses.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `AUTH PLAIN` initial response for `login` and `password`.
fn plain_response(login: &str, password: &str) -> String {
    b64(format!("\0{login}\0{password}").as_bytes())
}

/// Connects and consumes a `220 tern.test` banner.
fn greeted(addr: SocketAddr) -> Client {
    Client::greeted(addr)
}

/// The whitespace-separated words of `line`, as program arguments.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs a program that may legitimately fail; only a missing program panics.
fn run_status(program: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is not installed or cannot run ({e}); scripts/test installs it")
        });
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        use std::io::Write;
        let _ = input.write_all(bytes);
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn transcript(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every queue id announced in a client transcript.
fn ids_in(transcript: &str) -> Vec<String> {
    transcript
        .lines()
        .filter_map(|line| {
            let at = line.find("250 2.0.0 Ok: queued as ")?;
            queue_id(&line[at..])
        })
        .collect()
}

/// The one queue id of a transcript.
#[track_caller]
fn one_id(transcript: &str) -> String {
    let ids = ids_in(transcript);
    assert_eq!(ids.len(), 1, "one queued reply expected:\n{transcript}");
    ids[0].clone()
}

/// swaks against `addr` with `extra` arguments.
fn swaks(addr: SocketAddr, extra: &[&str]) -> Output {
    let port = Mta::port(addr);
    let mut args = vec!["-s", "127.0.0.1", "-p", port.as_str(), "--helo", "client.example"];
    args.extend_from_slice(extra);
    run_status("swaks", &args, None)
}

/// The DATA lines swaks reports sending inside TLS (` ~> ` between the 354 and the lone
/// `.`), joined with CRLF and unstuffed: what the server must have stored.
fn swaks_tls_data(transcript: &str) -> Vec<u8> {
    let mut lines = transcript.lines().skip_while(|line| !line.starts_with("<~  354"));
    assert!(lines.next().is_some(), "swaks transcript has no 354 inside TLS:\n{transcript}");
    let mut data = Vec::new();
    for line in lines {
        let Some(sent) = line.strip_prefix(" ~> ") else { continue };
        if sent == "." {
            return data;
        }
        let unstuffed = sent.strip_prefix('.').filter(|rest| rest.starts_with('.')).unwrap_or(sent);
        data.extend_from_slice(unstuffed.as_bytes());
        data.extend_from_slice(b"\r\n");
    }
    panic!("swaks transcript has no final `.`:\n{transcript}");
}

/// Asserts byte equality, printing both sides escaped.
#[track_caller]
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    assert!(
        actual == expected,
        "{what} differ\n  stored:   b\"{}\"\n  expected: b\"{}\"",
        actual.escape_ascii(),
        expected.escape_ascii()
    );
}

fn received(message: &StoredMessage) -> String {
    String::from_utf8(message.received_header.clone()).expect("Received: header is UTF-8")
}

/// Asserts the message came over TLS 1.2/1.3 from `login` and says so in `Received:` with
/// `with` protocol `with`.
#[track_caller]
fn assert_tls_and_auth(message: &StoredMessage, login: Option<&str>, with: &str) {
    let tls = message.envelope.tls.as_ref().unwrap_or_else(|| {
        panic!("no TLS facts in the envelope of a message sent over TLS: {:?}", message.envelope)
    });
    assert!(
        tls.protocol == "TLSv1.3" || tls.protocol == "TLSv1.2",
        "unexpected TLS protocol {:?}",
        tls.protocol
    );
    assert!(!tls.cipher.is_empty(), "no cipher recorded");
    assert_eq!(message.envelope.auth.as_deref(), login, "envelope AUTH identity");
    let header = received(message);
    assert!(
        header.contains(&format!(" with {with} id ")),
        "Received: lacks `with {with}`:\n{header}"
    );
    assert!(
        header.contains(&format!("(using {} with cipher {})", tls.protocol, tls.cipher)),
        "Received: lacks the TLS protocol and cipher:\n{header}"
    );
}

/// The route of each stored recipient.
fn routes(message: &StoredMessage) -> Vec<(&str, &Route)> {
    message.envelope.recipients.iter().map(|r| (r.address.as_str(), &r.route)).collect()
}

fn local(account: &str) -> Route {
    Route::Local { account: account.into() }
}

/// Asserts that the reply `key` of a JSON result starts with `expect`.
#[track_caller]
fn expect_reply(value: &Value, key: &str, expect: &str) {
    let reply = text(value, key);
    assert!(reply.starts_with(expect), "{key}: got {reply:?}, wanted {expect:?}");
}

/// The capability keywords of an EHLO reply (`250-AUTH PLAIN …` → `AUTH PLAIN …`).
fn capabilities(ehlo: &str) -> Vec<String> {
    ehlo.lines().skip(1).map(|line| line.get(4..).unwrap_or_default().to_string()).collect()
}

fn offers(ehlo: &str, keyword: &str) -> bool {
    capabilities(ehlo).iter().any(|c| c.split_whitespace().next() == Some(keyword))
}

/// Authenticates a plaintext client with `AUTH PLAIN` (on the `allow_plaintext_auth` listener).
fn auth_plain(client: &mut Client, login: &str, password: &str) {
    client.cmd(&format!("AUTH PLAIN {}", plain_response(login, password)), "235 2.7.0");
}

// ---------------------------------------------------------------------------------------------
// AUTH over TLS with real clients
// ---------------------------------------------------------------------------------------------

#[test]
fn swaks_starttls_auth_plain_login_and_cram_md5_are_recorded_with_tls_and_identity() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "alice-Secret 1", &[]);
    mta.account("carol@tern.test", "carol-Secret 2", &["--cram-md5"]);
    let submission = mta.submission;

    for (mechanism, login, password) in [
        ("PLAIN", "alice@tern.test", "alice-Secret 1"),
        ("LOGIN", "alice@tern.test", "alice-Secret 1"),
        ("CRAM-MD5", "carol@tern.test", "carol-Secret 2"),
    ] {
        let subject = format!("Subject: over STARTTLS with {mechanism}");
        let line = format!("--tls --auth {mechanism} -au {login} -f {login}");
        let mut args = words(&line);
        args.extend(["-ap", password, "-t", "alice@tern.test", "--header", &subject]);
        let output = swaks(submission, &args);
        let log = transcript(&output);
        assert!(output.status.success(), "swaks {mechanism} failed:\n{log}");
        assert!(log.contains(&format!(" ~> AUTH {mechanism}")), "{mechanism} not used:\n{log}");
        assert!(log.contains("<~  235 2.7.0"), "no 235 for {mechanism}:\n{log}");
        let id = one_id(&log);
        let message = mta.stored(&id);
        assert_tls_and_auth(&message, Some(login), "ESMTPSA");
        assert_eq!(message.envelope.mail_from, login);
        assert_eq!(routes(&message), [("alice@tern.test", &local("alice@tern.test"))]);
        assert_bytes(&message.raw, &swaks_tls_data(&log), "swaks' DATA");
    }

    // CRAM-MD5 needs a secret the account only has with --cram-md5: alice has none.
    let args = words("--tls --auth CRAM-MD5 -au alice@tern.test -f alice@tern.test");
    let args = [&args[..], &["-ap", "alice-Secret 1", "-t", "alice@tern.test"]].concat();
    let output = swaks(submission, &args);
    let log = transcript(&output);
    assert!(!output.status.success(), "CRAM-MD5 without a secret succeeded:\n{log}");
    assert!(log.contains("<~* 535 5.7.8"), "{log}");
    assert_eq!(mta.server.count(), 3);
}

#[test]
fn swaks_tls_on_connect_authenticates_and_a_wrong_password_gets_535() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "right horse", &[]);
    let common = ["--tls-on-connect", "--auth", "PLAIN", "-au", "alice@tern.test"];
    let rest = ["-f", "alice@tern.test", "-t", "alice@tern.test"];

    let args = [&common[..], &["-ap", "right horse"], &rest].concat();
    let output = swaks(mta.submissions, &args);
    let log = transcript(&output);
    assert!(output.status.success(), "swaks --tls-on-connect failed:\n{log}");
    assert!(!log.contains("STARTTLS"), "implicit TLS must not use STARTTLS:\n{log}");
    let message = mta.stored(&one_id(&log));
    assert_tls_and_auth(&message, Some("alice@tern.test"), "ESMTPSA");

    let args = [&common[..], &["-ap", "wrong horse"], &rest].concat();
    let output = swaks(mta.submissions, &args);
    let log = transcript(&output);
    assert!(!output.status.success(), "a wrong password was accepted:\n{log}");
    assert!(log.contains("<~* 535 5.7.8"), "wanted 535 5.7.8:\n{log}");
    assert!(!log.contains(" ~> MAIL FROM"), "swaks went on after the 535:\n{log}");
    assert_eq!(mta.server.count(), 1);
}

/// curl with `--login-options AUTH=PLAIN`: see the ignored test below for curl's default.
#[test]
fn curl_ssl_reqd_upload_through_submission_is_stored_byte_exact() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw-curl", &[]);
    let file = mta.server.data.join("curl.eml");
    let message = b"From: alice@tern.test\r\nTo: bob@ext.example\r\nSubject: curl over TLS\r\n\r\n\
        .a dot line curl stuffs\r\n8-bit: caf\xc3\xa9\r\nlast line\r\n";
    std::fs::write(&file, message).expect("write message file");
    let url = format!("smtp://127.0.0.1:{}/client.example", mta.submission.port());
    let file_arg = file.display().to_string();
    let mut args =
        words("-v -sS --ssl-reqd -k --user alice@tern.test:pw-curl --login-options AUTH=PLAIN");
    args.extend(words("--mail-from alice@tern.test --mail-rcpt bob@ext.example"));
    args.extend([url.as_str(), "--upload-file", &file_arg]);
    let output = run_status("curl", &args, None);
    let log = transcript(&output);
    assert!(output.status.success(), "curl failed:\n{log}");
    assert!(log.contains("> STARTTLS"), "curl did not use STARTTLS:\n{log}");
    let stored = mta.stored(&one_id(&log));
    assert_bytes(&stored.raw, message, "uploaded file");
    assert_tls_and_auth(&stored, Some("alice@tern.test"), "ESMTPSA");
    assert_eq!(stored.envelope.helo, "client.example");
    assert_eq!(routes(&stored), [("bob@ext.example", &Route::Remote)]);
}

/// curl picks CRAM-MD5 whenever it is offered and does not fall back, so with its default
/// settings it cannot log in to an account made without `--cram-md5` (the default).
#[test]
fn curl_with_its_default_mechanism_logs_in_to_an_ordinary_account() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw-curl", &[]);
    let file = mta.server.data.join("curl.eml");
    std::fs::write(&file, b"Subject: default mechanism\r\n\r\nbody\r\n").expect("write file");
    let url = format!("smtp://127.0.0.1:{}/client.example", mta.submission.port());
    let file_arg = file.display().to_string();
    let mut args = words("-v -sS --ssl-reqd -k --user alice@tern.test:pw-curl");
    args.extend(words("--mail-from alice@tern.test --mail-rcpt alice@tern.test"));
    args.extend([url.as_str(), "--upload-file", &file_arg]);
    let output = run_status("curl", &args, None);
    let log = transcript(&output);
    assert!(output.status.success(), "curl could not log in with its default mechanism:\n{log}");
    mta.stored(&one_id(&log));
}

#[test]
fn smtplib_starttls_login_and_msmtp_send_through_submission() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "py-Secret", &[]);
    mta.account("dave@tern.test", "msmtp-Secret", &[]);

    // Python: starttls(), login() (it tries CRAM-MD5 first, then falls back to PLAIN), sendmail.
    let body = b"From: alice@tern.test\r\nTo: bob@ext.example\r\nSubject: smtplib\r\n\r\n\
        .leading dot\r\nline two\r\n";
    let script = r#"
port, login, password, body = int(ARGS[0]), ARGS[1], ARGS[2], bytes.fromhex(ARGS[3])
s = Recorder(port)
s.ehlo()
before = s.has_extn("auth")
s.starttls(context=tls_context())
version, cipher = s.sock.version(), s.sock.cipher()[0]
s.ehlo()
after_starttls = s.has_extn("starttls")
s.login(login, password)
s.sendmail(login, ["bob@ext.example", "alice@tern.test"], body)
s.quit()
emit(replies=s.replies, auth_before_tls=before, starttls_after=after_starttls, version=version)
"#;
    let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    let result = support::python(
        script,
        &[&Mta::port(mta.submission), "alice@tern.test", "py-Secret", &hex],
    );
    assert_eq!(result["auth_before_tls"], false, "AUTH offered before STARTTLS: {result}");
    assert_eq!(result["starttls_after"], false, "STARTTLS offered again inside TLS: {result}");
    let replies: Vec<&str> =
        result["replies"].as_array().expect("replies").iter().filter_map(Value::as_str).collect();
    assert!(replies.iter().any(|r| r.starts_with("235 2.7.0")), "no 235: {replies:?}");
    let id = replies
        .iter()
        .find_map(|r| queue_id(r))
        .unwrap_or_else(|| panic!("no queued reply: {replies:?}"));
    let message = mta.stored(&id);
    assert_bytes(&message.raw, body, "smtplib body");
    assert_tls_and_auth(&message, Some("alice@tern.test"), "ESMTPSA");
    assert_eq!(
        message.envelope.tls.as_ref().map(|t| t.protocol.as_str()),
        result["version"].as_str()
    );
    assert_eq!(
        routes(&message),
        [("bob@ext.example", &Route::Remote), ("alice@tern.test", &local("alice@tern.test"))]
    );

    // msmtp: STARTTLS, AUTH, the message from standard input.
    let mail = b"From: dave@tern.test\r\nTo: carol@ext.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
        Message-ID: <msmtp-1@tern.test>\r\nSubject: msmtp\r\n\r\nhello from msmtp\r\n.dot\r\n";
    let port = format!("--port={}", mta.submission.port());
    let mut args = words("-d --host=127.0.0.1 --tls=on --tls-starttls=on --tls-certcheck=off");
    args.extend(words("--auth=on --user=dave@tern.test --from=dave@tern.test carol@ext.example"));
    args.extend([port.as_str(), "--passwordeval=echo msmtp-Secret"]);
    let output = run_status("msmtp", &args, Some(mail));
    let log = transcript(&output);
    assert!(output.status.success(), "msmtp failed:\n{log}");
    assert!(log.contains("--> STARTTLS"), "msmtp did not use STARTTLS:\n{log}");
    assert!(log.contains("<-- 235 2.7.0"), "msmtp did not authenticate:\n{log}");
    let message = mta.stored(&one_id(&log));
    assert_bytes(&message.raw, mail, "msmtp message");
    assert_tls_and_auth(&message, Some("dave@tern.test"), "ESMTPSA");
    assert_eq!(routes(&message), [("carol@ext.example", &Route::Remote)]);
}

// ---------------------------------------------------------------------------------------------
// STARTTLS (RFC 3207) and TLS versions
// ---------------------------------------------------------------------------------------------

#[test]
fn commands_pipelined_after_starttls_are_never_executed() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw", &[]);
    // For each listener and injected command: STARTTLS and the command in one write, read the
    // 220 alone, handshake on the same socket, then EHLO and QUIT inside TLS and read until the
    // server closes. The transcript inside TLS must be exactly the EHLO reply and the 221.
    let script = r#"
ports = [int(p) for p in ARGS[0].split(",")]
injected = ["RSET", "NOOP", "EHLO injected.example", "MAIL FROM:<a@ext.example>", "QUIT",
            "RSET\r\nNOOP\r\nMAIL FROM:<b@ext.example>\r\nRCPT TO:<alice@tern.test>"]
results = []
for port in ports:
    for command in injected:
        r = Raw(port)
        r.reply()
        r.cmd("EHLO client.example")
        r.send(b"STARTTLS\r\n" + command.encode() + b"\r\n")
        ready = r.reply()
        version = r.starttls()
        first = r.cmd("EHLO inside.example")
        bye = r.cmd("QUIT")
        results.append(dict(port=port, command=command, ready=ready, version=version,
                            first=first, bye=bye, rest=r.rest()))
    # STARTTLS in the middle of a pipelined batch: what came before is answered, not after.
    r = Raw(port)
    r.reply()
    r.cmd("EHLO client.example")
    r.send(b"NOOP\r\nSTARTTLS\r\nRSET\r\nNOOP\r\n")
    noop = r.reply()
    ready = r.reply()
    version = r.starttls()
    first = r.cmd("EHLO inside.example")
    bye = r.cmd("QUIT")
    results.append(dict(port=port, command="NOOP before STARTTLS", noop=noop, ready=ready,
                        version=version, first=first, bye=bye, rest=r.rest()))
emit(results=results)
"#;
    let ports = format!("{},{}", mta.mx.port(), mta.submission.port());
    let result = support::python(script, &[&ports]);
    let results = result["results"].as_array().expect("results");
    assert_eq!(results.len(), 14);
    for case in results {
        let what = format!("{} on port {}", case["command"], case["port"]);
        if case.get("noop").is_some() {
            expect_reply(case, "noop", "250 2.0.0");
        }
        expect_reply(case, "ready", "220 2.0.0");
        let first = text(case, "first");
        assert!(
            first.starts_with("250-tern.test\n"),
            "{what}: the first reply inside TLS is not the EHLO's: {first:?}"
        );
        assert!(!offers(first, "STARTTLS"), "{what}: STARTTLS offered inside TLS: {first:?}");
        expect_reply(case, "bye", "221 2.0.0");
        assert_eq!(text(case, "rest"), "", "{what}: more replies than commands");
    }
    assert_eq!(mta.server.count(), 0);
}

#[test]
fn starttls_forgets_the_session_and_is_not_offered_again() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw-alice", &[]);
    let script = r#"
mx, plain, login, password = int(ARGS[0]), int(ARGS[1]), ARGS[2], ARGS[3]
out = {}
r = Raw(mx)
r.reply()
out["ehlo_plain"] = r.cmd("EHLO before.example")
out["mail_plain"] = r.cmd("MAIL FROM:<x@ext.example>")
out["starttls"] = r.cmd("STARTTLS")
r.starttls()
out["rcpt_after_tls"] = r.cmd("RCPT TO:<alice@tern.test>")
out["mail_before_ehlo"] = r.cmd("MAIL FROM:<x@ext.example>")
out["ehlo_tls"] = r.cmd("EHLO after.example")
out["starttls_again"] = r.cmd("STARTTLS")
out["mail"] = r.cmd("MAIL FROM:<x@ext.example>")
out["rcpt"] = r.cmd("RCPT TO:<alice@tern.test>")
out["data"] = r.cmd("DATA")
r.send(b"Subject: over STARTTLS on mx\r\n\r\nbody\r\n.\r\n")
out["queued"] = r.reply()
r.cmd("QUIT")

# AUTH before STARTTLS (allowed on this listener) is forgotten by STARTTLS.
r = Raw(plain)
r.reply()
r.cmd("EHLO before.example")
out["auth_plain"] = r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (login, password)))
out["starttls_after_auth"] = r.cmd("STARTTLS")
r.starttls()
out["ehlo_after_auth_tls"] = r.cmd("EHLO after.example")
out["mail_after_auth_tls"] = r.cmd("MAIL FROM:<%s>" % login)
emit(**out)
"#;
    let out = support::python(
        script,
        &[&Mta::port(mta.mx), &Mta::port(mta.plain_auth), "alice@tern.test", "pw-alice"],
    );
    assert!(offers(text(&out, "ehlo_plain"), "STARTTLS"), "{out}");
    expect_reply(&out, "mail_plain", "250 ");
    expect_reply(&out, "starttls", "220 2.0.0");
    expect_reply(&out, "rcpt_after_tls", "503 5.5.1");
    expect_reply(&out, "mail_before_ehlo", "503 5.5.1");
    expect_reply(&out, "ehlo_tls", "250-tern.test");
    assert!(!offers(text(&out, "ehlo_tls"), "STARTTLS"), "STARTTLS offered again: {out}");
    expect_reply(&out, "starttls_again", "503 5.5.1");
    expect_reply(&out, "mail", "250 ");
    expect_reply(&out, "rcpt", "250 ");
    expect_reply(&out, "data", "354 ");
    let queued = text(&out, "queued");
    let id = queue_id(queued).unwrap_or_else(|| panic!("not queued: {queued:?}"));
    let message = mta.stored(&id);
    assert_tls_and_auth(&message, None, "ESMTPS");
    assert_eq!(message.envelope.helo, "after.example", "the HELO name from inside TLS");

    expect_reply(&out, "auth_plain", "235 2.7.0");
    expect_reply(&out, "starttls_after_auth", "220 2.0.0");
    assert!(offers(text(&out, "ehlo_after_auth_tls"), "AUTH"), "AUTH not offered again: {out}");
    expect_reply(&out, "mail_after_auth_tls", "530 5.7.0");
}

/// `openssl s_client` with `-cipher DEFAULT@SECLEVEL=0`, so that the client really offers the
/// old protocol and a failure is the server's refusal.
fn s_client(addr: SocketAddr, version: &str, starttls: bool) -> (bool, String) {
    let connect = addr.to_string();
    let mut args = vec!["20", "openssl", "s_client", "-connect", connect.as_str(), version];
    args.extend_from_slice(&["-cipher", "DEFAULT@SECLEVEL=0"]);
    if starttls {
        args.extend_from_slice(&["-starttls", "smtp"]);
    }
    let output = run_status("timeout", &args, Some(b"QUIT\r\n"));
    (output.status.success(), transcript(&output))
}

#[test]
fn tls_1_0_and_1_1_handshakes_are_refused_while_1_2_and_1_3_succeed() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    for (addr, starttls) in [(mta.submissions, false), (mta.submission, true), (mta.mx, true)] {
        for old in ["-tls1", "-tls1_1"] {
            let (ok, log) = s_client(addr, old, starttls);
            assert!(!ok, "{old} handshake succeeded on {addr} (starttls {starttls}):\n{log}");
            assert!(
                log.contains("alert"),
                "{old} on {addr}: the client did not get the server's alert:\n{log}"
            );
            assert!(!log.contains("Cipher is TLS"), "{log}");
        }
        for (new, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
            let (ok, log) = s_client(addr, new, starttls);
            assert!(ok, "{new} handshake failed on {addr} (starttls {starttls}):\n{log}");
            assert!(log.contains(&format!("New, {name}, Cipher is")), "{new} on {addr}:\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Where and when AUTH is offered
// ---------------------------------------------------------------------------------------------

#[test]
fn auth_is_offered_only_over_tls_on_submission_listeners_and_follows_rfc_4954() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw-alice", &[]);
    let script = r#"
mx, sub, subs, plain = [int(p) for p in ARGS[:4]]
login, password = ARGS[4], ARGS[5]
response = b64("\0%s\0%s" % (login, password))
out = {}

r = Raw(sub)
r.reply()
out["sub_ehlo_plain"] = r.cmd("EHLO client.example")
out["sub_auth_before_tls"] = r.cmd("AUTH PLAIN " + response)
out["sub_login_before_tls"] = r.cmd("AUTH LOGIN")
out["sub_mail_before_tls"] = r.cmd("MAIL FROM:<%s>" % login)
r.cmd("STARTTLS")
r.starttls()
out["sub_auth_before_ehlo"] = r.cmd("AUTH PLAIN " + response)
out["sub_ehlo_tls"] = r.cmd("EHLO client.example")
out["sub_mail_before_auth"] = r.cmd("MAIL FROM:<%s>" % login)
out["plain_challenge"] = r.cmd("AUTH PLAIN")
out["plain_cancel"] = r.cmd("*")
out["login_challenge"] = r.cmd("AUTH LOGIN")
out["login_cancel"] = r.cmd("*")
out["cram_challenge"] = r.cmd("AUTH CRAM-MD5")
out["cram_cancel"] = r.cmd("*")
out["unknown_mechanism"] = r.cmd("AUTH GSSAPI")
out["bad_base64"] = r.cmd("AUTH PLAIN !!!notbase64")
out["other_authzid"] = r.cmd("AUTH PLAIN " + b64("postmaster@tern.test\0%s\0%s" % (login, password)))
out["login_initial"] = r.cmd("AUTH LOGIN " + b64(login))
out["login_password"] = r.cmd(b64(password))
out["ehlo_after_auth"] = r.cmd("EHLO client.example")
out["auth_again"] = r.cmd("AUTH PLAIN " + response)
out["mail"] = r.cmd("MAIL FROM:<%s>" % login)
out["auth_after_mail"] = r.cmd("AUTH PLAIN " + response)
r.cmd("QUIT")

r = Raw(subs, tls=True)
out["subs_banner"] = r.reply()
out["subs_ehlo"] = r.cmd("EHLO client.example")
out["subs_starttls"] = r.cmd("STARTTLS")
out["subs_mail_before_auth"] = r.cmd("MAIL FROM:<%s>" % login)
out["subs_auth"] = r.cmd("AUTH PLAIN " + response)
r.cmd("QUIT")

r = Raw(plain)
r.reply()
out["plain_ehlo"] = r.cmd("EHLO client.example")
out["plain_mail_before_auth"] = r.cmd("MAIL FROM:<%s>" % login)
out["plain_auth"] = r.cmd("AUTH PLAIN " + response)
out["plain_mail"] = r.cmd("MAIL FROM:<%s>" % login)
r.cmd("QUIT")

r = Raw(mx)
r.reply()
out["mx_ehlo"] = r.cmd("EHLO client.example")
out["mx_auth"] = r.cmd("AUTH PLAIN " + response)
r.cmd("STARTTLS")
r.starttls()
out["mx_ehlo_tls"] = r.cmd("EHLO client.example")
out["mx_auth_tls"] = r.cmd("AUTH PLAIN " + response)
out["mx_mail"] = r.cmd("MAIL FROM:<anyone@ext.example>")
r.cmd("QUIT")
emit(**out)
"#;
    let ports = [mta.mx, mta.submission, mta.submissions, mta.plain_auth].map(Mta::port);
    let mut args: Vec<&str> = ports.iter().map(String::as_str).collect();
    args.extend_from_slice(&["alice@tern.test", "pw-alice"]);
    let out = support::python(script, &args);
    let ehlo = |key: &str| text(&out, key).to_string();

    // Submission before TLS: STARTTLS offered, AUTH neither offered nor accepted, MAIL refused.
    assert!(offers(&ehlo("sub_ehlo_plain"), "STARTTLS"), "{out}");
    assert!(!offers(&ehlo("sub_ehlo_plain"), "AUTH"), "AUTH offered before TLS: {out}");
    expect_reply(&out, "sub_auth_before_tls", "538 5.7.11");
    expect_reply(&out, "sub_login_before_tls", "538 5.7.11");
    expect_reply(&out, "sub_mail_before_tls", "530 5.7.0");

    // Inside TLS: AUTH needs EHLO first, is offered, MAIL needs it, `*` cancels each mechanism.
    expect_reply(&out, "sub_auth_before_ehlo", "503 5.5.1");
    assert!(
        // CRAM-MD5 is offered only once some account has it enabled; none has here.
        capabilities(&ehlo("sub_ehlo_tls")).contains(&"AUTH PLAIN LOGIN".to_string()),
        "{out}"
    );
    expect_reply(&out, "sub_mail_before_auth", "530 5.7.0");
    for (challenge, cancel) in [
        ("plain_challenge", "plain_cancel"),
        ("login_challenge", "login_cancel"),
        ("cram_challenge", "cram_cancel"),
    ] {
        expect_reply(&out, challenge, "334 ");
        expect_reply(&out, cancel, "501 ");
    }
    expect_reply(&out, "unknown_mechanism", "504 5.5.4");
    expect_reply(&out, "bad_base64", "501 5.5.2");
    // Acting as another identity (a PLAIN authzid) is not allowed.
    expect_reply(&out, "other_authzid", "535 5.7.8");
    // LOGIN with the user name as initial response: only the password is asked for.
    expect_reply(&out, "login_initial", "334 UGFzc3dvcmQ6");
    expect_reply(&out, "login_password", "235 2.7.0");
    assert!(!offers(&ehlo("ehlo_after_auth"), "AUTH"), "AUTH offered once authenticated");
    expect_reply(&out, "auth_again", "503 5.5.1");
    expect_reply(&out, "mail", "250 ");
    expect_reply(&out, "auth_after_mail", "503 5.5.1");

    // Submissions: TLS from the first byte, AUTH offered, STARTTLS neither offered nor allowed.
    expect_reply(&out, "subs_banner", "220 tern.test ESMTP Tern");
    assert!(offers(&ehlo("subs_ehlo"), "AUTH"), "{out}");
    assert!(!offers(&ehlo("subs_ehlo"), "STARTTLS"), "{out}");
    expect_reply(&out, "subs_starttls", "503 5.5.1");
    expect_reply(&out, "subs_mail_before_auth", "530 5.7.0");
    expect_reply(&out, "subs_auth", "235 2.7.0");

    // allow_plaintext_auth: AUTH offered and accepted without TLS; MAIL still needs AUTH.
    assert!(offers(&ehlo("plain_ehlo"), "AUTH"), "{out}");
    expect_reply(&out, "plain_mail_before_auth", "530 5.7.0");
    expect_reply(&out, "plain_auth", "235 2.7.0");
    expect_reply(&out, "plain_mail", "250 ");

    // mx: never AUTH, with or without TLS; MAIL needs none.
    assert!(!offers(&ehlo("mx_ehlo"), "AUTH"), "{out}");
    expect_reply(&out, "mx_auth", "503 5.5.1");
    assert!(!offers(&ehlo("mx_ehlo_tls"), "AUTH"), "{out}");
    expect_reply(&out, "mx_auth_tls", "503 5.5.1");
    expect_reply(&out, "mx_mail", "250 ");
}

#[test]
fn auth_brute_force_is_slowed_then_locked_out_per_ip() {
    let limits = format!(
        "{NO_TARPIT}\nauth_max_failures = 3\nauth_delay_per_failure_ms = 200\nauth_lockout_secs = 600"
    );
    let mta = Mta::start(&config("", &limits, ""));
    mta.account("alice@tern.test", "the-Right-one", &[]);
    let wrong = format!("AUTH PLAIN {}", plain_response("alice@tern.test", "guess-Wrong-1"));
    let right = format!("AUTH PLAIN {}", plain_response("alice@tern.test", "the-Right-one"));

    // Failures count per IP, across connections, and each one delays the next answer more.
    let mut a = greeted(mta.plain_auth);
    a.cmd("EHLO attacker.example", "250");
    a.cmd(&wrong, "535 5.7.8");
    let started = Instant::now();
    a.cmd(&wrong, "535 5.7.8");
    let second = started.elapsed();
    let mut b = greeted(mta.plain_auth);
    b.cmd("EHLO attacker.example", "250");
    let started = Instant::now();
    b.cmd(&wrong, "535 5.7.8");
    let third = started.elapsed();
    assert!(second >= Duration::from_millis(180), "second failure answered after {second:?}");
    assert!(third >= Duration::from_millis(380), "third failure answered after {third:?}");

    // Locked out: even the right password gets 421 4.7.0, and the connection is closed.
    b.cmd(&right, "421 4.7.0");
    assert!(b.is_closed(), "the connection stayed open after the lockout");
    a.cmd(&right, "421 4.7.0");
    assert!(a.is_closed());
    let mut c = greeted(mta.plain_auth);
    c.cmd("EHLO attacker.example", "250");
    c.cmd("AUTH LOGIN", "421 4.7.0");
    assert!(c.is_closed());

    // The lockout is about AUTH: mail to local users over mx still flows from that address.
    let mut mx = greeted(mta.mx);
    mx.cmd("EHLO attacker.example", "250");
    mx.send_message("someone@ext.example", &["alice@tern.test"], b"Subject: hi\r\n\r\nhi\r\n");

    // Each failure is logged with the IP; no password is ever logged.
    let log = mta.server.stderr();
    let failures = log
        .lines()
        .filter(|l| l.contains("authentication failed") && l.contains("ip=127.0.0.1"))
        .count();
    assert_eq!(failures, 3, "wanted 3 logged failures with the IP:\n{log}");
    assert!(log.contains("locked out"), "the lockout is not logged:\n{log}");
    assert!(!log.contains("guess-Wrong-1") && !log.contains("the-Right-one"), "{log}");
}

#[test]
fn the_auth_delay_holds_every_answer_and_hanging_up_counts_as_a_failure() {
    let limits = format!(
        "{NO_TARPIT}\nauth_max_failures = 3\nauth_delay_per_failure_ms = 400\nauth_lockout_secs = 600"
    );
    let mta = Mta::start(&config("", &limits, ""));
    mta.account("alice@tern.test", "the-Right-one", &[]);
    let wrong = format!("AUTH PLAIN {}", plain_response("alice@tern.test", "guess-Wrong-1"));
    let right = format!("AUTH PLAIN {}", plain_response("alice@tern.test", "the-Right-one"));

    // After one failure the right password is answered only after the delay too: an early
    // answer would tell a guesser "right" without waiting for "wrong".
    let mut a = greeted(mta.plain_auth);
    a.cmd("EHLO guesser.example", "250");
    a.cmd(&wrong, "535 5.7.8");
    let started = Instant::now();
    a.cmd(&right, "235 2.7.0");
    let success = started.elapsed();
    assert!(success >= Duration::from_millis(380), "success answered after {success:?}");

    // Hanging up in the middle of AUTH LOGIN spends a try (counted when the exchange starts,
    // so there is no race with the hang-up): two such and one wrong guess lock the client out.
    for _ in 0..2 {
        let mut c = greeted(mta.plain_auth);
        c.cmd("EHLO guesser.example", "250");
        c.cmd("AUTH LOGIN", "334 ");
        c.cmd(&b64(b"alice@tern.test"), "334 ");
    }
    let mut c = greeted(mta.plain_auth);
    c.cmd("EHLO guesser.example", "250");
    c.cmd(&wrong, "535 5.7.8");
    let mut d = greeted(mta.plain_auth);
    d.cmd("EHLO guesser.example", "250");
    d.cmd("AUTH LOGIN", "421 4.7.0");
}

// ---------------------------------------------------------------------------------------------
// Relay policy
// ---------------------------------------------------------------------------------------------

/// Messages in the store from the null sender (Tern's notices).
fn notices(mta: &Mta) -> Vec<StoredMessage> {
    use tern_store::StoreRead;
    let store = mta.server.store();
    let ids = store.list_ids(1000).expect("list");
    ids.iter()
        .filter_map(|id| store.message(id).expect("read"))
        .filter(|m| m.envelope.mail_from.is_empty())
        .collect()
}

/// The outbound queue's entries.
fn queue_entries(mta: &Mta) -> Vec<tern_store::QueueEntry> {
    use tern_store::StoreRead;
    let filter = tern_store::QueueFilter::default();
    mta.server.store().queue_entries(&filter).expect("queue").0
}

/// Polls `check` for up to 20 s.
fn eventually<T>(mta: &Mta, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", mta.server.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Anyone may write any `MAIL FROM` on an `mx` listener: asking for success notices with the
/// full message returned, or sending through an alias that forwards to a failing domain, must
/// not make Tern mail that content to the forged sender. A user who authenticated still hears
/// of both.
#[test]
fn the_mx_sends_no_notice_to_an_unverified_sender_but_an_authenticated_one_gets_them() {
    use support::peers::{DnsRecord, Dnsmasq};
    let dns = Dnsmasq::start(&[DnsRecord::NullMx { domain: "null.test".into() }]);
    let outbound = format!("[outbound]\ndns_servers = [\"{}\"]", dns.addr());
    let mta = Mta::start(&config("", NO_TARPIT, &outbound));
    mta.account("alice@tern.test", "alice-Secret 1", &[]);
    mta.account("bob@tern.test", "bob-Secret 2", &[]);
    mta.alias("fwd@tern.test", &["z@null.test"]);
    let payload = format!("Subject: reflected\r\n\r\n{}\r\n", "spam ".repeat(40_000));

    let mut outsider = greeted(mta.mx);
    outsider.cmd("EHLO outsider.example", "250");
    outsider.cmd("MAIL FROM:<victim@elsewhere.example> RET=FULL", "250");
    outsider.cmd("RCPT TO:<alice@tern.test> NOTIFY=SUCCESS", "250");
    outsider.cmd("RCPT TO:<fwd@tern.test> NOTIFY=SUCCESS,FAILURE,DELAY", "250");
    outsider.cmd("DATA", "354");
    outsider.send(payload.as_bytes());
    outsider.cmd(".", "250 2.0.0");
    // The forwarded copy fails for good (null MX) and is held for the postmaster.
    let held = eventually(&mta, "the forwarded copy to be held", || {
        queue_entries(&mta).into_iter().find(|e| e.state == tern_store::EntryState::Held)
    });
    assert_eq!(held.recipient, "z@null.test");
    assert!(!held.trusted_client);
    let error = held.last_error.unwrap_or_default();
    assert!(error.contains("unverified sender held for the postmaster"), "{error}");
    assert!(notices(&mta).is_empty(), "a notice was made for the outsider");

    // The same from an authenticated user: a "delivered" notice and a bounce, both to bob.
    let mut user = greeted(mta.plain_auth);
    user.cmd("EHLO bob.example", "250");
    auth_plain(&mut user, "bob@tern.test", "bob-Secret 2");
    user.cmd("MAIL FROM:<bob@tern.test> RET=HDRS", "250");
    user.cmd("RCPT TO:<alice@tern.test> NOTIFY=SUCCESS", "250");
    user.cmd("RCPT TO:<fwd@tern.test> NOTIFY=SUCCESS,FAILURE", "250");
    user.cmd("DATA", "354");
    user.send(b"Subject: tracked\r\n\r\nhello\r\n");
    user.cmd(".", "250 2.0.0");
    let reports = eventually(&mta, "two notices to bob", || {
        let found = notices(&mta);
        (found.len() >= 2).then_some(found)
    });
    let reports: Vec<String> =
        reports.iter().map(|m| String::from_utf8_lossy(&m.raw).into_owned()).collect();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert!(reports.iter().any(|r| r.contains("Action: delivered")), "{reports:#?}");
    assert!(reports.iter().any(|r| r.contains("Action: failed")), "{reports:#?}");
    for m in notices(&mta) {
        let to: Vec<&str> = m.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(to, ["bob@tern.test"]);
    }
}

/// Every recipient form of the issue that could trick a relay (`tern.test` is local).
const RELAY_TRICKS: [&str; 18] = [
    "<user%ext.example@tern.test>",
    "<@tern.test:user@ext.example>",
    "<@a.example,@b.example:user@ext.example>",
    "<ext.example!user>",
    "<ext.example!user@tern.test>",
    "<\"user@ext.example\">",
    "<\"user@ext.example\"@tern.test>",
    "<user@ext.example@tern.test>",
    "<user@ext.example.>",
    "<user@[192.0.2.1]>",
    "<<user@ext.example>>",
    "<user(c)@ext.example>",
    "<(c)user@ext.example>",
    "<user@ext.example(c)>",
    "<user@(c)ext.example>",
    "<user@tern.test(c)>",
    "<\"user%ext.example\"@tern.test>",
    "<user%ext.example%tern.test@tern.test>",
];

/// Opens a transaction on an mx session and sends every trick, with and without the outer
/// angle brackets and with a space after the colon; returns each line with its reply.
fn try_relay_tricks(client: &mut Client) -> Vec<(String, String)> {
    client.cmd("EHLO client.example", "250");
    client.cmd("MAIL FROM:<spammer@ext.example>", "250 ");
    let mut replies = Vec::new();
    for form in RELAY_TRICKS {
        let bare = &form[1..form.len() - 1];
        for line in
            [format!("RCPT TO:{form}"), format!("RCPT TO: {form}"), format!("RCPT TO:{bare}")]
        {
            client.send(format!("{line}\r\n").as_bytes());
            let reply = client.reply();
            assert!(!reply.is_empty(), "{line:?}: the server closed the connection");
            replies.push((line, reply));
        }
    }
    replies
}

#[test]
fn no_relay_trick_is_accepted_from_an_unauthenticated_client() {
    let rest = "[smtp]\nmax_bad_commands = 1000";
    let mta = Mta::start(&config("", NO_TARPIT, rest));
    mta.account("alice@tern.test", "pw", &[]);

    // Without a catch-all none of them is accepted at all.
    let mut client = greeted(mta.mx);
    let replies = try_relay_tricks(&mut client);
    let accepted: Vec<_> = replies.iter().filter(|(_, reply)| reply.starts_with('2')).collect();
    assert!(accepted.is_empty(), "relay tricks accepted: {accepted:#?}");
    for (line, reply) in &replies {
        assert!(reply.starts_with('5'), "{line:?} got a non-permanent answer: {reply:?}");
    }
    client.cmd("RCPT TO:<bob@ext.example>", "550 5.7.1");
    client.cmd("RCPT TO:<alice@tern.test>", "250 ");
    client.cmd("DATA", "354");
    client.send(b"Subject: only for alice\r\n\r\nbody\r\n.\r\n");
    let id = queue_id(&client.reply()).expect("queued");
    client.cmd("QUIT", "221");
    assert_eq!(routes(&mta.stored(&id)), [("alice@tern.test", &local("alice@tern.test"))]);

    // With a catch-all, forms whose domain is local may be accepted — into alice's mailbox,
    // never for relay.
    mta.alias("@tern.test", &["alice@tern.test"]);
    let mut client = greeted(mta.mx);
    let replies = try_relay_tricks(&mut client);
    let accepted: Vec<_> = replies.iter().filter(|(_, reply)| reply.starts_with('2')).collect();
    client.cmd("RCPT TO:<alice@tern.test>", "250 ");
    client.cmd("DATA", "354");
    client.send(b"Subject: catch-all\r\n\r\nbody\r\n.\r\n");
    let id = queue_id(&client.reply()).expect("queued");
    let message = mta.stored(&id);
    assert_eq!(message.envelope.recipients.len(), accepted.len() + 1, "{accepted:#?}");
    for (address, route) in routes(&message) {
        assert_eq!(route, &local("alice@tern.test"), "{address:?} was accepted for {route:?}");
    }

    // Nothing in the store is routed to another domain.
    let store = mta.server.store();
    use tern_store::StoreRead;
    for id in store.list_ids(1000).expect("list") {
        let message = store.message(&id).expect("read").expect("listed message exists");
        assert!(
            message.envelope.recipients.iter().all(|r| r.route != Route::Remote),
            "a message is routed remote: {:?}",
            message.envelope
        );
    }
}

#[test]
fn authenticated_users_and_trusted_networks_may_relay_and_senders_must_be_owned() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw-alice", &["--address", "sales@tern.test"]);

    let mut client = greeted(mta.plain_auth);
    client.cmd("EHLO client.example", "250");
    auth_plain(&mut client, "alice@tern.test", "pw-alice");
    client.cmd("MAIL FROM:<mallory@tern.test>", "553 5.7.1");
    client.cmd("MAIL FROM:<someone@ext.example>", "553 5.7.1");
    client.cmd("MAIL FROM:<>", "553 5.7.1");
    let id = client.send_message(
        "sales@tern.test",
        &["friend@ext.example", "alice@tern.test"],
        b"Subject: relayed\r\n\r\nbody\r\n",
    );
    let message = mta.stored(&id);
    assert_eq!(message.envelope.auth.as_deref(), Some("alice@tern.test"));
    assert_eq!(message.envelope.tls, None);
    assert!(received(&message).contains(" with ESMTPA id "), "{}", received(&message));
    assert_eq!(
        routes(&message),
        [("friend@ext.example", &Route::Remote), ("alice@tern.test", &local("alice@tern.test"))]
    );
    // A subaddress of an owned address is owned too.
    client.send_message("alice+lists@tern.test", &["x@ext.example"], b"Subject: tag\r\n\r\nx\r\n");
    // The relay still refuses address literals that are not ours.
    client.cmd("MAIL FROM:<alice@tern.test>", "250");
    client.cmd("RCPT TO:<x@[192.0.2.1]>", "5");
    client.cmd("QUIT", "221");

    // The same remote recipient from the same address without AUTH is refused on mx.
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    client.cmd("MAIL FROM:<alice@tern.test>", "250");
    client.cmd("RCPT TO:<friend@ext.example>", "550 5.7.1");
    client.cmd("QUIT", "221");

    // A trusted network relays without AUTH.
    let trusted = Mta::start(&config("trusted_networks = [\"127.0.0.0/8\"]", NO_TARPIT, ""));
    let mut client = greeted(trusted.mx);
    client.cmd("EHLO app.internal", "250");
    let id = client.send_message(
        "app@internal.example",
        &["customer@ext.example"],
        b"Subject: from a trusted network\r\n\r\nbody\r\n",
    );
    let message = trusted.stored(&id);
    assert_eq!(routes(&message), [("customer@ext.example", &Route::Remote)]);
    assert_eq!(message.envelope.auth, None);
}

// ---------------------------------------------------------------------------------------------
// Per-client limits and lists
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_connections_and_connection_rate_per_ip_are_limited() {
    let mta = Mta::start(&config("", &format!("{NO_TARPIT}\nmax_connections_per_ip = 2"), ""));
    // The readiness check's connection may still hold a slot for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut first, _second) = loop {
        let mut a = Client::connect(mta.mx);
        let mut b = Client::connect(mta.mx);
        let (ra, rb) = (a.reply(), b.reply());
        if is_tern_banner(&ra) && is_tern_banner(&rb) {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "two connections never both greeted: {ra:?} {rb:?}");
        drop((a, b));
        std::thread::sleep(Duration::from_millis(50));
    };
    // The limit is per client, across listeners.
    for addr in [mta.mx, mta.submission] {
        let mut third = Client::connect(addr);
        let banner = third.reply();
        assert!(banner.starts_with("421 4.7.0"), "third connection greeted with {banner:?}");
        assert!(third.is_closed(), "the refused connection stayed open");
    }
    // A slot comes back when a session ends.
    first.cmd("QUIT", "221");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let banner = Client::connect(mta.mx).reply();
        if is_tern_banner(&banner) {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back: {banner:?}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Connection rate: 3 a minute, and the readiness check already used one.
    let rated =
        Mta::start(&config("", &format!("{NO_TARPIT}\nmax_connection_rate_per_minute = 3"), ""));
    let banners: Vec<String> = (0..4)
        .map(|_| {
            let mut client = Client::connect(rated.mx);
            let banner = client.reply();
            if banner.starts_with("220") {
                client.cmd("QUIT", "221");
            }
            banner
        })
        .collect();
    assert!(banners[..2].iter().all(|b| is_tern_banner(b)), "{banners:#?}");
    assert!(banners[2..].iter().all(|b| b.starts_with("421 4.7.0")), "{banners:#?}");

    // Trusted networks are exempt (an application server opens many sessions), unless told not.
    let limits =
        format!("{NO_TARPIT}\nmax_connection_rate_per_minute = 3\nmax_connections_per_ip = 1");
    let trusted = "trusted_networks = [\"127.0.0.0/8\"]";
    let exempt = Mta::start(&config(trusted, &limits, ""));
    let held: Vec<Client> = (0..6).map(|_| greeted(exempt.mx)).collect();
    assert_eq!(held.len(), 6, "six at once and six in a minute");
    let strict =
        format!("{NO_TARPIT}\nmax_connections_per_ip = 1\nexempt_trusted_networks = false");
    let counted = Mta::start(&config(trusted, &strict, ""));
    // The readiness check's connection may still hold the one slot for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let _first = loop {
        let mut client = Client::connect(counted.mx);
        if is_tern_banner(&client.reply()) {
            break client;
        }
        assert!(Instant::now() < deadline, "the slot never came free");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(Client::connect(counted.mx).reply().starts_with("421 4.7.0"), "counted when told");
}

#[test]
fn messages_per_connection_and_recipients_per_message_are_limited() {
    let limits = format!("{NO_TARPIT}\nmax_messages_per_connection = 2");
    let mta = Mta::start(&config("", &limits, "[smtp]\nmax_recipients = 2"));
    mta.account("alice@tern.test", "pw", &[]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    for n in 0..2 {
        let body = format!("Subject: message {n}\r\n\r\nbody\r\n");
        client.send_message("x@ext.example", &["alice@tern.test"], body.as_bytes());
    }
    client.cmd("MAIL FROM:<x@ext.example>", "421 4.7.0");
    assert!(client.is_closed(), "the session went on after the 421");
    assert_eq!(mta.server.count(), 2);

    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    client.cmd("MAIL FROM:<x@ext.example>", "250");
    client.cmd("RCPT TO:<alice@tern.test>", "250");
    client.cmd("RCPT TO:<alice+a@tern.test>", "250");
    client.cmd("RCPT TO:<alice+b@tern.test>", "452 4.5.3");
    client.cmd("DATA", "354");
    client.send(b"Subject: two recipients\r\n\r\nbody\r\n.\r\n");
    let id = queue_id(&client.reply()).expect("queued");
    let message = mta.stored(&id);
    let addresses: Vec<_> = routes(&message).into_iter().map(|(a, _)| a).collect();
    assert_eq!(addresses, ["alice@tern.test", "alice+a@tern.test"]);
}

#[test]
fn blocked_ips_get_a_554_banner_and_blocked_sender_domains_554_at_mail() {
    let lists = "[lists]\nblock_ips = [\"127.0.0.0/8\"]\nallow_ips = [\"127.0.0.2\"]\n\
        block_sender_domains = [\"spam.example\", \".bulk.example\"]";
    let mta =
        Mta::start_when(&config("", NO_TARPIT, lists), |banner| banner.starts_with("554 5.7.1"));
    for addr in [mta.mx, mta.submission] {
        let mut client = Client::connect(addr);
        let banner = client.reply();
        assert!(banner.starts_with("554 5.7.1"), "blocked client greeted with {banner:?}");
        assert!(client.is_closed(), "the blocked connection stayed open");
    }
    // Implicit TLS: refused before the handshake, in plaintext.
    let mut client = Client::connect(mta.submissions);
    let banner = client.reply();
    assert!(banner.starts_with("554 5.7.1"), "blocked client on 465 got {banner:?}");

    // 127.0.0.2 is allowed despite the block; sender domains are checked at MAIL.
    let script = r#"
r = Raw(int(ARGS[0]), source="127.0.0.2")
out = {"banner": r.reply()}
r.cmd("EHLO client.example")
for key, sender in [("spam", "a@spam.example"), ("sub_spam", "a@sub.spam.example"),
                    ("bulk", "a@bulk.example"), ("sub_bulk", "a@x.bulk.example"),
                    ("upper", "a@SPAM.Example"), ("dot", "a@spam.example."),
                    ("fine", "a@fine.example")]:
    out[key] = r.cmd("MAIL FROM:<%s>" % sender)
    if out[key].startswith("250"):
        r.cmd("RSET")
r.cmd("QUIT")
emit(**out)
"#;
    let out = support::python(script, &[&Mta::port(mta.mx)]);
    expect_reply(&out, "banner", "220 tern.test ESMTP Tern");
    expect_reply(&out, "spam", "554 5.7.1");
    expect_reply(&out, "upper", "554 5.7.1");
    expect_reply(&out, "sub_spam", "250 ");
    expect_reply(&out, "sub_bulk", "554 5.7.1");
    expect_reply(&out, "fine", "250 ");
    expect_reply(&out, "dot", "554 5.7.1");
    // `.bulk.example` covers the domain itself and every subdomain.
    expect_reply(&out, "bulk", "554 5.7.1");
}

#[test]
fn repeated_errors_are_answered_ever_more_slowly() {
    // The default tarpit: three errors free, then one more second per error.
    let mta = Mta::start(&config("", "", ""));
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        client.cmd("XYZZY", "5");
        took.push(started.elapsed());
    }
    for (n, elapsed) in took[..4].iter().enumerate() {
        assert!(*elapsed < Duration::from_millis(800), "error {} took {elapsed:?}", n + 1);
    }
    assert!(took[4] >= Duration::from_millis(900), "the fifth error took only {:?}", took[4]);
    drop(client);

    // The tarpit is per session: a new connection is answered at once.
    let mut client = greeted(mta.mx);
    let started = Instant::now();
    client.cmd("XYZZY", "5");
    assert!(started.elapsed() < Duration::from_millis(800));
}

// ---------------------------------------------------------------------------------------------
// Local delivery
// ---------------------------------------------------------------------------------------------

#[test]
fn local_mail_reaches_the_account_through_subaddress_alias_and_catch_all() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw", &[]);
    mta.alias("team@tern.test", &["alice@tern.test"]);
    let body = b"From: x@ext.example\r\nTo: team@tern.test\r\nSubject: local\r\n\r\n\
        body with 8-bit caf\xc3\xa9\r\n..stuffed\r\n";
    let unstuffed = b"From: x@ext.example\r\nTo: team@tern.test\r\nSubject: local\r\n\r\n\
        body with 8-bit caf\xc3\xa9\r\n.stuffed\r\n";

    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    client.cmd("MAIL FROM:<x@ext.example>", "250");
    client.cmd("RCPT TO:<alice+news@tern.test>", "250");
    client.cmd("RCPT TO:<Team@TERN.test>", "250");
    // Unknown without a catch-all: refused now, never accepted and bounced later.
    client.cmd("RCPT TO:<nobody@tern.test>", "550 5.1.1");
    client.cmd("DATA", "354");
    client.send(body);
    client.send(b".\r\n");
    let id = queue_id(&client.reply()).expect("queued");
    let message = mta.stored(&id);
    assert_bytes(&message.raw, unstuffed, "local message");
    assert_eq!(
        routes(&message),
        // The alias is delivered as its target; the address the client gave stays as ORCPT.
        [
            ("alice+news@tern.test", &local("alice@tern.test")),
            ("alice@tern.test", &local("alice@tern.test"))
        ]
    );
    assert!(received(&message).contains(" with ESMTP id "), "{}", received(&message));

    mta.alias("@tern.test", &["alice@tern.test"]);
    let id = client.send_message("x@ext.example", &["nobody@tern.test"], body);
    let message = mta.stored(&id);
    assert_bytes(&message.raw, unstuffed, "catch-all message");
    assert_eq!(routes(&message), [("alice@tern.test", &local("alice@tern.test"))]);
    assert_eq!(
        message.envelope.recipients[0].orcpt.as_deref(),
        Some("rfc822;nobody@tern.test"),
        "the catch-all keeps the address the client gave as ORCPT"
    );
    // Other domains are still not ours.
    client.cmd("MAIL FROM:<x@ext.example>", "250");
    client.cmd("RCPT TO:<nobody@sub.tern.test>", "550 5.7.1");
    client.cmd("QUIT", "221");
}

#[test]
fn postmaster_at_every_local_domain_is_accepted_without_an_alias() {
    // RFC 5321 section 4.5.1: postmaster@ each of our domains, in any case, is accepted.
    let relay = "[relay]\nlocal_domains = [\"tern.test\", \"other.test\"]\n";
    let mta = Mta::start(&format!("{relay}\n[limits]\n{NO_TARPIT}\n"));
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    // Without a postmaster mailbox the message is kept in the store for the administrator.
    let id = client.send_message(
        "x@ext.example",
        &["Postmaster@other.test"],
        b"Subject: a\r\n\r\nb\r\n",
    );
    assert_eq!(routes(&mta.stored(&id)), [("Postmaster@other.test", &Route::Capture)]);

    // With one (the postmaster alias of the host name), every domain's postmaster reaches it.
    mta.account("admin@tern.test", "pw", &[]);
    mta.alias("postmaster@tern.test", &["admin@tern.test"]);
    let to = ["postmaster@other.test", "POSTMASTER@tern.test"];
    let id = client.send_message("x@ext.example", &to, b"Subject: b\r\n\r\nb\r\n");
    let message = mta.stored(&id);
    for (_, route) in routes(&message) {
        assert_eq!(route, &local("admin@tern.test"), "{:?}", message.envelope.recipients);
    }
    assert_eq!(message.envelope.recipients.len(), 2);
    // Only postmaster: other unknown local parts are still refused.
    client.cmd("MAIL FROM:<x@ext.example>", "250");
    client.cmd("RCPT TO:<nobody@other.test>", "550 5.1.1");
    client.cmd("RCPT TO:<postmaster@ext.example>", "550 5.7.1");
    client.cmd("QUIT", "221");
}

#[test]
fn address_literals_of_our_own_ips_are_local_and_others_are_relay_attempts() {
    let mta = Mta::start(&config("local_ips = [\"127.0.0.1\", \"::1\"]", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw", &[]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    // Our own IP means this host: the local part is a user at the host name (tern.test).
    let to = ["alice@[127.0.0.1]", "alice@[IPv6:::1]", "postmaster@[127.0.0.1]"];
    let id = client.send_message("x@ext.example", &to, b"Subject: l\r\n\r\nb\r\n");
    let message = mta.stored(&id);
    assert_eq!(
        routes(&message)[..2],
        [
            ("alice@[127.0.0.1]", &local("alice@tern.test")),
            ("alice@[IPv6:::1]", &local("alice@tern.test"))
        ]
    );
    assert_eq!(message.envelope.recipients.len(), 3);
    client.cmd("MAIL FROM:<x@ext.example>", "250");
    client.cmd("RCPT TO:<nobody@[127.0.0.1]>", "550 5.1.1");
    // Another IP is a relay attempt, refused as one; never a syntax error.
    client.cmd("RCPT TO:<alice@[192.0.2.1]>", "550 5.7.1");
    client.cmd("RCPT TO:<alice@[IPv6:2001:db8::1]>", "550 5.7.1");
    client.cmd("RCPT TO:<alice@[127.0.0.256]>", "501 5.1.3");
    client.cmd("QUIT", "221");
}

#[test]
fn an_alias_with_several_targets_reaches_every_mailbox() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.account("alice@tern.test", "pw", &[]);
    mta.account("bob@tern.test", "pw", &[]);
    mta.alias("team@tern.test", &["alice@tern.test", "bob@tern.test"]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    let id = client.send_message("x@ext.example", &["team@tern.test"], b"Subject: t\r\n\r\nb\r\n");
    let message = mta.stored(&id);
    let accounts: Vec<_> =
        message.envelope.recipients.iter().filter_map(|r| r.route.account()).collect();
    assert!(
        accounts.contains(&"alice@tern.test") && accounts.contains(&"bob@tern.test"),
        "mailboxes reached: {accounts:?}"
    );
}

#[test]
fn an_alias_to_a_remote_address_keeps_the_target_for_delivery() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    mta.alias("fwd@tern.test", &["friend@ext.example"]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    let id = client.send_message("x@ext.example", &["fwd@tern.test"], b"Subject: f\r\n\r\nb\r\n");
    let message = mta.stored(&id);
    assert!(
        routes(&message).contains(&("friend@ext.example", &Route::Remote)),
        "the forward target is not in the envelope: {:?}",
        message.envelope.recipients
    );
}

/// An account with a Maildir gets each local message as a file in `new/`, byte for byte the
/// message as stored (trace header included), written durably; `tmp/` is left empty.
#[test]
fn local_mail_is_written_to_the_accounts_maildir() {
    let mta = Mta::start(&config("", NO_TARPIT, ""));
    let maildir = support::temp_dir("maildir");
    let maildir_arg = maildir.to_str().expect("utf-8 path").to_string();
    mta.account("carol@tern.test", "pw", &["--maildir", &maildir_arg]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    let body =
        b"From: x@ext.example\r\nSubject: to the maildir\r\n\r\nline\r\n..dot\r\n\xc3\xa9\r\n";
    let id = client.send_message("x@ext.example", &["carol+tag@tern.test"], body);
    let stored = mta.stored(&id);
    let new = maildir.join("new");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let file = loop {
        if let Some(entry) = std::fs::read_dir(&new).ok().and_then(|mut d| d.next()) {
            break entry.expect("dir entry").path();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no Maildir file appeared in {}",
            new.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_bytes(
        &std::fs::read(&file).expect("read maildir file"),
        &stored.full_message(),
        "maildir copy",
    );
    assert!(stored.raw.ends_with(b"line\r\n.dot\r\n\xc3\xa9\r\n"));
    assert_eq!(std::fs::read_dir(maildir.join("tmp")).expect("tmp").count(), 0);
    assert!(maildir.join("cur").is_dir());
    // Written once: a later message adds exactly one more file.
    client.send_message("x@ext.example", &["carol@tern.test"], b"Subject: second\r\n\r\nx\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&new).expect("new").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "second Maildir file missing");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(&new).expect("new").count(), 2);
    let _ = std::fs::remove_dir_all(&maildir);
}

/// `curl` against the HTTP API: (status, body). `auth` is curl's `-u` or a header.
fn http(server: &TernServer, method: &str, path: &str, auth: &[&str]) -> (u16, String) {
    let url = format!("http://{}{path}", server.http);
    let mut args = vec!["-sS", "-X", method, "-w", "\n%{http_code}", url.as_str()];
    args.extend_from_slice(auth);
    let out = support::run("curl", &args, None);
    let (body, status) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (status.trim().parse().expect("status code"), body.to_string())
}

/// With HTTP authentication (always on in MTA mode off loopback; forced here on loopback),
/// an account sees and changes only its own mailbox, and the API key sees everything.
#[test]
fn http_api_requires_credentials_and_shows_each_account_its_own_mailbox() {
    let mta = Mta::start(&config("", NO_TARPIT, "[http]\nrequire_auth = true\napi_key = \"k3y\""));
    mta.account("alice@tern.test", "alice-pw", &[]);
    mta.account("bob@tern.test", "bob-pw", &[]);
    let mut client = greeted(mta.mx);
    client.cmd("EHLO client.example", "250");
    let for_alice = client.send_message(
        "x@ext.example",
        &["alice@tern.test"],
        b"Subject: for alice\r\n\r\na\r\n",
    );
    let for_bob =
        client.send_message("x@ext.example", &["bob@tern.test"], b"Subject: for bob\r\n\r\nb\r\n");
    let server = &mta.server;
    let alice: &[&str] = &["-u", "alice@tern.test:alice-pw"];
    let key: &[&str] = &["-H", "Authorization: Bearer k3y"];

    let (status, body) = http(server, "GET", "/api/v1/messages", &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"Error\""), "{body}");
    assert_eq!(http(server, "GET", "/api/v1/messages", &["-u", "alice@tern.test:wrong"]).0, 401);
    assert_eq!(
        http(server, "GET", "/api/v1/messages", &["-H", "Authorization: Bearer nope"]).0,
        401
    );
    assert_eq!(http(server, "GET", "/livez", &[]).0, 200, "health checks stay open");

    let (status, body) = http(server, "GET", "/api/v1/messages", alice);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&for_alice) && !body.contains(&for_bob), "{body}");
    assert_eq!(http(server, "GET", &format!("/api/v1/message/{for_bob}"), alice).0, 404);
    assert_eq!(http(server, "GET", &format!("/api/v1/message/{for_alice}"), alice).0, 200);
    let (_, body) = http(server, "GET", "/api/v1/search?query=subject:for", alice);
    assert!(body.contains("\"messages_count\":1"), "{body}");
    assert_eq!(http(server, "GET", "/metrics", alice).0, 403);
    assert_eq!(http(server, "POST", "/api/v1/send", &[alice, &["-d", "{}"]].concat()).0, 403);

    // An account tags only its own mail, and may not rename or delete a tag everywhere.
    let tag_both = format!(r#"{{"IDs": ["{for_alice}", "{for_bob}"], "Tags": ["mine"]}}"#);
    assert_eq!(
        http(server, "PUT", "/api/v1/tags", &[alice, &["-d", tag_both.as_str()]].concat()).0,
        200
    );
    let (_, body) = http(server, "GET", &format!("/api/v1/message/{for_bob}"), key);
    assert!(body.contains("\"Tags\":[]"), "bob's message must stay untagged: {body}");
    let (_, body) = http(server, "GET", &format!("/api/v1/message/{for_alice}"), key);
    assert!(body.contains("\"Tags\":[\"mine\"]"), "{body}");
    assert_eq!(http(server, "DELETE", "/api/v1/tags/mine", alice).0, 403);
    assert_eq!(
        http(server, "PUT", "/api/v1/tags/mine", &[alice, &["-d", r#"{"Name":"x"}"#]].concat()).0,
        403
    );

    // "Delete everything" from an account deletes its own mailbox only.
    assert_eq!(http(server, "DELETE", "/api/v1/messages", alice).0, 200);
    let (status, body) = http(server, "GET", "/api/v1/messages", key);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&for_bob) && !body.contains(&for_alice), "{body}");
    assert_eq!(http(server, "GET", "/metrics", key).0, 200);
}
