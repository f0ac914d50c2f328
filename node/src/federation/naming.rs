//! How members are named, to people and when a job is pinned to a host: by the entry the
//! federation admins signed (PeerId, institution, tags), never by what a member's own advert
//! says about itself. A member's advert may still call it something else; that self-description
//! is shown only beside the signed name, flagged when it differs.

use fedimpute_protocol::advert::Advert;
use fedimpute_protocol::federation::FederationDocument;
use serde::Serialize;

use super::policy::selects;

/// What a member's advert says about itself, set against the signed member list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SelfDescription {
    /// The node name in its advert (the federation admins did not sign it).
    pub node_name: String,
    /// The institution its advert names.
    pub institution: String,
    /// True when it does not match the signed entry: another institution, or a node name that
    /// names another member.
    pub differs: bool,
}

/// The advert's self-description, judged against the member list `doc`.
pub fn self_description(advert: &Advert, doc: &FederationDocument) -> SelfDescription {
    let differs = match doc.member(&advert.peer_id) {
        None => true,
        Some(signed) => {
            !advert.institution.trim().eq_ignore_ascii_case(signed.institution.trim())
                || doc.members.iter().any(|m| m.peer_id != advert.peer_id && selects(&advert.node_name, m))
        }
    };
    SelfDescription { node_name: advert.node_name.clone(), institution: advert.institution.clone(), differs }
}

#[cfg(test)]
mod tests {
    use fedimpute_protocol::federation::Member;

    use super::*;

    fn member(peer: &str, institution: &str) -> Member {
        Member {
            peer_id: peer.into(),
            institution: institution.into(),
            addresses: vec![],
            roles: vec![],
            tags: Default::default(),
        }
    }

    fn advert(peer: &str, name: &str, institution: &str) -> Advert {
        Advert { node_name: name.into(), institution: institution.into(), ..crate::federation::test_advert(peer) }
    }

    #[test]
    fn a_member_that_calls_itself_like_another_is_flagged() {
        let doc = FederationDocument {
            federation_id: "f".into(),
            version: 1,
            issued_at: time::OffsetDateTime::UNIX_EPOCH,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
            admins: fedimpute_protocol::federation::AdminSet { keys: vec![], threshold: 1 },
            members: vec![member("pb", "Host B"), member("pc", "Host C")],
            policy: Default::default(),
        };
        assert!(!self_description(&advert("pc", "c-node", "Host C"), &doc).differs);
        assert!(self_description(&advert("pc", "c-node", "Host B"), &doc).differs, "another institution");
        assert!(self_description(&advert("pc", "Host B", "Host C"), &doc).differs, "a name that names B");
        assert!(self_description(&advert("pc", "pb", "Host C"), &doc).differs, "B's PeerId as its name");
        assert!(self_description(&advert("px", "x", "X"), &doc).differs, "not a member");
    }
}
