//! Catalogue writes (products, prices) and subscriptions created directly through the
//! API (`POST /v1/subscriptions`), plus price changes with prorations.

use std::collections::BTreeMap;

use super::billing::{Charge, add_interval};
use super::invoicing::prorate;
use super::render::diff;
use super::{InvoiceItem, Price, Product, State, Subscription, SubscriptionItem, new_id};
use crate::error::StripeError;

/// Parameters of `POST /v1/prices` (and `POST /v1/products` with `default_price_data`).
#[derive(Debug, Clone, Default)]
pub struct NewPrice {
    /// Existing product, or `None` with `product_name` to create one.
    pub product: Option<String>,
    /// `product_data[name]`.
    pub product_name: Option<String>,
    /// Amount in cents.
    pub unit_amount: i64,
    /// Lower-case ISO currency.
    pub currency: String,
    /// `recurring[interval]`; `None` is a one-time price.
    pub interval: Option<String>,
    /// `recurring[interval_count]`.
    pub interval_count: Option<i64>,
    /// `lookup_key`.
    pub lookup_key: Option<String>,
    /// `transfer_lookup_key`: take the lookup key from the price that has it.
    pub transfer_lookup_key: bool,
    /// `nickname`.
    pub nickname: Option<String>,
    /// `metadata`.
    pub metadata: BTreeMap<String, String>,
    /// `active` (default true).
    pub active: Option<bool>,
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
}

impl State {
    /// `POST /v1/products`.
    pub fn create_product(
        &mut self,
        name: String,
        description: Option<String>,
        metadata: BTreeMap<String, String>,
        id: Option<String>,
    ) -> Result<String, StripeError> {
        let id = id.unwrap_or_else(|| new_id("prod_"));
        if self.products.contains_key(&id) {
            return Err(StripeError::invalid_param(
                "id",
                &format!("Product already exists: {id}"),
            ));
        }
        let seq = self.next_seq();
        let now = self.now();
        self.products.insert(
            id.clone(),
            Product {
                id: id.clone(),
                seq,
                created: now,
                name,
                description,
                active: true,
                metadata,
            },
        );
        let obj = self.render_product(&id);
        self.emit("product.created", now, obj, None);
        Ok(id)
    }

    /// `POST /v1/prices`. A lookup key must be unique unless `transfer_lookup_key`.
    pub fn create_price(&mut self, p: NewPrice) -> Result<String, StripeError> {
        let product = match (p.product, p.product_name) {
            (Some(prod), _) => {
                if !self.products.contains_key(&prod) {
                    return Err(StripeError::missing("product", &prod, "product"));
                }
                prod
            }
            (None, Some(name)) => self.create_product(name, None, BTreeMap::new(), None)?,
            (None, None) => return Err(StripeError::missing_param("product")),
        };
        if let Some(interval) = &p.interval
            && !matches!(interval.as_str(), "day" | "week" | "month" | "year")
        {
            return Err(StripeError::invalid_param(
                "recurring[interval]",
                "Invalid recurring[interval]: must be one of day, month, week, or year",
            ));
        }
        if let Some(key) = &p.lookup_key {
            let holder: Vec<String> = self
                .prices
                .values()
                .filter(|x| x.lookup_key.as_ref() == Some(key))
                .map(|x| x.id.clone())
                .collect();
            if !holder.is_empty() && !p.transfer_lookup_key {
                return Err(StripeError::invalid_param(
                    "lookup_key",
                    &format!(
                        "A price (`{}`) already uses that lookup key.",
                        holder.join(", ")
                    ),
                ));
            }
            for h in holder {
                if let Some(x) = self.prices.get_mut(&h) {
                    x.lookup_key = None;
                }
            }
        }
        let id = new_id("price_");
        let seq = self.next_seq();
        let now = self.now();
        self.prices.insert(
            id.clone(),
            Price {
                id: id.clone(),
                seq,
                created: now,
                product,
                unit_amount: p.unit_amount,
                currency: p.currency.to_lowercase(),
                // A one-time price is stored with an empty interval (see `render_price`).
                interval: p.interval.unwrap_or_default(),
                interval_count: p.interval_count.unwrap_or(1).max(1),
                lookup_key: p.lookup_key,
                active: p.active.unwrap_or(true),
                nickname: p.nickname,
                metadata: p.metadata,
            },
        );
        let obj = self.render_price(&id);
        self.emit("price.created", now, obj, None);
        Ok(id)
    }

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

    /// Three days before the trial ends: `customer.subscription.trial_will_end`.
    pub(crate) fn trial_will_end(&mut self, sub_id: &str) {
        let Some(s) = self.subscriptions.get_mut(sub_id) else {
            return;
        };
        s.trial_will_end_sent = true;
        let customer = s.customer.clone();
        let now = self.time_for_customer(&customer);
        let obj = self.render_subscription(sub_id);
        self.emit("customer.subscription.trial_will_end", now, obj, None);
    }

    /// After a price change on an active subscription: proration items for the unused
    /// time (credit) and the remaining time (charge), to the second; with `always_invoice`
    /// an invoice now (`subscription_update`) that charges the difference. A change of
    /// billing interval resets the period to now and bills the new price at once.
    pub(crate) fn prorate_price_change(
        &mut self,
        sub_id: &str,
        changes: &[(String, String, i64, String, i64)],
        behavior: &str,
        old_period: (i64, i64),
        interval_changed: bool,
    ) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        let now = self.time_for_customer(&sub.customer);
        let (start, end) = old_period;
        let length = end - start;
        let remaining = end - now;
        let date = chrono::DateTime::from_timestamp(now, 0)
            .map(|d| d.format("%d %b %Y").to_string())
            .unwrap_or_default();
        if behavior != "none" {
            for (item_id, old_price, old_q, new_price, new_q) in changes {
                let name = |st: &State, price: &str| {
                    st.prices
                        .get(price)
                        .and_then(|p| st.products.get(&p.product))
                        .map(|p| p.name.clone())
                        .unwrap_or_default()
                };
                let unit =
                    |st: &State, price: &str| st.prices.get(price).map_or(0, |p| p.unit_amount);
                let credit = -prorate(unit(self, old_price) * old_q, remaining, length);
                let old_name = name(self, old_price);
                self.add_invoice_item(InvoiceItem {
                    id: new_id("ii_"),
                    seq: 0,
                    created: now,
                    customer: sub.customer.clone(),
                    amount: credit,
                    currency: sub.currency.clone(),
                    description: Some(format!("Unused time on {old_q} × {old_name} after {date}")),
                    price: Some(old_price.clone()),
                    quantity: *old_q,
                    period_start: now,
                    period_end: end,
                    proration: true,
                    subscription: Some(sub_id.to_string()),
                    subscription_item: Some(item_id.clone()),
                    invoice: None,
                    metadata: BTreeMap::new(),
                });
                if interval_changed {
                    // The new price is billed in full for the new period below.
                    continue;
                }
                let charge = prorate(unit(self, new_price) * new_q, remaining, length);
                let new_name = name(self, new_price);
                self.add_invoice_item(InvoiceItem {
                    id: new_id("ii_"),
                    seq: 0,
                    created: now,
                    customer: sub.customer.clone(),
                    amount: charge,
                    currency: sub.currency.clone(),
                    description: Some(format!(
                        "Remaining time on {new_q} × {new_name} after {date}"
                    )),
                    price: Some(new_price.clone()),
                    quantity: *new_q,
                    period_start: now,
                    period_end: end,
                    proration: true,
                    subscription: Some(sub_id.to_string()),
                    subscription_item: Some(item_id.clone()),
                    invoice: None,
                    metadata: BTreeMap::new(),
                });
            }
        }
        let inv = if interval_changed {
            self.new_invoice(sub_id, "subscription_update", (now, now), false)
        } else if behavior == "always_invoice" {
            let id = new_id("in_");
            let lines = self.take_pending_items(&sub.customer, Some(sub_id), &id);
            let sub_now = self.subscriptions.get(sub_id).cloned();
            self.insert_invoice(
                id,
                &sub.customer,
                sub_now.as_ref(),
                "subscription_update",
                lines,
                (now, now),
            )
        } else {
            return;
        };
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        // Paused collection decides the invoice's fate as for renewals.
        self.finalize_and_charge(&inv);
        let after = self.render_subscription(sub_id);
        if let Some(prev) = diff(&before, &after)
            && prev.get("status").is_none()
        {
            // `latest_invoice` moved: Stripe reports that in one more update.
            self.emit("customer.subscription.updated", now, after, Some(prev));
        }
    }
}
