//! `tern`: the command-line entry point. It parses flags, loads configuration, wires the
//! pipeline's crates together and handles signals; the behaviour lives in the library crates.

mod account;
mod check;
mod directory;
mod dkim;
mod messages;
mod metrics;
mod outbound;
mod pickup;
mod queue;
mod reload;
mod sendmail;
mod serve;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
// The configuration loader is the `tern` library (see `lib.rs`), so fuzz targets reach it.
use tern::config;
// Retention and index upkeep live with the spool they maintain; `serve` starts them.
use tern_queue::maintenance;

use crate::config::LogFormat;

/// Tern: an SMTP server and mail catcher.
#[derive(Parser, Debug)]
#[command(name = "tern", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (with no configuration: a mail catcher on 127.0.0.1:1025).
    Serve(ServeArgs),
    /// Read messages from a store (the server may be running).
    Messages(messages::MessagesArgs),
    /// Load any SMTP server and report messages/s and latency percentiles.
    Bench(tern_bench::BenchArgs),
    /// Manage accounts: logins, passwords and the addresses they own.
    Account(account::AccountArgs),
    /// Manage aliases: addresses that forward to others, and per-domain catch-alls.
    Alias(account::AliasArgs),
    /// Inspect and manage the outbound queue of a running server.
    Queue(queue::QueueArgs),
    /// DKIM signing keys: generate them, list their DNS records, check what DNS publishes.
    Dkim(dkim::DkimArgs),
    /// Diagnose a mail domain (MX, rDNS, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, each MX over SMTP)
    /// or validate a configuration without starting the server (ports, TLS, data dir, keys, DNS).
    Check(check::CheckArgs),
    /// Check an address: syntax, the domain's mail hosts, disposable and role addresses, and
    /// with --callout the recipient's server. Exit 0 valid, 1 invalid, 2 risky.
    Validate(validate::ValidateArgs),
    /// Send the message on standard input, as sendmail does (also run as `sendmail` through a
    /// link): -t, -i/-oi, -f FROM, -F NAME, recipients. See `TERN_SMTP`, `TERN_DROP_DIR`.
    Sendmail {
        /// sendmail's options and the recipients.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Flags of `tern serve`; each overrides the matching configuration key.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// Configuration file (TOML); see tern.example.toml.
    #[arg(long, short = 'c', env = "TERN_CONFIG")]
    config: Option<PathBuf>,
    /// SMTP listen address, repeatable (key: smtp.listen).
    #[arg(long = "smtp", value_name = "ADDR")]
    smtp: Vec<SocketAddr>,
    /// Data directory (key: data_dir).
    #[arg(long = "data", value_name = "DIR")]
    data: Option<PathBuf>,
    /// Hostname in the greeting and Received headers (key: hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Log format (key: log.format).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// HTTP API and web UI address (key: http.listen).
    #[arg(long = "http", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Keep at most this many messages; 0 keeps all (key: retention.max_messages).
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Delete messages older than this, e.g. 12h, 7d; 0 keeps them (key: retention.max_age_secs).
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    max_age: Option<std::time::Duration>,
    /// Turn chaos on: the API's /api/v1/chaos and rules (key: chaos.enabled).
    #[arg(long)]
    enable_chaos: bool,
    /// Mailpit's chaos triggers, e.g. Sender:451:5,Recipient:550:10; turns chaos on
    /// (key: chaos.triggers).
    #[arg(long, value_name = "TRIGGERS")]
    chaos_triggers: Option<String>,
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    if text.trim() == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 30m, 12h, 7d)"))
}

fn main() -> ExitCode {
    // Run through a link named `sendmail` (as /usr/sbin/sendmail), Tern is sendmail.
    let mut argv = std::env::args_os();
    let program = argv.next().unwrap_or_default();
    if std::path::Path::new(&program).file_name().is_some_and(|name| name == "sendmail") {
        return sendmail::main(argv.collect());
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Messages(args) => messages::main(args),
        Command::Bench(args) => runtime().and_then(|rt| Ok(rt.block_on(tern_bench::run(args))?)),
        Command::Account(args) => account::account_main(args),
        Command::Alias(args) => account::alias_main(args),
        Command::Queue(args) => queue::main(args),
        Command::Dkim(args) => dkim::main(args),
        Command::Check(args) => check::main(args),
        Command::Sendmail { args } => return sendmail::main(args),
        Command::Validate(args) => return validate::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
