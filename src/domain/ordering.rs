//! The ordering rule, stated once: whether what Stripe told us about a subscription may replace
//! what is stored. Stripe does not deliver events in order and stamps them with one-second steps,
//! so each stored subscription keeps a watermark, the `created` of the newest event applied to it.

/// What we know about a subscription, and how we came to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The subscription as an event's payload has it, at the event's `created` (unix seconds).
    Payload {
        /// The event's `created`.
        created: i64,
    },
    /// The subscription as Stripe returned it just now: newer than any event we have seen.
    Fetched,
    /// An event about the subscription whose payload is something else (an invoice, a Checkout
    /// Session) or cannot be read: it says that the subscription changed, not how.
    NotASubscription,
}

/// What to do with the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Write it (it becomes the stored subscription).
    Apply(Why),
    /// Keep what is stored; the event is recorded as skipped.
    Skip(Why),
    /// Neither can be trusted over the other: ask Stripe for the subscription and apply that.
    Refetch(Why),
}

/// Why, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Nothing is stored for this subscription yet.
    FirstSeen,
    /// The event is newer than the watermark.
    Newer,
    /// The event is older than the watermark: something newer was applied already.
    Older,
    /// The event has the watermark's second: two payloads of one second cannot be ordered.
    SameSecond,
    /// Stripe's answer of now wins over anything stored.
    FreshFromStripe,
    /// The payload does not carry the subscription.
    NotASubscription,
}

/// Decides, from the stored watermark (`None`: nothing stored) and the evidence.
pub fn decide(watermark: Option<i64>, evidence: Evidence) -> Ordering {
    match (evidence, watermark) {
        (Evidence::Fetched, _) => Ordering::Apply(Why::FreshFromStripe),
        (Evidence::NotASubscription, _) => Ordering::Refetch(Why::NotASubscription),
        (Evidence::Payload { .. }, None) => Ordering::Apply(Why::FirstSeen),
        (Evidence::Payload { created }, Some(w)) if created > w => Ordering::Apply(Why::Newer),
        (Evidence::Payload { created }, Some(w)) if created < w => Ordering::Skip(Why::Older),
        (Evidence::Payload { .. }, Some(_)) => Ordering::Refetch(Why::SameSecond),
    }
}

/// The watermark a subscription keeps once `evidence` of an event at `created` is applied: it
/// never moves back (a fresh fetch for an old event keeps the newer watermark).
pub fn watermark_after(watermark: Option<i64>, created: i64) -> i64 {
    watermark.map_or(created, |w| w.max(created))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000;

    fn payload(created: i64) -> Evidence {
        Evidence::Payload { created }
    }

    #[test]
    fn a_newer_event_is_applied() {
        assert_eq!(decide(Some(T), payload(T + 1)), Ordering::Apply(Why::Newer));
    }

    #[test]
    fn an_older_event_is_skipped() {
        assert_eq!(decide(Some(T), payload(T - 1)), Ordering::Skip(Why::Older));
    }

    #[test]
    fn an_event_of_the_watermarks_second_asks_stripe() {
        assert_eq!(
            decide(Some(T), payload(T)),
            Ordering::Refetch(Why::SameSecond)
        );
    }

    #[test]
    fn without_a_watermark_any_event_is_applied() {
        assert_eq!(decide(None, payload(0)), Ordering::Apply(Why::FirstSeen));
        assert_eq!(decide(None, payload(T)), Ordering::Apply(Why::FirstSeen));
    }

    #[test]
    fn a_deletion_is_ordered_like_any_event_and_keeps_older_updates_out() {
        // `customer.subscription.deleted` at T is applied over an update of T - 5 …
        assert_eq!(decide(Some(T - 5), payload(T)), Ordering::Apply(Why::Newer));
        let after = watermark_after(Some(T - 5), T);
        // … and an update of T - 1 that arrives after it does not bring the subscription back.
        assert_eq!(
            decide(Some(after), payload(T - 1)),
            Ordering::Skip(Why::Older)
        );
    }

    #[test]
    fn a_payload_that_is_not_the_subscription_asks_stripe_whatever_is_stored() {
        for stored in [None, Some(T)] {
            assert_eq!(
                decide(stored, Evidence::NotASubscription),
                Ordering::Refetch(Why::NotASubscription)
            );
        }
    }

    #[test]
    fn stripes_answer_of_now_is_applied_and_never_moves_the_watermark_back() {
        for stored in [None, Some(T), Some(T + 100)] {
            assert_eq!(
                decide(stored, Evidence::Fetched),
                Ordering::Apply(Why::FreshFromStripe)
            );
        }
        assert_eq!(watermark_after(Some(T + 100), T), T + 100);
        assert_eq!(watermark_after(None, T), T);
    }
}
