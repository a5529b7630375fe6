//! `tern account` and `tern alias` as an administrator uses them: the real binary, passwords
//! on standard input, and the store read back to check what was written. Listings never show
//! a password or its hash; failures name the thing and exit non-zero; the commands work while
//! the server runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::{TernServer, temp_dir};
use tern_store::{AccountStore, Resolution, SqliteStore};

/// What one run of `tern` printed and how it ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `tern ARGS --data DATA` with `stdin` piped in (so it is not a terminal).
fn tern(data: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tern");
    let mut input = child.stdin.take().expect("stdin");
    // A command that fails before reading may close its end first; that is not our failure.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for tern");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tern` and insists it succeeded.
fn ok(data: &Path, args: &[&str], stdin: &str) -> String {
    let run = tern(data, args, stdin);
    assert!(run.ok, "tern {args:?} failed:\n{}{}", run.stdout, run.stderr);
    run.stdout
}

/// Runs `tern` and insists it failed, returning its error output.
fn fails(data: &Path, args: &[&str], stdin: &str) -> String {
    let run = tern(data, args, stdin);
    assert!(!run.ok, "tern {args:?} should have failed:\n{}", run.stdout);
    run.stderr
}

/// The whitespace-separated columns of the `tern account list` line that starts with `first`.
fn columns(list: &str, first: &str) -> Vec<String> {
    let line = list.lines().find(|l| l.split_whitespace().next() == Some(first));
    let line = line.unwrap_or_else(|| panic!("no line for {first} in:\n{list}"));
    line.split_whitespace().map(str::to_string).collect()
}

fn store(data: &Path) -> SqliteStore {
    SqliteStore::open(data).expect("open store")
}

#[test]
fn an_account_is_added_listed_given_a_new_password_and_deleted() {
    let data = temp_dir("accounts");
    let out = ok(
        &data,
        &["account", "add", "Alice@Example.org", "--address", "a@example.org", "--password-stdin"],
        "first secret\n",
    );
    assert_eq!(
        out,
        "added account alice@example.org (addresses: alice@example.org, a@example.org)\n"
    );
    assert!(
        store(&data)
            .verify_password("alice@example.org", "first secret")
            .expect("verify")
            .is_some()
    );

    let list = ok(&data, &["account", "list"], "");
    assert_eq!(list.lines().count(), 2, "{list}");
    assert_eq!(columns(&list, "LOGIN"), ["LOGIN", "ADDRESSES", "CRAM-MD5", "MAILDIR"]);
    assert_eq!(
        columns(&list, "alice@example.org"),
        ["alice@example.org", "alice@example.org,a@example.org", "no", "-"]
    );
    assert!(!list.contains("first secret") && !list.contains("$argon2"), "{list}");

    let out = ok(
        &data,
        &["account", "passwd", "alice@example.org", "--password-stdin"],
        "second secret\r\n",
    );
    assert_eq!(out, "changed the password of alice@example.org\n");
    let accounts = store(&data);
    assert!(
        accounts.verify_password("alice@example.org", "first secret").expect("verify").is_none()
    );
    assert!(
        accounts.verify_password("alice@example.org", "second secret").expect("verify").is_some()
    );
    let list = ok(&data, &["account", "list"], "");
    assert!(!list.contains("secret") && !list.contains("$argon2"), "{list}");

    assert_eq!(
        ok(&data, &["account", "delete", "alice@example.org"], ""),
        "deleted account alice@example.org\n"
    );
    assert_eq!(ok(&data, &["account", "list"], "").lines().count(), 1, "only the header is left");
    assert_eq!(store(&data).resolve_local("a@example.org").expect("resolve"), Resolution::Unknown);
}

#[test]
fn without_a_terminal_the_password_is_one_line_of_stdin() {
    let data = temp_dir("accounts");
    let maildir = data.join("mail/bob");
    ok(
        &data,
        &["account", "add", "bob", "--maildir", maildir.to_str().expect("utf-8")],
        "pw from a pipe\nignored\n",
    );
    let accounts = store(&data);
    let bob = accounts.verify_password("bob", "pw from a pipe").expect("verify").expect("bob");
    assert_eq!(bob.addresses, Vec::<String>::new(), "a login that is not an address owns nothing");
    assert_eq!(bob.maildir.as_deref(), Some(maildir.as_path()));
    assert!(
        fails(&data, &["account", "add", "carol"], "")
            .contains("tern: no password on standard input")
    );
    assert!(
        fails(&data, &["account", "add", "carol"], "\n").contains("invalid password: it is empty")
    );
}

#[test]
fn cram_md5_is_opt_in_and_its_cost_is_spelled_out() {
    let data = temp_dir("accounts");
    let help = ok(&data, &["account", "add", "--help"], "");
    assert!(help.contains("--cram-md5"), "{help}");
    assert!(help.contains("learns the passwords of every account with CRAM-MD5 enabled"), "{help}");
    assert!(help.contains("Prefer AUTH PLAIN or LOGIN over TLS"), "{help}");

    let run = tern(
        &data,
        &["account", "add", "dave@example.org", "--cram-md5", "--password-stdin"],
        "dave pw\n",
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: CRAM-MD5 is enabled for dave@example.org"),
        "{}",
        run.stderr
    );
    ok(&data, &["account", "add", "erin@example.org", "--password-stdin"], "erin pw\n");
    let accounts = store(&data);
    assert_eq!(
        accounts.cram_md5_secret("dave@example.org").expect("secret").as_deref(),
        Some("dave pw")
    );
    assert_eq!(accounts.cram_md5_secret("erin@example.org").expect("secret"), None);
    let list = ok(&data, &["account", "list"], "");
    assert_eq!(
        columns(&list, "dave@example.org"),
        ["dave@example.org", "dave@example.org", "yes", "-"]
    );
    assert_eq!(
        columns(&list, "erin@example.org"),
        ["erin@example.org", "erin@example.org", "no", "-"]
    );
    assert!(!list.contains("dave pw"), "{list}");
    ok(&data, &["account", "passwd", "dave@example.org", "--password-stdin"], "dave new\n");
    assert_eq!(
        store(&data).cram_md5_secret("dave@example.org").expect("secret").as_deref(),
        Some("dave new")
    );
}

#[test]
fn refusals_name_the_thing_and_exit_nonzero() {
    let data = temp_dir("accounts");
    ok(&data, &["account", "add", "alice@example.org", "--password-stdin"], "pw\n");
    let err = fails(&data, &["account", "add", "alice@example.org", "--password-stdin"], "pw\n");
    assert!(err.contains("tern: account alice@example.org already exists"), "{err}");
    let err = fails(
        &data,
        &["account", "add", "bob", "--address", "ALICE@example.org", "--password-stdin"],
        "pw\n",
    );
    assert!(
        err.contains("address alice@example.org is already owned by alice@example.org"),
        "{err}"
    );
    let err = fails(
        &data,
        &["account", "add", "bob", "--address", "bob@@example.org", "--password-stdin"],
        "pw\n",
    );
    assert!(err.contains("invalid address \"bob@@example.org\""), "{err}");
    let err = fails(&data, &["account", "passwd", "nobody", "--password-stdin"], "pw\n");
    assert!(err.contains("no such account: nobody"), "{err}");
    let err = fails(&data, &["account", "delete", "nobody"], "");
    assert!(err.contains("no such account: nobody"), "{err}");
    let err = fails(&data, &["alias", "delete", "nobody@example.org"], "");
    assert!(err.contains("no such alias: nobody@example.org"), "{err}");
    let err = fails(&data, &["alias", "add", "alice@example.org", "x@remote.example"], "");
    assert!(
        err.contains("address alice@example.org is already owned by alice@example.org"),
        "{err}"
    );
}

#[test]
fn aliases_with_many_targets_and_catch_alls() {
    let data = temp_dir("accounts");
    ok(&data, &["account", "add", "bob@example.org", "--password-stdin"], "pw\n");
    let out = ok(
        &data,
        &["alias", "add", "Team@Example.org", "bob@example.org", "carol@remote.example"],
        "",
    );
    assert_eq!(out, "alias team@example.org -> bob@example.org, carol@remote.example\n");
    ok(&data, &["alias", "add", "@example.org", "bob@example.org"], "");
    assert_eq!(
        ok(&data, &["alias", "list"], ""),
        "@example.org -> bob@example.org\nteam@example.org -> bob@example.org, carol@remote.example\n"
    );
    let accounts = store(&data);
    let resolve = |address: &str| accounts.resolve_local(address).expect("resolve");
    assert!(
        matches!(resolve("bob+x@example.org"), Resolution::Account { login, .. } if login == "bob@example.org")
    );
    assert_eq!(
        resolve("team@example.org"),
        Resolution::Alias(vec!["bob@example.org".into(), "carol@remote.example".into()])
    );
    assert_eq!(resolve("anyone@example.org"), Resolution::Alias(vec!["bob@example.org".into()]));

    assert_eq!(
        ok(&data, &["alias", "delete", "team@example.org", "carol@remote.example"], ""),
        "deleted 1 target of alias team@example.org\n"
    );
    assert_eq!(
        ok(&data, &["alias", "delete", "@example.org"], ""),
        "deleted 1 target of alias @example.org\n"
    );
    assert_eq!(ok(&data, &["alias", "list"], ""), "team@example.org -> bob@example.org\n");
    assert_eq!(
        store(&data).resolve_local("anyone@example.org").expect("resolve"),
        Resolution::Unknown
    );
}

#[test]
fn accounts_can_be_managed_while_the_server_runs() {
    let server = TernServer::start("");
    let data = server.store_dir();
    ok(&data, &["account", "add", "live@example.org", "--password-stdin"], "pw\n");
    ok(&data, &["alias", "add", "postmaster@example.org", "live@example.org"], "");
    assert!(ok(&data, &["account", "list"], "").contains("live@example.org"));
    let mut client = server.client();
    assert!(client.reply().starts_with("220 "), "the server still answers");
}
