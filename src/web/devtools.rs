//! `/dev` (debug only): create a user, look up their state, sign in as them, and drive their
//! subscription on the built-in simulator (renewal, failure, trial end, cancel, pause, redelivery)
//! while the status updates in place.

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tower_sessions::Session;

use crate::billing::{entitlement, users};
use crate::db;
use crate::domain::{Email, UserId};
use crate::error::AppError;
use crate::web::AppState;
use crate::web::html::{Chrome, is_htmx, render};
use crate::web::session::{self, CsrfForm, SessionForm, SessionUser};
use crate::web::wire;

/// The dev tools routes (mounted only in debug mode).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dev", get(tools_page))
        .route("/dev/lookup", get(lookup))
        .route("/dev/users", post(create_user))
        .route("/dev/sim/{action}", post(sim_action))
}

/// The simulator controls: (action, button label).
const CONTROLS: [(&str, &str); 11] = [
    ("advance_to_renewal", "Advance clock to renewal"),
    ("fail_next_renewal", "Fail next renewal"),
    ("card_fails", "Card starts failing"),
    ("card_ok", "Fix the card"),
    ("end_trial", "End trial now"),
    ("cancel_at_period_end", "Cancel at period end"),
    ("cancel", "Cancel now"),
    ("pause", "Pause collection"),
    ("unpause", "Resume collection"),
    ("resend_last", "Send last event again"),
    ("out_of_order", "Send an older event after the newest"),
];

#[derive(Template)]
#[template(path = "dev/_status.html")]
struct StatusFragment {
    problem: Option<String>,
    user_id: String,
    status: String,
    entitled: bool,
    reason: String,
    json: String,
    subscription: Option<String>,
    controls: Vec<(&'static str, &'static str)>,
    csrf: String,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "dev/tools.html")]
struct ToolsPage {
    chrome: Chrome,
    lookup: String,
    status: StatusFragment,
}

/// A fragment is embedded in its page as a value: its own template escapes everything it shows.
impl askama::filters::HtmlSafe for StatusFragment {}

/// The status of the user `raw` names, as `viewer` sees it: the simulator controls are shown only
/// for the viewer's own subscription, or to an admin.
async fn status_fragment(
    state: &AppState,
    raw: &str,
    done: Option<String>,
    viewer: Option<&SessionUser>,
) -> Result<StatusFragment, AppError> {
    let empty = |problem: String| StatusFragment {
        problem: Some(problem),
        user_id: String::new(),
        status: String::new(),
        entitled: false,
        reason: String::new(),
        json: String::new(),
        subscription: None,
        controls: Vec::new(),
        csrf: String::new(),
        done: None,
    };
    if raw.is_empty() {
        return Ok(empty("Enter a user id to see their state.".into()));
    }
    let Ok(id) = UserId::parse(raw) else {
        return Ok(empty(format!("{raw:?} is not a user id.")));
    };
    let answer = match entitlement::check_stored(state, &id).await {
        Ok(a) => a,
        Err(AppError::UnknownUser(_)) => return Ok(empty(format!("No user {raw:?}."))),
        Err(e) => return Err(e),
    };
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "entitlement": wire::stored_entitlement(&answer),
        "answer": wire::entitlement_answer(&answer),
    }))
    .unwrap_or_default();
    let subscription = answer
        .entitlement
        .as_ref()
        .and_then(|e| e.stripe_subscription_id.as_ref())
        .map(|s| s.to_string());
    Ok(StatusFragment {
        problem: None,
        user_id: id.to_string(),
        status: answer.status().into(),
        entitled: answer.decision.entitled,
        reason: answer.decision.reason.as_str().into(),
        json,
        subscription: subscription
            .filter(|_| state.sim.is_some() && viewer.is_some_and(|v| may_drive(v, &id))),
        controls: CONTROLS.to_vec(),
        csrf: viewer.map(|v| v.csrf.clone()).unwrap_or_default(),
        done,
    })
}

#[derive(Deserialize, Default)]
struct LookupParams {
    #[serde(default)]
    user_id: String,
}

/// Whether a developer may drive this user's subscription: their own, or anyone's for an admin.
fn may_drive(viewer: &SessionUser, user: &UserId) -> bool {
    viewer.admin || &viewer.id == user
}

async fn tools_page(
    State(state): State<AppState>,
    session: Session,
    user: Option<SessionUser>,
    Query(p): Query<LookupParams>,
) -> Result<Response, AppError> {
    let fragment = status_fragment(&state, p.user_id.trim(), None, user.as_ref()).await?;
    let mut chrome = Chrome::new(&state, user.as_ref());
    // Signed out, the create-user form still needs a token of this browser's session.
    chrome.csrf = session::csrf_token(&session).await?;
    Ok(render(&ToolsPage {
        chrome,
        lookup: p.user_id.clone(),
        status: fragment,
    }))
}

/// The status fragment for htmx; a full page otherwise (works without JavaScript).
async fn lookup(
    State(state): State<AppState>,
    headers: HeaderMap,
    user: Option<SessionUser>,
    Query(p): Query<LookupParams>,
) -> Result<Response, AppError> {
    if !is_htmx(&headers) {
        let query =
            serde_urlencoded::to_string([("user_id", p.user_id.as_str())]).unwrap_or_default();
        return Ok(Redirect::to(&format!("/dev?{query}")).into_response());
    }
    Ok(render(
        &status_fragment(&state, p.user_id.trim(), None, user.as_ref()).await?,
    ))
}

#[derive(Deserialize)]
struct NewUser {
    user_id: String,
    email: String,
}

/// Creates a test user and signs in as them (a CSRF-checked form: the dev page gave the token).
async fn create_user(
    State(state): State<AppState>,
    SessionForm { session, form, .. }: SessionForm<NewUser>,
) -> Result<Response, AppError> {
    let id = UserId::parse(form.user_id.trim())
        .map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))?;
    let email =
        Email::parse(&form.email).map_err(|e| AppError::invalid("invalid_email", e.to_string()))?;
    users::create(&state, &id, &email).await?;
    session::sign_in(&session, &state, &id, false).await?;
    let query = serde_urlencoded::to_string([("user_id", id.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/dev?{query}")).into_response())
}

#[derive(Deserialize)]
struct ActionForm {
    /// Whose subscription; the developer's own when absent. Another user's only for an admin.
    #[serde(default)]
    user_id: String,
}

/// Runs one simulator control on the signed-in developer's own subscription (or, for an admin, on
/// the user the form names), waits for its webhooks, and shows the new state.
async fn sim_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(action): Path<String>,
    CsrfForm { user: viewer, form }: CsrfForm<ActionForm>,
) -> Result<Response, AppError> {
    let sim = state
        .sim
        .clone()
        .ok_or_else(|| AppError::NotFound("the simulator runs only in demo mode".into()))?;
    let id = match form.user_id.trim() {
        "" => viewer.id.clone(),
        raw => {
            UserId::parse(raw).map_err(|e| AppError::invalid("invalid_user_id", e.to_string()))?
        }
    };
    if !may_drive(&viewer, &id) {
        return Err(AppError::Forbidden(format!(
            "only an admin may drive another user's subscription; you are signed in as {}",
            viewer.id
        )));
    }
    let entitlement = db::entitlements::find(&state.db.pool, &id).await?;
    let subscription = entitlement
        .and_then(|e| e.stripe_subscription_id)
        .ok_or_else(|| AppError::Conflict {
            code: "no_subscription",
            message: format!("user {id} has no subscription yet"),
        })?
        .to_string();
    let customer = db::users::find(&state.db.pool, &id)
        .await?
        .and_then(|u| u.stripe_customer_id)
        .map(|c| c.to_string())
        .unwrap_or_default();
    let sim_err =
        |e: msr_stripe_sim::StripeError| AppError::invalid("simulator_refused", e.message);
    let done = match action.as_str() {
        "advance_to_renewal" => match sim.advance_to_next_renewal(&subscription).await {
            Some(at) => format!(
                "Clock moved to the renewal at {}.",
                wire::time(crate::domain::time::from_unix(at))
            ),
            None => "This subscription will not renew.".into(),
        },
        "fail_next_renewal" => sim
            .fail_next_renewal(&subscription)
            .map(|()| "The next renewal will fail.".into())
            .map_err(sim_err)?,
        "card_fails" => sim
            .set_card(&customer, msr_stripe_sim::TestCard::ChargeCustomerFail)
            .await
            .map(|_| "The card now fails every charge.".into())
            .map_err(sim_err)?,
        "card_ok" => sim
            .set_card(&customer, msr_stripe_sim::TestCard::Visa)
            .await
            .map(|_| "A working card is on file.".into())
            .map_err(sim_err)?,
        "end_trial" => sim
            .end_trial_now(&subscription)
            .await
            .map(|()| "Trial ended.".into())
            .map_err(sim_err)?,
        "cancel_at_period_end" => sim
            .cancel_at_period_end(&subscription, true)
            .await
            .map(|()| "Set to cancel at the period end.".into())
            .map_err(sim_err)?,
        "cancel" => sim
            .cancel_subscription(&subscription)
            .await
            .map(|()| "Canceled now.".into())
            .map_err(sim_err)?,
        "pause" => sim
            .pause_collection(&subscription, Some("void"))
            .await
            .map(|()| "Collection paused.".into())
            .map_err(sim_err)?,
        "unpause" => sim
            .pause_collection(&subscription, None)
            .await
            .map(|()| "Collection resumed.".into())
            .map_err(sim_err)?,
        "resend_last" | "out_of_order" => {
            let mine: Vec<String> = sim
                .events()
                .into_iter()
                .filter(|e| {
                    let o = &e["data"]["object"];
                    o["customer"].as_str() == Some(customer.as_str())
                        || o["id"].as_str() == Some(customer.as_str())
                })
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect();
            let pick = if action == "resend_last" {
                mine.last()
            } else {
                mine.iter().rev().nth(1)
            };
            match pick {
                Some(ev) => {
                    sim.redeliver(ev).await;
                    format!("Event {ev} sent again.")
                }
                None => "No event to send.".into(),
            }
        }
        other => {
            return Err(AppError::NotFound(format!(
                "no simulator control {other:?}"
            )));
        }
    };
    sim.wait_for_deliveries(Duration::from_secs(5)).await;
    let fragment = status_fragment(&state, id.as_str(), Some(done), Some(&viewer)).await?;
    if is_htmx(&headers) {
        return Ok(render(&fragment));
    }
    let query = serde_urlencoded::to_string([("user_id", id.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/dev?{query}")).into_response())
}
