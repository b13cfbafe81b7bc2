//! What is due when. Nothing is queued: the next due moment is computed from the state
//! itself (period ends, trial ends, retry times, ...), so a change made through the API
//! (say, cancel) can never leave a stale timer behind.

use super::State;

/// A moment at which the simulated Stripe does something on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// `pause_collection.resumes_at` reached: collection resumes.
    ResumeCollection(String),
    /// A draft renewal invoice reaches `automatically_finalizes_at`.
    FinalizeInvoice(String),
    /// An open invoice reaches `next_payment_attempt`.
    RetryInvoice(String),
    /// An `incomplete` subscription's 23 hours are over.
    ExpireIncomplete(String),
    /// `cancel_at` reached (also what `cancel_at_period_end` schedules).
    CancelAt(String),
    /// A subscription schedule starts, or its current phase ends.
    SchedulePhase(String),
    /// A period (or trial) ends: renew.
    PeriodEnd(String),
    /// An open Checkout Session expires.
    ExpireCheckout(String),
    /// Three days before a trial ends: `customer.subscription.trial_will_end`.
    TrialWillEnd(String),
    /// Seven days before a releasing schedule ends: `subscription_schedule.expiring`.
    ScheduleExpiring(String),
}

impl Due {
    /// Tie-break between moments at the same second: money first, then status changes. A
    /// schedule's phase change comes before the renewal at the same moment, so the renewal
    /// bills the new phase's prices (and `end_behavior=cancel` ends before renewing).
    fn rank(&self) -> u8 {
        match self {
            Due::ResumeCollection(_) => 0,
            Due::FinalizeInvoice(_) => 1,
            Due::RetryInvoice(_) => 2,
            Due::ExpireIncomplete(_) => 3,
            Due::CancelAt(_) => 4,
            Due::SchedulePhase(_) => 5,
            Due::PeriodEnd(_) => 6,
            Due::ExpireCheckout(_) => 7,
            Due::TrialWillEnd(_) => 8,
            Due::ScheduleExpiring(_) => 9,
        }
    }

    /// Human-readable, for `/_sim/state`.
    pub fn describe(&self) -> String {
        match self {
            Due::ResumeCollection(id) => format!("resume collection of {id}"),
            Due::FinalizeInvoice(id) => format!("finalize and charge {id}"),
            Due::RetryInvoice(id) => format!("retry payment of {id}"),
            Due::ExpireIncomplete(id) => format!("expire incomplete {id}"),
            Due::CancelAt(id) => format!("cancel {id}"),
            Due::PeriodEnd(id) => format!("renew {id}"),
            Due::ExpireCheckout(id) => format!("expire checkout session {id}"),
            Due::TrialWillEnd(id) => format!("announce the trial end of {id}"),
            Due::SchedulePhase(id) => format!("start or change the phase of {id}"),
            Due::ScheduleExpiring(id) => format!("announce the end of {id}"),
        }
    }
}

impl State {
    /// Every due moment of objects on `clock` (`None`: the simulator's own clock, i.e.
    /// customers without a test clock), earliest first. Objects of a test clock only move
    /// when that clock is advanced.
    pub(crate) fn due_list(&self, clock: Option<&str>) -> Vec<(i64, Due)> {
        let on_clock = |customer: &str| self.clock_of_customer(customer).as_deref() == clock;
        let mut out: Vec<(i64, Due)> = Vec::new();
        for s in self.subscriptions.values() {
            if s.is_ended() || !on_clock(&s.customer) {
                continue;
            }
            if s.status == "trialing"
                && !s.trial_will_end_sent
                && let (Some(start), Some(end)) = (s.trial_start, s.trial_end)
            {
                out.push((
                    (end - 3 * 86_400).max(start),
                    Due::TrialWillEnd(s.id.clone()),
                ));
            }
            if let Some(p) = &s.pause_collection
                && let Some(at) = p.resumes_at
            {
                out.push((at, Due::ResumeCollection(s.id.clone())));
            }
            match s.status.as_str() {
                "incomplete" => {
                    out.push((
                        s.created + self.settings.incomplete_expiry,
                        Due::ExpireIncomplete(s.id.clone()),
                    ));
                }
                "trialing" | "active" | "past_due" | "unpaid" => {
                    let end = s.period_end();
                    match s.cancel_at {
                        Some(c) if c <= end => out.push((c, Due::CancelAt(s.id.clone()))),
                        _ => out.push((end, Due::PeriodEnd(s.id.clone()))),
                    }
                }
                _ => {
                    if let Some(c) = s.cancel_at {
                        out.push((c, Due::CancelAt(s.id.clone())));
                    }
                }
            }
        }
        for inv in self.invoices.values() {
            if !on_clock(&inv.customer) {
                continue;
            }
            match inv.status.as_str() {
                "draft" => {
                    if let Some(at) = inv.automatically_finalizes_at {
                        out.push((at, Due::FinalizeInvoice(inv.id.clone())));
                    }
                }
                "open" => {
                    if let Some(at) = inv.next_payment_attempt {
                        out.push((at, Due::RetryInvoice(inv.id.clone())));
                    }
                }
                _ => {}
            }
        }
        for cs in self.checkout_sessions.values() {
            let clock_ok = match &cs.customer {
                Some(c) => on_clock(c),
                None => clock.is_none(),
            };
            if cs.status == "open" && clock_ok {
                out.push((cs.expires_at, Due::ExpireCheckout(cs.id.clone())));
            }
        }
        for s in self.subscription_schedules.values() {
            if !self.customers.contains_key(&s.customer) || !on_clock(&s.customer) {
                continue;
            }
            match s.status.as_str() {
                "not_started" => {
                    if let Some(first) = s.phases.first() {
                        out.push((first.start_date, Due::SchedulePhase(s.id.clone())));
                    }
                }
                "active" => {
                    if let Some(phase) = s.phases.get(s.current) {
                        out.push((phase.end_date, Due::SchedulePhase(s.id.clone())));
                    }
                    let expiring = s.phases.last().map(|p| p.end_date - 7 * 86_400);
                    if s.end_behavior == "release"
                        && !s.expiring_sent
                        && let Some(at) = expiring
                        && at > s.created
                    {
                        out.push((at, Due::ScheduleExpiring(s.id.clone())));
                    }
                }
                _ => {}
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.rank().cmp(&b.1.rank())));
        out
    }

    /// The earliest due moment on the simulator's own clock, if any.
    pub fn next_due(&self) -> Option<(i64, Due)> {
        self.due_list(None).into_iter().next()
    }

    /// The earliest due moment on a test clock, if any.
    pub(crate) fn next_due_on(&self, clock: &str) -> Option<(i64, Due)> {
        self.due_list(Some(clock)).into_iter().next()
    }

    pub(crate) fn run_due(&mut self, due: Due) {
        match due {
            Due::ResumeCollection(id) => self.resume_collection_due(&id),
            Due::FinalizeInvoice(id) => self.finalize_and_charge(&id),
            Due::RetryInvoice(id) => {
                let _ = self.attempt_payment(&id);
            }
            Due::ExpireIncomplete(id) => self.expire_incomplete(&id),
            Due::CancelAt(id) => self.cancel_due(&id),
            Due::PeriodEnd(id) => self.period_end(&id),
            Due::ExpireCheckout(id) => self.expire_checkout(&id),
            Due::TrialWillEnd(id) => self.trial_will_end(&id),
            Due::SchedulePhase(id) => self.schedule_due(&id),
            Due::ScheduleExpiring(id) => self.schedule_expiring(&id),
        }
    }

    /// When the given subscription next renews — the moment its renewal invoice is charged
    /// (period end plus the finalize delay) — for `{"to":"next_renewal"}`.
    pub fn next_renewal_of(&self, sub_id: &str) -> Option<i64> {
        let s = self.subscriptions.get(sub_id)?;
        match s.status.as_str() {
            "trialing" | "active" | "past_due" | "unpaid" => {
                Some(s.period_end() + self.settings.finalize_delay)
            }
            _ => None,
        }
    }
}
