//! The store's free-space reserve. New mail is refused at `MAIL FROM` (`452 4.3.1`) while the
//! filesystem holding the data directory has less free space than the reserve plus the size
//! the client declared, so a filling disk turns into polite deferrals before a commit can fail
//! (`451 4.3.0`); the reserve is what is left for the commits already under way, retries'
//! records and SQLite's checkpoints. The space is read with `statvfs` at most every
//! [`RECHECK`], so a freed disk is noticed within that, and a change of state (low, then
//! enough again) is logged once, however many clients are refused meanwhile.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How long a reading of the free space is trusted.
pub const RECHECK: Duration = Duration::from_millis(250);

/// The reserve kept free on the data directory's filesystem.
#[derive(Debug)]
pub struct Reserve {
    dir: PathBuf,
    min_free: u64,
    reading: Mutex<Reading>,
}

#[derive(Debug, Default)]
struct Reading {
    at: Option<Instant>,
    available: Option<u64>,
    low: bool,
}

/// New mail does not fit: what is free, and what the reserve and the message need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{available} bytes free, {needed} needed (reserve and message)")]
pub struct NoRoom {
    /// Bytes free for unprivileged writers.
    pub available: u64,
    /// The reserve plus the message's declared size.
    pub needed: u64,
}

impl Reserve {
    /// Keeps `min_free` bytes free on the filesystem holding `dir`.
    pub fn new(dir: impl Into<PathBuf>, min_free: u64) -> Reserve {
        Reserve { dir: dir.into(), min_free, reading: Mutex::default() }
    }

    /// Whether a message of `size` bytes fits above the reserve. A filesystem that cannot be
    /// read (a stat failure) does not stop mail: the commit will tell.
    pub fn room(&self, size: u64) -> Result<(), NoRoom> {
        if self.min_free == 0 {
            return Ok(());
        }
        let available = self.available();
        let Some(available) = available else { return Ok(()) };
        let needed = self.min_free.saturating_add(size);
        if available < needed { Err(NoRoom { available, needed }) } else { Ok(()) }
    }

    /// Bytes free, read again when the last reading is older than [`RECHECK`]; logs the
    /// moments free space falls below the reserve and rises above it again.
    fn available(&self) -> Option<u64> {
        let mut reading = self.reading.lock().unwrap_or_else(PoisonError::into_inner);
        if reading.at.is_some_and(|at| at.elapsed() < RECHECK) {
            return reading.available;
        }
        reading.at = Some(Instant::now());
        reading.available = free_bytes(&self.dir);
        let available = reading.available?;
        let low = available < self.min_free;
        if low && !reading.low {
            warn!(
                dir = %self.dir.display(),
                available,
                reserve = self.min_free,
                "free space below the reserve: new mail is refused with 452 4.3.1 until space is freed"
            );
        } else if !low && reading.low {
            info!(dir = %self.dir.display(), available, "free space above the reserve again: accepting mail");
        }
        metrics::gauge!("tern_spool_free_bytes").set(available as f64);
        reading.low = low;
        Some(available)
    }
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_none_accepts() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).is_some(), "statvfs on the temp dir");
        assert_eq!(Reserve::new(&dir, 0).room(u64::MAX), Ok(()), "no reserve: never refused");
        assert_eq!(Reserve::new(&dir, 1).room(0), Ok(()));
        let refused = Reserve::new(&dir, u64::MAX / 2).room(1).expect_err("more than the disk");
        assert_eq!(refused.needed, u64::MAX / 2 + 1);
        let declared = Reserve::new(&dir, 1).room(u64::MAX).expect_err("declared size counts");
        assert_eq!(declared.needed, u64::MAX);
        let gone = Reserve::new("/nonexistent/tern", 1 << 40);
        assert_eq!(gone.room(0), Ok(()), "an unreadable filesystem leaves it to the commit");
    }
}
