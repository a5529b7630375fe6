//! `tern check --config FILE` against real conditions: a free and a taken port, a certificate
//! with its own key and with another certificate's key, a data directory, a dnsmasq that
//! answers and a port that does not, and a file with a typo.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::process::Command;

use support::peers::{Dnsmasq, self_signed_cert};
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
