-- Torn rows after the webhook scenario: subscriptions (and the entitlements derived from them)
-- that differ from the last event sent for them. bench_expected is loaded from msr-load's CSV.
SELECT COUNT(*)
FROM bench_expected x
LEFT JOIN subscriptions s ON s.id = x.id
LEFT JOIN entitlements e ON e.stripe_subscription_id = x.id
WHERE s.id IS NULL
   OR s.stripe_status <> x.status
   OR s.current_period_end <> x.period_end
   OR s.watermark <> x.created
   OR e.user_id IS NULL
   OR e.status <> x.status
   OR e.current_period_end <> x.period_end;
