//! # drift-confighub
//!
//! ConfigHub as drift-detector's source of truth and drift history.
//!
//! Built for ConfigHub as it is today (API v0.8, `confighub-api.md` §2): configuration reaches a cluster
//! by publishing a **Release** of a space, which a GitOps agent (Argo CD, Flux) pulls; unit data is read
//! and written through the data endpoints; the desired state of a unit is its released revision.
//!
//! - [`ConfigHubClient`]: a typed client for the REST API (server version, spaces, units, unit data with
//!   `ETag`/`If-Match`, revisions, releases and live status, filters, targets, functions, bulk patch,
//!   paging), with retries for idempotent calls only.
//! - [`where_clause`]: ConfigHub's `where` grammar and each entity's attributes, checked before anything
//!   is sent.
//! - Adapters for drift-core's ports: [`ConfigHubDesiredStore`] (desired resources from the released
//!   revisions of units, or their heads), [`ConfigHubDriftLog`] (one record unit per drift, queryable with
//!   named filters) and [`ConfigHubRemediator`] ("ConfigHub wins" as the engine's guarded patch, "cluster
//!   wins" written into unit data and released, rollback).
//! - [`environments`]: base → dev → staging → prod chains of cloned units, and promotion (upgrade, then
//!   a Release).
//! - [`setup`]: the idempotent setup steps the binary exposes as subcommands.
//! - [`fake`] (feature `fake`): an in-process ConfigHub v0.8.5 that serves only the operations of
//!   `confighub-routes.tsv`, for tests and the offline demo.

#![deny(missing_docs)]

mod client;
mod desired;
pub mod environments;
mod error;
pub mod model;
mod records;
mod remediate;
pub mod setup;
pub mod where_clause;

pub use client::{
    BulkResult, ClientConfig, ClientStats, ConfigHubClient, DEFAULT_BASE_URL, DataRead, DataWrite, Ensured,
    PAGE_SIZE, RetryPolicy, SUPPORTED_API, UnitQuery, UpdateOptions, api_version,
};
pub use desired::{ConfigHubDesiredStore, DesiredRevision, DesiredStoreConfig, Unreleased, unit_source};
pub use error::{ConfigHubError, Result};
pub use records::{
    AutoCorrectable, ConfigHubDriftLog, DRIFTED_LABEL, LAST_DRIFT_ANNOTATION, LIVE_STATUS_REPORTER,
    cluster_record_slug, ensure_named_filters, record_slug, summarize,
};
pub use remediate::{
    AUDIT_ANNOTATION, ConfigHubRemediator, RemediatorConfig, Rollback, UnitOutcome, drift_revert_ops,
};
mod yaml;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "fake")]
pub mod fake;
