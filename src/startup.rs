//! Building and running the application: bind first (so tests can ask for port 0 and learn the
//! port), connect and migrate the database, then serve until SIGTERM or Ctrl-C.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use msr_stripe_sim::{SimConfig, Simulator, WebhookEndpoint};

use crate::billing::{Billing, Parts, Prices};
use crate::config::{ConfigError, Secret, Settings, StripeMode};
use crate::db::Db;
use crate::domain::Policy;
use crate::stripe::StripeApi;
use crate::web::{AppState, SessionStore};

/// Why the service could not start; each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A configuration value is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error("MSR_LISTEN_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        /// The address tried.
        addr: String,
        /// Why not.
        source: std::io::Error,
    },
    /// The migrations failed.
    #[error("DATABASE_URL: migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A built application, bound and migrated, not yet serving.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Binds the listener, opens and migrates the database, and assembles the state.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let listener = TcpListener::bind(&settings.listen_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: settings.listen_addr.clone(),
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.listen_addr.clone(),
                source,
            })?
            .port();
        let state = build_state(settings, port).await?;
        Ok(Application {
            listener,
            port,
            state,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state the handlers share (tests use its database directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        crate::web::router(self.state.clone())
    }

    /// Serves until `stop` completes, letting in-flight requests finish. The background worker runs
    /// beside the server.
    ///
    /// hyper directly (not `axum::serve`) for the limits the open internet needs: a client must send
    /// its request headers within `MSR_HEADER_TIMEOUT` (slow-loris connections do not hold workers)
    /// and at most [`MAX_HEADER_BYTES`] of them.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
        use hyper_util::server::conn::auto::Builder;
        use tower::ServiceExt;

        crate::billing::worker::spawn(self.state.billing.clone());
        crate::billing::feed::spawn(&self.state.billing);
        crate::billing::outbound::spawn(&self.state.billing, |change| {
            serde_json::to_value(crate::web::wire::change(change)).unwrap_or_default()
        });
        crate::billing::pipeline::Pipeline::spawn(&self.state);
        if let Some(sim) = self.state.sim.clone() {
            // Demo mode: the embedded simulator's webhook delivery is one of our loops too.
            self.state
                .tasks
                .spawn("simulator-delivery", move || sim.run_delivery());
        }
        if let Some(metrics) = crate::web::ops::recorder() {
            // Histograms keep raw samples until upkeep folds them into buckets: without it they
            // would grow with every request between scrapes (about 1 MiB a second at 100k
            // requests a second, so every second).
            let metrics = metrics.clone();
            self.state.tasks.spawn("metrics-upkeep", move || {
                let metrics = metrics.clone();
                async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        metrics.run_upkeep();
                    }
                }
            });
        }
        crate::billing::cache::spawn_filler(
            &self.state.tasks,
            self.state.cache.clone(),
            self.state.db.pool.clone(),
        );
        if self.state.db.notifies() {
            crate::billing::cache::spawn_listener(
                &self.state.tasks,
                self.state.cache.clone(),
                self.state.settings.database_url.expose().to_owned(),
            );
        }
        spawn_session_cleanup(&self.state.tasks, &self.state.sessions);
        let router = crate::web::router(self.state.clone());
        tracing::info!(port = self.port, "serving");
        let header_timeout = self.state.settings.header_timeout;
        let idle_limit = self
            .state
            .settings
            .idle_timeout
            .max(std::time::Duration::from_secs(1));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEADER_BYTES);
        // HTTP/2 connections are pinged while open, so a peer that vanished is noticed; one that
        // stays but sends nothing is closed by the idle limit below, like an HTTP/1 keep-alive one.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .keep_alive_interval(Some(H2_PING_EVERY))
            .keep_alive_timeout(H2_PING_TIMEOUT);
        // One permit a connection: at the cap, accepting waits (the kernel's backlog holds the
        // rest), and shutdown waits until every permit is back.
        let max_connections = self.state.settings.max_connections;
        let permits = Arc::new(tokio::sync::Semaphore::new(max_connections));
        let (stopping, _) = tokio::sync::watch::channel(false);
        let mut stop = std::pin::pin!(stop);
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut stop => break,
            };
            let (stream, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(conn) => conn,
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            let activity = Arc::new(Activity::default());
            let router = router.clone();
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let busy = Busy::new(activity.clone());
                    let answer = router.clone().oneshot(request.map(axum::body::Body::new));
                    async move {
                        let response = answer.await;
                        drop(busy);
                        response
                    }
                })
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let mut stopping = stopping.subscribe();
            tokio::spawn(async move {
                let mut connection = std::pin::pin!(connection);
                let mut closing = false;
                // An idle HTTP/2 peer is asked to go away (GOAWAY, then a PING it must answer);
                // one that does not answer is dropped after this.
                let mut drop_at: Option<tokio::time::Instant> = None;
                let mut idle_check = tokio::time::interval(idle_limit / 4);
                loop {
                    tokio::select! {
                        ended = connection.as_mut() => {
                            if let Err(e) = ended {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                            break;
                        }
                        _ = stopping.changed(), if !closing => {
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                        _ = idle_check.tick(), if !closing => {
                            if activity.idle_for() >= idle_limit {
                                tracing::debug!("closing an idle connection");
                                closing = true;
                                drop_at = Some(tokio::time::Instant::now() + IDLE_CLOSE_GRACE);
                                connection.as_mut().graceful_shutdown();
                            }
                        }
                        () = async {
                            match drop_at {
                                Some(at) => tokio::time::sleep_until(at).await,
                                None => std::future::pending().await,
                            }
                        } => {
                            tracing::debug!("an idle connection did not close; dropping it");
                            break;
                        }
                    }
                }
                drop(permit);
            });
        }
        drop(self.listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        let _ = stopping.send(true);
        let limit = self.state.settings.request_timeout + std::time::Duration::from_secs(5);
        let all_back = permits.acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX));
        if tokio::time::timeout(limit, all_back).await.is_err() {
            tracing::warn!("some connections did not finish in time; closing them");
        }
        // No request waits on a background loop any more: stop them, and wait (bounded).
        if !self.state.tasks.shutdown(TASKS_STOP_LIMIT).await {
            tracing::warn!("some background tasks did not stop in time");
        }
        Ok(())
    }
}

/// Connects and migrates the database and builds the Stripe client: everything but the socket. The
/// commands (`sync`, `events`) use this alone; `port` is where this process serves (or would).
pub async fn build_state(mut settings: Settings, port: u16) -> Result<AppState, StartupError> {
    fix_port_zero(&mut settings, port);
    crate::web::ops::recorder();
    let db = Db::connect(settings.database_url.expose(), settings.db_max_connections).await?;
    db.migrate().await?;
    announce(&settings, &db);
    let policy = Policy {
        past_due_grace: crate::config::as_chrono(settings.past_due_grace),
    };
    let (stripe, prices, sim) = stripe_client(&mut settings, port)?;
    let sessions = crate::db::sessions::store(&db, settings.database_url.expose()).await?;
    // On PostgreSQL the cache is trusted only once the change listener runs.
    let cache = Arc::new(crate::billing::cache::EntitlementCache::new(
        settings.cache_capacity,
        settings.cache_ttl,
        !db.notifies(),
    ));
    let billing = Billing::new(Parts {
        db,
        settings: Arc::new(settings),
        policy,
        stripe,
        prices,
        refetch: Arc::default(),
        counters: Arc::default(),
        price_cache: Arc::default(),
        cache,
        pipeline: Arc::default(),
        wake: Arc::default(),
        tasks: crate::tasks::Supervisor::new(),
        feed: Arc::default(),
    });
    Ok(AppState::new(crate::web::state::Shared {
        billing,
        sim,
        admin_counts: Arc::default(),
        limits: Arc::default(),
        sessions,
    }))
}

/// With `MSR_LISTEN_ADDR` on port 0 the default URLs name port 0; once bound, name the real port.
fn fix_port_zero(settings: &mut Settings, port: u16) {
    for url in [
        &mut settings.public_url,
        &mut settings.frontend_return_url,
        &mut settings.frontend_cancel_url,
        &mut settings.billing_portal_return_url,
    ] {
        if url.port() == Some(0) {
            let _ = url.set_port(Some(port));
        }
    }
}

/// Most requests one HTTP/2 connection may have in flight.
const H2_MAX_STREAMS: u32 = 100;
/// How often an open HTTP/2 connection is pinged, and how long the answer may take.
const H2_PING_EVERY: std::time::Duration = std::time::Duration::from_secs(20);
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an idle connection asked to close may take to do so before it is dropped.
const IDLE_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What a connection is doing: requests in flight, and when the last one ended.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Activity {
    /// How long the connection has had nothing in flight (zero while a request runs).
    fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 {
            return std::time::Duration::ZERO;
        }
        self.last
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(std::time::Duration::ZERO)
    }
}

/// A request in flight on a connection; the connection's idle clock restarts when it ends.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = std::time::Instant::now();
        }
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Most bytes of request headers accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

pub use crate::web::SIMULATOR_PATH;

/// The Stripe client the settings ask for, the plans' prices, and in demo mode the simulator (whose
/// webhook secret, made up here, joins the settings).
fn stripe_client(
    settings: &mut Settings,
    port: u16,
) -> Result<(Option<StripeApi>, Prices, Option<Simulator>), StartupError> {
    let mut prices = Prices {
        weekly: settings.stripe.price_weekly.clone(),
        monthly: settings.stripe.price_monthly.clone(),
    };
    let timeout = settings.stripe_timeout;
    if settings.stripe.mode == StripeMode::Simulated {
        let secret = format!("whsec_sim_{:032x}", rand::random::<u128>());
        // The embedded simulator is on this service's own origin: its API and control routes take
        // only this key, made up here and known to nobody but our own client.
        let api_key = Secret::new(format!("sk_test_sim_{:032x}", rand::random::<u128>()));
        let public = settings
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        let sim = Simulator::new(SimConfig {
            webhook_endpoints: vec![WebhookEndpoint {
                url: format!("{public}/billing/webhook"),
                secret: secret.clone(),
            }],
            public_url: Some(format!("{public}{SIMULATOR_PATH}/")),
            api_key: Some(api_key.expose().to_owned()),
            ..SimConfig::default()
        });
        settings.stripe.webhook_secrets.push(Secret::new(secret));
        settings.stripe.simulator_key = Some(api_key.clone());
        let plans = msr_stripe_sim::PlanSeed::defaults();
        let price = |interval: &str| {
            plans
                .iter()
                .find(|p| p.interval == interval)
                .map(|p| p.price_id.clone())
        };
        prices.weekly = prices.weekly.or_else(|| price("week"));
        prices.monthly = prices.monthly.or_else(|| price("month"));
        let base = format!("http://127.0.0.1:{port}{SIMULATOR_PATH}/");
        let api = StripeApi::new(
            api_key.expose(),
            Some(&base),
            settings.stripe_rate_limit,
            timeout,
        )
        .map_err(|e| ConfigError {
            var: "STRIPE_API_BASE".into(),
            message: e.to_string(),
        })?;
        return Ok((Some(api), prices, Some(sim)));
    }
    match &settings.stripe.mode {
        StripeMode::Remote { api_key } => {
            let base = settings.stripe.api_base.as_ref().map(url::Url::as_str);
            let api = StripeApi::new(api_key.expose(), base, settings.stripe_rate_limit, timeout)
                .map_err(|e| ConfigError {
                var: "STRIPE_API_BASE".into(),
                message: e.to_string(),
            })?;
            if prices.weekly.is_none() || prices.monthly.is_none() {
                tracing::warn!(
                    "STRIPE_PRICE_WEEKLY or STRIPE_PRICE_MONTHLY is unset: checkout for that plan answers 500"
                );
            }
            Ok((Some(api), prices, None))
        }
        StripeMode::Simulated | StripeMode::Disabled => Ok((None, prices, None)),
    }
}

/// How long shutdown waits for the background loops to stop.
const TASKS_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Deletes expired browser sessions every hour (the store's loop ends on an error: it is restarted).
fn spawn_session_cleanup(tasks: &crate::tasks::Supervisor, sessions: &SessionStore) {
    use tower_sessions::ExpiredDeletion;
    let every = tokio::time::Duration::from_secs(3600);
    let sessions = sessions.clone();
    tasks.spawn("session-cleanup", move || {
        let sessions = sessions.clone();
        async move {
            let ended = match sessions {
                SessionStore::Sqlite(s) => s.continuously_delete_expired(every).await,
                SessionStore::Postgres(s) => s.continuously_delete_expired(every).await,
            };
            if let Err(e) = ended {
                tracing::warn!(error = %e, "expired sessions could not be deleted");
            }
        }
    });
}

fn announce(settings: &Settings, db: &Db) {
    tracing::info!(database = ?db.backend, listen = %settings.listen_addr, "msr-billing starting");
    if settings.debug_default_refused {
        tracing::warn!(
            "debug mode is off: there is no STRIPE_API_KEY, but MSR_LISTEN_ADDR is not a loopback address (set MSR_DEBUG=true to serve the demo and /dev here)"
        );
    }
    if settings.debug {
        tracing::warn!("MSR_DEBUG is on: /dev routes are served; never run this way in production");
        if settings.internal_api_key.is_none() {
            tracing::warn!(
                "MSR_INTERNAL_API_KEY is unset: X-User-Id is accepted without a bearer key (debug only)"
            );
        }
    }
    match &settings.stripe.mode {
        StripeMode::Simulated => tracing::warn!(
            "no STRIPE_API_KEY: payments are SIMULATED by the built-in Stripe simulator"
        ),
        StripeMode::Remote { .. } if settings.debug => {
            tracing::warn!("debug mode with a Stripe test key")
        }
        StripeMode::Remote { .. } => {}
        StripeMode::Disabled => {
            tracing::warn!("no STRIPE_API_KEY and debug off: billing routes answer 503")
        }
    }
}

/// Resolves at the first SIGTERM or Ctrl-C (SIGINT). On Unix the handlers are installed when this
/// is called, not when the future is first polled: a signal that came between the port being logged
/// and the accept loop's first turn would otherwise take the default action and kill the process
/// instead of stopping it gracefully (a supervisor, or a test, may send it that early). Call it
/// first thing in `main` and pass it on.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            received(signal(SignalKind::terminate()), "SIGTERM"),
            received(signal(SignalKind::interrupt()), "SIGINT"),
        )
    };
    #[cfg(not(unix))]
    let (terminate, interrupt) = (std::future::pending::<()>(), async {
        let _ = tokio::signal::ctrl_c().await;
    });
    async move {
        tokio::select! {
            () = terminate => {},
            () = interrupt => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

/// Waits for a signal already listened for; if it could not be (no signal driver), never.
#[cfg(unix)]
async fn received(listening: std::io::Result<tokio::signal::unix::Signal>, name: &'static str) {
    match listening {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(e) => {
            tracing::error!(error = %e, signal = name, "cannot listen for the signal");
            std::future::pending::<()>().await
        }
    }
}
