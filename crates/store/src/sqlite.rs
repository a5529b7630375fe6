//! The embedded backend: one SQLite database in WAL mode with `synchronous = FULL`, so a
//! committed transaction has been fsync'd. Schema changes are numbered migrations applied at
//! open, tracked in `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::id::MessageId;
use crate::model::{Envelope, NewMessage, StoredMessage};
use crate::summary::{Mailbox, Summary};
use crate::{Store, StoreError};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tern.db";

/// How long a reader waits for the writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations in order; entry `n` moves the schema from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: messages with their envelope, trace header, raw bytes and summary; recipients.
    "CREATE TABLE messages (
        id TEXT NOT NULL PRIMARY KEY,
        received_at INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mail_from TEXT NOT NULL,
        envelope TEXT NOT NULL,
        received_header BLOB NOT NULL,
        raw BLOB NOT NULL,
        from_name TEXT,
        from_addr TEXT,
        to_json TEXT NOT NULL,
        cc_json TEXT NOT NULL,
        subject TEXT NOT NULL,
        date INTEGER,
        message_id TEXT,
        attachments INTEGER NOT NULL,
        snippet TEXT NOT NULL
    );
    CREATE INDEX messages_received_at ON messages(received_at);
    CREATE TABLE recipients (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        address TEXT NOT NULL,
        route TEXT NOT NULL,
        PRIMARY KEY (message_id, position)
    );
    CREATE INDEX recipients_address ON recipients(address);",
];

/// The SQLite store. One writer (the spool's commit thread) and any number of readers, each
/// with its own `SqliteStore`.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
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
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        sync_dir(data_dir)?;
        Ok(SqliteStore { conn, path })
    }

    /// Opens an existing database for reading only (tools, tests, the CLI).
    pub fn open_read_only(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(SqliteStore { conn, path })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew { found: version, supported });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Makes the database file's directory entry durable (a new file is otherwise not).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { path: dir.display().to_string(), source };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl Store for SqliteStore {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert_message = tx.prepare_cached(
                "INSERT INTO messages (id, received_at, size, mail_from, envelope, received_header,
                    raw, from_name, from_addr, to_json, cc_json, subject, date, message_id,
                    attachments, snippet)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            let mut insert_recipient = tx.prepare_cached(
                "INSERT INTO recipients (message_id, position, address, route)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for msg in batch {
                let id = msg.id.to_string();
                let s = &msg.summary;
                insert_message.execute(params![
                    id,
                    msg.envelope.received_at_ms,
                    msg.raw.len() as i64,
                    msg.envelope.mail_from,
                    to_json(&msg.envelope),
                    msg.received_header,
                    msg.raw,
                    s.from.as_ref().map(|m| m.name.as_str()),
                    s.from.as_ref().map(|m| m.address.as_str()),
                    to_json(&s.to),
                    to_json(&s.cc),
                    s.subject,
                    s.date,
                    s.message_id,
                    s.attachments,
                    s.snippet,
                ])?;
                for (position, rcpt) in msg.envelope.recipients.iter().enumerate() {
                    insert_recipient.execute(params![
                        id,
                        position as i64,
                        rcpt.address,
                        rcpt.route.as_str()
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT envelope, received_header, raw, from_name, from_addr, to_json, cc_json,
                    subject, date, message_id, attachments, snippet, size
             FROM messages WHERE id = ?1",
        )?;
        let row = stmt
            .query_row([id.to_string()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, String>(7)?,
                    row.get::<_, Option<i64>>(8)?,
                    row.get::<_, Option<String>>(9)?,
                    row.get::<_, u32>(10)?,
                    row.get::<_, String>(11)?,
                    row.get::<_, i64>(12)?,
                ))
            })
            .optional()?;
        let Some((
            envelope,
            received_header,
            raw,
            from_name,
            from_addr,
            to,
            cc,
            subject,
            date,
            message_id,
            attachments,
            snippet,
            size,
        )) = row
        else {
            return Ok(None);
        };
        let corrupt = |reason: serde_json::Error| StoreError::Corrupt {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        let envelope: Envelope = serde_json::from_str(&envelope).map_err(corrupt)?;
        let summary = Summary {
            from: from_addr.map(|address| Mailbox { name: from_name.unwrap_or_default(), address }),
            to: serde_json::from_str(&to).map_err(corrupt)?,
            cc: serde_json::from_str(&cc).map_err(corrupt)?,
            subject,
            date,
            message_id,
            size: size as u64,
            attachments,
            snippet,
        };
        Ok(Some(StoredMessage { id: *id, envelope, received_header, raw, summary }))
    }

    fn list_ids(&self, limit: usize) -> Result<Vec<MessageId>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id FROM messages ORDER BY id DESC LIMIT ?1")?;
        let ids = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|_| StoreError::Corrupt { id, reason: "bad id".into() }))
            .collect()
    }

    fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))?;
        Ok(n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Recipient, Route};

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
                received_at_ms: 1_700_000_000_000,
            },
            received_header: b"Received: test\r\n".to_vec(),
            raw: raw.to_vec(),
            summary: Summary::extract(raw),
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
        assert_eq!(got.summary, a.summary);
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

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-store-test-{}", MessageId::generate()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
