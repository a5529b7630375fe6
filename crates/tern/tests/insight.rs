//! End-to-end tests of the two insight endpoints against the real `tern serve`: the HTML
//! compatibility check (`/api/v1/message/{ID}/html-check`, Mailpit's shape, validated against
//! Mailpit's published schema and Tern's `openapi.json`) over sample messages, and the
//! dashboard's numbers (`/api/v1/stats`) after mail sent over SMTP.
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

use std::time::{Duration, Instant};

use serde_json::Value;

use support::{Client, MtaListener, TernServer, is_tern_banner};

/// How long the scheduler may take to make an attempt (DNS to a closed port fails at once, or
/// after the configured one-second timeout).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `message` (`\n` line ends) over SMTP and returns its id.
fn deliver(server: &TernServer, to: &str, message: &str) -> String {
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO client.test", "250");
    let wire: String = message.lines().map(|line| format!("{line}\r\n")).collect();
    let id = client.send_message("sender@example.org", &[to], wire.as_bytes());
    client.cmd("QUIT", "221");
    id
}

fn html_message(subject: &str, html: &str) -> String {
    format!(
        "From: sender@example.org\nTo: bob@example.com\nSubject: {subject}\nMIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\n\n{html}\n"
    )
}

/// `GET /api/v1/message/{id}/html-check`, validated against both documents.
fn html_check(server: &TernServer, id: &str) -> Value {
    let report = http::get(server.http, &format!("/api/v1/message/{id}/html-check")).json_with(200);
    schema::check_both("HTMLCheckResponse", "HTMLCheckResponse", &report);
    report
}

fn warning<'a>(report: &'a Value, slug: &str) -> &'a Value {
    report["Warnings"]
        .as_array()
        .expect("Warnings")
        .iter()
        .find(|w| w["Slug"] == slug)
        .unwrap_or_else(|| panic!("no warning {slug} in {}", slugs(report).join(", ")))
}

fn slugs(report: &Value) -> Vec<String> {
    let warnings = report["Warnings"].as_array().expect("Warnings");
    warnings.iter().map(|w| w["Slug"].as_str().expect("Slug").to_string()).collect()
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

const FLEX_AND_POSITION: &str = r#"<!DOCTYPE html>
<html><head><style>
  /* .ghost { display: grid } is a comment, not a rule */
  .row { display: flex; gap: 8px }
  .badge { position: absolute; top: 0 }
  a:hover { color: #c00 }
</style></head>
<body>
  <div class="row"><span class="badge">new</span><p style="margin: 0; border-radius: 4px">Hello</p></div>
  <svg width="10" height="10"></svg>
</body></html>"#;

#[test]
fn html_check_finds_flexbox_and_position_in_a_style_sheet() {
    let server = TernServer::start("");
    let id = deliver(&server, "bob@example.com", &html_message("Flex", FLEX_AND_POSITION));
    let report = html_check(&server, &id);

    let flex = warning(&report, "css-display-flex");
    assert_eq!(flex["Score"]["Found"], 1);
    assert_eq!(flex["Category"], "css");
    assert!(flex["URL"].as_str().expect("URL").starts_with("https://www.caniemail.com/"));
    // Outlook for Windows renders with Word: no flexbox.
    let outlook_windows = flex["Results"]
        .as_array()
        .expect("Results")
        .iter()
        .filter(|r| r["Family"] == "outlook" && r["Platform"] == "windows")
        .collect::<Vec<_>>();
    assert!(!outlook_windows.is_empty() && outlook_windows.iter().all(|r| r["Support"] == "no"));
    assert!(number(&flex["Score"]["Unsupported"]) > 0.0);
    assert_eq!(warning(&report, "css-position")["Score"]["Found"], 1);
    assert_eq!(warning(&report, "css-left-right-top-bottom")["Score"]["Found"], 1);
    assert_eq!(warning(&report, "css-pseudo-class-hover")["Score"]["Found"], 1);
    assert_eq!(warning(&report, "css-border-radius")["Score"]["Found"], 1);
    assert_eq!(warning(&report, "html-style")["Score"]["Found"], 1);
    assert_eq!(warning(&report, "html-svg")["Score"]["Found"], 1);
    // What the comment says is not read; the rules are.
    assert!(!slugs(&report).contains(&"css-display-grid".to_string()));

    let total = &report["Total"];
    // style, div, span, p, svg.
    assert_eq!(total["Nodes"], 5);
    assert!(number(&total["Tests"]) > 100.0);
    let sum =
        number(&total["Supported"]) + number(&total["Partial"]) + number(&total["Unsupported"]);
    assert!((sum - 100.0).abs() < 0.01, "{total}");
    assert!(number(&total["Unsupported"]) > 0.0 && number(&total["Supported"]) < 100.0);
    // Worst first: the first warning is at least as bad as the flexbox one.
    let badness = |w: &Value| number(&w["Score"]["Unsupported"]) + number(&w["Score"]["Partial"]);
    assert!(
        report["Warnings"][0]["Slug"] != "html-style"
            || badness(&report["Warnings"][0]) >= badness(flex)
    );
    assert!(
        report["Platforms"]["windows"].as_array().expect("windows").iter().any(|f| f == "Outlook")
    );
}

#[test]
fn html_check_of_plain_html_has_no_warnings_and_full_support() {
    let server = TernServer::start("");
    let html = "<p>Hello <b>Bob</b>, see <a href=\"https://example.com/\">the site</a>.</p>";
    let id = deliver(&server, "bob@example.com", &html_message("Plain", html));
    let report = html_check(&server, &id);
    assert_eq!(report["Warnings"], serde_json::json!([]), "{report}");
    assert_eq!(report["Total"]["Nodes"], 3);
    assert_eq!(number(&report["Total"]["Supported"]), 100.0);
    assert_eq!(number(&report["Total"]["Unsupported"]), 0.0);
    assert_eq!(number(&report["Total"]["Partial"]), 0.0);
}

#[test]
fn html_check_answers_404_for_unknown_and_400_without_html_over_curl() {
    let server = TernServer::start("");
    let text = "From: sender@example.org\nTo: bob@example.com\nSubject: Text\n\nJust text.\n";
    let id = deliver(&server, "bob@example.com", text);
    let curl = |path: &str| {
        let url = format!("http://{}{path}", server.http);
        let out = support::run("curl", &["-s", "-w", "\n%{http_code}", &url], None);
        let (body, status) = out.rsplit_once('\n').expect("status line");
        (status.to_string(), serde_json::from_str::<Value>(body).expect("a JSON body"))
    };
    let (status, body) = curl(&format!("/api/v1/message/{id}/html-check"));
    assert_eq!(
        (status.as_str(), &body["Error"]),
        ("400", &Value::from("message does not contain HTML"))
    );
    let (status, body) = curl("/api/v1/message/01ARZ3NDEKTSV4RRFFQ69G5FAV/html-check");
    assert_eq!((status.as_str(), &body["Error"]), ("404", &Value::from("Message not found")));
    let (status, _) = curl("/api/v1/message/latest/html-check");
    assert_eq!(status, "400", "latest is the text message");
}

// ---------------------------------------------------------------------------------------
// The dashboard's numbers

/// `GET /api/v1/stats` (with `headers`), validated against Tern's document.
fn stats(server: &TernServer, headers: &[(&str, &str)]) -> Value {
    let stats = http::request(server.http, "GET", "/api/v1/stats", headers, b"").json_with(200);
    schema::tern().check("Stats", &stats);
    stats
}

fn sum(series: &Value, key: &str) -> u64 {
    series.as_array().expect("a series").iter().map(|point| point[key].as_u64().expect(key)).sum()
}

#[test]
fn stats_of_a_catcher_count_mail_received_over_smtp_and_have_no_queue() {
    let server = TernServer::start("");
    for n in 0..3 {
        let message = format!("From: a@example.org\nTo: bob@example.com\nSubject: n{n}\n\nHi.\n");
        deliver(&server, "bob@example.com", &message);
    }
    let stats = stats(&server, &[]);
    assert_eq!(stats["Outbound"], false);
    let minutes = stats["ReceivedPerMinute"].as_array().expect("ReceivedPerMinute");
    assert_eq!(minutes.len(), 60);
    assert_eq!(sum(&stats["ReceivedPerMinute"], "Count"), 3);
    // All three arrived within the last two minutes, even if a minute began in between.
    assert_eq!(minutes[58]["Count"].as_u64().unwrap() + minutes[59]["Count"].as_u64().unwrap(), 3);
    assert_eq!(stats["Totals"]["Messages"], 3);
    assert_eq!(stats["Totals"]["Unread"], 3);
    assert_eq!(stats["Totals"]["AcceptedSinceStart"], 3);
    assert_eq!(stats["Queue"], Value::Null);
    assert_eq!(stats["OutcomesPerHour"], Value::Null);
    assert_eq!(stats["TopDestinations"], serde_json::json!([]));
}

#[test]
fn stats_of_an_mta_show_its_queue_destinations_errors_and_deferred_attempts() {
    const KEY: &str = "stats-admin-key";
    let config = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n\
         [http]\nrequire_auth = true\napi_key = \"{KEY}\"\n"
    );
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    let (server, _) = TernServer::start_mta(&listeners, &config, is_tern_banner);
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO app.internal", "250");
    let body = b"From: app@internal.example\r\nSubject: out\r\n\r\nHello.\r\n";
    client.send_message("app@internal.example", &["a@far.example", "b@far.example"], body);
    client.send_message("app@internal.example", &["c@near.example"], body);
    client.cmd("QUIT", "221");

    let bearer = format!("Bearer {KEY}");
    let admin = [("Authorization", bearer.as_str())];
    // Without the key the numbers are not shown.
    let refused = http::request(server.http, "GET", "/api/v1/stats", &[], b"");
    assert_eq!(refused.status, 401, "{}", refused.text());

    // Each recipient's first attempt fails (its DNS server is a closed port) and is deferred.
    let deadline = Instant::now() + ATTEMPT_TIMEOUT;
    let stats = loop {
        let stats = stats(&server, &admin);
        if stats["TopErrors"].as_array().is_some_and(|e| !e.is_empty())
            && sum(&stats["OutcomesPerHour"], "Deferred") >= 3
        {
            break stats;
        }
        assert!(Instant::now() < deadline, "no deferred attempts in time: {stats:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(stats["Outbound"], true);
    assert_eq!(stats["Queue"]["Queued"], 3);
    assert_eq!(stats["Queue"]["Held"], 0);
    assert_eq!(stats["Queue"]["Messages"], 2);
    assert_eq!(
        stats["TopDestinations"],
        serde_json::json!([{"Domain": "far.example", "Entries": 2}, {"Domain": "near.example", "Entries": 1}])
    );
    assert_eq!(stats["QueueSampled"], 3);
    let error = stats["TopErrors"][0]["Error"].as_str().expect("an error");
    assert!(error.contains("DNS"), "{error}");
    assert_eq!(sum(&stats["OutcomesPerHour"], "Delivered"), 0);
    assert_eq!(sum(&stats["OutcomesPerHour"], "Bounced"), 0);
    assert_eq!(stats["OutcomesPerHour"].as_array().expect("hours").len(), 24);
    assert_eq!(sum(&stats["ReceivedPerMinute"], "Count"), 2);
}
