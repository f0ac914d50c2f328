//! Tables a caller can grow by sending new keys (login throttling, refused dialers) stay
//! bounded: past their size, the least recently touched tenth goes at once, so the cost of a
//! full scan is paid once per tenth of new keys rather than on every insert.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// If `map` holds more than `max` entries, removes the least recently `touched` ones (down to
/// nine tenths of `max`) and returns them, for the caller to account for what they held.
pub fn drop_least_recent<K: Clone + Eq + Hash + Ord, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    touched: impl Fn(&V) -> Instant,
) -> Vec<(K, V)> {
    if map.len() <= max {
        return Vec::new();
    }
    let mut by_age: Vec<(Instant, K)> = map.iter().map(|(key, value)| (touched(value), key.clone())).collect();
    by_age.sort();
    let drop = map.len() - max + (max / 10).max(1);
    by_age.into_iter().take(drop).filter_map(|(_, key)| map.remove_entry(&key)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_oldest_go_first_and_only_when_the_table_is_full() {
        let start = Instant::now();
        let mut map: HashMap<u32, Instant> = (0..10).map(|i| (i, start + Duration::from_secs(u64::from(i)))).collect();
        assert!(drop_least_recent(&mut map, 10, |t| *t).is_empty());
        map.insert(10, start + Duration::from_secs(10));
        let mut dropped: Vec<u32> = drop_least_recent(&mut map, 10, |t| *t).into_iter().map(|(k, _)| k).collect();
        dropped.sort();
        assert_eq!(dropped, vec![0, 1]);
        assert_eq!(map.len(), 9);
    }
}
