//! The outbound SMTP transport against real sockets on loopback: a tiny authoritative DNS
//! server answering from a fixed zone, and a scripted fake SMTP server that records what the
//! client said. Each test builds its zone and script, runs one job and checks every
//! recipient's outcome and the transcript.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tern_delivery::outbound::{OutboundConfig, RelayHost, SmtpTransport, TlsPolicy};
use tern_queue::transport::{Failure, Job, JobMessage, JobRecipient, Outcome, Transport};
use tern_store::MessageId;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const MX_NAME: &str = "mx.dest.test";

// ---------------------------------------------------------------------------------------
// DNS

/// Records by (name without trailing dot, type). Names not in the zone are NXDOMAIN; a known
/// name without records of the asked type gets an empty NOERROR answer.
#[derive(Default, Clone)]
struct Zone(HashMap<String, Vec<RData>>);

impl Zone {
    fn mx(mut self, domain: &str, preference: u16, exchange: &str) -> Self {
        let exchange = if exchange == "." { Name::root() } else { name(exchange) };
        self.0.entry(domain.into()).or_default().push(RData::MX(MX::new(preference, exchange)));
        self
    }

    fn a(mut self, host: &str, ip: &str) -> Self {
        let ip = ip.parse().expect("ipv4");
        self.0.entry(host.into()).or_default().push(RData::A(A(ip)));
        self
    }

    fn answer(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        for query in &request.queries {
            response.add_query(query.clone());
            let qname = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
            match self.0.get(&qname) {
                None => response.metadata.response_code = ResponseCode::NXDomain,
                Some(records) => {
                    for rdata in records.iter().filter(|r| r.record_type() == query.query_type()) {
                        response.add_answer(Record::from_rdata(
                            query.name().clone(),
                            60,
                            rdata.clone(),
                        ));
                    }
                }
            }
        }
        response
    }
}

fn name(host: &str) -> Name {
    Name::from_ascii(format!("{host}.")).expect("dns name")
}

/// Serves `zone` over UDP on 127.0.0.1 until the test's runtime ends.
async fn dns_server(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
    let addr = socket.local_addr().expect("dns addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else { return };
            let Ok(request) = Message::from_vec(&buf[..n]) else { continue };
            if let Ok(bytes) = zone.answer(&request).to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// SMTP

/// How the fake server behaves.
#[derive(Clone)]
struct Script {
    banner: String,
    /// Extensions after the greeting line of the EHLO reply.
    extensions: Vec<String>,
    /// Replaces the whole EHLO reply, e.g. `500 5.5.1 what?`.
    ehlo_reply: Option<String>,
    /// Offer STARTTLS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Offer AUTH PLAIN (after TLS) and accept these credentials.
    auth: Option<(String, String)>,
    /// The reply to `RCPT TO:<address>`.
    rcpt: fn(&str) -> &'static str,
    /// The reply after the final dot.
    data_reply: String,
    /// Close the connection after this many messages were received on it.
    close_after_messages: Option<usize>,
    /// Answer STARTTLS with 220, then send garbage instead of a TLS handshake.
    broken_tls: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            banner: format!("220 {MX_NAME} ESMTP fake"),
            extensions: strings(&[
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME",
                "DSN",
                "ENHANCEDSTATUSCODES",
            ]),
            ehlo_reply: None,
            tls: None,
            auth: None,
            rcpt: |_| "250 2.1.5 Ok",
            data_reply: QUEUED.into(),
            close_after_messages: None,
            broken_tls: false,
        }
    }
}

/// What the fake server saw.
#[derive(Debug, Default)]
struct Transcript {
    connections: usize,
    /// Every command line, in order, across connections.
    commands: Vec<String>,
    /// Each message as received (dot-stuffing undone) and whether it came over TLS.
    messages: Vec<(Vec<u8>, bool)>,
    /// For each MAIL FROM: whether RCPT and DATA were already waiting behind it.
    pipelined: Vec<bool>,
}

impl Transcript {
    fn verbs(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|c| c.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase())
            .collect()
    }
}

struct FakeSmtp {
    port: u16,
    transcript: Arc<Mutex<Transcript>>,
}

impl FakeSmtp {
    async fn start(script: Script) -> Self {
        Self::start_on("127.0.0.1:0", script).await
    }

    async fn start_on(addr: &str, script: Script) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind smtp");
        let port = listener.local_addr().expect("smtp addr").port();
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let record = transcript.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (script, record) = (script.clone(), record.clone());
                tokio::spawn(async move { serve(tcp, script, record).await });
            }
        });
        FakeSmtp { port, transcript }
    }

    fn transcript(&self) -> std::sync::MutexGuard<'_, Transcript> {
        self.transcript.lock().expect("transcript")
    }
}

async fn serve(tcp: TcpStream, script: Script, record: Arc<Mutex<Transcript>>) {
    record.lock().expect("record").connections += 1;
    let mut io = BufReader::new(tcp);
    if io.write_all(format!("{}\r\n", script.banner).as_bytes()).await.is_err() {
        return;
    }
    if !script.banner.starts_with('2') {
        return;
    }
    let Some(mut plain) = session(io, &script, &record, false).await else { return };
    if script.broken_tls {
        let _ = plain.write_all(b"this is not a TLS handshake\r\n").await;
        return;
    }
    let Some(config) = script.tls.clone() else { return };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(plain.into_inner()).await else {
        return;
    };
    session(BufReader::new(tls), &script, &record, true).await;
}

/// Runs commands until QUIT or EOF; returns the stream when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: BufReader<S>,
    script: &Script,
    record: &Mutex<Transcript>,
    tls: bool,
) -> Option<BufReader<S>> {
    let mut accepted = 0;
    let mut messages = 0;
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        record.lock().expect("record").commands.push(line.clone());
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            match &script.ehlo_reply {
                Some(reply) => reply.clone(),
                None => ehlo_reply(script, tls),
            }
        } else if upper.starts_with("HELO") {
            format!("250 {MX_NAME}")
        } else if upper == "STARTTLS" && script.tls.is_some() && !tls {
            io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await.ok()?;
            return Some(io);
        } else if upper.starts_with("AUTH PLAIN ") {
            let (user, pass) = script.auth.clone().unwrap_or_default();
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
            if line[11..] == expected {
                "235 2.7.0 Authentication successful".into()
            } else {
                "535 5.7.8 Error: authentication failed".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            accepted = 0;
            let waiting = String::from_utf8_lossy(io.buffer()).contains("DATA\r\n");
            record.lock().expect("record").pipelined.push(waiting);
            "250 2.1.0 Ok".into()
        } else if upper.starts_with("RCPT TO:") {
            let address = line[8..].split('>').next().unwrap_or_default().trim_start_matches('<');
            let reply = (script.rcpt)(address);
            if reply.starts_with('2') {
                accepted += 1;
            }
            reply.into()
        } else if upper == "DATA" {
            if accepted == 0 {
                "554 5.5.1 Error: no valid recipients".into()
            } else {
                io.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await.ok()?;
                let body = read_data(&mut io).await?;
                record.lock().expect("record").messages.push((body, tls));
                messages += 1;
                if script.close_after_messages == Some(messages) {
                    io.write_all(format!("{}\r\n", script.data_reply).as_bytes()).await.ok()?;
                    return None;
                }
                script.data_reply.clone()
            }
        } else if upper == "RSET" {
            accepted = 0;
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 Bye\r\n").await.ok()?;
            return None;
        } else {
            "502 5.5.2 Error: command not recognized".into()
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await.ok()?;
    }
}

fn ehlo_reply(script: &Script, tls: bool) -> String {
    let mut extensions = script.extensions.clone();
    if script.tls.is_some() && !tls {
        extensions.push("STARTTLS".into());
    }
    if script.auth.is_some() && tls {
        extensions.push("AUTH PLAIN".into());
    }
    let mut reply = format!("250-{MX_NAME}");
    for ext in extensions {
        reply.push_str(&format!("\r\n250-{ext}"));
    }
    // Turn the last `250-` into `250 `.
    if let Some(i) = reply.rfind("250-") {
        reply.replace_range(i..i + 4, "250 ");
    }
    reply
}

/// Reads the data up to the lone dot, undoing dot-stuffing.
async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(body);
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        body.extend_from_slice(line);
    }
}

// ---------------------------------------------------------------------------------------
// Jobs, configuration, certificates

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const BODY: &[u8] = b"From: a@src.test\r\nTo: b@dest.test\r\nSubject: hi\r\n\r\nHello.\r\n";

fn message(recipients: &[&str]) -> JobMessage {
    static ENTRY: AtomicUsize = AtomicUsize::new(1);
    JobMessage {
        id: MessageId::generate(),
        sender: "sender@src.test".into(),
        data: Arc::new(BODY.to_vec()),
        smtputf8: false,
        eight_bit: false,
        envid: None,
        ret: None,
        recipients: recipients
            .iter()
            .map(|address| JobRecipient {
                entry: ENTRY.fetch_add(1, Ordering::Relaxed) as i64,
                address: address.to_string(),
                notify: Vec::new(),
                orcpt: None,
            })
            .collect(),
    }
}

fn job(messages: Vec<JobMessage>) -> Job {
    Job { domain: "dest.test".into(), messages, feed: None }
}

fn config(dns: SocketAddr, smtp: &FakeSmtp) -> OutboundConfig {
    let mut config = OutboundConfig::new("tern.test");
    config.dns_servers = vec![dns];
    config.dns_timeout = Duration::from_secs(2);
    config.mx_port = smtp.port;
    config.connect_timeout = Duration::from_secs(5);
    config.command_timeout = Duration::from_secs(5);
    config.data_timeout = Duration::from_secs(5);
    config
}

/// A zone where dest.test has one MX, mx.dest.test, at 127.0.0.1.
fn one_mx() -> Zone {
    Zone::default().mx("dest.test", 10, MX_NAME).a(MX_NAME, "127.0.0.1")
}

async fn run(config: OutboundConfig, job: Job) -> HashMap<i64, Outcome> {
    let transport = SmtpTransport::new(config).expect("transport");
    let expected = job.messages.iter().map(|m| m.recipients.len()).sum::<usize>();
    let results = tokio::time::timeout(Duration::from_secs(30), transport.deliver(job))
        .await
        .expect("delivery finishes");
    assert_eq!(results.len(), expected, "one outcome per recipient: {results:?}");
    results.into_iter().collect()
}

/// A DNS server answering from `zone` and a fake SMTP server following `script`.
async fn servers(zone: Zone, script: Script) -> (SocketAddr, FakeSmtp) {
    (dns_server(zone).await, FakeSmtp::start(script).await)
}

/// Sends `msg`, which has one recipient, as a job of its own; returns that recipient's outcome.
async fn deliver(config: OutboundConfig, msg: &JobMessage) -> Outcome {
    assert_eq!(msg.recipients.len(), 1, "deliver takes a message with one recipient");
    let mut outcomes = run(config, job(vec![msg.clone()])).await;
    outcomes.remove(&msg.recipients[0].entry).expect("outcome")
}

/// The usual case: one message to b@dest.test, through `zone` and a fake server following
/// `script`, with the default configuration.
async fn deliver_one(zone: Zone, script: Script) -> (Outcome, FakeSmtp) {
    let (dns, smtp) = servers(zone, script).await;
    let outcome = deliver(config(dns, &smtp), &message(&["b@dest.test"])).await;
    (outcome, smtp)
}

fn outcome_of<'a>(
    outcomes: &'a HashMap<i64, Outcome>,
    msg: &JobMessage,
    address: &str,
) -> &'a Outcome {
    let rcpt = msg.recipients.iter().find(|r| r.address == address).expect("recipient");
    &outcomes[&rcpt.entry]
}

/// The fake server's reply to the final dot.
const QUEUED: &str = "250 2.0.0 Ok: queued as FAKE1";

/// Delivered to the one MX of `one_mx`.
fn delivered(peer_dsn: bool) -> Outcome {
    delivered_by(MX_NAME, peer_dsn)
}

fn delivered_by(remote_mta: &str, peer_dsn: bool) -> Outcome {
    Outcome::Delivered { remote_mta: remote_mta.into(), reply: QUEUED.into(), peer_dsn }
}

/// The failure of an outcome that must be temporary.
fn temporary(outcome: &Outcome) -> &Failure {
    match outcome {
        Outcome::Temporary(f) => f,
        _ => panic!("expected a temporary failure, got {outcome:?}"),
    }
}

/// The failure of an outcome that must be permanent.
fn permanent(outcome: &Outcome) -> &Failure {
    match outcome {
        Outcome::Permanent(f) => f,
        _ => panic!("expected a permanent failure, got {outcome:?}"),
    }
}

/// A smarthost that accepts tern / s3cret, offering STARTTLS when `tls`.
fn smarthost(tls: bool) -> Script {
    Script {
        tls: tls.then(|| test_cert("relay.test").server),
        auth: Some(("tern".into(), "s3cret".into())),
        ..Script::default()
    }
}

fn relay_config(dns: SocketAddr, smtp: &FakeSmtp, password: &str) -> OutboundConfig {
    let mut config = config(dns, smtp);
    config.relay_host = Some(RelayHost {
        username: Some("tern".into()),
        password: Some(password.into()),
        ..RelayHost::new("127.0.0.1", smtp.port)
    });
    config
}

struct TestCert {
    server: Arc<rustls::ServerConfig>,
    pem: String,
}

/// A self-signed certificate for `host` and a server configuration using it.
fn test_cert(host: &str) -> TestCert {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![host.to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    TestCert { server: Arc::new(server), pem: cert.pem() }
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("tern-outbound-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

// ---------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn pipelined_transaction_reports_each_recipient() {
    let (dns, smtp) = servers(
        one_mx(),
        Script {
            rcpt: |address| match address {
                "later@dest.test" => "450 4.2.0 <later@dest.test>: greylisted",
                "gone@dest.test" => "550 5.1.1 <gone@dest.test>: Recipient address rejected",
                _ => "250 2.1.5 Ok",
            },
            ..Script::default()
        },
    )
    .await;
    let mut msg = message(&["ok@dest.test", "later@dest.test", "gone@dest.test"]);
    msg.envid = Some("env 1".into());
    msg.ret = Some("HDRS".into());
    msg.recipients[0].notify = strings(&["SUCCESS", "FAILURE"]);
    msg.recipients[0].orcpt = Some("rfc822;orig+tag@src.test".into());
    let outcomes = run(config(dns, &smtp), job(vec![msg.clone()])).await;

    assert_eq!(outcome_of(&outcomes, &msg, "ok@dest.test"), &delivered(true));
    assert_eq!(
        outcome_of(&outcomes, &msg, "later@dest.test"),
        &Outcome::Temporary(Failure {
            status: "4.2.0".into(),
            remote_mta: Some(MX_NAME.into()),
            diagnostic: "smtp; 450 4.2.0 <later@dest.test>: greylisted".into(),
        })
    );
    assert_eq!(
        outcome_of(&outcomes, &msg, "gone@dest.test"),
        &Outcome::Permanent(Failure {
            status: "5.1.1".into(),
            remote_mta: Some(MX_NAME.into()),
            diagnostic: "smtp; 550 5.1.1 <gone@dest.test>: Recipient address rejected".into(),
        })
    );
    let t = smtp.transcript();
    assert_eq!(t.pipelined, [true], "MAIL, RCPT and DATA went in one write");
    assert_eq!(
        t.commands[1..6],
        strings(&[
            &format!("MAIL FROM:<sender@src.test> SIZE={} RET=HDRS ENVID=env+201", BODY.len()),
            "RCPT TO:<ok@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Btag@src.test",
            "RCPT TO:<later@dest.test>",
            "RCPT TO:<gone@dest.test>",
            "DATA",
        ])
    );
    assert_eq!(t.commands[0], "EHLO tern.test");
    assert_eq!(t.commands.last().map(String::as_str), Some("QUIT"));
    assert_eq!(t.messages, [(BODY.to_vec(), false)]);
}

#[tokio::test]
async fn without_pipelining_commands_go_one_at_a_time_and_no_data_without_recipients() {
    let (dns, smtp) = servers(
        one_mx(),
        Script {
            extensions: strings(&["8BITMIME"]),
            rcpt: |address| match address {
                "ok@dest.test" => "250 2.1.5 Ok",
                _ => "550 5.1.1 no such user",
            },
            ..Script::default()
        },
    )
    .await;
    let first = message(&["ok@dest.test", "gone@dest.test"]);
    let second = message(&["gone@dest.test", "gone2@dest.test"]);
    let outcomes = run(config(dns, &smtp), job(vec![first.clone(), second.clone()])).await;

    assert_eq!(outcome_of(&outcomes, &first, "ok@dest.test"), &delivered(false));
    for (msg, address) in
        [(&first, "gone@dest.test"), (&second, "gone@dest.test"), (&second, "gone2@dest.test")]
    {
        let f = permanent(outcome_of(&outcomes, msg, address));
        assert_eq!(f.status, "5.1.1");
        assert_eq!(f.diagnostic, "smtp; 550 5.1.1 no such user");
    }
    let t = smtp.transcript();
    assert_eq!(t.pipelined, [false, false]);
    assert_eq!(
        t.verbs(),
        strings(&["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "RCPT", "QUIT"]),
        "no DATA when every recipient was refused"
    );
    // Without SIZE at the peer, no SIZE parameter.
    assert_eq!(t.commands[1], "MAIL FROM:<sender@src.test>");
}

#[tokio::test]
async fn messages_of_a_job_share_one_connection_with_rset_between() {
    let (dns, smtp) = servers(one_mx(), Script::default()).await;
    let first = message(&["a@dest.test"]);
    let second = message(&["b@dest.test", "c@dest.test"]);
    let outcomes = run(config(dns, &smtp), job(vec![first.clone(), second.clone()])).await;

    for outcome in outcomes.values() {
        assert_eq!(outcome, &delivered(true));
    }
    let t = smtp.transcript();
    assert_eq!(t.connections, 1);
    assert_eq!(
        t.verbs(),
        strings(&["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"])
    );
    assert_eq!(t.messages.len(), 2);
}

#[tokio::test]
async fn a_connection_lost_mid_job_is_reopened_once() {
    let (dns, smtp) =
        servers(one_mx(), Script { close_after_messages: Some(1), ..Script::default() }).await;
    let messages =
        vec![message(&["a@dest.test"]), message(&["b@dest.test"]), message(&["c@dest.test"])];
    let outcomes = run(config(dns, &smtp), job(messages.clone())).await;

    // The server closes after each message: the first connection carries message one, the
    // reconnect message two, and message three is left for a later attempt.
    assert_eq!(outcome_of(&outcomes, &messages[0], "a@dest.test"), &delivered(true));
    assert_eq!(outcome_of(&outcomes, &messages[1], "b@dest.test"), &delivered(true));
    let third = temporary(outcome_of(&outcomes, &messages[2], "c@dest.test"));
    assert_eq!(third.status, "4.4.2");
    assert_eq!(third.remote_mta, None);
    assert_eq!(smtp.transcript().connections, 2);
}

#[tokio::test]
async fn a_refused_connection_moves_on_to_the_next_mx() {
    // mx1 (preferred) is 127.0.0.2, where nothing listens on the port; mx2 is the fake server.
    let zone = Zone::default()
        .mx("dest.test", 10, "mx1.dest.test")
        .mx("dest.test", 20, "mx2.dest.test")
        .a("mx1.dest.test", "127.0.0.2")
        .a("mx2.dest.test", "127.0.0.1");
    let (outcome, _smtp) = deliver_one(zone, Script::default()).await;

    assert_eq!(outcome, delivered_by("mx2.dest.test", true));
}

#[tokio::test]
async fn when_every_host_fails_recipients_wait_with_the_last_error() {
    let (outcome, _smtp) = deliver_one(
        one_mx(),
        Script { banner: "554 5.7.1 No SMTP service here".into(), ..Script::default() },
    )
    .await;

    // A 5xx greeting is no verdict on the recipient: the mail waits, with a 4.x.x status.
    assert_eq!(
        outcome,
        Outcome::Temporary(Failure {
            status: "4.7.1".into(),
            remote_mta: Some(MX_NAME.into()),
            diagnostic: "smtp; 554 5.7.1 No SMTP service here".into(),
        })
    );
}

#[tokio::test]
async fn refused_connections_everywhere_are_temporary_without_remote_mta() {
    let zone = Zone::default().mx("dest.test", 10, "mx1.dest.test").a("mx1.dest.test", "127.0.0.2");
    let (outcome, _smtp) = deliver_one(zone, Script::default()).await;

    let f = temporary(&outcome);
    assert_eq!((f.status.as_str(), f.remote_mta.as_deref()), ("4.4.1", None));
    assert!(f.diagnostic.contains("mx1.dest.test[127.0.0.2:"), "{}", f.diagnostic);
}

#[tokio::test]
async fn null_mx_bounces_without_connecting() {
    let zone = Zone::default().mx("dest.test", 0, ".");
    let (outcome, smtp) = deliver_one(zone, Script::default()).await;

    assert_eq!(
        outcome,
        Outcome::Permanent(Failure {
            status: "5.1.10".into(),
            remote_mta: None,
            diagnostic: "x-tern; Domain dest.test does not accept mail (null MX)".into(),
        })
    );
    assert_eq!(smtp.transcript().connections, 0);
}

#[tokio::test]
async fn a_domain_that_does_not_exist_bounces() {
    let (dns, smtp) =
        servers(Zone::default().a("other.test", "127.0.0.1"), Script::default()).await;
    let msg = message(&["b@dest.test", "c@dest.test"]);
    let outcomes = run(config(dns, &smtp), job(vec![msg.clone()])).await;

    for address in ["b@dest.test", "c@dest.test"] {
        let f = permanent(outcome_of(&outcomes, &msg, address));
        assert_eq!(f.status, "5.1.2");
        assert!(f.diagnostic.contains("dest.test not found"), "{f:?}");
    }
    assert_eq!(smtp.transcript().connections, 0);
}

#[tokio::test]
async fn a_dns_timeout_is_temporary() {
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let smtp = FakeSmtp::start(Script::default()).await;
    let mut config = config(silent.local_addr().expect("addr"), &smtp);
    config.dns_timeout = Duration::from_millis(200);
    let outcome = deliver(config, &message(&["b@dest.test"])).await;

    assert_eq!(temporary(&outcome).status, "4.4.3");
}

#[tokio::test]
async fn without_mx_records_the_domain_itself_is_the_host() {
    let zone = Zone::default().a("dest.test", "127.0.0.1");
    let (outcome, _smtp) = deliver_one(zone, Script::default()).await;

    assert_eq!(outcome, delivered_by("dest.test", true));
}

#[tokio::test]
async fn a_message_over_the_peer_size_limit_bounces_unsent() {
    let (outcome, smtp) = deliver_one(
        one_mx(),
        Script { extensions: strings(&["PIPELINING", "SIZE 20"]), ..Script::default() },
    )
    .await;

    let f = permanent(&outcome);
    assert_eq!(f.status, "5.3.4");
    assert_eq!(f.remote_mta.as_deref(), Some(MX_NAME));
    assert_eq!(smtp.transcript().verbs(), strings(&["EHLO", "QUIT"]));
}

#[tokio::test]
async fn smtputf8_mail_to_a_peer_without_it_bounces_unsent() {
    let (dns, smtp) = servers(one_mx(), Script::default()).await;
    let mut msg = message(&["b@dest.test"]);
    msg.smtputf8 = true;
    let outcome = deliver(config(dns, &smtp), &msg).await;

    assert_eq!(permanent(&outcome).status, "5.6.7");
    assert!(!smtp.transcript().verbs().contains(&"MAIL".to_string()));
}

#[tokio::test]
async fn smtputf8_and_8bit_parameters_when_the_peer_offers_them() {
    let (dns, smtp) = servers(
        one_mx(),
        Script {
            extensions: strings(&["PIPELINING", "8BITMIME", "SMTPUTF8"]),
            ..Script::default()
        },
    )
    .await;
    let mut msg = message(&["ü@dest.test"]);
    msg.smtputf8 = true;
    msg.eight_bit = true;
    let outcome = deliver(config(dns, &smtp), &msg).await;

    assert_eq!(outcome, delivered(false));
    assert_eq!(smtp.transcript().commands[1], "MAIL FROM:<sender@src.test> BODY=8BITMIME SMTPUTF8");
}

#[tokio::test]
async fn a_peer_that_rejects_ehlo_gets_helo() {
    let (outcome, smtp) = deliver_one(
        one_mx(),
        Script { ehlo_reply: Some("500 5.5.1 Command unrecognized".into()), ..Script::default() },
    )
    .await;

    assert_eq!(outcome, delivered(false));
    let t = smtp.transcript();
    assert_eq!(t.commands[..2], strings(&["EHLO tern.test", "HELO tern.test"]));
    // After HELO there are no extensions: no pipelining, no SIZE.
    assert_eq!(t.pipelined, [false]);
    assert_eq!(t.commands[2], "MAIL FROM:<sender@src.test>");
}

#[tokio::test]
async fn a_malformed_reply_is_a_temporary_protocol_error() {
    let (outcome, smtp) =
        deliver_one(one_mx(), Script { rcpt: |_| "hello there", ..Script::default() }).await;

    assert_eq!(temporary(&outcome).status, "4.5.0");
    assert!(smtp.transcript().messages.is_empty());
}

#[tokio::test]
async fn dot_stuffing_survives_the_trip() {
    let (dns, smtp) = servers(one_mx(), Script::default()).await;
    let mut msg = message(&["b@dest.test"]);
    let body = b".first line starts with a dot\r\nSubject: x\r\n\r\n.\r\n..two\r\nend".to_vec();
    msg.data = Arc::new(body.clone());
    let outcome = deliver(config(dns, &smtp), &msg).await;

    assert_eq!(outcome, delivered(true));
    let mut expected = body;
    expected.extend_from_slice(b"\r\n");
    assert_eq!(
        String::from_utf8_lossy(&smtp.transcript().messages[0].0),
        String::from_utf8_lossy(&expected),
        "the server sees the message unchanged (plus the final CRLF)"
    );
}

#[tokio::test]
async fn opportunistic_starttls_accepts_an_unverified_certificate() {
    let cert = test_cert(MX_NAME);
    let (outcome, smtp) =
        deliver_one(one_mx(), Script { tls: Some(cert.server), ..Script::default() }).await;

    assert_eq!(outcome, delivered(true));
    let t = smtp.transcript();
    assert_eq!(t.verbs()[..3], strings(&["EHLO", "STARTTLS", "EHLO"]));
    assert_eq!(t.messages, [(BODY.to_vec(), true)], "the message went over TLS");
}

#[tokio::test]
async fn opportunistic_tls_whose_handshake_fails_is_retried_in_clear() {
    let cert = test_cert(MX_NAME);
    let (outcome, smtp) = deliver_one(
        one_mx(),
        Script { tls: Some(cert.server), broken_tls: true, ..Script::default() },
    )
    .await;

    assert_eq!(outcome, delivered(true));
    let t = smtp.transcript();
    assert_eq!(t.connections, 2);
    assert_eq!(
        t.verbs()[..4],
        strings(&["EHLO", "STARTTLS", "EHLO", "MAIL"]),
        "second connection skips STARTTLS"
    );
    assert_eq!(t.messages, [(BODY.to_vec(), false)]);
}

#[tokio::test]
async fn required_tls_refuses_an_untrusted_certificate() {
    let cert = test_cert(MX_NAME);
    let (dns, smtp) =
        servers(one_mx(), Script { tls: Some(cert.server), ..Script::default() }).await;
    let mut config = config(dns, &smtp);
    config.tls_domains.insert("dest.test".into(), TlsPolicy::Require);
    let outcome = deliver(config, &message(&["b@dest.test"])).await;

    let f = temporary(&outcome);
    assert_eq!(f.status, "4.7.5");
    assert!(f.diagnostic.contains("certificate"), "{f:?}");
    let t = smtp.transcript();
    assert!(t.messages.is_empty());
    assert!(!t.verbs().contains(&"MAIL".to_string()), "{:?}", t.commands);
}

#[tokio::test]
async fn required_tls_delivers_with_a_trusted_ca_file() {
    let cert = test_cert(MX_NAME);
    let (dns, smtp) =
        servers(one_mx(), Script { tls: Some(cert.server), ..Script::default() }).await;
    let mut config = config(dns, &smtp);
    config.tls = TlsPolicy::Require;
    let ca_file = temp_file("ca.pem", &cert.pem);
    config.tls_ca_file = Some(ca_file.clone());
    let outcome = deliver(config, &message(&["b@dest.test"])).await;
    let _ = std::fs::remove_file(ca_file);

    assert_eq!(outcome, delivered(true));
    assert_eq!(smtp.transcript().messages, [(BODY.to_vec(), true)]);
}

#[tokio::test]
async fn required_tls_without_starttls_waits() {
    let (dns, smtp) = servers(one_mx(), Script::default()).await;
    let mut config = config(dns, &smtp);
    config.tls = TlsPolicy::Require;
    let outcome = deliver(config, &message(&["b@dest.test"])).await;

    let f = temporary(&outcome);
    assert_eq!(f.status, "4.7.4");
    assert!(f.diagnostic.contains("STARTTLS"), "{f:?}");
    assert!(smtp.transcript().messages.is_empty());
}

#[tokio::test]
async fn smarthost_authenticates_over_starttls() {
    // No DNS records at all: the smarthost is used whatever the recipient domain.
    let (dns, smtp) = servers(Zone::default(), smarthost(true)).await;
    let transport = SmtpTransport::new(relay_config(dns, &smtp, "s3cret")).expect("transport");
    assert_eq!(transport.destination("dest.test"), "[relay]");
    assert_eq!(transport.destination("other.test"), "[relay]");
    let msg = message(&["b@dest.test"]);
    let results = transport
        .deliver(Job { domain: "[relay]".into(), messages: vec![msg.clone()], feed: None })
        .await;

    assert_eq!(results, [(msg.recipients[0].entry, delivered_by("127.0.0.1", true))]);
    let t = smtp.transcript();
    let plain = base64::engine::general_purpose::STANDARD.encode("\0tern\0s3cret");
    assert_eq!(
        t.commands[..4],
        strings(&["EHLO tern.test", "STARTTLS", "EHLO tern.test", &format!("AUTH PLAIN {plain}")])
    );
    assert_eq!(t.messages, [(BODY.to_vec(), true)]);
}

#[tokio::test]
async fn smarthost_rejecting_the_credentials_makes_mail_wait() {
    let (dns, smtp) = servers(Zone::default(), smarthost(true)).await;
    let outcome = deliver(relay_config(dns, &smtp, "wrong"), &message(&["b@dest.test"])).await;

    assert_eq!(
        outcome,
        Outcome::Temporary(Failure {
            status: "4.7.8".into(),
            remote_mta: Some("127.0.0.1".into()),
            diagnostic: "smtp; 535 5.7.8 Error: authentication failed".into(),
        })
    );
    assert!(smtp.transcript().messages.is_empty());
}

#[tokio::test]
async fn smarthost_credentials_are_never_sent_in_clear() {
    let (dns, smtp) = servers(Zone::default(), smarthost(false)).await;
    let outcome = deliver(relay_config(dns, &smtp, "s3cret"), &message(&["b@dest.test"])).await;

    assert_eq!(temporary(&outcome).status, "4.7.0");
    let t = smtp.transcript();
    assert!(t.commands.iter().all(|c| !c.starts_with("AUTH")), "{:?}", t.commands);
}

#[tokio::test]
async fn an_address_literal_destination_is_used_directly() {
    let (dns, smtp) = servers(Zone::default(), Script::default()).await;
    let msg = message(&["b@[127.0.0.1]"]);
    let transport = SmtpTransport::new(config(dns, &smtp)).expect("transport");
    let results = transport
        .deliver(Job { domain: "[127.0.0.1]".into(), messages: vec![msg.clone()], feed: None })
        .await;

    let ip: IpAddr = "127.0.0.1".parse().expect("ip");
    assert_eq!(results, [(msg.recipients[0].entry, delivered_by(&format!("[{ip}]"), true))]);
}
