//! The change log delivered to `MSR_FEED_ENDPOINTS` as Standard Webhooks (standardwebhooks.com):
//! one message per change, `webhook-id` = `msr_chg_<seq>` (the same on every retry),
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed
//! with the secret's bytes, body `{"type":"entitlement.updated","timestamp":…,"data":<the change>}`.
//!
//! Each endpoint has one cursor in the database (the log is the outbox): changes go out in seq
//! order, so each owner's arrive in order; a 2xx moves the cursor on, anything else (an error
//! status, a redirect, a timeout) backs off exponentially (at most an hour between attempts, for
//! as long as it takes) and holds the endpoint's later changes. One instance at a time holds an
//! endpoint's lease, so several instances deliver each change once. A failing endpoint slows
//! nothing else: each has its own loop, and the webhook and the check never wait for any.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::billing::Billing;
use crate::billing::feed::{self, Change};
use crate::db;
use crate::error::AppError;

/// How long an attempt may take before it has failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one instance holds an endpoint between two acknowledged deliveries.
const LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// Changes read from the log at a time.
const BATCH: i64 = 100;

/// What goes out for one change: its message id, timestamp, body and signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp` (unix seconds).
    pub timestamp: i64,
    /// The JSON body.
    pub body: String,
    /// `webhook-signature`.
    pub signature: String,
}

/// Signs `body` as Standard Webhooks does: `v1,` + base64 of HMAC-SHA256 over
/// `"{id}.{timestamp}.{body}"`, keyed with the bytes of the secret's base64 (after `whsec_`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, AppError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or_else(|| AppError::Internal("MSR_FEED_SECRET is not whsec_ + base64".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| AppError::Internal(format!("feed secret: {e}")))?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The message of change `seq`, signed now; `data` is the change as the pull shows it.
pub fn message(
    secret: &str,
    seq: i64,
    changed_at: chrono::DateTime<Utc>,
    data: serde_json::Value,
) -> Result<Message, AppError> {
    let id = format!("msr_chg_{seq}");
    let timestamp = Utc::now().timestamp();
    let body = serde_json::json!({
        "type": "entitlement.updated",
        "timestamp": crate::domain::time::rfc3339(changed_at),
        "data": data,
    })
    .to_string();
    let signature = sign(secret, &id, timestamp, &body)?;
    Ok(Message {
        id,
        timestamp,
        body,
        signature,
    })
}

/// How a change is shown in a delivery (the web layer's wire shape, handed in so the billing layer
/// does not reach up for it).
pub type Render = fn(Change) -> serde_json::Value;

/// Starts one delivery loop per configured endpoint, each under the supervisor.
pub fn spawn(state: &Billing, render: Render) {
    let Some(secret) = state.settings.feed_secret.clone() else {
        return;
    };
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the change feed's deliveries");
            return;
        }
    };
    for url in state.settings.feed_endpoints.clone() {
        let (state, client, secret) = (state.clone(), client.clone(), secret.clone());
        let tasks = state.tasks.clone();
        tasks.spawn("feed-delivery", move || {
            let (state, client, secret, url) =
                (state.clone(), client.clone(), secret.clone(), url.clone());
            async move {
                let mut wake = state.feed.subscribe();
                // Registered once, delivering the changes from now on (a known endpoint keeps
                // its cursor).
                loop {
                    match register(&state, url.as_str()).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(endpoint = %url, error = %e, "cannot register a change feed endpoint; will try again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                loop {
                    let pause = match deliver_due(&state, &client, secret.expose(), url.as_str(), render).await {
                        Ok(true) => continue,
                        Ok(false) => Duration::from_millis(500),
                        Err(e) => {
                            tracing::warn!(endpoint = %url, error = %e, "change feed delivery pass failed; will try again");
                            Duration::from_secs(1)
                        }
                    };
                    // A new change (or the pause) wakes the loop; a lag only means news.
                    let _ = tokio::time::timeout(pause, wake.recv()).await;
                }
            }
        });
    }
}

async fn register(state: &Billing, url: &str) -> Result<(), AppError> {
    let from = feed::last_seq(state).await?;
    Ok(db::feed::add_endpoint(&state.db.pool, url, from).await?)
}

/// Delivers what is due to one endpoint, if this instance gets its lease. True when it delivered a
/// full batch (more may wait).
async fn deliver_due(
    state: &Billing,
    client: &reqwest::Client,
    secret: &str,
    url: &str,
    render: Render,
) -> Result<bool, AppError> {
    let pool = &state.db.pool;
    let now = Utc::now();
    let Some(delivered) = db::feed::lease_endpoint(pool, url, now, now + LEASE).await? else {
        return Ok(false);
    };
    let page = feed::changes(state, delivered, BATCH).await;
    let page = match page {
        Ok(page) => page,
        Err(e @ AppError::ChangesExpired(_)) => {
            // Retention ran past this endpoint's cursor (down longer than MSR_FEED_RETENTION):
            // what was removed cannot be sent; carry on from what is kept.
            tracing::error!(endpoint = url, error = %e, "change feed endpoint lost changes to retention");
            let (_, pruned) = db::feed::bounds(pool).await?;
            db::feed::delivered(pool, url, pruned, now, now + LEASE).await?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    let full = page.changes.len() as i64 == BATCH;
    for change in page.changes {
        let seq = change.seq;
        let (seq_of, at) = (change.seq, change.changed_at);
        let message = message(secret, seq_of, at, render(change))?;
        match attempt(client, url, &message).await {
            Ok(()) => {
                let now = Utc::now();
                db::feed::delivered(pool, url, seq, now, now + LEASE).await?;
                metrics::counter!("msr_feed_deliveries_total", "outcome" => "delivered")
                    .increment(1);
            }
            Err(why) => {
                tracing::warn!(endpoint = url, seq, error = %why, "change feed delivery failed; will retry");
                metrics::counter!("msr_feed_deliveries_total", "outcome" => "failed").increment(1);
                db::feed::delivery_failed(pool, url, &why, Utc::now()).await?;
                return Ok(false);
            }
        }
    }
    db::feed::release_endpoint(pool, url).await?;
    Ok(full)
}

/// One POST; `Err` says why it did not count as delivered.
async fn attempt(client: &reqwest::Client, url: &str, m: &Message) -> Result<(), String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &m.id)
        .header("webhook-timestamp", m.timestamp.to_string())
        .header("webhook-signature", &m.signature)
        .body(m.body.clone())
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
            } else {
                format!("unreachable: {e}")
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
