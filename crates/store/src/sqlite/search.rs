//! The search language compiled to SQLite ([`Plan`]): all full-text terms of a [`SearchQuery`]
//! become one FTS5 `MATCH` over the word index `messages_fts`, the positive substring filters
//! of three or more characters one `MATCH` over the trigram index `messages_fields`, and every
//! other term an SQL clause over `messages m`. `page` decides how a plan reaches its rows.
//!
//! Every value reaches SQL as a bound parameter, never spliced into the text: the SQL returned
//! by [`condition`] is built only from fixed fragments and `?` placeholders.

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value};

use crate::search::{Field, MIN_PREFIX_CHARS, SearchQuery, Term, last_token_chars};

/// The FTS5 columns plain words and phrases search (`headers` is only for `header:`, since
/// every message has the words `content`, `type`, `date` … there).
const TEXT_COLUMNS: &str = "{subject addresses body attachments}";

/// A value bound to a `?` of a generated statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A text value.
    Text(String),
    /// An integer value.
    Integer(i64),
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Param::Text(text) => ToSqlOutput::Owned(Value::Text(text.clone())),
            Param::Integer(n) => ToSqlOutput::Owned(Value::Integer(*n)),
        })
    }
}

/// The JSON column holding a header's mailboxes (`From` has plain columns instead).
fn json_column(field: Field) -> Option<&'static str> {
    match field {
        Field::From => None,
        Field::To => Some("m.to_json"),
        Field::Cc => Some("m.cc_json"),
        Field::Bcc => Some("m.bcc_json"),
        Field::ReplyTo => Some("m.reply_to_json"),
    }
}

/// A full-text match: an FTS5 expression over one full-text table, whose rowids are the
/// rowids of `messages`. FTS5 lists and counts them without reading `messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexMatch {
    /// The FTS5 table.
    pub table: &'static str,
    /// The expression bound to its `MATCH`.
    pub expr: String,
}

impl IndexMatch {
    /// `m.rowid IN (…)` for this match. With `walk`, a `+` keeps SQLite from driving the
    /// query from the match list (seeking and sorting every match: 300 ms for a word in all of
    /// 100,000 messages); it walks the messages in page order instead, probing the list, and
    /// stops at a full page — fast when matches are many, a scan of everything when few.
    pub fn clause(&self, walk: bool) -> (String, Vec<Param>) {
        let table = self.table;
        let plus = if walk { "+" } else { "" };
        (
            format!("{plus}m.rowid IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)"),
            vec![Param::Text(self.expr.clone())],
        )
    }

    /// Like a walked [`IndexMatch::clause`], for rows whose rowid is at least `min_rowid`:
    /// FTS5 seeks its lists to that rowid, so SQLite builds the probe list from the matches
    /// in that range only instead of from all of them.
    pub fn clause_from(&self, min_rowid: i64) -> (String, Vec<Param>) {
        let table = self.table;
        (
            format!("+m.rowid IN (SELECT rowid FROM {table} WHERE {table} MATCH ? AND rowid >= ?)"),
            vec![Param::Text(self.expr.clone()), Param::Integer(min_rowid)],
        )
    }
}

/// A query split by how its rows can be reached: the full-text matches that can drive it,
/// and the conditions every candidate row must also meet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Positive full-text matches (a row must be in every one).
    pub index: Vec<IndexMatch>,
    /// The other conditions over `messages m`, cheap ones first (each a clause and its
    /// parameters; a purely negated full-text part is one of them).
    pub rest: Vec<(String, Vec<Param>)>,
    /// The query is nothing but a read flag: `Some(true)` for read messages, `Some(false)`
    /// for unread ones (answered from the counters and the flag's partial index).
    pub read_flag: Option<bool>,
}

impl Plan {
    /// Splits `query`. All full-text terms (words, phrases, `header:`) become one FTS5
    /// expression, with the negated ones folded in as `NOT`; every other term is a clause.
    pub fn of(query: &SearchQuery) -> Plan {
        let mut fts = FtsParts::default();
        let mut clauses: Vec<(u8, String, Vec<Param>)> = Vec::new();
        let mut fields = Vec::new();
        for (negated, term) in query.terms() {
            if fts.add(*negated, term) {
                continue;
            }
            if !negated && let Some(part) = field_match(term) {
                fields.push(part);
                continue;
            }
            let mut params = Vec::new();
            let clause = term_sql(term, &mut params);
            let clause = if *negated { format!("NOT ({clause})") } else { format!("({clause})") };
            clauses.push((cost(term), clause, params));
        }
        // Cheap tests first: SQLite evaluates the remaining terms of a row in order and stops
        // at the first false one.
        clauses.sort_by_key(|(cost, _, _)| *cost);
        let mut rest: Vec<(String, Vec<Param>)> =
            clauses.into_iter().map(|(_, clause, params)| (clause, params)).collect();
        let mut index = Vec::new();
        match fts.expression() {
            Some(Fts::Positive(expr)) => index.push(IndexMatch { table: "messages_fts", expr }),
            Some(Fts::NegatedOnly(expr)) => {
                let (clause, params) = IndexMatch { table: "messages_fts", expr }.clause(true);
                rest.insert(0, (format!("NOT ({clause})"), params));
            }
            None => {}
        }
        if !fields.is_empty() {
            index.push(IndexMatch { table: "messages_fields", expr: fields.join(" AND ") });
        }
        let read_flag = match query.terms() {
            [(negated, Term::Read(read))] => Some(read != negated),
            _ => None,
        };
        Plan { index, rest, read_flag }
    }

    /// The whole plan as one SQL boolean expression over `messages m`, with its parameters;
    /// `walk` as in [`IndexMatch::clause`].
    pub fn sql(&self, walk: bool) -> (String, Vec<Param>) {
        self.sql_with(|_, m| m.clause(walk))
    }

    /// The plan as one SQL boolean expression, each full-text match (with its position in
    /// [`Plan::index`]) written by `clause`, then the other conditions.
    pub fn sql_with(
        &self,
        clause: impl Fn(usize, &IndexMatch) -> (String, Vec<Param>),
    ) -> (String, Vec<Param>) {
        let clauses: Vec<(String, Vec<Param>)> = self
            .index
            .iter()
            .enumerate()
            .map(|(i, m)| clause(i, m))
            .chain(self.rest.iter().cloned())
            .collect();
        if clauses.is_empty() {
            return ("1".into(), vec![]);
        }
        let mut sql = Vec::with_capacity(clauses.len());
        let mut params = Vec::new();
        for (clause, values) in clauses {
            sql.push(clause);
            params.extend(values);
        }
        (sql.join(" AND "), params)
    }
}

/// An SQL boolean expression over `messages m` for `query`, with its parameters in order:
/// [`Plan::of`] joined, full-text matches probed row by row (the list is walked in page
/// order and stops at a full page).
pub fn condition(query: &SearchQuery) -> (String, Vec<Param>) {
    Plan::of(query).sql(true)
}

/// The full-text terms of a query, gathered into one FTS5 expression.
#[derive(Default)]
struct FtsParts {
    /// Positive words and phrases (searched in [`TEXT_COLUMNS`]).
    text: Vec<String>,
    /// Negated words and phrases.
    not_text: Vec<String>,
    /// Positive `header:` phrases.
    headers: Vec<String>,
    /// Negated `header:` phrases.
    not_headers: Vec<String>,
}

/// An FTS5 string literal: the text in double quotes, inner quotes doubled. Inside a string,
/// FTS5 syntax (`AND`, `NEAR`, `*`, `^`, `:`, parentheses) is ordinary text for the tokenizer.
fn fts_string(text: &str, prefix: bool) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push('"');
    out.push_str(&text.replace('"', "\"\""));
    out.push('"');
    if prefix {
        out.push('*');
    }
    out
}

impl FtsParts {
    /// Takes `term` if it is a full-text one.
    fn add(&mut self, negated: bool, term: &Term) -> bool {
        let (list, item) = match term {
            Term::Text { text, phrase } => {
                let list = if negated { &mut self.not_text } else { &mut self.text };
                (list, fts_string(text, !phrase && last_token_chars(text) >= MIN_PREFIX_CHARS))
            }
            Term::Header { name, value } => {
                let list = if negated { &mut self.not_headers } else { &mut self.headers };
                let item = if value.is_empty() {
                    fts_string(name, false)
                } else {
                    fts_string(
                        &format!("{name} {value}"),
                        last_token_chars(value) >= MIN_PREFIX_CHARS,
                    )
                };
                (list, item)
            }
            _ => return false,
        };
        list.push(item);
        true
    }

    /// The FTS5 expression, or `None` without full-text terms.
    fn expression(self) -> Option<Fts> {
        let group = |columns: &str, items: &[String], op: &str| {
            (!items.is_empty()).then(|| format!("{columns} : ({})", items.join(op)))
        };
        let positive: Vec<String> =
            [group(TEXT_COLUMNS, &self.text, " AND "), group("{headers}", &self.headers, " AND ")]
                .into_iter()
                .flatten()
                .collect();
        let negative: Vec<String> = [
            group(TEXT_COLUMNS, &self.not_text, " OR "),
            group("{headers}", &self.not_headers, " OR "),
        ]
        .into_iter()
        .flatten()
        .collect();
        let any = |parts: &[String], op: &str| {
            parts.iter().map(|p| format!("({p})")).collect::<Vec<_>>().join(op)
        };
        match (positive.is_empty(), negative.is_empty()) {
            (true, true) => None,
            (false, true) => Some(Fts::Positive(any(&positive, " AND "))),
            (false, false) => Some(Fts::Positive(format!(
                "({}) NOT ({})",
                any(&positive, " AND "),
                any(&negative, " OR ")
            ))),
            (true, false) => Some(Fts::NegatedOnly(any(&negative, " OR "))),
        }
    }
}

/// The full-text part of a query.
enum Fts {
    /// Rows matching this expression.
    Positive(String),
    /// Rows *not* matching this expression (FTS5 has no "everything but").
    NegatedOnly(String),
}

/// The `messages_fields` columns (migration 14) holding a mailbox header.
fn field_column(field: Field) -> &'static str {
    match field {
        Field::From => "sender",
        Field::To => "to_list",
        Field::Cc => "cc_list",
        Field::Bcc => "bcc_list",
        Field::ReplyTo => "reply_to_list",
    }
}

/// Fewest characters a substring filter needs before the trigram index can list candidates.
const TRIGRAM_CHARS: usize = 3;

/// A substring filter (`subject:`, `from:`, … `message-id:`, or a query of symbols) as an
/// FTS5 phrase over the trigram index (`messages_fields`): the phrase of a value's trigrams
/// matches exactly the values that contain it, folding case as FTS5 does (all of Unicode's
/// simple case folding, so a Kelvin sign in a header matches `k`). `None` for a value shorter
/// than a trigram (the index cannot list it) or with cased letters beyond ASCII (whose case
/// variants the filter's `GLOB` spells out): those filters test every row.
fn field_match(term: &Term) -> Option<String> {
    let (columns, value): (Vec<&str>, &str) = match term {
        Term::Subject(value) | Term::Symbols(value) => (vec!["subject"], value),
        Term::MessageId(value) => (vec!["message_id"], value),
        Term::Address { fields, value } => {
            (fields.iter().map(|f| field_column(*f)).collect(), value)
        }
        _ => return None,
    };
    if value.chars().count() < TRIGRAM_CHARS || needs_glob(value) {
        return None;
    }
    Some(format!("{{{}}} : {}", columns.join(" "), fts_string(value, false)))
}

/// The one character an iterator yields, if it yields exactly one.
fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// The variants of `c` under simple (one-to-one) case mapping, `c` first.
fn case_variants(c: char) -> Vec<char> {
    let mut out = vec![c];
    for v in [single(c.to_lowercase()), single(c.to_uppercase())].into_iter().flatten() {
        for w in [Some(v), single(v.to_lowercase()), single(v.to_uppercase())].into_iter().flatten()
        {
            if !out.contains(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// SQLite's `LIKE` folds ASCII case only; a needle with other cased characters needs `GLOB`
/// with a character class per letter.
fn needs_glob(needle: &str) -> bool {
    needle.chars().any(|c| !c.is_ascii() && case_variants(c).len() > 1)
}

/// A `GLOB` pattern matching `needle` literally and case-insensitively, anchored or not.
fn glob_pattern(needle: &str, contains: bool) -> String {
    let mut out = String::new();
    if contains {
        out.push('*');
    }
    for c in needle.chars() {
        let variants = case_variants(c);
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ if variants.len() > 1 => {
                out.push('[');
                out.extend(variants);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    if contains {
        out.push('*');
    }
    out
}

/// A `LIKE … ESCAPE '\'` pattern matching `needle` as a literal substring.
fn like_contains(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    out.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `expr` contains `needle` literally and case-insensitively.
fn contains(expr: &str, needle: &str, params: &mut Vec<Param>) -> String {
    if needs_glob(needle) {
        params.push(Param::Text(glob_pattern(needle, true)));
        format!("{expr} GLOB ?")
    } else {
        params.push(Param::Text(like_contains(needle)));
        format!("{expr} LIKE ? ESCAPE '\\'")
    }
}

/// `expr` equals `value`, case-insensitively.
fn equals_ci(expr: &str, value: &str, params: &mut Vec<Param>) -> String {
    if needs_glob(value) {
        params.push(Param::Text(glob_pattern(value, false)));
        format!("{expr} GLOB ?")
    } else {
        params.push(Param::Text(value.to_string()));
        format!("{expr} = ? COLLATE NOCASE")
    }
}

/// A mailbox header matches: its name or address contains `value`.
fn field_sql(field: Field, value: &str, params: &mut Vec<Param>) -> String {
    let Some(column) = json_column(field) else {
        let name = contains("COALESCE(m.from_name, '')", value, params);
        let addr = contains("COALESCE(m.from_addr, '')", value, params);
        return format!("{name} OR {addr}");
    };
    // The raw JSON text contains the value (escaped as JSON escapes it) whenever a name or
    // address does: a cheap filter before json_each, which settles it exactly (a value such
    // as `name` is in every row's JSON keys but in no name).
    let json = serde_json::to_string(value).unwrap_or_default();
    let escaped = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')).unwrap_or(value);
    let prefilter = contains(column, escaped, params);
    let name = contains("j.value ->> 'name'", value, params);
    let addr = contains("j.value ->> 'address'", value, params);
    format!(
        "{prefilter} AND EXISTS (SELECT 1 FROM json_each({column}) AS j WHERE {name} OR {addr})"
    )
}

/// Relative cost of evaluating a term on one row: column comparisons, then indexed lookups,
/// then substring tests, then JSON parsing.
fn cost(term: &Term) -> u8 {
    match term {
        Term::Read(_)
        | Term::Attachment
        | Term::Larger(_)
        | Term::Smaller(_)
        | Term::Before(_)
        | Term::After(_) => 0,
        Term::Tag(_) | Term::Tagged | Term::Inbox(_) | Term::Account(_) => 1,
        Term::Symbols(_) | Term::Subject(_) | Term::MessageId(_) => 2,
        Term::Address { .. } => 3,
        Term::Text { .. } | Term::Header { .. } => 4,
    }
}

/// The SQL of a term that is not full-text; never NULL, so `NOT` is its complement.
fn term_sql(term: &Term, params: &mut Vec<Param>) -> String {
    match term {
        Term::Text { .. } | Term::Header { .. } => unreachable!("full-text terms go to FtsParts"),
        Term::Symbols(text) => contains("m.subject", text, params),
        Term::Address { fields, value } => fields
            .iter()
            .map(|field| format!("({})", field_sql(*field, value, params)))
            .collect::<Vec<_>>()
            .join(" OR "),
        Term::Subject(value) => contains("m.subject", value, params),
        Term::MessageId(value) => contains("COALESCE(m.message_id, '')", value, params),
        Term::Tag(tag) => {
            let condition = equals_ci("tag", tag, params);
            format!("m.id IN (SELECT message_id FROM tags WHERE {condition})")
        }
        Term::Read(read) => if *read { "m.read <> 0" } else { "m.read = 0" }.into(),
        Term::Tagged => "m.id IN (SELECT message_id FROM tags)".into(),
        Term::Attachment => "m.attachments > 0".into(),
        Term::Larger(bytes) => {
            params.push(Param::Integer(*bytes));
            "m.size > ?".into()
        }
        Term::Smaller(bytes) => {
            params.push(Param::Integer(*bytes));
            "m.size < ?".into()
        }
        Term::Before(ms) => {
            params.push(Param::Integer(*ms));
            "m.received_at < ?".into()
        }
        Term::After(ms) => {
            params.push(Param::Integer(*ms));
            "m.received_at >= ?".into()
        }
        Term::Inbox(address) => {
            params.push(Param::Text(address.clone()));
            "m.id IN (SELECT message_id FROM recipients WHERE inbox = ?)".into()
        }
        Term::Account(login) => {
            params.push(Param::Text(login.clone()));
            "m.id IN (SELECT message_id FROM recipients WHERE account = ?)".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_folding_patterns() {
        assert!(!needs_glob("abc_%\\"));
        assert!(!needs_glob("東京 €"));
        assert!(needs_glob("Jörg"));
        assert_eq!(glob_pattern("Ab*?[ö]", true), "*[Aa][bB][*][?][[][öÖ]]*");
        assert_eq!(glob_pattern("Σ", false), "[Σσ]");
        assert_eq!(glob_pattern("ς", false), "[ςΣσ]");
        assert_eq!(like_contains("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    /// The number of `?` outside string literals in `sql`.
    fn placeholders(sql: &str) -> usize {
        let mut in_string = false;
        let mut n = 0;
        for c in sql.chars() {
            match c {
                '\'' => in_string = !in_string,
                '?' if !in_string => n += 1,
                _ => {}
            }
        }
        n
    }

    #[test]
    fn sql_never_contains_user_text() {
        let inputs = [
            "hello",
            "\"quoted phrase\" -neg !bang",
            "from:'; DROP TABLE messages; -- to:x cc:y bcc:z reply-to:w addressed:v",
            "subject:\"') OR 1=1 --\" message-id:zz?zz tag:qq'qq inbox:b+c@d",
            "is:read -is:unread is:tagged has:attachment larger:1k smaller:2m",
            "before:2024-01-01 after:2023-01-01 header:X-Evil=\"a' OR '1\"",
            "% _ \\ ' ?? *",
            "jörg Ünïcödé subject:ÜBER from:Σ",
        ];
        for input in inputs {
            let query = SearchQuery::parse(input).expect(input);
            let (sql, params) = condition(&query);
            assert_eq!(placeholders(&sql), params.len(), "{input}: {sql}");
            for word in ["DROP", "evil", "Evil", "qq", "zz", "1=1", "jörg", "ÜBER", "Σ", "%"] {
                assert!(!sql.contains(word), "{input}: {word} leaked into {sql}");
            }
        }
    }

    #[test]
    fn full_text_terms_share_one_match() {
        let (sql, params) = condition(
            &SearchQuery::parse("alpha \"beta gamma\" -delta header:X-A=bee -header:X-B").unwrap(),
        );
        assert_eq!(sql, "+m.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)");
        assert_eq!(
            params,
            vec![Param::Text(
                "(({subject addresses body attachments} : (\"alpha\"* AND \"beta gamma\")) AND \
             ({headers} : (\"X-A bee\"*))) NOT (({subject addresses body attachments} : \
             (\"delta\"*)) OR ({headers} : (\"X-B\")))"
                    .into()
            )]
        );
        let (sql, params) = condition(&SearchQuery::parse("-abc -b is:read").unwrap());
        assert_eq!(
            sql,
            "NOT (+m.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)) AND (m.read <> 0)"
        );
        assert_eq!(
            params,
            vec![Param::Text(
                "({subject addresses body attachments} : (\"abc\"* OR \"b\"))".into()
            )]
        );
        assert_eq!(condition(&SearchQuery::parse("").unwrap()), ("1".to_string(), vec![]));
    }

    #[test]
    fn short_words_match_whole() {
        let fts = |q: &str| match condition(&SearchQuery::parse(q).unwrap()).1.pop() {
            Some(Param::Text(text)) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(fts("k"), "({subject addresses body attachments} : (\"k\"))");
        assert_eq!(fts("ka"), "({subject addresses body attachments} : (\"ka\"))");
        assert_eq!(fts("kal"), "({subject addresses body attachments} : (\"kal\"*))");
        assert_eq!(fts("für"), "({subject addresses body attachments} : (\"für\"*))");
        assert_eq!(fts("a@b.co"), "({subject addresses body attachments} : (\"a@b.co\"))");
        assert_eq!(fts("a@b.com."), "({subject addresses body attachments} : (\"a@b.com.\"*))");
        assert_eq!(fts("header:X=ab"), "({headers} : (\"X ab\"))");
        assert_eq!(last_token_chars("x-1@example.com"), 3);
        assert_eq!(last_token_chars("%%"), 0);
    }

    #[test]
    fn cheap_clauses_come_first() {
        let (sql, params) = condition(
            &SearchQuery::parse("from:bo subject:hi is:read tag:t word cc:carol").unwrap(),
        );
        let order: Vec<usize> =
            ["messages_fts", "messages_fields", "m.read", "tags", "m.subject", "m.from_name"]
                .iter()
                .map(|needle| sql.find(needle).unwrap_or_else(|| panic!("{needle} in {sql}")))
                .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{sql}");
        assert_eq!(params.len(), 6);
        // `carol` is long enough for the trigram index; `bo` and `hi` are not, so they test
        // every row.
        assert_eq!(params[1], Param::Text("{cc_list} : \"carol\"".into()));
        assert_eq!(params[2], Param::Text("t".into()));
        assert_eq!(params[3], Param::Text("%hi%".into()));
        assert_eq!(params[4], Param::Text("%bo%".into()));
    }

    #[test]
    fn fts_strings_escape_quotes() {
        assert_eq!(fts_string("a\"b", true), "\"a\"\"b\"*");
        assert_eq!(fts_string("x", false), "\"x\"");
    }
}
