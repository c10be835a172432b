//! Against a real cluster, when `KUBECONFIG` points at one; skipped (and says so) otherwise.
//! Read-only: it lists and watches, never writes.

use std::time::Duration;

use drift_core::ports::{LiveEvent, LiveSource};
use drift_core::{DesiredObject, DiffEngine, LiveObject};
use drift_kube::{KubeLiveSource, LiveSourceConfig};
use futures::StreamExt;

#[tokio::test]
async fn live_state_from_a_real_cluster() {
    let Ok(path) = std::env::var("KUBECONFIG") else {
        eprintln!(
            "SKIPPED live_state_from_a_real_cluster: KUBECONFIG is not set; point it at a cluster to run this test"
        );
        return;
    };
    drift_kube::install_crypto_provider();
    let client = kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("KUBECONFIG={path} is set but unusable: {e}"));
    let source = KubeLiveSource::new(client, LiveSourceConfig::default()).expect("source");

    // Every object the cluster serves for the watched kinds diffs clean against itself once projected.
    let objects = source.list().await.expect("list");
    let engine = DiffEngine::default();
    for r in &objects {
        let report = engine.diff(&DesiredObject::new(r.clone()), Some(&LiveObject::new(r.clone())));
        assert!(
            report.drifts.is_empty(),
            "{} drifts from itself: {:?}",
            r.key,
            report.drifts
        );
        assert!(
            !r.object.to_string().contains("managedFields"),
            "{} kept managedFields",
            r.key
        );
    }

    // The watch lists every kind once, then says Ready.
    let mut events = source.watch();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(ev) = events.next().await {
            if matches!(ev, Ok(LiveEvent::Ready)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the watches did not all list within 60 s");
    eprintln!(
        "real cluster at {path}: {} objects, all in sync with themselves",
        objects.len()
    );
}
