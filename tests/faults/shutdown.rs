//! Drill 5: SIGTERM under load. Webhook deliveries (slow: each re-fetches from a Stripe that takes
//! 1.5 s to answer) and entitlement checks are running when the signal comes. Requests already
//! accepted must finish with an answer, every acknowledged event must be in the store, and the
//! process must exit 0 within the request timeout plus a few seconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msr_stripe_sim::Fault;

use crate::harness::*;

/// `MSR_REQUEST_TIMEOUT` of the drill: no request may take longer, so neither may the shutdown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request sent this long before the signal has certainly been accepted by the server.
const SURELY_ACCEPTED: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
enum Answer {
    Status(u16),
    /// The connection was refused: the server no longer accepts (never accepted this request).
    Refused,
    /// Anything else: reset, closed before the answer, timeout.
    Broken(String),
}

#[derive(Debug, Clone)]
struct Outcome {
    /// The event id for a webhook, `None` for an entitlement check.
    event: Option<String>,
    started: Instant,
    answer: Answer,
}

type Log = Arc<Mutex<Vec<Outcome>>>;

fn classify(result: Result<reqwest::Response, reqwest::Error>) -> Answer {
    match result {
        Ok(r) => Answer::Status(r.status().as_u16()),
        Err(e) if e.is_connect() => Answer::Refused,
        Err(e) => Answer::Broken(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_accepted_requests_and_exits_0() {
    let db = FaultDb::sqlite();
    let stripe = simulator().await;
    let sim = &stripe.sim;
    let config = ServiceConfig::new(&db, &stripe)
        .with("MSR_REQUEST_TIMEOUT", "5s")
        .with("MSR_STRIPE_TIMEOUT", "3s");
    let mut service = Service::start(&config).await;
    deliver_to(sim, &[service.port]);
    let owners = subscribed_owners(&service, sim, "term", 4).await;
    settle(sim, Duration::from_secs(20)).await;
    let targets: Vec<(String, String, String)> = owners
        .iter()
        .map(|(user, sub)| {
            let customer = sim.subscription(sub).expect("subscription")["customer"]
                .as_str()
                .expect("customer")
                .to_owned();
            (user.clone(), customer, sub.clone())
        })
        .collect();
    // Every `invoice.paid` below re-fetches its subscription from a Stripe that answers in 1.5 s:
    // webhook requests are in flight most of the time.
    fault(
        sim,
        Fault::ApiHang {
            count: 100_000,
            path_prefix: Some("/v1/subscriptions".into()),
            delay_ms: 1500,
        },
    )
    .await;

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (_, customer, sub) = targets[worker % targets.len()].clone();
        let (base, log, stop) = (service.base.clone(), log.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) && refused < 3 {
                let id = fresh_event_id(&format!("term{worker}"));
                let body = invoice_paid_event(&id, &customer, &sub);
                let started = Instant::now();
                let answer = classify(
                    client
                        .post(format!("{base}/billing/webhook"))
                        .header("content-type", "application/json")
                        .header("Stripe-Signature", signature(&body))
                        .body(body)
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await,
                );
                refused = if matches!(answer, Answer::Refused) {
                    refused + 1
                } else {
                    0
                };
                log.lock().expect("log").push(Outcome {
                    event: Some(id),
                    started,
                    answer,
                });
            }
        }));
    }
    for worker in 0..4 {
        let (user, _, _) = targets[worker % targets.len()].clone();
        let (base, log, stop) = (service.base.clone(), log.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = client();
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) && refused < 3 {
                let started = Instant::now();
                let answer = classify(
                    client
                        .get(format!("{base}/billing/entitlement"))
                        .header("X-User-Id", &user)
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await,
                );
                refused = if matches!(answer, Answer::Refused) {
                    refused + 1
                } else {
                    0
                };
                log.lock().expect("log").push(Outcome {
                    event: None,
                    started,
                    answer,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let in_flight_at_signal = log.lock().expect("log").len();
    let signalled = Instant::now();
    service.sigterm();
    let status = service
        .wait_exit(REQUEST_TIMEOUT + Duration::from_secs(5))
        .await;
    let took = signalled.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let outcomes = log.lock().expect("log").clone();

    // Tally, for the report and the failure messages.
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        let when = if o.started < signalled {
            "before"
        } else {
            "after"
        };
        let kind = if o.event.is_some() {
            "webhook"
        } else {
            "entitlement"
        };
        let what = match &o.answer {
            Answer::Status(s) => s.to_string(),
            Answer::Refused => "refused".into(),
            Answer::Broken(e) => {
                eprintln!("broken {kind} request: {e}");
                "broken".into()
            }
        };
        *tally
            .entry(format!("{kind} sent {when} SIGTERM: {what}"))
            .or_default() += 1;
    }
    eprintln!("graceful shutdown: exit {status:?} {took:?} after SIGTERM; {tally:#?}");

    let status = status.unwrap_or_else(|| {
        panic!(
            "still running {:?} after SIGTERM (request timeout {REQUEST_TIMEOUT:?})",
            took
        )
    });
    assert!(status.success(), "exit status {status}:\n{}", service.log());
    assert!(
        took <= REQUEST_TIMEOUT + Duration::from_secs(3),
        "exit took {took:?}"
    );
    assert!(
        outcomes.len() > in_flight_at_signal,
        "requests were still going when the signal came"
    );

    // Accepted before the signal: answered, and answered well.
    let lost: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.started + SURELY_ACCEPTED < signalled)
        .filter(|o| !matches!(o.answer, Answer::Status(200)))
        .collect();
    assert!(
        lost.is_empty(),
        "requests accepted before SIGTERM without a 200: {lost:#?}"
    );

    // Acknowledged means recorded; recorded means the sender was told so.
    let pool = db.pool().await;
    let rows = event_rows(&pool).await;
    let acknowledged: Vec<String> = outcomes
        .iter()
        .filter(|o| matches!(o.answer, Answer::Status(200)))
        .filter_map(|o| o.event.clone())
        .collect();
    let unrecorded: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !rows.contains_key(*id))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "acknowledged but not recorded: {unrecorded:?}"
    );
    let answer_lost: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.answer, Answer::Broken(_)))
        .filter(|o| o.event.as_ref().is_some_and(|id| rows.contains_key(id)))
        .collect();
    assert!(
        answer_lost.is_empty(),
        "recorded, but the connection broke before the answer: {answer_lost:#?}"
    );
    assert!(acknowledged.len() >= 6, "the load did some work: {tally:?}");

    // What was recorded but not applied before the exit is applied after a restart.
    sim.clear_faults().await;
    let exited_at = chrono::Utc::now().timestamp();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _again = Service::start(&config).await;
    sqlx::query(
        "UPDATE stripe_events SET locked_until = NULL \
         WHERE state IN ('pending', 'failed') AND locked_until IS NOT NULL AND locked_until <= $1",
    )
    .bind(exited_at + 60)
    .execute(&pool)
    .await
    .expect("expire the stopped process's leases");
    let left = drain(&pool, Duration::from_secs(15)).await;
    assert!(left.is_empty(), "still waiting after the restart: {left:?}");
}
