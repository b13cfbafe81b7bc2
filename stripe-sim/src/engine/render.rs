//! Objects as Stripe returns them for API version 2026-09-30: every field async-stripe
//! requires is present (checked by the crate's tests, which deserialize these with the
//! async-stripe types), optional ones are `null` or plausible values.
//!
//! Each resource's `render_*` lives beside it; this module holds what they share:
//! `previous_attributes` (`diff`), `expand[]` and the lookup of any object by id.

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

pub(super) fn metadata(m: &std::collections::BTreeMap<String, String>) -> Value {
    json!(m)
}

impl State {
    /// Any object by id, chosen by the id's prefix.
    pub fn render_by_id(&self, id: &str) -> Option<Value> {
        let v = if id.starts_with("cus_") {
            self.render_customer(id)
        } else if id.starts_with("sub_sched_") {
            self.render_schedule(id)
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
        } else if id.starts_with("pi_") {
            self.render_payment_intent(id)
        } else if id.starts_with("ch_") {
            self.render_charge(id)
        } else if id.starts_with("seti_") {
            self.render_setup_intent(id)
        } else if id.starts_with("bps_") {
            self.render_portal(id)
        } else if id.starts_with("ii_") {
            self.render_invoice_item(id)
        } else if id.starts_with("clock_") {
            self.render_test_clock(id)
        } else if id.starts_with("feat_") {
            self.render_feature(id)
        } else if id.starts_with("prodft_") {
            self.render_product_feature(id)
        } else if id.starts_with("ent_") {
            self.render_active_entitlement(id)
        } else {
            Value::Null
        };
        if v.is_null() { None } else { Some(v) }
    }
}
