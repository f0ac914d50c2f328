-- Engine tasks handed to an executor that outlives the node (Slurm): the external id is stored
-- before the node waits on it, so a restarted node re-attaches instead of submitting twice.
CREATE TABLE engine_tasks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    external_id TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL DEFAULT 'submitted',
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
