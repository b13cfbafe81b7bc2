//! Starting a Checkout, opening the customer portal, and the success-page sync. Written once for
//! the JSON API and (later) the browser forms.

use chrono::Utc;

use crate::billing::Billing;
use crate::billing::apply;
use crate::db;
use crate::db::users::User;
use crate::domain::{Plan, UserId};
use crate::error::AppError;
use crate::stripe::api::CheckoutRequest;
use crate::stripe::{StripeCallError, objects};

/// A Checkout Session to send the owner to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutStarted {
    /// Stripe's hosted page.
    pub url: String,
    /// `cs_…`.
    pub session_id: String,
}

async fn known_user(state: &Billing, id: &UserId) -> Result<User, AppError> {
    db::users::find(&state.db.pool, id)
        .await?
        .ok_or_else(|| AppError::UnknownUser(id.to_string()))
}

/// Runs a Stripe create with an Idempotency-Key `<purpose>:<attempt>`; after a definitive failure
/// the attempt moves on (Stripe would replay the failure for 24 h), after a timeout it does not (the
/// same key must find out whether the first try went through).
async fn with_idempotency<T, F, Fut>(state: &Billing, purpose: &str, f: F) -> Result<T, AppError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, StripeCallError>>,
{
    let attempt = db::checkout::attempt(&state.db.pool, purpose).await?;
    match f(format!("{purpose}:{attempt}")).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if e.is_definitive() {
                db::checkout::next_attempt(&state.db.pool, purpose, attempt).await?;
            }
            Err(e.into())
        }
    }
}

/// The user's Stripe customer, created once: stored before any Checkout Session is made; concurrent
/// calls send the same Idempotency-Key and so get the same customer.
pub async fn ensure_customer(state: &Billing, user: &User) -> Result<String, AppError> {
    if let Some(c) = &user.stripe_customer_id {
        return Ok(c.to_string());
    }
    let api = state.stripe()?;
    let purpose = format!("customer:{}", user.id);
    let customer = with_idempotency(state, &purpose, |key| async move {
        api.create_customer(&user.id, &user.email, &key).await
    })
    .await?;
    let mut tx = state.db.begin_write().await?;
    let linked = db::users::link_customer(&mut *tx, &user.id, &customer).await?;
    let stored = db::users::find(&mut *tx, &user.id)
        .await?
        .and_then(|u| u.stripe_customer_id);
    if linked {
        db::events::requeue_unmatched(&mut *tx, &customer).await?;
    }
    tx.commit().await?;
    match stored {
        Some(c) => Ok(c.to_string()),
        None => Err(AppError::Internal(format!(
            "customer {customer} could not be linked to user {}",
            user.id
        ))),
    }
}

/// Starts a Checkout for a plan, or returns the open one for that plan. A user who already has a
/// subscription that is not over gets 409 (the portal is where plans change).
pub async fn start(
    state: &Billing,
    user_id: &UserId,
    plan: Plan,
) -> Result<CheckoutStarted, AppError> {
    let api = state.stripe()?;
    let user = known_user(state, user_id).await?;
    let price = state
        .prices
        .of(plan)
        .ok_or_else(|| {
            AppError::Internal(format!(
                "no price configured for the {plan} plan (STRIPE_PRICE_{})",
                plan.as_str().to_uppercase()
            ))
        })?
        .to_owned();
    let subscriptions = db::subscriptions::for_user(&state.db.pool, user_id.as_str()).await?;
    if let Some(live) = subscriptions
        .iter()
        .find(|s| s.stripe_status.blocks_new_checkout())
    {
        return Err(AppError::Conflict {
            code: "subscription_exists",
            message: format!(
                "user {user_id} already has a subscription ({}, {}); manage it in the customer portal: POST /billing/portal",
                live.id,
                live.stripe_status.as_str()
            ),
        });
    }
    let now = Utc::now();
    if let Some(open) =
        db::checkout::open_session(&state.db.pool, user_id.as_str(), plan.as_str(), now).await?
    {
        return Ok(CheckoutStarted {
            url: open.url,
            session_id: open.id,
        });
    }
    db::checkout::expire_stale(&state.db.pool, user_id.as_str(), now).await?;
    let customer = ensure_customer(state, &user).await?;
    let trial_days = (state.settings.trial_days > 0 && subscriptions.is_empty())
        .then_some(state.settings.trial_days);
    let success_url = with_session_placeholder(state.settings.frontend_return_url.as_str());
    let request = CheckoutRequest {
        customer: &customer,
        price: &price,
        user_id,
        success_url: &success_url,
        cancel_url: state.settings.frontend_cancel_url.as_str(),
        trial_days,
    };
    // Concurrent calls send the same key, so Stripe answers all of them with one session; the attempt
    // moves on when that session completes or expires, so the next checkout gets a new one.
    let purpose = format!("checkout:{user_id}:{plan}");
    let created = with_idempotency(state, &purpose, |key| async move {
        api.create_checkout_session(&request, &key).await
    })
    .await?;
    let mut conn = state.db.pool.acquire().await?;
    db::checkout::remember(
        &mut conn,
        &created.id,
        user_id.as_str(),
        plan.as_str(),
        &created.url,
        crate::domain::time::from_unix(created.expires_at),
        now,
    )
    .await?;
    tracing::info!(user.id = %user_id, session = %created.id, %plan, "checkout started");
    Ok(CheckoutStarted {
        url: created.url,
        session_id: created.id,
    })
}

/// Stripe replaces `{CHECKOUT_SESSION_ID}` in the success URL; add it when the configured URL lacks it.
/// (The url crate percent-encodes braces in queries; Stripe wants them literal.)
fn with_session_placeholder(url: &str) -> String {
    let url = url.replace("%7BCHECKOUT_SESSION_ID%7D", "{CHECKOUT_SESSION_ID}");
    if url.contains("{CHECKOUT_SESSION_ID}") {
        url
    } else if url.contains('?') {
        format!("{url}&session_id={{CHECKOUT_SESSION_ID}}")
    } else {
        format!("{url}?session_id={{CHECKOUT_SESSION_ID}}")
    }
}

/// A customer portal session for the user. 409 when the user has no Stripe customer yet.
pub async fn open_portal(state: &Billing, user_id: &UserId) -> Result<String, AppError> {
    let api = state.stripe()?;
    let user = known_user(state, user_id).await?;
    let Some(customer) = user.stripe_customer_id else {
        return Err(AppError::Conflict {
            code: "no_customer",
            message: format!("user {user_id} has no Stripe customer yet; start a checkout first"),
        });
    };
    Ok(api
        .create_portal_session(
            customer.as_str(),
            state.settings.billing_portal_return_url.as_str(),
        )
        .await?)
}

/// The success-page sync: when the owner lands back from Checkout, apply the session and its
/// subscription at once instead of waiting for the webhook. The session must belong to `user_id`.
pub async fn sync_session(
    state: &Billing,
    user_id: &UserId,
    session_id: &str,
) -> Result<(), AppError> {
    if !session_id.starts_with("cs_")
        || session_id.len() > 255
        || !session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(AppError::invalid(
            "invalid_session_id",
            "session_id must be a Checkout Session id (cs_…)",
        ));
    }
    let api = state.stripe()?;
    known_user(state, user_id).await?;
    let not_found = || {
        AppError::NotFound(format!(
            "no checkout session {session_id} for user {user_id}"
        ))
    };
    // Ours and this user's, or Stripe is not asked at all: the rate limit is shared by every
    // owner, and a made-up or someone else's id must not spend it.
    let owner = db::checkout::owner(&state.db.pool, session_id).await?;
    if owner.as_deref() != Some(user_id.as_str()) {
        return Err(not_found());
    }
    let session = api.retrieve_checkout_session(session_id).await?;
    let info = objects::checkout_session(&session)
        .map_err(|e| AppError::Stripe(format!("unreadable checkout session: {e}")))?;
    if info.user_id(owner.as_deref()) != Some(user_id.as_str()) {
        return Err(not_found());
    }
    apply::apply_checkout_session(state, &info, Utc::now().timestamp()).await?;
    Ok(())
}
