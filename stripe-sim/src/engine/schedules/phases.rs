//! What a schedule does over time and on request: it starts (creating its subscription),
//! moves from phase to phase (changing the subscription's prices), ends (release, or cancel
//! the subscription with `end_behavior=cancel`), is canceled or released through the API,
//! and is aborted when its subscription is canceled outside the schedule.

use crate::engine::render::diff;
use crate::engine::{NewSubscription, State, SubscriptionUpdate};
use crate::error::StripeError;

impl State {
    /// A `not_started` schedule reaches its start: the subscription of the first phase is
    /// created (and charged) as `POST /v1/subscriptions` would.
    pub(crate) fn start_schedule(&mut self, id: &str) -> Result<(), StripeError> {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return Err(StripeError::missing("subscription_schedule", id, "id"));
        };
        let Some(phase) = sched.phases.first() else {
            return Err(StripeError::missing_param("phases"));
        };
        let sub = self.create_subscription(NewSubscription {
            customer: sched.customer.clone(),
            items: phase.items.clone(),
            schedule: Some(id.to_string()),
            ..NewSubscription::default()
        })?;
        if let Some(s) = self.subscription_schedules.get_mut(id) {
            s.status = "active".into();
            s.current = 0;
            s.subscription = Some(sub);
        }
        Ok(())
    }

    /// The due moment of a schedule: the start of a `not_started` one, or the end of the
    /// current phase of an `active` one.
    pub(crate) fn schedule_due(&mut self, id: &str) {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return;
        };
        let now = self.time_for_customer(&sched.customer);
        match sched.status.as_str() {
            "not_started" => {
                let before = self.render_schedule(id);
                if self.start_schedule(id).is_err() {
                    // No subscription could be created (say, the customer has no card).
                    if let Some(s) = self.subscription_schedules.get_mut(id) {
                        s.status = "canceled".into();
                        s.canceled_at = Some(now);
                    }
                    let obj = self.render_schedule(id);
                    self.emit("subscription_schedule.aborted", now, obj, None);
                    return;
                }
                let after = self.render_schedule(id);
                let prev = diff(&before, &after);
                self.emit("subscription_schedule.updated", now, after, prev);
            }
            "active" if sched.current + 1 < sched.phases.len() => {
                let before = self.render_schedule(id);
                if let Some(s) = self.subscription_schedules.get_mut(id) {
                    s.current += 1;
                }
                self.apply_phase(id);
                let after = self.render_schedule(id);
                let prev = diff(&before, &after);
                self.emit("subscription_schedule.updated", now, after, prev);
            }
            "active" => self.end_schedule(id),
            _ => {}
        }
    }

    /// The last phase is over: `release` leaves the subscription running on its own,
    /// `cancel` cancels it (no renewal) and the schedule is `completed`.
    fn end_schedule(&mut self, id: &str) {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return;
        };
        if sched.end_behavior != "cancel" {
            self.release_now(id);
            return;
        }
        let now = self.time_for_customer(&sched.customer);
        if let Some(s) = self.subscription_schedules.get_mut(id) {
            s.status = "completed".into();
            s.completed_at = Some(now);
        }
        if let Some(sub) = &sched.subscription {
            self.end_subscription(sub, "cancellation_requested");
        }
        let obj = self.render_schedule(id);
        self.emit("subscription_schedule.completed", now, obj, None);
    }

    /// Puts the current phase's prices on the subscription. At the subscription's period
    /// end the items simply change (the renewal due at the same moment then bills the new
    /// prices); in the middle of a period it is a price change with the phase's
    /// `proration_behavior`, as `POST /v1/subscriptions/{id}` makes it.
    fn apply_phase(&mut self, id: &str) {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return;
        };
        let (Some(sub_id), Some(phase)) = (&sched.subscription, sched.phases.get(sched.current))
        else {
            return;
        };
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return;
        };
        if sub.is_ended() {
            return;
        }
        let now = self.time_for_customer(&sub.customer);
        if now >= sub.period_end() {
            let before = self.render_subscription(sub_id);
            if let Some(s) = self.subscriptions.get_mut(sub_id) {
                for (item, (price, quantity)) in s.items.iter_mut().zip(&phase.items) {
                    item.price = price.clone();
                    item.quantity = *quantity;
                }
            }
            let after = self.render_subscription(sub_id);
            if let Some(prev) = diff(&before, &after) {
                self.emit("customer.subscription.updated", now, after, Some(prev));
            }
            return;
        }
        let items = sub
            .items
            .iter()
            .zip(&phase.items)
            .map(|(item, (price, quantity))| {
                (Some(item.id.clone()), Some(price.clone()), Some(*quantity))
            })
            .collect();
        let _ = self.update_subscription(
            sub_id,
            SubscriptionUpdate {
                items,
                proration_behavior: Some(phase.proration_behavior.clone()),
                ..SubscriptionUpdate::default()
            },
        );
    }

    /// After an update of an active schedule: if the current phase now has other prices
    /// than the subscription, they apply at once.
    pub(super) fn apply_phase_if_changed(&mut self, id: &str) {
        let Some(sched) = self.subscription_schedules.get(id) else {
            return;
        };
        let (Some(sub_id), Some(phase)) = (&sched.subscription, sched.phases.get(sched.current))
        else {
            return;
        };
        let differs = self.subscriptions.get(sub_id).is_some_and(|s| {
            s.items
                .iter()
                .map(|i| (i.price.clone(), i.quantity))
                .ne(phase.items.iter().cloned())
        });
        if differs {
            self.apply_phase(id);
        }
    }

    /// `POST /v1/subscription_schedules/{id}/release`: the schedule stops, the subscription
    /// stays as it is; emits `subscription_schedule.released`.
    pub fn release_schedule(&mut self, id: &str) -> Result<(), StripeError> {
        self.live_schedule(id)?;
        self.release_now(id);
        Ok(())
    }

    fn release_now(&mut self, id: &str) {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return;
        };
        let now = self.time_for_customer(&sched.customer);
        if let Some(s) = self.subscription_schedules.get_mut(id) {
            s.status = "released".into();
            s.released_at = Some(now);
            s.released_subscription = sched.subscription.clone();
            s.subscription = None;
        }
        if let Some(sub) = &sched.subscription {
            self.set_subscription_schedule(sub, None);
        }
        let obj = self.render_schedule(id);
        self.emit("subscription_schedule.released", now, obj, None);
    }

    /// `POST /v1/subscription_schedules/{id}/cancel`: the schedule and its subscription end
    /// now (`customer.subscription.deleted`, `subscription_schedule.canceled`).
    pub fn cancel_schedule(&mut self, id: &str) -> Result<(), StripeError> {
        let sched = self.live_schedule(id)?;
        let now = self.time_for_customer(&sched.customer);
        // Marked first, so the subscription's end does not count as an abort.
        if let Some(s) = self.subscription_schedules.get_mut(id) {
            s.status = "canceled".into();
            s.canceled_at = Some(now);
        }
        if let Some(sub) = &sched.subscription {
            self.end_subscription(sub, "cancellation_requested");
        }
        let obj = self.render_schedule(id);
        self.emit("subscription_schedule.canceled", now, obj, None);
        Ok(())
    }

    fn live_schedule(&self, id: &str) -> Result<crate::engine::SubscriptionSchedule, StripeError> {
        let Some(sched) = self.subscription_schedules.get(id) else {
            return Err(StripeError::missing("subscription_schedule", id, "id"));
        };
        if !sched.is_live() {
            return Err(StripeError::invalid_state(format!(
                "You can only release or cancel a schedule that is `not_started` or `active` \
                 ({id} is `{}`).",
                sched.status
            )));
        }
        Ok(sched.clone())
    }

    /// A subscription ended outside its schedule (canceled through the API or the portal,
    /// or retries ran out): the schedule is canceled too (`subscription_schedule.aborted`).
    pub(crate) fn abort_schedule_of(&mut self, sub_id: &str) {
        let Some((id, customer)) = self
            .subscription_schedules
            .values()
            .find(|s| s.status == "active" && s.subscription.as_deref() == Some(sub_id))
            .map(|s| (s.id.clone(), s.customer.clone()))
        else {
            return;
        };
        let now = self.time_for_customer(&customer);
        if let Some(s) = self.subscription_schedules.get_mut(&id) {
            s.status = "canceled".into();
            s.canceled_at = Some(now);
        }
        let obj = self.render_schedule(&id);
        self.emit("subscription_schedule.aborted", now, obj, None);
    }

    /// Seven days before the last phase of a releasing schedule ends.
    pub(crate) fn schedule_expiring(&mut self, id: &str) {
        let Some(s) = self.subscription_schedules.get_mut(id) else {
            return;
        };
        s.expiring_sent = true;
        let customer = s.customer.clone();
        let now = self.time_for_customer(&customer);
        let obj = self.render_schedule(id);
        self.emit("subscription_schedule.expiring", now, obj, None);
    }
}
