//! Recording Stripe events durably before anything else happens to them.

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::db;
use crate::db::events::{EventState, NewEvent};
use crate::error::AppError;
use crate::state::{AppState, Counters};
use crate::stripe::objects;

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

/// Records an event (raw payload kept). A body that is validly signed but not a readable event is
/// still recorded, as ignored, under an id made from its hash: it is never refused.
pub async fn record(state: &AppState, body: &[u8], source: &str) -> Result<Recorded, AppError> {
    let payload = String::from_utf8_lossy(body);
    let now = Utc::now().timestamp();
    let recorded = match objects::parse_event(body) {
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
            let new = db::events::record(
                &state.db.pool,
                &NewEvent {
                    id: &event.id,
                    kind: &event.kind,
                    created: event.created,
                    livemode: event.livemode,
                    source,
                    payload: &payload,
                    customer_id: customer.as_deref(),
                    subscription_id: subscription.as_deref(),
                    user_hint: user_hint.as_deref(),
                    state: initial,
                },
                now,
            )
            .await?;
            Recorded {
                id: event.id,
                new,
                state: initial,
            }
        }
        Err(reason) => {
            let id = format!("unparsed_{}", &hex::encode(Sha256::digest(body))[..32]);
            tracing::warn!(event = %id, %reason, "signed body is not a readable event; recorded as ignored");
            let new = db::events::record(
                &state.db.pool,
                &NewEvent {
                    id: &id,
                    kind: "unparsed",
                    created: now,
                    livemode: false,
                    source,
                    payload: &payload,
                    customer_id: None,
                    subscription_id: None,
                    user_hint: None,
                    state: EventState::Ignored,
                },
                now,
            )
            .await?;
            Recorded {
                id,
                new,
                state: EventState::Ignored,
            }
        }
    };
    Counters::bump(if recorded.new {
        &state.counters.events_recorded
    } else {
        &state.counters.events_duplicate
    });
    Ok(recorded)
}
