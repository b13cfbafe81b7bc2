//! The entitlement policy: a pure function from what we know of a subscription to "may this owner use
//! paid features now, why, and until when".

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{EntitlementStatus, Plan, StripeStatus, SubscriptionId};

/// What the store keeps about one user's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entitlement {
    /// Our status, mapped from Stripe's.
    pub status: EntitlementStatus,
    /// Stripe's own status, kept because the grace period applies to raw `past_due` only.
    pub stripe_status: StripeStatus,
    /// Access paused: Stripe's `paused` status or `pause_collection` set.
    pub pause_active: bool,
    /// The plan the subscription's price belongs to, when we recognise it.
    pub plan: Option<Plan>,
    /// Stripe's subscription id.
    pub stripe_subscription_id: Option<SubscriptionId>,
    /// End of the period paid for (or of the trial).
    pub current_period_end: Option<DateTime<Utc>>,
    /// The owner asked to stop at the end of the period.
    pub cancel_at_period_end: bool,
    /// When the subscription went past due (the failed renewal), the start of the grace period.
    pub past_due_since: Option<DateTime<Utc>>,
    /// A renewal waits for the owner to authenticate the payment (3-D Secure).
    pub action_required: bool,
    /// When this row last changed.
    pub updated_at: DateTime<Utc>,
}

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Paid and current.
    Active,
    /// In a trial.
    Trialing,
    /// Past due, but inside the configured grace period.
    PastDueGrace,
    /// Paused (Stripe `paused` or `pause_collection`).
    Paused,
    /// Past due (or unpaid, incomplete) beyond any grace.
    PastDue,
    /// Canceled, or set to cancel and the period is over.
    Canceled,
    /// Never subscribed.
    NoSubscription,
    /// Not entitled by a subscription, but support granted access until a date.
    Complimentary,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "active",
            Reason::Trialing => "trialing",
            Reason::PastDueGrace => "past_due_grace",
            Reason::Paused => "paused",
            Reason::PastDue => "past_due",
            Reason::Canceled => "canceled",
            Reason::NoSubscription => "no_subscription",
            Reason::Complimentary => "complimentary",
        }
    }
}

/// The answer of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// May the owner use paid features.
    pub entitled: bool,
    /// The rule that decided.
    pub reason: Reason,
    /// Until when the answer holds if nothing changes; `None` when not entitled.
    pub valid_until: Option<DateTime<Utc>>,
}

/// The settings the policy depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// How long a raw `past_due` subscription keeps access after the failed renewal (zero: none).
    pub past_due_grace: Duration,
}

impl Policy {
    /// Decides with support's complimentary access: a subscription that grants access decides as
    /// usual; otherwise an unexpired grant gives access until its date (`complimentary`).
    pub fn decide_with_grant(
        &self,
        entitlement: Option<&Entitlement>,
        complimentary_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Decision {
        let by_subscription = self.decide(entitlement, now);
        match complimentary_until {
            Some(until) if !by_subscription.entitled && until > now => Decision {
                entitled: true,
                reason: Reason::Complimentary,
                valid_until: Some(until),
            },
            _ => by_subscription,
        }
    }

    /// Decides for one user at `now`. `None` means the user never subscribed.
    pub fn decide(&self, entitlement: Option<&Entitlement>, now: DateTime<Utc>) -> Decision {
        let deny = |reason| Decision {
            entitled: false,
            reason,
            valid_until: None,
        };
        let Some(e) = entitlement else {
            return deny(Reason::NoSubscription);
        };
        let period_over = e.current_period_end.is_some_and(|end| end <= now);
        if e.status == EntitlementStatus::Canceled || (e.cancel_at_period_end && period_over) {
            return deny(Reason::Canceled);
        }
        if e.pause_active {
            return deny(Reason::Paused);
        }
        match e.status {
            EntitlementStatus::Active => Decision {
                entitled: true,
                reason: Reason::Active,
                valid_until: e.current_period_end,
            },
            EntitlementStatus::Trialing => Decision {
                entitled: true,
                reason: Reason::Trialing,
                valid_until: e.current_period_end,
            },
            EntitlementStatus::PastDue => {
                let grace_end = e
                    .past_due_since
                    .filter(|_| {
                        e.stripe_status == StripeStatus::PastDue
                            && self.past_due_grace > Duration::zero()
                    })
                    .map(|since| since + self.past_due_grace);
                match grace_end {
                    Some(end) if end > now => Decision {
                        entitled: true,
                        reason: Reason::PastDueGrace,
                        valid_until: Some(end),
                    },
                    _ => deny(Reason::PastDue),
                }
            }
            EntitlementStatus::Canceled => deny(Reason::Canceled),
        }
    }
}

/// The entitlement a user's subscriptions (newest first) give: from the best one, a live one before
/// an ended one, then the newest. `None` without subscriptions.
pub fn derive(subs: &[super::StoredSubscription], now: i64) -> Option<Entitlement> {
    let ended = |s: &super::StoredSubscription| {
        matches!(
            s.stripe_status,
            StripeStatus::Canceled | StripeStatus::IncompleteExpired
        )
    };
    let best = subs.iter().find(|s| !ended(s)).or_else(|| subs.first())?;
    let (status, paused_by_status) = best.stripe_status.to_entitlement();
    Some(Entitlement {
        status,
        stripe_status: best.stripe_status,
        pause_active: paused_by_status
            || (best.pause_collection && status != EntitlementStatus::Canceled),
        plan: best.plan,
        stripe_subscription_id: SubscriptionId::parse(&best.id).ok(),
        current_period_end: best.current_period_end,
        cancel_at_period_end: best.cancel_at_period_end,
        past_due_since: best.past_due_since,
        action_required: best.action_required,
        updated_at: super::time::from_unix(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn sub(stripe: StripeStatus) -> Entitlement {
        let (status, pause_active) = stripe.to_entitlement();
        Entitlement {
            status,
            stripe_status: stripe,
            pause_active,
            plan: Some(Plan::Monthly),
            stripe_subscription_id: SubscriptionId::parse("sub_1").ok(),
            current_period_end: Some(at(24 * 30)),
            cancel_at_period_end: false,
            past_due_since: None,
            action_required: false,
            updated_at: at(0),
        }
    }

    const NO_GRACE: Policy = Policy {
        past_due_grace: Duration::zero(),
    };

    #[test]
    fn the_policy_table_holds() {
        use StripeStatus as S;
        let now = at(1);
        // (stripe status, entitled, reason)
        let table = [
            (S::Active, true, Reason::Active),
            (S::Trialing, true, Reason::Trialing),
            (S::PastDue, false, Reason::PastDue),
            (S::Unpaid, false, Reason::PastDue),
            (S::Incomplete, false, Reason::PastDue),
            (S::IncompleteExpired, false, Reason::PastDue),
            (S::Paused, false, Reason::Paused),
            (S::Canceled, false, Reason::Canceled),
        ];
        for (stripe, entitled, reason) in table {
            let d = NO_GRACE.decide(Some(&sub(stripe)), now);
            assert_eq!((d.entitled, d.reason), (entitled, reason), "{stripe:?}");
            assert_eq!(
                d.valid_until.is_some(),
                entitled,
                "valid_until only while entitled ({stripe:?})"
            );
        }
    }

    #[test]
    fn a_user_who_never_subscribed_is_not_entitled() {
        let d = NO_GRACE.decide(None, at(0));
        assert_eq!(
            d,
            Decision {
                entitled: false,
                reason: Reason::NoSubscription,
                valid_until: None
            }
        );
    }

    #[test]
    fn active_holds_until_the_period_end() {
        let d = NO_GRACE.decide(Some(&sub(StripeStatus::Active)), at(1));
        assert_eq!(d.valid_until, Some(at(24 * 30)));
    }

    #[test]
    fn pause_collection_closes_access_although_stripe_says_active() {
        let mut e = sub(StripeStatus::Active);
        e.pause_active = true;
        let d = NO_GRACE.decide(Some(&e), at(1));
        assert_eq!((d.entitled, d.reason), (false, Reason::Paused));
    }

    #[test]
    fn cancel_at_period_end_keeps_access_until_the_end_and_not_after() {
        let mut e = sub(StripeStatus::Active);
        e.cancel_at_period_end = true;
        let before = NO_GRACE.decide(Some(&e), at(24 * 30 - 1));
        assert_eq!(
            (before.entitled, before.reason, before.valid_until),
            (true, Reason::Active, Some(at(24 * 30)))
        );
        let after = NO_GRACE.decide(Some(&e), at(24 * 30));
        assert_eq!((after.entitled, after.reason), (false, Reason::Canceled));
    }

    #[test]
    fn past_due_is_entitled_only_inside_the_grace_period() {
        let policy = Policy {
            past_due_grace: Duration::hours(72),
        };
        let mut e = sub(StripeStatus::PastDue);
        e.past_due_since = Some(at(0));
        let inside = policy.decide(Some(&e), at(71));
        assert_eq!(
            (inside.entitled, inside.reason, inside.valid_until),
            (true, Reason::PastDueGrace, Some(at(72)))
        );
        let outside = policy.decide(Some(&e), at(72));
        assert_eq!((outside.entitled, outside.reason), (false, Reason::PastDue));
        assert_eq!(
            NO_GRACE.decide(Some(&e), at(1)).reason,
            Reason::PastDue,
            "no grace by default"
        );
    }

    #[test]
    fn grace_applies_to_raw_past_due_only() {
        let policy = Policy {
            past_due_grace: Duration::hours(72),
        };
        for raw in [
            StripeStatus::Unpaid,
            StripeStatus::Incomplete,
            StripeStatus::IncompleteExpired,
        ] {
            let mut e = sub(raw);
            e.past_due_since = Some(at(0));
            let d = policy.decide(Some(&e), at(1));
            assert_eq!((d.entitled, d.reason), (false, Reason::PastDue), "{raw:?}");
        }
    }

    #[test]
    fn complimentary_access_holds_until_its_date_when_no_subscription_grants() {
        let grant = Some(at(48));
        let none = NO_GRACE.decide_with_grant(None, grant, at(1));
        assert_eq!(
            none,
            Decision {
                entitled: true,
                reason: Reason::Complimentary,
                valid_until: grant
            }
        );
        let canceled = NO_GRACE.decide_with_grant(Some(&sub(StripeStatus::Canceled)), grant, at(1));
        assert_eq!(canceled.reason, Reason::Complimentary);
        let expired = NO_GRACE.decide_with_grant(None, grant, at(48));
        assert_eq!(expired.reason, Reason::NoSubscription);
        let active = NO_GRACE.decide_with_grant(Some(&sub(StripeStatus::Active)), grant, at(1));
        assert_eq!(
            active.reason,
            Reason::Active,
            "a paying owner keeps their own reason"
        );
    }

    #[test]
    fn paused_wins_over_grace() {
        let policy = Policy {
            past_due_grace: Duration::hours(72),
        };
        let mut e = sub(StripeStatus::PastDue);
        e.past_due_since = Some(at(0));
        e.pause_active = true;
        assert_eq!(policy.decide(Some(&e), at(1)).reason, Reason::Paused);
    }
}
