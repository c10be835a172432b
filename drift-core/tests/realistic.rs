//! Realistic cases: objects shaped exactly as `kubectl get -o yaml` shows them from a v1.33 API
//! server (metadata, managedFields, status and every default the server fills in), each verdict
//! traced to the Kubernetes source that makes it so. Each class of server behaviour has a case on
//! each side: the server's own doing is not drift, a person's edit of the same field is.
//! The cases live in `testdata/k8s-realistic/cases.yaml` (written for this project; see
//! `testdata/PROVENANCE.md`).

mod common;

use drift_core::{DesiredObject, DiffEngine, DiffOptions, LiveObject, parse_documents};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Where Kubernetes decides this (file and function).
    source: String,
    desired: String,
    live: String,
    /// Exactly the drifts expected, as `field change`.
    drifts: Vec<String>,
    /// Field managers passed with `--manager`.
    #[serde(default)]
    appliers: Vec<String>,
    /// Expected actors, as `field` → `manager`.
    #[serde(default)]
    actors: std::collections::BTreeMap<String, String>,
    /// Expected drift sets, as `field` → `critical` / `resource` / `replica` / `config`.
    #[serde(default)]
    sets: std::collections::BTreeMap<String, String>,
    /// Expected unmanaged fields (a subset).
    #[serde(default)]
    unmanaged: Vec<String>,
}

/// The cases of testdata/k8s-realistic/cases.yaml.
fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(common::testdata_dir().join("k8s-realistic/cases.yaml")).expect("cases.yaml");
    serde_saphyr::from_str(&text).expect("cases parse")
}

/// The engine a case runs with (its appliers given as `--manager`).
fn engine_for(c: &Case) -> DiffEngine {
    let options = c
        .appliers
        .iter()
        .fold(DiffOptions::default(), |o, m| o.applier(m));
    DiffEngine::new(options, Default::default())
}

fn one(name: &str, what: &str, text: &str) -> drift_core::Resource {
    let l = parse_documents(&format!("{name} ({what})"), text);
    assert!(l.errors.is_empty(), "{name} {what}: {:?}", l.errors);
    assert_eq!(l.resources.len(), 1, "{name} {what}: one object");
    l.resources.into_iter().next().expect("one object")
}

#[test]
fn every_realistic_case_gives_its_verdict() {
    let cases = cases();
    let mut failures = Vec::new();
    for c in &cases {
        assert!(!c.source.trim().is_empty(), "{}: cite the source", c.name);
        let engine = engine_for(c);
        let desired = DesiredObject::new(one(&c.name, "desired", &c.desired));
        let live = LiveObject::new(one(&c.name, "live", &c.live));
        let report = engine.diff(&desired, Some(&live));
        // The detector keeps desired objects compiled: that walk must give the same verdict.
        let compiled = common::diff_compiled(&engine, &desired, &live);
        assert_eq!(
            report, compiled,
            "{}: the compiled form compares differently",
            c.name
        );
        // A live object in compiled form (as the detector holds one): the same report, ownership and all.
        let (compiled_live, _) = common::diff_compiled_live(&engine, &desired, &live);
        assert_eq!(
            report, compiled_live,
            "{}: the compiled live form compares differently",
            c.name
        );
        let got: Vec<String> = report
            .drifts
            .iter()
            .map(|d| format!("{} {}", d.path.readable(), d.change))
            .collect();
        if got != c.drifts {
            failures.push(format!("{}: expected {:?}, got {:?}", c.name, c.drifts, got));
            continue;
        }
        for (field, manager) in &c.actors {
            let actor = report
                .drifts
                .iter()
                .find(|d| &d.path.readable() == field)
                .and_then(|d| d.actor.as_ref())
                .map(|a| a.manager.as_str());
            if actor != Some(manager.as_str()) {
                failures.push(format!(
                    "{}: actor of {field}: expected {manager}, got {actor:?}",
                    c.name
                ));
            }
        }
        for (field, set) in &c.sets {
            let got = report
                .drifts
                .iter()
                .find(|d| &d.path.readable() == field)
                .map(|d| d.set.to_string());
            if got.as_deref() != Some(set.as_str()) {
                failures.push(format!("{}: set of {field}: expected {set}, got {got:?}", c.name));
            }
        }
        for field in &c.unmanaged {
            if !report.unmanaged.iter().any(|u| &u.field == field) {
                let all: Vec<&str> = report.unmanaged.iter().map(|u| u.field.as_str()).collect();
                failures.push(format!("{}: {field} not unmanaged; unmanaged: {all:?}", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 20, "{} cases", cases.len());
}

/// Loading compactly (what `diff` and `scan` do) drops only what no verdict reads: every realistic
/// case gives the same drifts, actors and sets from compacted objects.
#[test]
fn compact_loading_changes_no_verdict() {
    let cases = cases();
    for c in &cases {
        let engine = engine_for(c);
        let run = |compact: bool| {
            let load = |what: &str, text: &str| {
                let opts = if compact {
                    drift_core::LoadOptions::compact()
                } else {
                    drift_core::LoadOptions::default()
                };
                let l = drift_core::parse_documents_with(&format!("{} ({what})", c.name), text, opts);
                l.resources.into_iter().next().expect("one object")
            };
            let r = engine.diff(
                &DesiredObject::new(load("desired", &c.desired)),
                Some(&LiveObject::new(load("live", &c.live))),
            );
            r.drifts
                .iter()
                .map(|d| format!("{} {} {} {:?}", d.path.readable(), d.change, d.set, d.actor))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(true), run(false), "{}", c.name);
    }
}

/// `diff` compares a lean live object first (`Deferred::lean`: no `managedFields`, no last-applied
/// annotation) and keeps that answer only when it read no ownership and found no drift: on every
/// realistic case such an answer is exactly the whole object's, unmanaged fields included; and a
/// case whose verdict needs ownership or actors is never answered leanly.
#[test]
fn a_lean_first_answer_is_the_whole_objects() {
    let cases = cases();
    let mut lean_answers = 0;
    let mut compiled_answers = 0;
    let mut flat_answers = 0;
    let mut whole_flat_answers = 0;
    for c in &cases {
        let engine = engine_for(c);
        let desired = DesiredObject::new(one(&c.name, "desired", &c.desired));
        let load = |text: &str, lean: bool| {
            let mut d = drift_core::deferred::Deferred::default();
            d.add_bytes(&c.name, text.as_bytes().to_vec());
            if lean { d.lean(0) } else { d.comparable(0) }.expect("live")
        };
        let whole = engine.diff(&desired, Some(&LiveObject::new(load(&c.live, false))));
        let lean_live = LiveObject::new(load(&c.live, true));
        let lean = engine.diff(&desired, Some(&lean_live));
        // The same lean object decoded from JSON text straight into the compiled form
        // (`Deferred::lean_compiled`), its keys in another order than sorted: the same report, and
        // ownership read or not alike.
        let mut text = String::new();
        reversed_json(
            &serde_json::to_value(load(&c.live, false).object).expect("json"),
            &mut text,
        );
        let mut from_text = drift_core::deferred::Deferred::default();
        from_text.add_bytes(&c.name, text.into_bytes());
        if let Some(compiled) = from_text.lean_compiled(0) {
            compiled_answers += 1;
            let report = engine.diff_with_compiled_live(&desired, &compiled, &Default::default());
            assert_eq!(
                report, lean,
                "{}: the compiled lean object compares differently",
                c.name
            );
            assert_eq!(
                compiled.ownership_read(),
                lean_live.ownership_read(),
                "{}",
                c.name
            );
        }
        // And read flat (`Deferred::lean_flat`, `diff`'s first comparison): the same.
        if let Some((report, ownership_read)) = from_text.lean_flat(0, |flat| {
            (
                engine.diff_with_flat_live(&desired, flat, &Default::default()),
                flat.ownership_read(),
            )
        }) {
            flat_answers += 1;
            assert_eq!(
                report, lean,
                "{}: the flat lean object compares differently",
                c.name
            );
            assert_eq!(ownership_read, lean_live.ownership_read(), "{}", c.name);
        }
        // The whole object read flat (`Deferred::comparable_flat`, `diff`'s second comparison):
        // the whole object's report.
        if let Some(report) = from_text.comparable_flat(0, |flat| {
            engine.diff_with_flat_live(&desired, flat, &Default::default())
        }) {
            whole_flat_answers += 1;
            assert_eq!(
                report, whole,
                "{}: the flat whole object compares differently",
                c.name
            );
        }
        if lean.drifts.is_empty() && !lean_live.ownership_read() {
            lean_answers += 1;
            assert!(whole.drifts.is_empty(), "{}: {:?}", c.name, whole.drifts);
            let fields = |r: &drift_core::DriftReport| -> Vec<String> {
                r.unmanaged.iter().map(|u| u.field.clone()).collect()
            };
            assert_eq!(fields(&lean), fields(&whole), "{}", c.name);
            assert_eq!(lean.status, whole.status, "{}", c.name);
        }
    }
    assert!(
        lean_answers > 0,
        "no case was answered leanly: the check checked nothing"
    );
    // Every case but the two redaction would change (a Secret, an env value under a sensitive name).
    assert!(
        compiled_answers + 2 >= cases.len(),
        "{compiled_answers} of {} cases decoded compiled",
        cases.len()
    );
    assert_eq!(flat_answers, compiled_answers, "read flat where decoded compiled");
    // Every case but the two redaction would change.
    assert!(
        whole_flat_answers + 2 >= cases.len(),
        "{whole_flat_answers} of {} cases read flat whole",
        cases.len()
    );
}

/// JSON text with every object's keys in reverse order (as an API server's text is not sorted).
fn reversed_json(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                reversed_json(x, out);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reversed_json(x, out);
            }
            out.push(']');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// The detector compares a compactly held live object in its stored compiled form (no `Value`
/// built): on every realistic case, judging it again after compaction gives exactly the report the
/// fresh object gave, and changes nothing open.
#[test]
fn a_compactly_held_object_is_judged_as_the_fresh_one_was() {
    use drift_core::clock::ManualClock;
    use drift_core::detector::{Detector, DetectorConfig};
    use drift_core::ports::{DesiredResource, LiveEvent, Provenance, RelistScope};
    let cases = cases();
    for c in &cases {
        let mut d = Detector::new(
            engine_for(c),
            DetectorConfig::default(),
            std::sync::Arc::new(ManualClock::new(1_000)),
        );
        d.set_desired(vec![DesiredResource {
            provenance: Provenance::file("case.yaml"),
            resource: one(&c.name, "desired", &c.desired),
        }]);
        d.observe(LiveEvent::Restarted {
            scope: RelistScope::All,
            resources: vec![one(&c.name, "live", &c.live)],
        });
        d.observe(LiveEvent::Ready);
        let judge = |d: &mut Detector| {
            let keys: Vec<_> = std::iter::from_fn(|| d.next_key()).collect();
            assert_eq!(keys.len(), 1, "{}", c.name);
            d.process_all(&keys).remove(0)
        };
        let fresh = judge(&mut d);
        assert_eq!(
            d.compact(usize::MAX),
            1,
            "{}: held fresh until compaction",
            c.name
        );
        assert_eq!(d.queue_all(), 1);
        let again = judge(&mut d);
        assert_eq!(again.report, fresh.report, "{}", c.name);
        assert!(again.events.is_empty(), "{}: {:?}", c.name, again.events);
        assert!(d.live_object(&fresh.report.expect("report").key).is_some());
    }
}
