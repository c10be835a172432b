//! `drift-detector diff`: compare manifests with live objects from files or stdin.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use drift_core::ignore::IgnoreSet;
use drift_core::{
    Autoscalers, DesiredObject, DiffContext, DiffEngine, DiffOptions, DriftReport, DriftStatus, LiveObject,
    Loaded, Resource, ResourceKey,
};

use crate::report::{DiffOutput, OutputFormat, stdout_color};

/// Compare desired manifests with live objects, field by field.
///
/// Desired and live are files, directories (every .yaml, .yml and .json inside) or `-` for stdin;
/// live is typically `kubectl get ... -o yaml` output. Exit status: 0 in sync, 1 drifted, 2 error.
#[derive(Debug, Args)]
#[command(after_long_help = "\
EXAMPLES:
  # Pipe the cluster's view in:
  kubectl get deploy,svc,cm -n shop -o yaml | drift-detector diff --desired ./manifests --live -

  # Files, JSON output for CI:
  drift-detector diff --desired app.yaml --live live.yaml --output json

  # Fields applied by Argo CD and since dropped from the manifests count as drift:
  drift-detector diff --desired app.yaml --live live.yaml --manager argocd-controller

  # An HPA-like controller or a janitor owns some fields; ignore more with a rules file:
  drift-detector diff --desired app.yaml --live live.yaml --ignore-manager janitor --ignore ignore.yaml

IGNORE FILE (YAML):
  ignore:
    - paths: [/spec/replicas]                     # JSON Pointer; * ** and [name=x] allowed
      target: {kind: Deployment, namespace: shop, labelSelector: app=web}
    - managers: [janitor]
  presets: [webhook-ca-bundle, aggregated-cluster-roles, rollout-restart]   # the default
")]
pub(crate) struct DiffArgs {
    /// Desired manifests: files, directories, or `-` for stdin.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    desired: Vec<PathBuf>,
    /// Live objects: files, directories, or `-` for stdin.
    #[arg(long, required = true, num_args = 1.., value_name = "PATH")]
    live: Vec<PathBuf>,
    /// Field manager that applies the desired state: live fields it owns that the manifests dropped are drift.
    #[arg(long = "manager", value_name = "NAME")]
    managers: Vec<String>,
    /// Field manager whose changes are not drift (an autoscaler, a janitor).
    #[arg(long = "ignore-manager", value_name = "NAME")]
    ignore_managers: Vec<String>,
    /// Field manager of a person's tool: a live field it added to a managed object is drift, "added
    /// by hand" (repeatable; replaces the default list kubectl-edit, kubectl-set, kubectl-patch,
    /// kubectl-scale, kubectl-label, kubectl-annotate, k9s, lens; `--hand-manager ''` turns it off).
    #[arg(long = "hand-manager", value_name = "NAME")]
    hand_managers: Vec<String>,
    /// Ignore rules file (YAML; see below).
    #[arg(long, value_name = "FILE")]
    ignore: Option<PathBuf>,
    /// Namespace for desired objects that have none (default: the live objects' namespace when they all
    /// share one, else `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// Also list live objects that no manifest describes, and unmanaged fields.
    #[arg(long)]
    show_unmanaged: bool,
    /// Include the guarded JSON Patch that would revert each drifted resource.
    #[arg(long)]
    show_patch: bool,
}

pub(crate) fn run(args: DiffArgs) -> anyhow::Result<i32> {
    if args
        .desired
        .iter()
        .chain(&args.live)
        .filter(|p| p.as_os_str() == "-")
        .count()
        > 1
    {
        anyhow::bail!("only one of --desired and --live can read stdin (`-`)");
    }
    let ignore = match &args.ignore {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading ignore rules {}", p.display()))?;
            IgnoreSet::from_yaml(&p.display().to_string(), &text)?
        }
        None => IgnoreSet::default(),
    };
    let mut errors = Vec::new();
    let mut load = |paths: &[PathBuf]| {
        let mut all = Loaded::default();
        for p in paths {
            // Compact as parsed: status and the like are never compared, and large lists of live
            // objects then fit in a fraction of the memory.
            all.extend(drift_core::load_path_with(p, drift_core::LoadOptions::compact()));
        }
        errors.extend(all.errors.iter().map(ToString::to_string));
        all.resources
    };
    let desired = load(&args.desired);
    let live = load(&args.live);
    let options = args
        .managers
        .iter()
        .fold(DiffOptions::default().ignore(ignore), |o, m| o.applier(m));
    let options = args
        .ignore_managers
        .iter()
        .fold(options, |o, m| o.ignore_manager(m));
    let options = if args.hand_managers.is_empty() {
        options
    } else {
        options.hand_managers(args.hand_managers.iter().filter(|m| !m.is_empty()))
    };
    let engine = DiffEngine::new(options, Default::default());
    let (reports, mut notes) = compare(
        &engine,
        desired,
        live,
        args.namespace.as_deref(),
        args.show_unmanaged,
        args.show_patch,
    );
    errors.append(&mut notes.errors);
    for w in &notes.warnings {
        tracing::warn!("{w}");
    }
    let output = DiffOutput::new(reports, errors);
    let text = output.render(args.output, stdout_color(), args.show_unmanaged)?;
    crate::print_stdout(&text)?;
    Ok(if !output.errors.is_empty() {
        2
    } else if output.drifted {
        1
    } else {
        0
    })
}

#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Matches desired with live and diffs every pair. Namespace-less desired objects take `namespace`,
/// else the one namespace all live namespaced objects share, else `default`.
pub(crate) fn compare(
    engine: &DiffEngine,
    mut desired: Vec<Resource>,
    live: Vec<Resource>,
    namespace: Option<&str>,
    show_unmanaged: bool,
    show_patch: bool,
) -> (Vec<(DriftReport, Option<serde_json::Value>)>, Notes) {
    let mut notes = Notes::default();
    let live_namespaces: BTreeSet<&str> = live.iter().filter_map(|r| r.key.namespace.as_deref()).collect();
    let default_ns = namespace
        .map(str::to_string)
        .or_else(|| {
            (live_namespaces.len() == 1)
                .then(|| live_namespaces.iter().next().map(|s| s.to_string()))
                .flatten()
        })
        .unwrap_or_else(|| "default".to_string());
    for r in &mut desired {
        r.default_namespace(&default_ns);
    }
    let autoscalers = Autoscalers::from_live(&live);
    // Custom resources get their CRD's schema defaults when the CRD is among the live objects.
    let custom = drift_core::custom::CustomSchemas::from_live(&live);
    let mut live_by_key: HashMap<ResourceKey, LiveObject> = HashMap::with_capacity(live.len());
    for mut r in live {
        r.default_namespace(&default_ns);
        if live_by_key.contains_key(&r.key) {
            notes.warnings.push(format!(
                "live object {} appears twice; the last one is used",
                r.key
            ));
        }
        live_by_key.insert(r.key.clone(), LiveObject::new(r));
    }
    let mut seen: std::collections::HashSet<ResourceKey> = std::collections::HashSet::new();
    let mut reports = Vec::new();
    let ctx = DiffContext {
        autoscalers: Some(&autoscalers),
        custom: Some(&custom),
    };
    // Hash-indexed, so matching stays linear in the number of objects.
    let mut desired_by_key: Vec<(ResourceKey, DesiredObject)> = Vec::with_capacity(desired.len());
    let mut position: HashMap<ResourceKey, usize> = HashMap::with_capacity(desired.len());
    for r in desired {
        match position.get(&r.key) {
            Some(&pos) => {
                notes.warnings.push(format!(
                    "desired object {} appears twice; the last one is used",
                    r.key
                ));
                desired_by_key[pos] = (r.key.clone(), DesiredObject::new(r));
            }
            None => {
                position.insert(r.key.clone(), desired_by_key.len());
                desired_by_key.push((r.key.clone(), DesiredObject::new(r)));
            }
        }
    }
    for (key, d) in &desired_by_key {
        seen.insert(key.clone());
        let l = live_by_key.get(key);
        let report = engine.diff_with(d, l, &ctx);
        let patch = match (show_patch, l) {
            (true, Some(l)) if !report.drifts.is_empty() => {
                match drift_core::revert_patch(d, l, &report.drifts) {
                    Ok(p) => serde_json::to_value(p).ok(),
                    Err(e) => Some(serde_json::Value::String(e.to_string())),
                }
            }
            _ => None,
        };
        reports.push((report, patch));
    }
    if show_unmanaged {
        for key in live_by_key.keys().filter(|k| !seen.contains(*k)) {
            reports.push((
                DriftReport {
                    key: key.clone(),
                    status: DriftStatus::Unmanaged,
                    drifts: Vec::new(),
                    unmanaged: Vec::new(),
                },
                None,
            ));
        }
    }
    // `diff` and `scan` exit right after this: freeing tens of thousands of parsed objects one node at
    // a time would cost more than the comparison (a tenth of the run at 5,000 pairs); the process
    // returns the memory at once when it exits.
    std::mem::forget(live_by_key);
    std::mem::forget(desired_by_key);
    (reports, notes)
}
