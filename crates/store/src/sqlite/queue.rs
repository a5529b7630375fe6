//! The outbound queue in SQLite: the `queue` and `queue_reports` tables (migrations 6, 9, 10
//! and 11), the scheduler's scans, its leases, and the changes attempts, notices and operator
//! commands make. What the records mean is in the neutral [`crate::queue`] module.

use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};
use tracing::warn;

use super::search::Param;
use super::{SqliteStore, write_transaction};
use crate::StoreError;
use crate::id::MessageId;
use crate::model::{NewMessage, Route};
use crate::queue::{
    EntryState, EntryUpdate, Lease, NewEntry, QueueCommand, QueueCounts, QueueEntry, QueueFilter,
    QueueReport, QueueTarget, QueueTops, ReportAction, domain_of,
};

const ENTRY_COLUMNS: &str = "id, message_id, sender, recipient, domain, notify, orcpt, state,
    attempts, created_at, next_attempt, last_attempt, last_error, delay_warned, trusted_client";

fn read_entry(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<QueueEntry, StoreError>> {
    let id: i64 = row.get(0)?;
    let message_id: String = row.get(1)?;
    let notify: String = row.get(5)?;
    let state: String = row.get(7)?;
    let corrupt = |reason: &str| StoreError::Corrupt {
        id: format!("queue entry {id}"),
        reason: reason.into(),
    };
    let Ok(message_id) = message_id.parse() else { return Ok(Err(corrupt("bad message id"))) };
    let Some(state) = EntryState::parse(&state) else { return Ok(Err(corrupt("bad state"))) };
    Ok(Ok(QueueEntry {
        id,
        message_id,
        sender: row.get(2)?,
        recipient: row.get(3)?,
        domain: row.get(4)?,
        notify: notify.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        orcpt: row.get(6)?,
        state,
        attempts: row.get(8)?,
        created_at_ms: row.get(9)?,
        next_attempt_ms: row.get(10)?,
        last_attempt_ms: row.get(11)?,
        last_error: row.get(12)?,
        delay_warned: row.get(13)?,
        trusted_client: row.get(14)?,
    }))
}

/// Inserts the queue entries of a new message's remote recipients (inside its commit).
pub(crate) fn insert_entries(tx: &Transaction<'_>, msg: &NewMessage) -> Result<(), StoreError> {
    let remote = msg.envelope.recipients.iter().filter(|r| r.route == Route::Remote);
    let mut insert = None;
    for rcpt in remote {
        let stmt = match &mut insert {
            Some(stmt) => stmt,
            None => insert.insert(tx.prepare_cached(
                "INSERT INTO queue (message_id, sender, recipient, domain, notify, orcpt, state,
                    created_at, next_attempt, trusted_client)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?7, ?8)",
            )?),
        };
        stmt.execute(params![
            msg.id.to_string(),
            msg.envelope.mail_from,
            rcpt.address,
            domain_of(&rcpt.address),
            rcpt.notify.join(","),
            rcpt.orcpt,
            msg.envelope.received_at_ms,
            msg.envelope.trusted_client,
        ])?;
    }
    Ok(())
}

/// Queued entries due at `now_ms`, oldest due first, at most `limit`.
pub(crate) fn due_entries(
    conn: &Connection,
    now_ms: i64,
    limit: u64,
    skip: &[String],
) -> Result<Vec<QueueEntry>, StoreError> {
    let mut values = vec![Param::Integer(now_ms), Param::Integer(clamp(limit))];
    let skipping = skip_domains(skip, &mut values);
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM queue
             WHERE state = 'queued' AND next_attempt <= ?1 {skipping}
             ORDER BY next_attempt, id LIMIT ?2"
    );
    entries(conn, &sql, values)
}

/// The condition leaving out entries of the domains in `skip`, bound as the last parameter
/// (numbered after those in `values`).
fn skip_domains(skip: &[String], values: &mut Vec<Param>) -> String {
    // The domain is in the `queue_due` index: skipped entries cost no table lookups.
    if skip.is_empty() {
        return String::new();
    }
    values.push(Param::Text(serde_json::to_string(skip).unwrap_or_else(|_| "[]".into())));
    format!("AND domain NOT IN (SELECT value FROM json_each(?{}))", values.len())
}

/// When the earliest queued entry due after `after_ms` is due.
pub(crate) fn next_due_ms(conn: &Connection, after_ms: i64) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT MIN(next_attempt) FROM queue WHERE state = 'queued' AND next_attempt > ?1",
        [after_ms],
        |r| r.get(0),
    )?)
}

/// Entries matching `filter`, by message then entry number, and how many match in all.
pub(crate) fn queue_entries(
    conn: &Connection,
    filter: &QueueFilter,
) -> Result<(Vec<QueueEntry>, u64), StoreError> {
    let mut condition = vec!["1"];
    let mut values = vec![];
    if let Some(message) = filter.message {
        condition.push("message_id = ?");
        values.push(Param::Text(message.to_string()));
    }
    if let Some(state) = filter.state {
        condition.push("state = ?");
        values.push(Param::Text(state.as_str().into()));
    }
    let condition = condition.join(" AND ");
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM queue WHERE {condition}"),
        params_from_iter(values.clone()),
        |r| r.get(0),
    )?;
    let limit = if filter.limit == 0 { -1 } else { clamp(filter.limit) };
    values.push(Param::Integer(limit));
    values.push(Param::Integer(clamp(filter.start)));
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM queue WHERE {condition}
             ORDER BY message_id, id LIMIT ? OFFSET ?"
    );
    Ok((entries(conn, &sql, values)?, total as u64))
}

/// Messages with waiting reports and no queued entry due at `now_ms`, at most `limit`.
pub(crate) fn reported_messages(
    conn: &Connection,
    now_ms: i64,
    limit: u64,
) -> Result<Vec<MessageId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT r.message_id FROM queue_reports r
         WHERE NOT EXISTS (SELECT 1 FROM queue q WHERE q.message_id = r.message_id
                               AND q.state = 'queued' AND q.next_attempt <= ?1)
         LIMIT ?2",
    )?;
    let ids = stmt.query_map(params![now_ms, clamp(limit)], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for id in ids {
        let id = id?;
        let id = id.parse().map_err(|_| StoreError::Corrupt {
            id: format!("queue report of {id}"),
            reason: "bad message id".into(),
        })?;
        out.push(id);
    }
    Ok(out)
}

/// The reports waiting for `message`'s notice, oldest first.
pub(crate) fn queue_reports(
    conn: &Connection,
    message: &MessageId,
) -> Result<Vec<(i64, QueueReport)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, sender, recipient, orcpt, action, status, remote_mta, diagnostic,
                last_attempt, retry_until
         FROM queue_reports WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([message.to_string()], |row| read_report(row, message))?;
    rows.map(|row| row?).collect()
}

fn read_report(
    row: &rusqlite::Row<'_>,
    message: &MessageId,
) -> rusqlite::Result<Result<(i64, QueueReport), StoreError>> {
    let id: i64 = row.get(0)?;
    let action: String = row.get(4)?;
    let Some(action) = ReportAction::parse(&action) else {
        return Ok(Err(StoreError::Corrupt {
            id: format!("queue report {id}"),
            reason: "bad action".into(),
        }));
    };
    Ok(Ok((
        id,
        QueueReport {
            message_id: *message,
            sender: row.get(1)?,
            recipient: row.get(2)?,
            orcpt: row.get(3)?,
            action,
            status: row.get(5)?,
            remote_mta: row.get(6)?,
            diagnostic: row.get(7)?,
            last_attempt_ms: row.get(8)?,
            retry_until_ms: row.get(9)?,
        },
    )))
}

/// Counts over the whole queue.
pub(crate) fn queue_counts(conn: &Connection) -> Result<QueueCounts, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'held'), 0),
                COUNT(DISTINCT message_id) FROM queue",
        [],
        |r| {
            Ok(QueueCounts {
                queued: r.get::<_, i64>(0)? as u64,
                held: r.get::<_, i64>(1)? as u64,
                messages: r.get::<_, i64>(2)? as u64,
            })
        },
    )?)
}

/// Counts over the oldest `sample` entries (the primary key's order, so no sort of the whole
/// table), grouped in SQLite.
pub(crate) fn queue_tops(
    conn: &Connection,
    sample: u64,
    limit: u64,
) -> Result<QueueTops, StoreError> {
    let sample = i64::try_from(sample).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let top = |column: &str| -> Result<Vec<(String, u64)>, StoreError> {
        let sql = format!(
            "SELECT {column}, COUNT(*) FROM (SELECT {column} FROM queue ORDER BY id LIMIT ?1)
             WHERE {column} IS NOT NULL AND {column} != ''
             GROUP BY {column} ORDER BY COUNT(*) DESC, {column} LIMIT ?2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![sample, limit], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    };
    let sampled: i64 = conn.query_row(
        "SELECT COUNT(*) FROM (SELECT 1 FROM queue LIMIT ?1)",
        params![sample],
        |r| r.get(0),
    )?;
    Ok(QueueTops {
        destinations: top("domain")?,
        errors: top("last_error")?,
        sampled: sampled as u64,
    })
}

fn entries(
    conn: &Connection,
    sql: &str,
    values: Vec<Param>,
) -> Result<Vec<QueueEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(values), read_entry)?;
    rows.map(|row| row?).collect()
}

/// Applies each update to the entries `node` holds the lease of, clearing the lease of those
/// that stay; returns the messages of finished entries (sorted, once each) and the entries
/// refused because another node holds them (or none does: the lease was released).
fn apply_updates(
    tx: &Transaction<'_>,
    node: &str,
    updates: &[(i64, EntryUpdate)],
    attempted_at_ms: i64,
) -> Result<(Vec<String>, Vec<i64>), StoreError> {
    let mut touched = Vec::new();
    let mut refused = Vec::new();
    let mut owner_of =
        tx.prepare_cached("SELECT message_id, lease_owner FROM queue WHERE id = ?1")?;
    let mut done = tx.prepare_cached("DELETE FROM queue WHERE id = ?1")?;
    let mut defer = tx.prepare_cached(
        "UPDATE queue SET attempts = attempts + 1, last_attempt = ?2, next_attempt = ?3,
            last_error = ?4, delay_warned = delay_warned OR ?5,
            lease_owner = NULL, lease_until = NULL WHERE id = ?1",
    )?;
    let mut hold = tx.prepare_cached(
        "UPDATE queue SET attempts = attempts + 1, last_attempt = ?2, state = 'held',
            last_error = ?3, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
    )?;
    for (entry, update) in updates {
        // Deleted meanwhile (an operator, or another node finished it after this lease ran
        // out): nothing to record, and its report must not be filed a second time.
        let Some((message, owner)) = owner_of
            .query_row([entry], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
            .optional()?
        else {
            refused.push(*entry);
            continue;
        };
        if owner.as_deref() != Some(node) {
            refused.push(*entry);
            continue;
        }
        match update {
            EntryUpdate::Done => {
                done.execute([entry])?;
                touched.push(message);
            }
            EntryUpdate::Defer { next_attempt_ms, error, delay_warned } => {
                defer.execute(params![
                    entry,
                    attempted_at_ms,
                    next_attempt_ms,
                    error,
                    delay_warned
                ])?;
            }
            EntryUpdate::Hold { error } => {
                hold.execute(params![entry, attempted_at_ms, error])?;
            }
        }
    }
    touched.sort();
    touched.dedup();
    Ok((touched, refused))
}

impl SqliteStore {
    /// Records an attempt's results and the reports they produced (bounces, delay warnings),
    /// all in one transaction; returns the messages removed because nothing keeps them any
    /// more. Only entries `node` still holds the lease of are changed: the result of an entry
    /// another node has taken meanwhile is refused with its report, since that node's attempt
    /// is the one that counts (see [`crate::queue::Lease`]).
    pub(crate) fn record_attempt(
        &mut self,
        node: &str,
        updates: &[(i64, EntryUpdate)],
        attempted_at_ms: i64,
        reports: &[(i64, QueueReport)],
    ) -> Result<Vec<MessageId>, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        let (touched, refused) = apply_updates(&tx, node, updates, attempted_at_ms)?;
        if !refused.is_empty() {
            let refused: Vec<String> = refused.iter().map(i64::to_string).collect();
            warn!(node, entries = %refused.join(","), "queue: results refused, the lease was lost or the entry is gone");
        }
        let kept: Vec<&QueueReport> =
            reports.iter().filter(|(entry, _)| !refused.contains(entry)).map(|(_, r)| r).collect();
        insert_reports(&tx, &kept)?;
        let removed = remove_finished(&tx, &touched)?;
        tx.commit()?;
        Ok(removed)
    }

    /// Leases up to `limit` due entries to `lease.node` until `lease.until_ms`, oldest due
    /// first, skipping entries whose lease has not expired and the domains in `skip`.
    pub(crate) fn take_leases(
        &mut self,
        lease: &Lease,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let mut values = vec![
            Param::Text(lease.node.clone()),
            Param::Integer(lease.until_ms),
            Param::Integer(lease.now_ms),
            Param::Integer(clamp(limit)),
        ];
        let skipping = skip_domains(skip, &mut values);
        let sql = format!(
            "UPDATE queue SET lease_owner = ?1, lease_until = ?2
             WHERE id IN (SELECT id FROM queue
                 WHERE state = 'queued' AND next_attempt <= ?3
                     AND (lease_until IS NULL OR lease_until <= ?3) {skipping}
                 ORDER BY next_attempt, id LIMIT ?4)
             RETURNING {ENTRY_COLUMNS}"
        );
        let tx = write_transaction(&mut self.conn)?;
        let mut leased = entries(&tx, &sql, values)?;
        tx.commit()?;
        // RETURNING gives rows in no promised order.
        leased.sort_by_key(|e| (e.next_attempt_ms, e.id));
        Ok(leased)
    }

    /// Extends `lease.node`'s leases on `entries` to `lease.until_ms`; returns those it
    /// still held.
    pub(crate) fn extend_leases(
        &mut self,
        lease: &Lease,
        entries: &[i64],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        let mut held = Vec::new();
        {
            let mut renew = tx.prepare_cached(
                "UPDATE queue SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2",
            )?;
            for entry in entries {
                if renew.execute(params![entry, lease.node, lease.until_ms])? == 1 {
                    held.push(*entry);
                }
            }
        }
        tx.commit()?;
        Ok(held)
    }

    /// Gives up `node`'s leases on `entries` (those it no longer holds are left alone).
    pub(crate) fn drop_leases(&mut self, node: &str, entries: &[i64]) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut release = tx.prepare_cached(
                "UPDATE queue SET lease_owner = NULL, lease_until = NULL
                 WHERE id = ?1 AND lease_owner = ?2",
            )?;
            for entry in entries {
                release.execute(params![entry, node])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores `message`'s notices and drops the reports they carry, in one transaction;
    /// does nothing if a report is gone (its notice was sent). Returns the message if it was
    /// removed because nothing keeps it any more.
    pub(crate) fn record_notices(
        &mut self,
        message: &MessageId,
        reports: &[i64],
        notices: &[NewMessage],
        delay_warned: bool,
    ) -> Result<Vec<MessageId>, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let mut drop_report =
                tx.prepare_cached("DELETE FROM queue_reports WHERE id = ?1 AND message_id = ?2")?;
            for report in reports {
                if drop_report.execute(params![report, message.to_string()])? == 0 {
                    // Sent already: the transaction is rolled back when dropped.
                    return Ok(vec![]);
                }
            }
        }
        if delay_warned {
            tx.execute(
                "UPDATE queue SET delay_warned = 1 WHERE message_id = ?1",
                [message.to_string()],
            )?;
        }
        for notice in notices {
            SqliteStore::insert(&tx, notice)?;
        }
        let removed = remove_finished(&tx, &[message.to_string()])?;
        tx.commit()?;
        Ok(removed)
    }

    /// Applies an operator's command; returns the messages removed (for `Delete`).
    pub(crate) fn queue_command(
        &mut self,
        target: &QueueTarget,
        command: QueueCommand,
        now_ms: i64,
    ) -> Result<Vec<MessageId>, StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        let messages: Vec<String> = match target {
            QueueTarget::All => {
                let mut stmt = tx.prepare("SELECT DISTINCT message_id FROM queue")?;
                stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
            }
            QueueTarget::Messages(ids) => ids.iter().map(ToString::to_string).collect(),
        };
        {
            let sql = match command {
                QueueCommand::Retry => {
                    "UPDATE queue SET next_attempt = ?2 WHERE message_id = ?1 AND state = 'queued'"
                }
                QueueCommand::Hold => "UPDATE queue SET state = 'held' WHERE message_id = ?1",
                QueueCommand::Release => {
                    "UPDATE queue SET state = 'queued', next_attempt = ?2
                     WHERE message_id = ?1 AND state = 'held'"
                }
                QueueCommand::Delete => "DELETE FROM queue WHERE message_id = ?1",
            };
            let mut stmt = tx.prepare(sql)?;
            // Retry and release make entries due now (`?2`); hold and delete need no time.
            let timed = stmt.parameter_count() == 2;
            for message in &messages {
                if timed {
                    stmt.execute(params![message, now_ms])?;
                } else {
                    stmt.execute([message])?;
                }
            }
        }
        let removed =
            if command == QueueCommand::Delete { remove_finished(&tx, &messages)? } else { vec![] };
        tx.commit()?;
        Ok(removed)
    }

    /// Adds queue entries for a stored message (the catcher's release).
    pub(crate) fn enqueue(
        &mut self,
        message: &MessageId,
        entries: &[NewEntry],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn)?;
        {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
                [message.to_string()],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(StoreError::NoSuchMessage(*message));
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO queue (message_id, sender, recipient, domain, notify, orcpt, state,
                    created_at, next_attempt)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL, 'queued', ?6, ?6)",
            )?;
            for entry in entries {
                insert.execute(params![
                    message.to_string(),
                    entry.sender,
                    entry.recipient,
                    domain_of(&entry.recipient),
                    entry.notify.join(","),
                    now_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn insert_reports(tx: &Transaction<'_>, reports: &[&QueueReport]) -> Result<(), StoreError> {
    if reports.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO queue_reports (message_id, sender, recipient, orcpt, action, status,
            remote_mta, diagnostic, last_attempt, retry_until)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
         WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
    )?;
    for r in reports {
        insert.execute(params![
            r.message_id.to_string(),
            r.sender,
            r.recipient,
            r.orcpt,
            r.action.as_str(),
            r.status,
            r.remote_mta,
            r.diagnostic,
            r.last_attempt_ms,
            r.retry_until_ms,
        ])?;
    }
    Ok(())
}

/// Removes those of `messages` that have no queue entry left, no report waiting for its
/// notice and no copy that stays (every recipient was remote); returns the removed ids.
fn remove_finished(
    tx: &Transaction<'_>,
    messages: &[String],
) -> Result<Vec<MessageId>, StoreError> {
    let mut finished = tx.prepare_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM queue WHERE message_id = ?1)
            AND NOT EXISTS (SELECT 1 FROM queue_reports WHERE message_id = ?1)
            AND NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?1 AND route != 'remote')
            AND EXISTS (SELECT 1 FROM messages WHERE id = ?1)",
    )?;
    let mut done = Vec::new();
    for message in messages {
        if finished.query_row([message], |r| r.get::<_, bool>(0))? {
            done.push(message.clone());
        }
    }
    super::messages::delete_rows(tx, &done)?;
    Ok(done.iter().filter_map(|message| message.parse().ok()).collect())
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Envelope, Mutation, Recipient};
    use crate::summary::{SearchText, Summary};
    use crate::{Store, StoreRead};

    fn message(recipients: &[(&str, Route)]) -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            envelope: Envelope {
                mail_from: "alice@tern.test".into(),
                recipients: recipients
                    .iter()
                    .map(|(address, route)| Recipient {
                        address: address.to_string(),
                        notify: vec!["FAILURE".into(), "DELAY".into()],
                        orcpt: Some(format!("rfc822;{address}")),
                        route: route.clone(),
                    })
                    .collect(),
                body: None,
                smtputf8: false,
                ret: None,
                envid: None,
                client: "127.0.0.1:4000".parse().expect("literal"),
                helo: "client.example".into(),
                tls: None,
                auth: None,
                trusted_client: true,
                received_at_ms: 1_000,
            },
            received_header: vec![],
            raw: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
            summary: Summary::default(),
            search_text: SearchText::default(),
        }
    }

    /// The node the tests record attempts as.
    const NODE: &str = "node-a";

    fn lease(store: &mut SqliteStore, now_ms: i64) -> Vec<QueueEntry> {
        let lease = Lease { node: NODE.into(), now_ms, until_ms: now_ms.saturating_add(60_000) };
        store.lease_due(&lease, 10, &[]).expect("lease")
    }

    fn open() -> SqliteStore {
        let dir = std::env::temp_dir().join(format!("tern-queue-test-{}", MessageId::generate()));
        SqliteStore::open(&dir).expect("open")
    }

    #[test]
    fn remote_recipients_become_entries_in_the_message_commit() {
        let mut store = open();
        let local = Route::Local { account: "alice".into() };
        let msg = message(&[("Bob@Dest.Test", Route::Remote), ("alice@tern.test", local)]);
        store.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let due = lease(&mut store, 1_000);
        assert_eq!(due.len(), 1, "only the remote recipient is queued");
        let e = &due[0];
        assert_eq!((e.recipient.as_str(), e.domain.as_str()), ("Bob@Dest.Test", "dest.test"));
        assert_eq!(
            (e.sender.as_str(), e.state, e.attempts),
            ("alice@tern.test", EntryState::Queued, 0)
        );
        assert_eq!(e.notify, ["FAILURE", "DELAY"]);
        assert_eq!(e.orcpt.as_deref(), Some("rfc822;Bob@Dest.Test"));
        assert!(store.due_entries(999, 10, &[]).expect("due").is_empty(), "not due before arrival");
        assert_eq!(store.next_due_ms(0).expect("next"), Some(1_000));

        // Deferred: due later, with the error kept. Then delivered: the entry goes, and the
        // message stays because a local copy keeps it.
        let defer = EntryUpdate::Defer {
            next_attempt_ms: 5_000,
            error: "450 later".into(),
            delay_warned: true,
        };
        let removed = store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(e.id, defer)],
                attempted_at_ms: 2_000,
                reports: vec![],
            })
            .expect("record");
        assert!(removed.is_empty());
        let (entries, total) = store.queue_entries(&QueueFilter::default()).expect("list");
        assert_eq!(total, 1);
        let after = &entries[0];
        assert_eq!(
            (after.attempts, after.next_attempt_ms, after.last_attempt_ms),
            (1, 5_000, Some(2_000))
        );
        assert_eq!((after.last_error.as_deref(), after.delay_warned), (Some("450 later"), true));
        assert!(store.due_entries(4_999, 10, &[]).expect("due").is_empty());
        assert_eq!(store.next_due_ms(2_000).expect("next"), Some(5_000));
        assert_eq!(lease(&mut store, 5_000).len(), 1, "due again, leased again");
        store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(e.id, EntryUpdate::Done)],
                attempted_at_ms: 5_000,
                reports: vec![],
            })
            .expect("record");
        assert_eq!(store.queue_counts().expect("counts"), QueueCounts::default());
        assert!(store.message(&msg.id).expect("read").is_some(), "the local copy stays");
    }

    #[test]
    fn tops_count_over_the_oldest_sample_only_and_the_histogram_over_its_span() {
        let mut store = open();
        let remote = |address: &str| (address.to_string(), Route::Remote);
        let batch: Vec<NewMessage> = ["a@far.test", "b@far.test", "c@near.test", "d@late.test"]
            .iter()
            .enumerate()
            .map(|(n, address)| {
                let (address, route) = remote(address);
                let mut msg = message(&[(address.as_str(), route)]);
                msg.envelope.received_at_ms = 60_000 * (n as i64 + 1) + 5;
                msg
            })
            .collect();
        store.commit_batch(&batch).expect("commit");
        let tops = store.queue_tops(3, 10).expect("tops");
        assert_eq!(tops.sampled, 3, "the fourth entry is outside the sample");
        assert_eq!(tops.destinations, [("far.test".to_string(), 2), ("near.test".to_string(), 1)]);
        assert!(tops.errors.is_empty(), "no attempt yet");
        assert_eq!(store.queue_tops(10, 1).expect("tops").destinations.len(), 1, "limit");
        // Minutes 2, 3 and 4 (the one before is outside the span).
        let histogram = store.received_histogram(120_000, 60_000).expect("histogram");
        assert_eq!(histogram, [(120_000, 1), (180_000, 1), (240_000, 1)]);
    }

    fn report(msg: &NewMessage, recipient: &str, action: ReportAction) -> QueueReport {
        QueueReport {
            message_id: msg.id,
            sender: msg.envelope.mail_from.clone(),
            recipient: recipient.into(),
            orcpt: None,
            action,
            status: "5.1.1".into(),
            remote_mta: Some("mx.x.test".into()),
            diagnostic: Some("smtp; 550 5.1.1 no".into()),
            last_attempt_ms: Some(2_000),
            retry_until_ms: None,
        }
    }

    #[test]
    fn reports_wait_with_their_message_until_one_notice_sends_them() {
        let mut store = open();
        let msg = message(&[("a@x.test", Route::Remote), ("b@y.test", Route::Remote)]);
        store.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let due = lease(&mut store, 1_000);
        let failed = report(&msg, "a@x.test", ReportAction::Failed);
        let removed = store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[0].id, EntryUpdate::Done)],
                attempted_at_ms: 2_000,
                reports: vec![(due[0].id, failed.clone())],
            })
            .expect("record");
        assert!(removed.is_empty(), "one entry left");
        assert!(
            store.reported_messages(2_000, 10).expect("reported").is_empty(),
            "b@y.test is still due: its outcome may join the notice"
        );
        let removed = store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[1].id, EntryUpdate::Hold { error: "x".into() })],
                attempted_at_ms: 2_000,
                reports: vec![],
            })
            .expect("record");
        assert!(removed.is_empty(), "held entries keep their message");
        assert_eq!(
            store.queue_counts().expect("counts"),
            QueueCounts { queued: 0, held: 1, messages: 1 }
        );
        assert_eq!(store.reported_messages(2_000, 10).expect("reported"), [msg.id]);
        let reports = store.queue_reports(&msg.id).expect("reports");
        assert_eq!(reports.iter().map(|(_, r)| r).collect::<Vec<_>>(), [&failed]);

        // The notice and the reports it carries change together, once.
        let bounce = message(&[("alice@tern.test", Route::Local { account: "alice".into() })]);
        let notified = |bounce: &NewMessage| Mutation::QueueNotified {
            message: msg.id,
            reports: reports.iter().map(|(id, _)| *id).collect(),
            notices: vec![bounce.clone()],
            delay_warned: true,
        };
        let removed = store.apply(&notified(&bounce)).expect("notify");
        assert!(removed.is_empty(), "the held entry keeps the message");
        assert!(store.message(&bounce.id).expect("read").is_some(), "notice stored");
        assert!(store.queue_reports(&msg.id).expect("reports").is_empty());
        let (entries, _) = store.queue_entries(&QueueFilter::default()).expect("list");
        assert!(entries[0].delay_warned, "no entry of the message warns again");
        let again = message(&[("alice@tern.test", Route::Local { account: "alice".into() })]);
        store.apply(&notified(&again)).expect("notify again");
        assert!(store.message(&again.id).expect("read").is_none(), "sent once");

        // Released, leased, delivered: the last entry goes, and the message with it.
        let release = Mutation::QueueCommand {
            target: QueueTarget::Messages(vec![msg.id]),
            command: QueueCommand::Release,
            now_ms: 3_000,
        };
        store.apply(&release).expect("release");
        assert_eq!(lease(&mut store, 3_000).len(), 1);
        let removed = store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[1].id, EntryUpdate::Done), (12345, EntryUpdate::Done)],
                attempted_at_ms: 3_000,
                reports: vec![],
            })
            .expect("unknown entries are ignored");
        assert_eq!(removed, vec![msg.id]);
        assert!(store.message(&msg.id).expect("read").is_none());
    }

    #[test]
    fn a_finished_message_stays_until_its_notice_is_stored() {
        let mut store = open();
        let msg = message(&[("a@x.test", Route::Remote)]);
        store.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let due = lease(&mut store, 1_000);
        let removed = store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[0].id, EntryUpdate::Done)],
                attempted_at_ms: 2_000,
                reports: vec![(due[0].id, report(&msg, "a@x.test", ReportAction::Failed))],
            })
            .expect("record");
        assert!(removed.is_empty(), "the notice still needs the original");
        assert!(store.message(&msg.id).expect("read").is_some());
        let reports = store.queue_reports(&msg.id).expect("reports");
        let removed = store
            .apply(&Mutation::QueueNotified {
                message: msg.id,
                reports: reports.iter().map(|(id, _)| *id).collect(),
                notices: vec![],
                delay_warned: false,
            })
            .expect("notify");
        assert_eq!(removed, vec![msg.id], "gone with its last report");
        assert_eq!(store.count().expect("count"), 0, "and counted off");
    }

    #[test]
    fn operator_commands_hold_release_retry_and_delete() {
        let mut store = open();
        let a = message(&[("a@x.test", Route::Remote)]);
        let b = message(&[("b@x.test", Route::Remote)]);
        store.commit_batch(&[a.clone(), b.clone()]).expect("commit");
        let command = |store: &mut SqliteStore, target, command, now_ms| {
            store.apply(&Mutation::QueueCommand { target, command, now_ms }).expect("command")
        };
        command(&mut store, QueueTarget::Messages(vec![a.id]), QueueCommand::Hold, 0);
        let due = lease(&mut store, i64::MAX);
        assert_eq!(
            due.iter().map(|e| e.message_id).collect::<Vec<_>>(),
            [b.id],
            "held one is skipped"
        );
        let defer =
            EntryUpdate::Defer { next_attempt_ms: 90_000, error: "e".into(), delay_warned: false };
        store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[0].id, defer)],
                attempted_at_ms: 2_000,
                reports: vec![],
            })
            .expect("record");
        command(&mut store, QueueTarget::All, QueueCommand::Retry, 3_000);
        assert_eq!(
            store.due_entries(3_000, 10, &[]).expect("due").len(),
            1,
            "retry makes it due now"
        );
        command(&mut store, QueueTarget::Messages(vec![a.id]), QueueCommand::Release, 3_000);
        assert_eq!(store.due_entries(3_000, 10, &[]).expect("due").len(), 2, "released and due");
        let removed = command(&mut store, QueueTarget::All, QueueCommand::Delete, 0);
        assert_eq!(removed.len(), 2, "remote-only messages go with their entries");
        assert_eq!(store.count().expect("count"), 0);
    }

    #[test]
    fn release_enqueues_a_captured_message_which_then_stays() {
        let mut store = open();
        let msg = message(&[("b@x.test", Route::Capture)]);
        store.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        assert!(store.due_entries(i64::MAX, 10, &[]).expect("due").is_empty());
        let entry = NewEntry {
            sender: "a@x.test".into(),
            recipient: "c@Y.test".into(),
            notify: vec!["NEVER".into()],
        };
        store
            .apply(&Mutation::Enqueue { message: msg.id, entries: vec![entry.clone()], now_ms: 7 })
            .expect("enqueue");
        let due = lease(&mut store, 7);
        assert_eq!(
            (due[0].domain.as_str(), due[0].notify.clone()),
            ("y.test", vec!["NEVER".to_string()])
        );
        store
            .apply(&Mutation::QueueAttempted {
                node: NODE.into(),
                updates: vec![(due[0].id, EntryUpdate::Done)],
                attempted_at_ms: 8,
                reports: vec![],
            })
            .expect("record");
        assert!(store.message(&msg.id).expect("read").is_some(), "the captured copy stays");
        let missing =
            Mutation::Enqueue { message: MessageId::generate(), entries: vec![entry], now_ms: 7 };
        assert!(store.apply(&missing).is_err());
    }

    /// Two writers on one database, as two nodes sharing it would be.
    fn two_nodes() -> (SqliteStore, SqliteStore) {
        let dir = std::env::temp_dir().join(format!("tern-lease-test-{}", MessageId::generate()));
        (SqliteStore::open(&dir).expect("open a"), SqliteStore::open(&dir).expect("open b"))
    }

    fn lease_as(node: &str, now_ms: i64, until_ms: i64) -> Lease {
        Lease { node: node.into(), now_ms, until_ms }
    }

    fn ids(entries: &[QueueEntry]) -> Vec<i64> {
        entries.iter().map(|e| e.id).collect()
    }

    #[test]
    fn two_nodes_never_lease_the_same_entry() {
        let (mut a, mut b) = two_nodes();
        let msg = message(&[
            ("r1@x.test", Route::Remote),
            ("r2@x.test", Route::Remote),
            ("r3@y.test", Route::Remote),
        ]);
        a.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let first = a.lease_due(&lease_as("a", 1_000, 60_000), 2, &[]).expect("lease a");
        let second = b.lease_due(&lease_as("b", 1_000, 60_000), 10, &[]).expect("lease b");
        assert_eq!(first.len(), 2, "the oldest due first, up to the limit");
        assert_eq!(second.len(), 1, "only the entry a did not take");
        assert!(ids(&first).iter().all(|id| !ids(&second).contains(id)), "{first:?} {second:?}");
        assert!(a.lease_due(&lease_as("a", 1_000, 60_000), 10, &[]).expect("again").is_empty());
        assert!(b.lease_due(&lease_as("b", 59_999, 90_000), 10, &[]).expect("again").is_empty());
        // Released entries are free at once; skipped domains stay unleased.
        a.release_leases("a", &ids(&first)).expect("release");
        let skip = ["x.test".to_string()];
        assert!(b.lease_due(&lease_as("b", 1_000, 60_000), 10, &skip).expect("skip").is_empty());
        assert_eq!(
            ids(&b.lease_due(&lease_as("b", 1_000, 60_000), 10, &[]).expect("b")),
            ids(&first)
        );
    }

    #[test]
    fn an_expired_lease_comes_back_to_another_node() {
        let (mut a, mut b) = two_nodes();
        let msg = message(&[("r1@x.test", Route::Remote)]);
        a.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let held = ids(&a.lease_due(&lease_as("a", 1_000, 2_000), 10, &[]).expect("lease a"));
        assert_eq!(held.len(), 1);
        assert!(b.lease_due(&lease_as("b", 1_999, 9_000), 10, &[]).expect("b early").is_empty());
        // Renewed, it stays a's past the first deadline.
        assert_eq!(a.renew_leases(&lease_as("a", 1_500, 3_000), &held).expect("renew"), held);
        assert!(b.lease_due(&lease_as("b", 2_500, 9_000), 10, &[]).expect("b renewed").is_empty());
        let taken = ids(&b.lease_due(&lease_as("b", 3_000, 9_000), 10, &[]).expect("b late"));
        assert_eq!(taken, held, "the expired lease comes back");
        assert!(a.renew_leases(&lease_as("a", 3_000, 9_000), &held).expect("renew").is_empty());
        // A release by the node that lost the lease leaves b's alone.
        a.release_leases("a", &held).expect("release");
        assert!(a.lease_due(&lease_as("a", 3_000, 9_000), 10, &[]).expect("a").is_empty());
    }

    #[test]
    fn a_result_from_a_node_that_lost_its_lease_is_refused() {
        let (mut a, mut b) = two_nodes();
        let msg = message(&[("r1@x.test", Route::Remote)]);
        a.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let entry = a.lease_due(&lease_as("a", 1_000, 2_000), 10, &[]).expect("lease a")[0].id;
        assert_eq!(ids(&b.lease_due(&lease_as("b", 2_000, 9_000), 10, &[]).expect("b")), [entry]);
        let bounced = report(&msg, "r1@x.test", ReportAction::Failed);
        let late = Mutation::QueueAttempted {
            node: "a".into(),
            updates: vec![(entry, EntryUpdate::Done)],
            attempted_at_ms: 2_500,
            reports: vec![(entry, bounced)],
        };
        assert!(a.apply(&late).expect("record").is_empty());
        let (entries, total) = a.queue_entries(&QueueFilter::default()).expect("list");
        assert_eq!((total, entries[0].attempts), (1, 0), "a's result is refused");
        assert!(a.queue_reports(&msg.id).expect("reports").is_empty(), "and so is its report");
        let defer = EntryUpdate::Defer {
            next_attempt_ms: 9_500,
            error: "451 later".into(),
            delay_warned: false,
        };
        let current = Mutation::QueueAttempted {
            node: "b".into(),
            updates: vec![(entry, defer)],
            attempted_at_ms: 3_000,
            reports: vec![],
        };
        b.apply(&current).expect("record");
        let (entries, _) = b.queue_entries(&QueueFilter::default()).expect("list");
        assert_eq!((entries[0].attempts, entries[0].next_attempt_ms), (1, 9_500), "b's counts");
        // Recorded, the lease is gone: the entry is anyone's when next due.
        assert_eq!(ids(&a.lease_due(&lease_as("a", 9_500, 20_000), 10, &[]).expect("a")), [entry]);
    }

    /// An entry removed while its attempt ran (an operator's delete, or another node that
    /// finished it after this node's lease ran out) files no report: the bounce would be a
    /// second one, or one the operator cancelled.
    #[test]
    fn a_result_for_an_entry_gone_meanwhile_files_no_report() {
        let (mut a, _) = two_nodes();
        let msg = message(&[("r1@x.test", Route::Remote), ("r2@y.test", Route::Remote)]);
        a.commit_batch(std::slice::from_ref(&msg)).expect("commit");
        let leased = a.lease_due(&lease_as("a", 1_000, 9_000), 10, &[]).expect("lease");
        let entry = leased.iter().find(|e| e.recipient == "r1@x.test").expect("r1").id;
        a.conn.execute("DELETE FROM queue WHERE id = ?1", [entry]).expect("operator delete");
        let late = Mutation::QueueAttempted {
            node: "a".into(),
            updates: vec![(entry, EntryUpdate::Done)],
            attempted_at_ms: 2_500,
            reports: vec![(entry, report(&msg, "r1@x.test", ReportAction::Failed))],
        };
        a.apply(&late).expect("record");
        assert!(a.queue_reports(&msg.id).expect("reports").is_empty(), "a report was filed");
    }
}
