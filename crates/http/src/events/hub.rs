//! What every Mailpit websocket shares: one subscription to the spool, and per change the text
//! frames for each scope (everything, or one account's mailbox) that has a socket open — the
//! change as that scope may see it, then its `stats` — computed once and handed to every
//! socket of that scope. A commit costs one count per scope, not one per socket. It owns the
//! frames; `events` owns the sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Value, json};
use tern_queue::Event;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::Readers;

/// Changes a socket may fall behind by before it is told to `prune` (reload).
const BACKLOG_CHANGES: usize = 1024;

/// Whose view: `None` for everything, `Some(login)` for one account's mailbox.
pub(super) type Scope = Option<String>;

/// The websockets' shared state, started by the first socket; one per server.
#[derive(Default)]
pub struct SocketHub {
    started: OnceLock<Arc<Shared>>,
}

struct Shared {
    batches: broadcast::Sender<Arc<Batch>>,
    /// Open sockets per scope: only these scopes are computed.
    scopes: Mutex<HashMap<Scope, usize>>,
}

/// One change: the frames of each scope with a socket open (none when it may not see it),
/// or word that the hub itself fell behind the spool.
enum Batch {
    Frames(HashMap<Scope, Arc<[String]>>),
    Lagged,
}

/// What a socket sends next.
pub(super) enum Next {
    Frames(Arc<[String]>),
    Closed,
}

/// One socket's place in the hub; leaving (drop) stops its scope being computed once it is
/// the last of that scope.
pub(super) struct Member {
    shared: Arc<Shared>,
    scope: Scope,
    batches: broadcast::Receiver<Arc<Batch>>,
}

impl SocketHub {
    /// Registers a socket for `scope`, starting the hub on first use.
    pub(super) fn join(
        &self,
        readers: &Readers,
        spool: &tern_queue::Spool,
        shutdown: &CancellationToken,
        scope: Scope,
    ) -> Member {
        let shared = self.started.get_or_init(|| {
            let shared = Arc::new(Shared {
                batches: broadcast::channel(BACKLOG_CHANGES).0,
                scopes: Mutex::new(HashMap::new()),
            });
            tokio::spawn(run(shared.clone(), readers.clone(), spool.subscribe(), shutdown.clone()));
            shared
        });
        // Registered before subscribing, so no change this socket hears is missing its scope.
        *shared.lock_scopes().entry(scope.clone()).or_default() += 1;
        Member { shared: shared.clone(), scope, batches: shared.batches.subscribe() }
    }
}

impl Shared {
    fn lock_scopes(&self) -> std::sync::MutexGuard<'_, HashMap<Scope, usize>> {
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Member {
    /// The frames of the next change this socket's scope sees; `prune` when it fell behind.
    pub(super) async fn next(&mut self) -> Next {
        loop {
            let batch = match self.batches.recv().await {
                Ok(batch) => batch,
                Err(RecvError::Lagged(_)) => return Next::Frames(prune()),
                Err(RecvError::Closed) => return Next::Closed,
            };
            match &*batch {
                Batch::Lagged => return Next::Frames(prune()),
                Batch::Frames(scopes) => match scopes.get(&self.scope) {
                    Some(frames) if !frames.is_empty() => return Next::Frames(frames.clone()),
                    _ => {}
                },
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut scopes = self.shared.lock_scopes();
        if let Some(count) = scopes.get_mut(&self.scope) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                scopes.remove(&self.scope);
            }
        }
    }
}

fn prune() -> Arc<[String]> {
    Arc::new([frame("prune", Value::Null)])
}

/// Mailpit's framing: one `{"Type", "Data"}` object per text frame.
pub(super) fn frame(kind: &str, data: Value) -> String {
    json!({ "Type": kind, "Data": data }).to_string()
}

/// Reads the spool's changes until shutdown and publishes each one's frames per open scope.
async fn run(
    shared: Arc<Shared>,
    readers: Readers,
    mut events: broadcast::Receiver<Event>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => event,
        };
        let batch = match event {
            Ok(event) => {
                let scopes: Vec<Scope> = shared.lock_scopes().keys().cloned().collect();
                let frames = scopes.iter().map(|scope| frames_for(&readers, scope, &event));
                let frames = futures_util::future::join_all(frames).await;
                Batch::Frames(scopes.into_iter().zip(frames).collect())
            }
            Err(RecvError::Lagged(_)) => Batch::Lagged,
            Err(RecvError::Closed) => return,
        };
        // No receivers only means no socket is open right now.
        let _ = shared.batches.send(Arc::new(batch));
    }
}

/// `event` as `scope` sees it, then its stats; nothing when it changes nothing there.
async fn frames_for(readers: &Readers, scope: &Scope, event: &Event) -> Arc<[String]> {
    let login = scope.as_deref();
    let Some(event) = super::visible(readers, login, event.clone()).await else {
        return Arc::new([]);
    };
    let mut frames: Vec<String> =
        super::translate(&event).into_iter().map(|(kind, data)| frame(kind, data)).collect();
    // Counts change only with frames to show (not with tags or the outbound queue).
    if !frames.is_empty()
        && let Ok(stats) = super::stats(readers, login).await
    {
        frames.push(stats);
    }
    frames.into()
}
