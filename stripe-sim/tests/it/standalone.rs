//! `run_standalone`: any `sk_test_` key works, live keys are refused, `Stripe-Version`
//! is accepted, and events reach the webhook URL given on the command line, signed.

use std::time::Duration;

use msr_stripe_sim::{StandaloneOptions, run_standalone};
use serde_json::Value;

use crate::helpers::*;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn the_standalone_simulator_serves_any_test_key_and_delivers_signed_webhooks() {
    let receiver = Receiver::start().await;
    let port = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_standalone(
        StandaloneOptions {
            port,
            webhook_url: Some(receiver.url.clone()),
            webhook_secret: Some(SECRET.into()),
            ..StandaloneOptions::default()
        },
        async {
            let _ = stopped.await;
        },
    ));
    let base = format!("http://127.0.0.1:{port}");
    let http = http();
    let mut created: Option<Value> = None;
    for _ in 0..100 {
        if let Ok(resp) = http
            .post(format!("{base}/v1/customers"))
            .bearer_auth("sk_test_whatever_a_tool_uses")
            .header("Stripe-Version", "2026-09-30.endive")
            .form(&[("email", "cli@example.com")])
            .send()
            .await
        {
            assert_eq!(resp.status(), 200);
            created = Some(resp.json().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = created.expect("standalone simulator never answered");
    assert_eq!(created["object"], "customer");

    let live = http
        .get(format!("{base}/v1/customers"))
        .bearer_auth("sk_live_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 401);

    for _ in 0..100 {
        if receiver
            .valid_types()
            .contains(&"customer.created".to_string())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.valid_types(), vec!["customer.created".to_string()]);
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the simulator stops cleanly when told to: {ended:?}"
    );
}
