//! The command line as users meet it: configuration errors name the file, line and key and
//! exit non-zero; `tern messages` reads what a running server stored; JSON logs are JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::process::Command;

use support::{Client, TernServer, temp_dir};

fn serve_with_config(text: &str) -> (bool, String) {
    let dir = temp_dir("cli");
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run tern");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn configuration_errors_name_the_key_and_line_and_exit_nonzero() {
    let (ok, err) = serve_with_config("[smtp]\nmax_recipients = 10\nmax_recipientz = 3\n");
    assert!(!ok);
    assert!(err.contains("bad.toml:3: smtp.max_recipientz: unknown field"), "{err}");
    let (ok, err) = serve_with_config("[smtp]\nidle_timeout_secs = \"five\"\n");
    assert!(!ok);
    assert!(err.contains("bad.toml:2: smtp.idle_timeout_secs: "), "{err}");
    let (ok, err) = serve_with_config("[smtp]\nmax_connections = 0\n");
    assert!(!ok);
    assert!(err.contains("bad.toml:2: smtp.max_connections: must be greater than 0"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config", "/nonexistent/tern.toml"])
        .output()
        .expect("run tern");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/tern.toml: cannot read configuration"), "{err}");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = temp_dir("cli-port");
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--smtp", &addr, "--data"])
        .arg(&dir)
        .output()
        .expect("run tern");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn messages_command_reads_a_running_servers_store() {
    let server = TernServer::start("[log]\nformat = \"json\"");
    let mut c = Client::greeted(server.addr);
    c.cmd("EHLO c.example", "250");
    let id = c.send_message("a@example.org", &["b@example.com"], b"Subject: listed\r\n\r\nhi\r\n");
    let tern = env!("CARGO_BIN_EXE_tern");
    let store = server.store_dir();
    let store = store.to_str().expect("utf-8 path");
    let list = support::run(tern, &["messages", "--data", store, "list"], None);
    assert!(list.contains(&id) && list.contains("\"listed\""), "{list}");
    let show = support::run(tern, &["messages", "--data", store, "show", &id], None);
    let json: serde_json::Value = serde_json::from_str(&show).expect("show prints JSON");
    assert_eq!(json["envelope"]["mail_from"], "a@example.org");
    assert_eq!(json["summary"]["subject"], "listed");
    let raw = support::run(tern, &["messages", "--data", store, "raw", &id], None);
    assert!(
        raw.starts_with("Received: from c.example")
            && raw.ends_with("Subject: listed\r\n\r\nhi\r\n")
    );
    // Every log line is a JSON object.
    for line in server.stderr().lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    }
}

#[test]
fn environment_variables_override_the_file_and_a_bad_one_is_named() {
    let dir = temp_dir("cli-env");
    let mut server = TernServer::launch(&dir, "", |config| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        command.args(["serve", "--config"]).arg(config).env("TERN_SMTP_MAX_RECIPIENTS", "2");
        command
    });
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO client.test", "250");
    client.cmd("MAIL FROM:<a@example.org>", "250");
    client.cmd("RCPT TO:<one@example.org>", "250");
    client.cmd("RCPT TO:<two@example.org>", "250");
    client.cmd("RCPT TO:<three@example.org>", "452 4.5.3");
    server.terminate();

    let path = dir.join("tern.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("TERN_SMTP_MAX_RECIPIENTS", "lots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("environment variable TERN_SMTP_MAX_RECIPIENTS (smtp.max_recipients): "),
        "{err}"
    );
}

#[test]
fn sighup_applies_the_log_level_and_names_what_needs_a_restart() {
    let dir = temp_dir("cli-hup");
    let server = TernServer::start_in(&dir, "[log]\nlevel = \"info\"\n");
    let path = dir.join("tern.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("level = \"info\"", "level = \"debug\"").replacen(
        "[smtp]",
        "[smtp]\nmax_recipients = 7",
        1,
    );
    std::fs::write(&path, edited).unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.stderr().contains("configuration reloaded")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = server.stderr();
    assert!(log.contains("applied=log.level needs_restart=smtp"), "{log}");
    // Still serving; and a file broken later is refused without stopping the server.
    std::fs::write(&path, "[smtp\n").unwrap();
    server.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.stderr().contains("does not load") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(server.stderr().contains("the running one stays"), "{}", server.stderr());
    Client::greeted(server.addr).cmd("EHLO client.test", "250");
}
