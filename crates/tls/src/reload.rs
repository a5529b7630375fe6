//! Certificate hot reload: [`ReloadingAcceptor`] hands every new handshake the current rustls
//! configuration and swaps in a new one when the certificate changes.
//!
//! A swap only affects handshakes that start afterwards: an established TLS stream holds its
//! own state and never looks at the acceptor again, so renewing a certificate drops no session.
//! A reload that fails (half-written file, key and certificate out of step) keeps the previous
//! configuration. This module decides when to reload; reading and checking the files is
//! [`crate::config`]'s job, and it never touches the sessions themselves.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::{CertificateOrigin, PemFiles, TlsConfig, TlsMaterial};
use crate::error::TlsError;
use crate::server_config::build_server_config;

/// How often [`ReloadingAcceptor::watch`] looks at the certificate and key files' metadata.
pub const RELOAD_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Gives out TLS acceptors built from the current certificate, which [`reload`](Self::reload)
/// replaces.
#[derive(Debug)]
pub struct ReloadingAcceptor {
    /// `None` for a generated self-signed certificate: there is nothing on disk to re-read.
    files: Option<PemFiles>,
    /// The files' stamps as of the last load or reload attempt, taken before reading them.
    /// Held for the whole of a reload, so two reloads cannot finish out of order and leave an
    /// older read in place.
    loaded_stamps: Mutex<Option<FileStamps>>,
    current: RwLock<Arc<ServerConfig>>,
}

/// Why a reload was attempted, for the log line.
#[derive(Clone, Copy, Debug)]
enum ReloadCause {
    Hangup,
    FileChanged,
}

impl ReloadCause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "SIGHUP",
            Self::FileChanged => "certificate or key file changed",
        }
    }
}

impl ReloadingAcceptor {
    /// Loads the certificate `config` names (or generates a self-signed one for `hostname`, see
    /// [`TlsConfig::load`]) and builds the first server configuration.
    pub fn new(config: &TlsConfig, hostname: &str) -> Result<Self, TlsError> {
        // Stamped before reading, so a write racing with start-up still counts as a change.
        let stamps = config.pem_files()?.as_ref().map(FileStamps::read);
        let acceptor = Self::from_material(&config.load(hostname)?)?;
        *acceptor.loaded_stamps.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        Ok(acceptor)
    }

    /// Serves `material`; reloads re-read its files if it came from files. A change to the files
    /// between reading `material` and this call goes unnoticed until the next change or SIGHUP;
    /// [`new`](Self::new) has no such gap.
    pub fn from_material(material: &TlsMaterial) -> Result<Self, TlsError> {
        let files = match material.origin() {
            CertificateOrigin::Files(files) => Some(files.clone()),
            CertificateOrigin::SelfSigned { .. } => None,
        };
        let loaded_stamps = Mutex::new(files.as_ref().map(FileStamps::read));
        let current = RwLock::new(build_server_config(material)?);
        Ok(Self { files, loaded_stamps, current })
    }

    /// The configuration new handshakes use now.
    pub fn current(&self) -> Arc<ServerConfig> {
        // A panic while holding the lock cannot leave a half-written `Arc`, so a poisoned lock
        // still holds a usable configuration.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// An acceptor for one new handshake, using the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current())
    }

    /// Re-reads the certificate and key files and, if they are valid and match, makes them the
    /// configuration for new handshakes. On error the previous configuration stays in use and
    /// the error says what was wrong. Does nothing for a generated self-signed certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        // Stamps are taken before the files are read, and kept even if the reload fails: a write
        // that lands during or after this read moves them again, and the watcher retries then.
        let mut loaded_stamps = self.loaded_stamps.lock().unwrap_or_else(PoisonError::into_inner);
        *loaded_stamps = Some(FileStamps::read(files));
        let config = build_server_config(&TlsMaterial::from_pem_files(files)?)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// Reloads on SIGHUP and whenever the certificate or key file changes (its modification
    /// time, length or inode, checked every [`RELOAD_POLL_INTERVAL`]), logging each reload and
    /// each failure, until `shutdown` is cancelled.
    ///
    /// Installing the SIGHUP handler happens when this task first runs; until then the default
    /// action (terminate) applies, so spawn it before announcing that SIGHUP reloads.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        self.watch_every(RELOAD_POLL_INTERVAL, shutdown).await;
    }

    /// [`watch`](Self::watch) with another polling interval.
    pub async fn watch_every(
        self: Arc<Self>,
        poll_interval: Duration,
        shutdown: CancellationToken,
    ) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot listen for SIGHUP; TLS certificates reload only when their files change"
                );
                None
            }
        };
        // The first look is one interval away: the load that built the current configuration
        // recorded the stamps to compare against.
        let mut ticker = tokio::time::interval_at(Instant::now() + poll_interval, poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let cause = tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = next_hangup(&mut hangups) => ReloadCause::Hangup,
                _ = ticker.tick(), if self.files.is_some() => ReloadCause::FileChanged,
            };
            let Some(files) = &self.files else {
                tracing::info!(
                    "SIGHUP: TLS uses a generated self-signed certificate; nothing to reload"
                );
                continue;
            };
            if matches!(cause, ReloadCause::Hangup) || self.files_changed(files) {
                Arc::clone(&self).reload_logged(files, cause).await;
            }
        }
    }

    fn files_changed(&self, files: &PemFiles) -> bool {
        let loaded = self.loaded_stamps.lock().unwrap_or_else(PoisonError::into_inner);
        loaded.as_ref() != Some(&FileStamps::read(files))
    }

    async fn reload_logged(self: Arc<Self>, files: &PemFiles, cause: ReloadCause) {
        let (cert_path, key_path) = (files.cert_path.display(), files.key_path.display());
        // Reading files and parsing keys blocks; keep it off the runtime's worker threads.
        match tokio::task::spawn_blocking(move || self.reload()).await {
            Ok(Ok(())) => tracing::info!(
                cause = cause.as_str(),
                %cert_path,
                %key_path,
                "TLS certificate reloaded; new handshakes use it"
            ),
            Ok(Err(error)) => tracing::error!(
                cause = cause.as_str(),
                %error,
                "TLS certificate reload failed; still serving the previous certificate"
            ),
            Err(error) => tracing::error!(
                cause = cause.as_str(),
                %error,
                "TLS certificate reload task failed; still serving the previous certificate"
            ),
        }
    }
}

/// What identifies one version of the certificate and key files; `None` where a file could not
/// be inspected (for example while it is being replaced).
#[derive(Debug, PartialEq, Eq)]
struct FileStamps {
    cert: Option<FileStamp>,
    key: Option<FileStamp>,
}

/// Modification time first; the length and inode catch a rewrite (or a rename over the file)
/// that lands within the file system's timestamp granularity of the previous version.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamps {
    /// One `stat` per file: cheap enough to run on the async task every couple of seconds.
    fn read(files: &PemFiles) -> Self {
        Self { cert: stamp(&files.cert_path), key: stamp(&files.key_path) }
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    // `metadata` follows symbolic links, so a link switched to a new target counts as a change.
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok()?,
        len: metadata.len(),
        inode: metadata.ino(),
    })
}

async fn next_hangup(hangups: &mut Option<Signal>) -> Option<()> {
    match hangups {
        Some(hangups) => hangups.recv().await,
        None => std::future::pending().await,
    }
}
