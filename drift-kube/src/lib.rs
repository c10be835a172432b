//! # drift-kube
//!
//! drift-detector's Kubernetes adapter.
//!
//! - [`KubeLiveSource`]: live state through kube-runtime watches (never polling), projected to what
//!   the engine compares, with Secret values hashed on arrival.
//! - [`KubeRemediator`]: applies revert plans as guarded JSON Patches, dry run first.
//! - [`KubeEventRecorder`]: each drift transition as a Kubernetes Event on the object.
//! - [`sandbox`] (feature `sandbox`): an in-process Kubernetes API server that the real `kube`
//!   client and `kubectl` drive over HTTP.

#![deny(missing_docs)]

pub mod events;
mod live;
mod project;
mod remediate;
#[cfg(feature = "sandbox")]
pub mod sandbox;

pub use events::KubeEventRecorder;
pub use live::{DEFAULT_KINDS, KubeLiveSource, LiveSourceConfig, WatchStats};
pub use project::Projection;
pub use remediate::{FIELD_MANAGER, KubeRemediator};

/// Installs the process-wide rustls crypto provider (ring) if none is installed yet. Call it before
/// building a `kube::Client` in a process that also links another provider; harmless otherwise.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
