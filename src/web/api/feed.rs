//! The entitlement change feed for other platform services: pull the changes after a seq, or read
//! every owner's answer now a page at a time (the snapshot a consumer starts from, or restarts from
//! after `410 changes_expired`).

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::billing::{entitlement, feed};
use crate::domain::UserId;
use crate::error::AppError;
use crate::web::AppState;
use crate::web::extract::{InternalCaller, Query};
use crate::web::wire;

/// Most changes or owners one page holds.
pub const MAX_PAGE: i64 = 1000;
/// A page's size when the caller does not say.
pub const DEFAULT_PAGE: i64 = 100;

/// The feed's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/billing/entitlements/changes", get(changes))
        .route("/billing/entitlements/stream", get(stream))
        .route("/billing/entitlements", get(snapshot))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ChangesQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// A page size from the query: 1…[`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
fn page_size(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(AppError::invalid(
            "invalid_query",
            format!("limit must be between 1 and {MAX_PAGE}, not {n}"),
        )),
    }
}

/// The changes after `after` (default 0: from the beginning), oldest first.
#[utoipa::path(get, path = "/billing/entitlements/changes", tag = "feed",
    params(
        ("after" = Option<i64>, Query, description = "the seq to read after (default 0)"),
        ("limit" = Option<i64>, Query, description = "1…1000, default 100"),
    ),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "a page of changes", body = crate::web::wire::ChangesBody),
        (status = 401, description = "the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 410, description = "changes_expired: retention removed changes after `after`; read the snapshot", body = crate::web::wire::ErrorBody),
        (status = 422, description = "invalid_query: after or limit out of range", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn changes(
    State(state): State<AppState>,
    _: InternalCaller,
    Query(q): Query<ChangesQuery>,
) -> Result<axum::Json<wire::ChangesBody>, AppError> {
    let limit = page_size(q.limit)?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(AppError::invalid(
            "invalid_query",
            format!("after must be a seq (0 or more), not {after}"),
        ));
    }
    let page = feed::changes(&state, after, limit).await?;
    Ok(axum::Json(wire::ChangesBody {
        changes: page.changes.into_iter().map(wire::change).collect(),
        next: page.next,
        has_more: page.has_more,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    after: Option<String>,
}

/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// Server-Sent Events: `event: entitlement.updated`, `id: <seq>`, `data: <the change>`, from after
/// `Last-Event-ID` (or `?after=`; with neither, from now) with nothing lost or repeated. A
/// subscriber that falls [`feed::STREAM_BUFFER`] changes behind is dropped (it reconnects and
/// reads what it missed from the log).
#[utoipa::path(get, path = "/billing/entitlements/stream", tag = "feed",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "the seq of the last change received"),
        ("after" = Option<i64>, Query, description = "the seq to stream after, when there is no Last-Event-ID"),
    ),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "text/event-stream of `entitlement.updated` events, each a change (data: the change's JSON, id: its seq)", body = crate::web::wire::ChangeBody, content_type = "text/event-stream"),
        (status = 401, description = "the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 410, description = "changes_expired: retention removed changes after the seq", body = crate::web::wire::ErrorBody),
        (status = 422, description = "invalid_query: a seq that is not a number of 0 or more", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    _: InternalCaller,
    headers: axum::http::HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Response, AppError> {
    let from = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .or(q.after);
    let after = match from.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    AppError::invalid(
                        "invalid_query",
                        format!(
                            "the seq to resume after must be a number of 0 or more, not {raw:?}"
                        ),
                    )
                })?,
        ),
    };
    // Subscribed before the backlog is read: nothing committed in between is missed.
    let live = state.feed.subscribe();
    let head = state.feed.head();
    let after = match after {
        Some(after) => {
            // 410 now, not once the stream has started.
            feed::changes(&state, after, 1).await?;
            after
        }
        None => feed::last_seq(&state).await?,
    };
    let events = futures::stream::unfold(
        Follow {
            state: state.billing.clone(),
            live,
            head,
            last: after,
            behind: true,
            backlog: std::collections::VecDeque::new(),
        },
        Follow::next,
    );
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text(""));
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], sse).into_response())
}

/// One subscriber's place in the log: what it has been sent, what it still has to be sent.
struct Follow {
    state: crate::billing::Billing,
    live: tokio::sync::broadcast::Receiver<std::sync::Arc<feed::Change>>,
    head: tokio::sync::watch::Receiver<i64>,
    last: i64,
    /// The log may hold changes after `last` that the broadcast will not bring: read it.
    behind: bool,
    backlog: std::collections::VecDeque<feed::Change>,
}

impl Follow {
    /// The next change after `last`: from the log while behind, then as the tail fans them out.
    /// `None` ends the stream (fallen too far behind, or the log cannot be read).
    async fn next(mut self) -> Option<(Result<Event, std::convert::Infallible>, Follow)> {
        loop {
            if let Some(change) = self.backlog.pop_front() {
                if change.seq <= self.last {
                    continue;
                }
                self.last = change.seq;
                let body = serde_json::to_string(&wire::change(change)).ok()?;
                let event = Event::default()
                    .event("entitlement.updated")
                    .id(self.last.to_string())
                    .data(body);
                return Some((Ok(event), self));
            }
            if self.behind {
                let page = feed::changes(&self.state, self.last, 500).await.ok()?;
                self.behind = page.has_more;
                if !page.changes.is_empty() {
                    self.backlog.extend(page.changes);
                    continue;
                }
            }
            tokio::select! {
                got = self.live.recv() => match got {
                    Ok(change) if change.seq == self.last + 1 => {
                        self.backlog.push_back(feed::Change::clone(&change));
                    }
                    // Already sent (read from the log), or past a gap: the log fills it.
                    Ok(change) => self.behind = change.seq > self.last,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        tracing::info!("a change stream subscriber fell behind; dropped");
                        return None;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                changed = self.head.changed() => {
                    changed.ok()?;
                    self.behind = *self.head.borrow_and_update() > self.last;
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotQuery {
    after_user: Option<String>,
    limit: Option<i64>,
}

/// Every owner's answer now, by user id, with the seq to follow the changes from.
#[utoipa::path(get, path = "/billing/entitlements", tag = "feed",
    params(
        ("after_user" = Option<String>, Query, description = "the last user id of the previous page"),
        ("limit" = Option<i64>, Query, description = "1…1000, default 100"),
    ),
    security(("internal_key" = [])),
    responses(
        (status = 200, description = "a page of answers", body = crate::web::wire::SnapshotBody),
        (status = 401, description = "the internal key is missing or wrong", body = crate::web::wire::ErrorBody),
        (status = 422, description = "invalid_query: limit out of range or a malformed user id", body = crate::web::wire::ErrorBody),
    ))]
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    _: InternalCaller,
    Query(q): Query<SnapshotQuery>,
) -> Result<axum::Json<wire::SnapshotBody>, AppError> {
    let limit = page_size(q.limit)?;
    let after = match q.after_user.as_deref() {
        None | Some("") => String::new(),
        Some(raw) => UserId::parse(raw)
            .map_err(|e| AppError::invalid("invalid_query", format!("after_user: {e}")))?
            .to_string(),
    };
    // The seq first: a change committed while the page is read is then both in the page and
    // after the seq (read twice, never missed).
    let seq = feed::last_seq(&state).await?;
    let (answers, has_more) = entitlement::page(&state, &after, limit).await?;
    let next_after_user = answers
        .last()
        .filter(|_| has_more)
        .map(|a| a.user_id.to_string());
    Ok(axum::Json(wire::SnapshotBody {
        entitlements: answers.iter().map(wire::entitlement_answer).collect(),
        next_after_user,
        has_more,
        seq,
    }))
}
