//! The SQLite backend behind the neutral traits: which statement answers each method of
//! [`Store`] and [`StoreRead`].

use rusqlite::{OptionalExtension, params, params_from_iter};

use super::SqliteStore;
use super::messages::{IDS_PER_STATEMENT, ROW_COLUMNS};
use super::search::{Param, Plan, condition};
use super::write_transaction;
use crate::id::MessageId;
use crate::model::{
    Envelope, InboxCount, MaildirCopy, MessagePage, MessageRow, Mutation, NewMessage, StoredMessage,
};
use crate::queue::{Lease, QueueCounts, QueueEntry, QueueFilter, QueueReport, QueueTops};
use crate::search::SearchQuery;
use crate::{Store, StoreError, StoreRead};

impl Store for SqliteStore {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        // New messages are unread.
        let added = i64::try_from(batch.len()).unwrap_or(i64::MAX);
        super::messages::adjust_counts(&tx, added, added)?;
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

    fn lease_due(
        &mut self,
        lease: &Lease,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let leased = self.take_leases(lease, limit, skip);
        self.committed();
        leased
    }

    fn renew_leases(&mut self, lease: &Lease, entries: &[i64]) -> Result<Vec<i64>, StoreError> {
        let held = self.extend_leases(lease, entries);
        self.committed();
        held
    }

    fn release_leases(&mut self, node: &str, entries: &[i64]) -> Result<(), StoreError> {
        let released = self.drop_leases(node, entries);
        self.committed();
        released
    }

    fn maintain_index(&mut self, budget_pages: u64) -> Result<(), StoreError> {
        let budget = i64::try_from(budget_pages).unwrap_or(i64::MAX);
        self.conn.execute(
            "INSERT INTO messages_fts(messages_fts, rank) VALUES ('merge', ?1)",
            [budget],
        )?;
        self.conn.execute(
            "INSERT INTO messages_fields(messages_fields, rank) VALUES ('merge', ?1)",
            [budget],
        )?;
        self.committed();
        Ok(())
    }
}

impl SqliteStore {
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
            Mutation::Prune { max_messages, older_than_ms, batch } => {
                let ids = self.prune_ids(*max_messages, *older_than_ms, *batch)?;
                self.delete(&ids)?;
                Ok(ids)
            }
            Mutation::QueueAttempted { node, updates, attempted_at_ms, reports } => {
                self.record_attempt(node, updates, *attempted_at_ms, reports)
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
        let Some(row) = self.rows(&sql, vec![Param::Text(id.to_string())])?.pop() else {
            return Ok(None);
        };
        let data: Option<(String, Vec<u8>, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT m.envelope, d.received_header, d.raw
                 FROM messages m JOIN message_data d ON d.id = m.id WHERE m.id = ?1",
                [id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        // Deleted between the two reads (a relayed message delivered meanwhile): gone, like a
        // message never there, not an error.
        let Some((envelope, received_header, raw)) = data else { return Ok(None) };
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
            vec![Param::Integer(i64::try_from(limit).unwrap_or(i64::MAX))],
        )
    }

    fn count(&self) -> Result<u64, StoreError> {
        Ok(self.totals()?.0)
    }

    fn page(
        &self,
        query: Option<&SearchQuery>,
        start: u64,
        limit: u64,
    ) -> Result<MessagePage, StoreError> {
        // One snapshot for the counters, the counts and the rows, so they agree while the
        // writer commits.
        let snapshot = self.conn.unchecked_transaction()?;
        let totals = self.totals()?;
        let plan = query.map(Plan::of).unwrap_or_default();
        let (rows, (matching, matching_unread)) = self.plan_page(&plan, start, limit, totals)?;
        let (total, unread) = totals;
        let tags = self.tags()?;
        snapshot.finish()?;
        Ok(MessagePage { rows, matching, matching_unread, total, unread, tags })
    }

    fn matching_after(
        &self,
        query: Option<&SearchQuery>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let (condition, mut values) = query.map(condition).unwrap_or_else(|| ("1".into(), vec![]));
        values.push(Param::Text(after.map(|id| id.to_string()).unwrap_or_default()));
        values.push(Param::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
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
        let (condition, values) = query.map(condition).unwrap_or_else(|| ("1".into(), vec![]));
        let mut rows = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut chunk_values = values.clone();
            chunk_values.extend(chunk.iter().map(|id| Param::Text(id.to_string())));
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
        super::queue::due_entries(&self.conn, now_ms, limit, skip)
    }

    fn next_due_ms(&self, after_ms: i64) -> Result<Option<i64>, StoreError> {
        super::queue::next_due_ms(&self.conn, after_ms)
    }

    fn queue_entries(&self, filter: &QueueFilter) -> Result<(Vec<QueueEntry>, u64), StoreError> {
        super::queue::queue_entries(&self.conn, filter)
    }

    fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        super::queue::queue_counts(&self.conn)
    }

    fn received_histogram(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        super::messages::received_histogram(&self.conn, since_ms, bucket_ms)
    }

    fn queue_tops(&self, sample: u64, limit: u64) -> Result<QueueTops, StoreError> {
        super::queue::queue_tops(&self.conn, sample, limit)
    }

    fn reported_messages(&self, now_ms: i64, limit: u64) -> Result<Vec<MessageId>, StoreError> {
        super::queue::reported_messages(&self.conn, now_ms, limit)
    }

    fn queue_reports(&self, message: &MessageId) -> Result<Vec<(i64, QueueReport)>, StoreError> {
        super::queue::queue_reports(&self.conn, message)
    }

    fn tags_of(&self, query: Option<&SearchQuery>) -> Result<Vec<String>, StoreError> {
        let Some(query) = query else { return self.tags() };
        let (condition, values) = condition(query);
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
