//! What the HTTP test files share: a store and spool in a fresh directory with the router's
//! state over them, and storing a message. Each file adds the request helpers it needs as its own
//! `impl Harness`.
// Each test file uses only part of the harness.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tern_http::HttpAuth;
use tern_ingest::{Door, Routing};
use tern_queue::{Spool, SpoolConfig};
use tern_store::{
    Envelope, MessageId, NewMessage, Recipient, Route, SqliteStore, StoreRead, Summary,
};
use tokio_util::sync::CancellationToken;

/// A store in a fresh directory with the router's state over it; both go away on drop.
pub struct Harness {
    dir: PathBuf,
    pub state: tern_http::State,
}

impl Harness {
    /// `auth` guards the API when set; `release_refused` is why releasing is refused, if it is.
    pub fn new(auth: Option<Arc<HttpAuth>>, release_refused: Option<&str>) -> Harness {
        Harness::with_readers(auth, release_refused, |reader| reader)
    }

    /// [`Harness::new`] with each store reader passed through `wrap` (to watch what it reads).
    pub fn with_readers(
        auth: Option<Arc<HttpAuth>>,
        release_refused: Option<&str>,
        wrap: impl Fn(Box<dyn StoreRead>) -> Box<dyn StoreRead> + Send + Sync + 'static,
    ) -> Harness {
        let dir = std::env::temp_dir().join(format!("tern-http-test-{}", MessageId::generate()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let store = SqliteStore::open(&dir).expect("open the store");
        let (spool, _writer) = Spool::start(store, SpoolConfig::default());
        let reader_dir = dir.clone();
        let open: Arc<tern_http::OpenReader> =
            Arc::new(move || SqliteStore::open_read_only(&reader_dir).map(|s| wrap(Box::new(s))));
        let state = Arc::new(tern_http::AppState {
            readers: tern_http::Readers::new(open),
            door: Arc::new(Door::new(spool.clone(), "tern.test", Routing::capture())),
            spool,
            database: dir.join("tern.db").display().to_string(),
            hostname: "tern.test".into(),
            metrics: None,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            auth,
            release_refused: release_refused.map(str::to_string),
            release_relay: None,
            socket_hub: Default::default(),
            browser: tern_http::BrowserPolicy::default(),
            link_check: None,
            activity: Default::default(),
            validator: None,
        });
        Harness { dir, state }
    }

    /// Stores a message from `mail_from` with a `From:` header `from_header`.
    pub async fn submit(&self, mail_from: &str, from_header: &str, to: &[(&str, Route)]) -> String {
        let raw = format!(
            "From: {from_header}\r\nTo: someone@example.com\r\nSubject: queue test\r\n\r\nbody\r\n"
        )
        .into_bytes();
        let (summary, search_text) = Summary::extract_with_text(&raw);
        let message = NewMessage {
            id: MessageId::generate(),
            envelope: Envelope {
                mail_from: mail_from.into(),
                recipients: to
                    .iter()
                    .map(|(address, route)| Recipient {
                        address: address.to_string(),
                        notify: vec![],
                        orcpt: None,
                        route: route.clone(),
                    })
                    .collect(),
                body: None,
                smtputf8: false,
                ret: None,
                envid: None,
                client: "127.0.0.1:1".parse().expect("literal"),
                helo: "client.test".into(),
                tls: None,
                auth: None,
                trusted_client: true,
                received_at_ms: 1_600_000_000_000,
            },
            received_header: b"Received: from client.test by tern.test\r\n".to_vec(),
            raw,
            summary,
            search_text,
        };
        self.state.spool.submit(message).await.expect("stored").to_string()
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
