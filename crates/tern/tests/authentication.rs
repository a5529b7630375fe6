//! Message authentication end to end, with peers we did not write: dnsmasq serves the SPF,
//! DMARC and DKIM key records; dkimpy signs genuine mail and Python's smtplib hands it to
//! Tern's `mx` listener; a Postfix MX receives what Tern relays and dkimpy verifies Tern's
//! signatures on it. `tern dkim generate` makes the keys and `tern dkim check` reads the
//! published records back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::peers::{DnsRecord, Dnsmasq, Postfix, PostfixOptions, free_port_on_all};
use support::{
    Client, MtaListener, TernServer, dkim_generate, is_tern_banner, python, temp_dir, text,
};

const MX: [MtaListener; 1] = [MtaListener { role: "mx", allow_plaintext_auth: false }];

/// Signs `message` with dkimpy (key file `key`, PKCS#1 PEM) as `selector` of `domain`, sends it
/// from `from` over smtplib to `port`, and returns the end-of-data (or first refusing) reply.
const SIGN_AND_SEND: &str = r#"
import dkim
port, sender, rcpt, message, key, selector, domain = ARGS
message = message.replace("\\r\\n", "\r\n").encode()
if key:
    signature = dkim.sign(message, selector.encode(), domain.encode(), open(key, "rb").read(),
                          include_headers=[b"from", b"to", b"subject"])
    message = signature + message
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="mail.sender.test", timeout=30)
s.ehlo("mail.sender.test")
for step in (lambda: s.mail(sender), lambda: s.rcpt(rcpt), lambda: s.data(message)):
    code, text = step()
    if code >= 400:
        break
s.quit()
emit(reply=f"{code} {text.decode()}")
"#;

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: {from}\\r\\nTo: bob@tern.test\\r\\nSubject: {subject}\\r\\n\
         Authentication-Results: tern.test; dmarc=pass (forged by the sender)\\r\\n\\r\\nHello.\\r\\n"
    )
}

#[test]
fn received_mail_is_judged_by_spf_dkim_and_dmarc_as_dns_publishes_them() {
    let data = temp_dir("auth-inbound");
    let keys = data.join("sender-keys");
    let [(selector, record)] =
        dkim_generate(&keys, "sender.test", &["--algorithm", "rsa", "--selector", "s1"])
            .try_into()
            .expect("one key");
    let dns = Dnsmasq::start(&[
        // sender.test: mail only from 192.0.2.1, DKIM key s1, reject what fails.
        DnsRecord::txt("sender.test", "v=spf1 ip4:192.0.2.1 -all"),
        DnsRecord::txt("_dmarc.sender.test", "v=DMARC1; p=reject"),
        DnsRecord::txt(&format!("{selector}._domainkey.sender.test"), &record),
        // quarantined.test: same SPF, asks for quarantine.
        DnsRecord::txt("quarantined.test", "v=spf1 ip4:192.0.2.1 -all"),
        DnsRecord::txt("_dmarc.quarantined.test", "v=DMARC1; p=quarantine"),
        // loopback.test: its SPF lists loopback, so unsigned mail passes by aligned SPF.
        DnsRecord::txt("loopback.test", "v=spf1 ip4:127.0.0.0/8 -all"),
        DnsRecord::txt("_dmarc.loopback.test", "v=DMARC1; p=reject"),
        DnsRecord::timeout("slow.test"),
    ]);
    let toml = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\n\n\
         [outbound]\ndns_servers = [\"{}\"]\ndns_timeout_secs = 1\n\n\
         [auth]\nreceived_spf = true\n",
        dns.addr()
    );
    let (server, addrs) = TernServer::start_mta_in(&data, &MX, &toml, is_tern_banner);
    let store = server.store_dir().display().to_string();
    let add = ["account", "add", "bob@tern.test", "--password-stdin", "--data", store.as_str()];
    support::run(env!("CARGO_BIN_EXE_tern"), &add, Some(b"pw\n"));
    let port = addrs[0].port().to_string();
    let key_file = keys.join(format!("sender.test.{selector}.key")).display().to_string();
    let send = |from: &str, subject: &str, signed: bool| {
        let key = if signed { key_file.as_str() } else { "" };
        let body = message(from, subject);
        let args = [port.as_str(), from, "bob@tern.test", &body, key, &selector, "sender.test"];
        text(&python(SIGN_AND_SEND, &args), "reply").to_string()
    };

    // Genuine: signed by sender.test from a host SPF does not list; DKIM aligns, DMARC passes.
    let reply = send("alice@sender.test", "genuine", true);
    assert!(reply.starts_with("250"), "{reply}");
    let stored = server.message(support::queue_id(&reply).as_deref().expect("id")).expect("stored");
    let head = String::from_utf8_lossy(&stored.received_header);
    let results = head.split("Authentication-Results: ").nth(1).expect("A-R added");
    for expected in
        ["tern.test;", "dkim=pass", "spf=fail", "smtp.mailfrom=alice@sender.test", "dmarc=pass"]
    {
        assert!(results.contains(expected), "{expected} missing in:\n{head}");
    }
    assert!(head.contains("Received-SPF: fail"), "{head}");
    let raw = String::from_utf8_lossy(&stored.raw);
    assert!(!raw.contains("forged by the sender"), "the forged field stayed:\n{raw}");
    // The API reads the results back, per method.
    let url = format!("http://{}/api/v1/message/{}/authentication", server.http, stored.id);
    let api: serde_json::Value =
        serde_json::from_str(&support::run("curl", &["-sS", "--fail", &url], None)).expect("JSON");
    assert_eq!(api["AuthservID"], "tern.test", "{api}");
    let methods: Vec<(String, String)> = api["Results"]
        .as_array()
        .expect("Results")
        .iter()
        .map(|r| (r["Method"].as_str().unwrap().into(), r["Result"].as_str().unwrap().into()))
        .collect();
    for expected in [("dkim", "pass"), ("dmarc", "pass"), ("spf", "fail")] {
        assert!(methods.iter().any(|(m, r)| (m.as_str(), r.as_str()) == expected), "{api}");
    }

    // A spoof of the p=reject domain: refused at end of data, naming the domain.
    let reply = send("ceo@sender.test", "spoof", false);
    assert!(reply.starts_with("550 5.7.1") && reply.contains("sender.test"), "{reply}");

    // p=quarantine: stored, tagged junk.
    let reply = send("ann@quarantined.test", "quarantine me", false);
    assert!(reply.starts_with("250"), "{reply}");
    let stored = server.message(support::queue_id(&reply).as_deref().expect("id")).expect("stored");
    assert!(stored.summary.tags.contains(&"junk".to_string()), "{:?}", stored.summary.tags);

    // Aligned SPF alone passes DMARC.
    let reply = send("ann@loopback.test", "spf only", false);
    assert!(reply.starts_with("250"), "{reply}");

    // DNS that never answers: put off, not refused.
    let reply = send("ann@slow.test", "slow", false);
    assert!(reply.starts_with("451 4.7."), "{reply}");
    assert!(server.stderr().contains("authentication results"), "one log line per message");
}

#[test]
fn mail_from_users_is_signed_and_forwarded_mail_sealed_and_the_next_hop_verifies_both() {
    let data = temp_dir("auth-signing");
    // Tern's default key set for its domain: RSA-2048 and Ed25519, in the default key dir.
    let keys = dkim_generate(&data.join("store").join("dkim"), "tern.test", &[]);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mx_ip = Ipv4Addr::new(127, 0, 0, 2);
    let mx_port = free_port_on_all(&[mx_ip]);
    let mut records: Vec<DnsRecord> = keys
        .iter()
        .map(|(selector, record)| {
            DnsRecord::txt(&format!("{selector}._domainkey.tern.test"), record)
        })
        .collect();
    records.push(DnsRecord::mx("dest.test", "mx.dest.test", 10));
    records.push(DnsRecord::txt("sender.test", "v=spf1 ip4:127.0.0.0/8 -all"));
    records.push(DnsRecord::a("mx.dest.test", mx_ip));
    let dns = Dnsmasq::start(&records);
    let postfix = Postfix::mx(
        &["bob@dest.test", "carol@dest.test"],
        PostfixOptions { ip: mx_ip, port: Some(mx_port), ..PostfixOptions::default() },
    );
    let toml = format!(
        "[relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.1/32\"]\n\n\
         [outbound]\ndns_servers = [\"{}\"]\nmx_port = {mx_port}\ndns_timeout_secs = 2\n\n\
         [queue]\nretry_first_secs = 1\nretry_max_secs = 1\n\n[auth]\nverify = true\n",
        dns.addr()
    );
    let (server, addrs) = TernServer::start_mta_in(&data, &MX, &toml, is_tern_banner);
    let mut client = Client::greeted(addrs[0]);
    client.cmd("EHLO app.tern.test", "250");
    let body = b"From: Alice <alice@tern.test>\r\nTo: bob@dest.test\r\nSubject: signed by Tern\r\n\
Date: Thu, 03 Dec 2026 02:00:00 +0000\r\nMessage-ID: <s1@tern.test>\r\n\r\nTrailing space \r\n\r\n\r\n";
    client.send_message("alice@tern.test", &["bob@dest.test"], body);
    client.cmd("QUIT", "221");

    // And one the MX refuses: Tern's bounce (From: MAILER-DAEMON@tern.test) is signed too.
    let mut client = Client::greeted(addrs[0]);
    client.cmd("EHLO app.tern.test", "250");
    let refused =
        b"From: alice@tern.test\r\nTo: nobody@dest.test\r\nSubject: will bounce\r\n\r\nx\r\n";
    client.send_message("alice@tern.test", &["nobody@dest.test"], refused);
    client.cmd("QUIT", "221");

    let delivered = postfix.wait_for_messages("bob@dest.test", 1, Duration::from_secs(30));
    let received = &delivered[0];
    let text = String::from_utf8_lossy(received);
    assert_eq!(text.matches("DKIM-Signature:").count(), 2, "signed once, twice over:\n{text}");
    let records: serde_json::Map<String, serde_json::Value> =
        keys.iter().map(|(s, r)| (format!("{s}._domainkey.tern.test"), r.clone().into())).collect();
    let verdict = support::python_input(
        DKIMPY_VERIFY,
        &[&serde_json::to_string(&records).unwrap()],
        Some(received),
    );
    assert_eq!(verdict["results"], serde_json::json!([true, true]), "{text}");
    let bounce = wait_for_bounce(&server);
    let verdict = support::python_input(
        DKIMPY_VERIFY,
        &[&serde_json::to_string(&records).unwrap()],
        Some(&bounce),
    );
    assert_eq!(verdict["results"], serde_json::json!([true, true]), "the bounce's signatures");

    // The published records match the keys; one that is missing is reported.
    let key_dir = data.join("store").join("dkim").display().to_string();
    let dns_addr = dns.addr().to_string();
    let argv =
        ["dkim", "check", "tern.test", "--key-dir", key_dir.as_str(), "--dns", dns_addr.as_str()];
    let out = support::run(env!("CARGO_BIN_EXE_tern"), &argv, None);
    assert_eq!(out.matches(": ok").count(), 2, "{out}");

    // A stranger (127.0.0.5 is not trusted) writes to an alias that forwards to dest.test:
    // Tern checks the message and seals its verdict with ARC; dkimpy validates the chain.
    let store = server.store_dir().display().to_string();
    let alias = ["alias", "add", "fwd@tern.test", "carol@dest.test", "--data", store.as_str()];
    support::run(env!("CARGO_BIN_EXE_tern"), &alias, None);
    let sent = python(
        r#"
s = smtplib.SMTP(timeout=30, source_address=("127.0.0.5", 0))
s.connect("127.0.0.1", int(ARGS[0]))
s.ehlo("mail.sender.test")
s.sendmail("ann@sender.test", ["fwd@tern.test"],
           b"From: ann@sender.test\r\nTo: fwd@tern.test\r\nSubject: forwarded\r\n\r\nHi.\r\n")
s.quit()
emit(ok=True)
"#,
        &[&addrs[0].port().to_string()],
    );
    assert_eq!(sent["ok"], true);
    let forwarded = postfix.wait_for_messages("carol@dest.test", 1, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&forwarded[0]);
    assert!(text.contains("ARC-Seal: i=1;") && text.contains("d=tern.test"), "{text}");
    let verdict = support::python_input(
        DKIMPY_ARC_VERIFY,
        &[&serde_json::to_string(&records).unwrap()],
        Some(&forwarded[0]),
    );
    assert_eq!(verdict["cv"], "pass", "{verdict}\n{text}");
}

/// dkimpy validates the ARC chain of the message on stdin (records as in [`DKIMPY_VERIFY`]).
const DKIMPY_ARC_VERIFY: &str = r#"
import dkim, re
records = json.loads(ARGS[0])
message = re.sub(rb"(?<!\r)\n", b"\r\n", sys.stdin.buffer.read())
def dns(name, timeout=5):
    return records.get(name.decode().rstrip("."), "").encode() or None
cv, results, reason = dkim.arc_verify(message, dnsfunc=dns)
emit(cv=cv.decode(), reason=str(reason))
"#;

/// The bytes of the first notice (null sender) the server stored, as it would send them.
fn wait_for_bounce(server: &TernServer) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("http://{}/api/v1/search?query=from:mailer-daemon", server.http);
        let page: serde_json::Value =
            serde_json::from_str(&support::run("curl", &["-sS", "--fail", &url], None)).unwrap();
        if let Some(id) = page["messages"][0]["ID"].as_str() {
            let message = server.message(id).expect("stored");
            assert!(
                String::from_utf8_lossy(&message.received_header).contains("d=tern.test"),
                "unsigned bounce"
            );
            return message.full_message();
        }
        assert!(std::time::Instant::now() < deadline, "no bounce; stderr:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// dkimpy verifies every DKIM-Signature of the message on stdin with the TXT records of
/// `ARGS[0]` (JSON name → record) as its only DNS.
const DKIMPY_VERIFY: &str = r#"
import dkim
records = json.loads(ARGS[0])
import re
# The Maildir holds LF line ends; on the wire (and for DKIM) they are CRLF.
message = re.sub(rb"(?<!\r)\n", b"\r\n", sys.stdin.buffer.read())
def dns(name, timeout=5):
    return records.get(name.decode().rstrip("."), "").encode() or None
d = dkim.DKIM(message)
count = len([l for l in message.split(b"\r\n\r\n")[0].split(b"\n") if l.lower().startswith(b"dkim-signature:")])
emit(results=[bool(d.verify(idx=i, dnsfunc=dns)) for i in range(count)])
"#;
