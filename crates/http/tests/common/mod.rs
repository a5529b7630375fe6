//! What the HTTP test files share: a store and spool in a fresh directory with the router's
//! state over them. Each file adds the request helpers it needs as its own `impl Harness`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tern_http::HttpAuth;
use tern_queue::{Spool, SpoolConfig};
use tern_store::{MessageId, SqliteStore, StoreRead};
use tokio_util::sync::CancellationToken;

/// A store in a fresh directory with the router's state over it; both go away on drop.
pub struct Harness {
    dir: PathBuf,
    pub state: tern_http::State,
}

impl Harness {
    /// `auth` guards the API when set; `release_refused` is why releasing is refused, if it is.
    pub fn new(auth: Option<Arc<HttpAuth>>, release_refused: Option<&str>) -> Harness {
        let dir = std::env::temp_dir().join(format!("tern-http-test-{}", MessageId::generate()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let store = SqliteStore::open(&dir).expect("open the store");
        let (spool, _writer) = Spool::start(store, SpoolConfig::default());
        let reader_dir = dir.clone();
        let open: Arc<tern_http::OpenReader> = Arc::new(move || {
            SqliteStore::open_read_only(&reader_dir).map(|s| Box::new(s) as Box<dyn StoreRead>)
        });
        let state = Arc::new(tern_http::AppState {
            readers: tern_http::Readers::new(open),
            spool,
            database: dir.join("tern.db").display().to_string(),
            hostname: "tern.test".into(),
            metrics: None,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            auth,
            release_refused: release_refused.map(str::to_string),
            release_relay: None,
            browser: tern_http::BrowserPolicy::default(),
        });
        Harness { dir, state }
    }

    /// No authentication, releasing allowed.
    pub fn open() -> Harness {
        Harness::new(None, None)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
