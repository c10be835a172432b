//! What a ConfigHub bridge worker does, for the in-process demo: applies a unit's objects to the
//! sandbox cluster with server-side apply (field manager `confighub-bridge`).

use drift_core::kinds;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

/// The field manager the bridge applies with.
pub(crate) const BRIDGE_MANAGER: &str = "confighub-bridge";

/// Applies every object of a multi-document YAML to the cluster (namespaces first).
pub(crate) async fn apply_yaml(client: &kube::Client, yaml: &str) -> Result<usize, String> {
    let loaded = drift_core::parse_documents("unit", yaml);
    if let Some(e) = loaded.errors.first() {
        return Err(e.to_string());
    }
    let mut resources = loaded.resources;
    resources.sort_by_key(|r| r.key.kind != "Namespace");
    let mut n = 0;
    for r in resources {
        let k = &r.key;
        let info = kinds::lookup(&k.group, &k.kind)
            .ok_or_else(|| format!("{}: the sandbox does not serve this kind", k))?;
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(info.group, info.version, info.kind),
            info.plural,
        );
        let api: Api<DynamicObject> = match (&k.namespace, info.namespaced) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &ar),
            (None, true) => Api::namespaced_with(client.clone(), "default", &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        let params = PatchParams::apply(BRIDGE_MANAGER).force();
        api.patch(&k.name, &params, &Patch::Apply(&r.object))
            .await
            .map_err(|e| format!("applying {k}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// A fake-hub apply hook that applies each unit to this cluster, as a bridge worker would.
pub(crate) fn apply_hook(client: kube::Client) -> drift_confighub::fake::ApplyHook {
    std::sync::Arc::new(move |req: drift_confighub::fake::HookRequest| {
        let client = client.clone();
        Box::pin(async move {
            let text = String::from_utf8(req.data).map_err(|e| format!("unit {}: {e}", req.unit.slug))?;
            apply_yaml(&client, &text).await.map(|_| ())
        })
    })
}
