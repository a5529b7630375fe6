//! The web UI in a real browser: starts the `tern` binary with SMTP and HTTP on free loopback
//! ports and runs `tests/browser/e2e.mjs` (Playwright driving Debian's headless Chromium)
//! against it: a mail sent over SMTP appears in the open list without a reload, its HTML renders
//! with the remote image blocked, the attachment downloads, a search narrows the list and
//! delete removes the message, and Release queues a copy for the catcher's relay host.
//! Screenshots of each step land in
//! `$CARGO_TARGET_TMPDIR/browser-screenshots`.
//!
//! A second run (`--scenario queue`) drives the outbound queue page of an MTA whose relayed mail
//! stays queued (its DNS server is a closed loopback port): the entry appears without a reload
//! with its attempts and the DNS error text, Hold and Release change its state, Delete removes
//! it. Its screenshots land in `$CARGO_TARGET_TMPDIR/browser-screenshots-queue`.
//!
//! A third (`--scenario active-content`) mails parts a browser would run script in if it
//! rendered them (XHTML in `+xml` types, SVG, HTML, a type list ending in `text/html`) and opens
//! each part's URL as a page of its own: none runs a script, the dangerous ones download.
//!
//! A fourth (`--scenario authentication`) opens the Authentication tab of mail a verifying
//! catcher judged (`[auth] verify = true`, every record answered from `auth.records`): SPF and
//! DMARC pass for one sender, DKIM and DMARC for mail the script signs with a key of `tern dkim
//! generate`, both fail for a forged one (tagged junk), and a catcher that does not verify says
//! "Not checked". Its screenshots land in `$CARGO_TARGET_TMPDIR/
//! browser-screenshots-auth`.
//!
//! A fifth (`--scenario views`) drives the message pane's Links tab and its link check (a
//! catcher with `[http] link_check = true` against a site the script serves on loopback: 200,
//! 404, connection refused), the Codes tab's Copy button (Clipboard API and its fallback), tags
//! (add, remove, filter, live), the Envelope tab and the dark theme (system and manual); a
//! catcher with the defaults shows no "Check links". Screenshots land in
//! `$CARGO_TARGET_TMPDIR/browser-screenshots-views`.
//! Two more (`--scenario html-check`, `--scenario dashboard`, in `browser/insight.mjs`) drive
//! the insight views: a styled mail's "HTML check" tab with its platform filter; the dashboard
//! of an MTA whose relayed mail stays queued, filling live, and that of a catcher without a
//! relay, which hides the queue's cards. Screenshots in `browser-screenshots-html-check` and
//! `browser-screenshots-dashboard`.
//!
//! Needs `node`/`npm` and `/usr/bin/chromium` (`scripts/test` installs Chromium); it fails,
//! rather than skips, when they are missing. It runs `npm ci` when `node_modules` is absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The whole browser run: Chromium start-up and a dozen steps.
const E2E_TIMEOUT: Duration = Duration::from_secs(240);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const CHROMIUM: &str = "/usr/bin/chromium";
/// The catcher's relay host: the discard port on loopback, where nothing listens.
const RELAY: &str = "127.0.0.1:9";

#[test]
fn web_ui_end_to_end_in_headless_chromium() {
    run_e2e(&Server::start(), "mailbox", "browser-screenshots", &[]);
}

#[test]
fn queue_page_end_to_end_in_headless_chromium() {
    run_e2e(&Server::start_mta(), "queue", "browser-screenshots-queue", &[]);
}

#[test]
fn message_parts_run_no_script_when_opened_in_headless_chromium() {
    run_e2e(&Server::start(), "active-content", "browser-screenshots-active", &[]);
}

#[test]
fn authentication_tab_shows_spf_dkim_and_dmarc_verdicts_in_headless_chromium() {
    let keys = std::env::temp_dir().join(format!(
        "tern-browser-dkim-{}-{}",
        std::process::id(),
        free_port()
    ));
    let (key, record) = dkim_key(&keys, "signed.test", "e2e");
    let unchecked = Server::start();
    let extra = [
        ("--unchecked-http", format!("http://{}", unchecked.http)),
        ("--unchecked-smtp", unchecked.smtp.to_string()),
        ("--dkim-key", key.display().to_string()),
    ];
    run_e2e(
        &Server::start_verifying(&record),
        "authentication",
        "browser-screenshots-auth",
        &extra,
    );
    let _ = std::fs::remove_dir_all(&keys);
}

#[test]
fn links_codes_tags_envelope_and_theme_in_headless_chromium() {
    let plain = Server::start();
    let extra = [
        ("--unchecked-http", format!("http://{}", plain.http)),
        ("--unchecked-smtp", plain.smtp.to_string()),
    ];
    let checking = Server::catcher(
        "[http]\nlink_check = true\nlink_check_private_addresses = true\n\
         link_check_timeout_secs = 5\n",
    );
    run_e2e(&checking, "views", "browser-screenshots-views", &extra);
}

#[test]
fn html_check_tab_in_headless_chromium() {
    run_e2e(&Server::start(), "html-check", "browser-screenshots-html-check", &[]);
}

#[test]
fn dashboard_of_an_mta_and_a_catcher_in_headless_chromium() {
    let catcher = Server::catcher("");
    let extra = [
        ("--catcher-http", format!("http://{}", catcher.http)),
        ("--catcher-smtp", catcher.smtp.to_string()),
    ];
    run_e2e(&Server::start_mta(), "dashboard", "browser-screenshots-dashboard", &extra);
}

/// An Ed25519 key made by `tern dkim generate DOMAIN --selector SELECTOR` in `dir`: its file
/// and the TXT record it printed for `SELECTOR._domainkey.DOMAIN`.
fn dkim_key(dir: &Path, domain: &str, selector: &str) -> (PathBuf, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["dkim", "--key-dir"])
        .arg(dir)
        .args(["generate", domain, "--selector", selector, "--algorithm", "ed25519"])
        .output()
        .expect("run tern dkim generate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "tern dkim generate failed:\n{stdout}{}", combined(&output));
    let record = stdout
        .split_once("( \"")
        .and_then(|(_, rest)| rest.split_once("\" )"))
        .map(|(record, _)| record.to_string())
        .unwrap_or_else(|| panic!("no TXT record in the output of tern dkim generate:\n{stdout}"));
    (dir.join(format!("{domain}.{selector}.key")), record)
}

/// Runs `e2e.mjs --scenario SCENARIO` (with the flags `extra`) against `server`, screenshots
/// into `$CARGO_TARGET_TMPDIR/SHOTS`; fails with the script's log and the server's stderr.
fn run_e2e(server: &Server, scenario: &str, shots: &str, extra: &[(&str, String)]) {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| CHROMIUM.to_string());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium}: run `apt-get install -y chromium` \
         (scripts/test installs it); this test does not skip without a browser"
    );
    require_tool("node");
    require_tool("npm");
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    install_npm_packages(&browser_dir);

    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join(shots);
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("create screenshot dir");

    let started = Instant::now();
    let output = run_with_timeout(
        Command::new("node")
            .arg("e2e.mjs")
            .arg("--scenario")
            .arg(scenario)
            .arg("--http")
            .arg(format!("http://{}", server.http))
            .arg("--smtp")
            .arg(server.smtp.to_string())
            .arg("--out")
            .arg(&screenshots)
            .arg("--relay")
            .arg(RELAY)
            .args(extra.iter().flat_map(|(flag, value)| [*flag, value.as_str()]))
            .env("CHROMIUM_PATH", &chromium)
            .current_dir(&browser_dir),
        E2E_TIMEOUT,
    );
    let log = combined(&output);
    println!("{log}");
    println!(
        "browser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{log}\n--- tern stderr ---\n{}",
        output.status,
        server.stderr()
    );
}

/// Panics with a clear message when `program` cannot run.
fn require_tool(program: &str) {
    let ok = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        ok,
        "`{program}` is not installed or does not run; the browser test needs Node.js and npm"
    );
}

/// `npm ci` from the committed lock file, once (when `node_modules` lacks playwright-core); the
/// tests of this file run in parallel, so one installs while the others wait.
fn install_npm_packages(dir: &Path) {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if dir.join("node_modules/playwright-core/package.json").exists() {
        return;
    }
    let output = run_with_timeout(
        Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir),
        Duration::from_secs(300),
    );
    assert!(output.status.success(), "npm ci in {} failed:\n{}", dir.display(), combined(&output));
}

/// Runs a command with piped output, killing it after `timeout`.
fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {timeout:?}:\n{}{}",
                String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn combined(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `tern serve` on two free loopback ports with its own data directory; killed on drop.
struct Server {
    smtp: SocketAddr,
    http: SocketAddr,
    data: PathBuf,
    child: Child,
}

impl Server {
    /// A catcher, configured by flags but for its relay host ([`RELAY`], which refuses
    /// connections: released mail stays queued).
    fn start() -> Server {
        Server::catcher(&format!("[outbound]\nrelay_host = \"{RELAY}\"\ntls = \"off\"\n"))
    }

    /// A catcher that checks SPF, DKIM and DMARC (`[auth] verify = true`) with every record
    /// it asks for given in `auth.records` (an empty value is "no record") and its DNS server
    /// a closed loopback port: `ann@spf.test` passes SPF and DMARC from loopback,
    /// `bob@signed.test` has no SPF record but passes DKIM (with `dkim_record` at
    /// `e2e._domainkey.signed.test`) and so DMARC, and `mallory@forged.test` fails SPF and
    /// DMARC (`-all`, `p=reject`; the catcher tags it junk) and names a DKIM selector that is
    /// markup, with no key.
    fn start_verifying(dkim_record: &str) -> Server {
        Server::catcher(&format!(
            "hostname = \"tern.test\"\n\n\
             [outbound]\ndns_servers = [\"127.0.0.1:9\"]\ndns_timeout_secs = 1\n\n\
             [auth]\nverify = true\nrecords = {{ \
             \"e2e.test\" = \"\", \"_dmarc.test\" = \"\", \
             \"spf.test\" = \"v=spf1 ip4:127.0.0.0/8 -all\", \
             \"_dmarc.spf.test\" = \"v=DMARC1; p=reject\", \
             \"signed.test\" = \"\", \"_dmarc.signed.test\" = \"v=DMARC1; p=reject\", \
             \"e2e._domainkey.signed.test\" = \"{dkim_record}\", \
             \"forged.test\" = \"v=spf1 -all\", \
             \"_dmarc.forged.test\" = \"v=DMARC1; p=reject\", \
             \"x<b>hostile</b>._domainkey.forged.test\" = \"\" }}\n",
        ))
    }

    /// A catcher with its listeners given by flags and the rest by the config `toml`.
    fn catcher(toml: &str) -> Server {
        Server::launch(|data, smtp, http, store| {
            let config = data.join("tern.toml");
            std::fs::write(&config, toml).expect("write the catcher config");
            let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
            command.arg("serve").arg("--config").arg(config);
            command.arg("--smtp").arg(smtp.to_string());
            command.arg("--http").arg(http.to_string()).arg("--data").arg(store);
            command
        })
    }

    /// An MTA whose `mx` listener (`.smtp`) relays for loopback clients; its DNS server is a
    /// closed loopback port, so relayed mail stays queued with a DNS error after each attempt.
    fn start_mta() -> Server {
        Server::launch(|data, smtp, http, store| {
            let config = data.join("tern.toml");
            let toml = format!(
                "hostname = \"tern.test\"\ndata_dir = {store:?}\nmode = \"mta\"\n\n\
                 [http]\nlisten = \"{http}\"\n\n\
                 [[listener]]\naddress = \"{smtp}\"\nrole = \"mx\"\n\n\
                 [relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n\
                 [outbound]\ndns_servers = [\"127.0.0.1:9\"]\ndns_timeout_secs = 1\n"
            );
            std::fs::write(&config, toml).expect("write the MTA config");
            let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
            command.arg("serve").arg("--config").arg(config);
            command
        })
    }

    /// Starts `tern` with the command `command(data dir, smtp, http, store dir)` builds.
    fn launch(command: impl FnOnce(&Path, SocketAddr, SocketAddr, &Path) -> Command) -> Server {
        let data = std::env::temp_dir().join(format!(
            "tern-browser-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&data).expect("create data dir");
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let stderr = std::fs::File::create(data.join("stderr.log")).expect("stderr file");
        let child = command(&data, smtp, http, &data.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tern");
        let mut server = Server { smtp, http, data, child };
        server.wait_ready();
        server
    }

    /// Waits until SMTP greets and `/readyz` answers 200 from our own child.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tern exited ({status}) before listening; stderr:\n{}", self.stderr());
            }
            if smtp_greets(self.smtp) && http_ready(self.http) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tern did not start within {START_TIMEOUT:?}; stderr:\n{}", self.stderr());
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.data.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    /// Stops the server; the data directory is kept when the test failed, for inspection.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("addr").port()
}

fn smtp_greets(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 4];
    stream.read_exact(&mut banner).is_ok() && &banner == b"220 "
}

fn http_ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status = [0u8; 12];
    stream.read_exact(&mut status).is_ok() && status.ends_with(b"200")
}
