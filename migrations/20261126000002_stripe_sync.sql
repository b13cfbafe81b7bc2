-- Stripe sync: every subscription we know of, every event we received, and the attempt numbers that
-- make our Idempotency-Keys. Same portable types as the first migration (TEXT, BIGINT; flags 0/1).

-- Stripe's subscriptions, as last applied. A user's entitlement is derived from the best of them
-- (a live one before an ended one, then the newest), in the same transaction that writes them.
CREATE TABLE subscriptions (
    id                   TEXT   PRIMARY KEY,
    user_id              TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    customer_id          TEXT   NOT NULL,
    stripe_status        TEXT   NOT NULL,
    price_id             TEXT,
    plan                 TEXT,
    current_period_end   BIGINT,
    cancel_at_period_end BIGINT NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1)),
    -- pause_collection is set: Stripe keeps `status` active, access must still stop.
    pause_collection     BIGINT NOT NULL DEFAULT 0 CHECK (pause_collection IN (0, 1)),
    past_due_since       BIGINT,
    action_required      BIGINT NOT NULL DEFAULT 0 CHECK (action_required IN (0, 1)),
    -- Stripe's `created` of the subscription: the newest live one wins the entitlement.
    created              BIGINT NOT NULL,
    -- Stripe's `created` of the newest event applied: older events are recorded and skipped.
    watermark            BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE INDEX subscriptions_user_idx ON subscriptions (user_id);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id);

-- Every verified event, recorded before we answer 2xx, raw payload kept for replay.
-- state: pending (to apply), applied, skipped (older than what we have), ignored (a type we do not
-- use), unmatched (no user yet: applied when the customer gets linked), failed (retried with backoff),
-- dead (retries exhausted: waits for replay), livemode_mismatch (recorded, never applied).
CREATE TABLE stripe_events (
    id              TEXT   PRIMARY KEY,
    type            TEXT   NOT NULL,
    created         BIGINT NOT NULL,
    livemode        BIGINT NOT NULL CHECK (livemode IN (0, 1)),
    source          TEXT   NOT NULL,
    payload         TEXT   NOT NULL,
    customer_id     TEXT,
    subscription_id TEXT,
    user_id         TEXT,
    state           TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error      TEXT,
    -- A lease: the instance applying the event holds it until this time (several instances share work).
    locked_until    BIGINT,
    received_at     BIGINT NOT NULL,
    processed_at    BIGINT
);
CREATE INDEX stripe_events_state_idx ON stripe_events (state, next_attempt_at);
CREATE INDEX stripe_events_customer_idx ON stripe_events (customer_id);
CREATE INDEX stripe_events_user_idx ON stripe_events (user_id);
CREATE INDEX stripe_events_created_idx ON stripe_events (created);

-- Idempotency-Key attempt numbers: a key is `<purpose>:<attempt>`; the attempt moves on after a
-- definitive failure, because Stripe replays a saved answer (even a 500) for 24 hours.
CREATE TABLE stripe_request_attempts (
    purpose TEXT   PRIMARY KEY,
    attempt BIGINT NOT NULL
);

-- Checkout Sessions we opened, so a second request for the same plan gets the open one back.
CREATE TABLE checkout_sessions (
    id         TEXT   PRIMARY KEY,
    user_id    TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan       TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX checkout_sessions_user_idx ON checkout_sessions (user_id, plan, status);
