use reqwest::Method;

use crate::helpers::{TestApp, assert_error, json};

#[tokio::test]
async fn create_user_answers_201_with_the_user() {
    let app = TestApp::spawn().await;
    let response = app.create_user("1", "ed@example.com").await;
    assert_eq!(response.status().as_u16(), 201);
    let user = json(response).await;
    assert_eq!(user["id"], "1");
    assert_eq!(user["email"], "ed@example.com");
    assert!(user["stripe_customer_id"].is_null());
    assert!(
        user["created_at"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    );
}

#[tokio::test]
async fn create_user_again_with_the_same_email_answers_200_with_the_same_user() {
    let app = TestApp::spawn().await;
    let first = json(app.create_user("u-7", "Ed@Example.com").await).await;
    let again = app.create_user("u-7", "ed@example.com").await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(json(again).await, first);
}

#[tokio::test]
async fn create_user_with_another_email_for_the_same_id_is_a_conflict() {
    let app = TestApp::spawn().await;
    app.create_user("1", "ed@example.com").await;
    assert_error(
        app.create_user("1", "someone@example.com").await,
        409,
        "user_exists",
    )
    .await;
}

#[tokio::test]
async fn create_user_refuses_invalid_ids_and_emails_with_422() {
    let app = TestApp::spawn().await;
    for bad_id in ["", "<script>", "a b", &"x".repeat(129)] {
        assert_error(
            app.create_user(bad_id, "ed@example.com").await,
            422,
            "invalid_user_id",
        )
        .await;
    }
    for bad_email in ["", "ed", "ed@", "ed@example", "e d@example.com"] {
        assert_error(app.create_user("1", bad_email).await, 422, "invalid_email").await;
    }
    let missing = app
        .request(Method::POST, "/dev/create_user?user_id=1")
        .send()
        .await
        .unwrap();
    assert_error(missing, 422, "invalid_query").await;
}

#[tokio::test]
async fn concurrent_creates_of_one_user_make_one_row_and_agree() {
    let app = TestApp::spawn().await;
    let calls = (0..16).map(|_| app.create_user("same", "same@example.com"));
    let statuses: Vec<u16> = futures::future::join_all(calls)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        15,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn status_shows_the_user_and_no_subscription() {
    let app = TestApp::spawn().await;
    app.create_user("1", "ed@example.com").await;
    let response = app.dev_status("1").await;
    assert_eq!(response.status().as_u16(), 200);
    let body = json(response).await;
    assert_eq!(body["user"]["id"], "1");
    assert_eq!(body["user"]["email"], "ed@example.com");
    assert!(body["user"]["stripe_customer_id"].is_null());
    assert_eq!(body["entitlement"]["status"], "none");
    assert_eq!(body["entitlement"]["pause_active"], false);
    assert!(body["entitlement"]["stripe_subscription_id"].is_null());
    assert!(body["entitlement"]["current_period_end"].is_null());
    assert_eq!(body["entitled"], false);
    assert_eq!(body["reason"], "no_subscription");
}

#[tokio::test]
async fn status_of_an_unknown_user_is_404() {
    let app = TestApp::spawn().await;
    assert_error(app.dev_status("nobody").await, 404, "unknown_user").await;
    assert_error(app.dev_status("<bad>").await, 422, "invalid_user_id").await;
}

#[tokio::test]
async fn dev_routes_are_absent_when_debug_is_off() {
    let app = TestApp::spawn_with(&[
        ("MSR_DEBUG", "false"),
        ("MSR_INTERNAL_API_KEY", "k-0123456789abcdef0123456789abcdef"),
    ])
    .await;
    let unknown = json(app.get("/no/such/route").await).await;
    let create = app.create_user("1", "ed@example.com").await;
    assert_eq!(create.status().as_u16(), 404);
    assert_eq!(
        json(create).await,
        unknown,
        "a hidden dev route reads exactly like an unknown route"
    );
    let status = app.dev_status("1").await;
    assert_eq!(status.status().as_u16(), 404);
    assert_eq!(json(status).await, unknown);
}
