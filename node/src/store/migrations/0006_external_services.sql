-- External imputation services a node wraps (Cloudgene servers, GA4GH WES servers).

CREATE TABLE external_services (
    id                  TEXT    PRIMARY KEY,
    kind                TEXT    NOT NULL CHECK (kind IN ('cloudgene', 'wes')),
    url                 TEXT    NOT NULL,
    -- Cloudgene application id (e.g. imputationserver2); WES workflow URL
    app                 TEXT,
    workflow_url        TEXT,
    -- the API token, sealed (credentials.rs); never returned by the API
    sealed_token        BLOB,
    -- available, degraded, unavailable (from the last health check)
    status              TEXT    NOT NULL DEFAULT 'unavailable',
    queue_length        INTEGER NOT NULL DEFAULT 0,
    -- JSON list of the panels it offers: [{"id", "name", "populations": [...], "builds": [...]}]
    panels              TEXT    NOT NULL DEFAULT '[]',
    last_check_at       INTEGER,
    last_error          TEXT,
    created_at          INTEGER NOT NULL
);

-- A job run through an external service: which one, and the job's id there.
ALTER TABLE jobs ADD COLUMN external_id TEXT;
