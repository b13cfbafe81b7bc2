//! Subscription schedules (`/v1/subscription_schedules`): the object, creation (from an
//! existing subscription, or for a customer with phases), phase updates and the object as
//! Stripe renders it. What the clock does at phase boundaries, and cancel / release, are in
//! `phases.rs`; the due moments themselves are listed in `engine/schedule.rs`.

mod phases;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::render::{diff, metadata};
use super::subscriptions::add_interval;
use super::{State, new_id};
use crate::error::StripeError;
use crate::form::MetadataUpdate;

/// One phase of a schedule: its prices from `start_date` to `end_date`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulePhase {
    pub(crate) start_date: i64,
    pub(crate) end_date: i64,
    /// (price, quantity).
    pub(crate) items: Vec<(String, i64)>,
    pub(crate) proration_behavior: String,
}

/// A subscription schedule.
#[derive(Debug, Clone)]
pub struct SubscriptionSchedule {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) created: i64,
    pub(crate) customer: String,
    pub(crate) subscription: Option<String>,
    /// `not_started`, `active`, `completed`, `released` or `canceled`.
    pub(crate) status: String,
    pub(crate) phases: Vec<SchedulePhase>,
    /// Index of the current phase while `active`.
    pub(crate) current: usize,
    /// `release` (default) or `cancel`.
    pub(crate) end_behavior: String,
    pub(crate) released_subscription: Option<String>,
    pub(crate) released_at: Option<i64>,
    pub(crate) canceled_at: Option<i64>,
    pub(crate) completed_at: Option<i64>,
    pub(crate) metadata: BTreeMap<String, String>,
    /// `subscription_schedule.expiring` was sent for the current last phase.
    pub(crate) expiring_sent: bool,
}

impl SubscriptionSchedule {
    /// `not_started` or `active`: the schedule still manages (or will create) a subscription.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "not_started" | "active")
    }
}

/// When a schedule (or an updated first phase) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDate {
    /// `now`.
    Now,
    /// A unix timestamp.
    At(i64),
}

/// `phases[n]` of a create or update request.
#[derive(Debug, Clone, Default)]
pub struct NewPhase {
    /// `phases[n][items][m][price]`, `[quantity]` (default 1).
    pub items: Vec<(String, i64)>,
    /// `phases[0][start_date]` (update only; must match the current phase of an active schedule).
    pub start_date: Option<StartDate>,
    /// `phases[n][end_date]`.
    pub end_date: Option<i64>,
    /// `phases[n][iterations]`: the phase lasts this many intervals of its first price.
    pub iterations: Option<i64>,
    /// `phases[n][proration_behavior]` (`create_prorations` default, `none`, `always_invoice`).
    pub proration_behavior: Option<String>,
}

/// Parameters of `POST /v1/subscription_schedules`.
#[derive(Debug, Clone, Default)]
pub struct NewSchedule {
    /// `from_subscription`: one phase copied from the subscription's current period.
    pub from_subscription: Option<String>,
    /// `customer` (without `from_subscription`).
    pub customer: Option<String>,
    /// `start_date` (`now` default, or a future timestamp).
    pub start_date: Option<StartDate>,
    /// `phases`.
    pub phases: Vec<NewPhase>,
    /// `end_behavior`.
    pub end_behavior: Option<String>,
    /// `metadata`.
    pub metadata: BTreeMap<String, String>,
}

/// Parameters of `POST /v1/subscription_schedules/{id}`.
#[derive(Debug, Clone, Default)]
pub struct ScheduleUpdate {
    /// `phases`: the current phase and those after it (past phases stay as they were).
    pub phases: Option<Vec<NewPhase>>,
    /// `end_behavior`.
    pub end_behavior: Option<String>,
    /// `metadata`.
    pub metadata: Option<MetadataUpdate>,
}

fn check_end_behavior(e: &Option<String>) -> Result<(), StripeError> {
    match e.as_deref() {
        None | Some("release" | "cancel") => Ok(()),
        Some(_) => Err(StripeError::invalid_param(
            "end_behavior",
            "Invalid end_behavior: must be one of release or cancel.",
        )),
    }
}

impl State {
    /// `POST /v1/subscription_schedules`; emits `subscription_schedule.created` (and, from a
    /// subscription, `customer.subscription.updated` for its new `schedule`). A schedule
    /// starting now creates its subscription in the same request.
    pub fn create_schedule(&mut self, p: NewSchedule) -> Result<String, StripeError> {
        check_end_behavior(&p.end_behavior)?;
        let end_behavior = p.end_behavior.clone().unwrap_or_else(|| "release".into());
        if let Some(sub_id) = &p.from_subscription {
            if !p.phases.is_empty() {
                return Err(StripeError::invalid_param(
                    "phases",
                    "You cannot set `phases` if `from_subscription` is set.",
                ));
            }
            if p.customer.is_some() || p.start_date.is_some() {
                return Err(StripeError::invalid_param(
                    "from_subscription",
                    "You cannot set `customer` or `start_date` if `from_subscription` is set.",
                ));
            }
            return self.schedule_from_subscription(sub_id, end_behavior, p.metadata);
        }
        let Some(customer) = p.customer.clone() else {
            return Err(StripeError::missing_param("customer"));
        };
        if !self.customers.contains_key(&customer) {
            return Err(StripeError::missing("customer", &customer, "customer"));
        }
        if p.phases.is_empty() {
            return Err(StripeError::missing_param("phases"));
        }
        let now = self.time_for_customer(&customer);
        let start = match p.start_date.unwrap_or(StartDate::Now) {
            StartDate::Now => now,
            StartDate::At(t) if t < now => {
                return Err(StripeError::invalid_param(
                    "start_date",
                    "The simulator cannot backdate a schedule: use `now` or a future timestamp.",
                ));
            }
            StartDate::At(t) => t,
        };
        let phases = self.resolve_phases(start, &p.phases, None)?;
        let id = new_id("sub_sched_");
        let seq = self.next_seq();
        self.subscription_schedules.insert(
            id.clone(),
            SubscriptionSchedule {
                id: id.clone(),
                seq,
                created: now,
                customer,
                subscription: None,
                status: "not_started".into(),
                phases,
                current: 0,
                end_behavior,
                released_subscription: None,
                released_at: None,
                canceled_at: None,
                completed_at: None,
                metadata: p.metadata,
                expiring_sent: false,
            },
        );
        if start <= now
            && let Err(e) = self.start_schedule(&id)
        {
            self.subscription_schedules.remove(&id);
            return Err(e);
        }
        let obj = self.render_schedule(&id);
        self.emit("subscription_schedule.created", now, obj, None);
        Ok(id)
    }

    fn schedule_from_subscription(
        &mut self,
        sub_id: &str,
        end_behavior: String,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, StripeError> {
        let Some(sub) = self.subscriptions.get(sub_id).cloned() else {
            return Err(StripeError::missing(
                "subscription",
                sub_id,
                "from_subscription",
            ));
        };
        if sub.is_ended() {
            return Err(StripeError::invalid_param(
                "from_subscription",
                &format!(
                    "The subscription {sub_id} is {} and cannot get a schedule.",
                    sub.status
                ),
            ));
        }
        if sub.schedule.is_some() {
            return Err(StripeError::invalid_param(
                "from_subscription",
                "You cannot migrate a subscription that is already attached to a schedule.",
            ));
        }
        let now = self.time_for_customer(&sub.customer);
        let id = new_id("sub_sched_");
        let seq = self.next_seq();
        let phase = SchedulePhase {
            start_date: sub.period_start(),
            end_date: sub.period_end(),
            items: sub
                .items
                .iter()
                .map(|i| (i.price.clone(), i.quantity))
                .collect(),
            proration_behavior: "create_prorations".into(),
        };
        self.subscription_schedules.insert(
            id.clone(),
            SubscriptionSchedule {
                id: id.clone(),
                seq,
                created: now,
                customer: sub.customer.clone(),
                subscription: Some(sub_id.to_string()),
                status: "active".into(),
                phases: vec![phase],
                current: 0,
                end_behavior,
                released_subscription: None,
                released_at: None,
                canceled_at: None,
                completed_at: None,
                metadata,
                expiring_sent: false,
            },
        );
        let obj = self.render_schedule(&id);
        self.emit("subscription_schedule.created", now, obj, None);
        self.set_subscription_schedule(sub_id, Some(id.clone()));
        Ok(id)
    }

    /// Phases with their dates: each starts where the previous one ends; a phase ends at
    /// `end_date`, or after `iterations` intervals of its first price (the last phase
    /// defaults to one). All phases have as many items as the first (`keep` = the item
    /// count of the subscription an active schedule manages).
    pub(crate) fn resolve_phases(
        &self,
        start: i64,
        phases: &[NewPhase],
        keep: Option<usize>,
    ) -> Result<Vec<SchedulePhase>, StripeError> {
        let mut out = Vec::new();
        let mut at = start;
        let count = keep.unwrap_or_else(|| phases.first().map_or(0, |p| p.items.len()));
        for (n, ph) in phases.iter().enumerate() {
            if ph.items.is_empty() {
                return Err(StripeError::missing_param(&format!("phases[{n}][items]")));
            }
            if ph.items.len() != count {
                return Err(StripeError::invalid_param(
                    &format!("phases[{n}][items]"),
                    &format!(
                        "The simulator needs the same number of items ({count}) in every phase."
                    ),
                ));
            }
            let mut first = None;
            for (m, (price, quantity)) in ph.items.iter().enumerate() {
                let param = format!("phases[{n}][items][{m}][price]");
                let Some(pr) = self.prices.get(price) else {
                    return Err(StripeError::missing("price", price, &param));
                };
                if pr.interval.is_empty() {
                    return Err(StripeError::invalid_param(
                        &param,
                        "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                    ));
                }
                if *quantity < 1 {
                    return Err(StripeError::invalid_param(
                        &format!("phases[{n}][items][{m}][quantity]"),
                        "Quantity must be at least 1.",
                    ));
                }
                first.get_or_insert((pr.interval.clone(), pr.interval_count));
            }
            let (interval, interval_count) = first.unwrap_or(("month".into(), 1));
            let last = n + 1 == phases.len();
            let end = match (ph.end_date, ph.iterations) {
                (Some(_), Some(_)) => {
                    return Err(StripeError::invalid_param(
                        &format!("phases[{n}][iterations]"),
                        "You may only specify one of these parameters: end_date, iterations.",
                    ));
                }
                (Some(e), None) => e,
                (None, Some(i)) if i < 1 => {
                    return Err(StripeError::invalid_param(
                        &format!("phases[{n}][iterations]"),
                        "iterations must be at least 1.",
                    ));
                }
                (None, Some(i)) => add_interval(at, &interval, interval_count * i),
                (None, None) if last => add_interval(at, &interval, interval_count),
                (None, None) => {
                    return Err(StripeError::missing_param(&format!(
                        "phases[{n}][end_date]"
                    )));
                }
            };
            if end <= at {
                return Err(StripeError::invalid_param(
                    &format!("phases[{n}][end_date]"),
                    "The end date of a phase must be after its start date.",
                ));
            }
            let proration = ph
                .proration_behavior
                .clone()
                .unwrap_or_else(|| "create_prorations".into());
            if !matches!(
                proration.as_str(),
                "create_prorations" | "none" | "always_invoice"
            ) {
                return Err(StripeError::invalid_param(
                    &format!("phases[{n}][proration_behavior]"),
                    "Invalid proration_behavior: must be one of always_invoice, create_prorations, or none.",
                ));
            }
            out.push(SchedulePhase {
                start_date: at,
                end_date: end,
                items: ph.items.clone(),
                proration_behavior: proration,
            });
            at = end;
        }
        Ok(out)
    }

    /// `POST /v1/subscription_schedules/{id}`: new phases from the current one on,
    /// `end_behavior`, `metadata`; emits `subscription_schedule.updated` when something
    /// changed. New prices for the current phase apply to the subscription at once.
    pub fn update_schedule(&mut self, id: &str, u: ScheduleUpdate) -> Result<(), StripeError> {
        let Some(sched) = self.subscription_schedules.get(id).cloned() else {
            return Err(StripeError::missing("subscription_schedule", id, "id"));
        };
        if !sched.is_live() {
            return Err(StripeError::invalid_state(format!(
                "You cannot update a subscription schedule that is currently in the `{}` status.",
                sched.status
            )));
        }
        check_end_behavior(&u.end_behavior)?;
        let now = self.time_for_customer(&sched.customer);
        let mut phases = sched.phases.clone();
        if let Some(new) = &u.phases {
            if new.is_empty() {
                return Err(StripeError::missing_param("phases"));
            }
            let active = sched.status == "active";
            let kept = if active { sched.current } else { 0 };
            let current_start = phases.get(kept).map_or(now, |p| p.start_date);
            let start = match new.first().and_then(|p| p.start_date) {
                None => current_start,
                Some(given) => {
                    let t = match given {
                        StartDate::Now => now,
                        StartDate::At(t) => t,
                    };
                    if active && t != current_start {
                        return Err(StripeError::invalid_param(
                            "phases[0][start_date]",
                            "You can not modify the start date of the current phase.",
                        ));
                    }
                    if !active && t < now {
                        return Err(StripeError::invalid_param(
                            "phases[0][start_date]",
                            "The simulator cannot backdate a schedule: use `now` or a future timestamp.",
                        ));
                    }
                    t
                }
            };
            let items = active
                .then_some(sched.subscription.as_ref())
                .flatten()
                .and_then(|s| self.subscriptions.get(s))
                .map(|s| s.items.len());
            let resolved = self.resolve_phases(start, new, items)?;
            phases.truncate(kept);
            phases.extend(resolved);
        }
        let before = self.render_schedule(id);
        let Some(s) = self.subscription_schedules.get_mut(id) else {
            return Err(StripeError::missing("subscription_schedule", id, "id"));
        };
        if s.phases != phases {
            s.expiring_sent = false;
        }
        s.phases = phases;
        if let Some(e) = u.end_behavior {
            s.end_behavior = e;
        }
        if let Some(m) = &u.metadata {
            m.apply(&mut s.metadata);
        }
        let starts_now =
            s.status == "not_started" && s.phases.first().is_some_and(|p| p.start_date <= now);
        if starts_now {
            if let Err(e) = self.start_schedule(id) {
                // Nothing was created: the schedule stays as it was before the request.
                self.subscription_schedules.insert(id.to_string(), sched);
                return Err(e);
            }
        } else if sched.status == "active" {
            self.apply_phase_if_changed(id);
        }
        let after = self.render_schedule(id);
        if let Some(prev) = diff(&before, &after) {
            self.emit("subscription_schedule.updated", now, after, Some(prev));
        }
        Ok(())
    }

    /// The subscription's `schedule` field; emits `customer.subscription.updated` if it moved.
    pub(crate) fn set_subscription_schedule(&mut self, sub_id: &str, schedule: Option<String>) {
        let Some(customer) = self.customer_of(sub_id) else {
            return;
        };
        let now = self.time_for_customer(&customer);
        let before = self.render_subscription(sub_id);
        if let Some(s) = self.subscriptions.get_mut(sub_id) {
            s.schedule = schedule;
        }
        let after = self.render_subscription(sub_id);
        if let Some(prev) = diff(&before, &after) {
            self.emit("customer.subscription.updated", now, after, Some(prev));
        }
    }

    /// A subscription schedule as Stripe renders it.
    pub fn render_schedule(&self, id: &str) -> Value {
        let Some(s) = self.subscription_schedules.get(id) else {
            return Value::Null;
        };
        let phases: Vec<Value> = s
            .phases
            .iter()
            .map(|ph| {
                let currency = ph
                    .items
                    .first()
                    .and_then(|(p, _)| self.prices.get(p))
                    .map_or_else(|| "usd".to_string(), |p| p.currency.clone());
                let items: Vec<Value> = ph
                    .items
                    .iter()
                    .map(|(price, quantity)| {
                        json!({
                            "billing_thresholds": null,
                            "discounts": [],
                            "metadata": {},
                            "plan": price,
                            "price": price,
                            "quantity": quantity,
                            "tax_rates": [],
                        })
                    })
                    .collect();
                json!({
                    "add_invoice_items": [],
                    "application_fee_percent": null,
                    "automatic_tax": null,
                    "billing_cycle_anchor": null,
                    "billing_thresholds": null,
                    "collection_method": null,
                    "currency": currency,
                    "default_payment_method": null,
                    "default_tax_rates": [],
                    "description": null,
                    "discounts": [],
                    "end_date": ph.end_date,
                    "invoice_settings": null,
                    "items": items,
                    "metadata": {},
                    "on_behalf_of": null,
                    "proration_behavior": ph.proration_behavior,
                    "start_date": ph.start_date,
                    "transfer_data": null,
                    "trial_end": null,
                })
            })
            .collect();
        let current_phase = (s.status == "active")
            .then(|| s.phases.get(s.current))
            .flatten()
            .map(|p| json!({"start_date": p.start_date, "end_date": p.end_date}));
        json!({
            "id": s.id,
            "object": "subscription_schedule",
            "application": null,
            "billing_mode": {"flexible": null, "type": "classic", "updated_at": null},
            "canceled_at": s.canceled_at,
            "completed_at": s.completed_at,
            "created": s.created,
            "current_phase": current_phase,
            "customer": s.customer,
            "customer_account": null,
            "default_settings": {
                "application_fee_percent": null,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
                "billing_cycle_anchor": "automatic",
                "billing_thresholds": null,
                "collection_method": "charge_automatically",
                "default_payment_method": null,
                "description": null,
                "invoice_settings": {
                    "account_tax_ids": null,
                    "custom_fields": null,
                    "days_until_due": null,
                    "description": null,
                    "footer": null,
                    "issuer": {"type": "self"},
                },
                "on_behalf_of": null,
                "transfer_data": null,
            },
            "end_behavior": s.end_behavior,
            "livemode": false,
            "metadata": metadata(&s.metadata),
            "pause_schedules": null,
            "phases": phases,
            "released_at": s.released_at,
            "released_subscription": s.released_subscription,
            "status": s.status,
            "subscription": s.subscription,
            "test_clock": self.clock_of_customer(&s.customer),
        })
    }
}
