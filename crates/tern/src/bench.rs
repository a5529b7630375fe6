//! `tern bench`: a load generator for any SMTP server.
//!
//! (Being written; see the bench helper's report.)

/// Arguments of `tern bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The SMTP server to load, as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1025")]
    pub server: String,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("tern bench is not written yet ({})", args.server)
}
