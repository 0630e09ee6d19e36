//! The connection's own thread, which commits in groups: it takes every job queued while the
//! previous transaction ran, runs them all in one transaction, commits once, and only then
//! answers each job. Many concurrent requests' enqueues cost one commit.

use std::fs::File;
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;

use super::checkpoint::Checkpointer;
use crate::store::StoreError;

/// At most this many jobs share one transaction, so one batch never holds answers back long.
const MAX_BATCH: usize = 4096;

/// Answers a job once its transaction has ended: with `None` when it committed, else with
/// the reason it did not.
pub(super) type Done = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// Runs inside a transaction and returns what answers its caller after the commit, and its
/// own error if it failed (which names the cause when the failure aborted the transaction).
pub(super) type Job = Box<dyn FnOnce(&Connection) -> (Done, Option<StoreError>) + Send>;

enum Command {
    Job(Job),
    Close(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// The handle that queues jobs for the connection's thread.
#[derive(Debug)]
pub(super) struct Writer {
    queue: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Job(_) => "Job",
            Command::Close(_) => "Close",
        })
    }
}

impl Writer {
    /// Moves `conn` to a thread of its own named `name`, which runs each batch of jobs in one
    /// transaction when `transactional` (the writer), or each job on its own (a reader), and
    /// tells `checkpointer` of each commit. The thread drops `guard` (the file's lock) only
    /// after closing the connection.
    pub(super) fn spawn(
        conn: Connection,
        name: String,
        transactional: bool,
        checkpointer: Option<Checkpointer>,
        guard: Option<File>,
    ) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel();
        thread::Builder::new()
            .name(name)
            .spawn(move || run(conn, &jobs, transactional, checkpointer, guard))?;
        Ok(Writer { queue })
    }

    /// Queues `job`; an error when the thread is gone (the store was closed).
    pub(super) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.queue.send(Command::Job(job)).map_err(|_| StoreError::Closed)
    }

    /// Runs `f` in the next transaction and returns its result once that committed.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Box::new(move |conn| {
            let out = f(conn);
            let failed = out.as_ref().err().cloned();
            let done: Done = Box::new(move |commit| {
                let _ = tx.send(match (out, commit) {
                    (Err(err), _) => Err(err),
                    (Ok(_), Some(err)) => Err(err.clone()),
                    (ok, None) => ok,
                });
            });
            (done, failed)
        }))?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// Commits what is queued, closes the connection and ends the thread.
    pub(super) async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.queue.send(Command::Close(tx)).is_err() {
            return Ok(()); // already closed
        }
        rx.await.unwrap_or(Ok(()))
    }
}

fn run(
    conn: Connection,
    jobs: &mpsc::Receiver<Command>,
    transactional: bool,
    mut checkpointer: Option<Checkpointer>,
    guard: Option<File>,
) {
    let mut batch = Vec::new();
    let mut done = Vec::new();
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        // When BEGIN fails (a disk error), the jobs still run, each statement committing on
        // its own, so each job learns its own fate.
        let began = transactional && conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let mut close = None;
        // Some errors (a full disk, an I/O error) make SQLite roll the whole transaction
        // back: every job before that point lost its writes, and the ones after it run
        // without a transaction, each statement committing on its own.
        let mut aborted: Option<(usize, StoreError)> = None;
        for command in batch.drain(..) {
            match command {
                Command::Job(job) => {
                    let (answer, failed) = job(&conn);
                    done.push(answer);
                    if began && aborted.is_none() && conn.is_autocommit() {
                        let cause = failed.map_or_else(|| "an error".to_owned(), |e| e.to_string());
                        let err = StoreError::Unavailable(format!(
                            "the write was rolled back after {cause}"
                        ));
                        aborted = Some((done.len(), err));
                    }
                }
                Command::Close(reply) => close = Some(reply),
            }
        }
        // The counters take the batch's changes in the same transaction.
        if began
            && aborted.is_none()
            && let Err(err) = super::counters::fold(&conn)
        {
            let _ = conn.execute_batch("ROLLBACK");
            aborted = Some((done.len(), unavailable(err)));
        }
        let commit = match &aborted {
            Some((_, err)) => Err(err.clone()),
            None if began => conn.execute_batch("COMMIT").map_err(unavailable),
            None => Ok(()),
        };
        if commit.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let (true, Ok(()), Some(checkpointer)) = (began, &commit, &mut checkpointer) {
            checkpointer.committed(&conn);
        }
        let rolled_back = aborted.as_ref().map_or(done.len(), |(upto, _)| *upto);
        for (index, done) in done.drain(..).enumerate() {
            done(commit.as_ref().err().filter(|_| index < rolled_back));
        }
        if let Some(reply) = close {
            drop(checkpointer); // its connection closes first, so this one checkpoints last
            let closed = conn.close().map_err(|(_, err)| unavailable(err));
            drop(guard);
            let _ = reply.send(commit.and(closed));
            return;
        }
    }
    // Every handle is gone: close the connections, then let go of the file.
    drop(checkpointer);
    drop(conn);
    drop(guard);
}

/// A database error as a store error.
pub(super) fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {err}"))
}
