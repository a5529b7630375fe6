//! `tern validate ADDRESS`: the checks of `/api/v1/validate` from the command line — syntax,
//! the domain's mail hosts, disposable and role addresses, and with `--callout` the
//! recipient's server. Exit status 0 when the address is valid, 1 when it is invalid, 2 when
//! it is risky (a check warned or could not tell), 3 when the check itself could not run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tern_delivery::validate::{Outcome, Verdict};

use crate::config::Config;

/// Flags of `tern validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// The address to check.
    address: String,
    /// Configuration file: its outbound DNS servers, MX port and CA file, its local domains
    /// (never called out to) and its `[validate]` settings.
    #[arg(long, short = 'c', env = "TERN_CONFIG")]
    config: Option<PathBuf>,
    /// A DNS server to ask instead (repeatable), e.g. 127.0.0.1:5353.
    #[arg(long = "dns", value_name = "ADDR")]
    dns: Vec<SocketAddr>,
    /// The port of the mail hosts for the callout (default: outbound.mx_port, 25).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Ask the recipient's server: MAIL FROM:<>, RCPT TO, QUIT.
    #[arg(long)]
    callout: bool,
    /// Print the report as the API's JSON.
    #[arg(long)]
    json: bool,
}

pub fn main(args: ValidateArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut config =
        Config::load_with_env(args.config.as_deref(), crate::config::environment::process_vars())?;
    if !args.dns.is_empty() {
        config.outbound.dns_servers = args.dns.clone();
    }
    if let Some(port) = args.port {
        config.outbound.mx_port = port;
    }
    if args.callout {
        config.validate.callout = true;
    }
    let hostname = config.resolved_hostname();
    let validator = crate::serve::validator(&config, &hostname)?;
    let report = crate::runtime()?.block_on(validator.validate(&args.address, args.callout));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("the report as JSON")?);
    } else {
        let verdict = match report.verdict {
            Verdict::Valid => "valid",
            Verdict::Risky => "risky",
            Verdict::Invalid => "invalid",
        };
        println!("{}: {verdict}", report.address);
        if let Some(normalized) = report.normalized.as_ref().filter(|n| **n != report.address) {
            println!("  normalized: {normalized}");
        }
        for check in &report.checks {
            let result = match check.result {
                Outcome::Pass => "ok",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
                Outcome::Unknown => "unknown",
                Outcome::Skipped => "skipped",
            };
            println!("  {:<11}{:<8}{}", check.check, result, check.detail);
        }
    }
    Ok(match report.verdict {
        Verdict::Valid => ExitCode::SUCCESS,
        Verdict::Invalid => ExitCode::from(1),
        Verdict::Risky => ExitCode::from(2),
    })
}
