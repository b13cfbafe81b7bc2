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
}

fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
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
    sqlx::query("SELECT id, email, stripe_customer_id, created_at FROM users WHERE id = $1")
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
    sqlx::query(
        "SELECT id, email, stripe_customer_id, created_at FROM users WHERE stripe_customer_id = $1",
    )
    .bind(customer)
    .fetch_optional(ex)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
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
