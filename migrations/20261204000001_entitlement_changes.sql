-- The entitlement change log: one row each time an owner's entitlement answer (what the check
-- would say) changes, written in the transaction of the change. `seq` is handed out by the one
-- `entitlement_feed` row, which a writer holds until it commits: seqs become visible in order, so a
-- consumer reading "after N" never skips one that commits later.
CREATE TABLE entitlement_changes (
    seq        BIGINT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    cause      TEXT NOT NULL,
    answer     TEXT NOT NULL
);
CREATE INDEX entitlement_changes_user_time ON entitlement_changes (user_id, changed_at, seq);
CREATE INDEX entitlement_changes_time ON entitlement_changes (changed_at);

-- Each owner's answer as last logged, and when time alone may change it (a period end with
-- cancel_at_period_end, a grace period's or complimentary access's end).
CREATE TABLE entitlement_answers (
    user_id    TEXT PRIMARY KEY,
    seq        BIGINT NOT NULL,
    answer     TEXT NOT NULL,
    recheck_at BIGINT
);
CREATE INDEX entitlement_answers_recheck ON entitlement_answers (recheck_at);

-- `last_seq`: the newest seq handed out; `pruned_through`: the newest seq retention removed (an
-- `after` older than it has lost changes: 410).
CREATE TABLE entitlement_feed (
    id             BIGINT PRIMARY KEY,
    last_seq       BIGINT NOT NULL,
    pruned_through BIGINT NOT NULL
);
INSERT INTO entitlement_feed (id, last_seq, pruned_through) VALUES (1, 0, 0);

-- Deliveries of the change log to `MSR_FEED_ENDPOINTS` (Standard Webhooks): one cursor per
-- endpoint, in seq order, leased by the instance delivering it; a failure backs off and holds the
-- endpoint's later changes (so each user's reach it in order).
CREATE TABLE feed_endpoints (
    url             TEXT PRIMARY KEY,
    delivered_seq   BIGINT NOT NULL,
    locked_until    BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    failing_since   BIGINT,
    last_success_at BIGINT
);
