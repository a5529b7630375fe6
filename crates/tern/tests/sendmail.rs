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
