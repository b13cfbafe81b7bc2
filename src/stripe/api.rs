//! The adapter to Stripe's API: async-stripe for the calls that create things, raw JSON reads for
//! what we sync from (so a newer API version cannot break parsing), one rate limiter, a timeout on
//! every call, and a bounded back-off on 429.

use std::collections::HashMap;
use std::time::Duration;

use ::stripe::{RequestStrategy, StripeError, StripeRequest};
use serde_json::Value;
use stripe_client_core::{RequestBuilder, StripeMethod};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::{Email, UserId};

/// A failed Stripe call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StripeCallError {
    /// No answer (connection refused, timeout): the outcome is unknown, so the same
    /// Idempotency-Key must be used again.
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    /// Stripe answered with an error; its saved answer would be replayed for the same key.
    #[error("Stripe answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stripe's error code, when given.
        code: Option<String>,
        /// Stripe's message.
        message: String,
    },
    /// The answer could not be read.
    #[error("Stripe's answer could not be read: {0}")]
    Parse(String),
}

impl StripeCallError {
    /// Whether Stripe gave a final answer (the Idempotency-Key's attempt must move on before a retry).
    pub fn is_definitive(&self) -> bool {
        // 409 (the same key still in flight, or a lock) and 429 (rate limit) say "try again":
        // the first request may still succeed, so its key must be kept.
        matches!(self, StripeCallError::Api { status, .. } if !matches!(status, 409 | 429))
    }
}

impl From<StripeError> for StripeCallError {
    fn from(e: StripeError) -> Self {
        match e {
            StripeError::Stripe(err, status) => StripeCallError::Api {
                status,
                code: err.code.as_ref().map(|c| c.as_str().to_owned()),
                message: err.message.clone().unwrap_or_else(|| "no message".into()),
            },
            StripeError::JSONDeserialize(m) => StripeCallError::Parse(m),
            StripeError::ClientError(m) | StripeError::ConfigError(m) => {
                StripeCallError::Unreachable(m)
            }
            StripeError::Timeout => StripeCallError::Unreachable("timed out".into()),
        }
    }
}

/// A token bucket: at most `rate` calls a second, bursts up to `rate`.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        RateLimiter {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut guard = self.state.lock().await;
                let (tokens, last) = *guard;
                let now = Instant::now();
                let tokens =
                    (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
                if tokens >= 1.0 {
                    *guard = (tokens - 1.0, now);
                    return;
                }
                *guard = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A plain GET whose answer we read as JSON ourselves.
struct RawGet {
    path: String,
    query: Option<String>,
}

impl StripeRequest for RawGet {
    type Output = miniserde::json::Value;
    fn build(&self) -> RequestBuilder {
        let mut builder = RequestBuilder::new(StripeMethod::Get, self.path.clone());
        builder.query = self.query.clone();
        builder
    }
}

/// What a new Checkout Session is made of.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    /// The owner's customer.
    pub customer: &'a str,
    /// The plan's price.
    pub price: &'a str,
    /// Our user id (client_reference_id and metadata).
    pub user_id: &'a UserId,
    /// Success URL with `{CHECKOUT_SESSION_ID}`.
    pub success_url: &'a str,
    /// Cancel URL.
    pub cancel_url: &'a str,
    /// Trial days, if any.
    pub trial_days: Option<u32>,
}

/// A Checkout Session as created.
#[derive(Debug, Clone)]
pub struct CreatedCheckout {
    /// `cs_…`.
    pub id: String,
    /// The hosted page.
    pub url: String,
    /// When Stripe expires it.
    pub expires_at: i64,
}

/// The Stripe API as the service uses it.
#[derive(Clone)]
pub struct StripeApi {
    client: ::stripe::Client,
    limiter: std::sync::Arc<RateLimiter>,
    timeout: Duration,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How many times a 429 is retried before giving up.
const RATE_LIMIT_RETRIES: u32 = 4;

impl StripeApi {
    /// A client for `key` at `base` (Stripe's own when `None`; a base with a path ends in `/`).
    pub fn new(
        key: &str,
        base: Option<&str>,
        rate_per_second: u32,
        timeout: Duration,
    ) -> Result<Self, StripeCallError> {
        let mut builder = ::stripe::ClientBuilder::new(key)
            .request_strategy(RequestStrategy::Once)
            .timeout(timeout);
        if let Some(base) = base {
            let base = if base.ends_with('/') {
                base.to_owned()
            } else {
                format!("{base}/")
            };
            builder = builder.url(base);
        }
        let client = builder.build().map_err(StripeCallError::from)?;
        Ok(StripeApi {
            client,
            limiter: std::sync::Arc::new(RateLimiter::new(rate_per_second)),
            timeout,
        })
    }

    /// Runs one call under the rate limiter, retrying 429 with exponential back-off.
    async fn call<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, StripeCallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StripeError>>,
    {
        let mut backoff = Duration::from_millis(250);
        for attempt in 0..=RATE_LIMIT_RETRIES {
            self.limiter.acquire().await;
            let started = Instant::now();
            // The client's own timeout covers one HTTP attempt; this one also covers reading the body.
            let result = tokio::time::timeout(self.timeout + Duration::from_secs(1), f())
                .await
                .unwrap_or(Err(StripeError::Timeout))
                .map_err(StripeCallError::from);
            let elapsed = started.elapsed();
            let elapsed_ms = elapsed.as_millis() as u64;
            metrics::histogram!("msr_stripe_api_duration_seconds", "call" => what)
                .record(elapsed.as_secs_f64());
            if let Err(e) = &result {
                let kind = match e {
                    StripeCallError::Unreachable(_) => "unreachable".to_owned(),
                    StripeCallError::Api { status, .. } => status.to_string(),
                    StripeCallError::Parse(_) => "unreadable".to_owned(),
                };
                metrics::counter!("msr_stripe_api_errors_total", "call" => what, "kind" => kind)
                    .increment(1);
            }
            match result {
                // 429: over the rate limit. 409: the same Idempotency-Key is in flight (a concurrent
                // call); its saved answer is ours once it finishes.
                Err(StripeCallError::Api {
                    status: status @ (409 | 429),
                    ..
                }) if attempt < RATE_LIMIT_RETRIES => {
                    tracing::warn!(
                        call = what,
                        elapsed_ms,
                        status,
                        "Stripe asked us to retry; backing off"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => {
                    tracing::warn!(call = what, elapsed_ms, error = %e, "Stripe call failed");
                    return Err(e);
                }
                Ok(v) => {
                    tracing::debug!(call = what, elapsed_ms, "Stripe call");
                    return Ok(v);
                }
            }
        }
        Err(StripeCallError::Unreachable("rate limited".into()))
    }

    async fn get_json(
        &self,
        what: &'static str,
        path: String,
        query: Option<String>,
    ) -> Result<Value, StripeCallError> {
        let request = RawGet { path, query };
        let raw = self
            .call(what, || request.customize().send(&self.client))
            .await?;
        serde_json::from_str(&miniserde::json::to_string(&raw))
            .map_err(|e| StripeCallError::Parse(e.to_string()))
    }

    fn idempotent(key: &str) -> Result<RequestStrategy, StripeCallError> {
        ::stripe::IdempotencyKey::new(key)
            .map(RequestStrategy::Idempotent)
            .map_err(|e| StripeCallError::Parse(format!("idempotency key: {e}")))
    }

    /// Creates the customer for a user.
    pub async fn create_customer(
        &self,
        user: &UserId,
        email: &Email,
        idempotency_key: &str,
    ) -> Result<String, StripeCallError> {
        let metadata = HashMap::from([("user_id".to_owned(), user.to_string())]);
        let request = stripe_core::customer::CreateCustomer::new()
            .email(email.as_str())
            .metadata(metadata);
        let strategy = Self::idempotent(idempotency_key)?;
        let customer = self
            .call("customers.create", || {
                request
                    .customize()
                    .request_strategy(strategy.clone())
                    .send(&self.client)
            })
            .await?;
        Ok(customer.id.to_string())
    }

    /// Creates a subscription-mode Checkout Session.
    pub async fn create_checkout_session(
        &self,
        req: &CheckoutRequest<'_>,
        idempotency_key: &str,
    ) -> Result<CreatedCheckout, StripeCallError> {
        use stripe_checkout::checkout_session::{
            CreateCheckoutSession, CreateCheckoutSessionLineItems,
            CreateCheckoutSessionSubscriptionData,
        };
        let metadata = HashMap::from([("user_id".to_owned(), req.user_id.to_string())]);
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(req.price.to_owned());
        item.quantity = Some(1);
        let mut subscription_data = CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(metadata.clone());
        subscription_data.trial_period_days = req.trial_days;
        let request = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(req.customer)
            .client_reference_id(req.user_id.as_str())
            .metadata(metadata)
            .line_items(vec![item])
            .subscription_data(subscription_data)
            .success_url(req.success_url)
            .cancel_url(req.cancel_url);
        let strategy = Self::idempotent(idempotency_key)?;
        let session = self
            .call("checkout.sessions.create", || {
                request
                    .customize()
                    .request_strategy(strategy.clone())
                    .send(&self.client)
            })
            .await?;
        let url = session
            .url
            .clone()
            .ok_or_else(|| StripeCallError::Parse("checkout session without url".into()))?;
        Ok(CreatedCheckout {
            id: session.id.to_string(),
            url,
            expires_at: session.expires_at,
        })
    }

    /// A Checkout Session with its subscription expanded.
    pub async fn retrieve_checkout_session(&self, id: &str) -> Result<Value, StripeCallError> {
        self.get_json(
            "checkout.sessions.retrieve",
            format!("/checkout/sessions/{id}"),
            Some("expand[]=subscription".into()),
        )
        .await
    }

    /// A customer portal session's URL.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, StripeCallError> {
        let request = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        let session = self
            .call("billing_portal.sessions.create", || {
                request.send(&self.client)
            })
            .await?;
        Ok(session.url)
    }

    /// A subscription as Stripe has it now.
    pub async fn retrieve_subscription(&self, id: &str) -> Result<Value, StripeCallError> {
        self.get_json(
            "subscriptions.retrieve",
            format!("/subscriptions/{id}"),
            None,
        )
        .await
    }

    /// One page of subscriptions (all statuses), optionally of one customer.
    pub async fn list_subscriptions(
        &self,
        customer: Option<&str>,
        starting_after: Option<&str>,
    ) -> Result<(Vec<Value>, bool), StripeCallError> {
        let mut query = vec!["status=all".to_owned(), "limit=100".to_owned()];
        query.extend(customer.map(|c| format!("customer={c}")));
        query.extend(starting_after.map(|s| format!("starting_after={s}")));
        let page = self
            .get_json(
                "subscriptions.list",
                "/subscriptions".into(),
                Some(query.join("&")),
            )
            .await?;
        Ok(list_page(page))
    }

    /// One page of events created at or after `created_gte`, newest first.
    pub async fn list_events(
        &self,
        created_gte: i64,
        starting_after: Option<&str>,
    ) -> Result<(Vec<Value>, bool), StripeCallError> {
        let mut query = vec![
            format!("created[gte]={created_gte}"),
            "limit=100".to_owned(),
        ];
        query.extend(starting_after.map(|s| format!("starting_after={s}")));
        let page = self
            .get_json("events.list", "/events".into(), Some(query.join("&")))
            .await?;
        Ok(list_page(page))
    }
}

fn list_page(mut page: Value) -> (Vec<Value>, bool) {
    let has_more = page
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let data = match page.get_mut("data").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    (data, has_more)
}

impl StripeApi {
    /// A price as Stripe has it (amount, currency, interval).
    pub async fn retrieve_price(&self, id: &str) -> Result<Value, StripeCallError> {
        self.get_json("prices.retrieve", format!("/prices/{id}"), None)
            .await
    }
}
