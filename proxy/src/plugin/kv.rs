//! The plugins' key-value store: one per plugin per service, shared by all its instances.
//!
//! A bounded TTL cache, not a database: keys, values and the entry count are capped, expired
//! entries are dropped when read or when room is needed, and when it is full an arbitrary
//! entry is evicted. Plugins touch it a few times per request at most, so one mutex is enough.
//! Stores are kept across reloads for as long as the same plugin file stays in the same slot
//! of the same service, so read-your-writes sessions survive a config reload.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Longest key stored, in bytes.
pub const MAX_KEY: usize = 256;
/// Largest value stored, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;
/// Most entries one store holds.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    value: Vec<u8>,
    /// `None`: until evicted.
    expires: Option<Instant>,
}

#[derive(Default)]
pub struct KvStore {
    map: Mutex<HashMap<String, Entry>>,
}

impl KvStore {
    /// The store of plugin number `slot` (file `path`) of `service`, shared with the previous
    /// configuration's plugin in that place if it is still alive.
    pub fn for_plugin(service: &str, slot: usize, path: PathBuf) -> Arc<KvStore> {
        type Registry = Mutex<HashMap<(String, usize, PathBuf), Weak<KvStore>>>;
        static STORES: OnceLock<Registry> = OnceLock::new();
        let stores = STORES.get_or_init(Registry::default);
        let Ok(mut stores) = stores.lock() else {
            return Arc::new(KvStore::default());
        };
        stores.retain(|_, weak| weak.strong_count() > 0);
        let key = (service.to_owned(), slot, path);
        if let Some(store) = stores.get(&key).and_then(Weak::upgrade) {
            return store;
        }
        let store = Arc::new(KvStore::default());
        stores.insert(key, Arc::downgrade(&store));
        store
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut map = self.map.lock().ok()?;
        let entry = map.get(key)?;
        if entry.expires.is_some_and(|at| at <= Instant::now()) {
            map.remove(key);
            return None;
        }
        Some(entry.value.clone())
    }

    /// Stores `value` for `ttl_ms` milliseconds (0: until evicted). Over the limits: ignored.
    pub fn set(&self, key: &str, value: &[u8], ttl_ms: u32) -> bool {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return false;
        }
        let Ok(mut map) = self.map.lock() else {
            return false;
        };
        let now = Instant::now();
        if map.len() >= MAX_ENTRIES && !map.contains_key(key) {
            map.retain(|_, e| e.expires.is_none_or(|at| at > now));
            if map.len() >= MAX_ENTRIES
                && let Some(victim) = map.keys().next().cloned()
            {
                map.remove(&victim);
            }
        }
        let expires = (ttl_ms > 0).then(|| now + Duration::from_millis(u64::from(ttl_ms)));
        map.insert(
            key.to_owned(),
            Entry {
                value: value.to_vec(),
                expires,
            },
        );
        true
    }

    pub fn delete(&self, key: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_and_limits_hold() {
        let kv = KvStore::default();
        assert!(kv.set("a", b"1", 0));
        assert!(kv.set("b", b"2", 1));
        assert_eq!(kv.get("a").as_deref(), Some(&b"1"[..]));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(kv.get("b"), None, "expired on read");
        assert!(!kv.set(&"k".repeat(MAX_KEY + 1), b"x", 0));
        assert!(!kv.set("big", &vec![0; MAX_VALUE + 1], 0));
        kv.delete("a");
        assert_eq!(kv.get("a"), None);
    }

    #[test]
    fn a_full_store_evicts_rather_than_grows() {
        let kv = KvStore::default();
        for i in 0..MAX_ENTRIES + 10 {
            assert!(kv.set(&format!("k{i}"), b"v", 0));
        }
        assert_eq!(kv.len(), MAX_ENTRIES);
        assert!(kv.get(&format!("k{}", MAX_ENTRIES + 9)).is_some());
    }

    #[test]
    fn a_reloaded_plugin_keeps_its_store() {
        let path = PathBuf::from("/p/a.wasm");
        let first = KvStore::for_plugin("svc-kv-test", 0, path.clone());
        first.set("s", b"x", 0);
        let second = KvStore::for_plugin("svc-kv-test", 0, path.clone());
        assert!(Arc::ptr_eq(&first, &second));
        let other = KvStore::for_plugin("svc-kv-test", 1, path);
        assert!(!Arc::ptr_eq(&first, &other));
    }
}
