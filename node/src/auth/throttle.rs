//! Login throttling: an exponential delay per (user name, client address) and a failure budget
//! per client address, held in a bounded table in memory.
//!
//! A fixed per-user lockout lets anyone lock a user out by guessing wrong on purpose. Keying the
//! delay on the pair means someone else's failures slow only the address they come from; the
//! per-address budget slows a spray of many names from one address. Refused attempts are
//! counted per burst, so an attacker cannot flood the audit log through this door.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What the throttle is keyed on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThrottleKey {
    /// One user name tried from one address.
    Pair { username: String, address: String },
    /// Every name tried from one address.
    Address(String),
}

impl ThrottleKey {
    /// What the audit row names as the target.
    pub fn target(&self) -> &str {
        match self {
            ThrottleKey::Pair { username, .. } => username,
            ThrottleKey::Address(address) => address,
        }
    }

    /// Why attempts were refused, for the audit row.
    pub fn scope(&self) -> &'static str {
        match self {
            ThrottleKey::Pair { .. } => "user name and address",
            ThrottleKey::Address(_) => "address",
        }
    }
}

/// The throttle's limits.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Failures of one (user name, address) pair after which each attempt waits.
    pub pair_free_failures: u32,
    /// Failures from one address, over all names, after which each attempt waits.
    pub address_budget: u32,
    /// Failures older than this are forgotten.
    pub window: Duration,
    /// The first delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Most keys held; beyond it the least recently touched are dropped.
    pub max_entries: usize,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    next_allowed: Instant,
    /// Attempts refused since the burst began (0: no burst).
    refused: u64,
    touched: Instant,
}

/// An attempt the throttle refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: ThrottleKey,
    pub retry_after: Duration,
    /// True for the first refusal of a burst: the one worth an audit row at once.
    pub starts_burst: bool,
}

/// A burst of refusals that is over: one audit row says how many there were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedBurst {
    pub key: ThrottleKey,
    pub refused: u64,
}

/// The throttle table.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: ThrottleLimits,
    entries: HashMap<ThrottleKey, Entry>,
    /// Bursts of keys dropped from a full table, reported by the next sweep.
    dropped_bursts: Vec<FinishedBurst>,
}

/// The address part of a throttle key: an IPv6 client controls its whole /64, so that is one
/// address here.
pub fn address_key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_default(),
        _ => source.to_string(),
    }
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self { limits, entries: HashMap::new(), dropped_bursts: Vec::new() }
    }

    fn keys(username: &str, source: &str) -> [ThrottleKey; 2] {
        let address = address_key(source);
        [ThrottleKey::Pair { username: username.to_string(), address: address.clone() }, ThrottleKey::Address(address)]
    }

    /// Whether an attempt for `username` from `source` may go ahead now. A refused attempt is
    /// counted against the burst of the key that refused it.
    pub fn check(&mut self, username: &str, source: &str, now: Instant) -> Result<(), Refusal> {
        for key in Self::keys(username, source) {
            if let Some(entry) = self.entries.get_mut(&key)
                && now < entry.next_allowed
            {
                entry.refused += 1;
                entry.touched = now;
                return Err(Refusal { retry_after: entry.next_allowed - now, starts_burst: entry.refused == 1, key });
            }
        }
        Ok(())
    }

    /// Records a failed attempt: it lengthens the delay of both its keys.
    pub fn record_failure(&mut self, username: &str, source: &str, now: Instant) {
        for key in Self::keys(username, source) {
            let free = match key {
                ThrottleKey::Pair { .. } => self.limits.pair_free_failures,
                ThrottleKey::Address(_) => self.limits.address_budget,
            };
            let entry = self.entries.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                next_allowed: now,
                refused: 0,
                touched: now,
            });
            if now.duration_since(entry.last_failure) > self.limits.window {
                entry.failures = 0;
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.last_failure = now;
            entry.touched = now;
            entry.next_allowed = now + delay_after(entry.failures, free, &self.limits);
        }
        self.keep_bounded();
    }

    /// Records a successful login: the pair's failures are forgotten, the address's are not (a
    /// sprayer that also owns one account must not reset its budget by logging in).
    pub fn record_success(&mut self, username: &str, source: &str) {
        let [pair, _] = Self::keys(username, source);
        if let Some(entry) = self.entries.remove(&pair)
            && entry.refused > 0
        {
            self.dropped_bursts.push(FinishedBurst { key: pair, refused: entry.refused });
        }
    }

    /// Ends the bursts whose delay is over and forgets keys idle for a whole window.
    pub fn sweep(&mut self, now: Instant) -> Vec<FinishedBurst> {
        let mut finished = std::mem::take(&mut self.dropped_bursts);
        let window = self.limits.window;
        self.entries.retain(|key, entry| {
            if entry.refused > 0 && now >= entry.next_allowed {
                finished.push(FinishedBurst { key: key.clone(), refused: entry.refused });
                entry.refused = 0;
            }
            entry.refused > 0 || now.duration_since(entry.touched) <= window || now < entry.next_allowed
        });
        finished
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the table bounded; bursts of the keys dropped are reported by the next sweep.
    fn keep_bounded(&mut self) {
        let dropped = crate::bounded::drop_least_recent(&mut self.entries, self.limits.max_entries, |e| e.touched);
        for (key, entry) in dropped {
            if entry.refused > 0 {
                self.dropped_bursts.push(FinishedBurst { key, refused: entry.refused });
            }
        }
    }
}

/// No delay before the `free`-th failure; from it on `base`, doubling up to `max`.
fn delay_after(failures: u32, free: u32, limits: &ThrottleLimits) -> Duration {
    if failures < free.max(1) {
        return Duration::ZERO;
    }
    let doublings = (failures - free.max(1)).min(30);
    limits.base_delay.saturating_mul(1 << doublings).min(limits.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            pair_free_failures: 3,
            address_budget: 10,
            window: Duration::from_secs(900),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600),
            max_entries: 1000,
        }
    }

    #[test]
    fn a_pair_is_delayed_after_its_free_failures_and_the_delay_doubles() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check("ann", "10.0.0.1", now).is_ok(), "attempts before the third failure go ahead");
            t.record_failure("ann", "10.0.0.1", now);
        }
        let refusal = t.check("ann", "10.0.0.1", now).unwrap_err();
        assert_eq!(refusal.retry_after, Duration::from_secs(1));
        assert!(refusal.starts_burst);
        let later = now + Duration::from_secs(1);
        assert!(t.check("ann", "10.0.0.1", later).is_ok());
        t.record_failure("ann", "10.0.0.1", later);
        assert_eq!(t.check("ann", "10.0.0.1", later).unwrap_err().retry_after, Duration::from_secs(2));
        // The same name from another address is not slowed.
        assert!(t.check("ann", "10.0.0.2", later).is_ok());
    }

    #[test]
    fn a_spray_of_names_from_one_address_is_slowed_after_the_budget() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        for i in 0..10 {
            assert!(t.check(&format!("user{i}"), "10.0.0.9", now).is_ok(), "name {i} is within the budget");
            t.record_failure(&format!("user{i}"), "10.0.0.9", now);
        }
        t.record_failure("user10", "10.0.0.9", now);
        let refusal = t.check("user11", "10.0.0.9", now).unwrap_err();
        assert_eq!(refusal.key, ThrottleKey::Address("10.0.0.9".into()));
        assert!(t.check("user11", "10.0.0.10", now).is_ok());
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), address_key("2001:db8:1:2:bbbb::2"));
        assert_ne!(address_key("2001:db8:1:2::1"), address_key("2001:db8:1:3::1"));
        assert_eq!(address_key("::ffff:10.1.2.3"), "10.1.2.3");
    }

    #[test]
    fn refused_attempts_are_reported_once_per_burst_with_their_count() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure("bob", "10.0.0.1", now);
        }
        let starts: usize = (0..1000).filter(|_| t.check("bob", "10.0.0.1", now).unwrap_err().starts_burst).count();
        assert_eq!(starts, 1);
        assert!(t.sweep(now).is_empty(), "the burst is not over while the delay runs");
        let done = t.sweep(now + Duration::from_secs(1));
        assert_eq!(
            done,
            vec![FinishedBurst {
                key: ThrottleKey::Pair { username: "bob".into(), address: "10.0.0.1".into() },
                refused: 1000
            }]
        );
    }

    #[test]
    fn success_forgets_the_pair_but_not_the_address() {
        let mut t = LoginThrottle::new(limits());
        let now = Instant::now();
        for i in 0..11 {
            t.record_failure(&format!("u{i}"), "10.0.0.1", now);
        }
        t.record_success("u0", "10.0.0.1");
        assert!(t.check("u0", "10.0.0.1", now).is_err(), "the address's budget is still spent");
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut t = LoginThrottle::new(ThrottleLimits { max_entries: 100, ..limits() });
        let now = Instant::now();
        for i in 0..10_000 {
            t.record_failure("x", &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256), now);
        }
        assert!(t.len() <= 100, "{} keys held", t.len());
        let later = now + Duration::from_secs(3600);
        t.sweep(later);
        assert!(t.is_empty());
    }
}
