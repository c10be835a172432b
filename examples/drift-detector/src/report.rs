//! Rendering drift reports for people (a table) and programs (JSON, YAML).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;

use drift_core::{Change, DriftReport, DriftStatus, UnmanagedField};
use serde::Serialize;
use serde_json::Value;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table for people (colour on a terminal).
    Table,
    /// JSON for programs.
    Json,
    /// YAML for programs.
    Yaml,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DriftOut {
    pub id: String,
    pub path: String,
    pub field: String,
    pub change: Change,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
    pub rule: String,
    pub set: String,
    pub severity: String,
    /// Who made the change (from managedFields), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<drift_core::Actor>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceOut {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub status: DriftStatus,
    pub drifts: Vec<DriftOut>,
    pub unmanaged: Vec<UnmanagedField>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_patch: Option<Value>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub resources: usize,
    pub in_sync: usize,
    pub drifted: usize,
    pub missing_live: usize,
    pub unmanaged_resources: usize,
    pub drifts: usize,
    pub by_set: BTreeMap<String, usize>,
    pub by_severity: BTreeMap<String, usize>,
}

/// The document printed by `diff` and `scan`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiffOutput {
    pub drifted: bool,
    pub resources: Vec<ResourceOut>,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl DiffOutput {
    /// Builds the output from reports (sorted by resource) and load errors.
    pub(crate) fn new(mut reports: Vec<(DriftReport, Option<Value>)>, errors: Vec<String>) -> Self {
        reports.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let mut summary = Summary::default();
        let mut resources = Vec::with_capacity(reports.len());
        for (r, patch) in reports {
            match r.status {
                DriftStatus::InSync => summary.in_sync += 1,
                DriftStatus::Drifted => summary.drifted += 1,
                DriftStatus::MissingLive => summary.missing_live += 1,
                DriftStatus::Unmanaged => summary.unmanaged_resources += 1,
                _ => {}
            }
            if r.status != DriftStatus::Unmanaged {
                summary.resources += 1;
            }
            for d in &r.drifts {
                summary.drifts += 1;
                *summary.by_set.entry(d.set.to_string()).or_default() += 1;
                *summary.by_severity.entry(d.severity.to_string()).or_default() += 1;
            }
            resources.push(ResourceOut {
                api_version: r.key.api_version(),
                kind: r.key.kind.clone(),
                namespace: r.key.namespace.clone(),
                name: r.key.name.clone(),
                status: r.status,
                drifts: r
                    .drifts
                    .into_iter()
                    .map(|d| DriftOut {
                        id: d.id.to_string(),
                        path: d.path.pointer(),
                        field: d.path.readable(),
                        change: d.change,
                        expected: d.expected,
                        actual: d.actual,
                        rule: d.rule,
                        set: d.set.to_string(),
                        severity: d.severity.to_string(),
                        actor: d.actor,
                    })
                    .collect(),
                unmanaged: r.unmanaged,
                revert_patch: patch,
            });
        }
        let drifted = summary.drifted > 0 || summary.missing_live > 0;
        DiffOutput {
            drifted,
            resources,
            summary,
            errors,
        }
    }

    /// Renders in a format.
    pub(crate) fn render(
        &self,
        format: OutputFormat,
        color: bool,
        show_unmanaged: bool,
    ) -> anyhow::Result<String> {
        Ok(match format {
            OutputFormat::Json => {
                let mut s = serde_json::to_string_pretty(self)?;
                s.push('\n');
                s
            }
            OutputFormat::Yaml => serde_saphyr::to_string(&serde_json::to_value(self)?)?,
            OutputFormat::Table => self.table(color, show_unmanaged),
        })
    }

    fn table(&self, color: bool, show_unmanaged: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        for r in &self.resources {
            let (word, code) = match r.status {
                DriftStatus::InSync => ("in-sync", "32"),
                DriftStatus::Drifted => ("drifted", "31"),
                DriftStatus::MissingLive => ("missing-live", "1;31"),
                DriftStatus::Unmanaged => ("unmanaged", "2"),
                _ => ("?", "0"),
            };
            let ns = r
                .namespace
                .as_deref()
                .map(|n| format!("{}/", printable(n)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<13} {} {} {}{}",
                paint(code, word),
                printable(&r.api_version),
                printable(&r.kind),
                ns,
                printable(&r.name)
            );
            for d in &r.drifts {
                let sev_code = match d.severity.as_str() {
                    "critical" => "31",
                    "warning" => "33",
                    _ => "36",
                };
                let what = match d.change {
                    Change::Changed => format!(
                        "expected {}, actual {}",
                        show(d.expected.as_ref()),
                        show(d.actual.as_ref())
                    ),
                    Change::Missing => format!("missing from live (expected {})", show(d.expected.as_ref())),
                    Change::Extra => format!("not in desired (live has {})", show(d.actual.as_ref())),
                };
                let by = d
                    .actor
                    .as_ref()
                    .map(|a| format!("  by {}", printable(&a.to_string())))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {:<8} {}  {}  [{}/{} · {}]{}",
                    d.change.to_string(),
                    paint("1", &printable(&d.field)),
                    what,
                    d.set,
                    paint(sev_code, &d.severity),
                    d.rule,
                    by
                );
            }
            if show_unmanaged {
                for u in &r.unmanaged {
                    let _ = writeln!(
                        out,
                        "  {}",
                        paint(
                            "2",
                            &format!("unmanaged {} = {}", printable(&u.field), show(Some(&u.actual)))
                        )
                    );
                }
            } else if !r.unmanaged.is_empty() {
                let n = r.unmanaged.len();
                let _ = writeln!(
                    out,
                    "  {}",
                    paint(
                        "2",
                        &format!(
                            "{n} unmanaged field{} (not drift; --show-unmanaged lists them)",
                            if n == 1 { "" } else { "s" }
                        )
                    )
                );
            }
            if let Some(p) = &r.revert_patch {
                let _ = writeln!(out, "  revert patch: {p}");
            }
        }
        if !self.resources.is_empty() {
            out.push('\n');
        }
        let s = &self.summary;
        let mut line = format!(
            "{} resource{}: {} in sync, {} drifted, {} missing from live",
            s.resources,
            if s.resources == 1 { "" } else { "s" },
            s.in_sync,
            s.drifted,
            s.missing_live
        );
        if s.unmanaged_resources > 0 {
            let _ = write!(line, ", {} unmanaged", s.unmanaged_resources);
        }
        if s.drifts > 0 {
            let sets: Vec<String> = s.by_set.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let _ = write!(
                line,
                " · {} drift{} ({})",
                s.drifts,
                if s.drifts == 1 { "" } else { "s" },
                sets.join(", ")
            );
        }
        out.push_str(&paint(if self.drifted { "1;31" } else { "1;32" }, &line));
        out.push('\n');
        for e in &self.errors {
            let _ = writeln!(out, "{} {}", paint("31", "error:"), printable(e));
        }
        out
    }
}

/// Text from the cluster or the manifests, safe for a terminal: control characters (escape sequences
/// that could repaint the screen or fake output, carriage returns, bells) are shown escaped.
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "<absent>".into(),
        Some(Value::String(s)) => printable(s),
        Some(v) => {
            // JSON text escapes control characters already.
            let s = v.to_string();
            if s.chars().count() > 72 {
                format!("{}…", s.chars().take(71).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// Whether to colour stdout: a terminal, and `NO_COLOR` unset.
pub(crate) fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
