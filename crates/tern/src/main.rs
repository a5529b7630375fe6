//! `tern`: the command-line entry point. It parses flags, loads configuration, wires the
//! pipeline's crates together and handles signals; the behaviour lives in the library crates.
#![forbid(unsafe_code)]

mod bench;
mod config;
mod messages;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Bench(bench::BenchArgs),
}

/// Flags of `tern serve`; each overrides the matching configuration key.
#[derive(clap::Args, Debug, Default)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Messages(args) => messages::main(args),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::run(args))),
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
