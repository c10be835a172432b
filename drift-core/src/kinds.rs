//! What drift-core knows about built-in kinds: scope, resource names and whether the server keeps a
//! `metadata.generation` for them.

/// Static facts about a built-in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// API group (empty for core).
    pub group: &'static str,
    /// Preferred version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts.
    pub short_names: &'static [&'static str],
    /// Whether the server bumps `metadata.generation` on every spec change (so a watch event with an
    /// unchanged generation and metadata cannot carry a compared change).
    pub has_generation: bool,
    /// Whether the kind has a `status` subresource.
    pub has_status: bool,
    /// Whether the kind has a `scale` subresource.
    pub has_scale: bool,
}

macro_rules! kind {
    ($g:expr, $v:expr, $k:expr, $p:expr, $s:expr, $ns:expr, [$($sn:expr),*], gen=$gen:expr, status=$st:expr, scale=$sc:expr) => {
        KindInfo { group: $g, version: $v, kind: $k, plural: $p, singular: $s, namespaced: $ns,
                   short_names: &[$($sn),*], has_generation: $gen, has_status: $st, has_scale: $sc }
    };
}

/// Built-in kinds drift-detector watches or understands.
pub static KNOWN_KINDS: &[KindInfo] = &[
    kind!("apps", "v1", "Deployment", "deployments", "deployment", true, ["deploy"], gen = true, status = true, scale = true),
    kind!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, ["sts"], gen = true, status = true, scale = true),
    kind!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, ["ds"], gen = true, status = true, scale = false),
    kind!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, ["rs"], gen = true, status = true, scale = true),
    kind!("", "v1", "Service", "services", "service", true, ["svc"], gen = false, status = true, scale = false),
    kind!("", "v1", "ConfigMap", "configmaps", "configmap", true, ["cm"], gen = false, status = false, scale = false),
    kind!("", "v1", "Secret", "secrets", "secret", true, [], gen = false, status = false, scale = false),
    kind!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, ["sa"], gen = false, status = false, scale = false),
    kind!("", "v1", "Namespace", "namespaces", "namespace", false, ["ns"], gen = false, status = true, scale = false),
    kind!("", "v1", "Pod", "pods", "pod", true, ["po"], gen = false, status = true, scale = false),
    kind!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", true, ["pvc"], gen = false, status = true, scale = false),
    kind!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, ["pv"], gen = false, status = true, scale = false),
    kind!("", "v1", "Endpoints", "endpoints", "endpoints", true, ["ep"], gen = false, status = false, scale = false),
    kind!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true, ["rc"], gen = true, status = true, scale = true),
    kind!("", "v1", "Node", "nodes", "node", false, ["no"], gen = false, status = true, scale = false),
    kind!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", true, [], gen = false, status = false, scale = false),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", false, [], gen = false, status = false, scale = false),
    kind!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", true, [], gen = false, status = false, scale = false),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, [], gen = false, status = false, scale = false),
    kind!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", true, ["hpa"], gen = true, status = true, scale = false),
    kind!("batch", "v1", "Job", "jobs", "job", true, [], gen = true, status = true, scale = false),
    kind!("batch", "v1", "CronJob", "cronjobs", "cronjob", true, ["cj"], gen = true, status = true, scale = false),
    kind!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", true, ["pdb"], gen = true, status = true, scale = false),
    kind!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true, ["ing"], gen = true, status = true, scale = false),
    kind!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, ["netpol"], gen = true, status = false, scale = false),
    kind!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, [], gen = false, status = false, scale = false),
    kind!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, ["sc"], gen = false, status = false, scale = false),
    kind!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", false, ["crd"], gen = true, status = true, scale = false),
    kind!("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", false, [], gen = true, status = false, scale = false),
    kind!("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "validatingwebhookconfiguration", false, [], gen = true, status = false, scale = false),
    kind!("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", false, [], gen = false, status = true, scale = false),
    kind!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, ["pc"], gen = false, status = false, scale = false),
    kind!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", false, [], gen = false, status = false, scale = false),
    kind!("", "v1", "Event", "events", "event", true, ["ev"], gen = false, status = false, scale = false),
    kind!("events.k8s.io", "v1", "Event", "events", "event", true, ["ev"], gen = false, status = false, scale = false),
    kind!("", "v1", "LimitRange", "limitranges", "limitrange", true, ["limits"], gen = false, status = false, scale = false),
];

/// The resources `kubectl get all` lists: those whose discovery entry carries the `all` category
/// (the built-in types' `Categories()` in pkg/registry/*/storage).
pub fn in_category_all(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        ("", "pods" | "services" | "replicationcontrollers")
            | (
                "apps",
                "deployments" | "replicasets" | "statefulsets" | "daemonsets"
            )
            | ("batch", "jobs" | "cronjobs")
            | ("autoscaling", "horizontalpodautoscalers")
    )
}

/// Cluster-scoped kinds that are not in [`KNOWN_KINDS`] but are well known.
static EXTRA_CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("node.k8s.io", "RuntimeClass"),
    ("", "ComponentStatus"),
    ("cert-manager.io", "ClusterIssuer"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

/// A static table's entries by kind, in table order (for tables asked about every object: one hash
/// of the kind instead of a walk down the table).
pub(crate) type KindIndex<T> =
    std::collections::HashMap<&'static str, Vec<&'static T>, foldhash::fast::FixedState>;

/// Builds a [`KindIndex`].
pub(crate) fn index_by_kind<T>(table: &'static [T], kind: fn(&T) -> &'static str) -> KindIndex<T> {
    let mut index = KindIndex::default();
    for entry in table {
        index.entry(kind(entry)).or_default().push(entry);
    }
    index
}

/// Looks a kind up by group and kind.
pub fn lookup(group: &str, kind: &str) -> Option<&'static KindInfo> {
    static INDEX: std::sync::OnceLock<KindIndex<KindInfo>> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| index_by_kind(KNOWN_KINDS, |k| k.kind));
    index.get(kind)?.iter().find(|k| k.group == group).copied()
}

/// Looks a kind up by group and plural resource name.
pub fn lookup_plural(group: &str, plural: &str) -> Option<&'static KindInfo> {
    KNOWN_KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural)
}

/// Whether objects of this kind are cluster-scoped. Unknown kinds (custom resources) are assumed
/// namespaced, so a namespace in their manifest is kept.
pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    match lookup(group, kind) {
        Some(k) => !k.namespaced,
        None => EXTRA_CLUSTER_SCOPED
            .iter()
            .any(|(g, k)| *g == group && *k == kind),
    }
}

/// Whether the server keeps `metadata.generation` in step with spec changes for this kind.
/// Custom resources (unknown kinds) do, as all CRD-backed objects get a generation.
pub fn has_generation(group: &str, kind: &str) -> bool {
    match lookup(group, kind) {
        Some(k) => k.has_generation,
        None => !group.is_empty() && !group.ends_with(".k8s.io"),
    }
}

/// Workload kinds whose `spec.replicas` an autoscaler may own.
pub fn is_scalable_workload(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") | ("", "ReplicationController")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope() {
        assert!(is_cluster_scoped("rbac.authorization.k8s.io", "ClusterRole"));
        assert!(is_cluster_scoped("", "Namespace"));
        assert!(!is_cluster_scoped("apps", "Deployment"));
        assert!(!is_cluster_scoped("bitnami.com", "SealedSecret"));
    }

    #[test]
    fn plurals_are_unique_per_group() {
        for a in KNOWN_KINDS {
            assert_eq!(
                KNOWN_KINDS
                    .iter()
                    .filter(|b| b.group == a.group && b.plural == a.plural)
                    .count(),
                1
            );
        }
    }
}
