//! Background work: retrying events whose processing failed (with back-off, until dead-lettered),
//! applying requeued unmatched events, and reading Stripe's Events API for missed deliveries.

use std::time::Duration;

use chrono::Utc;

use crate::billing::Billing;
use crate::billing::{apply, sync};
use crate::db;
use crate::error::AppError;

/// Applies every event that is due now. Returns how many were attempted.
pub async fn run_due(state: &Billing) -> Result<usize, AppError> {
    db::events::requeue_linked_unmatched(&state.db.pool).await?;
    let mut attempted = 0;
    loop {
        let ids = db::events::due(&state.db.pool, Utc::now(), 100).await?;
        if ids.is_empty() {
            return Ok(attempted);
        }
        let batch = ids.len();
        for id in ids {
            apply::process(state, &id, false).await?;
            attempted += 1;
        }
        // A short batch means the queue is drained (failures are rescheduled into the future).
        if batch < 100 || attempted >= 10_000 {
            return Ok(attempted);
        }
    }
}

/// Drops personal data from events older than the retention (`MSR_EVENT_RETENTION`).
pub async fn reduce_old_events(state: &Billing) -> Result<u64, AppError> {
    let before = Utc::now() - crate::config::as_chrono(state.settings.event_retention);
    Ok(db::events::reduce_old(&state.db.pool, before).await?)
}

/// Starts the retry worker and the Events API catch-up as tasks of the current runtime.
pub fn spawn(state: Billing) {
    let interval = state
        .settings
        .worker_interval
        .max(Duration::from_millis(50));
    let retention_state = state.clone();
    state.tasks.spawn("event-retention", move || {
        let retention_state = retention_state.clone();
        async move {
            loop {
                match reduce_old_events(&retention_state).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        events = n,
                        "old event payloads reduced to id, type and outcome"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "event retention pass failed; will try again")
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
    });
    let worker_state = state.clone();
    state.tasks.spawn("event-worker", move || {
        let worker_state = worker_state.clone();
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = worker_state.wake.notified() => {}
                }
                if let Err(e) = run_due(&worker_state).await {
                    tracing::warn!(error = %e, "event worker pass failed; will try again");
                }
            }
        }
    });
    let poll = state.settings.events_poll_interval;
    if poll.is_zero() || state.stripe.is_none() {
        return;
    }
    let poll_state = state.clone();
    state.tasks.spawn("events-poll", move || {
        let state = poll_state.clone();
        async move {
            loop {
                tokio::time::sleep(poll).await;
                match sync::catch_up_events(&state).await {
                    Ok(report) if report.recorded > 0 => {
                        tracing::warn!(
                            seen = report.seen,
                            recorded = report.recorded,
                            "Events API catch-up found events the webhook missed"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "Events API catch-up failed; will try again")
                    }
                }
            }
        }
    });
}
