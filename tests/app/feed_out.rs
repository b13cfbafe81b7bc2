//! The change log delivered to endpoints as Standard Webhooks: signed, in order, retried until
//! acknowledged, each change once.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::coverage::signed_in;
use crate::feed::grant_and_revoke;
use crate::helpers::{TestApp, base_env, json};

/// What the receiver got: headers of interest, body, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

/// A receiver answering each request with the next status of `plan` (then 200 for ever).
async fn receiver(plan: Vec<u16>) -> (String, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let plan = Arc::new(Mutex::new(plan.into_iter()));
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (got, plan) = (got.clone(), plan.clone());
                async move {
                    let status = plan.lock().unwrap().next().unwrap_or(200);
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    got.lock().unwrap().push(Got {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body,
                        answered: status,
                    });
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
                    if status == 302 {
                        response
                            .headers_mut()
                            .insert("location", "/elsewhere".parse().unwrap());
                    }
                    response
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A secret as Standard Webhooks gives them: `whsec_` + base64 of random bytes.
fn secret() -> (String, Vec<u8>) {
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    (format!("whsec_{}", STANDARD.encode(&key)), key)
}

/// Verifies a delivery as a Standard Webhooks verifier does.
fn verifies(key: &[u8], got: &Got) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{}.{}.{}", got.id, got.timestamp, got.body).as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = got
        .timestamp
        .parse::<i64>()
        .is_ok_and(|t| (Utc::now().timestamp() - t).abs() < 300);
    fresh && got.signature.split(' ').any(|s| s == expected)
}

/// Verifies deliveries with the Standard Webhooks reference library for Python (`standardwebhooks`,
/// from `stripe-sim/tests/python/requirements.txt`): the verified payloads' `data.seq`, or `None`
/// when python3 or the library is missing (a visible skip; a failure under MSR_TEST_REQUIRE_ALL=1).
fn python_verifies(secret: &str, deliveries: &[&Got]) -> Option<Vec<i64>> {
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
job = json.load(sys.stdin)
wh = Webhook(job["secret"])
print(json.dumps([wh.verify(d["body"], d["headers"])["data"]["seq"] for d in job["deliveries"]]))
"#;
    let job = serde_json::json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|g| serde_json::json!({
            "body": g.body,
            "headers": {"webhook-id": g.id, "webhook-timestamp": g.timestamp, "webhook-signature": g.signature},
        })).collect::<Vec<_>>(),
    });
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let child = std::process::Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let missing = |why: String| {
        crate::helpers::skip(
            "Standard Webhooks verification (python standardwebhooks)",
            &why,
        );
        None
    };
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return missing(format!("{python} not runnable ({e})")),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        return missing(format!(
            "{} (pip install -r stripe-sim/tests/python/requirements.txt)",
            stderr.lines().last().unwrap_or_default()
        ));
    }
    assert!(
        out.status.success(),
        "the verifier refused a delivery: {stderr}"
    );
    Some(serde_json::from_slice(&out.stdout).expect("the verified seqs"))
}

async fn wait_for(got: &Arc<Mutex<Vec<Got>>>, delivered: usize, secs: u64) -> Vec<Got> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let now = got.lock().unwrap().clone();
        let acknowledged = now.iter().filter(|g| g.answered == 200).count();
        if acknowledged >= delivered || std::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn changes_reach_an_endpoint_signed_in_order_and_a_failing_one_is_retried_until_it_answers() {
    // The first attempt gets a 500, the second a redirect (not followed: a failure too).
    let (url, got) = receiver(vec![500, 302]).await;
    let (secret, key) = secret();
    let app = TestApp::spawn_with(&[
        ("MSR_FEED_ENDPOINTS", url.as_str()),
        ("MSR_FEED_SECRET", secret.as_str()),
    ])
    .await;
    for user in ["out-1", "out-2"] {
        app.create_user(user, &format!("{user}@example.com")).await;
    }
    // Registered before the changes (it delivers from the moment it is known).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    grant_and_revoke(&app, "out-1").await;
    grant_and_revoke(&app, "out-2").await;
    let all = wait_for(&got, 4, 30).await;
    let acknowledged: Vec<&Got> = all.iter().filter(|g| g.answered == 200).collect();
    assert_eq!(acknowledged.len(), 4, "every change delivered: {all:#?}");
    // Retries carry the same id; a change acknowledged is never sent again.
    let ids: Vec<&str> = all.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids[0], ids[1], "the retry is the same message: {ids:?}");
    assert_eq!(ids[1], ids[2]);
    let acked_ids: Vec<&str> = acknowledged.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        acked_ids,
        vec!["msr_chg_1", "msr_chg_2", "msr_chg_3", "msr_chg_4"],
        "in seq order, each once"
    );
    if let Some(seqs) = python_verifies(&secret, &acknowledged) {
        assert_eq!(
            seqs,
            vec![1, 2, 3, 4],
            "the reference verifier accepts every delivery"
        );
    }
    let pulled = json(app.get("/billing/entitlements/changes").await).await;
    for (g, change) in acknowledged
        .iter()
        .zip(pulled["changes"].as_array().unwrap())
    {
        assert!(verifies(&key, g), "the signature verifies: {g:?}");
        let body: Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(body["type"], "entitlement.updated");
        assert_eq!(
            body["data"], *change,
            "the delivery carries the change as pulled"
        );
        assert_eq!(body["timestamp"], change["changed_at"]);
    }
    // The endpoint recovered: /metrics shows it not failing and not behind.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&url))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    assert_eq!(
        line("msr_feed_endpoint_failing").as_deref(),
        Some("0"),
        "{metrics}"
    );
    assert_eq!(line("msr_feed_endpoint_lag_changes").as_deref(), Some("0"));
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_shows_in_metrics_and_slows_nothing() {
    let (url, got) = receiver(vec![500; 1000]).await;
    let (secret, _) = secret();
    let app = TestApp::spawn_with(&[
        ("MSR_FEED_ENDPOINTS", url.as_str()),
        ("MSR_FEED_SECRET", secret.as_str()),
        ("MSR_ADMIN_USER_IDS", "ops"),
    ])
    .await;
    app.create_user("out-3", "out-3@example.com").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    grant_and_revoke(&app, "out-3").await;
    assert_eq!(app.entitlement("out-3").await.status(), 402);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "changes and checks do not wait for the endpoint"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let failing = metrics
        .lines()
        .find(|l| l.starts_with("msr_feed_endpoint_failing") && l.contains(&url));
    assert_eq!(
        failing.map(|l| l.ends_with(" 1")),
        Some(true),
        "the failing endpoint shows: {metrics}"
    );
    let admin = signed_in(&app, "ops").await;
    let page = admin
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Change feed endpoints") && page.contains(&url) && page.contains("failing"),
        "the admin dashboard shows the failing endpoint: {page}"
    );
}

#[test]
fn an_endpoint_that_is_not_http_or_a_bad_secret_stops_start_up_naming_the_variable() {
    let (secret, _) = secret();
    let cases: [(&str, &str, &str); 4] = [
        (
            "ftp://example.com/hook",
            secret.as_str(),
            "MSR_FEED_ENDPOINTS",
        ),
        (
            "http://ok.example.com/a, not a url",
            secret.as_str(),
            "MSR_FEED_ENDPOINTS",
        ),
        ("http://ok.example.com/a", "whsec_%%%", "MSR_FEED_SECRET"),
        ("http://ok.example.com/a", "", "MSR_FEED_SECRET"),
    ];
    for (endpoints, secret, var) in cases {
        let mut env = base_env("sqlite::memory:");
        env.insert("MSR_FEED_ENDPOINTS".into(), endpoints.into());
        if !secret.is_empty() {
            env.insert("MSR_FEED_SECRET".into(), secret.into());
        }
        let error =
            msr_billing::config::Settings::from_source(&env).expect_err("refused at start-up");
        assert_eq!(error.var, var, "{endpoints} / {secret}: {error:?}");
    }
}
