//! Re-fetching a subscription from Stripe, coalesced: at most one fetch in flight per subscription;
//! a caller that arrived while a fetch was already under way waits and then makes its own (that
//! fetch may predate the change the caller was told about), while callers that arrived before a fetch
//! started share its answer. The gate stays held while the caller writes, so this process writes one
//! subscription's fetched states in the order they were fetched.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::stripe::{StripeApi, StripeCallError};
use crate::telemetry::Counters;

#[derive(Debug, Default)]
struct Slot {
    started: AtomicU64,
    last: Arc<Mutex<Option<(u64, Value)>>>,
}

/// The coalescing map.
#[derive(Debug, Default)]
pub struct Refetcher {
    slots: std::sync::Mutex<HashMap<String, Arc<Slot>>>,
}

/// A fetched subscription and the gate held until the caller has written it.
pub struct Fetched {
    /// The subscription as Stripe has it.
    pub value: Value,
    _gate: OwnedMutexGuard<Option<(u64, Value)>>,
}

impl Refetcher {
    fn slot(&self, id: &str) -> Arc<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget slots nobody uses so the map does not grow with every subscription ever seen.
        if slots.len() > 10_000 {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(id.to_owned()).or_default().clone()
    }

    /// The subscription as Stripe has it now (or as a fetch that started after this call did).
    pub async fn fetch(
        &self,
        api: &StripeApi,
        counters: &Counters,
        id: &str,
    ) -> Result<Fetched, StripeCallError> {
        let slot = self.slot(id);
        let arrival = slot.started.load(Ordering::SeqCst);
        let mut gate = slot.last.clone().lock_owned().await;
        if let Some((seq, value)) = gate.as_ref()
            && *seq > arrival
        {
            let value = value.clone();
            return Ok(Fetched { value, _gate: gate });
        }
        let seq = slot.started.fetch_add(1, Ordering::SeqCst) + 1;
        Counters::bump(&counters.refetches);
        let value = api.retrieve_subscription(id).await?;
        *gate = Some((seq, value.clone()));
        Ok(Fetched { value, _gate: gate })
    }
}
