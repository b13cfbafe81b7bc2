//! Stripe's bracket notation (`metadata[user_id]=u1`, `line_items[0][price]=p`,
//! `expand[]=subscription`) parsed into nested JSON values, plus typed getters that
//! turn a missing or malformed parameter into Stripe's 400 error.
//!
//! Stripe clients differ in how they write arrays: async-stripe (serde_qs) writes
//! `expand[0]=x`, Stripe's own libraries write `expand[]=x`. Both become JSON arrays;
//! numeric keys are kept in index order, not insertion order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::StripeError;

/// Parses an `application/x-www-form-urlencoded` body or query string into a JSON object.
///
/// Every leaf is a string, as on the wire; the typed getters of [`Params`] convert.
pub fn parse(input: &str) -> Result<Value, StripeError> {
    let mut root = Node::Map(BTreeMap::new(), Vec::new());
    for (key, value) in form_urlencoded_pairs(input) {
        let path = split_key(&key)
            .ok_or_else(|| StripeError::invalid_param(&key, "Invalid parameter name."))?;
        root.insert(&path, value)
            .map_err(|()| StripeError::invalid_param(&key, "Conflicting parameter shapes."))?;
    }
    Ok(root.into_value())
}

fn form_urlencoded_pairs(input: &str) -> Vec<(String, String)> {
    // serde_urlencoded gives us correct percent- and plus-decoding without a new dependency.
    serde_urlencoded::from_str::<Vec<(String, String)>>(input).unwrap_or_default()
}

/// `a[b][0][]` → `["a", "b", "0", ""]`.
fn split_key(key: &str) -> Option<Vec<String>> {
    let (head, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if head.is_empty() {
        return None;
    }
    let mut path = vec![head.to_string()];
    while !rest.is_empty() {
        let inner_end = rest.strip_prefix('[')?.find(']')?;
        path.push(rest[1..=inner_end].to_string());
        rest = &rest[inner_end + 2..];
    }
    Some(path)
}

/// Intermediate tree: maps keep named keys sorted, plus an "append" list for `[]`.
enum Node {
    Leaf(String),
    Map(BTreeMap<String, Node>, Vec<Node>),
}

impl Node {
    fn insert(&mut self, path: &[String], value: String) -> Result<(), ()> {
        let Node::Map(children, appended) = self else {
            return Err(());
        };
        let Some((first, rest)) = path.split_first() else {
            return Err(());
        };
        if first.is_empty() {
            // `x[]=v` appends; `x[][k]=v` is ambiguous in Stripe's notation too, so each
            // occurrence starts a new element.
            let node = if rest.is_empty() {
                Node::Leaf(value)
            } else {
                let mut n = Node::Map(BTreeMap::new(), Vec::new());
                n.insert(rest, value)?;
                n
            };
            appended.push(node);
            return Ok(());
        }
        if rest.is_empty() {
            children.insert(first.clone(), Node::Leaf(value));
            return Ok(());
        }
        children
            .entry(first.clone())
            .or_insert_with(|| Node::Map(BTreeMap::new(), Vec::new()))
            .insert(rest, value)
    }

    fn into_value(self) -> Value {
        match self {
            Node::Leaf(s) => Value::String(s),
            Node::Map(children, appended) => {
                let all_numeric =
                    !children.is_empty() && children.keys().all(|k| k.parse::<usize>().is_ok());
                if !appended.is_empty() || all_numeric {
                    let mut indexed: Vec<(usize, Node)> = children
                        .into_iter()
                        .filter_map(|(k, v)| k.parse::<usize>().ok().map(|i| (i, v)))
                        .collect();
                    indexed.sort_by_key(|(i, _)| *i);
                    let mut out: Vec<Value> =
                        indexed.into_iter().map(|(_, v)| v.into_value()).collect();
                    out.extend(appended.into_iter().map(Node::into_value));
                    Value::Array(out)
                } else {
                    let map: Map<String, Value> = children
                        .into_iter()
                        .map(|(k, v)| (k, v.into_value()))
                        .collect();
                    Value::Object(map)
                }
            }
        }
    }
}

/// Typed, error-reporting access to parsed parameters.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Value);

impl Params {
    /// Parses a form body or query string.
    pub fn parse(input: &str) -> Result<Params, StripeError> {
        parse(input).map(Params)
    }

    /// The raw value at a top-level key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Whether the key was sent at all (an empty string counts: it means "unset").
    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }

    /// An optional string parameter; an empty string is returned as `Some("")`.
    pub fn str(&self, key: &str) -> Result<Option<String>, StripeError> {
        str_at(self.0.get(key), key)
    }

    /// A required string parameter.
    pub fn required_str(&self, key: &str) -> Result<String, StripeError> {
        match self.str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(StripeError::missing_param(key)),
        }
    }

    /// An optional integer parameter.
    pub fn i64(&self, key: &str) -> Result<Option<i64>, StripeError> {
        i64_at(self.0.get(key), key)
    }

    /// An optional boolean parameter (`true`/`false`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, StripeError> {
        match self.str(key)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(StripeError::invalid_param(key, "Invalid boolean.")),
        }
    }

    /// A list of strings (`expand[]=a&expand[]=b` or `expand[0]=a`).
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, StripeError> {
        match self.0.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(StripeError::invalid_param(key, "Invalid array.")),
                })
                .collect(),
            // A lone `expand=x` is accepted by Stripe as a one-element list.
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(_) => Err(StripeError::invalid_param(key, "Invalid array.")),
        }
    }

    /// A metadata hash; `metadata=` (empty string) means "clear all" and yields `Some(empty)`
    /// with `clear = true`.
    pub fn metadata(&self, key: &str) -> Result<Option<MetadataUpdate>, StripeError> {
        metadata_at(self.0.get(key), key)
    }

    /// A nested object as its own `Params` (missing → `None`).
    pub fn nested(&self, key: &str) -> Result<Option<Params>, StripeError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Params(v.clone()))),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Params(Value::Object(Map::new())))),
            Some(_) => Err(StripeError::invalid_param(key, "Invalid hash.")),
        }
    }

    /// A list of nested objects (`items[0][price]=…`).
    pub fn nested_list(&self, key: &str) -> Result<Vec<Params>, StripeError> {
        match self.0.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Object(_) => Ok(Params(v.clone())),
                    _ => Err(StripeError::invalid_param(key, "Invalid array of hashes.")),
                })
                .collect(),
            Some(_) => Err(StripeError::invalid_param(key, "Invalid array of hashes.")),
        }
    }
}

/// A requested change to a metadata hash: keys set, keys removed (empty value), or all cleared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataUpdate {
    /// `metadata=""`: drop every key before applying `set`.
    pub clear: bool,
    /// Keys to set (non-empty values).
    pub set: BTreeMap<String, String>,
    /// Keys sent with an empty value, which Stripe treats as "delete this key".
    pub unset: Vec<String>,
}

impl MetadataUpdate {
    /// Applies this update to an existing metadata map.
    pub fn apply(&self, target: &mut BTreeMap<String, String>) {
        if self.clear {
            target.clear();
        }
        for k in &self.unset {
            target.remove(k);
        }
        for (k, v) in &self.set {
            target.insert(k.clone(), v.clone());
        }
    }

    /// The metadata a new object gets from this update.
    pub fn into_map(self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        self.apply(&mut m);
        m
    }
}

fn str_at(v: Option<&Value>, key: &str) -> Result<Option<String>, StripeError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(StripeError::invalid_param(key, "Invalid string.")),
    }
}

fn i64_at(v: Option<&Value>, key: &str) -> Result<Option<i64>, StripeError> {
    match str_at(v, key)? {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| StripeError::invalid_param(key, "Invalid integer.")),
    }
}

fn metadata_at(v: Option<&Value>, key: &str) -> Result<Option<MetadataUpdate>, StripeError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(MetadataUpdate {
            clear: true,
            ..MetadataUpdate::default()
        })),
        Some(Value::Object(map)) => {
            let mut update = MetadataUpdate::default();
            for (k, v) in map {
                let Value::String(s) = v else {
                    return Err(StripeError::invalid_param(
                        &format!("{key}[{k}]"),
                        "Metadata values must be strings.",
                    ));
                };
                if s.is_empty() {
                    update.unset.push(k.clone());
                } else {
                    update.set.insert(k.clone(), s.clone());
                }
            }
            Ok(Some(update))
        }
        Some(_) => Err(StripeError::invalid_param(key, "Invalid hash.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_brackets_become_objects_and_arrays() {
        let v = parse(
            "metadata[user_id]=u1&line_items[0][price]=price_x&line_items[0][quantity]=1\
             &expand[]=subscription&expand[]=customer&subscription_data[metadata][user_id]=u1\
             &subscription_data[trial_period_days]=7&mode=subscription",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {"user_id": "u1"},
                "line_items": [{"price": "price_x", "quantity": "1"}],
                "expand": ["subscription", "customer"],
                "subscription_data": {"metadata": {"user_id": "u1"}, "trial_period_days": "7"},
                "mode": "subscription"
            })
        );
    }

    #[test]
    fn indexed_arrays_keep_index_order_and_decode_percent_brackets() {
        let v = parse("expand%5B1%5D=b&expand%5B0%5D=a&items[10][id]=x&items[2][id]=y").unwrap();
        assert_eq!(v["expand"], json!(["a", "b"]));
        assert_eq!(v["items"], json!([{"id": "y"}, {"id": "x"}]));
    }

    #[test]
    fn empty_values_and_plus_signs_survive() {
        let v = parse("pause_collection=&email=a%2Bb%40x.io&name=A+B").unwrap();
        assert_eq!(
            v,
            json!({"pause_collection": "", "email": "a+b@x.io", "name": "A B"})
        );
    }

    #[test]
    fn metadata_update_distinguishes_set_unset_and_clear() {
        let p = Params::parse("metadata[a]=1&metadata[b]=").unwrap();
        let m = p.metadata("metadata").unwrap().unwrap();
        let mut target = BTreeMap::from([("b".to_string(), "x".to_string())]);
        m.apply(&mut target);
        assert_eq!(target, BTreeMap::from([("a".to_string(), "1".to_string())]));
        let p = Params::parse("metadata=").unwrap();
        assert!(p.metadata("metadata").unwrap().unwrap().clear);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert!(parse("a[b=1").is_err());
        assert!(parse("a=1&a[b]=2").is_err());
    }
}
