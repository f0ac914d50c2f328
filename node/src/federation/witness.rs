//! Audit heads witnessed by peers: the answer to tail truncation.
//!
//! A hash chain shows an edited or removed row in its middle, but a log whose newest rows were
//! deleted is still a valid, shorter chain. So every advert carries the author's audit head
//! (row count and newest hash) under the author's signature, and every member keeps the highest
//! head it has seen of each other member, with the signed advert that carried it. A node asks
//! its peers what they witnessed of it (on connecting, and as their adverts arrive) and checks
//! its own log still holds that head: the same row count at least, and the same hash at that
//! row. If not, the mismatch is recorded (and stays recorded), audited, and shown on `/readyz`,
//! `/metrics` and `/api/v1/audit/verify`. A peer cannot make this up: the head it returns must
//! bear this node's own signature.

use fedimpute_protocol::advert::{Advert, SignedAdvert};
use libp2p::PeerId;

use crate::store::witness::HeadMismatch;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

/// Keeps the audit head of an accepted advert (already verified, by a member).
pub async fn witness(store: &Store, advert: &Advert, signed: &SignedAdvert) -> Result<(), StoreError> {
    let Some(head) = &advert.audit_head else { return Ok(()) };
    let text = serde_json::to_string(signed).unwrap_or_default();
    store.witness_audit_head(&advert.peer_id, head, &text).await
}

/// What this node witnessed of `asker`: the signed advert with the highest head.
pub async fn witnessed(store: &Store, asker: &str) -> Option<SignedAdvert> {
    let (_, text) = store.witnessed_audit_head(asker).await.ok().flatten()?;
    serde_json::from_str(&text).ok()
}

/// Why a witness's answer was not usable.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("the witnessed advert is not signed by this node: {0}")]
    NotOurs(String),
    #[error("the witnessed advert carries no audit head")]
    NoHead,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a head `witness` says it saw of this node (`me`) against the log; `Some` when the log
/// no longer holds it.
pub async fn judge(
    store: &Store,
    me: &PeerId,
    witness: &str,
    signed: &SignedAdvert,
) -> Result<Option<HeadMismatch>, WitnessError> {
    let advert = signed.verify().map_err(|e| WitnessError::NotOurs(e.to_string()))?;
    if advert.peer_id != me.to_string() {
        return Err(WitnessError::NotOurs(format!("its author is {}", advert.peer_id)));
    }
    let head = advert.audit_head.ok_or(WitnessError::NoHead)?;
    let own = store.audit_head().await?;
    let holds = own.count >= head.count && store.audit_hash_at(head.count).await?.as_deref() == Some(&head.hash);
    Ok((!holds).then(|| HeadMismatch {
        peer_id: witness.to_string(),
        witnessed_count: i64::try_from(head.count).unwrap_or(i64::MAX),
        witnessed_hash: head.hash,
        own_count: i64::try_from(own.count).unwrap_or(i64::MAX),
        detected_at: now_ms(),
    }))
}

#[cfg(test)]
mod tests {
    use fedimpute_protocol::advert::AuditHead;

    use super::*;
    use crate::identity::NodeIdentity;
    use crate::store::audit::{AuditEvent, Outcome};

    fn advert_with(author: &NodeIdentity, head: AuditHead) -> SignedAdvert {
        let advert = Advert { audit_head: Some(head), ..crate::federation::test_advert(&author.peer_id().to_string()) };
        SignedAdvert::sign(&advert, |m| author.sign(m)).unwrap()
    }

    #[tokio::test]
    async fn a_truncated_or_rewritten_log_is_caught_and_a_forged_witness_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), true).await.unwrap();
        let me = NodeIdentity::generate();
        for i in 0..5 {
            store.append_audit(&me, AuditEvent::new("t", "local", &format!("a.{i}"), Outcome::Success)).await.unwrap();
        }
        let head = store.audit_head().await.unwrap();
        let witnessed = advert_with(&me, head.clone());
        assert_eq!(judge(&store, &me.peer_id(), "w", &witnessed).await.unwrap(), None);
        // An older head still held is fine too.
        let older = AuditHead { count: 2, hash: store.audit_hash_at(2).await.unwrap().unwrap() };
        assert_eq!(judge(&store, &me.peer_id(), "w", &advert_with(&me, older)).await.unwrap(), None);

        // The newest rows deleted, then the log grown past the old count again.
        sqlx::query("DELETE FROM audit_log WHERE seq > 3").execute(store.pool()).await.unwrap();
        let short = judge(&store, &me.peer_id(), "w", &witnessed).await.unwrap().unwrap();
        assert_eq!((short.witnessed_count, short.own_count), (5, 3));
        for i in 0..4 {
            store.append_audit(&me, AuditEvent::new("t", "local", &format!("b.{i}"), Outcome::Success)).await.unwrap();
        }
        let rewritten = judge(&store, &me.peer_id(), "w", &witnessed).await.unwrap().unwrap();
        assert_eq!((rewritten.witnessed_count, rewritten.own_count), (5, 7));

        // A peer claiming a head this node never signed is not believed.
        let stranger = NodeIdentity::generate();
        let forged = advert_with(&stranger, AuditHead { count: 1000, hash: "00".into() });
        assert!(judge(&store, &me.peer_id(), "w", &forged).await.is_err());
        let mut tampered = witnessed.clone();
        tampered.advert["audit_head"]["count"] = 1000.into();
        assert!(judge(&store, &me.peer_id(), "w", &tampered).await.is_err());
    }
}
