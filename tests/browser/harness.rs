//! What every journey stands on: the real application in this process (demo mode, its own SQLite
//! file, the embedded Stripe simulator), a ChromeDriver of its own, and a phone-sized headless
//! Chromium driven through WebDriver, with helpers that wait for what a person would see.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use msr_billing::domain::UserId;
use msr_billing::web::AppState;
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};

/// How long a person would wait for something to appear before calling it broken.
pub const PATIENCE: Duration = Duration::from_secs(15);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The secret the test app checks hand-off tokens with.
const AUTH_SECRET: &str = "browser-test-secret-0123456789abcdef0";
/// The phone the pages are looked at on: 360 CSS pixels wide, the narrowest common Android size
/// (the README promises pages readable at 360 px).
pub const PHONE: (u32, u32) = (360, 740);

/// Browsers running at once: each is a Chromium plus a ChromeDriver, and the machine has two cores
/// shared with other work; more at once only makes every wait slower.
static BROWSERS: Semaphore = Semaphore::const_new(2);

/// The browser: Debian's `chromium`, or `MSR_TEST_CHROMIUM`.
fn chromium() -> String {
    tool("MSR_TEST_CHROMIUM", "/usr/bin/chromium")
}

/// Its driver: Debian's `chromium-driver`, or `MSR_TEST_CHROMEDRIVER`.
fn chromedriver() -> String {
    tool("MSR_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Reports that the journeys cannot run here; with `MSR_TEST_REQUIRE_ALL=1` that is a failure.
fn skip(why: &str) {
    if std::env::var("MSR_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("the browser journeys cannot be skipped with MSR_TEST_REQUIRE_ALL=1: {why}");
    }
    // Straight to stderr, past the test harness's capture: a skip must show in a plain run.
    let _ = writeln!(std::io::stderr(), "SKIPPED browser journeys: {why}");
}

/// Why the journeys cannot run on this machine, if they cannot.
fn missing_tools() -> Option<String> {
    let missing: Vec<String> = [chromium(), chromedriver()]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(" and ")))
}

/// Where screenshots go: `target/screenshots/` (or under `CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

// ------------------------------------------------------------------------------------ the app

/// The service under test, serving on a port of its own until dropped.
pub struct App {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The handlers' state: the database and the embedded simulator.
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// A PostgreSQL database made for one journey (`MSR_TEST_BACKEND=postgres`), dropped after it.
struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    async fn create() -> (PgDatabase, String) {
        use sqlx::Connection;
        let server = std::env::var("MSR_TEST_POSTGRES_URL")
            .expect("MSR_TEST_BACKEND=postgres needs MSR_TEST_POSTGRES_URL");
        let name = format!("msr_browser_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("connect to PostgreSQL");
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let mut url = url::Url::parse(&server).expect("postgres URL");
        url.set_path(&name);
        (PgDatabase { server, name }, url.to_string())
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a runtime of its own on another thread does the I/O.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::Executor::execute(&mut admin, sql.as_str()).await;
                }
            });
        })
        .join();
    }
}

impl App {
    async fn spawn() -> App {
        let dir = tempfile::tempdir().expect("a temporary folder for the database");
        let (pg, db) = if std::env::var("MSR_TEST_BACKEND").is_ok_and(|v| v == "postgres") {
            let (pg, url) = PgDatabase::create().await;
            (Some(pg), url)
        } else {
            (None, format!("sqlite://{}/t.db", dir.path().display()))
        };
        let env: HashMap<String, String> = [
            ("MSR_LISTEN_ADDR", "127.0.0.1:0"),
            ("DATABASE_URL", db.as_str()),
            ("MSR_DEBUG", "true"),
            ("MSR_AUTH_SECRET", AUTH_SECRET),
            ("MSR_ADMIN_USER_IDS", "support-1"),
            // Webhooks only: nothing but the journey's own actions changes the state.
            ("MSR_EVENTS_POLL_INTERVAL", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings =
            msr_billing::config::Settings::from_source(&env).expect("the test settings are valid");
        let app = msr_billing::startup::Application::build(settings)
            .await
            .expect("the app starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        App {
            base,
            state,
            stop: Some(stop),
            _dir: dir,
            _pg: pg,
        }
    }

    /// The embedded Stripe simulator.
    pub fn sim(&self) -> &msr_stripe_sim::Simulator {
        self.state
            .sim
            .as_ref()
            .expect("demo mode embeds the simulator")
    }

    /// A one-time sign-in link as the platform's Auth service makes them (valid two minutes).
    pub fn handoff_url(&self, user: &str, email: &str, admin: bool) -> String {
        let now = Utc::now().timestamp();
        let mut claims = json!({
            "sub": user, "email": email, "iat": now, "exp": now + 120,
            "jti": format!("{:032x}", rand::random::<u128>()),
        });
        if admin {
            claims["role"] = json!("admin");
        }
        let token = msr_billing::auth::sign(&claims, AUTH_SECRET.as_bytes());
        format!("{}/auth/handoff?token={token}", self.base)
    }

    /// Waits until the simulator has delivered every webhook it owes (the service applies each
    /// before answering), as a person would by taking a few seconds to look at the page.
    pub async fn settle(&self) {
        assert!(
            self.sim().wait_for_deliveries(PATIENCE).await,
            "the simulator still had webhooks to deliver after {PATIENCE:?}"
        );
    }

    /// The subscription the service has on file for `user`.
    async fn subscription_of(&self, user: &str) -> String {
        let id = UserId::parse(user).expect("a valid user id");
        msr_billing::db::entitlements::find(&self.state.db.pool, &id)
            .await
            .expect("the entitlement can be read")
            .and_then(|e| e.stripe_subscription_id)
            .unwrap_or_else(|| panic!("{user} has no subscription on file"))
            .to_string()
    }

    /// When the simulator says `user`'s current period ends.
    pub async fn period_end(&self, user: &str) -> DateTime<Utc> {
        let sub = self.subscription_of(user).await;
        let object = self
            .sim()
            .subscription(&sub)
            .unwrap_or_else(|| panic!("the simulator knows no {sub}"));
        object["items"]["data"][0]["current_period_end"]
            .as_i64()
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .unwrap_or_else(|| panic!("{sub} has no period end: {object}"))
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A date as the owner reads it: "Tue 3 Dec", with the year when it is not this year's.
pub fn owner_date(t: DateTime<Utc>) -> String {
    if t.year() == Utc::now().year() {
        t.format("%a %-d %b").to_string()
    } else {
        t.format("%a %-d %b %Y").to_string()
    }
}

// ------------------------------------------------------------------------------ chromedriver

/// A ChromeDriver this test started; killed (by its process id) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts ChromeDriver on a free port. ChromeDriver cannot be handed a bound socket, so the port
    /// is picked, released and then taken by ChromeDriver: another process may win it in between.
    /// A ChromeDriver that exits at once (address in use) is started again on another port.
    async fn start() -> Driver {
        for _ in 0..5 {
            if let Some(driver) = Self::try_start().await {
                return driver;
            }
        }
        panic!("ChromeDriver did not start on any of five free ports");
    }

    async fn try_start() -> Option<Driver> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for ChromeDriver")
            .port();
        let child = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ChromeDriver starts");
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if driver.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            // ChromeDriver's own answer, not whatever else may listen there.
            let ready = match client.get(format!("{}/status", driver.url)).send().await {
                Ok(r) if r.status().is_success() => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                _ => false,
            };
            if ready {
                return Some(driver);
            }
            assert!(
                Instant::now() < deadline,
                "ChromeDriver did not answer /status on port {port} within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----------------------------------------------------------------------------------- journey

/// One journey: its own app, database, ChromeDriver and browser session.
pub struct Journey {
    /// The service.
    pub app: App,
    /// The browser.
    pub browser: Browser,
    _driver: Driver,
    _profile: tempfile::TempDir,
    _permit: SemaphorePermit<'static>,
}

impl Journey {
    /// Runs `steps` in a fresh browser on a fresh app, then closes the browser whatever happened;
    /// `name` prefixes the screenshots. Skips (or, with `MSR_TEST_REQUIRE_ALL=1`, fails) when
    /// Chromium or ChromeDriver is missing.
    pub async fn run<F>(name: &'static str, steps: F)
    where
        F: AsyncFnOnce(&Journey),
    {
        if let Some(why) = missing_tools() {
            skip(&why);
            return;
        }
        let permit = BROWSERS
            .acquire()
            .await
            .expect("the browser limiter is open");
        let app = App::spawn().await;
        let driver = Driver::start().await;
        let profile = tempfile::tempdir().expect("a temporary browser profile");
        let client = connect(&driver.url, profile.path()).await;
        let journey = Journey {
            browser: Browser {
                client,
                base: app.base.clone(),
                name,
                shots: std::sync::Mutex::new(0),
            },
            app,
            _driver: driver,
            _profile: profile,
            _permit: permit,
        };
        let outcome = AssertUnwindSafe(steps(&journey)).catch_unwind().await;
        if outcome.is_err() {
            journey.browser.shot("FAILED").await;
        }
        let _ = journey.browser.client.clone().close().await;
        drop(journey);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

async fn connect(driver: &str, profile: &Path) -> Client {
    let (w, h) = PHONE;
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", format!("--user-data-dir={}", profile.display()),
                format!("--window-size={w},{h}"),
            ],
            // A window cannot be narrower than 500 px, even headless: the phone is emulated.
            "mobileEmulation": {
                "deviceMetrics": {"width": w, "height": h, "pixelRatio": 1.0, "mobile": true, "touch": true},
            },
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!("a JSON object literal")
    };
    // ChromeDriver speaks plain HTTP on localhost: no TLS stack (the crate's rustls would be a
    // second rustls provider in this binary).
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("ChromeDriver opens a Chromium session")
}

// ----------------------------------------------------------------------------------- browser

/// The browser, with the few gestures the journeys need. Every wait gives up after
/// [`PATIENCE`] with a message saying what was awaited and what the page showed instead.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    base: String,
    name: &'static str,
    shots: std::sync::Mutex<u32>,
}

impl Browser {
    /// Opens a path of the app (or an absolute URL).
    pub async fn open(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// The address bar.
    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// Waits until the address bar shows the page `path` (exactly); returns the whole URL.
    pub async fn wait_for_page(&self, path: &str) -> url::Url {
        self.wait_for_url(&format!("the page {path}"), |u| u.path() == path)
            .await
    }

    /// Waits until the address bar shows a page under `prefix`; returns the whole URL.
    pub async fn wait_for_page_under(&self, prefix: &str) -> url::Url {
        self.wait_for_url(&format!("a page under {prefix}"), |u| {
            u.path().starts_with(prefix)
        })
        .await
    }

    async fn wait_for_url(&self, what: &str, ok: impl Fn(&url::Url) -> bool) -> url::Url {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let url = self.url().await;
            if ok(&url) {
                return url;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.report(&format!("waited {PATIENCE:?} for {what}"))
                        .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for an element.
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "{}",
                self.report(&format!("waited for `{css}` ({e})")).await
            ),
        }
    }

    /// Every element matching `css` now (no waiting).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
    }

    /// The visible text of an element (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .expect("an element's text")
    }

    /// Waits until the element `css` (looked up afresh each time, as htmx replaces it) shows
    /// `needle`; returns its whole text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                // The element may be swapped out between finding and reading it.
                if let Ok(text) = e.text().await
                    && text.contains(needle)
                {
                    return text;
                }
            }
            if Instant::now() > deadline {
                let what = format!("waited {PATIENCE:?} for `{css}` to show {needle:?}");
                panic!("{}", self.report(&what).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Presses the button labelled exactly `label` (the first such, waiting for it).
    pub async fn press(&self, label: &str) {
        self.press_in("", label).await;
    }

    /// Presses the button labelled `label` inside the element `scope` (a CSS selector).
    pub async fn press_in(&self, scope: &str, label: &str) {
        let xpath = format!("//button[normalize-space()={}]", xpath_literal(label));
        let deadline = Instant::now() + PATIENCE;
        let button = loop {
            let found = if scope.is_empty() {
                self.client.find(Locator::XPath(&xpath)).await
            } else {
                match self.client.find(Locator::Css(scope)).await {
                    Ok(s) => s.find(Locator::XPath(&format!(".{xpath}"))).await,
                    Err(e) => Err(e),
                }
            };
            if let Ok(b) = found {
                break b;
            }
            if Instant::now() > deadline {
                let what = format!("waited {PATIENCE:?} for a {label:?} button");
                panic!("{}", self.report(&what).await);
            }
            tokio::time::sleep(POLL).await;
        };
        button
            .click()
            .await
            .unwrap_or_else(|e| panic!("pressing {label:?}: {e}"));
    }

    /// Follows the link whose text is exactly `text`.
    pub async fn follow(&self, text: &str) {
        let link = match self
            .client
            .wait()
            .at_most(PATIENCE)
            .every(POLL)
            .for_element(Locator::LinkText(text))
            .await
        {
            Ok(l) => l,
            Err(e) => panic!(
                "{}",
                self.report(&format!("waited for a link {text:?} ({e})"))
                    .await
            ),
        };
        link.click()
            .await
            .unwrap_or_else(|e| panic!("following {text:?}: {e}"));
    }

    /// Types into a field, as a person does: one key at a time (htmx listens to `input`).
    pub async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
    }

    /// Marks the current document; [`Browser::same_document`] then says whether the page was
    /// reloaded or left since (the mark lives only as long as the document).
    pub async fn mark_document(&self) {
        self.client
            .execute("window.__journeyMark = true;", vec![])
            .await
            .expect("running a script");
    }

    /// Whether the document marked by [`Browser::mark_document`] is still the one shown.
    pub async fn same_document(&self) -> bool {
        self.client
            .execute("return window.__journeyMark === true;", vec![])
            .await
            .expect("running a script")
            .as_bool()
            .unwrap_or(false)
    }

    /// Waits until `script` (a function body) returns `true` in the page.
    pub async fn wait_for_script(&self, what: &str, script: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = self.client.execute(script, vec![]).await;
            if ok.is_ok_and(|v| v.as_bool() == Some(true)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}",
                    self.report(&format!("waited {PATIENCE:?} for {what}"))
                        .await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Width of the layout viewport, in CSS pixels.
    pub async fn viewport_width(&self) -> u64 {
        self.client
            .execute("return window.innerWidth;", vec![])
            .await
            .expect("running a script")
            .as_u64()
            .unwrap_or(0)
    }

    /// How far the page is wider than the viewport (a phone would scroll sideways), in pixels.
    pub async fn horizontal_overflow(&self) -> i64 {
        self.client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("running a script")
            .as_i64()
            .unwrap_or(0)
    }

    /// Saves the whole page as it looks on the phone (its full height, the phone's width) to
    /// `target/screenshots/<journey>-<nn>-<step>.png`. A screenshot that cannot be taken is
    /// reported, not fatal.
    pub async fn shot(&self, step: &str) {
        let n = {
            let mut shots = self.shots.lock().unwrap_or_else(|p| p.into_inner());
            *shots += 1;
            *shots
        };
        let dir = screenshot_dir();
        let path = dir.join(format!("{}-{n:02}-{step}.png", self.name));
        let written = match self.full_page_png().await {
            Ok(png) => std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, png))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            eprintln!("no screenshot {}: {e}", path.display());
        }
        let overflow = self.horizontal_overflow().await;
        if overflow > 0 {
            eprintln!(
                "note: {} is {overflow} px wider than the phone (it scrolls sideways)",
                path.display()
            );
        }
    }

    /// Fails unless the page fits the phone's width (nothing to scroll sideways to).
    pub async fn assert_fits_phone(&self, page: &str) {
        let overflow = self.horizontal_overflow().await;
        assert_eq!(
            overflow, 0,
            "{page} is {overflow} px wider than a {} px phone",
            PHONE.0
        );
    }

    /// The page from top to bottom (WebDriver's own screenshot stops at the viewport), through
    /// the DevTools protocol ChromeDriver passes on.
    async fn full_page_png(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let (w, h) = PHONE;
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .map_or(u64::from(h), |px| px.clamp(u64::from(h), 6000));
        let shot = self
            .client
            .issue_cmd(Cdp(json!({
                "cmd": "Page.captureScreenshot",
                "params": {
                    "format": "png", "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": w, "height": height, "scale": 1},
                },
            })))
            .await
            .map_err(|e| e.to_string())?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| format!("no image in {shot}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }

    /// What was awaited, where the browser is and what it shows: the message a failed wait ends
    /// the journey with.
    async fn report(&self, what: &str) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map_or_else(|e| format!("(no URL: {e})"), |u| u.to_string());
        let text = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let text: String = text.chars().take(1500).collect();
        format!("{what}\n  at {url}\n  the page shows:\n{text}")
    }
}

/// A Chrome DevTools command, sent through ChromeDriver's `POST /session/{id}/goog/cdp/execute`
/// with a body `{"cmd": …, "params": …}`.
#[derive(Debug)]
struct Cdp(serde_json::Value);

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (axum::http::Method, Option<String>) {
        (axum::http::Method::POST, Some(self.0.to_string()))
    }
}

/// A string as an XPath literal (XPath 1.0 has no escapes: split around quotes with `concat`).
fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}
