//! The configuration file: typed sections with defaults, loaded in three layers (the TOML file,
//! `TERN_…` environment variables over it — [`environment`] — then command-line flags on top).
//! Every error names the file, the line and the key, or the variable and the key.

pub mod environment;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tern_smtp::SmtpConfig;

/// Default data directory, relative to where `tern` runs.
pub const DEFAULT_DATA_DIR: &str = "./tern-data";

/// The configuration file of an installed server (the Debian package puts it there).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tern/tern.toml";
/// Fallback hostname when the system's cannot be read.
pub const FALLBACK_HOSTNAME: &str = "localhost";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name in the SMTP greeting, EHLO reply and `Received:` headers; default: the system's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Directory of the store.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The inbound SMTP server.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// The group-commit writer.
    #[serde(default)]
    pub spool: SpoolSection,
    /// The HTTP API and web UI.
    #[serde(default)]
    pub http: HttpSection,
    /// How long captured mail is kept.
    #[serde(default)]
    pub retention: tern_queue::maintenance::RetentionConfig,
    /// `catcher` (capture everything; the default) or `mta` (serve domains, accounts, relay).
    #[serde(default)]
    pub mode: Mode,
    /// MTA listeners with roles (`[[listener]]`); the catcher uses `smtp.listen`.
    #[serde(default, rename = "listener")]
    pub listeners: Vec<tern_smtp::ListenerConfig>,
    /// Certificate and key for STARTTLS and implicit TLS.
    #[serde(default)]
    pub tls: tern_tls::TlsConfig,
    /// Local domains, trusted networks, sender ownership (MTA mode).
    #[serde(default)]
    pub relay: tern_policy::RelayConfig,
    /// Per-client limits (MTA mode).
    #[serde(default)]
    pub limits: tern_policy::LimitsConfig,
    /// Allow and block lists (MTA mode).
    #[serde(default)]
    pub lists: tern_policy::ListsConfig,
    /// Delivery to other servers: DNS, smarthost, TLS, timeouts, connection limits.
    #[serde(default)]
    pub outbound: tern_delivery::outbound::OutboundSection,
    /// The outbound queue's retry schedule and notices.
    #[serde(default)]
    pub queue: tern_queue::retry::QueueSection,
    /// Checking received mail: SPF, DKIM, DMARC, ARC.
    #[serde(default)]
    pub auth: tern_auth::AuthConfig,
    /// DKIM signing of the mail Tern sends for its users.
    #[serde(default)]
    pub dkim: tern_auth::DkimConfig,
    /// The POP3 server (off unless a listener is configured).
    #[serde(default)]
    pub pop3: tern_pop3::Pop3Config,
    /// Failing on purpose for test suites: Mailpit's triggers and Tern's rules (off).
    #[serde(default)]
    pub chaos: tern_ingest::chaos::ChaosConfig,
    /// Address validation (`/api/v1/validate`, `tern validate`): the SMTP callout.
    #[serde(default)]
    pub validate: tern_delivery::validate::ValidateConfig,
}

/// What Tern is running as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A mail catcher: every message is captured, nothing is delivered.
    #[default]
    Catcher,
    /// A mail server for its domains and users.
    Mta,
}

/// Default HTTP listen address of the catcher.
pub const DEFAULT_HTTP_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 8025));

/// The `[http]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address of the REST API, web UI and /metrics.
    pub listen: std::net::SocketAddr,
    /// Require credentials: an account's login (HTTP Basic; sees its own mailbox) or
    /// `api_key`. Always on in MTA mode when `listen` is not a loopback address.
    pub require_auth: bool,
    /// The admin API key (`Authorization: Bearer KEY`: sees and manages everything).
    pub api_key: Option<String>,
    /// Host names answered besides IP addresses, `localhost` and `hostname` (DNS rebinding
    /// protection: other Hosts get 421); `"*"` answers every Host.
    pub allowed_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) of web pages that may use the API across origins:
    /// their preflights are answered and their writes allowed. Pages of any other origin may
    /// not write, nor open the websocket.
    pub cors_origins: Vec<String>,
    /// Seconds a client has to send a complete request head once the connection is ready for
    /// one; also the longest idle time of a keep-alive connection.
    pub header_timeout_secs: u64,
    /// Seconds a request body has to arrive, counted from its head.
    pub body_timeout_secs: u64,
    /// Most open HTTP connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Seconds connections get to finish at shutdown before they are closed.
    pub shutdown_grace_secs: u64,
    /// Answer Mailpit's link check (`GET /api/v1/message/{ID}/link-check`, the UI's "Check
    /// links"): the server then requests each link of a message itself, to URLs anyone who
    /// sends mail chooses — a request-forgery risk, hence off by default.
    pub link_check: bool,
    /// Seconds one link of the link check may take, redirects included.
    pub link_check_timeout_secs: u64,
    /// Let the link check request loopback, private, link-local and other internal addresses
    /// (otherwise such links answer 451 unrequested, as in Mailpit); for testing links to
    /// local sites only.
    pub link_check_private_addresses: bool,
}

impl Default for HttpSection {
    fn default() -> Self {
        use tern_http::server;
        HttpSection {
            listen: DEFAULT_HTTP_LISTEN,
            require_auth: false,
            api_key: None,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            header_timeout_secs: server::DEFAULT_HEADER_TIMEOUT_SECS,
            body_timeout_secs: server::DEFAULT_BODY_TIMEOUT_SECS,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            shutdown_grace_secs: server::DEFAULT_SHUTDOWN_GRACE_SECS,
            link_check: false,
            link_check_timeout_secs: tern_http::linkcheck::DEFAULT_TIMEOUT_SECS,
            link_check_private_addresses: false,
        }
    }
}

impl HttpSection {
    /// The listener's bounds.
    pub fn limits(&self) -> tern_http::ServerLimits {
        use std::time::Duration;
        tern_http::ServerLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: self.max_connections,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }

    /// The link check's settings, or `None` while it is off.
    pub fn link_check(&self) -> Option<tern_http::linkcheck::LinkCheckConfig> {
        self.link_check.then(|| tern_http::linkcheck::LinkCheckConfig {
            timeout: std::time::Duration::from_secs(self.link_check_timeout_secs),
            private_addresses: self.link_check_private_addresses,
        })
    }

    /// Which Host names and page origins are answered, for a server called `hostname`.
    pub fn browser_policy(
        &self,
        hostname: &str,
    ) -> Result<tern_http::BrowserPolicy, tern_http::PolicyError> {
        tern_http::BrowserPolicy::new(hostname, &self.allowed_hosts, &self.cors_origins)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: None,
            data_dir: default_data_dir(),
            log: LogConfig::default(),
            smtp: SmtpConfig::default(),
            spool: SpoolSection::default(),
            http: HttpSection::default(),
            retention: tern_queue::maintenance::RetentionConfig::default(),
            mode: Mode::default(),
            listeners: Vec::new(),
            tls: tern_tls::TlsConfig::default(),
            relay: tern_policy::RelayConfig::default(),
            limits: tern_policy::LimitsConfig::default(),
            lists: tern_policy::ListsConfig::default(),
            outbound: tern_delivery::outbound::OutboundSection::default(),
            queue: tern_queue::retry::QueueSection::default(),
            auth: tern_auth::AuthConfig::default(),
            dkim: tern_auth::DkimConfig::default(),
            pop3: tern_pop3::Pop3Config::default(),
            chaos: tern_ingest::chaos::ChaosConfig::default(),
            validate: tern_delivery::validate::ValidateConfig::default(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `tern_smtp=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: "info".into() }
    }
}

/// The `[spool]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    /// Messages that may wait for the writer before sessions are held back.
    pub queue_capacity: usize,
    /// Most messages in one commit (one fsync).
    pub max_batch_messages: usize,
    /// Most message bytes in one commit.
    pub max_batch_bytes: usize,
    /// Free space kept on the data directory's filesystem: below it (plus the size a client
    /// declares), `MAIL FROM` gets `452 4.3.1`. 0 turns the check off.
    pub min_free_bytes: u64,
}

impl Default for SpoolSection {
    fn default() -> Self {
        let d = tern_queue::SpoolConfig::default();
        SpoolSection {
            queue_capacity: d.queue_capacity,
            max_batch_messages: d.max_batch_messages,
            max_batch_bytes: d.max_batch_bytes,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// Default free-space reserve (`spool.min_free_bytes`): room for the commits under way, the
/// queue's records and SQLite's checkpoints once new mail is refused.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

impl From<&SpoolSection> for tern_queue::SpoolConfig {
    fn from(s: &SpoolSection) -> Self {
        tern_queue::SpoolConfig {
            queue_capacity: s.queue_capacity,
            max_batch_messages: s.max_batch_messages,
            max_batch_bytes: s.max_batch_bytes,
        }
    }
}

/// A configuration problem, located as precisely as possible.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `TERN_…` environment variable sets a key to something invalid.
    #[error("environment variable {var} ({key}): {message}")]
    Env {
        /// The variable (several, comma-separated, when the error cannot be pinned on one).
        var: String,
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A key is unknown, or its value is invalid.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// Dotted key path, e.g. `smtp.max_recipients`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, path)
    }

    /// The configuration a server runs with: the file at `path` (none: the defaults) with the
    /// `TERN_…` variables among `vars` over it ([`environment`]). Errors in the file name its
    /// line; errors an override causes name the variable.
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, label) = match path {
            Some(path) => (
                std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?,
                path.to_path_buf(),
            ),
            None => (String::new(), PathBuf::from("(defaults)")),
        };
        Config::parse_with_env(&text, &label, vars)
    }

    /// [`Config::load_with_env`] over a file's `text` already read; `label` names it in errors.
    pub fn parse_with_env(
        text: &str,
        label: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = Config::parse(text, label)?;
        let overrides = environment::overrides(vars);
        if overrides.is_empty() {
            return Ok(config);
        }
        let blame = |key: String, message: String| {
            let var = overrides
                .iter()
                .filter(|o| key.starts_with(&o.key()) || o.key().starts_with(&key))
                .map(|o| o.var.clone())
                .collect::<Vec<_>>();
            let var = if var.is_empty() {
                overrides.iter().map(|o| o.var.clone()).collect::<Vec<_>>().join(", ")
            } else {
                var.join(", ")
            };
            ConfigError::Env { var, key, message }
        };
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| blame(String::new(), e.to_string()))?;
        environment::apply(&mut table, &overrides);
        let merged = toml::to_string(&table).map_err(|e| blame(String::new(), e.to_string()))?;
        Config::parse(&merged, label).map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => blame(key, message),
            other => other,
        })
    }

    /// Parses configuration text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |line: usize, key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key,
            message,
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| {
            invalid(
                line_of_offset(text, e.span().map(|s| s.start)),
                "(syntax)".into(),
                e.message().trim().to_string(),
            )
        })?;
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = match inner.span() {
                Some(span) => line_of_offset(text, Some(span.start)),
                None => line_of_key(text, &key),
            };
            invalid(line, key, inner.message().trim().to_string())
        })?;
        config
            .validate()
            .map_err(|(key, message)| invalid(line_of_key(text, key), key.into(), message))?;
        if let Err(e) = config.mta() {
            // The policy's messages name the key (`relay.trusted_networks[1]`); find its line.
            let message = e.to_string();
            let key = message.split(':').next().unwrap_or_default().to_string();
            let bare = key.split('[').next().unwrap_or_default();
            return Err(invalid(
                line_of_key(text, bare),
                key.clone(),
                message[key.len()..].trim_start_matches([':', ' ']).to_string(),
            ));
        }
        if let Err(e) = config.auth.validate() {
            // The message starts with the key (`auth.records."name"`).
            let message = e.to_string();
            let (key, rest) = message.split_once(": ").unwrap_or(("auth", message.as_str()));
            return Err(invalid(line_of_key(text, "auth.records"), key.into(), rest.into()));
        }
        if config.validate.callout_timeout_secs == 0 {
            return Err(invalid(
                line_of_key(text, "validate.callout_timeout_secs"),
                "validate.callout_timeout_secs".into(),
                "must be greater than 0".into(),
            ));
        }
        if let Err((key, message)) = config.chaos.validate() {
            // `chaos.rules[2]` is the third `[[chaos.rules]]` table.
            let line = match key.strip_prefix("chaos.rules[").and_then(|k| k.strip_suffix(']')) {
                Some(index) => index.parse().map_or(0, |i| line_of_table(text, "chaos.rules", i)),
                None => line_of_key(text, &key),
            };
            return Err(invalid(line, key, message));
        }
        if config.mode == Mode::Mta && config.listeners.is_empty() {
            return Err(invalid(
                line_of_key(text, "mode"),
                "listener".into(),
                "mode = \"mta\" needs at least one [[listener]]".into(),
            ));
        }
        Ok(config)
    }

    /// Checks values the types alone cannot.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let s = &self.smtp;
        let checks: [(bool, &'static str, &str); 8] = [
            (s.listen.is_empty(), "smtp.listen", "at least one address is needed"),
            (s.max_message_bytes == 0, "smtp.max_message_bytes", "must be greater than 0"),
            (s.max_recipients == 0, "smtp.max_recipients", "must be greater than 0"),
            (s.max_line_bytes < 512, "smtp.max_line_bytes", "must be at least 512 (RFC 5321)"),
            (s.max_bad_commands == 0, "smtp.max_bad_commands", "must be greater than 0"),
            (s.idle_timeout_secs == 0, "smtp.idle_timeout_secs", "must be greater than 0"),
            (s.session_timeout_secs == 0, "smtp.session_timeout_secs", "must be greater than 0"),
            (s.max_connections == 0, "smtp.max_connections", "must be greater than 0"),
        ];
        if let Some((_, key, message)) = checks.iter().find(|(bad, _, _)| *bad) {
            return Err((key, (*message).to_string()));
        }
        let sp = &self.spool;
        if sp.queue_capacity == 0 || sp.max_batch_messages == 0 || sp.max_batch_bytes == 0 {
            return Err((
                "spool",
                "queue_capacity, max_batch_messages and max_batch_bytes must be greater than 0"
                    .into(),
            ));
        }
        self.validate_http()?;
        self.pop3.validate(self.mode == Mode::Catcher)?;
        let o = &self.outbound;
        let outbound_checks: [(bool, &'static str, &str); 6] = [
            (o.dns_timeout_secs == 0, "outbound.dns_timeout_secs", "must be greater than 0"),
            (o.mx_port == 0, "outbound.mx_port", "must be greater than 0"),
            (o.max_connections == 0, "outbound.max_connections", "must be greater than 0"),
            (o.max_per_destination == 0, "outbound.max_per_destination", "must be greater than 0"),
            (
                o.messages_per_connection == 0,
                "outbound.messages_per_connection",
                "must be greater than 0",
            ),
            (
                o.relay_username.is_some() != o.relay_password.is_some(),
                "outbound.relay_username",
                "relay_username and relay_password go together",
            ),
        ];
        if let Some((_, key, message)) = outbound_checks.iter().find(|(bad, _, _)| *bad) {
            return Err((key, (*message).to_string()));
        }
        if let Some(host) = &o.relay_host
            && tern_delivery::outbound::parse_host_port(host).is_none()
        {
            return Err(("outbound.relay_host", "must be host:port".into()));
        }
        let q = &self.queue;
        if q.retry_first_secs == 0 || q.retry_max_secs < q.retry_first_secs || q.lifetime_secs == 0
        {
            return Err((
                "queue",
                "retry_first_secs and lifetime_secs must be greater than 0, and retry_max_secs at least retry_first_secs".into(),
            ));
        }
        if self.hostname.as_deref().is_some_and(|h| h.is_empty() || h.contains(char::is_whitespace))
        {
            return Err(("hostname", "must be a non-empty name without spaces".into()));
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), (&'static str, String)> {
        let h = &self.http;
        let checks: [(bool, &'static str, &str); 5] = [
            (h.header_timeout_secs == 0, "http.header_timeout_secs", "must be greater than 0"),
            (
                h.link_check_timeout_secs == 0,
                "http.link_check_timeout_secs",
                "must be greater than 0",
            ),
            (h.body_timeout_secs == 0, "http.body_timeout_secs", "must be greater than 0"),
            (h.max_connections == 0, "http.max_connections", "must be greater than 0"),
            (h.shutdown_grace_secs == 0, "http.shutdown_grace_secs", "must be greater than 0"),
        ];
        if let Some((_, key, message)) = checks.iter().find(|(bad, _, _)| *bad) {
            return Err((key, (*message).to_string()));
        }
        match h.browser_policy("localhost") {
            Err(e @ tern_http::PolicyError::Host(_)) => Err(("http.allowed_hosts", e.to_string())),
            Err(e @ tern_http::PolicyError::Origin(_)) => Err(("http.cors_origins", e.to_string())),
            Ok(_) => Ok(()),
        }
    }

    /// The mail server's policy from `[relay]`, `[limits]` and `[lists]`.
    pub fn mta(&self) -> Result<tern_smtp::Mta, tern_policy::ConfigError> {
        Ok(tern_smtp::Mta::new(
            self.relay.clone().try_into()?,
            self.limits.clone().try_into()?,
            self.lists.clone().try_into()?,
        ))
    }

    /// The SMTP listeners: `[[listener]]` entries in MTA mode, `smtp.listen` as capture
    /// listeners in catcher mode.
    pub fn listeners(&self) -> Vec<tern_smtp::ListenerConfig> {
        match self.mode {
            Mode::Mta => self.listeners.clone(),
            Mode::Catcher => self
                .smtp
                .listen
                .iter()
                .map(|&address| tern_smtp::ListenerConfig {
                    address,
                    role: tern_smtp::Role::Capture,
                    allow_plaintext_auth: false,
                })
                .collect(),
        }
    }

    /// Where the DKIM keys are: `dkim.key_dir`, or `DATA_DIR/dkim`.
    pub fn dkim_key_dir(&self) -> PathBuf {
        self.dkim.key_dir.clone().unwrap_or_else(|| self.data_dir.join("dkim"))
    }

    /// Whether received mail is checked: `auth.verify`, by default on in MTA mode only.
    pub fn verifies(&self) -> bool {
        self.auth.verify_or(self.mode == Mode::Mta)
    }

    /// The hostname to announce: configured, else the system's, else `localhost`.
    pub fn resolved_hostname(&self) -> String {
        self.hostname.clone().unwrap_or_else(system_hostname)
    }
}

fn line_of_offset(text: &str, offset: Option<usize>) -> usize {
    match offset {
        Some(offset) => text[..offset.min(text.len())].matches('\n').count() + 1,
        None => 0,
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`), or [`FALLBACK_HOSTNAME`].
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| FALLBACK_HOSTNAME.into())
}

/// Finds the line that sets `key` (`section.name`), for errors found after parsing.
/// The line of the `index`th (from 0) `[[name]]` table, 0 when there is none.
fn line_of_table(text: &str, name: &str, index: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            line.strip_prefix("[[")
                .and_then(|l| l.strip_suffix("]]"))
                .is_some_and(|header| header.trim() == name)
        })
        .nth(index)
        .map_or(0, |(i, _)| i + 1)
}

fn line_of_key(text: &str, key: &str) -> usize {
    let (section, name) = match key.rsplit_once('.') {
        Some((section, name)) => (section, name),
        None => ("", key),
    };
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = header.trim().to_string();
            if current == key {
                return i + 1;
            }
        } else if current == section
            && line.strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='))
        {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_delivery::outbound::TlsPolicy;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("t.toml")).expect_err("must fail").to_string()
    }

    #[test]
    fn the_example_file_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tern.example.toml");
        let config = Config::load(&path).expect("example config loads");
        let defaults = Config::default();
        assert_eq!(config.smtp, defaults.smtp);
        assert_eq!(config.data_dir, defaults.data_dir);
        assert_eq!(config.log.format, defaults.log.format);
        assert_eq!(config.log.level, defaults.log.level);
        assert_eq!(config.spool.max_batch_messages, defaults.spool.max_batch_messages);
        assert_eq!(config.spool.queue_capacity, defaults.spool.queue_capacity);
        assert_eq!(config.spool.max_batch_bytes, defaults.spool.max_batch_bytes);
        assert_eq!(format!("{:?}", config.http), format!("{:?}", defaults.http));
        assert_eq!(config.retention, defaults.retention);
        assert_eq!(format!("{:?}", config.outbound), format!("{:?}", defaults.outbound));
        assert_eq!(format!("{:?}", config.queue), format!("{:?}", defaults.queue));
        assert_eq!(config.auth, defaults.auth);
        assert_eq!(config.dkim, defaults.dkim);
        assert_eq!(config.pop3, defaults.pop3);
        assert_eq!(format!("{:?}", config.chaos), format!("{:?}", defaults.chaos));
        assert_eq!(config.validate, defaults.validate);
    }

    #[test]
    fn chaos_errors_name_the_rule_and_its_line() {
        let text = "[chaos]\nenabled = true\n\n[[chaos.rules]]\nat = \"rcpt\"\nreply = \"451\"\n\n\
                    [[chaos.rules]]\nat = \"mail\"\ndrop = true\n";
        assert_eq!(err(text), "t.toml:8: chaos.rules[1]: drop is for at = \"data\" only");
        assert!(
            err("[chaos]\ntriggers = \"Sender:200:5\"\n")
                .starts_with("t.toml:2: chaos.triggers: Sender: error code must be between")
        );
        assert!(err("[[chaos.rules]]\nat = \"helo\"\n").starts_with("t.toml:2: chaos.rules[0].at"));
        let config = Config::parse(
            "[chaos]\nenabled = true\nseed = 3\n[[chaos.rules]]\nat = \"data\"\nheader = \"X-Case\"\ndrop = true\n",
            Path::new("t.toml"),
        )
        .expect("a good rule");
        assert_eq!(config.chaos.rules.len(), 1);
    }

    /// Every section of the example file can be set from the environment, and only those.
    #[test]
    fn environment_sections_are_the_files_sections() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tern.example.toml");
        let table: toml::Table =
            std::fs::read_to_string(path).expect("example").parse().expect("example parses");
        let mut sections: Vec<&str> = table
            .iter()
            .filter(|(_, value)| value.is_table())
            .map(|(name, _)| name.as_str())
            .collect();
        let mut known = environment::SECTIONS.to_vec();
        sections.sort_unstable();
        known.sort_unstable();
        assert_eq!(sections, known);
    }

    #[test]
    fn environment_variables_override_the_file_and_name_themselves_in_errors() {
        let dir = std::env::temp_dir().join(format!("tern-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tern.toml");
        std::fs::write(&path, "[smtp]\nmax_recipients = 5\nidle_timeout_secs = 7\n")
            .expect("write");
        let vars = |list: &[(&str, &str)]| {
            list.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect::<Vec<_>>()
        };
        let config = Config::load_with_env(
            Some(&path),
            vars(&[("TERN_SMTP_MAX_RECIPIENTS", "50"), ("TERN_HOSTNAME", "mx.env.test")]),
        )
        .expect("loads");
        assert_eq!(config.smtp.max_recipients, 50);
        assert_eq!(config.smtp.idle_timeout_secs, 7);
        assert_eq!(config.hostname.as_deref(), Some("mx.env.test"));
        let err = Config::load_with_env(Some(&path), vars(&[("TERN_SMTP_MAX_RECIPIENTS", "many")]))
            .expect_err("a string for a number")
            .to_string();
        assert!(
            err.starts_with(
                "environment variable TERN_SMTP_MAX_RECIPIENTS (smtp.max_recipients): "
            ),
            "{err}"
        );
        let err = Config::load_with_env(None, vars(&[("TERN_SMTP_MAX_RECIPIENT", "5")]))
            .expect_err("a typo")
            .to_string();
        assert!(err.contains("TERN_SMTP_MAX_RECIPIENT"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The README's configuration table names every key of the example file, so the two
    /// cannot drift apart silently.
    #[test]
    fn the_readme_documents_every_key() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let example = std::fs::read_to_string(root.join("tern.example.toml")).expect("example");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
        let table: toml::Table = example.parse().expect("example parses");
        let mut keys = vec!["hostname".to_string()];
        for (name, value) in &table {
            match value {
                toml::Value::Table(section) => {
                    keys.extend(section.keys().map(|k| format!("{name}.{k}")))
                }
                _ => keys.push(name.clone()),
            }
        }
        for key in keys {
            assert!(
                readme.contains(&format!("| `{key}` |")),
                "README's configuration table lacks `{key}`"
            );
        }
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let config = Config::parse("", Path::new("t.toml")).expect("parses");
        assert_eq!(config.smtp, SmtpConfig::default());
    }

    #[test]
    fn errors_name_line_and_key() {
        assert_eq!(
            err("[smtp]\nmax_recipients = 5\nmax_recipient = 7\n")
                .split(": ")
                .take(2)
                .collect::<Vec<_>>(),
            ["t.toml:3", "smtp.max_recipient"]
        );
        assert!(
            err("[smtp]\n\nmax_recipients = \"many\"\n")
                .starts_with("t.toml:3: smtp.max_recipients: ")
        );
        assert!(
            err("[smtp]\nmax_line_bytes = 100\n")
                .starts_with("t.toml:2: smtp.max_line_bytes: must be at least 512")
        );
        assert!(err("[smtp]\nlisten = [\"nowhere\"]\n").starts_with("t.toml:2: smtp.listen"));
        assert!(err("bogus = 1\n").starts_with("t.toml:1: bogus"));
        assert!(err("[log]\nformat = \"xml\"\n").starts_with("t.toml:2: log.format"));
        assert!(err("[smtp\n").starts_with("t.toml:1: (syntax)"));
    }

    #[test]
    fn pop3_errors_name_their_keys() {
        let e = err("[pop3]\n\nidle_timeout_secs = 60\n");
        assert!(e.starts_with("t.toml:3: pop3.idle_timeout_secs: must be at least 600"), "{e}");
        let e = err("[pop3]\nlisten = [\"127.0.0.1:1110\"]\n");
        assert!(e.contains(": pop3.catcher_login: the catcher's POP3 needs a login"), "{e}");
        let e = err("[pop3]\nlisten = [\"0.0.0.0:110\"]\nallow_plaintext_auth = true\n");
        assert!(e.starts_with("t.toml:3: pop3.allow_plaintext_auth: is only allowed"), "{e}");
        let ok = Config::parse(
            "[pop3]\nlisten_tls = [\"127.0.0.1:1995\"]\ncatcher_login = \"dev\"\ncatcher_password = \"pw\"\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        assert!(ok.pop3.enabled());
    }

    #[test]
    fn http_errors_name_their_keys() {
        let e = err("[http]\nallowed_hosts = [\"http://x.test\"]\n");
        assert!(
            e.starts_with("t.toml:2: http.allowed_hosts: \"http://x.test\" is not a host"),
            "{e}"
        );
        let e = err("[http]\ncors_origins = [\"*\"]\n");
        assert!(e.starts_with("t.toml:2: http.cors_origins: \"*\" is not an origin"), "{e}");
        let e = err("[http]\nmax_connections = 0\n");
        assert!(e.starts_with("t.toml:2: http.max_connections: must be greater than 0"), "{e}");
        let e = err("[http]\n\nheader_timeout_secs = 0\n");
        assert!(e.starts_with("t.toml:3: http.header_timeout_secs: "), "{e}");
        let ok = Config::parse(
            "[http]\nallowed_hosts = [\"*\"]\ncors_origins = [\"http://localhost:3000\"]\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        assert!(ok.http.browser_policy("tern.test").is_ok());
    }

    #[test]
    fn outbound_and_queue_errors_name_their_keys() {
        let e = err("[outbound]\nmx_port = 25\ntls = \"maybe\"\n");
        assert!(e.starts_with("t.toml:3: outbound.tls: unknown TLS policy \"maybe\""), "{e}");
        // Parsed with the file: the key names the domain whose policy is wrong.
        let e = err("[outbound]\ntls_domains = { \"a.test\" = \"strict\" }\n");
        assert!(
            e.starts_with("t.toml:2: outbound.tls_domains.a.test: unknown TLS policy \"strict\""),
            "{e}"
        );
        let ok =
            Config::parse("[outbound]\ntls = \"Require\"\n", Path::new("t.toml")).expect("valid");
        assert_eq!(ok.outbound.client("mx.test").tls, TlsPolicy::Require);
        let e = err("[outbound]\nrelay_host = \"smtp.example\"\n");
        assert!(e.starts_with("t.toml:2: outbound.relay_host: must be host:port"), "{e}");
        let e = err("[outbound]\nrelay_username = \"u\"\n");
        assert!(e.starts_with("t.toml:2: outbound.relay_username: "), "{e}");
        let e = err("[outbound]\ndns_servers = [\"127.0.0.1\"]\n");
        assert!(e.starts_with("t.toml:2: outbound.dns_servers"), "{e}");
        let e = err("[queue]\nretry_first_secs = 0\n");
        assert!(e.starts_with("t.toml:1: queue: "), "{e}");
        let ok = Config::parse(
            "[outbound]\nrelay_host = \"[::1]:587\"\nrelay_username = \"u\"\nrelay_password = \"p\"\n",
            Path::new("t.toml"),
        )
        .expect("valid");
        let relay = ok.outbound.client("mx.test").relay_host.expect("relay");
        assert_eq!((relay.host.as_str(), relay.port), ("::1", 587));
    }
}
