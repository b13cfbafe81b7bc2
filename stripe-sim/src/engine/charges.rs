//! Charges (`/v1/charges`): one per payment attempt of a PaymentIntent made through the
//! API — succeeded (captured now, or authorized for manual capture) or failed — and the
//! events each attempt emits.

use serde_json::{Value, json};

use super::{State, new_id};

/// A charge: one payment attempt of a PaymentIntent.
#[derive(Debug, Clone)]
pub struct Charge {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) amount: i64,
    pub(crate) amount_captured: i64,
    pub(crate) amount_refunded: i64,
    pub(crate) currency: String,
    pub(crate) customer: Option<String>,
    pub(crate) payment_intent: String,
    pub(crate) payment_method: String,
    pub(crate) captured: bool,
    /// `succeeded` or `failed`.
    pub(crate) status: &'static str,
    pub(crate) failure_code: Option<&'static str>,
    pub(crate) balance_transaction: Option<String>,
    pub(crate) description: Option<String>,
}

impl State {
    /// One charge attempt with the intent's payment method: success (captured now or
    /// authorized for manual capture) or a decline.
    pub(crate) fn charge_intent(&mut self, id: &str, ok: bool) {
        let Some(pi) = self.payment_intents.get(id).cloned() else {
            return;
        };
        let pm = pi.payment_method.clone().unwrap_or_default();
        let now = self.intent_time(pi.customer.as_deref());
        let manual = pi.capture_method == "manual";
        let charge = new_id("ch_");
        let seq = self.next_seq();
        self.charges.insert(
            charge.clone(),
            Charge {
                id: charge.clone(),
                seq,
                created: now,
                amount: pi.amount,
                amount_captured: if ok && !manual { pi.amount } else { 0 },
                amount_refunded: 0,
                currency: pi.currency.clone(),
                customer: pi.customer.clone(),
                payment_intent: id.to_string(),
                payment_method: pm.clone(),
                captured: ok && !manual,
                status: if ok { "succeeded" } else { "failed" },
                failure_code: (!ok).then_some("card_declined"),
                balance_transaction: (ok && !manual).then(|| new_id("txn_")),
                description: pi.description.clone(),
            },
        );
        let pm_obj = self.render_payment_method(&pm);
        if let Some(p) = self.payment_intents.get_mut(id) {
            p.latest_charge = Some(charge.clone());
            if !ok {
                p.status = "requires_payment_method".into();
                p.payment_method = None;
                p.last_payment_error = Some(json!({
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined.",
                    "charge": charge,
                    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                    "payment_method": pm_obj,
                }));
            } else if manual {
                p.status = "requires_capture".into();
                p.amount_capturable = p.amount;
            } else {
                p.status = "succeeded".into();
                p.amount_received = p.amount;
            }
        }
        let ch = self.render_charge(&charge);
        let obj = self.render_payment_intent(id);
        if !ok {
            self.emit("charge.failed", now, ch, None);
            self.emit("payment_intent.payment_failed", now, obj, None);
        } else if manual {
            self.emit("charge.succeeded", now, ch, None);
            self.emit("payment_intent.amount_capturable_updated", now, obj, None);
        } else {
            self.emit("charge.succeeded", now, ch, None);
            self.emit("payment_intent.succeeded", now, obj, None);
        }
    }

    /// A charge (`Value::Null` if unknown).
    pub fn render_charge(&self, id: &str) -> Value {
        let Some(c) = self.charges.get(id) else {
            return Value::Null;
        };
        let pm = self.payment_methods.get(&c.payment_method);
        json!({
            "id": c.id,
            "object": "charge",
            "amount": c.amount,
            "amount_captured": c.amount_captured,
            "amount_refunded": c.amount_refunded,
            "balance_transaction": c.balance_transaction,
            "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
            "captured": c.captured,
            "created": c.created,
            "currency": c.currency,
            "customer": c.customer,
            "description": c.description,
            "disputed": false,
            "failure_balance_transaction": null,
            "failure_code": c.failure_code,
            "failure_message": c.failure_code.map(|_| "Your card was declined."),
            "livemode": false,
            "metadata": {},
            "outcome": {
                "network_status": if c.status == "succeeded" { "approved_by_network" } else { "declined_by_network" },
                "reason": c.failure_code.map(|_| "generic_decline"),
                "risk_level": "normal",
                "seller_message": if c.status == "succeeded" { "Payment complete." } else { "The bank did not return any further details with this decline." },
                "type": if c.status == "succeeded" { "authorized" } else { "issuer_declined" },
            },
            "paid": c.status == "succeeded",
            "payment_intent": c.payment_intent,
            "payment_method": c.payment_method,
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": pm.map_or("visa", |p| p.brand),
                    "country": "US",
                    "exp_month": 12,
                    "exp_year": 2034,
                    "funding": "credit",
                    "last4": self.render_payment_method(&c.payment_method)["card"]["last4"],
                },
            },
            "receipt_email": null,
            "receipt_url": null,
            "refunded": c.amount_refunded > 0 && c.amount_refunded == c.amount,
            "status": c.status,
        })
    }
}
