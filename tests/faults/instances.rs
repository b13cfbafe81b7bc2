//! Drill 4: two service processes on one PostgreSQL database. Stripe delivers every event to both
//! endpoints, several copies at once and then again; later both background workers race for the
//! same failed events. Each event must be recorded once and applied once.

use std::time::Duration;

use msr_stripe_sim::Fault;

use crate::harness::*;

const OWNERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgresql_apply_every_event_exactly_once() {
    let Some(server) = postgres_or_skip("two instances on one PostgreSQL") else {
        return;
    };
    let db = FaultDb::postgres(&server).await;
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let config = ServiceConfig::new(&db, &stripe);
    let a = Service::start(&config).await;
    let b = Service::start(&config.on_another_port()).await;
    deliver_to(sim, &[a.port, b.port]);
    // Each event: three simultaneous copies to each instance, then one more to each.
    fault(sim, Fault::ConcurrentCopies { copies: 3 }).await;
    fault(sim, Fault::DuplicateDeliveries).await;

    // Owners check out on either instance.
    let mut owners = Vec::new();
    for i in 0..OWNERS {
        let user = format!("twin{i}");
        let service = if i % 2 == 0 { &a } else { &b };
        let session = start_checkout(service, &user, "monthly").await;
        owners.push((user, pay(sim, &session).await));
    }
    churn(sim, &owners, Spacing::SecondsApart).await;
    settle(sim, Duration::from_secs(40)).await;
    let pool = db.pool().await;
    assert!(
        drain(&pool, Duration::from_secs(15)).await.is_empty(),
        "nothing waits once the deliveries are done"
    );
    let first_wave = emitted(sim);
    let rows = event_rows(&pool).await;
    assert_all_done(&rows, &first_wave, "the deliveries");
    let retried: Vec<_> = rows.iter().filter(|(_, r)| r.attempts > 0).collect();
    assert!(retried.is_empty(), "no event needed a retry: {retried:?}");

    // The workers' race: events that fail while Stripe answers 500, then become due on both
    // instances at the same moment.
    sim.clear_faults().await;
    fault(
        sim,
        Fault::ApiErrors {
            count: 10_000,
            path_prefix: Some("/v1/subscriptions".into()),
        },
    )
    .await;
    for (_, sub) in &owners {
        sim.advance_to_next_renewal(sub).await;
    }
    settle(sim, Duration::from_secs(40)).await;
    let failed = waiting(&pool).await;
    assert!(
        failed.len() >= OWNERS,
        "renewal events wait for Stripe: {failed:?}"
    );
    sim.clear_faults().await;
    let left = drain(&pool, Duration::from_secs(20)).await;
    assert!(left.is_empty(), "events still waiting: {left:?}");

    let all = emitted(sim);
    let rows = event_rows(&pool).await;
    assert_all_done(&rows, &all, "every event");
    assert_eq!(rows.len(), all.len(), "one row per event id, nothing else");
    let leased: Vec<_> = rows
        .iter()
        .filter(|(_, r)| r.locked_until.is_some())
        .collect();
    assert!(leased.is_empty(), "no lease left behind: {leased:?}");

    // Applied once across both processes, and both did some of the work.
    let (log_a, log_b) = (a.log(), b.log());
    let synced = synced_per_event(&[log_a.clone(), log_b.clone()]);
    let twice: Vec<_> = synced.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events applied more than once: {twice:?}");
    let (by_a, by_b) = (
        synced_per_event(&[log_a]).len(),
        synced_per_event(&[log_b]).len(),
    );
    eprintln!(
        "two instances: {} events, {} deliveries, applied by a: {by_a}, by b: {by_b}, {} failed during the Stripe outage",
        all.len(),
        sim.deliveries().len(),
        failed.len()
    );
    assert!(by_a > 0 && by_b > 0, "both instances applied events");

    let wrong = store_vs_truth(&pool, sim).await;
    assert!(
        wrong.is_empty(),
        "the store differs from Stripe: {wrong:#?}"
    );
}
