//! The install's redaction key and private state files.
//!
//! Secret values are hashed with a key (`drift_core::redact`). For tokens to agree across restarts and
//! replicas the key must outlive the process: `DRIFT_REDACTION_KEY` (64 hex digits, or any text, which
//! is hashed; mount it from a Kubernetes Secret shared by the replicas), else a key kept in the state
//! directory (`redaction.key`, created once, readable by the owner only). Without either (one-shot
//! commands) a per-process key is drawn.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use drift_core::redact::Redactor;

/// The environment variable holding the install-wide key.
pub(crate) const KEY_ENV: &str = "DRIFT_REDACTION_KEY";

/// Where the key comes from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    Environment,
    StateFile,
    Process,
}

/// A key from text: 64 hex digits as they are, anything else hashed.
fn key_from_text(text: &str) -> [u8; 32] {
    let t = text.trim();
    let mut key = [0u8; 32];
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap_or_default();
        }
        return key;
    }
    use sha2::Digest as _;
    key.copy_from_slice(&sha2::Sha256::digest(t.as_bytes()));
    key
}

/// The install's key: the environment's, else the state directory's (created when missing).
pub(crate) fn load_key(env: Option<&str>, state_dir: Option<&Path>) -> anyhow::Result<([u8; 32], KeySource)> {
    if let Some(v) = env.filter(|v| !v.trim().is_empty()) {
        return Ok((key_from_text(v), KeySource::Environment));
    }
    let Some(dir) = state_dir else {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a redaction key: {e}"))?;
        return Ok((key, KeySource::Process));
    };
    private_dir(dir)?;
    let path = dir.join("redaction.key");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok((key_from_text(&text), KeySource::StateFile)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for a redaction key: {e}"))?;
    let hex = drift_core::redact::hex(&key);
    write_private(&path, format!("{hex}\n").as_bytes())?;
    Ok((key, KeySource::StateFile))
}

/// Installs the process-wide redactor (call before anything is redacted).
pub(crate) fn install_redactor(
    state_dir: Option<&Path>,
    names: Option<&[String]>,
) -> anyhow::Result<KeySource> {
    let env = std::env::var(KEY_ENV).ok();
    let (key, source) = load_key(env.as_deref(), state_dir)?;
    let mut r = Redactor::with_key(key);
    if let Some(n) = names {
        r = r.with_sensitive_names(n);
    }
    if r.install_global().is_err() {
        anyhow::bail!("internal: the redactor was used before its key was loaded");
    }
    Ok(source)
}

/// A directory only its owner can enter (0700), created when missing.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    Ok(())
}

/// Creates a file only its owner can read (0600), or makes an existing one so.
pub(crate) fn private_file(path: &Path) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    private_file(path)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn the_key_outlives_the_process_and_is_private() {
        let dir = std::env::temp_dir().join(format!("drift-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, s) = load_key(None, Some(&dir)).expect("created");
        assert_eq!(s, KeySource::StateFile);
        let (b, _) = load_key(None, Some(&dir)).expect("read back");
        assert_eq!(a, b, "a restart uses the same key");
        #[cfg(unix)]
        {
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("redaction.key")), 0o600);
        }
        // The environment wins, in either form.
        let (e, s) = load_key(Some(&"ab".repeat(32)), Some(&dir)).expect("env");
        assert_eq!((e, s), ([0xab; 32], KeySource::Environment));
        let (t, _) = load_key(Some("shared passphrase\n"), None).expect("env text");
        assert_eq!(t, load_key(Some("shared passphrase"), None).expect("same").0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
