//! Objects as Stripe returns them for API version 2026-09-30: every field async-stripe
//! requires is present (checked by the crate's tests, which deserialize these with the
//! async-stripe types), optional ones are `null` or plausible values.

use serde_json::{Value, json};

use super::State;

/// `previous_attributes`: the old value of every top-level field that changed, or `None`.
pub(crate) fn diff(before: &Value, after: &Value) -> Option<Value> {
    let (Value::Object(b), Value::Object(a)) = (before, after) else {
        return None;
    };
    let changed: serde_json::Map<String, Value> = b
        .iter()
        .filter(|(k, v)| a.get(k.as_str()) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if changed.is_empty() {
        None
    } else {
        Some(Value::Object(changed))
    }
}

/// Replaces ids by the objects they name, for `expand[]` paths such as `subscription`,
/// `customer`, `latest_invoice`, `data.customer` (lists) or `subscription.latest_invoice`.
pub fn expand(state: &State, value: &mut Value, paths: &[String]) {
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        expand_path(state, value, &parts);
    }
}

fn expand_path(state: &State, value: &mut Value, parts: &[&str]) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if *first == "data"
        && let Some(items) = value.get_mut("data").and_then(Value::as_array_mut)
    {
        for item in items {
            expand_path(state, item, rest);
        }
        return;
    }
    let Some(slot) = value.get_mut(*first) else {
        return;
    };
    if let Value::String(id) = slot
        && let Some(obj) = state.render_by_id(id)
    {
        *slot = obj;
    }
    if !rest.is_empty() {
        expand_path(state, slot, rest);
    }
}

fn metadata(m: &std::collections::BTreeMap<String, String>) -> Value {
    json!(m)
}

impl State {
    /// Any object by id, chosen by the id's prefix.
    pub fn render_by_id(&self, id: &str) -> Option<Value> {
        let v = if id.starts_with("cus_") {
            self.render_customer(id)
        } else if id.starts_with("sub_") {
            self.render_subscription(id)
        } else if id.starts_with("in_") {
            self.render_invoice(id)
        } else if id.starts_with("cs_") {
            self.render_checkout(id)
        } else if id.starts_with("price_") {
            self.render_price(id)
        } else if id.starts_with("prod_") {
            self.render_product(id)
        } else if id.starts_with("pm_") {
            self.render_payment_method(id)
        } else if id.starts_with("bps_") {
            self.render_portal(id)
        } else if id.starts_with("ii_") {
            self.render_invoice_item(id)
        } else if id.starts_with("clock_") {
            self.render_test_clock(id)
        } else {
            Value::Null
        };
        if v.is_null() { None } else { Some(v) }
    }

    /// A customer (`Value::Null` if unknown).
    pub fn render_customer(&self, id: &str) -> Value {
        let Some(c) = self.customers.get(id) else {
            if self.deleted_customers.contains(id) {
                return json!({"id": id, "object": "customer", "deleted": true});
            }
            return Value::Null;
        };
        let delinquent = self
            .subscriptions
            .values()
            .any(|s| s.customer == id && matches!(s.status.as_str(), "past_due" | "unpaid"));
        json!({
            "id": c.id,
            "object": "customer",
            "address": null,
            "balance": c.balance,
            "created": c.created,
            "currency": self.subscriptions.values().find(|s| s.customer == id).map(|s| s.currency.clone()),
            "default_source": null,
            "delinquent": delinquent,
            "description": c.description,
            "discount": null,
            "email": c.email,
            "invoice_prefix": c.id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_uppercase(),
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": c.default_payment_method,
                "footer": null,
                "rendering_options": null,
            },
            "livemode": false,
            "metadata": metadata(&c.metadata),
            "name": c.name,
            "next_invoice_sequence": 1 + self.invoices.values().filter(|i| i.customer == id && i.number.is_some()).count(),
            "phone": null,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": c.test_clock,
        })
    }

    /// A card payment method.
    pub fn render_payment_method(&self, id: &str) -> Value {
        let Some(pm) = self.payment_methods.get(id) else {
            return Value::Null;
        };
        json!({
            "id": pm.id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {"address": null, "email": null, "name": null, "phone": null, "tax_id": null},
            "card": {
                "brand": pm.brand,
                "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                "country": "US",
                "display_brand": pm.brand,
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": if pm.brand == "mastercard" && pm.card == super::TestCard::Visa { "4444" } else { pm.card.last4() },
                "wallet": null,
            },
            "created": pm.created,
            "customer": pm.customer,
            "livemode": false,
            "metadata": {},
            "type": "card",
        })
    }

    /// A product.
    pub fn render_product(&self, id: &str) -> Value {
        let Some(p) = self.products.get(id) else {
            return Value::Null;
        };
        let default_price = self
            .prices
            .values()
            .find(|pr| pr.product == id)
            .map(|pr| pr.id.clone());
        json!({
            "id": p.id,
            "object": "product",
            "active": p.active,
            "created": p.created,
            "default_price": default_price,
            "description": p.description,
            "images": [],
            "livemode": false,
            "marketing_features": [],
            "metadata": metadata(&p.metadata),
            "name": p.name,
            "package_dimensions": null,
            "shippable": null,
            "statement_descriptor": null,
            "tax_code": null,
            "type": "service",
            "unit_label": null,
            "updated": p.created,
            "url": null,
        })
    }

    /// A recurring price.
    pub fn render_price(&self, id: &str) -> Value {
        let Some(p) = self.prices.get(id) else {
            return Value::Null;
        };
        json!({
            "id": p.id,
            "object": "price",
            "active": p.active,
            "billing_scheme": "per_unit",
            "created": p.created,
            "currency": p.currency,
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": p.lookup_key,
            "metadata": metadata(&p.metadata),
            "nickname": p.nickname,
            "product": p.product,
            // One-time prices are stored with an empty interval.
            "recurring": if p.interval.is_empty() { Value::Null } else { json!({
                "interval": p.interval,
                "interval_count": p.interval_count,
                "meter": null,
                "trial_period_days": null,
                "usage_type": "licensed",
            }) },
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": if p.interval.is_empty() { "one_time" } else { "recurring" },
            "unit_amount": p.unit_amount,
            "unit_amount_decimal": p.unit_amount.to_string(),
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
            "schedule": null,
            "start_date": s.start_date,
            "status": s.status,
            "test_clock": self.clock_of_customer(&s.customer),
            "transfer_data": null,
            "trial_end": s.trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": s.missing_payment_method}},
            "trial_start": s.trial_start,
        })
    }

    /// An invoice; its subscription is under `parent.subscription_details`.
    pub fn render_invoice(&self, id: &str) -> Value {
        let Some(inv) = self.invoices.get(id) else {
            return Value::Null;
        };
        let customer = self.customers.get(&inv.customer);
        let lines: Vec<Value> = inv
            .lines
            .iter()
            .map(|l| {
                let price = l.price.as_ref().and_then(|p| self.prices.get(p));
                let product = price.map(|p| p.product.clone()).unwrap_or_default();
                let name = self
                    .products
                    .get(&product)
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                let parent = match (&l.invoice_item, &l.subscription_item) {
                    (Some(ii), _) => json!({
                        "invoice_item_details": {
                            "invoice_item": ii,
                            "proration": l.proration,
                            "proration_details": {"credited_items": null},
                            "subscription": inv.subscription,
                        },
                        "subscription_item_details": null,
                        "type": "invoice_item_details",
                    }),
                    (None, Some(si)) => json!({
                        "invoice_item_details": null,
                        "subscription_item_details": {
                            "invoice_item": null,
                            "proration": false,
                            "proration_details": {"credited_items": null},
                            "subscription": inv.subscription,
                            "subscription_item": si,
                        },
                        "type": "subscription_item_details",
                    }),
                    (None, None) => Value::Null,
                };
                let pricing = price.map(|p| {
                    json!({
                        "price_details": {"price": p.id, "product": product},
                        "type": "price_details",
                        "unit_amount_decimal": p.unit_amount.to_string(),
                    })
                });
                json!({
                    "id": l.id,
                    "object": "line_item",
                    "amount": l.amount,
                    "currency": inv.currency,
                    "description": l.description.clone().unwrap_or_else(|| format!("{} × {}", l.quantity, name)),
                    "discount_amounts": [],
                    "discountable": !l.proration,
                    "discounts": [],
                    "invoice": inv.id,
                    "livemode": false,
                    "metadata": {},
                    "parent": parent,
                    "period": {"end": l.period_end, "start": l.period_start},
                    "pretax_credit_amounts": [],
                    "pricing": pricing,
                    "quantity": l.quantity,
                    "subtotal": l.amount,
                    "taxes": [],
                })
            })
            .collect();
        let finalized = inv.finalized_at.is_some();
        json!({
            "id": inv.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "My Smart Road (simulated)",
            "account_tax_ids": null,
            "amount_due": inv.amount_due,
            "amount_overpaid": 0,
            "amount_paid": inv.amount_paid,
            "amount_remaining": if matches!(inv.status.as_str(), "void" | "paid") { 0 } else { inv.amount_due - inv.amount_paid },
            "amount_shipping": 0,
            "application": null,
            "attempt_count": inv.attempt_count,
            "attempted": inv.attempted,
            "auto_advance": inv.auto_advance && matches!(inv.status.as_str(), "draft" | "open"),
            "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
            "automatically_finalizes_at": inv.automatically_finalizes_at,
            "billing_reason": inv.billing_reason,
            "collection_method": "charge_automatically",
            "created": inv.created,
            "currency": inv.currency,
            "custom_fields": null,
            "customer": inv.customer,
            "customer_address": null,
            "customer_email": customer.and_then(|c| c.email.clone()),
            "customer_name": customer.and_then(|c| c.name.clone()),
            "customer_phone": null,
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": inv.default_payment_method,
            "default_source": null,
            "default_tax_rates": [],
            "description": inv.description,
            "discounts": [],
            "due_date": null,
            "effective_at": inv.finalized_at,
            "ending_balance": if finalized { inv.ending_balance } else { None },
            "footer": null,
            "from_invoice": null,
            "hosted_invoice_url": null,
            "invoice_pdf": null,
            "issuer": {"type": "self"},
            "last_finalization_error": null,
            "latest_revision": null,
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": false,
                "total_count": inv.lines.len(),
                "url": format!("/v1/invoices/{}/lines", inv.id),
            },
            "livemode": false,
            "metadata": metadata(&inv.metadata),
            "next_payment_attempt": inv.next_payment_attempt,
            "number": inv.number,
            "on_behalf_of": null,
            "parent": inv.subscription.as_ref().map(|sub| json!({
                "quote_details": null,
                "subscription_details": {
                    "metadata": metadata(&inv.subscription_metadata),
                    "subscription": sub,
                },
                "type": "subscription_details",
            })),
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "period_end": inv.period_end,
            "period_start": inv.period_start,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": inv.starting_balance,
            "statement_descriptor": null,
            "status": inv.status,
            "status_transitions": {
                "finalized_at": inv.finalized_at,
                "marked_uncollectible_at": inv.marked_uncollectible_at,
                "paid_at": inv.paid_at,
                "voided_at": inv.voided_at,
            },
            "subtotal": inv.total,
            "subtotal_excluding_tax": inv.total,
            "test_clock": self.clock_of_customer(&inv.customer),
            "total": inv.total,
            "total_discount_amounts": [],
            "total_excluding_tax": inv.total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": null,
        })
    }

    /// An invoice item (`invoiceitem`): a proration or a one-off charge or credit.
    pub fn render_invoice_item(&self, id: &str) -> Value {
        let Some(i) = self.invoice_items.get(id) else {
            return Value::Null;
        };
        let price = i.price.as_ref().and_then(|p| self.prices.get(p));
        json!({
            "id": i.id,
            "object": "invoiceitem",
            "amount": i.amount,
            "currency": i.currency,
            "customer": i.customer,
            "customer_account": null,
            "date": i.created,
            "description": i.description,
            "discountable": !i.proration,
            "discounts": [],
            "invoice": i.invoice,
            "livemode": false,
            "metadata": metadata(&i.metadata),
            "net_amount": i.amount,
            "parent": i.subscription.as_ref().map(|s| json!({
                "subscription_details": {"subscription": s, "subscription_item": i.subscription_item},
                "type": "subscription_details",
            })),
            "period": {"end": i.period_end, "start": i.period_start},
            "pricing": price.map(|p| json!({
                "price_details": {"price": p.id, "product": p.product},
                "type": "price_details",
                "unit_amount_decimal": p.unit_amount.to_string(),
            })),
            "proration": i.proration,
            "quantity": i.quantity,
            "quantity_decimal": i.quantity.to_string(),
            "tax_rates": [],
            "test_clock": self.clock_of_customer(&i.customer),
        })
    }

    /// A Checkout Session; `url` is set only while it is open, as on Stripe.
    pub fn render_checkout(&self, id: &str) -> Value {
        let Some(cs) = self.checkout_sessions.get(id) else {
            return Value::Null;
        };
        let price = self.prices.get(&cs.price);
        let amount = price.map_or(0, |p| p.unit_amount * cs.quantity);
        let amount = if cs.trial_period_days.is_some_and(|d| d > 0) {
            0
        } else {
            amount
        };
        let customer = cs.customer.as_ref().and_then(|c| self.customers.get(c));
        let details = if cs.status == "complete" {
            json!({
                "address": null,
                "email": customer.and_then(|c| c.email.clone()).or_else(|| cs.customer_email.clone()),
                "name": customer.and_then(|c| c.name.clone()),
                "phone": null,
                "tax_exempt": "none",
                "tax_ids": [],
            })
        } else {
            Value::Null
        };
        let url =
            (cs.status == "open").then(|| format!("{}c/pay/{}", self.settings.public_url, cs.id));
        json!({
            "id": cs.id,
            "object": "checkout.session",
            "adaptive_pricing": null,
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "cancel_url": cs.cancel_url,
            "client_reference_id": cs.client_reference_id,
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": cs.created,
            "currency": price.map(|p| p.currency.clone()),
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": cs.customer,
            "customer_creation": if cs.customer.is_some() && cs.customer_email.is_none() { Value::Null } else { json!("always") },
            "customer_details": details,
            "customer_email": cs.customer_email,
            "discounts": [],
            "expires_at": cs.expires_at,
            "invoice": cs.invoice,
            "invoice_creation": null,
            "livemode": false,
            "locale": null,
            "metadata": metadata(&cs.metadata),
            "mode": "subscription",
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": cs.payment_method_collection,
            "payment_method_configuration_details": null,
            "payment_method_options": null,
            "payment_method_types": ["card"],
            "payment_status": cs.payment_status,
            "phone_number_collection": null,
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": cs.status,
            "submit_type": null,
            "subscription": cs.subscription,
            "success_url": cs.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": url,
        })
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
