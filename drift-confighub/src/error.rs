//! Errors of the ConfigHub client and adapters. Each names the route and the entity it was about.

use drift_core::ports::PortError;

/// A ConfigHub failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigHubError {
    /// The API answered with an error status (after any retries).
    #[error("{route} for {entity}: HTTP {status}: {message}")]
    Api {
        /// `METHOD /route/{template}`.
        route: String,
        /// What it was about (`unit web in space shop-dev`).
        entity: String,
        /// HTTP status.
        status: u16,
        /// ConfigHub's message.
        message: String,
    },
    /// `409`: a `Version` conflict or a slug that already exists.
    #[error("{route} for {entity}: conflict: {message}")]
    Conflict {
        /// Route.
        route: String,
        /// Entity.
        entity: String,
        /// ConfigHub's message.
        message: String,
    },
    /// `404`.
    #[error("{route}: {entity} was not found")]
    NotFound {
        /// Route.
        route: String,
        /// Entity.
        entity: String,
    },
    /// `401`/`403`: the token is missing, expired or not allowed.
    #[error("{route} for {entity}: not authorized (HTTP {status}); check the ConfigHub token")]
    Unauthorized {
        /// Route.
        route: String,
        /// Entity.
        entity: String,
        /// Status.
        status: u16,
    },
    /// The request did not complete (connection, timeout) after any retries.
    #[error("{route} for {entity}: {reason}")]
    Transport {
        /// Route.
        route: String,
        /// Entity.
        entity: String,
        /// What happened.
        reason: String,
    },
    /// The response was not the documented JSON.
    #[error("{route} for {entity}: unexpected response: {reason}")]
    Decode {
        /// Route.
        route: String,
        /// Entity.
        entity: String,
        /// Why.
        reason: String,
    },
    /// A where-clause that does not parse (caught before sending).
    #[error(transparent)]
    Where(#[from] crate::where_clause::WhereError),
    /// A unit's data is not what it should be (not UTF-8, not YAML, no such object).
    #[error("{entity}: {reason}")]
    Data {
        /// The unit.
        entity: String,
        /// Why.
        reason: String,
    },
    /// The server speaks an API older than this client supports.
    #[error(
        "ConfigHub at {url} runs {version} (API {api}); drift-detector needs API {needed} or newer \
         (releases, data endpoints): upgrade the server or use an older drift-detector"
    )]
    Unsupported {
        /// Base URL.
        url: String,
        /// The server's version string.
        version: String,
        /// Its API version (`0.4`).
        api: String,
        /// The oldest API version supported.
        needed: String,
    },
    /// Something needed is missing (a space, a target) or the configuration is wrong.
    #[error("{0}")]
    Setup(String),
}

impl ConfigHubError {
    /// Whether retrying later may help (transport problems, 429, 5xx, conflicts).
    pub fn is_retryable(&self) -> bool {
        match self {
            ConfigHubError::Transport { .. } | ConfigHubError::Conflict { .. } => true,
            ConfigHubError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

impl From<ConfigHubError> for PortError {
    fn from(e: ConfigHubError) -> Self {
        let what = "ConfigHub".to_string();
        match e {
            ConfigHubError::NotFound { route, entity } => PortError::NotFound {
                what: format!("{entity} ({route})"),
            },
            ConfigHubError::Conflict {
                route,
                entity,
                message,
            } => PortError::Conflict {
                what: format!("{entity} ({route})"),
                reason: message,
            },
            e @ ConfigHubError::Transport { .. } => PortError::Unavailable {
                what,
                reason: e.to_string(),
            },
            ConfigHubError::Api { status, .. } if status == 429 || status >= 500 => PortError::Unavailable {
                what,
                reason: e.to_string(),
            },
            e @ (ConfigHubError::Where(_) | ConfigHubError::Data { .. }) => PortError::Invalid {
                what: "ConfigHub request".into(),
                reason: e.to_string(),
            },
            e => PortError::Other {
                what,
                source: Box::new(e),
            },
        }
    }
}

/// Result with [`ConfigHubError`].
pub type Result<T, E = ConfigHubError> = std::result::Result<T, E>;
