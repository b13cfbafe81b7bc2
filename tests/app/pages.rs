//! The browser side over plain HTTP: sign-in hand-off, sessions, auth boundaries, CSRF, escaping,
//! fragments versus pages, HTML errors.

use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, now};

const SECRET: &str = "pages-test-secret-0123456789abcdef0123";

pub(crate) fn browser() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(ACCEPT, "text/html,application/xhtml+xml".parse().unwrap());
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn app() -> TestApp {
    TestApp::spawn_with(&[
        ("MSR_AUTH_SECRET", SECRET),
        ("MSR_ADMIN_USER_IDS", "support-1"),
    ])
    .await
}

fn token(claims: serde_json::Value) -> String {
    msr_billing::auth::sign(&claims, SECRET.as_bytes())
}

async fn handoff(
    app: &TestApp,
    client: &Client,
    sub: &str,
    extra: serde_json::Value,
) -> reqwest::Response {
    let mut claims = json!({"sub": sub, "email": format!("{sub}@example.com"), "exp": now() + 120, "iat": now(), "jti": format!("jti-{sub}-{}", rand::random::<u32>())});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    client
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", token(claims))])
        .send()
        .await
        .unwrap()
}

/// The CSRF token of the signed-in session, read from a page's form.
async fn csrf(app: &TestApp, client: &Client) -> String {
    let page = client
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    token_in(&page)
}

/// The CSRF token in a page's forms.
pub(crate) fn token_in(page: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let at = page.find(marker).expect("a form with the token") + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_valid_hand_off_signs_in_creates_the_user_and_leaves_no_token_in_the_url() {
    let app = app().await;
    let client = browser();
    let response = handoff(&app, &client, "h-1", json!({})).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/");
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let home = client
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(
        home.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>h-1</strong>")
    );
    assert_eq!(
        crate::helpers::json(app.dev_status("h-1").await).await["user"]["email"],
        "h-1@example.com"
    );
}

#[tokio::test]
async fn bad_hand_off_tokens_get_a_clear_page_and_no_session() {
    let app = app().await;
    let cases = [
        (
            "expired",
            token(
                json!({"sub": "x", "email": "x@example.com", "exp": now() - 120, "iat": now() - 200}),
            ),
        ),
        (
            "bad signature",
            msr_billing::auth::sign(
                &json!({"sub": "x", "email": "x@example.com", "exp": now() + 60}),
                b"other",
            ),
        ),
        ("wrong algorithm", {
            use base64::Engine;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let header = b.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let payload = b.encode(
                json!({"sub": "x", "email": "x@example.com", "exp": now() + 60}).to_string(),
            );
            format!("{header}.{payload}.")
        }),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (case, t) in cases {
        let client = browser();
        let response = client
            .get(format!("{}/auth/handoff", app.address))
            .query(&[("token", &t)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        assert!(
            response.headers().get("set-cookie").is_none(),
            "no session for {case}"
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("<h1>Sign in</h1>") && page.contains("class=\"alert\""),
            "{case}: {page}"
        );
        assert!(
            !page.contains(&t) || t.len() < 12,
            "the token is not echoed ({case})"
        );
    }
}

#[tokio::test]
async fn a_hand_off_token_works_once() {
    let app = app().await;
    let t = token(
        json!({"sub": "once", "email": "once@example.com", "exp": now() + 60, "jti": "only-once"}),
    );
    let first = browser()
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", &t)])
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let again = browser()
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", &t)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    assert!(again.text().await.unwrap().contains("already used"));
}

#[tokio::test]
async fn signed_out_browsers_are_sent_to_sign_in_and_api_clients_get_json() {
    let app = app().await;
    for path in ["/", "/account", "/admin"] {
        let response = browser()
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()[LOCATION], "/auth/signin", "{path}");
    }
    let htmx = browser()
        .get(format!("{}/account", app.address))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.headers()["hx-redirect"], "/auth/signin");
    let api = app
        .request(Method::GET, "/account")
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        crate::helpers::json(api).await["error"]["code"],
        "sign_in_required"
    );
}

#[tokio::test]
async fn admin_pages_answer_403_to_owners_and_open_for_admins() {
    let app = app().await;
    let owner = browser();
    handoff(&app, &owner, "owner-7", json!({})).await;
    let refused = owner
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused.text().await.unwrap().contains("Not allowed"),
        "an HTML 403 page"
    );
    let by_list = browser();
    handoff(&app, &by_list, "support-1", json!({})).await;
    assert_eq!(
        by_list
            .get(format!("{}/admin", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let by_role = browser();
    handoff(&app, &by_role, "boss", json!({"role": "admin"})).await;
    let page = by_role
        .get(format!("{}/admin/users/owner-7", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("owner-7@example.com"));
}

#[tokio::test]
async fn posts_without_the_csrf_token_are_refused() {
    let app = app().await;
    let client = browser();
    handoff(&app, &client, "c-1", json!({})).await;
    let forged = client
        .post(format!("{}/auth/signout", app.address))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let wrong = client
        .post(format!("{}/auth/signout", app.address))
        .form(&[("csrf_token", "0".repeat(32))])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let token = csrf(&app, &client).await;
    let by_header = client
        .post(format!("{}/auth/signout", app.address))
        .header("X-CSRF-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_header.status(),
        StatusCode::SEE_OTHER,
        "htmx sends it as a header"
    );
    let after = client
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "signed out");
}

#[tokio::test]
async fn the_browser_checkout_form_needs_the_token_and_answers_303() {
    let app = app().await;
    let client = browser();
    handoff(&app, &client, "c-2", json!({})).await;
    let forged = client
        .post(format!("{}/billing/checkout", app.address))
        .form(&[("plan", "monthly")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let token = csrf(&app, &client).await;
    let ok = client
        .post(format!("{}/billing/checkout", app.address))
        .form(&[("plan", "monthly"), ("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    // Demo mode: the embedded simulator's hosted Checkout page.
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let to = ok.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.contains("/_stripe/c/pay/cs_"), "{to}");
    let checkout = client.get(&to).send().await.unwrap().text().await.unwrap();
    assert!(
        checkout.contains("Simulated Stripe"),
        "the simulator's page says so"
    );
}

#[tokio::test]
async fn everything_rendered_is_escaped() {
    let app = app().await;
    let admin = browser();
    handoff(&app, &admin, "support-1", json!({})).await;
    let page = admin
        .get(format!("{}/admin", app.address))
        .query(&[("q", "<script>alert(1)</script>")])
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<script>alert(1)"),
        "reflected search is escaped"
    );
    assert!(
        html.contains("&#60;script&#62;alert(1)") || html.contains("&lt;script&gt;alert(1)"),
        "{html}"
    );
    let signed_out = browser();
    let form_page = signed_out
        .get(format!("{}/auth/signin", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let signin = signed_out
        .post(format!("{}/auth/dev-signin", app.address))
        .form(&[
            ("csrf_token", token_in(&form_page).as_str()),
            ("user_id", "new-one"),
            ("email", "<script>alert(2)</script>@x.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signin.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = signin.text().await.unwrap();
    assert!(!html.contains("<script>alert(2)"), "{html}");
}

#[tokio::test]
async fn htmx_gets_the_fragment_and_a_plain_request_the_page() {
    let app = app().await;
    let admin = browser();
    handoff(&app, &admin, "support-1", json!({})).await;
    app.create_user("frag-1", "frag1@example.com").await;
    let full = admin
        .get(format!("{}/admin", app.address))
        .query(&[("q", "frag")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(full.contains("<html") && full.contains("id=\"users\"") && full.contains("frag-1"));
    let fragment = admin
        .get(format!("{}/admin", app.address))
        .query(&[("q", "frag")])
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !fragment.contains("<html")
            && fragment.trim_start().starts_with("<div id=\"users\">")
            && fragment.contains("frag-1"),
        "{fragment}"
    );
    let by_email = admin
        .get(format!("{}/admin", app.address))
        .query(&[("q", "FRAG1@")])
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert!(
        by_email.text().await.unwrap().contains("frag-1"),
        "e-mail prefix, any case"
    );
}

#[tokio::test]
async fn unknown_pages_are_friendly_html_for_browsers_and_json_for_apis() {
    let app = app().await;
    let page = browser()
        .get(format!("{}/no/such/page", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("Page not found"));
    let toast = browser()
        .get(format!("{}/no/such/page", app.address))
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(toast.headers()["hx-retarget"], "#toasts");
    assert!(
        toast
            .text()
            .await
            .unwrap()
            .contains("class=\"toast error\"")
    );
    let api = app.get("/no/such/page").await;
    assert_eq!(
        crate::helpers::json(api).await["error"]["code"],
        "not_found"
    );
}

#[tokio::test]
async fn complimentary_access_is_granted_audited_and_answered_as_such() {
    let app = app().await;
    let admin = browser();
    handoff(&app, &admin, "support-1", json!({})).await;
    app.create_user("comp-1", "comp1@example.com").await;
    assert_eq!(app.entitlement("comp-1").await.status().as_u16(), 402);
    let token = token_in(
        &admin
            .get(format!("{}/admin/users/comp-1", app.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let until = (chrono::Utc::now() + chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let granted = admin
        .post(format!("{}/admin/users/comp-1/complimentary", app.address))
        .form(&[
            ("until", until.as_str()),
            ("note", "truck in the shop, ticket 42"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::SEE_OTHER);
    let answer = crate::helpers::json(app.entitlement("comp-1").await).await;
    assert_eq!(
        (answer["entitled"].as_bool(), answer["reason"].as_str()),
        (Some(true), Some("complimentary"))
    );
    let page = admin
        .get(format!("{}/admin/users/comp-1", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("grant complimentary access: truck in the shop, ticket 42"),
        "audited"
    );
    assert!(
        page.contains("none (no_subscription) → none (complimentary"),
        "before → after: {page}"
    );
    admin
        .post(format!(
            "{}/admin/users/comp-1/complimentary/revoke",
            app.address
        ))
        .form(&[("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(app.entitlement("comp-1").await.status().as_u16(), 402);
}
