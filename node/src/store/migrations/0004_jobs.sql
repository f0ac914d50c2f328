-- Imputation jobs, their inputs, results and events.

CREATE TABLE jobs (
    id                  TEXT    PRIMARY KEY,
    owner_id            INTEGER NOT NULL REFERENCES users (id),
    name                TEXT    NOT NULL,
    -- pending, validating, queued, running, completed, failed, cancelled
    state               TEXT    NOT NULL,
    -- within running: qc, phasing, imputing, writing
    stage               TEXT,
    progress            REAL    NOT NULL DEFAULT 0,
    panel_id            TEXT    NOT NULL,
    build               TEXT    NOT NULL,
    engine              TEXT    NOT NULL,
    phasing             TEXT    NOT NULL,
    population          TEXT,
    r2_filter           REAL    NOT NULL,
    mode                TEXT    NOT NULL,
    error               TEXT,
    qc_report           TEXT,
    summary             TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    started_at          INTEGER,
    finished_at         INTEGER,
    inputs_deleted_at   INTEGER,
    results_deleted_at  INTEGER
);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
CREATE INDEX jobs_by_owner ON jobs (owner_id, created_at);

CREATE TABLE job_inputs (
    job_id              TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx                 INTEGER NOT NULL,
    -- the name the user gave; shown, never used as a path
    name                TEXT    NOT NULL,
    sha256              TEXT    NOT NULL,
    size                INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE job_results (
    job_id              TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name                TEXT    NOT NULL,
    size                INTEGER NOT NULL,
    sha256              TEXT    NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE job_events (
    id                  INTEGER PRIMARY KEY,
    job_id              TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at                  INTEGER NOT NULL,
    state               TEXT    NOT NULL,
    stage               TEXT,
    progress            REAL    NOT NULL,
    message             TEXT
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);
