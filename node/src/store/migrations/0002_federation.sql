-- Federation configs this node has accepted (the highest version is current) and the catalog of
-- adverts received from members.

CREATE TABLE federation_configs (
    version             INTEGER PRIMARY KEY,
    federation_id       TEXT    NOT NULL,
    digest              TEXT    NOT NULL,
    document            TEXT    NOT NULL,
    accepted_at         INTEGER NOT NULL,
    -- 'cli', 'api' or 'peer:<PeerId>'
    source              TEXT    NOT NULL
);

CREATE TABLE catalog_adverts (
    peer_id             TEXT    PRIMARY KEY,
    seq                 INTEGER NOT NULL,
    signed_advert       TEXT    NOT NULL,
    received_at         INTEGER NOT NULL
);
