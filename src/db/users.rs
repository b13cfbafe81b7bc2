//! The `users` table.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use crate::domain::{Email, StripeCustomerId, UserId};

use super::from_unix;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The platform's id.
    pub id: UserId,
    /// Lower-cased e-mail address.
    pub email: Email,
    /// Stripe's customer, once created.
    pub stripe_customer_id: Option<StripeCustomerId>,
    /// When the row was made.
    pub created_at: DateTime<Utc>,
    /// Support granted access until then.
    pub complimentary_until: Option<DateTime<Utc>>,
    /// Why (support's note).
    pub complimentary_note: Option<String>,
}

const COLUMNS: &str =
    "id, email, stripe_customer_id, created_at, complimentary_until, complimentary_note";

pub(crate) fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let decode = |column: &str, e: crate::domain::InvalidValue| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    let customer: Option<String> = row.try_get("stripe_customer_id")?;
    Ok(User {
        id: UserId::parse(&row.try_get::<String, _>("id")?).map_err(|e| decode("id", e))?,
        email: Email::parse(&row.try_get::<String, _>("email")?).map_err(|e| decode("email", e))?,
        stripe_customer_id: customer
            .map(|c| StripeCustomerId::parse(&c))
            .transpose()
            .map_err(|e| decode("stripe_customer_id", e))?,
        created_at: from_unix(row.try_get("created_at")?),
        complimentary_until: row
            .try_get::<Option<i64>, _>("complimentary_until")?
            .map(from_unix),
        complimentary_note: row.try_get("complimentary_note")?,
    })
}

/// Inserts the user unless one with that id exists. Returns whether a row was inserted.
pub async fn insert_if_absent<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id.as_str())
    .bind(email.as_str())
    .bind(now.timestamp())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The user with that id.
pub async fn find<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(ex)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}

/// The user linked to a Stripe customer.
pub async fn find_by_customer<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    customer: &str,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM users WHERE stripe_customer_id = $1"
    ))
    .bind(customer)
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// How many users there are.
pub async fn count<'c, E: Executor<'c, Database = Any>>(ex: E) -> Result<usize, sqlx::Error> {
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(ex)
        .await?;
    Ok(usize::try_from(users).unwrap_or(0))
}

/// (user id, customer id) of every user linked to one of `customers`.
pub async fn ids_by_customers<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    backend: super::Backend,
    customers: &[&str],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    if customers.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, stripe_customer_id FROM users WHERE stripe_customer_id IN ({})",
        super::placeholders(1, customers.len())
    );
    let sql = super::positional(sql, backend);
    // Not kept prepared: the text changes with the batch size.
    let mut query = sqlx::query_as(&sql).persistent(false);
    for c in customers {
        query = query.bind(*c);
    }
    query.fetch_all(ex).await
}

/// Links a customer to a user that has none yet. Returns whether the link was made (false when the
/// user already has a customer, or the customer belongs to another user).
pub async fn link_customer<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
    customer: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET stripe_customer_id = $1 WHERE id = $2 AND stripe_customer_id IS NULL \
         AND NOT EXISTS (SELECT 1 FROM users other WHERE other.stripe_customer_id = $1)",
    )
    .bind(customer)
    .bind(id.as_str())
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Grants (or with `None`, revokes) complimentary access.
pub async fn set_complimentary<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
    until: Option<DateTime<Utc>>,
    note: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET complimentary_until = $1, complimentary_note = $2 WHERE id = $3")
        .bind(until.map(|t| t.timestamp()))
        .bind(note)
        .bind(id.as_str())
        .execute(ex)
        .await?;
    Ok(())
}

/// Changes a user's e-mail address.
pub async fn set_email<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
    email: &Email,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
        .bind(email.as_str())
        .bind(id.as_str())
        .execute(ex)
        .await?;
    Ok(())
}

/// (user id, customer id) of every user with a Stripe customer, by id.
pub async fn with_customers<'c, E: Executor<'c, Database = Any>>(
    ex: E,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, stripe_customer_id FROM users WHERE stripe_customer_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(ex)
    .await
}

/// The user's session generation: sessions signed in at an older one are over.
pub async fn session_generation<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT session_generation FROM users WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(ex)
        .await
}

/// Ends every browser session of the user (they sign in again). Returns whether the user exists.
pub async fn end_sessions<'c, E: Executor<'c, Database = Any>>(
    ex: E,
    id: &UserId,
) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE users SET session_generation = session_generation + 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(ex)
            .await?;
    Ok(done.rows_affected() > 0)
}
