use reqwest::Method;

use crate::helpers::{TestApp, TestDb, assert_error, json};

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status().as_u16(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(json(ready).await["status"], "ready");
}

#[tokio::test]
async fn readiness_is_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.state.db.pool.close().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(json(ready).await["status"], "unavailable");
    // API routes answer the envelope with 503, not a 500.
    assert_error(app.entitlement("1").await, 503, "database_unavailable").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_json_envelope() {
    let app = TestApp::spawn().await;
    assert_error(app.get("/nope").await, 404, "not_found").await;
    assert_error(
        app.request(Method::DELETE, "/healthz")
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let a = app.get("/healthz").await;
    let b = app.get("/nope").await;
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert!(id(&a).is_some_and(|s| !s.is_empty()));
    assert!(id(&b).is_some());
    assert_ne!(id(&a), id(&b));
}

#[tokio::test]
async fn api_bodies_over_64_kib_are_refused_with_413() {
    let app = TestApp::spawn().await;
    let response = app
        .request(
            Method::POST,
            "/dev/create_user?user_id=1&email=ed@example.com",
        )
        .body(vec![b'x'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn malformed_query_strings_are_client_errors() {
    let app = TestApp::spawn().await;
    let response = app
        .request(Method::POST, "/dev/create_user?user_id=%ZZ&email=%")
        .send()
        .await
        .unwrap();
    assert_error(response, 422, "invalid_user_id").await;
}

#[tokio::test]
async fn data_survives_a_restart_and_migrations_run_again_harmlessly() {
    let app = TestApp::spawn().await;
    app.create_user("keep", "keep@example.com").await;
    let db: TestDb = app.stop().await;
    // The second start runs the migrator on an already migrated database.
    let again = TestApp::spawn_on(db, &[]).await;
    let body = json(again.dev_status("keep").await).await;
    assert_eq!(body["user"]["email"], "keep@example.com");
}

#[tokio::test]
async fn an_sqlite_file_is_created_when_missing_and_runs_in_wal_mode() {
    let db = TestDb::fresh_sqlite();
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    assert!(!std::path::Path::new(&path).exists());
    let app = TestApp::spawn_on(db, &[]).await;
    assert!(std::path::Path::new(&path).exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
}

/// The plain `cargo test` run (SQLite) also proves the PostgreSQL path once, when a server is given.
#[tokio::test]
async fn the_same_code_serves_on_postgresql() {
    let Some(server) = crate::helpers::postgres_url() else {
        crate::helpers::skip("PostgreSQL round trip", "MSR_TEST_POSTGRES_URL is not set");
        return;
    };
    let db = TestDb::fresh_postgres(&server).await;
    let app = TestApp::spawn_on(db, &[]).await;
    assert_eq!(app.state.db.backend, msr_billing::db::Backend::Postgres);
    assert_eq!(
        app.create_user("pg1", "pg1@example.com")
            .await
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        app.create_user("pg1", "pg1@example.com")
            .await
            .status()
            .as_u16(),
        200
    );
    let body = json(app.dev_status("pg1").await).await;
    assert_eq!(body["entitlement"]["status"], "none");
    let db = app.stop().await;
    let again = TestApp::spawn_on(db, &[]).await;
    assert_eq!(
        json(again.dev_status("pg1").await).await["user"]["id"],
        "pg1"
    );
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let app = TestApp::spawn().await;
    let page = app
        .request(Method::GET, "/auth/signin")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    let h = page.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.contains_key("referrer-policy"));
    assert!(
        !h.contains_key("strict-transport-security"),
        "no HSTS over plain http"
    );
    let https = TestApp::spawn_with(&[("MSR_PUBLIC_URL", "https://billing.example.com/")]).await;
    let h = https.get("/healthz").await;
    assert!(
        h.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn a_slow_client_is_cut_off_and_does_not_block_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[("MSR_HEADER_TIMEOUT", "1s")]).await;
    let mut slow = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others are served meanwhile.
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        slow.read_to_end(&mut buf),
    )
    .await;
    assert!(
        read.is_ok(),
        "the server closed the slow connection within the header timeout"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "no answer to an unfinished request"
    );
}

#[tokio::test]
async fn oversized_request_headers_are_refused() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(100 * 1024);
    let response = app
        .request(Method::GET, "/healthz")
        .header("X-Padding", huge)
        .send()
        .await;
    match response {
        Ok(r) => assert_eq!(r.status().as_u16(), 431),
        Err(e) => assert!(
            e.is_request() || e.is_connect() || e.to_string().contains("connection"),
            "{e}"
        ),
    }
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format_behind_the_internal_key() {
    let key = "metrics-key-0123456789abcdef0123456789";
    let app = TestApp::spawn_with(&[("MSR_INTERNAL_API_KEY", key)]).await;
    app.create_user("m1", "m1@example.com").await;
    let answer = app
        .request(Method::GET, "/billing/entitlement")
        .header("X-User-Id", "m1")
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 402);
    assert_error(app.get("/metrics").await, 401, "unauthorized").await;
    let scrape = app
        .request(Method::GET, "/metrics")
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status().as_u16(), 200);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scrape.text().await.unwrap();
    for needle in [
        "msr_http_requests_total{route=\"/billing/entitlement\",method=\"GET\",status=\"402\"}",
        "msr_http_request_duration_seconds_bucket{route=\"/billing/entitlement\"",
        "msr_entitlement_decisions_total{reason=\"no_subscription\"}",
        "msr_stripe_events{state=\"pending\"}",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
