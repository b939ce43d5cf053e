//! A small in-process cache whose entries live for a fixed time: what a process may
//! reuse briefly to save a read (never a decision other processes must see). Each
//! cache is owned by the [`crate::Keeper`] that uses it, never a static, so tests
//! get a fresh one with each keeper.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Values reused for `ttl`, at most `max` of them: expired entries are swept when
/// `max` is reached, and nothing is added while it still is.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    ttl: Duration,
    max: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value stored less than `ttl` before `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries()
            .get(key)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V, now: Instant) {
        let mut entries = self.entries();
        if entries.len() >= self.max {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
        }
        if entries.len() < self.max {
            entries.insert(key, (value, now));
        }
    }

    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries().remove(key);
    }

    pub fn clear(&self) {
        self.entries().clear();
    }
}

impl<K: Hash + Eq> TtlCache<K, ()> {
    /// True at most once per `ttl` for each key (a throttle): when `key` has no
    /// fresh entry, records `now` for it and returns true.
    pub fn first_in_ttl(&self, key: K, now: Instant) -> bool {
        let mut entries = self.entries();
        if entries
            .get(&key)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
        {
            return false;
        }
        if entries.len() >= self.max {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.ttl);
        }
        entries.insert(key, ((), now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_live_for_their_ttl_and_the_cache_stays_bounded() {
        let cache = TtlCache::new(Duration::from_secs(5), 2);
        let t0 = Instant::now();
        cache.put("a", 1, t0);
        assert_eq!(cache.get("a", t0 + Duration::from_secs(4)), Some(1));
        assert_eq!(cache.get("a", t0 + Duration::from_secs(5)), None);
        cache.put("b", 2, t0);
        cache.put("c", 3, t0);
        assert_eq!(cache.get("c", t0), None, "full: nothing is added");
        cache.put("c", 3, t0 + Duration::from_secs(6));
        assert_eq!(
            cache.get("c", t0 + Duration::from_secs(6)),
            Some(3),
            "expired swept"
        );
        cache.forget("c");
        assert_eq!(cache.get("c", t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn a_throttle_answers_true_once_per_ttl() {
        let cache = TtlCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        assert!(cache.first_in_ttl("app", t0));
        assert!(!cache.first_in_ttl("app", t0 + Duration::from_secs(59)));
        assert!(cache.first_in_ttl("app", t0 + Duration::from_secs(60)));
        assert!(cache.first_in_ttl("other", t0));
    }
}
