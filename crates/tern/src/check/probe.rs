//! One MX host over SMTP, as a sending MTA sees it: the greeting, EHLO and its SIZE limit,
//! STARTTLS, the TLS version and cipher, and the certificate chain — whether it verifies for
//! the host's name, the names it carries, who issued it and when it expires. Nothing is sent:
//! the conversation ends with QUIT after the second EHLO.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tern_delivery::outbound::{Capabilities, TlsSetup, Verification};
use tern_protocol::client_reply::{ClientReply, MAX_REPLY_LINE_BYTES, ReplyParser};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use x509_parser::extensions::GeneralName;

use super::Finding;

/// A certificate that expires within this many days is worth a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;

/// Whom to probe and what to call ourselves.
pub(super) struct Target<'a> {
    /// The MX host name (the certificate must carry it).
    pub host: &'a str,
    /// One of its addresses, with the SMTP port.
    pub addr: SocketAddr,
    /// The EHLO name.
    pub ehlo_name: &'a str,
}

/// Talks to `target` within `limit`; one finding per step.
pub(super) async fn probe(target: &Target<'_>, tls: &TlsSetup, limit: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    let label = format!("SMTP {} ({})", target.host, target.addr);
    if timeout(limit, talk(target, tls, &label, &mut out)).await.is_err() {
        out.push(Finding::Fail(format!("{label}: no answer within {limit:?}")));
    }
    out
}

async fn talk(target: &Target<'_>, tls: &TlsSetup, label: &str, out: &mut Vec<Finding>) {
    let tcp = match TcpStream::connect(target.addr).await {
        Ok(tcp) => tcp,
        Err(e) => {
            return out.push(Finding::Fail(format!(
                "{label}: cannot connect: {e} (is the server up and the port open? many networks \
                 block outgoing port 25)"
            )));
        }
    };
    let mut smtp = Conversation::new(tcp);
    let Some(caps) = greet(&mut smtp, target, label, out).await else { return };
    if !caps.starttls {
        out.push(Finding::Fail(format!(
            "{label}: no STARTTLS: mail to this host crosses the network in clear; configure a \
             certificate (tls.cert_path and tls.key_path in Tern)"
        )));
        return smtp.quit().await;
    }
    match smtp.command("STARTTLS").await {
        Ok(reply) if reply.code == 220 => {}
        Ok(reply) => return out.push(Finding::Fail(format!("{label}: STARTTLS refused: {reply}"))),
        Err(e) => return out.push(Finding::Fail(format!("{label}: STARTTLS: {e}"))),
    }
    let tcp = smtp.reader.into_inner();
    let handshake = match tls.handshake(tcp, target.host, Verification::Lenient).await {
        Ok(handshake) => handshake,
        Err(e) => return out.push(Finding::Fail(format!("{label}: {e}"))),
    };
    let (_, session) = handshake.stream.get_ref();
    let version = session.protocol_version().map_or("?".into(), |v| format!("{v:?}"));
    let suite =
        session.negotiated_cipher_suite().map_or("?".into(), |s| format!("{:?}", s.suite()));
    out.push(Finding::Ok(format!("{label}: TLS {version}, {suite}")));
    match &handshake.unverified {
        None => {
            out.push(Finding::Ok(format!("{label}: the certificate verifies for {}", target.host)))
        }
        Some(reason) => out.push(Finding::Warn(format!(
            "{label}: the certificate does not verify for {}: {reason}; most senders deliver \
             anyway, but those enforcing MTA-STS or DANE will not: use a certificate from a public \
             CA that names the MX host",
            target.host
        ))),
    }
    if let Some(chain) = session.peer_certificates() {
        out.extend(describe_chain(label, chain));
    }
    let mut smtp = Conversation::new(handshake.stream);
    if let Ok(reply) = smtp.command(&format!("EHLO {}", target.ehlo_name)).await
        && !reply.is_positive()
    {
        out.push(Finding::Fail(format!("{label}: EHLO after STARTTLS refused: {reply}")));
    }
    smtp.quit().await;
}

/// The greeting and EHLO; the capabilities, or `None` after a failure (reported).
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    smtp: &mut Conversation<S>,
    target: &Target<'_>,
    label: &str,
    out: &mut Vec<Finding>,
) -> Option<Capabilities> {
    match smtp.read_reply().await {
        Ok(reply) if reply.code == 220 => out.push(Finding::Ok(format!("{label}: {reply}"))),
        Ok(reply) => {
            out.push(Finding::Fail(format!("{label}: greeting {reply}: the host refuses mail")));
            return None;
        }
        Err(e) => {
            out.push(Finding::Fail(format!("{label}: greeting: {e}")));
            return None;
        }
    }
    let reply = match smtp.command(&format!("EHLO {}", target.ehlo_name)).await {
        Ok(reply) if reply.is_positive() => reply,
        Ok(reply) => {
            out.push(Finding::Fail(format!("{label}: EHLO refused: {reply}")));
            return None;
        }
        Err(e) => {
            out.push(Finding::Fail(format!("{label}: EHLO: {e}")));
            return None;
        }
    };
    let caps = Capabilities::from_ehlo(&reply);
    out.push(match caps.size {
        Some(0) => Finding::Ok(format!("{label}: SIZE offered, no fixed limit")),
        Some(limit) => Finding::Ok(format!(
            "{label}: accepts messages up to {limit} bytes ({:.1} MB, SIZE)",
            limit as f64 / 1_000_000.0
        )),
        None => Finding::Warn(format!(
            "{label}: no SIZE in EHLO: senders learn the size limit only after sending a message"
        )),
    });
    Some(caps)
}

/// The end-entity certificate's names, issuer and expiry, and the chain's length.
fn describe_chain(
    label: &str,
    chain: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
) -> Vec<Finding> {
    let Some(leaf) = chain.first() else { return Vec::new() };
    let cert = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return vec![Finding::Fail(format!("{label}: the certificate does not parse: {e}"))];
        }
    };
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => (*dns).to_string(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let not_after = cert.validity().not_after;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days_left = (not_after.timestamp() - now as i64).div_euclid(86_400);
    let what = format!(
        "{label}: certificate for {} issued by {}, {} in the chain, expires {not_after}",
        if names.is_empty() { cert.subject().to_string() } else { names.join(", ") },
        cert.issuer(),
        chain.len(),
    );
    vec![match days_left {
        ..0 => Finding::Fail(format!("{what}: EXPIRED; renew it")),
        0..EXPIRY_WARNING_DAYS => {
            Finding::Warn(format!("{what}: {days_left} days left; renew it soon"))
        }
        _ => Finding::Ok(format!("{what} ({days_left} days left)")),
    }]
}

/// An SMTP client conversation: commands out, replies in, lines bounded.
struct Conversation<S> {
    reader: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<S> {
    fn new(stream: S) -> Self {
        Conversation { reader: BufReader::new(stream) }
    }

    async fn command(&mut self, line: &str) -> Result<ClientReply, String> {
        let stream = self.reader.get_mut();
        stream.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<ClientReply, String> {
        let mut parser = ReplyParser::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = (&mut self.reader).take(MAX_REPLY_LINE_BYTES as u64 + 2);
            let read = limited.read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("the server closed the connection".into());
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if let Some(reply) = parser.push_line(text).map_err(|e| e.to_string())? {
                return Ok(reply);
            }
        }
    }

    async fn quit(&mut self) {
        let _ = self.command("QUIT").await;
    }
}
