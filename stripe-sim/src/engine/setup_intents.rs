//! SetupIntents (`/v1/setup_intents`): saving a card without a payment. A succeeding card
//! is attached to the intent's customer; a declined one leaves `last_setup_error`; a 3-D
//! Secure card waits on the hosted authentication page (`auth/{id}`), like a PaymentIntent.
//! Checkout's setup mode keeps its own path (its `setup_intent` is an id only).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::payment_intents::{check_types, return_to};
use super::render::metadata;
use super::{State, TestCard, new_id};
use crate::error::StripeError;

/// A SetupIntent.
#[derive(Debug, Clone)]
pub struct SetupIntent {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: Option<String>,
    pub(crate) payment_method: Option<String>,
    /// `off_session` (default) or `on_session`.
    pub(crate) usage: String,
    pub(crate) payment_method_types: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
    pub(crate) last_setup_error: Option<Value>,
    pub(crate) return_url: Option<String>,
    pub(crate) cancellation_reason: Option<String>,
    pub(crate) client_secret: String,
}

/// Parameters of `POST /v1/setup_intents` and `POST /v1/setup_intents/{id}`.
#[derive(Debug, Clone, Default)]
pub struct SetupParams {
    /// `customer`.
    pub customer: Option<String>,
    /// `payment_method`: a `pm_…` id or a test shortcut.
    pub payment_method: Option<String>,
    /// `usage` (create only): `off_session` (default) or `on_session`.
    pub usage: Option<String>,
    /// `payment_method_types[]` (only `card`).
    pub payment_method_types: Option<Vec<String>>,
    /// `metadata`.
    pub metadata: Option<crate::form::MetadataUpdate>,
    /// `description`.
    pub description: Option<String>,
    /// `return_url` (create/confirm).
    pub return_url: Option<String>,
}

const OPEN: [&str; 3] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

impl State {
    /// `POST /v1/setup_intents`; emits `setup_intent.created` (then what `confirm=true` does).
    pub fn create_setup_intent(
        &mut self,
        p: SetupParams,
        confirm: bool,
    ) -> Result<String, StripeError> {
        let usage = p.usage.clone().unwrap_or_else(|| "off_session".into());
        if !matches!(usage.as_str(), "off_session" | "on_session") {
            return Err(StripeError::invalid_param(
                "usage",
                "Invalid usage: must be one of off_session or on_session.",
            ));
        }
        let types = p
            .payment_method_types
            .clone()
            .unwrap_or_else(|| vec!["card".into()]);
        check_types(&types)?;
        if let Some(c) = &p.customer
            && !self.customers.contains_key(c)
        {
            return Err(StripeError::missing("customer", c, "customer"));
        }
        let pm = match &p.payment_method {
            Some(pm) => Some(self.intent_payment_method(p.customer.as_deref(), pm)?),
            None => None,
        };
        let id = new_id("seti_");
        let seq = self.next_seq();
        let created = self.setup_time(p.customer.as_deref());
        self.setup_intents.insert(
            id.clone(),
            SetupIntent {
                client_secret: format!("{id}_secret_{}", new_id("")),
                id: id.clone(),
                seq,
                created,
                customer: p.customer,
                status: if pm.is_some() {
                    "requires_confirmation"
                } else {
                    "requires_payment_method"
                }
                .into(),
                payment_method: pm,
                usage,
                payment_method_types: types,
                metadata: p
                    .metadata
                    .map(crate::form::MetadataUpdate::into_map)
                    .unwrap_or_default(),
                description: p.description,
                last_setup_error: None,
                return_url: p.return_url,
                cancellation_reason: None,
            },
        );
        let obj = self.render_setup_intent(&id);
        self.emit("setup_intent.created", created, obj, None);
        if confirm {
            self.confirm_setup_intent(&id, None, None)?;
        }
        Ok(id)
    }

    fn setup_time(&self, customer: Option<&str>) -> i64 {
        customer.map_or_else(|| self.now(), |c| self.time_for_customer(c))
    }

    fn open_setup_intent(&self, id: &str, action: &str) -> Result<SetupIntent, StripeError> {
        let si = self
            .setup_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("setup_intent", id, "intent"))?;
        if !OPEN.contains(&si.status.as_str()) {
            return Err(StripeError::unexpected_state(
                "setup_intent_unexpected_state",
                format!(
                    "You cannot {action} this SetupIntent because it has a status of {}.",
                    si.status
                ),
            ));
        }
        Ok(si)
    }

    /// `POST /v1/setup_intents/{id}` while not final; no event, as on Stripe.
    pub fn update_setup_intent(&mut self, id: &str, p: SetupParams) -> Result<(), StripeError> {
        let si = self.open_setup_intent(id, "update")?;
        if let Some(t) = &p.payment_method_types {
            check_types(t)?;
        }
        let customer = p.customer.clone().or(si.customer.clone());
        if let Some(c) = &customer
            && !self.customers.contains_key(c)
        {
            return Err(StripeError::missing("customer", c, "customer"));
        }
        let pm = match &p.payment_method {
            Some(pm) => Some(self.intent_payment_method(customer.as_deref(), pm)?),
            None => None,
        };
        let Some(si) = self.setup_intents.get_mut(id) else {
            return Err(StripeError::missing("setup_intent", id, "intent"));
        };
        si.customer = customer;
        if let Some(pm) = pm {
            si.payment_method = Some(pm);
            if si.status == "requires_payment_method" {
                si.status = "requires_confirmation".into();
            }
        }
        if let Some(t) = p.payment_method_types {
            si.payment_method_types = t;
        }
        if let Some(m) = p.metadata {
            m.apply(&mut si.metadata);
        }
        if let Some(d) = p.description {
            si.description = Some(d).filter(|s| !s.is_empty());
        }
        if let Some(u) = p.return_url {
            si.return_url = Some(u);
        }
        Ok(())
    }

    /// `POST /v1/setup_intents/{id}/confirm`: a good card succeeds (attached to the
    /// customer, `payment_method.attached`), a 3-D Secure card needs the hosted page, a
    /// declined card answers 402 with the intent inside the error and `last_setup_error`.
    pub fn confirm_setup_intent(
        &mut self,
        id: &str,
        payment_method: Option<String>,
        return_url: Option<String>,
    ) -> Result<(), StripeError> {
        let si = self.open_setup_intent(id, "confirm")?;
        let pm = match payment_method {
            Some(pm) => Some(self.intent_payment_method(si.customer.as_deref(), &pm)?),
            None => si.payment_method.clone(),
        };
        let Some(pm) = pm else {
            return Err(StripeError::invalid_param(
                "payment_method",
                "You cannot confirm this SetupIntent because it's missing a payment method. \
                 Update it with a payment_method, or pass one to confirm.",
            ));
        };
        let card = self
            .payment_methods
            .get(&pm)
            .map_or(TestCard::Visa, |p| p.card);
        if let Some(si) = self.setup_intents.get_mut(id) {
            si.payment_method = Some(pm.clone());
            si.last_setup_error = None;
            if return_url.is_some() {
                si.return_url = return_url;
            }
        }
        match card {
            TestCard::AuthenticationRequired => {
                if let Some(si) = self.setup_intents.get_mut(id) {
                    si.status = "requires_action".into();
                }
                let now = self.setup_time(si.customer.as_deref());
                let obj = self.render_setup_intent(id);
                self.emit("setup_intent.requires_action", now, obj, None);
                Ok(())
            }
            TestCard::Declined => {
                self.fail_setup(id, "card_declined");
                let e = StripeError::card_declined("Your card was declined.");
                Err(e.with_object("setup_intent", self.render_setup_intent(id)))
            }
            TestCard::Visa | TestCard::ChargeCustomerFail => {
                self.succeed_setup(id);
                Ok(())
            }
        }
    }

    fn succeed_setup(&mut self, id: &str) {
        let Some(si) = self.setup_intents.get(id).cloned() else {
            return;
        };
        let now = self.setup_time(si.customer.as_deref());
        if let (Some(c), Some(pm)) = (&si.customer, &si.payment_method) {
            // Attaching an unattached or own card cannot fail here (declined cards never
            // reach this point), so its error is not expected.
            let _ = self.attach_payment_method(pm, c);
        }
        if let Some(s) = self.setup_intents.get_mut(id) {
            s.status = "succeeded".into();
        }
        let obj = self.render_setup_intent(id);
        self.emit("setup_intent.succeeded", now, obj, None);
    }

    fn fail_setup(&mut self, id: &str, code: &'static str) {
        let Some(si) = self.setup_intents.get(id).cloned() else {
            return;
        };
        let pm_obj = self.render_payment_method(si.payment_method.as_deref().unwrap_or_default());
        let err = if code == "card_declined" {
            json!({
                "type": "card_error",
                "code": code,
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                "payment_method": pm_obj,
            })
        } else {
            json!({
                "type": "invalid_request_error",
                "code": code,
                "message": "The latest attempt to set up the payment method has failed because \
                            authentication failed.",
                "doc_url": "https://stripe.com/docs/error-codes/setup-intent-authentication-failure",
                "payment_method": pm_obj,
            })
        };
        if let Some(s) = self.setup_intents.get_mut(id) {
            s.status = "requires_payment_method".into();
            s.payment_method = None;
            s.last_setup_error = Some(err);
        }
        let now = self.setup_time(si.customer.as_deref());
        let obj = self.render_setup_intent(id);
        self.emit("setup_intent.setup_failed", now, obj, None);
    }

    /// The hosted authentication page's answer for a `requires_action` SetupIntent;
    /// returns where to send the browser (from `return_url`, if the intent has one).
    pub fn authenticate_setup_intent(
        &mut self,
        id: &str,
        complete: bool,
    ) -> Result<Option<String>, StripeError> {
        let si = self
            .setup_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("setup_intent", id, "intent"))?;
        if si.status != "requires_action" {
            return Err(StripeError::unexpected_state(
                "setup_intent_unexpected_state",
                format!(
                    "This SetupIntent has a status of {}; nothing to authenticate.",
                    si.status
                ),
            ));
        }
        if complete {
            self.succeed_setup(id);
        } else {
            self.fail_setup(id, "setup_intent_authentication_failure");
        }
        Ok(si
            .return_url
            .map(|u| return_to(&u, "setup_intent", id, &si.client_secret, complete)))
    }

    /// `POST /v1/setup_intents/{id}/cancel` from a non-final status; emits
    /// `setup_intent.canceled`.
    pub fn cancel_setup_intent(
        &mut self,
        id: &str,
        reason: Option<String>,
    ) -> Result<(), StripeError> {
        let si = self.open_setup_intent(id, "cancel")?;
        if let Some(r) = &reason
            && !matches!(
                r.as_str(),
                "abandoned" | "duplicate" | "requested_by_customer"
            )
        {
            return Err(StripeError::invalid_param(
                "cancellation_reason",
                "Invalid cancellation_reason: must be one of abandoned, duplicate or \
                 requested_by_customer.",
            ));
        }
        if let Some(s) = self.setup_intents.get_mut(id) {
            s.status = "canceled".into();
            s.cancellation_reason = reason;
        }
        let now = self.setup_time(si.customer.as_deref());
        let obj = self.render_setup_intent(id);
        self.emit("setup_intent.canceled", now, obj, None);
        Ok(())
    }

    /// A SetupIntent (`Value::Null` if unknown).
    pub fn render_setup_intent(&self, id: &str) -> Value {
        let Some(si) = self.setup_intents.get(id) else {
            return Value::Null;
        };
        let next_action = (si.status == "requires_action").then(|| {
            json!({
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": format!("{}auth/{}", self.settings.public_url, si.id),
                    "return_url": si.return_url,
                },
            })
        });
        json!({
            "id": si.id,
            "object": "setup_intent",
            "application": null,
            "automatic_payment_methods": null,
            "cancellation_reason": si.cancellation_reason,
            "client_secret": si.client_secret,
            "created": si.created,
            "customer": si.customer,
            "description": si.description,
            "flow_directions": null,
            "last_setup_error": si.last_setup_error,
            "latest_attempt": null,
            "livemode": false,
            "mandate": null,
            "metadata": metadata(&si.metadata),
            "next_action": next_action,
            "on_behalf_of": null,
            "payment_method": si.payment_method,
            "payment_method_options": null,
            "payment_method_types": si.payment_method_types,
            "single_use_mandate": null,
            "status": si.status,
            "usage": si.usage,
        })
    }
}
