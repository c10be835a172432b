//! The detector's queue of keys to process: in arrival order, each key at most once.

use std::collections::VecDeque;
use std::hash::BuildHasher as _;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::model::ResourceKey;

/// Keys to process, in arrival order, each at most once (a key queued again keeps its place). A key
/// is held once, shared by the order and the set, with its hash beside it: taking it out hashes
/// nothing and compares no text (a key's five strings lie apart in memory, rarely in cache).
#[derive(Default)]
pub(crate) struct KeyQueue {
    order: VecDeque<(u64, Arc<ResourceKey>)>,
    set: HashTable<Arc<ResourceKey>>,
    hasher: foldhash::fast::RandomState,
}

impl KeyQueue {
    /// The hash [`KeyQueue::push_hashed`] takes (computable on any core: the hasher is shared).
    pub(crate) fn hasher(&self) -> &foldhash::fast::RandomState {
        &self.hasher
    }

    /// Whether a key is queued.
    pub(crate) fn contains(&self, key: &ResourceKey) -> bool {
        self.set
            .find(self.hasher.hash_one(key), |k| **k == *key)
            .is_some()
    }

    /// Queues a key at the end, unless it is queued already (then it keeps its place): whether it
    /// was queued now.
    pub(crate) fn push(&mut self, key: ResourceKey) -> bool {
        self.push_shared(Arc::new(key))
    }

    /// [`KeyQueue::push`] of a key shared with another holder (the desired set's or the live
    /// map's key): no copy is made.
    pub(crate) fn push_shared(&mut self, key: Arc<ResourceKey>) -> bool {
        let hash = self.hasher.hash_one(&*key);
        self.push_hashed(hash, key)
    }

    /// [`KeyQueue::push_shared`] of a key whose hash was taken already (`hasher().hash_one(&*key)`).
    pub(crate) fn push_hashed(&mut self, hash: u64, key: Arc<ResourceKey>) -> bool {
        let hasher = &self.hasher;
        match self.set.entry(hash, |k| **k == *key, |k| hasher.hash_one(&**k)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(key.clone());
                self.order.push_back((hash, key));
                true
            }
        }
    }

    /// Room for `additional` more keys at once.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let hasher = &self.hasher;
        self.set.reserve(additional, |k| hasher.hash_one(&**k));
        self.order.reserve(additional);
    }

    /// The first key, taken out (still shared with its other holders: nothing is copied, and
    /// looking it up where it is held compares addresses, not text).
    pub(crate) fn pop(&mut self) -> Option<Arc<ResourceKey>> {
        let (hash, key) = self.order.pop_front()?;
        // The set's entry is this very key: found by its hash and address.
        if let Ok(held) = self.set.find_entry(hash, |k| Arc::ptr_eq(k, &key)) {
            held.remove();
        }
        Some(key)
    }

    /// Keys waiting.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ResourceKey {
        ResourceKey {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    #[test]
    fn keys_come_out_in_arrival_order_once_each() {
        let mut q = KeyQueue::default();
        assert!(q.push(key("a")));
        assert!(q.push(key("b")));
        // Queued again: keeps its place.
        assert!(!q.push(key("a")));
        let h = q.hasher().hash_one(key("c"));
        assert!(q.push_hashed(h, Arc::new(key("c"))));
        let h = q.hasher().hash_one(key("b"));
        assert!(!q.push_hashed(h, Arc::new(key("b"))));
        assert_eq!(q.len(), 3);
        assert!(q.contains(&key("b")) && !q.contains(&key("d")));
        assert_eq!(q.pop().as_deref(), Some(&key("a")));
        // Taken out: no longer queued, so it can be queued again, at the end.
        assert!(!q.contains(&key("a")));
        assert!(q.push(key("a")));
        let rest: Vec<String> = std::iter::from_fn(|| q.pop()).map(|k| k.name.clone()).collect();
        assert_eq!(rest, ["b", "c", "a"]);
        assert_eq!(q.len(), 0);
        assert!(!q.contains(&key("b")));
    }

    /// A key shared with another holder is queued by its content (the same key pushed owned is
    /// queued already) and taken out shared, the other holder's left as it was.
    #[test]
    fn a_shared_key_is_queued_once_and_taken_out_shared() {
        let mut q = KeyQueue::default();
        let held = Arc::new(key("a"));
        assert!(q.push_shared(held.clone()));
        assert!(!q.push(key("a")));
        assert!(!q.push_shared(Arc::new(key("a"))));
        assert_eq!(Arc::strong_count(&held), 3, "the order and the set share it");
        let out = q.pop().expect("queued");
        assert!(Arc::ptr_eq(&out, &held), "the very key, not a copy");
        drop(out);
        assert_eq!(Arc::strong_count(&held), 1, "the queue let go of it");
        assert!(!q.contains(&key("a")));
        assert!(q.push_shared(held));
    }

    #[test]
    fn many_keys_through_growth_and_reuse() {
        let mut q = KeyQueue::default();
        q.reserve(10);
        for round in 0..3 {
            for i in 0..5_000 {
                assert!(q.push(key(&format!("k{i}"))), "{round} {i}");
            }
            for i in (0..5_000).step_by(7) {
                assert!(!q.push(key(&format!("k{i}"))));
            }
            assert_eq!(q.len(), 5_000);
            for i in 0..5_000 {
                assert_eq!(q.pop().map(|k| k.name.clone()), Some(format!("k{i}")));
            }
            assert_eq!(q.pop(), None);
        }
    }
}
