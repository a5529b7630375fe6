//! A minimal blocking HTTP/1.1 client over `TcpStream`: one request per connection
//! (`Connection: close`), fixed-length or chunked bodies; plus streaming readers for
//! server-sent events and a websocket, enough to watch Tern's live events.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, asserting the content type says so.
    pub fn json(&self) -> Value {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "expected JSON, got {content_type:?}: {} {}",
            self.status,
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", self.text()))
    }

    /// Asserts the status and returns the JSON body.
    pub fn json_with(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        self.json()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the HTTP port");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("set a read timeout");
    stream
}

fn write_request(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "DELETE") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write the request head");
    stream.write_all(body).expect("write the request body");
}

/// Reads a status line and headers.
fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read a header line");
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header {line:?}"));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size_line = String::new();
    reader.read_line(&mut size_line).expect("read a chunk size");
    let size_text = size_line.trim().split(';').next().unwrap_or_default();
    let size = usize::from_str_radix(size_text, 16)
        .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
    let mut chunk = vec![0; size];
    reader.read_exact(&mut chunk).expect("read a chunk");
    let mut crlf = [0; 2];
    reader.read_exact(&mut crlf).expect("read the chunk's CRLF");
    (size > 0).then_some(chunk)
}

/// Sends one request and reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect(addr);
    write_request(&mut stream, method, path, extra, body);
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).expect("read the body");
    }
    Response { status, headers, body }
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

pub fn delete(addr: SocketAddr, path: &str) -> Response {
    request(addr, "DELETE", path, &[], b"")
}

/// A request with a JSON body.
pub fn send_json(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("serialise the body");
    request(addr, method, path, &[("Content-Type", "application/json")], &bytes)
}

/// A request with raw bytes declared as JSON (for malformed bodies).
pub fn send_bytes(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    request(addr, method, path, &[("Content-Type", "application/json")], body)
}

/// An open `text/event-stream`, decoded from its chunked transfer encoding.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    decoded: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

impl EventStream {
    pub fn open(addr: SocketAddr, path: &str) -> EventStream {
        let mut stream = connect(addr);
        write_request(&mut stream, "GET", path, &[("Accept", "text/event-stream")], b"");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert!(
            headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
            "the event stream is chunked: {headers:?}"
        );
        EventStream { reader, decoded: String::new(), headers, status }
    }

    /// The next complete event (comments and keep-alives skipped).
    pub fn next_event(&mut self) -> SseEvent {
        loop {
            while let Some(end) = self.decoded.find("\n\n") {
                let block: String = self.decoded.drain(..end + 2).collect();
                let mut event = SseEvent { event: "message".into(), data: String::new() };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.event = name.trim().to_string();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                    }
                }
                if !event.data.is_empty() {
                    return event;
                }
            }
            let chunk = read_chunk(&mut self.reader).expect("the event stream stays open");
            self.decoded.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads events until one named `name` satisfies `wanted`; returns its JSON data.
    pub fn wait_for(&mut self, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let event = self.next_event();
            if event.event == name {
                let data: Value = serde_json::from_str(&event.data)
                    .unwrap_or_else(|e| panic!("event data is JSON ({e}): {}", event.data));
                if wanted(&data) {
                    return data;
                }
            }
        }
    }
}

/// RFC 6455's example handshake key and the accept value it must produce (section 1.3).
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client end of a websocket that only reads.
pub struct WebSocket {
    reader: BufReader<TcpStream>,
}

impl WebSocket {
    /// Performs the opening handshake; asserts 101 and the accept key.
    pub fn connect(addr: SocketAddr, path: &str) -> WebSocket {
        let mut stream = connect(addr);
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).expect("write the handshake");
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert_eq!(status, 101, "websocket upgrade: {headers:?}");
        let accept =
            headers.iter().find(|(n, _)| n == "sec-websocket-accept").map(|(_, v)| v.as_str());
        assert_eq!(accept, Some(WS_ACCEPT), "Sec-WebSocket-Accept");
        WebSocket { reader }
    }

    /// The next text frame's payload (pings and other control frames skipped). Server frames
    /// are never masked; messages here are never fragmented.
    pub fn next_text(&mut self) -> String {
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).expect("read a frame header");
            let opcode = head[0] & 0x0f;
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    self.reader.read_exact(&mut ext).expect("read a 16-bit length");
                    u64::from(u16::from_be_bytes(ext))
                }
                127 => {
                    let mut ext = [0u8; 8];
                    self.reader.read_exact(&mut ext).expect("read a 64-bit length");
                    u64::from_be_bytes(ext)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).expect("frame fits in memory")];
            self.reader.read_exact(&mut payload).expect("read a frame payload");
            match opcode {
                0x1 => {
                    assert_eq!(head[0] & 0x80, 0x80, "text frames are not fragmented");
                    return String::from_utf8(payload).expect("text frames are UTF-8");
                }
                0x8 => panic!("the server closed the websocket"),
                _ => {}
            }
        }
    }

    /// The next text frame as JSON.
    pub fn next_json(&mut self) -> Value {
        let text = self.next_text();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is JSON ({e}): {text}"))
    }
}
