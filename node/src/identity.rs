//! The node's ed25519 identity: its libp2p PeerId, and the key that signs its adverts and its
//! audit log. Stored as the 32-byte secret seed, hex-encoded, in a file of mode 0600.

use std::path::Path;

use libp2p_identity::{Keypair, PeerId, PublicKey};

use crate::secrets;

/// A node key that could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read node key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write node key {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("node key {path} is not a hex-encoded 32-byte ed25519 seed")]
    Malformed { path: String },
}

/// The node's key pair.
#[derive(Clone)]
pub struct NodeIdentity {
    keypair: Keypair,
}

impl NodeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self { keypair: Keypair::generate_ed25519() }
    }

    /// Reads the key file written by [`NodeIdentity::save`].
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| IdentityError::Read { path: path.display().to_string(), source })?;
        let malformed = || IdentityError::Malformed { path: path.display().to_string() };
        let mut seed = hex::decode(text.trim()).map_err(|_| malformed())?;
        if seed.len() != 32 {
            return Err(malformed());
        }
        let keypair = Keypair::ed25519_from_bytes(&mut seed).map_err(|_| malformed())?;
        Ok(Self { keypair })
    }

    /// Writes the secret seed to `path` with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        // The keypair is always ed25519: generate() and load() make no other kind.
        let ed = self.keypair.clone().try_into_ed25519().expect("node keys are ed25519");
        let seed = hex::encode(ed.secret().as_ref());
        secrets::write_private_file(path, format!("{seed}\n").as_bytes())
            .map_err(|source| IdentityError::Write { path: path.display().to_string(), source })
    }

    /// The libp2p PeerId derived from the public key.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.keypair.public()
    }

    /// The full keypair, for the libp2p swarm.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// An ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        // Signing with an ed25519 key cannot fail; the Result exists for RSA/ECDSA keys.
        self.keypair.sign(message).expect("ed25519 signing is infallible")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = NodeIdentity::generate();
        id.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = NodeIdentity::load(&path).unwrap();
        assert_eq!(loaded.peer_id(), id.peer_id());
        let sig = loaded.sign(b"m");
        assert!(id.public().verify(b"m", &sig));
    }

    #[test]
    fn malformed_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        std::fs::write(&path, "zz").unwrap();
        let err = NodeIdentity::load(&path).err().unwrap().to_string();
        assert!(err.contains("node.key"), "{err}");
    }
}
