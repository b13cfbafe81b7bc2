//! Test clocks (`/v1/test_helpers/test_clocks`): customers created with `test_clock`
//! live on its frozen time; advancing it runs everything due for them, in time order,
//! while the simulator's own clock and other clocks stay where they are.

use super::subscriptions::add_interval;
use super::{State, new_id};
use crate::error::StripeError;

/// A test clock (`/v1/test_helpers/test_clocks`): a frozen time its customers live on.
#[derive(Debug, Clone)]
pub struct TestClock {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) name: Option<String>,
    pub(crate) frozen_time: i64,
    pub(crate) status: String,
    /// While advancing: the target (`status_details.advancing.target_frozen_time`).
    pub(crate) target: Option<i64>,
}

/// Stripe deletes test clocks 30 days after creation.
const CLOCK_LIFETIME: i64 = 30 * 86_400;

impl State {
    /// `POST /v1/test_helpers/test_clocks`; emits `test_helpers.test_clock.created`.
    pub fn create_test_clock(&mut self, frozen_time: i64, name: Option<String>) -> String {
        let id = new_id("clock_");
        let seq = self.next_seq();
        let created = self.now();
        self.test_clocks.insert(
            id.clone(),
            TestClock {
                id: id.clone(),
                seq,
                created,
                name,
                frozen_time,
                status: "ready".into(),
                target: None,
            },
        );
        let obj = self.render_test_clock(&id);
        self.emit("test_helpers.test_clock.created", frozen_time, obj, None);
        id
    }

    /// The furthest a clock may jump: two periods of the shortest subscription on it
    /// (Stripe's rule), or unbounded without subscriptions.
    pub(crate) fn advance_limit(&self, clock: &str, from: i64) -> Option<i64> {
        self.subscriptions
            .values()
            .filter(|s| !s.is_ended())
            .filter(|s| self.clock_of_customer(&s.customer).as_deref() == Some(clock))
            .flat_map(|s| s.items.iter())
            .filter_map(|i| self.prices.get(&i.price))
            .map(|p| {
                let once = add_interval(from, &p.interval, p.interval_count);
                add_interval(once, &p.interval, p.interval_count)
            })
            .min()
    }

    /// `POST /v1/test_helpers/test_clocks/{id}/advance`: emits
    /// `test_helpers.test_clock.advancing`, runs every due moment of the clock's objects
    /// up to `target` with the clock standing at each, then `…ready`. Returns the clock as
    /// Stripe answers the request (status `advancing`).
    pub fn advance_test_clock(
        &mut self,
        id: &str,
        target: i64,
    ) -> Result<serde_json::Value, StripeError> {
        let Some(clock) = self.test_clocks.get(id).cloned() else {
            return Err(StripeError::missing("test_clock", id, "id"));
        };
        if clock.status != "ready" {
            return Err(StripeError::invalid_state(format!(
                "The test clock {id} is {}; wait until it is ready.",
                clock.status
            )));
        }
        if target <= clock.frozen_time {
            return Err(StripeError::invalid_param(
                "frozen_time",
                "The test clock's frozen_time can only be advanced to a time after its current frozen_time.",
            ));
        }
        if let Some(limit) = self.advance_limit(id, clock.frozen_time)
            && target > limit
        {
            return Err(StripeError::invalid_param(
                "frozen_time",
                &format!(
                    "Cannot advance the test clock more than two intervals of the shortest \
                     subscription on it (at most to {limit})."
                ),
            ));
        }
        if let Some(c) = self.test_clocks.get_mut(id) {
            c.status = "advancing".into();
            c.target = Some(target);
        }
        let answer = self.render_test_clock(id);
        self.emit(
            "test_helpers.test_clock.advancing",
            clock.frozen_time,
            answer.clone(),
            None,
        );
        // Each transition moves its own due moment later or removes it; the cap only
        // guards against a bug turning into a hung request.
        for _ in 0..100_000 {
            let Some((at, due)) = self.next_due_on(id) else {
                break;
            };
            if at > target {
                break;
            }
            if let Some(c) = self.test_clocks.get_mut(id) {
                c.frozen_time = c.frozen_time.max(at);
            }
            self.run_due(due);
        }
        if let Some(c) = self.test_clocks.get_mut(id) {
            c.frozen_time = target;
            c.status = "ready".into();
            c.target = None;
        }
        let obj = self.render_test_clock(id);
        self.emit("test_helpers.test_clock.ready", target, obj, None);
        Ok(answer)
    }

    /// `DELETE /v1/test_helpers/test_clocks/{id}`: deletes the clock and its customers
    /// (their subscriptions are canceled first); emits `test_helpers.test_clock.deleted`.
    pub fn delete_test_clock(&mut self, id: &str) -> Result<(), StripeError> {
        let Some(clock) = self.test_clocks.get(id).cloned() else {
            return Err(StripeError::missing("test_clock", id, "id"));
        };
        let customers: Vec<String> = self
            .customers
            .values()
            .filter(|c| c.test_clock.as_deref() == Some(id))
            .map(|c| c.id.clone())
            .collect();
        for c in customers {
            self.delete_customer_inner(&c);
        }
        let obj = self.render_test_clock(id);
        self.test_clocks.remove(id);
        self.emit(
            "test_helpers.test_clock.deleted",
            clock.frozen_time,
            obj,
            None,
        );
        Ok(())
    }

    /// A test clock as Stripe renders it.
    pub fn render_test_clock(&self, id: &str) -> serde_json::Value {
        let Some(c) = self.test_clocks.get(id) else {
            return serde_json::Value::Null;
        };
        serde_json::json!({
            "id": c.id,
            "object": "test_helpers.test_clock",
            "created": c.created,
            "deletes_after": c.created + CLOCK_LIFETIME,
            "frozen_time": c.frozen_time,
            "livemode": false,
            "name": c.name,
            "status": c.status,
            "status_details": match c.target {
                Some(t) => serde_json::json!({"advancing": {"target_frozen_time": t}}),
                None => serde_json::json!({}),
            },
        })
    }
}
