//! Background loops run supervised: one that keeps panicking is restarted, counted in `/metrics`
//! and named by `/readyz`; the service's own loops are all under the supervisor; a stop ends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::coverage::eventually;
use crate::helpers::{TestApp, json};

const KEY: &str = "supervised-internal-key-0123456789abcdef";

#[tokio::test]
async fn a_loop_that_keeps_panicking_is_restarted_counted_and_named_by_readyz() {
    let app = TestApp::spawn_with(&[("MSR_INTERNAL_API_KEY", KEY)]).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let runs = Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    app.state.tasks.spawn("test-panicker", move || {
        let runs = counted.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            panic!("injected by the test");
        }
    });
    eventually(
        "readyz names the failing loop",
        Duration::from_secs(10),
        || async { app.get("/readyz").await.status() == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    let body = json(app.get("/readyz").await).await;
    assert_eq!(body["error"]["code"], "task_failing", "{body}");
    assert_eq!(body["tasks"][0]["task"], "test-panicker", "{body}");
    assert!(
        body["tasks"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("injected by the test"),
        "{body}"
    );
    assert!(
        runs.load(Ordering::SeqCst) >= 3,
        "started again after each panic"
    );
    let scrape = app
        .request(Method::GET, "/metrics")
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = scrape
        .lines()
        .find(|l| l.starts_with("msr_task_restarts_total{task=\"test-panicker\"}"))
        .unwrap_or_else(|| panic!("no restart counter in:\n{scrape}"));
    let restarts: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(restarts >= 3.0, "{line}");
}

#[tokio::test]
async fn every_loop_of_the_service_runs_under_the_supervisor_and_a_stop_ends_them() {
    let app = TestApp::spawn().await;
    // The server starts its loops when it starts serving.
    eventually("the loops start", Duration::from_secs(10), || async {
        app.state.tasks.restarts().len() >= 6
    })
    .await;
    let names: Vec<&str> = app.state.tasks.restarts().iter().map(|(t, _)| *t).collect();
    for expected in [
        "event-worker",
        "event-retention",
        "webhook-recorder",
        "webhook-applier",
        "cache-fill",
        "session-cleanup",
        "simulator-delivery",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let ticks = Arc::new(AtomicU64::new(0));
    let counted = ticks.clone();
    app.state.tasks.spawn("test-ticker", move || {
        let ticks = counted.clone();
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    eventually("the ticker runs", Duration::from_secs(5), || async {
        ticks.load(Ordering::SeqCst) > 2
    })
    .await;
    let tasks = app.state.tasks.clone();
    app.stop().await;
    let stopped_at = ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        stopped_at,
        "no loop runs after the stop"
    );
    assert!(tasks.failing().is_empty());
}
