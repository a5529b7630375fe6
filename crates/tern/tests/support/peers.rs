//! Real peers on loopback for the outbound-delivery tests: a DNS server (`dnsmasq`) that serves
//! the test's MX, A, TXT … records, private Postfix instances (an MX that stores into Maildirs, a
//! smarthost that wants SASL AUTH over STARTTLS, a relay that forwards to Tern) and Postfix's
//! `smtp-sink` for counting and benchmarks.
//!
//! Everything listens on 127.0.0.0/8 only and nothing talks to any other address: dnsmasq has no
//! upstream and answers NXDOMAIN for every name it was not given, and the Postfix MX and smarthost
//! instances turn any mail they would send out into an immediate error. Each peer has its own
//! directory and its own ports, so tests may run in parallel; each stops its processes on drop,
//! also when the test panics (then its directory is kept for inspection and its path printed).
//!
//! ```text
//! let dns = Dnsmasq::start(&[
//!     DnsRecord::mx("dest.test", "mx1.dest.test", 10),
//!     DnsRecord::a("mx1.dest.test", [127, 0, 0, 2]),
//! ]);
//! let ip = Ipv4Addr::new(127, 0, 0, 2);
//! let mx = Postfix::mx(&["alice@dest.test"], PostfixOptions { ip, ..Default::default() });
//! // … Tern resolves with dns.addr() and delivers to mx.port() …
//! let stored = mx.wait_for_messages("alice@dest.test", 1, Duration::from_secs(20));
//! ```
//!
//! Needs root (Postfix's `master` runs as root) and the Debian packages `postfix`,
//! `dnsmasq-base`, `dnsutils`, `libsasl2-modules` and `sasl2-bin`; `./scripts/test` installs
//! them. A missing program is a panic that says so, never a skipped test.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::temp_dir;

const POSTFIX: &str = "/usr/sbin/postfix";
const POSTQUEUE: &str = "/usr/sbin/postqueue";
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
const SASLPASSWD2: &str = "/usr/sbin/saslpasswd2";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Where every Postfix instance gets its directory. Fixed (not `$TMPDIR`) because the `postfix`
/// and `nobody` users must be able to reach it, and it is the instances' `maillog_file_prefixes`.
const POSTFIX_ROOT: &str = "/tmp/tern-postfix";

/// The one Maildir (under `mail/`) of a smarthost.
const CATCH_ALL: &str = "all";

/// How long a peer may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Panics unless `program` exists, naming the package and `./scripts/test`.
fn require(program: &str, package: &str) {
    if !Path::new(program).exists() {
        panic!("{program} is missing: run ./scripts/test, which installs the package {package}");
    }
}

/// Postfix's `master` must start as root; say so instead of failing obscurely.
fn require_root(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    assert!(euid == "0", "{what} needs root (the test runs with euid {euid:?})");
}

/// The uid and gid of a local user, from /etc/passwd.
fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == name)
                .then(|| (fields[2].parse().ok(), fields[3].parse().ok()))
        })
        .and_then(|(uid, gid)| Some((uid?, gid?)))
        .unwrap_or_else(|| panic!("no user {name:?} in /etc/passwd (is postfix installed?)"))
}

fn chown(path: &Path, user: &str) {
    let (uid, gid) = user_ids(user);
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} {user}: {e}", path.display()));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {} {mode:o}: {e}", path.display()));
}

/// Writes a config file, readable by all and dated 10 s back: Postfix waits until a `main.cf`
/// or lookup table is a couple of seconds old before it reads it ("being modified").
fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o644);
    let past = SystemTime::now() - Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(past))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A TCP port that was free on `ip` a moment ago.
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind :0").local_addr().expect("addr").port()
}

/// A TCP port that was free on every one of `ips` a moment ago: for MX hosts that listen on
/// different loopback addresses with the same port.
pub fn free_port_on_all(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..100 {
        let port = free_port_on(ips[0]);
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// A port free for both UDP and TCP on 127.0.0.1 a moment ago.
fn free_udp_tcp_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind :0");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// Connects to `addr` and returns the first line the server sends, if any.
fn banner(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    Some(line)
}

/// A certificate and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a self-signed RSA certificate for `name` (also its DNS subjectAltName) in `dir` with
/// the `openssl` program: `cert.pem` and `key.pem`.
pub fn self_signed_cert(dir: &Path, name: &str) -> TlsFiles {
    let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{name}"))
        .arg("-keyout")
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .output()
        .unwrap_or_else(|e| panic!("openssl cannot run ({e}); ./scripts/test installs it"));
    assert!(out.status.success(), "openssl req failed:\n{}", output_text(&out));
    files
}

// ---------------------------------------------------------------------------------------------
// DNS

/// One thing a [`Dnsmasq`] serves. Names not mentioned in any record answer NXDOMAIN; a name
/// that has some record but not of the asked type answers NOERROR with no data (NODATA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRecord {
    /// `domain MX preference host`. Several for one domain are allowed.
    Mx { domain: String, host: String, preference: u16 },
    /// The RFC 7505 null MX, `domain MX 0 .` ("this domain accepts no mail").
    NullMx { domain: String },
    /// `host A addr`, and the matching PTR record. Several for one host are allowed.
    A { host: String, addr: Ipv4Addr },
    /// `host AAAA addr`.
    Aaaa { host: String, addr: Ipv6Addr },
    /// `host A addr` without the PTR record [`DnsRecord::A`] brings along.
    AOnly { host: String, addr: Ipv4Addr },
    /// `addr PTR name` (the reverse name is built from `addr`).
    Ptr { addr: Ipv4Addr, name: String },
    /// `alias CNAME target` (the target must be a name this server knows).
    Cname { alias: String, target: String },
    /// `name TXT "text"` as one character-string (keep it under 256 bytes).
    Txt { name: String, text: String },
    /// Queries for `domain` and its subdomains are never answered (the resolver times out):
    /// dnsmasq forwards them to a loopback UDP socket that reads nothing.
    Timeout { domain: String },
}

impl DnsRecord {
    pub fn mx(domain: &str, host: &str, preference: u16) -> DnsRecord {
        DnsRecord::Mx { domain: domain.into(), host: host.into(), preference }
    }

    pub fn null_mx(domain: &str) -> DnsRecord {
        DnsRecord::NullMx { domain: domain.into() }
    }

    pub fn a(host: &str, addr: impl Into<Ipv4Addr>) -> DnsRecord {
        DnsRecord::A { host: host.into(), addr: addr.into() }
    }

    pub fn aaaa(host: &str, addr: Ipv6Addr) -> DnsRecord {
        DnsRecord::Aaaa { host: host.into(), addr }
    }

    pub fn a_only(host: &str, addr: Ipv4Addr) -> DnsRecord {
        DnsRecord::AOnly { host: host.into(), addr }
    }

    pub fn ptr(addr: Ipv4Addr, name: &str) -> DnsRecord {
        DnsRecord::Ptr { addr, name: name.into() }
    }

    pub fn cname(alias: &str, target: &str) -> DnsRecord {
        DnsRecord::Cname { alias: alias.into(), target: target.into() }
    }

    pub fn txt(name: &str, text: &str) -> DnsRecord {
        DnsRecord::Txt { name: name.into(), text: text.into() }
    }

    pub fn timeout(domain: &str) -> DnsRecord {
        DnsRecord::Timeout { domain: domain.into() }
    }

    /// This record as a line of dnsmasq's configuration file (`black_hole`: the port that
    /// swallows [`DnsRecord::Timeout`] queries).
    fn conf_line(&self, black_hole: u16) -> String {
        match self {
            DnsRecord::Mx { domain, host, preference } => {
                format!("mx-host={domain},{host},{preference}")
            }
            DnsRecord::NullMx { domain } => format!("mx-host={domain},.,0"),
            DnsRecord::A { host, addr } => format!("host-record={host},{addr}"),
            DnsRecord::Aaaa { host, addr } => format!("host-record={host},{addr}"),
            DnsRecord::AOnly { host, addr } => format!("address=/{host}/{addr}"),
            DnsRecord::Ptr { addr, name } => {
                let [a, b, c, d] = addr.octets();
                format!("ptr-record={d}.{c}.{b}.{a}.in-addr.arpa,{name}")
            }
            DnsRecord::Cname { alias, target } => format!("cname={alias},{target}"),
            DnsRecord::Txt { name, text } => {
                // One TXT character-string holds at most 255 bytes (a DKIM RSA key needs two).
                let strings: Vec<String> = text
                    .as_bytes()
                    .chunks(255)
                    .map(|chunk| {
                        let chunk = String::from_utf8_lossy(chunk);
                        format!("\"{}\"", chunk.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                format!("txt-record={name},{}", strings.join(","))
            }
            DnsRecord::Timeout { domain } => format!("server=/{domain}/127.0.0.1#{black_hole}"),
        }
    }
}

/// A `dnsmasq` serving only the given records on 127.0.0.1 (UDP and TCP, one free port),
/// killed on drop. Point Tern's resolver at [`Dnsmasq::addr`].
pub struct Dnsmasq {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    /// Receives (and never answers) the queries of [`DnsRecord::Timeout`] domains.
    _black_hole: UdpSocket,
}

impl Dnsmasq {
    /// Starts the server and waits until it answers a query.
    pub fn start(records: &[DnsRecord]) -> Dnsmasq {
        require(DNSMASQ, "dnsmasq-base");
        let dir = temp_dir("dnsmasq");
        let black_hole = UdpSocket::bind("127.0.0.1:0").expect("bind black hole");
        let black_hole_port = black_hole.local_addr().expect("addr").port();
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_udp_tcp_port();
            let mut conf = format!(
                "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                 log-queries\n# every name not configured below answers NXDOMAIN\naddress=/#/\n"
            );
            for record in records {
                conf += &record.conf_line(black_hole_port);
                conf.push('\n');
            }
            let conf_path = dir.join("dnsmasq.conf");
            write_file(&conf_path, conf);
            let log_path = dir.join("dnsmasq.log");
            let log = std::fs::File::create(&log_path).expect("dnsmasq log");
            let child = Command::new(DNSMASQ)
                .arg("--keep-in-foreground")
                .arg(format!("--conf-file={}", conf_path.display()))
                .args(["--pid-file=", "--log-facility=-"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {DNSMASQ} ({e}); run ./scripts/test"));
            let mut server = Dnsmasq {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                child,
                dir: dir.clone(),
                _black_hole: black_hole.try_clone().expect("clone socket"),
            };
            match server.wait_ready() {
                Ok(()) => return server,
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("dnsmasq did not start; its log:\n{log}"),
            }
        }
        panic!("dnsmasq found no free port; last log:\n{last_log}");
    }

    /// Sends a query until one is answered; `Err(log)` when dnsmasq exited or never answered.
    fn wait_ready(&mut self) -> Result<(), String> {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind probe");
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let query = dns_query(0x7e57, "ready.probe.invalid", 1);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited with {status})\n{}", self.log()));
            }
            let _ = socket.send_to(&query, self.addr);
            let mut buf = [0u8; 512];
            if let Ok((n, _)) = socket.recv_from(&mut buf)
                && n >= 2
                && buf[..2] == query[..2]
            {
                return Ok(());
            }
        }
        Err(format!("(no answer within {START_TIMEOUT:?})\n{}", self.log()))
    }

    /// The UDP and TCP address the server answers on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// dnsmasq's log: start-up messages and every query (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("dnsmasq on {} kept its directory {}", self.addr, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A DNS query for `name` of type `qtype`, class IN, recursion desired.
fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|label| !label.is_empty()) {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&qtype.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet
}

// ---------------------------------------------------------------------------------------------
// Postfix

/// Settings shared by every kind of [`Postfix`] instance; start from `Default::default()`.
#[derive(Debug, Clone)]
pub struct PostfixOptions {
    /// The address smtpd listens on (127.0.0.1 unless a test needs several "hosts").
    pub ip: Ipv4Addr,
    /// The port; `None` picks a free one (and retries another if it is taken meanwhile).
    pub port: Option<u16>,
    /// `myhostname` (banner, EHLO); `None` gives a unique `pfN-….peer.test`.
    pub hostname: Option<String>,
    /// Offer STARTTLS with this certificate (`smtpd_tls_security_level = may`).
    pub tls: Option<TlsFiles>,
    /// `message_size_limit` in bytes (Postfix's default is 10240000).
    pub message_size_limit: Option<u64>,
    /// `smtputf8_enable` (on by default).
    pub smtputf8: bool,
    /// `check_recipient_access` entries: an address (or domain) and the action, e.g.
    /// `("busy@dest.test", "450 4.2.0 try later")` or `("x@dest.test", "REJECT no thanks")`.
    pub recipient_access: Vec<(String, String)>,
    /// Relay mode only: log in to the relay host with this (login, password), which makes
    /// Postfix insist on STARTTLS there (`smtp_tls_security_level = encrypt`).
    pub relay_login: Option<(String, String)>,
    /// Extra `main.cf` settings, applied last (they replace what the helper wrote), e.g.
    /// `("smtpd_discard_ehlo_keywords", "chunking, pipelining")`.
    pub main_cf: Vec<(String, String)>,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        PostfixOptions {
            ip: Ipv4Addr::LOCALHOST,
            port: None,
            hostname: None,
            tls: None,
            message_size_limit: None,
            smtputf8: true,
            recipient_access: Vec::new(),
            relay_login: None,
            main_cf: Vec::new(),
        }
    }
}

/// What a [`Postfix`] instance is for.
#[derive(Debug, Clone)]
enum Role {
    /// Final destination for the domains of these addresses.
    Mx { addresses: Vec<String> },
    /// Accepts mail for anybody from clients that logged in with one of these.
    Smarthost { logins: Vec<(String, String)> },
    /// Forwards everything it gets from 127.0.0.0/8 to this host.
    Relay { relayhost: SocketAddr },
}

/// A private Postfix instance (own config, queue, data and mail directories under
/// `/tmp/tern-postfix/<unique>/`), stopped on drop.
///
/// Delivered mail is stored by virtual(8) in Maildirs, one per recipient; read them with
/// [`Postfix::maildir_messages`] / [`Postfix::wait_for_messages`]. Postfix prepends
/// `Return-Path:` and `Delivered-To:` headers to each stored message.
pub struct Postfix {
    dir: PathBuf,
    addr: SocketAddr,
    hostname: String,
    /// A smarthost keeps all mail in one Maildir.
    catch_all: bool,
}

static INSTANCES: AtomicU32 = AtomicU32::new(0);

impl Postfix {
    /// An MX: accepts mail for each of `addresses` (`user@domain`; their domains become
    /// `virtual_mailbox_domains`) into its Maildir, rejects other users of those domains with
    /// `550 5.1.1` at RCPT and refuses to relay anywhere else (`554 5.7.1`).
    pub fn mx(addresses: &[&str], options: PostfixOptions) -> Postfix {
        assert!(!addresses.is_empty(), "an MX needs at least one address");
        let addresses = addresses.iter().map(|a| a.to_string()).collect();
        Postfix::launch(Role::Mx { addresses }, options)
    }

    /// A smarthost: offers STARTTLS (`options.tls` is required) and SASL AUTH PLAIN and LOGIN
    /// after it (`smtpd_tls_auth_only`) for `logins` (login, password); a client that logged
    /// in may send to any address, and every recipient gets a Maildir. Without AUTH every
    /// recipient is refused with `554 5.7.1`. SASL is Cyrus with a private sasldb2.
    pub fn smarthost(logins: &[(&str, &str)], options: PostfixOptions) -> Postfix {
        assert!(options.tls.is_some(), "a smarthost needs options.tls (AUTH is TLS-only)");
        let logins = logins.iter().map(|(l, p)| (l.to_string(), p.to_string())).collect();
        Postfix::launch(Role::Smarthost { logins }, options)
    }

    /// A relay: accepts mail from 127.0.0.0/8 for any address and forwards it to
    /// `relayhost` (`relayhost = [ip]:port`, e.g. Tern), with opportunistic STARTTLS (or
    /// AUTH over mandatory TLS with `options.relay_login`). Retries every second or two.
    pub fn relay(relayhost: SocketAddr, options: PostfixOptions) -> Postfix {
        Postfix::launch(Role::Relay { relayhost }, options)
    }

    fn launch(role: Role, options: PostfixOptions) -> Postfix {
        require(POSTFIX, "postfix");
        require_root("a private Postfix instance");
        if matches!(role, Role::Smarthost { .. }) {
            require(SASLPASSWD2, "sasl2-bin");
        }
        reap_stale_instances();
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let dir = new_instance_dir(n);
        let hostname = options.hostname.clone().unwrap_or_else(|| {
            format!("pf-{}.peer.test", dir.file_name().expect("name").to_string_lossy())
        });
        let etc = dir.join("etc");
        for (sub, owner) in
            [("etc", "root"), ("queue", "root"), ("data", "postfix"), ("mail", "nobody")]
        {
            let path = dir.join(sub);
            std::fs::create_dir(&path).expect("create instance dir");
            set_mode(&path, 0o755);
            chown(&path, owner);
        }
        let mut main = base_main_cf(&dir, &hostname, &options);
        match &role {
            Role::Mx { addresses } => {
                let mut domains = BTreeSet::new();
                let mut map = String::new();
                for address in addresses {
                    let (local, domain) = split_address(address);
                    map += &format!("{local}@{domain} {domain}/{local}/\n");
                    domains.insert(domain);
                }
                write_file(&etc.join("vmailbox"), map);
                let domains: Vec<String> = domains.into_iter().collect();
                set(&mut main, "virtual_mailbox_domains", &domains.join(", "));
                set(
                    &mut main,
                    "virtual_mailbox_maps",
                    &format!("texthash:{}/vmailbox", etc.display()),
                );
                set(&mut main, "mynetworks", "");
                set(&mut main, "smtpd_relay_restrictions", "reject_unauth_destination");
                no_outbound(&mut main);
            }
            Role::Smarthost { logins } => {
                // virtual(8) allows no regexp substitution into paths: one Maildir for all,
                // told apart by the Delivered-To: header.
                set(&mut main, "virtual_mailbox_domains", "static:all");
                set(&mut main, "virtual_mailbox_maps", &format!("static:{CATCH_ALL}/"));
                set(&mut main, "mynetworks", "");
                set(&mut main, "smtpd_relay_restrictions", "permit_sasl_authenticated, reject");
                set(&mut main, "smtpd_tls_auth_only", "yes");
                set(&mut main, "smtpd_sasl_auth_enable", "yes");
                set(&mut main, "smtpd_sasl_type", "cyrus");
                set(&mut main, "smtpd_sasl_path", "smtpd");
                set(&mut main, "smtpd_sasl_local_domain", "$myhostname");
                set(&mut main, "smtpd_sasl_security_options", "noanonymous");
                // Debian's Postfix reads the Cyrus config from $config_directory/sasl.
                let sasl = etc.join("sasl");
                std::fs::create_dir(&sasl).expect("create sasl dir");
                set_mode(&sasl, 0o755);
                set(&mut main, "cyrus_sasl_config_path", &sasl.display().to_string());
                let sasldb = sasl.join("sasldb2");
                write_file(
                    &sasl.join("smtpd.conf"),
                    format!(
                        "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n\
                         sasldb_path: {}\n",
                        sasldb.display()
                    ),
                );
                for (login, password) in logins {
                    add_sasl_user(&sasldb, &hostname, login, password);
                }
                if !logins.is_empty() {
                    let (_, postfix_gid) = user_ids("postfix");
                    std::os::unix::fs::chown(&sasldb, Some(0), Some(postfix_gid))
                        .expect("chown sasldb2");
                    set_mode(&sasldb, 0o640);
                }
                no_outbound(&mut main);
            }
            Role::Relay { relayhost } => {
                let target = format!("[{}]:{}", relayhost.ip(), relayhost.port());
                set(&mut main, "relayhost", &target);
                set(&mut main, "mynetworks", "127.0.0.0/8");
                set(&mut main, "smtpd_relay_restrictions", "permit_mynetworks, reject");
                set(&mut main, "smtp_tls_security_level", "may");
                if let Some((login, password)) = &options.relay_login {
                    let map = etc.join("relay_passwd");
                    write_file(&map, format!("{target} {login}:{password}\n"));
                    set_mode(&map, 0o600);
                    set(&mut main, "smtp_sasl_auth_enable", "yes");
                    set(
                        &mut main,
                        "smtp_sasl_password_maps",
                        &format!("texthash:{}", map.display()),
                    );
                    set(&mut main, "smtp_sasl_security_options", "noanonymous");
                    set(&mut main, "smtp_sasl_tls_security_options", "noanonymous");
                    set(&mut main, "smtp_tls_security_level", "encrypt");
                }
            }
        }
        for (key, value) in &options.main_cf {
            set(&mut main, key, value);
        }

        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = options.port.unwrap_or_else(|| free_port_on(options.ip));
            let addr = SocketAddr::from((options.ip, port));
            let text: String = main.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            write_file(&etc.join("main.cf"), text);
            write_file(&etc.join("master.cf"), master_cf(addr));
            let out = Command::new(POSTFIX)
                .arg("-c")
                .arg(&etc)
                .arg("start")
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {POSTFIX} ({e}); run ./scripts/test"));
            if out.status.success() {
                let catch_all = matches!(role, Role::Smarthost { .. });
                let postfix =
                    Postfix { dir: dir.clone(), addr, hostname: hostname.clone(), catch_all };
                postfix.wait_ready();
                return postfix;
            }
            last_failure =
                format!("postfix start: {}\nmaillog:\n{}", output_text(&out), read_log(&dir));
            // Stop whatever did start; a next try reuses the directory.
            stop_instance(&dir);
            if !(last_failure.contains("Address already in use") && options.port.is_none()) {
                break;
            }
        }
        eprintln!("Postfix instance kept at {}", dir.display());
        panic!("Postfix did not start:\n{last_failure}");
    }

    /// Waits until smtpd greets with this instance's hostname.
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let expected = format!("220 {} ", self.hostname);
        while Instant::now() < deadline {
            if banner(self.addr).is_some_and(|line| line.starts_with(&expected)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("Postfix on {} did not greet; maillog:\n{}", self.addr, self.log());
    }

    /// Where smtpd listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `myhostname`: the name in its banner and EHLO reply.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The instance's directory (`etc/`, `queue/`, `mail/`, `maillog`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Maildir of `address`: `mail/<domain>/<local part>/` (matched case-insensitively),
    /// or a smarthost's `mail/all/`.
    fn maildir(&self, address: &str) -> Option<PathBuf> {
        if self.catch_all {
            return Some(self.dir.join("mail").join(CATCH_ALL));
        }
        let (local, domain) = split_address(address);
        let find = |parent: &Path, name: &str| -> Option<PathBuf> {
            std::fs::read_dir(parent).ok()?.flatten().map(|entry| entry.path()).find(|path| {
                path.file_name().is_some_and(|n| n.to_string_lossy().to_lowercase() == name)
            })
        };
        find(&find(&self.dir.join("mail"), &domain)?, &local)
    }

    /// Every message stored for `address` (files of its Maildir's `new/` and `cur/`), oldest
    /// first; empty when nothing arrived. On a smarthost: the messages whose first
    /// `Delivered-To:` header names `address`.
    pub fn maildir_messages(&self, address: &str) -> Vec<Vec<u8>> {
        let Some(maildir) = self.maildir(address) else { return Vec::new() };
        let mut files: Vec<(SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
            .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
            .map(|path| {
                let time = std::fs::metadata(&path).and_then(|m| m.modified());
                (time.unwrap_or(SystemTime::UNIX_EPOCH), path)
            })
            .collect();
        files.sort();
        let wanted = address.to_lowercase();
        files
            .iter()
            .filter_map(|(_, path)| std::fs::read(path).ok())
            .filter(|message| !self.catch_all || delivered_to(message) == Some(wanted.clone()))
            .collect()
    }

    /// Polls until at least `count` messages are stored for `address` and returns them;
    /// panics with the maillog and queue when they do not arrive within `timeout`.
    pub fn wait_for_messages(
        &self,
        address: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.maildir_messages(address);
            if messages.len() >= count {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} has {} of {count} messages for {address} after {timeout:?}\nqueue:\n{}\n\
                     maillog:\n{}",
                    self.hostname,
                    messages.len(),
                    self.queue(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance's log (postlogd's `maillog_file`), for assertion messages.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }

    /// `postqueue -p`: what is still queued (deferred mail shows its last error).
    pub fn queue(&self) -> String {
        Command::new(POSTQUEUE)
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("-p")
            .output()
            .map(|out| output_text(&out))
            .unwrap_or_else(|e| format!("(postqueue failed: {e})"))
    }

    /// `postqueue -f`: retries all deferred mail now.
    pub fn flush(&self) {
        let out = Command::new(POSTQUEUE)
            .arg("-c")
            .arg(self.dir.join("etc"))
            .arg("-f")
            .output()
            .expect("run postqueue");
        assert!(out.status.success(), "postqueue -f failed: {}", output_text(&out));
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        stop_instance(&self.dir);
        if std::thread::panicking() {
            eprintln!(
                "Postfix {} ({}) kept its directory {}",
                self.hostname,
                self.addr,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first `Delivered-To:` header of a stored message, lowercased.
fn delivered_to(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    text.lines().take_while(|line| !line.is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("delivered-to").then(|| value.trim().to_lowercase())
    })
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("maillog")).unwrap_or_default()
}

/// A new empty directory `/tmp/tern-postfix/<pid>-<n>`, reachable by the postfix user.
fn new_instance_dir(n: u32) -> PathBuf {
    let root = Path::new(POSTFIX_ROOT);
    std::fs::create_dir_all(root).expect("create /tmp/tern-postfix");
    set_mode(root, 0o755);
    for attempt in 0..100 {
        let dir = root.join(format!("{}-{n}-{attempt}", std::process::id()));
        if std::fs::create_dir(&dir).is_ok() {
            set_mode(&dir, 0o755);
            return dir;
        }
    }
    panic!("cannot create an instance directory under {POSTFIX_ROOT}");
}

/// Stops instances left behind by test processes that were killed (their directory is over an
/// hour old), once per test process.
fn reap_stale_instances() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(POSTFIX_ROOT) else { return };
        for entry in entries.flatten() {
            let dir = entry.path();
            let age = std::fs::metadata(dir.join("etc/main.cf"))
                .or_else(|_| std::fs::metadata(&dir))
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|time| SystemTime::now().duration_since(time).ok());
            if age.is_some_and(|age| age > Duration::from_secs(3600)) {
                stop_instance(&dir);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    });
}

/// `postfix stop`, then waits for the master to exit and kills whatever is left of its
/// process group (the master's children share it).
fn stop_instance(dir: &Path) {
    let master = std::fs::read_to_string(dir.join("queue/pid/master.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok());
    let _ = Command::new(POSTFIX)
        .arg("-c")
        .arg(dir.join("etc"))
        .arg("stop")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let Some(master) = master else { return };
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(master) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let group: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|(state, pgrp)| pgrp == master && state != 'Z'))
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.starts_with("/usr/lib/postfix"))
        })
        .collect();
    for pid in group {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// The state letter and process group of `pid`, from /proc/PID/stat.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// True while `pid` exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// `("User", "Dest.Test")` from `User@Dest.Test`, lowercased.
fn split_address(address: &str) -> (String, String) {
    let (local, domain) =
        address.rsplit_once('@').unwrap_or_else(|| panic!("{address:?} is not user@domain"));
    (local.to_lowercase(), domain.to_lowercase())
}

/// Sets `key` in an ordered `main.cf`, replacing an earlier value.
fn set(main: &mut Vec<(String, String)>, key: &str, value: &str) {
    match main.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => main.push((key.to_string(), value.to_string())),
    }
}

/// Mail an MX or smarthost would send elsewhere (bounces, mostly) fails at once instead of
/// looking up DNS beyond loopback.
fn no_outbound(main: &mut Vec<(String, String)>) {
    for key in ["default_transport", "relay_transport", "local_transport"] {
        set(main, key, "error:5.7.0 test peer sends no mail out");
    }
}

/// The settings every instance shares.
fn base_main_cf(dir: &Path, hostname: &str, options: &PostfixOptions) -> Vec<(String, String)> {
    let d = dir.display();
    let mut main = Vec::new();
    for (key, value) in [
        ("compatibility_level", "3.6".to_string()),
        ("queue_directory", format!("{d}/queue")),
        ("data_directory", format!("{d}/data")),
        ("mail_owner", "postfix".into()),
        ("setgid_group", "postdrop".into()),
        ("myhostname", hostname.into()),
        ("mydomain", "peer.test".into()),
        ("myorigin", "$myhostname".into()),
        ("mydestination", String::new()),
        ("local_recipient_maps", String::new()),
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("inet_interfaces", "loopback-only".into()),
        ("inet_protocols", "ipv4".into()),
        ("maillog_file", format!("{d}/maillog")),
        ("maillog_file_prefixes", POSTFIX_ROOT.into()),
        ("smtpd_banner", "$myhostname ESMTP Postfix".into()),
        ("smtpd_forbid_bare_newline", "reject".into()),
        ("smtpd_forbid_bare_newline_exclusions", String::new()),
        ("smtpd_peername_lookup", "no".into()),
        ("smtpd_error_sleep_time", "0".into()),
        (
            "smtpd_recipient_restrictions",
            format!("check_recipient_access texthash:{d}/etc/recipient_access"),
        ),
        ("smtputf8_enable", if options.smtputf8 { "yes" } else { "no" }.into()),
        ("virtual_mailbox_base", format!("{d}/mail")),
        ("virtual_uid_maps", format!("static:{}", user_ids("nobody").0)),
        ("virtual_gid_maps", format!("static:{}", user_ids("nobody").1)),
        ("queue_run_delay", "1s".into()),
        ("minimal_backoff_time", "1s".into()),
        ("maximal_backoff_time", "2s".into()),
        ("smtp_connect_timeout", "5s".into()),
        ("delay_warning_time", "0".into()),
        ("biff", "no".into()),
        ("smtpd_tls_loglevel", "1".into()),
        ("smtp_tls_loglevel", "1".into()),
    ] {
        main.push((key.to_string(), value));
    }
    let access: String = options
        .recipient_access
        .iter()
        .map(|(key, action)| format!("{} {action}\n", key.to_lowercase()))
        .collect();
    write_file(&dir.join("etc/recipient_access"), access);
    if let Some(tls) = &options.tls {
        set(&mut main, "smtpd_tls_security_level", "may");
        set(&mut main, "smtpd_tls_cert_file", &tls.cert.display().to_string());
        set(&mut main, "smtpd_tls_key_file", &tls.key.display().to_string());
    }
    if let Some(limit) = options.message_size_limit {
        set(&mut main, "message_size_limit", &limit.to_string());
    }
    main
}

/// The services an instance runs: smtpd on `addr`, nothing chrooted.
fn master_cf(addr: SocketAddr) -> String {
    format!(
        "{addr} inet n - n - - smtpd\n\
         pickup unix n - n 60 1 pickup\n\
         cleanup unix n - n - 0 cleanup\n\
         qmgr unix n - n 300 1 qmgr\n\
         tlsmgr unix - - n 1000? 1 tlsmgr\n\
         rewrite unix - - n - - trivial-rewrite\n\
         bounce unix - - n - 0 bounce\n\
         defer unix - - n - 0 bounce\n\
         trace unix - - n - 0 bounce\n\
         verify unix - - n - 1 verify\n\
         flush unix n - n 1000? 0 flush\n\
         proxymap unix - - n - - proxymap\n\
         proxywrite unix - - n - 1 proxymap\n\
         smtp unix - - n - - smtp\n\
         relay unix - - n - - smtp\n\
         showq unix n - n - - showq\n\
         error unix - - n - - error\n\
         retry unix - - n - - error\n\
         discard unix - - n - - discard\n\
         virtual unix - n n - - virtual\n\
         anvil unix - - n - 1 anvil\n\
         scache unix - - n - 1 scache\n\
         postlog unix-dgram n - n - 1 postlogd\n"
    )
}

/// Adds `login` to a Cyrus sasldb: `user@realm` logins keep their realm, bare ones get the
/// instance's hostname (`smtpd_sasl_local_domain`).
fn add_sasl_user(sasldb: &Path, hostname: &str, login: &str, password: &str) {
    let (user, realm) = login.rsplit_once('@').unwrap_or((login, hostname));
    let mut child = Command::new(SASLPASSWD2)
        .arg("-f")
        .arg(sasldb)
        .args(["-p", "-c", "-u", realm, user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {SASLPASSWD2} ({e}); run ./scripts/test"));
    child.stdin.take().expect("stdin").write_all(password.as_bytes()).expect("write password");
    let out = child.wait_with_output().expect("wait saslpasswd2");
    assert!(out.status.success(), "saslpasswd2 {login} failed: {}", output_text(&out));
}

// ---------------------------------------------------------------------------------------------
// smtp-sink

/// Counters of an [`SmtpSink`] (its `-c` output), not counting the readiness probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// SMTP sessions that have ended (an open connection is not counted yet).
    pub sessions: u64,
    /// QUIT commands received.
    pub quits: u64,
    /// Messages received (final "." of DATA, or BDAT LAST).
    pub messages: u64,
}

/// Postfix's `smtp-sink`: accepts everything and throws it away, counting sessions and
/// messages. Killed on drop.
pub struct SmtpSink {
    addr: SocketAddr,
    child: Child,
    dir: PathBuf,
    /// The readiness probe's own session.
    baseline: SinkCounts,
}

impl SmtpSink {
    /// Starts a sink on a free port of `ip` (e.g. 127.0.0.1).
    pub fn start(ip: Ipv4Addr) -> SmtpSink {
        SmtpSink::start_with(ip, &[])
    }

    /// Starts a sink with extra `smtp-sink` options, e.g. `["-r", "RCPT"]` (4xx every RCPT),
    /// `["-w", "2"]` (slow DATA) or `["-d", "/dir/%M."]` (keep each message; LF line ends).
    pub fn start_with(ip: Ipv4Addr, extra_args: &[&str]) -> SmtpSink {
        let mut last_log = String::new();
        for _ in 0..5 {
            match SmtpSink::try_start(SocketAddr::from((ip, free_port_on(ip))), extra_args) {
                Ok(sink) => return sink,
                Err(log) if log.contains("in use") => last_log = log,
                Err(log) => panic!("smtp-sink did not start: {log}"),
            }
        }
        panic!("smtp-sink found no free port: {last_log}");
    }

    /// Starts a sink on `addr` (a port the test chose earlier, e.g. one Tern already relays
    /// to while nothing listens there).
    pub fn start_on(addr: SocketAddr) -> SmtpSink {
        SmtpSink::try_start(addr, &[])
            .unwrap_or_else(|log| panic!("smtp-sink did not start on {addr}: {log}"))
    }

    fn try_start(addr: SocketAddr, extra_args: &[&str]) -> Result<SmtpSink, String> {
        require(SMTP_SINK, "postfix");
        let dir = temp_dir("smtp-sink");
        set_mode(&dir, 0o755);
        {
            let stdout = std::fs::File::create(dir.join("counts")).expect("counts file");
            let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
            let child = Command::new(SMTP_SINK)
                .args(["-u", "nobody", "-c", "-h", "sink.test"])
                .args(extra_args)
                .arg(format!("{addr}"))
                .arg("256")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {SMTP_SINK} ({e}); run ./scripts/test"));
            let mut sink =
                SmtpSink { addr, child, dir: dir.clone(), baseline: SinkCounts::default() };
            sink.wait_ready().map(|()| sink)
        }
    }

    /// Greets, QUITs and waits until that session is counted; it becomes the baseline.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}: {}", self.stderr()));
            }
            if let Ok(stream) = TcpStream::connect(self.addr) {
                stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                if line.starts_with("220 sink.test") {
                    let _ = (&stream).write_all(b"QUIT\r\n");
                    let _ = reader.read_line(&mut line);
                    drop(stream);
                    while Instant::now() < deadline {
                        let counts = self.raw_counts();
                        if counts.sessions >= 1 {
                            self.baseline = counts;
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no greeting within {START_TIMEOUT:?}: {}", self.stderr()))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The last complete `sess=N quit=N mesg=N` record smtp-sink printed.
    fn raw_counts(&self) -> SinkCounts {
        let text = std::fs::read_to_string(self.dir.join("counts")).unwrap_or_default();
        // Records end with "\r"; the last one may still be being written.
        let record = text.rsplit('\r').nth(1).unwrap_or("");
        let mut counts = SinkCounts::default();
        for field in record.split_whitespace() {
            match field.split_once('=') {
                Some(("sess", n)) => counts.sessions = n.parse().unwrap_or(0),
                Some(("quit", n)) => counts.quits = n.parse().unwrap_or(0),
                Some(("mesg", n)) => counts.messages = n.parse().unwrap_or(0),
                _ => {}
            }
        }
        counts
    }

    /// Sessions, QUITs and messages so far, not counting the readiness probe.
    pub fn counts(&self) -> SinkCounts {
        let raw = self.raw_counts();
        SinkCounts {
            sessions: raw.sessions.saturating_sub(self.baseline.sessions),
            quits: raw.quits.saturating_sub(self.baseline.quits),
            messages: raw.messages.saturating_sub(self.baseline.messages),
        }
    }

    /// Polls until at least `messages` messages arrived; panics after `timeout`.
    pub fn wait_for_messages(&self, messages: u64, timeout: Duration) -> SinkCounts {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = self.counts();
            if counts.messages >= messages {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "smtp-sink got {counts:?}, wanted {messages} messages within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
