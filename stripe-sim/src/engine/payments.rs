//! Payments: charging an invoice (`POST /v1/invoices/{id}/pay` and automatic collection),
//! the retry schedule after a failure and what running out of retries does to the
//! subscription; forced renewal failures for tests.

use super::render::diff;
use super::{Invoice, State, TestCard};
use crate::error::StripeError;

/// Result of one charge attempt against the subscription's card.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Charge {
    Succeeded,
    Declined,
    NeedsAuthentication,
    NoPaymentMethod,
}

impl State {
    /// The payment method an invoice is charged with: the invoice's own, else its
    /// subscription's default, else the customer's `invoice_settings.default_payment_method`.
    pub(crate) fn payment_method_for(&self, inv: &Invoice) -> Option<String> {
        let sub = inv
            .subscription
            .as_ref()
            .and_then(|s| self.subscriptions.get(s));
        inv.default_payment_method
            .clone()
            .or_else(|| sub.and_then(|s| s.default_payment_method.clone()))
            .or_else(|| {
                self.customers
                    .get(&inv.customer)
                    .and_then(|c| c.default_payment_method.clone())
            })
    }

    fn charge(&mut self, inv: &Invoice, renewal_first_attempt: bool) -> Charge {
        let sub = inv
            .subscription
            .as_ref()
            .and_then(|s| self.subscriptions.get(s))
            .cloned();
        if renewal_first_attempt && let Some(sub) = &sub {
            let forced_sub = sub.fail_next_renewal;
            let forced_cus = self
                .customers
                .get(&sub.customer)
                .is_some_and(|c| c.fail_next_renewal);
            if forced_sub || forced_cus {
                if let Some(s) = self.subscriptions.get_mut(&sub.id) {
                    s.fail_next_renewal = false;
                }
                if let Some(c) = self.customers.get_mut(&sub.customer) {
                    c.fail_next_renewal = false;
                }
                return Charge::Declined;
            }
        }
        self.charge_outcome(self.payment_method_for(inv).as_deref())
    }

    /// What charging a payment method would do (no state change).
    pub(crate) fn charge_outcome(&self, pm: Option<&str>) -> Charge {
        match pm.and_then(|p| self.payment_methods.get(p)).map(|p| p.card) {
            None => Charge::NoPaymentMethod,
            Some(TestCard::Visa) => Charge::Succeeded,
            Some(TestCard::ChargeCustomerFail | TestCard::Declined) => Charge::Declined,
            Some(TestCard::AuthenticationRequired) => Charge::NeedsAuthentication,
        }
    }

    /// One payment attempt on an open invoice, with everything that follows from it:
    /// paid → subscription active again; failed → retry schedule, `past_due`, and when
    /// retries run out `canceled` or `unpaid`.
    ///
    /// Returns the outcome (`None` if the invoice is not open), for `POST /v1/invoices/{id}/pay`.
    pub(crate) fn attempt_payment(&mut self, inv_id: &str) -> Option<Charge> {
        let inv = self.invoices.get(inv_id).cloned()?;
        if inv.status != "open" {
            return None;
        }
        let now = self.time_for_customer(&inv.customer);
        // A manual invoice has no subscription: "" names none in the lookups below.
        let sub_id = inv.subscription.clone().unwrap_or_default();
        let outcome = if inv.amount_due == 0 {
            Charge::Succeeded
        } else {
            let first_renewal_try =
                inv.billing_reason == "subscription_cycle" && inv.attempt_count == 0;
            self.charge(&inv, first_renewal_try)
        };
        if let Some(i) = self.invoices.get_mut(inv_id)
            && i.amount_due > 0
        {
            i.attempt_count += 1;
            i.attempted = true;
        }
        let sub_before = self.render_subscription(&sub_id);
        let sub_status = self
            .subscriptions
            .get(&sub_id)
            .map(|s| s.status.clone())
            .unwrap_or_default();

        if outcome == Charge::Succeeded {
            if let Some(i) = self.invoices.get_mut(inv_id) {
                i.status = "paid".into();
                i.amount_paid = i.amount_due;
                i.paid_at = Some(now);
                i.next_payment_attempt = None;
                i.attempted = true;
            }
            let obj = self.render_invoice(inv_id);
            self.emit("invoice.paid", now, obj.clone(), None);
            self.emit("invoice.payment_succeeded", now, obj, None);
            if matches!(sub_status.as_str(), "incomplete" | "past_due" | "unpaid") {
                if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                    s.status = "active".into();
                }
                let after = self.render_subscription(&sub_id);
                let prev = diff(&sub_before, &after);
                self.emit("customer.subscription.updated", now, after, prev);
            }
            return Some(outcome);
        }

        let needs_auth = outcome == Charge::NeedsAuthentication;
        if sub_status == "incomplete" || inv.subscription.is_none() {
            // The first invoice is not retried on a schedule; it waits 23 hours for the
            // customer, then the subscription expires.
            let obj = self.render_invoice(inv_id);
            if needs_auth {
                self.emit("invoice.payment_action_required", now, obj, None);
            } else {
                self.emit("invoice.payment_failed", now, obj, None);
            }
            return Some(outcome);
        }

        let (attempts, first_failed) = match self.invoices.get_mut(inv_id) {
            Some(i) => {
                let first = *i.first_failed_at.get_or_insert(now);
                (i.attempt_count, first)
            }
            None => return Some(outcome),
        };
        let next = usize::try_from(attempts - 1)
            .ok()
            .and_then(|n| self.settings.retry_delays.get(n))
            .map(|d| (first_failed + d).max(now + 1));
        if let Some(i) = self.invoices.get_mut(inv_id) {
            i.next_payment_attempt = next;
        }
        let obj = self.render_invoice(inv_id);
        self.emit("invoice.payment_failed", now, obj.clone(), None);
        if needs_auth {
            self.emit("invoice.payment_action_required", now, obj, None);
        }

        if next.is_some() {
            if matches!(sub_status.as_str(), "active" | "trialing") {
                if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                    s.status = "past_due".into();
                }
                let after = self.render_subscription(&sub_id);
                let prev = diff(&sub_before, &after);
                self.emit("customer.subscription.updated", now, after, prev);
            }
            return Some(outcome);
        }
        match self.settings.after_retries {
            super::AfterRetries::Cancel => self.end_subscription(&sub_id, "payment_failed"),
            super::AfterRetries::Unpaid => {
                if sub_status != "unpaid" {
                    if let Some(s) = self.subscriptions.get_mut(&sub_id) {
                        s.status = "unpaid".into();
                    }
                    let after = self.render_subscription(&sub_id);
                    let prev = diff(&sub_before, &after);
                    self.emit("customer.subscription.updated", now, after, prev);
                }
            }
        }
        Some(outcome)
    }

    /// `POST /v1/invoices/{id}/pay`: finalizes a draft, then charges now (with
    /// `payment_method` if given). A failed charge answers Stripe's 402 card error.
    pub fn pay_invoice(&mut self, id: &str, pm: Option<String>) -> Result<(), StripeError> {
        let Some(inv) = self.invoices.get(id).cloned() else {
            return Err(StripeError::missing("invoice", id, "id"));
        };
        match inv.status.as_str() {
            "draft" => self.finalize(id),
            "open" => {}
            "paid" => return Err(StripeError::invalid_state("Invoice is already paid")),
            other => {
                return Err(StripeError::invalid_state(format!(
                    "You cannot pay an invoice with status {other}."
                )));
            }
        }
        if let Some(pm) = &pm {
            self.check_payment_method(&inv.customer, pm, "payment_method")?;
            if let Some(i) = self.invoices.get_mut(id) {
                i.default_payment_method = Some(pm.clone());
            }
        }
        match self.attempt_payment(id) {
            Some(Charge::Succeeded) | None => Ok(()),
            Some(Charge::Declined) => Err(StripeError::card_declined("Your card was declined.")),
            Some(Charge::NeedsAuthentication) => Err(StripeError::authentication_required()),
            Some(Charge::NoPaymentMethod) => Err(StripeError::invalid_state(
                "This customer has no attached payment source or default payment method. \
                 Please consider adding a default payment method.",
            )),
        }
    }

    /// Renewals of a subscription (id `sub_`) or of every subscription of a customer
    /// (id `cus_`) fail once.
    pub fn fail_next_renewal(&mut self, id: &str) -> Result<(), StripeError> {
        if let Some(s) = self.subscriptions.get_mut(id) {
            s.fail_next_renewal = true;
            return Ok(());
        }
        if let Some(c) = self.customers.get_mut(id) {
            c.fail_next_renewal = true;
            return Ok(());
        }
        Err(StripeError::missing("subscription or customer", id, "id"))
    }
}
