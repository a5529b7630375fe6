//! An authoritative DNS stub for tests: answers queries from a fixed in-memory [`Zone`] over
//! UDP and TCP on one ephemeral loopback port, with hickory's wire types (the resolver's own),
//! so the code under test asks real DNS over real sockets.
//!
//! A name not in the zone gets NXDOMAIN, a name without records of the asked type an empty
//! NOERROR, and a name marked [`Entry::Timeout`] no answer at all (for the types it has no
//! records of before the mark), so the resolver runs into its own timeout. A CNAME is answered
//! with its target's records one level deep, as the RFC 7208 suite's reference driver does;
//! the resolver follows longer chains itself.
#![allow(dead_code, reason = "each test binary uses the part it needs")]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// Time to live of every answer.
const TTL_SECS: u32 = 300;
/// Largest UDP answer when the query carries no EDNS (RFC 1035 §4.2.1).
const CLASSIC_UDP_BYTES: usize = 512;

/// One record's data.
#[derive(Debug, Clone)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Ptr(String),
    Cname(String),
    /// The character-strings of one TXT record, in order (each split to 255 bytes on the wire).
    Txt(Vec<String>),
}

/// What a name holds, in the order given.
#[derive(Debug, Clone)]
pub enum Entry {
    Record(Data),
    /// Queries for a type with no record before this mark are never answered.
    Timeout,
}

/// Names (case-insensitive, without the final dot) and what they hold.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    names: HashMap<String, Vec<Entry>>,
}

/// What the stub does with one query.
enum Answer {
    Records(Vec<Record>),
    NxDomain,
    Silence,
}

impl Zone {
    /// Adds `entry` to `name` (created, with no records, if new).
    pub fn add(&mut self, name: &str, entry: Entry) {
        self.names.entry(key(name)).or_default().push(entry);
    }

    /// Makes `name` exist, holding nothing yet.
    pub fn touch(&mut self, name: &str) {
        self.names.entry(key(name)).or_default();
    }

    fn answer(&self, name: &Name, qtype: RecordType) -> Answer {
        let Some(entries) = self.names.get(&wire_key(name)) else {
            return Answer::NxDomain;
        };
        let mut records = Vec::new();
        let mut alias = None;
        for entry in entries {
            match entry {
                Entry::Timeout if records.is_empty() && alias.is_none() => return Answer::Silence,
                Entry::Timeout => {}
                Entry::Record(Data::Cname(target)) if qtype != RecordType::CNAME => {
                    alias = Some(target);
                }
                Entry::Record(data) if data.record_type() == qtype => {
                    records.push(Record::from_rdata(name.clone(), TTL_SECS, data.rdata()));
                }
                Entry::Record(_) => {}
            }
        }
        if let Some(target) = alias {
            records.push(Record::from_rdata(
                name.clone(),
                TTL_SECS,
                Data::Cname(target.clone()).rdata(),
            ));
            records.extend(self.alias_records(target, qtype));
        }
        Answer::Records(records)
    }

    /// The records of `qtype` (or its CNAME) at an alias target, not followed further.
    fn alias_records(&self, target: &str, qtype: RecordType) -> Vec<Record> {
        let owner = name_of(target);
        let entries = self.names.get(&key(target)).map(Vec::as_slice).unwrap_or_default();
        entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Record(data)
                    if data.record_type() == qtype || data.record_type() == RecordType::CNAME =>
                {
                    Some(Record::from_rdata(owner.clone(), TTL_SECS, data.rdata()))
                }
                _ => None,
            })
            .collect()
    }
}

impl Data {
    fn record_type(&self) -> RecordType {
        match self {
            Data::A(_) => RecordType::A,
            Data::Aaaa(_) => RecordType::AAAA,
            Data::Mx(..) => RecordType::MX,
            Data::Ptr(_) => RecordType::PTR,
            Data::Cname(_) => RecordType::CNAME,
            Data::Txt(_) => RecordType::TXT,
        }
    }

    fn rdata(&self) -> RData {
        match self {
            Data::A(ip) => RData::A(A(*ip)),
            Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
            Data::Mx(preference, exchange) => RData::MX(MX::new(*preference, name_of(exchange))),
            Data::Ptr(target) => RData::PTR(PTR(name_of(target))),
            Data::Cname(target) => RData::CNAME(CNAME(name_of(target))),
            Data::Txt(strings) => {
                // A character-string holds at most 255 bytes; longer text is several of them,
                // which SPF joins again (RFC 7208 §3.3).
                let chunks = strings.iter().flat_map(|s| s.as_bytes().chunks(255)).collect();
                RData::TXT(TXT::from_bytes(chunks))
            }
        }
    }
}

/// The zone's key for a name given as text.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The zone's key for a name off the wire: its labels as they are (a label may hold spaces or
/// `%`, which hickory's text form would escape).
fn wire_key(name: &Name) -> String {
    let labels: Vec<String> =
        name.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect();
    key(&labels.join("."))
}

/// A fully qualified name from text, label bytes taken as they are.
fn name_of(text: &str) -> Name {
    let labels = text.trim_end_matches('.').split('.').filter(|l| !l.is_empty()).map(str::as_bytes);
    Name::from_labels(labels).unwrap_or_else(|e| panic!("zone name {text:?}: {e}"))
}

/// The response to one query message, or `None` to stay silent.
fn respond(zone: &Zone, request: &[u8], over_udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let mut response = Message::new(request.id, MessageType::Response, request.op_code);
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = request.recursion_desired;
    response.metadata.recursion_available = true;
    if let Some(edns) = &request.edns {
        let mut ours = Edns::new();
        ours.set_max_payload(edns.max_payload().max(CLASSIC_UDP_BYTES as u16));
        response.set_edns(ours);
    }
    let Some(query) = request.queries.first().filter(|_| request.op_code == OpCode::Query) else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response.to_vec().ok();
    };
    response.add_query(query.clone());
    match zone.answer(query.name(), query.query_type()) {
        Answer::Silence => return None,
        Answer::NxDomain => response.metadata.response_code = ResponseCode::NXDomain,
        Answer::Records(records) => {
            response.add_answers(records);
        }
    }
    let bytes = response.to_vec().ok()?;
    let limit = over_udp.then(|| {
        let edns = request.edns.as_ref().map(|e| usize::from(e.max_payload()));
        edns.unwrap_or(CLASSIC_UDP_BYTES).max(CLASSIC_UDP_BYTES)
    });
    match limit {
        // Too big for UDP: the truncated answer sends the resolver to TCP.
        Some(limit) if bytes.len() > limit => response.truncate().to_vec().ok(),
        _ => Some(bytes),
    }
}

/// A running stub; its tasks end when it is dropped.
pub struct DnsStub {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    tcp_queries: Arc<AtomicUsize>,
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl DnsStub {
    /// Serves `zone` on 127.0.0.1, UDP and TCP on the same ephemeral port.
    pub async fn start(zone: Zone) -> std::io::Result<DnsStub> {
        let zone = Arc::new(zone);
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let counter = tcp_queries.clone();
        let (udp, tcp) = bind_pair().await?;
        let addr = udp.local_addr()?;
        let udp_zone = zone.clone();
        let udp_task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            while let Ok((len, peer)) = udp.recv_from(&mut buffer).await {
                if let Some(bytes) = respond(&udp_zone, &buffer[..len], true) {
                    let _ = udp.send_to(&bytes, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((stream, _)) = tcp.accept().await {
                tokio::spawn(serve_tcp(zone.clone(), stream, counter.clone()));
            }
        });
        Ok(DnsStub { addr, tasks: vec![udp_task, tcp_task], tcp_queries })
    }

    /// How many queries came over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.tcp_queries.load(Ordering::Relaxed)
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
async fn bind_pair() -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Another process holds the TCP side of this port: try another one.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// One TCP connection: length-prefixed queries (RFC 1035 §4.2.2), each answered in turn.
async fn serve_tcp(zone: Arc<Zone>, mut stream: TcpStream, queries: Arc<AtomicUsize>) {
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut request).await.is_err() {
            return;
        }
        queries.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = respond(&zone, &request, false) else { continue };
        let Ok(prefix) = u16::try_from(bytes.len()) else { return };
        if stream.write_all(&prefix.to_be_bytes()).await.is_err()
            || stream.write_all(&bytes).await.is_err()
        {
            return;
        }
    }
}
