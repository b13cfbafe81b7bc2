//! Idempotency-Key attempt numbers and the Checkout Sessions we opened.

use sqlx::{Any, Executor, Row};

/// The current attempt number for a purpose (starts at 1).
pub async fn attempt<'c, E: Executor<'c, Database = Any>>(ex: E, purpose: &str) -> Result<i64, sqlx::Error> {
    let n: Option<i64> = sqlx::query_scalar("SELECT attempt FROM stripe_request_attempts WHERE purpose = $1")
        .bind(purpose)
        .fetch_optional(ex)
        .await?;
    Ok(n.unwrap_or(1))
}

/// Moves the attempt on after a definitive failure, once: only if it is still `seen`.
pub async fn next_attempt<'c, E: Executor<'c, Database = Any>>(ex: E, purpose: &str, seen: i64) -> Result<(), sqlx::Error> {
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
pub async fn remember<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &str,
    user: &str,
    plan: &str,
    url: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkout_sessions (id, user_id, plan, url, status, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, 'open', $5, $6) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(user)
    .bind(plan)
    .bind(url)
    .bind(expires_at)
    .bind(now)
    .execute(ex)
    .await?;
    Ok(())
}

/// The user's open, unexpired session for a plan, if any.
pub async fn open_session<'c, E: Executor<'c, Database = Any>>(ex: E, user: &str, plan: &str, now: i64) -> Result<Option<OpenCheckout>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, url FROM checkout_sessions WHERE user_id = $1 AND plan = $2 AND status = 'open' AND expires_at > $3 \
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user)
    .bind(plan)
    .bind(now + 60)
    .fetch_optional(ex)
    .await?;
    row.map(|r| Ok(OpenCheckout { id: r.try_get("id")?, url: r.try_get("url")? })).transpose()
}

/// Marks a session complete (or expired), so the next checkout opens a new one.
pub async fn close<'c, E: Executor<'c, Database = Any>>(ex: E, id: &str, status: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE checkout_sessions SET status = $1 WHERE id = $2").bind(status).bind(id).execute(ex).await?;
    Ok(())
}

/// Closes every open session of a user (they now have a subscription).
pub async fn close_all_for_user<'c, E: Executor<'c, Database = Any>>(ex: E, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE checkout_sessions SET status = 'complete' WHERE user_id = $1 AND status = 'open'")
        .bind(user)
        .execute(ex)
        .await?;
    Ok(())
}

/// How many Checkout Sessions the user ever opened for a plan (part of the next one's Idempotency-Key).
pub async fn count_sessions<'c, E: Executor<'c, Database = Any>>(ex: E, user: &str, plan: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM checkout_sessions WHERE user_id = $1 AND plan = $2")
        .bind(user)
        .bind(plan)
        .fetch_one(ex)
        .await
}
