//! The two plans as owners see them: name, price and interval read from Stripe's prices, cached.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::RwLock;

use crate::billing::Billing;
use crate::domain::Plan;

/// A plan with its price as shown on the plan page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOffer {
    /// The plan.
    pub plan: Plan,
    /// "$79.00 / month", or a note that the price is unavailable.
    pub price: String,
}

/// How long prices are cached.
const TTL: Duration = Duration::from_secs(600);

/// The cache.
#[derive(Debug, Default)]
pub struct PriceCache {
    entry: RwLock<Option<(Instant, Vec<PlanOffer>)>>,
}

/// "$79.00" for USD cents, "79.00 EUR" for others (zero-decimal currencies shown whole).
pub fn money(amount: i64, currency: &str) -> String {
    let zero_decimal = matches!(
        currency,
        "jpy" | "krw" | "vnd" | "clp" | "pyg" | "xaf" | "xof" | "ugx"
    );
    let number = if zero_decimal {
        amount.to_string()
    } else {
        format!(
            "{}{}.{:02}",
            if amount < 0 { "-" } else { "" },
            amount.abs() / 100,
            amount.abs() % 100
        )
    };
    match currency {
        "usd" => format!("${number}"),
        "eur" => format!("€{number}"),
        "gbp" => format!("£{number}"),
        other => format!("{number} {}", other.to_uppercase()),
    }
}

fn describe(price: &Value) -> Option<String> {
    let amount = price.get("unit_amount")?.as_i64()?;
    let currency = price.get("currency")?.as_str()?;
    let recurring = price.get("recurring")?;
    let interval = recurring.get("interval")?.as_str()?;
    let count = recurring
        .get("interval_count")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let every = if count == 1 {
        interval.to_owned()
    } else {
        format!("{count} {interval}s")
    };
    Some(format!("{} / {every}", money(amount, currency)))
}

/// The plans with their prices (from cache when fresh; a price Stripe cannot give now reads as
/// unavailable and is not cached).
pub async fn offers(state: &Billing) -> Vec<PlanOffer> {
    if let Some((at, offers)) = state.price_cache.entry.read().await.as_ref()
        && at.elapsed() < TTL
    {
        return offers.clone();
    }
    let mut offers = Vec::new();
    let mut complete = true;
    for plan in [Plan::Weekly, Plan::Monthly] {
        let price = match (state.stripe.as_ref(), state.prices.of(plan)) {
            (Some(api), Some(id)) => match api.retrieve_price(id).await {
                Ok(p) => describe(&p),
                Err(e) => {
                    tracing::warn!(error = %e, %plan, "price unavailable");
                    None
                }
            },
            _ => None,
        };
        complete &= price.is_some();
        offers.push(PlanOffer {
            plan,
            price: price.unwrap_or_else(|| "price unavailable right now".into()),
        });
    }
    if complete {
        *state.price_cache.entry.write().await = Some((Instant::now(), offers.clone()));
    }
    offers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_as_people_write_it() {
        assert_eq!(money(7900, "usd"), "$79.00");
        assert_eq!(money(2505, "eur"), "€25.05");
        assert_eq!(money(-668, "usd"), "$-6.68");
        assert_eq!(money(500, "jpy"), "500 JPY");
        assert_eq!(money(1999, "cad"), "19.99 CAD");
    }
}
