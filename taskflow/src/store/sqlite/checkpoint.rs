//! [`Checkpointer`]: copies the write-ahead log back into the database file on a thread of its
//! own, so that the writer's commits do not wait for that copying and its syncs (SQLite would
//! otherwise do it inside the commit that crosses 1,000 pages of log).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use rusqlite::Connection;

use crate::store::StoreError;

/// The writer wakes the checkpointer after this many commits.
const COMMITS_PER_CHECKPOINT: u32 = 32;

/// A log longer than this (in 4 KiB pages: 64 MiB) is checkpointed and restarted by the writer
/// itself, as SQLite would by default: under a sustained load a checkpoint running beside the
/// writer never finds the log fully copied, and the log only restarts from its beginning
/// once it has been.
const MAX_LOG_PAGES: i64 = 16_384;

/// The checkpointing thread, as the writer's thread sees it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Set by the checkpointer when the log has grown past [`MAX_LOG_PAGES`].
    log_too_long: Arc<AtomicBool>,
    commits: u32,
}

impl Checkpointer {
    /// Starts the thread, with its own connection to the database at `path`. The writer's
    /// connection must have its automatic checkpoints turned off.
    pub(super) fn spawn(conn: Connection, path: &Path) -> Result<Checkpointer, StoreError> {
        let (wake, woken) = mpsc::sync_channel(1);
        let log_too_long = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&log_too_long);
        let thread = thread::Builder::new()
            .name("taskflow-sqlite-checkpoint".to_owned())
            .spawn(move || run(&conn, &woken, &flag))
            .map_err(|err| StoreError::Open {
                path: path.display().to_string(),
                reason: format!("cannot start the store's checkpoint thread: {err}"),
            })?;
        Ok(Checkpointer { wake: Some(wake), thread: Some(thread), log_too_long, commits: 0 })
    }

    /// Called by the writer after each commit, on its connection.
    pub(super) fn committed(&mut self, conn: &Connection) {
        if self.log_too_long.swap(false, Ordering::Relaxed) {
            if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::warn!(error = %err, "taskflow: could not checkpoint the SQLite log");
            }
            return;
        }
        self.commits += 1;
        if self.commits >= COMMITS_PER_CHECKPOINT {
            self.commits = 0;
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(()); // already woken: it will see these commits too
            }
        }
    }
}

impl Drop for Checkpointer {
    /// Stops the thread and waits for it, so its connection is closed before the writer's.
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, woken: &Receiver<()>, log_too_long: &AtomicBool) {
    while woken.recv().is_ok() {
        // PASSIVE never waits for the writer or the readers: it copies what it can.
        let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpoint {
            Ok((log_pages, _copied)) if log_pages > MAX_LOG_PAGES => {
                log_too_long.store(true, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "taskflow: could not checkpoint the SQLite log");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn commits_reach_the_database_file_through_the_thread() {
        let dir = std::env::temp_dir().join(format!("taskflow-checkpoint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (v TEXT NOT NULL);",
            )
            .unwrap();
        let mut checkpointer =
            Checkpointer::spawn(Connection::open(&path).unwrap(), &path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        for _ in 0..COMMITS_PER_CHECKPOINT {
            writer.execute("INSERT INTO t (v) VALUES (?1)", ["x".repeat(4000)]).unwrap();
            checkpointer.committed(&writer);
        }
        // Nothing else checkpoints (automatic checkpoints are off), so the file grows only
        // if the thread copied the log into it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&path).unwrap().len() < before + 100_000 {
            assert!(Instant::now() < deadline, "the log was not checkpointed");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(checkpointer);
        drop(writer);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
