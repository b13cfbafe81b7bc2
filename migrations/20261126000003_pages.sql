-- The pages: complimentary access granted by support, the audit log of admin actions, and the
-- hand-off tokens already used (single use). Browser sessions live in the session store's own table.

-- Support's "fix it": access until a date whatever the subscription says, with a note.
ALTER TABLE users ADD COLUMN complimentary_until BIGINT;
ALTER TABLE users ADD COLUMN complimentary_note TEXT;

-- Every admin action: who, what, when, before and after.
CREATE TABLE audit_log (
    id       TEXT   PRIMARY KEY,
    user_id  TEXT   NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    before   TEXT,
    after    TEXT,
    at       BIGINT NOT NULL
);
CREATE INDEX audit_log_user_idx ON audit_log (user_id, at);

-- Hand-off tokens (their jti) remembered until they expire, so none is used twice.
CREATE TABLE used_tokens (
    jti        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
