//! `drift-detector diff`: compare manifests with live objects from files or stdin.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::Args;
use drift_core::compiled::Compiled;
use drift_core::deferred::Deferred;
use drift_core::ignore::IgnoreSet;
use drift_core::{
    Autoscalers, DesiredObject, DiffContext, DiffEngine, DiffOptions, DriftReport, DriftStatus, LiveObject,
    ResourceKey,
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
    // Each object is parsed when compared, then dropped: large inputs are held as their text (a
    // tenth of the memory of parsed objects) and compared on every core. No compaction: it saves
    // memory only for objects kept, and costs a second parse of the last-applied annotation.
    let load = |paths: &[PathBuf]| {
        let mut all = Deferred::default();
        for p in paths {
            all.add_path(p);
        }
        all
    };
    // The two sides load at once; the desired side, usually the smaller, then compiles its objects
    // until the live side is loaded (time that core would wait otherwise). The rest are parsed as
    // their pair is compared.
    let live_loaded = AtomicBool::new(false);
    let ((mut desired, compiled), mut live) = std::thread::scope(|s| {
        let d = s.spawn(|| {
            let desired = load(&args.desired);
            let compiled = compile_while(&desired, || !live_loaded.load(Ordering::Relaxed));
            (desired, compiled)
        });
        let l = load(&args.live);
        live_loaded.store(true, Ordering::Relaxed);
        (d.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), l)
    });
    let mut errors: Vec<String> = desired
        .errors
        .drain(..)
        .chain(live.errors.drain(..))
        .map(|e| e.to_string())
        .collect();
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
        &mut desired,
        &compiled,
        &mut live,
        args.namespace.as_deref(),
        args.show_unmanaged,
        args.show_patch,
    );
    errors.append(&mut notes.errors);
    for w in &notes.warnings {
        tracing::warn!("{w}");
    }
    // The inputs (hundreds of MB at scale, tens of thousands of allocations) are freed on another
    // core while the output is made.
    let inputs = (desired, live, compiled);
    let output = std::thread::scope(|s| {
        s.spawn(move || drop(inputs));
        let output = DiffOutput::new(reports, errors);
        let text = output.render(args.output, stdout_color(), args.show_unmanaged)?;
        crate::print_stdout(&text)?;
        anyhow::Ok(output)
    })?;
    Ok(if !output.errors.is_empty() {
        2
    } else if output.drifted {
        1
    } else {
        0
    })
}

/// Desired objects in compiled form, in order, while `go_on` says so (see
/// [`Deferred::desired_compiled`]; `None` for those it does not give).
pub(crate) fn compile_while(
    desired: &Deferred,
    go_on: impl Fn() -> bool,
) -> Vec<Option<(ResourceKey, Compiled)>> {
    (0..desired.len())
        .map_while(|i| go_on().then(|| desired.desired_compiled(i)))
        .collect()
}

#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Matches desired with live and diffs every pair, on every core. Namespace-less desired objects
/// take `namespace`, else the one namespace all live namespaced objects share, else `default`.
/// Objects are parsed as their pair is compared; one that does not parse is an error naming it.
/// `compiled` holds desired objects compiled already, by index (those missing or `None` are parsed).
pub(crate) fn compare(
    engine: &DiffEngine,
    desired: &mut Deferred,
    compiled: &[Option<(ResourceKey, Compiled)>],
    live: &mut Deferred,
    namespace: Option<&str>,
    show_unmanaged: bool,
    show_patch: bool,
) -> (Vec<(DriftReport, Option<serde_json::Value>)>, Notes) {
    let mut notes = Notes::default();
    let default_ns = namespace
        .map(str::to_string)
        .or_else(|| the_one_namespace(live).map(str::to_string))
        .unwrap_or_else(|| "default".to_string());
    desired.default_namespace(&default_ns);
    live.default_namespace(&default_ns);
    // Autoscalers and CRDs bear on other objects' verdicts: parsed first.
    let mut context_objects = Vec::new();
    for i in 0..live.len() {
        let k = live.key(i);
        let wanted = (k.group == "autoscaling" && k.kind == "HorizontalPodAutoscaler")
            || drift_core::custom::is_crd(k);
        if wanted {
            match live.resource(i) {
                Ok(r) => context_objects.push(r),
                Err(e) => notes.errors.push(e.to_string()),
            }
        }
    }
    let autoscalers = Autoscalers::from_live(&context_objects);
    // Custom resources get their CRD's schema defaults when the CRD is among the live objects.
    let custom = drift_core::custom::CustomSchemas::from_live(&context_objects);
    let mut live_by_key: KeyMap<usize> = HashMap::with_capacity_and_hasher(live.len(), Default::default());
    for i in 0..live.len() {
        if live_by_key.insert(live.key(i), i).is_some() {
            notes.warnings.push(format!(
                "live object {} appears twice; the last one is used",
                live.key(i)
            ));
        }
    }
    // Hash-indexed, so matching stays linear in the number of objects.
    let mut order: Vec<usize> = Vec::with_capacity(desired.len());
    let mut position: KeyMap<usize> = HashMap::with_capacity_and_hasher(desired.len(), Default::default());
    for i in 0..desired.len() {
        match position.get(desired.key(i)) {
            Some(&pos) => {
                notes.warnings.push(format!(
                    "desired object {} appears twice; the last one is used",
                    desired.key(i)
                ));
                order[pos] = i;
            }
            None => {
                position.insert(desired.key(i), order.len());
                order.push(i);
            }
        }
    }
    let pairs: Vec<(usize, Option<usize>)> = order
        .iter()
        .map(|&d| (d, live_by_key.get(desired.key(d)).copied()))
        .collect();
    let ctx = DiffContext {
        autoscalers: Some(&autoscalers),
        custom: Some(&custom),
    };
    let one = |(di, l): (usize, Option<usize>)| -> PairResult {
        let mut errors = Vec::new();
        // Compiled already, or parsed now.
        let d = match compiled.get(di).and_then(Option::as_ref) {
            Some((key, c)) => Desired::Compiled(key, c),
            None => match desired.comparable(di) {
                Ok(r) => Desired::Parsed(DesiredObject::new(r)),
                Err(e) => return (None, vec![e.to_string()]),
            },
        };
        let diff = |l: Option<&LiveObject>| match &d {
            Desired::Compiled(key, c) => engine.diff_compiled(key, c, l, &ctx),
            Desired::Parsed(d) => engine.diff_with(d, l, &ctx),
        };
        // First without what only ownership and actors read (often half of a live object): an
        // answer that read no ownership and found no drift is the whole object's answer. Read flat
        // where it can be (a few allocations, not one per string and map), else as a `Value`.
        let flat = l.and_then(|l| {
            live.lean_flat(l, |lean| {
                let report = match &d {
                    Desired::Compiled(key, c) => engine.diff_compiled_flat_live(key, c, lean, &ctx),
                    Desired::Parsed(d) => engine.diff_with_flat_live(d, lean, &ctx),
                };
                (report.drifts.is_empty() && !lean.ownership_read()).then_some(report)
            })
        });
        match flat {
            Some(Some(report)) => return (Some((report, None)), errors),
            Some(None) => {}
            None => {
                if let Some(Ok(lean)) = l.map(|l| live.lean(l)) {
                    let lean = LiveObject::new(lean);
                    let report = diff(Some(&lean));
                    if report.drifts.is_empty() && !lean.ownership_read() {
                        return (Some((report, None)), errors);
                    }
                }
            }
        }
        // The whole object (bar `status`): read flat unless a patch is wanted (it reads a value).
        if !show_patch
            && let Some(report) = l.and_then(|l| {
                live.comparable_flat(l, |whole| match &d {
                    Desired::Compiled(key, c) => engine.diff_compiled_flat_live(key, c, whole, &ctx),
                    Desired::Parsed(d) => engine.diff_with_flat_live(d, whole, &ctx),
                })
            })
        {
            return (Some((report, None)), errors);
        }
        let l = l.and_then(|l| match live.comparable(l) {
            Ok(r) => Some(LiveObject::new(r)),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        });
        let report = diff(l.as_ref());
        let patch = match (show_patch, &l) {
            (true, Some(l)) if !report.drifts.is_empty() => {
                // The patch reads the desired object as a value (it parses: it compiled).
                let d = match d {
                    Desired::Parsed(d) => Ok(d),
                    Desired::Compiled(..) => desired.comparable(di).map(DesiredObject::new),
                };
                match d
                    .map_err(|e| e.to_string())
                    .and_then(|d| drift_core::revert_patch(&d, l, &report.drifts).map_err(|e| e.to_string()))
                {
                    Ok(p) => serde_json::to_value(p).ok(),
                    Err(e) => Some(serde_json::Value::String(e)),
                }
            }
            _ => None,
        };
        (Some((report, patch)), errors)
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, 8);
    // Claimed a run of pairs at a time as the workers finish the last (a core slowed down by a
    // neighbour hands on its share); the results put back in the pairs' order. (The library's own
    // `par` claims up to 512 at a time: exposed and used here, it measured 5-8 % slower.)
    let chunks: Vec<&[(usize, Option<usize>)]> = pairs.chunks(PAIRS_PER_CLAIM).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(c) = chunks.get(i) else { return done };
            done.push((i, c.iter().map(|p| one(*p)).collect::<Vec<_>>()));
        }
    };
    let mut results: Vec<(usize, Vec<PairResult>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut results = work();
        for h in handles {
            results.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        results
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    let mut reports = Vec::with_capacity(pairs.len());
    for (report, mut errors) in results.into_iter().flat_map(|(_, r)| r) {
        notes.errors.append(&mut errors);
        reports.extend(report);
    }
    if show_unmanaged {
        let desired_keys: std::collections::HashSet<&ResourceKey> = desired.keys().collect();
        let mut seen = std::collections::HashSet::new();
        for key in live.keys().filter(|k| !desired_keys.contains(*k)) {
            if !seen.insert(key) {
                continue;
            }
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
    (reports, notes)
}

/// Identities to something, hashed with a per-process seed.
type KeyMap<'k, V> = HashMap<&'k ResourceKey, V, foldhash::fast::RandomState>;

/// The namespace every namespaced live object shares, if they share one.
fn the_one_namespace(live: &Deferred) -> Option<&str> {
    let mut namespaces = live.keys().filter_map(|k| k.namespace.as_deref());
    let first = namespaces.next()?;
    namespaces.all(|n| n == first).then_some(first)
}

/// A desired object as compared: compiled already, or parsed for its pair.
enum Desired<'c> {
    Compiled(&'c ResourceKey, &'c Compiled),
    Parsed(DesiredObject),
}

/// Pairs a worker takes at a time.
const PAIRS_PER_CLAIM: usize = 256;

/// One pair's report and patch (none when the desired object does not parse), and errors.
type PairResult = (Option<(DriftReport, Option<serde_json::Value>)>, Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    const DESIRED: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
         "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
         "spec": {"replicas": 2, "template": {"spec": {"serviceAccount": "robot",
           "containers": [{"name": "c", "image": "api:2"}]}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"mode": "a"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
         "stringData": {"password": "correct-horse"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone", "namespace": "shop"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same", "namespace": "shop"},
         "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "more", "namespace": "shop"},
         "data": {"x": "1"}}
    ]}"#;

    const LIVE: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop",
          "managedFields": [{"manager": "kubectl-scale", "operation": "Update", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
         "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}},
         "status": {"replicas": 5}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop"},
         "spec": {"replicas": 2, "template": {"spec": {"serviceAccountName": "robot", "serviceAccount": "robot",
           "containers": [{"name": "c", "image": "api:3"}]}}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"},
         "data": {"mode": "b"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "shop"},
         "data": {"password": "YmF0dGVyeS1zdGFwbGU="}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "same", "namespace": "shop"},
         "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "more", "namespace": "shop"},
         "data": {"x": "2"}}
    ]}"#;

    fn load(text: &str) -> Deferred {
        let mut d = Deferred::default();
        d.add_bytes("test.json", text.as_bytes().to_vec());
        d
    }

    /// What `compare` reports, as JSON text (reports and patches), with the first `compiled` desired
    /// objects compiled beforehand.
    fn reports(compiled: usize, show_patch: bool) -> (String, usize) {
        let desired = load(DESIRED);
        let all = compile_while(&desired, || true);
        let given: Vec<_> = all.into_iter().take(compiled).collect();
        let used = given.iter().flatten().count();
        let engine = DiffEngine::default();
        let mut desired = desired;
        let (reports, notes) = compare(
            &engine,
            &mut desired,
            &given,
            &mut load(LIVE),
            None,
            true,
            show_patch,
        );
        assert!(notes.errors.is_empty(), "{:?}", notes.errors);
        let text = reports
            .iter()
            .map(|(r, p)| format!("{} {p:?}", serde_json::to_string(r).expect("json")))
            .collect::<Vec<_>>()
            .join("\n");
        (text, used)
    }

    /// Namespace-less manifests take the live objects' namespace only when they all share one.
    #[test]
    fn the_one_live_namespace() {
        let ns = |items: &str| {
            let live = load(&format!(
                r#"{{"apiVersion": "v1", "kind": "List", "items": [{items}]}}"#
            ));
            the_one_namespace(&live).map(str::to_string)
        };
        let cm = |ns: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "c", "namespace": "{ns}"}}}}"#
            )
        };
        let node = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}"#;
        assert_eq!(ns(""), None);
        assert_eq!(ns(node), None);
        assert_eq!(
            ns(&format!("{node},{},{}", cm("shop"), cm("shop"))),
            Some("shop".into())
        );
        assert_eq!(ns(&format!("{},{node},{}", cm("shop"), cm("web"))), None);
        assert_eq!(ns(&format!("{},{},{}", cm("shop"), cm("shop"), cm("web"))), None);
    }

    /// Desired objects compiled beforehand (all, some, none: the live side may finish loading at any
    /// point) give the same reports and patches as those parsed for their pair.
    #[test]
    fn compiled_desired_objects_report_as_parsed_ones() {
        let (parsed, none) = reports(0, true);
        assert_eq!(none, 0);
        // The drifts are there to compare: a scaled Deployment, a changed image, a changed
        // ConfigMap (namespace defaulted), a Secret, a missing object.
        for expected in [
            "/spec/replicas",
            "image",
            "/data/mode",
            "missing-live",
            "String(\"test\")",
        ] {
            assert!(parsed.contains(expected), "{expected}:\n{parsed}");
        }
        assert!(!parsed.contains("correct-horse") && !parsed.contains("YmF0dGVyeS1zdGFwbGU"));
        // Without patches, drifted objects are compared whole read flat (not as values): the same
        // reports.
        let strip = |t: &str| {
            t.lines()
                .map(|l| {
                    l.rsplit_once(" Some(")
                        .map_or(l, |(r, _)| r)
                        .trim_end_matches(" None")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        for first in [0, 3, 7] {
            assert_eq!(
                strip(&reports(first, false).0),
                strip(&parsed),
                "first {first} compiled"
            );
        }
        for first in 1..=7 {
            let (text, used) = reports(first, true);
            assert_eq!(text, parsed, "first {first} compiled");
            if first == 7 {
                // The plain Deployment and the namespaced ConfigMaps; not the one whose
                // `serviceAccount` is converted, the namespace-less one or the Secret.
                assert_eq!(used, 4);
            }
        }
    }
}
