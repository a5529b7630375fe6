//! `tern sendmail` (also when run through a link named `sendmail`): the sendmail command line
//! that cron, PHP's `mail()`, git send-email and most programs use to send mail. The message
//! comes on standard input; it is submitted over SMTP to the local Tern (`TERN_SMTP`, by
//! default `127.0.0.1:25`). When that server does not answer, the message and its envelope go
//! durably into the drop directory (`TERN_DROP_DIR`, by default `/var/lib/tern/drop`), which
//! `tern serve` takes in when it starts: a message given to sendmail is never lost.
//!
//! Options as sendmail has them: `-t` (recipients from To/Cc/Bcc, Bcc removed), `-i`/`-oi`
//! (a lone `.` does not end the message), `-f FROM`, `-F NAME`, `-bs` (speak SMTP on standard
//! input and output: the conversation is relayed to the server), other `-o…`/`-B…` options
//! accepted and ignored. Exit codes are sendmail's (`sysexits.h`).
//!
//! Submission goes through the outbound SMTP client (`tern-delivery`) with the server as its
//! smarthost. With `TERN_SENDMAIL_USER` and `TERN_SENDMAIL_PASSWORD` it logs in — after
//! STARTTLS, or TLS from the first byte on port 465; the certificate must verify (webpki roots
//! and `TERN_SENDMAIL_CA_FILE`) unless the server is on a loopback address. A recipient the
//! server refuses is reported (exit 67); recipients it could not take now are dropped for later
//! — only those, so nobody gets the message twice.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `sysexits.h`: success.
const EX_OK: u8 = 0;
/// Bad command line.
const EX_USAGE: u8 = 64;
/// Bad input (no recipient, unreadable message).
const EX_DATAERR: u8 = 65;
/// The server refused a recipient or the message for good.
const EX_NOUSER: u8 = 67;
/// Temporary failure: try again later.
const EX_TEMPFAIL: u8 = 75;

/// Default server to submit to.
pub const DEFAULT_SERVER: &str = "127.0.0.1:25";
/// Default drop directory.
pub const DEFAULT_DROP_DIR: &str = "/var/lib/tern/drop";

/// What the command line asked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    from: Option<String>,
    full_name: Option<String>,
    headers_recipients: bool,
    dot_ends: bool,
    /// `-bs`: SMTP on standard input and output.
    smtp_stdio: bool,
    recipients: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options { dot_ends: true, ..Options::default() };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |inline: &str, flag: &str| -> Result<String, String> {
            if inline.is_empty() {
                args.next().cloned().ok_or_else(|| format!("{flag} needs a value"))
            } else {
                Ok(inline.to_string())
            }
        };
        match arg.as_str() {
            "-t" => options.headers_recipients = true,
            "-i" | "-oi" => options.dot_ends = false,
            "-bs" => options.smtp_stdio = true,
            "--" => options.recipients.extend(args.by_ref().cloned()),
            a if a.starts_with("-f") => options.from = Some(value(&a[2..], "-f")?),
            a if a.starts_with("-r") => options.from = Some(value(&a[2..], "-r")?),
            a if a.starts_with("-F") => options.full_name = Some(value(&a[2..], "-F")?),
            // -oXvalue, -Bbody, -v, -odb/-odi, -bm (the default mode): accepted, ignored.
            a if a.starts_with("-o") || a.starts_with("-B") || a == "-v" || a == "-bm" => {}
            a if a.starts_with('-') => return Err(format!("unsupported option {a}")),
            a => options.recipients.push(a.to_string()),
        }
    }
    Ok(options)
}

/// Runs sendmail with `args` (without the program name).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let options = match parse(&args) {
        Ok(options) => options,
        Err(e) => return fail(EX_USAGE, &e),
    };
    let server = std::env::var("TERN_SMTP").unwrap_or_else(|_| DEFAULT_SERVER.into());
    if options.smtp_stdio {
        return relay_stdio(&server);
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        return fail(EX_DATAERR, &format!("reading the message: {e}"));
    }
    let (from, recipients, message) = match prepare(&options, &input) {
        Ok(prepared) => prepared,
        Err(e) => return fail(EX_DATAERR, &e),
    };
    let submission = match submit(&server, &from, &recipients, &message) {
        Ok(submission) => submission,
        Err(e) => return fail(EX_USAGE, &e),
    };
    for (rcpt, why) in &submission.refused {
        eprintln!("sendmail: {rcpt}: refused: {why}");
    }
    if !submission.deferred.is_empty() {
        let later: Vec<String> = submission.deferred.iter().map(|(r, _)| r.clone()).collect();
        let why = &submission.deferred[0].1;
        let dir = std::env::var_os("TERN_DROP_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_DROP_DIR), PathBuf::from);
        match drop_message(&dir, &from, &later, &message) {
            Ok(path) => eprintln!("sendmail: {why}; kept in {} for the server", path.display()),
            Err(e) => return fail(EX_TEMPFAIL, &format!("{why}; and the drop directory: {e}")),
        }
    }
    if submission.refused.is_empty() { ExitCode::from(EX_OK) } else { ExitCode::from(EX_NOUSER) }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("sendmail: {message}");
    ExitCode::from(code)
}

/// The envelope and the message as it will be sent: CRLF lines, `-i` honoured, the headers
/// a message needs added (From, Date, Message-ID), recipients from the header with `-t`.
fn prepare(options: &Options, input: &[u8]) -> Result<(String, Vec<String>, Vec<u8>), String> {
    let mut lines: Vec<&[u8]> = Vec::new();
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if options.dot_ends && line == b"." {
            break;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|l| l.is_empty()) && lines.len() > 1 {
        lines.pop();
    }
    let split = lines.iter().position(|l| l.is_empty()).unwrap_or(lines.len());
    let (head, body) = lines.split_at(split);
    let head: Vec<String> = unfolded(head);
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = crate::config::system_hostname();
    let from = options.from.clone().unwrap_or_else(|| format!("{user}@{host}"));
    let mut recipients = options.recipients.clone();
    if options.headers_recipients {
        for field in &head {
            let Some((name, value)) = field.split_once(':') else { continue };
            if ["to", "cc", "bcc"].contains(&name.trim().to_ascii_lowercase().as_str()) {
                recipients.extend(addresses(value));
            }
        }
    }
    if recipients.is_empty() {
        return Err("no recipients (give them as arguments, or -t to read To/Cc/Bcc)".into());
    }
    let has = |name: &str| {
        head.iter()
            .any(|f| f.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name)))
    };
    let mut out = String::new();
    if !has("from") {
        match &options.full_name {
            Some(name) => {
                out.push_str(&format!("From: \"{}\" <{from}>\r\n", name.replace('"', "'")))
            }
            None => out.push_str(&format!("From: {from}\r\n")),
        }
    }
    if !has("date") {
        out.push_str(&format!("Date: {}\r\n", rfc5322_now()));
    }
    if !has("message-id") {
        out.push_str(&format!("Message-ID: <{}@{host}>\r\n", ulid::Ulid::new()));
    }
    let mut message = out.into_bytes();
    for line in head_lines(input, split, options.dot_ends) {
        message.extend_from_slice(&line);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"\r\n");
    for line in body.iter().skip(1) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    Ok((from, recipients, message))
}

/// The header lines of the input as given (folds kept), without `Bcc` fields.
fn head_lines(input: &[u8], count: usize, dot_ends: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut in_bcc = false;
    for line in input.split(|&b| b == b'\n').take(count) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if dot_ends && line == b"." {
            break;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            in_bcc = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !in_bcc {
            out.push(line.to_vec());
        }
    }
    out
}

fn unfolded(head: &[&[u8]]) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for line in head {
        let text = String::from_utf8_lossy(line);
        match fields.last_mut() {
            Some(field) if text.starts_with([' ', '\t']) => field.push_str(&text),
            _ => fields.push(text.into_owned()),
        }
    }
    fields
}

/// The addresses of an address-list header value (`Name <a@b>, c@d`).
fn addresses(value: &str) -> Vec<String> {
    value
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            let address = match (part.rfind('<'), part.rfind('>')) {
                (Some(open), Some(close)) if open < close => &part[open + 1..close],
                _ => part,
            };
            let address = address.trim();
            address.contains('@').then(|| address.to_string())
        })
        .collect()
}

fn rfc5322_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    mail_parser::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX)).to_rfc822()
}

/// What the server did with each recipient: refused for good, or not taken now.
#[derive(Debug, Default)]
struct Submission {
    refused: Vec<(String, String)>,
    deferred: Vec<(String, String)>,
}

/// Submits the message to `server` (`host:port`) through the outbound SMTP client, with the
/// server as smarthost; `Err` for a server address that cannot be used at all.
fn submit(
    server: &str,
    from: &str,
    recipients: &[String],
    message: &[u8],
) -> Result<Submission, String> {
    use tern_delivery::outbound::{RelayHost, SmtpTransport, TlsPolicy, parse_host_port};
    use tern_queue::transport::{Job, JobMessage, JobRecipient, Outcome, Transport as _};

    let (host, port) =
        parse_host_port(server).ok_or_else(|| format!("TERN_SMTP={server:?} is not HOST:PORT"))?;
    let mut relay = RelayHost::new(host.clone(), port);
    relay.implicit_tls = port == 465;
    relay.username = std::env::var("TERN_SENDMAIL_USER").ok().filter(|u| !u.is_empty());
    relay.password = std::env::var("TERN_SENDMAIL_PASSWORD").ok();
    let mut config = tern_delivery::OutboundConfig::new(crate::config::system_hostname());
    // On loopback nobody can be in the middle: a self-signed certificate is fine there.
    let loopback = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || host.eq_ignore_ascii_case("localhost");
    if relay.username.is_some() && !loopback {
        config.tls = TlsPolicy::Require;
    }
    config.tls_ca_file = std::env::var_os("TERN_SENDMAIL_CA_FILE").map(PathBuf::from);
    config.relay_host = Some(relay);
    let ascii = from.is_ascii() && recipients.iter().all(|r| r.is_ascii());
    let job = Job {
        domain: tern_delivery::outbound::RELAY_DESTINATION.to_string(),
        messages: vec![JobMessage {
            id: tern_store::MessageId::generate(),
            sender: from.to_string(),
            data: std::sync::Arc::new(message.to_vec()),
            smtputf8: !ascii,
            eight_bit: !message.is_ascii(),
            envid: None,
            ret: None,
            recipients: recipients
                .iter()
                .enumerate()
                .map(|(i, address)| JobRecipient {
                    entry: i64::try_from(i).unwrap_or(i64::MAX),
                    address: address.clone(),
                    notify: Vec::new(),
                    orcpt: None,
                })
                .collect(),
        }],
        feed: None,
    };
    let results = crate::runtime().map_err(|e| e.to_string())?.block_on(async move {
        let transport = SmtpTransport::new(config).map_err(|e| e.to_string())?;
        Ok::<_, String>(transport.deliver(job).await)
    })?;
    let mut submission = Submission::default();
    for (entry, outcome) in results {
        let rcpt = usize::try_from(entry).ok().and_then(|i| recipients.get(i)).cloned();
        let rcpt = rcpt.unwrap_or_default();
        match outcome {
            Outcome::Delivered { .. } => {}
            Outcome::Permanent(f) => submission.refused.push((rcpt, f.diagnostic)),
            // A queue retries a session-level 5xx (a smarthost refusing our login, say) since
            // its configuration may be fixed meanwhile; the person running sendmail must hear
            // it now, and the message must not wait in the drop to be let in unchecked.
            Outcome::Temporary(f)
                if f.diagnostic.strip_prefix("smtp; ").is_some_and(|r| r.starts_with('5')) =>
            {
                submission.refused.push((rcpt, f.diagnostic));
            }
            Outcome::Temporary(f) => submission.deferred.push((rcpt, f.diagnostic)),
        }
    }
    Ok(submission)
}

/// `-bs`: relays an SMTP conversation between standard input/output and the server, so the
/// server answers every command itself. Without a server, the client is told to try later
/// (`421`) and keeps its message.
fn relay_stdio(server: &str) -> ExitCode {
    let connected = server
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .and_then(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok());
    let Some(stream) = connected else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(
            format!("421 4.3.0 {server}: mail system unavailable, try again later\r\n").as_bytes(),
        );
        let _ = out.flush();
        return ExitCode::from(EX_TEMPFAIL);
    };
    let Ok(mut upstream) = stream.try_clone() else { return ExitCode::from(EX_TEMPFAIL) };
    // Server → stdout on a thread; stdin → server here. The server's close (after QUIT, or a
    // 421) ends the conversation.
    let replies = std::thread::spawn(move || {
        let mut reader = stream;
        let mut out = std::io::stdout();
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut upstream);
    let _ = upstream.shutdown(std::net::Shutdown::Write);
    let _ = replies.join();
    ExitCode::from(EX_OK)
}

/// A dropped message: the envelope and the bytes, as one JSON file.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Dropped {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The message, base64.
    pub message: String,
}

/// Writes the message durably into `dir/new` (through `dir/tmp`, fsync, rename, fsync of the
/// directory, as Maildir does).
fn drop_message(dir: &Path, from: &str, to: &[String], message: &[u8]) -> std::io::Result<PathBuf> {
    use base64::Engine as _;
    let (tmp, new) = (dir.join("tmp"), dir.join("new"));
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(&new)?;
    let name = format!("{}.json", ulid::Ulid::new());
    let dropped = Dropped {
        from: from.to_string(),
        to: to.to_vec(),
        message: base64::engine::general_purpose::STANDARD.encode(message),
    };
    let bytes = serde_json::to_vec(&dropped).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(tmp.join(&name))?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp.join(&name), new.join(&name))?;
    match std::fs::File::open(&new) {
        Ok(dir) => dir.sync_all()?,
        // The packaged drop directory is write-only for other users (mode 1733, as a mail
        // spool's drop is): they cannot open it to sync the rename, which the file system then
        // commits with its next journal flush.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e),
    }
    Ok(new.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn options_parse_as_sendmail_has_them() {
        let o = parse(&args("-t -oi -f bounce@x.test -FAnn -odb a@b.test")).expect("parsed");
        assert!(o.headers_recipients && !o.dot_ends);
        assert_eq!(o.from.as_deref(), Some("bounce@x.test"));
        assert_eq!(o.full_name.as_deref(), Some("Ann"));
        assert_eq!(o.recipients, ["a@b.test"]);
        assert!(parse(&args("-f")).is_err());
        assert!(parse(&args("-X weird")).unwrap_err().contains("-X"));
    }

    #[test]
    fn the_message_gets_its_missing_headers_and_loses_bcc() {
        let options = Options { headers_recipients: true, dot_ends: true, ..Options::default() };
        let input = b"To: Bob <bob@b.test>, carol@c.test\nBcc: secret@d.test\n  ,more@d.test\nSubject: hi\n\nline\n.\nafter the dot\n";
        let (_, rcpts, message) = prepare(&options, input).expect("prepared");
        assert_eq!(rcpts, ["bob@b.test", "carol@c.test", "secret@d.test", "more@d.test"]);
        let text = String::from_utf8(message).expect("utf8");
        assert!(text.starts_with("From: "), "{text}");
        assert!(text.contains("Date: ") && text.contains("Message-ID: <"), "{text}");
        assert!(!text.contains("secret") && !text.contains("more@"), "{text}");
        assert!(text.ends_with("Subject: hi\r\n\r\nline\r\n"), "{text}");
        let keep_dots = Options { dot_ends: false, ..options };
        let (_, _, message) = prepare(&keep_dots, input).expect("prepared");
        assert!(String::from_utf8_lossy(&message).ends_with("line\r\n.\r\nafter the dot\r\n"));
        assert!(prepare(&Options::default(), b"Subject: x\n\nbody\n").is_err(), "no recipient");
    }
}
