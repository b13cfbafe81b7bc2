//! The entitlement change log: every time an owner's entitlement answer (what the check would say)
//! changes, one row, written inside the transaction that changes it, with its cause. Pull reads it
//! after a seq; `at=` reads the answer in force at a past instant.
//!
//! [`record`] is the one function that writes it. The one write path calls it for every owner it
//! writes ([`crate::billing::write`]), support's actions for the owner they change, and the expiry
//! loop for owners whose answer time alone changes (a period end with `cancel_at_period_end`, the
//! end of a grace period or of complimentary access): it looks every `MSR_WORKER_INTERVAL` (at
//! most [`EXPIRY_EVERY`]), and stamps such a change with the instant it happened.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::billing::Billing;
use crate::billing::entitlement::EntitlementAnswer;
use crate::db;
use crate::db::feed::{ChangeRow, Current};
use crate::domain::UserId;
use crate::error::AppError;

/// The longest the expiry loop waits between two looks for answers that time has changed.
pub const EXPIRY_EVERY: Duration = Duration::from_secs(20);

/// What caused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause<'a> {
    /// A Stripe event (`evt_…`) applied.
    StripeEvent(&'a str),
    /// A support action, by its audit row's id.
    Support(&'a str),
    /// Stripe's state read by the `sync` command or the return page.
    Sync,
    /// Time passed: the answer's `valid_until` (the instant it changed).
    Expiry(DateTime<Utc>),
}

/// A cause on the wire: `{"type":"stripe_event","event_id":…}`, `{"type":"support","audit_id":…}`,
/// `{"type":"sync"}` or `{"type":"expiry"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CauseBody {
    /// `stripe_event`, `support`, `sync` or `expiry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The Stripe event, for `stripe_event`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_id: Option<String>,
    /// The audit row, for `support`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audit_id: Option<String>,
}

impl Cause<'_> {
    fn body(&self) -> CauseBody {
        let (kind, event_id, audit_id) = match *self {
            Cause::StripeEvent(id) => ("stripe_event", Some(id.to_owned()), None),
            Cause::Support(id) => ("support", None, Some(id.to_owned())),
            Cause::Sync => ("sync", None, None),
            Cause::Expiry(_) => ("expiry", None, None),
        };
        CauseBody {
            kind: kind.into(),
            event_id,
            audit_id,
        }
    }
}

/// The entitlement answer as the check gives it, without `as_of` (a change's `as_of` is its time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whose.
    pub user_id: String,
    /// May the user use paid features.
    pub entitled: bool,
    /// `trialing`, `active`, `past_due`, `canceled`, or `none`.
    pub status: String,
    /// `weekly` or `monthly`.
    pub plan: Option<String>,
    /// The rule that decided.
    pub reason: String,
    /// Until when it holds if nothing changes (RFC 3339).
    pub valid_until: Option<String>,
    /// Access paused.
    pub pause_active: bool,
}

impl Answer {
    /// The answer's fields, as every body that carries an answer shows them.
    pub fn of(a: &EntitlementAnswer) -> Answer {
        Answer {
            user_id: a.user_id.to_string(),
            entitled: a.decision.entitled,
            status: a.status().to_owned(),
            plan: a
                .entitlement
                .as_ref()
                .and_then(|e| e.plan)
                .map(|p| p.to_string()),
            reason: a.decision.reason.as_str().to_owned(),
            valid_until: a.decision.valid_until.map(crate::domain::time::rfc3339),
            pause_active: a.entitlement.as_ref().is_some_and(|e| e.pause_active),
        }
    }
}

/// One change of the log, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the log.
    pub seq: i64,
    /// Whose.
    pub user_id: String,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Why.
    pub cause: CauseBody,
    /// The answer as it became.
    pub answer: Answer,
}

impl TryFrom<ChangeRow> for Change {
    type Error = AppError;

    fn try_from(row: ChangeRow) -> Result<Change, AppError> {
        let unreadable = |e: serde_json::Error| {
            AppError::Internal(format!("change {} unreadable: {e}", row.seq))
        };
        Ok(Change {
            seq: row.seq,
            cause: serde_json::from_str(&row.cause).map_err(unreadable)?,
            answer: serde_json::from_str(&row.answer).map_err(unreadable)?,
            user_id: row.user_id,
            changed_at: row.changed_at,
        })
    }
}

/// Logs, inside `tx`, the answer of each listed owner as `tx` now has it, where it differs from the
/// one logged last; each owner's cause is the one given with them. Returns how many changes were
/// logged.
pub async fn record(
    state: &Billing,
    tx: &mut AnyConnection,
    owners: &[(&str, Cause<'_>)],
    now: DateTime<Utc>,
) -> Result<usize, AppError> {
    let backend = state.db.backend;
    let causes: BTreeMap<&str, Cause<'_>> = owners.iter().copied().collect();
    let users: Vec<&str> = causes.keys().copied().collect();
    if users.is_empty() {
        return Ok(0);
    }
    let stored = db::entitlements::for_check_many(&mut *tx, backend, &users).await?;
    let current = db::feed::current_many(tx, backend, &users).await?;
    let mut changed: Vec<(String, Cause<'_>, String, Option<DateTime<Utc>>)> = Vec::new();
    let mut rescheduled: Vec<(String, Current)> = Vec::new();
    // An owner no longer stored keeps their last answer, and nothing more is due for them.
    for user in &users {
        if let Some(c) = current.get(*user)
            && c.recheck_at.is_some()
            && !stored.iter().any(|(u, _, _)| u == user)
        {
            let gone = Current {
                recheck_at: None,
                ..c.clone()
            };
            rescheduled.push(((*user).to_owned(), gone));
        }
    }
    for (user, complimentary, entitlement) in stored {
        let decision = state
            .policy
            .decide_with_grant(entitlement.as_ref(), complimentary, now);
        let recheck_at = decision.valid_until.filter(|t| *t > now);
        let user_id = UserId::parse(&user)
            .map_err(|e| AppError::Internal(format!("stored user id unreadable: {e}")))?;
        let answer = Answer::of(&EntitlementAnswer {
            user_id,
            entitlement,
            decision,
            as_of: now,
        });
        let answer = serde_json::to_string(&answer)
            .map_err(|e| AppError::Internal(format!("answer not serializable: {e}")))?;
        let cause = causes[user.as_str()];
        match current.get(&user) {
            Some(c) if c.answer == answer => {
                if c.recheck_at != recheck_at {
                    rescheduled.push((
                        user,
                        Current {
                            recheck_at,
                            ..c.clone()
                        },
                    ));
                }
            }
            _ => changed.push((user, cause, answer, recheck_at)),
        }
    }
    if !changed.is_empty() {
        let last = db::feed::allocate(tx, changed.len()).await?;
        let first = last - changed.len() as i64 + 1;
        let mut rows = Vec::with_capacity(changed.len());
        for (seq, (user, cause, answer, recheck_at)) in (first..).zip(changed.iter()) {
            let changed_at = match cause {
                Cause::Expiry(at) => (*at).min(now),
                _ => now,
            };
            let cause = serde_json::to_string(&cause.body())
                .map_err(|e| AppError::Internal(format!("cause not serializable: {e}")))?;
            rows.push(ChangeRow {
                seq,
                user_id: user.clone(),
                changed_at,
                cause,
                answer: answer.clone(),
            });
            rescheduled.push((
                user.clone(),
                Current {
                    seq,
                    answer: answer.clone(),
                    recheck_at: *recheck_at,
                },
            ));
        }
        db::feed::insert_changes(tx, backend, &rows).await?;
        metrics::counter!("msr_entitlement_changes_total").increment(rows.len() as u64);
    }
    let rescheduled: Vec<(&str, &Current)> =
        rescheduled.iter().map(|(u, c)| (u.as_str(), c)).collect();
    db::feed::put_current(tx, backend, &rescheduled).await?;
    Ok(changed.len())
}

/// A page of the log.
#[derive(Debug, Clone)]
pub struct Page {
    /// Changes after the asked seq, oldest first.
    pub changes: Vec<Change>,
    /// The seq to ask after next.
    pub next: i64,
    /// More changes wait after `next`.
    pub has_more: bool,
}

/// Changes after `after`, at most `limit`. `ChangesExpired` when retention removed some of them.
pub async fn changes(state: &Billing, after: i64, limit: i64) -> Result<Page, AppError> {
    let (last, pruned_through) = db::feed::bounds(&state.db.pool).await?;
    if after < pruned_through {
        return Err(AppError::ChangesExpired(format!(
            "changes up to seq {pruned_through} are no longer kept; read the snapshot \
             (GET /billing/entitlements) and continue from its seq"
        )));
    }
    let rows = db::feed::after(&state.db.pool, after, limit).await?;
    let changes: Vec<Change> = rows
        .into_iter()
        .map(Change::try_from)
        .collect::<Result<_, _>>()?;
    let next = changes.last().map_or(after.max(0).min(last), |c| c.seq);
    Ok(Page {
        has_more: next < last,
        changes,
        next,
    })
}

/// The last seq handed out: where a consumer that just read a snapshot continues from.
pub async fn last_seq(state: &Billing) -> Result<i64, AppError> {
    Ok(db::feed::bounds(&state.db.pool).await?.0)
}

/// The answer in force for `user` at `at`, from the log; `HistoryUnavailable` before the log
/// begins for them (or before what retention kept).
pub async fn answer_at(
    state: &Billing,
    user: &UserId,
    at: DateTime<Utc>,
) -> Result<Change, AppError> {
    let (in_force, first) = db::feed::at(&state.db.pool, user.as_str(), at).await?;
    match in_force {
        Some(row) => Change::try_from(row),
        None => Err(AppError::invalid(
            "history_unavailable",
            match first {
                Some(first) => format!(
                    "the entitlement history of {user} begins at {}",
                    crate::domain::time::rfc3339(first.changed_at)
                ),
                None => format!("no entitlement history is kept for {user} yet"),
            },
        )),
    }
}

/// A user's changes, newest first.
pub async fn history(state: &Billing, user: &UserId, limit: i64) -> Result<Vec<Change>, AppError> {
    db::feed::for_user(&state.db.pool, user.as_str(), limit)
        .await?
        .into_iter()
        .map(Change::try_from)
        .collect()
}

/// Since when `user` has been entitled without a break, by the change log (`None`: not entitled,
/// or entitled since before what the log keeps of the last 100 changes).
pub async fn entitled_since(
    state: &Billing,
    user: &UserId,
) -> Result<Option<DateTime<Utc>>, AppError> {
    let history = history(state, user, 100).await?;
    let mut since = None;
    for change in &history {
        if !change.answer.entitled {
            break;
        }
        since = Some(change.changed_at);
    }
    Ok(since)
}

/// Logs the changes time has made by now; returns how many owners were looked at.
pub async fn expire_due(state: &Billing) -> Result<usize, AppError> {
    let now = Utc::now();
    let due = db::feed::due(&state.db.pool, now, 500).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let owners: Vec<(&str, Cause<'_>)> = due
        .iter()
        .map(|(user, at)| (user.as_str(), Cause::Expiry(*at)))
        .collect();
    let mut tx = state.db.begin_write().await?;
    record(state, &mut tx, &owners, now).await?;
    tx.commit().await?;
    state.feed.wake();
    Ok(due.len())
}

/// Removes changes older than the retention; returns how many.
pub async fn prune(state: &Billing) -> Result<u64, AppError> {
    let before = Utc::now() - crate::config::as_chrono(state.settings.feed_retention);
    let mut tx = state.db.begin_write().await?;
    let removed = db::feed::prune(&mut tx, before).await?;
    tx.commit().await?;
    Ok(removed)
}

/// Changes a stream subscriber may fall behind by before it is dropped (it reconnects with
/// `Last-Event-ID` and reads what it missed from the log).
pub const STREAM_BUFFER: usize = 1024;

/// The log's tail: one task reads new changes (woken by this instance's commits, and every
/// [`TAIL_EVERY`] for other instances') and fans them out to every stream subscriber.
#[derive(Debug)]
pub struct Tail {
    sender: tokio::sync::broadcast::Sender<Arc<Change>>,
    /// The newest seq the tail has seen in the log: a subscriber behind it reads the log (the tail
    /// may start after changes were made, or skip ahead; the broadcast alone would leave a gap).
    head: tokio::sync::watch::Sender<i64>,
    wake: tokio::sync::Notify,
    /// The newest seq fanned out (-1: not started), kept across restarts of the task.
    last: std::sync::atomic::AtomicI64,
}

/// How often the tail looks for changes other instances committed.
pub const TAIL_EVERY: Duration = Duration::from_millis(200);

impl Default for Tail {
    fn default() -> Self {
        Tail {
            sender: tokio::sync::broadcast::channel(STREAM_BUFFER).0,
            head: tokio::sync::watch::channel(-1).0,
            wake: tokio::sync::Notify::new(),
            last: std::sync::atomic::AtomicI64::new(-1),
        }
    }
}

impl Tail {
    /// A change may have been committed here: read the tail now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// New changes from now on, in seq order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Change>> {
        self.sender.subscribe()
    }

    /// The newest seq the tail has seen, as it moves.
    pub fn head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.head.subscribe()
    }

    async fn follow(&self, state: &Billing) -> Result<(), AppError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.last.load(SeqCst) < 0 {
            // Not at the very start (see the expiry loop): a stream that opens meanwhile reads
            // its backlog from the log itself.
            tokio::time::sleep(TAIL_EVERY).await;
            let last = last_seq(state).await?;
            self.last.store(last, SeqCst);
            self.head.send_replace(last);
        }
        loop {
            let after = self.last.load(SeqCst);
            let rows = db::feed::after(&state.db.pool, after, 1000).await?;
            let full = rows.len() == 1000;
            for row in rows {
                let seq = row.seq;
                // Nobody listening is fine: the log keeps it.
                let _ = self.sender.send(Arc::new(Change::try_from(row)?));
                self.last.store(seq, SeqCst);
                self.head.send_replace(seq);
            }
            if !full {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(TAIL_EVERY) => {}
                }
            }
        }
    }
}

/// Starts the expiry loop (and, hourly, retention) and the tail under the supervisor.
pub fn spawn(state: &Billing) {
    let tail_state = state.clone();
    state.tasks.spawn("entitlement-feed-tail", move || {
        let state = tail_state.clone();
        async move {
            // A database error is waited out here, like every loop's: the task itself only
            // ends by a panic.
            loop {
                if let Err(e) = state.feed.follow(&state).await {
                    tracing::warn!(error = %e, "reading the change log's tail failed; will try again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    let every = state
        .settings
        .worker_interval
        .clamp(Duration::from_millis(50), EXPIRY_EVERY);
    let state = state.clone();
    let tasks = state.tasks.clone();
    tasks.spawn("entitlement-expiry", move || {
        let state = state.clone();
        async move {
            // Nothing at the very start: the first look waits one interval, so start-up (and the
            // readiness probe) does not queue behind it for a connection. Retention first runs a
            // minute in, then hourly.
            let mut pruned_at =
                std::time::Instant::now().checked_sub(Duration::from_secs(3600 - 60));
            loop {
                tokio::time::sleep(every).await;
                loop {
                    match expire_due(&state).await {
                        Ok(500..) => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "entitlement expiry pass failed; will try again");
                            break;
                        }
                    }
                }
                if pruned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    match prune(&state).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(changes = n, "old entitlement changes removed"),
                        Err(e) => tracing::warn!(error = %e, "entitlement change retention failed"),
                    }
                    pruned_at = Some(std::time::Instant::now());
                }
            }
        }
    });
}
