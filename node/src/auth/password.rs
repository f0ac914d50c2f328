//! Passwords: argon2id hashes (PHC strings) and the node's password policy.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

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

/// Bounds the argon2 work a node does at once. Each check holds about 19 MiB for tens of
/// milliseconds; unbounded, a few hundred parallel logins take the node's memory to the better
/// part of a gigabyte. A few callers may wait briefly for a slot; beyond that they are told at
/// once that the node is busy.
#[derive(Clone)]
pub struct HashingGate {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

/// The node is doing as much password work as it allows.
#[derive(Debug, thiserror::Error)]
#[error("the node is busy checking passwords; retry in a second")]
pub struct Busy;

/// Callers that may wait for a slot, per slot.
const WAITERS_PER_SLOT: usize = 4;
/// Longest wait for a slot.
const SLOT_WAIT: Duration = Duration::from_secs(5);

impl HashingGate {
    /// `parallel` checks at once; 0 means the number of cores, at most 4.
    pub fn new(parallel: usize) -> Self {
        let parallel =
            if parallel == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { parallel };
        Self {
            running: Arc::new(Semaphore::new(parallel)),
            admitted: Arc::new(Semaphore::new(parallel * (1 + WAITERS_PER_SLOT))),
        }
    }

    /// Runs `work` on a blocking thread once a slot is free. The slot stays taken until the
    /// work ends, even when the caller gives up on it (a client that hangs up).
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let admitted = self.admitted.clone().try_acquire_owned().map_err(|_| Busy)?;
        let slot = tokio::time::timeout(SLOT_WAIT, self.running.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _held = (slot, admitted);
            work()
        })
        .await
        .map_err(|_| Busy)
    }
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

    #[tokio::test]
    async fn the_gate_runs_at_most_its_slots_and_refuses_beyond_its_queue() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = HashingGate::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        let mut busy = 0;
        for call in calls {
            if call.await.unwrap().is_err() {
                busy += 1;
            }
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "{} ran at once", most.load(Ordering::SeqCst));
        assert_eq!(busy, 40 - 10, "two running and eight waiting are admitted, the rest refused");
    }
}
