//! POP3 against real clients, over loopback: Python's `poplib` (STLS, `POP3_SSL`, USER/PASS,
//! AUTH PLAIN sent as raw commands, UIDL, TOP) and Debian's `fetchmail`, keeping and deleting.
//!
//! Every test starts its own `tern serve` with a `[pop3]` listener with STLS and one with
//! implicit TLS, and the self-signed certificate Tern generates. Messages go in over SMTP;
//! what POP3 shows is compared with the store and the HTTP API: sizes in LIST against the
//! octets RETR sends, deletions at QUIT (and none when the client drops), the snapshot taken at
//! login, one session per maildrop, credentials refused before TLS, the `-ERR` lines bad
//! commands earn, the failed-login lockout, and shutdown (`-ERR [SYS/TEMP]`, nothing deleted,
//! exit 0). In the mail server each account sees only its own mailbox.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Client, MtaListener, TernServer, free_port, is_tern_banner, python, run, text};

const LOGIN: &str = "dev";
const PASSWORD: &str = "catch me if you can";

/// A catcher with both POP3 listeners.
struct Catcher {
    server: TernServer,
    /// POP3 with STLS.
    pop3: SocketAddr,
    /// POP3 with implicit TLS.
    pop3s: SocketAddr,
}

fn pop3_table(extra: &str) -> (String, SocketAddr, SocketAddr) {
    let pop3: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let pop3s: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let table = format!(
        "[pop3]\nlisten = [\"{pop3}\"]\nlisten_tls = [\"{pop3s}\"]\n\
         catcher_login = \"{LOGIN}\"\ncatcher_password = \"{PASSWORD}\"\n{extra}\n"
    );
    (table, pop3, pop3s)
}

impl Catcher {
    fn start() -> Catcher {
        Catcher::start_with("")
    }

    fn start_with(extra: &str) -> Catcher {
        let (table, pop3, pop3s) = pop3_table(extra);
        let server = TernServer::start(&table);
        Catcher { server, pop3, pop3s }
    }

    /// Sends a message over SMTP and returns its id.
    fn send(&self, subject: &str, body: &str) -> String {
        let mut c = Client::greeted(self.server.addr);
        c.cmd("EHLO client.test", "250");
        let message =
            format!("From: a@client.test\r\nTo: b@tern.test\r\nSubject: {subject}\r\n\r\n{body}");
        c.send_message("a@client.test", &["b@tern.test"], message.as_bytes())
    }

    /// The ids the HTTP API lists.
    fn api_ids(&self) -> Vec<String> {
        api_ids(self.server.http)
    }
}

fn api_ids(http: SocketAddr) -> Vec<String> {
    let url = format!("http://{http}/api/v1/messages?limit=1000");
    let body: Value =
        serde_json::from_str(&run("curl", &["-sS", "--fail", &url], None)).expect("json");
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| text(m, "ID").to_string())
        .collect()
}

/// Python: log in over STLS with USER/PASS, then report STAT, LIST, UIDL, every RETR (octets
/// and bytes) and TOP 1 0.
const POPLIB_READ: &str = r#"
import poplib
port, login, password = int(ARGS[0]), ARGS[1], ARGS[2]
pop = poplib.POP3("127.0.0.1", port, timeout=30)
welcome = pop.getwelcome().decode()
capa_before = sorted(pop.capa().keys())
pop.stls(context=tls_context())
capa_after = sorted(pop.capa().keys())
pop.user(login)
logged_in = pop.pass_(password).decode()
count, octets = pop.stat()
listing = [line.decode() for line in pop.list()[1]]
uidl = [line.decode() for line in pop.uidl()[1]]
retrieved = []
for n in range(1, count + 1):
    resp, lines, got = pop.retr(n)
    retrieved.append({"resp": resp.decode(), "octets": got, "text": "".join(l.decode() + "\r\n" for l in lines)})
top = [l.decode() for l in pop.top(1, 0)[1]] if count else []
pop.quit()
emit(welcome=welcome, capa_before=capa_before, capa_after=capa_after, logged_in=logged_in,
     count=count, octets=octets, listing=listing, uidl=uidl, retrieved=retrieved, top=top)
"#;

#[test]
fn poplib_over_stls_lists_exact_sizes_and_retrieves_stuffed_lines() {
    let c = Catcher::start();
    let first = c.send("one", "hello\r\n..a line that starts with a dot\r\n");
    let second = c.send("two", "second body\r\n");
    // BDAT carries bare LF line ends as they are: POP3 sends them as CRLF, and counts them so.
    let mut smtp = Client::greeted(c.server.addr);
    smtp.cmd("EHLO client.test", "250");
    smtp.cmd("MAIL FROM:<a@client.test>", "250");
    smtp.cmd("RCPT TO:<b@tern.test>", "250");
    let lf = b"Subject: three\n\n.dot\nlast line without end";
    smtp.send(format!("BDAT {} LAST\r\n", lf.len()).as_bytes());
    smtp.send(lf);
    let third = support::queue_id(&smtp.reply()).expect("queued");

    let r = python(POPLIB_READ, &[&c.pop3.port().to_string(), LOGIN, PASSWORD]);
    assert_eq!(text(&r, "welcome"), "+OK tern.test POP3 Tern ready");
    let capa = |key: &str| {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(capa("capa_before").contains(&"STLS".to_string()), "{r}");
    assert!(!capa("capa_before").contains(&"USER".to_string()), "no credentials before TLS: {r}");
    assert!(!capa("capa_after").contains(&"STLS".to_string()), "{r}");
    for key in ["USER", "SASL", "TOP", "UIDL", "RESP-CODES"] {
        assert!(capa("capa_after").contains(&key.to_string()), "{key} missing: {r}");
    }
    assert_eq!(r["count"], 3, "{r}");
    let listing: Vec<&str> =
        r["listing"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let uidl: Vec<&str> =
        r["uidl"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(uidl, [format!("1 {first}"), format!("2 {second}"), format!("3 {third}")]);
    let retrieved = r["retrieved"].as_array().unwrap();
    let mut total = 0;
    for (i, got) in retrieved.iter().enumerate() {
        let size: u64 = listing[i].split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(got["octets"].as_u64(), Some(size), "LIST size vs RETR octets: {got}");
        assert_eq!(text(got, "resp"), format!("+OK {size} octets"));
        total += size;
    }
    assert_eq!(r["octets"].as_u64(), Some(total));
    // What the client keeps is the stored message (trace header first), unstuffed.
    let stored = c.server.message(&first).expect("stored").full_message();
    assert_eq!(text(&retrieved[0], "text").as_bytes(), stored.as_slice());
    let third_text = text(&retrieved[2], "text");
    assert!(
        third_text.ends_with("Subject: three\r\n\r\n.dot\r\nlast line without end\r\n"),
        "{third_text:?}"
    );
    let top: Vec<&str> = r["top"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(top.contains(&"Subject: one"), "{top:?}");
    assert_eq!(top.last(), Some(&""), "TOP 1 0 ends with the blank line: {top:?}");
    assert_eq!(c.api_ids().len(), 3, "reading deletes nothing");
    assert!(c.server.stderr().contains("POP3 session ended"), "one log line per session");
}

/// Python: log in with AUTH PLAIN as raw commands over `POP3_SSL`, with an initial response
/// (`initial` = 1) or after the `+ ` continuation.
const POPLIB_AUTH_PLAIN: &str = r#"
import poplib
port, login, password, initial = int(ARGS[0]), ARGS[1], ARGS[2], ARGS[3] == "1"
pop = poplib.POP3_SSL("127.0.0.1", port, timeout=30, context=tls_context())
token = b64("\0" + login + "\0" + password)
if initial:
    answer = pop._shortcmd("AUTH PLAIN " + token).decode()
    continuation = None
else:
    continuation = pop._shortcmd("AUTH PLAIN").decode()
    answer = pop._shortcmd(token).decode()
count, _ = pop.stat()
pop.quit()
emit(answer=answer, continuation=continuation, count=count)
"#;

#[test]
fn pop3_ssl_with_auth_plain_initial_response_and_continuation() {
    let c = Catcher::start();
    c.send("one", "hello\r\n");
    let port = c.pop3s.port().to_string();
    let r = python(POPLIB_AUTH_PLAIN, &[&port, LOGIN, PASSWORD, "1"]);
    assert!(text(&r, "answer").starts_with("+OK dev has 1 messages ("), "{r}");
    assert_eq!(r["count"], 1);
    let r = python(POPLIB_AUTH_PLAIN, &[&port, LOGIN, PASSWORD, "0"]);
    assert_eq!(text(&r, "continuation"), "+ ", "{r}");
    assert!(text(&r, "answer").starts_with("+OK dev has 1 messages ("), "{r}");
}

/// Python: a raw session; ARGS[1] is a JSON list of steps: `["send", line]` answers one line,
/// `["multi", line]` a multi-line answer, `["stls"]` switches to TLS, `["raw", bytes]` sends
/// without reading, `["rawcmd", bytes]` sends and reads one line. Emits every answer.
const RAW_SESSION: &str = r#"
import poplib
port, steps = int(ARGS[0]), json.loads(ARGS[1])
tls = len(ARGS) > 2 and ARGS[2] == "tls"
raw = Raw(port, tls=tls)
answers = [raw.line()]
for step in steps:
    if step[0] == "stls":
        answers.append(raw.cmd("STLS"))
        raw.starttls()
    elif step[0] == "raw":
        raw.send(step[1].encode("latin-1"))
    elif step[0] == "rawcmd":
        raw.send(step[1].encode("latin-1"))
        answers.append(raw.line())
    elif step[0] == "multi":
        lines = [raw.cmd(step[1])]
        while lines[-1] != "." and lines[0].startswith("+OK"):
            lines.append(raw.line())
        answers.append("\n".join(lines))
    else:
        answers.append(raw.cmd(step[1]))
emit(answers=answers)
"#;

/// Runs [`RAW_SESSION`] and returns the answers after the greeting.
fn raw_session(port: u16, steps: &[&[&str]], tls: bool) -> Vec<String> {
    let steps = serde_json::to_string(steps).expect("json");
    let mode = if tls { "tls" } else { "plain" };
    let r = python(RAW_SESSION, &[&port.to_string(), &steps, mode]);
    let answers: Vec<String> =
        r["answers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(answers[0].starts_with("+OK tern.test POP3"), "{answers:?}");
    answers[1..].to_vec()
}

#[test]
fn the_listening_log_lines_print_plain_addresses() {
    let c = Catcher::start();
    let want = [
        format!("POP3 listening addr={} implicit_tls=false", c.pop3),
        format!("POP3 listening addr={} implicit_tls=true", c.pop3s),
    ];
    // The POP3 listeners may log just after SMTP answers: wait a bounded while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = c.server.stderr();
    while !want.iter().all(|w| log.contains(w)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = c.server.stderr();
    }
    for w in &want {
        assert!(log.contains(w), "wanted {w:?} in:\n{log}");
    }
}

#[test]
fn credentials_are_refused_before_stls_and_pipelined_commands_after_it_are_dropped() {
    let c = Catcher::start();
    let plain = format!("\0{LOGIN}\0{PASSWORD}");
    let token = base64_of(plain.as_bytes());
    let auth = format!("AUTH PLAIN {token}");
    let answers = raw_session(
        c.pop3.port(),
        &[
            &["send", "USER dev"],
            &["send", &format!("PASS {PASSWORD}")],
            &["send", &auth],
            &["send", "STAT"],
            // STLS with a command behind it in the same write: the USER must never be obeyed.
            &["raw", "STLS\r\nUSER injected\r\n"],
        ],
        false,
    );
    let refusal = "-ERR credentials are accepted only over TLS: send STLS first";
    assert_eq!(answers[..4], [refusal, refusal, refusal, "-ERR STAT is only valid after login"]);
    let answers = raw_session(
        c.pop3.port(),
        &[&["stls"], &["send", "STLS"], &["send", &format!("PASS {PASSWORD}")], &["send", &auth]],
        false,
    );
    assert_eq!(answers[0], "+OK begin TLS negotiation");
    assert_eq!(answers[1], "-ERR TLS is already active");
    assert_eq!(answers[2], "-ERR send USER first");
    assert!(answers[3].starts_with("+OK dev has 0 messages"), "{answers:?}");
    // The injected USER: had it been obeyed, PASS would log in rather than ask for USER.
    let injected = python(
        r#"
raw = Raw(int(ARGS[0]))
raw.line()
raw.send(b"STLS\r\nUSER dev\r\n")
first = raw.line()
raw.starttls()
emit(first=first, after=raw.cmd("PASS " + ARGS[1]))
"#,
        &[&c.pop3.port().to_string(), PASSWORD],
    );
    assert_eq!(text(&injected, "first"), "+OK begin TLS negotiation");
    assert_eq!(text(&injected, "after"), "-ERR send USER first", "{injected}");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn bad_commands_get_precise_errors() {
    let c = Catcher::start_with("max_bad_commands = 100");
    c.send("one", "hello\r\n");
    let long = format!("NOOP {}", "x".repeat(3000));
    let answers = raw_session(
        c.pop3s.port(),
        &[
            &["send", "FROB"],
            &["send", ""],
            &["send", "APOP dev 0123456789abcdef0123456789abcdef"],
            &["send", "RETR 1"],
            &["send", "PASS x"],
            &["send", "USER dev"],
            &["send", "PASS wrong"],
            &["send", "AUTH CRAM-MD5"],
            &["send", "AUTH PLAIN !!!"],
            &["send", "AUTH PLAIN *"],
            &["multi", "AUTH"],
            &["send", &long],
            &["rawcmd", "NOOP\u{0}\r\n"],
            &["send", "USER dev"],
            &["send", &format!("PASS {PASSWORD}")],
            &["send", "RETR"],
            &["send", "RETR x"],
            &["send", "RETR 2"],
            &["send", "RETR 0"],
            &["send", "TOP 1"],
            &["send", "LIST 1 2"],
            &["send", "DELE 1"],
            &["send", "DELE 1"],
            &["send", "LIST 1"],
            &["send", "USER dev"],
            &["send", "STLS"],
            &["send", "NOOP"],
        ],
        true,
    );
    let want = [
        "-ERR unknown command \"FROB\"",
        "-ERR empty command",
        "-ERR APOP is not supported; use USER and PASS, or AUTH PLAIN",
        "-ERR RETR is only valid after login",
        "-ERR send USER first",
        "+OK send PASS",
        "-ERR [AUTH] invalid login or password",
        "-ERR unsupported SASL mechanism \"CRAM-MD5\"; PLAIN is offered",
        "-ERR invalid base64 in the response",
        "-ERR authentication cancelled",
        "+OK SASL mechanisms follow\nPLAIN\n.",
        "-ERR command line too long (at most 2048 bytes)",
        "-ERR command contains control characters or invalid UTF-8",
        "+OK send PASS",
        "+OK dev has 1 messages (",
        "-ERR RETR needs a message number",
        "-ERR RETR: \"x\" is not a valid number",
        "-ERR no such message: 2 (the maildrop has 1)",
        "-ERR no such message: 0 (the maildrop has 1)",
        "-ERR TOP needs a message number and a line count",
        "-ERR too many arguments to LIST",
        "+OK message 1 marked for deletion",
        "-ERR message 1 is marked as deleted",
        "-ERR message 1 is marked as deleted",
        "-ERR USER is not valid after login",
        "-ERR STLS is not valid after login",
        "+OK ",
    ];
    assert_eq!(answers.len(), want.len(), "{answers:#?}");
    for (got, want) in answers.iter().zip(want) {
        assert!(got.starts_with(want), "got {got:?}, wanted {want:?}");
    }
    assert_eq!(c.api_ids().len(), 1, "the session never said QUIT: nothing deleted");
}

/// Python: log in over POP3_SSL with USER/PASS, run `steps` (`["dele", n]`, `["rset"]`,
/// `["stat"]`) and end with QUIT (`end` = "quit") or by closing the socket ("drop").
const POPLIB_STEPS: &str = r#"
import poplib
port, login, password, steps, end = int(ARGS[0]), ARGS[1], ARGS[2], json.loads(ARGS[3]), ARGS[4]
pop = poplib.POP3_SSL("127.0.0.1", port, timeout=30, context=tls_context())
pop.user(login)
answers = [pop.pass_(password).decode()]
for step in steps:
    if step[0] == "dele":
        answers.append(pop.dele(step[1]).decode())
    elif step[0] == "rset":
        answers.append(pop.rset().decode())
    elif step[0] == "stat":
        answers.append("%d %d" % pop.stat())
    elif step[0] == "uidl":
        answers.append(" ".join(l.decode() for l in pop.uidl()[1]))
if end == "quit":
    answers.append(pop.quit().decode())
else:
    pop.sock.close()
emit(answers=answers)
"#;

fn poplib_steps(port: u16, login: &str, password: &str, steps: &str, end: &str) -> Vec<String> {
    let r = python(POPLIB_STEPS, &[&port.to_string(), login, password, steps, end]);
    r["answers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// Polls until `done` holds (the server finishes a dropped session on its own time).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A Python script (after the prelude) that runs beside the test: it prints marker lines the
/// test waits for, reads lines the test says, and ends with its `RESULT` line.
struct Script {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Script {
    fn start(script: &str, args: &[&str]) -> Script {
        let program = format!("{}\n{script}", support::PY_PRELUDE);
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(&program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Script { child, out }
    }

    fn wait_for(&mut self, marker: &str) {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut line).unwrap();
        assert_eq!(line.trim(), marker);
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        std::io::Write::write_all(stdin, format!("{line}\n").as_bytes()).unwrap();
    }

    fn result(mut self) -> Value {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.out, &mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{rest}");
        let json = rest.lines().find_map(|l| l.strip_prefix("RESULT ")).expect(&rest);
        serde_json::from_str(json).unwrap()
    }
}

#[test]
fn dele_deletes_only_at_quit_and_a_dropped_session_deletes_nothing() {
    let c = Catcher::start();
    let ids: Vec<String> = (1..=3).map(|i| c.send(&format!("m{i}"), "body\r\n")).collect();
    let port = c.pop3s.port();

    // Marked, then the client hangs up: nothing is deleted.
    let answers = poplib_steps(port, LOGIN, PASSWORD, r#"[["dele", 1], ["dele", 2]]"#, "drop");
    assert_eq!(answers[1], "+OK message 1 marked for deletion");
    eventually("the dropped session to end", || {
        c.server.stderr().matches("POP3 session ended").count() == 1
    });
    assert_eq!(c.api_ids().len(), 3, "a dropped session deleted something");

    // RSET unmarks: QUIT then deletes nothing either.
    let answers =
        poplib_steps(port, LOGIN, PASSWORD, r#"[["dele", 1], ["rset"], ["stat"]]"#, "quit");
    assert!(answers[2].starts_with("+OK maildrop has 3 messages"), "{answers:?}");
    assert_eq!(answers[4], "+OK bye");
    assert_eq!(c.api_ids().len(), 3);

    // DELE and QUIT: gone from the store and the HTTP API, the others kept.
    let answers = poplib_steps(port, LOGIN, PASSWORD, r#"[["dele", 2], ["stat"]]"#, "quit");
    assert_eq!(
        answers[2].split(' ').next(),
        Some("2"),
        "STAT leaves marked messages out: {answers:?}"
    );
    assert_eq!(answers[3], "+OK bye (1 messages deleted)");
    let left = c.api_ids();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&ids[1]), "{left:?}");
    let url = format!("http://{}/api/v1/message/{}", c.server.http, ids[1]);
    let status = run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url], None);
    assert_eq!(status, "404");
    // The next session numbers what is left from 1 again.
    let answers = poplib_steps(port, LOGIN, PASSWORD, r#"[["uidl"]]"#, "quit");
    assert_eq!(answers[1], format!("1 {} 2 {}", ids[0], ids[2]));
}

/// Python: two sessions at once; the second login must get `[IN-USE]`, and succeed once the
/// first has quit. Also: mail arriving during a session is not in its snapshot.
const POPLIB_IN_USE: &str = r#"
import poplib, subprocess
port, login, password = int(ARGS[0]), ARGS[1], ARGS[2]
def session():
    pop = poplib.POP3_SSL("127.0.0.1", port, timeout=30, context=tls_context())
    pop.user(login)
    return pop
first = session()
first.pass_(password)
before = first.stat()[0]
print("SEND", flush=True)
sys.stdin.readline()
after = first.stat()[0]
second = session()
try:
    second.pass_(password)
    refused = None
except poplib.error_proto as e:
    refused = e.args[0].decode()
first.quit()
third = session()
third.pass_(password)
fresh = third.stat()[0]
third.quit()
emit(before=before, after=after, refused=refused, fresh=fresh)
"#;

#[test]
fn one_session_per_maildrop_and_the_maildrop_is_a_snapshot() {
    let c = Catcher::start();
    c.send("one", "hello\r\n");
    let mut script = Script::start(POPLIB_IN_USE, &[&c.pop3s.port().to_string(), LOGIN, PASSWORD]);
    script.wait_for("SEND");
    c.send("two", "arrived during the session\r\n");
    script.say("go");
    let r = script.result();
    assert_eq!((r["before"].as_u64(), r["after"].as_u64()), (Some(1), Some(1)), "{r}");
    assert_eq!(text(&r, "refused"), "-ERR [IN-USE] the maildrop is open in another session");
    assert_eq!(r["fresh"], 2, "{r}");
}

#[test]
fn the_mail_server_shows_each_account_its_own_mailbox() {
    let (table, pop3, pop3s) = pop3_table("");
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    let toml = format!("[relay]\nlocal_domains = [\"tern.test\"]\n\n{table}");
    let (server, _) = TernServer::start_mta(&listeners, &toml, is_tern_banner);
    for (login, password) in [("alice@tern.test", "alice pw"), ("bob@tern.test", "bob pw")] {
        server.add_account(login, password);
    }
    let mut smtp = Client::greeted(server.addr);
    smtp.cmd("EHLO client.test", "250");
    let to_alice = smtp.send_message(
        "x@client.test",
        &["alice@tern.test"],
        b"Subject: a\r\n\r\nfor alice\r\n",
    );
    let to_bob =
        smtp.send_message("x@client.test", &["bob@tern.test"], b"Subject: b\r\n\r\nfor bob\r\n");
    smtp.cmd("QUIT", "221");

    let answers = poplib_steps(
        pop3s.port(),
        "alice@tern.test",
        "alice pw",
        r#"[["uidl"], ["dele", 1]]"#,
        "quit",
    );
    assert!(answers[0].starts_with("+OK alice@tern.test has 1 messages"), "{answers:?}");
    assert_eq!(answers[1], format!("1 {to_alice}"), "alice sees only her mail");
    assert_eq!(answers[3], "+OK bye (1 messages deleted)");
    assert_eq!(api_ids(server.http), vec![to_bob.clone()]);
    let answers = poplib_steps(pop3s.port(), "bob@tern.test", "bob pw", r#"[["uidl"]]"#, "quit");
    assert_eq!(answers[1], format!("1 {to_bob}"));
    // A wrong password, and the catcher's login means nothing here.
    let r = python(
        r#"
import poplib
pop = poplib.POP3_SSL("127.0.0.1", int(ARGS[0]), timeout=30, context=tls_context())
out = []
for login, password in [("alice@tern.test", "bob pw"), (ARGS[1], ARGS[2])]:
    pop.user(login)
    try:
        out.append(pop.pass_(password).decode())
    except poplib.error_proto as e:
        out.append(e.args[0].decode())
emit(out=out)
"#,
        &[&pop3s.port().to_string(), LOGIN, PASSWORD],
    );
    assert_eq!(
        r["out"],
        serde_json::json!([
            "-ERR [AUTH] invalid login or password",
            "-ERR [AUTH] invalid login or password"
        ])
    );
    let _ = pop3;
}

/// The `fetchmail` run control: the catcher's login over STLS, every message handed to an
/// MDA that writes one file each, kept or deleted.
fn fetchmail(port: u16, dir: &Path, keep: bool) -> String {
    let mda = dir.join("deliver.sh");
    std::fs::write(
        &mda,
        "#!/bin/sh\ncat > \"$1/$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')\".eml\n",
    )
    .unwrap();
    run("chmod", &["755", mda.to_str().unwrap()], None);
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let rc = dir.join("fetchmailrc");
    let keep = if keep { "keep" } else { "nokeep" };
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 protocol pop3 port {port}\n  user \"{LOGIN}\" there with password \"{PASSWORD}\"\n  \
             sslproto 'TLS1.2+' no sslcertck fetchall {keep}\n  mda \"{} {}\"\n",
            mda.display(),
            mail.display()
        ),
    )
    .unwrap();
    run("chmod", &["600", rc.to_str().unwrap()], None);
    let id_file = dir.join("fetchids");
    let out = Command::new("fetchmail")
        .args(["--nosyslog", "--nodetach", "-v", "-f"])
        .arg(&rc)
        .arg("--idfile")
        .arg(&id_file)
        .env("HOME", dir)
        .output()
        .expect("fetchmail is not installed; scripts/test installs it");
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "fetchmail failed:\n{log}");
    log
}

fn fetched(dir: &Path) -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(dir.join("mail"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    texts.sort();
    texts
}

#[test]
fn fetchmail_collects_over_stls_keeping_then_deleting() {
    let c = Catcher::start();
    for i in 1..=3 {
        // SMTP dot-stuffed: stored as ".dotted", which POP3 must stuff again and fetchmail unstuff.
        c.send(&format!("fetch {i}"), &format!("body {i}\r\n..dotted\r\n"));
    }
    let dir = support::temp_dir("fetchmail");
    let log = fetchmail(c.pop3.port(), &dir, true);
    assert!(log.contains("STLS"), "fetchmail did not use STLS:\n{log}");
    let texts = fetched(&dir);
    assert_eq!(texts.len(), 3, "{log}");
    for (i, text) in texts.iter().enumerate() {
        assert!(text.contains(&format!("Subject: fetch {}", i + 1)), "{text}");
        assert!(
            text.contains("\n.dotted\n") || text.contains("\n.dotted\r\n"),
            "unstuffed: {text:?}"
        );
    }
    assert_eq!(c.api_ids().len(), 3, "keep leaves the messages on the server");

    std::fs::remove_dir_all(dir.join("mail")).unwrap();
    let log = fetchmail(c.pop3.port(), &dir, false);
    assert_eq!(fetched(&dir).len(), 3, "{log}");
    assert!(c.api_ids().is_empty(), "nokeep deletes them:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_logins_lock_the_client_out_as_smtp_auth_does() {
    let c = Catcher::start_with("[limits]\nauth_max_failures = 2\nauth_delay_per_failure_ms = 0");
    let pass = format!("PASS {PASSWORD}");
    let answers = raw_session(
        c.pop3s.port(),
        &[
            &["send", "USER dev"],
            &["send", "PASS wrong"],
            &["send", "USER dev"],
            &["send", "PASS wrong again"],
            &["send", "USER dev"],
            &["send", &pass],
        ],
        true,
    );
    assert_eq!(answers[1], "-ERR [AUTH] invalid login or password");
    assert_eq!(answers[3], "-ERR [AUTH] invalid login or password");
    assert_eq!(answers[5], "-ERR [SYS/TEMP] too many failed logins; try later");
    // The lockout outlives the connection: the right password is refused too.
    let answers = raw_session(c.pop3s.port(), &[&["send", "USER dev"], &["send", &pass]], true);
    assert_eq!(answers[1], "-ERR [SYS/TEMP] too many failed logins; try later");
}

/// Python: log in, mark message 1, say READY, then wait for what the server says unasked.
const POPLIB_AT_SHUTDOWN: &str = r#"
import poplib
pop = poplib.POP3_SSL("127.0.0.1", int(ARGS[0]), timeout=30, context=tls_context())
pop.user(ARGS[1])
pop.pass_(ARGS[2])
pop.dele(1)
print("READY", flush=True)
emit(unasked=pop.file.readline().decode().strip(), then=pop.file.readline().decode())
"#;

#[test]
fn shutdown_ends_sessions_with_sys_temp_and_deletes_nothing() {
    let mut c = Catcher::start();
    c.send("one", "hello\r\n");
    c.send("two", "hello\r\n");
    let mut script =
        Script::start(POPLIB_AT_SHUTDOWN, &[&c.pop3s.port().to_string(), LOGIN, PASSWORD]);
    script.wait_for("READY");
    let metrics = run("curl", &["-sS", &format!("http://{}/metrics", c.server.http)], None);
    assert!(metrics.contains("tern_pop3_sessions_total 1"), "{metrics}");
    assert!(metrics.contains("tern_pop3_logins_total{result=\"ok\"} 1"), "{metrics}");
    let status = c.server.terminate();
    assert!(status.success(), "tern exited with {status}");
    let r = script.result();
    assert_eq!(text(&r, "unasked"), "-ERR [SYS/TEMP] server shutting down; nothing was deleted");
    assert_eq!(text(&r, "then"), "", "then the connection is closed");
    assert_eq!(c.server.count(), 2, "the marked message was kept");
}

/// The subject `openssl s_client -starttls pop3` sees on `addr`.
fn certificate_subject(addr: SocketAddr) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-starttls", "pop3", "-connect", &addr.to_string(), "-brief"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl is not installed; scripts/test installs it");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    let subject = text.lines().find(|l| l.starts_with("Peer certificate:"));
    subject.unwrap_or_else(|| panic!("no certificate in:\n{text}")).to_string()
}

#[test]
fn stls_serves_the_configured_certificate_and_its_reload() {
    let dir = support::temp_dir("pop3-tls");
    let files = support::peers::self_signed_cert(&dir, "one.test");
    let c = Catcher::start_with(&format!(
        "[tls]\ncert_path = {:?}\nkey_path = {:?}",
        files.cert.display().to_string(),
        files.key.display().to_string()
    ));
    assert!(certificate_subject(c.pop3).contains("CN = one.test"));
    // A renewed certificate in the same files, then SIGHUP: new handshakes get it.
    let renewed = support::temp_dir("pop3-tls-renewed");
    let new = support::peers::self_signed_cert(&renewed, "two.test");
    std::fs::copy(&new.key, &files.key).unwrap();
    std::fs::copy(&new.cert, &files.cert).unwrap();
    run("kill", &["-HUP", &c.server.child.id().to_string()], None);
    eventually("the renewed certificate", || certificate_subject(c.pop3).contains("CN = two.test"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&renewed);
}
