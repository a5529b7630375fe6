//! Search benchmark: fills a store with synthetic ~2 KB messages (parsed and indexed exactly as
//! ingest does) and times `StoreRead::page` for a set of queries.
//!
//! ```text
//! cargo run --release --ignore-rust-version -p tern-store --example search_bench -- [MESSAGES] [DIR] [OPTIONS]
//! ```
//!
//! MESSAGES defaults to 100000 and DIR to `$TMPDIR/tern-search-bench-MESSAGES`; an existing
//! store there with the right count is reused (delete DIR to rebuild). Options:
//!
//! - `--plan` prints the SQLite plan of each query's statements;
//! - `--query Q` (repeatable) replaces the built-in list of searches;
//! - `--sql STATEMENT` (repeatable) times raw SQL statements against the store instead.
//!
//! Columns: `page` is `StoreRead::page(query, 0, 50)` as implemented (minimum and median of 7
//! runs); `rows` and `count` are its two query-dependent statements alone; `proposed` is the
//! same page computed as the search module's report suggests (store totals via `COUNT(*)` and
//! the `read = 0` partial index instead of a `SUM` over every row).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params_from_iter};
use tern_store::sqlite::search;
use tern_store::{
    Envelope, MessageId, Mutation, NewMessage, Recipient, Route, SearchQuery, Selection,
    SqliteStore, Store, StoreRead, Summary,
};

/// A small deterministic PRNG (xorshift64*), so every run builds the same store.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Roughly Zipf-distributed index below `n`: small indexes are much more common.
    fn zipf(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as u64 % n
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pra", "den", "gor", "lin", "mar", "qui",
    "sel", "tor", "ban", "ces", "dra", "fen",
];

fn vocabulary(rng: &mut Rng, words: usize) -> Vec<String> {
    (0..words)
        .map(|_| {
            let n = 2 + rng.below(3);
            (0..n).map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]).collect()
        })
        .collect()
}

fn synthetic(i: u64, rng: &mut Rng, vocab: &[String]) -> NewMessage {
    let word = |rng: &mut Rng| vocab[rng.zipf(vocab.len() as u64) as usize].as_str();
    let sender = rng.below(1000);
    let rcpt = rng.below(500);
    let subject: Vec<&str> = (0..5).map(|_| word(rng)).collect();
    let mut body = String::new();
    while body.len() < 1500 {
        let line: Vec<&str> = (0..12).map(|_| word(rng)).collect();
        body.push_str(&line.join(" "));
        body.push_str("\r\n");
    }
    if i % 1000 == 7 {
        body.push_str("the zebra crossing\r\n");
    }
    let tags = if i.is_multiple_of(50) { "X-Tags: weekly\r\n" } else { "" };
    let mailer = if i.is_multiple_of(10) { "Acme Mailer 2.0" } else { "Other Mailer 1.1" };
    let (content_type, content) = if i.is_multiple_of(20) {
        (
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n",
            format!(
                "--b1\r\nContent-Type: text/plain\r\n\r\n{body}--b1\r\nContent-Type: application/pdf\r\n\
                 Content-Disposition: attachment; filename=\"invoice-{i}.pdf\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b1--\r\n"
            ),
        )
    } else {
        ("Content-Type: text/plain; charset=utf-8\r\n", body)
    };
    let raw = format!(
        "From: Sender {sender} <sender{sender}@example.com>\r\n\
         To: Recipient {rcpt} <user{rcpt}@example.net>\r\n\
         Subject: {} {i}\r\n\
         Message-ID: <{i}.bench@example.com>\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         X-Mailer: {mailer}\r\n{tags}\
         MIME-Version: 1.0\r\n{content_type}\r\n{content}",
        subject.join(" ")
    )
    .into_bytes();
    let (summary, search_text) = Summary::extract_with_text(&raw);
    let address = if i % 100 == 3 {
        format!("user{rcpt}+promo@example.net")
    } else {
        format!("user{rcpt}@example.net")
    };
    NewMessage {
        id: MessageId::generate(),
        envelope: Envelope {
            mail_from: format!("sender{sender}@example.com"),
            recipients: vec![Recipient {
                address,
                notify: vec![],
                orcpt: None,
                route: Route::Capture,
            }],
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
            client: "127.0.0.1:4000".parse().expect("literal"),
            helo: "bench.example".into(),
            tls: None,
            auth: None,
            trusted_client: true,
            // One message a minute, starting 2024-01-01.
            received_at_ms: 1_704_067_200_000 + i as i64 * 60_000,
        },
        received_header: b"Received: bench\r\n".to_vec(),
        raw,
        summary,
        search_text,
    }
}

fn build(dir: &Path, n: u64) -> SqliteStore {
    let mut store = SqliteStore::open(dir).expect("open");
    let have = store.count().expect("count");
    if have == n {
        eprintln!("reusing {n} messages in {}", dir.display());
        return store;
    }
    assert_eq!(have, 0, "{} holds {have} messages, not {n}; remove it", dir.display());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let vocab = vocabulary(&mut rng, 5000);
    let started = Instant::now();
    let mut bytes = 0;
    let mut i = 0;
    while i < n {
        let batch: Vec<NewMessage> =
            (i..(i + 1000).min(n)).map(|j| synthetic(j, &mut rng, &vocab)).collect();
        bytes += batch.iter().map(|m| m.raw.len()).sum::<usize>();
        store.commit_batch(&batch).expect("commit");
        i += batch.len() as u64;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "built {n} messages ({:.0} bytes average) in {elapsed:.1?}: {:.0} messages/s (parse + index + commit)",
        bytes as f64 / n as f64,
        n as f64 / elapsed.as_secs_f64()
    );
    // 70 % read, spread evenly, so is:unread is a real filter. In chunks: a selection of ids
    // becomes one SQL variable per id, and SQLite allows at most 32766.
    let ids: Vec<MessageId> = store.list_ids(n as usize).expect("ids");
    let read: Vec<MessageId> =
        ids.into_iter().enumerate().filter(|(k, _)| k % 10 < 7).map(|(_, id)| id).collect();
    for chunk in read.chunks(10_000) {
        store.apply(&Mutation::SetRead(Selection::Ids(chunk.to_vec()), true)).expect("mark read");
    }
    store
}

/// Runs `f` once to warm up, then 7 times; the fastest and median times and the last result.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut last = f();
    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        last = f();
        times.push(started.elapsed());
    }
    times.sort();
    (times[0], times[times.len() / 2], last)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A page computed as proposed: store totals by `COUNT(*)` and the partial index on unread
/// messages, so they need not read every row for its `read` flag; matching counts in one pass
/// as now. Returns the number of matching messages.
fn proposed_page(conn: &Connection, condition: &str, values: &[search::Param]) -> u64 {
    let rows_sql = format!(
        "SELECT m.id, m.received_at, m.read, m.from_name, m.from_addr, m.to_json, m.cc_json,
            m.bcc_json, m.reply_to_json, m.subject, m.date, m.message_id, m.size, m.attachments,
            m.snippet, m.username,
            (SELECT group_concat(tag, char(31)) FROM (SELECT tag FROM tags t WHERE t.message_id = m.id ORDER BY tag))
         FROM messages m WHERE {condition} ORDER BY m.id DESC LIMIT 50"
    );
    let mut stmt = conn.prepare_cached(&rows_sql).expect("prepare");
    let rows =
        stmt.query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(0)).expect("rows");
    assert!(rows.count() <= 50);
    let count = |sql: &str, values: &[search::Param]| -> u64 {
        let mut stmt = conn.prepare_cached(sql).expect("prepare");
        stmt.query_row(params_from_iter(values.iter()), |r| r.get::<_, i64>(0)).expect("count")
            as u64
    };
    count("SELECT COUNT(*) FROM messages", &[]);
    count("SELECT COUNT(*) FROM messages WHERE read = 0", &[]);
    let matching = count(
        &format!("SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {condition}"),
        values,
    );
    let mut tags = conn.prepare_cached("SELECT DISTINCT tag FROM tags ORDER BY tag").expect("tags");
    let _ = tags.query_map([], |r| r.get::<_, String>(0)).expect("tags").count();
    matching
}

fn run_sql(conn: &Connection, statements: &[String]) {
    for sql in statements {
        let (min, median, rows) = time(|| {
            let mut stmt = conn.prepare(sql).expect("prepare");
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).expect("query");
            let mut out = Vec::new();
            while let Some(row) = rows.next().expect("row") {
                let cells: Vec<String> = (0..columns)
                    .map(|c| match row.get_ref(c).expect("cell") {
                        ValueRef::Text(t) => String::from_utf8_lossy(t).into(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                out.push(cells.join("|"));
            }
            out
        });
        let shown: Vec<&String> = rows.iter().take(3).collect();
        println!(
            "{:>7.1}ms {:>7.1}ms {:>6} rows {shown:?}  {sql}",
            ms(min),
            ms(median),
            rows.len()
        );
    }
}

const QUERIES: &[&str] = &[
    "",
    "zebra",
    "\"zebra crossing\"",
    "kalo",
    "kal",
    "ka",
    "k",
    "from:sender42@",
    "from:sender42",
    "to:user7@example.net",
    "addressed:user7@",
    "subject:kalo",
    "message-id:4242.bench",
    "is:unread",
    "is:read",
    "-zebra",
    "-kalo",
    "-from:sender42@",
    "-is:read",
    "tag:weekly",
    "tag:promo",
    "is:tagged",
    "has:attachment",
    "inbox:user7@example.net",
    "larger:2k",
    "smaller:1500",
    "after:2024-02-01",
    "before:2024-01-02",
    "header:X-Mailer=Acme",
    "invoice",
    "zebra is:unread from:sender",
    "kalo -zebra is:unread",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut plan = false;
    let (mut statements, mut custom, mut positional) = (Vec::new(), Vec::new(), Vec::new());
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--plan" => plan = true,
            "--sql" => statements.push(iter.next().expect("--sql STATEMENT").clone()),
            "--query" => custom.push(iter.next().expect("--query Q").clone()),
            _ => positional.push(arg.clone()),
        }
    }
    let n: u64 = positional.first().map(|s| s.parse().expect("message count")).unwrap_or(100_000);
    let dir = positional
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tern-search-bench-{n}")));
    let store = build(&dir, n);
    let conn = Connection::open(dir.join(tern_store::sqlite::DATABASE_FILE)).expect("open");
    eprintln!("store: {:.1} MB", store.size_bytes().expect("size") as f64 / 1e6);
    if !statements.is_empty() {
        run_sql(&conn, &statements);
        return;
    }
    let queries: Vec<&str> = if custom.is_empty() {
        QUERIES.to_vec()
    } else {
        custom.iter().map(String::as_str).collect()
    };
    println!(
        "{:<30} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "query", "matches", "page min", "page med", "rows", "count", "proposed"
    );
    for query in queries {
        let parsed = (!query.is_empty()).then(|| SearchQuery::parse(query).expect("parse"));
        let (min, median, page) = time(|| store.page(parsed.as_ref(), 0, 50).expect("page"));
        let (condition, values) =
            parsed.as_ref().map(search::condition).unwrap_or_else(|| ("1".into(), vec![]));
        let rows_sql =
            format!("SELECT m.id FROM messages m WHERE {condition} ORDER BY m.id DESC LIMIT 50");
        let count_sql = format!(
            "SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {condition}"
        );
        let (rows, _, _) = time(|| {
            let mut stmt = conn.prepare_cached(&rows_sql).expect("prepare");
            stmt.query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(0))
                .expect("query")
                .count()
        });
        let (count, _, _) = time(|| {
            conn.query_row(&count_sql, params_from_iter(values.iter()), |r| r.get::<_, i64>(0))
                .expect("count")
        });
        let (proposed, _, matching) = time(|| proposed_page(&conn, &condition, &values));
        assert_eq!(matching, page.matching, "{query:?}");
        println!(
            "{:<30} {:>7} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            if query.is_empty() { "(no query)" } else { query },
            page.matching,
            ms(min),
            ms(median),
            ms(rows),
            ms(count),
            ms(proposed),
        );
        if plan {
            for sql in [&rows_sql, &count_sql] {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("plan");
                let lines: Vec<String> = stmt
                    .query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(3))
                    .expect("plan")
                    .collect::<Result<_, _>>()
                    .expect("plan");
                println!("    {}", lines.join(" | "));
            }
        }
    }
}
