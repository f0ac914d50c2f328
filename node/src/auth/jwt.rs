//! Short-lived access tokens: HS256 JWTs signed with a key kept in the data directory.
//!
//! Only HS256 is accepted (so `alg: none` and algorithm-confusion tokens are refused), and
//! `exp`, `iat`, `iss` and `aud` must all be present and hold.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::secrets;
use crate::store::users::{Role, User};
use crate::time::now_secs;

/// The audience every node's access tokens are minted for.
pub const AUDIENCE: &str = "fedimpute-api";

/// Clock skew tolerated when checking `exp` and `iat`, in seconds.
const LEEWAY_SECS: i64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user's id, as a string (RFC 7519 `sub`).
    pub sub: String,
    /// The user's name, for logs and the UI.
    pub name: String,
    /// The role when the token was minted; requests re-read the current one from the store.
    pub role: Role,
    /// The session the token belongs to; every request checks it is still live, so ending the
    /// session ends the token.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// The node's JWT signing key and validation rules.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl_secs: i64,
}

/// Why a token was refused. Deliberately coarse: the client only learns "401".
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct JwtError(String);

impl JwtKeys {
    /// Creates a new random 256-bit key file (mode 0600).
    pub fn create_key_file(path: &Path) -> std::io::Result<()> {
        secrets::write_private_file(path, hex::encode(secrets::random_bytes::<32>()).as_bytes())
    }

    /// Loads the key at `path`. `issuer` names this node (its PeerId).
    pub fn load(path: &Path, issuer: &str, ttl_secs: u64) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading JWT key {}", path.display()))?;
        let secret = hex::decode(text.trim()).with_context(|| format!("JWT key {} is not hex", path.display()))?;
        anyhow::ensure!(secret.len() >= 32, "JWT key {} is shorter than 256 bits", path.display());
        Ok(Self::from_secret(&secret, issuer, ttl_secs))
    }

    fn from_secret(secret: &[u8], issuer: &str, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // `sid` is required too: it is a plain field of AccessClaims, so a token without it does not decode.
        validation.leeway = LEEWAY_SECS as u64;
        Self {
            // from_secret only fails on an empty secret, which load() rules out.
            encoding: EncodingKey::from_secret(secret).expect("non-empty HMAC secret"),
            decoding: DecodingKey::from_secret(secret).expect("non-empty HMAC secret"),
            validation,
            issuer: issuer.to_string(),
            ttl_secs: ttl_secs as i64,
        }
    }

    /// Lifetime of the tokens this key mints, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Mints an access token for `user` in session `session_id`.
    pub fn issue(&self, user: &User, session_id: &str) -> String {
        let iat = now_secs();
        let claims = AccessClaims {
            sub: user.id.to_string(),
            name: user.username.clone(),
            role: user.role,
            sid: session_id.to_string(),
            iat,
            exp: iat + self.ttl_secs,
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims")
    }

    /// Checks a token's signature, algorithm and claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| JwtError(e.to_string()))?;
        // jsonwebtoken requires iat but does not check it; a token from the future is forged
        // or minted by a node with a broken clock.
        if data.claims.iat > now_secs() + LEEWAY_SECS {
            return Err(JwtError("issued in the future".into()));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn user() -> User {
        User {
            id: 7,
            username: "alice".into(),
            password_hash: String::new(),
            role: Role::Researcher,
            disabled: false,
            created_at: 0,
            updated_at: 0,
            sessions_valid_after: 0,
            must_change_password: false,
            email: None,
            email_notifications: true,
        }
    }

    #[test]
    fn issued_token_verifies() {
        let keys = JwtKeys::from_secret(&[1; 32], "node-a", 900);
        let claims = keys.verify(&keys.issue(&user(), "s1")).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("7", Role::Researcher));
    }

    #[test]
    fn other_issuer_or_key_is_refused() {
        let a = JwtKeys::from_secret(&[1; 32], "node-a", 900);
        let b = JwtKeys::from_secret(&[1; 32], "node-b", 900);
        let c = JwtKeys::from_secret(&[2; 32], "node-a", 900);
        let token = a.issue(&user(), "s1");
        assert!(b.verify(&token).is_err());
        assert!(c.verify(&token).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = JwtKeys::from_secret(&[1; 32], "node-a", 900);
        let token = keys.issue(&user(), "s1");
        let payload = token.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
    }
}
