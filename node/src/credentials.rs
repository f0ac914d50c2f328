//! Credentials of external services, sealed at rest: AES-256-GCM under a key derived from the
//! node's identity key (`Keypair::derive_secret`), so the database alone does not reveal them
//! and no extra key file has to be kept. The service id is bound as associated data, so a
//! sealed token cannot be moved to another service's row.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::identity::NodeIdentity;

const KEY_DOMAIN: &[u8] = b"fedimpute external-service credentials v1";

/// Why a credential could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the node key cannot derive a sealing key")]
    NoKey,
    #[error("the stored credential does not open with this node's key (was the database moved to another node?)")]
    Open,
}

/// A credential as stored: the nonce followed by the ciphertext and tag.
pub struct Sealed(pub Vec<u8>);

/// A credential in memory. Its Debug form never shows the secret.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself, for the one header or field that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn key(identity: &NodeIdentity) -> Result<LessSafeKey, CredentialError> {
    let bytes = identity.keypair().derive_secret(KEY_DOMAIN).ok_or(CredentialError::NoKey)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| CredentialError::NoKey)?;
    Ok(LessSafeKey::new(unbound))
}

/// Seals `secret` for the service `service_id`.
pub fn seal(identity: &NodeIdentity, service_id: &str, secret: &Secret) -> Result<Sealed, CredentialError> {
    let nonce_bytes = crate::secrets::random_bytes::<NONCE_LEN>();
    let mut data = secret.expose().as_bytes().to_vec();
    key(identity)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(service_id.as_bytes()),
            &mut data,
        )
        .map_err(|_| CredentialError::NoKey)?;
    let mut out = nonce_bytes.to_vec();
    out.extend(data);
    Ok(Sealed(out))
}

/// Opens what [`seal`] made for `service_id`.
pub fn open(identity: &NodeIdentity, service_id: &str, sealed: &[u8]) -> Result<Secret, CredentialError> {
    if sealed.len() < NONCE_LEN {
        return Err(CredentialError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CredentialError::Open)?;
    let mut data = body.to_vec();
    let plain = key(identity)?
        .open_in_place(nonce, Aad::from(service_id.as_bytes()), &mut data)
        .map_err(|_| CredentialError::Open)?;
    String::from_utf8(plain.to_vec()).map(Secret).map_err(|_| CredentialError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_the_same_node_and_service() {
        let (node, other) = (NodeIdentity::generate(), NodeIdentity::generate());
        let secret = Secret::new("cg-token-123".into());
        let sealed = seal(&node, "michigan", &secret).unwrap();
        assert!(!sealed.0.windows(12).any(|w| w == b"cg-token-123"), "stored in clear");
        assert_eq!(open(&node, "michigan", &sealed.0).unwrap().expose(), "cg-token-123");
        assert!(open(&other, "michigan", &sealed.0).is_err());
        assert!(open(&node, "topmed", &sealed.0).is_err());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }
}
