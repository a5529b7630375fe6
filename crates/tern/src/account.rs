//! `tern account` and `tern alias`: manage who may log in and where mail for local addresses
//! goes. Both write the store directly (the server may be running: SQLite's WAL and busy
//! timeout let them share it); the rules live in `tern_store::accounts`, this is only the
//! command line over them. Passwords are prompted for without echo, or read from standard
//! input, and never printed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use tern_store::{AccountInfo, AccountStore, Alias, SqliteStore};

use crate::config::DEFAULT_DATA_DIR;

/// Arguments of `tern account`.
#[derive(clap::Args, Debug)]
pub struct AccountArgs {
    /// Data directory of the store.
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data: PathBuf,
    #[command(subcommand)]
    action: AccountAction,
}

#[derive(clap::Subcommand, Debug)]
enum AccountAction {
    /// Create an account with a password and the addresses it owns.
    ///
    /// The password is asked for twice on the terminal, without echo; with --password-stdin,
    /// or when standard input is not a terminal, it is read from one line of standard input.
    /// It is stored only as an Argon2id hash. When LOGIN looks like an address, the account
    /// owns that address too.
    Add {
        /// The name the account logs in with (SMTP AUTH), e.g. alice@example.org.
        login: String,
        /// An address the account owns and receives mail for (repeatable).
        #[arg(long = "address", value_name = "ADDRESS")]
        addresses: Vec<String>,
        /// Also allow AUTH CRAM-MD5, which stores the password itself in the database.
        ///
        /// CRAM-MD5 makes the server compute HMAC-MD5 keyed with the password, so the server
        /// must keep the password, not just a hash of it. Anyone who can read the database
        /// (tern.db, a backup, a stolen disk) then learns the passwords of every account with
        /// CRAM-MD5 enabled and can log in as them, here and wherever the password is reused.
        /// Accounts without it expose only an Argon2id hash. Prefer AUTH PLAIN or LOGIN over
        /// TLS (STARTTLS on 587, implicit TLS on 465); enable this only for a client that
        /// cannot use them.
        #[arg(long = "cram-md5")]
        cram_md5: bool,
        /// Also deliver the account's mail into this Maildir (tmp/new/cur).
        #[arg(long, value_name = "DIR")]
        maildir: Option<PathBuf>,
        /// Read the password from one line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// One line per account: login, addresses, CRAM-MD5, Maildir (never a password or hash).
    List,
    /// Change an account's password (and its CRAM-MD5 secret, when that is enabled).
    Passwd {
        /// The account's login.
        login: String,
        /// Read the password from one line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account and free the addresses it owns (its stored mail stays).
    Delete {
        /// The account's login.
        login: String,
    },
}

/// Arguments of `tern alias`.
#[derive(clap::Args, Debug)]
pub struct AliasArgs {
    /// Data directory of the store.
    #[arg(long = "data", value_name = "DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data: PathBuf,
    #[command(subcommand)]
    action: AliasAction,
}

#[derive(clap::Subcommand, Debug)]
enum AliasAction {
    /// Send mail for ADDRESS to each TARGET; `@example.org` is the domain's catch-all.
    ///
    /// Adding to an existing alias adds targets. Targets may be local or remote addresses. An
    /// address an account owns cannot be an alias (the account would always win).
    Add {
        /// The aliased address, or `@domain` for a catch-all.
        address: String,
        /// Where its mail goes.
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// One line per alias: address -> targets.
    List,
    /// Delete one target of an alias, or the whole alias.
    Delete {
        /// The aliased address.
        address: String,
        /// Only this target (default: all of them).
        target: Option<String>,
    },
}

pub fn account_main(args: AccountArgs) -> anyhow::Result<()> {
    let mut store = open(&args.data)?;
    let mut out = std::io::stdout().lock();
    match args.action {
        AccountAction::Add { login, addresses, cram_md5, maildir, password_stdin } => {
            let maildir = maildir
                .map(|dir| std::path::absolute(&dir).with_context(|| dir.display().to_string()))
                .transpose()?;
            let password = read_password(password_stdin, true)?;
            let info =
                store.add_account(&login, &password, &addresses, cram_md5, maildir.as_deref())?;
            writeln!(out, "added account {}", describe(&info))?;
            if cram_md5 {
                eprintln!(
                    "tern: warning: CRAM-MD5 is enabled for {}: its password is stored in the \
                     database as it is, so anyone who can read {} can log in as it; prefer \
                     PLAIN or LOGIN over TLS",
                    info.login,
                    store.path().display()
                );
            }
        }
        AccountAction::List => write_accounts(&mut out, &store.list_accounts()?)?,
        AccountAction::Passwd { login, password_stdin } => {
            // Fail before prompting when there is nobody to change.
            let info =
                store.account(&login)?.with_context(|| format!("no such account: {login}"))?;
            let password = read_password(password_stdin, true)?;
            store.set_password(&info.login, &password)?;
            writeln!(out, "changed the password of {}", info.login)?;
        }
        AccountAction::Delete { login } => {
            store.delete_account(&login)?;
            writeln!(out, "deleted account {login}")?;
        }
    }
    Ok(())
}

pub fn alias_main(args: AliasArgs) -> anyhow::Result<()> {
    let mut store = open(&args.data)?;
    let mut out = std::io::stdout().lock();
    match args.action {
        AliasAction::Add { address, targets } => {
            let alias = store.add_alias(&address, &targets)?;
            writeln!(out, "alias {}", describe_alias(&alias))?;
        }
        AliasAction::List => {
            for alias in store.list_aliases()? {
                writeln!(out, "{}", describe_alias(&alias))?;
            }
        }
        AliasAction::Delete { address, target } => {
            let deleted = store.delete_alias(&address, target.as_deref())?;
            let noun = if deleted == 1 { "target" } else { "targets" };
            writeln!(out, "deleted {deleted} {noun} of alias {address}")?;
        }
    }
    Ok(())
}

fn open(data: &std::path::Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(data).with_context(|| format!("opening the store in {}", data.display()))
}

/// The password from the terminal (asked twice when `confirm`, without echo), or from one line
/// of standard input when asked to or when standard input is not a terminal.
fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading the password")? == 0 {
            bail!("no password on standard input");
        }
        let password = line.strip_suffix('\n').unwrap_or(&line);
        return Ok(password.strip_suffix('\r').unwrap_or(password).to_string());
    }
    let password = rpassword::prompt_password("Password: ").context("reading the password")?;
    if confirm {
        let again =
            rpassword::prompt_password("Repeat password: ").context("reading the password")?;
        if again != password {
            bail!("the passwords do not match");
        }
    }
    Ok(password)
}

fn describe(info: &AccountInfo) -> String {
    let mut text = info.login.clone();
    if !info.addresses.is_empty() {
        text += &format!(" (addresses: {})", info.addresses.join(", "));
    }
    text
}

fn describe_alias(alias: &Alias) -> String {
    format!("{} -> {}", alias.address, alias.targets.join(", "))
}

/// Aligned columns under a header, so people can read it and `awk` can split it.
fn write_accounts(out: &mut impl Write, accounts: &[AccountInfo]) -> std::io::Result<()> {
    let rows: Vec<[String; 4]> = accounts
        .iter()
        .map(|a| {
            [
                a.login.clone(),
                if a.addresses.is_empty() { "-".into() } else { a.addresses.join(",") },
                if a.cram_md5 { "yes" } else { "no" }.into(),
                a.maildir.as_ref().map_or("-".into(), |p| p.display().to_string()),
            ]
        })
        .collect();
    let header = ["LOGIN", "ADDRESSES", "CRAM-MD5", "MAILDIR"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
