//! Passwords: argon2id hashes (PHC strings) and the node's password policy.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted: hashing cost grows with length, so bound it.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a new password against the policy; the error says what to change.
pub fn check_policy(username: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("the password must have at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("the password must have at most {MAX_PASSWORD_BYTES} bytes"));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err("the password must not contain the user name".to_string());
    }
    Ok(())
}

/// Checks a user name: 1 to 64 characters from letters, digits and `._-@`.
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-@".contains(c);
    if username.is_empty() || username.len() > 64 || !username.chars().all(ok_char) {
        return Err("a user name has 1 to 64 characters: letters, digits and . _ - @".to_string());
    }
    Ok(())
}

/// Hashes a password with argon2id and a fresh salt. CPU-heavy: call from a blocking thread.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        // Default parameters and a fresh salt from the OS: only an OS RNG failure gets here.
        .expect("argon2 hashing with default parameters")
        .to_string()
}

/// True if `password` matches the PHC string `stored`. CPU-heavy: call from a blocking thread.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real check, for unknown user names, so timing does not reveal
/// which names exist.
pub fn verify_against_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash("dummy password for timing"));
    let _ = verify(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_short_and_name_bearing_passwords() {
        assert!(check_policy("alice", "short").is_err());
        assert!(check_policy("alice", "xxALICExx-long-enough").unwrap_err().contains("user name"));
        assert!(check_policy("alice", "correct horse battery").is_ok());
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong horse battery", &h));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn usernames_are_restricted() {
        assert!(check_username("dr.smith@uct").is_ok());
        assert!(check_username("../etc").is_err());
        assert!(check_username("").is_err());
    }
}
