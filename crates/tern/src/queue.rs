//! `tern queue`: inspect and manage the outbound queue of a running server.
//!
//! It is a client of the server's HTTP API (`/api/v1/queue`, admin only), so every change goes
//! through the server's single writer and wakes its scheduler at once, and the command works
//! wherever the API is reachable. This module owns the arguments, the HTTP calls and the text
//! it prints; it holds no queue logic and never opens the store.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::config::{Config, DEFAULT_HTTP_LISTEN};

/// How long one request to the server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Widest recipient shown by `list`, in characters.
const MAX_RECIPIENT_CHARS: usize = 40;
/// Widest error text shown by `list`, in characters (`show` prints it whole).
const MAX_ERROR_CHARS: usize = 60;

/// Arguments of `tern queue`.
#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Command,
}

/// Where the server is and how to prove we are its admin.
#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// The server's HTTP API [default: http.listen of --config, else http://127.0.0.1:8025].
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// The admin API key [default: http.api_key of --config].
    #[arg(long, global = true, env = "TERN_API_KEY", hide_env_values = true, value_name = "KEY")]
    api_key: Option<String>,
    /// The server's configuration file, read for its HTTP address and API key.
    #[arg(long, short = 'c', global = true, env = "TERN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// One line per entry (a remote recipient of a message): state, attempts, next attempt,
    /// last error.
    List {
        /// Only entries in this state.
        #[arg(long, value_enum)]
        state: Option<State>,
        /// Most entries shown.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
    },
    /// Every entry of one message, with the full text of the last errors.
    Show {
        /// The message's id (as in "250 queued as ID").
        id: String,
    },
    /// Try queued messages again now (held ones stay held).
    Retry(Targets),
    /// Hold messages: no delivery attempts until they are released.
    Hold(Targets),
    /// Release held messages: they are tried at once.
    Release(Targets),
    /// Remove messages from the queue without delivering them.
    Delete(Targets),
}

/// Which messages a command applies to.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct Targets {
    /// Message ids.
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    /// Every message in the queue.
    #[arg(long)]
    all: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum State {
    Queued,
    Held,
}

/// Runs `tern queue`.
pub fn main(args: QueueArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.server)?;
    let out = match args.command {
        Command::List { state, limit } => {
            let state = match state {
                Some(State::Queued) => "&state=queued",
                Some(State::Held) => "&state=held",
                None => "",
            };
            list_text(&api.get(&format!("/api/v1/queue?limit={limit}{state}"))?, now())
        }
        Command::Show { id } => {
            let id = id.trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!("invalid message id {id:?}");
            }
            show_text(&api.get(&format!("/api/v1/queue/{id}"))?, now())
        }
        Command::Retry(targets) => {
            command(&api, "POST", "/api/v1/queue/retry", targets, "retried")?
        }
        Command::Hold(targets) => command(&api, "POST", "/api/v1/queue/hold", targets, "held")?,
        Command::Release(targets) => {
            command(&api, "POST", "/api/v1/queue/release", targets, "released")?
        }
        Command::Delete(targets) => {
            command(&api, "DELETE", "/api/v1/queue", targets, "deleted from the queue")?
        }
    };
    print!("{out}");
    Ok(())
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// Sends a queue command and says how many messages it applied to.
fn command(
    api: &Api,
    method: &str,
    path: &str,
    targets: Targets,
    done: &str,
) -> anyhow::Result<String> {
    let body = if targets.all { json!({ "All": true }) } else { json!({ "IDs": targets.ids }) };
    let answer = api.send(method, path, &body)?;
    let applied = answer["Messages"]
        .as_u64()
        .ok_or_else(|| anyhow!("unexpected answer from the server: {answer}"))?;
    if targets.all {
        return Ok(match applied {
            0 => "The queue is empty.\n".to_string(),
            n => format!("{} {done}.\n", plural(n, "message", "messages")),
        });
    }
    let named = targets.ids.len() as u64;
    match applied {
        0 if named == 1 => bail!("message {} is not in the queue", targets.ids[0]),
        0 => bail!("none of the {named} messages is in the queue"),
        n if n < named => {
            Ok(format!("{n} of {named} messages {done} (the others are not queued).\n"))
        }
        n => Ok(format!("{} {done}.\n", plural(n, "message", "messages"))),
    }
}

/// The HTTP API of one server.
struct Api {
    agent: ureq::Agent,
    base: String,
    api_key: Option<String>,
}

impl Api {
    /// Resolves the URL and key: flags and environment first, then the configuration file.
    fn new(args: &ServerArgs) -> anyhow::Result<Api> {
        let config = match &args.config {
            Some(path) => Some(Config::load(path)?),
            None => None,
        };
        let base = match (&args.url, &config) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(config)) => listen_url(config.http.listen),
            (None, None) => format!("http://{DEFAULT_HTTP_LISTEN}"),
        };
        let api_key = args
            .api_key
            .clone()
            .or_else(|| config.and_then(|c| c.http.api_key))
            .filter(|key| !key.is_empty());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Ok(Api { agent, base, api_key })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        self.answer(request.call())
    }

    fn send(&self, method: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "DELETE" => self.agent.delete(url).force_send_body(),
            _ => self.agent.post(url),
        };
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        self.answer(request.content_type("application/json").send(body.to_string()))
    }

    /// The JSON of a 2xx answer; otherwise the server's own error message.
    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response =
            result.map_err(|e| anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of {}", self.base))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| anyhow!("{} did not answer with JSON: {text}", self.base));
        }
        let message = json
            .as_ref()
            .and_then(|v| v["Error"].as_str())
            .map_or_else(|| text.trim().to_string(), str::to_string);
        let hint = match status.as_u16() {
            401 | 403 => " (give the admin API key with --api-key or TERN_API_KEY)",
            _ => "",
        };
        bail!("the server refused ({}): {message}{hint}", status.as_u16())
    }
}

/// `http://ADDR` for an HTTP listen address; a wildcard address is reached on loopback.
fn listen_url(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, listen.port()))
}

// ---- text ------------------------------------------------------------------------------------

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// The table of `tern queue list`.
fn list_text(page: &Value, now: SystemTime) -> String {
    let entries = page["Entries"].as_array().map(Vec::as_slice).unwrap_or_default();
    let count = |key: &str| page[key].as_u64().unwrap_or(0);
    if entries.is_empty() {
        return if count("Queued") + count("Held") == 0 {
            "The queue is empty.\n".into()
        } else {
            "No entries in that state.\n".into()
        };
    }
    let mut rows = vec![
        ["MESSAGE", "RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"]
            .map(str::to_string),
    ];
    for entry in entries {
        let held = str_of(entry, "State") == "held";
        rows.push([
            str_of(entry, "MessageID").to_string(),
            truncate(str_of(entry, "Recipient"), MAX_RECIPIENT_CHARS),
            str_of(entry, "State").to_string(),
            entry["Attempts"].as_u64().unwrap_or(0).to_string(),
            if held { "-".into() } else { until(str_of(entry, "NextAttempt"), now) },
            entry["LastError"]
                .as_str()
                .map_or_else(|| "-".into(), |e| truncate(e, MAX_ERROR_CHARS)),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|col| rows.iter().map(|row| row[col].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (col, cell) in row.iter().enumerate() {
            if col + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[col]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let total = count("Total");
    out.push_str(&format!(
        "\n{} queued, {} held, in {}.",
        count("Queued"),
        count("Held"),
        plural(count("Messages"), "message", "messages")
    ));
    if (entries.len() as u64) < total {
        out.push_str(&format!(" Showing {} of {total} entries (see --limit).", entries.len()));
    }
    out.push('\n');
    out
}

/// The text of `tern queue show`.
fn show_text(message: &Value, now: SystemTime) -> String {
    let from = match str_of(message, "From") {
        "" => "<>",
        from => from,
    };
    let received = str_of(message, "Received");
    let mut out = format!(
        "Message   {}\nFrom      {from}\nSubject   {}\nSize      {} bytes\nReceived  {received} ({})\n",
        str_of(message, "ID"),
        str_of(message, "Subject"),
        message["Size"].as_u64().unwrap_or(0),
        ago(received, now),
    );
    for entry in message["Entries"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let state = str_of(entry, "State");
        let next = str_of(entry, "NextAttempt");
        out.push_str(&format!("\n{}\n", str_of(entry, "Recipient")));
        out.push_str(&format!("  State         {state}\n"));
        out.push_str(&format!("  Attempts      {}\n", entry["Attempts"].as_u64().unwrap_or(0)));
        if state != "held" {
            out.push_str(&format!("  Next attempt  {next} ({})\n", until(next, now)));
        }
        if let Some(last) = entry["LastAttempt"].as_str() {
            out.push_str(&format!("  Last attempt  {last} ({})\n", ago(last, now)));
        }
        if let Some(error) = entry["LastError"].as_str() {
            let error = error.trim_end().replace('\n', "\n                ");
            out.push_str(&format!("  Last error    {error}\n"));
        }
        out.push_str(&format!("  Queued        {}\n", str_of(entry, "Created")));
        if entry["DelayWarned"].as_bool() == Some(true) {
            out.push_str("  Delay warning sent to the sender\n");
        }
    }
    out
}

/// `text` on one line, cut to `max` characters with an ellipsis.
fn truncate(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// "in 4m", or "now" when `at` has passed.
fn until(at: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339(at) {
        Ok(at) => match at.duration_since(now) {
            Ok(left) if left.as_secs() > 0 => format!("in {}", short(left)),
            _ => "now".into(),
        },
        Err(_) => at.to_string(),
    }
}

/// "5m ago", or "just now".
fn ago(at: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339(at) {
        Ok(at) => match now.duration_since(at) {
            Ok(age) if age.as_secs() > 0 => format!("{} ago", short(age)),
            _ => "just now".into(),
        },
        Err(_) => at.to_string(),
    }
}

/// A duration to the two largest units: "45s", "4m 10s", "2h 5m", "3d 4h".
fn short(duration: Duration) -> String {
    let s = duration.as_secs();
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn durations_are_short_and_relative() {
        assert_eq!(short(Duration::from_secs(45)), "45s");
        assert_eq!(short(Duration::from_secs(240)), "4m");
        assert_eq!(short(Duration::from_secs(250)), "4m 10s");
        assert_eq!(short(Duration::from_secs(2 * 3600 + 300)), "2h 5m");
        assert_eq!(short(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)), "3d 4h");
        let now = at("2026-11-22T10:00:00Z");
        assert_eq!(until("2026-11-22T10:04:00.000Z", now), "in 4m");
        assert_eq!(until("2026-11-22T09:00:00.000Z", now), "now");
        assert_eq!(ago("2026-11-22T09:59:30.500Z", now), "29s ago");
        assert_eq!(until("garbage", now), "garbage");
    }

    #[test]
    fn the_list_is_a_table_with_truncated_errors() {
        let error = format!("DNS lookup failed:\n  {}", "x".repeat(100));
        let page = json!({"Total": 3, "Queued": 1, "Held": 1, "Messages": 2, "Entries": [
            {"MessageID": "01A", "Recipient": "bob@remote.example", "State": "queued",
             "Attempts": 2, "NextAttempt": "2026-11-22T10:04:00.000Z", "LastError": error},
            {"MessageID": "01B", "Recipient": "carol@remote.example", "State": "held",
             "Attempts": 0, "NextAttempt": "2026-11-22T09:00:00.000Z", "LastError": null},
        ]});
        let text = list_text(&page, at("2026-11-22T10:00:00Z"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("MESSAGE  RECIPIENT"), "{text}");
        assert!(lines[1].contains("bob@remote.example") && lines[1].contains("in 4m"), "{text}");
        assert!(lines[1].contains("DNS lookup failed: xxx") && lines[1].ends_with('…'), "{text}");
        assert!(lines[1].chars().count() < 140, "{text}");
        assert!(lines[2].contains("held") && lines[2].ends_with('-'), "{text}");
        assert!(text.contains("1 queued, 1 held, in 2 messages. Showing 2 of 3 entries"), "{text}");
        let empty = json!({"Total": 0, "Queued": 0, "Held": 0, "Messages": 0, "Entries": []});
        assert_eq!(list_text(&empty, SystemTime::now()), "The queue is empty.\n");
    }

    #[test]
    fn show_prints_every_entry_with_its_whole_error() {
        let message = json!({"ID": "01A", "From": "", "Subject": "Hi", "Size": 120,
            "Received": "2026-11-22T09:00:00.000Z", "Entries": [
            {"Recipient": "bob@remote.example", "State": "queued", "Attempts": 1,
             "Created": "2026-11-22T09:00:00.000Z", "NextAttempt": "2026-11-22T10:04:00.000Z",
             "LastAttempt": "2026-11-22T09:59:00.000Z",
             "LastError": "451 4.7.1 try later\nsecond line", "DelayWarned": true}]});
        let text = show_text(&message, at("2026-11-22T10:00:00Z"));
        assert!(text.contains("From      <>\n"), "{text}");
        assert!(text.contains("Received  2026-11-22T09:00:00.000Z (1h 0m ago)"), "{text}");
        assert!(text.contains("  Next attempt  2026-11-22T10:04:00.000Z (in 4m)\n"), "{text}");
        assert!(text.contains("  Last attempt  2026-11-22T09:59:00.000Z (1m ago)\n"), "{text}");
        assert!(text.contains("451 4.7.1 try later\n                second line\n"), "{text}");
        assert!(text.contains("Delay warning sent"), "{text}");
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        assert_eq!(listen_url("0.0.0.0:8025".parse().expect("addr")), "http://127.0.0.1:8025");
        assert_eq!(listen_url("[::]:80".parse().expect("addr")), "http://[::1]:80");
        assert_eq!(listen_url("192.0.2.1:8025".parse().expect("addr")), "http://192.0.2.1:8025");
    }
}
