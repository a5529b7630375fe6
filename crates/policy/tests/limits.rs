//! Per-client limits driven by synthetic instants: no sleeps, no clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use tern_policy::{
    AuthThrottle, AuthThrottleSettings, ConnectionCounter, ConnectionRate, Denial, Limits, Rate,
    Tarpit,
};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn concurrent_connections_are_counted_and_released_on_drop() {
    let counter = ConnectionCounter::new(3);
    let client = ip("192.0.2.1");
    let mut guards: Vec<_> =
        (0..3).map(|_| counter.acquire(client).expect("under the limit")).collect();
    assert_eq!(counter.open_connections(client), 3);
    assert_eq!(counter.acquire(client).unwrap_err(), Denial::TOO_MANY_CONNECTIONS);
    assert_eq!(
        Denial::TOO_MANY_CONNECTIONS.to_string(),
        "421 4.7.0 Too many connections from your address"
    );

    // Other clients are unaffected.
    let other = counter.acquire(ip("192.0.2.2")).expect("another client");
    assert_eq!(counter.clients(), 2);

    drop(guards.pop());
    assert_eq!(counter.open_connections(client), 2);
    let again = counter.acquire(client).expect("a slot was freed");
    assert_eq!(counter.acquire(client).unwrap_err(), Denial::TOO_MANY_CONNECTIONS);

    drop(again);
    drop(guards);
    assert_eq!(counter.open_connections(client), 0);
    drop(other);
    assert_eq!(counter.clients(), 0);
    assert_eq!(counter.open_connections(ip("192.0.2.2")), 0);
}

#[test]
fn all_guards_dropped_leaves_no_entries() {
    let counter = ConnectionCounter::new(50);
    let guards: Vec<_> = (0..50u8)
        .map(|n| counter.acquire(IpAddr::V4(Ipv4Addr::new(198, 51, 100, n))).unwrap())
        .collect();
    assert_eq!(counter.clients(), 50);
    drop(guards);
    assert_eq!(counter.clients(), 0);
}

#[test]
fn guards_work_across_clones_and_threads() {
    let counter = ConnectionCounter::new(100);
    let client = ip("192.0.2.7");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let counter = counter.clone();
            scope.spawn(move || {
                for _ in 0..1000 {
                    let guard = counter.acquire(client).expect("at most 8 at once");
                    drop(guard);
                }
            });
        }
    });
    assert_eq!(counter.open_connections(client), 0);
    assert_eq!(counter.clients(), 0);
}

#[test]
fn ipv6_clients_are_counted_per_slash_64() {
    let counter = ConnectionCounter::new(2);
    let _a = counter.acquire(ip("2001:db8:0:1::1")).unwrap();
    let _b = counter.acquire(ip("2001:db8:0:1::2")).unwrap();
    assert_eq!(counter.acquire(ip("2001:db8:0:1::3")).unwrap_err(), Denial::TOO_MANY_CONNECTIONS);
    let _c = counter.acquire(ip("2001:db8:0:2::1")).expect("another /64");
    // An IPv4 client on a dual-stack listener is the same client either way.
    let _d = counter.acquire(ip("::ffff:192.0.2.1")).unwrap();
    let _e = counter.acquire(ip("192.0.2.1")).unwrap();
    assert_eq!(counter.acquire(ip("192.0.2.1")).unwrap_err(), Denial::TOO_MANY_CONNECTIONS);
}

#[test]
fn zero_allows_nothing() {
    let counter = ConnectionCounter::new(0);
    assert_eq!(counter.acquire(ip("192.0.2.1")).unwrap_err(), Denial::TOO_MANY_CONNECTIONS);
    assert_eq!(counter.clients(), 0);
}

#[test]
fn connection_rate_allows_a_burst_then_one_per_interval() {
    // 10 per minute: a burst of 10, then one every 6 s.
    let rate = ConnectionRate::new(Rate { count: 10, per: secs(60) }, 1000);
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for n in 0..10 {
        assert_eq!(rate.check(client, t0), Ok(()), "connection {n}");
    }
    assert_eq!(rate.check(client, t0), Err(Denial::CONNECTION_RATE_EXCEEDED));
    assert_eq!(rate.check(client, t0 + millis(5999)), Err(Denial::CONNECTION_RATE_EXCEEDED));
    assert_eq!(rate.check(client, t0 + secs(6)), Ok(()));
    assert_eq!(rate.check(client, t0 + secs(6)), Err(Denial::CONNECTION_RATE_EXCEEDED));
    // Refused attempts do not use up allowance.
    assert_eq!(rate.check(client, t0 + secs(12)), Ok(()));
    // Other clients have their own allowance.
    assert_eq!(rate.check(ip("192.0.2.2"), t0), Ok(()));
    // After a quiet minute the whole burst is available again.
    let later = t0 + secs(12 + 60);
    for n in 0..10 {
        assert_eq!(rate.check(client, later), Ok(()), "connection {n} after the pause");
    }
    assert_eq!(rate.check(client, later), Err(Denial::CONNECTION_RATE_EXCEEDED));
}

#[test]
fn connection_rate_at_a_steady_pace_is_never_refused() {
    let rate = ConnectionRate::new(Rate { count: 100, per: secs(60) }, 1000);
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for n in 0..1000 {
        assert_eq!(rate.check(client, t0 + millis(600 * n)), Ok(()), "connection {n}");
    }
}

#[test]
fn connection_rate_memory_is_bounded() {
    let rate = ConnectionRate::new(Rate { count: 5, per: secs(60) }, 1000);
    let t0 = Instant::now();
    for n in 0..20_000u32 {
        rate.check(IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + n)), t0).unwrap();
        assert!(rate.tracked_clients() <= 1000);
    }
    // Entries past their time are forgotten when room is needed.
    let later = t0 + secs(3600);
    rate.check(ip("192.0.2.1"), later).unwrap();
    assert_eq!(rate.tracked_clients(), 1);
}

#[test]
fn tarpit_curve() {
    let tarpit = Tarpit::default();
    let expected = [
        (0, 0),
        (1, 0),
        (2, 0),
        (3, 0),
        (4, 1000),
        (5, 2000),
        (8, 5000),
        (12, 9000),
        (13, 10_000),
        (14, 10_000),
        (1000, 10_000),
        (u32::MAX, 10_000),
    ];
    for (errors, delay_ms) in expected {
        assert_eq!(tarpit.delay(errors), millis(delay_ms), "after {errors} errors");
    }
    let off = Tarpit { free_errors: 0, step: secs(1), max_delay: Duration::ZERO };
    assert_eq!(off.delay(100), Duration::ZERO);
    let steep = Tarpit { free_errors: 0, step: millis(250), max_delay: secs(1) };
    assert_eq!(steep.delay(1), millis(250));
    assert_eq!(steep.delay(4), secs(1));
    assert_eq!(steep.delay(5), secs(1));
}

fn throttle() -> AuthThrottle {
    AuthThrottle::new(AuthThrottleSettings::default(), 1000)
}

#[test]
fn auth_delay_grows_with_each_failure() {
    let throttle = throttle();
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    assert_eq!(throttle.check(client, t0), Ok(Duration::ZERO));
    for failures in 1..10u64 {
        throttle.record_failure(client, t0 + secs(failures));
        assert_eq!(
            throttle.check(client, t0 + secs(failures)),
            Ok(millis(500 * failures)),
            "after {failures} failures"
        );
    }
    // Another client is not slowed down.
    assert_eq!(throttle.check(ip("192.0.2.2"), t0 + secs(9)), Ok(Duration::ZERO));
}

#[test]
fn auth_lockout_after_max_failures_then_expiry() {
    let throttle = throttle();
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for n in 0..10 {
        assert!(throttle.check(client, t0 + secs(n)).is_ok(), "attempt {n}");
        throttle.record_failure(client, t0 + secs(n));
    }
    let locked_at = t0 + secs(9);
    assert_eq!(throttle.check(client, locked_at), Err(Denial::AUTH_LOCKED_OUT));
    assert!(Denial::AUTH_LOCKED_OUT.to_string().starts_with("421 4.7.0 "));
    // Failures during the lockout do not extend it.
    throttle.record_failure(client, locked_at + secs(60));
    let almost = locked_at + secs(15 * 60) - millis(1);
    assert_eq!(throttle.check(client, almost), Err(Denial::AUTH_LOCKED_OUT));
    // After 15 minutes the client starts over.
    let after = locked_at + secs(15 * 60);
    assert_eq!(throttle.check(client, after), Ok(Duration::ZERO));
    throttle.record_failure(client, after);
    assert_eq!(throttle.check(client, after), Ok(millis(500)));
}

#[test]
fn auth_failures_outside_the_window_are_forgotten() {
    let throttle = throttle();
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for n in 0..9 {
        throttle.record_failure(client, t0 + secs(n));
    }
    // The window opened at t0 and lasts 10 minutes; the tenth failure comes after it.
    let late = t0 + secs(10 * 60);
    assert_eq!(throttle.check(client, late), Ok(Duration::ZERO));
    throttle.record_failure(client, late);
    assert_eq!(throttle.check(client, late), Ok(millis(500)));
}

#[test]
fn auth_success_clears_the_record() {
    let throttle = throttle();
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for n in 0..5 {
        throttle.record_failure(client, t0 + secs(n));
    }
    assert_eq!(throttle.check(client, t0 + secs(5)), Ok(millis(2500)));
    throttle.record_success(client);
    assert_eq!(throttle.check(client, t0 + secs(5)), Ok(Duration::ZERO));
    assert_eq!(throttle.tracked_clients(), 0);
}

#[test]
fn auth_delay_is_capped() {
    let settings = AuthThrottleSettings {
        delay_per_failure: secs(1),
        max_delay: secs(3),
        max_failures: 1000,
        ..AuthThrottleSettings::default()
    };
    let throttle = AuthThrottle::new(settings, 10);
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for _ in 0..100 {
        throttle.record_failure(client, t0);
    }
    assert_eq!(throttle.check(client, t0), Ok(secs(3)));
}

#[test]
fn auth_throttle_groups_ipv6_by_slash_64() {
    let throttle = throttle();
    let t0 = Instant::now();
    for n in 0..10u16 {
        // A different address every time, all in one /64.
        let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, n + 1);
        throttle.record_failure(IpAddr::V6(address), t0);
    }
    assert_eq!(throttle.check(ip("2001:db8:0:1::ffff"), t0), Err(Denial::AUTH_LOCKED_OUT));
    assert_eq!(throttle.check(ip("2001:db8:0:2::1"), t0), Ok(Duration::ZERO));
}

#[test]
fn auth_throttle_memory_is_bounded_and_evicts_oldest_first() {
    let throttle = AuthThrottle::new(AuthThrottleSettings::default(), 100);
    let t0 = Instant::now();
    let old = ip("192.0.2.1");
    throttle.record_failure(old, t0);
    for n in 0..10_000u32 {
        let when = t0 + millis(u64::from(n) + 1);
        throttle.record_failure(IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + n)), when);
        assert!(throttle.tracked_clients() <= 100);
    }
    let now = t0 + secs(11);
    assert_eq!(throttle.check(old, now), Ok(Duration::ZERO), "the oldest entry was evicted");
    let recent = IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + 9_999));
    assert_eq!(throttle.check(recent, now), Ok(millis(500)), "recent entries are kept");
}

#[test]
fn locked_out_clients_outlast_fresh_failures_under_eviction() {
    let throttle = AuthThrottle::new(AuthThrottleSettings::default(), 100);
    let t0 = Instant::now();
    let attacker = ip("192.0.2.66");
    for _ in 0..10 {
        throttle.record_failure(attacker, t0);
    }
    // A flood of new clients, each with one failure, newer than the lockout.
    for n in 0..1000u32 {
        throttle.record_failure(IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + n)), t0 + secs(1));
    }
    assert_eq!(throttle.check(attacker, t0 + secs(2)), Err(Denial::AUTH_LOCKED_OUT));
}

#[test]
fn messages_per_connection() {
    let limits = Limits { max_messages_per_connection: 2, ..Limits::default() };
    assert_eq!(limits.check_new_message(0), Ok(()));
    assert_eq!(limits.check_new_message(1), Ok(()));
    assert_eq!(limits.check_new_message(2), Err(Denial::TOO_MANY_MESSAGES));
    assert!(Denial::TOO_MANY_MESSAGES.closes_connection());
}

#[test]
fn limits_build_working_shared_state() {
    let limits = Limits::default();
    let client = ip("192.0.2.1");
    let now = Instant::now();
    let _guard = limits.connection_counter().acquire(client).unwrap();
    assert_eq!(limits.connection_rate().check(client, now), Ok(()));
    assert_eq!(limits.auth_throttle().check(client, now), Ok(Duration::ZERO));
}
