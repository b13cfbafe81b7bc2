//! Reading Stripe's JSON tolerantly: only the fields we need, from payloads of any API version.
//! A new API version that moves or adds fields must never make a validly signed event unreadable
//! (`current_period_end` moved onto subscription items in 2025; invoices lost `subscription`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{StripeCustomerId, SubscriptionId, SubscriptionSnapshot};

/// The envelope of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope {
    /// `evt_…`.
    pub id: String,
    /// `customer.subscription.updated`, …
    pub kind: String,
    /// Stripe's `created`, unix seconds (one-second steps).
    pub created: i64,
    /// Live or test mode.
    pub livemode: bool,
    /// `data.object`.
    pub object: Value,
}

/// Reads an event's envelope. Errors say what is missing.
pub fn parse_event(body: &[u8]) -> Result<EventEnvelope, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    parse_event_value(v)
}

/// Reads an event's envelope from parsed JSON.
pub fn parse_event_value(mut v: Value) -> Result<EventEnvelope, String> {
    let id = str_field(&v, "id")
        .filter(|id| id.starts_with("evt_"))
        .ok_or("no evt_ id")?
        .to_owned();
    let kind = str_field(&v, "type").ok_or("no type")?.to_owned();
    let created = v
        .get("created")
        .and_then(Value::as_i64)
        .ok_or("no created")?;
    let livemode = v.get("livemode").and_then(Value::as_bool).unwrap_or(false);
    let object = v
        .get_mut("data")
        .and_then(|d| d.get_mut("object"))
        .map(Value::take)
        .unwrap_or(Value::Null);
    Ok(EventEnvelope {
        id,
        kind,
        created,
        livemode,
        object,
    })
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// An id field that may be a plain id or an expanded object.
pub fn id_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn time(secs: Option<i64>) -> Option<DateTime<Utc>> {
    secs.and_then(|s| DateTime::from_timestamp(s, 0))
}

fn metadata_user_id(v: &Value) -> Option<String> {
    v.get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Reads a subscription object.
pub fn subscription(v: &Value) -> Result<SubscriptionSnapshot, String> {
    if str_field(v, "object").is_some_and(|o| o != "subscription") {
        return Err("not a subscription object".into());
    }
    let id =
        SubscriptionId::parse(str_field(v, "id").unwrap_or_default()).map_err(|e| e.to_string())?;
    let customer = StripeCustomerId::parse(&id_of(v, "customer").unwrap_or_default())
        .map_err(|e| e.to_string())?;
    let status = str_field(v, "status")
        .ok_or("subscription without status")?
        .parse()
        .map_err(|e: crate::domain::InvalidValue| e.to_string())?;
    let items: &[Value] = v
        .get("items")
        .and_then(|i| i.get("data"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let item_end = items
        .iter()
        .filter_map(|i| i.get("current_period_end").and_then(Value::as_i64))
        .max();
    let period_end = item_end.or_else(|| v.get("current_period_end").and_then(Value::as_i64));
    let price = items
        .first()
        .and_then(|i| i.get("price"))
        .or_else(|| v.get("plan"));
    let price_id = price.and_then(|p| match p {
        Value::String(s) => Some(s.clone()),
        other => str_field(other, "id").map(str::to_owned),
    });
    let interval = price
        .and_then(|p| {
            p.get("recurring")
                .and_then(|r| r.get("interval"))
                .or_else(|| p.get("interval"))
        })
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(SubscriptionSnapshot {
        id,
        customer,
        status,
        price_id,
        interval,
        current_period_end: time(period_end),
        cancel_at_period_end: v
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        pause_collection: v.get("pause_collection").is_some_and(|p| !p.is_null()),
        created: time(v.get("created").and_then(Value::as_i64)).unwrap_or_default(),
        metadata_user_id: metadata_user_id(v),
    })
}

/// What a Checkout Session tells us.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutInfo {
    /// `cs_…`.
    pub id: String,
    /// `open`, `complete`, `expired`.
    pub status: Option<String>,
    /// The customer, once there is one.
    pub customer: Option<String>,
    /// The subscription id, once created.
    pub subscription_id: Option<String>,
    /// The subscription itself when it was expanded.
    pub subscription: Option<Value>,
    /// `client_reference_id`: any session can carry one (a Payment Link's too), so it names a
    /// user only for sessions this service opened.
    pub client_reference_id: Option<String>,
    /// `metadata.user_id`, which this service sets on its own objects.
    pub metadata_user_id: Option<String>,
}

impl CheckoutInfo {
    /// The user this session is for: `metadata.user_id`, else `client_reference_id` when the
    /// session is one this service opened for that same user (`recorded_owner`, from
    /// `checkout_sessions`).
    pub fn user_id(&self, recorded_owner: Option<&str>) -> Option<&str> {
        self.metadata_user_id.as_deref().or_else(|| {
            self.client_reference_id
                .as_deref()
                .filter(|c| recorded_owner == Some(*c))
        })
    }
}

/// Reads a Checkout Session object.
pub fn checkout_session(v: &Value) -> Result<CheckoutInfo, String> {
    let id = str_field(v, "id")
        .ok_or("checkout session without id")?
        .to_owned();
    let subscription = v.get("subscription").filter(|s| s.is_object()).cloned();
    Ok(CheckoutInfo {
        id,
        status: str_field(v, "status").map(str::to_owned),
        customer: id_of(v, "customer"),
        subscription_id: id_of(v, "subscription"),
        subscription,
        client_reference_id: str_field(v, "client_reference_id").map(str::to_owned),
        metadata_user_id: metadata_user_id(v),
    })
}

/// The subscription an invoice belongs to: `parent.subscription_details.subscription` in current API
/// versions, the top-level `subscription` in older ones.
pub fn invoice_subscription(v: &Value) -> Option<String> {
    v.get("parent")
        .and_then(|p| p.get("subscription_details"))
        .and_then(|d| id_of(d, "subscription"))
        .or_else(|| id_of(v, "subscription"))
}

/// The customer an event's object belongs to (the object itself for `customer.*` events).
pub fn customer_of(kind: &str, object: &Value) -> Option<String> {
    if kind.starts_with("customer.") && !kind.starts_with("customer.subscription.") {
        return str_field(object, "id").map(str::to_owned);
    }
    id_of(object, "customer")
}

/// `metadata.user_id` of an event's object (customers and subscriptions carry it).
pub fn object_user_id(object: &Value) -> Option<String> {
    metadata_user_id(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_period_end_comes_from_the_latest_item_and_falls_back_to_the_subscription() {
        let new = json!({"id":"sub_1","object":"subscription","customer":"cus_1","status":"active","created":1,
            "items":{"data":[{"current_period_end":100,"price":{"id":"price_w","recurring":{"interval":"week"}}},{"current_period_end":200}]}});
        let s = subscription(&new).unwrap();
        assert_eq!(s.current_period_end.map(|t| t.timestamp()), Some(200));
        assert_eq!(s.price_id.as_deref(), Some("price_w"));
        assert_eq!(s.interval.as_deref(), Some("week"));
        let old = json!({"id":"sub_1","customer":{"id":"cus_1"},"status":"past_due","current_period_end":50,"created":1,"items":{"data":[]}});
        assert_eq!(
            subscription(&old)
                .unwrap()
                .current_period_end
                .map(|t| t.timestamp()),
            Some(50)
        );
    }

    #[test]
    fn pause_collection_and_metadata_are_read() {
        let v = json!({"id":"sub_1","customer":"cus_1","status":"active","created":1,
            "pause_collection":{"behavior":"void"},"metadata":{"user_id":"u1"}});
        let s = subscription(&v).unwrap();
        assert!(s.pause_collection);
        assert_eq!(s.metadata_user_id.as_deref(), Some("u1"));
    }

    #[test]
    fn invoices_name_their_subscription_in_either_place() {
        assert_eq!(
            invoice_subscription(
                &json!({"parent":{"subscription_details":{"subscription":"sub_a"}}})
            )
            .as_deref(),
            Some("sub_a")
        );
        assert_eq!(
            invoice_subscription(&json!({"subscription":"sub_b"})).as_deref(),
            Some("sub_b")
        );
        assert_eq!(invoice_subscription(&json!({})), None);
    }

    #[test]
    fn events_need_an_id_a_type_and_a_time() {
        assert!(
            parse_event(br#"{"id":"evt_1","type":"x","created":5,"data":{"object":{}}}"#).is_ok()
        );
        assert!(parse_event(br#"{"type":"x","created":5}"#).is_err());
        assert!(parse_event(b"not json").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any bytes, and any JSON shaped like an event: an answer, never a panic.
        #[test]
        fn any_body_is_answered_without_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024)) {
            let _ = parse_event(&body);
        }

        #[test]
        fn event_shaped_json_is_read_without_panic(id in ".{0,20}", kind in "[a-z._]{0,40}", created in proptest::prelude::any::<i64>(), status in "[a-z_]{0,20}", end in proptest::prelude::any::<i64>()) {
            let body = json!({"id": format!("evt_{id}"), "type": kind, "created": created,
                "data": {"object": {"id": format!("sub_{id}"), "object": "subscription", "customer": "cus_1", "status": status,
                "items": {"data": [{"current_period_end": end, "price": {"id": id}}]}, "created": created}}});
            if let Ok(event) = parse_event(body.to_string().as_bytes()) {
                let _ = subscription(&event.object);
                let _ = checkout_session(&event.object);
                let _ = invoice_subscription(&event.object);
            }
        }
    }
}
