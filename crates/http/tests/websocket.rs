//! Mailpit's websocket (`/api/events`) over real loopback sockets: with several sockets open, a
//! change is counted once (one store `page` read for its `stats`), not once per socket, and
//! every socket still gets the change's frames and then the stats, exactly as Mailpit frames them;
//! an account's sockets share their count and hear of their own mailbox only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tern_http::{HttpAuth, PasswordCheck};
use tern_store::model::MaildirCopy;
use tern_store::{
    InboxCount, MessageId, MessagePage, MessageRow, QueueCounts, QueueEntry, QueueFilter,
    QueueReport, QueueTops, Route, SearchQuery, StoreError, StoreRead, StoredMessage,
};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tower::ServiceExt as _;

use common::Harness;

/// Sockets open at once.
const SOCKETS: usize = 4;

/// A reader that counts its `page` reads (the query behind every `stats` frame).
struct CountingPages {
    inner: Box<dyn StoreRead>,
    pages: Arc<AtomicUsize>,
}

impl StoreRead for CountingPages {
    fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        self.inner.message(id)
    }
    fn list_ids(&self, limit: usize) -> Result<Vec<MessageId>, StoreError> {
        self.inner.list_ids(limit)
    }
    fn count(&self) -> Result<u64, StoreError> {
        self.inner.count()
    }
    fn page(
        &self,
        query: Option<&SearchQuery>,
        start: u64,
        limit: u64,
    ) -> Result<MessagePage, StoreError> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.inner.page(query, start, limit)
    }
    fn matching_after(
        &self,
        query: Option<&SearchQuery>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.inner.matching_after(query, after, limit)
    }
    fn matching_among(
        &self,
        query: Option<&SearchQuery>,
        ids: &[MessageId],
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.inner.matching_among(query, ids)
    }
    fn pending_maildir(&self, limit: u64) -> Result<Vec<MaildirCopy>, StoreError> {
        self.inner.pending_maildir(limit)
    }
    fn reported_messages(&self, now_ms: i64, limit: u64) -> Result<Vec<MessageId>, StoreError> {
        self.inner.reported_messages(now_ms, limit)
    }
    fn queue_reports(&self, message: &MessageId) -> Result<Vec<(i64, QueueReport)>, StoreError> {
        self.inner.queue_reports(message)
    }
    fn inboxes(&self, account: Option<&str>) -> Result<Vec<InboxCount>, StoreError> {
        self.inner.inboxes(account)
    }
    fn due_entries(
        &self,
        now_ms: i64,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError> {
        self.inner.due_entries(now_ms, limit, skip)
    }
    fn next_due_ms(&self, after_ms: i64) -> Result<Option<i64>, StoreError> {
        self.inner.next_due_ms(after_ms)
    }
    fn queue_entries(&self, filter: &QueueFilter) -> Result<(Vec<QueueEntry>, u64), StoreError> {
        self.inner.queue_entries(filter)
    }
    fn queue_counts(&self) -> Result<QueueCounts, StoreError> {
        self.inner.queue_counts()
    }
    fn received_histogram(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        self.inner.received_histogram(since_ms, bucket_ms)
    }
    fn queue_tops(&self, sample: u64, limit: u64) -> Result<QueueTops, StoreError> {
        self.inner.queue_tops(sample, limit)
    }
    fn latest_id(&self) -> Result<Option<MessageId>, StoreError> {
        self.inner.latest_id()
    }
    fn tags_of(&self, query: Option<&SearchQuery>) -> Result<Vec<String>, StoreError> {
        self.inner.tags_of(query)
    }
    fn size_bytes(&self) -> Result<u64, StoreError> {
        self.inner.size_bytes()
    }
}

type Socket = WebSocketStream<tokio::net::TcpStream>;

/// Accounts whose password is `pw`.
struct Accounts;

impl PasswordCheck for Accounts {
    fn verify(&self, login: &str, password: &str) -> Option<String> {
        (password == "pw").then(|| login.to_string())
    }
}

/// A harness whose readers count `page` reads into the returned counter.
fn counting(auth: Option<Arc<HttpAuth>>) -> (Harness, Arc<AtomicUsize>) {
    let pages = Arc::new(AtomicUsize::new(0));
    let counter = pages.clone();
    let harness = Harness::with_readers(auth, None, move |inner| {
        Box::new(CountingPages { inner, pages: counter.clone() })
    });
    (harness, pages)
}

/// Serves the router on a free loopback port until the harness shuts down.
async fn serve(harness: &Harness) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let shutdown = harness.state.shutdown.clone();
    tokio::spawn(
        axum::serve(listener, tern_http::router(harness.state.clone()))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .into_future(),
    );
    addr
}

/// Opens `/api/events` (with `authorization`, if any) and reads its opening `stats` frame.
async fn connect(addr: SocketAddr, authorization: Option<&str>) -> (Socket, Value) {
    let mut request = format!("ws://{addr}/api/events").into_client_request().expect("a URL");
    if let Some(value) = authorization {
        request.headers_mut().insert("authorization", value.parse().expect("a header value"));
    }
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut socket, _) =
        tokio_tungstenite::client_async(request, stream).await.expect("websocket handshake");
    let stats = next_frame(&mut socket).await;
    assert_eq!(stats["Type"], "stats", "{stats}");
    (socket, stats)
}

/// `Basic` credentials of `login` with the password `pw`.
fn basic(login: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{login}:pw")))
}

/// The next text frame as JSON.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = socket.next().await.expect("the socket stays open").expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("each frame is JSON");
        }
    }
}

/// The `new` frame and then the `stats` frame of one commit.
async fn new_then_stats(socket: &mut Socket) -> (Value, Value) {
    let new = next_frame(socket).await;
    assert_eq!(new["Type"], "new", "{new}");
    let stats = next_frame(socket).await;
    assert_eq!(stats["Type"], "stats", "{stats}");
    assert_eq!(stats["Data"]["Version"], env!("CARGO_PKG_VERSION"), "{stats}");
    (new, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_counted_once_for_all_open_sockets() {
    let (harness, pages) = counting(None);
    let addr = serve(&harness).await;
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(connect(addr, None).await.0);
    }
    let before = pages.load(Ordering::SeqCst);
    assert_eq!(before, SOCKETS, "each socket opens with its own stats");

    let send = Request::post("/api/v1/send")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"From": {"Email": "a@example.org"}, "To": [{"Email": "b@example.com"}], "Subject": "Fan out", "Text": "x"})
                .to_string(),
        ))
        .expect("a request");
    let sent = tern_http::router(harness.state.clone()).oneshot(send).await.expect("answered");
    assert_eq!(sent.status(), StatusCode::OK);

    for socket in &mut sockets {
        let (new, stats) = new_then_stats(socket).await;
        assert_eq!(new["Data"]["Subject"], "Fan out");
        assert_eq!(stats["Data"]["Total"], 1, "{stats}");
    }
    // Every socket has its stats frame, so every read behind them is done.
    assert_eq!(pages.load(Ordering::SeqCst) - before, 1, "one count for {SOCKETS} sockets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_sockets_share_counts_and_hear_only_their_mailbox() {
    let (harness, pages) =
        counting(Some(Arc::new(HttpAuth::new(Some("admin-key".into()), Some(Arc::new(Accounts))))));
    let addr = serve(&harness).await;
    let (mut alice, _) = connect(addr, Some(&basic("alice"))).await;
    let (mut alice_too, _) = connect(addr, Some(&basic("alice"))).await;
    let (mut bob, _) = connect(addr, Some(&basic("bob"))).await;
    let (mut admin, _) = connect(addr, Some("Bearer admin-key")).await;
    let before = pages.load(Ordering::SeqCst);

    let local = |account: &str| Route::Local { account: account.into() };
    let to_alice = [("alice@tern.test", local("alice"))];
    let to_alice = harness.submit("x@example.org", "x@example.org", &to_alice).await;
    for socket in [&mut alice, &mut alice_too, &mut admin] {
        let (new, stats) = new_then_stats(socket).await;
        assert_eq!((&new["Data"]["ID"], &stats["Data"]["Total"]), (&json!(to_alice), &json!(1)));
    }
    assert_eq!(
        pages.load(Ordering::SeqCst) - before,
        2,
        "one count for alice's two sockets, one for the admin's; none for bob, who saw nothing"
    );

    let to_bob = [("bob@tern.test", local("bob"))];
    let to_bob = harness.submit("x@example.org", "x@example.org", &to_bob).await;
    let (new, stats) = new_then_stats(&mut bob).await;
    assert_eq!(new["Data"]["ID"], to_bob, "bob's first frame is his own message, not alice's");
    assert_eq!(stats["Data"]["Total"], 1, "bob counts his mailbox only: {stats}");
    let (new, stats) = new_then_stats(&mut admin).await;
    assert_eq!((&new["Data"]["ID"], &stats["Data"]["Total"]), (&json!(to_bob), &json!(2)));
}
