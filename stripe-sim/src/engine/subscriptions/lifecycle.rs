//! The subscription lifecycle: period ends (renewals), trial ends, cancellation, expiry
//! of an `incomplete` subscription, and resuming collection or a paused subscription —
//! whether the clock reaches the moment or a request asks for it.

use super::add_interval;
use crate::engine::State;
use crate::engine::render::diff;
use crate::error::StripeError;

impl State {
    /// Period (or trial) end: start the next period and bill it. The invoice is a draft
    /// for `finalize_delay` seconds, then it is finalized and charged.
    pub(crate) fn period_end(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.is_ended() {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        let before = self.render_subscription(sub_id);
        let was_trialing = sub.status == "trialing";
        if was_trialing {
            let has_pm = sub.default_payment_method.is_some()
                || self
                    .customers
                    .get(&sub.customer)
                    .is_some_and(|c| c.default_payment_method.is_some());
            if !has_pm {
                match sub.missing_payment_method.as_str() {
                    "pause" => {
                        if let Some(s) = self.subscriptions.get_mut(sub_id) {
                            s.status = "paused".into();
                        }
                        let after = self.render_subscription(sub_id);
                        let prev = diff(&before, &after);
                        self.emit("customer.subscription.updated", now, after.clone(), prev);
                        self.emit("customer.subscription.paused", now, after, None);
                        return;
                    }
                    "cancel" => {
                        self.end_subscription(sub_id, "payment_failed");
                        return;
                    }
                    _ => {}
                }
            }
        }
        let old_start = sub.period_start();
        let old_end = sub.period_end();
        let prices = self.prices.clone();
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            if was_trialing {
                s.status = "active".into();
            }
            for item in &mut s.items {
                let (interval, count) = prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = old_end;
                item.current_period_end = add_interval(old_end, &interval, count);
            }
        }
        let inv = self.new_invoice(sub_id, "subscription_cycle", (old_start, old_end), false);
        let delay = self.settings.finalize_delay;
        if let Some(i) = self.invoices.get_mut(&inv) {
            i.automatically_finalizes_at = Some(now + delay);
        }
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
        if delay <= 0 {
            self.finalize_and_charge(&inv);
        }
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

    /// Ends a trial at once, as `trial_end=now` does: the subscription renews now.
    pub fn end_trial_now(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let now = match self.customer_of(sub_id) {
            Some(c) => self.time_for_customer(&c),
            None => self.now(),
        };
        let Some(s) = self.subscriptions.get_mut(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if s.status != "trialing" {
            return Err(StripeError::invalid_state(format!(
                "{sub_id} is not trialing (status {}).",
                s.status
            )));
        }
        s.trial_end = Some(now);
        s.billing_cycle_anchor = now;
        for item in &mut s.items {
            item.current_period_end = now;
        }
        self.period_end(sub_id);
        Ok(())
    }

    /// Ends a subscription now; emits `customer.subscription.deleted`.
    pub(crate) fn end_subscription(&mut self, sub_id: &str, reason: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.is_ended() {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "canceled".into();
            s.ended_at = Some(now);
            if !(s.cancel_at_period_end && s.canceled_at.is_some()) {
                s.canceled_at = Some(now);
            }
            s.cancellation_reason = Some(reason.to_string());
        }
        // A canceled subscription collects nothing more.
        for inv in self
            .invoices
            .values_mut()
            .filter(|i| i.subscription.as_deref() == Some(sub_id))
        {
            inv.next_payment_attempt = None;
            inv.automatically_finalizes_at = None;
        }
        let obj = self.render_subscription(sub_id);
        self.emit("customer.subscription.deleted", now, obj, None);
        self.abort_schedule_of(sub_id);
    }

    pub(crate) fn cancel_due(&mut self, sub_id: &str) {
        self.end_subscription(sub_id, "cancellation_requested");
    }

    /// `DELETE /v1/subscriptions/{id}`: cancel now.
    pub fn cancel_subscription(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id) else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if sub.is_ended() {
            return Err(StripeError::invalid_state(format!(
                "A canceled subscription can only update its cancellation_details and metadata. \
                 ({sub_id} is {})",
                sub.status
            )));
        }
        self.end_subscription(sub_id, "cancellation_requested");
        Ok(())
    }

    pub(crate) fn expire_incomplete(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.status != "incomplete" {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        if let Some(inv) = sub.latest_invoice.as_deref()
            && self.invoices.get(inv).is_some_and(|i| i.status == "open")
        {
            self.void_invoice(inv);
        }
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "incomplete_expired".into();
            s.ended_at = Some(now);
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
    }

    pub(crate) fn resume_collection_due(&mut self, sub_id: &str) {
        let Some(sub) = self.subscriptions.get(sub_id) else {
            return;
        };
        let now = self.time_for_customer(&sub.customer.clone());
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.pause_collection = None;
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit("customer.subscription.updated", now, after, prev);
    }

    /// `POST /v1/subscriptions/{id}/resume`: a `paused` subscription becomes `active`,
    /// starts a new period now and is billed for it at once.
    pub fn resume_subscription(&mut self, sub_id: &str) -> Result<(), StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "id"));
        };
        if sub.status != "paused" {
            return Err(StripeError::invalid_state(format!(
                "Only a paused subscription can be resumed ({sub_id} is {}).",
                sub.status
            )));
        }
        let now = self.time_for_customer(&sub.customer);
        let prices = self.prices.clone();
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.status = "active".into();
            s.billing_cycle_anchor = now;
            for item in &mut s.items {
                let (interval, count) = prices
                    .get(&item.price)
                    .map_or(("month".to_string(), 1), |p| {
                        (p.interval.clone(), p.interval_count)
                    });
                item.current_period_start = now;
                item.current_period_end = add_interval(now, &interval, count);
            }
        }
        let after = self.render_subscription(sub_id);
        let prev = diff(&before, &after);
        self.emit(
            "customer.subscription.resumed",
            now,
            after.clone(),
            prev.clone(),
        );
        self.emit("customer.subscription.updated", now, after, prev);
        let inv = self.new_invoice(sub_id, "subscription_update", (now, now), false);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        self.finalize(&inv);
        let _ = self.attempt_payment(&inv);
        Ok(())
    }
}
