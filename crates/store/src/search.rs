//! The search language (Mailpit's syntax plus `inbox:` and `header:Name=value`), parsed into a
//! [`SearchQuery`] and compiled to an SQL condition over `messages m`.
//!
//! Plain words and "quoted phrases" go to the FTS5 index (decoded subject, addresses, bodies,
//! attachment names, header values); field filters compare stored columns. Every value reaches
//! SQL as a bound parameter, never spliced into the text.

use rusqlite::types::Value;

/// A query that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A filter value is malformed, e.g. `larger:lots` or `before:yesterday-ish`.
    #[error("invalid value for {filter}: {value:?}")]
    BadValue {
        /// The filter, e.g. `larger`.
        filter: String,
        /// The value given.
        value: String,
    },
}

/// One condition of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// Full-text match of a word or phrase.
    Text(String),
}

/// A parsed search: conditions ANDed, each possibly negated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    terms: Vec<(bool, Term)>,
}

impl SearchQuery {
    /// Parses a query string.
    pub fn parse(input: &str) -> Result<SearchQuery, SearchError> {
        let terms = input
            .split_whitespace()
            .map(|word| match word.strip_prefix(['-', '!']) {
                Some(rest) if !rest.is_empty() => (true, Term::Text(rest.to_string())),
                _ => (false, Term::Text(word.to_string())),
            })
            .collect();
        Ok(SearchQuery { terms })
    }

    /// True when the query has no conditions (it matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// An SQL boolean expression over `messages m`, with its parameters in order.
    pub fn sql(&self) -> (String, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        for (negated, term) in &self.terms {
            let clause = match term {
                Term::Text(text) => {
                    params.push(Value::Text(fts_phrase(text)));
                    "m.rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)"
                        .to_string()
                }
            };
            clauses.push(if *negated { format!("NOT ({clause})") } else { clause });
        }
        if clauses.is_empty() { ("1".into(), params) } else { (clauses.join(" AND "), params) }
    }
}

/// A word or phrase as an FTS5 prefix phrase: quotes doubled, so no FTS syntax leaks through.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"*", text.replace('"', "\"\""))
}
