//! A page of messages and its counts, for a search or for everything: which index drives
//! the page, and where the counts come from.
//!
//! Everything and a lone read flag are answered by the counters (migration 13) and an index
//! walked in page order. Words, phrases and `header:` are one match in the word index
//! (`messages_fts`); substring filters of three or more characters are one match in the
//! trigram index of header fields (`messages_fields`). FTS5 counts each match from its lists
//! without reading `messages`; then the query is either driven from the smallest list (few
//! matches: seek each, sort, take the page and the counts from one listing) or walked in a
//! window of the newest messages, probing the lists for the rowids in that window only, and
//! widening the window until the page is full (many matches). A search that is one match
//! takes its count from FTS5, and its unread count from the read (or the unread) messages,
//! whichever are fewer. Other searches count by SQL over the rows they reach.

use super::SqliteStore;
use super::messages::{Counts, ROW_COLUMNS};
use super::search::{IndexMatch, Param, Plan};
use crate::StoreError;
use crate::model::MessageRow;

/// What a driven row (a seek by rowid, then a place in the sort) costs, in walked rows (an
/// index step and a probe of the match lists).
const DRIVE_COST: u64 = 4;

/// The first window walked holds this many times the messages the page should need at the
/// matches' density (a search's other conditions make it sparser), and each retry four times
/// as many.
const WINDOW_SLACK: u64 = 2;

/// A page: its rows, newest first, and the matching and unread-matching counts.
pub(super) type Page = (Vec<MessageRow>, Counts);

fn integer(n: u64) -> Param {
    Param::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

impl SqliteStore {
    /// The page `start..start + limit` of what `plan` matches; `totals` are the store's
    /// message and unread counts.
    pub(super) fn plan_page(
        &self,
        plan: &Plan,
        start: u64,
        limit: u64,
        totals: Counts,
    ) -> Result<Page, StoreError> {
        let (total, unread) = totals;
        if plan.index.is_empty() && plan.rest.is_empty() {
            return Ok((self.page_rows("1", vec![], start, limit)?, totals));
        }
        if let Some(read) = plan.read_flag {
            let (sql, counts) = if read {
                ("m.read <> 0", (total.saturating_sub(unread), 0))
            } else {
                ("m.read = 0", (unread, unread))
            };
            return Ok((self.page_rows(sql, vec![], start, limit)?, counts));
        }
        if plan.index.is_empty() {
            return self.scanned_page(plan, start, limit);
        }
        // How many rows each full-text match holds; the smallest bounds the answer.
        let mut sizes = Vec::with_capacity(plan.index.len());
        for index in &plan.index {
            sizes.push(self.index_count(index)?);
        }
        let (smallest, size) =
            sizes.iter().copied().enumerate().min_by_key(|(_, n)| *n).unwrap_or((0, 0));
        if size == 0 {
            return Ok((vec![], (0, 0)));
        }
        // Walking reads about (start + limit) / density messages; driving reads every match.
        let walked = start.saturating_add(limit).saturating_mul(total) / size;
        let drive = walked > size.saturating_mul(DRIVE_COST);
        if plan.index.len() == 1 && plan.rest.is_empty() {
            // The match is the answer: FTS5 has counted it.
            let rows = if drive {
                let (condition, values) = driven_by(plan, smallest);
                self.page_rows(&condition, values, start, limit)?
            } else {
                self.walked_rows(plan, start, limit, walked, total)?
            };
            let read = self.read_matches(&plan.index[0], size, totals)?;
            return Ok((rows, (size, size.saturating_sub(read))));
        }
        let (condition, values) = driven_by(plan, smallest);
        if drive {
            // The matches listed once, for both the page and the counts.
            return self.one_scan(&condition, values, start, limit);
        }
        let rows = self.walked_rows(plan, start, limit, walked, total)?;
        Ok((rows, self.counts(&condition, values)?))
    }

    /// The page and the counts from one listing of the rows meeting `condition`.
    fn one_scan(
        &self,
        condition: &str,
        values: Vec<Param>,
        start: u64,
        limit: u64,
    ) -> Result<Page, StoreError> {
        let mut page_values = values.clone();
        page_values.push(integer(limit));
        page_values.push(integer(start));
        let (rows, counts) = self.page_in_one_scan(condition, page_values)?;
        let counts = match counts {
            Some(counts) => counts,
            None => self.counts(condition, values)?,
        };
        Ok((rows, counts))
    }

    /// Rows of `messages m` meeting `condition`, newest first, from `start`. The page's ids
    /// are chosen first, so only its own rows are read whole.
    fn page_rows(
        &self,
        condition: &str,
        mut values: Vec<Param>,
        start: u64,
        limit: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        if limit == 0 {
            return Ok(vec![]);
        }
        values.push(integer(limit));
        values.push(integer(start));
        let sql = format!(
            "WITH page AS (SELECT m.id FROM messages m WHERE {condition}
                           ORDER BY m.id DESC LIMIT ? OFFSET ?)
             SELECT {ROW_COLUMNS} FROM page p JOIN messages m ON m.id = p.id ORDER BY m.id DESC"
        );
        self.rows(&sql, values)
    }

    /// The page walked in a window of the newest messages: `window` of them at first (what
    /// the page should need), four times as many on each retry, until the page is full or the
    /// window holds every message. The window's ids are all at least its oldest id, and its
    /// rowids at least its smallest rowid, so the full-text lists are read from that rowid on
    /// and the page is exact.
    fn walked_rows(
        &self,
        plan: &Plan,
        start: u64,
        limit: u64,
        window: u64,
        total: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let mut window = window.saturating_mul(WINDOW_SLACK).max(start.saturating_add(limit));
        loop {
            let bounds: (Option<String>, Option<i64>) = self.conn.query_row(
                "SELECT MIN(id), MIN(rowid) FROM
                     (SELECT id, rowid FROM messages ORDER BY id DESC LIMIT ?1)",
                [i64::try_from(window).unwrap_or(i64::MAX)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (Some(oldest), Some(min_rowid)) = bounds else { return Ok(vec![]) };
            let (condition, params) = plan.sql_with(|_, index| index.clause_from(min_rowid));
            let mut values = vec![Param::Text(oldest)];
            values.extend(params);
            let rows =
                self.page_rows(&format!("m.id >= ? AND {condition}"), values, start, limit)?;
            if rows.len() as u64 >= limit || window >= total {
                return Ok(rows);
            }
            window = window.saturating_mul(4);
        }
    }

    /// A search without full-text terms: substring filters scan every row, and then one scan
    /// yields both the page and the counts; indexed filters (inbox, tag) list and count apart.
    fn scanned_page(&self, plan: &Plan, start: u64, limit: u64) -> Result<Page, StoreError> {
        let (condition, values) = plan.sql(true);
        let scanning = ["LIKE", "GLOB", "json_each"].iter().any(|op| condition.contains(op));
        if scanning {
            return self.one_scan(&condition, values, start, limit);
        }
        let rows = self.page_rows(&condition, values.clone(), start, limit)?;
        Ok((rows, self.counts(&condition, values)?))
    }

    /// The rows a full-text match holds, counted by FTS5.
    fn index_count(&self, index: &IndexMatch) -> Result<u64, StoreError> {
        let table = index.table;
        let n: i64 = self.conn.query_row(
            &format!("SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?1"),
            [&index.expr],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }

    /// How many of the `size` rows of `index` are read messages. The fewer of the read and the unread
    /// messages are walked through their partial index and probed against the match's rows
    /// in their rowid range (recently read mail needs only the newest part of the lists).
    fn read_matches(
        &self,
        index: &IndexMatch,
        size: u64,
        totals: Counts,
    ) -> Result<u64, StoreError> {
        let (total, unread) = totals;
        let read = total.saturating_sub(unread);
        if read == 0 {
            return Ok(0);
        }
        let (flag, partial) = if read <= unread {
            ("read <> 0", "messages_read")
        } else {
            ("read = 0", "messages_unread")
        };
        let table = index.table;
        let range: (Option<i64>, Option<i64>) = self.conn.query_row(
            &format!(
                "SELECT MIN(rowid), MAX(rowid) FROM messages INDEXED BY {partial} WHERE {flag}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(low), Some(high)) = range else {
            // None on the smaller side after all (the counters and the rows disagree): all or
            // none are read.
            return Ok(if read <= unread { 0 } else { size });
        };
        let n: i64 = self.conn.query_row(
            &format!(
                "SELECT COUNT(*) FROM messages m INDEXED BY {partial} WHERE m.{flag} AND +m.rowid IN
                 (SELECT rowid FROM {table} WHERE {table} MATCH ?1 AND rowid BETWEEN ?2 AND ?3)"
            ),
            rusqlite::params![index.expr, low, high],
            |r| r.get(0),
        )?;
        let n = n.max(0) as u64;
        Ok(if read <= unread { n } else { size.saturating_sub(n) })
    }
}

/// The plan as SQL driven by its full-text match number `driver`, the others probed.
fn driven_by(plan: &Plan, driver: usize) -> (String, Vec<Param>) {
    plan.sql_with(|i, index| index.clause(i != driver))
}
