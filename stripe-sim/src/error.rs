//! Stripe's error envelope: `{"error": {type, code, message, param, doc_url}}` with the
//! HTTP status Stripe pairs with each kind. The engine returns these directly because a
//! Stripe error *is* domain behaviour here (a declined card is an expected outcome).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One Stripe API error, ready to be rendered as Stripe renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct StripeError {
    /// HTTP status (400, 401, 402, 404, 409, 429, 500).
    pub status: u16,
    /// `invalid_request_error`, `card_error`, `api_error`, `idempotency_error`, ...
    pub kind: &'static str,
    /// Machine code such as `resource_missing`, `card_declined`, `rate_limit`.
    pub code: Option<&'static str>,
    /// Human-readable message.
    pub message: String,
    /// The offending parameter, if any.
    pub param: Option<String>,
    /// For card errors: the decline code (`generic_decline`, ...).
    pub decline_code: Option<&'static str>,
    /// The object a failed confirmation reports inside the error, as Stripe does:
    /// (`payment_intent` or `setup_intent`, its JSON). Boxed to keep errors small.
    pub object: Option<Box<(&'static str, Value)>>,
}

impl StripeError {
    fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: String) -> Self {
        StripeError {
            status,
            kind,
            code,
            message,
            param: None,
            decline_code: None,
            object: None,
        }
    }

    /// 404 for an id that does not exist.
    pub fn missing(object: &str, id: &str, param: &str) -> Self {
        let mut e = Self::new(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such {object}: '{id}'"),
        );
        e.param = Some(param.to_string());
        e
    }

    /// 400 for a malformed parameter.
    pub fn invalid_param(param: &str, message: &str) -> Self {
        let mut e = Self::new(
            400,
            "invalid_request_error",
            Some("parameter_invalid"),
            message.to_string(),
        );
        e.param = Some(param.to_string());
        e
    }

    /// 400 for a missing required parameter.
    pub fn missing_param(param: &str) -> Self {
        let mut e = Self::new(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
        );
        e.param = Some(param.to_string());
        e
    }

    /// 400 for a request that is well-formed but not allowed in the object's state.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", None, message.into())
    }

    /// 402 card declined.
    pub fn card_declined(message: &str) -> Self {
        let mut e = Self::new(
            402,
            "card_error",
            Some("card_declined"),
            message.to_string(),
        );
        e.decline_code = Some("generic_decline");
        e
    }

    /// 402 for a payment that needs 3-D Secure, which the simulator never grants.
    pub fn authentication_required() -> Self {
        let mut e = Self::new(
            402,
            "card_error",
            Some("authentication_required"),
            "This payment requires additional user action before it can be completed \
             successfully."
                .to_string(),
        );
        e.decline_code = Some("authentication_required");
        e
    }

    /// 400 for an intent whose status does not allow the action (`…_unexpected_state`).
    pub fn unexpected_state(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", Some(code), message.into())
    }

    /// A card error carrying the intent it happened to (`payment_intent`/`setup_intent`).
    pub(crate) fn with_object(mut self, key: &'static str, value: Value) -> Self {
        self.object = Some(Box::new((key, value)));
        self
    }

    /// 401 without or with an unusable API key.
    pub fn unauthorized(message: &str) -> Self {
        Self::new(401, "invalid_request_error", None, message.to_string())
    }

    /// 429 from the test-mode rate limiter.
    pub fn rate_limited() -> Self {
        Self::new(
            429,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here \
             https://stripe.com/docs/rate-limits."
                .to_string(),
        )
    }

    /// 500 injected by a fault.
    pub fn api_error() -> Self {
        Self::new(
            500,
            "api_error",
            None,
            "An unknown error occurred (injected by the simulator).".to_string(),
        )
    }

    /// 400 for an idempotency key reused with different parameters.
    pub fn idempotency_mismatch(key: &str) -> Self {
        Self::new(
            400,
            "idempotency_error",
            None,
            format!(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with. Try using a key other than '{key}' if you meant to \
                 execute a different request."
            ),
        )
    }

    /// 409 for an idempotency key whose first request is still running.
    pub fn idempotency_in_flight() -> Self {
        Self::new(
            409,
            "idempotency_error",
            None,
            "There is currently another in-progress request using this Idempotent Key \
             (that probably means you submitted twice, and the other request is still going \
             through): please retry that request later."
                .to_string(),
        )
    }

    /// 404 for a path Stripe does not serve.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            None,
            format!("Unrecognized request URL ({method}: {path})."),
        )
    }

    /// The JSON envelope.
    pub fn body(&self) -> Value {
        let doc = self.code.map(|c| {
            format!(
                "https://stripe.com/docs/error-codes/{}",
                c.replace('_', "-")
            )
        });
        let mut inner = json!({
            "type": self.kind,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "doc_url": doc,
        });
        if let (Some(dc), Some(obj)) = (self.decline_code, inner.as_object_mut()) {
            obj.insert("decline_code".into(), json!(dc));
        }
        if let (Some(attached), Some(obj)) = (&self.object, inner.as_object_mut()) {
            obj.insert(attached.0.to_string(), attached.1.clone());
        }
        json!({ "error": inner })
    }
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for StripeError {}

impl IntoResponse for StripeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        // Stripe tells clients whether a retry may succeed; async-stripe reads this header.
        let retry = matches!(self.status, 409 | 429 | 500..=599);
        if let Ok(v) = axum::http::HeaderValue::from_str(if retry { "true" } else { "false" }) {
            resp.headers_mut().insert("stripe-should-retry", v);
        }
        resp
    }
}
