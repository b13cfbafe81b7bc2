//! Queries of the admin pages: counts, the searchable user list, the audit log, used hand-off tokens.

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor, Row};

use super::from_unix;

/// One row of the admin user table.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// User id.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Entitlement status or `none`.
    pub status: String,
    /// Plan, if any.
    pub plan: Option<String>,
    /// Period end.
    pub period_end: Option<DateTime<Utc>>,
    /// Last change of the entitlement.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The smallest string greater than every string starting with `prefix` (for index range scans,
/// which both databases serve from a b-tree, unlike `LIKE 'x%'` under most collations).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Users matching an id or e-mail prefix and a status (`none` for users who never subscribed),
/// ordered by id, after `after` (keyset pagination), at most `limit`.
pub async fn search_users<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    prefix: &str,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let matching = if prefix.is_empty() {
        ""
    } else {
        " AND ((u.id >= $2 AND u.id < $3) OR (u.email >= $4 AND u.email < $5))"
    };
    let sql = match status {
        // Without a status filter the page is cut from the users alone, then joined: a prefix that
        // matches thousands of users joins 50 of them, not all.
        None => format!(
            "SELECT u.id, u.email, COALESCE(e.status, 'none') AS status, e.plan, e.current_period_end, e.updated_at \
             FROM (SELECT u.id, u.email FROM users u WHERE u.id > $1{matching} ORDER BY u.id LIMIT $7) u \
             LEFT JOIN entitlements e ON e.user_id = u.id ORDER BY u.id"
        ),
        Some(status) => format!(
            "SELECT u.id, u.email, COALESCE(e.status, 'none') AS status, e.plan, e.current_period_end, e.updated_at \
             FROM users u LEFT JOIN entitlements e ON e.user_id = u.id WHERE u.id > $1{matching}{} \
             ORDER BY u.id LIMIT $7",
            if status == "none" {
                " AND e.user_id IS NULL"
            } else {
                " AND e.status = $6"
            }
        ),
    };
    // Unused parameters are still bound so the numbering stays fixed; both databases allow that.
    let lower = prefix.to_lowercase();
    let rows = sqlx::query(&sql)
        .bind(after.unwrap_or(""))
        .bind(prefix)
        .bind(prefix_end(prefix))
        .bind(&lower)
        .bind(prefix_end(&lower))
        .bind(status.unwrap_or(""))
        .bind(limit)
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(UserRow {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                status: r.try_get("status")?,
                plan: r.try_get("plan")?,
                period_end: r
                    .try_get::<Option<i64>, _>("current_period_end")?
                    .map(from_unix),
                updated_at: r.try_get::<Option<i64>, _>("updated_at")?.map(from_unix),
            })
        })
        .collect()
}

/// (status, count) for every status present, and the number of users.
pub async fn counts(pool: &sqlx::AnyPool) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM entitlements GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(pool)
        .await?;
    Ok((by_status, total))
}

/// One audit entry.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// The row's id (a change of the change log names it as its cause).
    pub id: String,
    /// Who acted.
    pub actor: String,
    /// What they did.
    pub action: String,
    /// Before.
    pub before: Option<String>,
    /// After.
    pub after: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A new audit row id: sortable by time, then random (made before the row is written, so a change
/// in the same transaction can name it).
pub fn new_audit_id(at: DateTime<Utc>) -> String {
    format!("{:012}-{:016x}", at.timestamp(), rand::random::<u64>())
}

/// Writes an audit entry under `id` (see [`new_audit_id`]).
#[allow(clippy::too_many_arguments)]
pub async fn audit<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    user: &str,
    actor: &str,
    action: &str,
    before: &str,
    after: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let at = at.timestamp();
    sqlx::query("INSERT INTO audit_log (id, user_id, actor, action, before, after, at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(id)
        .bind(user)
        .bind(actor)
        .bind(action)
        .bind(before)
        .bind(after)
        .bind(at)
        .execute(ex)
        .await?;
    Ok(())
}

/// A user's audit log, newest first.
pub async fn audit_for<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, actor, action, before, after, at FROM audit_log WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT 200")
        .bind(user)
        .fetch_all(ex)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r.try_get("id")?,
                actor: r.try_get("actor")?,
                action: r.try_get("action")?,
                before: r.try_get("before")?,
                after: r.try_get("after")?,
                at: from_unix(r.try_get("at")?),
            })
        })
        .collect()
}

/// Events of a user (matched, named, or of their customer), newest first.
pub async fn events_for<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
    customer: Option<&str>,
) -> Result<Vec<super::events::StoredEvent>, sqlx::Error> {
    super::events::for_user(ex, user, customer, 200).await
}

/// Remembers a hand-off token id until it expires. False when it was used before.
pub async fn use_token<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO used_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at.timestamp())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets token ids whose tokens have expired.
pub async fn forget_expired_tokens<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM used_tokens WHERE expires_at < $1")
        .bind((now - chrono::Duration::hours(1)).timestamp())
        .execute(ex)
        .await?
        .rows_affected())
}

/// The most recently created users (the dev sign-in list).
pub async fn recent_users<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users ORDER BY created_at DESC, id LIMIT $1")
        .bind(limit)
        .fetch_all(ex)
        .await
}
