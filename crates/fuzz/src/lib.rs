//! Tern's fuzz targets, one function each over arbitrary bytes: everything a peer controls,
//! from the SMTP command line to a captured message's views. A target must return without
//! panicking, whatever the bytes; its results are dropped.
//!
//! `fuzz/` (a cargo-fuzz project outside the workspace) wraps each function in libFuzzer;
//! `tests/corpus.rs` replays the committed corpora (`fuzz/corpus/TARGET/`) and every input that
//! once crashed a target (`fuzz/regressions/TARGET/`) through them on every test run, so a fixed
//! crash stays fixed without a fuzzer installed.

use tern_protocol::client_reply::ReplyParser;
use tern_protocol::{DataDecoder, DataProgress, sasl};

/// One fuzz target: bytes in, nothing out, never a panic.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/NAME.rs` and the corpus folders call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_command", smtp_command),
    ("smtp_data", smtp_data),
    ("sasl", sasl),
    ("client_reply", client_reply),
    ("pop3_command", pop3_command),
    ("search_query", search_query),
    ("message_summary", message_summary),
    ("message_views", message_views),
    ("send_request", send_request),
    ("mta_sts_policy", mta_sts_policy),
    ("config_file", config_file),
    ("chaos_message", chaos_message),
    ("address", address),
];

/// SMTP command lines (one per input line), and the reply a refused one gets.
pub fn smtp_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match tern_protocol::parse_command(line) {
            Ok(command) => drop(format!("{command:?}")),
            Err(e) => drop(e.reply()),
        }
    }
}

/// The DATA decoder fed in pieces of the sizes the input chooses: the first byte sets the size
/// limit (×64 bytes), each following chunk starts with its own length byte.
pub fn smtp_data(data: &[u8]) {
    let Some((&limit, mut rest)) = data.split_first() else { return };
    let mut decoder = DataDecoder::new(usize::from(limit).saturating_mul(64));
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, after) = tail.split_at(usize::from(len).min(tail.len()));
        if let DataProgress::Done(end) = decoder.feed(chunk) {
            assert!(end <= chunk.len(), "the end of data lies inside the chunk fed");
            break;
        }
        rest = after;
    }
    let _ = decoder.decoded_len();
    let _ = decoder.finish();
}

/// SASL responses: base64 lines decoded as PLAIN, LOGIN and CRAM-MD5 would.
pub fn sasl(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Ok(decoded) = sasl::decode_response(line) {
            let _ = sasl::decode_plain(&decoded);
            let _ = sasl::decode_login_field(&decoded);
            if let Ok((_, digest)) = sasl::decode_cram(&decoded) {
                let _ = sasl::cram_verify(b"secret", "<1.2@tern.test>", &digest);
            }
        }
        let _ = sasl::decode_plain(line.as_bytes());
    }
}

/// A server's replies as the outbound client reads them, line by line.
pub fn client_reply(data: &[u8]) {
    let mut parser = ReplyParser::default();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match parser.push_line(line) {
            Ok(Some(reply)) => drop((reply.to_string(), reply.class(), reply.text())),
            Ok(None) => {}
            Err(_) => parser = ReplyParser::default(),
        }
    }
}

/// POP3 command lines.
pub fn pop3_command(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        drop(format!("{:?}", tern_pop3::command::parse(line)));
    }
}

/// The search box's query language.
pub fn search_query(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        drop(format!("{:?}", tern_store::SearchQuery::parse(text)));
    }
}

/// What the store extracts from each accepted message: the summary and the search text.
pub fn message_summary(data: &[u8]) {
    let _ = tern_store::Summary::extract_with_text(data);
}

/// A captured message as the API and the UI read it.
pub fn message_views(data: &[u8]) {
    tern_http::fuzzing::message_views(data);
}

/// The JSON body of `POST /api/v1/send`.
pub fn send_request(data: &[u8]) {
    tern_http::fuzzing::send_request(data);
}

/// A message as chaos reads it at end of data (with chaos on): its `X-Tern-Chaos` header and
/// rules with header, sender and recipient conditions; each input line also as a rule's reply.
pub fn chaos_message(data: &[u8]) {
    use std::sync::OnceLock;
    use tern_ingest::chaos::{Chaos, ChaosConfig, Rule, Stage};
    static CHAOS: OnceLock<Chaos> = OnceLock::new();
    let chaos = CHAOS.get_or_init(|| {
        let rule = |header: &str| Rule {
            name: String::new(),
            at: Stage::Data,
            sender: Some("*@*.example".into()),
            recipient: Some("?*@*".into()),
            header: Some(header.into()),
            nth: None,
            rate_per_minute: Some(1000),
            probability: Some(50),
            reply: Some("451 4.3.0 chaos".into()),
            delay_ms: None,
            disconnect: false,
            drop: false,
        };
        let config = ChaosConfig {
            enabled: true,
            seed: Some(1),
            triggers: String::new(),
            rules: vec![rule("X-Case: *a*b*"), rule("Subject")],
        };
        Chaos::new(&config).unwrap_or_else(|e| panic!("the fuzz rules are valid: {e}"))
    });
    let _ = chaos.at_data("a@b.example", &["x@y"], data);
    for line in String::from_utf8_lossy(data).lines() {
        let _ = tern_ingest::chaos::parse_reply(line, "text");
    }
}

/// An address as `/api/v1/validate` checks it before any lookup: syntax, role, disposable.
pub fn address(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(mailbox) = tern_delivery::validate::parse_mailbox(&text) {
        let _ = tern_delivery::validate::role(&mailbox.local);
        let _ = tern_delivery::validate::disposable(&mailbox.domain);
    }
}

/// An MTA-STS policy file, as fetched from a domain's policy host.
pub fn mta_sts_policy(data: &[u8]) {
    if let Ok(policy) =
        tern_delivery::outbound::mta_sts::Policy::parse(&String::from_utf8_lossy(data))
    {
        let _ = policy.matches("mx.example.com");
    }
}

/// A configuration file as `tern serve` loads it: the text up to the first NUL byte is the
/// file, each line after it a `TERN_SECTION_KEY=value` override from the environment. Errors
/// must name a line within the file (or the variable); a loaded configuration must yield its
/// listeners and HTTP settings.
pub fn config_file(data: &[u8]) {
    let (file, vars) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(file);
    let vars: Vec<(String, String)> = String::from_utf8_lossy(vars)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let path = std::path::Path::new("fuzz.toml");
    let parsed = tern::config::Config::parse_with_env(&text, path, vars);
    match parsed {
        Ok(config) => {
            let _ = config.listeners();
            let _ = config.http.limits();
            let _ = config.http.link_check();
            let _ = config.dkim_key_dir();
        }
        Err(tern::config::ConfigError::Invalid { line, .. }) => {
            assert!(line <= text.lines().count() + 1, "error line {line} is past the file's end")
        }
        Err(e) => drop(e.to_string()),
    }
}
