//! The `entitlements` table: one row per user who ever subscribed.

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use chrono::{DateTime, Utc};

use crate::domain::{Entitlement, InvalidValue, SubscriptionId, UserId};

use super::{from_unix, get_flag};

fn from_row(row: &AnyRow) -> Result<Entitlement, sqlx::Error> {
    let decode = |column: &str, e: InvalidValue| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    let text = |column: &str| row.try_get::<String, _>(column);
    let opt_text = |column: &str| row.try_get::<Option<String>, _>(column);
    let opt_time = |column: &str| {
        row.try_get::<Option<i64>, _>(column)
            .map(|t| t.map(from_unix))
    };
    Ok(Entitlement {
        status: text("status")?.parse().map_err(|e| decode("status", e))?,
        stripe_status: text("stripe_status")?
            .parse()
            .map_err(|e| decode("stripe_status", e))?,
        pause_active: get_flag(row, "pause_active")?,
        plan: opt_text("plan")?
            .map(|p| p.parse())
            .transpose()
            .map_err(|e| decode("plan", e))?,
        stripe_subscription_id: opt_text("stripe_subscription_id")?
            .map(|s| SubscriptionId::parse(&s))
            .transpose()
            .map_err(|e| decode("stripe_subscription_id", e))?,
        current_period_end: opt_time("current_period_end")?,
        cancel_at_period_end: get_flag(row, "cancel_at_period_end")?,
        past_due_since: opt_time("past_due_since")?,
        action_required: get_flag(row, "action_required")?,
        updated_at: from_unix(row.try_get("updated_at")?),
    })
}

const COLUMNS: &str = "status, stripe_status, pause_active, plan, stripe_subscription_id, current_period_end, \
                       cancel_at_period_end, past_due_since, action_required, updated_at";

const UPSERT_SET: &str = "ON CONFLICT (user_id) DO UPDATE SET status = excluded.status, stripe_status = excluded.stripe_status, \
    pause_active = excluded.pause_active, plan = excluded.plan, \
    stripe_subscription_id = excluded.stripe_subscription_id, current_period_end = excluded.current_period_end, \
    cancel_at_period_end = excluded.cancel_at_period_end, past_due_since = excluded.past_due_since, \
    action_required = excluded.action_required, updated_at = excluded.updated_at";

/// The PostgreSQL channel that carries "this user's entitlement changed" to every instance.
pub const CHANNEL: &str = "msr_entitlements";

/// The user's entitlement; `None` when the user never subscribed.
pub async fn find<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &UserId,
) -> Result<Option<Entitlement>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM entitlements WHERE user_id = $1"
    ))
    .bind(user.as_str())
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The stored entitlements of these users (those who have one), by user id.
pub async fn find_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    users: &[&str],
) -> Result<Vec<(String, Entitlement)>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT user_id, {COLUMNS} FROM entitlements WHERE user_id IN ({})",
        super::placeholders(1, users.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query(&sql).persistent(false);
    for user in users {
        query = query.bind(*user);
    }
    query
        .fetch_all(ex)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("user_id")?, from_row(row)?)))
        .collect()
}

/// Writes the user's entitlement, replacing what was there.
pub async fn upsert<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &UserId,
    e: &Entitlement,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO entitlements (user_id, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {UPSERT_SET}"
    ))
    .bind(user.as_str())
    .bind(e.status.as_str())
    .bind(e.stripe_status.as_str())
    .bind(i64::from(e.pause_active))
    .bind(e.plan.map(|p| p.as_str()))
    .bind(e.stripe_subscription_id.as_ref().map(|s| s.as_str().to_owned()))
    .bind(e.current_period_end.map(|t| t.timestamp()))
    .bind(i64::from(e.cancel_at_period_end))
    .bind(e.past_due_since.map(|t| t.timestamp()))
    .bind(i64::from(e.action_required))
    .bind(e.updated_at.timestamp())
    .execute(ex)
    .await?;
    Ok(())
}

/// What the entitlement check needs, in one round trip: `None` for an unknown user, else the
/// user's complimentary access and stored entitlement.
#[allow(clippy::type_complexity)]
pub async fn find_for_check<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &UserId,
) -> Result<Option<(Option<DateTime<Utc>>, Option<Entitlement>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.complimentary_until, e.status, e.stripe_status, e.pause_active, e.plan, e.stripe_subscription_id, \
         e.current_period_end, e.cancel_at_period_end, e.past_due_since, e.action_required, e.updated_at \
         FROM users u LEFT JOIN entitlements e ON e.user_id = u.id WHERE u.id = $1",
    )
    .bind(user.as_str())
    .fetch_optional(ex)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let complimentary = row
        .try_get::<Option<i64>, _>("complimentary_until")?
        .map(from_unix);
    let has_entitlement = row.try_get::<Option<String>, _>("status")?.is_some();
    let entitlement = if has_entitlement {
        Some(from_row(&row)?)
    } else {
        None
    };
    Ok(Some((complimentary, entitlement)))
}

/// The user and their entitlement in one round trip (`None`: no such user).
pub async fn find_with_user<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &UserId,
) -> Result<Option<(super::users::User, Option<Entitlement>)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.email, u.stripe_customer_id, u.created_at, u.complimentary_until, u.complimentary_note, \
         e.status, e.stripe_status, e.pause_active, e.plan, e.stripe_subscription_id, e.current_period_end, \
         e.cancel_at_period_end, e.past_due_since, e.action_required, e.updated_at \
         FROM users u LEFT JOIN entitlements e ON e.user_id = u.id WHERE u.id = $1",
    )
    .bind(user.as_str())
    .fetch_optional(ex)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let entitlement = if row.try_get::<Option<String>, _>("status")?.is_some() {
        Some(from_row(&row)?)
    } else {
        None
    };
    Ok(Some((super::users::from_row(&row)?, entitlement)))
}

/// Every user from the one after `after` (by id), at most `limit`, with what the entitlement
/// check needs: the cache's fill.
///
/// The join repeats `> $1` on the entitlements side, so PostgreSQL can walk both primary keys from
/// `after` in step (a merge join: 2 ms a chunk of 1,000 at 1M users, was 5 ms by 1,000 index
/// lookups). Without it, a generic plan for this prepared statement (one that cannot see the
/// limit, which PostgreSQL may switch to after five executions) merge-joined the entitlements
/// index from its first row every time: 184 ms a chunk deep into 1M users, a quadratic fill.
#[allow(clippy::type_complexity)]
pub async fn all_for_check<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    after: &str,
    limit: i64,
) -> Result<Vec<(String, Option<DateTime<Utc>>, Option<Entitlement>)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.id, u.complimentary_until, e.status, e.stripe_status, e.pause_active, e.plan, \
         e.stripe_subscription_id, e.current_period_end, e.cancel_at_period_end, e.past_due_since, \
         e.action_required, e.updated_at \
         FROM users u LEFT JOIN entitlements e ON e.user_id = u.id AND e.user_id > $1 \
         WHERE u.id > $1 ORDER BY u.id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await?;
    rows.iter().map(for_check_row).collect()
}

/// What the check needs of each of these users, as [`all_for_check`] reads it (unknown ids are left
/// out), in one statement.
#[allow(clippy::type_complexity)]
pub async fn for_check_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    users: &[&str],
) -> Result<Vec<(String, Option<DateTime<Utc>>, Option<Entitlement>)>, sqlx::Error> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT u.id, u.complimentary_until, e.status, e.stripe_status, e.pause_active, e.plan, \
         e.stripe_subscription_id, e.current_period_end, e.cancel_at_period_end, e.past_due_since, \
         e.action_required, e.updated_at \
         FROM users u LEFT JOIN entitlements e ON e.user_id = u.id WHERE u.id IN ({}) ORDER BY u.id",
        super::placeholders(1, users.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the number of users.
    let mut query = sqlx::query(&sql).persistent(false);
    for user in users {
        query = query.bind(*user);
    }
    let rows = query.fetch_all(ex).await?;
    rows.iter().map(for_check_row).collect()
}

#[allow(clippy::type_complexity)]
fn for_check_row(
    row: &AnyRow,
) -> Result<(String, Option<DateTime<Utc>>, Option<Entitlement>), sqlx::Error> {
    let entitlement = if row.try_get::<Option<String>, _>("status")?.is_some() {
        Some(from_row(row)?)
    } else {
        None
    };
    Ok((
        row.try_get("id")?,
        row.try_get::<Option<i64>, _>("complimentary_until")?
            .map(from_unix),
        entitlement,
    ))
}

/// Tells every instance (PostgreSQL `NOTIFY`, delivered at commit) that a user's entitlement
/// changed; nothing to do on SQLite, where the one instance evicts in-process.
pub async fn notify_changed(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    user: &str,
) -> Result<(), sqlx::Error> {
    if backend == super::Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(user)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// [`notify_changed`] for many users in one statement.
pub async fn notify_many(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    users: &[&str],
) -> Result<(), sqlx::Error> {
    if backend != super::Backend::Postgres || users.is_empty() {
        return Ok(());
    }
    let calls = (0..users.len())
        .map(|i| format!("pg_notify($1, ${})", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {calls}");
    let mut query = sqlx::query(&sql).bind(CHANNEL);
    for user in users {
        query = query.bind(*user);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Writes many users' entitlements (distinct users) in one statement, as [`upsert`] does one.
pub async fn upsert_many<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    rows: &[(&str, &Entitlement)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO entitlements (user_id, {COLUMNS}) VALUES {} {UPSERT_SET}",
        super::value_rows(1, rows.len(), 11)
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query(&sql).persistent(false);
    for (user, e) in rows {
        query = query
            .bind(*user)
            .bind(e.status.as_str())
            .bind(e.stripe_status.as_str())
            .bind(i64::from(e.pause_active))
            .bind(e.plan.map(|p| p.as_str()))
            .bind(
                e.stripe_subscription_id
                    .as_ref()
                    .map(|s| s.as_str().to_owned()),
            )
            .bind(e.current_period_end.map(|t| t.timestamp()))
            .bind(i64::from(e.cancel_at_period_end))
            .bind(e.past_due_since.map(|t| t.timestamp()))
            .bind(i64::from(e.action_required))
            .bind(e.updated_at.timestamp());
    }
    query.execute(ex).await?;
    Ok(())
}
