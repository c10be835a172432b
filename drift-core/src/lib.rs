//! # drift-core
//!
//! The engine of drift-detector: it compares what runs in a Kubernetes cluster with the source of
//! truth, field by field, and says what drifted, how serious it is, and how to put it back.
//! No I/O, no async runtime, no Kubernetes client: adapters bring live and desired state in through
//! the [`ports`], and the [`Detector`] turns their events into drift lifecycle transitions.
//!
//! ## Brief overview
//!
//! - [`Resource`] and [`ResourceKey`]: a Kubernetes object and its identity; [`parse_documents`] and
//!   [`load_path`] read YAML/JSON manifests (multi-document, `kind: List`, directories, stdin).
//! - [`DiffEngine`]: compares a [`DesiredObject`] with a [`LiveObject`] under the diff semantics of
//!   ARCHITECTURE §3 (server defaults, ownership, keyed lists, quantities, images, ignore rules) and
//!   classifies each [`Drift`] with [`rules`].
//! - [`revert_patch`]: a guarded RFC 6902 patch that puts live back, leaving ignored fields alone.
//! - [`ports`]: the traits adapters implement ([`ports::LiveSource`], [`ports::DesiredStore`],
//!   [`ports::Remediator`], [`ports::DriftLog`], [`ports::Analyzer`]) and in-memory implementations
//!   in [`memory`].
//! - [`Detector`]: the pipeline's logic (coalescing, open-drift transitions, policy, rate limit, flap
//!   guard) with an injected [`clock::Clock`], tested without I/O.
//! - [`cost`]: the deterministic monthly cost of replica and resource drifts.
//!
//! ## Example
//!
//! ```
//! use drift_core::{parse_documents, DiffEngine, DesiredObject, LiveObject};
//!
//! let desired = parse_documents("desired.yaml", r#"
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web, namespace: shop}
//! spec:
//!   replicas: 2
//!   template:
//!     spec:
//!       containers:
//!       - name: web
//!         image: nginx:1.25
//!         resources: {requests: {cpu: "0.5", memory: 1Gi}}
//! "#);
//! // What `kubectl get -o yaml` shows: server defaults, other spellings, and one real change.
//! let live = parse_documents("live.yaml", r#"
//! apiVersion: apps/v1
//! kind: Deployment
//! metadata: {name: web, namespace: shop, generation: 4, resourceVersion: "981"}
//! spec:
//!   replicas: 2
//!   revisionHistoryLimit: 10
//!   progressDeadlineSeconds: 600
//!   strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}
//!   template:
//!     spec:
//!       containers:
//!       - name: web
//!         image: docker.io/library/nginx:1.26
//!         imagePullPolicy: IfNotPresent
//!         resources: {requests: {cpu: 500m, memory: 1024Mi}}
//!         terminationMessagePath: /dev/termination-log
//!         terminationMessagePolicy: File
//!       dnsPolicy: ClusterFirst
//!       restartPolicy: Always
//!       schedulerName: default-scheduler
//!       securityContext: {}
//!       terminationGracePeriodSeconds: 30
//! status: {replicas: 2}
//! "#);
//! let engine = DiffEngine::default();
//! let report = engine.diff(
//!     &DesiredObject::new(desired.resources[0].clone()),
//!     Some(&LiveObject::new(live.resources[0].clone())),
//! );
//! let found: Vec<String> = report.drifts.iter().map(|d| d.describe()).collect();
//! assert_eq!(found, [
//!     "spec.template.spec.containers[name=web].image expected=nginx:1.25, actual=docker.io/library/nginx:1.26",
//! ]);
//! assert_eq!(report.drifts[0].rule, "images");
//! ```

#![deny(missing_docs)]

pub mod analysis;
pub mod clock;
pub mod compiled;
pub mod cost;
pub mod custom;
pub mod deferred;
pub mod detector;
mod diff;
mod drift;
pub mod fingerprint;
mod flat;
#[doc(hidden)]
pub mod fuzzing;
pub mod ignore;
pub mod image;
pub mod kinds;
mod load;
pub mod memory;
mod model;
mod object;
mod ownership;
mod par;
pub mod patch;
pub mod path;
pub mod policy;
pub mod ports;
pub mod quantity;
mod queue;
pub mod redact;
pub mod rules;
pub mod safety;
mod schema;
pub mod shard;
mod tree;
mod value;

pub use detector::{Detector, DetectorConfig};
pub use diff::{DiffContext, DiffEngine, DiffOptions, HAND_MANAGERS};
pub use drift::{Actor, Change, Drift, DriftId, DriftReport, DriftStatus, UnmanagedField};
pub use flat::FlatLive;
pub use load::{
    LoadError, LoadOptions, Loaded, MAX_DEPTH, check_shape, compact_object, depth, load_path, load_path_with,
    load_reader, load_reader_with, manifest_files, parse_documents, parse_documents_with,
};
pub use model::{ObjectError, Resource, ResourceKey, check_api_version, json_type, split_api_version};
pub use object::{Autoscalers, CompiledLive, DesiredObject, LiveObject, hpa_v1_to_v2};
pub use ownership::shrink_last_applied;
pub use patch::{PatchError, revert_patch};
pub use quantity::Quantity;
pub use schema::{describe_default, fill_server_defaults};

// The README's Rust examples are doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
