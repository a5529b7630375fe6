//! Queue management against the real `tern serve`: the HTTP API (`/api/v1/queue`), the
//! `tern queue` command line and Mailpit's release of a captured message.
//!
//! MTA servers here relay for the trusted loopback network, and their outbound DNS points at
//! a closed loopback port (the test support's default), so relayed mail stays queued with a
//! DNS error after each attempt: the queue then has entries with attempts and an error text
//! that the API and the CLI must show and change. The catcher's release goes to a smarthost
//! played by a small SMTP sink in this file, which records what it receives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

#[allow(dead_code)]
#[path = "api/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "api/schema.rs"]
mod schema;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, MtaListener, TernServer, is_tern_banner};

const API_KEY: &str = "queue-admin-key";
/// How long the scheduler may take to make an attempt (DNS to a closed port fails at once, or
/// after the configured one-second timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An MTA that relays for 127.0.0.0/8 and wants the admin key for its API.
fn start_mta() -> TernServer {
    let config = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n\
         [http]\nrequire_auth = true\napi_key = \"{API_KEY}\"\n"
    );
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    TernServer::start_mta(&listeners, &config, is_tern_banner).0
}

/// Relays one message from the trusted network; returns its queue id.
fn relay(server: &TernServer, to: &[&str], subject: &str) -> String {
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO app.internal", "250");
    let body = format!("From: app@internal.example\r\nSubject: {subject}\r\n\r\nHello.\r\n");
    let id = client.send_message("app@internal.example", to, body.as_bytes());
    client.cmd("QUIT", "221");
    id
}

fn admin() -> (&'static str, String) {
    ("Authorization", format!("Bearer {API_KEY}"))
}

/// `GET path` as the admin; asserts 200 and returns the JSON.
fn get(server: &TernServer, path: &str) -> Value {
    let (name, value) = admin();
    http::request(server.http, "GET", path, &[(name, &value)], b"").json_with(200)
}

/// A request with a JSON body as the admin.
fn send(server: &TernServer, method: &str, path: &str, body: &Value) -> http::Response {
    let (name, value) = admin();
    let bytes = body.to_string();
    let headers = [(name, value.as_str()), ("Content-Type", "application/json")];
    http::request(server.http, method, path, &headers, bytes.as_bytes())
}

fn entries(value: &Value) -> &Vec<Value> {
    value["Entries"].as_array().unwrap_or_else(|| panic!("no Entries in {value}"))
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The queue once every entry has been attempted at least `attempts` times.
fn attempted(server: &TernServer, attempts: u64) -> Value {
    wait_for(&format!("every entry to have {attempts}+ attempts"), ATTEMPT_TIMEOUT, || {
        let list = get(server, "/api/v1/queue");
        let done = entries(&list).iter().all(|e| {
            e["Attempts"].as_u64().is_some_and(|n| n >= attempts) && e["LastError"].is_string()
        });
        (done && !entries(&list).is_empty()).then_some(list)
    })
}

/// `(recipient, state, attempts)` of the entries of message `id`.
fn entries_of(server: &TernServer, id: &str) -> Vec<(String, String, u64)> {
    let shown = get(server, &format!("/api/v1/queue/{id}"));
    entries(&shown)
        .iter()
        .map(|e| {
            let text = |key: &str| e[key].as_str().unwrap_or_default().to_string();
            (text("Recipient"), text("State"), e["Attempts"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// Runs `tern queue ARGS` with no API key or config from the environment.
fn tern_queue(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("queue")
        .args(args)
        .env_remove("TERN_API_KEY")
        .env_remove("TERN_CONFIG")
        .output()
        .expect("run tern queue")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `tern queue ARGS --config SERVER_CONFIG`, which must succeed; returns stdout.
fn cli_ok(server: &TernServer, args: &[&str]) -> String {
    let config = server.data.join("tern.toml");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", config.to_str().expect("utf-8 path")]);
    let output = tern_queue(&all);
    assert!(
        output.status.success(),
        "tern queue {args:?} failed:\n{}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// `tern queue ARGS`, which must fail with exit code 1; returns stderr.
fn cli_fails(args: &[&str]) -> String {
    let output = tern_queue(args);
    assert_eq!(output.status.code(), Some(1), "tern queue {args:?}:\n{}", stdout(&output));
    stderr(&output)
}

// ---------------------------------------------------------------------------------------------
// The HTTP API
// ---------------------------------------------------------------------------------------------

#[test]
fn deferred_mail_is_listed_with_its_error_and_commands_change_it() {
    let server = start_mta();
    let first = relay(&server, &["bob@remote.example", "carol@remote.example"], "first");
    let second = relay(&server, &["dave@faraway.example"], "second");

    let list = attempted(&server, 1);
    schema::tern().check("Queue", &list);
    assert_eq!(
        (&list["Total"], &list["Queued"], &list["Messages"]),
        (&json!(3), &json!(3), &json!(2))
    );
    let bob = entries(&list)
        .iter()
        .find(|e| e["Recipient"] == "bob@remote.example")
        .unwrap_or_else(|| panic!("no entry for bob: {list}"));
    assert_eq!(bob["MessageID"], first);
    assert_eq!(bob["Sender"], "app@internal.example");
    assert_eq!(bob["Domain"], "remote.example");
    assert!(bob["LastAttempt"].is_string(), "{bob}");
    let error = bob["LastError"].as_str().unwrap_or_default();
    assert!(error.to_lowercase().contains("dns") || error.contains("remote.example"), "{error}");

    let shown = get(&server, &format!("/api/v1/queue/{first}"));
    schema::tern().check("QueuedMessage", &shown);
    assert_eq!(
        (&shown["From"], &shown["Subject"]),
        (&json!("app@internal.example"), &json!("first"))
    );
    assert_eq!(entries(&shown).len(), 2);

    // Hold: no more attempts, even when retried.
    let held = send(&server, "POST", "/api/v1/queue/hold", &json!({"IDs": [first]}));
    assert_eq!(held.json_with(200), json!({"Messages": 1}));
    let held_attempts = entries_of(&server, &first);
    assert!(held_attempts.iter().all(|(_, state, _)| state == "held"), "{held_attempts:?}");
    let retried = send(&server, "POST", "/api/v1/queue/retry", &json!({"All": true}));
    assert_eq!(retried.json_with(200), json!({"Messages": 2}));
    let before = entries_of(&server, &second)[0].2;
    wait_for("the retried message to be attempted again", ATTEMPT_TIMEOUT, || {
        (entries_of(&server, &second)[0].2 > before).then_some(())
    });
    assert_eq!(entries_of(&server, &first), held_attempts, "held entries are never attempted");
    let list = get(&server, "/api/v1/queue?state=held");
    assert_eq!((&list["Total"], &list["Held"]), (&json!(2), &json!(2)));

    // Release: queued again and attempted at once.
    let released = send(&server, "POST", "/api/v1/queue/release", &json!({"IDs": [first]}));
    assert_eq!(released.json_with(200), json!({"Messages": 1}));
    wait_for("the released message to be attempted", ATTEMPT_TIMEOUT, || {
        let now = entries_of(&server, &first);
        let again = now.iter().zip(&held_attempts).all(|(n, h)| n.1 == "queued" && n.2 > h.2);
        again.then_some(())
    });

    // Delete: the entries go, and the message with them (it had no local copy).
    let deleted = send(&server, "DELETE", "/api/v1/queue", &json!({"IDs": [second]}));
    assert_eq!(deleted.json_with(200), json!({"Messages": 1}));
    let (name, value) = admin();
    let gone = http::request(
        server.http,
        "GET",
        &format!("/api/v1/queue/{second}"),
        &[(name, &value)],
        b"",
    );
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert!(server.message(&second).is_none(), "a deleted remote-only message leaves the store");
    assert_eq!(get(&server, "/api/v1/queue")["Total"], 2);

    // Bad requests are JSON errors; an unauthenticated one is refused.
    let both = send(&server, "POST", "/api/v1/queue/hold", &json!({"IDs": [first], "All": true}));
    assert_eq!(both.status, 400);
    assert!(both.json()["Error"].as_str().is_some_and(|e| e.contains("not both")));
    let anonymous = http::get(server.http, "/api/v1/queue");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
}

#[test]
fn accounts_may_not_manage_the_queue_but_the_admin_may_release_a_message_to_anyone() {
    let server = start_mta();
    let account = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["account", "add", "alice@tern.test", "--password-stdin", "--data"])
        .arg(server.store_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(b"alice-Secret-1\n")?;
            child.wait()
        })
        .expect("run tern account add");
    assert!(account.success());
    let id = relay(&server, &["bob@remote.example", "alice@tern.test"], "for alice too");

    // alice:alice-Secret-1
    let basic = [("Authorization", "Basic YWxpY2VAdGVybi50ZXN0OmFsaWNlLVNlY3JldC0x")];
    let mine = http::request(server.http, "GET", "/api/v1/messages", &basic, b"");
    assert_eq!(mine.json_with(200)["messages_count"], 1, "alice may read her mailbox");
    for (method, path) in
        [("GET", "/api/v1/queue".to_string()), ("GET", format!("/api/v1/queue/{id}"))]
    {
        let refused = http::request(server.http, method, &path, &basic, b"");
        assert_eq!(refused.status, 403, "{method} {path}: {}", refused.text());
        assert!(refused.json()["Error"].as_str().is_some_and(|e| e.contains("admin API key")));
    }
    let body = br#"{"All": true}"#;
    let refused = http::request(server.http, "DELETE", "/api/v1/queue", &basic, body);
    assert_eq!(refused.status, 403);
    assert_eq!(get(&server, "/api/v1/queue")["Total"], 1, "the account's delete changed nothing");

    // The admin releases the message to one more remote recipient: a new entry, due now.
    let release = json!({"To": ["erin@elsewhere.example"]});
    let answer = send(&server, "POST", &format!("/api/v1/message/{id}/release"), &release);
    assert_eq!((answer.status, answer.text()), (200, "ok".to_string()));
    let recipients: Vec<String> = entries_of(&server, &id).into_iter().map(|e| e.0).collect();
    assert_eq!(recipients, ["bob@remote.example", "erin@elsewhere.example"]);
    let bad =
        send(&server, "POST", &format!("/api/v1/message/{id}/release"), &json!({"To": ["erin"]}));
    assert_eq!(bad.status, 400, "{}", bad.text());
}

// ---------------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------------

#[test]
fn the_queue_command_lists_shows_and_changes_a_running_servers_queue() {
    let server = start_mta();
    let first = relay(&server, &["bob@remote.example"], "first");
    let second = relay(&server, &["carol@faraway.example"], "second");
    let list = attempted(&server, 1);
    let error = entries(&list)[0]["LastError"].as_str().unwrap_or_default().to_string();

    // The URL and the key come from the server's configuration file.
    let table = cli_ok(&server, &["list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MESSAGE") && lines[0].contains("LAST ERROR"), "{table}");
    let bob = lines
        .iter()
        .find(|l| l.contains("bob@remote.example"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(bob.starts_with(&first) && bob.contains(" queued "), "{table}");
    let shown_error: String = error.split_whitespace().collect::<Vec<_>>().join(" ");
    let prefix: String = shown_error.chars().take(30).collect();
    assert!(bob.contains(&prefix), "the row shows the start of {error:?}:\n{table}");
    assert!(table.contains("2 queued, 0 held, in 2 messages."), "{table}");

    let shown = cli_ok(&server, &["show", &first]);
    assert!(shown.contains(&format!("Message   {first}")), "{shown}");
    assert!(shown.contains("From      app@internal.example"), "{shown}");
    assert!(shown.contains("Subject   first"), "{shown}");
    let first_line = error.lines().next().unwrap_or_default();
    assert!(shown.contains(&format!("  Last error    {first_line}")), "the whole error:\n{shown}");

    assert_eq!(cli_ok(&server, &["hold", &first]), "1 message held.\n");
    let held = cli_ok(&server, &["list", "--state", "held"]);
    assert!(held.contains("bob@remote.example") && !held.contains("carol@"), "{held}");
    assert_eq!(entries_of(&server, &first)[0].1, "held");
    assert_eq!(cli_ok(&server, &["release", "--all"]), "2 messages released.\n");
    assert_eq!(entries_of(&server, &first)[0].1, "queued");
    let before = entries_of(&server, &second)[0].2;
    assert_eq!(cli_ok(&server, &["retry", &second]), "1 message retried.\n");
    wait_for("the retried message to be attempted", ATTEMPT_TIMEOUT, || {
        (entries_of(&server, &second)[0].2 > before).then_some(())
    });
    assert_eq!(cli_ok(&server, &["delete", &second]), "1 message deleted from the queue.\n");
    assert!(!cli_ok(&server, &["list"]).contains("carol@faraway.example"));

    // Errors: the server's own message, or the address that could not be reached; exit code 1.
    let url = format!("http://{}", server.http);
    let error = cli_fails(&["list", "--url", &url]);
    assert!(error.contains("authentication required") && error.contains("--api-key"), "{error}");
    let error = cli_fails(&["list", "--url", &url, "--api-key", "wrong"]);
    assert!(error.contains("(401)"), "{error}");
    let output = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["queue", "list", "--url", &url])
        .env("TERN_API_KEY", API_KEY)
        .env_remove("TERN_CONFIG")
        .output()
        .expect("run tern queue");
    assert!(stdout(&output).contains("bob@remote.example"), "TERN_API_KEY is read: {output:?}");
    let unknown = "01KAAAAAAAAAAAAAAAAAAAAAAA";
    let config = server.data.join("tern.toml");
    let config = config.to_str().expect("utf-8 path");
    let error = cli_fails(&["hold", unknown, "--config", config]);
    assert!(error.contains(&format!("message {unknown} is not in the queue")), "{error}");
    let error = cli_fails(&["show", unknown, "--config", config]);
    assert!(error.contains("(404)") && error.contains("not in the queue"), "{error}");
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let error = cli_fails(&["list", "--url", &closed]);
    assert!(error.contains(&format!("cannot reach the server at {closed}")), "{error}");
    let usage = tern_queue(&["hold"]);
    assert_eq!(usage.status.code(), Some(2), "ids or --all are required");
    let usage = tern_queue(&["hold", &first, "--all"]);
    assert_eq!(usage.status.code(), Some(2), "not both");
}

// ---------------------------------------------------------------------------------------------
// The catcher's release
// ---------------------------------------------------------------------------------------------

/// What the SMTP sink received in one transaction.
#[derive(Debug)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// A minimal SMTP server on loopback that accepts everything and reports each transaction.
fn smtp_sink() -> (SocketAddr, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let addr = listener.local_addr().expect("sink address");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || sink_session(stream, &tx));
        }
    });
    (addr, rx)
}

fn sink_session(stream: TcpStream, tx: &mpsc::Sender<Received>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| writer.write_all(format!("{text}\r\n").as_bytes()).is_ok();
    if !reply("220 sink.test ESMTP") {
        return;
    }
    let mut current = Received { mail_from: String::new(), rcpt_to: vec![], data: String::new() };
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let path = |prefix: &str| {
            command[prefix.len()..]
                .split('>')
                .next()
                .unwrap_or_default()
                .trim_start_matches('<')
                .to_string()
        };
        let ok = if upper.starts_with("EHLO") {
            reply("250-sink.test\r\n250 8BITMIME")
        } else if upper.starts_with("MAIL FROM:") {
            current.mail_from = path("MAIL FROM:");
            reply("250 ok")
        } else if upper.starts_with("RCPT TO:") {
            current.rcpt_to.push(path("RCPT TO:"));
            reply("250 ok")
        } else if upper == "DATA" {
            reply("354 go on");
            let mut data = String::new();
            loop {
                let mut body_line = String::new();
                if reader.read_line(&mut body_line).unwrap_or(0) == 0 {
                    return;
                }
                if body_line == ".\r\n" {
                    break;
                }
                data.push_str(&body_line);
            }
            current.data = data;
            let done = std::mem::replace(
                &mut current,
                Received { mail_from: String::new(), rcpt_to: vec![], data: String::new() },
            );
            let _ = tx.send(done);
            reply("250 2.0.0 accepted")
        } else if upper == "QUIT" {
            reply("221 bye");
            return;
        } else {
            reply("250 ok")
        };
        if !ok {
            return;
        }
    }
}

#[test]
fn a_catcher_releases_a_captured_message_through_its_relay_host() {
    let (sink, received) = smtp_sink();
    let server = TernServer::start(&format!("[outbound]\nrelay_host = \"{sink}\"\n"));
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO app.test", "250");
    let id = client.send_message(
        "",
        &["dev@example.com"],
        b"From: The App <app@example.org>\r\nTo: dev@example.com\r\nSubject: release me\r\n\r\nHi.\r\n",
    );
    client.cmd("QUIT", "221");

    let webui = http::get(server.http, "/api/v1/webui").json_with(200);
    assert_eq!(webui["MessageRelay"]["Enabled"], true);
    assert_eq!(webui["MessageRelay"]["SMTPServer"], sink.to_string());
    let body = json!({"To": ["qa@customer.example"]});
    let answer =
        http::send_json(server.http, "POST", &format!("/api/v1/message/{id}/release"), &body);
    assert_eq!((answer.status, answer.text()), (200, "ok".to_string()));

    let delivered = received.recv_timeout(ATTEMPT_TIMEOUT).unwrap_or_else(|_| {
        panic!("the relay host received nothing; stderr:\n{}", server.stderr())
    });
    assert_eq!(delivered.mail_from, "app@example.org", "the From address stands in for <>");
    assert_eq!(delivered.rcpt_to, ["qa@customer.example"]);
    assert!(delivered.data.contains("Subject: release me"), "{}", delivered.data);
    wait_for("the delivered entry to leave the queue", ATTEMPT_TIMEOUT, || {
        (http::get(server.http, "/api/v1/queue").json_with(200)["Total"] == 0).then_some(())
    });
    let kept = http::get(server.http, &format!("/api/v1/message/{id}"));
    assert_eq!(kept.status, 200, "the captured copy stays in the catcher");
}

#[test]
fn a_catcher_without_a_relay_host_refuses_to_release() {
    let server = TernServer::start("");
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO app.test", "250");
    let id =
        client.send_message("app@example.org", &["dev@example.com"], b"Subject: x\r\n\r\nx\r\n");
    let body = json!({"To": ["qa@customer.example"]});
    let answer =
        http::send_json(server.http, "POST", &format!("/api/v1/message/{id}/release"), &body);
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.json()["Error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("[outbound] relay_host"), "{error}");
    assert_eq!(http::get(server.http, "/api/v1/queue").json_with(200)["Total"], 0);
}
