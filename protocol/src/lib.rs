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

/// The protocol a node names in its libp2p identify exchange: `/fedimpute/<major>`. Peers
/// compare majors on connecting, before any fedimpute stream is opened.
pub fn identify_protocol() -> String {
    format!("/fedimpute/{PROTOCOL_MAJOR}")
}

/// The software a node names in its identify exchange: `fedimpute/<version>`.
pub fn agent_version() -> String {
    format!("fedimpute/{SOFTWARE_VERSION}")
}

/// Whether a peer that identified itself with `protocol` and `agent` speaks this node's
/// protocol major; if not, why not, in words an operator can act on. The compatibility rule:
/// nodes of the same protocol major talk whatever their software versions; a new major is
/// only released with a federation-wide upgrade.
pub fn check_peer_protocol(protocol: &str, agent: &str) -> Result<(), String> {
    let major = protocol.strip_prefix("/fedimpute/").and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(PROTOCOL_MAJOR) => Ok(()),
        Some(other) => Err(format!(
            "it speaks fedimpute protocol {other} ({agent}), this node speaks protocol {PROTOCOL_MAJOR} ({}); \
             one of the two must be upgraded",
            agent_version()
        )),
        None => Err(format!("it does not speak the fedimpute protocol (it names {protocol:?}, {agent:?})")),
    }
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

    #[test]
    fn a_peer_of_another_major_is_refused_with_both_versions_named() {
        assert_eq!(check_peer_protocol(&identify_protocol(), "fedimpute/0.9.0"), Ok(()));
        let newer = format!("/fedimpute/{}", PROTOCOL_MAJOR + 1);
        let reason = check_peer_protocol(&newer, "fedimpute/9.0.0").unwrap_err();
        assert!(reason.contains(&format!("protocol {}", PROTOCOL_MAJOR + 1)), "{reason}");
        assert!(reason.contains("fedimpute/9.0.0") && reason.contains(&agent_version()), "{reason}");
        for stranger in ["/ipfs/0.1.0", "/fedimpute/", "/fedimpute/x", ""] {
            let reason = check_peer_protocol(stranger, "go-ipfs").unwrap_err();
            assert!(reason.contains("does not speak the fedimpute protocol"), "{stranger}: {reason}");
        }
    }
}
