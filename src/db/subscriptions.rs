//! The `subscriptions` table and the entitlement derived from it.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::domain::{
    Entitlement, EntitlementStatus, InvalidValue, Plan, StripeStatus, SubscriptionId, UserId,
};

use super::{from_unix, get_flag};

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// `sub_…`.
    pub id: String,
    /// Whose it is.
    pub user_id: String,
    /// `cus_…`.
    pub customer_id: String,
    /// Stripe's status.
    pub stripe_status: StripeStatus,
    /// The first item's price.
    pub price_id: Option<String>,
    /// The plan, when recognised.
    pub plan: Option<Plan>,
    /// Unix seconds.
    pub current_period_end: Option<i64>,
    /// Ends at the period end.
    pub cancel_at_period_end: bool,
    /// `pause_collection` set.
    pub pause_collection: bool,
    /// When the renewal failed (unix seconds), while past due.
    pub past_due_since: Option<i64>,
    /// A payment waits for 3-D Secure.
    pub action_required: bool,
    /// Stripe's `created` of the subscription.
    pub created: i64,
    /// Stripe's `created` of the newest event applied.
    pub watermark: i64,
    /// Unix seconds of our last write.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, user_id, customer_id, stripe_status, price_id, plan, current_period_end, cancel_at_period_end, \
                       pause_collection, past_due_since, action_required, created, watermark, updated_at";

fn from_row(row: &AnyRow) -> Result<StoredSubscription, sqlx::Error> {
    let decode = |column: &str, e: InvalidValue| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    Ok(StoredSubscription {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        customer_id: row.try_get("customer_id")?,
        stripe_status: row
            .try_get::<String, _>("stripe_status")?
            .parse()
            .map_err(|e| decode("stripe_status", e))?,
        price_id: row.try_get("price_id")?,
        plan: row
            .try_get::<Option<String>, _>("plan")?
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| decode("plan", e))?,
        current_period_end: row.try_get("current_period_end")?,
        cancel_at_period_end: get_flag(row, "cancel_at_period_end")?,
        pause_collection: get_flag(row, "pause_collection")?,
        past_due_since: row.try_get("past_due_since")?,
        action_required: get_flag(row, "action_required")?,
        created: row.try_get("created")?,
        watermark: row.try_get("watermark")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose write transactions hold the one writer.
fn row_lock(backend: super::Backend) -> &'static str {
    if backend == super::Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    }
}

/// The stored subscription with that id. On PostgreSQL the row is locked until the transaction ends,
/// so writes to one subscription are serialised (SQLite transactions here are single-writer already).
pub async fn find_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    id: &str,
) -> Result<Option<StoredSubscription>, sqlx::Error> {
    let lock = row_lock(backend);
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Every stored subscription of a user, newest first.
pub async fn for_user<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
) -> Result<Vec<StoredSubscription>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE user_id = $1 ORDER BY created DESC, id DESC"
    ))
    .bind(user)
    .fetch_all(ex)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// Writes the subscription unless what is stored is newer: an insert, or an update when the stored
/// watermark is older than this one (or equal, with `allow_equal`, for a fresh fetch from Stripe).
/// Returns whether it was written.
pub async fn upsert_if_newer<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    s: &StoredSubscription,
    allow_equal: bool,
) -> Result<bool, sqlx::Error> {
    let cmp = if allow_equal { "<=" } else { "<" };
    let done = sqlx::query(&format!(
        "INSERT INTO subscriptions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, customer_id = excluded.customer_id, \
         stripe_status = excluded.stripe_status, price_id = excluded.price_id, plan = excluded.plan, \
         current_period_end = excluded.current_period_end, cancel_at_period_end = excluded.cancel_at_period_end, \
         pause_collection = excluded.pause_collection, past_due_since = excluded.past_due_since, \
         action_required = excluded.action_required, created = excluded.created, watermark = excluded.watermark, \
         updated_at = excluded.updated_at \
         WHERE subscriptions.watermark {cmp} excluded.watermark"
    ))
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.customer_id)
    .bind(s.stripe_status.as_str())
    .bind(s.price_id.clone())
    .bind(s.plan.map(|p| p.as_str()))
    .bind(s.current_period_end)
    .bind(i64::from(s.cancel_at_period_end))
    .bind(i64::from(s.pause_collection))
    .bind(s.past_due_since)
    .bind(i64::from(s.action_required))
    .bind(s.created)
    .bind(s.watermark)
    .bind(s.updated_at)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets or clears the "payment needs authentication" flag.
pub async fn set_action_required<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    value: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscriptions SET action_required = $1 WHERE id = $2")
        .bind(i64::from(value))
        .bind(id)
        .execute(ex)
        .await?;
    Ok(())
}

/// Derives the user's entitlement from their best subscription (a live one before an ended one, then
/// the newest) and stores it; a user with no subscription keeps no entitlement row.
pub async fn refresh_entitlement(
    conn: &mut AnyConnection,
    user: &UserId,
    now: i64,
) -> Result<Option<Entitlement>, sqlx::Error> {
    let subs = for_user(&mut *conn, user.as_str()).await?;
    let Some(entitlement) = derive_entitlement(&subs, now) else {
        return Ok(None);
    };
    // Another user may hold this subscription id from an earlier link; the unique index would refuse.
    super::entitlements::upsert(&mut *conn, user, &entitlement).await?;
    Ok(Some(entitlement))
}

/// The entitlement a user's subscriptions (newest first) give: from the best one, a live one before
/// an ended one, then the newest. `None` without subscriptions.
pub fn derive_entitlement(subs: &[StoredSubscription], now: i64) -> Option<Entitlement> {
    let ended = |s: &StoredSubscription| {
        matches!(
            s.stripe_status,
            StripeStatus::Canceled | StripeStatus::IncompleteExpired
        )
    };
    let best = subs.iter().find(|s| !ended(s)).or_else(|| subs.first())?;
    let (status, paused_by_status) = best.stripe_status.to_entitlement();
    Some(Entitlement {
        status,
        stripe_status: best.stripe_status,
        pause_active: paused_by_status
            || (best.pause_collection && status != EntitlementStatus::Canceled),
        plan: best.plan,
        stripe_subscription_id: SubscriptionId::parse(&best.id).ok(),
        current_period_end: best.current_period_end.map(from_unix),
        cancel_at_period_end: best.cancel_at_period_end,
        past_due_since: best.past_due_since.map(from_unix),
        action_required: best.action_required,
        updated_at: from_unix(now),
    })
}

/// Every stored subscription of these users, each user's newest first.
pub async fn for_users<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    users: &[&str],
) -> Result<Vec<StoredSubscription>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE user_id IN ({}) ORDER BY user_id, created DESC, id DESC",
        super::placeholders(1, users.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query(&sql).persistent(false);
    for user in users {
        query = query.bind(*user);
    }
    query.fetch_all(ex).await?.iter().map(from_row).collect()
}

/// The stored subscriptions among `ids`, locked on PostgreSQL in id order (one lock order for
/// every batch) until the transaction ends.
pub async fn find_many_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    ids: &[&str],
) -> Result<Vec<StoredSubscription>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let lock = row_lock(backend);
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE id IN ({}) ORDER BY id{lock}",
        super::placeholders(1, ids.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query(&sql).persistent(false);
    for id in ids {
        query = query.bind(*id);
    }
    query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(from_row)
        .collect()
}

/// Writes many subscriptions (distinct ids) in one statement, each only over an older watermark
/// (as [`upsert_if_newer`] without `allow_equal`). Returns the ids written.
pub async fn upsert_many_if_newer<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    rows: &[&StoredSubscription],
) -> Result<Vec<String>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO subscriptions ({COLUMNS}) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, customer_id = excluded.customer_id, \
         stripe_status = excluded.stripe_status, price_id = excluded.price_id, plan = excluded.plan, \
         current_period_end = excluded.current_period_end, cancel_at_period_end = excluded.cancel_at_period_end, \
         pause_collection = excluded.pause_collection, past_due_since = excluded.past_due_since, \
         action_required = excluded.action_required, created = excluded.created, watermark = excluded.watermark, \
         updated_at = excluded.updated_at \
         WHERE subscriptions.watermark < excluded.watermark RETURNING id",
        super::value_rows(1, rows.len(), 14)
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query_scalar(&sql).persistent(false);
    for s in rows {
        query = query
            .bind(s.id.as_str())
            .bind(s.user_id.as_str())
            .bind(s.customer_id.as_str())
            .bind(s.stripe_status.as_str())
            .bind(s.price_id.as_deref())
            .bind(s.plan.map(|p| p.as_str()))
            .bind(s.current_period_end)
            .bind(i64::from(s.cancel_at_period_end))
            .bind(i64::from(s.pause_collection))
            .bind(s.past_due_since)
            .bind(i64::from(s.action_required))
            .bind(s.created)
            .bind(s.watermark)
            .bind(s.updated_at);
    }
    // fetch_all: SQLite finishes the statement only once it is stepped to its end.
    query.fetch_all(ex).await
}

/// The `created` of the newest event applied to a subscription, if it is stored.
pub async fn watermark<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT watermark FROM subscriptions WHERE id = $1")
        .bind(id)
        .fetch_optional(ex)
        .await
}
