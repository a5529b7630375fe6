//! The result of a run: counts, rate, latency percentiles and failures by stage and reply
//! code, as an aligned table or as one line of JSON (`--json`, read by the scripts in `bench/`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::client::FailureKey;

/// Whether MAIL/RCPT/DATA were pipelined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pipelining {
    Off,
    Used,
    /// Asked for with `--pipelining`, but the server never advertised it.
    NotAdvertised,
}

impl Pipelining {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Pipelining::Off => "off",
            Pipelining::Used => "on",
            Pipelining::NotAdvertised => "not advertised by server",
        }
    }
}

/// How often a failure was seen, and what the server said the first time.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorTally {
    /// Times seen.
    pub(crate) count: u64,
    /// What the server said (or the error) the first time.
    pub(crate) example: String,
}

/// Latency percentiles of accepted messages in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    /// `None` when no message was accepted.
    pub(crate) fn from_histogram(micros: &Histogram<u64>) -> Option<Latency> {
        if micros.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Latency {
            p50_ms: ms(micros.value_at_quantile(0.50)),
            p90_ms: ms(micros.value_at_quantile(0.90)),
            p99_ms: ms(micros.value_at_quantile(0.99)),
            max_ms: ms(micros.max()),
        })
    }
}

/// The result of a run.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) server: String,
    pub(crate) sessions: u32,
    pub(crate) size_bytes: usize,
    pub(crate) pipelining: Pipelining,
    pub(crate) reconnect: bool,
    pub(crate) messages_ok: u64,
    pub(crate) messages_failed: u64,
    /// Messages never tried because every session gave up.
    pub(crate) messages_not_sent: u64,
    /// From starting the sessions to the last QUIT, so connection setup is included.
    pub(crate) elapsed: Duration,
    pub(crate) latency: Option<Latency>,
    pub(crate) errors: BTreeMap<FailureKey, ErrorTally>,
}

impl Report {
    /// Accepted messages per second of wall-clock time.
    fn messages_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.messages_ok as f64 / secs } else { 0.0 }
    }

    /// The report as one line of JSON, numbers with as many decimals as the table shows.
    pub(crate) fn to_json(&self) -> Result<String, serde_json::Error> {
        let errors = self
            .errors
            .iter()
            .map(|((stage, kind), tally)| JsonError {
                stage: stage.to_string(),
                error: kind.to_string(),
                count: tally.count,
                example: &tally.example,
            })
            .collect();
        serde_json::to_string(&JsonReport {
            server: &self.server,
            sessions: self.sessions,
            size_bytes: self.size_bytes,
            pipelining: self.pipelining.as_str(),
            reconnect: self.reconnect,
            messages_ok: self.messages_ok,
            messages_failed: self.messages_failed,
            messages_not_sent: self.messages_not_sent,
            elapsed_secs: Fixed(self.elapsed.as_secs_f64()),
            messages_per_sec: Fixed(self.messages_per_sec()),
            latency_ms: self.latency.map(|l| JsonLatency {
                p50: Fixed(l.p50_ms),
                p90: Fixed(l.p90_ms),
                p99: Fixed(l.p99_ms),
                max: Fixed(l.max_ms),
            }),
            errors,
        })
    }
}

/// The JSON form of [`Report`]; the field order is the output's.
#[derive(Serialize)]
struct JsonReport<'a> {
    server: &'a str,
    sessions: u32,
    size_bytes: usize,
    pipelining: &'static str,
    reconnect: bool,
    messages_ok: u64,
    messages_failed: u64,
    messages_not_sent: u64,
    elapsed_secs: Fixed<3>,
    messages_per_sec: Fixed<1>,
    latency_ms: Option<JsonLatency>,
    errors: Vec<JsonError<'a>>,
}

/// Latency percentiles in milliseconds.
#[derive(Serialize)]
struct JsonLatency {
    p50: Fixed<3>,
    p90: Fixed<3>,
    p99: Fixed<3>,
    max: Fixed<3>,
}

/// One line of the failure table.
#[derive(Serialize)]
struct JsonError<'a> {
    stage: String,
    error: String,
    count: u64,
    example: &'a str,
}

/// A number written with exactly `DECIMALS` decimals (`2.500`, not `2.5`), as the table shows
/// it and as the scripts in `bench/` have always read it.
struct Fixed<const DECIMALS: usize>(f64);

impl<const DECIMALS: usize> Serialize for Fixed<DECIMALS> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Not finite (never for a duration or a rate of one): JSON has no such number.
        if !self.0.is_finite() {
            return serializer.serialize_none();
        }
        let text = format!("{:.*}", DECIMALS, self.0);
        RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(serializer)
    }
}

impl fmt::Display for Report {
    /// The report as an aligned two-column table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "{name:<18} {value}")
        };
        row(f, "server", &self.server)?;
        row(f, "sessions", &self.sessions)?;
        row(f, "message size", &format_args!("{} bytes", self.size_bytes))?;
        row(f, "pipelining", &self.pipelining.as_str())?;
        row(f, "reconnect", &self.reconnect)?;
        row(f, "messages ok", &self.messages_ok)?;
        row(f, "messages failed", &self.messages_failed)?;
        if self.messages_not_sent > 0 {
            row(f, "messages not sent", &self.messages_not_sent)?;
        }
        row(f, "elapsed", &format_args!("{:.3} s", self.elapsed.as_secs_f64()))?;
        row(f, "messages/s", &format_args!("{:.1}", self.messages_per_sec()))?;
        match self.latency {
            Some(l) => row(
                f,
                "latency ms",
                &format_args!(
                    "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                ),
            )?,
            None => row(f, "latency ms", &"-")?,
        }
        if self.errors.is_empty() {
            row(f, "errors", &"none")?;
        }
        for ((stage, kind), tally) in &self.errors {
            row(f, "error", &format_args!("{stage} {kind} x{}  {}", tally.count, tally.example))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{FailureKind, Stage};

    #[test]
    fn json_keeps_its_shape_and_escapes_server_text() {
        let mut report = Report {
            server: "127.0.0.1:25".into(),
            sessions: 2,
            size_bytes: 4096,
            pipelining: Pipelining::Used,
            reconnect: false,
            messages_ok: 5,
            messages_failed: 1,
            messages_not_sent: 0,
            elapsed: Duration::from_millis(2500),
            latency: Some(Latency { p50_ms: 1.0, p90_ms: 2.5, p99_ms: 3.25, max_ms: 4.0 }),
            errors: BTreeMap::new(),
        };
        report.errors.insert(
            (Stage::Rcpt, FailureKind::Reply(550)),
            ErrorTally { count: 1, example: "5.1.1 \"a\\b\"\n\u{1}".into() },
        );
        assert_eq!(
            report.to_json().unwrap(),
            concat!(
                r#"{"server":"127.0.0.1:25","sessions":2,"size_bytes":4096,"pipelining":"on","#,
                r#""reconnect":false,"messages_ok":5,"messages_failed":1,"messages_not_sent":0,"#,
                r#""elapsed_secs":2.500,"messages_per_sec":2.0,"#,
                r#""latency_ms":{"p50":1.000,"p90":2.500,"p99":3.250,"max":4.000},"#,
                r#""errors":[{"stage":"RCPT","error":"550","count":1,"#,
                r#""example":"5.1.1 \"a\\b\"\n\u0001"}]}"#
            )
        );
        report.latency = None;
        assert!(report.to_json().unwrap().contains(r#","latency_ms":null,"#));
    }
}
