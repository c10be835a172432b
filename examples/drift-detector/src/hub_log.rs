//! The drift history in ConfigHub, connected lazily: when ConfigHub is unreachable at start the daemon
//! still starts (alive, detecting, events kept in the spool) and connects on the first write that gets
//! through.

use async_trait::async_trait;
use drift_confighub::{ConfigHubClient, ConfigHubDriftLog};
use drift_core::ports::{DriftEvent, DriftLog, DriftRecord, HistoryQuery, PortError};
use tokio::sync::OnceCell;

/// A [`ConfigHubDriftLog`] opened on first use (and again after a failed attempt).
pub(crate) struct LazyHubLog {
    client: ConfigHubClient,
    space: String,
    cluster: Option<String>,
    log: OnceCell<ConfigHubDriftLog>,
}

impl LazyHubLog {
    pub(crate) fn new(client: ConfigHubClient, space: &str, cluster: Option<String>) -> Self {
        LazyHubLog {
            client,
            space: space.to_string(),
            cluster,
            log: OnceCell::new(),
        }
    }

    /// An already opened log.
    pub(crate) fn opened(log: ConfigHubDriftLog, client: ConfigHubClient, space: &str) -> Self {
        LazyHubLog {
            client,
            space: space.to_string(),
            cluster: None,
            log: OnceCell::new_with(Some(log)),
        }
    }

    async fn log(&self) -> Result<&ConfigHubDriftLog, PortError> {
        self.log
            .get_or_try_init(|| async {
                let mut l = ConfigHubDriftLog::connect(self.client.clone(), &self.space).await?;
                if let Some(c) = &self.cluster {
                    l = l.with_cluster(c.clone());
                }
                tracing::info!(space = %self.space, "connected to the drift records space");
                Ok::<_, drift_confighub::ConfigHubError>(l)
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl DriftLog for LazyHubLog {
    async fn append(&self, event: &DriftEvent) -> Result<(), PortError> {
        self.log().await?.append(event).await
    }

    async fn records(&self, query: &HistoryQuery) -> Result<Vec<DriftRecord>, PortError> {
        self.log().await?.records(query).await
    }
}
