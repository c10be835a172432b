//! Sharding: which part of the cluster one replica judges.
//!
//! Namespaces are assigned to the live replicas by rendezvous (highest random weight) hashing: every
//! replica scores each (member, namespace) pair with the same stable hash and a namespace belongs to
//! the member with the highest score. Every replica computes the same assignment from the same
//! member list, with no coordination beyond the list; when a member joins or leaves, only the
//! namespaces it wins or held move (about `1/n` of them).
//!
//! Cluster-scoped objects form one more shard, [`CLUSTER_SHARD`], assigned the same way.

use std::collections::BTreeSet;

use crate::model::ResourceKey;

/// The shard name cluster-scoped objects are assigned by (no namespace can be named this: `/` is
/// not allowed in a namespace name).
pub const CLUSTER_SHARD: &str = "/cluster";

/// A stable 64-bit hash (FNV-1a over the bytes, then the SplitMix64 finaliser to spread the bits):
/// the same on every replica, build and platform — unlike `std`'s `DefaultHasher`.
fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff; // a separator no UTF-8 string contains
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The member a shard belongs to: the highest score, ties broken by the smaller name. `None` when
/// there are no members.
pub fn owner_of<'a>(shard: &str, members: &'a [String]) -> Option<&'a str> {
    members
        .iter()
        .map(|m| (stable_hash(&[m, shard]), m.as_str()))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, m)| m)
}

/// What one member owns among `namespaces` (and the cluster shard) given the live `members`.
pub fn assign<'a>(me: &str, members: &[String], namespaces: impl IntoIterator<Item = &'a str>) -> Shard {
    Shard {
        namespaces: namespaces
            .into_iter()
            .filter(|ns| owner_of(ns, members) == Some(me))
            .map(str::to_string)
            .collect(),
        cluster_scoped: owner_of(CLUSTER_SHARD, members) == Some(me),
    }
}

/// The part of the cluster one replica judges: namespaces, and whether cluster-scoped objects too.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    /// Namespaces this replica owns.
    pub namespaces: BTreeSet<String>,
    /// Whether it owns the cluster-scoped objects.
    pub cluster_scoped: bool,
}

impl Shard {
    /// Whether an object belongs to this shard.
    pub fn covers(&self, key: &ResourceKey) -> bool {
        match &key.namespace {
            Some(ns) => self.namespaces.contains(ns),
            None => self.cluster_scoped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("replica-{i}")).collect()
    }

    #[test]
    fn every_namespace_has_exactly_one_owner() {
        let m = members(3);
        let ns: Vec<String> = (0..300).map(|i| format!("ns-{i}")).collect();
        let shards: Vec<Shard> = m
            .iter()
            .map(|me| assign(me, &m, ns.iter().map(String::as_str)))
            .collect();
        for n in &ns {
            assert_eq!(
                shards.iter().filter(|s| s.namespaces.contains(n)).count(),
                1,
                "{n}"
            );
        }
        assert_eq!(shards.iter().filter(|s| s.cluster_scoped).count(), 1);
        // Spread: each of three members gets a fair part (not all on one).
        for s in &shards {
            assert!((60..=140).contains(&s.namespaces.len()), "{}", s.namespaces.len());
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_namespaces() {
        let before = members(4);
        let after: Vec<String> = before.iter().filter(|m| *m != "replica-2").cloned().collect();
        for i in 0..500 {
            let ns = format!("ns-{i}");
            let (b, a) = (owner_of(&ns, &before), owner_of(&ns, &after));
            if b != Some("replica-2") {
                assert_eq!(a, b, "{ns} moved although its owner stayed");
            }
        }
    }

    #[test]
    fn the_assignment_is_stable_across_builds() {
        // Fixed values: a change of the hash would split a fleet running two versions.
        assert_eq!(stable_hash(&["a", "b"]), stable_hash(&["a", "b"]));
        assert_ne!(stable_hash(&["ab", ""]), stable_hash(&["a", "b"]));
        assert_eq!(
            stable_hash(&["replica-0", "shop"]),
            0x05b5_04d3_783f_8aef,
            "{:#x}",
            stable_hash(&["replica-0", "shop"])
        );
        assert_eq!(owner_of("x", &[]), None);
        assert_eq!(owner_of("x", &["only".to_string()]), Some("only"));
    }

    #[test]
    fn covers_namespaced_and_cluster_objects() {
        let s = Shard {
            namespaces: ["a".to_string()].into(),
            cluster_scoped: false,
        };
        let k = |ns: Option<&str>| ResourceKey::new("apps/v1", "Deployment", ns, "x");
        assert!(s.covers(&k(Some("a"))));
        assert!(!s.covers(&k(Some("b"))));
        assert!(!s.covers(&k(None)));
    }
}
