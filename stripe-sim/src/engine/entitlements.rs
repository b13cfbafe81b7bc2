//! Entitlements: features (`/v1/entitlements/features`), their attachment to products
//! (`/v1/products/{id}/features`) and each customer's active entitlements
//! (`/v1/entitlements/active_entitlements`).
//!
//! A customer's active set is derived, never edited: it is the features of the products of
//! the prices on the customer's subscriptions whose status grants access (`trialing`,
//! `active`, `past_due`). [`State::reconcile_entitlements`] is the one place that recomputes
//! it; only when the set changed does it store the new set and emit
//! `entitlements.active_entitlement_summary.updated`. It runs after every
//! `customer.subscription.*` event (see `State::emit`: each change of a subscription's status
//! or items announces itself with one, so no transition can forget it) and for every
//! customer of a product whose features are added or removed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::{State, new_id};
use crate::error::StripeError;
use crate::form::MetadataUpdate;

/// Subscription statuses that grant a product's features.
const ENTITLING: [&str; 3] = ["trialing", "active", "past_due"];

/// Entries the summary event embeds, like the first page of the list endpoint; consumers
/// page `GET /v1/entitlements/active_entitlements` for the rest.
const SUMMARY_PAGE: usize = 10;

/// Longest `lookup_key` and `name` Stripe accepts.
const MAX_LEN: usize = 80;

/// An `entitlements.feature`.
#[derive(Debug, Clone)]
pub struct Feature {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) lookup_key: String,
    /// `false` once archived; archiving is permanent, as on Stripe.
    pub(crate) active: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// A `product_feature`: one feature attached to one product.
#[derive(Debug, Clone)]
pub struct ProductFeature {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) product: String,
    pub(crate) feature: String,
}

/// An `entitlements.active_entitlement`: a feature a customer has now. Its id stays the
/// same for as long as the customer keeps the feature.
#[derive(Debug, Clone)]
pub struct ActiveEntitlement {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) customer: String,
    pub(crate) feature: String,
}

/// Features, product features and the stored active sets, keyed by id.
#[derive(Debug, Default)]
pub struct Entitlements {
    pub(crate) features: BTreeMap<String, Feature>,
    pub(crate) product_features: BTreeMap<String, ProductFeature>,
    pub(crate) active: BTreeMap<String, ActiveEntitlement>,
}

/// The name a seeded feature gets from its lookup key: `fleet_tracking` → `Fleet tracking`.
pub(crate) fn feature_name(lookup_key: &str) -> String {
    let words = lookup_key.replace(['_', '-'], " ");
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn check_len(param: &str, value: &str) -> Result<(), StripeError> {
    if value.chars().count() > MAX_LEN {
        return Err(StripeError::invalid_param(
            param,
            &format!("Invalid {param}: must be at most {MAX_LEN} characters"),
        ));
    }
    Ok(())
}

impl State {
    /// `POST /v1/entitlements/features`. The lookup key must be unique among active
    /// features (an archived feature's key may be reused, as on Stripe). No event: Stripe
    /// sends none for features.
    pub fn create_feature(
        &mut self,
        name: String,
        lookup_key: String,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, StripeError> {
        check_len("name", &name)?;
        check_len("lookup_key", &lookup_key)?;
        if let Some(holder) = self.feature_by_lookup_key(&lookup_key) {
            return Err(StripeError::invalid_param(
                "lookup_key",
                &format!(
                    "A feature with lookup_key `{lookup_key}` already exists ({}).",
                    holder.id
                ),
            ));
        }
        let id = new_id("feat_");
        let seq = self.next_seq();
        self.entitlements.features.insert(
            id.clone(),
            Feature {
                id: id.clone(),
                seq,
                name,
                lookup_key,
                active: true,
                metadata,
            },
        );
        Ok(id)
    }

    /// `POST /v1/entitlements/features/{id}`: `name`, `metadata`, `active=false` (archive).
    /// An archived feature can no longer be changed. Archiving leaves product attachments
    /// and active entitlements as they are (Stripe documents only that an archived feature
    /// cannot be attached to more products and leaves the default list).
    pub fn update_feature(
        &mut self,
        id: &str,
        name: Option<String>,
        metadata: Option<MetadataUpdate>,
        active: Option<bool>,
    ) -> Result<(), StripeError> {
        if let Some(n) = &name {
            check_len("name", n)?;
        }
        let Some(f) = self.entitlements.features.get_mut(id) else {
            return Err(StripeError::missing("feature", id, "id"));
        };
        if !f.active {
            return Err(StripeError::invalid_state(format!(
                "The feature {id} is archived and cannot be updated."
            )));
        }
        if let Some(n) = name {
            f.name = n;
        }
        if let Some(m) = metadata {
            m.apply(&mut f.metadata);
        }
        if let Some(a) = active {
            f.active = a;
        }
        Ok(())
    }

    /// `POST /v1/products/{id}/features`: attaches an active feature once; every customer
    /// with a subscription on the product is re-evaluated.
    pub fn attach_feature(&mut self, product: &str, feature: &str) -> Result<String, StripeError> {
        if !self.products.contains_key(product) {
            return Err(StripeError::missing("product", product, "product"));
        }
        let Some(f) = self.entitlements.features.get(feature) else {
            return Err(StripeError::missing(
                "feature",
                feature,
                "entitlement_feature",
            ));
        };
        if !f.active {
            return Err(StripeError::invalid_param(
                "entitlement_feature",
                &format!("The feature {feature} is archived and cannot be attached to a product."),
            ));
        }
        if let Some(pf) = self.attachment(product, feature) {
            return Err(StripeError::invalid_param(
                "entitlement_feature",
                &format!(
                    "The feature {feature} is already attached to the product {product} ({}).",
                    pf.id
                ),
            ));
        }
        let id = new_id("prodft_");
        let seq = self.next_seq();
        self.entitlements.product_features.insert(
            id.clone(),
            ProductFeature {
                id: id.clone(),
                seq,
                product: product.to_string(),
                feature: feature.to_string(),
            },
        );
        self.reconcile_product(product);
        Ok(id)
    }

    /// `DELETE /v1/products/{id}/features/{product_feature}`: detaches the feature; every
    /// customer with a subscription on the product is re-evaluated.
    pub fn detach_feature(&mut self, product: &str, id: &str) -> Result<(), StripeError> {
        self.product_feature_of(product, id)?;
        self.entitlements.product_features.remove(id);
        self.reconcile_product(product);
        Ok(())
    }

    /// A product feature that belongs to `product`, or 404.
    pub(crate) fn product_feature_of(
        &self,
        product: &str,
        id: &str,
    ) -> Result<&ProductFeature, StripeError> {
        if !self.products.contains_key(product) {
            return Err(StripeError::missing("product", product, "product"));
        }
        self.entitlements
            .product_features
            .get(id)
            .filter(|pf| pf.product == product)
            .ok_or_else(|| StripeError::missing("product_feature", id, "id"))
    }

    /// Seeding: the features of a plan (lookup keys), each created once with a name derived
    /// from its key and attached to the plan's product once.
    pub(crate) fn seed_features(&mut self, product: &str, lookup_keys: &[String]) {
        for key in lookup_keys {
            let existing = self.feature_by_lookup_key(key).map(|f| f.id.clone());
            let seeded = match existing {
                Some(id) => Ok(id),
                None => self.create_feature(feature_name(key), key.clone(), BTreeMap::new()),
            }
            .and_then(|feature| match self.attachment(product, &feature) {
                Some(pf) => Ok(pf.id.clone()),
                None => self.attach_feature(product, &feature),
            });
            if let Err(e) = seeded {
                tracing::error!(error = %e, product, feature = %key, "stripe simulator: plan feature skipped");
            }
        }
    }

    fn attachment(&self, product: &str, feature: &str) -> Option<&ProductFeature> {
        self.entitlements
            .product_features
            .values()
            .find(|pf| pf.product == product && pf.feature == feature)
    }

    fn feature_by_lookup_key(&self, key: &str) -> Option<&Feature> {
        self.entitlements
            .features
            .values()
            .find(|f| f.active && f.lookup_key == key)
    }

    /// Re-evaluates every customer with a subscription (of any status) on `product`.
    fn reconcile_product(&mut self, product: &str) {
        let mut customers: Vec<String> = self
            .subscriptions
            .values()
            .filter(|s| {
                s.items.iter().any(|i| {
                    self.prices
                        .get(&i.price)
                        .is_some_and(|p| p.product == product)
                })
            })
            .map(|s| s.customer.clone())
            .collect();
        customers.sort();
        customers.dedup();
        for c in customers {
            let at = self.time_for_customer(&c);
            self.reconcile_entitlements(&c, at);
        }
    }

    /// The features `customer` is entitled to now, each once, in the order the product
    /// features were attached.
    fn entitled_features(&self, customer: &str) -> Vec<String> {
        let products: Vec<&str> = self
            .subscriptions
            .values()
            .filter(|s| s.customer == customer && ENTITLING.contains(&s.status.as_str()))
            .flat_map(|s| s.items.iter())
            .filter_map(|i| self.prices.get(&i.price))
            .map(|p| p.product.as_str())
            .collect();
        let mut attached: Vec<&ProductFeature> = self
            .entitlements
            .product_features
            .values()
            .filter(|pf| products.contains(&pf.product.as_str()))
            .collect();
        attached.sort_by_key(|pf| pf.seq);
        let mut features: Vec<String> = Vec::new();
        for pf in attached {
            if !features.contains(&pf.feature) {
                features.push(pf.feature.clone());
            }
        }
        features
    }

    /// Recomputes `customer`'s active entitlements; when the set changed, stores it (a
    /// feature kept keeps its `ent_` id) and emits
    /// `entitlements.active_entitlement_summary.updated` at `at`.
    pub(crate) fn reconcile_entitlements(&mut self, customer: &str, at: i64) {
        let wanted = self.entitled_features(customer);
        let held: Vec<(String, String)> = self
            .entitlements
            .active
            .values()
            .filter(|e| e.customer == customer)
            .map(|e| (e.id.clone(), e.feature.clone()))
            .collect();
        let lost: Vec<&String> = held
            .iter()
            .filter(|(_, f)| !wanted.contains(f))
            .map(|(id, _)| id)
            .collect();
        let gained: Vec<&String> = wanted
            .iter()
            .filter(|f| !held.iter().any(|(_, h)| h == *f))
            .collect();
        if lost.is_empty() && gained.is_empty() {
            return;
        }
        for id in lost {
            self.entitlements.active.remove(id);
        }
        for feature in gained {
            let id = new_id("ent_");
            let seq = self.next_seq();
            self.entitlements.active.insert(
                id.clone(),
                ActiveEntitlement {
                    id,
                    seq,
                    customer: customer.to_string(),
                    feature: feature.clone(),
                },
            );
        }
        let summary = self.render_entitlement_summary(customer);
        self.emit(
            "entitlements.active_entitlement_summary.updated",
            at,
            summary,
            None,
        );
    }

    /// `(seq, id)` of a customer's active entitlements, for list pages.
    pub(crate) fn active_entitlements_of(&self, customer: &str) -> Vec<(u64, String)> {
        self.entitlements
            .active
            .values()
            .filter(|e| e.customer == customer)
            .map(|e| (e.seq, e.id.clone()))
            .collect()
    }

    /// An `entitlements.feature`.
    pub fn render_feature(&self, id: &str) -> Value {
        let Some(f) = self.entitlements.features.get(id) else {
            return Value::Null;
        };
        json!({
            "id": f.id,
            "object": "entitlements.feature",
            "active": f.active,
            "livemode": false,
            "lookup_key": f.lookup_key,
            "metadata": metadata(&f.metadata),
            "name": f.name,
        })
    }

    /// A `product_feature` with its feature inlined, as Stripe always returns it.
    pub fn render_product_feature(&self, id: &str) -> Value {
        let Some(pf) = self.entitlements.product_features.get(id) else {
            return Value::Null;
        };
        json!({
            "id": pf.id,
            "object": "product_feature",
            "entitlement_feature": self.render_feature(&pf.feature),
            "livemode": false,
        })
    }

    /// An `entitlements.active_entitlement` (`feature` is an id, expandable).
    pub fn render_active_entitlement(&self, id: &str) -> Value {
        let Some(e) = self.entitlements.active.get(id) else {
            return Value::Null;
        };
        let lookup_key = self
            .entitlements
            .features
            .get(&e.feature)
            .map(|f| f.lookup_key.clone())
            .unwrap_or_default();
        json!({
            "id": e.id,
            "object": "entitlements.active_entitlement",
            "feature": e.feature,
            "livemode": false,
            "lookup_key": lookup_key,
        })
    }

    /// The summary event's object: the first page of the customer's active entitlements
    /// (the list endpoint's order, newest first), `has_more` when there are more.
    fn render_entitlement_summary(&self, customer: &str) -> Value {
        let mut items = self.active_entitlements_of(customer);
        items.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let data: Vec<Value> = items
            .iter()
            .take(SUMMARY_PAGE)
            .map(|(_, id)| self.render_active_entitlement(id))
            .collect();
        json!({
            "object": "entitlements.active_entitlement_summary",
            "customer": customer,
            "entitlements": {
                "object": "list",
                "data": data,
                "has_more": items.len() > SUMMARY_PAGE,
                "url": format!("/v1/entitlements/active_entitlements?customer={customer}"),
            },
            "livemode": false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::state;
    use crate::engine::{NewCustomer, NewSubscription, TestCard};

    fn subscribed(st: &mut State, price: &str) -> (String, String) {
        let cus = st.create_customer(NewCustomer::default()).unwrap();
        st.attach_card(&cus, TestCard::Visa).unwrap();
        let sub = st
            .create_subscription(NewSubscription {
                customer: cus.clone(),
                items: vec![(price.into(), 1)],
                ..Default::default()
            })
            .unwrap();
        (cus, sub)
    }

    fn summaries(st: &State) -> Vec<&Value> {
        st.events
            .iter()
            .filter(|e| e["type"] == "entitlements.active_entitlement_summary.updated")
            .collect()
    }

    #[test]
    fn names_come_from_lookup_keys() {
        assert_eq!(feature_name("fleet_tracking"), "Fleet tracking");
        assert_eq!(feature_name("ai-dispatch"), "Ai dispatch");
        assert_eq!(feature_name(""), "");
    }

    #[test]
    fn a_kept_feature_keeps_its_id_and_an_unchanged_set_emits_nothing() {
        let mut st = state();
        let a = st
            .create_feature("A".into(), "a".into(), BTreeMap::new())
            .unwrap();
        let b = st
            .create_feature("B".into(), "b".into(), BTreeMap::new())
            .unwrap();
        st.attach_feature("prod_msr_weekly", &a).unwrap();
        st.attach_feature("prod_msr_monthly", &a).unwrap();
        st.attach_feature("prod_msr_monthly", &b).unwrap();
        let (cus, _) = subscribed(&mut st, "price_msr_weekly");
        let first = st.active_entitlements_of(&cus);
        assert_eq!(first.len(), 1);
        let count = summaries(&st).len();
        st.reconcile_entitlements(&cus, st.now());
        assert_eq!(summaries(&st).len(), count, "no change, no event");

        let (cus2, _) = subscribed(&mut st, "price_msr_monthly");
        assert_eq!(st.active_entitlements_of(&cus2).len(), 2);
        // The first customer is untouched by the second's subscription.
        assert_eq!(st.active_entitlements_of(&cus), first);
    }

    #[test]
    fn past_due_keeps_the_features_and_unpaid_loses_them() {
        let mut st = state();
        st.settings.after_retries = crate::engine::AfterRetries::Unpaid;
        st.seed_features("prod_msr_weekly", &["trip_log".to_string()]);
        let (cus, sub) = subscribed(&mut st, "price_msr_weekly");
        assert_eq!(summaries(&st).len(), 1);
        st.attach_card(&cus, TestCard::ChargeCustomerFail).unwrap();
        st.advance(8 * 86_400);
        assert_eq!(st.subscriptions[&sub].status, "past_due");
        assert_eq!(summaries(&st).len(), 1, "past_due still grants access");
        st.advance(10 * 86_400);
        assert_eq!(st.subscriptions[&sub].status, "unpaid");
        let all = summaries(&st);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1]["data"]["object"]["entitlements"]["data"], json!([]));
        assert!(st.active_entitlements_of(&cus).is_empty());
    }

    #[test]
    fn only_entitling_statuses_grant_features() {
        let mut st = state();
        st.seed_features("prod_msr_weekly", &["trip_log".to_string()]);
        let cus = st.create_customer(NewCustomer::default()).unwrap();
        st.attach_card(&cus, TestCard::ChargeCustomerFail).unwrap();
        let sub = st
            .create_subscription(NewSubscription {
                customer: cus.clone(),
                items: vec![("price_msr_weekly".into(), 1)],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(st.subscriptions[&sub].status, "incomplete");
        assert!(st.active_entitlements_of(&cus).is_empty());
        assert!(summaries(&st).is_empty());
    }
}
