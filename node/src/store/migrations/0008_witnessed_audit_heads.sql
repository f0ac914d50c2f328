-- Audit heads witnessed by peers (see federation/witness.rs).

-- The highest audit head seen in each member's adverts, with the signed advert that carried it
-- (the member's own signature over it is the proof of what it had logged).
CREATE TABLE witnessed_audit_heads (
    peer_id             TEXT    PRIMARY KEY,
    count               INTEGER NOT NULL,
    hash                TEXT    NOT NULL,
    signed_advert       TEXT    NOT NULL,
    seen_at             INTEGER NOT NULL
);

-- Heads of this node's own log that a peer witnessed and the log no longer holds.
CREATE TABLE audit_head_mismatches (
    peer_id             TEXT    NOT NULL,
    witnessed_count     INTEGER NOT NULL,
    witnessed_hash      TEXT    NOT NULL,
    own_count           INTEGER NOT NULL,
    detected_at         INTEGER NOT NULL,
    PRIMARY KEY (peer_id, witnessed_count, witnessed_hash)
);
