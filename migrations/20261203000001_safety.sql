-- Readiness asks "can a write commit?", not only "does the database answer?": an SQLite file that
-- turned read-only (or a full disk) still answers reads. `/readyz` writes this one row, at most
-- every few seconds (`Db::ready`).
CREATE TABLE health_probe (
    id        BIGINT PRIMARY KEY,
    probed_at BIGINT NOT NULL
);

-- Browser sessions remember the generation they were signed in at; support ends every session of a
-- user at once by moving it on (the session store keeps opaque records, so they cannot be found by
-- user).
ALTER TABLE users ADD COLUMN session_generation BIGINT NOT NULL DEFAULT 0;
