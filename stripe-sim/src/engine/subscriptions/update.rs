//! Subscription updates (`POST /v1/subscriptions/{id}`): cancellation settings,
//! `pause_collection`, item and price changes with their prorations, `trial_end`, the
//! default payment method and metadata.

use std::collections::BTreeMap;

use super::add_interval;
use crate::engine::invoice_items::prorate;
use crate::engine::render::diff;
use crate::engine::{InvoiceItem, PauseCollection, State, new_id};
use crate::error::StripeError;
use crate::form::MetadataUpdate;

/// Parameters of `POST /v1/subscriptions/{id}`.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    /// `cancel_at_period_end`.
    pub cancel_at_period_end: Option<bool>,
    /// `cancel_at` (`Some(None)`: cleared with an empty string).
    pub cancel_at: Option<Option<i64>>,
    /// `pause_collection` (`Some(None)`: cleared with an empty string).
    pub pause_collection: Option<Option<(String, Option<i64>)>>,
    /// `items[n]`: (item id, new price, new quantity).
    pub items: Vec<(Option<String>, Option<String>, Option<i64>)>,
    /// `proration_behavior`: `create_prorations` (default), `always_invoice`, `none`.
    pub proration_behavior: Option<String>,
    /// `metadata`.
    pub metadata: Option<MetadataUpdate>,
    /// `trial_end`: `Some(None)` for `now`, `Some(Some(t))` for a timestamp.
    pub trial_end: Option<Option<i64>>,
    /// `default_payment_method`.
    pub default_payment_method: Option<String>,
}

impl State {
    /// `POST /v1/subscriptions/{id}`; emits one `customer.subscription.updated` with
    /// `previous_attributes` when something changed (and the trial-end events when the
    /// trial is ended with `trial_end=now`).
    pub fn update_subscription(
        &mut self,
        sub_id: &str,
        u: SubscriptionUpdate,
    ) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        let only_metadata = u.cancel_at_period_end.is_none()
            && u.cancel_at.is_none()
            && u.pause_collection.is_none()
            && u.items.is_empty()
            && u.trial_end.is_none()
            && u.default_payment_method.is_none();
        if sub.is_ended() && !only_metadata {
            return Err(StripeError::invalid_state(
                "A canceled subscription can only update its cancellation_details and metadata.",
            ));
        }
        if let Some(Some((behavior, _))) = &u.pause_collection
            && !matches!(
                behavior.as_str(),
                "keep_as_draft" | "mark_uncollectible" | "void"
            )
        {
            return Err(StripeError::invalid_param(
                "pause_collection[behavior]",
                "Invalid pause_collection[behavior]: must be one of keep_as_draft, mark_uncollectible, or void",
            ));
        }
        if let Some(pb) = &u.proration_behavior
            && !matches!(pb.as_str(), "create_prorations" | "none" | "always_invoice")
        {
            return Err(StripeError::invalid_param(
                "proration_behavior",
                "Invalid proration_behavior.",
            ));
        }
        for (n, (item_id, price, _)) in u.items.iter().enumerate() {
            let Some(item_id) = item_id else {
                return Err(StripeError::missing_param(&format!("items[{n}][id]")));
            };
            if !sub.items.iter().any(|i| &i.id == item_id) {
                return Err(StripeError::missing(
                    "subscription_item",
                    item_id,
                    &format!("items[{n}][id]"),
                ));
            }
            if let Some(p) = price
                && !self.prices.contains_key(p)
            {
                return Err(StripeError::missing(
                    "price",
                    p,
                    &format!("items[{n}][price]"),
                ));
            }
        }
        if let Some(pm) = &u.default_payment_method {
            self.check_payment_method(&sub.customer, pm, "default_payment_method")?;
        }
        if let Some(Some(t)) = u.trial_end
            && t <= self.time_for_customer(&sub.customer)
        {
            return Err(StripeError::invalid_param(
                "trial_end",
                "trial_end must be in the future (or `now`).",
            ));
        }

        let now = self.time_for_customer(&sub.customer);
        let before = self.render_subscription(sub_id);
        let Some(s) = self.subscriptions.get_mut(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if let Some(flag) = u.cancel_at_period_end {
            s.cancel_at_period_end = flag;
            if flag {
                s.cancel_at = Some(s.period_end());
                s.canceled_at = Some(now);
                s.cancellation_reason = Some("cancellation_requested".into());
            } else {
                s.cancel_at = None;
                s.canceled_at = None;
                s.cancellation_reason = None;
            }
        }
        if let Some(at) = u.cancel_at {
            s.cancel_at = at;
            s.cancel_at_period_end = at.is_some_and(|t| t == s.period_end());
            s.canceled_at = at.map(|_| now);
            s.cancellation_reason = at.map(|_| "cancellation_requested".to_string());
        }
        if let Some(pc) = u.pause_collection {
            s.pause_collection = pc.map(|(behavior, resumes_at)| PauseCollection {
                behavior,
                resumes_at,
            });
        }
        // (item, old price, old quantity, new price, new quantity) of every real change.
        let mut changes: Vec<(String, String, i64, String, i64)> = Vec::new();
        let old_period = (s.period_start(), s.period_end());
        let mut interval_changed = false;
        let prorating = matches!(s.status.as_str(), "active" | "past_due");
        for (item_id, price, quantity) in &u.items {
            if let Some(item) = s.items.iter_mut().find(|i| Some(&i.id) == item_id.as_ref()) {
                let (old_price, old_q) = (item.price.clone(), item.quantity);
                if let Some(p) = price {
                    item.price = p.clone();
                }
                if let Some(q) = quantity {
                    item.quantity = (*q).max(1);
                }
                if (item.price.clone(), item.quantity) != (old_price.clone(), old_q) {
                    let interval = |id: &str| {
                        self.prices
                            .get(id)
                            .map(|p| (p.interval.clone(), p.interval_count))
                    };
                    if interval(&old_price) != interval(&item.price) {
                        interval_changed = true;
                    }
                    changes.push((
                        item.id.clone(),
                        old_price,
                        old_q,
                        item.price.clone(),
                        item.quantity,
                    ));
                }
            }
        }
        if interval_changed && prorating {
            // A new billing interval restarts the billing cycle now, as on Stripe.
            s.billing_cycle_anchor = now;
            for item in &mut s.items {
                let (interval, count) = self
                    .prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = now;
                item.current_period_end = add_interval(now, &interval, count);
            }
            if s.cancel_at_period_end {
                s.cancel_at = Some(s.period_end());
            }
        }
        if let Some(m) = &u.metadata {
            m.apply(&mut s.metadata);
        }
        if let Some(pm) = &u.default_payment_method {
            s.default_payment_method = Some(pm.clone());
        }
        let mut end_trial_now = false;
        if let Some(t) = u.trial_end {
            match t {
                None if s.status == "trialing" => end_trial_now = true,
                None => {}
                Some(t) if s.status == "trialing" => {
                    s.trial_end = Some(t);
                    for item in &mut s.items {
                        item.current_period_end = t;
                    }
                    s.billing_cycle_anchor = t;
                }
                Some(_) => {}
            }
        }
        let after = self.render_subscription(sub_id);
        if let Some(prev) = diff(&before, &after) {
            self.emit("customer.subscription.updated", now, after, Some(prev));
        }
        if !changes.is_empty() && prorating {
            let behavior = u
                .proration_behavior
                .as_deref()
                .unwrap_or("create_prorations");
            self.prorate_price_change(sub_id, &changes, behavior, old_period, interval_changed);
        }
        if end_trial_now {
            self.end_trial_now(sub_id)?;
        }
        Ok(())
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
