//! Idempotency-Key attempt numbers and the Checkout Sessions we opened.

use chrono::{DateTime, Utc};
use sqlx::{Any, Executor, Row};

/// The current attempt number for a purpose (starts at 1).
pub async fn attempt<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    purpose: &str,
) -> Result<i64, sqlx::Error> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT attempt FROM stripe_request_attempts WHERE purpose = $1")
            .bind(purpose)
            .fetch_optional(ex)
            .await?;
    Ok(n.unwrap_or(1))
}

/// Moves the attempt on after a definitive failure, once: only if it is still `seen`.
pub async fn next_attempt<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    purpose: &str,
    seen: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stripe_request_attempts (purpose, attempt) VALUES ($1, $2) \
         ON CONFLICT (purpose) DO UPDATE SET attempt = excluded.attempt WHERE stripe_request_attempts.attempt = $3",
    )
    .bind(purpose)
    .bind(seen + 1)
    .bind(seen)
    .execute(ex)
    .await?;
    Ok(())
}

/// An open Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCheckout {
    /// `cs_…`.
    pub id: String,
    /// The hosted page.
    pub url: String,
}

/// Remembers a Checkout Session (the same id twice is fine: concurrent calls share one session).
pub async fn remember(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    user: &str,
    plan: &str,
    url: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkout_sessions (id, user_id, plan, url, status, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, 'open', $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(user)
    .bind(plan)
    .bind(url)
    .bind(expires_at.timestamp())
    .bind(now.timestamp())
    .execute(&mut *conn)
    .await?;
    // The attempt row must exist for closing the session to move it on.
    sqlx::query("INSERT INTO stripe_request_attempts (purpose, attempt) VALUES ($1, 1) ON CONFLICT (purpose) DO NOTHING")
        .bind(format!("checkout:{user}:{plan}"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The user a Checkout Session was opened for, when this service opened it.
pub async fn owner<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    session_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM checkout_sessions WHERE id = $1")
        .bind(session_id)
        .fetch_optional(ex)
        .await
}

/// The user's open, unexpired session for a plan, if any.
pub async fn open_session<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
    plan: &str,
    now: DateTime<Utc>,
) -> Result<Option<OpenCheckout>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, url FROM checkout_sessions WHERE user_id = $1 AND plan = $2 AND status = 'open' AND expires_at > $3 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user)
    .bind(plan)
    .bind((now + chrono::Duration::seconds(60)).timestamp())
    .fetch_optional(ex)
    .await?;
    row.map(|r| {
        Ok(OpenCheckout {
            id: r.try_get("id")?,
            url: r.try_get("url")?,
        })
    })
    .transpose()
}

/// Closes the user's open sessions (`complete` once they subscribed, `expired` when Stripe expired
/// them) and moves their Idempotency-Key attempts on, so the next checkout opens a new session.
/// With `only_expired_before`, only sessions expiring before that time are closed.
async fn close_where(
    conn: &mut sqlx::AnyConnection,
    users: &[&str],
    status: &str,
    only_expired_before: Option<i64>,
) -> Result<u64, sqlx::Error> {
    if users.is_empty() {
        return Ok(0);
    }
    let cutoff = only_expired_before.unwrap_or(i64::MAX);
    let sql = format!(
        "UPDATE stripe_request_attempts SET attempt = attempt + 1 WHERE purpose IN \
         (SELECT 'checkout:' || user_id || ':' || plan FROM checkout_sessions \
          WHERE status = 'open' AND expires_at <= $1 AND user_id IN ({}))",
        super::placeholders(2, users.len())
    );
    let mut query = sqlx::query(&sql).bind(cutoff);
    for user in users {
        query = query.bind(*user);
    }
    query.execute(&mut *conn).await?;
    let sql = format!(
        "UPDATE checkout_sessions SET status = $1 WHERE status = 'open' AND expires_at <= $2 AND user_id IN ({})",
        super::placeholders(3, users.len())
    );
    let mut query = sqlx::query(&sql).bind(status).bind(cutoff);
    for user in users {
        query = query.bind(*user);
    }
    let done = query.execute(&mut *conn).await?;
    Ok(done.rows_affected())
}

/// Closes every open session of these users: they now have a subscription.
pub async fn close_all_for_users(
    conn: &mut sqlx::AnyConnection,
    users: &[&str],
) -> Result<u64, sqlx::Error> {
    close_where(conn, users, "complete", None).await
}

/// Closes every open session of a user: they now have a subscription.
pub async fn close_all_for_user(
    conn: &mut sqlx::AnyConnection,
    user: &str,
) -> Result<u64, sqlx::Error> {
    close_where(conn, &[user], "complete", None).await
}

/// Closes one session Stripe says it expired (`checkout.session.expired`) and moves its
/// Idempotency-Key attempt on, so the next checkout for that plan opens a new session. Returns
/// the session's owner, or `None` when this service did not open it or it was closed already.
pub async fn expire(
    conn: &mut sqlx::AnyConnection,
    session_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE checkout_sessions SET status = 'expired' WHERE id = $1 AND status = 'open' \
         RETURNING user_id, plan",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let user: String = row.try_get("user_id")?;
    let plan: String = row.try_get("plan")?;
    sqlx::query("UPDATE stripe_request_attempts SET attempt = attempt + 1 WHERE purpose = $1")
        .bind(format!("checkout:{user}:{plan}"))
        .execute(&mut *conn)
        .await?;
    Ok(Some(user))
}

/// Closes the user's sessions that Stripe has expired (or is about to).
pub async fn expire_stale(
    pool: &sqlx::AnyPool,
    user: &str,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let soon = now + chrono::Duration::seconds(60);
    close_where(&mut conn, &[user], "expired", Some(soon.timestamp())).await
}
