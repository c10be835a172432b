//! [`DesiredStore`] over manifest files: `--desired PATH...` (files or directories). Changes are
//! noticed by polling modification times and sizes (every 2 s); each file is one source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use drift_core::ports::{
    DesiredChange, DesiredResource, DesiredSet, DesiredStore, PortError, Provenance, SourceError,
};
use futures::stream::{BoxStream, StreamExt};

type Stamp = (SystemTime, u64);

/// Desired state from manifests.
#[derive(Clone, Debug)]
pub(crate) struct FileDesiredStore {
    roots: Arc<Vec<PathBuf>>,
    namespace: Arc<str>,
    seen: Arc<Mutex<BTreeMap<PathBuf, Stamp>>>,
    interval: Duration,
}

/// The manifests under a directory, as `diff --desired DIR` reads them (hidden entries skipped, links
/// to directories not followed).
fn files_under(p: &Path, out: &mut Vec<PathBuf>) {
    match drift_core::manifest_files(p) {
        Ok(files) => out.extend(files),
        Err(e) => tracing::warn!(dir = %p.display(), error = %e, "cannot read the manifest directory"),
    }
}

fn stamp(p: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl FileDesiredStore {
    pub(crate) fn new(roots: Vec<PathBuf>, namespace: &str) -> Self {
        FileDesiredStore {
            roots: Arc::new(roots),
            namespace: namespace.into(),
            seen: Arc::default(),
            interval: Duration::from_secs(2),
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for r in self.roots.iter() {
            if r.is_dir() {
                files_under(r, &mut out);
            } else {
                out.push(r.clone());
            }
        }
        out
    }

    fn load_file(&self, f: &Path) -> Result<Vec<DesiredResource>, SourceError> {
        let source = f.display().to_string();
        let loaded = drift_core::load_path(f);
        if let Some(e) = loaded.errors.first() {
            return Err(SourceError {
                source,
                reason: e.to_string(),
            });
        }
        Ok(loaded
            .resources
            .into_iter()
            .map(|mut r| {
                r.default_namespace(&self.namespace);
                DesiredResource {
                    resource: r,
                    provenance: Provenance::file(source.clone()),
                }
            })
            .collect())
    }
}

/// Desired objects per part when loading in parts.
const PART: usize = 2_000;

impl FileDesiredStore {
    /// One file's objects, in parts of [`PART`]: held as text and parsed a part at a time. A file
    /// with any broken document is an error as a whole (as [`FileDesiredStore::load`] has it).
    async fn send_file_parts(
        &self,
        f: &Path,
        parts: &mut futures::channel::mpsc::Sender<Vec<DesiredResource>>,
    ) -> Result<(), SourceError> {
        use futures::SinkExt as _;
        let source = f.display().to_string();
        let d = drift_core::deferred::Deferred::load_path(f, drift_core::LoadOptions::default());
        let error = |e: &drift_core::LoadError| SourceError {
            source: source.clone(),
            reason: e.to_string(),
        };
        if let Some(e) = d.errors.first() {
            return Err(error(e));
        }
        // The scan above found every document's syntax and identity errors, so a broken file is
        // refused before any of it is handed over (a scanned object does not fail to parse later;
        // if one did, the file would end with its error).
        let mut out = Vec::with_capacity(PART.min(d.len()));
        let mut start = 0;
        while start < d.len() {
            let end = (start + PART).min(d.len());
            for i in start..end {
                let mut r = d.resource(i).map_err(|e| error(&e))?;
                r.default_namespace(&self.namespace);
                out.push(DesiredResource {
                    resource: r,
                    provenance: Provenance::file(source.clone()),
                });
            }
            if parts.send(std::mem::take(&mut out)).await.is_err() {
                return Ok(()); // the receiver stopped listening
            }
            start = end;
        }
        Ok(())
    }
}

#[async_trait]
impl DesiredStore for FileDesiredStore {
    async fn load_parts(
        &self,
        mut parts: futures::channel::mpsc::Sender<Vec<DesiredResource>>,
    ) -> Result<Vec<SourceError>, PortError> {
        let files = self.files();
        if files.is_empty() {
            return Err(PortError::Invalid {
                what: "--desired".into(),
                reason: format!("no manifests under {:?}", self.roots),
            });
        }
        let mut errors = Vec::new();
        let mut seen = BTreeMap::new();
        for f in files {
            if let Some(s) = stamp(&f) {
                seen.insert(f.clone(), s);
            }
            if let Err(e) = self.send_file_parts(&f, &mut parts).await {
                errors.push(e);
            }
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        Ok(errors)
    }

    async fn load(&self) -> Result<DesiredSet, PortError> {
        let mut set = DesiredSet::default();
        let mut seen = BTreeMap::new();
        let files = self.files();
        if files.is_empty() {
            return Err(PortError::Invalid {
                what: "--desired".into(),
                reason: format!("no manifests under {:?}", self.roots),
            });
        }
        for f in files {
            if let Some(s) = stamp(&f) {
                seen.insert(f.clone(), s);
            }
            match self.load_file(&f) {
                Ok(rs) => set.resources.extend(rs),
                Err(e) => set.errors.push(e),
            }
        }
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seen;
        Ok(set)
    }

    fn changes(&self) -> BoxStream<'static, Result<DesiredChange, PortError>> {
        let this = self.clone();
        futures::stream::unfold(
            (this, Vec::<DesiredChange>::new()),
            |(this, mut buf)| async move {
                loop {
                    if let Some(c) = buf.pop() {
                        return Some((Ok(c), (this, buf)));
                    }
                    tokio::time::sleep(this.interval).await;
                    let before = this
                        .seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    let mut now = BTreeMap::new();
                    for f in this.files() {
                        let Some(s) = stamp(&f) else { continue };
                        if before.get(&f) != Some(&s) {
                            buf.push(match this.load_file(&f) {
                                Ok(resources) => DesiredChange::Replaced {
                                    source: f.display().to_string(),
                                    resources,
                                },
                                Err(e) => DesiredChange::Failed(e),
                            });
                        }
                        now.insert(f, s);
                    }
                    for f in before.keys().filter(|f| !now.contains_key(*f)) {
                        buf.push(DesiredChange::Replaced {
                            source: f.display().to_string(),
                            resources: Vec::new(),
                        });
                    }
                    *this
                        .seen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
                }
            },
        )
        .boxed()
    }
}

#[cfg(all(test, unix))]
mod mount_tests {
    use super::*;

    /// A ConfigMap mounted as a directory (`..data` → a hidden timestamped directory, each file a link
    /// through `..data`) plus a link loop: each object loads once, and the loop ends.
    #[test]
    fn a_configmap_mount_loads_each_object_once() {
        let dir = std::env::temp_dir().join(format!("drift-mount-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ts = dir.join("..2026_12_02_10_00_00.123");
        std::fs::create_dir_all(&ts).expect("dir");
        std::fs::write(
            ts.join("app.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop}\ndata: {a: '1'}\n",
        )
        .expect("write");
        std::os::unix::fs::symlink("..2026_12_02_10_00_00.123", dir.join("..data")).expect("link");
        std::os::unix::fs::symlink("..data/app.yaml", dir.join("app.yaml")).expect("link");
        std::os::unix::fs::symlink(".", dir.join("loop")).expect("loop");
        let files = FileDesiredStore::new(vec![dir.clone()], "shop").files();
        assert_eq!(files, [dir.join("app.yaml")]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
