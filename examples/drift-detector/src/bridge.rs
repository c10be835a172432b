//! What a GitOps agent (Argo CD, Flux) does with a ConfigHub Release, for the in-process demo and the
//! sandbox: pulls the bundle and syncs its objects into the cluster with server-side apply (field manager
//! `confighub-gitops`). ConfigHub itself applies nothing (`confighub-api.md` §2.13).

use drift_core::kinds;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

/// The field manager the simulated GitOps agent applies with.
pub(crate) const GITOPS_MANAGER: &str = "confighub-gitops";

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
        let params = PatchParams::apply(GITOPS_MANAGER).force();
        api.patch(&k.name, &params, &Patch::Apply(&r.object))
            .await
            .map_err(|e| format!("applying {k}: {e}"))?;
        n += 1;
    }
    Ok(n)
}

/// The simulator's GitOps agent: syncs each published Release into this cluster (namespaces first).
pub(crate) fn gitops_hook(client: kube::Client) -> drift_confighub::fake::ReleaseHook {
    std::sync::Arc::new(move |d: drift_confighub::fake::Delivery| {
        let client = client.clone();
        Box::pin(async move {
            for u in d.units {
                let text = String::from_utf8(u.data).map_err(|e| format!("unit {}: {e}", u.slug))?;
                apply_yaml(&client, &text)
                    .await
                    .map_err(|e| format!("unit {}: {e}", u.slug))?;
            }
            Ok(())
        })
    })
}
