//! Configuration: defaults, TOML loading, and errors that name the key and value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::time::Duration;

use tern_policy::config::{
    ConfigError, DEFAULT_AUTH_LOCKOUT, DEFAULT_MAX_CONNECTIONS_PER_IP,
    DEFAULT_REQUIRE_SENDER_OWNERSHIP,
};
use tern_policy::{
    AccessLists, Client, Limits, LimitsConfig, ListsConfig, RcptVerdict, RelayConfig, RelayPolicy,
};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    relay: RelayConfig,
    #[serde(default)]
    limits: LimitsConfig,
    #[serde(default)]
    lists: ListsConfig,
}

#[test]
fn empty_sections_give_the_defaults() {
    let file: File = toml::from_str("").unwrap();
    assert_eq!(file.relay, RelayConfig::default());
    assert!(file.relay.require_sender_ownership);
    assert_eq!(file.relay.require_sender_ownership, DEFAULT_REQUIRE_SENDER_OWNERSHIP);
    assert!(file.relay.trusted_networks.is_empty(), "nothing is trusted by default");
    assert_eq!(Limits::try_from(file.limits).unwrap(), Limits::default());
    assert_eq!(AccessLists::try_from(file.lists).unwrap(), AccessLists::default());
}

#[test]
fn default_limits() {
    let limits = Limits::default();
    assert_eq!(limits.max_connections_per_client, DEFAULT_MAX_CONNECTIONS_PER_IP);
    assert_eq!(limits.max_connections_per_client, 50);
    assert_eq!(limits.connection_rate.count, 100);
    assert_eq!(limits.connection_rate.per, Duration::from_secs(60));
    assert_eq!(limits.max_messages_per_connection, 100);
    assert_eq!(limits.tarpit.free_errors, 3);
    assert_eq!(limits.tarpit.max_delay, Duration::from_secs(10));
    assert_eq!(limits.auth.max_failures, 10);
    assert_eq!(limits.auth.window, Duration::from_secs(600));
    assert_eq!(limits.auth.lockout, DEFAULT_AUTH_LOCKOUT);
    assert_eq!(limits.auth.lockout, Duration::from_secs(900));
    assert_eq!(limits.max_tracked_clients, 100_000);
}

#[test]
fn a_full_file_loads() {
    let file: File = toml::from_str(
        r#"
        [relay]
        local_domains = ["example.org", "Mail.Example.org."]
        trusted_networks = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"]
        local_ips = ["192.0.2.10"]
        require_sender_ownership = false

        [limits]
        max_connections_per_ip = 20
        max_connection_rate_per_minute = 60
        max_messages_per_connection = 10
        tarpit_after_errors = 1
        tarpit_step_ms = 500
        tarpit_max_delay_ms = 2000
        auth_delay_per_failure_ms = 1000
        auth_max_delay_ms = 4000
        auth_max_failures = 5
        auth_failure_window_secs = 300
        auth_lockout_secs = 3600
        max_tracked_clients = 5000

        [lists]
        allow_ips = ["192.0.2.0/28"]
        block_ips = ["192.0.2.0/24"]
        allow_sender_domains = ["partner.example"]
        block_sender_domains = [".spam.example"]
        "#,
    )
    .unwrap();
    let relay = RelayPolicy::try_from(file.relay).unwrap();
    assert!(relay.is_local_domain("mail.example.org"));
    assert!(!relay.require_sender_ownership());
    let trusted = Client { ip: "192.0.2.1".parse().unwrap(), login: None };
    assert_eq!(
        relay.check_rcpt("user@ext.example", &trusted),
        RcptVerdict::Relay { local_part: "user".into(), domain: "ext.example".into() }
    );
    let limits = Limits::try_from(file.limits).unwrap();
    assert_eq!(limits.tarpit.delay(3), Duration::from_millis(1000));
    assert_eq!(limits.auth.lockout, Duration::from_secs(3600));
    let lists = AccessLists::try_from(file.lists).unwrap();
    assert!(lists.check_connect("192.0.2.5".parse().unwrap()).is_ok());
    assert!(lists.check_connect("192.0.2.50".parse().unwrap()).is_err());
}

#[test]
fn unknown_keys_are_refused() {
    let error = toml::from_str::<File>("[limits]\nmax_conections_per_ip = 5\n").unwrap_err();
    assert!(error.to_string().contains("max_conections_per_ip"), "{error}");
    let error = toml::from_str::<File>("[relay]\ntrusted_network = []\n").unwrap_err();
    assert!(error.to_string().contains("trusted_network"), "{error}");
}

#[test]
fn bad_networks_are_named() {
    let config = RelayConfig {
        trusted_networks: vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
        ..RelayConfig::default()
    };
    let error = RelayPolicy::try_from(config).unwrap_err();
    assert_eq!(
        error,
        ConfigError::InvalidNetwork {
            key: "relay.trusted_networks[1]".into(),
            value: "10.0.0.0/33".into()
        }
    );
    let message = error.to_string();
    assert!(message.starts_with("relay.trusted_networks[1]: \"10.0.0.0/33\""), "{message}");

    for bad in ["localhost", "10.0.0/8", "", "2001:db8::/129", "10.0.0.0/8 "] {
        let config = ListsConfig { block_ips: vec![bad.into()], ..ListsConfig::default() };
        let result = AccessLists::try_from(config);
        if bad == "10.0.0.0/8 " {
            assert!(result.is_ok(), "surrounding spaces are tolerated");
        } else {
            assert!(
                matches!(&result, Err(ConfigError::InvalidNetwork { key, value })
                    if key == "lists.block_ips[0]" && value == bad),
                "{bad:?}: {result:?}"
            );
        }
    }
}

#[test]
fn networks_with_host_bits_are_truncated() {
    let config = ListsConfig { block_ips: vec!["10.1.2.3/8".into()], ..ListsConfig::default() };
    let lists = AccessLists::try_from(config).unwrap();
    assert_eq!(lists.block_ips[0].to_string(), "10.0.0.0/8");
}

#[test]
fn bad_domains_and_ips_are_named() {
    let config =
        RelayConfig { local_domains: vec!["exa mple.org".into()], ..RelayConfig::default() };
    let error = RelayPolicy::try_from(config).unwrap_err();
    assert!(
        matches!(&error, ConfigError::InvalidDomain { key, value, .. }
            if key == "relay.local_domains[0]" && value == "exa mple.org"),
        "{error:?}"
    );

    let config = RelayConfig { local_ips: vec!["192.0.2".into()], ..RelayConfig::default() };
    let error = RelayPolicy::try_from(config).unwrap_err();
    assert_eq!(error.to_string(), "relay.local_ips[0]: \"192.0.2\" is not an IP address");

    let config =
        ListsConfig { block_sender_domains: vec!["..spam".into()], ..ListsConfig::default() };
    let error = AccessLists::try_from(config).unwrap_err();
    assert!(error.to_string().starts_with("lists.block_sender_domains[0]: \"..spam\""), "{error}");
}

#[test]
fn out_of_range_limits_are_named() {
    let cases: Vec<(LimitsConfig, &str)> = vec![
        (
            LimitsConfig { max_connections_per_ip: 0, ..LimitsConfig::default() },
            "limits.max_connections_per_ip",
        ),
        (
            LimitsConfig { max_connection_rate_per_minute: 0, ..LimitsConfig::default() },
            "limits.max_connection_rate_per_minute",
        ),
        (
            LimitsConfig { max_messages_per_connection: 0, ..LimitsConfig::default() },
            "limits.max_messages_per_connection",
        ),
        (
            LimitsConfig { tarpit_max_delay_ms: 3_600_000, ..LimitsConfig::default() },
            "limits.tarpit_max_delay_ms",
        ),
        (
            LimitsConfig { auth_max_failures: 0, ..LimitsConfig::default() },
            "limits.auth_max_failures",
        ),
        (
            LimitsConfig { auth_lockout_secs: u64::MAX, ..LimitsConfig::default() },
            "limits.auth_lockout_secs",
        ),
        (
            LimitsConfig { auth_failure_window_secs: 0, ..LimitsConfig::default() },
            "limits.auth_failure_window_secs",
        ),
        (
            LimitsConfig { max_tracked_clients: 0, ..LimitsConfig::default() },
            "limits.max_tracked_clients",
        ),
    ];
    for (config, key) in cases {
        let error = Limits::try_from(config).unwrap_err();
        assert!(matches!(&error, ConfigError::OutOfRange { key: k, .. } if *k == key), "{error:?}");
        assert!(error.to_string().starts_with(key), "{error}");
    }
    let error =
        Limits::try_from(LimitsConfig { max_connections_per_ip: 0, ..LimitsConfig::default() })
            .unwrap_err();
    assert_eq!(
        error.to_string(),
        "limits.max_connections_per_ip: 0 is out of range (allowed: 1 to 4294967295)"
    );
}
