//! The truck owner's pages: plans, the Checkout return and cancel pages, the account page, and
//! signing in (the Auth service's hand-off, and a dev form in debug mode).

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tower_sessions::Session;

use crate::billing::entitlement::{self, EntitlementAnswer};
use crate::billing::{checkout, plans, users};
use crate::db;
use crate::domain::{Email, EntitlementStatus, Plan, Reason, UserId};
use crate::error::AppError;
use crate::web::AppState;
use crate::web::html::{Chrome, is_htmx, render};
use crate::web::limits::Limited;
use crate::web::session::{self, CsrfForm, NoFields, SessionForm, SessionUser};

/// The owner's pages and sign-in.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(plans_page))
        .route("/billing/return", get(return_page))
        .route("/billing/return/status", get(return_status))
        .route("/billing/cancel", get(cancel_page))
        .route("/account", get(account_page))
        .route("/auth/handoff", get(handoff))
        .route("/auth/signin", get(signin_page))
        .route("/auth/dev-signin", post(dev_signin))
        .route("/auth/signout", post(signout))
}

/// "Tue 3 Dec" (with the year when it is not this year).
pub fn day(t: DateTime<Utc>) -> String {
    if t.format("%Y").to_string() == Utc::now().format("%Y").to_string() {
        t.format("%a %-d %b").to_string()
    } else {
        t.format("%a %-d %b %Y").to_string()
    }
}

/// The status in the owner's words: "Active — renews Tue 3 Dec".
pub fn summary(answer: &EntitlementAnswer) -> String {
    let e = answer.entitlement.as_ref();
    let end = e.and_then(|e| e.current_period_end).map(day);
    match answer.decision.reason {
        Reason::Active => match (e.is_some_and(|e| e.cancel_at_period_end), end) {
            (true, Some(end)) => format!("Active — ends on {end}"),
            (false, Some(end)) => format!("Active — renews {end}"),
            (_, None) => "Active".into(),
        },
        Reason::Trialing => end.map_or("Free trial".into(), |end| {
            format!("Free trial — ends {end}")
        }),
        Reason::PastDueGrace => format!(
            "Payment failed — access kept until {}",
            answer.decision.valid_until.map(day).unwrap_or_default()
        ),
        Reason::PastDue => "Payment failed — paid features are off".into(),
        Reason::Paused => "Paused".into(),
        Reason::Canceled => end.map_or("Canceled".into(), |end| format!("Canceled — ended {end}")),
        Reason::NoSubscription => "No subscription".into(),
        Reason::Complimentary => format!(
            "Complimentary access until {}",
            answer.decision.valid_until.map(day).unwrap_or_default()
        ),
    }
}

fn css_status(answer: &EntitlementAnswer) -> &'static str {
    answer.status()
}

struct OfferView {
    id: &'static str,
    title: &'static str,
    price: String,
    blurb: &'static str,
}

#[derive(Template)]
#[template(path = "pages/plans.html")]
struct PlansPage {
    chrome: Chrome,
    user_id: String,
    status: &'static str,
    status_label: String,
    subscribed: bool,
    current_plan: Option<String>,
    plans: Vec<OfferView>,
}

async fn plans_page(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Response, AppError> {
    let answer = entitlement::check(&state, &user.id).await?;
    let subscribed = db::subscriptions::for_user(&state.db.pool, user.id.as_str())
        .await?
        .iter()
        .any(|s| s.stripe_status.blocks_new_checkout());
    let plans = plans::offers(&state)
        .await
        .into_iter()
        .map(|o| match o.plan {
            Plan::Weekly => OfferView {
                id: "weekly",
                title: "Weekly",
                price: o.price,
                blurb: "Pay week by week; stop any time.",
            },
            Plan::Monthly => OfferView {
                id: "monthly",
                title: "Monthly",
                price: o.price,
                blurb: "One payment a month; the better deal.",
            },
        })
        .collect();
    Ok(render(&PlansPage {
        chrome: Chrome::new(&state, Some(&user)),
        user_id: user.id.to_string(),
        status: css_status(&answer),
        status_label: summary(&answer),
        subscribed,
        current_plan: answer
            .entitlement
            .as_ref()
            .and_then(|e| e.plan)
            .map(|p| p.to_string()),
        plans,
    }))
}

#[derive(Deserialize)]
struct ReturnParams {
    session_id: String,
}

/// A fragment is embedded in its page as a value: its own template escapes everything it shows.
impl askama::filters::HtmlSafe for ReturnStatus {}

#[derive(Template)]
#[template(path = "pages/_return_status.html")]
struct ReturnStatus {
    session_id: String,
    /// The count the next poll carries, so polling stops after [`MAX_POLLS`].
    next_poll: u32,
    entitled: bool,
    polling: bool,
    status: &'static str,
    summary: String,
}

#[derive(Template)]
#[template(path = "pages/return.html")]
struct ReturnPage {
    chrome: Chrome,
    session_id: String,
    fragment: ReturnStatus,
}

/// How long the return page keeps polling (one request a second), counted by the server per
/// Checkout Session.
pub const MAX_POLLS: u32 = 90;

async fn return_fragment(
    state: &AppState,
    user: &UserId,
    params: &ReturnParams,
) -> Result<ReturnStatus, AppError> {
    state.limits.take(Limited::Return, user)?;
    // Counted here, not taken from the page's `n`: a script could send any `n`.
    let polls = state.limits.poll(&params.session_id);
    // The success-page sync: apply the session now rather than wait for the webhook. Failing that
    // (Stripe slow), the webhook will do it and the polling shows it. Past the poll cap the page
    // only shows what the store says.
    if polls <= MAX_POLLS
        && let Err(e) = checkout::sync_session(state, user, &params.session_id).await
    {
        match e {
            AppError::NotFound(_) | AppError::Invalid { .. } => return Err(e),
            other => {
                tracing::warn!(error = %other, "success-page sync failed; waiting for the webhook")
            }
        }
    }
    let answer = entitlement::check(state, user).await?;
    let entitled = answer.decision.entitled;
    Ok(ReturnStatus {
        session_id: params.session_id.clone(),
        next_poll: polls.saturating_add(1),
        entitled,
        polling: !entitled && polls < MAX_POLLS,
        status: css_status(&answer),
        summary: summary(&answer),
    })
}

async fn return_page(
    State(state): State<AppState>,
    user: SessionUser,
    Query(params): Query<ReturnParams>,
) -> Result<Response, AppError> {
    let fragment = return_fragment(&state, &user.id, &params).await?;
    Ok(render(&ReturnPage {
        chrome: Chrome::new(&state, Some(&user)),
        session_id: params.session_id,
        fragment,
    }))
}

async fn return_status(
    State(state): State<AppState>,
    user: SessionUser,
    Query(params): Query<ReturnParams>,
) -> Result<Response, AppError> {
    let fragment = return_fragment(&state, &user.id, &params).await?;
    Ok(render(&fragment))
}

#[derive(Template)]
#[template(path = "pages/cancel.html")]
struct CancelPage {
    chrome: Chrome,
}

async fn cancel_page(State(state): State<AppState>, user: Option<SessionUser>) -> Response {
    render(&CancelPage {
        chrome: Chrome::new(&state, user.as_ref()),
    })
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    chrome: Chrome,
    status: &'static str,
    summary: String,
    plan: Option<String>,
    paused: bool,
    past_due: bool,
    action_needed: bool,
    complimentary: Option<String>,
    has_customer: bool,
    access_since: Option<String>,
}

async fn account_page(
    State(state): State<AppState>,
    user: SessionUser,
) -> Result<Response, AppError> {
    let answer = entitlement::check(&state, &user.id).await?;
    let stored = db::users::find(&state.db.pool, &user.id).await?;
    let e = answer.entitlement.as_ref();
    let complimentary = stored
        .as_ref()
        .and_then(|u| u.complimentary_until.filter(|t| *t > Utc::now()))
        .filter(|_| answer.decision.reason != Reason::Complimentary)
        .map(|until| format!("Support also granted you access until {}.", day(until)));
    Ok(render(&AccountPage {
        chrome: Chrome::new(&state, Some(&user)),
        status: css_status(&answer),
        summary: summary(&answer),
        plan: e.and_then(|e| e.plan).map(|p| p.to_string()),
        paused: e.is_some_and(|e| e.pause_active && e.status != EntitlementStatus::Canceled),
        past_due: e.is_some_and(|e| e.status == EntitlementStatus::PastDue && !e.pause_active),
        action_needed: e.is_some_and(|e| e.action_required),
        complimentary,
        has_customer: stored.is_some_and(|u| u.stripe_customer_id.is_some()),
        access_since: if answer.decision.entitled {
            crate::billing::feed::entitled_since(&state, &user.id)
                .await?
                .map(day)
        } else {
            None
        },
    }))
}

#[derive(Template)]
#[template(path = "pages/signin.html")]
struct SigninPage {
    chrome: Chrome,
    problem: Option<String>,
    recent: Vec<String>,
    /// The Auth service's sign-in page, with this browser's `state` and our hand-off address.
    auth_link: Option<String>,
}

fn https(state: &AppState) -> bool {
    state.settings.public_url.scheme() == "https"
}

/// The sign-in page. It gives the browser a `state` nonce (a ten-minute cookie) that the Auth
/// service puts into the token's `nonce` claim, so a hand-off link opens a session only in the
/// browser that asked for it. In debug mode it also shows the developer sign-in form.
async fn signin_page_with(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    problem: Option<String>,
) -> Result<Response, AppError> {
    // A refused hand-off leaves the browser exactly as it was: no new session, no new cookie.
    let refused = problem.is_some();
    let mut chrome = Chrome::new(state, None);
    let recent = if state.settings.debug {
        chrome.csrf = if refused {
            session::existing_csrf_token(session).await?
        } else {
            session::csrf_token(session).await?
        };
        db::admin::recent_users(&state.db.pool, 10).await?
    } else {
        Vec::new()
    };
    let https = https(state);
    let (nonce, set_cookie) = match session::auth_state(headers, https) {
        Some(nonce) => (Some(nonce), None),
        None if refused => (None, None),
        None => {
            let (nonce, cookie) = session::new_auth_state(https);
            (Some(nonce), Some(cookie))
        }
    };
    let link_base = state.settings.auth_signin_url.as_ref().zip(nonce);
    let auth_link = link_base.map(|(base, nonce)| {
        let mut url = base.clone();
        let handoff = state
            .settings
            .public_url
            .join("auth/handoff")
            .map(|u| u.to_string())
            .unwrap_or_default();
        url.query_pairs_mut()
            .append_pair("state", &nonce)
            .append_pair("redirect_uri", &handoff);
        url.to_string()
    });
    let mut page = render(&SigninPage {
        chrome,
        problem,
        recent,
        auth_link,
    });
    if let Some(cookie) = set_cookie {
        page.headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(page)
}

async fn signin_page(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    signin_page_with(&state, &session, &headers, None).await
}

#[derive(Deserialize)]
struct HandoffParams {
    #[serde(default)]
    token: String,
}

/// `GET /auth/handoff?token=…`: a valid, unused token signs the user in (creating them if new) and
/// redirects to the plans, leaving no token in the address bar; anything else gets a clear page
/// and no session. The token's `nonce` must be this browser's `state` cookie (see
/// [`signin_page_with`]); a token without one is accepted only with `MSR_AUTH_REQUIRE_NONCE=false`.
/// The token never reaches a log (spans log the path only).
async fn handoff(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(params): Query<HandoffParams>,
) -> Result<Response, AppError> {
    let refuse = |problem: String| async {
        let mut page = signin_page_with(&state, &session, &headers, Some(problem)).await?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        Ok::<Response, AppError>(page)
    };
    let Some(secret) = &state.settings.auth_secret else {
        return refuse("Sign-in links are not configured on this server (MSR_AUTH_SECRET).".into())
            .await;
    };
    let now = Utc::now().timestamp();
    let https = https(&state);
    let bound = |v: &crate::auth::Handoff| {
        use subtle::ConstantTimeEq;
        match (&v.nonce, session::auth_state(&headers, https)) {
            (Some(nonce), Some(cookie))
                if bool::from(nonce.as_bytes().ct_eq(cookie.as_bytes())) =>
            {
                Ok(())
            }
            (Some(_), _) => Err(crate::auth::TokenError::NonceMismatch),
            (None, _) if state.settings.auth_require_nonce => {
                Err(crate::auth::TokenError::NonceMissing)
            }
            (None, _) => Ok(()),
        }
    };
    let verified = match crate::auth::verify(&params.token, secret.expose().as_bytes(), now)
        .and_then(|v| bound(&v).map(|()| v))
    {
        Ok(v) => v,
        Err(e) => {
            tracing::info!(reason = %e, "hand-off refused");
            return refuse(format!("{e}.")).await;
        }
    };
    db::admin::forget_expired_tokens(&state.db.pool, crate::domain::time::from_unix(now)).await?;
    if !db::admin::use_token(
        &state.db.pool,
        &verified.jti,
        crate::domain::time::from_unix(verified.exp),
    )
    .await?
    {
        tracing::info!(user.id = %verified.user_id, "hand-off token replayed");
        return refuse(format!("{}.", crate::auth::TokenError::Replayed)).await;
    }
    match users::create(&state, &verified.user_id, &verified.email).await {
        Ok(_) => {}
        // The Auth service owns the address: follow it.
        Err(AppError::Conflict { .. }) => {
            users::update_email(&state, &verified.user_id, &verified.email).await?
        }
        Err(other) => return Err(other),
    }
    session::sign_in(&session, &state, &verified.user_id, verified.admin).await?;
    tracing::info!(user.id = %verified.user_id, admin = verified.admin, "signed in by hand-off");
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        axum::http::header::SET_COOKIE,
        session::clear_auth_state(https),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct DevSigninForm {
    user_id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    admin: Option<String>,
}

/// Debug only: sign in as any user (creating them when an e-mail is given). The form carries the
/// CSRF token the sign-in page gave this browser's session.
async fn dev_signin(
    State(state): State<AppState>,
    SessionForm { session, form, .. }: SessionForm<DevSigninForm>,
) -> Result<Response, AppError> {
    if !state.settings.debug {
        return Err(AppError::NotFound("no such route".into()));
    }
    let id = UserId::parse(form.user_id.trim())
        .map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))?;
    if db::users::find(&state.db.pool, &id).await?.is_none() {
        let email = Email::parse(&form.email).map_err(|_| {
            AppError::invalid(
                "invalid_email",
                format!("user {id} does not exist yet: give an e-mail address to create it"),
            )
        })?;
        users::create(&state, &id, &email).await?;
    }
    session::sign_in(&session, &state, &id, form.admin.as_deref() == Some("true")).await?;
    Ok(Redirect::to("/").into_response())
}

async fn signout(CsrfForm { user, .. }: CsrfForm<NoFields>) -> Result<Response, AppError> {
    session::sign_out(&user.session).await?;
    Ok(Redirect::to("/auth/signin").into_response())
}

/// The browser side of `POST /billing/checkout`: a form with the plan, answered 303 to Stripe.
pub async fn checkout_form(
    state: &AppState,
    form: CsrfForm<PlanForm>,
) -> Result<Response, AppError> {
    let plan: Plan = form
        .form
        .plan
        .parse()
        .map_err(|e: crate::domain::InvalidValue| {
            AppError::invalid("invalid_plan", e.to_string())
        })?;
    let started = checkout::start(state, &form.user.id, plan).await?;
    Ok(Redirect::to(&started.url).into_response())
}

/// The browser side of `POST /billing/portal`: 303 to the Stripe portal.
pub async fn portal_form(state: &AppState, form: CsrfForm<NoFields>) -> Result<Response, AppError> {
    state.limits.take(Limited::Portal, &form.user.id)?;
    let url = checkout::open_portal(state, &form.user.id).await?;
    Ok(Redirect::to(&url).into_response())
}

/// The checkout form.
#[derive(Debug, Deserialize)]
pub struct PlanForm {
    plan: String,
}

/// Whether a response should be a fragment (htmx) or a full page.
pub fn wants_fragment(headers: &HeaderMap) -> bool {
    is_htmx(headers)
}
