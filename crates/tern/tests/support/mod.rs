//! Shared pieces of the end-to-end tests: the real `tern` binary started on a free loopback
//! port with its own data directory, a raw SMTP client that speaks bytes, and store access.
#![allow(dead_code)]

pub mod peers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tern_store::{MessageId, SqliteStore, StoreRead, StoredMessage};

/// A running `tern serve` with its own data directory, killed on drop.
pub struct TernServer {
    pub addr: SocketAddr,
    /// The HTTP API's address.
    pub http: SocketAddr,
    pub data: PathBuf,
    pub child: Child,
    pub stderr_path: PathBuf,
    /// Set by [`TernServer::stop_keeping_data`] so a restart can reuse the directory.
    keep_data: bool,
}

/// A fresh directory under the target's temp space.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-test-{label}-{}", MessageId::generate()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("addr").port()
}

impl TernServer {
    /// Starts the server with `extra_toml` appended to a config that sets listen and data_dir.
    pub fn start(extra_toml: &str) -> TernServer {
        let data = temp_dir("server");
        Self::start_in(&data, extra_toml)
    }

    /// Starts (or restarts) a server over an existing data directory.
    pub fn start_in(data: &Path, extra_toml: &str) -> TernServer {
        Self::launch(data, extra_toml, |config| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
            command.args(["serve", "--config"]).arg(config);
            command
        })
    }

    /// Starts a server with a command built by `command` from the config file's path (to run
    /// tern under a wrapper that `exec`s it, e.g. with resource limits).
    pub fn launch(data: &Path, extra_toml: &str, command: impl Fn(&Path) -> Command) -> TernServer {
        for _ in 0..PORT_ATTEMPTS {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let config = data.join("tern.toml");
            let toml = format!(
                "hostname = \"tern.test\"\ndata_dir = {:?}\n{extra_toml}\n",
                data.join("store").display().to_string()
            );
            let toml = if toml.contains("[http]") {
                toml.replacen("[http]", &format!("[http]\nlisten = \"{http}\""), 1)
            } else {
                format!("{toml}\n[http]\nlisten = \"{http}\"\n")
            };
            let toml = if toml.contains("[smtp]") {
                toml.replacen("[smtp]", &format!("[smtp]\nlisten = [\"{addr}\"]"), 1)
            } else {
                format!("{toml}\n[smtp]\nlisten = [\"{addr}\"]\n")
            };
            std::fs::write(&config, toml).expect("write config");
            let server = Self::spawn(data, addr, http, command(&config));
            if let Some(server) = server.ready_for(is_tern_banner) {
                return server;
            }
        }
        panic!("no free ports for tern after {PORT_ATTEMPTS} attempts");
    }

    /// Runs `command` (its log to a file in `data`) as the server for `addr` and `http`.
    fn spawn(data: &Path, addr: SocketAddr, http: SocketAddr, mut command: Command) -> TernServer {
        let stderr_path = data.join(format!("stderr-{}.log", addr.port()));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        // The readiness check reads the "tern ready" line: keep the default log level.
        command.env_remove("RUST_LOG");
        let child = command.stdout(Stdio::null()).stderr(stderr).spawn().expect("spawn tern");
        TernServer { addr, http, data: data.to_path_buf(), child, stderr_path, keep_data: false }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data.join("store")
    }

    /// Opens the store read-only (the server keeps running).
    pub fn store(&self) -> SqliteStore {
        SqliteStore::open_read_only(&self.store_dir()).expect("open store")
    }

    pub fn message(&self, id: &str) -> Option<StoredMessage> {
        let id: MessageId = id.parse().expect("queue id");
        self.store().message(&id).expect("read message")
    }

    pub fn count(&self) -> u64 {
        self.store().count().expect("count")
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// `tern account add LOGIN --password-stdin --data STORE` for this server's store.
    pub fn add_account(&self, login: &str, password: &str) {
        let store = self.store_dir().display().to_string();
        let args = ["account", "add", login, "--password-stdin", "--data", store.as_str()];
        let out = run(env!("CARGO_BIN_EXE_tern"), &args, Some(format!("{password}\n").as_bytes()));
        assert!(out.contains("added account"), "{out}");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().expect("wait")
    }

    /// Sends the signal `name` (`HUP`, `TERM`, …) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        Command::new("kill").args([format!("-{name}").as_str(), &pid]).status().expect("kill");
    }

    /// Kills the server and hands back its data directory for a restart with `start_in`.
    pub fn stop_keeping_data(mut self) -> PathBuf {
        self.keep_data = true;
        self.data.clone()
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[[listener]]` of a server started by [`TernServer::start_mta`].
#[derive(Debug, Clone, Copy)]
pub struct MtaListener {
    /// `mx`, `submission` or `submissions`.
    pub role: &'static str,
    /// The listener's `allow_plaintext_auth`.
    pub allow_plaintext_auth: bool,
}

/// The normal readiness banner of a server with hostname `tern.test`.
pub fn is_tern_banner(banner: &str) -> bool {
    banner.starts_with("220 tern.test ESMTP Tern")
}

impl TernServer {
    /// Starts `tern serve` with `mode = "mta"`, one `[[listener]]` per entry of `listeners`
    /// (each on a free loopback port) and `extra_toml` appended: tables such as `[relay]`,
    /// `[limits]`, `[lists]` or `[smtp]`, but not `[http]`, which is written here. The first
    /// listener must greet in plaintext (`mx` or `submission`): it becomes `.addr`, and the
    /// server counts as ready once a banner read there satisfies `ready` (usually
    /// [`is_tern_banner`]; a test that blocks loopback waits for its `554` instead). That
    /// readiness check is one connection from 127.0.0.1. Returns the server and the address
    /// of each listener, in the order given.
    pub fn start_mta(
        listeners: &[MtaListener],
        extra_toml: &str,
        ready: fn(&str) -> bool,
    ) -> (TernServer, Vec<SocketAddr>) {
        Self::start_mta_in(&temp_dir("mta"), listeners, extra_toml, ready)
    }

    /// [`TernServer::start_mta`] over an existing data directory (a restart gets new ports).
    pub fn start_mta_in(
        data: &Path,
        listeners: &[MtaListener],
        extra_toml: &str,
        ready: fn(&str) -> bool,
    ) -> (TernServer, Vec<SocketAddr>) {
        Self::launch_mta(data, listeners, extra_toml, ready, |config| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
            command.args(["serve", "--config"]).arg(config);
            command
        })
    }

    /// [`TernServer::start_mta_in`] with a command built by `command` from the config file's
    /// path (as [`TernServer::launch`]: a wrapper that `exec`s tern).
    pub fn launch_mta(
        data: &Path,
        listeners: &[MtaListener],
        extra_toml: &str,
        ready: fn(&str) -> bool,
        command: impl Fn(&Path) -> Command,
    ) -> (TernServer, Vec<SocketAddr>) {
        assert!(!listeners.is_empty(), "mode = \"mta\" needs a listener");
        for _ in 0..PORT_ATTEMPTS {
            let addrs: Vec<SocketAddr> = listeners
                .iter()
                .map(|_| format!("127.0.0.1:{}", free_port()).parse().expect("addr"))
                .collect();
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            // An `[http]` table in `extra_toml` gets the listen address; otherwise one is added.
            let (extra_toml, http_table) = if extra_toml.contains("[http]") {
                (
                    extra_toml.replacen("[http]", &format!("[http]\nlisten = \"{http}\""), 1),
                    String::new(),
                )
            } else {
                (extra_toml.to_string(), format!("\n[http]\nlisten = \"{http}\"\n"))
            };
            let mut toml = format!(
                "hostname = \"tern.test\"\ndata_dir = {:?}\nmode = \"mta\"\n{http_table}",
                data.join("store").display().to_string()
            );
            for (listener, addr) in listeners.iter().zip(&addrs) {
                toml += &format!(
                    "\n[[listener]]\naddress = \"{addr}\"\nrole = \"{}\"\nallow_plaintext_auth = {}\n",
                    listener.role, listener.allow_plaintext_auth
                );
            }
            toml += &format!("\n{extra_toml}\n");
            // Outbound DNS never leaves loopback: without a test's own `[outbound]`, lookups go to
            // a closed port and fail as temporary errors (relayed mail then waits in the queue).
            if !extra_toml.contains("[outbound]") {
                toml += "\n[outbound]\ndns_servers = [\"127.0.0.1:9\"]\ndns_timeout_secs = 1\n";
            }
            // Checking SPF/DKIM/DMARC needs DNS too: tests that do not test it turn it off (with
            // the closed port above, every check would end in a 451 temperror).
            if !extra_toml.contains("[auth]") {
                toml += "\n[auth]\nverify = false\n";
            }
            let config = data.join("tern.toml");
            std::fs::write(&config, toml).expect("write config");
            let server = Self::spawn(data, addrs[0], http, command(&config));
            if let Some(server) = server.ready_for(ready) {
                return (server, addrs);
            }
        }
        panic!("no free ports for tern after {PORT_ATTEMPTS} attempts");
    }

    /// Waits until our own child is ready (its "tern ready" line) and answers on `.addr` with
    /// a banner that satisfies `ready`. `None` when another process held one of its ports
    /// (`free_port` only says a port was free a moment ago): the child has exited and the
    /// caller tries other ports. A banner alone could come from that other process.
    fn ready_for(mut self, ready: fn(&str) -> bool) -> Option<TernServer> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.stderr();
                if log.contains("Address already in use") {
                    // The data directory stays for the next attempt.
                    self.keep_data = true;
                    return None;
                }
                panic!("tern exited ({status}) before listening; stderr:\n{log}");
            }
            if self.stderr().contains("tern ready")
                && let Ok(stream) = TcpStream::connect(self.addr)
            {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut banner = String::new();
                let _ = BufReader::new(stream).read_line(&mut banner);
                if ready(&banner) {
                    return Some(self);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tern did not start; stderr:\n{}", self.stderr());
    }
}

/// Tries at starting a server on fresh ports before a port race fails the test.
const PORT_ATTEMPTS: usize = 5;

impl Drop for TernServer {
    /// Stops the server; its data directory is kept only when a test failed, for inspection.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_data && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// A blocking SMTP client that sends raw bytes and reads whole replies.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let writer = stream.try_clone().expect("clone");
        Client { reader: BufReader::new(stream), writer }
    }

    /// Connects and consumes the banner, asserting it.
    pub fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        let banner = c.reply();
        assert!(banner.starts_with("220 tern.test ESMTP Tern"), "banner {banner:?}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Reads one complete (possibly multi-line) reply; "" on EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    /// Sends a command line and asserts the reply starts with `expect`; returns the reply.
    pub fn cmd(&mut self, line: &str, expect: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let reply = self.reply();
        assert!(reply.starts_with(expect), "{line:?} -> {reply:?}, wanted {expect:?}");
        reply
    }

    /// EHLO, MAIL, RCPT, DATA with `body` (already dot-stuffed, without the final dot line).
    /// Returns the queue id.
    pub fn send_message(&mut self, from: &str, to: &[&str], body: &[u8]) -> String {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250 ");
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"), "250 ");
        }
        self.cmd("DATA", "354 ");
        self.send(body);
        self.send(b".\r\n");
        let reply = self.reply();
        queue_id(&reply).unwrap_or_else(|| panic!("not queued: {reply:?}"))
    }

    /// True when the connection is still open and the server has said nothing within
    /// `wait`: a read that times out, rather than end of stream or a reset.
    pub fn is_open_and_silent(&mut self, wait: Duration) -> bool {
        let mut buf = [0u8; 1];
        self.reader.get_ref().set_read_timeout(Some(wait)).expect("timeout");
        let silent = matches!(
            self.reader.read(&mut buf),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        );
        self.reader.get_ref().set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        silent
    }

    /// True when the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// The id in a `250 2.0.0 Ok: queued as ID` reply.
pub fn queue_id(reply: &str) -> Option<String> {
    reply.strip_prefix("250 2.0.0 Ok: queued as ").map(|rest| rest.trim().to_string())
}

/// Runs an external program, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is not installed or cannot run ({e}); scripts/test installs it")
        });
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// `tern dkim generate DOMAIN --key-dir DIR ARGS…`; returns (selector, record) per key printed.
pub fn dkim_generate(dir: &Path, domain: &str, args: &[&str]) -> Vec<(String, String)> {
    let dir = dir.display().to_string();
    let mut argv = vec!["dkim", "generate", domain, "--key-dir", dir.as_str()];
    argv.extend_from_slice(args);
    let out = run(env!("CARGO_BIN_EXE_tern"), &argv, None);
    out.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(". IN TXT ( ")?;
            let selector = name.split("._domainkey.").next()?.to_string();
            let record: String = rest
                .trim_end_matches(" )")
                .split('"')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, part)| part)
                .collect();
            Some((selector, record))
        })
        .collect()
}

/// Python shared by the scripts the end-to-end tests run (`Raw`, `Recorder`, `emit`, …).
pub const PY_PRELUDE: &str = include_str!("prelude.py");

/// Runs `script` (after [`PY_PRELUDE`]) with `args` and returns the JSON object it emitted.
pub fn python(script: &str, args: &[&str]) -> serde_json::Value {
    python_input(script, args, None)
}

/// [`python`], feeding `stdin` to the script.
pub fn python_input(script: &str, args: &[&str], stdin: Option<&[u8]>) -> serde_json::Value {
    let program = format!("{PY_PRELUDE}\n{script}");
    let mut argv = vec!["-c", program.as_str()];
    argv.extend_from_slice(args);
    let output = run("python3", &argv, stdin);
    let line = output
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("python printed no RESULT line:\n{output}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON from python ({e}): {line}"))
}

/// A string field of a script's JSON result.
#[track_caller]
pub fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("result has no string {key:?}: {value}"))
}
