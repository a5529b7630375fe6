//! Messages in SQLite: inserting a committed message (its row, data, recipients, tags, queue
//! entries and full-text entry), reading rows back, and the changes to stored messages
//! (delete, read flags, tags, pruning).

use rusqlite::{params, params_from_iter};

use super::SqliteStore;
use super::search::{Param, condition};
use super::write_transaction;
use crate::id::MessageId;
use crate::inbox::Inbox;
use crate::model::{MessageRow, NewMessage, Selection};
use crate::search::SearchQuery;
use crate::summary::{Mailbox, SearchText, Summary};
use crate::{StoreError, StoreRead};

/// Matching and unread-matching message counts.
pub(super) type Counts = (u64, u64);

/// Most ids bound in one statement (SQLite's limit is 32,766 variables).
pub(super) const IDS_PER_STATEMENT: usize = 10_000;

/// Columns of a [`MessageRow`], in the order [`read_row`] expects, over `messages m`.
pub(super) const ROW_COLUMNS: &str = "m.id, m.received_at, m.read, m.from_name, m.from_addr, m.to_json,
    m.cc_json, m.bcc_json, m.reply_to_json, m.subject, m.date, m.message_id, m.size,
    m.attachments, m.snippet, m.username,
    (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM tags t WHERE t.message_id = m.id ORDER BY tag))";

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

impl SqliteStore {
    pub(super) fn insert(
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
        super::queue::insert_entries(tx, msg)?;
        let mut insert_tag =
            tx.prepare_cached("INSERT OR IGNORE INTO tags (message_id, tag) VALUES (?1, ?2)")?;
        for tag in &s.tags {
            insert_tag.execute(params![id, tag])?;
        }
        if cfg!(feature = "bench-without-index") {
            // The benchmark comparator: everything above, none of the index below.
            return Ok(());
        }
        index_text(tx, rowid, &row.summary, &msg.search_text)?;
        index_fields(tx, rowid, &row.summary)
    }

    /// The ids a selection covers, oldest first.
    pub(super) fn select_ids(&self, selection: &Selection) -> Result<Vec<MessageId>, StoreError> {
        let (condition, values) = match selection {
            Selection::All => ("1".to_string(), vec![]),
            Selection::Ids(ids) => {
                // In chunks: SQLite bounds the number of variables in one statement.
                let mut found = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(IDS_PER_STATEMENT) {
                    let marks = vec!["?"; chunk.len()].join(",");
                    let values = chunk.iter().map(|id| Param::Text(id.to_string())).collect();
                    let sql = format!(
                        "SELECT m.id FROM messages m WHERE m.id IN ({marks}) ORDER BY m.id"
                    );
                    found.extend(self.ids_for(&sql, values)?);
                }
                found.sort();
                return Ok(found);
            }
            Selection::Search(query) => condition(&SearchQuery::parse(query)?),
            Selection::Matching(query) => condition(query),
            Selection::Inbox(inbox) => (
                "m.id IN (SELECT message_id FROM recipients WHERE inbox = ?)".to_string(),
                vec![Param::Text(Inbox::of(inbox).address)],
            ),
        };
        let sql = format!("SELECT m.id FROM messages m WHERE {condition} ORDER BY m.id");
        self.ids_for(&sql, values)
    }

    pub(super) fn ids_for(
        &self,
        sql: &str,
        values: Vec<Param>,
    ) -> Result<Vec<MessageId>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let ids = stmt
            .query_map(params_from_iter(values), |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter()
            .map(|id| id.parse().map_err(|_| StoreError::Corrupt { id, reason: "bad id".into() }))
            .collect()
    }

    pub(super) fn delete(&mut self, ids: &[MessageId]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let ids: Vec<String> = ids.iter().map(MessageId::to_string).collect();
            delete_rows(&tx, &ids)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn set_tags(
        &mut self,
        ids: &[MessageId],
        tags: &[String],
    ) -> Result<(), StoreError> {
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
    pub(super) fn rename_tag(
        &mut self,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<MessageId>, StoreError> {
        // Read before the write transaction: this thread is the store's only writer.
        let ids = self.ids_for(
            "SELECT message_id FROM tags WHERE tag = ?1 ORDER BY message_id",
            vec![Param::Text(from.to_string())],
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

    pub(super) fn set_read(&mut self, ids: &[MessageId], read: bool) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut update =
                tx.prepare_cached("UPDATE messages SET read = ?2 WHERE id = ?1 AND read <> ?2")?;
            let mut changed = 0i64;
            for id in ids {
                changed += update.execute(params![id.to_string(), read])? as i64;
            }
            adjust_counts(&tx, 0, if read { -changed } else { changed })?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Messages to prune, oldest first; mail still waiting in the outbound queue is kept.
    pub(super) fn prune_ids(
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
                vec![Param::Integer(cutoff), Param::Integer(batch)],
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
                    vec![Param::Integer(take)],
                );
            }
        }
        Ok(vec![])
    }

    pub(super) fn rows(
        &self,
        sql: &str,
        values: Vec<Param>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows =
            stmt.query_map(params_from_iter(values), read_row)?.collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().collect()
    }

    /// All messages and the unread ones, from the counters the triggers keep (migration 13).
    pub(super) fn totals(&self) -> Result<(u64, u64), StoreError> {
        let (total, unread): (i64, i64) =
            self.conn.query_row("SELECT total, unread FROM message_counts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        Ok((total.max(0) as u64, unread.max(0) as u64))
    }

    pub(super) fn tags(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT tag FROM tags ORDER BY tag")?;
        let tags = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(tags)
    }

    /// The page and the match counts from one pass over the rows; the counts are `None` when
    /// the page is empty (they then need their own query).
    pub(super) fn page_in_one_scan(
        &self,
        condition: &str,
        values: Vec<Param>,
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

    pub(super) fn counts(
        &self,
        condition: &str,
        values: Vec<Param>,
    ) -> Result<(u64, u64), StoreError> {
        let sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {condition}"
        );
        let (all, unread): (i64, i64) =
            self.conn.query_row(&sql, params_from_iter(values), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((all as u64, unread as u64))
    }
}

/// Adds a message's text to the full-text index, under the message's rowid.
fn index_text(
    tx: &rusqlite::Transaction<'_>,
    rowid: i64,
    s: &Summary,
    text: &SearchText,
) -> Result<(), StoreError> {
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

/// Changes the message counters (migration 13) by these amounts, inside the transaction
/// that changed the messages.
pub(super) fn adjust_counts(
    tx: &rusqlite::Transaction<'_>,
    total: i64,
    unread: i64,
) -> Result<(), StoreError> {
    if total != 0 || unread != 0 {
        tx.prepare_cached("UPDATE message_counts SET total = total + ?1, unread = unread + ?2")?
            .execute(params![total, unread])?;
    }
    Ok(())
}

/// Deletes these messages (ids as stored) and counts them off; the trigger
/// `messages_unindex` removes their full-text entries. Returns how many were there.
pub(super) fn delete_rows(
    tx: &rusqlite::Transaction<'_>,
    ids: &[String],
) -> Result<u64, StoreError> {
    let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1 RETURNING read")?;
    let (mut deleted, mut unread) = (0i64, 0i64);
    for id in ids {
        let mut rows = delete.query([id])?;
        while let Some(row) = rows.next()? {
            deleted += 1;
            if !row.get::<_, bool>(0)? {
                unread += 1;
            }
        }
    }
    adjust_counts(tx, -deleted, -unread)?;
    Ok(deleted as u64)
}

/// Adds a message's header fields to the trigram index (migration 14), under its rowid.
fn index_fields(tx: &rusqlite::Transaction<'_>, rowid: i64, s: &Summary) -> Result<(), StoreError> {
    let mailbox = |m: &Mailbox| format!("{}\u{1}{}", m.name, m.address);
    let list = |list: &[Mailbox]| list.iter().map(mailbox).collect::<Vec<_>>().join("\u{1}");
    tx.prepare_cached(
        "INSERT INTO messages_fields (rowid, subject, sender, to_list, cc_list, bcc_list,
            reply_to_list, message_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        rowid,
        s.subject,
        s.from.as_ref().map(mailbox).unwrap_or_default(),
        list(&s.to),
        list(&s.cc),
        list(&s.bcc),
        list(&s.reply_to),
        s.message_id.as_deref().unwrap_or_default(),
    ])?;
    Ok(())
}

/// Reads one [`MessageRow`] from a row of [`ROW_COLUMNS`]; JSON errors surface as `Corrupt`.
pub(super) fn read_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<MessageRow, StoreError>> {
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

/// Messages per `bucket_ms` since `since_ms`, by the `received_at` index (a range of it, so
/// the cost follows the messages in the span, not the store's size).
pub(super) fn received_histogram(
    conn: &rusqlite::Connection,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<(i64, u64)>, StoreError> {
    let bucket_ms = bucket_ms.max(1);
    let mut stmt = conn.prepare_cached(
        "SELECT received_at / ?2 * ?2 AS bucket, COUNT(*) FROM messages
         WHERE received_at >= ?1 GROUP BY bucket ORDER BY bucket",
    )?;
    let rows = stmt.query_map(params![since_ms, bucket_ms], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
