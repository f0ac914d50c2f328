-- The repairs made to a job's uploads before QC (bgzipped, renamed, split, sorted), as JSON,
-- for the QC report.
ALTER TABLE jobs ADD COLUMN input_repairs TEXT;
