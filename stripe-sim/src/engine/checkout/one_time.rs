//! Pay on the hosted page of a payment-mode or setup-mode session. Neither creates a
//! subscription or an invoice: a payment-mode session is paid at once (its `payment_intent`
//! is an id only, PaymentIntents are not objects here), a setup-mode session saves the card
//! (`setup_intent` likewise) and makes it the customer's default.

use super::{CheckoutOutcome, CheckoutSession};
use crate::engine::{NewCustomer, PaymentMethod, State, TestCard, new_id};
use crate::error::StripeError;

impl State {
    /// Payment mode: a good card pays the line items now; a declining card (or one whose
    /// charges fail) answers 402 `card_declined`; a 3-D Secure card 402
    /// `authentication_required`. The session stays open after a failure.
    pub(super) fn complete_payment_checkout(
        &mut self,
        session_id: &str,
        cs: CheckoutSession,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        match card {
            None => return Err(StripeError::missing_param("payment_method")),
            Some(TestCard::Declined | TestCard::ChargeCustomerFail) => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            Some(TestCard::AuthenticationRequired) => {
                return Err(StripeError::authentication_required());
            }
            Some(TestCard::Visa) => {}
        }
        let customer = self.checkout_customer(&cs)?;
        let payment_intent = new_id("pi_");
        let redirect = self.finish_one_time(
            session_id,
            customer,
            "paid",
            Some(payment_intent.clone()),
            None,
        );
        Ok(CheckoutOutcome::Completed {
            redirect,
            subscription: String::new(),
            payment_intent: Some(payment_intent),
            setup_intent: None,
        })
    }

    /// Setup mode: the card is saved. With a customer it is attached
    /// (`payment_method.attached`) and becomes `invoice_settings.default_payment_method`
    /// (`customer.updated`, then waiting invoices are retried, as on any card change).
    /// A declining card answers 402 `card_declined`, a 3-D Secure card 402
    /// `authentication_required` (the simulator never authenticates).
    pub(super) fn complete_setup_checkout(
        &mut self,
        session_id: &str,
        cs: CheckoutSession,
        card: Option<TestCard>,
    ) -> Result<CheckoutOutcome, StripeError> {
        let card = match card {
            None => return Err(StripeError::missing_param("payment_method")),
            Some(TestCard::Declined) => {
                return Err(StripeError::card_declined("Your card was declined."));
            }
            Some(TestCard::AuthenticationRequired) => {
                return Err(StripeError::authentication_required());
            }
            Some(c) => c,
        };
        let customer = self.checkout_customer(&cs)?;
        match &customer {
            Some(c) => {
                let pm = self.new_payment_method(c, card);
                let now = self.time_for_customer(c);
                let obj = self.render_payment_method(&pm);
                self.emit("payment_method.attached", now, obj, None);
                self.update_customer(c, NewCustomer::default(), Some(pm))?;
            }
            None => {
                // Without a customer the card is saved unattached, as Stripe does.
                let id = new_id("pm_");
                let created = self.now();
                self.payment_methods.insert(
                    id.clone(),
                    PaymentMethod {
                        id,
                        created,
                        customer: None,
                        card,
                        brand: "visa",
                    },
                );
            }
        }
        let setup_intent = new_id("seti_");
        let redirect = self.finish_one_time(
            session_id,
            customer,
            "no_payment_required",
            None,
            Some(setup_intent.clone()),
        );
        Ok(CheckoutOutcome::Completed {
            redirect,
            subscription: String::new(),
            payment_intent: None,
            setup_intent: Some(setup_intent),
        })
    }

    /// The session's customer: its own, or a new one with `customer_creation=always`.
    fn checkout_customer(&mut self, cs: &CheckoutSession) -> Result<Option<String>, StripeError> {
        match (&cs.customer, cs.customer_creation.as_str()) {
            (Some(c), _) => Ok(Some(c.clone())),
            (None, "always") => self
                .create_customer(NewCustomer {
                    email: cs.customer_email.clone(),
                    ..NewCustomer::default()
                })
                .map(Some),
            (None, _) => Ok(None),
        }
    }

    /// Marks the session complete and emits `checkout.session.completed`; returns the
    /// redirect to `success_url`.
    fn finish_one_time(
        &mut self,
        session_id: &str,
        customer: Option<String>,
        payment_status: &str,
        payment_intent: Option<String>,
        setup_intent: Option<String>,
    ) -> Option<String> {
        let now = customer
            .as_deref()
            .map_or_else(|| self.now(), |c| self.time_for_customer(c));
        let cs = self.checkout_sessions.get_mut(session_id)?;
        cs.status = "complete".into();
        cs.payment_status = payment_status.into();
        cs.customer = customer;
        cs.payment_intent = payment_intent;
        cs.setup_intent = setup_intent;
        let redirect = cs
            .success_url
            .as_ref()
            .map(|u| u.replace("{CHECKOUT_SESSION_ID}", session_id));
        let obj = self.render_checkout(session_id);
        self.emit("checkout.session.completed", now, obj, None);
        redirect
    }
}
