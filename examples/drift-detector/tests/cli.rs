//! The `drift-detector diff` command through the real binary: the verdicts of
//! `testdata/cases/expected.yaml`, snapshots of the demo scenario, stdin, and exit codes.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drift-detector"));
    c.env("NO_COLOR", "1").env_remove("RUST_LOG");
    c
}

/// The repository's `testdata/` (external data with provenance, `testdata/PROVENANCE.md`).
fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

fn here(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run drift-detector")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn expected_verdicts() {
    let cases = shared().join("cases");
    let text = std::fs::read_to_string(cases.join("expected.yaml")).expect("expected.yaml");
    let list: Value = serde_saphyr::from_str(&text).expect("yaml");
    let list = list.as_array().expect("cases");
    assert_eq!(list.len(), 11);
    for case in list {
        let name = case["name"].as_str().expect("name");
        let desired = cases.join(case["desired"].as_str().expect("desired"));
        let live = cases.join(case["live"].as_str().expect("live"));
        let mut args: Vec<String> = vec![
            "diff".into(),
            "--desired".into(),
            desired.display().to_string(),
            "--live".into(),
            live.display().to_string(),
            "--output".into(),
            "json".into(),
        ];
        for a in case.get("args").and_then(Value::as_array).into_iter().flatten() {
            args.push(a.as_str().expect("arg").to_string());
        }
        let out = bin().args(&args).output().expect("run");
        let drifted = case["drifted"].as_bool().expect("drifted");
        assert_eq!(
            out.status.code(),
            Some(if drifted { 1 } else { 0 }),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(json["drifted"], Value::Bool(drifted), "{name}");
        let drifts: Vec<&Value> = json["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .flat_map(|r| r["drifts"].as_array().into_iter().flatten())
            .collect();
        for token in case
            .get("mention")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let token = match token {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let found = drifts.iter().any(|d| {
                ["path", "field", "expected", "actual"]
                    .iter()
                    .any(|k| match &d[*k] {
                        Value::String(s) => s.contains(&token),
                        Value::Null => false,
                        other => other.to_string().contains(&token),
                    })
            });
            assert!(found, "{name}: `{token}` not mentioned in {drifts:?}");
        }
        if !drifted {
            assert!(drifts.is_empty(), "{name}: {drifts:?}");
        }
    }
}

fn demo_args(format: &str) -> Vec<String> {
    vec![
        "diff".into(),
        "--desired".into(),
        here("demo/test-workloads.yaml").display().to_string(),
        "--live".into(),
        here("tests/fixtures/demo-live.json").display().to_string(),
        "--output".into(),
        format.into(),
    ]
}

#[test]
fn demo_scenario_table() {
    let out = bin().args(demo_args("table")).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!("demo_table", stdout(&out));
}

#[test]
fn demo_scenario_json() {
    let out = bin().args(demo_args("json")).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    insta::assert_json_snapshot!("demo_json", json);
}

#[test]
fn yaml_output_parses() {
    let out = bin().args(demo_args("yaml")).output().expect("run");
    let v: Value = serde_saphyr::from_str(&stdout(&out)).expect("yaml output parses");
    assert_eq!(v["drifted"], Value::Bool(true));
    assert_eq!(v["summary"]["drifts"], Value::from(2));
}

#[test]
fn live_from_stdin_like_kubectl_get() {
    let mut child = bin()
        .args([
            "diff",
            "--desired",
            &here("demo/test-workloads.yaml").display().to_string(),
            "--live",
            "-",
            "-o",
            "json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let fixture = std::fs::read(here("tests/fixtures/demo-live.json")).expect("fixture");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&fixture)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["summary"]["drifted"], Value::from(2));
    assert_eq!(json["summary"]["inSync"], Value::from(5));
}

#[test]
fn manifests_without_namespace_take_the_live_namespace() {
    let dir = tempdir("ns");
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("live.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {a: '2'}\n",
    )
    .expect("write");
    let out = run(&[
        "diff",
        "--desired",
        &dir.join("cm.yaml").display().to_string(),
        "--live",
        &dir.join("live.yaml").display().to_string(),
        "-o",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["resources"][0]["namespace"], "shop");
    assert_eq!(json["resources"][0]["drifts"][0]["field"], "data.a");
    let out = run(&[
        "diff",
        "--desired",
        &dir.join("cm.yaml").display().to_string(),
        "--live",
        &dir.join("live.yaml").display().to_string(),
        "-n",
        "other",
        "-o",
        "json",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["resources"][0]["status"], "missing-live");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn broken_documents_are_named_and_the_rest_still_compare() {
    let dir = tempdir("broken");
    std::fs::write(
        dir.join("desired.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\ndata: {k: v}\n---\napiVersion: v1\nkind: [\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("live.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\ndata: {k: v}\n",
    )
    .expect("write");
    let out = run(&[
        "diff",
        "--desired",
        &dir.join("desired.yaml").display().to_string(),
        "--live",
        &dir.join("live.yaml").display().to_string(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "a load error is exit 2");
    let json: Value = serde_json::from_slice(&out.stdout).expect("json still printed");
    assert_eq!(
        json["summary"]["inSync"],
        Value::from(1),
        "the good document was compared"
    );
    let err = json["errors"][0].as_str().expect("error");
    assert!(err.contains("desired.yaml: document 1 (line 7)"), "{err}");
}

#[test]
fn missing_files_and_bad_ignore_rules_exit_2() {
    let out = run(&[
        "diff",
        "--desired",
        "/nonexistent/x.yaml",
        "--live",
        "/nonexistent/y.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let dir = tempdir("ignore");
    std::fs::write(dir.join("ignore.yaml"), "ignore:\n- paths: [spec/replicas]\n").expect("write");
    let out = run(&[
        "diff",
        "--desired",
        &here("demo/test-workloads.yaml").display().to_string(),
        "--live",
        &here("tests/fixtures/demo-live.json").display().to_string(),
        "--ignore",
        &dir.join("ignore.yaml").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ignore.yaml") && err.contains("starts with `/`"),
        "{err}"
    );
}

#[test]
fn ignore_file_turns_drift_off() {
    let dir = tempdir("ignore-ok");
    std::fs::write(
        dir.join("ignore.yaml"),
        "ignore:\n- paths: [/spec/replicas]\n  target: {kind: Deployment}\n",
    )
    .expect("write");
    let out = run(&[
        "diff",
        "--desired",
        &here("demo/test-workloads.yaml").display().to_string(),
        "--live",
        &here("tests/fixtures/demo-live.json").display().to_string(),
        "--ignore",
        &dir.join("ignore.yaml").display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn show_unmanaged_and_show_patch() {
    let mut args = demo_args("json");
    args.push("--show-patch".into());
    let out = bin().args(&args).output().expect("run");
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let backend = json["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "backend-api" && r["kind"] == "Deployment")
        .expect("backend");
    assert_eq!(
        backend["revertPatch"],
        serde_json::json!([
            {"op": "test", "path": "/spec/replicas", "value": 5},
            {"op": "replace", "path": "/spec/replicas", "value": 3}
        ])
    );
    let dir = tempdir("unmanaged");
    std::fs::write(
        dir.join("d.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n",
    )
    .expect("write");
    std::fs::write(dir.join("l.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray, namespace: x}\n").expect("write");
    let d = dir.join("d.yaml").display().to_string();
    let l = dir.join("l.yaml").display().to_string();
    let json: Value =
        serde_json::from_slice(&run(&["diff", "--desired", &d, "--live", &l, "-o", "json"]).stdout)
            .expect("json");
    assert_eq!(json["resources"].as_array().map(Vec::len), Some(1));
    let out = run(&[
        "diff",
        "--desired",
        &d,
        "--live",
        &l,
        "-o",
        "json",
        "--show-unmanaged",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "unmanaged objects do not make the result drifted"
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        json["resources"]
            .as_array()
            .expect("r")
            .iter()
            .any(|r| r["name"] == "stray" && r["status"] == "unmanaged")
    );
}

#[test]
fn secret_values_never_printed() {
    let dir = tempdir("secret");
    std::fs::write(dir.join("d.yaml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}\nstringData: {password: correct-horse}\n").expect("write");
    std::fs::write(dir.join("l.yaml"), "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: x}\ndata: {password: YmF0dGVyeS1zdGFwbGU=}\n").expect("write");
    for format in ["json", "table", "yaml"] {
        let out = run(&[
            "diff",
            "--desired",
            &dir.join("d.yaml").display().to_string(),
            "--live",
            &dir.join("l.yaml").display().to_string(),
            "-o",
            format,
            "--show-patch",
            "--show-unmanaged",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let text = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        for secret in [
            "correct-horse",
            "Y29ycmVjdC1ob3JzZQ",
            "battery-staple",
            "YmF0dGVyeS1zdGFwbGU",
        ] {
            assert!(!text.contains(secret), "{format}: {secret} leaked:\n{text}");
        }
        assert!(text.contains("sha256:"), "{format}: redacted tokens shown");
    }
}

#[test]
fn help_teaches() {
    let out = run(&["diff", "--help"]);
    let text = stdout(&out);
    assert!(
        text.contains("kubectl get deploy,svc,cm -n shop -o yaml | drift-detector diff"),
        "{text}"
    );
    assert!(
        text.contains("Exit status: 0 in sync, 1 drifted, 2 error"),
        "{text}"
    );
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drift-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// Secret values never reach the output, however the Secret's apiVersion is spelt (a spelling no API
/// server serves is an error naming the document, exit 2 — never a leak), and values named like
/// secrets (env, ConfigMap keys) are hashed too; with the install's key the hashes are stable across
/// runs.
#[test]
fn no_secret_value_in_any_output_format() {
    let dir = tempdir("secrets");
    let mut desired = String::new();
    let mut live = String::new();
    for (i, api) in ["V1", "\"v1 \"", "/v1", "v1beta1"].iter().enumerate() {
        desired.push_str(&format!(
            "apiVersion: {api}\nkind: Secret\nmetadata: {{name: s{i}, namespace: shop}}\nstringData: {{password: desired-hunter2-{i}}}\n---\n"
        ));
        live.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}, namespace: shop}}\ndata: {{password: bGl2ZS1odW50ZXIy}}\n---\n"
        ));
    }
    let workload = |pw: &str, key: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: shop}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: app\n        image: app:1\n        env:\n        - {{name: DB_PASSWORD, value: {pw}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: shop}}\ndata: {{STRIPE_API_KEY: {key}, auth_token: tok-{key}}}\n"
        )
    };
    desired.push_str(&workload("env-desired-pw", "sk_desired"));
    live.push_str(&workload("env-live-pw", "sk_live"));
    std::fs::write(dir.join("desired.yaml"), &desired).expect("write");
    std::fs::write(dir.join("live.yaml"), &live).expect("write");
    let run = |format: &str| {
        let out = bin()
            .env("DRIFT_REDACTION_KEY", "test-install-key")
            .args([
                "diff",
                "--desired",
                &dir.join("desired.yaml").display().to_string(),
                "--live",
                &dir.join("live.yaml").display().to_string(),
                "-o",
                format,
                "--show-patch",
            ])
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for format in ["table", "json", "yaml"] {
        let text = run(format);
        for bad in ["`V1`", "`v1 `", "`/v1`", "`v1beta1`"] {
            assert!(
                text.contains(&format!("apiVersion {bad} is not valid")),
                "{bad} named as an error in {format}: {text}"
            );
        }
        for leak in [
            "hunter2",
            "bGl2ZS1odW50ZXIy",
            "env-desired-pw",
            "env-live-pw",
            "sk_desired",
            "sk_live",
            "tok-",
        ] {
            assert!(!text.contains(leak), "{format}: {leak} leaked:\n{text}");
        }
    }
    assert_eq!(
        run("json"),
        run("json"),
        "the install's key gives the same hashes every run"
    );
}

/// Live values cannot drive the terminal: escape sequences and carriage returns from the cluster are
/// shown escaped in the table.
#[test]
fn control_characters_from_live_values_are_escaped() {
    let dir = tempdir("ctrl");
    std::fs::write(
        dir.join("desired.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {motd: hello}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("live.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"motd": "\u001b[2J\u001b[1;1Hall good\r\u0007"}}"#,
    )
    .expect("write");
    let out = bin()
        .args([
            "diff",
            "--desired",
            &dir.join("desired.yaml").display().to_string(),
            "--live",
            &dir.join("live.json").display().to_string(),
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("\\u{1b}[2J"), "{text}");
}
