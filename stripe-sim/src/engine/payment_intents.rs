//! PaymentIntents (`/v1/payment_intents`) used directly through the API, and the charges
//! their attempts make (`/v1/charges`). Invoices do not go through here (they keep their
//! own payment path in `payments.rs`), so subscription events stay as they were. The
//! charges live in `charges.rs`.
//!
//! Status machine: `requires_payment_method` → (payment method set) `requires_confirmation`
//! → confirm → `succeeded` (manual capture: `requires_capture`, then capture), or back to
//! `requires_payment_method` with `last_payment_error` (declined), or `requires_action`
//! (3-D Secure, completed or failed on the hosted page `auth/{id}`). `canceled` from any
//! non-final status.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::{State, TestCard, new_id};
use crate::error::StripeError;

/// A PaymentIntent.
#[derive(Debug, Clone)]
pub struct PaymentIntent {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) amount: i64,
    pub(crate) currency: String,
    pub(crate) customer: Option<String>,
    pub(crate) payment_method: Option<String>,
    /// `automatic` or `manual`.
    pub(crate) capture_method: String,
    pub(crate) payment_method_types: Vec<String>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
    pub(crate) amount_capturable: i64,
    pub(crate) amount_received: i64,
    pub(crate) latest_charge: Option<String>,
    pub(crate) last_payment_error: Option<Value>,
    pub(crate) return_url: Option<String>,
    pub(crate) cancellation_reason: Option<String>,
    pub(crate) canceled_at: Option<i64>,
    pub(crate) client_secret: String,
}

/// Parameters of `POST /v1/payment_intents` and `POST /v1/payment_intents/{id}`.
#[derive(Debug, Clone, Default)]
pub struct IntentParams {
    /// `amount` in the currency's minor unit.
    pub amount: Option<i64>,
    /// `currency` (three letters, lower case).
    pub currency: Option<String>,
    /// `customer`.
    pub customer: Option<String>,
    /// `payment_method`: a `pm_…` id or a test shortcut (`pm_card_visa`, `tok_visa`).
    pub payment_method: Option<String>,
    /// `capture_method`: `automatic` (default) or `manual`.
    pub capture_method: Option<String>,
    /// `payment_method_types[]` (only `card`).
    pub payment_method_types: Option<Vec<String>>,
    /// `metadata`.
    pub metadata: Option<crate::form::MetadataUpdate>,
    /// `description`.
    pub description: Option<String>,
    /// `return_url` (create/confirm): where the hosted authentication page sends the browser.
    pub return_url: Option<String>,
}

/// The statuses an intent may still be changed, confirmed or canceled in.
const OPEN: [&str; 3] = [
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

pub(crate) fn check_types(types: &[String]) -> Result<(), StripeError> {
    match types.iter().find(|t| t.as_str() != "card") {
        Some(t) => Err(StripeError::invalid_param(
            "payment_method_types",
            &format!(
                "The payment method type `{t}` is not supported by the simulator (only card)."
            ),
        )),
        None => Ok(()),
    }
}

/// Where the hosted authentication page sends the browser: the `return_url` with the
/// query Stripe adds (`payment_intent=…&payment_intent_client_secret=…&redirect_status=…`,
/// `setup_intent…` for SetupIntents).
pub(crate) fn return_to(url: &str, kind: &str, id: &str, secret: &str, ok: bool) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let status = if ok { "succeeded" } else { "failed" };
    format!("{url}{sep}{kind}={id}&{kind}_client_secret={secret}&redirect_status={status}")
}

impl State {
    /// A payment method for an intent: an existing `pm_…` that belongs to no other customer,
    /// or a test shortcut (`pm_card_visa`, `tok_visa`, …), which becomes a new `pm_…` (not
    /// attached: a PaymentIntent attaches nothing without `setup_future_usage`, and a
    /// SetupIntent attaches when it succeeds).
    pub(crate) fn intent_payment_method(
        &mut self,
        customer: Option<&str>,
        pm: &str,
    ) -> Result<String, StripeError> {
        if let Some(p) = self.payment_methods.get(pm) {
            return match &p.customer {
                Some(owner) if Some(owner.as_str()) != customer => Err(StripeError::invalid_param(
                    "payment_method",
                    "The provided PaymentMethod belongs to another Customer (or to a Customer \
                     when none was given). Pass that customer or another PaymentMethod.",
                )),
                _ => Ok(pm.to_string()),
            };
        }
        if TestCard::parse(pm).is_some() && (pm.starts_with("pm_card_") || pm.starts_with("tok_")) {
            return self.create_payment_method(pm);
        }
        Err(StripeError::missing("PaymentMethod", pm, "payment_method"))
    }

    fn check_customer(&self, customer: Option<&str>) -> Result<(), StripeError> {
        match customer {
            Some(c) if !self.customers.contains_key(c) => {
                Err(StripeError::missing("customer", c, "customer"))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn intent_time(&self, customer: Option<&str>) -> i64 {
        customer.map_or_else(|| self.now(), |c| self.time_for_customer(c))
    }

    /// `POST /v1/payment_intents`; emits `payment_intent.created` (then what `confirm=true`
    /// does). `amount` (≥ 1) and `currency` are required.
    pub fn create_payment_intent(
        &mut self,
        p: IntentParams,
        confirm: bool,
    ) -> Result<String, StripeError> {
        let amount = p
            .amount
            .ok_or_else(|| StripeError::missing_param("amount"))?;
        if amount < 1 {
            return Err(StripeError::invalid_param(
                "amount",
                "Amount must be at least 1 (in the currency's smallest unit).",
            ));
        }
        let currency = p
            .currency
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| StripeError::missing_param("currency"))?;
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(StripeError::invalid_param(
                "currency",
                "Invalid currency: a three-letter ISO code in lower case.",
            ));
        }
        let capture_method = p
            .capture_method
            .clone()
            .unwrap_or_else(|| "automatic".into());
        if !matches!(
            capture_method.as_str(),
            "automatic" | "automatic_async" | "manual"
        ) {
            return Err(StripeError::invalid_param(
                "capture_method",
                "Invalid capture_method: must be one of automatic, automatic_async or manual.",
            ));
        }
        let types = p
            .payment_method_types
            .clone()
            .unwrap_or_else(|| vec!["card".into()]);
        check_types(&types)?;
        self.check_customer(p.customer.as_deref())?;
        let pm = match &p.payment_method {
            Some(pm) => Some(self.intent_payment_method(p.customer.as_deref(), pm)?),
            None => None,
        };
        let id = new_id("pi_");
        let seq = self.next_seq();
        let created = self.intent_time(p.customer.as_deref());
        self.payment_intents.insert(
            id.clone(),
            PaymentIntent {
                client_secret: format!("{id}_secret_{}", new_id("")),
                id: id.clone(),
                seq,
                created,
                amount,
                currency,
                customer: p.customer,
                status: if pm.is_some() {
                    "requires_confirmation"
                } else {
                    "requires_payment_method"
                }
                .into(),
                payment_method: pm,
                capture_method: if capture_method == "automatic_async" {
                    "automatic".into()
                } else {
                    capture_method
                },
                payment_method_types: types,
                metadata: p
                    .metadata
                    .map(crate::form::MetadataUpdate::into_map)
                    .unwrap_or_default(),
                description: p.description,
                amount_capturable: 0,
                amount_received: 0,
                latest_charge: None,
                last_payment_error: None,
                return_url: p.return_url,
                cancellation_reason: None,
                canceled_at: None,
            },
        );
        let obj = self.render_payment_intent(&id);
        self.emit("payment_intent.created", created, obj, None);
        if confirm {
            self.confirm_payment_intent(&id, None, None)?;
        }
        Ok(id)
    }

    fn open_intent(&self, id: &str, action: &str) -> Result<PaymentIntent, StripeError> {
        let pi = self
            .payment_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("payment_intent", id, "intent"))?;
        if !OPEN.contains(&pi.status.as_str()) {
            return Err(StripeError::unexpected_state(
                "payment_intent_unexpected_state",
                format!(
                    "You cannot {action} this PaymentIntent because it has a status of {}.",
                    pi.status
                ),
            )
            .with_object("payment_intent", self.render_payment_intent(id)));
        }
        Ok(pi)
    }

    /// `POST /v1/payment_intents/{id}`: while the intent is not final (and not awaiting
    /// capture). A new payment method makes a `requires_payment_method` intent
    /// `requires_confirmation`. No event, as on Stripe.
    pub fn update_payment_intent(&mut self, id: &str, p: IntentParams) -> Result<(), StripeError> {
        let pi = self.open_intent(id, "update")?;
        if let Some(a) = p.amount
            && a < 1
        {
            return Err(StripeError::invalid_param(
                "amount",
                "Amount must be at least 1.",
            ));
        }
        if let Some(t) = &p.payment_method_types {
            check_types(t)?;
        }
        if let Some(cm) = &p.capture_method
            && !matches!(cm.as_str(), "automatic" | "manual")
        {
            return Err(StripeError::invalid_param(
                "capture_method",
                "Invalid capture_method: must be one of automatic or manual.",
            ));
        }
        let customer = p.customer.clone().or(pi.customer.clone());
        self.check_customer(customer.as_deref())?;
        let pm = match &p.payment_method {
            Some(pm) => Some(self.intent_payment_method(customer.as_deref(), pm)?),
            None => None,
        };
        let Some(pi) = self.payment_intents.get_mut(id) else {
            return Err(StripeError::missing("payment_intent", id, "intent"));
        };
        if let Some(a) = p.amount {
            pi.amount = a;
        }
        if let Some(c) = p.currency.filter(|c| !c.is_empty()) {
            pi.currency = c;
        }
        pi.customer = customer;
        if let Some(pm) = pm {
            pi.payment_method = Some(pm);
            if pi.status == "requires_payment_method" {
                pi.status = "requires_confirmation".into();
            }
        }
        if let Some(cm) = p.capture_method {
            pi.capture_method = cm;
        }
        if let Some(t) = p.payment_method_types {
            pi.payment_method_types = t;
        }
        if let Some(m) = p.metadata {
            m.apply(&mut pi.metadata);
        }
        if let Some(d) = p.description {
            pi.description = Some(d).filter(|s| !s.is_empty());
        }
        if let Some(u) = p.return_url {
            pi.return_url = Some(u);
        }
        Ok(())
    }

    /// `POST /v1/payment_intents/{id}/confirm` (optionally with a new `payment_method` and
    /// `return_url`). A declined card answers 402 `card_error` with the intent inside the
    /// error, as Stripe does; the intent keeps the failure (`requires_payment_method`).
    pub fn confirm_payment_intent(
        &mut self,
        id: &str,
        payment_method: Option<String>,
        return_url: Option<String>,
    ) -> Result<(), StripeError> {
        let pi = self.open_intent(id, "confirm")?;
        let pm = match payment_method {
            Some(pm) => Some(self.intent_payment_method(pi.customer.as_deref(), &pm)?),
            None => pi.payment_method.clone(),
        };
        let Some(pm) = pm else {
            return Err(StripeError::invalid_param(
                "payment_method",
                "You cannot confirm this PaymentIntent because it's missing a payment method. \
                 Update it with a payment_method, or pass one to confirm.",
            ));
        };
        let card = self
            .payment_methods
            .get(&pm)
            .map_or(TestCard::Visa, |p| p.card);
        if let Some(pi) = self.payment_intents.get_mut(id) {
            pi.payment_method = Some(pm.clone());
            if return_url.is_some() {
                pi.return_url = return_url;
            }
            pi.last_payment_error = None;
        }
        let now = self.intent_time(pi.customer.as_deref());
        match card {
            TestCard::AuthenticationRequired => {
                if let Some(pi) = self.payment_intents.get_mut(id) {
                    pi.status = "requires_action".into();
                }
                let obj = self.render_payment_intent(id);
                self.emit("payment_intent.requires_action", now, obj, None);
                Ok(())
            }
            TestCard::Visa => {
                self.charge_intent(id, true);
                Ok(())
            }
            TestCard::ChargeCustomerFail | TestCard::Declined => {
                self.charge_intent(id, false);
                let e = StripeError::card_declined("Your card was declined.");
                Err(e.with_object("payment_intent", self.render_payment_intent(id)))
            }
        }
    }

    /// The hosted authentication page's answer for a `requires_action` PaymentIntent:
    /// Complete charges the card; Fail returns it to `requires_payment_method` with
    /// `payment_intent_authentication_failure`. Returns where to send the browser (from
    /// `return_url`, if the intent has one).
    pub fn authenticate_payment_intent(
        &mut self,
        id: &str,
        complete: bool,
    ) -> Result<Option<String>, StripeError> {
        let pi = self
            .payment_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("payment_intent", id, "intent"))?;
        if pi.status != "requires_action" {
            return Err(StripeError::unexpected_state(
                "payment_intent_unexpected_state",
                format!(
                    "This PaymentIntent has a status of {}; nothing to authenticate.",
                    pi.status
                ),
            ));
        }
        if complete {
            self.charge_intent(id, true);
        } else {
            let pm = pi.payment_method.clone().unwrap_or_default();
            let pm_obj = self.render_payment_method(&pm);
            if let Some(p) = self.payment_intents.get_mut(id) {
                p.status = "requires_payment_method".into();
                p.payment_method = None;
                p.last_payment_error = Some(json!({
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "The provided PaymentMethod has failed authentication. You can \
                                provide payment_method_data or a new PaymentMethod to attempt \
                                to fulfill this PaymentIntent again.",
                    "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
                    "payment_method": pm_obj,
                }));
            }
            let now = self.intent_time(pi.customer.as_deref());
            let obj = self.render_payment_intent(id);
            self.emit("payment_intent.payment_failed", now, obj, None);
        }
        Ok(pi
            .return_url
            .map(|u| return_to(&u, "payment_intent", id, &pi.client_secret, complete)))
    }

    /// `POST /v1/payment_intents/{id}/capture` of a `requires_capture` intent
    /// (`amount_to_capture` ≤ the authorized amount); emits `charge.captured`,
    /// `payment_intent.succeeded`.
    pub fn capture_payment_intent(
        &mut self,
        id: &str,
        amount_to_capture: Option<i64>,
    ) -> Result<(), StripeError> {
        let pi = self
            .payment_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("payment_intent", id, "intent"))?;
        if pi.status != "requires_capture" {
            return Err(StripeError::unexpected_state(
                "payment_intent_unexpected_state",
                format!(
                    "This PaymentIntent could not be captured because it has a status of {}. \
                     Only a PaymentIntent with one of the following statuses may be captured: \
                     requires_capture.",
                    pi.status
                ),
            ));
        }
        let amount = amount_to_capture.unwrap_or(pi.amount_capturable);
        if amount < 1 || amount > pi.amount_capturable {
            return Err(StripeError::invalid_param(
                "amount_to_capture",
                "amount_to_capture must be positive and at most amount_capturable.",
            ));
        }
        let now = self.intent_time(pi.customer.as_deref());
        let charge = pi.latest_charge.clone().unwrap_or_default();
        if let Some(c) = self.charges.get_mut(&charge) {
            c.captured = true;
            c.amount_captured = amount;
            c.amount_refunded = c.amount - amount;
            c.balance_transaction = Some(new_id("txn_"));
        }
        if let Some(p) = self.payment_intents.get_mut(id) {
            p.status = "succeeded".into();
            p.amount_capturable = 0;
            p.amount_received = amount;
        }
        let ch = self.render_charge(&charge);
        self.emit("charge.captured", now, ch, None);
        let obj = self.render_payment_intent(id);
        self.emit("payment_intent.succeeded", now, obj, None);
        Ok(())
    }

    /// `POST /v1/payment_intents/{id}/cancel` from any non-final status (an authorized,
    /// uncaptured charge is released: `amount_refunded` = its amount); emits
    /// `payment_intent.canceled`.
    pub fn cancel_payment_intent(
        &mut self,
        id: &str,
        reason: Option<String>,
    ) -> Result<(), StripeError> {
        let pi = self
            .payment_intents
            .get(id)
            .cloned()
            .ok_or_else(|| StripeError::missing("payment_intent", id, "intent"))?;
        if !OPEN.contains(&pi.status.as_str()) && pi.status != "requires_capture" {
            return Err(StripeError::unexpected_state(
                "payment_intent_unexpected_state",
                format!(
                    "You cannot cancel this PaymentIntent because it has a status of {}. Only \
                     a PaymentIntent with one of the following statuses may be canceled: \
                     requires_payment_method, requires_capture, requires_confirmation, \
                     requires_action, processing.",
                    pi.status
                ),
            ));
        }
        if let Some(r) = &reason
            && !matches!(
                r.as_str(),
                "duplicate" | "fraudulent" | "requested_by_customer" | "abandoned"
            )
        {
            return Err(StripeError::invalid_param(
                "cancellation_reason",
                "Invalid cancellation_reason: must be one of duplicate, fraudulent, \
                 requested_by_customer or abandoned.",
            ));
        }
        let now = self.intent_time(pi.customer.as_deref());
        if pi.status == "requires_capture"
            && let Some(c) = pi
                .latest_charge
                .as_ref()
                .and_then(|c| self.charges.get_mut(c))
        {
            c.amount_refunded = c.amount;
        }
        if let Some(p) = self.payment_intents.get_mut(id) {
            p.status = "canceled".into();
            p.amount_capturable = 0;
            p.cancellation_reason = reason;
            p.canceled_at = Some(now);
        }
        let obj = self.render_payment_intent(id);
        self.emit("payment_intent.canceled", now, obj, None);
        Ok(())
    }

    /// A PaymentIntent (`Value::Null` if unknown).
    pub fn render_payment_intent(&self, id: &str) -> Value {
        let Some(pi) = self.payment_intents.get(id) else {
            return Value::Null;
        };
        let next_action = (pi.status == "requires_action").then(|| {
            json!({
                "type": "redirect_to_url",
                "redirect_to_url": {
                    "url": format!("{}auth/{}", self.settings.public_url, pi.id),
                    "return_url": pi.return_url,
                },
            })
        });
        json!({
            "id": pi.id,
            "object": "payment_intent",
            "amount": pi.amount,
            "amount_capturable": pi.amount_capturable,
            "amount_details": null,
            "amount_received": pi.amount_received,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": null,
            "canceled_at": pi.canceled_at,
            "cancellation_reason": pi.cancellation_reason,
            "capture_method": pi.capture_method,
            "client_secret": pi.client_secret,
            "confirmation_method": "automatic",
            "created": pi.created,
            "currency": pi.currency,
            "customer": pi.customer,
            "description": pi.description,
            "last_payment_error": pi.last_payment_error,
            "latest_charge": pi.latest_charge,
            "livemode": false,
            "metadata": metadata(&pi.metadata),
            "next_action": next_action,
            "on_behalf_of": null,
            "payment_method": pi.payment_method,
            "payment_method_options": null,
            "payment_method_types": pi.payment_method_types,
            "processing": null,
            "receipt_email": null,
            "review": null,
            "setup_future_usage": null,
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": pi.status,
            "transfer_data": null,
            "transfer_group": null,
        })
    }
}
