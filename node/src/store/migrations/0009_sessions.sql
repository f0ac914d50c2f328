-- Sessions that really end.
--
-- A session is one login and every refresh token rotated from it. Access tokens name their
-- session (the `sid` claim) and every request checks it is live, so logging out, reusing a
-- rotated refresh token, or an admin's action ends the access token at once, not when it expires.
CREATE TABLE sessions (
    id                  TEXT    PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    end_reason          TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

ALTER TABLE refresh_tokens ADD COLUMN session_id TEXT REFERENCES sessions (id) ON DELETE CASCADE;
-- Refresh tokens from before sessions existed belong to none: they end (their users log in again).
UPDATE refresh_tokens SET revoked_at = CAST(strftime('%s', 'now') AS INTEGER) * 1000
    WHERE session_id IS NULL AND revoked_at IS NULL;

-- Sessions opened before this instant (ms) are dead, whatever else says: set by a password
-- reset, a role change or a disable.
ALTER TABLE users ADD COLUMN sessions_valid_after INTEGER NOT NULL DEFAULT 0;
-- A generated one-time password: until it is changed, the user may only change it.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1));

-- Login throttling lives in memory now (auth/throttle.rs), keyed by user name and address.
DROP TABLE login_failures;
