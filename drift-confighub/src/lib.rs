//! # drift-confighub
//!
//! ConfigHub as drift-detector's source of truth and drift history.
//!
//! - [`ConfigHubClient`]: a typed client for the REST API (spaces, units, filters, functions, apply and
//!   refresh, revisions, bulk patch/apply, live state), with retries for idempotent calls only.
//! - [`where_clause`]: ConfigHub's `where` grammar, parsed before anything is sent.
//! - Adapters for drift-core's ports: [`ConfigHubDesiredStore`] (desired resources from units),
//!   [`ConfigHubDriftLog`] (one record unit per drift, queryable with named filters) and
//!   [`ConfigHubRemediator`] ("ConfigHub wins", targeted reverts, "cluster wins", rollback).
//! - [`environments`]: base → dev → staging → prod chains of cloned units, and promotion.
//! - [`setup`]: the idempotent setup steps the binary exposes as subcommands.
//! - [`fake`] (feature `fake`): an in-process ConfigHub that speaks the same routes and JSON.

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
    BulkResult, ClientConfig, ClientStats, ConfigHubClient, DEFAULT_BASE_URL, Ensured, RetryPolicy,
    UnitQuery, UpdateOptions,
};
pub use desired::{ConfigHubDesiredStore, DesiredRevision, DesiredStoreConfig, unit_source};
pub use error::{ConfigHubError, Result};
pub use records::{AutoCorrectable, ConfigHubDriftLog, ensure_named_filters, record_slug, summarize};
pub use remediate::{AUDIT_ANNOTATION, ClusterWins, ConfigHubRemediator, RemediatorConfig, UnitOutcome};
mod yaml;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "fake")]
pub mod fake;
