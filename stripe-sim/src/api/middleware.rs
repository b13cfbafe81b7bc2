//! Cross-cutting behaviour of Stripe's API: request ids, API keys, the test-mode rate
//! limit, idempotency keys and injected faults. Request ids and API keys also guard the
//! control API (`/_sim`).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::delivery::lock;
use crate::engine::new_id;
use crate::error::StripeError;
use crate::{Idem, Simulator};

/// The `req_...` id of the current request.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// How long an idempotency key is remembered (simulated seconds, like Stripe's 24 h).
const IDEMPOTENCY_TTL: i64 = 24 * 3600;

pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = new_id("req_");
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if !resp.headers().contains_key("request-id")
        && let Ok(v) = HeaderValue::from_str(&id)
    {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// `Authorization: Bearer sk_test_...` (or HTTP basic with the key as user, which
/// Stripe also accepts). Live keys are refused: this is a test-mode simulator. With
/// [`crate::SimConfig::api_key`] set, only that key passes; otherwise any test key does.
/// Guards `/v1` and `/_sim`.
pub(crate) async fn auth(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key = if let Some(k) = header.strip_prefix("Bearer ") {
        k.trim().to_string()
    } else if let Some(b) = header.strip_prefix("Basic ") {
        basic_user(b.trim()).unwrap_or_default()
    } else {
        String::new()
    };
    if key.is_empty() {
        return StripeError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
        .into_response();
    }
    if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
        return StripeError::unauthorized(
            "This is the Stripe simulator: live-mode keys are refused. Use an sk_test_ key.",
        )
        .into_response();
    }
    let accepted = match &sim.inner.api_key {
        Some(expected) => same_key(&key, expected),
        None => key.starts_with("sk_test_") || key.starts_with("rk_test_"),
    };
    if !accepted {
        return StripeError::unauthorized(&format!("Invalid API Key provided: {}", redact(&key)))
            .into_response();
    }
    next.run(req).await
}

/// Equality that takes the same time wherever the keys differ (and whatever their lengths):
/// both are hashed, and the digests compared without an early exit.
fn same_key(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn basic_user(b64: &str) -> Option<String> {
    // Tiny base64 decoder: avoids a dependency for a rarely used auth form.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.bytes().filter(|c| *c != b'=') {
        let v = u32::try_from(ALPHABET.iter().position(|a| *a == c)?).ok()?;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    let s = String::from_utf8(out).ok()?;
    Some(s.split(':').next().unwrap_or_default().to_string())
}

fn redact(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}*********{tail}", key.chars().take(8).collect::<String>())
}

/// Stripe's test-mode limit while the rate-limit fault is on: a sliding one-second window.
pub(crate) async fn rate_limit(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    if lock(&sim.inner.faults).rate_limit {
        let now = Instant::now();
        let mut window = lock(&sim.inner.rate_window);
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= sim.inner.rate_limit_per_second as usize {
            drop(window);
            let mut resp = StripeError::rate_limited().into_response();
            // Stripe names which limit was hit.
            resp.headers_mut().insert(
                "stripe-rate-limited-reason",
                HeaderValue::from_static("global-rate"),
            );
            return resp;
        }
        window.push_back(now);
    }
    next.run(req).await
}

/// `Idempotency-Key` on POST: the first response under a key is saved and replayed byte
/// for byte (with `Idempotent-Replayed: true`) for 24 hours; other parameters under the
/// same key are a 400 `idempotency_error`, a concurrent request a 409. As on Stripe,
/// 400 validation errors are not saved, so a corrected request may reuse the key.
pub(crate) async fn idempotency(
    State(sim): State<Simulator>,
    req: Request,
    next: Next,
) -> Response {
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (Some(key), true) = (key, req.method() == Method::POST) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return StripeError::invalid_param("body", "Request body too large.").into_response();
    };
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(parts.method.as_str().as_bytes());
        h.update(b" ");
        h.update(parts.uri.path().as_bytes());
        h.update(b"\n");
        h.update(&bytes);
        hex::encode(h.finalize())
    };
    let now = sim.now();
    {
        let mut map = lock(&sim.inner.idempotency);
        map.retain(|_, v| !matches!(v, Idem::Done { at, .. } if now - *at > IDEMPOTENCY_TTL));
        match map.get(&key) {
            Some(Idem::InFlight) => return StripeError::idempotency_in_flight().into_response(),
            Some(Idem::Done { fingerprint: f, .. }) if *f != fingerprint => {
                return StripeError::idempotency_mismatch(&key).into_response();
            }
            Some(Idem::Done {
                status,
                body,
                request_id,
                ..
            }) => {
                return replay(*status, body.clone(), request_id);
            }
            None => {
                map.insert(key.clone(), Idem::InFlight);
            }
        }
    }
    // Stripe finishes a request whose client went away and saves its answer for the retry: run
    // the rest in a task of its own, so a dropped connection cannot leave the key "in flight".
    let task_sim = sim.clone();
    let task_key = key.clone();
    let finished = tokio::spawn(async move {
        let sim = task_sim;
        let key = task_key;
        let resp = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        let (resp_parts, resp_body) = resp.into_parts();
        let body = axum::body::to_bytes(resp_body, 16 << 20)
            .await
            .unwrap_or_default();
        let status = resp_parts.status.as_u16();
        let request_id = resp_parts
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        {
            let mut map = lock(&sim.inner.idempotency);
            if status == 400 {
                map.remove(&key);
            } else {
                map.insert(
                    key,
                    Idem::Done {
                        fingerprint,
                        status,
                        body: body.clone(),
                        request_id,
                        at: sim.now(),
                    },
                );
            }
        }
        Response::from_parts(resp_parts, Body::from(body))
    });
    match finished.await {
        Ok(response) => response,
        Err(_) => {
            lock(&sim.inner.idempotency).remove(&key);
            StripeError::api_error().into_response()
        }
    }
}

fn replay(status: u16, body: axum::body::Bytes, request_id: &str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("original-request", v);
    }
    resp
}

/// Injected API faults: a hang (then the normal answer) or a 500 `api_error`.
pub(crate) async fn faults(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let (hang, error) = {
        let mut f = lock(&sim.inner.faults);
        (f.take_api_hang(&path), f.take_api_error(&path))
    };
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    if error {
        return StripeError::api_error().into_response();
    }
    next.run(req).await
}
