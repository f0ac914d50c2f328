-- The node database as the first migration set made it (migration 0001 only, as the first
-- release shipped it), with sqlx's record of that migration. Made with
-- `python3` sqlite3 from node/src/store/migrations/0001_foundation.sql; loaded by
-- tests/tests/node_lifecycle.rs to check that today's node upgrades it and starts.
BEGIN TRANSACTION;
CREATE TABLE _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);
INSERT INTO "_sqlx_migrations" VALUES(1,'foundation','2026-09-01 09:00:00',1,X'6D6DFD023827D4E1D36CDF44506D9421028A0A0C592A43E7A7172D6C32E7EF4346370A91AB0E918B4322EECBBA414794',1000000);
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
CREATE TABLE login_failures (
    username            TEXT    NOT NULL,
    at                  INTEGER NOT NULL
);
CREATE TABLE refresh_tokens (
    id                  INTEGER PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256        TEXT    NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    revoked_at          INTEGER
);
CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    password_hash       TEXT    NOT NULL,
    role                TEXT    NOT NULL CHECK (role IN ('admin', 'researcher', 'auditor', 'viewer')),
    disabled            INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE INDEX login_failures_by_user ON login_failures (username, at);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
CREATE INDEX audit_by_action ON audit_log (action, at);
CREATE INDEX audit_by_actor ON audit_log (actor, at);
COMMIT;
