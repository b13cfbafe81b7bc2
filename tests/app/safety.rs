//! Safe by default: each test names a hole a security review found and fails without its fix.

use msr_stripe_sim::Fault;
use reqwest::header::{LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

use crate::helpers::{StripeApp, TestApp, WEBHOOK_SECRET, assert_error, json, now, sign};
use crate::pages::{browser, token_in};

const AUTH_SECRET: &str = "safety-test-auth-secret-0123456789abcdef";
const INTERNAL_KEY: &str = "safety-test-internal-key-0123456789abcdef";

async fn page(client: &Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// Signs a browser in through the developer form (debug mode), with the token its session was given.
pub(crate) async fn dev_sign_in(app: &TestApp, client: &Client, user: &str) {
    let form = page(client, format!("{}/auth/signin", app.address)).await;
    let response = client
        .post(format!("{}/auth/dev-signin", app.address))
        .form(&[
            ("csrf_token", token_in(&form).as_str()),
            ("user_id", user),
            ("email", &format!("{user}@example.com")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "dev sign-in {user}"
    );
}

/// The CSRF token of a signed-in browser's session.
pub(crate) async fn csrf(app: &TestApp, client: &Client) -> String {
    token_in(&page(client, format!("{}/account", app.address)).await)
}

#[tokio::test]
async fn without_a_stripe_key_a_server_address_does_not_turn_debug_on() {
    let app = TestApp::spawn_with(&[
        ("MSR_LISTEN_ADDR", "0.0.0.0:0"),
        ("MSR_DEBUG", ""),
        ("MSR_INTERNAL_API_KEY", INTERNAL_KEY),
    ])
    .await;
    assert!(!app.state.settings.debug);
    assert_error(app.dev_status("anyone").await, 404, "not_found").await;
    let signin = page(&browser(), format!("{}/auth/signin", app.address)).await;
    assert!(!signin.contains("dev-signin"), "{signin}");
    let sim = app.get("/_stripe/v1/customers").await;
    assert_eq!(
        sim.status(),
        StatusCode::NOT_FOUND,
        "no simulator is mounted"
    );
}

#[tokio::test]
async fn dev_forms_need_the_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let client = browser();
    for (path, form) in [
        (
            "/dev/users",
            vec![("user_id", "x1"), ("email", "x1@example.com")],
        ),
        (
            "/auth/dev-signin",
            vec![("user_id", "x1"), ("email", "x1@example.com")],
        ),
    ] {
        let response = client
            .post(format!("{}{path}", app.address))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    assert_error(app.dev_status("x1").await, 404, "unknown_user").await;
    // The dev page gives a signed-out browser a token; with it the user is made and signed in.
    let tools = page(&client, format!("{}/dev", app.address)).await;
    let made = client
        .post(format!("{}/dev/users", app.address))
        .form(&[
            ("csrf_token", token_in(&tools).as_str()),
            ("user_id", "x1"),
            ("email", "x1@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.dev_status("x1").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn simulator_controls_act_on_the_developers_own_user_and_on_others_only_for_an_admin() {
    let app = TestApp::spawn_with(&[("MSR_ADMIN_USER_IDS", "dev-admin")]).await;
    app.create_user("victim", "victim@example.com").await;
    let signed_out = browser();
    let refused = signed_out
        .post(format!("{}/dev/sim/cancel", app.address))
        .form(&[("user_id", "victim")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::SEE_OTHER,
        "signed out: to sign-in"
    );
    assert_eq!(refused.headers()[LOCATION], "/auth/signin");

    let dev = browser();
    dev_sign_in(&app, &dev, "dev-1").await;
    let token = csrf(&app, &dev).await;
    let post = |client: &Client, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{}/dev/sim/cancel", app.address))
            .header("accept", "application/json")
            .form(&form)
            .send()
    };
    let other = post(
        &dev,
        vec![("csrf_token", token.clone()), ("user_id", "victim".into())],
    )
    .await
    .unwrap();
    assert_error(other, 403, "forbidden").await;
    let no_token = post(&dev, vec![("user_id", "dev-1".into())]).await.unwrap();
    assert_error(no_token, 403, "forbidden").await;
    // Their own user (named, or by default) passes the checks and reaches the simulator.
    let own = post(&dev, vec![("csrf_token", token)]).await.unwrap();
    assert_error(own, 409, "no_subscription").await;

    let admin = browser();
    dev_sign_in(&app, &admin, "dev-admin").await;
    let token = csrf(&app, &admin).await;
    let anyone = post(
        &admin,
        vec![("csrf_token", token), ("user_id", "victim".into())],
    )
    .await
    .unwrap();
    assert_error(anyone, 409, "no_subscription").await;
}

#[tokio::test]
async fn the_embedded_simulators_controls_need_its_key_and_never_show_the_webhook_secret() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/_stripe/_sim/webhook_endpoints"),
        (Method::POST, "/_stripe/_sim/webhook_endpoints"),
        (Method::POST, "/_stripe/_sim/checkout/cs_x/pay"),
        (Method::POST, "/_stripe/_sim/clock/advance"),
    ] {
        let response = app
            .request(method.clone(), path)
            .header("authorization", "Bearer sk_test_guess")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    let secret = app.state.settings.stripe.webhook_secrets[0]
        .expose()
        .to_owned();
    let listed = app
        .sim_request(Method::GET, "/_stripe/_sim/webhook_endpoints")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let body = listed.text().await.unwrap();
    assert!(
        body.contains("/billing/webhook") && !body.contains(&secret),
        "{body}"
    );
}

impl TestApp {
    /// A request to the embedded simulator with the key the service itself uses.
    fn sim_request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let key = self
            .state
            .settings
            .stripe
            .simulator_key
            .as_ref()
            .expect("demo mode");
        let key = key.expose().to_owned();
        self.request(method, path).bearer_auth(key)
    }
}

#[tokio::test]
async fn the_return_page_asks_stripe_only_about_the_callers_own_recorded_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("owner", "owner@example.com").await;
    let started = json(app.checkout("owner", "weekly").await).await;
    let session = started["session_id"].as_str().unwrap().to_owned();
    let other = browser();
    dev_sign_in(&app, &other, "other").await;
    // Stripe down: a call would be a 502 (API) or a page still polling; no call is a 404.
    let sim = app.state.sim.clone().expect("demo simulator");
    sim.set_fault(Fault::ApiErrors {
        count: 1000,
        path_prefix: None,
    })
    .await;
    for id in ["cs_made_up_123", session.as_str()] {
        let polled = other
            .get(format!("{}/billing/return/status", app.address))
            .query(&[("session_id", id)])
            .send()
            .await
            .unwrap();
        assert_eq!(polled.status(), StatusCode::NOT_FOUND, "{id}");
        let synced = app
            .request(Method::POST, "/billing/checkout/sync")
            .header("X-User-Id", "other")
            .query(&[("session_id", id)])
            .send()
            .await
            .unwrap();
        assert_error(synced, 404, "not_found").await;
    }
}

#[tokio::test]
async fn return_polls_are_capped_by_the_server_whatever_the_page_sends() {
    let app = TestApp::spawn().await;
    let owner = browser();
    dev_sign_in(&app, &owner, "poller").await;
    let started = json(app.checkout("poller", "weekly").await).await;
    let session = started["session_id"].as_str().unwrap().to_owned();
    let poll = || async {
        owner
            .get(format!("{}/billing/return/status", app.address))
            .query(&[("session_id", session.as_str()), ("n", "0")])
            .header("hx-request", "true")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert!(poll().await.contains("hx-get"), "still polling at first");
    for _ in 0..msr_billing::web::pages::MAX_POLLS {
        app.state.limits.poll(&session);
    }
    let capped = poll().await;
    assert!(!capped.contains("hx-get"), "{capped}");
}

#[tokio::test]
async fn portal_calls_are_limited_per_user_with_retry_after() {
    let app = TestApp::spawn().await;
    app.create_user("p1", "p1@example.com").await;
    app.create_user("p2", "p2@example.com").await;
    let portal = |user: &'static str| {
        app.request(Method::POST, "/billing/portal")
            .header("X-User-Id", user)
            .send()
    };
    for _ in 0..5 {
        assert_error(portal("p1").await.unwrap(), 409, "no_customer").await;
    }
    let limited = portal("p1").await.unwrap();
    let wait: u64 = limited.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_error(limited, 429, "rate_limited").await;
    assert_error(portal("p2").await.unwrap(), 409, "no_customer").await;
}

fn handoff_token(sub: &str, nonce: Option<&str>) -> String {
    let mut claims = json!({"sub": sub, "email": format!("{sub}@example.com"), "exp": now() + 120,
        "iat": now(), "jti": format!("j-{}", rand::random::<u64>())});
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    msr_billing::auth::sign(&claims, AUTH_SECRET.as_bytes())
}

async fn open_handoff(app: &TestApp, client: &Client, token: &str) -> reqwest::Response {
    client
        .get(format!("{}/auth/handoff", app.address))
        .query(&[("token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hand_off_signs_in_only_the_browser_whose_state_nonce_it_carries() {
    let app = TestApp::spawn_with(&[
        ("MSR_AUTH_SECRET", AUTH_SECRET),
        ("MSR_AUTH_REQUIRE_NONCE", "true"),
        ("MSR_AUTH_SIGNIN_URL", "https://auth.example/signin"),
    ])
    .await;
    // No nonce: refused while the server requires one.
    let plain = browser();
    let refused = open_handoff(&app, &plain, &handoff_token("n1", None)).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let mine = browser();
    let signin = mine
        .get(format!("{}/auth/signin", app.address))
        .send()
        .await
        .unwrap();
    let cookie = signin
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("msr_auth_state="))
        .expect("a state cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let nonce = cookie["msr_auth_state=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = signin.text().await.unwrap();
    assert!(
        html.contains(&format!("state={nonce}")),
        "the link carries it: {html}"
    );

    // An attacker's link (made for their nonce, or for this one but opened elsewhere) signs in nobody.
    let token = handoff_token("n1", Some(&nonce));
    let elsewhere = open_handoff(&app, &plain, &token).await;
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    let wrong = open_handoff(&app, &mine, &handoff_token("n1", Some("0123abcd"))).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let signed_in = open_handoff(&app, &mine, &handoff_token("n1", Some(&nonce))).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[LOCATION], "/");
    let account = mine
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_admin_ends_every_session_of_a_user() {
    let app = TestApp::spawn_with(&[("MSR_ADMIN_USER_IDS", "support-9")]).await;
    let phone = browser();
    let laptop = browser();
    dev_sign_in(&app, &phone, "lost-phone").await;
    dev_sign_in(&app, &laptop, "lost-phone").await;
    let admin = browser();
    dev_sign_in(&app, &admin, "support-9").await;
    let token = csrf(&app, &admin).await;
    let ended = admin
        .post(format!(
            "{}/admin/users/lost-phone/sessions/end",
            app.address
        ))
        .form(&[("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::SEE_OTHER);
    for client in [&phone, &laptop] {
        let account = client
            .get(format!("{}/account", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(account.status(), StatusCode::SEE_OTHER);
        assert_eq!(account.headers()[LOCATION], "/auth/signin");
    }
    let audit: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE user_id = 'lost-phone' AND action LIKE 'end all%'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(audit, 1);
    // A new sign-in works again.
    dev_sign_in(&app, &phone, "lost-phone").await;
    let account = phone
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_user_ids_are_not_kept_in_the_cache() {
    let app = TestApp::spawn().await;
    crate::helpers::cache_trusted(&app).await;
    app.create_user("known", "known@example.com").await;
    assert_eq!(
        app.entitlement("known").await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    let before = app.state.cache.len();
    for i in 0..200 {
        let answer = app.entitlement(&format!("made-up-{i}")).await;
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(app.state.cache.len(), before);
}

fn session_completed(event: &str, session: &str, customer: &str, user: &str) -> String {
    json!({
        "id": event, "object": "event", "type": "checkout.session.completed",
        "created": now(), "livemode": false, "api_version": "2026-09-30.endive",
        "data": {"object": {
            "id": session, "object": "checkout.session", "mode": "subscription",
            "status": "complete", "customer": customer, "client_reference_id": user,
            "subscription": null, "metadata": {}
        }}
    })
    .to_string()
}

#[tokio::test]
async fn client_reference_id_links_a_customer_only_for_sessions_this_service_opened() {
    let app = StripeApp::spawn().await;
    app.create_user("pl-user", "pl-user@example.com").await;
    let customer_of = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT stripe_customer_id FROM users WHERE id = 'pl-user'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
    };
    // A Payment Link's session (never opened here) names our user: no link.
    let body = session_completed("evt_pl_1", "cs_payment_link_1", "cus_foreign_1", "pl-user");
    let answer = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(customer_of().await, None);
    assert_eq!(
        app.event_state("evt_pl_1").await.as_deref(),
        Some("ignored")
    );
    // The same shape for a session we opened (recorded in checkout_sessions) links.
    sqlx::query(
        "INSERT INTO checkout_sessions (id, user_id, plan, url, status, expires_at, created_at) \
         VALUES ('cs_ours_1', 'pl-user', 'weekly', 'https://x/', 'open', $1, $2)",
    )
    .bind(now() + 3600)
    .bind(now())
    .execute(&app.state.db.pool)
    .await
    .unwrap();
    let body = session_completed("evt_ours_1", "cs_ours_1", "cus_ours_1", "pl-user");
    let answer = app
        .post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(customer_of().await.as_deref(), Some("cus_ours_1"));
}

#[tokio::test]
async fn while_the_postgresql_listener_is_down_answers_come_from_the_store() {
    let Some(server) = crate::helpers::postgres_url() else {
        crate::helpers::skip(
            "the PostgreSQL listener test",
            "MSR_TEST_POSTGRES_URL is not set",
        );
        return;
    };
    let db = crate::helpers::TestDb::fresh_postgres(&server).await;
    let app = TestApp::spawn_on(db, &[]).await;
    crate::helpers::cache_trusted(&app).await;
    app.create_user("listened", "listened@example.com").await;
    assert_eq!(
        app.entitlement("listened").await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    // Keep the listener from coming back (existing connections stay), then cut its connection.
    let db_name: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let admin = |sql: String| {
        let server = server.clone();
        async move {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&server).await.unwrap();
            sqlx::Executor::execute(&mut c, sql.as_str()).await.unwrap();
        }
    };
    admin(format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS false")).await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(cut, vec![true], "one listener was connected and cut");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.state.cache.enabled() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache was still trusted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Read while down (nothing may be kept), then out of band (no NOTIFY) a complimentary grant
    // written straight into the store: answered at once, from the store.
    assert_eq!(
        app.entitlement("listened").await.status(),
        StatusCode::PAYMENT_REQUIRED
    );
    sqlx::query("UPDATE users SET complimentary_until = $1 WHERE id = 'listened'")
        .bind(now() + 86_400)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(app.entitlement("listened").await.status(), StatusCode::OK);
    assert!(!app.state.cache.enabled(), "still bypassed");
    admin(format!("ALTER DATABASE {db_name} ALLOW_CONNECTIONS true")).await;
    // And the listener comes back: the cache is trusted again.
    crate::helpers::cache_trusted(&app).await;
}

#[tokio::test]
async fn a_role_admin_hand_off_lasts_only_as_long_as_the_admin_role_ttl() {
    let app = TestApp::spawn_with(&[
        ("MSR_AUTH_SECRET", AUTH_SECRET),
        // Whole seconds: a 2 s role lasts between 1 and 2 s, so the first look is inside it.
        ("MSR_ADMIN_ROLE_TTL", "2s"),
    ])
    .await;
    let client = browser();
    let claims = json!({"sub": "temp-admin", "email": "t@example.com", "exp": now() + 120,
        "iat": now(), "jti": "role-ttl-1", "role": "admin"});
    let token = msr_billing::auth::sign(&claims, AUTH_SECRET.as_bytes());
    assert_eq!(
        open_handoff(&app, &client, &token).await.status(),
        StatusCode::SEE_OTHER
    );
    let admin_page = || async {
        client
            .get(format!("{}/admin", app.address))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(admin_page().await, StatusCode::OK);
    // Asked on every request: once the role's time is up the same session is an owner's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while admin_page().await != StatusCode::FORBIDDEN {
        assert!(
            std::time::Instant::now() < deadline,
            "the admin role outlived MSR_ADMIN_ROLE_TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        client
            .get(format!("{}/account", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "still signed in"
    );
}
