//! What the engine knows about the shape of built-in kinds: server defaults, list keys, value kinds
//! (quantities, images, int-or-string), closed collections and never-compared fields.
//!
//! Transcribed from `shared/reference/k8s-defaults.yaml` and `k8s-defaults.md` §3 (API-server
//! defaulting in `pkg/apis/{apps,core,batch,autoscaling}/v*/defaults.go`, list-map keys from the
//! `+listType`/`+listMapKey` markers in `k8s.io/api`). `tests/defaults_table.rs` checks every entry of the
//! YAML against this module. Field lists are sorted by key: the diff walks desired, live and schema keys
//! in one merge pass.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::tree::MapRef;

/// How a scalar is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaf {
    /// Strings by text, numbers by value.
    Plain,
    /// `resource.Quantity`: by value (`0.5` = `500m`, `1` = `"1"`).
    Quantity,
    /// A container resource quantity: by value after the server's rounding of the desired value up to
    /// milli units (`0.0001` is stored as `1m`; `SetDefaults_ResourceList`).
    ResourceQuantity,
    /// Container image reference: by normalized reference.
    Image,
    /// `IntOrString`: numbers by value, strings by text, never a number equal to a string.
    IntOrString,
}

/// A server default: the value the API server fills in when a field is absent.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dflt {
    Str(&'static str),
    Int(i64),
    Bool(bool),
    /// A structured default, built on demand.
    Build(fn() -> Value),
    /// `{}`: the server fills in an empty map, so any content is an edit.
    EmptyMap,
    /// `Always` for `:latest` or untagged images without digest, else `IfNotPresent` (needs `image`).
    ImagePullPolicy,
    /// Service `targetPort` defaults to `port`.
    TargetPort,
    /// Allocated or set by the server (clusterIP, nodePort, generated selectors): any value is expected.
    ServerSet,
    /// The value of a live sibling field (the deprecated `serviceAccount` mirrors `serviceAccountName`).
    Sibling(&'static str),
    /// `metadata.labels[kubernetes.io/metadata.name]` of a Namespace: its name.
    NamespaceName,
    /// A label copied from `spec.template.metadata.labels` (Job, ReplicationController).
    TemplateLabel,
    /// Pod `resources.requests[k]` defaults to `resources.limits[k]`.
    LimitOfSameResource,
    /// RBAC subject `apiGroup`: `rbac.authorization.k8s.io` for User and Group subjects.
    SubjectApiGroup,
    /// Pod `serviceAccountName`: the deprecated `serviceAccount` when given (the server copies it;
    /// `SetDefaults_PodSpec`), else `default` (the ServiceAccount admission plugin).
    ServiceAccountName,
    /// NetworkPolicy `policyTypes`: `[Ingress]`, plus `Egress` when egress rules were given
    /// (`pkg/apis/networking/v1/defaults.go` SetDefaults_NetworkPolicy).
    PolicyTypes,
    /// Job `backoffLimit`: 6, or 2147483647 when `backoffLimitPerIndex` is set (SetDefaults_Job).
    JobBackoffLimit,
    /// Job `completions`: 1 only when neither `completions` nor `parallelism` was given.
    JobCompletions,
    /// Job `podReplacementPolicy`: `Failed` with a `podFailurePolicy`, else `TerminatingOrFailed`.
    JobPodReplacementPolicy,
    /// A sibling string with a suffix: CRD `names.listKind` is `names.kind` + `List`.
    SiblingSuffix(&'static str, &'static str),
    /// A sibling string in lower case: CRD `names.singular` is `names.kind` lower-cased.
    SiblingLower(&'static str),
}

/// One map on the way from the object root to a field: the live map and, where the desired object
/// has it, the desired map. Defaults computed from sibling fields read desired first: the server
/// defaults what was applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level<'a> {
    pub live: MapRef<'a>,
    pub desired: Option<MapRef<'a>>,
}

impl<'a> Level<'a> {
    pub(crate) fn get(&self, key: &str) -> Option<Cow<'a, Value>> {
        match self.desired.and_then(|d| d.get(key)) {
            Some(d) => Some(d),
            None => self.live.get(key),
        }
    }

    fn pointer(&self, ptr: &str) -> Option<Cow<'a, Value>> {
        match self
            .desired
            .and_then(|d| d.pointer(ptr_first(ptr)?, ptr_rest(ptr)))
        {
            Some(d) => Some(d),
            None => self.live.pointer(ptr_first(ptr)?, ptr_rest(ptr)),
        }
    }
}

fn ptr_first(ptr: &str) -> Option<&str> {
    ptr.trim_start_matches('/').split('/').next()
}

fn ptr_rest(ptr: &str) -> &str {
    let p = ptr.trim_start_matches('/');
    match p.find('/') {
        Some(i) => &p[i..],
        None => "",
    }
}

/// A key field of a keyed list, with the value it takes when absent.
#[derive(Debug)]
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

/// List semantics.
#[derive(Debug)]
pub(crate) struct ListSpec {
    /// Key fields; empty for positional lists.
    pub keys: &'static [KeySpec],
    /// Compare as an unordered set.
    pub set: bool,
    /// Schema of each element.
    pub item: &'static Node,
}

/// A condition on the parent map of a field.
pub(crate) type Condition = fn(&Map<String, Value>) -> bool;

/// Schema of one field.
#[derive(Debug)]
pub(crate) struct Node {
    /// Known child fields, sorted by key.
    pub fields: &'static [(&'static str, &'static Node)],
    /// Schema of every other child of a map (e.g. each entry of `resources.requests`).
    pub values: Option<&'static Node>,
    pub list: Option<&'static ListSpec>,
    pub leaf: Leaf,
    pub default: Option<Dflt>,
    /// A desired zero value (`0`, `""`) means "use the default".
    pub zero_is_default: bool,
    /// Every entry of this map or list is ours: a live entry the desired state lacks is drift.
    pub closed: bool,
    /// Never compared (status, resourceVersion, ...).
    pub skip: bool,
    /// An empty value (`{}`) is meaningful and not the same as absent (`emptyDir: {}`).
    pub presence: bool,
    /// When filling defaults: the server creates this map when it is absent (e.g. `strategy`).
    pub materialize: bool,
    /// When filling defaults: the default applies only if this holds of the parent map
    /// (`rollingUpdate` only for the `RollingUpdate` strategy).
    pub apply_if: Option<Condition>,
    /// The server drops the desired value when this holds of the desired parent map (Service
    /// `sessionAffinityConfig` without `sessionAffinity: ClientIP`): it is compared as absent.
    pub dropped_if: Option<Condition>,
    /// The default is only the effective value (`hostNetwork: false`): compared, never written.
    pub implicit: bool,
}

impl Node {
    pub(crate) const GENERIC: Node = Node {
        fields: &[],
        values: None,
        list: None,
        leaf: Leaf::Plain,
        default: None,
        zero_is_default: false,
        closed: false,
        skip: false,
        presence: false,
        materialize: false,
        apply_if: None,
        dropped_if: None,
        implicit: false,
    };

    /// The schema of child `key`: a known field, else the map-values schema, else generic.
    #[inline]
    pub(crate) fn child(&self, key: &str) -> &'static Node {
        if let Ok(i) = self.fields.binary_search_by(|(k, _)| (*k).cmp(key)) {
            return self.fields[i].1;
        }
        self.values.unwrap_or(&GENERIC)
    }

    /// Whether this node or anything below it carries a default or a skip, so that a live-only subtree
    /// must be examined field by field rather than as a unit.
    pub(crate) fn has_structure(&self) -> bool {
        !self.fields.is_empty()
            || self
                .values
                .is_some_and(|v| v.default.is_some() || v.skip || v.has_structure())
    }
}

pub(crate) static GENERIC: Node = Node::GENERIC;

const fn leaf(kind: Leaf) -> Node {
    Node {
        leaf: kind,
        ..Node::GENERIC
    }
}
const fn dflt(d: Dflt) -> Node {
    Node {
        default: Some(d),
        ..Node::GENERIC
    }
}
const fn map(fields: &'static [(&'static str, &'static Node)]) -> Node {
    Node {
        fields,
        ..Node::GENERIC
    }
}

static SKIP: Node = Node {
    skip: true,
    ..Node::GENERIC
};
static PLAIN: Node = Node::GENERIC;
static QUANTITY: Node = leaf(Leaf::Quantity);
static INT_OR_STRING: Node = leaf(Leaf::IntOrString);
static RESOURCE_QUANTITY: Node = leaf(Leaf::ResourceQuantity);
static RESOURCE_QUANTITY_MAP: Node = Node {
    values: Some(&RESOURCE_QUANTITY),
    ..Node::GENERIC
};
static QUANTITY_MAP: Node = Node {
    values: Some(&QUANTITY),
    ..Node::GENERIC
};
static SET_OF_SCALARS: ListSpec = ListSpec {
    keys: &[],
    set: true,
    item: &PLAIN,
};
static SET: Node = Node {
    list: Some(&SET_OF_SCALARS),
    ..Node::GENERIC
};
static SERVER_SET: Node = dflt(Dflt::ServerSet);

// ---------------------------------------------------------------------------------------------
// metadata

static ANNOTATIONS: Node = Node {
    fields: &[
        ("deployment.kubernetes.io/desired-replicas", &SKIP),
        ("deployment.kubernetes.io/max-replicas", &SKIP),
        ("deployment.kubernetes.io/revision", &SKIP),
        ("deprecated.daemonset.template.generation", &SKIP),
        ("kubectl.kubernetes.io/last-applied-configuration", &SKIP),
    ],
    values: Some(&PLAIN),
    ..Node::GENERIC
};

static METADATA: Node = map(&[
    ("annotations", &ANNOTATIONS),
    ("creationTimestamp", &SKIP),
    ("deletionGracePeriodSeconds", &SKIP),
    ("deletionTimestamp", &SKIP),
    ("generateName", &SKIP),
    ("generation", &SKIP),
    ("managedFields", &SKIP),
    ("name", &SKIP),
    ("namespace", &SKIP),
    ("ownerReferences", &SKIP),
    ("resourceVersion", &SKIP),
    ("selfLink", &SKIP),
    ("uid", &SKIP),
]);

static TEMPLATE_METADATA: Node = map(&[("annotations", &ANNOTATIONS), ("creationTimestamp", &SKIP)]);

// ---------------------------------------------------------------------------------------------
// containers

static HTTP_GET: Node = map(&[
    ("path", &dflt(Dflt::Str("/"))),
    ("port", &INT_OR_STRING),
    ("scheme", &dflt(Dflt::Str("HTTP"))),
]);
static TCP_SOCKET: Node = map(&[("port", &INT_OR_STRING)]);
static GRPC: Node = map(&[("service", &dflt(Dflt::Str("")))]);

static PROBE: Node = map(&[
    (
        "failureThreshold",
        &Node {
            zero_is_default: true,
            ..dflt(Dflt::Int(3))
        },
    ),
    ("grpc", &GRPC),
    ("httpGet", &HTTP_GET),
    (
        "periodSeconds",
        &Node {
            zero_is_default: true,
            ..dflt(Dflt::Int(10))
        },
    ),
    (
        "successThreshold",
        &Node {
            zero_is_default: true,
            ..dflt(Dflt::Int(1))
        },
    ),
    ("tcpSocket", &TCP_SOCKET),
    (
        "timeoutSeconds",
        &Node {
            zero_is_default: true,
            ..dflt(Dflt::Int(1))
        },
    ),
]);

static LIFECYCLE_HANDLER: Node = map(&[("httpGet", &HTTP_GET), ("tcpSocket", &TCP_SOCKET)]);
static LIFECYCLE: Node = map(&[("postStart", &LIFECYCLE_HANDLER), ("preStop", &LIFECYCLE_HANDLER)]);

static ENV_VALUE_FROM: Node = map(&[
    ("fieldRef", &map(&[("apiVersion", &dflt(Dflt::Str("v1")))])),
    (
        "resourceFieldRef",
        &map(&[(
            "divisor",
            &Node {
                leaf: Leaf::Quantity,
                ..dflt(Dflt::Str("0"))
            },
        )]),
    ),
]);
static ENV: Node = map(&[("valueFrom", &ENV_VALUE_FROM)]);

static CONTAINER_PORT: Node = map(&[("protocol", &dflt(Dflt::Str("TCP")))]);

static RESOURCES: Node = map(&[
    ("limits", &RESOURCE_QUANTITY_MAP),
    ("requests", &RESOURCE_QUANTITY_MAP),
]);
/// A container's resources: the server shows `resources: {}` when unset.
static CONTAINER_RESOURCES: Node = Node {
    materialize: true,
    ..RESOURCES
};
static POD_REQUESTS: Node = Node {
    values: Some(&Node {
        leaf: Leaf::ResourceQuantity,
        ..dflt(Dflt::LimitOfSameResource)
    }),
    ..Node::GENERIC
};
static POD_RESOURCES: Node = map(&[("limits", &RESOURCE_QUANTITY_MAP), ("requests", &POD_REQUESTS)]);

static PORT_KEYS: &[KeySpec] = &[
    KeySpec {
        name: "containerPort",
        default: None,
    },
    KeySpec {
        name: "protocol",
        default: Some("TCP"),
    },
];
static NAME_KEY: &[KeySpec] = &[KeySpec {
    name: "name",
    default: None,
}];

macro_rules! keyed {
    ($keys:expr, $item:expr) => {
        Node {
            list: Some(&ListSpec {
                keys: $keys,
                set: false,
                item: $item,
            }),
            ..Node::GENERIC
        }
    };
}

static CONTAINER: Node = map(&[
    ("env", &keyed!(NAME_KEY, &ENV)),
    ("image", &leaf(Leaf::Image)),
    ("imagePullPolicy", &dflt(Dflt::ImagePullPolicy)),
    ("lifecycle", &LIFECYCLE),
    ("livenessProbe", &PROBE),
    ("ports", &keyed!(PORT_KEYS, &CONTAINER_PORT)),
    ("readinessProbe", &PROBE),
    ("resources", &CONTAINER_RESOURCES),
    ("securityContext", &SECURITY_CONTEXT),
    ("startupProbe", &PROBE),
    ("terminationMessagePath", &dflt(Dflt::Str("/dev/termination-log"))),
    ("terminationMessagePolicy", &dflt(Dflt::Str("File"))),
    (
        "volumeDevices",
        &keyed!(
            &[KeySpec {
                name: "devicePath",
                default: None
            }],
            &PLAIN
        ),
    ),
    (
        "volumeMounts",
        &keyed!(
            &[KeySpec {
                name: "mountPath",
                default: None
            }],
            &PLAIN
        ),
    ),
]);

static POD_CONTAINER: Node = map(&[
    ("env", &keyed!(NAME_KEY, &ENV)),
    ("image", &leaf(Leaf::Image)),
    ("imagePullPolicy", &dflt(Dflt::ImagePullPolicy)),
    ("lifecycle", &LIFECYCLE),
    ("livenessProbe", &PROBE),
    ("ports", &keyed!(PORT_KEYS, &CONTAINER_PORT)),
    ("readinessProbe", &PROBE),
    ("resources", &POD_RESOURCES),
    ("securityContext", &SECURITY_CONTEXT),
    ("startupProbe", &PROBE),
    ("terminationMessagePath", &dflt(Dflt::Str("/dev/termination-log"))),
    ("terminationMessagePolicy", &dflt(Dflt::Str("File"))),
    (
        "volumeDevices",
        &keyed!(
            &[KeySpec {
                name: "devicePath",
                default: None
            }],
            &PLAIN
        ),
    ),
    (
        "volumeMounts",
        &keyed!(
            &[KeySpec {
                name: "mountPath",
                default: None
            }],
            &PLAIN
        ),
    ),
]);

static MODE_420: Node = dflt(Dflt::Int(420));
/// A security context is wholly the manifest's: the server fills in `{}` and nothing inside, so live
/// content the desired state does not have is an edit.
static SECURITY_CONTEXT: Node = Node {
    closed: true,
    default: Some(Dflt::EmptyMap),
    implicit: true,
    ..Node::GENERIC
};
/// The pod-level security context: the server materializes `{}`.
static POD_SECURITY_CONTEXT: Node = Node {
    materialize: true,
    implicit: false,
    ..SECURITY_CONTEXT
};
static FALSE: Node = Node {
    implicit: true,
    ..dflt(Dflt::Bool(false))
};
/// A volume element is closed: its source is one of a union, so a live source the desired volume does
/// not name (a hostPath where an emptyDir was) is drift.
static VOLUME: Node = Node {
    closed: true,
    ..map(&[
        ("configMap", &map(&[("defaultMode", &MODE_420)])),
        ("downwardAPI", &map(&[("defaultMode", &MODE_420)])),
        (
            "emptyDir",
            &Node {
                fields: &[("sizeLimit", &QUANTITY)],
                presence: true,
                ..Node::GENERIC
            },
        ),
        ("hostPath", &map(&[("type", &dflt(Dflt::Str("")))])),
        (
            "projected",
            &map(&[
                ("defaultMode", &MODE_420),
                (
                    "sources",
                    &Node {
                        list: Some(&ListSpec {
                            keys: &[],
                            set: false,
                            item: &map(&[(
                                "serviceAccountToken",
                                &map(&[("expirationSeconds", &dflt(Dflt::Int(3600)))]),
                            )]),
                        }),
                        ..Node::GENERIC
                    },
                ),
            ]),
        ),
        ("secret", &map(&[("defaultMode", &MODE_420)])),
    ])
};

const TOLERATION_KEYS: &[KeySpec] = &[
    KeySpec {
        name: "key",
        default: None,
    },
    KeySpec {
        name: "operator",
        default: None,
    },
    KeySpec {
        name: "value",
        default: None,
    },
    KeySpec {
        name: "effect",
        default: None,
    },
];

macro_rules! pod_spec {
    ($container:expr, $extra:expr) => {
        map(&[
            ("containers", &keyed!(NAME_KEY, $container)),
            ("dnsPolicy", &dflt(Dflt::Str("ClusterFirst"))),
            ("enableServiceLinks", $extra),
            ("ephemeralContainers", &keyed!(NAME_KEY, $container)),
            (
                "hostAliases",
                &keyed!(
                    &[KeySpec {
                        name: "ip",
                        default: None
                    }],
                    &PLAIN
                ),
            ),
            ("hostIPC", &FALSE),
            ("hostNetwork", &FALSE),
            ("hostPID", &FALSE),
            ("imagePullSecrets", &keyed!(NAME_KEY, &PLAIN)),
            ("initContainers", &keyed!(NAME_KEY, $container)),
            ("restartPolicy", &dflt(Dflt::Str("Always"))),
            ("schedulerName", &dflt(Dflt::Str("default-scheduler"))),
            ("securityContext", &POD_SECURITY_CONTEXT),
            ("serviceAccount", &dflt(Dflt::Sibling("serviceAccountName"))),
            (
                "serviceAccountName",
                &Node {
                    implicit: true,
                    ..dflt(Dflt::ServiceAccountName)
                },
            ),
            ("shareProcessNamespace", &FALSE),
            ("terminationGracePeriodSeconds", &dflt(Dflt::Int(30))),
            // Matched by what they tolerate, not by position: the DefaultTolerationSeconds admission
            // plugin appends the not-ready/unreachable tolerations to every Pod
            // (plugin/pkg/admission/defaulttolerationseconds), which must not shift the others.
            ("tolerations", &keyed!(TOLERATION_KEYS, &PLAIN)),
            (
                "topologySpreadConstraints",
                &keyed!(
                    &[
                        KeySpec {
                            name: "topologyKey",
                            default: None
                        },
                        KeySpec {
                            name: "whenUnsatisfiable",
                            default: None
                        }
                    ],
                    &PLAIN
                ),
            ),
            ("volumes", &keyed!(NAME_KEY, &VOLUME)),
        ])
    };
}

/// PodSpec inside templates (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob).
static POD_SPEC: Node = pod_spec!(&CONTAINER, &PLAIN);
/// PodSpec of a bare Pod: `SetDefaults_Pod` adds more than templates get (k8s#69445).
static POD_ONLY_SPEC: Node = pod_spec!(&POD_CONTAINER, &dflt(Dflt::Bool(true)));

static POD_TEMPLATE: Node = map(&[("metadata", &TEMPLATE_METADATA), ("spec", &POD_SPEC)]);

// ---------------------------------------------------------------------------------------------
// workloads

fn rolling_update(parent: &Map<String, Value>) -> bool {
    parent
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t == "RollingUpdate")
}
fn node_port_or_lb(parent: &Map<String, Value>) -> bool {
    matches!(
        parent.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}
fn load_balancer(parent: &Map<String, Value>) -> bool {
    parent.get("type").and_then(Value::as_str) == Some("LoadBalancer")
}
fn not_external_name(parent: &Map<String, Value>) -> bool {
    parent.get("type").and_then(Value::as_str) != Some("ExternalName")
}

static INT_OR_STRING_25: Node = Node {
    leaf: Leaf::IntOrString,
    ..dflt(Dflt::Str("25%"))
};

static DEPLOYMENT_SPEC: Node = map(&[
    ("progressDeadlineSeconds", &dflt(Dflt::Int(600))),
    ("replicas", &dflt(Dflt::Int(1))),
    ("revisionHistoryLimit", &dflt(Dflt::Int(10))),
    (
        "strategy",
        &Node {
            materialize: true,
            ..map(&[
                (
                    "rollingUpdate",
                    &Node {
                        materialize: true,
                        apply_if: Some(rolling_update),
                        ..map(&[
                            ("maxSurge", &INT_OR_STRING_25),
                            ("maxUnavailable", &INT_OR_STRING_25),
                        ])
                    },
                ),
                ("type", &dflt(Dflt::Str("RollingUpdate"))),
            ])
        },
    ),
    ("template", &POD_TEMPLATE),
]);

static PVC_SPEC: Node = map(&[
    ("resources", &RESOURCES),
    ("volumeMode", &dflt(Dflt::Str("Filesystem"))),
    ("volumeName", &SERVER_SET),
]);

static CLAIM_TEMPLATE: Node = map(&[
    ("apiVersion", &dflt(Dflt::Str("v1"))),
    ("kind", &dflt(Dflt::Str("PersistentVolumeClaim"))),
    ("metadata", &TEMPLATE_METADATA),
    ("spec", &PVC_SPEC),
    ("status", &SKIP),
]);

static STATEFULSET_SPEC: Node = map(&[
    (
        "persistentVolumeClaimRetentionPolicy",
        &Node {
            materialize: true,
            ..map(&[
                ("whenDeleted", &dflt(Dflt::Str("Retain"))),
                ("whenScaled", &dflt(Dflt::Str("Retain"))),
            ])
        },
    ),
    ("podManagementPolicy", &dflt(Dflt::Str("OrderedReady"))),
    ("replicas", &dflt(Dflt::Int(1))),
    ("revisionHistoryLimit", &dflt(Dflt::Int(10))),
    ("template", &POD_TEMPLATE),
    (
        "updateStrategy",
        &Node {
            materialize: true,
            ..map(&[
                (
                    "rollingUpdate",
                    &Node {
                        materialize: true,
                        apply_if: Some(rolling_update),
                        ..map(&[
                            (
                                "maxUnavailable",
                                &Node {
                                    leaf: Leaf::IntOrString,
                                    ..dflt(Dflt::Int(1))
                                },
                            ),
                            ("partition", &dflt(Dflt::Int(0))),
                        ])
                    },
                ),
                ("type", &dflt(Dflt::Str("RollingUpdate"))),
            ])
        },
    ),
    (
        "volumeClaimTemplates",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: false,
                item: &CLAIM_TEMPLATE,
            }),
            ..Node::GENERIC
        },
    ),
]);

static DAEMONSET_SPEC: Node = map(&[
    ("revisionHistoryLimit", &dflt(Dflt::Int(10))),
    ("template", &POD_TEMPLATE),
    (
        "updateStrategy",
        &Node {
            materialize: true,
            ..map(&[
                (
                    "rollingUpdate",
                    &Node {
                        materialize: true,
                        apply_if: Some(rolling_update),
                        ..map(&[
                            (
                                "maxSurge",
                                &Node {
                                    leaf: Leaf::IntOrString,
                                    ..dflt(Dflt::Int(0))
                                },
                            ),
                            (
                                "maxUnavailable",
                                &Node {
                                    leaf: Leaf::IntOrString,
                                    ..dflt(Dflt::Int(1))
                                },
                            ),
                        ])
                    },
                ),
                ("type", &dflt(Dflt::Str("RollingUpdate"))),
            ])
        },
    ),
]);

static REPLICASET_SPEC: Node = map(&[("replicas", &dflt(Dflt::Int(1))), ("template", &POD_TEMPLATE)]);

static TEMPLATE_LABELS_META: Node = map(&[
    ("annotations", &ANNOTATIONS),
    ("creationTimestamp", &SKIP),
    ("deletionGracePeriodSeconds", &SKIP),
    ("deletionTimestamp", &SKIP),
    ("generateName", &SKIP),
    ("generation", &SKIP),
    (
        "labels",
        &Node {
            values: Some(&dflt(Dflt::TemplateLabel)),
            ..Node::GENERIC
        },
    ),
    ("managedFields", &SKIP),
    ("name", &SKIP),
    ("namespace", &SKIP),
    ("ownerReferences", &SKIP),
    ("resourceVersion", &SKIP),
    ("selfLink", &SKIP),
    ("uid", &SKIP),
]);

static RC_SPEC: Node = map(&[
    ("replicas", &dflt(Dflt::Int(1))),
    (
        "selector",
        &Node {
            values: Some(&dflt(Dflt::TemplateLabel)),
            ..Node::GENERIC
        },
    ),
    ("template", &POD_TEMPLATE),
]);

static JOB_TEMPLATE_LABELS: Node = Node {
    fields: &[
        ("batch.kubernetes.io/controller-uid", &SERVER_SET),
        ("batch.kubernetes.io/job-name", &SERVER_SET),
        ("controller-uid", &SERVER_SET),
        ("job-name", &SERVER_SET),
    ],
    values: Some(&PLAIN),
    ..Node::GENERIC
};
static JOB_POD_TEMPLATE: Node = map(&[
    (
        "metadata",
        &map(&[
            ("annotations", &ANNOTATIONS),
            ("creationTimestamp", &SKIP),
            ("labels", &JOB_TEMPLATE_LABELS),
        ]),
    ),
    ("spec", &POD_SPEC),
]);

/// `pkg/apis/batch/v1/defaults.go` SetDefaults_Job (current releases).
static JOB_SPEC: Node = map(&[
    ("backoffLimit", &dflt(Dflt::JobBackoffLimit)),
    ("completionMode", &dflt(Dflt::Str("NonIndexed"))),
    ("completions", &dflt(Dflt::JobCompletions)),
    ("manualSelector", &dflt(Dflt::Bool(false))),
    ("parallelism", &dflt(Dflt::Int(1))),
    (
        "podFailurePolicy",
        &map(&[(
            "rules",
            &Node {
                list: Some(&ListSpec {
                    keys: &[],
                    set: false,
                    item: &map(&[(
                        "onPodConditions",
                        &Node {
                            list: Some(&ListSpec {
                                keys: &[],
                                set: false,
                                item: &map(&[("status", &dflt(Dflt::Str("True")))]),
                            }),
                            ..Node::GENERIC
                        },
                    )]),
                }),
                ..Node::GENERIC
            },
        )]),
    ),
    ("podReplacementPolicy", &dflt(Dflt::JobPodReplacementPolicy)),
    ("selector", &SERVER_SET),
    ("suspend", &dflt(Dflt::Bool(false))),
    ("template", &JOB_POD_TEMPLATE),
]);

static CRONJOB_SPEC: Node = map(&[
    ("concurrencyPolicy", &dflt(Dflt::Str("Allow"))),
    ("failedJobsHistoryLimit", &dflt(Dflt::Int(1))),
    (
        "jobTemplate",
        &map(&[("spec", &map(&[("template", &POD_TEMPLATE)]))]),
    ),
    ("successfulJobsHistoryLimit", &dflt(Dflt::Int(3))),
    ("suspend", &dflt(Dflt::Bool(false))),
]);

// ---------------------------------------------------------------------------------------------
// services and core objects

static SERVICE_PORT: Node = map(&[
    ("nodePort", &SERVER_SET),
    ("protocol", &dflt(Dflt::Str("TCP"))),
    (
        "targetPort",
        &Node {
            leaf: Leaf::IntOrString,
            zero_is_default: true,
            ..dflt(Dflt::TargetPort)
        },
    ),
]);

static SERVICE_SPEC: Node = map(&[
    (
        "allocateLoadBalancerNodePorts",
        &Node {
            apply_if: Some(load_balancer),
            ..dflt(Dflt::Bool(true))
        },
    ),
    // `""` asks for an allocation, as absent does (`ValidateService`, the IP allocator).
    (
        "clusterIP",
        &Node {
            zero_is_default: true,
            ..SERVER_SET
        },
    ),
    ("clusterIPs", &SERVER_SET),
    (
        "externalTrafficPolicy",
        &Node {
            apply_if: Some(node_port_or_lb),
            ..dflt(Dflt::Str("Cluster"))
        },
    ),
    ("healthCheckNodePort", &SERVER_SET),
    (
        "internalTrafficPolicy",
        &Node {
            apply_if: Some(not_external_name),
            ..dflt(Dflt::Str("Cluster"))
        },
    ),
    ("ipFamilies", &SERVER_SET),
    ("ipFamilyPolicy", &SERVER_SET),
    (
        "ports",
        &Node {
            list: Some(&ListSpec {
                keys: &[
                    KeySpec {
                        name: "port",
                        default: None,
                    },
                    KeySpec {
                        name: "protocol",
                        default: Some("TCP"),
                    },
                ],
                set: false,
                item: &SERVICE_PORT,
            }),
            closed: true,
            ..Node::GENERIC
        },
    ),
    ("sessionAffinity", &dflt(Dflt::Str("None"))),
    (
        "sessionAffinityConfig",
        &Node {
            dropped_if: Some(|spec| spec.get("sessionAffinity").and_then(Value::as_str) != Some("ClientIP")),
            ..map(&[("clientIP", &map(&[("timeoutSeconds", &dflt(Dflt::Int(10800)))]))])
        },
    ),
    ("type", &dflt(Dflt::Str("ClusterIP"))),
]);

static CLOSED_MAP: Node = Node {
    values: Some(&PLAIN),
    closed: true,
    ..Node::GENERIC
};

static NAMESPACE_LABELS: Node = Node {
    fields: &[("kubernetes.io/metadata.name", &dflt(Dflt::NamespaceName))],
    values: Some(&PLAIN),
    materialize: true,
    ..Node::GENERIC
};
static NAMESPACE_METADATA: Node = map(&[
    ("annotations", &ANNOTATIONS),
    ("creationTimestamp", &SKIP),
    ("deletionGracePeriodSeconds", &SKIP),
    ("deletionTimestamp", &SKIP),
    ("generateName", &SKIP),
    ("generation", &SKIP),
    ("labels", &NAMESPACE_LABELS),
    ("managedFields", &SKIP),
    ("name", &SKIP),
    ("namespace", &SKIP),
    ("ownerReferences", &SKIP),
    ("resourceVersion", &SKIP),
    ("selfLink", &SKIP),
    ("uid", &SKIP),
]);

fn kubernetes_finalizer() -> Value {
    json!(["kubernetes"])
}

static ENDPOINT_PORTS: ListSpec = ListSpec {
    keys: &[],
    set: true,
    item: &map(&[("protocol", &dflt(Dflt::Str("TCP")))]),
};
static ENDPOINT_SUBSET: Node = map(&[
    (
        "addresses",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: true,
                item: &PLAIN,
            }),
            ..Node::GENERIC
        },
    ),
    (
        "notReadyAddresses",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: true,
                item: &PLAIN,
            }),
            ..Node::GENERIC
        },
    ),
    (
        "ports",
        &Node {
            list: Some(&ENDPOINT_PORTS),
            ..Node::GENERIC
        },
    ),
]);

static PV_SPEC: Node = map(&[
    ("capacity", &QUANTITY_MAP),
    ("persistentVolumeReclaimPolicy", &dflt(Dflt::Str("Retain"))),
    ("volumeMode", &dflt(Dflt::Str("Filesystem"))),
]);

static RESOURCE_QUOTA_SPEC: Node = map(&[("hard", &QUANTITY_MAP)]);
static LIMIT_RANGE_ITEM: Node = map(&[
    ("default", &QUANTITY_MAP),
    ("defaultRequest", &QUANTITY_MAP),
    ("max", &QUANTITY_MAP),
    ("maxLimitRequestRatio", &QUANTITY_MAP),
    ("min", &QUANTITY_MAP),
]);

// ---------------------------------------------------------------------------------------------
// RBAC and autoscaling

static POLICY_RULE: Node = map(&[
    ("apiGroups", &SET),
    ("nonResourceURLs", &SET),
    ("resourceNames", &SET),
    ("resources", &SET),
    ("verbs", &SET),
]);
static RULES: Node = Node {
    list: Some(&ListSpec {
        keys: &[],
        set: false,
        item: &POLICY_RULE,
    }),
    closed: true,
    ..Node::GENERIC
};

static SUBJECT: Node = map(&[("apiGroup", &dflt(Dflt::SubjectApiGroup))]);
static SUBJECTS: Node = Node {
    list: Some(&ListSpec {
        keys: &[
            KeySpec {
                name: "kind",
                default: None,
            },
            KeySpec {
                name: "namespace",
                default: None,
            },
            KeySpec {
                name: "name",
                default: None,
            },
        ],
        set: false,
        item: &SUBJECT,
    }),
    closed: true,
    ..Node::GENERIC
};

fn hpa_default_metrics() -> Value {
    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}])
}
fn hpa_scale_up_policies() -> Value {
    json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
}
fn hpa_scale_down_policies() -> Value {
    json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
}

static HPA_SPEC: Node = map(&[
    (
        "behavior",
        &map(&[
            (
                "scaleDown",
                &map(&[
                    ("policies", &dflt(Dflt::Build(hpa_scale_down_policies))),
                    ("selectPolicy", &dflt(Dflt::Str("Max"))),
                ]),
            ),
            (
                "scaleUp",
                &map(&[
                    ("policies", &dflt(Dflt::Build(hpa_scale_up_policies))),
                    ("selectPolicy", &dflt(Dflt::Str("Max"))),
                    ("stabilizationWindowSeconds", &dflt(Dflt::Int(0))),
                ]),
            ),
        ]),
    ),
    // The HPA controller reorders metrics (kubernetes#74099): compare them as a set.
    (
        "metrics",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: true,
                item: &PLAIN,
            }),
            default: Some(Dflt::Build(hpa_default_metrics)),
            ..Node::GENERIC
        },
    ),
    ("minReplicas", &dflt(Dflt::Int(1))),
]);

// ---------------------------------------------------------------------------------------------
// roots

macro_rules! root {
    ($($extra:expr),* $(,)?) => {
        map(&[("apiVersion", &SKIP), ("kind", &SKIP), ("metadata", &METADATA), $($extra,)* ("status", &SKIP)])
    };
}

static GENERIC_ROOT: Node = root!();
static DEPLOYMENT: Node = root!(("spec", &DEPLOYMENT_SPEC));
static STATEFULSET: Node = root!(("spec", &STATEFULSET_SPEC));
static DAEMONSET: Node = root!(("spec", &DAEMONSET_SPEC));
static REPLICASET: Node = root!(("spec", &REPLICASET_SPEC));
static POD: Node = root!(("spec", &POD_ONLY_SPEC));
static SERVICE: Node = root!(("spec", &SERVICE_SPEC));
static CONFIGMAP: Node = map(&[
    ("apiVersion", &SKIP),
    ("binaryData", &CLOSED_MAP),
    ("data", &CLOSED_MAP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
]);
static SECRET: Node = map(&[
    ("apiVersion", &SKIP),
    ("data", &CLOSED_MAP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("type", &dflt(Dflt::Str("Opaque"))),
]);
static NAMESPACE: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &NAMESPACE_METADATA),
    (
        "spec",
        &Node {
            materialize: true,
            ..map(&[("finalizers", &dflt(Dflt::Build(kubernetes_finalizer)))])
        },
    ),
    ("status", &SKIP),
]);
static ENDPOINTS: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    (
        "subsets",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: true,
                item: &ENDPOINT_SUBSET,
            }),
            ..Node::GENERIC
        },
    ),
]);
static PVC: Node = root!(("spec", &PVC_SPEC));
static PV: Node = root!(("spec", &PV_SPEC));
static SERVICE_ACCOUNT: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("secrets", &keyed!(NAME_KEY, &PLAIN)),
]);
static REPLICATION_CONTROLLER: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &TEMPLATE_LABELS_META),
    ("spec", &RC_SPEC),
    ("status", &SKIP),
]);
static JOB: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &TEMPLATE_LABELS_META),
    ("spec", &JOB_SPEC),
    ("status", &SKIP),
]);
static CRONJOB: Node = root!(("spec", &CRONJOB_SPEC));
static HPA: Node = root!(("spec", &HPA_SPEC));
static ROLE: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("rules", &RULES),
]);
static BINDING: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    // `pkg/apis/rbac/v1/defaults.go` SetDefaults_RoleBinding / ClusterRoleBinding.
    (
        "roleRef",
        &map(&[("apiGroup", &dflt(Dflt::Str("rbac.authorization.k8s.io")))]),
    ),
    ("subjects", &SUBJECTS),
]);

// ---------------------------------------------------------------------------------------------
// security-relevant kinds without workloads: a flipped default here opens a door

static NETWORK_POLICY_PORT: Node = map(&[("protocol", &dflt(Dflt::Str("TCP")))]);
static NETWORK_POLICY_RULE: Node = map(&[(
    "ports",
    &Node {
        list: Some(&ListSpec {
            keys: &[],
            set: false,
            item: &NETWORK_POLICY_PORT,
        }),
        ..Node::GENERIC
    },
)]);
static NETWORK_POLICY_RULES: Node = Node {
    list: Some(&ListSpec {
        keys: &[],
        set: false,
        item: &NETWORK_POLICY_RULE,
    }),
    ..Node::GENERIC
};
/// `pkg/apis/networking/v1/defaults.go` SetDefaults_NetworkPolicy, SetDefaults_NetworkPolicyPort.
static NETWORK_POLICY: Node = root!((
    "spec",
    &map(&[
        ("egress", &NETWORK_POLICY_RULES),
        ("ingress", &NETWORK_POLICY_RULES),
        (
            "policyTypes",
            &Node {
                list: Some(&SET_OF_SCALARS),
                ..dflt(Dflt::PolicyTypes)
            }
        ),
    ])
));

static WEBHOOK_RULE: Node = map(&[("scope", &dflt(Dflt::Str("*")))]);
static WEBHOOK_RULES: Node = Node {
    list: Some(&ListSpec {
        keys: &[],
        set: false,
        item: &WEBHOOK_RULE,
    }),
    ..Node::GENERIC
};
static WEBHOOK_CLIENT_CONFIG: Node = map(&[("service", &map(&[("port", &dflt(Dflt::Int(443)))]))]);
/// `pkg/apis/admissionregistration/v1/defaults.go` SetDefaults_ValidatingWebhook, SetDefaults_Rule,
/// SetDefaults_ServiceReference.
static VALIDATING_WEBHOOK: Node = map(&[
    ("clientConfig", &WEBHOOK_CLIENT_CONFIG),
    ("failurePolicy", &dflt(Dflt::Str("Fail"))),
    ("matchPolicy", &dflt(Dflt::Str("Equivalent"))),
    ("namespaceSelector", &dflt(Dflt::EmptyMap)),
    ("objectSelector", &dflt(Dflt::EmptyMap)),
    ("rules", &WEBHOOK_RULES),
    ("timeoutSeconds", &dflt(Dflt::Int(10))),
]);
/// SetDefaults_MutatingWebhook: the same, and `reinvocationPolicy: Never`.
static MUTATING_WEBHOOK: Node = map(&[
    ("clientConfig", &WEBHOOK_CLIENT_CONFIG),
    ("failurePolicy", &dflt(Dflt::Str("Fail"))),
    ("matchPolicy", &dflt(Dflt::Str("Equivalent"))),
    ("namespaceSelector", &dflt(Dflt::EmptyMap)),
    ("objectSelector", &dflt(Dflt::EmptyMap)),
    ("reinvocationPolicy", &dflt(Dflt::Str("Never"))),
    ("rules", &WEBHOOK_RULES),
    ("timeoutSeconds", &dflt(Dflt::Int(10))),
]);
static VALIDATING_WEBHOOK_CONFIGURATION: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("webhooks", &keyed!(NAME_KEY, &VALIDATING_WEBHOOK)),
]);
static MUTATING_WEBHOOK_CONFIGURATION: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("webhooks", &keyed!(NAME_KEY, &MUTATING_WEBHOOK)),
]);
/// `pkg/apis/storage/v1/defaults.go` SetDefaults_StorageClass.
static STORAGE_CLASS: Node = map(&[
    ("apiVersion", &SKIP),
    ("kind", &SKIP),
    ("metadata", &METADATA),
    ("reclaimPolicy", &dflt(Dflt::Str("Delete"))),
    ("volumeBindingMode", &dflt(Dflt::Str("Immediate"))),
]);
/// `pkg/apis/scheduling/v1/defaults.go` SetDefaults_PriorityClass.
static PRIORITY_CLASS: Node = root!(("preemptionPolicy", &dflt(Dflt::Str("PreemptLowerPriority"))));
static RESOURCE_QUOTA: Node = root!(("spec", &RESOURCE_QUOTA_SPEC));
static LIMIT_RANGE: Node = root!((
    "spec",
    &map(&[(
        "limits",
        &Node {
            list: Some(&ListSpec {
                keys: &[],
                set: false,
                item: &LIMIT_RANGE_ITEM
            }),
            ..Node::GENERIC
        }
    )])
));

/// `pkg/apis/networking/v1/defaults.go` SetDefaults_IngressClass: a parameters reference without a
/// scope refers to a cluster-scoped resource.
static INGRESS_CLASS: Node = root!((
    "spec",
    &map(&[("parameters", &map(&[("scope", &dflt(Dflt::Str("Cluster")))]))])
));
/// `staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/defaults.go`:
/// SetDefaults_CustomResourceDefinitionSpec (conversion `None`, `names.singular` the lower-cased kind,
/// `names.listKind` the kind + `List`) and SetDefaults_ServiceReference (port 443).
static CRD: Node = root!((
    "spec",
    &map(&[
        (
            "conversion",
            &Node {
                fields: &[
                    ("strategy", &dflt(Dflt::Str("None"))),
                    (
                        "webhook",
                        &map(&[(
                            "clientConfig",
                            &map(&[("service", &map(&[("port", &dflt(Dflt::Int(443)))]))])
                        )])
                    ),
                ],
                ..dflt(Dflt::Build(crd_conversion_default))
            }
        ),
        (
            "names",
            &map(&[
                ("listKind", &dflt(Dflt::SiblingSuffix("kind", "List"))),
                ("singular", &dflt(Dflt::SiblingLower("kind"))),
            ])
        ),
    ])
));

fn crd_conversion_default() -> Value {
    serde_json::json!({"strategy": "None"})
}

/// A kind's schema and the API version whose defaults the table holds.
pub(crate) struct KindSchema {
    pub group: &'static str,
    pub kind: &'static str,
    /// The version the defaults apply to; other versions get structure but no defaults.
    pub defaults_version: Option<&'static str>,
    pub root: &'static Node,
}

pub(crate) static KINDS: &[KindSchema] = &[
    KindSchema {
        group: "apps",
        kind: "Deployment",
        defaults_version: Some("v1"),
        root: &DEPLOYMENT,
    },
    KindSchema {
        group: "apps",
        kind: "StatefulSet",
        defaults_version: Some("v1"),
        root: &STATEFULSET,
    },
    KindSchema {
        group: "apps",
        kind: "DaemonSet",
        defaults_version: Some("v1"),
        root: &DAEMONSET,
    },
    KindSchema {
        group: "apps",
        kind: "ReplicaSet",
        defaults_version: Some("v1"),
        root: &REPLICASET,
    },
    KindSchema {
        group: "",
        kind: "Pod",
        defaults_version: Some("v1"),
        root: &POD,
    },
    KindSchema {
        group: "",
        kind: "Service",
        defaults_version: Some("v1"),
        root: &SERVICE,
    },
    KindSchema {
        group: "",
        kind: "ConfigMap",
        defaults_version: Some("v1"),
        root: &CONFIGMAP,
    },
    KindSchema {
        group: "",
        kind: "Secret",
        defaults_version: Some("v1"),
        root: &SECRET,
    },
    KindSchema {
        group: "",
        kind: "Namespace",
        defaults_version: Some("v1"),
        root: &NAMESPACE,
    },
    KindSchema {
        group: "",
        kind: "Endpoints",
        defaults_version: Some("v1"),
        root: &ENDPOINTS,
    },
    KindSchema {
        group: "",
        kind: "PersistentVolumeClaim",
        defaults_version: Some("v1"),
        root: &PVC,
    },
    KindSchema {
        group: "",
        kind: "PersistentVolume",
        defaults_version: Some("v1"),
        root: &PV,
    },
    KindSchema {
        group: "",
        kind: "ServiceAccount",
        defaults_version: Some("v1"),
        root: &SERVICE_ACCOUNT,
    },
    KindSchema {
        group: "",
        kind: "ReplicationController",
        defaults_version: Some("v1"),
        root: &REPLICATION_CONTROLLER,
    },
    KindSchema {
        group: "",
        kind: "ResourceQuota",
        defaults_version: Some("v1"),
        root: &RESOURCE_QUOTA,
    },
    KindSchema {
        group: "",
        kind: "LimitRange",
        defaults_version: Some("v1"),
        root: &LIMIT_RANGE,
    },
    KindSchema {
        group: "batch",
        kind: "Job",
        defaults_version: Some("v1"),
        root: &JOB,
    },
    KindSchema {
        group: "batch",
        kind: "CronJob",
        defaults_version: Some("v1"),
        root: &CRONJOB,
    },
    KindSchema {
        group: "autoscaling",
        kind: "HorizontalPodAutoscaler",
        defaults_version: Some("v2"),
        root: &HPA,
    },
    KindSchema {
        group: "rbac.authorization.k8s.io",
        kind: "Role",
        defaults_version: Some("v1"),
        root: &ROLE,
    },
    KindSchema {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        defaults_version: Some("v1"),
        root: &ROLE,
    },
    KindSchema {
        group: "rbac.authorization.k8s.io",
        kind: "RoleBinding",
        defaults_version: Some("v1"),
        root: &BINDING,
    },
    KindSchema {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        defaults_version: Some("v1"),
        root: &BINDING,
    },
    KindSchema {
        group: "networking.k8s.io",
        kind: "NetworkPolicy",
        defaults_version: Some("v1"),
        root: &NETWORK_POLICY,
    },
    KindSchema {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        defaults_version: Some("v1"),
        root: &VALIDATING_WEBHOOK_CONFIGURATION,
    },
    KindSchema {
        group: "admissionregistration.k8s.io",
        kind: "MutatingWebhookConfiguration",
        defaults_version: Some("v1"),
        root: &MUTATING_WEBHOOK_CONFIGURATION,
    },
    KindSchema {
        group: "storage.k8s.io",
        kind: "StorageClass",
        defaults_version: Some("v1"),
        root: &STORAGE_CLASS,
    },
    KindSchema {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        defaults_version: Some("v1"),
        root: &PRIORITY_CLASS,
    },
    KindSchema {
        group: "networking.k8s.io",
        kind: "IngressClass",
        defaults_version: Some("v1"),
        root: &INGRESS_CLASS,
    },
    KindSchema {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        defaults_version: Some("v1"),
        root: &CRD,
    },
];

/// The schema root for a kind and whether its defaults apply to `version`.
pub(crate) fn root_for(group: &str, version: &str, kind: &str) -> (&'static Node, bool) {
    static INDEX: std::sync::OnceLock<crate::kinds::KindIndex<KindSchema>> = std::sync::OnceLock::new();
    let index = INDEX.get_or_init(|| crate::kinds::index_by_kind(KINDS, |k| k.kind));
    match index
        .get(kind)
        .and_then(|ks| ks.iter().find(|k| k.group == group))
    {
        Some(k) => (k.root, k.defaults_version == Some(version)),
        None => (&GENERIC_ROOT, false),
    }
}

/// The schema node at a path below `root`.
pub(crate) fn node_at(root: &'static Node, segs: &[crate::path::Segment]) -> &'static Node {
    let mut n = root;
    for s in segs {
        n = match s {
            crate::path::Segment::Field(f) => n.child(f),
            _ => n.list.map_or(&GENERIC, |l| l.item),
        };
    }
    n
}

// ---------------------------------------------------------------------------------------------
// default evaluation

/// The value the server would have filled in for a field, computed from its live surroundings, or
/// `None` when no default applies here (e.g. a label that is not in the pod template).
///
/// `key` is the field's name, `ancestors` the live maps from the object root down to the field's
/// parent (inclusive).
pub(crate) fn default_value_in(d: &Dflt, key: &str, levels: &[Level<'_>]) -> Option<Value> {
    let parent = levels.last();
    let grandparent = levels.len().checked_sub(2).and_then(|i| levels.get(i));
    match d {
        Dflt::Str(s) => Some(Value::String((*s).to_string())),
        Dflt::Int(i) => Some(Value::from(*i)),
        Dflt::Bool(b) => Some(Value::Bool(*b)),
        Dflt::Build(f) => Some(f()),
        Dflt::EmptyMap => Some(Value::Object(Map::new())),
        Dflt::ImagePullPolicy => {
            let image = parent?.get("image")?;
            let image = image.as_str()?;
            Some(Value::String(
                if crate::image::tag(image) == Some("latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                }
                .to_string(),
            ))
        }
        Dflt::TargetPort => parent?.get("port").map(Cow::into_owned),
        Dflt::ServerSet => None,
        // A mirror of another live field: it follows that field as the server wrote it.
        Dflt::Sibling(s) => parent?.live.get(s).map(Cow::into_owned),
        Dflt::SiblingSuffix(s, suffix) => {
            let base = parent?.get(s)?;
            let base = base.as_str().filter(|b| !b.is_empty())?;
            Some(Value::String(format!("{base}{suffix}")))
        }
        Dflt::SiblingLower(s) => Some(Value::String(parent?.get(s)?.as_str()?.to_lowercase())),
        Dflt::NamespaceName => grandparent?.get("name").map(Cow::into_owned),
        Dflt::TemplateLabel => levels
            .first()?
            .pointer("/spec/template/metadata/labels")?
            .get(key)
            .cloned(),
        Dflt::LimitOfSameResource => grandparent?.get("limits")?.get(key).cloned(),
        Dflt::SubjectApiGroup => match parent?.get("kind").as_deref().and_then(Value::as_str) {
            Some("User" | "Group") => Some(Value::String("rbac.authorization.k8s.io".to_string())),
            _ => Some(Value::String(String::new())),
        },
        // What was submitted decides: live always carries both fields once the server copied one.
        Dflt::ServiceAccountName => Some(
            parent?
                .desired
                .and_then(|d| d.get("serviceAccount"))
                .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                .map(Cow::into_owned)
                .unwrap_or_else(|| Value::String("default".into())),
        ),
        // From what was submitted: a live egress list the manifest never had does not widen the default.
        Dflt::PolicyTypes => {
            let egress = match parent?.desired {
                Some(d) => d
                    .get("egress")
                    .as_deref()
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty()),
                None => false,
            };
            let mut types = vec![Value::String("Ingress".into())];
            if egress {
                types.push(Value::String("Egress".into()));
            }
            Some(Value::Array(types))
        }
        Dflt::JobBackoffLimit => Some(Value::from(
            if parent?.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null()) {
                i64::from(i32::MAX)
            } else {
                6
            },
        )),
        // What was submitted decides: the server sets parallelism itself, so live always has one.
        Dflt::JobCompletions => match parent?.desired {
            Some(d) if d.get("parallelism").is_some_and(|v| !v.is_null()) => None,
            _ => Some(Value::from(1)),
        },
        Dflt::JobPodReplacementPolicy => Some(Value::String(
            if parent?.get("podFailurePolicy").is_some_and(|v| !v.is_null()) {
                "Failed"
            } else {
                "TerminatingOrFailed"
            }
            .to_string(),
        )),
    }
}

/// How a live value relates to the server default of its field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DefaultVerdict {
    /// No default applies.
    None,
    /// Live holds the default (or a value the server sets itself).
    Matches,
    /// Live differs from this default: someone edited a defaulted field.
    Differs(Value),
}

/// Compares a live value with the default of `node`.
pub(crate) fn default_verdict<'a, L: crate::tree::Tree<'a>>(
    node: &Node,
    key: &str,
    live: L,
    levels: &[Level<'_>],
) -> DefaultVerdict {
    let Some(d) = &node.default else {
        return DefaultVerdict::None;
    };
    // The common constant defaults, compared without building a value.
    match d {
        Dflt::ServerSet => return DefaultVerdict::Matches,
        Dflt::Str(s) if live.as_str() == Some(*s) => return DefaultVerdict::Matches,
        Dflt::Int(i) if live.as_number().and_then(|n| n.as_i64()) == Some(*i) => {
            return DefaultVerdict::Matches;
        }
        Dflt::Bool(b) if live.eq_value(&Value::Bool(*b)) => return DefaultVerdict::Matches,
        // The server sets it once, at creation, from the image of that day: a later image change keeps
        // it, so either value it can set is a default; only `Never` (or anything else) is an edit.
        Dflt::ImagePullPolicy if matches!(live.as_str(), Some("Always" | "IfNotPresent")) => {
            return DefaultVerdict::Matches;
        }
        _ => {}
    }
    match default_value_in(d, key, levels) {
        None => DefaultVerdict::None,
        Some(v) => {
            let live = live.to_value();
            let equal = match node.leaf {
                Leaf::Quantity | Leaf::ResourceQuantity => crate::value::quantity_eq(&v, &live),
                _ => crate::value::loose_eq(&v, &live),
            };
            if equal {
                DefaultVerdict::Matches
            } else {
                DefaultVerdict::Differs(v)
            }
        }
    }
}

/// The default of the field at `segs` in `live` (with `desired` for sibling values), for reverting an
/// edited default. `desired_pointer` locates the same field in the desired object.
pub(crate) fn default_at(
    root: &'static Node,
    live: &Value,
    desired: &Value,
    segs: &[crate::path::Segment],
    desired_pointer: Option<&str>,
) -> Option<Value> {
    let (last, parents) = segs.split_last()?;
    let crate::path::Segment::Field(key) = last else {
        return None;
    };
    let dtokens = desired_pointer
        .map(crate::path::pointer_tokens)
        .unwrap_or_default();
    let mut levels: Vec<Level<'_>> = Vec::with_capacity(parents.len() + 1);
    let (mut l, mut d) = (live, Some(desired));
    levels.push(Level {
        live: MapRef::Value(l.as_object()?),
        desired: d.and_then(Value::as_object).map(MapRef::Value),
    });
    for (i, s) in parents.iter().enumerate() {
        l = match s {
            crate::path::Segment::Field(f) => l.get(f)?,
            crate::path::Segment::Index(i) | crate::path::Segment::Key { index: Some(i), .. } => l.get(*i)?,
            crate::path::Segment::Key { index: None, .. } => return None,
        };
        d = d.and_then(|d| {
            let t = dtokens.get(i)?;
            match d {
                Value::Array(a) => a.get(t.parse::<usize>().ok()?),
                _ => d.get(t.as_str()),
            }
        });
        if let Some(m) = l.as_object() {
            levels.push(Level {
                live: MapRef::Value(m),
                desired: d.and_then(Value::as_object).map(MapRef::Value),
            });
        }
    }
    let node = node_at(root, segs);
    default_value_in(node.default.as_ref()?, key, &levels)
}

/// The default value for display (`None` for defaults that depend on other fields).
pub(crate) fn default_value(d: &Dflt) -> Option<Value> {
    match d {
        Dflt::Str(s) => Some(Value::String((*s).to_string())),
        Dflt::Int(i) => Some(Value::from(*i)),
        Dflt::Bool(b) => Some(Value::Bool(*b)),
        Dflt::Build(f) => Some(f()),
        Dflt::EmptyMap => Some(Value::Object(Map::new())),
        _ => None,
    }
}

/// Fills in the server defaults the table knows, as the API server does on create and update: every
/// absent field with a default gets it, and maps the server always shows (`strategy`, a pod's
/// `securityContext: {}`, a container's `resources: {}`) are created. Defaults that depend on other
/// fields are computed from them (`imagePullPolicy` from the image, `targetPort` from the port).
/// Values the server allocates (cluster IPs, node ports) are not invented here. Objects of versions
/// the table does not cover are left alone.
///
/// ```
/// use serde_json::json;
/// let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
///                      "spec": {"ports": [{"port": 80}]}});
/// drift_core::fill_server_defaults(&mut svc);
/// assert_eq!(svc["spec"]["type"], "ClusterIP");
/// assert_eq!(svc["spec"]["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
/// ```
pub fn fill_server_defaults(object: &mut Value) {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (group, version) = crate::model::split_api_version(&api_version);
    let (root, enabled) = root_for(group, version, &kind);
    if !enabled {
        return;
    }
    // Materialized maps get their own defaults on the next pass; a handful of passes reach the fixpoint.
    for _ in 0..8 {
        let mut inserts: Vec<(Vec<PathToken>, String, Value)> = Vec::new();
        let mut levels = Vec::new();
        collect_defaults(root, object, &mut levels, &mut Vec::new(), &mut inserts);
        if inserts.is_empty() {
            return;
        }
        // A default of "" is Go's zero value: the server's JSON omits it (`omitempty`).
        for (path, key, value) in inserts.into_iter().filter(|(_, _, v)| v.as_str() != Some("")) {
            let mut target: Option<&mut Value> = Some(&mut *object);
            for t in &path {
                target = match (t, target) {
                    (PathToken::Key(k), Some(Value::Object(m))) => m.get_mut(k),
                    (PathToken::Index(i), Some(Value::Array(a))) => a.get_mut(*i),
                    _ => None,
                };
            }
            if let Some(Value::Object(m)) = target {
                m.entry(key).or_insert(value);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum PathToken {
    Key(String),
    Index(usize),
}

fn collect_defaults<'a>(
    node: &'static Node,
    value: &'a Value,
    levels: &mut Vec<Level<'a>>,
    path: &mut Vec<PathToken>,
    inserts: &mut Vec<(Vec<PathToken>, String, Value)>,
) {
    match value {
        Value::Object(map) => {
            levels.push(Level {
                live: MapRef::Value(map),
                desired: None,
            });
            for (key, child) in node.fields {
                if child.skip || child.implicit {
                    continue;
                }
                match map.get(*key) {
                    Some(v) => {
                        path.push(PathToken::Key((*key).to_string()));
                        collect_defaults(child, v, levels, path, inserts);
                        path.pop();
                    }
                    None => {
                        if child.apply_if.is_some_and(|f| !f(map)) {
                            continue;
                        }
                        let default = child
                            .default
                            .as_ref()
                            .and_then(|d| default_value_in(d, key, levels));
                        if let Some(v) = default {
                            inserts.push((path.clone(), (*key).to_string(), v));
                        } else if child.materialize {
                            inserts.push((path.clone(), (*key).to_string(), Value::Object(Map::new())));
                        }
                    }
                }
            }
            // Map-wide defaults: a pod's requests copy its limits.
            if let Some(vnode) = node.values {
                if matches!(vnode.default, Some(Dflt::LimitOfSameResource)) {
                    let limits = levels
                        .len()
                        .checked_sub(2)
                        .and_then(|i| levels.get(i))
                        .and_then(|l| l.get("limits"));
                    if let Some(Value::Object(limits)) = limits.as_deref() {
                        for (k, v) in limits {
                            if !map.contains_key(k) {
                                inserts.push((path.clone(), k.clone(), v.clone()));
                            }
                        }
                    }
                }
                for (k, v) in map {
                    if node.fields.iter().any(|(f, _)| f == k) {
                        continue;
                    }
                    if vnode.has_structure() {
                        path.push(PathToken::Key(k.clone()));
                        collect_defaults(vnode, v, levels, path, inserts);
                        path.pop();
                    }
                }
            }
            levels.pop();
        }
        Value::Array(items) => {
            if let Some(spec) = node.list {
                for (i, item) in items.iter().enumerate() {
                    path.push(PathToken::Index(i));
                    collect_defaults(spec.item, item, levels, path, inserts);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// Describes the server default of a field, for documentation and tests.
///
/// `path` is dotted, with `[]` for "every element of a list" (as in `k8s-defaults.yaml`), relative to
/// the object root: `spec.template.spec.containers[].imagePullPolicy`. Returns `None` when the table
/// has no default there for that version.
///
/// ```
/// assert_eq!(
///     drift_core::describe_default("apps/v1", "Deployment", "spec.strategy.rollingUpdate.maxSurge").as_deref(),
///     Some("\"25%\"")
/// );
/// assert_eq!(drift_core::describe_default("apps/v1beta1", "Deployment", "spec.replicas"), None);
/// ```
pub fn describe_default(api_version: &str, kind: &str, path: &str) -> Option<String> {
    let (group, version) = crate::model::split_api_version(api_version);
    let (mut node, enabled) = root_for(group, version, kind);
    if !enabled {
        return None;
    }
    // Split on dots outside brackets: `metadata.labels[kubernetes.io/metadata.name]`.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    for part in parts {
        let (name, selector) = match part.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']'))),
            None => (part, None),
        };
        node = node.child(name);
        match selector {
            None => {}
            // every element of a list
            Some("") => node = node.list?.item,
            // any key of a map
            Some("k" | "*") => node = node.values?,
            // one key of a map
            Some(key) => node = node.child(key),
        }
    }
    let d = node.default.as_ref()?;
    Some(match default_value(d) {
        Some(v) => v.to_string(),
        None => format!("{d:?}"),
    })
}

#[cfg(test)]
pub(crate) fn all_nodes() -> Vec<(&'static str, &'static Node)> {
    fn visit(name: &'static str, n: &'static Node, out: &mut Vec<(&'static str, &'static Node)>) {
        if out.iter().any(|(_, m)| std::ptr::eq(*m, n)) {
            return;
        }
        out.push((name, n));
        for (k, c) in n.fields {
            visit(k, c, out);
        }
        if let Some(v) = n.values {
            visit("<values>", v, out);
        }
        if let Some(l) = n.list {
            visit("<item>", l.item, out);
        }
    }
    let mut out = Vec::new();
    for k in KINDS {
        visit(k.kind, k.root, &mut out);
    }
    visit("<generic>", &GENERIC_ROOT, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sorted_and_unique() {
        for (name, node) in all_nodes() {
            for w in node.fields.windows(2) {
                assert!(
                    w[0].0 < w[1].0,
                    "fields of `{name}` not sorted: {} >= {}",
                    w[0].0,
                    w[1].0
                );
            }
        }
    }

    #[test]
    fn describe() {
        assert_eq!(
            describe_default("v1", "Service", "spec.ports[].protocol").as_deref(),
            Some("\"TCP\"")
        );
        assert_eq!(
            describe_default(
                "apps/v1",
                "Deployment",
                "spec.template.spec.containers[].imagePullPolicy"
            )
            .as_deref(),
            Some("ImagePullPolicy")
        );
        assert_eq!(describe_default("apps/v1", "Deployment", "spec.paused"), None);
    }
}
