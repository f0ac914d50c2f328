//! `fedimpute-protocol`: everything two fedimpute nodes must agree on, and nothing else.
//!
//! - [`canonical`]: the canonical JSON encoding (RFC 8785) of everything that is signed;
//! - [`federation`]: the signed federation config (members, admins, policy) and the rules by
//!   which a node accepts a new version;
//! - [`advert`]: the signed advert a node publishes about its services and panels;
//! - [`messages`]: request-response messages about the federation (configs, catalogs);
//! - [`jobs`]: the job protocol between an origin and the node hosting a panel;
//! - [`transfer`]: the file protocol that moves a job's inputs and results;
//! - protocol identifiers and versions (below).
//!
//! It does no I/O and knows nothing of tokio, SQLite or HTTP, so that another implementation
//! could be written against it alone. It is not the place for a node's local concerns (users,
//! audit log, files): those live in `fedimpute-node`.

pub mod advert;
pub mod canonical;
pub mod federation;
pub mod jobs;
pub mod messages;
pub mod transfer;

/// Version of the node software that built this crate, advertised to peers.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Major version of the node-to-node protocol. Nodes with different majors do not talk.
pub const PROTOCOL_MAJOR: u32 = 1;

/// The libp2p protocol-id prefix shared by every fedimpute stream protocol.
pub fn protocol_id(name: &str) -> String {
    format!("/fedimpute/{name}/{PROTOCOL_MAJOR}")
}

/// The gossipsub topic carrying adverts for `federation_id`.
pub fn advert_topic(federation_id: &str) -> String {
    format!("fedimpute/{federation_id}/adverts/{PROTOCOL_MAJOR}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_ids_carry_the_major_version() {
        assert_eq!(protocol_id("jobs"), "/fedimpute/jobs/1");
        assert_eq!(advert_topic("afr"), "fedimpute/afr/adverts/1");
    }
}
