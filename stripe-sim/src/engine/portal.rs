//! Billing portal sessions (`/v1/billing_portal/sessions`).

use serde_json::{Value, json};

use super::{State, new_id};
use crate::error::StripeError;

/// A billing portal session.
#[derive(Debug, Clone)]
pub struct PortalSession {
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) return_url: Option<String>,
}

impl State {
    /// `POST /v1/billing_portal/sessions`.
    pub fn create_portal_session(
        &mut self,
        customer: &str,
        return_url: Option<String>,
    ) -> Result<String, StripeError> {
        if !self.customers.contains_key(customer) {
            return Err(StripeError::missing("customer", customer, "customer"));
        }
        let id = new_id("bps_");
        let created = self.time_for_customer(customer);
        self.portal_sessions.insert(
            id.clone(),
            PortalSession {
                id: id.clone(),
                created,
                customer: customer.to_string(),
                return_url,
            },
        );
        Ok(id)
    }

    /// A billing portal session.
    pub fn render_portal(&self, id: &str) -> Value {
        let Some(p) = self.portal_sessions.get(id) else {
            return Value::Null;
        };
        json!({
            "id": p.id,
            "object": "billing_portal.session",
            "configuration": "bpc_simulated_default",
            "created": p.created,
            "customer": p.customer,
            "customer_account": null,
            "flow": null,
            "livemode": false,
            "locale": null,
            "on_behalf_of": null,
            "return_url": p.return_url,
            "url": format!("{}p/session/{}", self.settings.public_url, p.id),
        })
    }
}
