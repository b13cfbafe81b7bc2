//! msr-load: the suite's load generator (loopback only, bounded in time).
//!
//! A fixed number of keep-alive HTTP/1.1 connections (default 64) driven by a tokio runtime with a
//! fixed number of threads (default 2); each connection sends its next request as soon as the
//! previous answer is read (closed loop). Latencies are kept per request class, exactly (no
//! histogram buckets), and only requests that complete inside the measured window count. An answer
//! with another status than the scenario expects, or a connection error, is an error.
//!
//! ```text
//! msr-load plain       --url http://127.0.0.1:P                      (the ceiling)
//! msr-load entitlement --url … --users N --key bench-key             (entitled / not_entitled)
//! msr-load status      --url … --users N
//! msr-load webhook     --url … --users N --secret whsec_… --created-base T --run-id R --expected FILE
//! msr-load admin       --url … --path '/admin?status=active' --auth-secret S [--htmx]
//! msr-load coldstart   --bin target/release/msr-billing --addr 127.0.0.1:P --runs 5
//! common: --connections 64 --threads 2 --duration 10 --warmup 1 --label NAME
//! ```
//! One JSON object is printed on stdout per run.
//!
//! The seeded population (bench/sql/seed_*.sql) is users `u0` … `u{N-1}`; user `i` is of class
//! `i % 10`: 0–4 active, 5 trialing, 6 past_due, 7 canceled (these eight have a subscription
//! `sub_b{i}` of customer `cus_b{i}`), 8–9 never subscribed. Classes 0–5 are entitled.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(raw: &[String]) -> Self {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < raw.len() {
            let k = raw[i].trim_start_matches("--").to_owned();
            if i + 1 < raw.len() && !raw[i + 1].starts_with("--") {
                map.insert(k, raw[i + 1].clone());
                i += 2;
            } else {
                map.insert(k, "true".into());
                i += 1;
            }
        }
        Args(map)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn req(&self, k: &str) -> String {
        match self.get(k) {
            Some(v) => v.to_owned(),
            None => die(&format!("missing --{k}")),
        }
    }
    fn num(&self, k: &str, default: u64) -> u64 {
        self.get(k).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| die(&format!("--{k}: not a number: {v}")))
        })
    }
    fn float(&self, k: &str, default: f64) -> f64 {
        self.get(k).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| die(&format!("--{k}: not a number: {v}")))
        })
    }
}

fn die(msg: &str) -> ! {
    eprintln!("msr-load: {msg}");
    std::process::exit(2)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// xorshift64*: a cheap per-connection generator, so users are spread without a shared lock.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// One request to send, with its class (for separate figures) and the status it must get.
struct Job {
    method: hyper::Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    class: usize,
    expect: u16,
    /// Webhook: (subscription index, status, period end, created) that this event sets.
    sets: Option<(u32, u8, i64, i64)>,
}

/// Builds each connection's requests.
trait Scenario: Send + Sync {
    fn classes(&self) -> Vec<&'static str>;
    /// The `k`-th request of connection `conn`; `None`: this connection has nothing to send.
    fn job(&self, conn: usize, k: u64, rng: &mut Rng) -> Option<Job>;
    /// Reads the answer body (webhook: its `state`).
    fn inspect(&self, _body: &[u8]) -> Option<String> {
        None
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| die(&format!("bad header value {s}")))
}

struct Plain;
impl Scenario for Plain {
    fn classes(&self) -> Vec<&'static str> {
        vec!["all"]
    }
    fn job(&self, _c: usize, _k: u64, rng: &mut Rng) -> Option<Job> {
        Some(Job {
            method: hyper::Method::GET,
            path: format!("/billing/entitlement?u={}", rng.below(1000)),
            headers: vec![],
            body: Bytes::new(),
            class: 0,
            expect: 200,
            sets: None,
        })
    }
}

struct Entitlement {
    users: u64,
    auth: HeaderValue,
}
impl Scenario for Entitlement {
    fn classes(&self) -> Vec<&'static str> {
        vec!["entitled", "not_entitled"]
    }
    fn job(&self, _c: usize, _k: u64, rng: &mut Rng) -> Option<Job> {
        let i = rng.below(self.users);
        let entitled = i % 10 <= 5;
        Some(Job {
            method: hyper::Method::GET,
            path: "/billing/entitlement".into(),
            headers: vec![
                (HeaderName::from_static("x-user-id"), hv(&format!("u{i}"))),
                (hyper::header::AUTHORIZATION, self.auth.clone()),
            ],
            body: Bytes::new(),
            class: usize::from(!entitled),
            expect: if entitled { 200 } else { 402 },
            sets: None,
        })
    }
}

struct Status {
    users: u64,
}
impl Scenario for Status {
    fn classes(&self) -> Vec<&'static str> {
        vec!["all"]
    }
    fn job(&self, _c: usize, _k: u64, rng: &mut Rng) -> Option<Job> {
        Some(Job {
            method: hyper::Method::GET,
            path: format!("/dev/status?user_id=u{}", rng.below(self.users)),
            headers: vec![],
            body: Bytes::new(),
            class: 0,
            expect: 200,
            sets: None,
        })
    }
}

const EVENT_STATUSES: [&str; 4] = ["active", "past_due", "trialing", "canceled"];

struct Webhook {
    subs: u64,
    connections: u64,
    secret: Vec<u8>,
    created_base: i64,
    run_id: String,
}
impl Webhook {
    /// The user of the `j`-th subscription (users of classes 0–7 have one).
    fn user_of(j: u64) -> u64 {
        10 * (j / 8) + j % 8
    }
}
impl Scenario for Webhook {
    fn classes(&self) -> Vec<&'static str> {
        vec!["event"]
    }
    fn job(&self, conn: usize, k: u64, _rng: &mut Rng) -> Option<Job> {
        // Connection c owns subscriptions j ≡ c (mod connections) and walks them round after
        // round; round r's events are created at base + r, so each subscription only ever gets
        // newer events, one at a time, from one connection.
        let c = conn as u64;
        if c >= self.subs {
            return None;
        }
        let owned = (self.subs - c).div_ceil(self.connections);
        let j = c + self.connections * (k % owned);
        let round = (k / owned) as i64;
        let created = self.created_base + round;
        let i = Self::user_of(j);
        let status_ix = ((k + c) % 4) as u8;
        let period_end = self.created_base + 30 * 86_400 + k as i64;
        let price = if i % 2 == 0 {
            r#"{"id":"price_msr_monthly","recurring":{"interval":"month"}}"#
        } else {
            r#"{"id":"price_msr_weekly","recurring":{"interval":"week"}}"#
        };
        let body = format!(
            r#"{{"id":"evt_bench_{run}_{c}_{k}","object":"event","api_version":"2025-03-31.basil","type":"customer.subscription.updated","created":{created},"livemode":false,"pending_webhooks":1,"data":{{"object":{{"id":"sub_b{i}","object":"subscription","customer":"cus_b{i}","status":"{status}","created":{sub_created},"cancel_at_period_end":false,"pause_collection":null,"metadata":{{}},"items":{{"object":"list","data":[{{"id":"si_b{i}","current_period_end":{period_end},"price":{price}}}]}}}}}}}}"#,
            run = self.run_id,
            status = EVENT_STATUSES[status_ix as usize],
            sub_created = self.created_base - 90 * 86_400,
        );
        let t = unix_now();
        let mut mac = HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| die("hmac key"));
        mac.update(format!("{t}.").as_bytes());
        mac.update(body.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        Some(Job {
            method: hyper::Method::POST,
            path: "/billing/webhook".into(),
            headers: vec![
                (
                    HeaderName::from_static("stripe-signature"),
                    hv(&format!("t={t},v1={sig}")),
                ),
                (
                    hyper::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ),
            ],
            body: Bytes::from(body),
            class: 0,
            expect: 200,
            sets: Some((j as u32, status_ix, period_end, created)),
        })
    }
    fn inspect(&self, body: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        if v.get("received") != Some(&Value::Bool(true)) {
            return Some("not_received".into());
        }
        v.get("state").and_then(Value::as_str).map(str::to_owned)
    }
}

struct Admin {
    path: String,
    cookie: HeaderValue,
    htmx: bool,
}
impl Scenario for Admin {
    fn classes(&self) -> Vec<&'static str> {
        vec!["page"]
    }
    fn job(&self, _c: usize, _k: u64, _rng: &mut Rng) -> Option<Job> {
        let mut headers = vec![
            (hyper::header::COOKIE, self.cookie.clone()),
            (hyper::header::ACCEPT, HeaderValue::from_static("text/html")),
        ];
        if self.htmx {
            headers.push((
                HeaderName::from_static("hx-request"),
                HeaderValue::from_static("true"),
            ));
        }
        Some(Job {
            method: hyper::Method::GET,
            path: self.path.clone(),
            headers,
            body: Bytes::new(),
            class: 0,
            expect: 200,
            sets: None,
        })
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    lat_us: Vec<Vec<u32>>,
    errors: Vec<u64>,
    unexpected: BTreeMap<String, u64>,
    states: BTreeMap<String, u64>,
    /// Webhook: subscription index -> (status, period end, created) of the last event sent.
    last: HashMap<u32, (u8, i64, i64)>,
    sent: u64,
}

struct Window {
    start: Instant,
    end: Instant,
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn drive(
    conn: usize,
    addr: SocketAddr,
    host: HeaderValue,
    scenario: Arc<dyn Scenario>,
    window: Arc<Window>,
) -> Tally {
    let classes = scenario.classes().len();
    let mut t = Tally {
        lat_us: vec![Vec::with_capacity(1 << 14); classes],
        errors: vec![0; classes],
        ..Tally::default()
    };
    let mut rng = Rng::new(conn as u64 + 1);
    let mut sender = None;
    let mut k = 0u64;
    while Instant::now() < window.end {
        let Some(job) = scenario.job(conn, k, &mut rng) else {
            break;
        };
        k += 1;
        if sender.is_none() {
            sender = connect(addr).await;
            if sender.is_none() {
                t.errors[job.class] += 1;
                *t.unexpected.entry("connect_failed".into()).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let mut builder = Request::builder()
            .method(job.method)
            .uri(&job.path)
            .header(hyper::header::HOST, host.clone());
        for (name, value) in &job.headers {
            builder = builder.header(name, value);
        }
        let Ok(req) = builder.body(Full::new(job.body)) else {
            die("request build");
        };
        if let Some((j, st, end, created)) = job.sets {
            t.last.insert(j, (st, end, created));
        }
        t.sent += 1;
        let started = Instant::now();
        let outcome = async {
            s.ready().await.ok()?;
            let resp = s.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
        .await;
        let done = Instant::now();
        // Every webhook event counts (each is a distinct event that must be applied); other
        // scenarios count what completes inside the window.
        let counted = job.sets.is_some() || (done >= window.start && done <= window.end);
        match outcome {
            Some((status, body)) => {
                if counted {
                    let us = done
                        .duration_since(started)
                        .as_micros()
                        .min(u128::from(u32::MAX));
                    t.lat_us[job.class].push(us as u32);
                    if status != job.expect {
                        t.errors[job.class] += 1;
                        *t.unexpected.entry(status.to_string()).or_default() += 1;
                    }
                }
                if let Some(state) = scenario.inspect(&body) {
                    if state == "not_received" && counted {
                        t.errors[job.class] += 1;
                    }
                    *t.states.entry(state).or_default() += 1;
                }
            }
            None => {
                t.errors[job.class] += 1;
                *t.unexpected.entry("connection_error".into()).or_default() += 1;
                sender = None;
            }
        }
    }
    t
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn base64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// Signs in through the hand-off and returns the `msr_session` cookie.
fn sign_in(addr: SocketAddr, secret: &str, user: &str) -> String {
    let now = unix_now();
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"sub": user, "email": "a@example.com", "iat": now, "exp": now + 60,
        "jti": format!("bench-{now}-{}", std::process::id())});
    let payload = base64url(claims.to_string().as_bytes());
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| die("hmac key"));
    mac.update(format!("{header}.{payload}").as_bytes());
    let token = format!(
        "{header}.{payload}.{}",
        base64url(&mac.finalize().into_bytes())
    );
    let answer = http_get(
        addr,
        &format!("/auth/handoff?token={token}"),
        "Accept: text/html\r\n",
    )
    .unwrap_or_else(|e| die(&format!("hand-off: {e}")));
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    for line in head.lines() {
        let lower = line.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("set-cookie:") {
            if rest.trim_start().starts_with("msr_session=") {
                let value = line[line.len() - rest.len()..].trim();
                return value.split(';').next().unwrap_or_default().to_owned();
            }
        }
    }
    die(&format!(
        "hand-off gave no msr_session cookie: {}",
        head.lines().next().unwrap_or_default()
    ))
}

/// One blocking HTTP/1.0 GET (set-up and readiness polls, not load).
fn http_get(addr: SocketAddr, path: &str, extra: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_nodelay(true)?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn addr_of(url: &str) -> SocketAddr {
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    hostport
        .parse()
        .unwrap_or_else(|_| die(&format!("--url must be http://IP:PORT, got {url}")))
}

fn coldstart(args: &Args) {
    let bin = args.req("bin");
    let addr: SocketAddr = args
        .req("addr")
        .parse()
        .unwrap_or_else(|_| die("--addr IP:PORT"));
    let runs = args.num("runs", 5);
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut child = std::process::Command::new(&bin)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("spawn {bin}: {e}")));
        let mut ready = None;
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(a) = http_get(addr, "/readyz", "") {
                if a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200") {
                    ready = Some(started.elapsed());
                    break;
                }
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        match ready {
            Some(d) => times.push(d.as_secs_f64() * 1000.0),
            None => die("service never became ready"),
        }
        // Let the port and the database settle before the next start.
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{}",
        json!({"scenario": "coldstart", "label": args.get("label").unwrap_or("coldstart"),
            "runs_ms": times, "median_ms": median, "errors": 0})
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = raw.first().cloned() else {
        die(
            "usage: msr-load plain|entitlement|status|webhook|admin|coldstart --url … (see the source)",
        );
    };
    let args = Args::parse(&raw[1..]);
    if mode == "coldstart" {
        coldstart(&args);
        return;
    }
    let url = args.req("url");
    let addr = addr_of(&url);
    let connections = args.num("connections", 64);
    let threads = args.num("threads", 2) as usize;
    let duration = args.float("duration", 10.0);
    let users = args.num("users", 1000);
    let label = args.get("label").unwrap_or(&mode).to_owned();
    let mut warmup = args.float("warmup", 1.0);
    let scenario: Arc<dyn Scenario> = match mode.as_str() {
        "plain" => Arc::new(Plain),
        "entitlement" => Arc::new(Entitlement {
            users,
            auth: hv(&format!("Bearer {}", args.req("key"))),
        }),
        "status" => Arc::new(Status { users }),
        "webhook" => {
            warmup = 0.0;
            Arc::new(Webhook {
                subs: users / 10 * 8,
                connections,
                secret: args.req("secret").into_bytes(),
                created_base: args
                    .req("created-base")
                    .parse()
                    .unwrap_or_else(|_| die("--created-base")),
                run_id: args.req("run-id"),
            })
        }
        "admin" => {
            let cookie = sign_in(
                addr,
                &args.req("auth-secret"),
                args.get("admin").unwrap_or("bench-admin"),
            );
            Arc::new(Admin {
                path: args.req("path"),
                cookie: hv(&cookie),
                htmx: args.get("htmx") == Some("true"),
            })
        }
        other => die(&format!("unknown scenario {other}")),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("runtime: {e}")));
    let began = Instant::now();
    let window = Arc::new(Window {
        start: began + Duration::from_secs_f64(warmup),
        end: began + Duration::from_secs_f64(warmup + duration),
    });
    let host = hv(&addr.to_string());
    let tallies: Vec<Tally> = runtime.block_on(async {
        let handles: Vec<_> = (0..connections as usize)
            .map(|c| {
                tokio::spawn(drive(
                    c,
                    addr,
                    host.clone(),
                    scenario.clone(),
                    window.clone(),
                ))
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            match h.await {
                Ok(t) => out.push(t),
                Err(e) => die(&format!("connection task: {e}")),
            }
        }
        out
    });
    // Webhook: every event counts, so the rate is over the whole run (its tail included).
    let measured = if mode == "webhook" {
        began.elapsed().as_secs_f64()
    } else {
        duration
    };
    let names = scenario.classes();
    let mut classes = Vec::new();
    let mut all: Vec<u32> = Vec::new();
    let mut errors_total = 0;
    let mut unexpected: BTreeMap<String, u64> = BTreeMap::new();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0;
    for (ci, name) in names.iter().enumerate() {
        let mut lat: Vec<u32> = tallies
            .iter()
            .flat_map(|t| t.lat_us[ci].iter().copied())
            .collect();
        let errors: u64 = tallies.iter().map(|t| t.errors[ci]).sum();
        errors_total += errors;
        lat.sort_unstable();
        classes.push(
            json!({"class": name, "requests": lat.len(), "rps": lat.len() as f64 / measured,
            "p50_ms": percentile(&lat, 50.0), "p99_ms": percentile(&lat, 99.0),
            "max_ms": percentile(&lat, 100.0), "errors": errors}),
        );
        all.extend(lat);
    }
    for t in &tallies {
        for (k, v) in &t.unexpected {
            *unexpected.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &t.states {
            *states.entry(k.clone()).or_default() += v;
        }
        sent += t.sent;
    }
    all.sort_unstable();
    if let Some(path) = args.get("expected") {
        // Webhook: the last event per subscription, for the torn-row check.
        let mut out = String::new();
        for t in &tallies {
            for (j, (st, end, created)) in &t.last {
                let i = Webhook::user_of(u64::from(*j));
                out.push_str(&format!(
                    "sub_b{i},{},{end},{created}\n",
                    EVENT_STATUSES[*st as usize]
                ));
            }
        }
        if let Err(e) = std::fs::write(path, out) {
            die(&format!("write {path}: {e}"));
        }
    }
    let result = json!({
        "scenario": mode, "label": label, "connections": connections, "threads": threads,
        "duration_s": measured, "warmup_s": warmup, "users": users,
        "requests": all.len(), "sent": sent, "rps": all.len() as f64 / measured,
        "p50_ms": percentile(&all, 50.0), "p99_ms": percentile(&all, 99.0),
        "max_ms": percentile(&all, 100.0),
        "errors": errors_total, "unexpected": unexpected, "states": states, "classes": classes,
        "elapsed_s": began.elapsed().as_secs_f64(),
    });
    println!("{result}");
}
