//! Recording Stripe events durably before anything else happens to them.

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::billing::Billing;
use crate::db;
use crate::db::events::{EventState, NewEvent};
use crate::error::AppError;
use crate::stripe::objects::{self, EventEnvelope};
use crate::telemetry::Counters;

/// What recording did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The event id (a synthetic `unparsed_…` id for a signed body that is not an event).
    pub id: String,
    /// False when the id was known already (a duplicate delivery).
    pub new: bool,
    /// The state it was recorded in.
    pub state: EventState,
}

/// A verified body read into the row to record (and, when it is an event, the event).
#[derive(Debug)]
pub struct Prepared {
    /// The event id (a synthetic `unparsed_…` id for a signed body that is not an event).
    pub id: String,
    kind: String,
    created: i64,
    livemode: bool,
    source: &'static str,
    payload: String,
    customer_id: Option<String>,
    subscription_id: Option<String>,
    user_hint: Option<String>,
    /// The state it is recorded in.
    pub state: EventState,
    /// The parsed event; `None` for a body that is not one.
    pub event: Option<EventEnvelope>,
}

impl Prepared {
    /// The row to insert.
    pub fn row(&self) -> NewEvent<'_> {
        NewEvent {
            id: &self.id,
            kind: &self.kind,
            created: self.created,
            livemode: self.livemode,
            source: self.source,
            payload: &self.payload,
            customer_id: self.customer_id.as_deref(),
            subscription_id: self.subscription_id.as_deref(),
            user_hint: self.user_hint.as_deref(),
            state: self.state,
        }
    }
}

/// Reads a verified body. A body that is validly signed but not a readable event is still
/// recorded, as ignored, under an id made from its hash: it is never refused.
pub fn prepare(state: &Billing, body: &[u8], source: &'static str) -> Prepared {
    let payload = String::from_utf8_lossy(body).into_owned();
    match objects::parse_event(body) {
        Ok(event) => {
            let expected_live = state.settings.stripe.mode.is_live();
            let initial = if event.livemode != expected_live {
                tracing::warn!(event = %event.id, livemode = event.livemode, "event livemode differs from the API key's; recorded, not applied");
                EventState::LivemodeMismatch
            } else {
                EventState::Pending
            };
            let customer = objects::customer_of(&event.kind, &event.object);
            let subscription = if event.kind.starts_with("customer.subscription.") {
                event
                    .object
                    .get("id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            } else if event.kind.starts_with("invoice.") {
                objects::invoice_subscription(&event.object)
            } else {
                objects::id_of(&event.object, "subscription")
            };
            let user_hint = event
                .object
                .get("client_reference_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .or_else(|| objects::object_user_id(&event.object));
            Prepared {
                id: event.id.clone(),
                kind: event.kind.clone(),
                created: event.created,
                livemode: event.livemode,
                source,
                payload,
                customer_id: customer,
                subscription_id: subscription,
                user_hint,
                state: initial,
                event: Some(event),
            }
        }
        Err(reason) => {
            let id = format!("unparsed_{}", &hex::encode(Sha256::digest(body))[..32]);
            tracing::warn!(event = %id, %reason, "signed body is not a readable event; recorded as ignored");
            Prepared {
                id,
                kind: "unparsed".into(),
                created: Utc::now().timestamp(),
                livemode: false,
                source,
                payload,
                customer_id: None,
                subscription_id: None,
                user_hint: None,
                state: EventState::Ignored,
                event: None,
            }
        }
    }
}

/// Counts a recorded event (new or a duplicate delivery).
pub fn count(state: &Billing, new: bool) {
    Counters::bump(if new {
        &state.counters.events_recorded
    } else {
        &state.counters.events_duplicate
    });
}

/// Records an event (raw payload kept), on its own.
pub async fn record(
    state: &Billing,
    body: &[u8],
    source: &'static str,
) -> Result<Recorded, AppError> {
    let prepared = prepare(state, body, source);
    let new = db::events::record(&state.db.pool, &prepared.row(), Utc::now()).await?;
    count(state, new);
    Ok(Recorded {
        id: prepared.id,
        new,
        state: prepared.state,
    })
}
