//! The `subscriptions` table and the entitlement derived from it.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::domain::InvalidValue;

use super::{from_unix, get_flag};

pub use crate::domain::StoredSubscription;

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
        current_period_end: row
            .try_get::<Option<i64>, _>("current_period_end")?
            .map(from_unix),
        cancel_at_period_end: get_flag(row, "cancel_at_period_end")?,
        pause_collection: get_flag(row, "pause_collection")?,
        past_due_since: row
            .try_get::<Option<i64>, _>("past_due_since")?
            .map(from_unix),
        action_required: get_flag(row, "action_required")?,
        created: from_unix(row.try_get("created")?),
        watermark: row.try_get("watermark")?,
        updated_at: from_unix(row.try_get("updated_at")?),
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

/// Writes many subscriptions (distinct ids) in one statement, each only over an older or equal
/// watermark (the caller holds their rows and decided each one). Returns the ids written.
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
         WHERE subscriptions.watermark <= excluded.watermark RETURNING id",
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
            .bind(s.current_period_end.map(|t| t.timestamp()))
            .bind(i64::from(s.cancel_at_period_end))
            .bind(i64::from(s.pause_collection))
            .bind(s.past_due_since.map(|t| t.timestamp()))
            .bind(i64::from(s.action_required))
            .bind(s.created.timestamp())
            .bind(s.watermark)
            .bind(s.updated_at.timestamp());
    }
    // fetch_all: SQLite finishes the statement only once it is stepped to its end.
    query.fetch_all(ex).await
}
