//! The embedded backend: one SQLite database in WAL mode with `synchronous = FULL`, so a
//! committed transaction has been fsync'd. Schema changes are numbered migrations applied at
//! open, tracked in `PRAGMA user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior, params, params_from_iter};

use crate::checkpoint::Checkpointer;
use crate::id::MessageId;
use crate::model::{
    Envelope, Inbox, InboxCount, MaildirCopy, MessagePage, MessageRow, Mutation, NewMessage,
    Selection, StoredMessage,
};
use crate::queue::{QueueCounts, QueueEntry, QueueFilter, QueueReport};
use crate::search::SearchQuery;
use crate::summary::{Mailbox, Summary};
use crate::{Store, StoreError, StoreRead};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "tern.db";

/// WAL pages written before the writer itself checkpoints them into the database (SQLite's
/// default is 1,000). Normally the checkpointer thread ([`crate::checkpoint`]) has done it
/// already, off the commit path; this is the backstop. Large, because a checkpoint inside a
/// commit stalls every client of that commit, and fewer, larger checkpoints write each hot page
/// (index roots, the full-text index's structure) once instead of many times. The WAL may grow
/// to about this many 4 KiB pages (40 MiB) before it is reused.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// How long a reader waits for the writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Migrations in order; entry `n` moves the schema from version `n` to `n + 1`.
///
/// `messages` stays narrow (one row per message, summary columns only) so listing, counting
/// and searching never read through the large `message_data` blobs.
const MIGRATIONS: &[&str] = &[
    // 1: messages and their data, recipients filed by inbox, tags, and the full-text index.
    "CREATE TABLE messages (
        id TEXT NOT NULL PRIMARY KEY,
        received_at INTEGER NOT NULL,
        read INTEGER NOT NULL DEFAULT 0,
        size INTEGER NOT NULL,
        mail_from TEXT NOT NULL,
        from_name TEXT,
        from_addr TEXT,
        to_json TEXT NOT NULL,
        cc_json TEXT NOT NULL,
        bcc_json TEXT NOT NULL,
        reply_to_json TEXT NOT NULL,
        subject TEXT NOT NULL,
        date INTEGER,
        message_id TEXT,
        attachments INTEGER NOT NULL,
        snippet TEXT NOT NULL,
        username TEXT,
        envelope TEXT NOT NULL
    );
    CREATE INDEX messages_received_at ON messages(received_at);
    CREATE INDEX messages_unread ON messages(id) WHERE read = 0;
    CREATE TABLE message_data (
        id TEXT NOT NULL PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        received_header BLOB NOT NULL,
        raw BLOB NOT NULL
    );
    CREATE TABLE recipients (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        address TEXT NOT NULL,
        route TEXT NOT NULL,
        inbox TEXT NOT NULL,
        plus_tag TEXT,
        PRIMARY KEY (message_id, position)
    );
    CREATE INDEX recipients_inbox ON recipients(inbox, message_id);
    CREATE TABLE tags (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (message_id, tag)
    );
    CREATE INDEX tags_tag ON tags(tag);
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        subject, addresses, body, attachments, headers,
        content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
    );",
    // 2: no index merging inside ingest commits; `Mutation::MergeIndex` merges in the
    // background (FTS5's crisis merge still bounds the segment count under sustained load).
    "INSERT INTO messages_fts(messages_fts, rank) VALUES ('automerge', 0);
    -- Lets flag, size and date filters, counts and negations run on the index alone.
    CREATE INDEX messages_list ON messages(id, read, size, attachments, received_at);",
    // 3: accounts, the addresses they own, and aliases (see `accounts.rs`).
    "CREATE TABLE accounts (
        login TEXT NOT NULL PRIMARY KEY,
        password_hash TEXT NOT NULL, -- argon2id PHC string
        cram_secret TEXT,            -- NULL unless CRAM-MD5 is enabled: password-equivalent
        maildir TEXT,
        created_at INTEGER NOT NULL  -- ms since the Unix epoch
    );
    CREATE TABLE addresses (
        address TEXT NOT NULL PRIMARY KEY, -- lowercased
        login TEXT NOT NULL REFERENCES accounts(login) ON DELETE CASCADE
    );
    CREATE INDEX addresses_login ON addresses(login);
    -- An alias may have many targets (local or remote); `@domain` is the domain's catch-all.
    CREATE TABLE aliases (
        address TEXT NOT NULL,
        target TEXT NOT NULL,
        PRIMARY KEY (address, target)
    );",
    // 4: the mailbox (account) a local recipient's copy belongs to.
    "ALTER TABLE recipients ADD COLUMN account TEXT;
    CREATE INDEX recipients_account ON recipients(account, message_id) WHERE account IS NOT NULL;",
    // 5: Maildir copies written (local copies whose account has a Maildir start at 0).
    "ALTER TABLE recipients ADD COLUMN maildir_done INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX recipients_maildir_pending ON recipients(message_id) WHERE maildir_done = 0 AND account IS NOT NULL;",
    // 6: the outbound queue: one entry per remote recipient (see `queue.rs`).
    "CREATE TABLE queue (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        domain TEXT NOT NULL,          -- lowercased
        notify TEXT NOT NULL,          -- DSN NOTIFY values, comma-separated
        orcpt TEXT,
        state TEXT NOT NULL,           -- queued | held
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,   -- ms since the Unix epoch
        next_attempt INTEGER NOT NULL, -- ms since the Unix epoch
        last_attempt INTEGER,
        last_error TEXT,
        delay_warned INTEGER NOT NULL DEFAULT 0
    );
    -- The scheduler's only scan: due entries in due order, without touching held ones.
    CREATE INDEX queue_due ON queue(next_attempt, id) WHERE state = 'queued';
    CREATE INDEX queue_message ON queue(message_id);",
    // 7: ingest commits leave twice as many index segments per level before FTS5 merges them
    // inside the commit (its default is 16): about 11% fewer instructions per indexed message
    // (callgrind, batches of 12); the background merge compacts them when ingest pauses.
    "INSERT INTO messages_fts(messages_fts, rank) VALUES ('crisismerge', 32);",
    // 8: the due scan can skip busy destinations' entries on the index alone.
    "DROP INDEX queue_due;
    CREATE INDEX queue_due ON queue(next_attempt, id, domain) WHERE state = 'queued';",
    // 9: what the sender is to be told, kept with the message until its notice is sent, so
    // one notice covers the recipients at every destination (see `queue.rs`).
    "CREATE TABLE queue_reports (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        orcpt TEXT,
        action TEXT NOT NULL,          -- failed | delayed | delivered | relayed
        status TEXT NOT NULL,
        remote_mta TEXT,
        diagnostic TEXT,
        last_attempt INTEGER,          -- ms since the Unix epoch
        retry_until INTEGER            -- ms since the Unix epoch
    );
    CREATE INDEX queue_reports_message ON queue_reports(message_id);",
    // 10: whether the message's sender may be sent notices (`Envelope::trusted_client`);
    // entries queued before are kept as they were (notices allowed).
    "ALTER TABLE queue ADD COLUMN trusted_client INTEGER NOT NULL DEFAULT 1;",
];

/// Matching and unread-matching message counts.
type Counts = (u64, u64);

/// Most ids bound in one statement (SQLite's limit is 32,766 variables).
const IDS_PER_STATEMENT: usize = 10_000;

/// Columns of a [`MessageRow`], in the order [`read_row`] expects, over `messages m`.
const ROW_COLUMNS: &str = "m.id, m.received_at, m.read, m.from_name, m.from_addr, m.to_json,
    m.cc_json, m.bcc_json, m.reply_to_json, m.subject, m.date, m.message_id, m.size,
    m.attachments, m.snippet, m.username,
    (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM tags t WHERE t.message_id = m.id ORDER BY tag))";

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
        migrate(&mut conn)?;
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
}

/// Starts a write transaction holding the write lock from its first statement (`BEGIN
/// IMMEDIATE`), waiting out other writers (a `tern account` command, say) with the busy
/// timeout. A deferred transaction that reads first would instead fail at once with "database
/// is locked" when another connection wrote since its read began (SQLITE_BUSY_SNAPSHOT).
pub(crate) fn write_transaction(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew { found: version, supported });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = write_transaction(conn)?;
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

impl SqliteStore {
    pub(crate) fn insert(
        tx: &rusqlite::Transaction<'_>,
        msg: &NewMessage,
    ) -> Result<(), StoreError> {
        let id = msg.id.to_string();
        let row = msg.row();
        let s = &row.summary;
        let mut insert_message = tx.prepare_cached(
            "INSERT INTO messages (id, received_at, size, mail_from, from_name, from_addr, to_json,
                cc_json, bcc_json, reply_to_json, subject, date, message_id, attachments, snippet,
                username, envelope)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        insert_message.execute(params![
            id,
            msg.envelope.received_at_ms,
            s.size as i64,
            msg.envelope.mail_from,
            s.from.as_ref().map(|m| m.name.as_str()),
            s.from.as_ref().map(|m| m.address.as_str()),
            to_json(&s.to),
            to_json(&s.cc),
            to_json(&s.bcc),
            to_json(&s.reply_to),
            s.subject,
            s.date,
            s.message_id,
            s.attachments,
            s.snippet,
            row.username,
            to_json(&msg.envelope),
        ])?;
        let rowid = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO message_data (id, received_header, raw) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, msg.received_header, msg.raw])?;
        let mut insert_recipient = tx.prepare_cached(
            "INSERT INTO recipients (message_id, position, address, route, inbox, plus_tag, account)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for (position, rcpt) in msg.envelope.recipients.iter().enumerate() {
            let inbox = Inbox::of(&rcpt.address);
            insert_recipient.execute(params![
                id,
                position as i64,
                rcpt.address,
                rcpt.route.as_str(),
                inbox.address,
                inbox.tag,
                rcpt.route.account()
            ])?;
        }
        crate::queue::insert_entries(tx, msg)?;
        let mut insert_tag =
            tx.prepare_cached("INSERT OR IGNORE INTO tags (message_id, tag) VALUES (?1, ?2)")?;
        for tag in &s.tags {
            insert_tag.execute(params![id, tag])?;
        }
        if cfg!(feature = "bench-without-index") {
            // The benchmark comparator: everything above, none of the index below.
            return Ok(());
        }
        let addresses = s
            .from
            .iter()
            .chain(&s.to)
            .chain(&s.cc)
            .chain(&s.bcc)
            .chain(&s.reply_to)
            .map(|m| format!("{} {}", m.name, m.address))
            .collect::<Vec<_>>()
            .join("\n");
        let text = &msg.search_text;
        tx.prepare_cached(
            "INSERT INTO messages_fts (rowid, subject, addresses, body, attachments, headers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            rowid,
            s.subject,
            addresses,
            text.body,
            text.attachments,
            text.headers
        ])?;
        Ok(())
    }

    /// The ids a selection covers, oldest first.
    fn select_ids(&self, selection: &Selection) -> Result<Vec<MessageId>, StoreError> {
        let (condition, values) = match selection {
            Selection::All => ("1".to_string(), vec![]),
            Selection::Ids(ids) => {
                // In chunks: SQLite bounds the number of variables in one statement.
                let mut found = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(IDS_PER_STATEMENT) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let values = chunk.iter().map(|id| Value::Text(id.to_string())).collect();
                    let sql = format!(
                        "SELECT m.id FROM messages m WHERE m.id IN ({marks}) ORDER BY m.id"
                    );
                    found.extend(self.ids_for(&sql, values)?);
                }
                found.sort();
                return Ok(found);
            }
            Selection::Search(query) => SearchQuery::parse(query)?.sql(),
            Selection::Matching(query) => query.sql(),
            Selection::Inbox(inbox) => (
                "m.id IN (SELECT message_id FROM recipients WHERE inbox = ?)".to_string(),
                vec![Value::Text(Inbox::of(inbox).address)],
            ),
        };
        let sql = format!("SELECT m.id FROM messages m WHERE {condition} ORDER BY m.id");
        self.ids_for(&sql, values)
    }

    fn ids_for(&self, sql: &str, values: Vec<Value>) -> Result<Vec<MessageId>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let ids = stmt
            .query_map(params_from_iter(values), |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|_| StoreError::Corrupt { id, reason: "bad id".into() }))
            .collect()
    }

    fn delete(&mut self, ids: &[MessageId]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut fts = tx.prepare_cached(
                "DELETE FROM messages_fts WHERE rowid = (SELECT rowid FROM messages WHERE id = ?1)",
            )?;
            let mut message = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for id in ids {
                let id = id.to_string();
                fts.execute([&id])?;
                message.execute([&id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn set_tags(&mut self, ids: &[MessageId], tags: &[String]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut clear = tx.prepare_cached("DELETE FROM tags WHERE message_id = ?1")?;
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO tags (message_id, tag) VALUES (?1, ?2)")?;
            for id in ids {
                let id = id.to_string();
                clear.execute([&id])?;
                for tag in tags {
                    insert.execute(params![id, tag])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Renames `from` to `to` on every message, or removes it (`to` = `None`); returns the
    /// messages that had it.
    fn rename_tag(&mut self, from: &str, to: Option<&str>) -> Result<Vec<MessageId>, StoreError> {
        // Read before the write transaction: this thread is the store's only writer.
        let ids = self.ids_for(
            "SELECT message_id FROM tags WHERE tag = ?1 ORDER BY message_id",
            vec![Value::Text(from.to_string())],
        )?;
        let tx = write_transaction(&mut self.conn)?;
        if let Some(to) = to {
            tx.execute(
                "INSERT OR IGNORE INTO tags (message_id, tag) SELECT message_id, ?2 FROM tags WHERE tag = ?1",
                params![from, to],
            )?;
        }
        tx.execute("DELETE FROM tags WHERE tag = ?1 AND tag IS NOT ?2", params![from, to])?;
        tx.commit()?;
        Ok(ids)
    }

    fn set_read(&mut self, ids: &[MessageId], read: bool) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut update = tx.prepare_cached("UPDATE messages SET read = ?2 WHERE id = ?1")?;
            for id in ids {
                update.execute(params![id.to_string(), read])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Messages to prune, oldest first; mail still waiting in the outbound queue is kept.
    fn prune_ids(
        &self,
        max_messages: Option<u64>,
        older_than_ms: Option<i64>,
        batch: u64,
    ) -> Result<Vec<MessageId>, StoreError> {
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        if let Some(cutoff) = older_than_ms {
            let ids = self.ids_for(
                "SELECT id FROM messages WHERE received_at < ?1 AND id NOT IN (SELECT message_id FROM queue)
                 ORDER BY id LIMIT ?2",
                vec![Value::Integer(cutoff), Value::Integer(batch)],
            )?;
            if !ids.is_empty() {
                return Ok(ids);
            }
        }
        if let Some(max) = max_messages {
            let excess = self.count()?.saturating_sub(max);
            let take = i64::try_from(excess).unwrap_or(i64::MAX).min(batch);
            if take > 0 {
                return self.ids_for(
                    "SELECT id FROM messages WHERE id NOT IN (SELECT message_id FROM queue)
                     ORDER BY id LIMIT ?1",
                    vec![Value::Integer(take)],
                );
            }
        }
        Ok(vec![])
    }

    fn rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<MessageRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows =
            stmt.query_map(params_from_iter(values), read_row)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().collect()
    }

    /// Totals from indexes: COUNT(*) on the narrowest index, unread on its partial index.
    fn totals(&self) -> Result<(u64, u64), StoreError> {
        let total: i64 = self.conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        let unread: i64 =
            self.conn
                .query_row("SELECT COUNT(*) FROM messages WHERE read = 0", [], |r| r.get(0))?;
        Ok((total as u64, unread as u64))
    }

    fn tags(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT tag FROM tags ORDER BY tag")?;
        let tags = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(tags)
    }

    /// The page and the match counts from one pass over the rows; the counts are `None` when
    /// the page is empty (they then need their own query).
    fn page_in_one_scan(
        &self,
        condition: &str,
        values: Vec<Value>,
    ) -> Result<(Vec<MessageRow>, Option<Counts>), StoreError> {
        let sql = format!(
            "WITH matched AS MATERIALIZED (SELECT m.id, m.read FROM messages m WHERE {condition}),
                  counts AS (SELECT COUNT(*) AS n, COALESCE(SUM(read = 0), 0) AS u FROM matched),
                  page AS (SELECT id FROM matched ORDER BY id DESC LIMIT ? OFFSET ?)
             SELECT {ROW_COLUMNS}, (SELECT n FROM counts), (SELECT u FROM counts)
             FROM page p JOIN messages m ON m.id = p.id ORDER BY m.id DESC"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut counts = None;
        let rows = stmt
            .query_map(params_from_iter(values), |row| {
                let n: i64 = row.get(17)?;
                let u: i64 = row.get(18)?;
                Ok((read_row(row)?, n as u64, u as u64))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (row, n, u) in rows {
            counts = Some((n, u));
            out.push(row?);
        }
        Ok((out, counts))
    }

    fn counts(&self, condition: &str, values: Vec<Value>) -> Result<(u64, u64), StoreError> {
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {condition}"
        );
        let (all, unread): (i64, i64) =
            self.conn.query_row(&sql, params_from_iter(values), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((all as u64, unread as u64))
    }
}

/// Reads one [`MessageRow`] from a row of [`ROW_COLUMNS`]; JSON errors surface as `Corrupt`.
fn read_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<MessageRow, StoreError>> {
    let id: String = row.get(0)?;
    let json = |index: usize| -> rusqlite::Result<Result<Vec<Mailbox>, StoreError>> {
        let text: String = row.get(index)?;
        Ok(serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt { id: id.clone(), reason: e.to_string() }))
    };
    let (to, cc, bcc, reply_to) = (json(5)?, json(6)?, json(7)?, json(8)?);
    let from_name: Option<String> = row.get(3)?;
    let from_addr: Option<String> = row.get(4)?;
    let tags: Option<String> = row.get(16)?;
    let build = || -> Result<MessageRow, StoreError> {
        Ok(MessageRow {
            id: id
                .parse()
                .map_err(|_| StoreError::Corrupt { id: id.clone(), reason: "bad id".into() })?,
            received_at_ms: row.get(1)?,
            read: row.get(2)?,
            summary: Summary {
                from: from_addr
                    .map(|address| Mailbox { name: from_name.unwrap_or_default(), address }),
                to: to?,
                cc: cc?,
                bcc: bcc?,
                reply_to: reply_to?,
                subject: row.get(9)?,
                date: row.get(10)?,
                message_id: row.get(11)?,
                size: row.get::<_, i64>(12)? as u64,
                attachments: row.get(13)?,
                snippet: row.get(14)?,
                tags: tags
                    .map(|t| t.split('\u{1f}').map(str::to_string).collect())
                    .unwrap_or_default(),
            },
            username: row.get(15)?,
        })
    };
    Ok(build())
}

impl Store for SqliteStore {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        for msg in batch {
            Self::insert(&tx, msg)?;
        }
        tx.commit()?;
        self.committed();
        Ok(())
    }

    fn apply(&mut self, mutation: &Mutation) -> Result<Vec<MessageId>, StoreError> {
        let result = self.apply_mutation(mutation);
        self.committed();
        result
    }
}

impl SqliteStore {
    /// Tells the checkpointer that the WAL grew.
    fn committed(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.committed();
        }
    }

    fn apply_mutation(&mut self, mutation: &Mutation) -> Result<Vec<MessageId>, StoreError> {
        match mutation {
            Mutation::Delete(selection) => {
                let ids = self.select_ids(selection)?;
                self.delete(&ids)?;
                Ok(ids)
            }
            Mutation::SetRead(selection, read) => {
                let ids = self.select_ids(selection)?;
                self.set_read(&ids, *read)?;
                Ok(ids)
            }
            Mutation::SetTags(selection, tags) => {
                let ids = self.select_ids(selection)?;
                self.set_tags(&ids, tags)?;
                Ok(ids)
            }
            Mutation::RenameTag { from, to } => self.rename_tag(from, Some(to)),
            Mutation::DeleteTag(tag) => self.rename_tag(tag, None),
            Mutation::MaildirDelivered(copies) => {
                let tx = write_transaction(&mut self.conn)?;
                {
                    let mut mark = tx.prepare_cached(
                        "UPDATE recipients SET maildir_done = 1 WHERE message_id = ?1 AND account = ?2",
                    )?;
                    for (id, account) in copies {
                        mark.execute(params![id.to_string(), account])?;
                    }
                }
                tx.commit()?;
                Ok(vec![])
            }
            Mutation::MergeIndex { pages } => {
                self.conn.execute(
                    "INSERT INTO messages_fts(messages_fts, rank) VALUES ('merge', ?1)",
                    [i64::try_from(*pages).unwrap_or(i64::MAX)],
                )?;
                Ok(vec![])
            }
            Mutation::Prune { max_messages, older_than_ms, batch } => {
                let ids = self.prune_ids(*max_messages, *older_than_ms, *batch)?;
                self.delete(&ids)?;
                Ok(ids)
            }
            Mutation::QueueAttempted { updates, attempted_at_ms, reports } => {
                self.record_attempt(updates, *attempted_at_ms, reports)
            }
            Mutation::QueueNotified { message, reports, notices, delay_warned } => {
                self.record_notices(message, reports, notices, *delay_warned)
            }
            Mutation::QueueCommand { target, command, now_ms } => {
                self.queue_command(target, *command, *now_ms)
            }
            Mutation::Enqueue { message, entries, now_ms } => {
                self.enqueue(message, entries, *now_ms)?;
                Ok(vec![])
            }
        }
    }
}

impl StoreRead for SqliteStore {
    fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM messages m WHERE m.id = ?1");
        let Some(row) = self.rows(&sql, vec![Value::Text(id.to_string())])?.pop() else {
            return Ok(None);
        };
        let (envelope, received_header, raw): (String, Vec<u8>, Vec<u8>) = self.conn.query_row(
            "SELECT m.envelope, d.received_header, d.raw
             FROM messages m JOIN message_data d ON d.id = m.id WHERE m.id = ?1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let envelope: Envelope = serde_json::from_str(&envelope)
            .map_err(|e| StoreError::Corrupt { id: id.to_string(), reason: e.to_string() })?;
        Ok(Some(StoredMessage {
            id: *id,
            envelope,
            received_header,
            raw,
            summary: row.summary,
            read: row.read,
        }))
    }

    fn list_ids(&self, limit: usize) -> Result<Vec<MessageId>, StoreError> {
        self.ids_for(
            "SELECT id FROM messages ORDER BY id DESC LIMIT ?1",
            vec![Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX))],
        )
    }

    fn count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))?;
        Ok(n as u64)
    }

    fn page(
        &self,
        query: Option<&SearchQuery>,
        start: u64,
        limit: u64,
    ) -> Result<MessagePage, StoreError> {
        let (condition, values) =
            query.map(SearchQuery::sql).unwrap_or_else(|| ("1".into(), vec![]));
        let mut page_values = values.clone();
        page_values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        page_values.push(Value::Integer(i64::try_from(start).unwrap_or(i64::MAX)));
        // Substring filters scan every row; then one scan yields both the page and the counts.
        let scanning = ["LIKE", "GLOB", "json_each"].iter().any(|op| condition.contains(op));
        if scanning {
            let (rows, counts) = self.page_in_one_scan(&condition, page_values)?;
            let (matching, matching_unread) = match counts {
                Some(counts) => counts,
                None => self.counts(&condition, values)?,
            };
            let (total, unread) = self.totals()?;
            return Ok(MessagePage {
                rows,
                matching,
                matching_unread,
                total,
                unread,
                tags: self.tags()?,
            });
        }
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM messages m WHERE {condition} ORDER BY m.id DESC LIMIT ? OFFSET ?"
        );
        let rows = self.rows(&sql, page_values)?;
        let (total, unread) = self.totals()?;
        let (matching, matching_unread) =
            if condition == "1" { (total, unread) } else { self.counts(&condition, values)? };
        Ok(MessagePage { rows, matching, matching_unread, total, unread, tags: self.tags()? })
    }

    fn matching_after(
        &self,
        query: Option<&SearchQuery>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let (condition, mut values) =
            query.map(SearchQuery::sql).unwrap_or_else(|| ("1".into(), vec![]));
        values.push(Value::Text(after.map(|id| id.to_string()).unwrap_or_default()));
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM messages m WHERE ({condition}) AND m.id > ? ORDER BY m.id LIMIT ?"
        );
        self.rows(&sql, values)
    }

    fn matching_among(
        &self,
        query: Option<&SearchQuery>,
        ids: &[MessageId],
    ) -> Result<Vec<MessageRow>, StoreError> {
        let (condition, values) =
            query.map(SearchQuery::sql).unwrap_or_else(|| ("1".into(), vec![]));
        let mut rows = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut chunk_values = values.clone();
            chunk_values.extend(chunk.iter().map(|id| Value::Text(id.to_string())));
            let sql = format!(
                "SELECT {ROW_COLUMNS} FROM messages m WHERE ({condition}) AND m.id IN ({marks}) ORDER BY m.id"
            );
            rows.extend(self.rows(&sql, chunk_values)?);
        }
        rows.sort_by_key(|row| row.id);
        Ok(rows)
    }

    fn pending_maildir(&self, limit: u64) -> Result<Vec<MaildirCopy>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT r.message_id, r.account, a.maildir
             FROM recipients r JOIN accounts a ON a.login = r.account
             WHERE r.maildir_done = 0 AND r.account IS NOT NULL AND a.maildir IS NOT NULL
             ORDER BY r.message_id LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, account, maildir)| {
                Ok(MaildirCopy {
                    id: id
                        .parse()
                        .map_err(|_| StoreError::Corrupt { id, reason: "bad id".into() })?,
                    account,
                    maildir: maildir.into(),
                })
            })
            .collect()
    }

    fn inboxes(&self, account: Option<&str>) -> Result<Vec<InboxCount>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.inbox, COUNT(DISTINCT m.id), COUNT(DISTINCT CASE WHEN m.read = 0 THEN m.id END)
             FROM recipients r JOIN messages m ON m.id = r.message_id
             WHERE ?1 IS NULL OR m.id IN (SELECT message_id FROM recipients WHERE account = ?1)
             GROUP BY r.inbox ORDER BY COUNT(DISTINCT m.id) DESC, r.inbox",
        )?;
        let rows = stmt.query_map([account], |r| {
            Ok(InboxCount {
                address: r.get(0)?,
                total: r.get::<_, i64>(1)? as u64,
                unread: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn due_entries(
        &self,
        now_ms: i64,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        crate::queue::due_entries(&self.conn, now_ms, limit, skip)
    }

    fn next_due_ms(&self, after_ms: i64) -> Result<Option<i64>, StoreError> {
        crate::queue::next_due_ms(&self.conn, after_ms)
    }

    fn queue_entries(&self, filter: &QueueFilter) -> Result<(Vec<QueueEntry>, u64), StoreError> {
        crate::queue::queue_entries(&self.conn, filter)
    }

    fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        crate::queue::queue_counts(&self.conn)
    }

    fn reported_messages(&self, now_ms: i64, limit: u64) -> Result<Vec<MessageId>, StoreError> {
        crate::queue::reported_messages(&self.conn, now_ms, limit)
    }

    fn queue_reports(&self, message: &MessageId) -> Result<Vec<(i64, QueueReport)>, StoreError> {
        crate::queue::queue_reports(&self.conn, message)
    }

    fn tags_of(&self, query: Option<&SearchQuery>) -> Result<Vec<String>, StoreError> {
        let Some(query) = query else { return self.tags() };
        let (condition, values) = query.sql();
        let sql = format!(
            "SELECT DISTINCT t.tag FROM tags t JOIN messages m ON m.id = t.message_id
             WHERE {condition} ORDER BY t.tag"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let tags = stmt.query_map(params_from_iter(values), |r| r.get(0))?;
        Ok(tags.collect::<Result<Vec<String>, _>>()?)
    }

    fn latest_id(&self) -> Result<Option<MessageId>, StoreError> {
        Ok(self.ids_for("SELECT id FROM messages ORDER BY id DESC LIMIT 1", vec![])?.pop())
    }

    fn size_bytes(&self) -> Result<u64, StoreError> {
        let (pages, page_size): (i64, i64) = self.conn.query_row(
            "SELECT page_count, page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let wal =
            std::fs::metadata(self.path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0);
        Ok((pages * page_size) as u64 + wal)
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
