//! SendGrid's own Python library (PyPI `sendgrid`, pinned by `scripts/test`) pointed at the
//! real `tern serve` with another host: text, HTML, attachments (one inline by content id),
//! categories, custom args, headers and personalizations arrive as Tern messages (read back
//! through the Mailpit API and the store's envelope); bad requests get SendGrid's error list,
//! a request without a key `401`, sandbox mode stores nothing.
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

use std::time::Duration;

use serde_json::{Value, json};
use support::peers::{Postfix, PostfixOptions};
use support::{MtaListener, TernServer, is_tern_banner, text};

/// Python against one server's HTTP port (`HTTP`): `client()` is SendGrid's API client, and
/// `send(mail)` reports the status, the `X-Message-Id` and the error list.
const PY: &str = r#"
import base64
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (Mail, Attachment, FileContent, FileName, FileType,
    Disposition, ContentId, Personalization, To, Cc, Bcc, Category, CustomArg, Header,
    MailSettings, SandBoxMode, Substitution)

HTTP = int(ARGS[0])

def client():
    return SendGridAPIClient(api_key="SG.test-key", host="http://127.0.0.1:%d" % HTTP)

def send(mail):
    try:
        r = client().send(mail)
        return {"status": r.status_code, "id": r.headers.get("X-Message-Id"), "body": r.body.decode()}
    except HTTPError as e:
        return {"status": e.status_code, "errors": json.loads(e.body)["errors"]}
"#;

fn py(server: &TernServer, script: &str) -> Value {
    let port = server.http.port().to_string();
    support::python(&format!("{PY}\n{script}"), &[port.as_str()])
}

fn message(server: &TernServer, id: &str) -> Value {
    let message = http::get(server.http, &format!("/api/v1/message/{id}")).json_with(200);
    schema::check_both("Message", "Message", &message);
    message
}

fn addresses(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("an address list")
        .iter()
        .map(|a| a["Address"].as_str().expect("Address").to_string())
        .collect()
}

#[test]
fn the_sendgrid_library_sends_text_html_attachments_and_metadata() {
    let server = TernServer::start("");
    let sent = py(
        &server,
        r#"
m = Mail(from_email=("app@example.org", "The App"), to_emails=[To("user@example.com", "A User")],
         subject="Welcome aboard", plain_text_content="Hello in text",
         html_content='<p>Hello in <b>HTML</b> <img src="cid:logo"></p>')
m.add_attachment(Attachment(FileContent(base64.b64encode(b"%PDF-1.4 report").decode()),
                            FileName("report.pdf"), FileType("application/pdf"), Disposition("attachment")))
m.add_attachment(Attachment(FileContent(base64.b64encode(b"\x89PNG\r\n\x1a\nlogo").decode()),
                            FileName("logo.png"), FileType("image/png"), Disposition("inline"),
                            ContentId("logo")))
m.add_category(Category("welcome"))
m.add_category(Category("onboarding"))
m.add_custom_arg(CustomArg("user_id", "42"))
m.add_header(Header("X-Campaign", "spring"))
emit(**send(m))
"#,
    );
    assert_eq!(sent["status"], 202, "{sent}");
    assert_eq!(sent["body"], "", "SendGrid answers 202 with an empty body");
    let id = text(&sent, "id");
    let message = message(&server, id);
    assert_eq!(message["Subject"], "Welcome aboard");
    assert_eq!(message["From"]["Address"], "app@example.org");
    assert_eq!(message["From"]["Name"], "The App");
    assert_eq!(addresses(&message["To"]), ["user@example.com"]);
    assert_eq!(message["Text"].as_str().unwrap().trim(), "Hello in text");
    assert!(message["HTML"].as_str().unwrap().contains("<b>HTML</b>"), "{message}");
    assert_eq!(message["Attachments"].as_array().unwrap().len(), 1, "{message}");
    assert_eq!(message["Attachments"][0]["FileName"], "report.pdf");
    assert_eq!(message["Inline"].as_array().unwrap().len(), 1, "{message}");
    assert_eq!(message["Inline"][0]["ContentID"], "logo");
    assert_eq!(message["Tags"], json!(["onboarding", "welcome"]));
    let headers = http::get(server.http, &format!("/api/v1/message/{id}/headers")).json_with(200);
    assert_eq!(headers["X-Campaign"], json!(["spring"]));
    assert_eq!(headers["X-Custom-Args"], json!(["{\"user_id\":\"42\"}"]));
    assert!(headers["Received"][0].as_str().unwrap().contains("with HTTP"), "{headers}");
}

#[test]
fn personalizations_become_one_message_each_with_their_recipients() {
    let server = TernServer::start("");
    let sent = py(
        &server,
        r#"
m = Mail(from_email="news@example.org", subject="Default subject",
         plain_text_content="Hi -first-, your code is -code-")
for first, address, code in [("Ann", "ann@example.com", "111"), ("Bob", "bob@example.com", "222")]:
    p = Personalization()
    p.add_to(To(address))
    p.add_bcc(Bcc("audit-%s@example.org" % first.lower()))
    p.subject = "For %s" % first
    p.add_substitution(Substitution("-first-", first))
    p.add_substitution(Substitution("-code-", code))
    m.add_personalization(p)
emit(**send(m))
"#,
    );
    assert_eq!(sent["status"], 202, "{sent}");
    let page = http::get(server.http, "/api/v1/messages").json_with(200);
    assert_eq!(page["total"], 2, "{page}");
    for (first, address, code) in
        [("Ann", "ann@example.com", "111"), ("Bob", "bob@example.com", "222")]
    {
        let found =
            http::get(server.http, &format!("/api/v1/search?query=subject:%22For%20{first}%22"))
                .json_with(200);
        let id = found["messages"][0]["ID"].as_str().expect("found by subject").to_string();
        let message = message(&server, &id);
        assert_eq!(addresses(&message["To"]), [address]);
        assert!(
            message["Text"].as_str().unwrap().contains(&format!("Hi {first}, your code is {code}"))
        );
        let stored = server.message(&id).expect("stored");
        let rcpts: Vec<&str> =
            stored.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
        let audit = format!("audit-{}@example.org", first.to_lowercase());
        assert_eq!(rcpts, [address, audit.as_str()], "Bcc is an envelope recipient only");
        let raw = String::from_utf8_lossy(&stored.raw);
        assert!(!raw.contains("audit-"), "Bcc is not in the headers");
    }
}

#[test]
fn bad_requests_get_sendgrid_errors_and_nothing_is_stored() {
    let server = TernServer::start("");
    let sent = py(
        &server,
        r#"
def mail(**kw):
    m = Mail(from_email=kw.get("sender", "app@example.org"), to_emails=kw.get("to", "user@example.com"),
             subject=kw.get("subject", "s"), plain_text_content="text")
    return m

bad_from = send(mail(sender="not-an-address"))
injected = send(mail(subject="Hi\r\nBcc: victim@example.com"))
many = mail()
p = Personalization()
for i in range(10000):
    p.add_to(To("user%d@example.com" % i))
many.add_personalization(p)
too_many = send(many)
attach = mail()
attach.add_attachment(Attachment(FileContent("!!! not base64"), FileName("x.bin")))
bad_attachment = send(attach)
sandbox = mail()
sandbox.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
sandboxed = send(sandbox)
emit(bad_from=bad_from, injected=injected, too_many=too_many, bad_attachment=bad_attachment,
     sandboxed=sandboxed)
"#,
    );
    let field_of = |key: &str| -> Vec<String> {
        let result = &sent[key];
        assert_eq!(result["status"], 400, "{key}: {result}");
        schema::tern().check("SendGridErrors", &json!({"errors": result["errors"]}));
        result["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(field_of("bad_from").contains(&"from.email".to_string()), "{sent}");
    assert!(field_of("injected").contains(&"subject".to_string()), "{sent}");
    assert!(field_of("too_many").contains(&"personalizations".to_string()), "{sent}");
    assert!(field_of("bad_attachment").contains(&"attachments.0.content".to_string()), "{sent}");
    assert_eq!(sent["sandboxed"]["status"], 200, "{sent}");
    // Without a key SendGrid says 401; a body that is no JSON is a 400 in SendGrid's shape.
    let body = json!({"personalizations": [{"to": [{"email": "a@example.com"}]}],
                      "from": {"email": "b@example.org"}, "subject": "s",
                      "content": [{"type": "text/plain", "value": "x"}]});
    let response = http::send_json(server.http, "POST", "/v3/mail/send", &body);
    let errors = response.json_with(401);
    assert_eq!(errors["errors"][0]["message"], "authorization required");
    let response = http::request(
        server.http,
        "POST",
        "/v3/mail/send",
        &[("Content-Type", "application/json"), ("Authorization", "Bearer SG.x")],
        b"{not json",
    );
    schema::tern().check("SendGridErrors", &response.json_with(400));
    let page = http::get(server.http, "/api/v1/messages").json_with(200);
    assert_eq!(page["total"], 0, "nothing stored: {page}");
}

/// A SendGrid request to `to` from `from`, with `key` as the bearer token.
fn sendgrid_post(server: &TernServer, key: &str, from: &str, to: &[&str]) -> http::Response {
    let to: Vec<Value> = to.iter().map(|a| json!({"email": a})).collect();
    let body = json!({
        "personalizations": [{"to": to}],
        "from": {"email": from},
        "subject": "Delivered over the API",
        "content": [{"type": "text/plain", "value": "Sent through SendGrid's API shape."}]
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    let auth = format!("Bearer {key}");
    http::request(
        server.http,
        "POST",
        "/v3/mail/send",
        &[("Content-Type", "application/json"), ("Authorization", &auth)],
        &bytes,
    )
}

#[test]
fn a_mail_server_delivers_api_mail_signs_it_and_relays_only_with_the_key() {
    let data = support::temp_dir("api-mta");
    let keys = support::dkim_generate(&data.join("store").join("dkim"), "tern.test", &[]);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let remote = Postfix::mx(&["bob@remote.test"], PostfixOptions::default());
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    let extra = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\n\n[outbound]\nrelay_host = \"{}\"\n\
         tls = \"off\"\n\n[http]\nrequire_auth = true\napi_key = \"secret-key\"\n",
        remote.addr()
    );
    let (server, _) = TernServer::start_mta_in(&data, &listeners, &extra, is_tern_banner);
    server.add_account("alice@tern.test", "alice-password");

    let response = sendgrid_post(
        &server,
        "secret-key",
        "app@tern.test",
        &["bob@remote.test", "alice@tern.test"],
    );
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.header("x-message-id").expect("X-Message-Id").to_string();
    let stored = server.message(&id).expect("stored");
    let routes: Vec<String> =
        stored.envelope.recipients.iter().map(|r| r.route.as_str().to_string()).collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert_eq!(stored.envelope.recipients[1].route.account(), Some("alice@tern.test"));
    let delivered = remote.wait_for_messages("bob@remote.test", 1, Duration::from_secs(60));
    let delivered = String::from_utf8_lossy(&delivered[0]).into_owned();
    assert!(delivered.contains("Subject: Delivered over the API"), "{delivered}");
    assert!(
        delivered.contains("DKIM-Signature:") && delivered.contains("d=tern.test"),
        "{delivered}"
    );
    assert!(delivered.contains("with HTTP"), "the trace names the API: {delivered}");

    // Mailpit's send API takes the same road.
    let body = json!({"From": {"Email": "app@tern.test"}, "To": [{"Email": "bob@remote.test"}],
                      "Subject": "Mailpit shape", "Text": "hello"});
    let bytes = serde_json::to_vec(&body).unwrap();
    let response = http::request(
        server.http,
        "POST",
        "/api/v1/send",
        &[("Content-Type", "application/json"), ("Authorization", "Bearer secret-key")],
        &bytes,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    remote.wait_for_messages("bob@remote.test", 2, Duration::from_secs(60));

    let wrong = sendgrid_post(&server, "guess", "app@tern.test", &["bob@remote.test"]);
    assert_eq!(wrong.status, 401, "{}", wrong.text());
}

#[test]
fn without_http_authentication_the_api_may_not_relay() {
    let listeners = [MtaListener { role: "mx", allow_plaintext_auth: false }];
    let extra = "[relay]\nlocal_domains = [\"tern.test\"]\n";
    let (server, _) = TernServer::start_mta(&listeners, extra, is_tern_banner);
    server.add_account("alice@tern.test", "alice-password");
    let relay = sendgrid_post(&server, "any", "app@tern.test", &["bob@remote.test"]);
    let errors = relay.json_with(400);
    let message = errors["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("550 5.7.1"), "{errors}");
    let local = sendgrid_post(&server, "any", "app@elsewhere.test", &["alice@tern.test"]);
    assert_eq!(local.status, 202, "{}", local.text());
    let id = local.header("x-message-id").expect("X-Message-Id").to_string();
    let stored = server.message(&id).expect("stored");
    assert_eq!(stored.envelope.recipients[0].route.account(), Some("alice@tern.test"));
}
