//! Taking in what `tern sendmail` left in the drop directory (`DATA_DIR/drop/new`) while the
//! server was down: each file goes through the door like any submission from this machine
//! (a trusted local client: routed, signed, queued), and is removed once the door has made the
//! message durable. A message the door refuses for good moves to `drop/refused` (logged); one
//! refused for now stays for the next start.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use tern_ingest::{Client, Door, Transaction};
use tern_store::Recipient;
use tracing::{info, warn};

use crate::sendmail::Dropped;

/// Takes in every message in `dir/new` (the server starts it first thing).
pub async fn run(door: Arc<Door>, dir: std::path::PathBuf) {
    let new = dir.join("new");
    let Ok(entries) = std::fs::read_dir(&new) else { return };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    let dir = dir.as_path();
    for path in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        match take_in(&door, &path).await {
            Ok(id) => {
                info!(file = %path.display(), queue_id = %id, "sendmail drop taken in");
                if let Err(e) = std::fs::remove_file(&path) {
                    warn!(file = %path.display(), error = %e, "cannot remove a taken-in drop file");
                }
            }
            Err((permanent, why)) if permanent => {
                warn!(file = %path.display(), reason = %why, "sendmail drop refused; moved to refused/");
                let refused = dir.join("refused");
                let moved = std::fs::create_dir_all(&refused).and_then(|()| {
                    std::fs::rename(&path, refused.join(path.file_name().unwrap_or_default()))
                });
                if let Err(e) = moved {
                    warn!(file = %path.display(), error = %e, "cannot move a refused drop file");
                }
            }
            Err((_, why)) => {
                warn!(file = %path.display(), reason = %why, "sendmail drop kept for later")
            }
        }
    }
}

/// One file through the door; `Err((permanent, why))`.
async fn take_in(door: &Door, path: &Path) -> Result<tern_store::MessageId, (bool, String)> {
    let bytes = std::fs::read(path).map_err(|e| (false, e.to_string()))?;
    let dropped: Dropped = serde_json::from_slice(&bytes).map_err(|e| (true, e.to_string()))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&dropped.message)
        .map_err(|e| (true, e.to_string()))?;
    let client = Client {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        helo: "localhost".into(),
        protocol: "LOCAL".into(),
        tls: None,
        auth: None,
        admin: true,
    };
    let mut recipients = Vec::new();
    for rcpt in &dropped.to {
        let deliveries = door
            .route(&client, &dropped.from, rcpt)
            .await
            .map_err(|reply| (reply.code >= 500, reply.to_wire().trim_end().to_string()))?;
        for delivery in deliveries {
            let (address, orcpt) = match delivery.target {
                Some(target) => (target, Some(format!("rfc822;{rcpt}"))),
                None => (rcpt.clone(), None),
            };
            recipients.push(Recipient { address, notify: vec![], orcpt, route: delivery.route });
        }
    }
    let eight_bit = raw.iter().any(|b| *b >= 0x80);
    let tx = Transaction {
        mail_from: dropped.from,
        recipients,
        body: eight_bit.then(|| "8BITMIME".to_string()),
        ..Transaction::default()
    };
    door.accept(&client, tx, raw).await.map_err(|e| {
        let reply = e.reply();
        (reply.code >= 500, reply.to_wire().trim_end().to_string())
    })
}
