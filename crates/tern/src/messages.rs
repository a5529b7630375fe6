//! `tern messages`: read what the store holds, from the command line (the server may be
//! running: the store is opened read-only and never blocks it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use tern_store::{MessageId, SqliteStore, StoreRead};

use crate::config::DEFAULT_DATA_DIR;

/// Arguments of `tern messages`.
#[derive(clap::Args, Debug)]
pub struct MessagesArgs {
    /// Data directory of the store.
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// One line per message, newest first: id, date, from, to, subject.
    List {
        /// Most messages to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A message's envelope and summary, as JSON.
    Show {
        /// The message (queue) id.
        id: MessageId,
    },
    /// A message's bytes as delivered (Received header included), to stdout.
    Raw {
        /// The message (queue) id.
        id: MessageId,
    },
}

pub fn main(args: MessagesArgs) -> anyhow::Result<()> {
    let store = SqliteStore::open_read_only(&args.data)
        .with_context(|| format!("opening the store in {}", args.data.display()))?;
    let mut out = std::io::stdout().lock();
    match args.action {
        Action::List { limit } => {
            for id in store.list_ids(limit)? {
                let Some(m) = store.message(&id)? else { continue };
                let to: Vec<&str> =
                    m.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
                writeln!(
                    out,
                    "{id}  {}  <{}> -> {}  {:?}",
                    mail_parser::DateTime::from_timestamp(m.envelope.received_at_ms / 1000)
                        .to_rfc3339(),
                    m.envelope.mail_from,
                    to.join(","),
                    m.summary.subject
                )?;
            }
        }
        Action::Show { id } => {
            let m = store.message(&id)?.with_context(|| format!("no message {id}"))?;
            let json = serde_json::json!({
                "id": id.to_string(),
                "envelope": m.envelope,
                "summary": m.summary,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Action::Raw { id } => {
            let m = store.message(&id)?.with_context(|| format!("no message {id}"))?;
            out.write_all(&m.full_message())?;
        }
    }
    Ok(())
}
