//! The outbound queue API through the router (`oneshot`), over a real store and spool but no
//! scheduler, so entries stay exactly as the requests leave them: listing and filtering,
//! showing one message, retry/hold/release/delete with their body rules, admin-only access,
//! and Mailpit's release of a stored message to new recipients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tern_http::{HttpAuth, PasswordCheck};
use tern_queue::Event;
use tern_store::{MessageId, QueueFilter, Route};
use tower::ServiceExt as _;

use common::Harness;

const API_KEY: &str = "admin-key";

/// Accounts whose password is `pw`.
struct Accounts;

impl PasswordCheck for Accounts {
    fn verify(&self, login: &str, password: &str) -> Option<String> {
        (password == "pw").then(|| login.to_string())
    }
}

impl Harness {
    /// Sends one request; returns the status and the body (JSON when it parses, else a string).
    async fn call_with(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let request = request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response =
            tern_http::router(self.state.clone()).oneshot(request).await.expect("router answers");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn call(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        self.call_with(method, uri, None, body).await
    }

    /// A request that must answer 200; returns its body.
    async fn ok(&self, method: &str, uri: &str, body: &str) -> Value {
        let (status, value) = self.call(method, uri, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {uri} {body} -> {value}");
        value
    }

    /// The request must fail with `status` and a JSON `{"Error": …}`; returns the message.
    async fn refused(&self, status: StatusCode, method: &str, uri: &str, body: &str) -> String {
        let (got, value) = self.call(method, uri, body).await;
        assert_eq!(got, status, "{method} {uri} {body} -> {value}");
        value["Error"].as_str().unwrap_or_else(|| panic!("no JSON error: {value}")).to_string()
    }

    /// `(recipient, state)` of every entry, by message then entry.
    async fn states(&self) -> Vec<(String, String)> {
        let list = self.ok("GET", "/api/v1/queue", "").await;
        entries(&list)
            .iter()
            .map(|e| (text(e, "Recipient").to_string(), text(e, "State").to_string()))
            .collect()
    }
}

fn entries(list: &Value) -> &Vec<Value> {
    list["Entries"].as_array().unwrap_or_else(|| panic!("no Entries: {list}"))
}

#[track_caller]
fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {value}"))
}

fn ids(list: &[&str]) -> String {
    json!({ "IDs": list }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_lists_each_remote_recipient_and_shows_one_message() {
    let h = Harness::open();
    let empty = h.ok("GET", "/api/v1/queue", "").await;
    assert_eq!(empty, json!({"Total": 0, "Queued": 0, "Held": 0, "Messages": 0, "Entries": []}));

    let first = h
        .submit(
            "app@tern.test",
            "App <app@tern.test>",
            &[
                ("x@remote.example", Route::Remote),
                ("kept@tern.test", Route::Capture),
                ("y@Other.Example", Route::Remote),
            ],
        )
        .await;
    let second =
        h.submit("app@tern.test", "app@tern.test", &[("z@remote.example", Route::Remote)]).await;

    let list = h.ok("GET", "/api/v1/queue", "").await;
    assert_eq!((&list["Total"], &list["Queued"], &list["Held"]), (&json!(3), &json!(3), &json!(0)));
    assert_eq!(list["Messages"], 2);
    let entry = entries(&list)
        .iter()
        .find(|e| e["Recipient"] == "y@Other.Example")
        .unwrap_or_else(|| panic!("no entry for y: {list}"));
    assert_eq!(text(entry, "MessageID"), first);
    assert_eq!(text(entry, "Sender"), "app@tern.test");
    assert_eq!(text(entry, "Domain"), "other.example");
    assert_eq!(text(entry, "State"), "queued");
    assert_eq!(entry["Attempts"], 0);
    assert_eq!(text(entry, "Created"), "2020-09-13T12:26:40.000Z");
    assert_eq!(text(entry, "NextAttempt"), "2020-09-13T12:26:40.000Z");
    assert_eq!((&entry["LastAttempt"], &entry["LastError"]), (&Value::Null, &Value::Null));
    assert_eq!(entry["DelayWarned"], false);
    assert!(entry["ID"].is_i64(), "{entry}");

    let page = h.ok("GET", "/api/v1/queue?start=1&limit=1", "").await;
    assert_eq!((page["Total"].as_u64(), entries(&page).len()), (Some(3), 1));
    let held = h.ok("GET", "/api/v1/queue?state=held", "").await;
    assert_eq!((held["Total"].as_u64(), held["Queued"].as_u64()), (Some(0), Some(3)));
    let error = h.refused(StatusCode::BAD_REQUEST, "GET", "/api/v1/queue?state=stuck", "").await;
    assert!(error.contains("state"), "{error}");
    h.refused(StatusCode::BAD_REQUEST, "GET", "/api/v1/queue?limit=many", "").await;

    let shown = h.ok("GET", &format!("/api/v1/queue/{first}"), "").await;
    assert_eq!(text(&shown, "ID"), first);
    assert_eq!(text(&shown, "From"), "app@tern.test");
    assert_eq!(text(&shown, "Subject"), "queue test");
    assert_eq!(text(&shown, "Received"), "2020-09-13T12:26:40.000Z");
    assert!(shown["Size"].as_u64().is_some_and(|size| size > 90), "{shown}");
    let recipients: Vec<&str> = entries(&shown).iter().map(|e| text(e, "Recipient")).collect();
    assert_eq!(recipients, ["x@remote.example", "y@Other.Example"]);
    assert_eq!(entries(&h.ok("GET", &format!("/api/v1/queue/{second}"), "").await).len(), 1);

    let unknown = MessageId::generate();
    let error =
        h.refused(StatusCode::NOT_FOUND, "GET", &format!("/api/v1/queue/{unknown}"), "").await;
    assert!(error.contains("not in the queue"), "{error}");
    h.refused(StatusCode::BAD_REQUEST, "GET", "/api/v1/queue/not-an-id", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_hold_release_and_delete_change_the_named_messages() {
    let h = Harness::open();
    let remote_only =
        h.submit("a@tern.test", "a@tern.test", &[("x@remote.example", Route::Remote)]).await;
    let also_kept = h
        .submit(
            "b@tern.test",
            "b@tern.test",
            &[("y@remote.example", Route::Remote), ("kept@tern.test", Route::Capture)],
        )
        .await;
    let mut events = h.state.spool.subscribe();

    let held = h.ok("POST", "/api/v1/queue/hold", &ids(&[&remote_only])).await;
    assert_eq!(held, json!({"Messages": 1}));
    assert!(
        std::iter::from_fn(|| events.try_recv().ok()).any(|e| matches!(e, Event::QueueChanged)),
        "a command publishes QueueChanged, which wakes the scheduler and the queue page"
    );
    let expected = [("x@remote.example", "held"), ("y@remote.example", "queued")];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(r, s)| (r.to_string(), s.to_string())).collect();
    let mut states = h.states().await;
    states.sort();
    assert_eq!(states, expected);
    let held_list = h.ok("GET", "/api/v1/queue?state=held", "").await;
    assert_eq!((held_list["Total"].as_u64(), held_list["Held"].as_u64()), (Some(1), Some(1)));

    // Retry makes queued entries due now and leaves held ones held.
    let before = h.ok("GET", &format!("/api/v1/queue/{also_kept}"), "").await;
    let retried = h.ok("POST", "/api/v1/queue/retry", r#"{"All": true}"#).await;
    assert_eq!(retried, json!({"Messages": 2}));
    let after = h.ok("GET", &format!("/api/v1/queue/{also_kept}"), "").await;
    assert!(
        text(&entries(&after)[0], "NextAttempt") > text(&entries(&before)[0], "NextAttempt"),
        "retry moves the next attempt to now: {before} -> {after}"
    );
    assert_eq!(h.ok("GET", "/api/v1/queue?state=held", "").await["Total"], 1);

    // Unknown ids match nothing; the known one is released and due now.
    let unknown = MessageId::generate().to_string();
    let released = h.ok("POST", "/api/v1/queue/release", &ids(&[&remote_only, &unknown])).await;
    assert_eq!(released, json!({"Messages": 1}));
    assert!(h.states().await.iter().all(|(_, state)| state == "queued"));
    assert_eq!(h.ok("POST", "/api/v1/queue/hold", &ids(&[&unknown])).await, json!({"Messages": 0}));

    // Deleting the entries of a remote-only message deletes the message; a kept copy stays.
    let deleted = h.ok("DELETE", "/api/v1/queue", &ids(&[&remote_only])).await;
    assert_eq!(deleted, json!({"Messages": 1}));
    h.refused(StatusCode::NOT_FOUND, "GET", &format!("/api/v1/message/{remote_only}"), "").await;
    assert_eq!(h.ok("DELETE", "/api/v1/queue", r#"{"All": true}"#).await, json!({"Messages": 1}));
    assert_eq!(h.ok("GET", "/api/v1/queue", "").await["Total"], 0);
    h.ok("GET", &format!("/api/v1/message/{also_kept}"), "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_names_its_messages_or_all_never_both_nor_neither() {
    let h = Harness::open();
    let id = h.submit("a@tern.test", "a@tern.test", &[("x@remote.example", Route::Remote)]).await;
    for path in ["/api/v1/queue/retry", "/api/v1/queue/hold", "/api/v1/queue/release"] {
        for body in ["", "{}", r#"{"IDs": []}"#, r#"{"All": false}"#, "{not json"] {
            h.refused(StatusCode::BAD_REQUEST, "POST", path, body).await;
        }
        let both = json!({"IDs": [id], "All": true}).to_string();
        let error = h.refused(StatusCode::BAD_REQUEST, "POST", path, &both).await;
        assert!(error.contains("not both"), "{error}");
        let error = h.refused(StatusCode::BAD_REQUEST, "POST", path, &ids(&["x1"])).await;
        assert!(error.contains("invalid message id"), "{error}");
    }
    // A DELETE without a body must never empty the queue.
    h.refused(StatusCode::BAD_REQUEST, "DELETE", "/api/v1/queue", "").await;
    assert_eq!(h.ok("GET", "/api/v1/queue", "").await["Total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_management_is_for_the_admin_only() {
    let auth = HttpAuth::new(Some(API_KEY.into()), Some(Arc::new(Accounts)));
    let h = Harness::new(Some(Arc::new(auth)), None);
    let id = h.submit("a@tern.test", "a@tern.test", &[("x@remote.example", Route::Capture)]).await;
    let account = "Basic YWxpY2VAdGVybi50ZXN0OnB3"; // alice@tern.test:pw
    let admin = format!("Bearer {API_KEY}");
    let requests = [
        ("GET", "/api/v1/queue".to_string(), ""),
        ("GET", format!("/api/v1/queue/{id}"), ""),
        ("POST", "/api/v1/queue/retry".into(), r#"{"All": true}"#),
        ("POST", "/api/v1/queue/hold".into(), r#"{"All": true}"#),
        ("POST", "/api/v1/queue/release".into(), r#"{"All": true}"#),
        ("DELETE", "/api/v1/queue".into(), r#"{"All": true}"#),
        ("POST", format!("/api/v1/message/{id}/release"), r#"{"To": ["u@remote.example"]}"#),
    ];
    for (method, uri, body) in &requests {
        let (status, value) = h.call_with(method, uri, Some(account), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri} as an account: {value}");
        assert!(text(&value, "Error").contains("admin API key"), "{value}");
        let (status, _) = h.call_with(method, uri, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} without credentials");
    }
    let (status, list) = h.call_with("GET", "/api/v1/queue", Some(&admin), "").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["Total"], 0, "the account's attempts changed nothing");
    let release = r#"{"To": ["u@remote.example"]}"#;
    let uri = format!("/api/v1/message/{id}/release");
    let (status, answer) = h.call_with("POST", &uri, Some(&admin), release).await;
    assert_eq!((status, answer), (StatusCode::OK, json!("ok")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_queues_a_stored_message_for_new_recipients_without_reports() {
    let h = Harness::open();
    let (_, webui) = h.call("GET", "/api/v1/webui", "").await;
    assert_eq!(webui["MessageRelay"]["Enabled"], true);
    let captured =
        h.submit("", "\"The App\" <app@example.org>", &[("dev@example.com", Route::Capture)]).await;
    let enveloped = h
        .submit("bounces@example.org", "app@example.org", &[("dev@example.com", Route::Capture)])
        .await;

    let body = json!({"To": ["one@remote.example", " two@remote.example "]}).to_string();
    let (status, answer) =
        h.call("POST", &format!("/api/v1/message/{captured}/release"), &body).await;
    assert_eq!((status, answer), (StatusCode::OK, json!("ok")), "Mailpit answers a plain ok");
    // `latest` is the newest message, as in Mailpit.
    h.ok("POST", "/api/v1/message/latest/release", r#"{"To": ["three@remote.example"]}"#).await;

    let shown = h.ok("GET", &format!("/api/v1/queue/{captured}"), "").await;
    let senders: Vec<(&str, &str)> =
        entries(&shown).iter().map(|e| (text(e, "Recipient"), text(e, "Sender"))).collect();
    assert_eq!(
        senders,
        [("one@remote.example", "app@example.org"), ("two@remote.example", "app@example.org")],
        "an empty envelope sender is replaced by the From address"
    );
    let shown = h.ok("GET", &format!("/api/v1/queue/{enveloped}"), "").await;
    assert_eq!(text(&entries(&shown)[0], "Sender"), "bounces@example.org");
    let notify = h
        .state
        .readers
        .run(|store| store.queue_entries(&QueueFilter::default()))
        .await
        .expect("read the queue");
    assert!(notify.0.iter().all(|e| e.notify == ["NEVER"]), "no reports: {:?}", notify.0);
    // The captured copy stays in the catcher.
    h.ok("GET", &format!("/api/v1/message/{captured}"), "").await;

    let release = format!("/api/v1/message/{captured}/release");
    for (body, complaint) in [
        (r#"{"To": []}"#, "no recipients"),
        ("", "no recipients"),
        (r#"{"To": ["<a@remote.example>"]}"#, "invalid address"),
        (r#"{"To": ["a@remote.example\r\nRCPT TO:<b@x>"]}"#, "invalid address"),
        (r#"{"To": ["a b@remote.example"]}"#, "invalid address"),
        (r#"{"To": ["nobody"]}"#, "invalid address"),
        (r#"{"To": "a@remote.example"}"#, "invalid JSON"),
    ] {
        let error = h.refused(StatusCode::BAD_REQUEST, "POST", &release, body).await;
        assert!(error.contains(complaint), "{body}: {error}");
    }
    let unknown = format!("/api/v1/message/{}/release", MessageId::generate());
    h.refused(StatusCode::NOT_FOUND, "POST", &unknown, r#"{"To": ["a@remote.example"]}"#).await;
    assert_eq!(h.ok("GET", "/api/v1/queue", "").await["Total"], 3, "refusals queue nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_is_refused_when_the_server_may_not_send() {
    let reason = "releasing needs an SMTP relay: set [outbound] relay_host";
    let h = Harness::new(None, Some(reason));
    let id = h.submit("a@tern.test", "a@tern.test", &[("dev@example.com", Route::Capture)]).await;
    let uri = format!("/api/v1/message/{id}/release");
    let error =
        h.refused(StatusCode::BAD_REQUEST, "POST", &uri, r#"{"To": ["a@x.example"]}"#).await;
    assert_eq!(error, reason);
    assert_eq!(h.ok("GET", "/api/v1/queue", "").await["Total"], 0);
    let (_, webui) = h.call("GET", "/api/v1/webui", "").await;
    assert_eq!(webui["MessageRelay"]["Enabled"], false);
}
