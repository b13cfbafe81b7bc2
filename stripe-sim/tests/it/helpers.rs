//! Shared set-up: a simulator on port 0, an async-stripe client for it, a webhook
//! receiver that checks `Stripe-Signature`, and a paid subscription to start from.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use msr_stripe_sim::{SimConfig, SimHandle, Simulator, TestCard, WebhookEndpoint};
use serde_json::Value;
use sha2::Sha256;

pub const SECRET: &str = "whsec_test_secret_for_sim";

/// The key the test clients send to `/v1` and `/_sim` (any test key passes without
/// `SimConfig::api_key`).
pub const API_KEY: &str = "sk_test_123";

pub fn config() -> SimConfig {
    SimConfig {
        webhook_backoff: Duration::from_millis(20),
        webhook_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

pub async fn spawn_with(config: SimConfig) -> SimHandle {
    Simulator::spawn(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

pub async fn spawn() -> SimHandle {
    spawn_with(config()).await
}

pub fn client(h: &SimHandle) -> stripe::Client {
    stripe::ClientBuilder::new(API_KEY)
        .url(h.base_url.clone())
        .build()
        .unwrap()
}

/// A plain HTTP client that does not follow redirects (to see the 303s).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET /v1/{path}` with a query string, as a plain client: (status, JSON body).
pub async fn v1_get(h: &SimHandle, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    v1_send(h, reqwest::Method::GET, path, query).await
}

/// `POST /v1/{path}` with a form body, as a plain client: (status, JSON body).
pub async fn v1_post(h: &SimHandle, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    v1_send(h, reqwest::Method::POST, path, form).await
}

/// `DELETE /v1/{path}`, as a plain client: (status, JSON body).
pub async fn v1_delete(h: &SimHandle, path: &str) -> (u16, Value) {
    v1_send(h, reqwest::Method::DELETE, path, &[]).await
}

async fn v1_send(
    h: &SimHandle,
    method: reqwest::Method,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, Value) {
    let req = http()
        .request(method.clone(), format!("{}v1/{path}", h.base_url))
        .bearer_auth(API_KEY);
    let req = if method == reqwest::Method::GET {
        req.query(params)
    } else {
        req.form(params)
    };
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub valid: bool,
    pub event: Value,
}

impl Received {
    pub fn kind(&self) -> String {
        self.event["type"].as_str().unwrap_or_default().to_string()
    }
    pub fn id(&self) -> String {
        self.event["id"].as_str().unwrap_or_default().to_string()
    }
}

/// A tiny webhook endpoint: verifies the HMAC like the service must (tolerance 300 s),
/// answers 400 to bad signatures and 500 while `fail_next` is positive.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub fail_next: Arc<AtomicUsize>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let fail_next = Arc::new(AtomicUsize::new(0));
        let (g, f) = (got.clone(), fail_next.clone());
        let app = axum::Router::new().route(
            "/webhook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (g, f) = (g.clone(), f.clone());
                async move {
                    let sig = headers
                        .get("stripe-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let valid = verify(sig, &body, SECRET, 300);
                    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    g.lock().unwrap().push(Received { valid, event });
                    if !valid {
                        return StatusCode::BAD_REQUEST;
                    }
                    if f.load(Ordering::SeqCst) > 0 {
                        f.fetch_sub(1, Ordering::SeqCst);
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url,
            got,
            fail_next,
        }
    }

    pub fn endpoint(&self) -> WebhookEndpoint {
        WebhookEndpoint {
            url: self.url.clone(),
            secret: SECRET.into(),
        }
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub fn valid_types(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter(|r| r.valid)
            .map(Received::kind)
            .collect()
    }

    pub fn clear(&self) {
        self.got.lock().unwrap().clear();
    }
}

/// Stripe's documented verification: any `v1` matching HMAC-SHA256("t.body"), t recent.
pub fn verify(header: &str, body: &[u8], secret: &str, tolerance: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > tolerance {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    sigs.contains(&expected)
}

/// A customer with a paid weekly subscription, made through the Rust control surface.
pub async fn paid_subscription(h: &SimHandle) -> (String, String) {
    paid_subscription_with(h, None).await
}

pub async fn paid_subscription_with(h: &SimHandle, trial_days: Option<u32>) -> (String, String) {
    use stripe_checkout::checkout_session::*;
    let client = client(h);
    let cus = stripe_core::customer::CreateCustomer::new()
        .email("driver@example.com")
        .send(&client)
        .await
        .unwrap();
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price = Some("price_msr_weekly".into());
    item.quantity = Some(1);
    let mut req = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Subscription)
        .customer(cus.id.as_str())
        .line_items(vec![item])
        .success_url("http://app.test/ok?session={CHECKOUT_SESSION_ID}");
    if let Some(d) = trial_days {
        let mut sd = CreateCheckoutSessionSubscriptionData::new();
        sd.trial_period_days = Some(d);
        req = req.subscription_data(sd);
    }
    let cs = req.send(&client).await.unwrap();
    let out = h
        .sim
        .pay_checkout(cs.id.as_str(), TestCard::Visa)
        .await
        .unwrap();
    let msr_stripe_sim::CheckoutOutcome::Completed { subscription, .. } = out else {
        panic!("not completed: {out:?}")
    };
    (cus.id.to_string(), subscription)
}
