//! The `stripe_events` table: every verified event, its raw payload and what became of it.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Waiting to be applied.
    Pending,
    /// Applied to the store.
    Applied,
    /// Older than what the store has: recorded, not applied.
    Skipped,
    /// A type we do not use.
    Ignored,
    /// No user yet; applied when the customer gets linked.
    Unmatched,
    /// The last attempt failed; retried at `next_attempt_at`.
    Failed,
    /// Retries exhausted; waits for a replay.
    Dead,
    /// Live/test mode differs from our key's: recorded, never applied.
    LivemodeMismatch,
}

impl EventState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Pending => "pending",
            EventState::Applied => "applied",
            EventState::Skipped => "skipped",
            EventState::Ignored => "ignored",
            EventState::Unmatched => "unmatched",
            EventState::Failed => "failed",
            EventState::Dead => "dead",
            EventState::LivemodeMismatch => "livemode_mismatch",
        }
    }

    /// Every state, for reading the stored names back.
    pub const ALL: [EventState; 8] = [
        EventState::Pending,
        EventState::Applied,
        EventState::Skipped,
        EventState::Ignored,
        EventState::Unmatched,
        EventState::Failed,
        EventState::Dead,
        EventState::LivemodeMismatch,
    ];
}

impl std::str::FromStr for EventState {
    type Err = crate::domain::InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| crate::domain::InvalidValue(format!("unknown event state {s:?}")))
    }
}

impl std::fmt::Display for EventState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// `evt_…`.
    pub id: &'a str,
    /// Its type.
    pub kind: &'a str,
    /// Stripe's `created`.
    pub created: i64,
    /// Live or test.
    pub livemode: bool,
    /// `webhook`, `events_api`.
    pub source: &'a str,
    /// The raw body.
    pub payload: &'a str,
    /// The customer it concerns, if any.
    pub customer_id: Option<&'a str>,
    /// The subscription it concerns, if any.
    pub subscription_id: Option<&'a str>,
    /// The user it names (`client_reference_id` or `metadata.user_id`), if any.
    pub user_hint: Option<&'a str>,
    /// Initial state.
    pub state: EventState,
}

/// Records the event unless its id is known. Returns whether it was new.
pub async fn record<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    e: &NewEvent<'_>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO stripe_events (id, type, created, livemode, source, payload, customer_id, subscription_id, state, received_at, user_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
    )
    .bind(e.id)
    .bind(e.kind)
    .bind(e.created)
    .bind(i64::from(e.livemode))
    .bind(e.source)
    .bind(e.payload)
    .bind(e.customer_id)
    .bind(e.subscription_id)
    .bind(e.state.as_str())
    .bind(now.timestamp())
    .bind(e.user_hint)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records many events in one statement (one commit): the webhook pipeline's group commit. Returns
/// the ids that were new; an id known already, or twice in `events`, is recorded once. With
/// `lease_until`, every new pending event is recorded already leased until then, to the caller
/// that goes on to apply it (so taking the lease costs no second commit).
pub async fn record_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    events: &[NewEvent<'_>],
    now: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<Vec<String>, sqlx::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO stripe_events (id, type, created, livemode, source, payload, customer_id, subscription_id, state, received_at, user_id, locked_until) \
         VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
        super::value_rows(1, events.len(), 12)
    );
    let lease_until = lease_until.map(|t| t.timestamp());
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query_scalar(&sql).persistent(false);
    for e in events {
        query = query
            .bind(e.id)
            .bind(e.kind)
            .bind(e.created)
            .bind(i64::from(e.livemode))
            .bind(e.source)
            .bind(e.payload)
            .bind(e.customer_id)
            .bind(e.subscription_id)
            .bind(e.state.as_str())
            .bind(now.timestamp())
            .bind(e.user_hint)
            .bind(lease_until.filter(|_| e.state == EventState::Pending));
    }
    // fetch_all: SQLite commits the statement only once it is stepped to its end.
    query.fetch_all(ex).await
}

/// Takes the lease on every listed event that is waiting (pending or failed) and not held by
/// anyone; returns the ids now held. One statement for a batch of webhook deliveries.
pub async fn claim_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    ids: &[&str],
    now: DateTime<Utc>,
    lease: chrono::Duration,
) -> Result<Vec<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE stripe_events SET locked_until = $1 WHERE (locked_until IS NULL OR locked_until < $2) \
         AND state IN ('pending', 'failed') AND id IN ({}) RETURNING id",
        super::placeholders(3, ids.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query_scalar(&sql)
        .persistent(false)
        .bind((now + lease).timestamp())
        .bind(now.timestamp());
    for id in ids {
        query = query.bind(*id);
    }
    query.fetch_all(ex).await
}

/// A recorded event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// `evt_…`.
    pub id: String,
    /// Its type.
    pub kind: String,
    /// Stripe's `created`.
    pub created: DateTime<Utc>,
    /// Raw payload.
    pub payload: String,
    /// What became of it.
    pub state: EventState,
    /// Attempts made.
    pub attempts: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Customer, if any.
    pub customer_id: Option<String>,
    /// User, once matched.
    pub user_id: Option<String>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
}

fn from_row(row: &AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        created: super::from_unix(row.try_get("created")?),
        payload: row.try_get("payload")?,
        state: row.try_get::<String, _>("state")?.parse().map_err(|e| {
            sqlx::Error::ColumnDecode {
                index: "state".into(),
                source: Box::new(e),
            }
        })?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        customer_id: row.try_get("customer_id")?,
        user_id: row.try_get("user_id")?,
        received_at: super::from_unix(row.try_get("received_at")?),
    })
}

const COLUMNS: &str =
    "id, type, created, payload, state, attempts, last_error, customer_id, user_id, received_at";

/// The event with that id.
pub async fn find<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stripe_events WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Takes the lease on one event if it is waiting (pending, failed, or named for replay) and nobody
/// else holds it. Several instances may race; exactly one wins. Returns whether we hold it.
pub async fn claim<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    replay: bool,
) -> Result<bool, sqlx::Error> {
    let states = if replay {
        "('pending', 'failed', 'dead', 'unmatched')"
    } else {
        "('pending', 'failed')"
    };
    let done = sqlx::query(&format!(
        "UPDATE stripe_events SET locked_until = $1 WHERE id = $2 AND state IN {states} \
         AND (locked_until IS NULL OR locked_until < $3)"
    ))
    .bind((now + lease).timestamp())
    .bind(id)
    .bind(now.timestamp())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ids of events due for another attempt, oldest first.
pub async fn due<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM stripe_events WHERE state IN ('pending', 'failed') \
         AND (next_attempt_at IS NULL OR next_attempt_at <= $1) AND (locked_until IS NULL OR locked_until < $1) \
         ORDER BY created, id LIMIT $2",
    )
    .bind(now.timestamp())
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Records the outcome of an attempt and releases the lease.
pub async fn finish<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    state: EventState,
    user_id: Option<&str>,
    customer_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stripe_events SET state = $1, user_id = COALESCE($2, user_id), customer_id = COALESCE($3, customer_id), \
         processed_at = $4, locked_until = NULL, next_attempt_at = NULL, last_error = NULL WHERE id = $5",
    )
    .bind(state.as_str())
    .bind(user_id)
    .bind(customer_id)
    .bind(now.timestamp())
    .bind(id)
    .execute(ex)
    .await?;
    Ok(())
}

/// One event's outcome for [`finish_many`]: id, state, user, customer.
pub type Finished<'a> = (&'a str, EventState, Option<&'a str>, Option<&'a str>);

/// Records the outcomes of many events in one statement, as [`finish`] does for one.
pub async fn finish_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    outcomes: &[Finished<'_>],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "WITH v (id, state, user_id, customer_id, at) AS (VALUES {}) \
         UPDATE stripe_events SET state = v.state, user_id = COALESCE(v.user_id, stripe_events.user_id), \
         customer_id = COALESCE(v.customer_id, stripe_events.customer_id), processed_at = v.at, \
         locked_until = NULL, next_attempt_at = NULL, last_error = NULL \
         FROM v WHERE stripe_events.id = v.id",
        super::value_rows(1, outcomes.len(), 5)
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query(&sql).persistent(false);
    for (id, state, user, customer) in outcomes {
        query = query
            .bind(*id)
            .bind(state.as_str())
            .bind(*user)
            .bind(*customer)
            .bind(now.timestamp());
    }
    query.execute(ex).await?;
    Ok(())
}

/// Records a failed attempt: retried at `next_attempt_at`, or dead after `max_attempts`.
pub async fn fail<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    error: &str,
    now: DateTime<Utc>,
    max_attempts: i64,
) -> Result<EventState, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE stripe_events SET attempts = attempts + 1, last_error = $1, locked_until = NULL, \
         state = CASE WHEN attempts + 1 >= $2 THEN 'dead' ELSE 'failed' END, \
         next_attempt_at = $3 + (CASE WHEN attempts + 1 >= 12 THEN 3600 ELSE (CAST(1 AS BIGINT) << CAST(attempts + 1 AS INTEGER)) END) \
         WHERE id = $4 RETURNING state",
    )
    .bind(error)
    .bind(max_attempts)
    .bind(now.timestamp())
    .bind(id)
    // fetch_all, not fetch_optional: SQLite commits an UPDATE … RETURNING only when the statement
    // is stepped to its end, and reports a failed commit (read-only disk) only there.
    .fetch_all(ex)
    .await?;
    let state: Option<String> = row.first().map(|r| r.try_get("state")).transpose()?;
    Ok(if state.as_deref() == Some("dead") {
        EventState::Dead
    } else {
        EventState::Failed
    })
}

/// Puts the unmatched events of a customer back in the queue (the customer was just linked).
pub async fn requeue_unmatched<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    customer: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE stripe_events SET state = 'pending', next_attempt_at = NULL WHERE state = 'unmatched' AND customer_id = $1")
        .bind(customer)
        .execute(ex)
        .await?;
    Ok(done.rows_affected())
}

/// Reduces finished events received before `before` to their id, type and outcome: the payload and
/// the ids that point at a person are dropped. Returns how many were reduced.
pub async fn reduce_old<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE stripe_events SET payload = '', customer_id = NULL, subscription_id = NULL, user_id = NULL, \
         last_error = NULL WHERE received_at < $1 AND payload <> '' \
         AND state IN ('applied', 'skipped', 'ignored', 'livemode_mismatch', 'dead', 'unmatched')",
    )
    .bind(before.timestamp())
    .execute(ex)
    .await?;
    Ok(done.rows_affected())
}

/// Puts back in the queue every unmatched event whose customer is linked to a user by now. (An event
/// found no user while, concurrently, its customer was being linked: the link's own requeue can run
/// before that event's "unmatched" is committed. This sweep closes that gap.)
pub async fn requeue_linked_unmatched<'c, E: Executor<'c, Database = Any>>(
    ex: E,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE stripe_events SET state = 'pending', next_attempt_at = NULL WHERE state = 'unmatched' \
         AND customer_id IN (SELECT stripe_customer_id FROM users WHERE stripe_customer_id IS NOT NULL)",
    )
    .execute(ex)
    .await?;
    Ok(done.rows_affected())
}

/// Puts the unmatched events that name a user back in the queue (the user was just created).
pub async fn requeue_unmatched_for_user<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("UPDATE stripe_events SET state = 'pending', next_attempt_at = NULL WHERE state = 'unmatched' AND user_id = $1")
        .bind(user)
        .execute(ex)
        .await?;
    Ok(done.rows_affected())
}

/// Events in the given states, newest first.
pub async fn list_in_states<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    states: &[EventState],
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    // The names are our own constants, never input: they are written into the query as they are.
    let list = states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("SELECT {COLUMNS} FROM stripe_events WHERE state IN ({list}) ORDER BY created DESC, id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(ex)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// The newest `created` of any recorded event, where the Events API catch-up starts.
pub async fn newest_created<'c, E: Executor<'c, Database = Any>>(
    ex: E,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MAX(created) FROM stripe_events")
        .fetch_one(ex)
        .await
}

/// Events of a user: matched to them, naming them, or of their customer; newest first.
pub async fn for_user<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
    customer: Option<&str>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM stripe_events WHERE user_id = $1 OR (customer_id IS NOT NULL AND customer_id = $2) \
         ORDER BY created DESC, received_at DESC LIMIT $3"
    ))
    .bind(user)
    .bind(customer.unwrap_or(""))
    .bind(limit)
    .fetch_all(ex)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// How many events are in each state.
pub async fn count_by_state<'c, E: Executor<'c, Database = Any>>(
    ex: E,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, COUNT(*) FROM stripe_events GROUP BY state")
        .fetch_all(ex)
        .await
}
