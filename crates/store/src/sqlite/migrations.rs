//! The SQLite schema: numbered migrations applied at open, tracked in `PRAGMA user_version`.
//! Entries are only ever appended; an applied migration never changes.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

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
    // 2: no index merging inside ingest commits; `Store::maintain_index` merges in the
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
    // 11: queue leases, so several nodes can share the queue (see `queue::Lease`): the node
    // attempting an entry and until when; NULL when nobody is. The due scan reads the lease's
    // end from the index too.
    "ALTER TABLE queue ADD COLUMN lease_owner TEXT;
    ALTER TABLE queue ADD COLUMN lease_until INTEGER; -- ms since the Unix epoch
    DROP INDEX queue_due;
    CREATE INDEX queue_due ON queue(next_attempt, id, domain, lease_until) WHERE state = 'queued';",
    // 12: entry ids are never reused (AUTOINCREMENT). A plain rowid hands the id of the
    // newest entry, once delivered and deleted, to the next one queued, and the scheduler
    // still tracked the old entry by that id while recording it: the new entry was leased
    // and then skipped as "in flight", stuck until its lease ran out. SQLite can only add
    // AUTOINCREMENT by rebuilding the table; the copy keeps every id.
    "CREATE TABLE queue_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
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
        delay_warned INTEGER NOT NULL DEFAULT 0,
        trusted_client INTEGER NOT NULL DEFAULT 1,
        lease_owner TEXT,
        lease_until INTEGER            -- ms since the Unix epoch
    );
    INSERT INTO queue_new (id, message_id, sender, recipient, domain, notify, orcpt, state,
        attempts, created_at, next_attempt, last_attempt, last_error, delay_warned,
        trusted_client, lease_owner, lease_until)
    SELECT id, message_id, sender, recipient, domain, notify, orcpt, state,
        attempts, created_at, next_attempt, last_attempt, last_error, delay_warned,
        trusted_client, lease_owner, lease_until FROM queue;
    DROP TABLE queue;
    ALTER TABLE queue_new RENAME TO queue;
    CREATE INDEX queue_due ON queue(next_attempt, id, domain, lease_until) WHERE state = 'queued';
    CREATE INDEX queue_message ON queue(message_id);",
    // 13: the message and unread totals as counters, so listing and searching read two
    // numbers instead of counting a million index entries per request. The statements that
    // insert, delete and mark messages keep them (`messages::adjust_counts`): an AFTER INSERT
    // trigger did it too, but made every insert statement ~0.1 ms dearer (its statement
    // journal), a third of ingest's CPU.
    "CREATE TABLE message_counts (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        total INTEGER NOT NULL,
        unread INTEGER NOT NULL
    );
    INSERT INTO message_counts (one, total, unread)
        SELECT 1, COUNT(*), COALESCE(SUM(read = 0), 0) FROM messages;
    -- The read messages in page order (`messages_unread` lists the others).
    CREATE INDEX messages_read ON messages(id) WHERE read <> 0;",
    // 14: the header fields that filters search for substrings (`subject:`, `from:`, `to:`,
    // `cc:`, `bcc:`, `reply-to:`, `message-id:`) in a trigram index, so a filter of three
    // or more characters reads its candidates from the index instead of scanning every row
    // (the filter's own test still decides). A mailbox is `name U+0001 address`, a list's
    // mailboxes joined by U+0001: no search text contains it, so no match spans two values.
    "CREATE VIRTUAL TABLE messages_fields USING fts5(
        subject, sender, to_list, cc_list, bcc_list, reply_to_list, message_id,
        content = '', contentless_delete = 1, tokenize = 'trigram case_sensitive 0'
    );
    INSERT INTO messages_fields (rowid, subject, sender, to_list, cc_list, bcc_list,
        reply_to_list, message_id)
    SELECT rowid, subject,
        CASE WHEN from_addr IS NULL THEN '' ELSE COALESCE(from_name, '') || char(1) || from_addr END,
        (SELECT COALESCE(group_concat((j.value ->> 'name') || char(1) || (j.value ->> 'address'), char(1)), '')
         FROM json_each(to_json) AS j),
        (SELECT COALESCE(group_concat((j.value ->> 'name') || char(1) || (j.value ->> 'address'), char(1)), '')
         FROM json_each(cc_json) AS j),
        (SELECT COALESCE(group_concat((j.value ->> 'name') || char(1) || (j.value ->> 'address'), char(1)), '')
         FROM json_each(bcc_json) AS j),
        (SELECT COALESCE(group_concat((j.value ->> 'name') || char(1) || (j.value ->> 'address'), char(1)), '')
         FROM json_each(reply_to_json) AS j),
        COALESCE(message_id, '')
    FROM messages;
    -- Merged in the background, as messages_fts (migration 2).
    INSERT INTO messages_fields(messages_fields, rank) VALUES ('automerge', 0);
    INSERT INTO messages_fields(messages_fields, rank) VALUES ('crisismerge', 32);
    -- A deleted message leaves both indexes, whichever path deletes it.
    CREATE TRIGGER messages_unindex AFTER DELETE ON messages BEGIN
        DELETE FROM messages_fts WHERE rowid = OLD.rowid;
        DELETE FROM messages_fields WHERE rowid = OLD.rowid;
    END;",
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew { found: version, supported });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema version `version`, as an older Tern left it.
    fn at_version(version: usize) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        for (index, sql) in MIGRATIONS.iter().enumerate().take(version) {
            conn.execute_batch(sql).expect("migration");
            conn.pragma_update(None, "user_version", index as i64 + 1).expect("version");
        }
        conn
    }

    fn queue_ids(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn.prepare("SELECT id, recipient FROM queue ORDER BY id").expect("sql");
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    fn enqueue(conn: &Connection, recipient: &str) -> i64 {
        conn.execute(
            "INSERT INTO queue (message_id, sender, recipient, domain, notify, state, created_at,
                next_attempt) VALUES ('m1', 'a@x.test', ?1, 'y.test', '', 'queued', 1, 1)",
            [recipient],
        )
        .expect("insert");
        conn.last_insert_rowid()
    }

    fn add_message(conn: &Connection, id: &str, read: bool) {
        conn.execute(
            "INSERT INTO messages (id, received_at, read, size, mail_from, to_json, cc_json,
                bcc_json, reply_to_json, subject, attachments, snippet, envelope)
             VALUES (?1, 1, ?2, 1, 'a@x.test', '[]', '[]', '[]', '[]', '', 0, '', '{}')",
            rusqlite::params![id, read],
        )
        .expect("message");
    }

    /// The counters, and the same numbers counted row by row.
    fn counters_and_counted(conn: &Connection) -> ((i64, i64), (i64, i64)) {
        let counters = conn
            .query_row("SELECT total, unread FROM message_counts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("counters");
        let counted = conn
            .query_row("SELECT COUNT(*), COALESCE(SUM(read = 0), 0) FROM messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("counted");
        (counters, counted)
    }

    #[test]
    fn message_counters_start_from_the_rows() {
        let mut conn = at_version(12);
        add_message(&conn, "m1", false);
        add_message(&conn, "m2", true);
        add_message(&conn, "m3", false);
        migrate(&mut conn).expect("migrate");
        assert_eq!(counters_and_counted(&conn), ((3, 2), (3, 2)));
    }

    #[test]
    fn header_fields_of_stored_messages_enter_the_trigram_index_and_leave_with_them() {
        let mut conn = at_version(13);
        conn.execute(
            "INSERT INTO messages (id, received_at, size, mail_from, from_name, from_addr, to_json,
                cc_json, bcc_json, reply_to_json, subject, message_id, attachments, snippet, envelope)
             VALUES ('m1', 1, 1, 'a@x.test', 'Bea', 'bea@x.test',
                '[{\"name\":\"Ann\",\"address\":\"ann@y.test\"},{\"name\":\"\",\"address\":\"cy@y.test\"}]',
                '[]', '[]', '[]', 'Quarterly report', 'id-42@x.test', 0, '', '{}')",
            [],
        )
        .expect("message");
        add_message(&conn, "m2", false);
        migrate(&mut conn).expect("migrate");
        let found = |expr: &str| -> i64 {
            conn.query_row(
                "SELECT COUNT(*) FROM messages_fields WHERE messages_fields MATCH ?1",
                [expr],
                |r| r.get(0),
            )
            .expect("match")
        };
        assert_eq!(found("{subject} : \"TERLY\""), 1);
        assert_eq!(found("{sender} : \"bea@x\""), 1);
        assert_eq!(found("{to_list} : \"ann@y\""), 1);
        assert_eq!(found("{to_list} : \"cy@y.test\""), 1);
        assert_eq!(found("{to_list} : \"testcy\""), 0, "no match across two mailboxes");
        assert_eq!(found("{message_id} : \"id-42\""), 1);
        assert_eq!(found("{sender} : \"ann\""), 0);
        conn.execute("DELETE FROM messages WHERE id = 'm1'", []).expect("delete");
        assert_eq!(found("{subject} : \"terly\""), 0, "gone with its message");
    }

    #[test]
    fn queue_entries_keep_their_ids_and_an_id_is_never_handed_out_twice() {
        let mut conn = at_version(11);
        add_message(&conn, "m1", false);
        for recipient in ["b@y.test", "c@y.test", "d@y.test"] {
            enqueue(&conn, recipient);
        }
        conn.execute("DELETE FROM queue WHERE id = 2", []).expect("delete");
        migrate(&mut conn).expect("migrate");
        let kept = queue_ids(&conn);
        assert_eq!(kept, [(1, "b@y.test".to_string()), (3, "d@y.test".to_string())]);
        // The newest entry delivered (deleted): the next one gets a new id, not its id.
        conn.execute("DELETE FROM queue WHERE id = 3", []).expect("delete");
        assert_eq!(enqueue(&conn, "e@y.test"), 4);
        conn.execute("DELETE FROM queue WHERE id = 4", []).expect("delete");
        assert_eq!(enqueue(&conn, "f@y.test"), 5);
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue'
                 AND name IN ('queue_due', 'queue_message')",
                [],
                |r| r.get(0),
            )
            .expect("indexes");
        assert_eq!(indexes, 2, "the queue's indexes are back");
    }
}
