-- Seeds @N@ users u0 … u{N-1} and their subscriptions and entitlements, in one transaction, all
-- generated inside the database (INSERT … SELECT over generate_series: no client round trips).
-- bench/run substitutes @N@, @NOW@ and @SERIES@ (the generate_series call, spelled per database).
-- User i is of class i % 10: 0–4 active, 5 trialing, 6 past_due, 7 canceled (each with subscription
-- sub_b{i} of customer cus_b{i}, half weekly, half monthly), 8–9 never subscribed (customer only).
-- Subscriptions' watermark is @NOW@ - 1 day: the webhook scenario's events are newer.
BEGIN;
INSERT INTO users (id, email, stripe_customer_id, created_at)
SELECT 'u' || value, 'user' || value || '@example.com', 'cus_b' || value, @NOW@ - value
FROM @SERIES@;

INSERT INTO subscriptions (id, user_id, customer_id, stripe_status, price_id, plan, current_period_end,
                           cancel_at_period_end, pause_collection, past_due_since, action_required,
                           created, watermark, updated_at)
SELECT 'sub_b' || value, 'u' || value, 'cus_b' || value,
       CASE value % 10 WHEN 5 THEN 'trialing' WHEN 6 THEN 'past_due' WHEN 7 THEN 'canceled' ELSE 'active' END,
       CASE value % 2 WHEN 0 THEN 'price_msr_monthly' ELSE 'price_msr_weekly' END,
       CASE value % 2 WHEN 0 THEN 'monthly' ELSE 'weekly' END,
       CASE value % 10 WHEN 7 THEN @NOW@ - 86400 ELSE @NOW@ + 30 * 86400 END,
       0, 0,
       CASE value % 10 WHEN 6 THEN @NOW@ - 3600 ELSE NULL END,
       0, @NOW@ - 90 * 86400, @NOW@ - 86400, @NOW@
FROM @SERIES@
WHERE value % 10 < 8;

INSERT INTO entitlements (user_id, status, stripe_status, pause_active, stripe_subscription_id, plan,
                          current_period_end, cancel_at_period_end, past_due_since, action_required,
                          updated_at)
SELECT user_id, stripe_status, stripe_status, 0, id, plan, current_period_end, 0, past_due_since, 0,
       updated_at
FROM subscriptions;
COMMIT;
ANALYZE;
