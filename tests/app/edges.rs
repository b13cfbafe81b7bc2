//! The edges a security review found open: request ids, JSON bodies that are not objects, caching
//! headers, the session cookie under https, Stripe's own text in 502s, the OpenAPI document with
//! debug off, idle and capped connections, readiness that needs a write.

use std::time::{Duration, Instant};

use msr_stripe_sim::Fault;
use reqwest::header::{CACHE_CONTROL, SET_COOKIE};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{StripeApp, TestApp, assert_error, json, suite_on_postgres};
use crate::pages::{browser, token_in};

const INTERNAL_KEY: &str = "edges-test-internal-key-0123456789abcdef";

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_usable_request_id_is_kept_and_anything_else_is_replaced() {
    let app = TestApp::spawn().await;
    let sent = |id: String| {
        app.request(Method::GET, "/healthz")
            .header("x-request-id", id)
            .send()
    };
    let kept = "abc.DEF_0-9";
    assert_eq!(request_id(&sent(kept.into()).await.unwrap()), kept);
    let longest = "a".repeat(64);
    assert_eq!(request_id(&sent(longest.clone()).await.unwrap()), longest);
    for bad in [
        "x".repeat(6000),
        "a".repeat(65),
        "abc user_id=admin".to_owned(),
        "quote\"d".to_owned(),
        "a=b".to_owned(),
    ] {
        let id = request_id(&sent(bad.clone()).await.unwrap());
        assert_ne!(id, bad);
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "a new id for {:?}: {id}",
            &bad[..bad.len().min(20)]
        );
    }
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_422_invalid_body() {
    let app = TestApp::spawn().await;
    app.create_user("j1", "j1@example.com").await;
    let post = |body: &'static str| {
        app.request(Method::POST, "/billing/checkout")
            .header("X-User-Id", "j1")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        r#"["weekly"]"#,
        r#""weekly""#,
        "42",
        "null",
        r#"  [{"plan":"weekly"}]"#,
    ] {
        assert_error(post(body).await.unwrap(), 422, "invalid_body").await;
    }
    assert_error(post("{").await.unwrap(), 400, "bad_request").await;
    assert_error(
        post(r#"{"plan":"yearly"}"#).await.unwrap(),
        422,
        "invalid_plan",
    )
    .await;
    assert_eq!(
        post(r#"{"plan":"weekly"}"#).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn answers_about_owners_are_never_stored_by_caches_and_static_files_are() {
    let app = TestApp::spawn().await;
    app.create_user("c1", "c1@example.com").await;
    let no_store = |r: &reqwest::Response| {
        r.headers()
            .get(CACHE_CONTROL)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let check = app.entitlement("c1").await;
    assert_eq!(no_store(&check).as_deref(), Some("no-store"));
    let status = app.dev_status("c1").await;
    assert_eq!(no_store(&status).as_deref(), Some("no-store"));
    let client = browser();
    let form = client
        .get(format!("{}/auth/signin", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client
        .post(format!("{}/auth/dev-signin", app.address))
        .form(&[("csrf_token", token_in(&form).as_str()), ("user_id", "c1")])
        .send()
        .await
        .unwrap();
    let account = client
        .get(format!("{}/account", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(account.status(), StatusCode::OK);
    assert_eq!(no_store(&account).as_deref(), Some("no-store"));
    let css = app.get("/static/app.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(no_store(&css).as_deref(), Some("public, max-age=3600"));
}

/// The session cookie a developer sign-in sets, as sent.
async fn session_cookie(app: &TestApp) -> String {
    let client = browser();
    let form = client
        .get(format!("{}/auth/signin", app.address))
        .send()
        .await
        .unwrap();
    let mut cookies: Vec<String> = form
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let html = form.text().await.unwrap();
    // Over http the cookie store sends the session back; over "https" it cannot (Secure), so the
    // sign-in is refused there, but the first Set-Cookie already shows the cookie's attributes.
    let signed_in = client
        .post(format!("{}/auth/dev-signin", app.address))
        .form(&[
            ("csrf_token", token_in(&html).as_str()),
            ("user_id", "cookie-1"),
            ("email", "cookie-1@example.com"),
        ])
        .send()
        .await
        .unwrap();
    cookies.extend(
        signed_in
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned()),
    );
    cookies
        .into_iter()
        .find(|c| c.contains("msr_session="))
        .expect("a session cookie")
}

#[tokio::test]
async fn under_https_the_session_cookie_is_a_secure_host_cookie() {
    let https = TestApp::spawn_with(&[("MSR_PUBLIC_URL", "https://billing.example/")]).await;
    let cookie = session_cookie(&https).await;
    assert!(cookie.starts_with("__Host-msr_session="), "{cookie}");
    for attribute in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    let http = TestApp::spawn().await;
    let cookie = session_cookie(&http).await;
    assert!(cookie.starts_with("msr_session="), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn stripes_own_error_text_never_reaches_the_client() {
    let app = StripeApp::spawn().await;
    app.create_user("e1", "e1@example.com").await;
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1,
            path_prefix: Some("/v1/checkout/sessions".into()),
        })
        .await;
    let body = assert_error(app.checkout("e1", "monthly").await, 502, "stripe_error").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message, msr_billing::error::AppError::STRIPE_MESSAGE);
    assert!(!message.contains("injected"), "{message}");
}

#[tokio::test]
async fn with_debug_off_the_openapi_document_lists_no_dev_route() {
    let paths = |doc: serde_json::Value| -> Vec<String> {
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    };
    let off = TestApp::spawn_with(&[
        ("MSR_DEBUG", "false"),
        ("MSR_INTERNAL_API_KEY", INTERNAL_KEY),
    ])
    .await;
    let listed = paths(json(off.get("/openapi.json").await).await);
    assert!(
        listed.contains(&"/billing/entitlement".to_owned()),
        "{listed:?}"
    );
    assert!(!listed.iter().any(|p| p.starts_with("/dev")), "{listed:?}");
    let on = TestApp::spawn().await;
    let listed = paths(json(on.get("/openapi.json").await).await);
    for dev in ["/dev/create_user", "/dev/status"] {
        assert!(listed.contains(&dev.to_owned()), "{listed:?}");
    }
}

fn port_of(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; `false` if it is still open at the deadline.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The HTTP/2 client preface and an empty SETTINGS frame: an h2c connection, prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_http2_and_keep_alive_connections_are_closed() {
    let app = TestApp::spawn_with(&[("MSR_IDLE_TIMEOUT", "1s")]).await;
    let mut h2 = tokio::net::TcpStream::connect(port_of(&app)).await.unwrap();
    h2.write_all(H2_PREFACE).await.unwrap();
    assert!(
        closed_within(&mut h2, Duration::from_secs(10)).await,
        "an idle HTTP/2 connection stayed open"
    );
    let mut h1 = tokio::net::TcpStream::connect(port_of(&app)).await.unwrap();
    h1.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    h1.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut h1, Duration::from_secs(10)).await,
        "an idle keep-alive connection stayed open"
    );
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits_for_a_free_slot() {
    let app = TestApp::spawn_with(&[
        ("MSR_MAX_CONNECTIONS", "2"),
        ("MSR_IDLE_TIMEOUT", "30s"),
        ("MSR_HEADER_TIMEOUT", "30s"),
    ])
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = tokio::net::TcpStream::connect(port_of(&app)).await.unwrap();
        c.write_all(H2_PREFACE).await.unwrap();
        held.push(c);
    }
    let mut third = tokio::net::TcpStream::connect(port_of(&app)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    let early =
        tokio::time::timeout(Duration::from_millis(700), third.read_exact(&mut answer)).await;
    assert!(early.is_err(), "answered while two connections were open");
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut answer))
        .await
        .expect("answered once a slot was free")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}

#[tokio::test]
async fn on_sqlite_readiness_needs_a_write_that_commits() {
    if suite_on_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another process holds the write lock for longer than the 5 s busy timeout: reads still
    // answer, a write cannot commit.
    use sqlx::Connection;
    let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::Executor::execute(&mut holder, "BEGIN EXCLUSIVE")
        .await
        .unwrap();
    tokio::time::sleep(msr_billing::db::PROBE_EVERY).await;
    let unready = app
        .request(Method::GET, "/readyz")
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(unready.status(), StatusCode::SERVICE_UNAVAILABLE);
    sqlx::Executor::execute(&mut holder, "ROLLBACK")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status() != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "not ready again after the lock was released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_error_is_logged_once_with_its_cause() {
    let app = crate::helpers::StripeApp::spawn().await;
    app.create_user("five", "five@example.com").await;
    app.sim()
        .set_fault(msr_stripe_sim::Fault::ApiErrors {
            count: 100,
            path_prefix: Some("/v1/customers".into()),
        })
        .await;
    let id = "five-hundred-logged-once";
    let response = app
        .request(Method::POST, "/billing/checkout")
        .header("X-User-Id", "five")
        .header("X-Request-Id", id)
        .json(&serde_json::json!({"plan": "monthly"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    // The request's last lines are written as its response leaves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = crate::helpers::captured_logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(id) && l.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("cause="), "{}", errors[0]);
}
