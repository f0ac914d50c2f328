//! Federation admin keys at rest. The 32-byte ed25519 seed is sealed with a passphrase: Argon2id
//! (64 MiB, 3 passes) derives a 256-bit key from it and a random salt, and AES-256-GCM
//! (aws-lc-rs) encrypts the seed, the file's header lines bound as associated data, so a changed
//! parameter fails to open as surely as a wrong passphrase. A file holding the bare hex seed
//! (written with `--unencrypted`, and by versions before this one) is still read.

use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::credentials::Secret;

const MAGIC: &str = "fedimpute-admin-key v1";
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_PASSES: u32 = 3;
/// The shortest passphrase `seal` accepts.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Why a key file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AdminKeyError {
    #[error("not an admin key made by `fedimpute federation keygen`")]
    NotAKey,
    #[error("the admin key is encrypted: give its passphrase (--passphrase-file)")]
    PassphraseNeeded,
    #[error("wrong passphrase, or the key file was changed")]
    WrongPassphrase,
    #[error("the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")]
    WeakPassphrase,
    #[error("key derivation: {0}")]
    Kdf(String),
}

fn derive(passphrase: &Secret, salt: &[u8], memory_kib: u32, passes: u32) -> Result<[u8; 32], AdminKeyError> {
    let params = Params::new(memory_kib, passes, 1, Some(32)).map_err(|e| AdminKeyError::Kdf(e.to_string()))?;
    let mut key = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose().as_bytes(), salt, &mut key)
        .map_err(|e| AdminKeyError::Kdf(e.to_string()))?;
    Ok(key)
}

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key fits AES-256-GCM"))
}

/// The key file's text for `seed`, sealed with `passphrase`. CPU- and memory-heavy (Argon2id).
pub fn seal(seed: &[u8; 32], passphrase: &Secret) -> Result<String, AdminKeyError> {
    if passphrase.expose().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(AdminKeyError::WeakPassphrase);
    }
    let salt: [u8; 16] = crate::secrets::random_bytes();
    let nonce: [u8; 12] = crate::secrets::random_bytes();
    let header = format!(
        "{MAGIC}\nargon2id m={KDF_MEMORY_KIB} t={KDF_PASSES} p=1\nsalt {}\nnonce {}\n",
        hex::encode(salt),
        hex::encode(nonce)
    );
    let key = derive(passphrase, &salt, KDF_MEMORY_KIB, KDF_PASSES)?;
    let mut sealed = seed.to_vec();
    cipher(&key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(header.as_bytes()), &mut sealed)
        .map_err(|_| AdminKeyError::Kdf("encryption failed".into()))?;
    Ok(format!("{header}sealed {}\n", hex::encode(sealed)))
}

/// True if `text` is a sealed key (not a bare hex seed).
pub fn is_sealed(text: &str) -> bool {
    text.starts_with(MAGIC)
}

/// The seed in a key file's `text`; `passphrase` is asked for only if the key is sealed.
pub fn open(text: &str, passphrase: impl FnOnce() -> Option<Secret>) -> Result<[u8; 32], AdminKeyError> {
    if !is_sealed(text) {
        return hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(AdminKeyError::NotAKey);
    }
    let lines: Vec<&str> = text.lines().collect();
    let [magic, kdf, salt, nonce, sealed] = lines[..] else { return Err(AdminKeyError::NotAKey) };
    let field = |line: &str, name: &str| line.strip_prefix(name).and_then(|v| hex::decode(v.trim()).ok());
    let (Some(salt), Some(nonce), Some(mut sealed)) = (
        field(salt, "salt "),
        field(nonce, "nonce ").and_then(|n| <[u8; 12]>::try_from(n).ok()),
        field(sealed, "sealed "),
    ) else {
        return Err(AdminKeyError::NotAKey);
    };
    let mut memory_kib = None;
    let mut passes = None;
    for item in kdf.strip_prefix("argon2id ").ok_or(AdminKeyError::NotAKey)?.split(' ') {
        match item.split_once('=') {
            Some(("m", v)) => memory_kib = v.parse().ok(),
            Some(("t", v)) => passes = v.parse().ok(),
            Some(("p", "1")) => {}
            _ => return Err(AdminKeyError::NotAKey),
        }
    }
    let (Some(memory_kib), Some(passes)) = (memory_kib, passes) else { return Err(AdminKeyError::NotAKey) };
    // A file crafted to make the derivation take forever or all memory is refused.
    if !(8..=4 * 1024 * 1024).contains(&memory_kib) || !(1..=64).contains(&passes) {
        return Err(AdminKeyError::NotAKey);
    }
    let passphrase = passphrase().ok_or(AdminKeyError::PassphraseNeeded)?;
    let key = derive(&passphrase, &salt, memory_kib, passes)?;
    let header = format!("{magic}\n{kdf}\nsalt {}\nnonce {}\n", hex::encode(&salt), hex::encode(nonce));
    let seed = cipher(&key)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(header.as_bytes()), &mut sealed)
        .map_err(|_| AdminKeyError::WrongPassphrase)?;
    seed.try_into().map_err(|_| AdminKeyError::NotAKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.to_string())
    }

    #[test]
    fn a_sealed_key_opens_with_its_passphrase_only() {
        let seed = [7u8; 32];
        let text = seal(&seed, &secret("correct horse battery")).unwrap();
        assert!(is_sealed(&text) && !text.contains(&hex::encode(seed)), "the seed is not in the file");
        assert_eq!(open(&text, || Some(secret("correct horse battery"))).unwrap(), seed);
        assert!(matches!(open(&text, || Some(secret("wrong horse battery"))), Err(AdminKeyError::WrongPassphrase)));
        assert!(matches!(open(&text, || None), Err(AdminKeyError::PassphraseNeeded)));
        // Any change to the header (here a weaker KDF) fails like a wrong passphrase.
        let weakened = text.replace("t=3", "t=1");
        assert!(matches!(
            open(&weakened, || Some(secret("correct horse battery"))),
            Err(AdminKeyError::WrongPassphrase)
        ));
    }

    #[test]
    fn bare_hex_seeds_still_open_and_short_passphrases_are_refused() {
        let seed = [9u8; 32];
        assert_eq!(open(&format!("{}\n", hex::encode(seed)), || None).unwrap(), seed);
        assert!(matches!(open("not a key", || None), Err(AdminKeyError::NotAKey)));
        assert!(matches!(seal(&seed, &secret("short")), Err(AdminKeyError::WeakPassphrase)));
        let text = seal(&seed, &secret("correct horse battery")).unwrap();
        let greedy = text.replace("m=65536", "m=99999999");
        assert!(matches!(open(&greedy, || Some(secret("x"))), Err(AdminKeyError::NotAKey)));
    }
}
