//! Delivery outcomes per hour for the dashboard (`GET /api/v1/stats`).
//!
//! The store drops a queue entry once it is delivered or bounced, so the history of outcomes
//! lives nowhere but in the Prometheus counters the scheduler increments
//! (`tern_outbound_{delivered,deferred,bounced}_total`). [`Activity`] samples those counters
//! (every [`SAMPLE_INTERVAL`] and at each stats request) and files each increase under the hour
//! it was seen in, for the last [`HOURS`] hours. It is memory only: a restart begins a new
//! history, as the counters do.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use crate::State;

/// How often the counters are read.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(15);
/// Hours of history kept and shown.
pub const HOURS: usize = 24;
const HOUR_MS: i64 = 3_600_000;

/// The scheduler's counters, by name in the Prometheus text.
const DELIVERED: &str = "tern_outbound_delivered_total";
const DEFERRED: &str = "tern_outbound_deferred_total";
const BOUNCED: &str = "tern_outbound_bounced_total";

/// Delivery attempts' outcomes (per recipient).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Outcomes {
    /// Accepted by the remote server.
    pub delivered: u64,
    /// Failed, to be tried again.
    pub deferred: u64,
    /// Given up on: the sender is told.
    pub bounced: u64,
}

impl Outcomes {
    /// The counters' values in a Prometheus text rendering (absent ones are 0).
    pub fn from_prometheus(text: &str) -> Outcomes {
        let value = |name: &str| {
            text.lines()
                .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .filter_map(|value| value.trim().parse::<f64>().ok())
                .next()
                .map_or(0, |v| v as u64)
        };
        Outcomes { delivered: value(DELIVERED), deferred: value(DEFERRED), bounced: value(BOUNCED) }
    }

    fn since(self, earlier: Outcomes) -> Outcomes {
        Outcomes {
            delivered: self.delivered.saturating_sub(earlier.delivered),
            deferred: self.deferred.saturating_sub(earlier.deferred),
            bounced: self.bounced.saturating_sub(earlier.bounced),
        }
    }

    fn add(&mut self, more: Outcomes) {
        self.delivered = self.delivered.saturating_add(more.delivered);
        self.deferred = self.deferred.saturating_add(more.deferred);
        self.bounced = self.bounced.saturating_add(more.bounced);
    }
}

/// Outcomes filed by hour (see the module doc).
#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    /// The counters at the last sample.
    last: Option<Outcomes>,
    /// (hour start in ms since the epoch, outcomes seen in it), oldest first.
    hours: VecDeque<(i64, Outcomes)>,
}

impl Activity {
    /// Files the increase of the counters since the last sample under the hour of `now_ms`.
    /// The first sample counts everything so far (the counters start with the process).
    pub fn record(&self, now_ms: i64, totals: Outcomes) {
        let Ok(mut history) = self.inner.lock() else { return };
        let increase = totals.since(history.last.unwrap_or_default());
        history.last = Some(totals);
        let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        match history.hours.back_mut() {
            Some((start, outcomes)) if *start == hour => outcomes.add(increase),
            _ => history.hours.push_back((hour, increase)),
        }
        let oldest = hour - (HOURS as i64 - 1) * HOUR_MS;
        while history.hours.front().is_some_and(|(start, _)| *start < oldest) {
            history.hours.pop_front();
        }
    }

    /// The last [`HOURS`] hours up to the one of `now_ms`, oldest first, empty ones as zeros.
    pub fn hours(&self, now_ms: i64) -> Vec<(i64, Outcomes)> {
        let hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let filed = self.inner.lock().map(|h| h.hours.clone()).unwrap_or_default();
        (0..HOURS as i64)
            .rev()
            .map(|ago| {
                let start = hour - ago * HOUR_MS;
                let outcomes = filed.iter().find(|(s, _)| *s == start).map(|(_, o)| *o);
                (start, outcomes.unwrap_or_default())
            })
            .collect()
    }
}

/// Samples the counters into `state.activity` now.
pub fn sample(state: &State) {
    if let Some(handle) = &state.metrics {
        let now_ms = tern_queue::scheduler::now_ms();
        state.activity.record(now_ms, Outcomes::from_prometheus(&handle.render()));
    }
}

/// Samples every [`SAMPLE_INTERVAL`] until shutdown; does nothing when metrics are off.
pub async fn run(state: State) {
    if state.metrics.is_none() {
        return;
    }
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => sample(&state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_prometheus_text() {
        let text = "# TYPE tern_outbound_delivered_total counter\n\
                    tern_outbound_delivered_total 7\n\
                    tern_outbound_delivered_total_other 99\n\
                    tern_outbound_bounced_total 2\n";
        assert_eq!(
            Outcomes::from_prometheus(text),
            Outcomes { delivered: 7, deferred: 0, bounced: 2 }
        );
    }

    #[test]
    fn increases_are_filed_under_their_hour_for_a_day() {
        let activity = Activity::default();
        let at = |hour: i64, minute: i64| hour * HOUR_MS + minute * 60_000;
        let counts = |delivered, bounced| Outcomes { delivered, deferred: 0, bounced };
        activity.record(at(100, 5), counts(3, 0));
        activity.record(at(100, 50), counts(5, 1));
        activity.record(at(102, 0), counts(9, 1));
        let hours = activity.hours(at(102, 30));
        assert_eq!(hours.len(), HOURS);
        assert_eq!(hours[HOURS - 1], (at(102, 0), counts(4, 0)));
        assert_eq!(hours[HOURS - 2], (at(101, 0), counts(0, 0)));
        assert_eq!(hours[HOURS - 3], (at(100, 0), counts(5, 1)));
        // A day later hour 100 has scrolled out.
        activity.record(at(124, 10), counts(10, 1));
        let hours = activity.hours(at(124, 10));
        assert_eq!(hours[0].0, at(101, 0));
        assert!(hours.iter().all(|(start, _)| *start != at(100, 0)));
        assert_eq!(hours[HOURS - 1].1, counts(1, 0));
    }
}
