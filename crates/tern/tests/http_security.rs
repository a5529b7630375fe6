//! The HTTP server against hostile web pages and slow clients, on the real `tern serve` binary.
//!
//! Browser side (a page in the developer's browser can send requests to the catcher): the real
//! `curl` sends what a browser would (foreign `Origin`, `Sec-Fetch-Site`, `text/plain` bodies,
//! a rebinding `Host`, CORS preflights), and headless Chromium opens a page of another origin
//! (`tests/browser/crossorigin.mjs`) that tries to send mail, delete and open the websocket.
//! Nothing it tries may be stored or received; non-browser clients keep working unchanged.
//!
//! Connection side: a client stuck in its request head does not hold up shutdown, head and body
//! deadlines close slow clients, and connections over the cap are answered `503`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TernServer;

const EVIL: &str = "http://evil.test";

/// An answer read by curl: status, lower-cased headers and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Asserts `status` and a JSON `{"Error": …}` body; returns the error text.
    #[track_caller]
    fn refused(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}\n{}", self.headers, self.body);
        assert!(self.header("content-type").is_some_and(|t| t.starts_with("application/json")));
        let body: Value = serde_json::from_str(&self.body).expect("a JSON error");
        body["Error"].as_str().expect("an Error text").to_string()
    }
}

/// Runs the real curl: `method` on `path` of `server` with `headers` and an optional body.
fn curl(
    server: &TernServer,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> Answer {
    let url = format!("http://{}{path}", server.http);
    let mut args = vec!["-sS", "--max-time", "10", "-D", "-", "-X", method, &url];
    for header in headers {
        args.extend(["-H", header]);
    }
    if let Some(body) = body {
        args.extend(["--data-binary", body]);
    }
    let output = support::run("curl", &args, None);
    let (head, body) = output.split_once("\r\n\r\n").unwrap_or((&output, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    Answer { status, headers: head.to_string(), body: body.to_string() }
}

fn mail(subject: &str) -> String {
    json!({"From": {"Email": "page@evil.test"}, "To": [{"Email": "dev@example.com"}],
        "Subject": subject, "Text": "x"})
    .to_string()
}

#[test]
fn writes_from_another_site_are_refused_and_store_nothing() {
    let server = TernServer::start("");
    let body = mail("from a page");
    let attempts: [&[&str]; 5] = [
        // A "simple" request: a browser sends it cross-site without asking first.
        &["Content-Type: text/plain", "Origin: http://evil.test"],
        &["Content-Type: application/json", "Origin: http://evil.test"],
        &["Content-Type: application/json", "Sec-Fetch-Site: cross-site"],
        // Another port of localhost is the same site, and still another origin.
        &[
            "Content-Type: application/json",
            "Origin: http://localhost:3000",
            "Sec-Fetch-Site: same-site",
        ],
        // Sandboxed frames and data: pages have an opaque origin.
        &["Content-Type: application/json", "Origin: null"],
    ];
    for headers in attempts {
        let error = curl(&server, "POST", "/api/v1/send", headers, Some(&body)).refused(403);
        assert!(error.contains("cross-origin request refused"), "{headers:?}: {error}");
    }
    assert_eq!(server.count(), 0, "nothing was stored");

    // curl and test suites send no Origin: unchanged.
    let sent =
        curl(&server, "POST", "/api/v1/send", &["Content-Type: application/json"], Some(&body));
    assert_eq!(sent.status, 200, "{}", sent.body);
    // The web UI's own requests name the server's own origin.
    let own = format!("Origin: http://{}", server.http);
    let headers = ["Content-Type: application/json", &own, "Sec-Fetch-Site: same-origin"];
    assert_eq!(curl(&server, "POST", "/api/v1/send", &headers, Some(&body)).status, 200);
    assert_eq!(server.count(), 2);

    // DELETE and PUT are writes too.
    let origin = format!("Origin: {EVIL}");
    curl(&server, "DELETE", "/api/v1/messages", &[&origin], None).refused(403);
    let read = r#"{"Read": true}"#;
    curl(
        &server,
        "PUT",
        "/api/v1/messages",
        &[&origin, "Content-Type: application/json"],
        Some(read),
    )
    .refused(403);
    assert_eq!(server.count(), 2, "the cross-site DELETE deleted nothing");
}

#[test]
fn browser_bodies_must_be_declared_json() {
    let server = TernServer::start("");
    let body = mail("typed");
    // Even from the server's own origin: a captured HTML mail opened from /view/ is a page of
    // this origin, and its form could post text/plain or form data.
    let own = format!("Origin: http://{}", server.http);
    let types = ["Content-Type: text/plain", "Content-Type: application/x-www-form-urlencoded"];
    for headers in [&[own.as_str(), types[0]][..], &[&own, types[1]], &[&own]] {
        let error = curl(&server, "POST", "/api/v1/send", headers, Some(&body)).refused(415);
        assert!(error.contains("must be JSON"), "{headers:?}: {error}");
    }
    assert_eq!(server.count(), 0);
    let json = [own.as_str(), "Content-Type: application/json; charset=utf-8"];
    assert_eq!(curl(&server, "POST", "/api/v1/send", &json, Some(&body)).status, 200);
    // Scripts are not browsers: `curl -d` (form-typed) works as before.
    assert_eq!(curl(&server, "POST", "/api/v1/send", &[], Some(&body)).status, 200);
    assert_eq!(server.count(), 2);
}

#[test]
fn releasing_from_another_site_is_refused() {
    // With a relay configured, a page could otherwise forward the newest mail anywhere.
    let server = TernServer::start("[outbound]\nrelay_host = \"127.0.0.1:9\"\ntls = \"off\"\n");
    let json = ["Content-Type: application/json"];
    assert_eq!(curl(&server, "POST", "/api/v1/send", &json, Some(&mail("reset link"))).status, 200);
    let to = r#"{"To": ["thief@evil.test"]}"#;
    for headers in [
        &["Content-Type: text/plain", "Origin: http://evil.test"][..],
        &["Content-Type: application/json", "Sec-Fetch-Site: cross-site"],
    ] {
        curl(&server, "POST", "/api/v1/message/latest/release", headers, Some(to)).refused(403);
    }
    let queue = curl(&server, "GET", "/api/v1/queue", &[], None);
    assert_eq!(serde_json::from_str::<Value>(&queue.body).expect("JSON")["Total"], 0);
    // The same release without a foreign origin goes through: the refusal was the guard's.
    let released = curl(&server, "POST", "/api/v1/message/latest/release", &json, Some(to));
    assert_eq!((released.status, released.body.as_str()), (200, "ok"));
}

#[test]
fn only_hosts_that_name_this_server_are_answered() {
    let server = TernServer::start("[http]\nallowed_hosts = [\"mail.example\"]\n");
    let port = server.http.port();
    // DNS rebinding: the page's own name in Host, the server's address underneath.
    let error =
        curl(&server, "GET", "/api/v1/messages", &[&format!("Host: evil.test:{port}")], None)
            .refused(421);
    assert!(error.contains("http.allowed_hosts"), "{error}");
    let sent = curl(
        &server,
        "POST",
        "/api/v1/send",
        &[&format!("Host: evil.test:{port}"), "Content-Type: application/json"],
        Some(&mail("rebound")),
    );
    sent.refused(421);
    assert_eq!(server.count(), 0);
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("tern.test:{port}"), // the configured hostname
        "mail.example".to_string(),  // http.allowed_hosts
    ] {
        let answer = curl(&server, "GET", "/api/v1/messages", &[&format!("Host: {host}")], None);
        assert_eq!(answer.status, 200, "Host: {host}: {}", answer.body);
    }
}

/// A page of another site can make the browser GET a message (an `<img src>`): it cannot read
/// the answer, and the request must change nothing — the message stays unread. Every answer,
/// refusals included, forbids type sniffing.
#[test]
fn reads_from_another_site_change_nothing_and_no_answer_is_sniffed() {
    let server = TernServer::start("");
    let mut client = support::Client::greeted(server.addr);
    client.cmd("EHLO client.example", "250");
    let id =
        client.send_message("a@example.org", &["b@example.com"], b"Subject: reset\r\n\r\nx\r\n");
    let is_read = || {
        let answer = curl(&server, "GET", "/api/v1/messages", &[], None);
        let list: Value = serde_json::from_str(&answer.body).expect("JSON");
        list["messages"][0]["Read"].as_bool().expect("Read")
    };
    for path in [format!("/api/v1/message/{id}"), format!("/view/{id}.txt")] {
        for site in ["Sec-Fetch-Site: cross-site", "Sec-Fetch-Site: same-site"] {
            let answer = curl(&server, "GET", &path, &[site], None);
            assert_eq!(answer.status, 200, "{path} {site}: {}", answer.body);
        }
        let answer = curl(&server, "GET", &path, &[&format!("Origin: {EVIL}")], None);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert!(!is_read(), "{path} from another site marked the message read");
    }
    // The UI itself (same origin) and a script (no Origin) still mark it read.
    curl(&server, "GET", &format!("/api/v1/message/{id}"), &["Sec-Fetch-Site: same-origin"], None);
    assert!(is_read());

    let port = server.http.port();
    for answer in [
        curl(&server, "GET", "/api/v1/info", &[], None),
        curl(&server, "GET", "/api/v1/nowhere", &[], None),
        curl(&server, "GET", "/api/v1/info", &[&format!("Host: evil.test:{port}")], None),
        curl(&server, "GET", "/", &[], None),
    ] {
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{}", answer.headers);
    }
}

/// A sender with a line break would later be written into `MAIL FROM:<…>` when the message
/// is released: the send API refuses it, and stores nothing.
#[test]
fn a_send_whose_sender_would_break_an_smtp_line_is_refused() {
    let server = TernServer::start("");
    let body = json!({"From": {"Email": "a@b.test>\r\nRCPT TO:<victim@elsewhere.example"},
        "To": [{"Email": "dev@example.com"}], "Subject": "s", "Text": "x"})
    .to_string();
    let error =
        curl(&server, "POST", "/api/v1/send", &["Content-Type: application/json"], Some(&body))
            .refused(400);
    assert!(error.contains("From"), "{error}");
    assert_eq!(server.count(), 0);
}

#[test]
fn websocket_handshakes_from_another_origin_are_refused() {
    let server = TernServer::start("");
    let handshake = [
        "Connection: Upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ];
    let mut foreign = handshake.to_vec();
    foreign.push("Origin: http://evil.test");
    let error = curl(&server, "GET", "/api/events", &foreign, None).refused(403);
    assert!(error.contains("websocket"), "{error}");
    // Without a foreign Origin the handshake succeeds (read raw: curl would wait on the socket).
    let mut stream = connect(server.http);
    let request = format!(
        "GET /api/events HTTP/1.1\r\nHost: {}\r\n{}\r\n\r\n",
        server.http,
        handshake.join("\r\n")
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut status = String::new();
    BufReader::new(stream).read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
}

#[test]
fn a_listed_origin_gets_preflights_answered_and_may_write() {
    let server = TernServer::start("[http]\ncors_origins = [\"http://localhost:3000\"]\n");
    let preflight = [
        "Origin: http://localhost:3000",
        "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: content-type",
    ];
    let answer = curl(&server, "OPTIONS", "/api/v1/send", &preflight, None);
    assert!((200..300).contains(&answer.status), "{}\n{}", answer.headers, answer.body);
    assert_eq!(answer.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert!(answer.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    let allowed_headers = answer.header("access-control-allow-headers").unwrap_or_default();
    assert!(allowed_headers.to_ascii_lowercase().contains("content-type"), "{allowed_headers}");

    let headers = ["Origin: http://localhost:3000", "Content-Type: application/json"];
    let sent = curl(&server, "POST", "/api/v1/send", &headers, Some(&mail("from the front end")));
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert_eq!(sent.header("access-control-allow-origin"), Some("http://localhost:3000"));
    assert_eq!(server.count(), 1);

    // Any other origin: its preflight and its write are refused.
    let other = ["Origin: http://localhost:3001", "Access-Control-Request-Method: POST"];
    curl(&server, "OPTIONS", "/api/v1/send", &other, None).refused(403);
    let headers = ["Origin: http://localhost:3001", "Content-Type: application/json"];
    curl(&server, "POST", "/api/v1/send", &headers, Some(&mail("other"))).refused(403);
    assert_eq!(server.count(), 1);
}

#[test]
fn a_page_of_another_origin_in_chromium_stores_and_receives_nothing() {
    let server = TernServer::start("");
    let result = run_crossorigin_page(&server);
    println!("{result:#}");
    let foreign = &result["foreign"];
    assert_eq!(foreign["websocket"]["opened"], false, "{result}");
    assert_eq!(foreign["websocket"]["messages"], 0, "{result}");
    for attempt in ["json", "remove"] {
        let seen = foreign[attempt].as_str().unwrap_or_default();
        assert!(seen.starts_with("failed"), "a preflighted {attempt} must fail: {result}");
    }
    // The page's own origin still writes, as the web UI does.
    assert_eq!(result["own"]["status"], 200, "{result}");
    let listed = curl(&server, "GET", "/api/v1/messages", &[], None);
    let listed: Value = serde_json::from_str(&listed.body).expect("JSON");
    let subjects: Vec<_> = listed["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["Subject"].clone())
        .collect();
    assert_eq!(subjects, ["same-origin"], "only the same-origin POST was stored: {result}");
}

/// Runs `tests/browser/crossorigin.mjs` against `server`; its `RESULT` line as JSON.
fn run_crossorigin_page(server: &TernServer) -> Value {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium} (apt-get install -y chromium); this test does \
         not skip without a browser"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core/package.json").exists() {
        let dir_arg = dir.display().to_string();
        support::run("npm", &["ci", "--no-audit", "--no-fund", "--prefix", &dir_arg], None);
    }
    let log = server.data.join("crossorigin.log");
    let mut child = Command::new("node")
        .arg("crossorigin.mjs")
        .arg("--http")
        .arg(format!("http://{}", server.http))
        .env("CHROMIUM_PATH", &chromium)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (the browser test needs Node.js)");
    let status = wait_for_exit(&mut child, Duration::from_secs(120)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("crossorigin.mjs did not finish in 120 s")
    });
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "crossorigin.mjs failed ({status}):\n{output}\n{}", server.stderr());
    let line = output.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a RESULT line");
    serde_json::from_str(line).expect("RESULT is JSON")
}

/// The child's exit status, or `None` when it is still running after `limit`.
fn wait_for_exit(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Connects to the HTTP port with a read deadline.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the HTTP port");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    stream
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
fn read_response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read the response head");
        assert!(!line.is_empty(), "the server closed before answering: {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether the server closes `stream` (end of file or reset) before the read deadline.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// A request for `/livez` on a kept-alive connection; proves the server serves it.
fn livez(reader: &mut BufReader<TcpStream>) -> u16 {
    reader.get_mut().write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    read_response(reader).0
}

#[test]
fn shutdown_is_bounded_while_a_client_is_stuck_in_its_request_head() {
    // The head deadline stays long: the grace alone must end the stuck connection.
    let mut server =
        TernServer::start("[http]\nheader_timeout_secs = 300\nshutdown_grace_secs = 1\n");
    // A new connection with half a head: hyper counts it busy, so it never closes by itself.
    let mut stuck = connect(server.http);
    stuck.write_all(b"GET /api/v1/messages HTTP/1.1\r\nHost: 127.").expect("half a head");
    // The half head must be read by the server before the signal (no event shows when).
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    support::run("kill", &["-TERM", &pid], None);
    let status = wait_for_exit(&mut server.child, Duration::from_secs(15));
    let status = status.unwrap_or_else(|| {
        panic!("tern still runs 15 s after SIGTERM; stderr:\n{}", server.stderr())
    });
    assert!(status.success(), "{status}");
    println!("exited {:.1} s after SIGTERM", signalled.elapsed().as_secs_f64());
    assert!(closed_by_server(&mut stuck));
}

#[test]
fn slow_heads_and_idle_connections_are_closed_after_the_head_deadline() {
    let server = TernServer::start("[http]\nheader_timeout_secs = 1\n");
    let mut slow = connect(server.http);
    slow.write_all(b"GET /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").expect("write");
    assert!(closed_by_server(&mut slow), "a half-sent head is closed");
    // A kept-alive connection idle after its answer is closed the same way.
    let mut idle = BufReader::new(connect(server.http));
    assert_eq!(livez(&mut idle), 200);
    assert!(closed_by_server(idle.get_mut()), "an idle keep-alive connection is closed");
    // Prompt clients are unaffected.
    assert_eq!(livez(&mut BufReader::new(connect(server.http))), 200);
}

#[test]
fn a_body_shorter_than_its_length_is_cut_off_by_the_body_deadline() {
    let server = TernServer::start("[http]\nbody_timeout_secs = 1\n");
    let mut short = connect(server.http);
    let head = "POST /api/v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"From\":";
    short.write_all(head.as_bytes()).expect("write");
    let mut reader = BufReader::new(short);
    let (status, body) = read_response(&mut reader);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("request body"), "{body}");
    assert!(closed_by_server(reader.get_mut()), "the connection is closed after the answer");
    assert_eq!(server.count(), 0);
}

#[test]
fn connections_over_the_cap_get_503_and_clients_return_after() {
    let server = TernServer::start("[http]\nmax_connections = 2\n");
    let mut held: Vec<_> = (0..2).map(|_| BufReader::new(connect(server.http))).collect();
    for connection in &mut held {
        assert_eq!(livez(connection), 200, "under the cap");
    }
    let mut over = BufReader::new(connect(server.http));
    over.get_mut().write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("write");
    let (status, body) = read_response(&mut over);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("http.max_connections"), "{body}");
    drop(held);
    // The server frees the places when it sees the closes: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut client = BufReader::new(connect(server.http));
        client
            .get_mut()
            .write_all(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        match read_response(&mut client).0 {
            200 => break,
            status => assert!(Instant::now() < deadline, "still {status} after the others left"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
