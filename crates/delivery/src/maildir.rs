//! Writing one message into a Maildir (`tmp/`, `new/`, `cur/`): the file is written and
//! fsync'd under `tmp/`, renamed into `new/`, and the `new/` directory is fsync'd, so a reader
//! (Dovecot, mutt) never sees a partial file and a crash never loses an acknowledged one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A Maildir write failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct MaildirError {
    /// The file or directory involved.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// A Maildir at a path.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

/// Distinguishes files written in the same microsecond by this process.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Maildir {
    /// The Maildir at `root` (created on first delivery).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Maildir { root: root.into() }
    }

    /// Writes `message` into `new/` durably and returns the file's path.
    pub fn deliver(&self, message: &[u8], hostname: &str) -> Result<PathBuf, MaildirError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MaildirError { path, source }
        };
        for sub in ["tmp", "new", "cur"] {
            let dir = self.root.join(sub);
            fs::create_dir_all(&dir).map_err(err(&dir))?;
        }
        let name = unique_name(hostname, message.len());
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let mut file =
            OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(err(&tmp))?;
        let written = file.write_all(message).and_then(|()| file.sync_all());
        if let Err(source) = written {
            let _ = fs::remove_file(&tmp);
            return Err(MaildirError { path: tmp, source });
        }
        drop(file);
        fs::rename(&tmp, &new).map_err(err(&new))?;
        let new_dir = self.root.join("new");
        File::open(&new_dir).and_then(|d| d.sync_all()).map_err(err(&new_dir))?;
        Ok(new)
    }
}

/// `seconds.M<micros>P<pid>Q<seq>.<host>,S=<size>` (the Maildir naming convention, with the
/// size as Dovecot reads it).
fn unique_name(hostname: &str, size: usize) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let host: String =
        hostname.chars().map(|c| if c == '/' || c == ':' { '_' } else { c }).collect();
    format!(
        "{}.M{}P{}Q{seq}.{host},S={size}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_byte_exact_into_new() {
        let root = std::env::temp_dir().join(format!("tern-maildir-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let maildir = Maildir::new(&root);
        let body = b"Subject: x\r\n\r\n\x00\xff binary\r\n";
        let a = maildir.deliver(body, "mx.tern.test").expect("first");
        let b = maildir.deliver(body, "mx.tern.test").expect("second");
        assert_ne!(a, b, "names are unique");
        assert_eq!(fs::read(&a).expect("read"), body);
        assert!(a.parent().is_some_and(|p| p.ends_with("new")));
        assert_eq!(fs::read_dir(root.join("tmp")).expect("tmp").count(), 0, "tmp is left empty");
        assert!(root.join("cur").is_dir());
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unwritable_root_is_an_error_naming_the_path() {
        let file = std::env::temp_dir().join(format!("tern-maildir-file-{}", std::process::id()));
        fs::write(&file, b"x").expect("file");
        let err = Maildir::new(&file).deliver(b"m", "h").expect_err("a file is not a maildir");
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        let _ = fs::remove_file(&file);
    }
}
