//! `/openapi.json` is served without authentication and the real responses match it.

use msr_stripe_sim::TestCard;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{StripeApp, json};

/// (method, URL, documented path, X-User-Id, JSON body).
type Case = (
    Method,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<Value>,
);

/// Validates a real response against the document's schema for (path, method, status).
fn check(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is documented");
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} documents status {status}"
    );
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return;
    };
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).expect("a valid JSON schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match the document: {errors:?}\n{body}"
    );
}

async fn call(
    app: &StripeApp,
    method: Method,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.request(method, path);
    if let Some(user) = user {
        request = request.header("X-User-Id", user);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_served_responses_match_the_openapi_document() {
    let app = StripeApp::spawn().await;
    let doc = json(app.get("/openapi.json").await).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/billing/entitlement",
        "/billing/entitlement/forward-auth",
        "/billing/checkout",
        "/billing/portal",
        "/dev/create_user",
        "/dev/status",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/dev/create_user?user_id=oa&email=oa@example.com",
            "/dev/create_user",
            None,
            None,
        ),
        (
            Method::POST,
            "/dev/create_user?user_id=oa&email=oa@example.com",
            "/dev/create_user",
            None,
            None,
        ),
        (
            Method::POST,
            "/dev/create_user?user_id=oa&email=other@example.com",
            "/dev/create_user",
            None,
            None,
        ),
        (
            Method::POST,
            "/dev/create_user?user_id=o%20a&email=oa@example.com",
            "/dev/create_user",
            None,
            None,
        ),
        (
            Method::GET,
            "/dev/status?user_id=oa",
            "/dev/status",
            None,
            None,
        ),
        (
            Method::GET,
            "/dev/status?user_id=nobody",
            "/dev/status",
            None,
            None,
        ),
        (
            Method::GET,
            "/billing/entitlement",
            "/billing/entitlement",
            Some("oa"),
            None,
        ),
        (
            Method::GET,
            "/billing/entitlement",
            "/billing/entitlement",
            None,
            None,
        ),
        (
            Method::GET,
            "/billing/entitlement",
            "/billing/entitlement",
            Some("nobody"),
            None,
        ),
        (
            Method::POST,
            "/billing/portal",
            "/billing/portal",
            Some("oa"),
            None,
        ),
        (
            Method::POST,
            "/billing/checkout",
            "/billing/checkout",
            Some("oa"),
            Some(json!({"plan": "yearly"})),
        ),
        (
            Method::POST,
            "/billing/checkout",
            "/billing/checkout",
            Some("nobody"),
            Some(json!({"plan": "weekly"})),
        ),
        (
            Method::POST,
            "/billing/checkout",
            "/billing/checkout",
            Some("oa"),
            Some(json!({"plan": "monthly"})),
        ),
    ];
    // The check can fail: a body of the wrong shape does not validate.
    let wrong = std::panic::catch_unwind(|| {
        check(
            &doc,
            "/billing/entitlement",
            "get",
            200,
            &json!({"entitled": "yes"}),
        )
    });
    assert!(wrong.is_err(), "a wrong body must not match the document");
    let mut seen = std::collections::BTreeSet::new();
    for (method, url, path, user, body) in cases {
        let (status, answer) = call(&app, method.clone(), url, user, body).await;
        check(&doc, path, &method.as_str().to_lowercase(), status, &answer);
        seen.insert((path, status));
    }
    // A paying owner: 200 answers of the entitlement, the portal and the checkout conflict.
    let session = json(app.checkout("oa", "monthly").await).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.sim()
        .pay_checkout(&session, TestCard::Visa)
        .await
        .unwrap();
    app.settle().await;
    for (method, path, body) in [
        (Method::GET, "/billing/entitlement", None),
        (Method::GET, "/billing/entitlement/forward-auth", None),
        (Method::POST, "/billing/portal", None),
        (
            Method::POST,
            "/billing/checkout",
            Some(json!({"plan": "weekly"})),
        ),
        (Method::GET, "/dev/status?user_id=oa", None),
    ] {
        let (status, answer) = call(&app, method.clone(), path, Some("oa"), body).await;
        let doc_path = path.split('?').next().unwrap();
        check(
            &doc,
            doc_path,
            &method.as_str().to_lowercase(),
            status,
            &answer,
        );
        seen.insert((doc_path, status));
    }
    for expected in [
        ("/billing/entitlement", 200),
        ("/billing/entitlement", 402),
        ("/billing/checkout", 200),
        ("/billing/checkout", 409),
        ("/billing/portal", 200),
        ("/billing/portal", 409),
        ("/dev/create_user", 201),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} was exercised: {seen:?}"
        );
    }
}
