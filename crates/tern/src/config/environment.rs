//! `TERN_…` environment variables over the configuration file, as container and service users
//! expect: `TERN_SECTION_KEY` sets `key` of `[section]` (`TERN_SMTP_MAX_RECIPIENTS=50`),
//! `TERN_KEY` a top-level key (`TERN_DATA_DIR=/var/lib/tern`). A value is read as a TOML value
//! when it is one (`50`, `true`, `["0.0.0.0:25"]`), else as a string (`0.0.0.0:8025`,
//! `mail.example.org`). Variables that name no section or top-level key are left alone: other
//! programs use `TERN_` names too (`TERN_SMTP` and `TERN_DROP_DIR` are `tern sendmail`'s).

/// The prefix of every overriding variable.
pub const PREFIX: &str = "TERN_";

/// The sections of the file, as `TERN_SECTION_…` names them.
pub const SECTIONS: &[&str] = &[
    "chaos",
    "log",
    "validate",
    "smtp",
    "spool",
    "http",
    "retention",
    "tls",
    "relay",
    "limits",
    "lists",
    "outbound",
    "queue",
    "auth",
    "dkim",
    "pop3",
];

/// The keys outside any section.
pub const TOP_LEVEL: &[&str] = &["hostname", "data_dir", "mode"];

/// One variable that sets one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The variable's name, for errors.
    pub var: String,
    /// The key: `[key]` or `[section, key]`.
    pub path: Vec<String>,
    /// The value to set.
    pub value: toml::Value,
}

impl Override {
    /// The dotted key, as configuration errors name it.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// This process's environment as (name, value) pairs; variables that are not UTF-8 are skipped
/// (`std::env::vars` would panic on them).
pub fn process_vars() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// The overrides among `vars` (name, value), sorted by key so the result does not depend on
/// the environment's order.
pub fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter_map(|(var, value)| {
            let path = key_path(var.strip_prefix(PREFIX)?)?;
            Some(Override { var, path, value: value_of(&value) })
        })
        .collect();
    found.sort_by_key(Override::key);
    found
}

/// `SMTP_MAX_RECIPIENTS` → `["smtp", "max_recipients"]`; `DATA_DIR` → `["data_dir"]`.
fn key_path(name: &str) -> Option<Vec<String>> {
    let name = name.to_ascii_lowercase();
    if TOP_LEVEL.contains(&name.as_str()) {
        return Some(vec![name]);
    }
    let (section, key) = name.split_once('_')?;
    (SECTIONS.contains(&section) && !key.is_empty()).then(|| vec![section.into(), key.into()])
}

/// The text as a TOML value when it is one, else as a string.
fn value_of(text: &str) -> toml::Value {
    format!("value = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Sets every override in `table` (the parsed file), creating sections as needed.
pub fn apply(table: &mut toml::Table, overrides: &[Override]) {
    for o in overrides {
        match o.path.as_slice() {
            [key] => {
                table.insert(key.clone(), o.value.clone());
            }
            [section, key] => {
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                if let toml::Value::Table(inner) = entry {
                    inner.insert(key.clone(), o.value.clone());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn names_map_to_keys_and_values_to_toml() {
        let found = overrides(vars(&[
            ("TERN_SMTP_MAX_RECIPIENTS", "50"),
            ("TERN_DATA_DIR", "/var/lib/tern"),
            ("TERN_HTTP_LISTEN", "0.0.0.0:8025"),
            ("TERN_SMTP_LISTEN", "[\"127.0.0.1:2525\", \"[::1]:2525\"]"),
            ("TERN_AUTH_VERIFY", "true"),
            ("PATH", "/usr/bin"),
        ]));
        let keys: Vec<String> = found.iter().map(Override::key).collect();
        assert_eq!(
            keys,
            ["auth.verify", "data_dir", "http.listen", "smtp.listen", "smtp.max_recipients"]
        );
        assert_eq!(found[0].value, toml::Value::Boolean(true));
        assert_eq!(found[1].value, toml::Value::String("/var/lib/tern".into()));
        assert_eq!(found[2].value, toml::Value::String("0.0.0.0:8025".into()));
        assert!(found[3].value.as_array().is_some_and(|a| a.len() == 2));
        assert_eq!(found[4].value, toml::Value::Integer(50));
    }

    #[test]
    fn other_programs_variables_are_left_alone() {
        let found = overrides(vars(&[
            ("TERN_SMTP", "127.0.0.1:25"),
            ("TERN_DROP_DIR", "/tmp/drop"),
            ("TERN_CONFIG", "/etc/tern/tern.toml"),
            ("TERN_BENCH_FLAGS", "-n 1"),
            ("TERN_HTTP_", "x"),
        ]));
        assert_eq!(found, []);
    }

    #[test]
    fn sections_are_created_or_extended() {
        let mut table: toml::Table = "[smtp]\nmax_recipients = 5\n".parse().unwrap_or_default();
        apply(
            &mut table,
            &overrides(vars(&[("TERN_SMTP_IDLE_TIMEOUT_SECS", "9"), ("TERN_LOG_LEVEL", "debug")])),
        );
        assert_eq!(table["smtp"]["max_recipients"].as_integer(), Some(5));
        assert_eq!(table["smtp"]["idle_timeout_secs"].as_integer(), Some(9));
        assert_eq!(table["log"]["level"].as_str(), Some("debug"));
    }
}
