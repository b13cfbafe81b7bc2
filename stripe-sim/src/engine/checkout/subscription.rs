//! Pay on the hosted page of a subscription-mode session: the subscription, its first
//! invoice and payment (or trial), and a second Pay after "authentication required".

use super::{CheckoutOutcome, CheckoutSession};
use crate::engine::subscriptions::add_interval;
use crate::engine::{NewCustomer, State, Subscription, SubscriptionItem, TestCard, new_id};
use crate::error::StripeError;

impl State {
    /// Pay in subscription mode: creates the subscription and its first invoice and
    /// charges it (or starts the trial).
    pub(super) fn complete_subscription_checkout(
        &mut self,
        session_id: &str,
        cs: CheckoutSession,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        let trial = cs.trial_period_days.filter(|d| *d > 0);
        match card {
            Some(TestCard::Declined) => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            Some(TestCard::ChargeCustomerFail) if trial.is_none() => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            None if trial.is_none() || cs.payment_method_collection != "if_required" => {
                return Err(StripeError::missing_param("payment_method"));
            }
            _ => {}
        }

        // A second Pay after "authentication required" pays the same incomplete subscription.
        if let Some(sub_id) = cs.subscription.clone() {
            return self.retry_checkout_payment(session_id, &sub_id, card);
        }

        let customer = match cs.customer.clone() {
            Some(c) => c,
            None => self.create_customer(NewCustomer {
                email: cs.customer_email.clone(),
                ..NewCustomer::default()
            })?,
        };
        let now = self.time_for_customer(&customer);
        let pm = card.map(|c| self.new_payment_method(&customer, c));
        let (price_id, quantity) = cs.line_items.first().cloned().unwrap_or_default();
        let Some(price) = self.prices.get(&price_id).cloned() else {
            return Err(StripeError::missing(
                "price",
                &price_id,
                "line_items[0][price]",
            ));
        };

        let trial_end = trial.map(|d| now + d * 86_400);
        let period_end =
            trial_end.unwrap_or_else(|| add_interval(now, &price.interval, price.interval_count));
        let sub_id = new_id("sub_");
        let seq = self.next_seq();
        let sub = Subscription {
            id: sub_id.clone(),
            seq,
            created: now,
            customer: customer.clone(),
            status: if trial.is_some() {
                "trialing".into()
            } else {
                "incomplete".into()
            },
            items: vec![SubscriptionItem {
                id: new_id("si_"),
                created: now,
                price: price.id.clone(),
                quantity,
                current_period_start: now,
                current_period_end: period_end,
            }],
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            ended_at: None,
            cancellation_reason: None,
            pause_collection: None,
            trial_start: trial.map(|_| now),
            trial_end,
            missing_payment_method: cs.missing_payment_method.clone(),
            latest_invoice: None,
            default_payment_method: pm.clone(),
            billing_cycle_anchor: trial_end.unwrap_or(now),
            start_date: now,
            currency: price.currency.clone(),
            metadata: cs.subscription_metadata.clone(),
            fail_next_renewal: false,
            trial_will_end_sent: false,
            schedule: None,
        };
        self.subscriptions.insert(sub_id.clone(), sub);
        let obj = self.render_subscription(&sub_id);
        self.emit("customer.subscription.created", now, obj, None);

        let inv = self.new_invoice(&sub_id, "subscription_create", (now, now), trial.is_some());
        if let Some(s) = self.subscriptions.get_mut(&sub_id) {
            s.latest_invoice = Some(inv.clone());
        }
        let obj = self.render_invoice(&inv);
        self.emit("invoice.created", now, obj, None);
        self.finalize(&inv);
        let _ = self.attempt_payment(&inv);

        if let Some(cs) = self.checkout_sessions.get_mut(session_id) {
            cs.customer = Some(customer);
            cs.subscription = Some(sub_id.clone());
            cs.invoice = Some(inv.clone());
        }
        self.finish_checkout_if_paid(session_id, &sub_id)
    }

    fn retry_checkout_payment(
        &mut self,
        session_id: &str,
        sub_id: &str,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing("subscription", sub_id, "subscription"));
        };
        if sub.status != "incomplete" {
            return Err(StripeError::invalid_state(format!(
                "The subscription of this session is {}.",
                sub.status
            )));
        }
        if let Some(c) = card {
            let pm = self.new_payment_method(&sub.customer, c);
            if let Some(s) = self.subscriptions.get_mut(sub_id) {
                s.default_payment_method = Some(pm);
            }
        }
        if let Some(inv) = sub.latest_invoice {
            let _ = self.attempt_payment(&inv);
        }
        self.finish_checkout_if_paid(session_id, sub_id)
    }

    fn finish_checkout_if_paid(
        &mut self,
        session_id: &str,
        sub_id: &str,
    ) -> Result<CheckoutOutcome, StripeError> {
        let status = self
            .subscriptions
            .get(sub_id)
            .map(|s| s.status.clone())
            .unwrap_or_default();
        if status == "incomplete" {
            return Ok(CheckoutOutcome::RequiresAction {
                subscription: sub_id.to_string(),
            });
        }
        let trialing = status == "trialing";
        let Some(cs) = self.checkout_sessions.get_mut(session_id) else {
            return Err(StripeError::missing("checkout.session", session_id, "id"));
        };
        cs.status = "complete".into();
        cs.payment_status = if trialing {
            "no_payment_required".into()
        } else {
            "paid".into()
        };
        let redirect = cs
            .success_url
            .as_ref()
            .map(|u| u.replace("{CHECKOUT_SESSION_ID}", session_id));
        let customer = cs.customer.clone().unwrap_or_default();
        let now = self.time_for_customer(&customer);
        let obj = self.render_checkout(session_id);
        self.emit("checkout.session.completed", now, obj, None);
        Ok(CheckoutOutcome::Completed {
            redirect,
            subscription: sub_id.to_string(),
            payment_intent: None,
            setup_intent: None,
        })
    }
}
