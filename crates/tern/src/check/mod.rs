//! `tern check`: diagnostics without starting the server. `tern check --config FILE` validates
//! a configuration ([`config`]); `tern check DOMAIN` answers a postmaster's questions about a
//! mail domain — its MX hosts, their reverse DNS, SPF, DKIM, DMARC, MTA-STS and TLS-RPT, and
//! what each MX says over SMTP ([`domain`], [`probe`]). One line per finding, `ok`, `warn` or
//! `fail` with what to do; the exit status is 1 when anything failed.

mod config;
mod domain;
mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, DEFAULT_CONFIG_PATH};

/// Arguments of `tern check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// A mail domain to diagnose: MX hosts, reverse DNS, SPF, DKIM, DMARC, MTA-STS, TLS-RPT,
    /// and each MX over SMTP (greeting, EHLO, SIZE, STARTTLS, certificate).
    domain: Option<String>,
    /// The configuration file to check; with DOMAIN, also where the DNS servers, DKIM keys and
    /// trusted roots come from. Default: /etc/tern/tern.toml when it exists.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// A DNS server to ask, repeatable (default: outbound.dns_servers, else the system's).
    #[arg(long = "dns", value_name = "ADDR")]
    dns: Vec<SocketAddr>,
    /// The MX hosts' SMTP port (default: outbound.mx_port, 25).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// The MTA-STS policy host's HTTPS port (443; for tests).
    #[arg(long = "https-port", value_name = "PORT", default_value_t = 443, hide = true)]
    https_port: u16,
    /// Further trusted root certificates, PEM (default: outbound.tls_ca_file).
    #[arg(long = "ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// DNS only: do not connect to the MX hosts.
    #[arg(long)]
    no_connect: bool,
}

/// What one check found; the text says what was seen and, when not ok, what to do.
#[derive(Debug)]
pub(crate) enum Finding {
    Ok(String),
    Warn(String),
    Fail(String),
}

pub fn main(args: CheckArgs) -> anyhow::Result<()> {
    let config_path = args.config.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG_PATH);
        default.exists().then_some(default)
    });
    anyhow::ensure!(
        config_path.is_some() || args.domain.is_some(),
        "nothing to check: give a DOMAIN, or --config FILE (no {DEFAULT_CONFIG_PATH} here)"
    );
    let mut findings = Vec::new();
    let mut loaded = None;
    if let Some(path) = &config_path {
        match Config::load_with_env(Some(path), crate::config::environment::process_vars()) {
            Ok(config) => {
                findings.push(Finding::Ok(format!("{} parses", path.display())));
                // With a DOMAIN, the file only lends its settings unless it was asked for.
                if args.domain.is_none() || args.config.is_some() {
                    findings.extend(config::check(&config));
                }
                loaded = Some(config);
            }
            Err(e) => findings.push(Finding::Fail(format!("{e}"))),
        }
    }
    if let Some(domain) = &args.domain {
        let settings = domain::Settings::new(&args, loaded.as_ref());
        findings.extend(crate::runtime()?.block_on(domain::check(domain, &settings)));
    }
    let failed = report(&findings);
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

/// Prints the findings; returns how many failed.
fn report(findings: &[Finding]) -> usize {
    let mut failed = 0;
    for finding in findings {
        match finding {
            Finding::Ok(text) => println!("ok    {text}"),
            Finding::Warn(text) => println!("warn  {text}"),
            Finding::Fail(text) => {
                failed += 1;
                println!("fail  {text}");
            }
        }
    }
    failed
}
