//! Spawning the real application for a test: a fresh database (an SQLite file, or a PostgreSQL
//! database made for the test and dropped after), the app on port 0, a reqwest client.

use std::collections::HashMap;
use std::sync::Once;

use msr_billing::config::Settings;
use msr_billing::startup::Application;
use msr_billing::web::AppState;
use reqwest::{Method, RequestBuilder, Response};
use tokio::sync::oneshot;

/// Where PostgreSQL is (a server URL whose database may be dropped and created), when it is.
pub fn postgres_url() -> Option<String> {
    std::env::var("MSR_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Reports a suite that cannot run here; with `MSR_TEST_REQUIRE_ALL=1` a skip is a failure.
pub fn skip(what: &str, why: &str) {
    if std::env::var("MSR_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{what} cannot be skipped with MSR_TEST_REQUIRE_ALL=1: {why}");
    }
    // Straight to stderr, past the test harness's capture (it takes `eprintln!` and shows it only
    // for a failed test): a skip must show in a plain `cargo test`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {what}: {why}");
}

/// Whether the main suite runs on PostgreSQL (`MSR_TEST_BACKEND=postgres`) instead of SQLite.
pub fn suite_on_postgres() -> bool {
    std::env::var("MSR_TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

/// A database made for one test; PostgreSQL ones are dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// A fresh database of the suite's backend.
    pub async fn fresh() -> TestDb {
        if suite_on_postgres() {
            let server =
                postgres_url().expect("MSR_TEST_BACKEND=postgres needs MSR_TEST_POSTGRES_URL");
            Self::fresh_postgres(&server).await
        } else {
            Self::fresh_sqlite()
        }
    }

    /// Another handle on a database someone else owns (a second instance on it); never dropped.
    pub fn shared(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            _dir: None,
            pg_drop: None,
        }
    }

    /// A new SQLite file in its own temporary folder.
    pub fn fresh_sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            _dir: Some(dir),
            pg_drop: None,
        }
    }

    /// A new database on the PostgreSQL server at `server_url`.
    pub async fn fresh_postgres(server_url: &str) -> TestDb {
        use sqlx::Connection;
        let name = format!("msr_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .expect("connect to PostgreSQL");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let mut url = url::Url::parse(server_url).expect("postgres URL");
        url.set_path(&name);
        TestDb {
            url: url.to_string(),
            _dir: None,
            pg_drop: Some((server_url.to_owned(), name)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.pg_drop.take() {
            // Drop runs inside the test's runtime; a runtime of its own on another thread does the I/O.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                        let _ = sqlx::Executor::execute(
                            &mut admin,
                            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                        )
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

static LOGS: Once = Once::new();

/// Everything every test app of this run logged (at debug level), for the test that greps it for
/// secrets; echoed to stderr with `TEST_LOG=1`.
pub static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        if std::env::var("TEST_LOG").is_ok() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::new(
        "debug,hyper=info,hyper_util=info,sqlx=info,h2=info,tower_sessions=info",
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
}

/// Logs captured so far, as text.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(
        &CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

/// The environment every test app starts from: debug on, port 0, the given database.
pub fn base_env(db_url: &str) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("MSR_LISTEN_ADDR".into(), "127.0.0.1:0".into());
    env.insert("DATABASE_URL".into(), db_url.into());
    env.insert("MSR_DEBUG".into(), "true".into());
    env.insert("MSR_DB_MAX_CONNECTIONS".into(), "5".into());
    env
}

/// The running application under test.
pub struct TestApp {
    pub address: String,

    pub client: reqwest::Client,
    pub state: AppState,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// The app with the default test environment on a fresh database.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// The app with extra (or overriding) variables on a fresh database.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> TestApp {
        let db = TestDb::fresh().await;
        Self::spawn_on(db, vars).await
    }

    /// The app on a database the test made.
    pub async fn spawn_on(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
        LOGS.call_once(capture_logs);
        let mut env = base_env(&db.url);
        for (k, v) in vars {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let settings = Settings::from_source(&env).expect("test settings");
        let app = Application::build(settings).await.expect("app builds");
        let port = app.port();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            client,
            state,
            db,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops serving and waits until in-flight requests are done; returns the database for a restart.
    pub async fn stop(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran");
        }
        self.state.db.pool.close().await;
        std::mem::replace(
            &mut self.db,
            TestDb {
                url: String::new(),
                _dir: None,
                pg_drop: None,
            },
        )
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{}", self.address, path))
    }

    /// `POST /billing/checkout` as a service would (`X-User-Id`, JSON).
    pub async fn checkout(&self, user: &str, plan: &str) -> Response {
        self.request(Method::POST, "/billing/checkout")
            .header("X-User-Id", user)
            .json(&serde_json::json!({"plan": plan}))
            .send()
            .await
            .expect("request")
    }

    pub async fn create_user(&self, id: &str, email: &str) -> Response {
        self.request(Method::POST, "/dev/create_user")
            .query(&[("user_id", id), ("email", email)])
            .send()
            .await
            .expect("request")
    }

    pub async fn dev_status(&self, id: &str) -> Response {
        self.request(Method::GET, "/dev/status")
            .query(&[("user_id", id)])
            .send()
            .await
            .expect("request")
    }

    pub async fn entitlement(&self, id: &str) -> Response {
        self.request(Method::GET, "/billing/entitlement")
            .header("X-User-Id", id)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("request")
    }
}

/// Reads a JSON body, failing the test with the raw text when it is not JSON.
pub async fn json(response: Response) -> serde_json::Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the status and the error envelope's code, and returns the envelope.
pub async fn assert_error(response: Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let body = json(response).await;
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    body
}

/// Waits (up to 10 s) until the entitlement cache is trusted: at once on SQLite, once the change
/// listener runs on PostgreSQL (it clears the cache when it starts).
pub async fn cache_trusted(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.state.cache.enabled() {
        assert!(
            std::time::Instant::now() < deadline,
            "the entitlement cache was not trusted within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The webhook secret the test apps and simulators share.
pub const WEBHOOK_SECRET: &str = "whsec_test_secret";

/// The app wired to its own Stripe simulator over real HTTP: the simulator on port 0, the app's
/// Stripe base pointing at it, the simulator's webhooks signed and sent to the app.
pub struct StripeApp {
    pub app: TestApp,
    pub stripe: msr_stripe_sim::SimHandle,
}

impl std::ops::Deref for StripeApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl StripeApp {
    pub async fn spawn() -> StripeApp {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(vars: &[(&str, &str)]) -> StripeApp {
        let db = TestDb::fresh().await;
        Self::spawn_on(db, vars).await
    }

    /// The app on a given database, with its own simulator.
    pub async fn spawn_on(db: TestDb, vars: &[(&str, &str)]) -> StripeApp {
        Self::spawn_with_sim(db, Self::sim_config(), vars).await
    }

    /// The simulator's configuration for tests: quick webhook retries.
    pub fn sim_config() -> msr_stripe_sim::SimConfig {
        msr_stripe_sim::SimConfig {
            webhook_backoff: std::time::Duration::from_millis(100),
            webhook_timeout: std::time::Duration::from_secs(10),
            ..Default::default()
        }
    }

    /// The app on a given database, with its own simulator configured as given.
    pub async fn spawn_with_sim(
        db: TestDb,
        config: msr_stripe_sim::SimConfig,
        vars: &[(&str, &str)],
    ) -> StripeApp {
        let stripe = msr_stripe_sim::Simulator::spawn(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator");
        let plans = msr_stripe_sim::PlanSeed::defaults();
        let price = |interval: &str| {
            plans
                .iter()
                .find(|p| p.interval == interval)
                .unwrap()
                .price_id
                .clone()
        };
        let (weekly, monthly) = (price("week"), price("month"));
        let mut env: Vec<(&str, &str)> = vec![
            ("STRIPE_API_KEY", "sk_test_simulator"),
            ("STRIPE_API_BASE", &stripe.base_url),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("STRIPE_PRICE_WEEKLY", &weekly),
            ("STRIPE_PRICE_MONTHLY", &monthly),
            ("MSR_DEBUG", "true"),
            ("MSR_WORKER_INTERVAL", "1s"),
            ("MSR_EVENTS_POLL_INTERVAL", "0"),
        ];
        env.extend_from_slice(vars);
        let app = TestApp::spawn_on(db, &env).await;
        stripe
            .sim
            .set_webhook_endpoints(vec![msr_stripe_sim::WebhookEndpoint {
                url: format!("{}/billing/webhook", app.address),
                secret: WEBHOOK_SECRET.into(),
            }]);
        StripeApp { app, stripe }
    }

    /// Another instance of the service on the same database and simulator (both receive webhooks).
    pub async fn second_instance(&self) -> TestApp {
        let vars: Vec<(&str, &str)> = vec![
            ("STRIPE_API_KEY", "sk_test_simulator"),
            ("STRIPE_API_BASE", &self.stripe.base_url),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("MSR_EVENTS_POLL_INTERVAL", "0"),
        ];
        let other = TestApp::spawn_on(TestDb::shared(&self.db.url), &vars).await;
        let mut endpoints = self.sim().webhook_endpoints();
        endpoints.push(msr_stripe_sim::WebhookEndpoint {
            url: format!("{}/billing/webhook", other.address),
            secret: WEBHOOK_SECRET.into(),
        });
        self.sim().set_webhook_endpoints(endpoints);
        other
    }

    pub fn sim(&self) -> &msr_stripe_sim::Simulator {
        &self.stripe.sim
    }

    /// Waits until the simulator has delivered everything (retries included).
    pub async fn settle(&self) {
        assert!(
            self.sim()
                .wait_for_deliveries(std::time::Duration::from_secs(30))
                .await,
            "deliveries did not finish"
        );
    }

    /// A user who went through Checkout and paid with the given card; returns the subscription id.
    pub async fn subscribed(
        &self,
        user: &str,
        plan: &str,
        card: msr_stripe_sim::TestCard,
    ) -> String {
        self.create_user(user, &format!("{user}@example.com")).await;
        let started = json(self.checkout(user, plan).await).await;
        let session = started["session_id"]
            .as_str()
            .expect("session id")
            .to_owned();
        let outcome = self
            .sim()
            .pay_checkout(&session, card)
            .await
            .expect("checkout paid");
        self.settle().await;
        let paid = match outcome {
            msr_stripe_sim::CheckoutOutcome::Completed { subscription, .. }
            | msr_stripe_sim::CheckoutOutcome::RequiresAction { subscription } => subscription,
        };
        let session = self.sim().object(&session).expect("session");
        assert_eq!(session["subscription"].as_str(), Some(paid.as_str()));
        paid
    }

    /// The entitlement answer: (HTTP status, body).
    pub async fn entitled(&self, user: &str) -> (u16, serde_json::Value) {
        let r = self.entitlement(user).await;
        (r.status().as_u16(), json(r).await)
    }

    /// Posts a body to the webhook signed as Stripe would (or not at all).
    pub async fn post_webhook(&self, body: &str, signature: Option<String>) -> Response {
        let mut request = self
            .request(Method::POST, "/billing/webhook")
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            request = request.header("Stripe-Signature", sig);
        }
        request.send().await.expect("request")
    }

    pub async fn count_events(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM stripe_events")
            .fetch_one(&self.state.db.pool)
            .await
            .unwrap()
    }

    pub async fn event_state(&self, id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT state FROM stripe_events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.state.db.pool)
            .await
            .unwrap()
    }
}

/// `t=…,v1=…` for a body, signed with `secret` at `t`.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    format!(
        "t={t},v1={}",
        msr_billing::stripe::signature::sign(secret, t, body.as_bytes())
    )
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
