-- Jobs forwarded between nodes, and multi-panel jobs.

-- local: runs here for a local user; origin: a local user's job running at another node;
-- host: another node's job running here; parent: a multi-panel job whose children do the work.
ALTER TABLE jobs ADD COLUMN role TEXT NOT NULL DEFAULT 'local'
    CHECK (role IN ('local', 'origin', 'host', 'parent'));
-- origin: the host chosen for it; host: the origin that sent it (PeerIds).
ALTER TABLE jobs ADD COLUMN peer TEXT;
-- host: the origin's pseudonym for its user (never the user name).
ALTER TABLE jobs ADD COLUMN peer_user TEXT;
-- origin: the host the researcher named (`node/panel`), if any; no other host is chosen then.
ALTER TABLE jobs ADD COLUMN pinned_host TEXT;
-- origin: the researcher allows re-submission to another host of the panel if this one is lost.
ALTER TABLE jobs ADD COLUMN allow_resubmit INTEGER NOT NULL DEFAULT 0;
-- origin: hosts given up on (unreachable or refused), space-separated PeerIds.
ALTER TABLE jobs ADD COLUMN excluded_hosts TEXT NOT NULL DEFAULT '';
-- Last time the peer answered about this job (ms); the unreachable timeout counts from it.
ALTER TABLE jobs ADD COLUMN peer_seen_at INTEGER;
-- origin: when the host acknowledged the end (delivery receipt or cancel); nothing more to say.
ALTER TABLE jobs ADD COLUMN peer_closed_at INTEGER;
-- origin: the host's result manifest (JSON list of files) once offered.
ALTER TABLE jobs ADD COLUMN remote_results TEXT;
-- child of a multi-panel job.
ALTER TABLE jobs ADD COLUMN parent_id TEXT REFERENCES jobs (id);

CREATE INDEX jobs_by_role ON jobs (role, state);
CREATE INDEX jobs_by_parent ON jobs (parent_id);

-- Principals of other nodes: a host's jobs from an origin are owned by that origin's row in
-- users ('peer:<PeerId>', disabled, no usable password), so per-owner fairness and quotas apply
-- per origin node.
