//! `tern check` against real conditions. `--config FILE`: a free and a taken port, a
//! certificate with its own key and with another certificate's key, a data directory, a dnsmasq
//! that answers and a port that does not, and a file with a typo. `DOMAIN`: a dnsmasq serving a
//! well-kept domain and a neglected one, Postfix as their MX hosts (one with STARTTLS, one
//! without), and an HTTPS server (Python's) with their MTA-STS policies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::peers::{
    DnsRecord, Dnsmasq, Postfix, PostfixOptions, TlsFiles, free_port_on, self_signed_cert,
};
use support::{free_port, temp_dir};

/// Runs `tern check --config` on `text`; returns (success, stdout + stderr).
fn check(dir: &std::path::Path, text: &str) -> (bool, String) {
    let path = dir.join("tern.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn a_good_mta_configuration_passes_and_each_problem_is_named() {
    let dir = temp_dir("check");
    let good = self_signed_cert(
        &std::fs::create_dir_all(dir.join("a")).map(|()| dir.join("a")).unwrap(),
        "mx.tern.test",
    );
    let other = self_signed_cert(
        &std::fs::create_dir_all(dir.join("b")).map(|()| dir.join("b")).unwrap(),
        "other.test",
    );
    let dns = Dnsmasq::start(&[]);
    let (smtp, http) = (free_port(), free_port());
    let config = |cert: &std::path::Path, key: &std::path::Path, dns: &str| {
        format!(
            "mode = \"mta\"\nhostname = \"mx.tern.test\"\ndata_dir = {:?}\n\
             [[listener]]\naddress = \"127.0.0.1:{smtp}\"\nrole = \"mx\"\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\
             [tls]\ncert_path = {:?}\nkey_path = {:?}\n\
             [outbound]\ndns_servers = [\"{dns}\"]\ndns_timeout_secs = 1\n",
            dir.join("data").display().to_string(),
            cert.display().to_string(),
            key.display().to_string(),
        )
    };
    let (ok, out) = check(&dir, &config(&good.cert, &good.key, &dns.addr().to_string()));
    assert!(ok, "{out}");
    for line in ["can be bound", "TLS certificate and key load and match", "is writable", "answer"]
    {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }

    // The SMTP port taken, another certificate's key, DNS that never answers.
    let _taken = std::net::TcpListener::bind(("127.0.0.1", smtp)).unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let (ok, out) = check(&dir, &config(&good.cert, &other.key, &closed));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("warn  SMTP listener (Mx): 127.0.0.1:{smtp} is in use")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("fail  TLS")), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("fail  DNS") && l.contains("do not answer")),
        "{out}"
    );

    // A typo: the file's line and key.
    let (ok, out) = check(&dir, "[smtp]\nmax_recipientz = 3\n");
    assert!(!ok);
    assert!(out.contains("fail  ") && out.contains("tern.toml:2: smtp.max_recipientz"), "{out}");
}

/// Runs `tern check ARGS…`; returns (success, stdout + stderr).
fn tern_check(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tern")).arg("check").args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A certificate for several names that is not a CA, so it can be its own trust anchor.
fn leaf_cert(dir: &Path, names: &[&str]) -> TlsFiles {
    let files = TlsFiles { cert: dir.join("leaf.pem"), key: dir.join("leaf.key") };
    let san = names.iter().map(|n| format!("DNS:{n}")).collect::<Vec<_>>().join(",");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=check.test", "-addext", &format!("subjectAltName={san}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&files.key)
        .arg("-out")
        .arg(&files.cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    files
}

/// Python's HTTPS server answering `/.well-known/mta-sts.txt` with the policy of the Host asked
/// for (`policies`: host → text), killed on drop.
struct PolicyServer(Child);

impl PolicyServer {
    fn start(ip: Ipv4Addr, port: u16, tls: &TlsFiles, policies: &[(&str, &str)]) -> PolicyServer {
        const SERVER: &str = r#"
import http.server, json, ssl, sys
ip, port, cert, key, policies = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        policy = policies.get(self.headers.get("Host", ""))
        if self.path != "/.well-known/mta-sts.txt" or policy is None:
            self.send_error(404)
            return
        body = policy.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = http.server.HTTPServer((ip, port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"#;
        let policies: serde_json::Map<String, serde_json::Value> =
            policies.iter().map(|(h, p)| ((*h).to_string(), (*p).into())).collect();
        let mut child = Command::new("python3")
            .args(["-c", SERVER, &ip.to_string(), &port.to_string()])
            .arg(&tls.cert)
            .arg(&tls.key)
            .arg(serde_json::Value::Object(policies).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        PolicyServer(child)
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_domain_is_diagnosed_from_its_dns_records_and_its_mx_hosts() {
    let dir = temp_dir("check-domain");
    let (good_mx, bad_mx, sts_ip) =
        (Ipv4Addr::new(127, 0, 0, 71), Ipv4Addr::new(127, 0, 0, 72), Ipv4Addr::new(127, 0, 0, 73));
    let cert = leaf_cert(
        &dir,
        &["mx.good.check.test", "mta-sts.good.check.test", "mta-sts.bad.check.test"],
    );
    // Tern's DKIM key for good.check.test, in the data directory the configuration names.
    let data = dir.join("data");
    let keys = support::dkim_generate(
        &data.join("dkim"),
        "good.check.test",
        &["--algorithm", "ed25519", "--selector", "s1"],
    );
    let dkim_record = &keys[0].1;
    let https_port = free_port_on(sts_ip);
    let good_policy =
        "version: STSv1\r\nmode: enforce\r\nmx: mx.good.check.test\r\nmax_age: 86400\r\n";
    let bad_policy = "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n";
    let _policies = PolicyServer::start(
        sts_ip,
        https_port,
        &cert,
        &[("mta-sts.good.check.test", good_policy), ("mta-sts.bad.check.test", bad_policy)],
    );
    let dns = Dnsmasq::start(&[
        // good.check.test: every record right.
        DnsRecord::mx("good.check.test", "mx.good.check.test", 10),
        DnsRecord::a("mx.good.check.test", good_mx),
        DnsRecord::txt("good.check.test", "v=spf1 mx -all"),
        DnsRecord::txt("s1._domainkey.good.check.test", dkim_record),
        DnsRecord::txt(
            "_dmarc.good.check.test",
            "v=DMARC1; p=reject; rua=mailto:d@good.check.test",
        ),
        DnsRecord::txt("_mta-sts.good.check.test", "v=STSv1; id=20261203"),
        DnsRecord::a("mta-sts.good.check.test", sts_ip),
        DnsRecord::txt("_smtp._tls.good.check.test", "v=TLSRPTv1; rua=mailto:tls@good.check.test"),
        // bad.check.test: SPF for everybody, a DMARC record that only monitors, a policy that
        // does not name the MX, no TLS-RPT, no STARTTLS.
        DnsRecord::mx("bad.check.test", "mx.bad.check.test", 10),
        DnsRecord::a("mx.bad.check.test", bad_mx),
        DnsRecord::txt("bad.check.test", "v=spf1 +all"),
        DnsRecord::txt("_dmarc.bad.check.test", "v=DMARC1; p=none"),
        DnsRecord::txt("_mta-sts.bad.check.test", "v=STSv1; id=1"),
        DnsRecord::a("mta-sts.bad.check.test", sts_ip),
        // nomail.check.test: a null MX.
        DnsRecord::null_mx("nomail.check.test"),
        // rdns.check.test: MX addresses outside loopback (never connected to: --no-connect),
        // whose reverse DNS the resolver asks dnsmasq for; one forward-confirmed, one not.
        DnsRecord::mx("rdns.check.test", "a.rdns.check.test", 10),
        DnsRecord::mx("rdns.check.test", "b.rdns.check.test", 20),
        DnsRecord::a("a.rdns.check.test", Ipv4Addr::new(192, 0, 2, 71)),
        DnsRecord::a_only("b.rdns.check.test", Ipv4Addr::new(192, 0, 2, 72)),
        DnsRecord::ptr(Ipv4Addr::new(192, 0, 2, 72), "dynamic-72.isp.test"),
        DnsRecord::ptr(Ipv4Addr::new(192, 0, 2, 73), "c.rdns.check.test"),
        DnsRecord::mx("rdns.check.test", "c.rdns.check.test", 30),
        DnsRecord::a_only("c.rdns.check.test", Ipv4Addr::new(192, 0, 2, 74)),
    ]);
    let smtp_port = free_port_on(good_mx);
    let _good = Postfix::mx(
        &["postmaster@good.check.test"],
        PostfixOptions {
            ip: good_mx,
            port: Some(smtp_port),
            hostname: Some("mx.good.check.test".into()),
            tls: Some(cert.clone()),
            message_size_limit: Some(20_000_000),
            ..PostfixOptions::default()
        },
    );
    let _bad = Postfix::mx(
        &["postmaster@bad.check.test"],
        PostfixOptions {
            ip: bad_mx,
            port: Some(smtp_port),
            hostname: Some("mx.bad.check.test".into()),
            ..PostfixOptions::default()
        },
    );
    let dns_addr = dns.addr().to_string();
    let config = dir.join("tern.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", data.display().to_string())).unwrap();
    let (port, https) = (smtp_port.to_string(), https_port.to_string());
    let cert_path = cert.cert.display().to_string();
    let config_path = config.display().to_string();
    let run = |domain: &str| {
        tern_check(&[
            domain,
            "--config",
            &config_path,
            "--dns",
            &dns_addr,
            "--port",
            &port,
            "--https-port",
            &https,
            "--ca-file",
            &cert_path,
        ])
    };

    let (ok, out) = run("good.check.test");
    assert!(ok, "{out}");
    let complaints: Vec<&str> =
        out.lines().filter(|l| l.starts_with("warn") || l.starts_with("fail")).collect();
    assert_eq!(
        complaints,
        ["warn  rDNS: 127.0.0.71 is a loopback address: only this machine can deliver to it"],
        "{out}"
    );
    for expected in [
        "ok    MX: 10 mx.good.check.test → 127.0.0.71",
        "ok    SPF: good.check.test: \"v=spf1 mx -all\"",
        "ok    SPF: mail from good.check.test sent by 127.0.0.71 (mx.good.check.test) passes",
        "ok    DKIM: s1._domainkey.good.check.test publishes the key",
        "ok    DMARC: _dmarc.good.check.test: \"v=DMARC1; p=reject",
        "ok    MTA-STS: policy mode enforce, max_age 86400 s, mx mx.good.check.test",
        "ok    TLS-RPT: reports go to tls@good.check.test",
        "220 mx.good.check.test ESMTP",
        "accepts messages up to 20000000 bytes",
        "the certificate verifies for mx.good.check.test",
        "certificate for mx.good.check.test, mta-sts.good.check.test",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }

    let (ok, out) = run("bad.check.test");
    assert!(!ok, "{out}");
    for expected in [
        "fail  SPF: bad.check.test: \"v=spf1 +all\" lets every host on the Internet send",
        "warn  DKIM: Tern has no key for bad.check.test",
        "warn  DMARC: _dmarc.bad.check.test: \"v=DMARC1; p=none\" only monitors",
        "fail  MTA-STS: MX 10 mx.bad.check.test matches no mx line of the policy",
        "warn  TLS-RPT: _smtp._tls.bad.check.test has no record",
        "fail  SMTP mx.bad.check.test (127.0.0.72:",
        "no STARTTLS",
        "tern: ",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }

    let (_, out) = tern_check(&["rdns.check.test", "--dns", &dns_addr, "--no-connect"]);
    for expected in [
        "ok    rDNS: 192.0.2.71 → a.rdns.check.test, which resolves back (forward-confirmed)",
        "warn  rDNS: 192.0.2.72 → dynamic-72.isp.test, which does not resolve back to 192.0.2.72",
        "warn  rDNS: 192.0.2.74 has no PTR record",
    ] {
        assert!(out.contains(expected), "{expected:?} missing:\n{out}");
    }
    assert!(!out.contains("SMTP a.rdns"), "--no-connect connects to nothing:\n{out}");

    let (ok, out) = run("nomail.check.test");
    assert!(out.contains("ok    MX: nomail.check.test publishes a null MX"), "{out}");
    assert!(!out.contains("SMTP nomail"), "a null MX is not probed:\n{out}");
    assert!(out.contains("\\\"v=spf1 -all\\\""), "a domain without mail sends none:\n{out}");
    assert!(out.contains("warn  DMARC: _dmarc.nomail.check.test has no record"), "{out}");
    assert!(ok, "only warnings:\n{out}");

    let (ok, out) = run("missing.check.test");
    assert!(!ok);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("fail") || l.starts_with("warn")).count(),
        1,
        "a domain that does not exist is one finding:\n{out}"
    );
    assert!(out.contains("fail  MX: missing.check.test does not exist (NXDOMAIN)"), "{out}");
}
