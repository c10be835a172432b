//! Local state in SQLite (`<state-dir>/drift-detector.db`): the drift history when there is no
//! ConfigHub, and the spool of drift events not yet written to ConfigHub, so nothing is lost when
//! ConfigHub is down or the process stops. WAL journal, `synchronous=FULL`: a committed write survives a
//! crash.

use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use drift_core::ports::{DriftEvent, DriftLog, DriftRecord, HistoryQuery, PortError};
use rusqlite::{Connection, OptionalExtension, params};

/// The SQLite file.
pub(crate) struct Store {
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn db_err(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::Unavailable {
        what: format!("the local state database ({what})"),
        reason: e.to_string(),
    }
}

impl Store {
    /// Opens (creating) the database in a directory.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Store> {
        // Drift records hold hashed values only, but who drifted what is still nobody else's business:
        // the directory is 0700 and the database 0600 (SQLite gives its WAL the database's mode).
        crate::secrets::private_dir(dir)?;
        let path = dir.join("drift-detector.db");
        crate::secrets::private_file(&path)?;
        let conn = Connection::open(&path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS records (
                 drift_id TEXT PRIMARY KEY,
                 record TEXT NOT NULL,
                 updated_at INTEGER NOT NULL,
                 open INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS pending (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 event_id TEXT NOT NULL UNIQUE,
                 event TEXT NOT NULL
             );",
        )
        .map_err(|e| anyhow::anyhow!("preparing {}: {e}", path.display()))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.display().to_string(),
        })
    }

    /// In memory (tests and the demo).
    pub(crate) fn in_memory() -> anyhow::Result<Store> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(
            "CREATE TABLE records (drift_id TEXT PRIMARY KEY, record TEXT NOT NULL, updated_at INTEGER NOT NULL, open INTEGER NOT NULL);
             CREATE TABLE pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL);",
        )?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: ":memory:".into(),
        })
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an event to the spool (idempotent by event id).
    pub(crate) fn spool(&self, e: &DriftEvent) -> Result<(), PortError> {
        let text = serde_json::to_string(e).map_err(|e| db_err("encoding an event", e))?;
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO pending (event_id, event) VALUES (?1, ?2)",
                params![e.event_id, text],
            )
            .map_err(|e| db_err("spooling an event", e))?;
        Ok(())
    }

    /// The spooled events, oldest first.
    pub(crate) fn spooled(&self) -> Result<Vec<DriftEvent>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT event FROM pending ORDER BY seq")
            .map_err(|e| db_err("reading the spool", e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| db_err("reading the spool", e))?;
        let mut out = Vec::new();
        for r in rows {
            let text = r.map_err(|e| db_err("reading the spool", e))?;
            match serde_json::from_str(&text) {
                Ok(e) => out.push(e),
                Err(e) => tracing::warn!(error = %e, "skipping a spooled event that does not decode"),
            }
        }
        Ok(out)
    }

    /// Removes an event from the spool once written.
    pub(crate) fn unspool(&self, event_id: &str) -> Result<(), PortError> {
        self.conn()
            .execute("DELETE FROM pending WHERE event_id = ?1", params![event_id])
            .map_err(|e| db_err("clearing the spool", e))?;
        Ok(())
    }

    /// Events waiting in the spool.
    pub(crate) fn spool_len(&self) -> usize {
        self.conn()
            .query_row("SELECT COUNT(*) FROM pending", [], |r| r.get::<_, i64>(0))
            .map_or(0, |n| n as usize)
    }
}

#[async_trait]
impl DriftLog for Store {
    async fn append(&self, event: &DriftEvent) -> Result<(), PortError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| db_err("appending", e))?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT record FROM records WHERE drift_id = ?1",
                params![event.drift.id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err("appending", e))?;
        let record = match existing {
            Some(text) => {
                let mut r: DriftRecord =
                    serde_json::from_str(&text).map_err(|e| db_err("decoding a record", e))?;
                if !r.apply(event) {
                    return Ok(());
                }
                r
            }
            None => DriftRecord::from_event(event),
        };
        let text = serde_json::to_string(&record).map_err(|e| db_err("encoding a record", e))?;
        tx.execute(
            "INSERT INTO records (drift_id, record, updated_at, open) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(drift_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at, open = excluded.open",
            params![record.drift.id.as_str(), text, record.updated_at as i64, record.state.is_open()],
        )
        .map_err(|e| db_err("appending", e))?;
        tx.commit().map_err(|e| db_err("committing", e))?;
        Ok(())
    }

    async fn records(&self, query: &HistoryQuery) -> Result<Vec<DriftRecord>, PortError> {
        let sql = if query.open_only {
            "SELECT record FROM records WHERE open = 1"
        } else {
            "SELECT record FROM records"
        };
        // Under the lock only the rows are copied out; decoding happens after it is released, so
        // the writer is held up for the read alone.
        let texts: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(sql).map_err(|e| db_err("reading records", e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| db_err("reading records", e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| db_err("reading records", e))?
        };
        let mut all = Vec::new();
        for text in texts {
            match serde_json::from_str(&text) {
                Ok(rec) => all.push(rec),
                Err(e) => tracing::warn!(error = %e, "skipping a stored record that does not decode"),
            }
        }
        Ok(drift_core::memory::select_records(all, query))
    }
}
