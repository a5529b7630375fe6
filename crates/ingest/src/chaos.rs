//! Chaos for test suites: the SMTP server failing on purpose, when a test says so.
//!
//! Off unless `[chaos] enabled = true` (or `tern serve --enable-chaos`). Three sources:
//! - **Mailpit's triggers** (`/api/v1/chaos`, `chaos.triggers = "Sender:451:5,…"`): at `MAIL
//!   FROM`, `RCPT TO` or `AUTH`, a reply code with a probability in percent. The draws come
//!   from a generator seeded by `chaos.seed` when it is set, so a run's failures repeat in the
//!   next run; otherwise from a random seed, as in Mailpit.
//! - **Rules** (`/api/v1/chaos/rules`, `[[chaos.rules]]`), deterministic: matched on the sender,
//!   the recipient, a header, the nth match or a rate per sender; acting with a reply, a delay,
//!   a disconnect or a silent drop. Every rule counts every event it matches; the first rule
//!   that fires decides.
//! - **The message itself**: an `X-Tern-Chaos:` header asks for an action at end of data
//!   (`451 4.3.0 text`, `drop`, `disconnect`, `delay=1500ms`, joined by `;`).
//!
//! This module decides; the SMTP session carries the act out (only it can hang up). Chaos
//! applies to SMTP: the HTTP send API is not subject to it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tern_protocol::Reply;
use tern_protocol::reply::Status;

/// The header a message names its own chaos with.
pub const HEADER: &str = "X-Tern-Chaos";

/// Longest delay a rule or header may ask for: a test waiting longer is broken anyway, and
/// the session must not be held forever.
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Senders a rate rule remembers at once: when full, windows idle for a minute are dropped,
/// and if none is, all are forgotten (chaos is for tests, not a defence).
const MAX_RATE_SENDERS: usize = 10_000;

/// Longest text of a rule's reply (a reply line stays well under RFC 5321's 512 octets).
const MAX_REPLY_TEXT: usize = 400;

/// Header block a rule or the chaos header is looked for in: the first 256 KiB.
const MAX_HEAD: usize = 256 * 1024;

/// `text` cut to `max` characters with anything but printable ASCII as `?`, to echo safely.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
        .collect()
}

/// What a session does when chaos fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    /// Answer with this reply instead of the normal one (a `421` also closes the session).
    Reply(Reply),
    /// Close the connection without a reply.
    Disconnect,
    /// Answer as if the message were stored, and store nothing (end of data only).
    Drop,
    /// Go on as normal (after the delay).
    Pass,
}

/// A decision: wait `delay`, then do `act`; `source` names the trigger, rule or header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How long to wait before acting.
    pub delay: Duration,
    /// What to do.
    pub act: Act,
    /// What fired, for logs.
    pub source: String,
}

/// Where in the session an event happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// `MAIL FROM`.
    Mail,
    /// Each `RCPT TO`.
    Rcpt,
    /// The message: at end of data; a disconnect without a header condition cuts the
    /// connection right after the `354`, while the client sends.
    Data,
    /// `AUTH`, before the exchange.
    Auth,
}

/// One of Mailpit's triggers, as its JSON spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Trigger {
    /// The reply code, 400–599 (0 in a request: the default).
    pub error_code: i64,
    /// Percent of events that fail, 0–100.
    pub probability: i64,
}

/// Mailpit's three triggers (`GET/PUT /api/v1/chaos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Triggers {
    /// At `MAIL FROM`.
    pub sender: Trigger,
    /// At each `RCPT TO`.
    pub recipient: Trigger,
    /// At `AUTH`.
    pub authentication: Trigger,
}

impl Triggers {
    /// Mailpit's rules for a request: a missing code is the default (451, 451, 535), a
    /// missing trigger is off; codes must be 400–599, probabilities 0–100.
    pub fn normalized(mut self) -> Result<Triggers, String> {
        for (trigger, default, name) in [
            (&mut self.sender, 451, "Sender"),
            (&mut self.recipient, 451, "Recipient"),
            (&mut self.authentication, 535, "Authentication"),
        ] {
            if trigger.error_code == 0 {
                trigger.error_code = default;
            }
            if !(400..=599).contains(&trigger.error_code) {
                return Err(format!("{name}: error code must be between 400 and 599"));
            }
            if !(0..=100).contains(&trigger.probability) {
                return Err(format!("{name}: probability must be between 0 and 100"));
            }
        }
        Ok(self)
    }

    /// Mailpit's `--chaos-triggers` form: `Sender:451:5,Recipient:550:10,Authentication:535:1`
    /// (names case-insensitive; `Recipients` and `Auth` too). Unnamed triggers stay off.
    pub fn parse(text: &str) -> Result<Triggers, String> {
        let mut triggers = Triggers::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fields: Vec<&str> = part.split(':').collect();
            let [name, code, probability] = fields[..] else {
                return Err(format!("{part:?}: expected NAME:CODE:PERCENT"));
            };
            let number = |field: &str, what: &str| {
                field.trim().parse::<i64>().map_err(|_| format!("{part:?}: {what} is not a number"))
            };
            let trigger = Trigger {
                error_code: number(code, "the code")?,
                probability: number(probability, "the probability")?,
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "sender" => triggers.sender = trigger,
                "recipient" | "recipients" => triggers.recipient = trigger,
                "authentication" | "auth" => triggers.authentication = trigger,
                other => {
                    return Err(format!(
                        "unknown trigger {other:?} (Sender, Recipient or Authentication)"
                    ));
                }
            }
        }
        triggers.normalized()
    }
}

/// A rule as written in the configuration and in the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in logs and in the API (default: `rule N`).
    #[serde(default)]
    pub name: String,
    /// The event the rule looks at.
    pub at: Stage,
    /// Pattern the sender must match (`*` any run, `?` one character, case-insensitive;
    /// `""` is the null sender).
    #[serde(default)]
    pub sender: Option<String>,
    /// Pattern the recipient must match (at `rcpt`), or one of the recipients (at `data`).
    #[serde(default)]
    pub recipient: Option<String>,
    /// `Name` (the field is present) or `Name: pattern` (its value matches); `data` only.
    #[serde(default)]
    pub header: Option<String>,
    /// Fire only on the nth event that matches (1 = the first), once.
    #[serde(default)]
    pub nth: Option<u64>,
    /// Let this many matching events per sender through in any 60 seconds, fire on the rest.
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
    /// Percent of the events that pass the other conditions that fire (default 100), drawn
    /// from the seeded generator.
    #[serde(default)]
    pub probability: Option<u8>,
    /// The reply, `CODE [X.Y.Z] [text]` with a 4xx or 5xx code.
    #[serde(default)]
    pub reply: Option<String>,
    /// Wait this long before answering (alone: a slow server that then goes on as normal).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Close the connection without a reply.
    #[serde(default)]
    pub disconnect: bool,
    /// Answer `250` at end of data and store nothing.
    #[serde(default)]
    pub drop: bool,
}

/// A rule with how often it matched and fired (`GET /api/v1/chaos/rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
    /// Events it matched.
    pub matched: u64,
    /// Times it fired.
    pub fired: u64,
}

/// The `[chaos]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChaosConfig {
    /// Chaos at all (the API answers 400 without it, as Mailpit's does).
    pub enabled: bool,
    /// Seed of the probability draws: the same seed gives the same failures in each run.
    pub seed: Option<u64>,
    /// Mailpit's triggers at start, in its `--chaos-triggers` form.
    pub triggers: String,
    /// Rules at start.
    pub rules: Vec<Rule>,
}

impl ChaosConfig {
    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        Triggers::parse(&self.triggers).map_err(|e| ("chaos.triggers".to_string(), e))?;
        for (i, rule) in self.rules.iter().enumerate() {
            Armed::new(rule.clone(), i).map_err(|e| (format!("chaos.rules[{i}]"), e))?;
        }
        Ok(())
    }
}

/// The act a rule or header asks for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    delay: Duration,
    act: Act,
}

/// A reply as a rule writes it: `CODE [X.Y.Z] [text]`, 4xx or 5xx; a missing status is
/// `X.0.0` of the code's class, a missing text `default_text`.
pub fn parse_reply(text: &str, default_text: &str) -> Result<Reply, String> {
    let text = text.trim();
    let (code, rest) = text.split_at(text.find(' ').unwrap_or(text.len()));
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| (400..=599).contains(c))
        .ok_or_else(|| format!("reply {text:?}: must start with a code from 400 to 599"))?;
    let class = (code / 100) as u8;
    let rest = rest.trim_start();
    let looks_like_status = |word: &str| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let (status, rest) = match rest.split_once(' ').unwrap_or((rest, "")) {
        (first, tail) if looks_like_status(first) => {
            let parts: Vec<u8> = first.split('.').filter_map(|p| p.parse().ok()).collect();
            match parts[..] {
                [c, s, d] if c == class && first.split('.').count() == 3 => (Status(c, s, d), tail),
                _ => {
                    return Err(format!(
                        "reply {text:?}: enhanced status {first:?} must be {class}.X.Y"
                    ));
                }
            }
        }
        _ => (Status(class, 0, 0), rest),
    };
    if rest.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(format!("reply {:?}: the text must be printable ASCII", printable(text, 80)));
    }
    if rest.len() > MAX_REPLY_TEXT {
        return Err(format!("reply text longer than {MAX_REPLY_TEXT} characters"));
    }
    let rest = rest.trim();
    Ok(Reply::new(code, status, if rest.is_empty() { default_text } else { rest }.to_string()))
}

/// A delay as `1500`, `1500ms` or `2s`, at most [`MAX_DELAY`].
fn parse_delay(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let delay = if let Some(ms) = text.strip_suffix("ms") {
        ms.trim().parse::<u64>().ok().map(Duration::from_millis)
    } else if let Some(s) = text.strip_suffix('s') {
        s.trim().parse::<u64>().ok().map(Duration::from_secs)
    } else {
        text.parse::<u64>().ok().map(Duration::from_millis)
    };
    let delay = delay.ok_or_else(|| format!("delay {text:?}: expected e.g. 1500ms or 2s"))?;
    if delay > MAX_DELAY {
        return Err(format!("delay {text:?}: at most {} s", MAX_DELAY.as_secs()));
    }
    Ok(delay)
}

/// The `X-Tern-Chaos` value: parts joined by `;`, each `delay=D`, `drop`, `disconnect` or
/// a reply.
fn parse_directive(value: &str) -> Result<Plan, String> {
    let mut plan = Plan { delay: Duration::ZERO, act: Act::Pass };
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let lower = part.to_ascii_lowercase();
        let act = if let Some(delay) = lower.strip_prefix("delay") {
            plan.delay = parse_delay(delay.trim_start_matches([' ', '=']))?;
            continue;
        } else if lower == "drop" {
            Act::Drop
        } else if lower == "disconnect" {
            Act::Disconnect
        } else {
            Act::Reply(parse_reply(part, "Chaos requested by the message")?)
        };
        if plan.act != Act::Pass {
            return Err("more than one action".into());
        }
        plan.act = act;
    }
    Ok(plan)
}

/// Case-insensitive glob: `*` any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    // The classic two-pointer match with one backtrack point: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The values of header `name` in a raw message (unfolded, trimmed).
fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let raw = &raw[..raw.len().min(MAX_HEAD)];
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut values = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = current.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        values.extend(current.take());
        if let Some((field, value)) = line.split_once(':')
            && field.trim().eq_ignore_ascii_case(name)
        {
            current = Some(value.trim().to_string());
        }
    }
    values.extend(current);
    values.into_iter().map(|v| v.trim().to_string()).collect()
}

/// A rule ready to run, with its counters.
#[derive(Debug)]
struct Armed {
    rule: Rule,
    name: String,
    plan: Plan,
    header: Option<(String, Option<String>)>,
    matched: u64,
    fired: u64,
    /// Per sender (lowercased), the times of the events let through in the last minute.
    windows: HashMap<String, VecDeque<Instant>>,
}

impl Armed {
    fn new(rule: Rule, index: usize) -> Result<Armed, String> {
        let name =
            if rule.name.is_empty() { format!("rule {}", index + 1) } else { rule.name.clone() };
        let delay = match rule.delay_ms {
            Some(ms) => parse_delay(&format!("{ms}ms"))?,
            None => Duration::ZERO,
        };
        let acts = usize::from(rule.reply.is_some())
            + usize::from(rule.disconnect)
            + usize::from(rule.drop);
        if acts > 1 {
            return Err("give one of reply, disconnect and drop".into());
        }
        let act = match (&rule.reply, rule.disconnect, rule.drop) {
            (Some(reply), ..) => Act::Reply(parse_reply(reply, &format!("Chaos {name}"))?),
            (None, true, _) => Act::Disconnect,
            (None, _, true) => Act::Drop,
            (None, false, false) if rule.rate_per_minute.is_some() => Act::Reply(Reply::new(
                451,
                Status(4, 7, 0),
                format!("Chaos {name}: too many messages from this sender, try later"),
            )),
            (None, false, false) if !delay.is_zero() => Act::Pass,
            _ => return Err("nothing to do: give reply, delay_ms, disconnect or drop".into()),
        };
        if rule.drop && rule.at != Stage::Data {
            return Err("drop is for at = \"data\" only".into());
        }
        if rule.header.is_some() && rule.at != Stage::Data {
            return Err("header conditions are for at = \"data\" only".into());
        }
        if rule.recipient.is_some() && !matches!(rule.at, Stage::Rcpt | Stage::Data) {
            return Err("recipient conditions are for at = \"rcpt\" or \"data\"".into());
        }
        if rule.at == Stage::Auth && (rule.sender.is_some() || rule.rate_per_minute.is_some()) {
            return Err("sender and rate_per_minute need a sender: not at = \"auth\"".into());
        }
        if rule.nth == Some(0) {
            return Err("nth counts from 1".into());
        }
        if rule.rate_per_minute == Some(0) {
            return Err("rate_per_minute must be at least 1".into());
        }
        if rule.probability.is_some_and(|p| p > 100) {
            return Err("probability must be between 0 and 100".into());
        }
        let header = match rule.header.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err("header: give a field name".into()),
            Some(spec) => match spec.split_once(':') {
                Some((field, pattern)) => {
                    Some((field.trim().to_string(), Some(pattern.trim().to_string())))
                }
                None => Some((spec.to_string(), None)),
            },
        };
        Ok(Armed {
            name,
            plan: Plan { delay, act },
            header,
            matched: 0,
            fired: 0,
            windows: HashMap::new(),
            rule,
        })
    }

    /// Cuts the connection while the client sends: a data disconnect that needs no header.
    fn cuts_mid_data(&self) -> bool {
        self.rule.at == Stage::Data && self.plan.act == Act::Disconnect && self.header.is_none()
    }

    fn matches(&self, event: &Event<'_>) -> bool {
        let stage = match event {
            Event::Mail { .. } => Stage::Mail,
            Event::Rcpt { .. } => Stage::Rcpt,
            Event::DataStart { .. } | Event::Data { .. } => Stage::Data,
            Event::Auth => Stage::Auth,
        };
        if stage != self.rule.at {
            return false;
        }
        // A data rule runs at one of the two data events, never both.
        match event {
            Event::DataStart { .. } if !self.cuts_mid_data() => return false,
            Event::Data { .. } if self.cuts_mid_data() => return false,
            _ => {}
        }
        if let Some(pattern) = &self.rule.sender {
            let Some(sender) = event.sender() else { return false };
            if !glob(pattern, sender) {
                return false;
            }
        }
        if let Some(pattern) = &self.rule.recipient {
            let found = match event {
                Event::Rcpt { rcpt, .. } => glob(pattern, rcpt),
                Event::DataStart { rcpts, .. } | Event::Data { rcpts, .. } => {
                    rcpts.iter().any(|r| glob(pattern, r))
                }
                _ => false,
            };
            if !found {
                return false;
            }
        }
        if let Some((field, pattern)) = &self.header {
            let Event::Data { raw, .. } = event else { return false };
            let values = header_values(raw, field);
            let found = match pattern {
                None => !values.is_empty(),
                Some(pattern) => values.iter().any(|v| glob(pattern, v)),
            };
            if !found {
                return false;
            }
        }
        true
    }

    /// Counts a matching event and says whether the rule fires on it.
    fn fires(&mut self, event: &Event<'_>, now: Instant, rng: &mut StdRng) -> bool {
        self.matched += 1;
        if self.rule.nth.is_some_and(|nth| nth != self.matched) {
            return false;
        }
        if let Some(limit) = self.rule.rate_per_minute {
            let sender = event.sender().unwrap_or_default().to_lowercase();
            if self.windows.len() >= MAX_RATE_SENDERS && !self.windows.contains_key(&sender) {
                self.windows.retain(|_, w| w.back().is_some_and(|t| now - *t < MINUTE));
                if self.windows.len() >= MAX_RATE_SENDERS {
                    self.windows.clear();
                }
            }
            let window = self.windows.entry(sender).or_default();
            while window.front().is_some_and(|t| now - *t >= MINUTE) {
                window.pop_front();
            }
            if window.len() < limit as usize {
                window.push_back(now);
                return false;
            }
        }
        let probability = self.rule.probability.unwrap_or(100);
        if probability < 100 && rng.random_range(0..100u8) >= probability {
            return false;
        }
        self.fired += 1;
        true
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// What happened, as chaos sees it.
enum Event<'a> {
    Mail { from: &'a str },
    Rcpt { from: &'a str, rcpt: &'a str },
    DataStart { from: &'a str, rcpts: &'a [&'a str] },
    Data { from: &'a str, rcpts: &'a [&'a str], raw: &'a [u8] },
    Auth,
}

impl Event<'_> {
    fn sender(&self) -> Option<&str> {
        match self {
            Event::Mail { from }
            | Event::Rcpt { from, .. }
            | Event::DataStart { from, .. }
            | Event::Data { from, .. } => Some(from),
            Event::Auth => None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    triggers: Triggers,
    rules: Vec<Armed>,
    rng: StdRng,
}

/// The chaos engine, shared by every session and the API.
#[derive(Debug)]
pub struct Chaos {
    inner: Mutex<Inner>,
}

impl Chaos {
    /// The engine a checked [`ChaosConfig`] describes.
    pub fn new(config: &ChaosConfig) -> Result<Chaos, String> {
        let triggers = Triggers::parse(&config.triggers)?;
        let rules = arm(config.rules.clone())?;
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Chaos { inner: Mutex::new(Inner { triggers, rules, rng }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state stays consistent across a panic elsewhere (counters only).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mailpit's triggers as they are now.
    pub fn triggers(&self) -> Triggers {
        self.lock().triggers
    }

    /// Replaces Mailpit's triggers (normalized as Mailpit does); returns them.
    pub fn set_triggers(&self, triggers: Triggers) -> Result<Triggers, String> {
        let triggers = triggers.normalized()?;
        for (name, t) in [
            ("Sender", triggers.sender),
            ("Recipient", triggers.recipient),
            ("Authentication", triggers.authentication),
        ] {
            tracing::info!(
                trigger = name,
                code = t.error_code,
                probability = t.probability,
                "chaos trigger set"
            );
        }
        self.lock().triggers = triggers;
        Ok(triggers)
    }

    /// The rules with their counters.
    pub fn rules(&self) -> Vec<RuleReport> {
        self.lock()
            .rules
            .iter()
            .map(|a| RuleReport { rule: a.rule.clone(), matched: a.matched, fired: a.fired })
            .collect()
    }

    /// Replaces every rule (counters start at zero); an invalid rule changes nothing and the
    /// error names it (`rules[2]: …`).
    pub fn set_rules(&self, rules: Vec<Rule>) -> Result<(), String> {
        let rules = arm(rules)?;
        tracing::info!(rules = rules.len(), "chaos rules set");
        self.lock().rules = rules;
        Ok(())
    }

    /// Adds a rule at the end.
    pub fn add_rule(&self, rule: Rule) -> Result<(), String> {
        let mut inner = self.lock();
        let armed = Armed::new(rule, inner.rules.len())?;
        tracing::info!(rule = %armed.name, "chaos rule added");
        inner.rules.push(armed);
        Ok(())
    }

    /// At `MAIL FROM`.
    pub fn at_mail(&self, from: &str) -> Option<Decision> {
        self.decide(&Event::Mail { from }, |t| Some((t.sender, "Chaos sender error")))
    }

    /// At each `RCPT TO`.
    pub fn at_rcpt(&self, from: &str, rcpt: &str) -> Option<Decision> {
        self.decide(&Event::Rcpt { from, rcpt }, |t| Some((t.recipient, "Chaos recipient error")))
    }

    /// At `AUTH`, before the exchange.
    pub fn at_auth(&self) -> Option<Decision> {
        self.decide(&Event::Auth, |t| Some((t.authentication, "Chaos authentication error")))
    }

    /// At `DATA` or the first `BDAT`, before the body: only a disconnect can fire here.
    pub fn at_data_start(&self, from: &str, rcpts: &[&str]) -> Option<Decision> {
        self.decide(&Event::DataStart { from, rcpts }, |_| None)
    }

    /// At end of data: the message's own `X-Tern-Chaos` header first, then the rules.
    /// The rules count the message either way; a header that only delays leaves the act to
    /// them (its delay comes first).
    pub fn at_data(&self, from: &str, rcpts: &[&str], raw: &[u8]) -> Option<Decision> {
        let source = format!("{HEADER} header");
        let asked =
            header_values(raw, HEADER).into_iter().next().map(|value| {
                match parse_directive(&value) {
                    Ok(plan) => {
                        Decision { delay: plan.delay, act: plan.act, source: source.clone() }
                    }
                    Err(e) => Decision {
                        delay: Duration::ZERO,
                        act: Act::Reply(Reply::new(
                            550,
                            Status(5, 6, 0),
                            format!("Bad {HEADER} header: {}", printable(&e, 200)),
                        )),
                        source: source.clone(),
                    },
                }
            });
        let event = Event::Data { from, rcpts, raw };
        match asked {
            Some(asked) if asked.act != Act::Pass => {
                self.decide_after(&event, |_| None, Some(asked))
            }
            Some(delay) => {
                let mut decided = self.decide(&event, |_| None).unwrap_or(Decision {
                    delay: Duration::ZERO,
                    act: Act::Pass,
                    source,
                });
                decided.delay = decided.delay.saturating_add(delay.delay).min(MAX_DELAY);
                Some(decided)
            }
            None => self.decide(&event, |_| None),
        }
    }

    /// Mailpit's trigger for the stage (when it has one), then every matching rule counts the
    /// event and the first that fires decides.
    fn decide(
        &self,
        event: &Event<'_>,
        trigger: impl Fn(&Triggers) -> Option<(Trigger, &'static str)>,
    ) -> Option<Decision> {
        self.decide_after(event, trigger, None)
    }

    /// [`Chaos::decide`] when `decided` may already hold the answer (the rules then only
    /// count the event).
    fn decide_after(
        &self,
        event: &Event<'_>,
        trigger: impl Fn(&Triggers) -> Option<(Trigger, &'static str)>,
        decided: Option<Decision>,
    ) -> Option<Decision> {
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut decision = decided.or_else(|| {
            trigger(&inner.triggers).and_then(|(t, text)| {
                let fires = t.probability > 0 && inner.rng.random_range(0..100i64) < t.probability;
                fires.then(|| {
                    let code = u16::try_from(t.error_code).unwrap_or(451);
                    let class = (code / 100) as u8;
                    let status = match (event, code) {
                        (Event::Auth, 535) => Status(5, 7, 8),
                        (Event::Auth, _) => Status(class, 7, 0),
                        _ => Status(class, 0, 0),
                    };
                    Decision {
                        delay: Duration::ZERO,
                        act: Act::Reply(Reply::new(code, status, text)),
                        source: "Mailpit trigger".into(),
                    }
                })
            })
        });
        for armed in inner.rules.iter_mut().filter(|armed| armed.matches(event)) {
            if decision.is_some() {
                // Decided already: the rule sees the event but does not act on it.
                armed.matched += 1;
            } else if armed.fires(event, now, &mut inner.rng) {
                decision = Some(Decision {
                    delay: armed.plan.delay,
                    act: armed.plan.act.clone(),
                    source: armed.name.clone(),
                });
            }
        }
        if let Some(d) = &decision {
            let act = match &d.act {
                Act::Reply(reply) => reply.to_wire().trim_end().to_string(),
                other => format!("{other:?}").to_lowercase(),
            };
            tracing::info!(source = %d.source, act = %act, delay_ms = d.delay.as_millis() as u64, "chaos fired");
        }
        decision
    }
}

fn arm(rules: Vec<Rule>) -> Result<Vec<Armed>, String> {
    rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| Armed::new(rule, i).map_err(|e| format!("rules[{i}]: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chaos(rules: Vec<Rule>) -> Chaos {
        Chaos::new(&ChaosConfig { enabled: true, seed: Some(7), rules, ..Default::default() })
            .unwrap()
    }

    fn rule(at: Stage) -> Rule {
        Rule {
            name: String::new(),
            at,
            sender: None,
            recipient: None,
            header: None,
            nth: None,
            rate_per_minute: None,
            probability: None,
            reply: None,
            delay_ms: None,
            disconnect: false,
            drop: false,
        }
    }

    fn reply_of(d: Option<Decision>) -> Option<String> {
        d.and_then(|d| match d.act {
            Act::Reply(r) => Some(r.to_wire().trim_end().to_string()),
            _ => None,
        })
    }

    #[test]
    fn globs() {
        assert!(glob("*@example.com", "Bob@EXAMPLE.com"));
        assert!(glob("b?b@*", "bob@x"));
        assert!(!glob("b?b@*", "bb@x"));
        assert!(glob("*", ""));
        assert!(glob("", ""));
        assert!(!glob("", "a"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        // A `*` in the text is a character like any other.
        assert!(glob("*@example.com", "*x@example.com"));
        assert!(glob("a*", "a*"));
    }

    #[test]
    fn replies_parse_with_defaults_and_refuse_nonsense() {
        assert_eq!(parse_reply("451", "x").unwrap().to_wire(), "451 4.0.0 x\r\n");
        assert_eq!(parse_reply("550 5.7.1 no", "x").unwrap().to_wire(), "550 5.7.1 no\r\n");
        assert_eq!(parse_reply("452 go away", "x").unwrap().to_wire(), "452 4.0.0 go away\r\n");
        // A dotted first word that is no status is text.
        assert_eq!(
            parse_reply("550 example.com refuses you", "x").unwrap().to_wire(),
            "550 5.0.0 example.com refuses you\r\n"
        );
        for bad in ["250 ok", "abc", "", "451 5.0.0 mixed", "600", "451 4.0.0 caf\u{e9}"] {
            assert!(parse_reply(bad, "x").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mailpit_triggers_parse_and_validate_like_mailpit() {
        let t = Triggers::parse("Sender:451:5, recipient:550:100,Auth:535:0").unwrap();
        assert_eq!(t.sender, Trigger { error_code: 451, probability: 5 });
        assert_eq!(t.recipient, Trigger { error_code: 550, probability: 100 });
        assert_eq!(t.authentication.error_code, 535);
        assert!(Triggers::parse("Sender:399:5").is_err());
        assert!(Triggers::parse("Sender:451:101").is_err());
        assert!(Triggers::parse("Helo:451:5").is_err());
        assert!(Triggers::parse("Sender:451").is_err());
        let empty = Triggers::default().normalized().unwrap();
        assert_eq!(
            (empty.sender.error_code, empty.recipient.error_code, empty.authentication.error_code),
            (451, 451, 535)
        );
    }

    #[test]
    fn the_nth_match_fires_once() {
        let mut r = rule(Stage::Data);
        r.recipient = Some("x@example.com".into());
        r.nth = Some(3);
        r.reply = Some("451 4.3.0 third".into());
        let c = chaos(vec![r]);
        let mut fired = vec![];
        for i in 1..=6 {
            let rcpts = if i % 2 == 0 { vec!["y@example.com"] } else { vec!["X@example.com"] };
            fired.push(reply_of(c.at_data("a@b", &rcpts, b"Subject: s\r\n\r\nbody")).is_some());
        }
        // Matches are messages 1, 3, 5: the third match is message 5.
        assert_eq!(fired, [false, false, false, false, true, false]);
        assert_eq!((c.rules()[0].matched, c.rules()[0].fired), (3, 1));
    }

    #[test]
    fn rate_lets_n_per_sender_through() {
        let mut r = rule(Stage::Mail);
        r.rate_per_minute = Some(2);
        let c = chaos(vec![r]);
        let seen: Vec<bool> = (0..4).map(|_| c.at_mail("a@b").is_some()).collect();
        assert_eq!(seen, [false, false, true, true]);
        assert!(c.at_mail("other@b").is_none(), "another sender has its own window");
        assert_eq!(
            reply_of(c.at_mail("A@B")).unwrap(),
            "451 4.7.0 Chaos rule 1: too many messages from this sender, try later"
        );
    }

    #[test]
    fn seeded_probability_repeats() {
        let run = || {
            let c = Chaos::new(&ChaosConfig {
                enabled: true,
                seed: Some(42),
                triggers: "Recipient:452:50".into(),
                rules: vec![],
            })
            .unwrap();
            (0..64).map(|_| c.at_rcpt("a@b", "c@d").is_some()).collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let fired = first.iter().filter(|f| **f).count();
        assert!((16..=48).contains(&fired), "{fired} of 64 at 50%");
    }

    #[test]
    fn headers_match_and_the_message_header_acts() {
        let mut r = rule(Stage::Data);
        r.header = Some("X-Test-Case: fail-*".into());
        r.drop = true;
        let c = chaos(vec![r]);
        let raw = b"Subject: s\r\nX-Test-Case:\r\n fail-42\r\n\r\nbody";
        assert_eq!(c.at_data("a@b", &["c@d"], raw).unwrap().act, Act::Drop);
        assert!(c.at_data("a@b", &["c@d"], b"X-Test-Case: ok\r\n\r\nfail-1").is_none());
        let d =
            c.at_data("a@b", &["c@d"], b"X-Tern-Chaos: delay=20ms; 421 4.4.2 bye\r\n\r\n").unwrap();
        assert_eq!(d.delay, Duration::from_millis(20));
        assert_eq!(reply_of(Some(d)).unwrap(), "421 4.4.2 bye");
        // The header's act wins, and the rule still counts the message; a header that only
        // delays leaves the act to the rules.
        let both = b"X-Test-Case: fail-1\r\nX-Tern-Chaos: 451\r\n\r\n";
        assert!(matches!(c.at_data("a@b", &["c@d"], both).unwrap().act, Act::Reply(_)));
        let slow_drop = b"X-Test-Case: fail-2\r\nX-Tern-Chaos: delay=5ms\r\n\r\n";
        let d = c.at_data("a@b", &["c@d"], slow_drop).unwrap();
        assert_eq!((d.act, d.delay), (Act::Drop, Duration::from_millis(5)));
        assert_eq!((c.rules()[0].matched, c.rules()[0].fired), (3, 2));
        let bad = c.at_data("a@b", &["c@d"], b"X-Tern-Chaos: explode\r\n\r\n");
        assert!(reply_of(bad).unwrap().starts_with("550 5.6.0 Bad X-Tern-Chaos header"));
    }

    #[test]
    fn a_data_disconnect_without_header_cuts_at_data_start() {
        let mut r = rule(Stage::Data);
        r.sender = Some("cut@*".into());
        r.disconnect = true;
        let c = chaos(vec![r]);
        assert_eq!(c.at_data_start("cut@x", &["a@b"]).unwrap().act, Act::Disconnect);
        assert!(c.at_data("cut@x", &["a@b"], b"\r\n\r\n").is_none());
        assert!(c.at_data_start("keep@x", &["a@b"]).is_none());
    }

    #[test]
    fn invalid_rules_are_named() {
        let mut r = rule(Stage::Mail);
        r.drop = true;
        let mut good = rule(Stage::Rcpt);
        good.reply = Some("451".into());
        let err =
            ChaosConfig { rules: vec![good, r], ..Default::default() }.validate().unwrap_err();
        assert_eq!(
            err,
            ("chaos.rules[1]".to_string(), "drop is for at = \"data\" only".to_string())
        );
        let err = ChaosConfig { rules: vec![rule(Stage::Rcpt)], ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(err.1.starts_with("nothing to do"), "{err:?}");
        let mut r = rule(Stage::Mail);
        r.recipient = Some("x".into());
        r.reply = Some("550".into());
        assert!(Armed::new(r, 0).unwrap_err().contains("recipient"));
        let mut r = rule(Stage::Rcpt);
        r.delay_ms = Some(400_000);
        assert!(Armed::new(r, 0).unwrap_err().contains("at most"));
    }
}
