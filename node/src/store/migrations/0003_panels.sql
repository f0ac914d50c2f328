-- Reference panels hosted by this node, one row per chromosome file.

CREATE TABLE panels (
    id                  TEXT    PRIMARY KEY,
    name                TEXT    NOT NULL,
    build               TEXT    NOT NULL CHECK (build IN ('hg19', 'hg38')),
    -- JSON array of population labels
    populations         TEXT    NOT NULL,
    -- 'preparing', 'ready' or 'failed'
    status              TEXT    NOT NULL,
    error               TEXT,
    has_map             INTEGER NOT NULL DEFAULT 0,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE panel_chromosomes (
    panel_id            TEXT    NOT NULL REFERENCES panels (id) ON DELETE CASCADE,
    chromosome          TEXT    NOT NULL,
    samples             INTEGER NOT NULL,
    sites               INTEGER NOT NULL,
    PRIMARY KEY (panel_id, chromosome)
);
