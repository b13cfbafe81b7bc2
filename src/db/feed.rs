//! The entitlement change log (`entitlement_changes`), each owner's last logged answer
//! (`entitlement_answers`) and the seq counter (`entitlement_feed`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use super::{Backend, from_unix};

/// One logged change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Its place in the log.
    pub seq: i64,
    /// Whose answer changed.
    pub user_id: String,
    /// When it changed.
    pub changed_at: DateTime<Utc>,
    /// What caused it (JSON, written by the billing layer).
    pub cause: String,
    /// The answer as it became (JSON, written by the billing layer).
    pub answer: String,
}

/// An owner's last logged answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The seq of the change that logged it.
    pub seq: i64,
    /// The answer (JSON).
    pub answer: String,
    /// When time alone may change it.
    pub recheck_at: Option<DateTime<Utc>>,
}

fn change_from(row: &AnyRow) -> Result<ChangeRow, sqlx::Error> {
    Ok(ChangeRow {
        seq: row.try_get("seq")?,
        user_id: row.try_get("user_id")?,
        changed_at: from_unix(row.try_get("changed_at")?),
        cause: row.try_get("cause")?,
        answer: row.try_get("answer")?,
    })
}

/// Hands out `n` seqs (returns the newest); the counter's row stays locked by `tx` until it
/// commits, so seqs commit in order.
pub async fn allocate(tx: &mut AnyConnection, n: usize) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE entitlement_feed SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
    )
    .bind(n as i64)
    // fetch_all: SQLite commits an UPDATE … RETURNING only once it is stepped to its end.
    .fetch_all(&mut *tx)
    .await?
    .pop()
    .ok_or(sqlx::Error::RowNotFound)
}

/// The newest seq handed out and the newest removed by retention.
pub async fn bounds<'c, E: Executor<'c, Database = Any>>(ex: E) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query("SELECT last_seq, pruned_through FROM entitlement_feed WHERE id = 1")
        .fetch_one(ex)
        .await?;
    Ok((row.try_get("last_seq")?, row.try_get("pruned_through")?))
}

/// The last logged answers of these users (absent: never logged).
pub async fn current_many(
    tx: &mut AnyConnection,
    backend: Backend,
    users: &[&str],
) -> Result<HashMap<String, Current>, sqlx::Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT user_id, seq, answer, recheck_at FROM entitlement_answers WHERE user_id IN ({})",
        super::placeholders(1, users.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the number of users.
    let mut query = sqlx::query(&sql).persistent(false);
    for user in users {
        query = query.bind(*user);
    }
    query
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("user_id")?,
                Current {
                    seq: row.try_get("seq")?,
                    answer: row.try_get("answer")?,
                    recheck_at: row.try_get::<Option<i64>, _>("recheck_at")?.map(from_unix),
                },
            ))
        })
        .collect()
}

/// Appends changes to the log.
pub async fn insert_changes(
    tx: &mut AnyConnection,
    backend: Backend,
    rows: &[ChangeRow],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO entitlement_changes (seq, user_id, changed_at, cause, answer) VALUES {}",
        super::value_rows(1, rows.len(), 5)
    );
    let sql = super::positional(sql, backend);
    let mut query = sqlx::query(&sql).persistent(false);
    for r in rows {
        query = query
            .bind(r.seq)
            .bind(r.user_id.as_str())
            .bind(r.changed_at.timestamp())
            .bind(r.cause.as_str())
            .bind(r.answer.as_str());
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Stores users' last logged answers (and when to look at them again).
pub async fn put_current(
    tx: &mut AnyConnection,
    backend: Backend,
    rows: &[(&str, &Current)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO entitlement_answers (user_id, seq, answer, recheck_at) VALUES {} \
         ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq, answer = excluded.answer, \
         recheck_at = excluded.recheck_at",
        super::value_rows(1, rows.len(), 4)
    );
    let sql = super::positional(sql, backend);
    let mut query = sqlx::query(&sql).persistent(false);
    for (user, c) in rows {
        query = query
            .bind(*user)
            .bind(c.seq)
            .bind(c.answer.as_str())
            .bind(c.recheck_at.map(|t| t.timestamp()));
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Users whose answer time may have changed by `now`, soonest first.
pub async fn due<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query(
        "SELECT user_id, recheck_at FROM entitlement_answers WHERE recheck_at <= $1 \
         ORDER BY recheck_at, user_id LIMIT $2",
    )
    .bind(now.timestamp())
    .bind(limit)
    .fetch_all(ex)
    .await?
    .iter()
    .map(|row| {
        Ok((
            row.try_get("user_id")?,
            from_unix(row.try_get("recheck_at")?),
        ))
    })
    .collect()
}

/// Changes after `seq`, oldest first.
pub async fn after<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    seq: i64,
    limit: i64,
) -> Result<Vec<ChangeRow>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, user_id, changed_at, cause, answer FROM entitlement_changes WHERE seq > $1 \
         ORDER BY seq LIMIT $2",
    )
    .bind(seq)
    .bind(limit)
    .fetch_all(ex)
    .await?
    .iter()
    .map(change_from)
    .collect()
}

/// The user's change in force at `at` (the newest at or before it), and the user's oldest kept one.
pub async fn at<'c, E: Executor<'c, Database = Any> + Copy>(
    ex: E,
    user: &str,
    at: DateTime<Utc>,
) -> Result<(Option<ChangeRow>, Option<ChangeRow>), sqlx::Error> {
    let in_force = sqlx::query(
        "SELECT seq, user_id, changed_at, cause, answer FROM entitlement_changes \
         WHERE user_id = $1 AND changed_at <= $2 ORDER BY changed_at DESC, seq DESC LIMIT 1",
    )
    .bind(user)
    .bind(at.timestamp())
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(change_from)
    .transpose()?;
    let first = sqlx::query(
        "SELECT seq, user_id, changed_at, cause, answer FROM entitlement_changes \
         WHERE user_id = $1 ORDER BY changed_at, seq LIMIT 1",
    )
    .bind(user)
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(change_from)
    .transpose()?;
    Ok((in_force, first))
}

/// A user's changes, newest first (the admin page's history).
pub async fn for_user<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    user: &str,
    limit: i64,
) -> Result<Vec<ChangeRow>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, user_id, changed_at, cause, answer FROM entitlement_changes \
         WHERE user_id = $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(user)
    .bind(limit)
    .fetch_all(ex)
    .await?
    .iter()
    .map(change_from)
    .collect()
}

/// Removes changes older than `before`, except each user's newest (it is still their answer);
/// remembers the newest seq removed. Returns how many were removed.
pub async fn prune(tx: &mut AnyConnection, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let newest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(c.seq) FROM entitlement_changes c WHERE c.changed_at < $1 \
         AND c.seq NOT IN (SELECT seq FROM entitlement_answers)",
    )
    .bind(before.timestamp())
    .fetch_one(&mut *tx)
    .await?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    let done = sqlx::query(
        "DELETE FROM entitlement_changes WHERE changed_at < $1 \
         AND seq NOT IN (SELECT seq FROM entitlement_answers)",
    )
    .bind(before.timestamp())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE entitlement_feed SET pruned_through = CASE WHEN pruned_through > $1 \
         THEN pruned_through ELSE $1 END WHERE id = 1",
    )
    .bind(newest)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected())
}

/// Where a change-feed endpoint's deliveries stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint.
    pub url: String,
    /// The newest seq it acknowledged.
    pub delivered_seq: i64,
    /// Failed attempts in a row.
    pub attempts: i64,
    /// When the next attempt is due (after a failure).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// What the last failure was.
    pub last_error: Option<String>,
    /// Failing since (`None`: the last attempt succeeded).
    pub failing_since: Option<DateTime<Utc>>,
    /// The last delivery it acknowledged.
    pub last_success_at: Option<DateTime<Utc>>,
}

/// Adds an endpoint (delivering the changes after `from`) unless it is known.
pub async fn add_endpoint<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    url: &str,
    from: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO feed_endpoints (url, delivered_seq) VALUES ($1, $2) ON CONFLICT (url) DO NOTHING",
    )
    .bind(url)
    .bind(from)
    .execute(ex)
    .await?;
    Ok(())
}

/// Takes (or renews) the lease on an endpoint that is due; its delivered seq, or `None` when
/// another instance holds it or it waits out a failure.
pub async fn lease_endpoint<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    url: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    Ok(sqlx::query_scalar(
        "UPDATE feed_endpoints SET locked_until = $1 WHERE url = $2 \
         AND (locked_until IS NULL OR locked_until < $3) \
         AND (next_attempt_at IS NULL OR next_attempt_at <= $3) RETURNING delivered_seq",
    )
    .bind(until.timestamp())
    .bind(url)
    .bind(now.timestamp())
    .fetch_all(ex)
    .await?
    .pop())
}

/// Records that the endpoint acknowledged `seq` (and everything before it).
pub async fn delivered<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    url: &str,
    seq: i64,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE feed_endpoints SET delivered_seq = $1, attempts = 0, next_attempt_at = NULL, \
         last_error = NULL, failing_since = NULL, last_success_at = $2, locked_until = $3 WHERE url = $4",
    )
    .bind(seq)
    .bind(now.timestamp())
    .bind(lease_until.timestamp())
    .bind(url)
    .execute(ex)
    .await?;
    Ok(())
}

/// Records a failed attempt: the next one waits 2^attempts seconds (at most an hour); the lease is
/// given back.
pub async fn delivery_failed<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    url: &str,
    error: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE feed_endpoints SET attempts = attempts + 1, last_error = $1, locked_until = NULL, \
         failing_since = COALESCE(failing_since, $2), \
         next_attempt_at = $2 + (CASE WHEN attempts + 1 >= 12 THEN 3600 ELSE (CAST(1 AS BIGINT) << CAST(attempts + 1 AS INTEGER)) END) \
         WHERE url = $3",
    )
    .bind(error)
    .bind(now.timestamp())
    .bind(url)
    .execute(ex)
    .await?;
    Ok(())
}

/// Gives the lease back (nothing left to deliver now).
pub async fn release_endpoint<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    url: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE feed_endpoints SET locked_until = NULL WHERE url = $1")
        .bind(url)
        .execute(ex)
        .await?;
    Ok(())
}

/// Every endpoint's state, by URL.
pub async fn endpoints<'c, E: Executor<'c, Database = Any>>(
    ex: E,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    let time = |row: &AnyRow, c: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map(from_unix))
    };
    sqlx::query(
        "SELECT url, delivered_seq, attempts, next_attempt_at, last_error, failing_since, \
         last_success_at FROM feed_endpoints ORDER BY url",
    )
    .fetch_all(ex)
    .await?
    .iter()
    .map(|row| {
        Ok(Endpoint {
            url: row.try_get("url")?,
            delivered_seq: row.try_get("delivered_seq")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: time(row, "next_attempt_at")?,
            last_error: row.try_get("last_error")?,
            failing_since: time(row, "failing_since")?,
            last_success_at: time(row, "last_success_at")?,
        })
    })
    .collect()
}
