//! `msr-billing sync` and `msr-billing events`, run as real processes against a test's database and
//! simulator.

use tokio::process::Command;

use msr_stripe_sim::{Fault, TestCard};
use serde_json::json;

use crate::helpers::{StripeApp, WEBHOOK_SECRET, now, sign};

async fn run(app: &StripeApp, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_msr-billing"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &app.db.url)
        .env("STRIPE_API_KEY", "sk_test_cli")
        .env("STRIPE_API_BASE", &app.stripe.base_url)
        .env(
            "MSR_INTERNAL_API_KEY",
            "cli-internal-key-0123456789abcdef0123",
        )
        .output()
        .await
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("sk_test_cli")
            && !stderr.contains("cli-internal-key-0123456789abcdef0123"),
        "no secret in logs: {stderr}"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_failed_event_is_listed_and_replayed_from_the_command_line() {
    let app = StripeApp::spawn().await;
    let sub = app.subscribed("cl", "monthly", TestCard::Visa).await;
    app.sim()
        .set_fault(Fault::ApiErrors {
            count: 1000,
            path_prefix: Some("/v1/subscriptions".into()),
        })
        .await;
    let invoice = json!({"id": "in_cli", "object": "invoice", "customer": app.sim().subscription(&sub).unwrap()["customer"],
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}}});
    let body = json!({"id": "evt_cli", "object": "event", "created": now() + 5, "livemode": false, "type": "invoice.paid",
        "data": {"object": invoice}})
    .to_string();
    assert_eq!(
        app.post_webhook(&body, Some(sign(WEBHOOK_SECRET, now(), &body)))
            .await
            .status()
            .as_u16(),
        200
    );
    assert_eq!(app.event_state("evt_cli").await.as_deref(), Some("failed"));

    let (ok, listed) = run(&app, &["events", "list", "--failed"]).await;
    assert!(ok, "{listed}");
    assert!(
        listed.contains("evt_cli") && listed.contains("invoice.paid"),
        "{listed}"
    );

    app.sim().clear_faults().await;
    let (ok, replayed) = run(&app, &["events", "replay", "evt_cli"]).await;
    assert!(ok, "{replayed}");
    assert!(replayed.contains("evt_cli: applied"), "{replayed}");
    assert_eq!(app.event_state("evt_cli").await.as_deref(), Some("applied"));
}

#[tokio::test]
async fn sync_repairs_drift_and_prints_who_was_wrong() {
    // The command is another process: on SQLite the server's cache hears of its writes only when
    // the entry expires (MSR_CACHE_TTL), the bound README states.
    let app = StripeApp::spawn_with(&[("MSR_CACHE_TTL", "1s")]).await;
    let sub = app.subscribed("sy", "weekly", TestCard::Visa).await;
    app.sim().set_fault(Fault::PauseDeliveries).await;
    app.sim()
        .pause_collection(&sub, Some("void"))
        .await
        .unwrap();
    assert_eq!(app.entitled("sy").await.0, 200);
    let (ok, report) = run(&app, &["sync", "--all"]).await;
    assert!(ok, "{report}");
    assert!(report.contains("1 differed"), "{report}");
    assert!(
        report.contains("sy: active (active") && report.contains("paused"),
        "{report}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.entitled("sy").await.0, 402);
    let (ok, again) = run(&app, &["sync", "--user", "sy"]).await;
    assert!(ok && again.contains("0 differed"), "{again}");
}
