//! `tern sendmail` as programs call `/usr/sbin/sendmail`: through a link named `sendmail`, from
//! Python's `subprocess` the way PHP's `mail()` and Django do (`sendmail -t -i`), and from
//! `git send-email --sendmail-cmd`. With the server down the message waits in the drop
//! directory and the server takes it in when it starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{TernServer, free_port, python, temp_dir};

/// A link named `sendmail` to the tern binary, in `dir`.
fn sendmail_link(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let link = dir.join("sendmail");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tern"), &link).unwrap();
    link
}

/// `sendmail -t -i` with `message` on stdin, as PHP's mail() runs it; returns (exit code, stderr).
const RUN_SENDMAIL: &str = r#"
import os, subprocess
sendmail, server, drop, message = ARGS
env = dict(os.environ, TERN_SMTP=server, TERN_DROP_DIR=drop)
p = subprocess.run([sendmail, "-t", "-i", "-f", "app@tern.test"], input=message.encode(), env=env,
                   capture_output=True)
emit(code=p.returncode, stderr=p.stderr.decode())
"#;

const MESSAGE: &str = "To: Bob <bob@tern.test>\nBcc: audit@tern.test\nSubject: from cron\n\n.a line with a dot\n.\nlast line\n";

fn wait_for(server: &TernServer, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.count() < count {
        assert!(Instant::now() < deadline, "{count} messages never arrived:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn only_message(server: &TernServer) -> tern_store::StoredMessage {
    let url = format!("http://{}/api/v1/messages", server.http);
    let page: serde_json::Value =
        serde_json::from_str(&support::run("curl", &["-sS", "--fail", &url], None)).unwrap();
    server.message(page["messages"][0]["ID"].as_str().unwrap()).unwrap()
}

#[test]
fn php_style_sendmail_t_i_reaches_the_server_and_bcc_stays_hidden() {
    let server = TernServer::start("");
    let link = sendmail_link(&server.data.join("bin"));
    let drop = server.store_dir().join("drop");
    let args = [link.to_str().unwrap(), &server.addr.to_string(), drop.to_str().unwrap(), MESSAGE];
    let result = python(RUN_SENDMAIL, &args);
    assert_eq!(result["code"], 0, "{result}");
    wait_for(&server, 1);
    let stored = only_message(&server);
    let raw = String::from_utf8_lossy(&stored.raw);
    assert_eq!(stored.envelope.mail_from, "app@tern.test");
    let rcpts: Vec<_> = stored.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["bob@tern.test", "audit@tern.test"]);
    assert!(!raw.contains("audit@"), "Bcc must not be sent:\n{raw}");
    // -i: the lone dot is a line of the message, and the leading dot survives transparency.
    assert!(raw.ends_with("\r\n.a line with a dot\r\n.\r\nlast line\r\n"), "{raw}");
    assert!(raw.contains("Message-ID: <") && raw.contains("Date: "), "{raw}");
}

#[test]
fn with_the_server_down_the_message_waits_and_is_taken_in_at_start() {
    let data = temp_dir("sendmail-drop");
    let link = sendmail_link(&data.join("bin"));
    let drop = data.join("store").join("drop");
    let closed = format!("127.0.0.1:{}", free_port());
    let args = [link.to_str().unwrap(), &closed, drop.to_str().unwrap(), MESSAGE];
    let result = python(RUN_SENDMAIL, &args);
    assert_eq!(result["code"], 0, "queued, as sendmail does: {result}");
    assert!(result["stderr"].as_str().unwrap().contains("kept in"), "{result}");
    let waiting = std::fs::read_dir(drop.join("new")).unwrap().count();
    assert_eq!(waiting, 1);

    let server = TernServer::start_in(&data, "");
    wait_for(&server, 1);
    let stored = only_message(&server);
    assert_eq!(stored.envelope.recipients.len(), 2);
    assert!(String::from_utf8_lossy(&stored.raw).contains("Subject: from cron"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(drop.join("new")).unwrap().count() > 0 {
        assert!(Instant::now() < deadline, "the drop file stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn git_send_email_sends_a_patch_through_it() {
    let server = TernServer::start("");
    let link = sendmail_link(&server.data.join("bin"));
    let repo = server.data.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "Ann")
            .env("GIT_AUTHOR_EMAIL", "ann@tern.test")
            .env("GIT_COMMITTER_NAME", "Ann")
            .env("GIT_COMMITTER_EMAIL", "ann@tern.test")
            .env("TERN_SMTP", server.addr.to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-q", "-m", "Add a README"]);
    let patch = git(&["format-patch", "-1", "-o", "out"]);
    let sendmail_cmd = format!("--sendmail-cmd={}", link.display());
    git(&[
        "send-email",
        &sendmail_cmd,
        "--to=maintainer@tern.test",
        "--from=Ann <ann@tern.test>",
        "--confirm=never",
        "--quiet",
        patch.trim(),
    ]);
    wait_for(&server, 1);
    let stored = only_message(&server);
    assert_eq!(stored.summary.subject, "[PATCH] Add a README");
    assert_eq!(stored.envelope.recipients[0].address, "maintainer@tern.test");
}

/// `sendmail BOB` with credentials in the environment; returns (exit code, stderr).
const RUN_WITH_LOGIN: &str = r#"
import os, subprocess
sendmail, server, drop, user, password = ARGS
env = dict(os.environ, TERN_SMTP=server, TERN_DROP_DIR=drop, TERN_SENDMAIL_USER=user,
           TERN_SENDMAIL_PASSWORD=password)
p = subprocess.run([sendmail, "-i", "-f", user, "bob@tern.test"], input=b"Subject: logged in\n\nhi\n", env=env,
                   capture_output=True)
emit(code=p.returncode, stderr=p.stderr.decode())
"#;

#[test]
fn with_credentials_sendmail_logs_in_over_starttls_on_the_submission_port() {
    let listeners = [support::MtaListener { role: "submission", allow_plaintext_auth: false }];
    let (server, addrs) = TernServer::start_mta(
        &listeners,
        "[relay]\nlocal_domains = [\"tern.test\"]\n",
        support::is_tern_banner,
    );
    for login in ["alice@tern.test", "bob@tern.test"] {
        server.add_account(login, "s3cret pass");
    }
    let link = sendmail_link(&server.data.join("bin"));
    let drop = server.data.join("drop-unused");
    let run = |password: &str| {
        python(
            RUN_WITH_LOGIN,
            &[
                link.to_str().unwrap(),
                &addrs[0].to_string(),
                drop.to_str().unwrap(),
                "alice@tern.test",
                password,
            ],
        )
    };
    let result = run("s3cret pass");
    assert_eq!(result["code"], 0, "{result}");
    wait_for(&server, 1);
    let stored = only_message(&server);
    // Submitted over TLS, after AUTH as alice.
    assert!(stored.envelope.tls.is_some(), "{:?}", stored.envelope);
    assert_eq!(stored.envelope.auth.as_deref(), Some("alice@tern.test"));
    assert_eq!(stored.envelope.recipients[0].address, "bob@tern.test");

    // A wrong password is a refusal (sendmail's EX_NOUSER), not something to keep and retry.
    let result = run("wrong");
    assert_eq!(result["code"], 67, "{result}");
    assert!(support::text(&result, "stderr").contains("535"), "{result}");
    assert!(!drop.exists(), "nothing is dropped for a refusal");
}

/// `sendmail -bs`: the SMTP conversation on its standard input and output, as a client of
/// sendmail's stand-alone mode speaks it; returns every reply line.
const RUN_BS: &str = r#"
import os, subprocess
sendmail, server = ARGS
env = dict(os.environ, TERN_SMTP=server)
p = subprocess.Popen([sendmail, "-bs"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
lines = []
def reply():
    while True:
        line = p.stdout.readline().decode()
        lines.append(line.rstrip("\r\n"))
        if len(line) < 4 or line[3] != "-":
            return line
def send(text):
    p.stdin.write(text.encode()); p.stdin.flush()
greeting = reply()
if greeting.startswith("220"):
    for command in ["EHLO client.test", "MAIL FROM:<app@tern.test>", "RCPT TO:<bob@tern.test>", "DATA"]:
        send(command + "\r\n"); reply()
    send("Subject: over -bs\r\n\r\nhello\r\n.\r\n"); reply()
    send("QUIT\r\n"); reply()
p.stdin.close()
emit(code=p.wait(), lines=lines)
"#;

#[test]
fn sendmail_bs_speaks_smtp_on_stdin_and_stdout() {
    let server = TernServer::start("");
    let link = sendmail_link(&server.data.join("bin"));
    let result = python(RUN_BS, &[link.to_str().unwrap(), &server.addr.to_string()]);
    assert_eq!(result["code"], 0, "{result}");
    let lines: Vec<&str> =
        result["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(lines[0].starts_with("220 tern.test ESMTP"), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("354")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("250 2.0.0 Ok: queued as")), "{lines:?}");
    assert!(lines.last().unwrap().starts_with("221"), "{lines:?}");
    wait_for(&server, 1);
    assert_eq!(only_message(&server).summary.subject, "over -bs");

    // No server: the client is told to come back later, and keeps its message.
    let down = format!("127.0.0.1:{}", free_port());
    let result = python(RUN_BS, &[link.to_str().unwrap(), &down]);
    assert_eq!(result["code"], 75, "{result}");
    assert!(result["lines"][0].as_str().unwrap().starts_with("421 4.3.0"), "{result}");
}
