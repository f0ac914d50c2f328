//! Which refused non-member connections get an audit row. A PeerId costs nothing to mint, so a
//! dialer that rotates keys must not write a row per key: refusals are keyed by the dialer's
//! address, each key writes at most one row per interval (counting the ones it held back), the
//! table of keys is bounded, and all keys together write at most a fixed number of rows per
//! interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Limits of the ledger.
#[derive(Debug, Clone, Copy)]
pub struct RefusalLimits {
    /// Shortest gap between two rows of one key.
    pub interval: Duration,
    /// Rows all keys together may write per interval.
    pub rows_per_interval: u32,
    /// Keys held; the least recently refused go first.
    pub max_keys: usize,
}

impl Default for RefusalLimits {
    fn default() -> Self {
        Self { interval: Duration::from_secs(60), rows_per_interval: 20, max_keys: 10_000 }
    }
}

#[derive(Debug)]
struct Entry {
    last_row: Instant,
    held_back: u64,
    touched: Instant,
}

/// Whether a refusal is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalRow {
    /// Write a row; it also stands for this many refusals that were held back before it.
    Write { held_back: u64 },
    /// Only counted.
    Count,
}

#[derive(Debug)]
pub struct RefusalLedger {
    limits: RefusalLimits,
    keys: HashMap<String, Entry>,
    window_start: Instant,
    rows_in_window: u32,
    /// Refusals of keys that lost their place in a full table, or were over the global budget.
    held_back_elsewhere: u64,
}

impl RefusalLedger {
    pub fn new(limits: RefusalLimits, now: Instant) -> Self {
        Self { limits, keys: HashMap::new(), window_start: now, rows_in_window: 0, held_back_elsewhere: 0 }
    }

    /// Notes one refusal from `key` (the dialer's IP address, or its PeerId when the address is
    /// unknown).
    pub fn note(&mut self, key: &str, now: Instant) -> RefusalRow {
        if now.duration_since(self.window_start) >= self.limits.interval {
            self.window_start = now;
            self.rows_in_window = 0;
        }
        let interval = self.limits.interval;
        let due = match self.keys.get_mut(key) {
            Some(entry) => {
                entry.touched = now;
                now.duration_since(entry.last_row) >= interval
            }
            None => true,
        };
        if !due || self.rows_in_window >= self.limits.rows_per_interval {
            match self.keys.get_mut(key) {
                Some(entry) => entry.held_back += 1,
                None => self.held_back_elsewhere += 1,
            }
            return RefusalRow::Count;
        }
        self.rows_in_window += 1;
        let mut held_back = std::mem::take(&mut self.held_back_elsewhere);
        let entry = self.keys.entry(key.to_string()).or_insert(Entry { last_row: now, held_back: 0, touched: now });
        held_back += std::mem::take(&mut entry.held_back);
        entry.last_row = now;
        self.keep_bounded();
        RefusalRow::Write { held_back }
    }

    fn keep_bounded(&mut self) {
        let dropped = crate::bounded::drop_least_recent(&mut self.keys, self.limits.max_keys, |e| e.touched);
        self.held_back_elsewhere += dropped.iter().map(|(_, entry)| entry.held_back).sum::<u64>();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The IP address in a libp2p multiaddr, if it has one.
pub fn ip_of(address: &libp2p::Multiaddr) -> Option<String> {
    address.iter().find_map(|part| match part {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.to_string()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(crate::auth::throttle::address_key(&ip.to_string())),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_writes_one_row_per_interval_and_the_next_counts_the_rest() {
        let now = Instant::now();
        let mut ledger = RefusalLedger::new(RefusalLimits::default(), now);
        assert_eq!(ledger.note("10.0.0.1", now), RefusalRow::Write { held_back: 0 });
        for _ in 0..500 {
            assert_eq!(ledger.note("10.0.0.1", now), RefusalRow::Count);
        }
        assert_eq!(ledger.note("10.0.0.1", now + Duration::from_secs(61)), RefusalRow::Write { held_back: 500 });
    }

    #[test]
    fn many_keys_write_no_more_than_the_budget_and_the_table_stays_bounded() {
        let now = Instant::now();
        let limits = RefusalLimits { max_keys: 100, rows_per_interval: 1000, ..RefusalLimits::default() };
        let mut ledger = RefusalLedger::new(limits, now);
        let rows =
            (0..10_000).filter(|i| matches!(ledger.note(&format!("key{i}"), now), RefusalRow::Write { .. })).count();
        assert_eq!(rows, 1000);
        assert!(ledger.len() <= 100, "{} keys held", ledger.len());
        // The next row after the window accounts for what was held back.
        let later = now + Duration::from_secs(61);
        assert_eq!(ledger.note("fresh", later), RefusalRow::Write { held_back: 10_000 - 1000 });
    }

    #[test]
    fn the_ip_of_a_multiaddr() {
        let a: libp2p::Multiaddr = "/ip4/127.0.0.9/tcp/4001".parse().unwrap();
        assert_eq!(ip_of(&a).as_deref(), Some("127.0.0.9"));
        let dns: libp2p::Multiaddr = "/dns4/example.org/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&dns), None);
    }
}
