//! `GET /metrics` in Prometheus' text format, protected like the internal API, and the request
//! metrics middleware.

use std::sync::OnceLock;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::AppError;
use crate::web::AppState;

/// The process-wide recorder (installed once; every app in the process shares it).
pub fn recorder() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .ok()?
                .install_recorder()
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

/// `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if !crate::web::extract::internal_key_presented(&state, &headers) {
        return Err(AppError::Unauthorized(
            "/metrics needs Authorization: Bearer <internal API key>".into(),
        ));
    }
    // Event backlog by state, read at scrape time so every instance reports the shared truth.
    let by_state = crate::db::events::count_by_state(&state.db.pool).await?;
    for name in [
        "pending",
        "failed",
        "dead",
        "unmatched",
        "applied",
        "skipped",
        "ignored",
        "livemode_mismatch",
    ] {
        let n = by_state
            .iter()
            .find(|(s, _)| s == name)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("msr_stripe_events", "state" => name).set(n as f64);
    }
    metrics::gauge!("msr_db_pool_connections").set(f64::from(state.db.pool.size()));
    // Change feed endpoints: failing (1) or not, and how many changes they are behind.
    let (last_seq, _) = crate::db::feed::bounds(&state.db.pool).await?;
    for endpoint in crate::db::feed::endpoints(&state.db.pool).await? {
        let failing = f64::from(u8::from(endpoint.failing_since.is_some()));
        metrics::gauge!("msr_feed_endpoint_failing", "endpoint" => endpoint.url.clone())
            .set(failing);
        metrics::gauge!("msr_feed_endpoint_lag_changes", "endpoint" => endpoint.url)
            .set((last_seq - endpoint.delivered_seq) as f64);
    }
    metrics::gauge!("msr_entitlement_cache_users").set(state.cache.len() as f64);
    let body = recorder().map(PrometheusHandle::render).unwrap_or_default();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// Counts requests and their latency by route (the route pattern, never the raw path, so ids do
/// not explode the label set).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    record_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        &method,
        response.status(),
        started,
    );
    response
}

/// The metric handles of one route, method and status, looked up once: building the labels and
/// finding them in the registry on every request cost more than the check itself.
#[derive(Clone)]
struct RouteMetrics {
    requests: metrics::Counter,
    latency: metrics::Histogram,
}

type RouteTable = std::sync::RwLock<
    std::collections::HashMap<String, std::collections::HashMap<(Method, u16), RouteMetrics>>,
>;

/// Counts one request and its latency.
pub fn record_request(route: &str, method: &Method, status: StatusCode, started: Instant) {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    let table = TABLE.get_or_init(Default::default);
    let key = (method.clone(), status.as_u16());
    let found = table
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(route)
        .and_then(|by_status| by_status.get(&key))
        .cloned();
    let handles = found.unwrap_or_else(|| {
        let handles = RouteMetrics {
            requests: metrics::counter!("msr_http_requests_total", "route" => route.to_owned(), "method" => method.as_str().to_owned(), "status" => status.as_u16().to_string()),
            latency: metrics::histogram!("msr_http_request_duration_seconds", "route" => route.to_owned(), "method" => method.as_str().to_owned()),
        };
        table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(route.to_owned())
            .or_default()
            .insert(key, handles.clone());
        handles
    });
    handles.requests.increment(1);
    handles.latency.record(started.elapsed().as_secs_f64());
}

pub use crate::telemetry::static_counter;
