-- One schema for SQLite and PostgreSQL: only types both understand through sqlx's Any driver (TEXT,
-- BIGINT). Flags are BIGINT 0/1 because the Any driver cannot read SQLite's BOOLEAN.
-- Times are unix seconds (BIGINT): exact to the second on both databases and free of time-zone rules.

-- The platform's users. `id` is the platform's own opaque id; `email` is stored lower-cased.
CREATE TABLE users (
    id                 TEXT   PRIMARY KEY,
    email              TEXT   NOT NULL,
    stripe_customer_id TEXT,
    created_at         BIGINT NOT NULL
);
-- One Stripe customer belongs to one user; NULL (no customer yet) may repeat on both databases.
CREATE UNIQUE INDEX users_stripe_customer_id_key ON users (stripe_customer_id);
CREATE INDEX users_email_idx ON users (email);

-- One row per user who ever subscribed; a user with no row has status `none` on the wire.
CREATE TABLE entitlements (
    user_id                TEXT    PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    status                 TEXT    NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
    -- Stripe's own status; the past-due grace period applies to raw `past_due` only.
    stripe_status          TEXT    NOT NULL,
    pause_active           BIGINT  NOT NULL DEFAULT 0 CHECK (pause_active IN (0, 1)),
    stripe_subscription_id TEXT,
    plan                   TEXT    CHECK (plan IN ('weekly', 'monthly')),
    current_period_end     BIGINT,
    cancel_at_period_end   BIGINT  NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1)),
    -- Start of the grace period: when the renewal failed.
    past_due_since         BIGINT,
    -- A renewal waits for 3-D Secure authentication.
    action_required        BIGINT  NOT NULL DEFAULT 0 CHECK (action_required IN (0, 1)),
    updated_at             BIGINT  NOT NULL
);
CREATE UNIQUE INDEX entitlements_subscription_key ON entitlements (stripe_subscription_id);
CREATE INDEX entitlements_status_idx ON entitlements (status);
