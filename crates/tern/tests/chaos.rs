//! Chaos for test suites, end to end: the real `tern serve`, rules set through the API and the
//! configuration file, and clients we did not write (Python's `smtplib`, `swaks`) seeing the
//! failures exactly when the rules say — Mailpit's `/api/v1/chaos` triggers (its JSON checked
//! against Mailpit's schema), a seeded probability that repeats across a restart, the nth
//! message, a rate per sender, header conditions, the message's own `X-Tern-Chaos` header,
//! delays, disconnects at `RCPT` and in the middle of `DATA`, and accept-then-drop.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

#[path = "api/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "api/schema.rs"]
#[allow(dead_code)]
mod schema;

use serde_json::{Value, json};
use support::{MtaListener, TernServer, text};

/// Python run against one server: `PORT` is its SMTP port; `send(...)` is one smtplib
/// transaction that reports what the client saw, exceptions included.
const PY: &str = r#"
PORT = int(ARGS[0])
ARGS = ARGS[1:]

def message(subject, headers=""):
    return ("From: a@client.example\r\nTo: x@example.com\r\nSubject: %s\r\n%s\r\nbody\r\n"
            % (subject, headers)).encode()

def send(sender, rcpts, msg):
    started = time.monotonic()
    try:
        s = Recorder(PORT)
        s.ehlo("client.example")
        refused = s.sendmail(sender, rcpts, msg)
        last = s.replies[-1]
        s.quit()
        return {"ok": last, "refused": {k: [v[0], v[1].decode()] for k, v in refused.items()},
                "seconds": time.monotonic() - started}
    except smtplib.SMTPRecipientsRefused as e:
        return {"error": "recipients", "refused": {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}}
    except smtplib.SMTPSenderRefused as e:
        return {"error": "sender", "code": e.smtp_code, "text": e.smtp_error.decode()}
    except smtplib.SMTPDataError as e:
        return {"error": "data", "code": e.smtp_code, "text": e.smtp_error.decode(),
                "seconds": time.monotonic() - started}
    except smtplib.SMTPServerDisconnected as e:
        return {"error": "disconnected", "text": str(e)}
"#;

fn py(server: &TernServer, script: &str) -> Value {
    let port = server.addr.port().to_string();
    support::python(&format!("{PY}\n{script}"), &[port.as_str()])
}

fn enabled(extra: &str) -> TernServer {
    TernServer::start(&format!("[chaos]\nenabled = true\nseed = 7\n{extra}"))
}

/// Replaces the rules; the answer lists them with zeroed counters.
fn set_rules(server: &TernServer, rules: Value) -> Value {
    let response =
        http::send_json(server.http, "PUT", "/api/v1/chaos/rules", &json!({ "Rules": rules }));
    let body = response.json_with(200);
    schema::tern().check("ChaosRules", &body);
    body
}

fn rules(server: &TernServer) -> Vec<Value> {
    let body = http::get(server.http, "/api/v1/chaos/rules").json_with(200);
    schema::tern().check("ChaosRules", &body);
    body["Rules"].as_array().expect("Rules").clone()
}

fn total(server: &TernServer) -> u64 {
    let page = http::get(server.http, "/api/v1/messages?limit=1").json_with(200);
    page["total"].as_u64().expect("total")
}

#[test]
fn chaos_is_off_unless_enabled_and_the_header_is_then_just_a_header() {
    let server = TernServer::start("");
    let response = http::get(server.http, "/api/v1/chaos");
    let error = response.json_with(400);
    assert!(text(&error, "Error").starts_with("Chaos is not enabled"), "{error}");
    let response =
        http::send_json(server.http, "PUT", "/api/v1/chaos/rules", &json!({"Rules": []}));
    response.json_with(400);
    let webui = http::get(server.http, "/api/v1/webui").json_with(200);
    assert_eq!(webui["ChaosEnabled"], false);
    let sent = py(
        &server,
        r#"emit(**send("a@client.example", ["x@example.com"], message("plain", "X-Tern-Chaos: 451\r\n")))"#,
    );
    assert!(text(&sent, "ok").starts_with("250 2.0.0 Ok: queued as"), "{sent}");
    assert_eq!(total(&server), 1);
}

#[test]
fn mailpit_triggers_answer_with_mailpit_json_and_fail_the_sessions() {
    let server = enabled("");
    let webui = http::get(server.http, "/api/v1/webui").json_with(200);
    assert_eq!(webui["ChaosEnabled"], true);
    let triggers = http::get(server.http, "/api/v1/chaos").json_with(200);
    schema::check_both("ChaosTriggers", "ChaosTriggers", &triggers);
    assert_eq!(
        triggers,
        json!({
            "Sender": {"ErrorCode": 451, "Probability": 0},
            "Recipient": {"ErrorCode": 451, "Probability": 0},
            "Authentication": {"ErrorCode": 535, "Probability": 0},
        })
    );

    // Omitted triggers are reset, as in Mailpit.
    let body = json!({"Recipient": {"ErrorCode": 550, "Probability": 100}});
    let set = http::send_json(server.http, "PUT", "/api/v1/chaos", &body).json_with(200);
    schema::check_both("ChaosTriggers", "ChaosTriggers", &set);
    assert_eq!(set["Recipient"], json!({"ErrorCode": 550, "Probability": 100}));
    assert_eq!(set["Sender"], json!({"ErrorCode": 451, "Probability": 0}));
    let sent = py(&server, r#"emit(**send("a@client.example", ["x@example.com"], message("r")))"#);
    assert_eq!(sent["error"], "recipients", "{sent}");
    assert_eq!(sent["refused"]["x@example.com"], json!([550, "5.0.0 Chaos recipient error"]));

    let body = json!({"Sender": {"ErrorCode": 421, "Probability": 100}});
    http::send_json(server.http, "PUT", "/api/v1/chaos", &body).json_with(200);
    let sent = py(&server, r#"emit(**send("a@client.example", ["x@example.com"], message("s")))"#);
    // A 421 closes the session: smtplib reports the refusal and then the lost connection.
    assert!(sent["error"] == "sender" || sent["error"] == "disconnected", "{sent}");

    for bad in [
        json!({"Sender": {"ErrorCode": 250, "Probability": 10}}),
        json!({"Recipient": {"ErrorCode": 451, "Probability": 101}}),
    ] {
        let response = http::send_json(server.http, "PUT", "/api/v1/chaos", &bad);
        let error = response.json_with(400);
        schema::tern().check("Error", &error);
    }
    let response = http::request(
        server.http,
        "PUT",
        "/api/v1/chaos",
        &[("Content-Type", "application/json")],
        b"{",
    );
    response.json_with(400);

    // `{}` resets everything: mail goes through again.
    http::send_json(server.http, "PUT", "/api/v1/chaos", &json!({})).json_with(200);
    let sent = py(&server, r#"emit(**send("a@client.example", ["x@example.com"], message("ok")))"#);
    assert!(text(&sent, "ok").starts_with("250 "), "{sent}");
    assert_eq!(total(&server), 1);
}

#[test]
fn a_seeded_probability_fails_the_same_recipients_after_a_restart() {
    let config = "[chaos]\nenabled = true\nseed = 42\ntriggers = \"Recipient:452:50\"\n";
    let script = r#"
r = Raw(PORT)
r.reply()
r.cmd("EHLO client.example")
r.cmd("MAIL FROM:<a@client.example>")
codes = [r.cmd("RCPT TO:<n%d@example.com>" % i)[:3] for i in range(60)]
r.cmd("QUIT")
emit(codes=codes)
"#;
    let first = TernServer::start(config);
    let before = py(&first, script);
    let data = first.stop_keeping_data();
    let second = TernServer::start_in(&data, config);
    let after = py(&second, script);
    assert_eq!(before["codes"], after["codes"], "the same seed gave other failures");
    let codes = before["codes"].as_array().unwrap();
    let failed = codes.iter().filter(|c| *c == "452").count();
    // More than `smtp.max_bad_commands` (20): chaos's refusals are not the client's errors.
    assert!((20..=40).contains(&failed), "{failed} of 60 failed at 50%: {codes:?}");
    assert!(codes.iter().all(|c| c == "452" || c == "250"), "{codes:?}");
}

#[test]
fn the_nth_message_and_the_rate_rule_fire_exactly_when_they_should() {
    let server = enabled("");
    set_rules(
        &server,
        json!([
            {"name": "third to x", "at": "data", "recipient": "x@example.com", "nth": 3,
             "reply": "451 4.3.0 third time unlucky"},
            {"name": "burst", "at": "mail", "sender": "burst@*", "rate_per_minute": 3},
        ]),
    );
    let sent = py(
        &server,
        r#"
results = [send("a@client.example", ["X@example.com"], message("n%d" % i)) for i in range(1, 6)]
bursts = [send("burst@client.example", ["y@example.com"], message("b%d" % i)) for i in range(1, 6)]
emit(results=results, bursts=bursts)
"#,
    );
    let results = sent["results"].as_array().unwrap();
    for (i, result) in results.iter().enumerate() {
        if i == 2 {
            assert_eq!(result["error"], "data", "message 3: {result}");
            assert_eq!(
                (result["code"].as_u64(), text(result, "text")),
                (Some(451), "4.3.0 third time unlucky")
            );
        } else {
            assert!(text(result, "ok").starts_with("250 2.0.0"), "message {}: {result}", i + 1);
        }
    }
    let bursts = sent["bursts"].as_array().unwrap();
    for (i, result) in bursts.iter().enumerate() {
        if i < 3 {
            assert!(text(result, "ok").starts_with("250 2.0.0"), "burst {}: {result}", i + 1);
        } else {
            assert_eq!(result["error"], "sender", "burst {}: {result}", i + 1);
            assert_eq!(result["code"], 451);
            assert!(text(result, "text").starts_with("4.7.0 Chaos burst: too many messages"));
        }
    }
    assert_eq!(total(&server), 4 + 3);
    let report = rules(&server);
    assert_eq!((report[0]["matched"].as_u64(), report[0]["fired"].as_u64()), (Some(5), Some(1)));
    assert_eq!((report[1]["matched"].as_u64(), report[1]["fired"].as_u64()), (Some(5), Some(2)));

    // A bad rule is refused whole, naming it; the rules in force stay.
    let bad = json!({"Rules": [{"at": "rcpt", "reply": "451"}, {"at": "mail", "drop": true}]});
    let response = http::send_json(server.http, "PUT", "/api/v1/chaos/rules", &bad);
    let error = response.json_with(400);
    assert!(text(&error, "Error").starts_with("rules[1]: drop is for"), "{error}");
    assert_eq!(rules(&server).len(), 2);
    let unknown = json!({"at": "rcpt", "reply": "451", "colour": "red"});
    let response = http::send_json(server.http, "POST", "/api/v1/chaos/rules", &unknown);
    assert!(text(&response.json_with(400), "Error").contains("colour"));
    let cleared = http::delete(server.http, "/api/v1/chaos/rules").json_with(200);
    assert_eq!(cleared["Rules"], json!([]));
}

#[test]
fn delays_disconnects_and_drops_reach_real_clients() {
    let server = enabled(
        r#"
[[chaos.rules]]
name = "slow rcpt"
at = "rcpt"
recipient = "slow@example.com"
delay_ms = 800

[[chaos.rules]]
name = "gone"
at = "rcpt"
recipient = "gone@*"
disconnect = true

[[chaos.rules]]
name = "cut"
at = "data"
sender = "cut@*"
disconnect = true

[[chaos.rules]]
name = "black hole"
at = "data"
header = "X-Test-Case: drop-*"
drop = true
"#,
    );
    assert_eq!(rules(&server).len(), 4, "rules from the configuration file");
    let sent = py(
        &server,
        r#"
slow = send("a@client.example", ["slow@example.com"], message("slow"))
gone = send("a@client.example", ["gone@example.com"], message("gone"))
cut = send("cut@client.example", ["x@example.com"], message("cut") + b"x" * 200000 + b"\r\n")
dropped = send("a@client.example", ["x@example.com"], message("dropped", "X-Test-Case:\r\n drop-7\r\n"))
kept = send("a@client.example", ["x@example.com"], message("kept", "X-Test-Case: keep-7\r\n"))
late = send("a@client.example", ["x@example.com"], message("late", "X-Tern-Chaos: delay=1200ms\r\n"))
r = Raw(PORT)
r.reply()
r.cmd("EHLO client.example")
r.cmd("MAIL FROM:<cut@client.example>")
r.cmd("RCPT TO:<x@example.com>")
r.send(b"BDAT 9 LAST\r\nSubject:x")
try:
    bdat = r.reply()
except (EOFError, ConnectionResetError) as e:
    bdat = "closed"
emit(slow=slow, gone=gone, cut=cut, dropped=dropped, kept=kept, late=late, bdat=bdat)
"#,
    );
    assert!(text(&sent["slow"], "ok").starts_with("250 "), "{sent}");
    assert!(sent["slow"]["seconds"].as_f64().unwrap() >= 0.75, "{sent}");
    assert_eq!(sent["gone"]["error"], "disconnected", "{sent}");
    assert_eq!(sent["cut"]["error"], "disconnected", "{sent}");
    let dropped = text(&sent["dropped"], "ok");
    assert!(dropped.starts_with("250 2.0.0 Ok: queued as "), "{sent}");
    let dropped_id = support::queue_id(dropped).expect("an id");
    assert!(text(&sent["kept"], "ok").starts_with("250 "), "{sent}");
    assert!(text(&sent["late"], "ok").starts_with("250 "), "{sent}");
    assert!(sent["late"]["seconds"].as_f64().unwrap() >= 1.15, "{sent}");
    // Stored: slow, kept, late; not the dropped, cut or disconnected ones.
    assert_eq!(total(&server), 3);
    http::get(server.http, &format!("/api/v1/message/{dropped_id}")).json_with(404);
    let fired: Vec<u64> = rules(&server).iter().map(|r| r["fired"].as_u64().unwrap()).collect();
    assert_eq!(text(&sent, "bdat"), "closed", "a BDAT transaction is cut at its first chunk");
    assert_eq!(fired, [1, 1, 2, 1]);
    let log = server.stderr();
    assert!(log.contains("chaos: disconnecting mid-data"), "{log}");
    assert!(log.contains("chaos: message dropped"), "{log}");
}

#[test]
fn swaks_sees_the_reply_a_message_asks_for() {
    let server = enabled("");
    let port = server.addr.port().to_string();
    let swaks = |header: &str| {
        let output = std::process::Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &port, "--from", "a@client.example"])
            .args(["--to", "x@example.com", "--header", header, "--timeout", "20"])
            .output()
            .expect("swaks is installed (scripts/test installs it)");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, transcript) = swaks("X-Tern-Chaos: 554 5.7.1 refused on purpose");
    assert!(transcript.contains("<** 554 5.7.1 refused on purpose"), "{transcript}");
    assert_ne!(code, Some(0));
    let (code, transcript) = swaks("X-Tern-Chaos: 451 4.4.1 ; delay=300ms");
    assert!(transcript.contains("<** 451 4.4.1 Chaos requested by the message"), "{transcript}");
    assert_ne!(code, Some(0));
    let (code, transcript) = swaks("X-Tern-Chaos: explode");
    assert!(transcript.contains("<** 550 5.6.0 Bad X-Tern-Chaos header"), "{transcript}");
    assert_ne!(code, Some(0));
    let (code, transcript) = swaks("X-Tern-Chaos: drop");
    assert_eq!(code, Some(0), "{transcript}");
    assert_eq!(total(&server), 0);
}

#[test]
fn the_authentication_trigger_fails_auth_before_the_exchange() {
    let listeners = [MtaListener { role: "submission", allow_plaintext_auth: true }];
    let extra = "[relay]\nlocal_domains = [\"tern.test\"]\n\n[chaos]\nenabled = true\n\
                 triggers = \"Authentication:454:100\"\n";
    let (server, addrs) = TernServer::start_mta(&listeners, extra, support::is_tern_banner);
    server.add_account("alice@tern.test", "secret-password");
    let port = addrs[0].port().to_string();
    let result = support::python(
        r#"
r = Raw(int(ARGS[0]))
r.reply()
r.cmd("EHLO client.example")
first = r.cmd("AUTH PLAIN " + b64("\0alice@tern.test\0secret-password"))
emit(first=first)
"#,
        &[port.as_str()],
    );
    assert_eq!(text(&result, "first"), "454 4.7.0 Chaos authentication error");
}
