//! `tern serve`: load configuration, open the store, start the spool and the SMTP listeners,
//! and shut down cleanly on SIGINT/SIGTERM: stop accepting, answer `421 4.3.0` to sessions
//! still talking, give HTTP connections `http.shutdown_grace_secs` to finish, let commits in
//! flight finish, then exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tern_ingest::{Door, Routing};
use tern_queue::Spool;
use tern_smtp::Context;
use tern_store::SqliteStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat, Mode};
use crate::{ServeArgs, maintenance};

/// How long sessions get to finish after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub fn main(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    init_logging(&config)?;
    crate::runtime()?.block_on(run(config))
}

/// Stage two of configuration: the file (or defaults), then flags on top.
fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !args.smtp.is_empty() {
        config.smtp.listen = args.smtp;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    if let Some(hostname) = args.hostname {
        anyhow::ensure!(
            !hostname.is_empty() && !hostname.contains(char::is_whitespace),
            "--hostname must be a non-empty name without spaces"
        );
        config.hostname = Some(hostname);
    }
    if let Some(format) = args.log_format {
        config.log.format = format;
    }
    if let Some(http) = args.http {
        config.http.listen = http;
    }
    if let Some(max) = args.max_messages {
        config.retention.max_messages = max;
    }
    if let Some(age) = args.max_age {
        config.retention.max_age_secs = age.as_secs();
    }
    Ok(config)
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::try_new(value).context("RUST_LOG")?,
        _ => EnvFilter::try_new(&config.log.level)
            .with_context(|| format!("log.level = {:?}", config.log.level))?,
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<()> {
    let hostname = config.resolved_hostname();
    let store = tokio::task::spawn_blocking({
        let dir = config.data_dir.clone();
        move || SqliteStore::open(&dir)
    })
    .await?
    .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    info!(path = %store.path().display(), "store open");
    let (spool, writer) = Spool::start(store, (&config.spool).into());

    let settings = config.listeners();
    let addresses: Vec<_> = settings.iter().map(|l| l.address).collect();
    let listeners = tern_smtp::bind(&addresses).await?.into_iter().zip(settings).collect();
    let http_listener = tern_smtp::server::listen(config.http.listen)
        .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(maintenance::run(spool.clone(), config.retention.clone(), shutdown.clone()));
    let tls = tls_provider(&config, &hostname, &shutdown)?;
    let readers = readers(&config);
    let (directory, mta) = match config.mode {
        Mode::Catcher => (None, None),
        Mode::Mta => {
            let directory: Arc<dyn tern_ingest::Directory> =
                Arc::new(crate::directory::StoreDirectory::new(&config.data_dir));
            tracker.spawn(tern_delivery::run_local(
                readers.clone(),
                spool.clone(),
                hostname.clone(),
                shutdown.clone(),
            ));
            (Some(directory), Some(Arc::new(config.mta()?)))
        }
    };
    let auth = Authentication::load(&config, &hostname)?;
    let door = door(&spool, &hostname, mta.as_deref(), directory.clone(), &auth);
    tracker.spawn(crate::pickup::run(door.clone(), config.data_dir.join("drop")));
    let state = http_state(&config, &hostname, &door, shutdown.clone())?;
    tracker.spawn(tern_http::activity::run(state.clone()));
    let http = tokio::spawn(tern_http::server::serve(
        http_listener,
        tern_http::router(state),
        config.http.limits(),
        shutdown.clone(),
    ));
    tracker.spawn(crate::outbound::scheduler(
        &config,
        &hostname,
        auth.verifier.as_ref().map(|v| v.resolver().clone()),
        readers,
        spool,
        Arc::new(door.routing().clone()),
        shutdown.clone(),
    )?);
    let ctx = Arc::new(Context {
        door,
        tls,
        directory,
        mta,
        config: config.smtp.clone(),
        hostname,
        shutdown: shutdown.clone(),
    });
    let server = tokio::spawn(tern_smtp::serve(listeners, ctx.clone(), tracker.clone()));
    info!(version = env!("CARGO_PKG_VERSION"), http = %config.http.listen, "tern ready");

    wait_for_signal().await?;
    info!("shutting down: no new connections; sessions get 421");
    shutdown.cancel();
    let _ = server.await;
    let _ = http.await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!(
            "sessions still running after the grace period; their messages were not acknowledged"
        );
    }
    // The last handle to the spool goes with the context; the writer then drains and stops.
    drop(ctx);
    close_spool(writer).await
}

/// Waits for the spool writer to drain and stop, and logs what it did.
async fn close_spool(writer: tern_queue::SpoolWriter) -> anyhow::Result<()> {
    let stats = tokio::task::spawn_blocking(move || writer.join()).await?;
    info!(
        messages = stats.messages,
        commits = stats.commits,
        mean_batch = format!("{:.1}", stats.mean_batch()),
        max_batch = stats.max_batch,
        "spool closed"
    );
    Ok(())
}

/// Message authentication as configured: the verifier (when received mail is checked) and the
/// DKIM signer (when keys exist and signing is on).
struct Authentication {
    verifier: Option<Arc<tern_auth::Verifier>>,
    config: tern_auth::AuthConfig,
    signer: Option<Arc<tern_auth::Signer>>,
    sealer: Option<Arc<tern_auth::Signer>>,
}

impl Authentication {
    fn load(config: &Config, hostname: &str) -> anyhow::Result<Self> {
        let verifier = if config.verifies() {
            let o = &config.outbound;
            let timeout = Duration::from_secs(o.dns_timeout_secs);
            let verifier =
                tern_auth::Verifier::new(&config.auth, hostname, &o.dns_servers, timeout)?;
            info!(authserv_id = verifier.authserv_id(), "checking SPF, DKIM, DMARC and ARC");
            Some(Arc::new(verifier))
        } else {
            None
        };
        let dir = config.dkim_key_dir();
        let keys = tern_auth::keys::load_dir(&dir)
            .with_context(|| format!("reading DKIM keys in {}", dir.display()))?;
        for key in &keys {
            info!(domain = %key.domain, selector = %key.selector, "DKIM key loaded");
        }
        let keys = (!keys.is_empty()).then(|| Arc::new(tern_auth::Signer::new(keys)));
        let signer = keys.clone().filter(|_| config.dkim.sign.unwrap_or(true));
        let sealer = keys.filter(|_| config.dkim.arc_seal.unwrap_or(true));
        Ok(Authentication { verifier, config: config.auth.clone(), signer, sealer })
    }

    /// The chain's stages for it, after `standard` (the MTA's checks) if any.
    fn chain(&self, mta: Option<&tern_smtp::Mta>) -> tern_ingest::Chain {
        use tern_ingest::authentication::{Authenticate, Sign};
        let mut chain = match mta {
            Some(mta) => tern_ingest::checks::standard(mta.relay.clone(), mta.lists.clone()),
            None => tern_ingest::Chain::default(),
        };
        if let Some(verifier) = &self.verifier {
            let config = self.config.clone();
            chain.push(Arc::new(match mta {
                Some(mta) => {
                    let stage = Authenticate::mta(verifier.clone(), config, mta.relay.clone());
                    match &self.sealer {
                        Some(sealer) => stage.with_sealer(sealer.clone()),
                        None => stage,
                    }
                }
                None => Authenticate::catcher(verifier.clone(), config),
            }));
        }
        if let (Some(signer), Some(mta)) = (&self.signer, mta) {
            chain.push(Arc::new(Sign::new(signer.clone(), mta.relay.clone())));
        }
        chain
    }
}

/// The door every message enters by: in MTA mode with the relay policy's routing and the
/// standard checks, in catcher mode capturing everything; then authentication and signing.
fn door(
    spool: &Spool,
    hostname: &str,
    mta: Option<&tern_smtp::Mta>,
    directory: Option<Arc<dyn tern_ingest::Directory>>,
    auth: &Authentication,
) -> Arc<Door> {
    let chain = auth.chain(mta);
    let routing = match (mta, &auth.signer) {
        (Some(mta), Some(signer)) => {
            Routing::mta(mta.relay.clone(), directory, hostname).with_signer(signer.clone())
        }
        (Some(mta), None) => Routing::mta(mta.relay.clone(), directory, hostname),
        (None, _) => Routing::capture(),
    };
    let door = Door::new(spool.clone(), hostname, routing).with_chain(chain);
    Arc::new(door.with_delivered_notices(true))
}

/// Read-only store connections for the scheduler and local delivery.
fn readers(config: &Config) -> tern_store::pool::Pool<Box<dyn tern_store::StoreRead>> {
    let dir = config.data_dir.clone();
    tern_store::pool::Pool::new(Arc::new(move || {
        SqliteStore::open_read_only(&dir).map(|s| Box::new(s) as Box<dyn tern_store::StoreRead>)
    }))
}

/// TLS for STARTTLS and port 465: in MTA mode always (a self-signed certificate when none is
/// configured), in catcher mode only when a certificate is configured.
fn tls_provider(
    config: &Config,
    hostname: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<dyn tern_smtp::TlsProvider>>> {
    let configured = config.tls.cert_path.is_some() || config.tls.key_path.is_some();
    if config.mode == Mode::Catcher && !configured {
        return Ok(None);
    }
    let acceptor = Arc::new(tern_tls::ReloadingAcceptor::new(&config.tls, hostname)?);
    tokio::spawn(acceptor.clone().watch(shutdown.clone()));
    Ok(Some(Arc::new(Tls(acceptor))))
}

/// The reloading acceptor as the SMTP sessions see it.
struct Tls(Arc<tern_tls::ReloadingAcceptor>);

impl tern_smtp::TlsProvider for Tls {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.0.acceptor()
    }
}

fn http_state(
    config: &Config,
    hostname: &str,
    door: &Arc<Door>,
    shutdown: CancellationToken,
) -> anyhow::Result<tern_http::State> {
    let dir = config.data_dir.clone();
    let open: Arc<tern_http::OpenReader> = Arc::new(move || {
        SqliteStore::open_read_only(&dir).map(|s| Box::new(s) as Box<dyn tern_store::StoreRead>)
    });
    let browser = config
        .http
        .browser_policy(hostname)
        .with_context(|| format!("hostname {hostname:?} cannot be answered as an HTTP Host"))?;
    Ok(Arc::new(tern_http::AppState {
        readers: tern_http::Readers::new(open),
        spool: door.spool().clone(),
        door: door.clone(),
        database: config.data_dir.join(tern_store::sqlite::DATABASE_FILE).display().to_string(),
        hostname: hostname.to_string(),
        metrics: crate::metrics::install(),
        started: std::time::Instant::now(),
        auth: http_auth(config),
        shutdown,
        // A catcher releases only through a configured smarthost: it must never mail the
        // world through MX lookups by accident.
        release_refused: (config.mode == Mode::Catcher && config.outbound.relay_host.is_none())
            .then(|| {
                "releasing needs an SMTP relay: set [outbound] relay_host in the configuration \
                 (a catcher never delivers through MX lookups)"
                    .to_string()
            }),
        release_relay: config.outbound.relay_host.clone(),
        socket_hub: Default::default(),
        browser,
        activity: Default::default(),
    }))
}

/// HTTP credentials: required when configured, and always in MTA mode off loopback (the API
/// then shows each account its own mailbox, everything only to the API key).
fn http_auth(config: &Config) -> Option<Arc<tern_http::HttpAuth>> {
    let exposed = config.mode == Mode::Mta && !config.http.listen.ip().is_loopback();
    if !(config.http.require_auth || exposed) {
        return None;
    }
    let accounts: Option<Arc<dyn tern_http::PasswordCheck>> = match config.mode {
        Mode::Mta => Some(Arc::new(crate::directory::StoreDirectory::new(&config.data_dir))),
        Mode::Catcher => None,
    };
    let api_key = config.http.api_key.clone().filter(|key| !key.is_empty());
    if api_key.is_none() && accounts.is_none() {
        warn!("http.require_auth is set but there is no api_key and no account can log in");
    }
    Some(Arc::new(tern_http::HttpAuth::new(api_key, accounts)))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    Ok(())
}
