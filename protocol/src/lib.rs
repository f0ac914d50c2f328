//! `fedimpute-protocol`: everything two fedimpute nodes must agree on, and nothing else.
//!
//! This crate holds the wire-level contract of a federation: protocol identifiers and versions,
//! and (as the federation grows) the signed federation config, signed adverts, job and transfer
//! messages and their canonical encoding. It does no I/O and knows nothing of tokio, SQLite or
//! HTTP, so that another implementation could be written against it alone.
//!
//! It is not the place for a node's local concerns (users, audit log, files): those live in
//! `fedimpute-node`.

/// Version of the node software that built this crate, advertised to peers.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Major version of the node-to-node protocol. Nodes with different majors do not talk.
pub const PROTOCOL_MAJOR: u32 = 1;

/// The libp2p protocol-id prefix shared by every fedimpute stream protocol.
pub fn protocol_id(name: &str) -> String {
    format!("/fedimpute/{name}/{PROTOCOL_MAJOR}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_ids_carry_the_major_version() {
        assert_eq!(protocol_id("jobs"), "/fedimpute/jobs/1");
    }
}
