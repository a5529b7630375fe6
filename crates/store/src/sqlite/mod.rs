//! The embedded backend: one SQLite database in WAL mode with `synchronous = FULL`, so a
//! committed transaction has been fsync'd, with an FTS5 index for search and a background
//! checkpointer. Everything that knows SQLite lives under this module; the neutral model, the
//! search query and the traits it implements sit below it and never name `rusqlite`.
//!
//! - `mod.rs`: the [`SqliteStore`] handle, opening, write transactions, error conversion;
//! - `migrations`: the schema; `checkpoint`: the WAL checkpointer thread;
//! - `messages`, `queue`, `accounts`: the statements over each group of tables;
//! - [`search`]: the search query compiled to SQL and FTS5; `page`: which index answers a
//!   page of a search, and where its counts come from;
//! - `store`: the [`crate::Store`] and [`crate::StoreRead`] implementations.

mod accounts;
mod checkpoint;
mod messages;
mod migrations;
mod page;
mod queue;
pub mod search;
mod store;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::StoreError;
use checkpoint::Checkpointer;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tern.db";

/// WAL pages written before the writer itself checkpoints them into the database (SQLite's
/// default is 1,000). Normally the checkpointer thread (`checkpoint`) has done it
/// already, off the commit path; this is the backstop. Large, because a checkpoint inside a
/// commit stalls every client of that commit, and fewer, larger checkpoints write each hot page
/// (index roots, the full-text index's structure) once instead of many times. The WAL may grow
/// to about this many 4 KiB pages (40 MiB) before it is reused.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// How long a reader waits for the writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite store. One writer (the spool's commit thread) and any number of readers, each
/// with its own `SqliteStore`.
pub struct SqliteStore {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// A writer's background checkpointer (`None` for readers).
    checkpointer: Option<Checkpointer>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and applies migrations.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer. FULL: every commit fsyncs the WAL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn)?;
        // Refreshes planner statistics where they are stale; cheap when nothing changed.
        conn.execute_batch("PRAGMA optimize")?;
        sync_dir(data_dir)?;
        let checkpointer = Some(Checkpointer::start(&path)?);
        Ok(SqliteStore { conn, path, checkpointer })
    }

    /// Opens an existing database for reading only (tools, tests, the CLI).
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(SqliteStore { conn, path, checkpointer: None })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells the checkpointer that the WAL grew.
    fn committed(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
    }
}

/// Starts a write transaction holding the write lock from its first statement (`BEGIN
/// IMMEDIATE`), waiting out other writers (a `tern account` command, say) with the busy
/// timeout. A deferred transaction that reads first would instead fail at once with "database
/// is locked" when another connection wrote since its read began (SQLITE_BUSY_SNAPSHOT).
pub(crate) fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Makes the database file's directory entry durable (a new file is otherwise not).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: dir.display().to_string(), source };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MessageId;
    use crate::model::{Envelope, NewMessage, Recipient, Route};
    use crate::summary::Summary;
    use crate::{Store, StoreRead};

    fn message(raw: &[u8]) -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            envelope: Envelope {
                mail_from: "a@example.org".into(),
                recipients: vec![Recipient {
                    address: "b@example.com".into(),
                    notify: vec!["SUCCESS".into()],
                    orcpt: Some("rfc822;b@example.com".into()),
                    route: Route::Capture,
                }],
                body: Some("8BITMIME".into()),
                smtputf8: false,
                ret: Some("HDRS".into()),
                envid: Some("E1".into()),
                client: "127.0.0.1:4000".parse().expect("literal"),
                helo: "client.example".into(),
                tls: None,
                auth: None,
                trusted_client: true,
                received_at_ms: 1_700_000_000_000,
            },
            received_header: b"Received: test\r\n".to_vec(),
            raw: raw.to_vec(),
            summary: Summary::extract(raw),
            search_text: crate::summary::SearchText::default(),
        }
    }

    #[test]
    fn batch_round_trip_is_byte_exact() {
        let dir = tempdir();
        let mut store = SqliteStore::open(&dir).expect("open");
        let a = message(b"Subject: one\r\n\r\n\xff\x00binary\r\n");
        let b = message(b"");
        store.commit_batch(&[a.clone(), b.clone()]).expect("commit");
        assert_eq!(store.count().expect("count"), 2);
        let got = store.message(&a.id).expect("read").expect("present");
        assert_eq!(got.raw, a.raw);
        assert_eq!(got.envelope, a.envelope);
        assert_eq!(got.summary, a.row().summary);
        assert_eq!(got.summary.bcc[0].address, "b@example.com", "hidden recipient shown as Bcc");
        assert_eq!(got.full_message(), b"Received: test\r\nSubject: one\r\n\r\n\xff\x00binary\r\n");
        assert_eq!(store.list_ids(10).expect("list"), vec![b.id, a.id]);
        // Reopening applies no migration twice and sees the data.
        drop(store);
        let store = SqliteStore::open(&dir).expect("reopen");
        assert_eq!(store.count().expect("count"), 2);
        let ro = SqliteStore::open_read_only(&dir).expect("read-only");
        assert!(ro.message(&b.id).expect("read").is_some());
    }

    #[test]
    fn a_message_deleted_between_its_two_reads_is_gone_not_an_error() {
        let dir = tempdir();
        let mut store = SqliteStore::open(&dir).expect("open");
        let a = message(b"Subject: x\r\n\r\nbody\r\n");
        store.commit_batch(std::slice::from_ref(&a)).expect("commit");
        // What a concurrent delete leaves between the row's read and the data's read.
        let id = a.id.to_string();
        store.conn.execute("DELETE FROM message_data WHERE id = ?1", [&id]).expect("delete");
        assert!(store.message(&a.id).expect("not an error").is_none());
    }

    #[test]
    fn a_failed_batch_stores_nothing() {
        let dir = tempdir();
        let mut store = SqliteStore::open(&dir).expect("open");
        let a = message(b"x");
        store.commit_batch(std::slice::from_ref(&a)).expect("commit");
        // The same id again violates the primary key: the whole batch must roll back.
        let c = message(b"y");
        assert!(store.commit_batch(&[c.clone(), a]).is_err());
        assert!(store.message(&c.id).expect("read").is_none());
        assert_eq!(store.count().expect("count"), 1);
    }

    #[test]
    fn commits_reach_the_database_file_without_the_writer_checkpointing() {
        let dir = tempdir();
        let mut store = SqliteStore::open(&dir).expect("open");
        let file = dir.join(DATABASE_FILE);
        let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        let before = size();
        // 200 KiB: 50 pages, far below the writer's own threshold of 10,000.
        let body = vec![b'x'; 200 * 1024];
        store.commit_batch(&[message(&body)]).expect("commit");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while size() < before + 200 * 1024 {
            assert!(
                std::time::Instant::now() < deadline,
                "the checkpointer never copied the commit into {} ({} bytes, was {before})",
                file.display(),
                size()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-store-test-{}", MessageId::generate()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
