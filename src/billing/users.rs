//! Creating users.

use chrono::Utc;

use crate::billing::Billing;
use crate::db;
use crate::db::users::User;
use crate::domain::{Email, UserId};
use crate::error::AppError;

/// Whether `create` made the user or found it as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new row.
    New,
    /// The same user existed already (same id, same email).
    Existing,
}

/// Creates the user, idempotently: the same id and email again returns the stored user; the same id
/// with another email is a conflict. The insert decides, so concurrent calls cannot both create.
pub async fn create(
    state: &Billing,
    id: &UserId,
    email: &Email,
) -> Result<(User, Created), AppError> {
    let mut conn = state.db.pool.acquire().await?;
    let inserted = db::users::insert_if_absent(&mut *conn, id, email, Utc::now()).await?;
    let user = db::users::find(&mut *conn, id)
        .await?
        .ok_or_else(|| AppError::Internal(format!("user {id} vanished right after its insert")))?;
    if inserted {
        // Events that named this user before it existed can be applied now.
        if db::events::requeue_unmatched_for_user(&mut *conn, id.as_str()).await? > 0 {
            state.wake.notify_one();
        }
        // An "unknown user" answer may be cached: it is not true any more.
        drop(conn);
        crate::billing::entitlement::changed(state, id).await?;
        return Ok((user, Created::New));
    }
    if &user.email != email {
        return Err(AppError::Conflict {
            code: "user_exists",
            message: format!("user {id} exists with another email address"),
        });
    }
    Ok((user, Created::Existing))
}

/// Follows the Auth service's address for an existing user.
pub async fn update_email(state: &Billing, id: &UserId, email: &Email) -> Result<(), AppError> {
    Ok(db::users::set_email(&state.db.pool, id, email).await?)
}
