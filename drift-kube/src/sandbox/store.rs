//! The sandbox's storage: objects by resource and name, one resourceVersion counter, a bounded
//! history of watch events (so a watch can resume from a resourceVersion, or learn it expired), and a
//! broadcast channel to live watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Where an object lives: resource (group + plural), namespace (empty when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjKey {
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
}

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watchers see it.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub key: ObjKey,
    pub object: Arc<Value>,
}

pub(crate) struct Inner {
    pub rv: u64,
    pub objects: BTreeMap<ObjKey, Arc<Value>>,
    history: VecDeque<Arc<Event>>,
    history_cap: usize,
    /// Watches from a resourceVersion below this one cannot be served: events were dropped.
    pub compacted_rv: u64,
    next_ip: u32,
    next_node_port: u16,
    next_uid: u64,
    /// The kinds the stored CRDs define.
    pub custom: super::crd::Custom,
}

/// The store; cheap to share.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Bumped to end every open watch (a simulated dropped connection / etcd compaction).
    epoch: tokio::sync::watch::Sender<u64>,
}

impl Store {
    pub(crate) fn new(history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(65_536);
        let (epoch, _) = tokio::sync::watch::channel(0);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_cap,
                compacted_rv: 0,
                next_ip: 10,
                next_node_port: 30000,
                next_uid: 1,
                custom: super::crd::Custom::default(),
            }),
            tx,
            epoch,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub(crate) fn epoch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Ends every open watch. With `expire`, also forgets the event history, so watchers that
    /// reconnect with their last resourceVersion get `410 Gone` and must re-list.
    pub(crate) fn break_watches(&self, expire: bool) {
        if expire {
            let mut g = self.lock();
            // As if writes happened elsewhere and etcd compacted past them: every resourceVersion a
            // watcher holds is now too old, while a fresh list starts at a usable one.
            g.rv += 1;
            g.compacted_rv = g.rv;
            g.history.clear();
        }
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Stores (or deletes, with `None`) an object, assigns the next resourceVersion, records and
    /// broadcasts the event. The object must already carry its final metadata except
    /// `resourceVersion`, which is set here.
    pub(crate) fn commit(
        &self,
        g: &mut Inner,
        key: ObjKey,
        kind: EventType,
        mut object: Value,
    ) -> Arc<Value> {
        g.rv += 1;
        let rv = g.rv;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let object = Arc::new(object);
        match kind {
            EventType::Deleted => {
                g.objects.remove(&key);
            }
            _ => {
                g.objects.insert(key.clone(), object.clone());
            }
        }
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            let Inner { objects, custom, .. } = g;
            custom.sync(objects);
        }
        let event = Arc::new(Event {
            rv,
            kind,
            key,
            object: object.clone(),
        });
        if g.history.len() >= g.history_cap
            && let Some(old) = g.history.pop_front()
        {
            g.compacted_rv = old.rv;
        }
        g.history.push_back(event.clone());
        // No receivers is fine: nobody watches yet.
        let _ = self.tx.send(event);
        object
    }

    /// Events after `rv`, or `None` when some of them were already dropped (the caller answers 410).
    pub(crate) fn events_since(g: &Inner, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < g.compacted_rv {
            return None;
        }
        Some(g.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub(crate) fn allocate_ip(g: &mut Inner) -> String {
        let n = g.next_ip;
        g.next_ip += 1;
        format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1)
    }

    pub(crate) fn allocate_node_port(g: &mut Inner) -> u16 {
        let p = g.next_node_port;
        g.next_node_port = if p >= 32767 { 30000 } else { p + 1 };
        p
    }

    pub(crate) fn new_uid(g: &mut Inner) -> String {
        let n = g.next_uid;
        g.next_uid += 1;
        format!("5a4db0c2-0000-4000-8000-{n:012x}")
    }
}
