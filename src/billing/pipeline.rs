//! The webhook pipeline: group commit for recording, one transaction for many events when applying.
//!
//! A delivery is still answered only after its event is recorded (committed: rule 2), and after it
//! is applied or [`crate::web::webhook`]'s wait ran out, as one at a time did. What changes is the
//! cost under a burst: one commit records every delivery waiting at that moment (each new event
//! already leased to the apply stage, so no commit is spent claiming it), and one transaction
//! applies every waiting subscription event whose payload carries its subscription: two commits
//! for a delivery, shared by every delivery of the burst.
//! Anything else (same-second events that need a re-fetch, checkout sessions, invoices) and every
//! event of a batch that failed goes the single-event way ([`apply::process_claimed`]), concurrently.
//!
//! On SQLite one task records and one applies, taking turns on the database's one writer through an
//! in-process gate, so neither waits in SQLite's busy handler. On PostgreSQL several of each run:
//! batches of different subscriptions commit in parallel; a batch locks its subscriptions in id
//! order, and one that fails anyway (a deadlock with a single-event writer) is applied event by
//! event.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Utc;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::billing::Billing;
use crate::billing::apply::{self, BatchItem, LEASE};
use crate::billing::ingest::{self, Prepared};
use crate::db;
use crate::db::events::EventState;
use crate::error::AppError;
use crate::stripe::objects::EventEnvelope;

/// Most deliveries recorded, or events applied, in one transaction.
const MAX_BATCH: usize = 256;
/// Deliveries that may wait for a stage before senders wait too.
const QUEUE: usize = 8192;

type Recorded = Result<Delivery, AppError>;
type Applied = Result<Option<EventState>, AppError>;

/// A recorded delivery, on its way to be applied.
#[derive(Debug)]
pub struct Delivery {
    /// What was recorded (its parsed event goes on to the apply stage with it).
    pub prepared: Prepared,
    /// False when the id was known already (a duplicate delivery).
    pub new: bool,
    /// Recorded leased to the apply stage, which has it already: its outcome comes here.
    applying: Option<oneshot::Receiver<Applied>>,
}

struct RecordJob {
    prepared: Prepared,
    done: oneshot::Sender<Recorded>,
}

struct ApplyJob {
    id: String,
    event: Option<EventEnvelope>,
    leased: bool,
    done: oneshot::Sender<Applied>,
}

/// The queues in front of the two stages; their tasks start with the server.
pub struct Pipeline {
    record: mpsc::Sender<RecordJob>,
    apply: mpsc::Sender<ApplyJob>,
    receivers: std::sync::Mutex<Option<(mpsc::Receiver<RecordJob>, mpsc::Receiver<ApplyJob>)>>,
    running: AtomicBool,
    /// SQLite: one writer at a time, taken in turn by the stages.
    gate: Mutex<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("running", &self.running.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Pipeline {
    fn default() -> Self {
        let (record, record_rx) = mpsc::channel(QUEUE);
        let (apply, apply_rx) = mpsc::channel(QUEUE);
        Pipeline {
            record,
            apply,
            receivers: std::sync::Mutex::new(Some((record_rx, apply_rx))),
            running: AtomicBool::new(false),
            gate: Mutex::new(()),
        }
    }
}

impl Pipeline {
    /// Starts the stages' tasks (once; the server does this). Until then, and in the commands,
    /// every event is recorded and applied on its own.
    pub fn spawn(state: &Billing) {
        let taken = state
            .pipeline
            .receivers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some((record_rx, apply_rx)) = taken else {
            return;
        };
        let (recorders, appliers) = if state.db.single_writer() {
            (1, 1)
        } else {
            (2, 4)
        };
        let record_rx = Arc::new(Mutex::new(record_rx));
        let apply_rx = Arc::new(Mutex::new(apply_rx));
        for _ in 0..recorders {
            let (state, rx) = (state.clone(), record_rx.clone());
            let tasks = state.tasks.clone();
            tasks.spawn("webhook-recorder", move || {
                recorder(state.clone(), rx.clone())
            });
        }
        for _ in 0..appliers {
            let (state, rx) = (state.clone(), apply_rx.clone());
            let tasks = state.tasks.clone();
            tasks.spawn("webhook-applier", move || {
                applier(state.clone(), rx.clone())
            });
        }
        state.pipeline.running.store(true, Ordering::Release);
    }

    async fn gate(&self, state: &Billing) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if state.db.single_writer() {
            Some(self.gate.lock().await)
        } else {
            None
        }
    }
}

/// Records a verified delivery durably; returns it and whether it was new (not a duplicate).
/// Through the pipeline, a new pending event is recorded leased to the apply stage, in the same
/// commit (the lease costs no second one), and the recorder hands it to that stage itself, so it
/// is applied even if the caller stops waiting now. Should this instance stop before applying it,
/// the worker takes it up when the lease runs out.
pub async fn record(state: &Billing, prepared: Prepared) -> Recorded {
    if !state.pipeline.running.load(Ordering::Acquire) {
        return record_alone(state, prepared).await;
    }
    let (done, answer) = oneshot::channel();
    if let Err(refused) = state
        .pipeline
        .record
        .send(RecordJob { prepared, done })
        .await
    {
        return record_alone(state, refused.0.prepared).await;
    }
    answer
        .await
        .unwrap_or_else(|_| Err(AppError::Internal("the event recorder stopped".into())))
}

async fn record_alone(state: &Billing, prepared: Prepared) -> Recorded {
    let new = db::events::record(&state.db.pool, &prepared.row(), Utc::now()).await?;
    ingest::count(state, new);
    Ok(Delivery {
        prepared,
        new,
        applying: None,
    })
}

/// Applies a recorded delivery's event (if it waits and nobody else holds it, or it was recorded
/// leased to us): its outcome, or `None`. The work goes on if the caller stops waiting.
pub async fn apply(state: &Billing, delivery: Delivery) -> Applied {
    if let Some(applying) = delivery.applying {
        return outcome(applying).await;
    }
    let prepared = delivery.prepared;
    let (job, answer) = ApplyJob::new(prepared.id, prepared.event, false);
    if !state.pipeline.running.load(Ordering::Acquire) {
        return apply::process(state, &job.id, false).await;
    }
    if let Err(refused) = state.pipeline.apply.send(job).await {
        return apply::process(state, &refused.0.id, false).await;
    }
    outcome(answer).await
}

async fn outcome(answer: oneshot::Receiver<Applied>) -> Applied {
    answer
        .await
        .unwrap_or_else(|_| Err(AppError::Internal("the event applier stopped".into())))
}

impl ApplyJob {
    fn new(
        id: String,
        event: Option<EventEnvelope>,
        leased: bool,
    ) -> (ApplyJob, oneshot::Receiver<Applied>) {
        let (done, answer) = oneshot::channel();
        let job = ApplyJob {
            id,
            event,
            leased,
            done,
        };
        (job, answer)
    }
}

/// Hands an event recorded leased to us to the apply stage (or, with the stage gone, applies it
/// here); its outcome goes to the returned receiver.
async fn hand_over(state: &Billing, prepared: &mut Prepared) -> oneshot::Receiver<Applied> {
    let (job, answer) = ApplyJob::new(prepared.id.clone(), prepared.event.take(), true);
    if let Err(refused) = state.pipeline.apply.send(job).await {
        let ApplyJob { id, done, .. } = refused.0;
        let state = state.clone();
        tokio::spawn(async move {
            let _ = done.send(apply::process_claimed(&state, &id).await);
        });
    }
    answer
}

/// Waits for one job, then takes every other one already waiting (up to [`MAX_BATCH`]).
async fn next_batch<T>(rx: &Mutex<mpsc::Receiver<T>>) -> Option<Vec<T>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = Vec::with_capacity(16);
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn recorder(state: Billing, rx: Arc<Mutex<mpsc::Receiver<RecordJob>>>) {
    while let Some(batch) = next_batch(&rx).await {
        let rows: Vec<_> = batch.iter().map(|job| job.prepared.row()).collect();
        let result = {
            let _gate = state.pipeline.gate(&state).await;
            let _timing = Timing("record", batch.len(), std::time::Instant::now());
            let now = Utc::now();
            db::events::record_many(
                &state.db.pool,
                state.db.backend,
                &rows,
                now,
                Some(now + LEASE),
            )
            .await
        };
        drop(rows);
        match result {
            Ok(new_ids) => {
                let mut new_ids: HashSet<String> = new_ids.into_iter().collect();
                for job in batch {
                    // The first delivery of an id in the batch is its new one.
                    let new = new_ids.remove(&job.prepared.id);
                    ingest::count(&state, new);
                    let mut prepared = job.prepared;
                    let applying = if new && prepared.state == EventState::Pending {
                        Some(hand_over(&state, &mut prepared).await)
                    } else {
                        None
                    };
                    let _ = job.done.send(Ok(Delivery {
                        prepared,
                        new,
                        applying,
                    }));
                }
            }
            Err(e) => {
                // The database, or one odd row: each delivery on its own gets its own answer.
                tracing::warn!(error = %e, deliveries = batch.len(), "recording a batch failed; recording one by one");
                for job in batch {
                    let _gate = state.pipeline.gate(&state).await;
                    let _ = job.done.send(record_alone(&state, job.prepared).await);
                }
            }
        }
    }
}

async fn applier(state: Billing, rx: Arc<Mutex<mpsc::Receiver<ApplyJob>>>) {
    while let Some(batch) = next_batch(&rx).await {
        // Events recorded leased to us are held already; only redeliveries of waiting ones are
        // claimed (one statement, no statement at all for a burst of new events).
        let mut ids: Vec<&str> = batch
            .iter()
            .filter(|job| !job.leased)
            .map(|job| job.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let claimed = if ids.is_empty() {
            Ok(Vec::new())
        } else {
            let _gate = state.pipeline.gate(&state).await;
            db::events::claim_many(&state.db.pool, state.db.backend, &ids, Utc::now(), LEASE).await
        };
        let (mut claimed, batch): (HashSet<String>, Vec<ApplyJob>) = match claimed {
            Ok(claimed) => (claimed.into_iter().collect(), batch),
            Err(e) => {
                // Recorded, so not lost: the worker applies them once the database answers.
                tracing::warn!(error = %e, events = batch.len(), "claiming a batch failed; the worker will apply it");
                let (leased, refused): (Vec<_>, Vec<_>) =
                    batch.into_iter().partition(|job| job.leased);
                for job in refused {
                    let _ = job
                        .done
                        .send(Err(AppError::Internal(format!("claiming failed: {e}"))));
                }
                (HashSet::new(), leased)
            }
        };
        claimed.extend(
            batch
                .iter()
                .filter(|job| job.leased)
                .map(|job| job.id.clone()),
        );
        let mut fast = Vec::new();
        for job in batch {
            // Held already by someone else, applied, or a second delivery in this batch.
            if !claimed.remove(&job.id) {
                let _ = job.done.send(Ok(None));
                continue;
            }
            match job.event.map(BatchItem::of) {
                Some(Ok(item)) => fast.push((item, job.done)),
                _ => alone(&state, job.id, job.done),
            }
        }
        if fast.is_empty() {
            continue;
        }
        // One lock order for every batch; a subscription's events oldest first.
        fast.sort_by(|(a, _), (b, _)| {
            (a.snapshot.id.as_str(), a.event.created)
                .cmp(&(b.snapshot.id.as_str(), b.event.created))
        });
        let (items, waiting): (Vec<_>, Vec<_>) = fast.into_iter().unzip();
        let result = {
            let _gate = state.pipeline.gate(&state).await;
            let _timing = Timing("apply", items.len(), std::time::Instant::now());
            apply::apply_batch(&state, &items).await
        };
        match result {
            Ok(outcomes) => {
                for ((item, done), outcome) in items.into_iter().zip(waiting).zip(outcomes) {
                    match outcome {
                        Some(outcome) => {
                            let _ = done.send(Ok(Some(outcome)));
                        }
                        None => alone(&state, item.event.id, done),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, events = items.len(), "applying a batch failed; applying one by one");
                for (item, done) in items.into_iter().zip(waiting) {
                    alone(&state, item.event.id, done);
                }
            }
        }
    }
}

/// Logs (at debug level) how long a stage's batch held the database, when dropped.
struct Timing(&'static str, usize, std::time::Instant);

impl Drop for Timing {
    fn drop(&mut self) {
        tracing::debug!(
            stage = self.0,
            events = self.1,
            micros = self.2.elapsed().as_micros() as u64,
            "webhook batch"
        );
    }
}

/// The single-event way, for an event this instance has claimed.
fn alone(state: &Billing, id: String, done: oneshot::Sender<Applied>) {
    let state = state.clone();
    tokio::spawn(async move {
        let _ = done.send(apply::process_claimed(&state, &id).await);
    });
}
