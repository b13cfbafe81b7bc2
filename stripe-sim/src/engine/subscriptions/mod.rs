//! Subscriptions (`/v1/subscriptions`): the subscription object, `POST /v1/subscriptions`,
//! lookups, and the billing period arithmetic. Updates with their prorations are in
//! `update`; renewals, trial ends, cancellation, expiry, pause and resume in `lifecycle`.

mod lifecycle;
mod update;

use std::collections::BTreeMap;

use chrono::{DateTime, Months};
use serde_json::{Value, json};

use super::payments::Charge;
use super::render::metadata;
use super::{State, new_id};
use crate::error::StripeError;

pub use update::SubscriptionUpdate;

/// One item of a subscription; the billing period lives here in this API version.
#[derive(Debug, Clone)]
pub struct SubscriptionItem {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) price: String,
    pub(crate) quantity: i64,
    pub(crate) current_period_start: i64,
    pub(crate) current_period_end: i64,
}

/// `pause_collection` of a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseCollection {
    pub(crate) behavior: String,
    pub(crate) resumes_at: Option<i64>,
}

/// A subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) status: String,
    pub(crate) items: Vec<SubscriptionItem>,
    pub(crate) cancel_at_period_end: bool,
    pub(crate) cancel_at: Option<i64>,
    pub(crate) canceled_at: Option<i64>,
    pub(crate) ended_at: Option<i64>,
    pub(crate) cancellation_reason: Option<String>,
    pub(crate) pause_collection: Option<PauseCollection>,
    pub(crate) trial_start: Option<i64>,
    pub(crate) trial_end: Option<i64>,
    pub(crate) missing_payment_method: String,
    pub(crate) latest_invoice: Option<String>,
    pub(crate) default_payment_method: Option<String>,
    pub(crate) billing_cycle_anchor: i64,
    pub(crate) start_date: i64,
    pub(crate) currency: String,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) fail_next_renewal: bool,
    /// `customer.subscription.trial_will_end` was sent for the current trial.
    pub(crate) trial_will_end_sent: bool,
    /// The subscription schedule managing it (`sub_sched_…`), while attached.
    pub(crate) schedule: Option<String>,
}

impl Subscription {
    /// End of the current period (all items share one period here).
    pub(crate) fn period_end(&self) -> i64 {
        self.items
            .first()
            .map_or(self.billing_cycle_anchor, |i| i.current_period_end)
    }

    pub(crate) fn period_start(&self) -> i64 {
        self.items
            .first()
            .map_or(self.billing_cycle_anchor, |i| i.current_period_start)
    }

    /// Whether the subscription has reached a terminal status.
    pub(crate) fn is_ended(&self) -> bool {
        matches!(self.status.as_str(), "canceled" | "incomplete_expired")
    }
}

/// Adds `count` intervals to a timestamp as Stripe does (calendar months, clamped).
pub(crate) fn add_interval(t: i64, interval: &str, count: i64) -> i64 {
    let count = count.max(1);
    match interval {
        "day" => t + 86_400 * count,
        "week" => t + 7 * 86_400 * count,
        "month" | "year" => {
            let months = if interval == "year" {
                12 * count
            } else {
                count
            };
            let Ok(months) = u32::try_from(months) else {
                return t + 30 * 86_400 * count;
            };
            DateTime::from_timestamp(t, 0)
                .and_then(|d| d.checked_add_months(Months::new(months)))
                .map_or(t + 30 * 86_400 * count, |d| d.timestamp())
        }
        _ => t + 86_400 * count,
    }
}

/// Parameters of `POST /v1/subscriptions`.
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    /// The customer.
    pub customer: String,
    /// `items[n][price]`, `items[n][quantity]`.
    pub items: Vec<(String, i64)>,
    /// `trial_period_days`.
    pub trial_period_days: Option<i64>,
    /// `trial_end`: `Some(None)` = `now`, `Some(Some(t))` = timestamp.
    pub trial_end: Option<Option<i64>>,
    /// `metadata`.
    pub metadata: BTreeMap<String, String>,
    /// `default_payment_method` (must be attached to the customer).
    pub default_payment_method: Option<String>,
    /// `allow_incomplete` (default), `default_incomplete`, `error_if_incomplete`,
    /// `pending_if_incomplete` (treated as `allow_incomplete`).
    pub payment_behavior: Option<String>,
    /// `trial_settings[end_behavior][missing_payment_method]`.
    pub missing_payment_method: Option<String>,
    /// `cancel_at_period_end`.
    pub cancel_at_period_end: bool,
    /// The subscription schedule creating it (set by schedules, not by `/v1/subscriptions`).
    pub schedule: Option<String>,
}

impl State {
    /// `POST /v1/subscriptions`: creates the subscription, its first invoice
    /// (`subscription_create`) and charges it, following `payment_behavior`.
    /// Events: `customer.subscription.created`, `invoice.created`, `invoice.finalized`,
    /// then `invoice.paid` + `invoice.payment_succeeded` (or `invoice.payment_failed` /
    /// `invoice.payment_action_required` and status `incomplete`).
    pub fn create_subscription(&mut self, p: NewSubscription) -> Result<String, StripeError> {
        if !self.customers.contains_key(&p.customer) {
            return Err(StripeError::missing("customer", &p.customer, "customer"));
        }
        if p.items.is_empty() {
            return Err(StripeError::missing_param("items"));
        }
        let mut prices = Vec::new();
        for (n, (price, _)) in p.items.iter().enumerate() {
            let Some(pr) = self.prices.get(price).cloned() else {
                return Err(StripeError::missing(
                    "price",
                    price,
                    &format!("items[{n}][price]"),
                ));
            };
            if pr.interval.is_empty() {
                return Err(StripeError::invalid_param(
                    &format!("items[{n}][price]"),
                    "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                ));
            }
            prices.push(pr);
        }
        let behavior = p
            .payment_behavior
            .clone()
            .unwrap_or_else(|| "allow_incomplete".into());
        if !matches!(
            behavior.as_str(),
            "allow_incomplete"
                | "default_incomplete"
                | "error_if_incomplete"
                | "pending_if_incomplete"
        ) {
            return Err(StripeError::invalid_param(
                "payment_behavior",
                "Invalid payment_behavior: must be one of allow_incomplete, default_incomplete, error_if_incomplete, or pending_if_incomplete",
            ));
        }
        let missing_pm = p
            .missing_payment_method
            .clone()
            .unwrap_or_else(|| "create_invoice".into());
        if !matches!(missing_pm.as_str(), "pause" | "cancel" | "create_invoice") {
            return Err(StripeError::invalid_param(
                "trial_settings[end_behavior][missing_payment_method]",
                "Invalid missing_payment_method: must be one of cancel, create_invoice, or pause",
            ));
        }
        if let Some(pm) = &p.default_payment_method {
            self.check_payment_method(&p.customer, pm, "default_payment_method")?;
        }
        let now = self.time_for_customer(&p.customer);
        let trial_end = match (p.trial_end, p.trial_period_days) {
            (Some(Some(t)), _) if t <= now => {
                return Err(StripeError::invalid_param(
                    "trial_end",
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                ));
            }
            (Some(Some(t)), _) => Some(t),
            (Some(None), _) => None,
            (None, Some(d)) if !(0..=730).contains(&d) => {
                return Err(StripeError::invalid_param(
                    "trial_period_days",
                    "trial_period_days must be between 0 and 730.",
                ));
            }
            (None, Some(0)) | (None, None) => None,
            (None, Some(d)) => Some(now + d * 86_400),
        };
        let pm = p.default_payment_method.clone().or_else(|| {
            self.customers
                .get(&p.customer)
                .and_then(|c| c.default_payment_method.clone())
        });
        let first_total: i64 = prices
            .iter()
            .zip(&p.items)
            .map(|(pr, (_, q))| pr.unit_amount * (*q).max(1))
            .sum();
        let charge_now = trial_end.is_none() && first_total > 0 && behavior != "default_incomplete";
        let outcome = self.charge_outcome(pm.as_deref());
        if charge_now {
            if outcome == Charge::NoPaymentMethod {
                return Err(StripeError::invalid_state(
                    "This customer has no attached payment source or default payment method. \
                     Please consider adding a default payment method.",
                ));
            }
            if behavior == "error_if_incomplete" {
                match outcome {
                    Charge::Declined => {
                        return Err(StripeError::card_declined("Your card was declined."));
                    }
                    Charge::NeedsAuthentication => {
                        return Err(StripeError::authentication_required());
                    }
                    _ => {}
                }
            }
        }
        let status = if trial_end.is_some() {
            "trialing"
        } else if first_total == 0 || (charge_now && outcome == Charge::Succeeded) {
            // Stripe reports the status the first payment led to already in
            // `customer.subscription.created`.
            "active"
        } else {
            "incomplete"
        };
        let period_start = now;
        let period_end = trial_end.unwrap_or_else(|| {
            prices
                .first()
                .map_or(now, |pr| add_interval(now, &pr.interval, pr.interval_count))
        });
        let sub_id = new_id("sub_");
        let seq = self.next_seq();
        let currency = prices
            .first()
            .map_or_else(|| "usd".to_string(), |pr| pr.currency.clone());
        let sub = Subscription {
            id: sub_id.clone(),
            seq,
            created: now,
            customer: p.customer.clone(),
            status: status.into(),
            items: p
                .items
                .iter()
                .map(|(price, q)| SubscriptionItem {
                    id: new_id("si_"),
                    created: now,
                    price: price.clone(),
                    quantity: (*q).max(1),
                    current_period_start: period_start,
                    current_period_end: period_end,
                })
                .collect(),
            cancel_at_period_end: p.cancel_at_period_end,
            cancel_at: p.cancel_at_period_end.then_some(period_end),
            canceled_at: p.cancel_at_period_end.then_some(now),
            ended_at: None,
            cancellation_reason: p
                .cancel_at_period_end
                .then(|| "cancellation_requested".to_string()),
            pause_collection: None,
            trial_start: trial_end.map(|_| now),
            trial_end,
            missing_payment_method: missing_pm,
            latest_invoice: None,
            default_payment_method: p.default_payment_method.clone(),
            billing_cycle_anchor: trial_end.unwrap_or(now),
            start_date: now,
            currency,
            metadata: p.metadata.clone(),
            fail_next_renewal: false,
            trial_will_end_sent: false,
            schedule: p.schedule.clone(),
        };
        self.subscriptions.insert(sub_id.clone(), sub);
        let inv = self.new_invoice(
            &sub_id,
            "subscription_create",
            (now, now),
            trial_end.is_some(),
        );
        if let Some(s) = self.subscriptions.get_mut(&sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_subscription(&sub_id);
        self.emit("customer.subscription.created", now, obj, None);
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        self.finalize(&inv);
        if behavior == "default_incomplete" && first_total > 0 && trial_end.is_none() {
            // The payment waits for a confirmation that only `POST /v1/invoices/{id}/pay`
            // gives here; without it the subscription expires after 23 hours.
            return Ok(sub_id);
        }
        let _ = self.attempt_payment(&inv);
        Ok(sub_id)
    }

    /// The id of a subscription's customer (for the control API).
    pub fn customer_of(&self, sub_id: &str) -> Option<String> {
        self.subscriptions.get(sub_id).map(|s| s.customer.clone())
    }

    /// Metadata of a stored object, for summaries.
    pub fn subscription_ids_of(&self, customer: &str) -> Vec<String> {
        let mut subs: Vec<&Subscription> = self
            .subscriptions
            .values()
            .filter(|s| s.customer == customer)
            .collect();
        subs.sort_by_key(|s| std::cmp::Reverse(s.seq));
        subs.into_iter().map(|s| s.id.clone()).collect()
    }

    /// A subscription with its items (the billing period lives on each item).
    pub fn render_subscription(&self, id: &str) -> Value {
        let Some(s) = self.subscriptions.get(id) else {
            return Value::Null;
        };
        let items: Vec<Value> = s
            .items
            .iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "object": "subscription_item",
                    "billing_thresholds": null,
                    "created": i.created,
                    "current_period_end": i.current_period_end,
                    "current_period_start": i.current_period_start,
                    "discounts": [],
                    "metadata": {},
                    "plan": self.render_plan(&i.price),
                    "price": self.render_price(&i.price),
                    "quantity": i.quantity,
                    "subscription": s.id,
                    "tax_rates": [],
                })
            })
            .collect();
        let pause = s
            .pause_collection
            .as_ref()
            .map(|p| json!({"behavior": p.behavior, "resumes_at": p.resumes_at}));
        json!({
            "id": s.id,
            "object": "subscription",
            "application": null,
            "application_fee_percent": null,
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
            "billing_cycle_anchor": s.billing_cycle_anchor,
            "billing_cycle_anchor_config": null,
            "billing_mode": {"flexible": null, "type": "classic"},
            "billing_schedules": [],
            "billing_thresholds": null,
            "cancel_at": s.cancel_at,
            "cancel_at_period_end": s.cancel_at_period_end,
            "canceled_at": s.canceled_at,
            "cancellation_details": {
                "comment": null,
                "feedback": null,
                "reason": s.cancellation_reason,
            },
            "collection_method": "charge_automatically",
            "created": s.created,
            "currency": s.currency,
            "customer": s.customer,
            "customer_account": null,
            "days_until_due": null,
            "default_payment_method": s.default_payment_method,
            "default_source": null,
            "default_tax_rates": [],
            "description": null,
            "discounts": [],
            "ended_at": s.ended_at,
            "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            "items": {
                "object": "list",
                "data": items,
                "has_more": false,
                "total_count": s.items.len(),
                "url": format!("/v1/subscription_items?subscription={}", s.id),
            },
            "latest_invoice": s.latest_invoice,
            "livemode": false,
            "metadata": metadata(&s.metadata),
            "next_pending_invoice_item_invoice": null,
            "on_behalf_of": null,
            "pause_collection": pause,
            "payment_settings": {
                "payment_method_options": null,
                "payment_method_types": null,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": null,
            "pending_setup_intent": null,
            "pending_update": null,
            "schedule": s.schedule,
            "start_date": s.start_date,
            "status": s.status,
            "test_clock": self.clock_of_customer(&s.customer),
            "transfer_data": null,
            "trial_end": s.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": s.missing_payment_method}},
            "trial_start": s.trial_start,
        })
    }

    /// The legacy `plan` twin of a price, still required on subscription items.
    fn render_plan(&self, id: &str) -> Value {
        let Some(p) = self.prices.get(id) else {
            return Value::Null;
        };
        json!({
            "id": p.id,
            "object": "plan",
            "active": p.active,
            "amount": p.unit_amount,
            "amount_decimal": p.unit_amount.to_string(),
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "interval": p.interval,
            "interval_count": p.interval_count,
            "livemode": false,
            "metadata": {},
            "meter": null,
            "nickname": null,
            "product": p.product,
            "tiers_mode": null,
            "transform_usage": null,
            "trial_period_days": null,
            "usage_type": "licensed",
        })
    }
}
