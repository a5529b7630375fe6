//! `tern check --config FILE`: validates a configuration without starting the server — every
//! listen address can be bound, the TLS certificate and key load and belong together, the data
//! directory is writable, the DKIM keys load, and the DNS servers answer. (That the file parses,
//! with errors naming the line and key, is checked before.)

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use super::Finding;
use crate::config::{Config, Mode};

/// Every check of a loaded configuration.
pub(super) fn check(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for listener in config.listeners() {
        findings.push(bind(listener.address, &format!("SMTP listener ({:?})", listener.role)));
    }
    findings.push(bind(config.http.listen, "http.listen"));
    for &address in &config.pop3.listen {
        findings.push(bind(address, "pop3.listen"));
    }
    for &address in &config.pop3.listen_tls {
        findings.push(bind(address, "pop3.listen_tls"));
    }
    findings.push(tls(config));
    findings.push(writable(&config.data_dir));
    match tern_auth::keys::load_dir(&config.dkim_key_dir()) {
        Ok(keys) if keys.is_empty() => findings.push(Finding::Ok(format!(
            "no DKIM keys in {} (mail is not signed; see tern dkim generate)",
            config.dkim_key_dir().display()
        ))),
        Ok(keys) => findings.extend(
            keys.iter().map(|k| Finding::Ok(format!("DKIM key {} loads", k.path.display()))),
        ),
        Err(e) => findings.push(Finding::Fail(format!("DKIM keys: {e}"))),
    }
    if config.mode == Mode::Mta || config.verifies() {
        findings.push(dns(config));
    }
    findings
}

fn bind(address: SocketAddr, what: &str) -> Finding {
    match TcpListener::bind(address) {
        Ok(_) => Finding::Ok(format!("{what}: {address} can be bound")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::Warn(format!(
            "{what}: {address} is in use (a running tern, or another server: stop it first)"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::Fail(format!(
            "{what}: {address}: permission denied (ports below 1024 need root or \
             CAP_NET_BIND_SERVICE)"
        )),
        Err(e) => Finding::Fail(format!("{what}: {address}: {e}")),
    }
}

fn tls(config: &Config) -> Finding {
    let configured = config.tls.cert_path.is_some() || config.tls.key_path.is_some();
    if !configured {
        return match config.mode {
            Mode::Mta => Finding::Warn(
                "no tls.cert_path/key_path: STARTTLS uses a self-signed certificate".into(),
            ),
            Mode::Catcher => Finding::Ok("no TLS configured (the catcher does not need it)".into()),
        };
    }
    match tern_tls::ReloadingAcceptor::new(&config.tls, &config.resolved_hostname()) {
        Ok(_) => Finding::Ok("TLS certificate and key load and match".into()),
        Err(e) => Finding::Fail(format!("TLS: {e}")),
    }
}

fn writable(dir: &Path) -> Finding {
    let probe = dir.join(format!(".tern-check-{}", std::process::id()));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"probe"))
        .and_then(|()| std::fs::File::open(&probe)?.sync_all())
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Finding::Ok(format!("data_dir {} is writable", dir.display())),
        Err(e) => Finding::Fail(format!("data_dir {}: {e}", dir.display())),
    }
}

fn dns(config: &Config) -> Finding {
    let o = &config.outbound;
    let servers = if o.dns_servers.is_empty() {
        "the system's name servers".to_string()
    } else {
        o.dns_servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    let timeout = Duration::from_secs(o.dns_timeout_secs);
    let answered = crate::runtime().and_then(|rt| {
        rt.block_on(async {
            let resolver = tern_dns::resolver(&o.dns_servers, timeout)?;
            // Any answer, even "no such name", shows a server that answers.
            match resolver.txt_lookup("_tern-check.example.com.").await {
                Ok(_) => Ok(()),
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(()),
                Err(e) => Err(anyhow::anyhow!("{e}")),
            }
        })
    });
    match answered {
        Ok(()) => Finding::Ok(format!("DNS: {servers} answer")),
        Err(e) => Finding::Fail(format!(
            "DNS: {servers} do not answer ({e}); set outbound.dns_servers to a resolver that does"
        )),
    }
}
