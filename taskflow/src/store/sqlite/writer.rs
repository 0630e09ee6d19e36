//! The connection's own thread, which commits in groups: it takes every job queued while the
//! previous transaction ran, runs them all in one transaction, commits once, and only then
//! answers each job. Many concurrent requests' enqueues cost one commit.

use std::cell::{RefCell, RefMut};
use std::fs::File;
use std::ops::Deref;
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;

use super::checkpoint::Checkpointer;
use crate::store::StoreError;
use crate::store::counters::moves::Moves;

/// At most this many jobs share one transaction, so one batch never holds answers back long.
const MAX_BATCH: usize = 4096;

/// Answers a job once its transaction has ended: with `None` when it committed, else with
/// the reason it did not.
pub(super) type Done = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// Runs inside a transaction and returns what answers its caller after the commit, and its
/// own error if it failed (which names the cause when the failure aborted the transaction).
pub(super) type Job = Box<dyn FnOnce(&Tx<'_>) -> (Done, Option<StoreError>) + Send>;

/// The connection a job runs on, and the counters' changes its transaction gathers: each
/// statement that changes tasks records what it changed ([`Tx::moves`]), and the writer adds
/// it all to the counters before the commit.
pub(super) struct Tx<'c> {
    conn: &'c Connection,
    moves: &'c RefCell<Moves>,
}

impl Tx<'_> {
    /// The transaction's counter changes, to record a statement's.
    pub(super) fn moves(&self) -> RefMut<'_, Moves> {
        self.moves.borrow_mut()
    }
}

impl Deref for Tx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

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
        F: FnOnce(&Tx<'_>) -> Result<T, StoreError> + Send + 'static,
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
    let moves = RefCell::new(Moves::default());
    while let Ok(first) = jobs.recv() {
        let tx = Tx { conn: &conn, moves: &moves };
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
                    let (answer, failed) = job(&tx);
                    done.push(answer);
                    if began && aborted.is_none() && conn.is_autocommit() {
                        moves.borrow_mut().clear(); // rolled back with the writes
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
        // The counters take the batch's changes in the same transaction (or, outside one,
        // after the writes that committed on their own).
        let folded = super::counters::fold(&conn, &mut moves.borrow_mut());
        if let Err(err) = folded {
            if began && aborted.is_none() {
                let _ = conn.execute_batch("ROLLBACK");
                aborted = Some((done.len(), unavailable(err)));
            } else {
                tracing::error!(error = %err, "taskflow: sqlite counters not updated");
            }
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
