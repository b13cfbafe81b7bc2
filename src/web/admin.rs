//! Support's pages: counts and a searchable user list, one user's entitlement, Stripe ids, event
//! timeline and audit log, with the fixes support needs (resync, replay, complimentary access).
//! Every route needs an admin (`AdminUser`); every action is written to the audit log.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{NaiveDate, Utc};
use serde::Deserialize;

use crate::billing::{entitlement, feed, support};
use crate::db;
use crate::db::events::EventState;
use crate::domain::{EntitlementStatus, UserId};
use crate::error::AppError;
use crate::web::AppState;
use crate::web::html::{Chrome, is_htmx, render};
use crate::web::session::{AdminUser, CsrfForm, NoFields};
use crate::web::wire;

/// The admin routes. Every one is behind the admin guard (`AdminUser`, as a route layer): a
/// signed-in owner gets 403, a signed-out browser is sent to sign in, before any handler runs.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/users/{id}", get(user_page))
        .route("/admin/users/{id}/resync", post(resync))
        .route("/admin/users/{id}/sessions/end", post(end_sessions))
        .route("/admin/users/{id}/complimentary", post(grant))
        .route("/admin/users/{id}/complimentary/revoke", post(revoke))
        .route("/admin/events", get(events_page))
        .route("/admin/events/{id}/replay", post(replay))
        .route_layer(axum::middleware::from_extractor_with_state::<AdminUser, _>(
            state.clone(),
        ))
}

/// Rows a page of the user table shows.
const PAGE: i64 = 50;

fn when(t: Option<chrono::DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "—".into())
}

struct RowView {
    id: String,
    email: String,
    status: String,
    plan: String,
    period_end: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "admin/_users.html")]
struct UsersTable {
    rows: Vec<RowView>,
    next_href: Option<String>,
}

/// A fragment is embedded in its page as a value: its own template escapes everything it shows.
impl askama::filters::HtmlSafe for UsersTable {}

struct CountView {
    status: String,
    count: i64,
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct Dashboard {
    chrome: Chrome,
    counts: Vec<CountView>,
    total: i64,
    q: String,
    status: String,
    statuses: Vec<String>,
    table: UsersTable,
    endpoints: Vec<EndpointView>,
}

/// A change feed endpoint on the dashboard.
struct EndpointView {
    url: String,
    behind: i64,
    state: String,
    error: String,
}

/// Where each change feed endpoint stands: how far behind, failing or delivering.
async fn endpoint_views(state: &AppState) -> Result<Vec<EndpointView>, AppError> {
    let (last_seq, _) = db::feed::bounds(&state.db.pool).await?;
    Ok(db::feed::endpoints(&state.db.pool)
        .await?
        .into_iter()
        .map(|e| EndpointView {
            behind: last_seq - e.delivered_seq,
            state: match e.failing_since {
                Some(since) => format!(
                    "failing since {} ({} attempts)",
                    when(Some(since)),
                    e.attempts
                ),
                None => match e.last_success_at {
                    Some(at) => format!("delivering (last {})", when(Some(at))),
                    None => "delivering".into(),
                },
            },
            error: e.last_error.unwrap_or_default(),
            url: e.url,
        })
        .collect())
}

#[derive(Deserialize, Default)]
struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    after: Option<String>,
}

async fn users_table(state: &AppState, p: &SearchParams) -> Result<UsersTable, AppError> {
    let q = p.q.trim();
    let status = match p.status.as_str() {
        "" => None,
        "none" => Some("none"),
        s => Some(
            s.parse::<EntitlementStatus>()
                .map_err(|e| AppError::invalid("invalid_status", e.to_string()))?
                .as_str(),
        ),
    };
    let mut rows =
        db::admin::search_users(&state.db.pool, q, status, p.after.as_deref(), PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let next_href = more
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten()
        .map(|last| {
            let query = serde_urlencoded::to_string([
                ("q", q),
                ("status", p.status.as_str()),
                ("after", last.as_str()),
            ])
            .unwrap_or_default();
            format!("/admin?{query}")
        });
    let rows = rows
        .into_iter()
        .map(|r| RowView {
            id: r.id,
            email: r.email,
            status: r.status,
            plan: r.plan.unwrap_or_else(|| "—".into()),
            period_end: when(r.period_end),
            updated: when(r.updated_at),
        })
        .collect();
    Ok(UsersTable { rows, next_href })
}

/// The dashboard's counts (two scans of the whole user base) are reused while no entitlement or
/// user changed: the entitlement cache's eviction sequence moves on every such change made or
/// heard of here. Changes nobody told us of (the listener down, hand edits) show within
/// [`CountsCache::MAX_AGE`].
#[derive(Debug, Default)]
pub struct CountsCache {
    last: tokio::sync::Mutex<Option<(std::time::Instant, u64, Counts)>>,
}

type Counts = (Vec<(String, i64)>, i64);

impl CountsCache {
    /// The longest counts are reused.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5);

    async fn get(&self, state: &AppState) -> Result<Counts, AppError> {
        // One request counts at a time; the others wait for its answer instead of scanning too.
        let mut last = self.last.lock().await;
        let sequence = state.cache.sequence();
        if let Some((at, seen, counts)) = last.as_ref()
            && *seen == sequence
            && at.elapsed() < Self::MAX_AGE
        {
            return Ok(counts.clone());
        }
        let counts = db::admin::counts(&state.db.pool).await?;
        *last = Some((std::time::Instant::now(), sequence, counts.clone()));
        Ok(counts)
    }
}

/// Counts by status and the user table; htmx gets just the table (search as one types).
async fn dashboard(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    Query(params): Query<SearchParams>,
) -> Result<Response, AppError> {
    let table = users_table(&state, &params).await?;
    if is_htmx(&headers) {
        return Ok(render(&table));
    }
    let (by_status, total) = state.admin_counts.get(&state).await?;
    let subscribed: i64 = by_status.iter().map(|(_, n)| n).sum();
    let mut counts: Vec<CountView> = by_status
        .into_iter()
        .map(|(status, count)| CountView { status, count })
        .collect();
    counts.push(CountView {
        status: "none".into(),
        count: total - subscribed,
    });
    // The change feed's endpoints, when this instance delivers to any (two more reads otherwise
    // spent on every dashboard load).
    let endpoints = if state.settings.feed_endpoints.is_empty() {
        Vec::new()
    } else {
        endpoint_views(&state).await?
    };
    Ok(render(&Dashboard {
        chrome: Chrome::new(&state, Some(&admin)),
        endpoints,
        counts,
        total,
        q: params.q.clone(),
        status: params.status.clone(),
        statuses: ["active", "trialing", "past_due", "canceled", "none"]
            .map(String::from)
            .to_vec(),
        table,
    }))
}

fn path_user(raw: &str) -> Result<UserId, AppError> {
    UserId::parse(raw).map_err(|_| AppError::NotFound(format!("no user {raw:?}")))
}

struct EventView {
    id: String,
    kind: String,
    created: String,
    received: String,
    state: &'static str,
    attempts: i64,
    error: String,
    replayable: bool,
}

struct AuditView {
    id: String,
    at: String,
    actor: String,
    action: String,
    before: String,
    after: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    chrome: Chrome,
    user_id: String,
    email: String,
    status: &'static str,
    entitled: bool,
    reason: &'static str,
    valid_until: Option<String>,
    facts: Vec<(String, String, Option<String>)>,
    complimentary: Option<String>,
    events: Vec<EventView>,
    audit: Vec<AuditView>,
    history: Vec<HistoryView>,
}

/// One change of the owner's entitlement history.
struct HistoryView {
    seq: i64,
    at: String,
    answer: String,
    /// What caused it, and the anchor of its row on this page (an event, an audit entry).
    cause: String,
    anchor: Option<String>,
}

impl HistoryView {
    fn of(c: feed::Change) -> HistoryView {
        let a = &c.answer;
        let answer = format!(
            "{} — {} ({}{})",
            a.status,
            if a.entitled {
                "entitled"
            } else {
                "not entitled"
            },
            a.reason,
            a.valid_until
                .as_deref()
                .map(|t| format!(", until {t}"))
                .unwrap_or_default()
        );
        let (cause, anchor) = match (
            c.cause.kind.as_str(),
            c.cause.event_id.as_deref(),
            c.cause.audit_id.as_deref(),
        ) {
            ("stripe_event", Some(id), _) => (format!("event {id}"), Some(format!("event-{id}"))),
            ("support", _, Some(id)) => ("support action".into(), Some(format!("audit-{id}"))),
            (kind, _, _) => (kind.replace('_', " "), None),
        };
        HistoryView {
            seq: c.seq,
            at: when(Some(c.changed_at)),
            answer,
            cause,
            anchor,
        }
    }
}

fn dashboard_link(state: &AppState, kind: &str, id: &str) -> String {
    let mode = if state.settings.stripe.mode.is_live() {
        ""
    } else {
        "test/"
    };
    format!("https://dashboard.stripe.com/{mode}{kind}/{id}")
}

async fn user_page(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(raw): Path<String>,
) -> Result<Response, AppError> {
    let id = path_user(&raw)?;
    let user = db::users::find(&state.db.pool, &id)
        .await?
        .ok_or_else(|| AppError::UnknownUser(id.to_string()))?;
    let answer = entitlement::check_stored(&state, &id).await?;
    let e = answer.entitlement.as_ref();
    let mut facts: Vec<(String, String, Option<String>)> = Vec::new();
    if let Some(c) = &user.stripe_customer_id {
        facts.push((
            "Stripe customer".into(),
            c.to_string(),
            Some(dashboard_link(&state, "customers", c.as_str())),
        ));
    }
    if let Some(e) = e {
        if let Some(s) = &e.stripe_subscription_id {
            facts.push((
                "Subscription".into(),
                s.to_string(),
                Some(dashboard_link(&state, "subscriptions", s.as_str())),
            ));
        }
        facts.push((
            "Stripe status".into(),
            e.stripe_status.as_str().into(),
            None,
        ));
        facts.push((
            "Plan".into(),
            e.plan.map_or("—".into(), |p| p.to_string()),
            None,
        ));
        facts.push((
            "Period end".into(),
            e.current_period_end.map_or("—".into(), wire::time),
            None,
        ));
        facts.push((
            "Cancels at period end".into(),
            e.cancel_at_period_end.to_string(),
            None,
        ));
        facts.push(("Paused".into(), e.pause_active.to_string(), None));
        facts.push((
            "Payment needs authentication".into(),
            e.action_required.to_string(),
            None,
        ));
        facts.push(("Updated".into(), wire::time(e.updated_at), None));
    }
    facts.push(("Created".into(), wire::time(user.created_at), None));
    let complimentary = user.complimentary_until.map(|until| {
        format!(
            "Granted until {} — {}{}",
            until.format("%Y-%m-%d"),
            user.complimentary_note.clone().unwrap_or_default(),
            if until <= Utc::now() {
                " (expired)"
            } else {
                ""
            }
        )
    });
    let events = db::admin::events_for(
        &state.db.pool,
        id.as_str(),
        user.stripe_customer_id.as_ref().map(|c| c.as_str()),
    )
    .await?
    .into_iter()
    .map(|ev| EventView {
        replayable: matches!(
            ev.state,
            EventState::Failed | EventState::Dead | EventState::Unmatched | EventState::Pending
        ),
        id: ev.id,
        kind: ev.kind,
        created: when(Some(ev.created)),
        received: when(Some(ev.received_at)),
        state: ev.state.as_str(),
        attempts: ev.attempts,
        error: ev.last_error.unwrap_or_default(),
    })
    .collect();
    let audit = db::admin::audit_for(&state.db.pool, id.as_str())
        .await?
        .into_iter()
        .map(|a| AuditView {
            id: a.id,
            at: when(Some(a.at)),
            actor: a.actor,
            action: a.action,
            before: a.before.unwrap_or_default(),
            after: a.after.unwrap_or_default(),
        })
        .collect();
    Ok(render(&UserPage {
        chrome: Chrome::new(&state, Some(&admin)),
        user_id: id.to_string(),
        email: user.email.to_string(),
        status: answer.status(),
        entitled: answer.decision.entitled,
        reason: answer.decision.reason.as_str(),
        valid_until: answer.decision.valid_until.map(wire::time),
        facts,
        complimentary,
        events,
        audit,
        history: feed::history(&state, &id, 100)
            .await?
            .into_iter()
            .map(HistoryView::of)
            .collect(),
    }))
}

fn back_to(user: &UserId) -> Response {
    Redirect::to(&format!("/admin/users/{}", urlencode(user.as_str()))).into_response()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn resync(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let id = path_user(&raw)?;
    support::resync(&state, &form.user.id, &id).await?;
    Ok(back_to(&id))
}

/// Ends every browser session of the user (a lost phone, a shared account): each one is refused
/// at its next request and the user signs in again.
async fn end_sessions(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let id = path_user(&raw)?;
    support::end_sessions(&state, &form.user.id, &id).await?;
    Ok(back_to(&id))
}

#[derive(Deserialize)]
struct GrantForm {
    until: String,
    note: String,
}

async fn grant(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CsrfForm<GrantForm>,
) -> Result<Response, AppError> {
    let id = path_user(&raw)?;
    let until = NaiveDate::parse_from_str(form.form.until.trim(), "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            AppError::invalid("invalid_date", "until must be a date such as 2026-12-31")
        })?;
    if until <= Utc::now() {
        return Err(AppError::invalid(
            "invalid_date",
            "until must be in the future",
        ));
    }
    let note = form.form.note.trim();
    if note.is_empty() || note.len() > 500 {
        return Err(AppError::invalid(
            "invalid_note",
            "a note of 1-500 characters says why",
        ));
    }
    support::grant_complimentary(&state, &form.user.id, &id, until, note).await?;
    Ok(back_to(&id))
}

async fn revoke(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let id = path_user(&raw)?;
    support::revoke_complimentary(&state, &form.user.id, &id).await?;
    Ok(back_to(&id))
}

struct ProblemView {
    id: String,
    kind: String,
    created: String,
    state: &'static str,
    attempts: i64,
    who: String,
    error: String,
}

#[derive(Template)]
#[template(path = "admin/events.html")]
struct EventsPage {
    chrome: Chrome,
    events: Vec<ProblemView>,
}

async fn events_page(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Result<Response, AppError> {
    let problems = [EventState::Failed, EventState::Dead, EventState::Unmatched];
    let events = db::events::list_in_states(&state.db.pool, &problems, 500)
        .await?
        .into_iter()
        .map(|e| ProblemView {
            who: e
                .user_id
                .clone()
                .or(e.customer_id.clone())
                .unwrap_or_else(|| "—".into()),
            id: e.id,
            kind: e.kind,
            created: when(Some(e.created)),
            state: e.state.as_str(),
            attempts: e.attempts,
            error: e.last_error.unwrap_or_default(),
        })
        .collect();
    Ok(render(&EventsPage {
        chrome: Chrome::new(&state, Some(&admin)),
        events,
    }))
}

async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: CsrfForm<NoFields>,
) -> Result<Response, AppError> {
    let replayed = support::replay(&state, &form.user.id, &id).await?;
    Ok(match replayed.user {
        Some(user) => back_to(&user),
        None => Redirect::to("/admin/events").into_response(),
    })
}
