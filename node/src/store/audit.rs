//! The audit log: append-only, hash-chained, and signed by the node key.
//!
//! Row `seq` stores `prev_hash` (the `hash` of row `seq - 1`, or 64 zeros for row 1), its own
//! `hash` = SHA-256 of the row's canonical content (see [`canonical_content`]), and an ed25519
//! signature of that hash by the node key. [`Store::verify_audit`] walks the chain: an edited
//! field breaks that row's hash, a deleted or inserted row breaks the link to its neighbour, a
//! swap breaks both, and rewriting the whole chain after an edit needs the node's private key.
//! Deleting the newest rows leaves a valid shorter chain; that is what the signed checkpoints of
//! a later layer (the count published beside each advert) are for.

use libp2p_identity::PublicKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::identity::NodeIdentity;
use crate::time::now_ms;

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether an audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    /// The name stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// Something that happened, about to be recorded.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who did it: `user:<name>`, `cli:<os user>`, `node`, or `peer:<PeerId>`.
    pub actor: String,
    /// Where the request came from: an IP address, `local` for the CLI, or a PeerId.
    pub source_ip: String,
    /// Dotted action name, e.g. `auth.login`, `user.create`.
    pub action: String,
    /// What it was done to (a user name, a token id), or empty.
    pub target: String,
    pub outcome: Outcome,
    /// Further facts as JSON. Never a secret.
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event with no target and no details.
    pub fn new(actor: impl Into<String>, source_ip: impl Into<String>, action: &str, outcome: Outcome) -> Self {
        Self {
            actor: actor.into(),
            source_ip: source_ip.into(),
            action: action.to_string(),
            target: String::new(),
            outcome,
            details: serde_json::Value::Null,
        }
    }

    /// Sets the target.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// One stored row of the log.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub source_ip: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// JSON text.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
    pub signature: String,
}

/// The bytes whose SHA-256 is a row's hash: a JSON array of the row's fields in a fixed order
/// (JSON arrays of strings and integers serialize to one exact byte string).
pub fn canonical_content(r: &AuditRecord) -> Vec<u8> {
    serde_json::to_vec(&(
        r.seq,
        r.at,
        &r.actor,
        &r.source_ip,
        &r.action,
        &r.target,
        &r.outcome,
        &r.details,
        &r.prev_hash,
    ))
    .expect("a tuple of strings and integers serializes")
}

fn row_hash(r: &AuditRecord) -> String {
    hex::encode(Sha256::digest(canonical_content(r)))
}

/// Filters for reading the log; all optional.
#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only rows with a smaller `seq` (paging backwards from the newest).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// Where verification found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBreak {
    /// The `seq` of the first row that does not verify (or the seq expected where one is missing).
    pub seq: i64,
    pub reason: String,
}

/// Result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    pub rows: i64,
    pub head_hash: String,
    pub first_break: Option<AuditBreak>,
}

impl Store {
    /// Appends an event, chained to the current head and signed by `signer`.
    pub async fn append_audit(&self, signer: &NodeIdentity, event: AuditEvent) -> Result<AuditRecord, StoreError> {
        // BEGIN IMMEDIATE takes the write lock before reading the head, so two writers (the
        // daemon and the admin CLI, or two tasks) can never chain onto the same head.
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
        let mut record = AuditRecord {
            seq: prev_seq + 1,
            at: now_ms(),
            actor: event.actor,
            source_ip: event.source_ip,
            action: event.action,
            target: event.target,
            outcome: event.outcome.as_str().to_string(),
            details: event.details.to_string(),
            prev_hash,
            hash: String::new(),
            signature: String::new(),
        };
        record.hash = row_hash(&record);
        record.signature = hex::encode(signer.sign(record.hash.as_bytes()));
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, source_ip, action, target, outcome, details, prev_hash, hash, signature) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.seq)
        .bind(record.at)
        .bind(&record.actor)
        .bind(&record.source_ip)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.outcome)
        .bind(&record.details)
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .bind(&record.signature)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Reads the log, newest first, with the given filters.
    pub async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = sqlx::QueryBuilder::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(action) = &q.action {
            // A trailing '.' selects a family: `auth.` matches auth.login, auth.logout, ...
            if let Some(prefix) = action.strip_suffix('.') {
                sql.push(" AND substr(action, 1, ").push_bind(prefix.len() as i64 + 1);
                sql.push(") = ").push_bind(format!("{prefix}."));
            } else {
                sql.push(" AND action = ").push_bind(action.clone());
            }
        }
        if let Some(actor) = &q.actor {
            sql.push(" AND actor = ").push_bind(actor.clone());
        }
        if let Some(outcome) = &q.outcome {
            sql.push(" AND outcome = ").push_bind(outcome.clone());
        }
        if let Some(since) = q.since_ms {
            sql.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = q.until_ms {
            sql.push(" AND at < ").push_bind(until);
        }
        if let Some(before) = q.before_seq {
            sql.push(" AND seq < ").push_bind(before);
        }
        sql.push(" ORDER BY seq DESC LIMIT ").push_bind(q.limit);
        Ok(sql.build_query_as().fetch_all(self.pool()).await?)
    }

    /// Walks the whole chain in `seq` order and reports the first row that does not verify.
    pub async fn verify_audit(&self, node_key: &PublicKey) -> Result<AuditVerification, StoreError> {
        use futures_util::TryStreamExt;
        // Physical order (rowid) is what an attacker edits; walking by seq and checking that seq
        // counts 1, 2, 3... without gaps catches deletion and insertion as well as reordering.
        let mut rows = sqlx::query_as::<_, AuditRecord>("SELECT * FROM audit_log ORDER BY seq").fetch(self.pool());
        let mut expected_seq = 1;
        let mut prev_hash = GENESIS_HASH.to_string();
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let broken = |reason: String| AuditBreak { seq: row.seq, reason };
            let problem = if row.seq != expected_seq {
                Some(AuditBreak {
                    seq: expected_seq,
                    reason: format!("row {expected_seq} is missing (next row is {})", row.seq),
                })
            } else if row.prev_hash != prev_hash {
                Some(broken("prev_hash does not match the hash of the row before it".into()))
            } else if row_hash(&row) != row.hash {
                Some(broken("content does not match its hash (the row was changed)".into()))
            } else if !hex::decode(&row.signature).is_ok_and(|sig| node_key.verify(row.hash.as_bytes(), &sig)) {
                Some(broken("signature does not verify with this node's key".into()))
            } else {
                None
            };
            if let Some(first_break) = problem {
                return Ok(AuditVerification { rows: count, head_hash: prev_hash, first_break: Some(first_break) });
            }
            prev_hash = row.hash;
            expected_seq += 1;
            count += 1;
        }
        Ok(AuditVerification { rows: count, head_hash: prev_hash, first_break: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_rows(n: usize) -> (tempfile::TempDir, Store, NodeIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db"), true).await.unwrap();
        let id = NodeIdentity::generate();
        for i in 0..n {
            let ev = AuditEvent::new("user:a", "127.0.0.1", "test.event", Outcome::Success).target(format!("t{i}"));
            store.append_audit(&id, ev).await.unwrap();
        }
        (dir, store, id)
    }

    #[tokio::test]
    async fn intact_chain_verifies() {
        let (_d, store, id) = store_with_rows(5).await;
        let v = store.verify_audit(&id.public()).await.unwrap();
        assert_eq!(v.rows, 5);
        assert_eq!(v.first_break, None);
    }

    #[tokio::test]
    async fn edited_row_is_named() {
        let (_d, store, id) = store_with_rows(5).await;
        sqlx::query("UPDATE audit_log SET target = 'x' WHERE seq = 3").execute(store.pool()).await.unwrap();
        let v = store.verify_audit(&id.public()).await.unwrap();
        assert_eq!(v.first_break.unwrap().seq, 3);
    }

    #[tokio::test]
    async fn a_chain_rewritten_without_the_node_key_fails_on_the_signature() {
        let (_d, store, id) = store_with_rows(3).await;
        let mut row: AuditRecord =
            sqlx::query_as("SELECT * FROM audit_log WHERE seq = 3").fetch_one(store.pool()).await.unwrap();
        row.target = "forged".into();
        let forged_hash = row_hash(&row);
        sqlx::query("UPDATE audit_log SET target = 'forged', hash = ? WHERE seq = 3")
            .bind(forged_hash)
            .execute(store.pool())
            .await
            .unwrap();
        let v = store.verify_audit(&id.public()).await.unwrap();
        let b = v.first_break.unwrap();
        assert_eq!(b.seq, 3);
        assert!(b.reason.contains("signature"), "{}", b.reason);
    }

    #[tokio::test]
    async fn concurrent_appends_keep_one_chain() {
        let (_d, store, id) = store_with_rows(0).await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    store.append_audit(&id, AuditEvent::new("node", "", "t", Outcome::Success)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let v = store.verify_audit(&id.public()).await.unwrap();
        assert_eq!((v.rows, v.first_break), (80, None));
    }

    #[tokio::test]
    async fn family_filter_matches_by_prefix() {
        let (_d, store, id) = store_with_rows(2).await;
        store.append_audit(&id, AuditEvent::new("a", "", "auth.login", Outcome::Failure)).await.unwrap();
        store.append_audit(&id, AuditEvent::new("a", "", "authx", Outcome::Success)).await.unwrap();
        let q = AuditQuery { action: Some("auth.".into()), limit: 10, ..Default::default() };
        let rows = store.query_audit(&q).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].action, "auth.login");
    }
}
