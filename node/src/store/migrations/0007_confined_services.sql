-- External services are confined (see imputation/external): a WES server on this machine may
-- hand back `file://` outputs only from inside the one folder the admin named for it.
ALTER TABLE external_services ADD COLUMN outputs_dir TEXT;

-- A WES workflow is a workflow shipped with fedimpute (by name) or an http(s) URL, never a path
-- on the node: registrations that named the shipped workflow by its path keep working.
UPDATE external_services SET workflow_url = 'beagle-impute.cwl'
    WHERE kind = 'wes' AND workflow_url LIKE '%/beagle-impute.cwl'
      AND workflow_url NOT LIKE 'http://%' AND workflow_url NOT LIKE 'https://%';
