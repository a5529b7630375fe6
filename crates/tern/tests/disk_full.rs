//! A full disk, for real: the data directory is a small tmpfs mounted in a mount namespace the
//! test creates (`unshare -m`, held open by a `sleep`), Tern runs inside it (`nsenter`), and the
//! test fills and frees the filesystem through `/proc/PID/root`. Below the free-space reserve
//! `MAIL FROM` gets `452 4.3.1`; a commit that fails for want of space answers `451 4.3.0`;
//! each condition is logged once, not once per refused message; the API stays up; mail is
//! accepted again by itself once space is freed; and every message acknowledged before is
//! intact, also after a crash and restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::peers::SmtpSink;
use support::{Client, MtaListener, TernServer, is_tern_banner, temp_dir};

const MIB: u64 = 1024 * 1024;
/// The tmpfs's size and the reserve Tern keeps on it.
const DISK: u64 = 48 * MIB;
const RESERVE: u64 = 8 * MIB;

/// A mount namespace with small tmpfs filesystems mounted in it, alive while its holder (a
/// `sleep`) runs.
struct SmallDisks {
    holder: Child,
}

impl SmallDisks {
    /// A tmpfs of `size` bytes on each `(dir, size)`.
    fn mount(disks: &[(&Path, u64)]) -> SmallDisks {
        let mut script = String::new();
        for (n, (dir, size)) in disks.iter().enumerate() {
            std::fs::create_dir_all(dir).expect("mount point");
            script += &format!("mount -t tmpfs -o size={size} tern-small-disk \"${n}\" && ");
        }
        script += "echo mounted && exec sleep 600";
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .args(disks.iter().map(|(dir, _)| dir))
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).expect("holder's output");
        assert_eq!(line.trim(), "mounted", "tmpfs not mounted in a new namespace (root needed)");
        SmallDisks { holder }
    }

    /// `path` as the namespace sees it, through the holder's root.
    fn inside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").expect("absolute");
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(relative)
    }

    /// Fills the disk mounted on `dir` to the last byte, then frees `free` bytes.
    fn leave_free(&self, dir: &Path, free: u64) {
        let path = self.inside(&dir.join("filler"));
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("filler");
        let chunk = vec![0x55u8; 64 * 1024];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) || e.kind() == ErrorKind::StorageFull => {
                    break;
                }
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // A partly written last chunk: whatever fit is in the file, so the disk is full.
        let len = file.metadata().expect("filler size").len();
        file.set_len(len.saturating_sub(free)).expect("free some");
        file.sync_all().expect("sync");
    }

    fn free_all(&self, dir: &Path) {
        std::fs::remove_file(self.inside(&dir.join("filler"))).expect("remove filler");
    }

    /// `program ARGS…` run inside the namespace.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command.args(["-t", &self.holder.id().to_string(), "-m", "--", program]).args(args);
        command
    }

    /// Starts a catcher inside the namespace over `data` (its store on a small disk).
    fn catcher(&self, data: &Path) -> TernServer {
        let toml = format!("[spool]\nmin_free_bytes = {RESERVE}\n");
        TernServer::launch(data, &toml, |config| {
            let mut command = self.command(env!("CARGO_BIN_EXE_tern"), &["serve", "--config"]);
            command.arg(config);
            command
        })
    }
}

impl Drop for SmallDisks {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn message(n: usize, body_bytes: usize) -> Vec<u8> {
    let line = format!("message {n} line of text to fill the body up\r\n");
    let mut body = format!("From: a@client.test\r\nTo: b@tern.test\r\nSubject: m{n}\r\n\r\n");
    while body.len() < body_bytes {
        body.push_str(&line);
    }
    body.into_bytes()
}

fn api(server: &TernServer, path: &str) -> Vec<u8> {
    let url = format!("http://{}{path}", server.http);
    let out = Command::new("curl").args(["-sS", "--fail", &url]).output().expect("curl runs");
    assert!(out.status.success(), "GET {path}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn total(server: &TernServer) -> u64 {
    let body: Value =
        serde_json::from_slice(&api(server, "/api/v1/messages?limit=1")).expect("json");
    body["total"].as_u64().expect("total")
}

/// Every acknowledged message is stored with the exact bytes the client sent.
fn assert_intact(server: &TernServer, sent: &[(String, Vec<u8>)]) {
    assert_eq!(total(server), sent.len() as u64, "messages stored");
    for (id, bytes) in sent {
        let raw = api(server, &format!("/api/v1/message/{id}/raw"));
        assert!(raw.ends_with(bytes), "message {id} changed");
    }
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

#[test]
fn a_full_disk_defers_mail_keeps_what_was_acknowledged_and_recovers_by_itself() {
    let data = temp_dir("disk-full");
    let store = data.join("store");
    let disk = SmallDisks::mount(&[(&store, DISK)]);
    let mut server = disk.catcher(&data);
    let mut sent = Vec::new();
    for n in 0..20 {
        let bytes = message(n, 2000);
        let id = server.client_ehlo().send_message("a@client.test", &["b@tern.test"], &bytes);
        sent.push((id, bytes));
    }

    // Below the reserve: refused at MAIL, whatever the client tries, while the API answers.
    disk.leave_free(&store, RESERVE / 2);
    std::thread::sleep(Duration::from_millis(400));
    for _ in 0..10 {
        let mut c = server.client_ehlo();
        c.cmd("MAIL FROM:<a@client.test>", "452 4.3.1 ");
    }
    assert_intact(&server, &sent);

    // Room at MAIL, none left at the end of data: the commits fail, the clients get 451.
    disk.leave_free(&store, RESERVE * 2);
    std::thread::sleep(Duration::from_millis(400));
    let mut waiting: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = server.client_ehlo();
            c.cmd("MAIL FROM:<a@client.test>", "250 ");
            c.cmd("RCPT TO:<b@tern.test>", "250 ");
            c.cmd("DATA", "354 ");
            c
        })
        .collect();
    disk.leave_free(&store, 0);
    for (n, c) in waiting.iter_mut().enumerate() {
        c.send(&message(100 + n, 3 * MIB as usize));
        c.send(b".\r\n");
        let reply = c.reply();
        assert!(reply.starts_with("451 4.3.0 "), "a commit on a full disk: {reply:?}");
    }
    assert_intact(&server, &sent);

    // Space freed: accepted again, without a restart.
    disk.free_all(&store);
    std::thread::sleep(Duration::from_millis(400));
    let bytes = message(200, 2000);
    let id = server.client_ehlo().send_message("a@client.test", &["b@tern.test"], &bytes);
    sent.push((id, bytes));
    assert_intact(&server, &sent);

    let log = server.stderr();
    assert_eq!(lines_with(&log, "free space below the reserve"), 1, "logged once:\n{log}");
    assert_eq!(lines_with(&log, "free space above the reserve again"), 1, "{log}");
    assert_eq!(lines_with(&log, " ERROR "), 1, "one error for the failed commits:\n{log}");
    assert_eq!(lines_with(&log, " WARN "), 1, "one warning, for the reserve:\n{log}");
    assert_eq!(lines_with(&log, "spool commits succeed again"), 1, "{log}");

    // A crash now loses nothing either.
    server.kill9();
    let server = disk.catcher(&data);
    assert_intact(&server, &sent);
}

trait Greeted {
    fn client_ehlo(&self) -> Client;
}

impl Greeted for TernServer {
    fn client_ehlo(&self) -> Client {
        let mut c = Client::greeted(self.addr);
        c.cmd("EHLO client.test", "250");
        c
    }
}

/// Polls `check` every 100 ms for up to 20 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn maildir_copies_and_delivery_records_wait_for_space_and_nothing_is_lost_or_sent_twice() {
    let data = temp_dir("disk-full-mta");
    let (store, mail) = (data.join("store"), data.join("mail"));
    let disks = SmallDisks::mount(&[(&store, DISK), (&mail, 4 * MIB)]);
    // The sink waits 3 s before answering DATA: the disk fills while Tern waits for it.
    let sink = SmtpSink::start_with(Ipv4Addr::LOCALHOST, &["-w", "3"]);
    let toml = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n\
         [outbound]\nrelay_host = \"{}\"\ntls = \"off\"\n\n\
         [spool]\nmin_free_bytes = {RESERVE}\n",
        sink.addr()
    );
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    let (server, _) = TernServer::launch_mta(&data, &listeners, &toml, is_tern_banner, |config| {
        let mut command = disks.command(env!("CARGO_BIN_EXE_tern"), &["serve", "--config"]);
        command.arg(config);
        command
    });
    let maildir = mail.join("carol");
    let (store_arg, maildir_arg) = (store.display().to_string(), maildir.display().to_string());
    let mut add = disks.command(
        env!("CARGO_BIN_EXE_tern"),
        &["account", "add", "carol@tern.test", "--password-stdin", "--data", &store_arg],
    );
    let mut add = add.args(["--maildir", &maildir_arg]).stdin(Stdio::piped()).spawn().expect("add");
    add.stdin.take().expect("stdin").write_all(b"pw\n").expect("password");
    assert!(add.wait().expect("account add").success());

    // The Maildir's disk is full: the message is accepted (the store has room), its copy
    // waits, and appears once space is freed.
    disks.leave_free(&mail, 0);
    let local = message(1, 64 * 1024);
    server.client_ehlo().send_message("a@client.test", &["carol@tern.test"], &local);
    std::thread::sleep(Duration::from_secs(1));
    let new = disks.inside(&maildir.join("new"));
    let copies = || std::fs::read_dir(&new).map(Iterator::count).unwrap_or(0);
    assert_eq!(copies(), 0, "no room for the copy");
    disks.free_all(&mail);
    eventually("the Maildir copy", || copies() == 1);
    let file = std::fs::read_dir(&new).expect("new").flatten().next().expect("copy").path();
    assert!(std::fs::read(file).expect("copy").ends_with(&local), "the copy is whole");

    // Relayed mail: the store's disk fills while the sink holds DATA, so the result may not
    // be recordable at first; it is recorded once there is room, and sent once.
    let relayed = message(2, 2000);
    server.client_ehlo().send_message("a@client.test", &["bob@far.test"], &relayed);
    std::thread::sleep(Duration::from_secs(1));
    // An empty WAL, so the record must grow it (it would otherwise reuse the WAL's space).
    let db = store.join("tern.db").display().to_string();
    let truncate = "import sqlite3, sys\n\
        print(sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])";
    let out = disks.command("python3", &["-c", truncate, &db]).output().expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "checkpoint busy: {out:?}");
    disks.leave_free(&store, 0);
    std::thread::sleep(Duration::from_secs(4));
    disks.free_all(&store);
    sink.wait_for_messages(1, Duration::from_secs(20));
    eventually("an empty queue", || {
        let queue: Value = serde_json::from_slice(&api(&server, "/api/v1/queue")).expect("json");
        queue["Total"].as_u64() == Some(0)
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sink.counts().messages, 1, "sent exactly once: {:?}", sink.counts());

    let log = server.stderr();
    assert_eq!(lines_with(&log, "Maildir copies not written"), 1, "logged once:\n{log}");
    assert_eq!(lines_with(&log, "pending Maildir copies written"), 1, "{log}");
    assert_eq!(lines_with(&log, "cannot record a change"), 1, "logged once:\n{log}");
    assert_eq!(lines_with(&log, "change recorded after the store failed"), 1, "{log}");
    assert_eq!(lines_with(&log, " ERROR "), 0, "{log}");
}
