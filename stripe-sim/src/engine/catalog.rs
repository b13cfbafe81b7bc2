//! The catalogue: products and prices (`/v1/products`, `/v1/prices`), and the plans
//! seeded at start.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::metadata;
use super::{State, new_id};
use crate::error::StripeError;

/// A product and recurring price seeded at start, with the entitlement features of the
/// product. In a plans file (JSON: an array of these, or `{"plans": [...]}`) `lookup_key`,
/// `currency` (`usd`), `interval_count` (1) and `features` (none) may be left out.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanSeed {
    /// Product id (`prod_...`).
    pub product_id: String,
    /// Product name shown on the hosted pages.
    pub product_name: String,
    /// Price id (`price_...`).
    pub price_id: String,
    /// Lookup key of the price (empty: none).
    #[serde(default)]
    pub lookup_key: String,
    /// Amount in the smallest currency unit.
    pub unit_amount: i64,
    /// Lower-case ISO currency.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// Number of intervals per period.
    #[serde(default = "one")]
    pub interval_count: i64,
    /// Lookup keys of the entitlement features the product grants. Each feature is created
    /// once (named after its key: `fleet_tracking` → "Fleet tracking") and attached to the
    /// product; plans sharing a key share the feature.
    #[serde(default)]
    pub features: Vec<String>,
}

fn default_currency() -> String {
    "usd".into()
}

fn one() -> i64 {
    1
}

impl PlanSeed {
    /// Reads extra plans from a JSON file: an array of plans or `{"plans": [...]}`.
    pub fn load(path: &std::path::Path) -> std::io::Result<Vec<PlanSeed>> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum File {
            List(Vec<PlanSeed>),
            Wrapped { plans: Vec<PlanSeed> },
        }
        let text = std::fs::read_to_string(path)?;
        let file: File = serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(match file {
            File::List(p) | File::Wrapped { plans: p } => p,
        })
    }

    /// The two plans of My Smart Road: weekly 25 USD and monthly 79 USD, without features,
    /// so no `entitlements.active_entitlement_summary.updated` event is ever sent (see
    /// [`PlanSeed::demo`] for the plans with features).
    pub fn defaults() -> Vec<PlanSeed> {
        vec![
            PlanSeed {
                product_id: "prod_msr_weekly".into(),
                product_name: "My Smart Road weekly".into(),
                price_id: "price_msr_weekly".into(),
                lookup_key: "msr_weekly".into(),
                unit_amount: 2500,
                currency: "usd".into(),
                interval: "week".into(),
                interval_count: 1,
                features: Vec::new(),
            },
            PlanSeed {
                product_id: "prod_msr_monthly".into(),
                product_name: "My Smart Road monthly".into(),
                price_id: "price_msr_monthly".into(),
                lookup_key: "msr_monthly".into(),
                unit_amount: 7900,
                currency: "usd".into(),
                interval: "month".into(),
                interval_count: 1,
                features: Vec::new(),
            },
        ]
    }

    /// The [`PlanSeed::defaults`] plans with entitlement features, for the service's demo
    /// mode: weekly grants `fleet_tracking` and `trip_log`; monthly grants those and
    /// `ai_dispatch` and `fuel_reports`. Subscribing, switching plan or canceling then
    /// sends `entitlements.active_entitlement_summary.updated`.
    pub fn demo() -> Vec<PlanSeed> {
        let keys = |k: &[&str]| k.iter().map(|s| (*s).to_string()).collect();
        let mut plans = PlanSeed::defaults();
        for plan in &mut plans {
            plan.features = match plan.price_id.as_str() {
                "price_msr_weekly" => keys(&["fleet_tracking", "trip_log"]),
                "price_msr_monthly" => {
                    keys(&["fleet_tracking", "trip_log", "ai_dispatch", "fuel_reports"])
                }
                _ => Vec::new(),
            };
        }
        plans
    }
}

/// A product.
#[derive(Debug, Clone)]
pub struct Product {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) active: bool,
    pub(crate) metadata: BTreeMap<String, String>,
}

/// A recurring price.
#[derive(Debug, Clone)]
pub struct Price {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) product: String,
    pub(crate) unit_amount: i64,
    pub(crate) currency: String,
    pub(crate) interval: String,
    pub(crate) interval_count: i64,
    pub(crate) lookup_key: Option<String>,
    pub(crate) active: bool,
    pub(crate) nickname: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

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
}
