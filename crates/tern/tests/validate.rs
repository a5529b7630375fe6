//! Address validation end to end: `tern validate` and `GET /api/v1/validate` against domains
//! a dnsmasq on loopback serves (MX, null MX, A only, NXDOMAIN) and a Postfix MX that takes
//! one user and refuses another, so the SMTP callout sees real `250` and `550` answers; its
//! cache, its per-domain interval and the rule never to call out to our own domains; role,
//! disposable and malformed addresses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

#[path = "api/http.rs"]
#[allow(dead_code)]
mod http;
#[path = "api/schema.rs"]
#[allow(dead_code)]
mod schema;

use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::Value;
use support::TernServer;
use support::peers::{DnsRecord, Dnsmasq, Postfix, PostfixOptions};

struct World {
    dns: Dnsmasq,
    _mx: Postfix,
    port: u16,
    /// A configuration that lets the callout reach the loopback Postfix.
    config: std::path::PathBuf,
}

fn world() -> World {
    let port = support::free_port();
    let mx = Postfix::mx(
        &["ann@mail.validate.test", "postmaster@own.validate.test"],
        PostfixOptions { port: Some(port), ..PostfixOptions::default() },
    );
    let dns = Dnsmasq::start(&[
        DnsRecord::mx("mail.validate.test", "mx.mail.validate.test", 10),
        DnsRecord::a("mx.mail.validate.test", Ipv4Addr::LOCALHOST),
        DnsRecord::mx("own.validate.test", "mx.mail.validate.test", 10),
        DnsRecord::null_mx("nomail.validate.test"),
        DnsRecord::a("aonly.validate.test", Ipv4Addr::LOCALHOST),
    ]);
    let config = support::temp_dir("validate").join("tern.toml");
    std::fs::write(&config, "[validate]\ncallout_private_addresses = true\n").unwrap();
    World { dns, _mx: mx, port, config }
}

/// `tern validate ARGS…` with the world's DNS and port: exit code and JSON report.
fn cli(world: &World, args: &[&str]) -> (i32, Value) {
    let dns = world.dns.addr().to_string();
    let port = world.port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("validate")
        .args(args)
        .args(["--dns", &dns, "--port", &port, "--json", "--config"])
        .arg(&world.config)
        .env_remove("TERN_CONFIG")
        .output()
        .expect("run tern validate");
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    });
    (out.status.code().unwrap_or(-1), report)
}

fn result(report: &Value, check: &str) -> (String, String) {
    let found = report["Checks"]
        .as_array()
        .expect("Checks")
        .iter()
        .find(|c| c["Check"] == check)
        .unwrap_or_else(|| panic!("no {check} check: {report}"));
    (found["Result"].as_str().unwrap().into(), found["Detail"].as_str().unwrap().into())
}

#[test]
fn the_cli_judges_syntax_domains_roles_and_asks_the_mail_server() {
    let world = world();
    let (code, report) = cli(&world, &["ann@Mail.Validate.Test", "--callout"]);
    assert_eq!((code, report["Verdict"].as_str()), (0, Some("valid")), "{report}");
    assert_eq!(report["Normalized"], "ann@mail.validate.test");
    assert_eq!(report["MailHosts"][0], "mx.mail.validate.test");
    let (outcome, detail) = result(&report, "callout");
    assert_eq!(outcome, "pass", "{report}");
    assert!(detail.contains("answered RCPT with 250"), "{detail}");

    let (code, report) = cli(&world, &["bob@mail.validate.test", "--callout"]);
    assert_eq!((code, report["Verdict"].as_str()), (1, Some("invalid")), "{report}");
    let (outcome, detail) = result(&report, "callout");
    assert_eq!(outcome, "fail");
    assert!(detail.contains("550 5.1.1"), "{detail}");

    // Without --callout the server is not asked.
    let (code, report) = cli(&world, &["bob@mail.validate.test"]);
    assert_eq!((code, report["Verdict"].as_str()), (0, Some("valid")), "{report}");
    assert_eq!(result(&report, "callout").0, "skipped");

    let (code, report) = cli(&world, &["someone@nomail.validate.test"]);
    assert_eq!(code, 1, "{report}");
    assert!(result(&report, "domain").1.contains("null MX"), "{report}");
    let (code, report) = cli(&world, &["someone@missing.validate.test"]);
    assert_eq!(code, 1, "{report}");
    assert!(result(&report, "domain").1.contains("not found"), "{report}");
    let (code, report) = cli(&world, &["someone@aonly.validate.test"]);
    assert_eq!(code, 0, "{report}");
    assert!(result(&report, "domain").1.contains("implicit MX"), "{report}");

    let (code, report) = cli(&world, &["NoReply+news@mail.validate.test"]);
    assert_eq!((code, report["Verdict"].as_str()), (2, Some("risky")), "{report}");
    assert_eq!(result(&report, "role").0, "warn");
    let (code, report) = cli(&world, &["x@mailinator.com"]);
    assert_eq!(code, 1, "no such domain here: {report}");
    assert_eq!(result(&report, "disposable").0, "warn", "{report}");

    let (code, report) = cli(&world, &["two..dots@mail.validate.test"]);
    assert_eq!((code, report["Verdict"].as_str()), (1, Some("invalid")), "{report}");
    assert_eq!(result(&report, "syntax").0, "fail");
    assert_eq!(result(&report, "domain").0, "skipped");
    let (_, report) = cli(&world, &["用户@mail.validate.test"]);
    assert_eq!(report["SMTPUTF8"], true, "{report}");
    assert_eq!(result(&report, "syntax").0, "pass");

    // Without callout_private_addresses the loopback mail host is not asked.
    let dns = world.dns.addr().to_string();
    let port = world.port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["validate", "ann@mail.validate.test", "--callout", "--json"])
        .args(["--dns", &dns, "--port", &port])
        .env_remove("TERN_CONFIG")
        .output()
        .expect("run tern validate");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(result(&report, "callout").1.contains("an internal address"), "{report}");
}

#[test]
fn the_api_caches_callouts_spaces_them_per_domain_and_spares_our_domains() {
    let world = world();
    let server = TernServer::start(&format!(
        "[outbound]\ndns_servers = [\"{}\"]\nmx_port = {}\n\n[relay]\nlocal_domains = \
         [\"own.validate.test\"]\n\n[validate]\ncallout = true\ncallout_interval_secs = 60\ncallout_private_addresses = true\n",
        world.dns.addr(),
        world.port
    ));
    let validate = |address: &str| {
        let path =
            format!("/api/v1/validate?address={}", address.replace('@', "%40").replace(' ', "%20"));
        let response = http::get(server.http, &path);
        assert_eq!(response.status, 200, "{path}: {}\n{}", response.text(), server.stderr());
        let report = response.json_with(200);
        schema::tern().check("Validation", &report);
        report
    };
    let first = validate("ann@mail.validate.test");
    assert_eq!(first["Verdict"], "valid", "{first}");
    assert_eq!(result(&first, "callout").0, "pass");
    let again = validate("ann@mail.validate.test");
    assert!(result(&again, "callout").1.ends_with("(cached)"), "{again}");
    // Another address at the same domain within the interval: not asked.
    let spaced = validate("bob@mail.validate.test");
    assert_eq!(spaced["Verdict"], "risky", "{spaced}");
    assert!(result(&spaced, "callout").1.contains("one callout per mail server"), "{spaced}");
    let own = validate("postmaster@own.validate.test");
    assert_eq!(
        result(&own, "callout"),
        ("skipped".into(), "our own domain: never called out to".into())
    );
    let syntax = validate("not an address");
    assert_eq!(syntax["Verdict"], "invalid");
    let missing = http::get(server.http, "/api/v1/validate").json_with(400);
    schema::tern().check("Error", &missing);
}
