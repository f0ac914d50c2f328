-- Users, sessions, API tokens, login throttling and the audit log.
-- Instants are Unix milliseconds (INTEGER).

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'researcher', 'auditor', 'viewer')),
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- Failed logins, by the user name that was tried (known or not), for throttling.
CREATE TABLE login_failures (
    username            TEXT    NOT NULL,
    at                  INTEGER NOT NULL
);
CREATE INDEX login_failures_by_user ON login_failures (username, at);

CREATE TABLE refresh_tokens (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256        TEXT    NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    revoked_at          INTEGER
);

CREATE TABLE api_tokens (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                TEXT    NOT NULL,
    token_sha256        TEXT    NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    last_used_at        INTEGER,
    revoked_at          INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

-- Append-only, hash-chained, each row signed by the node key. See store/audit.rs.
CREATE TABLE audit_log (
    seq                 INTEGER PRIMARY KEY,
    at                  INTEGER NOT NULL,
    actor               TEXT    NOT NULL,
    source_ip           TEXT    NOT NULL,
    action              TEXT    NOT NULL,
    target              TEXT    NOT NULL,
    outcome             TEXT    NOT NULL,
    details             TEXT    NOT NULL,
    prev_hash           TEXT    NOT NULL,
    hash                TEXT    NOT NULL,
    signature           TEXT    NOT NULL
);
CREATE INDEX audit_by_action ON audit_log (action, at);
CREATE INDEX audit_by_actor ON audit_log (actor, at);
