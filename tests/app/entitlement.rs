use chrono::{Duration, TimeZone, Utc};
use msr_billing::db;
use msr_billing::domain::{Entitlement, Plan, StripeStatus, SubscriptionId, UserId};
use reqwest::Method;

use crate::helpers::{TestApp, assert_error, json};

/// Stores an entitlement as the webhook path would.
async fn store(
    app: &TestApp,
    user: &str,
    stripe: StripeStatus,
    tweak: impl FnOnce(&mut Entitlement),
) {
    let (status, pause_active) = stripe.to_entitlement();
    let mut e = Entitlement {
        status,
        stripe_status: stripe,
        pause_active,
        plan: Some(Plan::Monthly),
        stripe_subscription_id: Some(SubscriptionId::parse(&format!("sub_{user}")).unwrap()),
        current_period_end: Some(Utc::now() + Duration::days(20)),
        cancel_at_period_end: false,
        past_due_since: None,
        action_required: false,
        updated_at: Utc::now(),
    };
    tweak(&mut e);
    let id = UserId::parse(user).unwrap();
    db::entitlements::upsert(&app.state.db.pool, &id, &e)
        .await
        .unwrap();
    // As every write of the service does: tell the cache (here and on other instances).
    msr_billing::billing::entitlement::changed(&app.state, &id)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_active_subscriber_is_entitled_until_the_period_end() {
    let app = TestApp::spawn().await;
    app.create_user("a1", "a1@example.com").await;
    let end = Utc
        .timestamp_opt(Utc::now().timestamp() + 86_400 * 20, 0)
        .unwrap();
    store(&app, "a1", StripeStatus::Active, |e| {
        e.current_period_end = Some(end)
    })
    .await;
    let response = app.entitlement("a1").await;
    assert_eq!(response.status().as_u16(), 200);
    let body = json(response).await;
    assert_eq!(body["user_id"], "a1");
    assert_eq!(body["entitled"], true);
    assert_eq!(body["status"], "active");
    assert_eq!(body["plan"], "monthly");
    assert_eq!(body["reason"], "active");
    assert_eq!(body["pause_active"], false);
    assert_eq!(
        body["valid_until"],
        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let as_of = chrono::DateTime::parse_from_rfc3339(body["as_of"].as_str().unwrap()).unwrap();
    assert!((Utc::now() - as_of.with_timezone(&Utc)).num_seconds().abs() <= 5);
}

#[tokio::test]
async fn a_user_who_never_subscribed_gets_402_with_status_none() {
    let app = TestApp::spawn().await;
    app.create_user("n1", "n1@example.com").await;
    let response = app.entitlement("n1").await;
    assert_eq!(response.status().as_u16(), 402);
    let body = json(response).await;
    assert_eq!(body["entitled"], false);
    assert_eq!(body["status"], "none");
    assert_eq!(body["reason"], "no_subscription");
    assert!(body["valid_until"].is_null());
    assert!(body["plan"].is_null());
}

#[tokio::test]
async fn each_stored_state_reads_as_the_policy_says() {
    let app = TestApp::spawn().await;
    let cases = [
        (StripeStatus::Trialing, 200, "trialing", "trialing", false),
        (StripeStatus::PastDue, 402, "past_due", "past_due", false),
        (StripeStatus::Unpaid, 402, "past_due", "past_due", false),
        (StripeStatus::Paused, 402, "past_due", "paused", true),
        (StripeStatus::Canceled, 402, "canceled", "canceled", false),
    ];
    for (i, (stripe, code, status, reason, paused)) in cases.into_iter().enumerate() {
        let id = format!("s{i}");
        app.create_user(&id, &format!("{id}@example.com")).await;
        store(&app, &id, stripe, |_| {}).await;
        let response = app.entitlement(&id).await;
        assert_eq!(response.status().as_u16(), code, "{stripe:?}");
        let body = json(response).await;
        assert_eq!(
            (body["status"].as_str(), body["reason"].as_str()),
            (Some(status), Some(reason)),
            "{stripe:?}"
        );
        assert_eq!(body["pause_active"], paused, "{stripe:?}");
    }
}

#[tokio::test]
async fn pause_collection_closes_access_while_stripe_says_active() {
    let app = TestApp::spawn().await;
    app.create_user("p1", "p1@example.com").await;
    store(&app, "p1", StripeStatus::Active, |e| e.pause_active = true).await;
    let response = app.entitlement("p1").await;
    assert_eq!(response.status().as_u16(), 402);
    let body = json(response).await;
    assert_eq!(
        (body["status"].as_str(), body["reason"].as_str()),
        (Some("active"), Some("paused"))
    );
}

#[tokio::test]
async fn past_due_inside_the_configured_grace_is_entitled_until_the_grace_ends() {
    let app = TestApp::spawn_with(&[("MSR_PAST_DUE_GRACE", "3d")]).await;
    app.create_user("g1", "g1@example.com").await;
    let since = Utc.timestamp_opt(Utc::now().timestamp() - 3600, 0).unwrap();
    store(&app, "g1", StripeStatus::PastDue, |e| {
        e.past_due_since = Some(since)
    })
    .await;
    let response = app.entitlement("g1").await;
    assert_eq!(response.status().as_u16(), 200);
    let body = json(response).await;
    assert_eq!(body["reason"], "past_due_grace");
    assert_eq!(body["status"], "past_due");
    let grace_end = since + Duration::days(3);
    assert_eq!(
        body["valid_until"],
        grace_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
}

#[tokio::test]
async fn entitlement_needs_the_user_id_header_and_a_known_user() {
    let app = TestApp::spawn().await;
    assert_error(app.get("/billing/entitlement").await, 401, "unauthorized").await;
    assert_error(app.entitlement("ghost").await, 404, "unknown_user").await;
    assert_error(app.entitlement("a b").await, 422, "invalid_user_id").await;
}

#[tokio::test]
async fn forward_auth_answers_200_or_403_with_the_decision_in_headers() {
    let app = TestApp::spawn().await;
    app.create_user("f1", "f1@example.com").await;
    app.create_user("f2", "f2@example.com").await;
    store(&app, "f1", StripeStatus::Active, |_| {}).await;
    let ask = |id: &'static str| {
        app.request(Method::GET, "/billing/entitlement/forward-auth")
            .header("X-User-Id", id)
            .send()
    };
    let yes = ask("f1").await.unwrap();
    assert_eq!(yes.status().as_u16(), 200);
    assert_eq!(yes.headers()["x-entitlement-status"], "active");
    assert_eq!(yes.headers()["x-entitlement-reason"], "active");
    let no = ask("f2").await.unwrap();
    assert_eq!(no.status().as_u16(), 403);
    assert_eq!(no.headers()["x-entitlement-status"], "none");
    assert_eq!(no.headers()["x-entitlement-reason"], "no_subscription");
    assert_eq!(json(no).await["entitled"], false);
    let unknown = ask("ghost").await.unwrap();
    assert_eq!(
        unknown.status().as_u16(),
        403,
        "gateways only understand 2xx/401/403"
    );
    assert_eq!(unknown.headers()["x-entitlement-reason"], "unknown_user");
    let anonymous = app.get("/billing/entitlement/forward-auth").await;
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test]
async fn with_an_internal_key_the_user_id_header_needs_the_bearer_key() {
    let key = "internal-key-0123456789abcdef0123456789";
    let app = TestApp::spawn_with(&[("MSR_INTERNAL_API_KEY", key)]).await;
    app.create_user("k1", "k1@example.com").await;
    assert_error(app.entitlement("k1").await, 401, "unauthorized").await;
    let wrong = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "k1")
        .bearer_auth("internal-key-0123456788")
        .send()
        .await
        .unwrap();
    assert_error(wrong, 401, "unauthorized").await;
    let right = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "k1")
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 402);
    assert_eq!(json(right).await["status"], "none");
}

#[tokio::test]
async fn require_entitlement_guards_routes_inside_the_process() {
    use axum::body::Body;
    use axum::http::Request;
    use msr_billing::web::api::entitlement::RequireEntitlement;
    use tower::ServiceExt;

    let app = TestApp::spawn().await;
    app.create_user("r1", "r1@example.com").await;
    app.create_user("r2", "r2@example.com").await;
    store(&app, "r1", StripeStatus::Active, |_| {}).await;
    let paid = axum::Router::new()
        .route(
            "/paid",
            axum::routing::get(
                |RequireEntitlement(answer): RequireEntitlement| async move {
                    format!("welcome {}", answer.user_id)
                },
            ),
        )
        .with_state(app.state.clone());
    let call = |id: Option<&str>| {
        let mut request = Request::get("/paid");
        if let Some(id) = id {
            request = request.header("X-User-Id", id);
        }
        paid.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    let ok = call(Some("r1")).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let body = axum::body::to_bytes(ok.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"welcome r1");
    assert_eq!(call(Some("r2")).await.unwrap().status().as_u16(), 402);
    assert_eq!(call(Some("ghost")).await.unwrap().status().as_u16(), 404);
    assert_eq!(call(None).await.unwrap().status().as_u16(), 401);
}
