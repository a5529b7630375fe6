//! `tern serve`: load configuration, open the store, start the spool and the SMTP listeners,
//! reload on SIGHUP ([`crate::reload`]), and shut down cleanly on SIGINT/SIGTERM: stop accepting, answer `421 4.3.0` to sessions
//! still talking, give HTTP connections `http.shutdown_grace_secs` to finish, let commits in
//! flight finish, then exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tern_ingest::{Door, Routing};
use tern_queue::Spool;
use tern_queue::space::Reserve;
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
    let config = resolve(args.clone())?;
    let log_filter = init_logging(&config)?;
    match config_path(&args) {
        Some(path) => info!(file = %path.display(), "configuration loaded"),
        None => info!("no configuration file: defaults (the catcher)"),
    }
    let reloader = crate::reload::Reloader::new(args, &config, log_filter);
    crate::runtime()?.block_on(run(config, reloader))
}

/// The configuration file: `--config` (or `TERN_CONFIG`); without it, a server started by
/// systemd (which sets `INVOCATION_ID`) reads `/etc/tern/tern.toml` when it exists, while by
/// hand `tern serve` is the catcher on defaults.
fn config_path(args: &ServeArgs) -> Option<std::path::PathBuf> {
    args.config.clone().or_else(|| {
        let default = std::path::PathBuf::from(crate::config::DEFAULT_CONFIG_PATH);
        (std::env::var_os("INVOCATION_ID").is_some() && default.exists()).then_some(default)
    })
}

/// The configuration: the file (or defaults), `TERN_…` variables over it, then flags on top.
pub(crate) fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let path = config_path(&args);
    let mut config =
        Config::load_with_env(path.as_deref(), crate::config::environment::process_vars())?;
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
    if args.enable_chaos {
        config.chaos.enabled = true;
    }
    if let Some(triggers) = args.chaos_triggers {
        tern_ingest::chaos::Triggers::parse(&triggers)
            .map_err(|e| anyhow::anyhow!("--chaos-triggers: {e}"))?;
        // As in Mailpit, setting triggers turns chaos on.
        config.chaos.enabled = true;
        config.chaos.triggers = triggers;
    }
    Ok(config)
}

/// Installs the log subscriber; returns how to change its filter later (`log.level` on
/// SIGHUP), or `None` when `RUST_LOG` fixes it.
fn init_logging(config: &Config) -> anyhow::Result<Option<crate::reload::SetFilter>> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|value| !value.is_empty());
    let filter = match &from_env {
        Some(value) => EnvFilter::try_new(value).context("RUST_LOG")?,
        None => crate::reload::log_filter(&config.log.level)?,
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let set: crate::reload::SetFilter = match config.log.format {
        LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
        }
    };
    Ok(from_env.is_none().then_some(set))
}

async fn run(config: Config, reloader: crate::reload::Reloader) -> anyhow::Result<()> {
    let hostname = config.resolved_hostname();
    let (spool, writer) = open_spool(&config).await?;

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
    let pop3 = Pop3::bind(&config, &hostname, &tls, &readers, mta.as_ref(), &shutdown).await?;
    let auth = Authentication::load(&config, &hostname)?;
    let chaos = chaos(&config)?;
    let door = door(&spool, &hostname, mta.as_deref(), directory.clone(), &auth, chaos);
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
    Pop3::start(pop3, &ctx, &tracker);
    reloader.start(shutdown.clone())?;
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

/// Opens the store (off the async threads: it may replay a WAL) and starts its writer.
async fn open_spool(config: &Config) -> anyhow::Result<(Spool, tern_queue::SpoolWriter)> {
    let store = tokio::task::spawn_blocking({
        let dir = config.data_dir.clone();
        move || SqliteStore::open(&dir)
    })
    .await?
    .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    info!(path = %store.path().display(), "store open");
    let (spool, writer) = Spool::start(store, (&config.spool).into());
    let reserve = Reserve::new(&config.data_dir, config.spool.min_free_bytes);
    Ok((spool.with_reserve(reserve), writer))
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

/// The chaos engine when `[chaos] enabled` (the configuration was checked when it loaded).
fn chaos(config: &Config) -> anyhow::Result<Option<Arc<tern_ingest::chaos::Chaos>>> {
    if !config.chaos.enabled {
        return Ok(None);
    }
    let chaos =
        tern_ingest::chaos::Chaos::new(&config.chaos).map_err(|e| anyhow::anyhow!("chaos: {e}"))?;
    let rules = config.chaos.rules.len();
    info!(rules, triggers = %config.chaos.triggers, seed = %config.chaos.seed.map_or("random".to_string(), |s| s.to_string()),
        "chaos enabled");
    Ok(Some(Arc::new(chaos)))
}

/// The door every message enters by: in MTA mode with the relay policy's routing and the
/// standard checks, in catcher mode capturing everything; then authentication and signing,
/// and chaos when it is on.
fn door(
    spool: &Spool,
    hostname: &str,
    mta: Option<&tern_smtp::Mta>,
    directory: Option<Arc<dyn tern_ingest::Directory>>,
    auth: &Authentication,
    chaos: Option<Arc<tern_ingest::chaos::Chaos>>,
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
    let door = door.with_delivered_notices(true);
    Arc::new(match chaos {
        Some(chaos) => door.with_chaos(chaos),
        None => door,
    })
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
    reloading_tls(config, hostname, shutdown).map(Some)
}

/// The configured certificate (a self-signed one for `hostname` when none is), reloaded when
/// its files change and on SIGHUP.
fn reloading_tls(
    config: &Config,
    hostname: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn tern_smtp::TlsProvider>> {
    let acceptor = Arc::new(tern_tls::ReloadingAcceptor::new(&config.tls, hostname)?);
    tokio::spawn(acceptor.clone().watch(shutdown.clone()));
    Ok(Arc::new(Tls(acceptor)))
}

/// The POP3 server's listeners, bound at start (a port in use fails the start as SMTP's do),
/// and what its sessions need besides the SMTP context.
struct Pop3 {
    listeners: Vec<(tokio::net::TcpListener, bool)>,
    config: tern_pop3::Pop3Config,
    tls: Arc<dyn tern_smtp::TlsProvider>,
    readers: tern_store::pool::Pool<Box<dyn tern_store::StoreRead>>,
    /// Admission and the login throttle: the mail server's are SMTP's, the catcher's its own.
    mta: Arc<tern_smtp::Mta>,
}

impl Pop3 {
    /// Binds `[pop3]`'s listeners; `None` when there are none. TLS is always available:
    /// a catcher without a certificate gets a self-signed one for POP3 alone.
    async fn bind(
        config: &Config,
        hostname: &str,
        tls: &Option<Arc<dyn tern_smtp::TlsProvider>>,
        readers: &tern_store::pool::Pool<Box<dyn tern_store::StoreRead>>,
        mta: Option<&Arc<tern_smtp::Mta>>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Pop3>> {
        let p = &config.pop3;
        if !p.enabled() {
            return Ok(None);
        }
        let plain = tern_smtp::bind(&p.listen).await.context("pop3.listen")?;
        let implicit = tern_smtp::bind(&p.listen_tls).await.context("pop3.listen_tls")?;
        let listeners = plain
            .into_iter()
            .map(|l| (l, false))
            .chain(implicit.into_iter().map(|l| (l, true)))
            .collect();
        let tls = match tls {
            Some(tls) => tls.clone(),
            None => reloading_tls(config, hostname, shutdown)?,
        };
        let mta = match mta {
            Some(mta) => mta.clone(),
            None => Arc::new(config.mta()?),
        };
        Ok(Some(Pop3 { listeners, config: p.clone(), tls, readers: readers.clone(), mta }))
    }

    /// Starts serving (when configured) with the SMTP context's door and accounts; the
    /// accept loops are tracked, so shutdown waits for them as for the sessions.
    fn start(pop3: Option<Pop3>, smtp: &Context, tracker: &TaskTracker) {
        let Some(pop3) = pop3 else { return };
        let logins = match &smtp.directory {
            Some(directory) => tern_pop3::Logins::Accounts(directory.clone()),
            None => tern_pop3::Logins::Catcher {
                login: pop3.config.catcher_login.clone().unwrap_or_default(),
                password: pop3.config.catcher_password.clone().unwrap_or_default(),
            },
        };
        let ctx = Arc::new(tern_pop3::Context::new(
            pop3.config,
            smtp.hostname.clone(),
            logins,
            pop3.readers,
            smtp.door.spool().clone(),
            pop3.tls,
            pop3.mta,
            smtp.mta.is_some(),
            smtp.shutdown.clone(),
        ));
        tracker.spawn(tern_pop3::serve(pop3.listeners, ctx, tracker.clone()));
    }
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
        link_check: config
            .http
            .link_check()
            .map(tern_http::linkcheck::LinkChecker::new)
            .transpose()
            .context("the link check's TLS client")?
            .map(Arc::new),
        activity: Default::default(),
        validator: Some(Arc::new(validator(config, hostname)?)),
    }))
}

/// The address validator: outbound's DNS servers, port and CA file; our domains are never
/// called out to.
pub(crate) fn validator(
    config: &Config,
    hostname: &str,
) -> anyhow::Result<tern_delivery::validate::Validator> {
    let o = &config.outbound;
    let resolver = tern_dns::resolver(&o.dns_servers, Duration::from_secs(o.dns_timeout_secs))
        .context("the validator's DNS resolver")?;
    let tls = tern_delivery::outbound::TlsSetup::new(o.tls_ca_file.as_deref())
        .context("the validator's TLS roots")?;
    Ok(tern_delivery::validate::Validator::new(
        tern_delivery::outbound::MxResolver::from_resolver(resolver),
        Arc::new(tls),
        hostname,
        o.mx_port,
        config.relay.local_domains.clone(),
        config.validate.clone(),
    ))
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
