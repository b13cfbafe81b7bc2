//! What every drill needs: the service as a real process (killed, restarted, stopped), the Stripe
//! simulator in the test's own process (so it survives the service), a database per drill, signed
//! events sent by the test itself, and the checks that compare the service's store with Stripe's truth.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use msr_stripe_sim::{Fault, SimConfig, SimHandle, Simulator, TestCard, WebhookEndpoint};
use serde_json::{Value, json};
use sqlx::AnyPool;

/// The webhook secret shared by the simulator, the service and the test's own signed events.
pub const SECRET: &str = "whsec_fault";

/// Terminal states of an event: it was dealt with and needs nothing more.
pub const DONE_STATES: [&str; 3] = ["applied", "skipped", "ignored"];

// ---------------------------------------------------------------------------------------------
// Skips

/// The PostgreSQL server the drills may create databases on, when there is one.
pub fn postgres_server() -> Option<String> {
    std::env::var("MSR_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Reports a drill that cannot run here; with `MSR_TEST_REQUIRE_ALL=1` a skip is a failure.
pub fn skip(drill: &str, why: &str) {
    if std::env::var("MSR_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{drill} cannot be skipped with MSR_TEST_REQUIRE_ALL=1: {why}");
    }
    // Straight to stderr, past the test harness's capture (it takes `eprintln!` and shows it only
    // for a failed test): a skip must show in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {drill}: {why}");
}

/// The PostgreSQL server, or `None` after reporting the skip.
pub fn postgres_or_skip(drill: &str) -> Option<String> {
    let server = postgres_server();
    if server.is_none() {
        skip(drill, "MSR_TEST_POSTGRES_URL is not set");
    }
    server
}

// ---------------------------------------------------------------------------------------------
// Databases

/// A database made for one drill: an SQLite file in its own folder, or a PostgreSQL database
/// `msr_fault_<random>` dropped (with its connections) when this is dropped.
pub struct FaultDb {
    pub url: String,
    /// The folder of the SQLite file (also where the service runs and logs).
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>,
    /// A file system of the database's own, mounted inside `dir` (unmounted when this is dropped).
    disk: Option<PathBuf>,
}

impl FaultDb {
    pub fn sqlite() -> FaultDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("billing.db").display());
        FaultDb {
            url,
            dir,
            pg: None,
            disk: None,
        }
    }

    /// An SQLite database on a small file system of its own, so a drill can fill it: a tmpfs of
    /// `mib` MiB mounted at `disk/` in the drill's folder. Only the database (with its WAL and
    /// shared-memory files) is on it; the service's log stays beside it, on the real disk. Needs
    /// root with CAP_SYS_ADMIN and util-linux's `mount`; the error says why it cannot be had.
    pub fn sqlite_on_own_disk(mib: u32) -> Result<FaultDb, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let disk = dir.path().join("disk");
        std::fs::create_dir(&disk).expect("the mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
            .arg("msr-fault-disk")
            .arg(&disk)
            .output();
        match mounted {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let first = err.lines().next().unwrap_or_default().trim();
                return Err(format!("mount -t tmpfs failed ({first})"));
            }
            Err(e) => return Err(format!("mount cannot run ({e})")),
        }
        let url = format!("sqlite://{}", disk.join("billing.db").display());
        Ok(FaultDb {
            url,
            dir,
            pg: None,
            disk: Some(disk),
        })
    }

    pub async fn postgres(server: &str) -> FaultDb {
        use sqlx::{Connection, Executor};
        let name = format!("msr_fault_{:012x}", rand::random::<u64>() >> 16);
        let mut admin = sqlx::PgConnection::connect(server)
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let mut url = url::Url::parse(server).expect("postgres URL");
        url.set_path(&name);
        FaultDb {
            url: url.to_string(),
            dir: tempfile::tempdir().expect("temp dir"),
            pg: Some((server.to_owned(), name)),
            disk: None,
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.pg.is_none()
    }

    /// The SQLite file (panics on PostgreSQL).
    pub fn sqlite_file(&self) -> PathBuf {
        assert!(self.is_sqlite());
        self.disk
            .as_deref()
            .unwrap_or(self.dir.path())
            .join("billing.db")
    }

    /// The file system of the database's own ([`FaultDb::sqlite_on_own_disk`]), if it has one.
    pub fn own_disk(&self) -> Option<&Path> {
        self.disk.as_deref()
    }

    /// `(server URL, database name)` on PostgreSQL.
    pub fn postgres_name(&self) -> Option<(&str, &str)> {
        self.pg.as_ref().map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// A small pool of the test's own, for looking at the store (open it after the service made the
    /// database). Two connections: one may wait on a lock while the other still reads.
    pub async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await
            .expect("the test connects to the service's database")
    }
}

impl Drop for FaultDb {
    fn drop(&mut self) {
        if let Some(disk) = self.disk.take() {
            // Lazily: a process still holding a file there lets go when it ends; the mount point
            // is then an empty folder that the temp dir removes.
            let _ = Command::new("umount").arg("--lazy").arg(&disk).status();
        }
        let Some((server, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the drill's runtime: a runtime of its own on another thread does the I/O.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::{Connection, Executor};
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = admin
                        .execute(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true").as_str())
                        .await;
                    let _ = admin
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator

/// The simulator on port 0 with short webhook back-off (200 ms doubling, 8 attempts: about 25 s
/// of retries in all), so a restart or a database outage of a few seconds is retried through.
pub async fn simulator() -> SimHandle {
    let config = SimConfig {
        webhook_backoff: Duration::from_millis(200),
        webhook_max_attempts: 8,
        ..Default::default()
    };
    Simulator::spawn(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("simulator starts")
}

/// Points the simulator's webhooks at these services (each gets every event).
pub fn deliver_to(sim: &Simulator, ports: &[u16]) {
    sim.set_webhook_endpoints(
        ports
            .iter()
            .map(|port| WebhookEndpoint {
                url: format!("http://127.0.0.1:{port}/billing/webhook"),
                secret: SECRET.into(),
            })
            .collect(),
    );
}

/// Waits until the simulator has finished every delivery, retries included.
pub async fn settle(sim: &Simulator, within: Duration) {
    assert!(
        sim.wait_for_deliveries(within).await,
        "the simulator still had deliveries going after {within:?}; last: {:?}",
        sim.deliveries().last()
    );
}

/// Ids of events that some endpoint answered 2xx.
pub fn acknowledged(sim: &Simulator) -> HashSet<String> {
    sim.deliveries()
        .into_iter()
        .filter(|d| d.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|d| d.event_id)
        .collect()
}

/// Ids of every event the simulator emitted.
pub fn emitted(sim: &Simulator) -> Vec<String> {
    sim.events()
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect()
}

/// Ids of the subscriptions Stripe has.
pub fn subscriptions(sim: &Simulator) -> Vec<String> {
    sim.state_summary()["subscriptions"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// How many customers Stripe has with this e-mail address.
pub fn customers_with_email(sim: &Simulator, email: &str) -> usize {
    sim.state_summary()["customers"]
        .as_array()
        .map_or(0, |all| {
            all.iter()
                .filter(|c| c["email"].as_str() == Some(email))
                .count()
        })
}

// ---------------------------------------------------------------------------------------------
// The service as a real process

/// A port that was free a moment ago (bound on port 0 and released), for a service that must come
/// back on the same address after a restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// How to start the service: its variables, port and database. Restarting uses the same one.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub port: u16,
    pub vars: BTreeMap<String, String>,
    /// Where the process runs and writes its log (`service-<port>-<n>.log`).
    pub dir: PathBuf,
}

impl ServiceConfig {
    /// The drills' environment: debug on (for `/dev/*`), Stripe at the simulator, the worker every
    /// second, the Events API catch-up off (so only webhooks and the worker bring events in), JSON logs.
    pub fn new(db: &FaultDb, sim: &SimHandle) -> ServiceConfig {
        let port = free_port();
        let vars = [
            ("MSR_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", db.url.clone()),
            ("STRIPE_API_KEY", "sk_test_x".into()),
            ("STRIPE_API_BASE", sim.base_url.clone()),
            ("STRIPE_WEBHOOK_SECRET", SECRET.into()),
            ("STRIPE_PRICE_WEEKLY", "price_msr_weekly".into()),
            ("STRIPE_PRICE_MONTHLY", "price_msr_monthly".into()),
            ("MSR_DEBUG", "true".into()),
            ("MSR_WORKER_INTERVAL", "1s".into()),
            ("MSR_EVENTS_POLL_INTERVAL", "0".into()),
            ("MSR_LOG_FORMAT", "json".into()),
            ("MSR_DB_MAX_CONNECTIONS", "5".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        ServiceConfig {
            port,
            vars,
            dir: db.dir.path().to_owned(),
        }
    }

    /// The same service on another port (a second instance on the same database).
    pub fn on_another_port(&self) -> ServiceConfig {
        let mut other = self.clone();
        other.port = free_port();
        other.vars.insert(
            "MSR_LISTEN_ADDR".into(),
            format!("127.0.0.1:{}", other.port),
        );
        other
    }

    pub fn with(mut self, var: &str, value: &str) -> ServiceConfig {
        self.vars.insert(var.to_owned(), value.to_owned());
        self
    }
}

/// A running `msr-billing serve`. Dropping it kills the process.
pub struct Service {
    pub port: u16,
    pub base: String,
    pub log_path: PathBuf,
    child: Child,
}

impl Service {
    /// Starts the binary and waits until it serves. The port was free when picked (or was this
    /// service's before a restart), but another process may take it in between: a start that
    /// fails to bind (EADDRINUSE) is tried again on the same port a few times.
    pub async fn start(config: &ServiceConfig) -> Service {
        for _ in 0..10 {
            let mut service = Self::spawn(config);
            match service.wait_ready(Duration::from_secs(20)).await {
                Ok(()) => return service,
                Err(log) if log.contains("cannot listen on") => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(log) => panic!("the service exited during start-up:\n{log}"),
            }
        }
        panic!("port {} stayed taken by another process", config.port);
    }

    fn spawn(config: &ServiceConfig) -> Service {
        let log_path = next_log_path(&config.dir, config.port);
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_msr-billing"));
        // A clean environment: nothing from the developer's shell or a stray .env file counts.
        cmd.env_clear()
            .env("NO_COLOR", "1")
            .current_dir(&config.dir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in &config.vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the service binary starts");
        Service {
            port: config.port,
            base: format!("http://127.0.0.1:{}", config.port),
            log_path,
            child,
        }
    }

    /// Waits until this process logged that it serves and `/readyz` answers 200 (an answer on the
    /// port counts only once this process has bound it: another process may listen there); the
    /// log of a process that exited instead.
    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let client = client();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("({status})\n{}", self.log()));
            }
            if self.log().contains("\"serving\"")
                && let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "the service was not ready within {within:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no chance to finish anything.
    pub async fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.wait_exit(Duration::from_secs(10)).await;
    }

    /// SIGTERM: the graceful shutdown.
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -TERM {}", self.child.id());
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the process to end, up to `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn readyz(&self) -> Option<u16> {
        client()
            .get(self.url("/readyz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub async fn create_user(&self, user: &str) {
        let r = client()
            .post(self.url("/dev/create_user"))
            .query(&[("user_id", user), ("email", &email_of(user))])
            .send()
            .await
            .expect("create_user answers");
        assert!(
            r.status().is_success(),
            "create_user {user}: {}",
            r.status()
        );
    }

    /// `POST /billing/checkout`: (status, body).
    pub async fn checkout(&self, user: &str, plan: &str) -> (u16, Value) {
        let r = client()
            .post(self.url("/billing/checkout"))
            .header("X-User-Id", user)
            .json(&json!({ "plan": plan }))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("checkout answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /dev/status` for a user.
    pub async fn status_of(&self, user: &str) -> Value {
        client()
            .get(self.url("/dev/status"))
            .query(&[("user_id", user)])
            .send()
            .await
            .expect("dev status answers")
            .json()
            .await
            .expect("dev status is JSON")
    }

    /// Posts a body to the webhook signed with the shared secret (as Stripe would).
    pub async fn post_signed(&self, body: &str) -> Result<reqwest::Response, reqwest::Error> {
        client()
            .post(self.url("/billing/webhook"))
            .header("content-type", "application/json")
            .header("Stripe-Signature", signature(body))
            .body(body.to_owned())
            .timeout(Duration::from_secs(30))
            .send()
            .await
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_log_path(dir: &Path, port: u16) -> PathBuf {
    (1..)
        .map(|n| dir.join(format!("service-{port}-{n}.log")))
        .find(|p| !p.exists())
        .expect("a log name")
}

/// A plain client (no redirects followed).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn email_of(user: &str) -> String {
    format!("{user}@example.com")
}

// ---------------------------------------------------------------------------------------------
// Owners

/// Creates the user and starts a Checkout for them; returns the session id.
pub async fn start_checkout(service: &Service, user: &str, plan: &str) -> String {
    service.create_user(user).await;
    let (status, body) = service.checkout(user, plan).await;
    assert_eq!(status, 200, "checkout for {user}: {body}");
    body["session_id"].as_str().expect("session id").to_owned()
}

/// Pays a Checkout Session with a good card; returns the subscription id.
pub async fn pay(sim: &Simulator, session: &str) -> String {
    sim.pay_checkout(session, TestCard::Visa)
        .await
        .expect("checkout paid");
    sim.object(session).expect("session")["subscription"]
        .as_str()
        .expect("subscription id")
        .to_owned()
}

/// Owners `<prefix>0..<prefix>n` who went through Checkout and paid; returns (user, subscription).
pub async fn subscribed_owners(
    service: &Service,
    sim: &Simulator,
    prefix: &str,
    n: usize,
) -> Vec<(String, String)> {
    let mut owners = Vec::new();
    for i in 0..n {
        let user = format!("{prefix}{i}");
        let plan = if i % 2 == 0 { "monthly" } else { "weekly" };
        let session = start_checkout(service, &user, plan).await;
        let sub = pay(sim, &session).await;
        owners.push((user, sub));
    }
    owners
}

/// When an owner's second change happens, relative to the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Stripe's clock moves a second before each round of changes, so no two events of one
    /// subscription share a `created` second.
    SecondsApart,
    /// Both changes in the same second, as a quick owner in the portal makes them.
    SameSecond,
}

/// A mix of changes across owners, so the stream carries every kind of subscription update:
/// cancel at period end, pause collection, both, a cancel taken back, a pause taken back.
pub async fn churn(sim: &Simulator, owners: &[(String, String)], spacing: Spacing) {
    if spacing == Spacing::SecondsApart {
        sim.advance_clock(1).await;
    }
    for (i, (_, sub)) in owners.iter().enumerate() {
        match i % 5 {
            0 | 2 | 3 => sim.cancel_at_period_end(sub, true).await.expect("cancel"),
            _ => sim
                .pause_collection(sub, Some("void"))
                .await
                .expect("pause"),
        }
    }
    if spacing == Spacing::SecondsApart {
        sim.advance_clock(1).await;
    }
    for (i, (_, sub)) in owners.iter().enumerate() {
        match i % 5 {
            2 => sim
                .pause_collection(sub, Some("void"))
                .await
                .expect("pause"),
            3 => sim
                .cancel_at_period_end(sub, false)
                .await
                .expect("un-cancel"),
            4 => sim.pause_collection(sub, None).await.expect("resume"),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signed events of the test's own

/// `t=<now>,v1=<hex>` for a body, as Stripe signs it.
pub fn signature(body: &str) -> String {
    let t = chrono::Utc::now().timestamp();
    format!(
        "t={t},v1={}",
        msr_billing::stripe::signature::sign(SECRET, t, body.as_bytes())
    )
}

/// A new event id no one else uses.
pub fn fresh_event_id(tag: &str) -> String {
    format!("evt_fault_{tag}_{:016x}", rand::random::<u64>())
}

/// An event of a type the service records and ignores: cheap to apply, so it tests ingest alone.
pub fn harmless_event(id: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": "fault_drill.ping",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "data": { "object": { "id": "drill", "object": "drill" } }
    })
    .to_string()
}

/// `invoice.paid` for a subscription: applying it re-fetches the subscription from Stripe.
pub fn invoice_paid_event(id: &str, customer: &str, subscription: &str) -> String {
    json!({
        "id": id,
        "object": "event",
        "type": "invoice.paid",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "data": { "object": {
            "id": format!("in_{id}"),
            "object": "invoice",
            "customer": customer,
            "subscription": subscription,
            "status": "paid"
        } }
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// The store

/// One row of `stripe_events`.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub locked_until: Option<i64>,
}

/// Every recorded event by id.
pub async fn event_rows(pool: &AnyPool) -> HashMap<String, EventRow> {
    type Row = (String, String, String, i64, Option<String>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, type, state, attempts, last_error, locked_until FROM stripe_events",
    )
    .fetch_all(pool)
    .await
    .expect("read stripe_events");
    rows.into_iter()
        .map(|(id, kind, state, attempts, last_error, locked_until)| {
            (
                id,
                EventRow {
                    kind,
                    state,
                    attempts,
                    last_error,
                    locked_until,
                },
            )
        })
        .collect()
}

/// Events still waiting for the worker (pending or failed), with their rows.
pub async fn waiting(pool: &AnyPool) -> Vec<(String, EventRow)> {
    let mut w: Vec<_> = event_rows(pool)
        .await
        .into_iter()
        .filter(|(_, r)| matches!(r.state.as_str(), "pending" | "failed"))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// Makes every waiting event due now, as if its back-off had passed (the drills cannot wait
/// minutes): `next_attempt_at` only — a lease still held is left alone.
pub async fn make_retries_due(pool: &AnyPool) {
    sqlx::query(
        "UPDATE stripe_events SET next_attempt_at = 0 WHERE state IN ('pending', 'failed')",
    )
    .execute(pool)
    .await
    .expect("make retries due");
}

/// Waits until no event is pending or failed, making retries due as it goes; returns what is
/// still waiting at the deadline (empty when the worker caught up).
pub async fn drain(pool: &AnyPool, within: Duration) -> Vec<(String, EventRow)> {
    let deadline = Instant::now() + within;
    loop {
        let w = waiting(pool).await;
        if w.is_empty() || Instant::now() >= deadline {
            return w;
        }
        make_retries_due(pool).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Differences between the store and Stripe's truth, for every subscription Stripe has: the
/// `subscriptions` row and the owner's `entitlements` row (status, cancel at period end, pause).
pub async fn store_vs_truth(pool: &AnyPool, sim: &Simulator) -> Vec<String> {
    let mut wrong = Vec::new();
    for id in subscriptions(sim) {
        let truth = sim.subscription(&id).expect("subscription");
        let status = truth["status"].as_str().unwrap_or_default().to_owned();
        let cancel = truth["cancel_at_period_end"].as_bool().unwrap_or(false);
        let paused = !truth["pause_collection"].is_null();
        let row: Option<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT user_id, stripe_status, cancel_at_period_end, pause_collection FROM subscriptions WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(pool)
        .await
        .expect("read subscriptions");
        let Some((user, s_status, s_cancel, s_pause)) = row else {
            wrong.push(format!(
                "{id}: Stripe has it ({status}), the store does not"
            ));
            continue;
        };
        let seen = (s_status.clone(), s_cancel != 0, s_pause != 0);
        if seen != (status.clone(), cancel, paused) {
            wrong.push(format!(
                "{id} (user {user}): store {seen:?}, Stripe {:?}",
                (&status, cancel, paused)
            ));
        }
        let ent: Option<(Option<String>, String, i64, i64)> = sqlx::query_as(
            "SELECT stripe_subscription_id, stripe_status, cancel_at_period_end, pause_active FROM entitlements WHERE user_id = $1",
        )
        .bind(&user)
        .fetch_optional(pool)
        .await
        .expect("read entitlements");
        match ent {
            Some((Some(sub), e_status, e_cancel, e_pause)) if sub == id => {
                // A canceled subscription's entitlement is "canceled", not "paused" (the policy
                // looks at cancellation first), whatever `pause_collection` it ended with.
                let pause_active = status == "paused" || (paused && status != "canceled");
                let seen = (e_status, e_cancel != 0, e_pause != 0);
                if seen != (status.clone(), cancel, pause_active) {
                    wrong.push(format!(
                        "entitlement of {user}: {seen:?}, Stripe {:?}",
                        (&status, cancel, paused)
                    ));
                }
            }
            other => wrong.push(format!(
                "entitlement of {user}: {other:?}, expected one for {id}"
            )),
        }
    }
    wrong
}

/// Asserts every event has a row in a terminal state, printing what is not.
pub fn assert_all_done(rows: &HashMap<String, EventRow>, ids: &[String], what: &str) {
    let mut missing = Vec::new();
    let mut not_done = Vec::new();
    for id in ids {
        match rows.get(id) {
            None => missing.push(id.clone()),
            Some(r) if !DONE_STATES.contains(&r.state.as_str()) => {
                not_done.push(format!("{id} {} {} ({:?})", r.kind, r.state, r.last_error));
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty() && not_done.is_empty(),
        "{what}: not recorded {missing:?}; recorded but not done {not_done:?}"
    );
}

/// Applications per event id, read from the services' JSON logs ("subscription synced" lines
/// carry the event's span with `stripe.event_id`). An event applied twice shows up with 2.
pub fn synced_per_event(logs: &[String]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for line in logs.iter().flat_map(|l| l.lines()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["message"] != "subscription synced" {
            continue;
        }
        // The single-event path logs inside the event's span; a batch names the event on the line.
        let id = v["stripe.event_id"]
            .as_str()
            .or_else(|| v["span"]["stripe.event_id"].as_str())
            .or_else(|| {
                v["spans"]
                    .as_array()
                    .and_then(|spans| spans.iter().find_map(|s| s["stripe.event_id"].as_str()))
            });
        if let Some(id) = id {
            *count.entry(id.to_owned()).or_default() += 1;
        }
    }
    count
}

/// Switches a simulator fault on (a shorthand that reads well in the drills).
pub async fn fault(sim: &Simulator, f: Fault) {
    sim.set_fault(f).await;
}

/// The story of one subscription in the store, for a failure message: its events in the order
/// they were processed, with what each payload said.
pub async fn story_of(pool: &AnyPool, subscription: &str) -> String {
    type Row = (String, String, i64, String, i64, i64, Option<i64>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, type, created, state, attempts, received_at, processed_at, payload FROM stripe_events \
         WHERE subscription_id = $1 ORDER BY processed_at, received_at",
    )
    .bind(subscription)
    .fetch_all(pool)
    .await
    .expect("read events");
    let watermark: Option<i64> =
        sqlx::query_scalar("SELECT watermark FROM subscriptions WHERE id = $1")
            .bind(subscription)
            .fetch_optional(pool)
            .await
            .expect("read watermark");
    let mut out = format!("{subscription}: watermark {watermark:?}\n");
    for (id, kind, created, state, attempts, received, processed, payload) in rows {
        let object = serde_json::from_str::<Value>(&payload)
            .map(|v| v["data"]["object"].clone())
            .unwrap_or_default();
        out.push_str(&format!(
            "  {id} {kind} created={created} state={state} attempts={attempts} received={received} processed={processed:?} \
             payload: cancel={} pause={}\n",
            object["cancel_at_period_end"],
            !object["pause_collection"].is_null()
        ));
    }
    out
}

/// The causes of the 5xx answers a service logged ("request failed" lines), counted, with the
/// status: what a failure message needs to say why a request was refused.
pub fn failure_causes(log: &str) -> BTreeMap<String, usize> {
    let mut causes = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["message"] == "request failed" {
            let key = format!("{} {}", v["status"], v["cause"].as_str().unwrap_or("?"));
            *causes.entry(key).or_default() += 1;
        }
    }
    causes
}
