//! The producer: the one place that decides what starts. It waits for a free slot, asks the
//! store for up to as many available tasks as there are free slots (one statement or script,
//! already leased to this runner), hands each to an executor, and when the store had fewer
//! than it asked for, sleeps until something may have changed (see [`Wake`](super::wake)).
//! An idle engine costs one fetch per poll interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::{Engine, executor};

/// The most tasks one fetch asks for.
const MAX_FETCH: usize = 256;

/// The shortest wait before a fetch for tasks coming due: a task may start this much late,
/// and a stream of due times costs at most one fetch per this interval.
const COALESCE: chrono::TimeDelta = chrono::TimeDelta::milliseconds(5);

/// Runs until shutdown starts, or until the engine is dropped: between fetches it holds only
/// what it waits on, not the engine.
pub(crate) fn spawn(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
    let (slots, wake, stopping) =
        (Arc::clone(&engine.slots), Arc::clone(&engine.wake), engine.stopping.clone());
    let (poll, remote) = (engine.poll_every, engine.remote.clone());
    engine.runtime.spawn(run(weak, slots, wake, stopping, poll, remote));
}

async fn run(
    weak: std::sync::Weak<Engine>,
    slots: Arc<tokio::sync::Semaphore>,
    wake: Arc<super::wake::Wake>,
    stopping: tokio_util::sync::CancellationToken,
    poll: Duration,
    remote: Option<Arc<tokio::sync::Notify>>,
) {
    let mut outage: Option<Outage> = None;
    // The last next-due time that was already past when read (see `fetch`).
    let mut past = None;
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return, // closed: shutting down
            },
            () = stopping.cancelled() => return,
        };
        let mut permits = vec![first];
        while permits.len() < MAX_FETCH {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let Some(engine) = weak.upgrade() else { return };
        if stopping.is_cancelled() {
            return;
        }
        let full = match fetch(&engine, permits, &mut outage, &mut past).await {
            Some(full) => full,
            None => return,
        };
        let now = engine.clock.now();
        drop(engine);
        if full {
            continue;
        }
        let backoff = outage.as_ref().map(|outage| outage.pause);
        tokio::select! {
            () = async {
                match backoff {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => wake.wait(poll, remote.as_deref(), now).await,
                }
            } => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// One fetch for `permits` slots; starts what it got. `Some(true)` when the store had as many
/// as asked (there may be more), `None` when shutdown started meanwhile.
async fn fetch(
    engine: &Arc<Engine>,
    mut permits: Vec<OwnedSemaphorePermit>,
    outage: &mut Option<Outage>,
    past: &mut Option<chrono::DateTime<chrono::Utc>>,
) -> Option<bool> {
    let asked = permits.len();
    let lease = engine.fetch_lease();
    let fetched = tokio::select! {
        fetched = engine.store.fetch(asked, engine.clock.now(), &lease) => fetched,
        () = engine.stopping.cancelled() => {
            release(engine, &lease).await;
            return None;
        }
    };
    match fetched {
        Ok(records) => {
            if let Some(outage) = outage.take() {
                tracing::info!(
                    after = ?outage.started.elapsed(),
                    "taskflow: the store answers again; fetching resumed"
                );
            }
            let full = records.len() == asked;
            if !full {
                // Sleep until the next waiting task comes due, not for a whole poll. One that
                // came due meanwhile is fetched at once, but only once: if the same past time
                // comes back (a row the store could not make available), the poll takes it.
                // Fetches for due times come at most every `COALESCE`, so tasks due close
                // together start together.
                let now = engine.clock.now();
                let soonest = now + COALESCE;
                match engine.store.next_due().await {
                    Ok(Some(due)) if due > now => engine.wake.at(due.max(soonest), now),
                    Ok(Some(due)) if *past != Some(due) => {
                        *past = Some(due);
                        engine.wake.at(soonest, now);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "taskflow: could not read the next due time")
                    }
                }
            }
            for record in records {
                let Some(permit) = permits.pop() else { break };
                executor::spawn(engine, record, lease.clone(), permit);
            }
            Some(full)
        }
        Err(err) => {
            drop(permits);
            match outage {
                Some(outage) => {
                    outage.pause =
                        (outage.pause * 2).min(engine.poll_every.max(Duration::from_secs(1)));
                }
                None => {
                    tracing::error!(error = %err, "taskflow: cannot fetch tasks; retrying with backoff until the store answers");
                    *outage = Some(Outage {
                        started: tokio::time::Instant::now(),
                        pause: Duration::from_millis(50),
                    });
                }
            }
            // The answer may have been lost after the store leased the tasks: give them
            // back, or they would wait for their lease to expire.
            if !release(engine, &lease).await {
                keep_releasing(engine, lease);
            }
            Some(false)
        }
    }
}

/// A stretch of failed fetches: logged once, retried with growing pauses.
struct Outage {
    started: tokio::time::Instant,
    pause: Duration,
}

/// Gives back the tasks of a fetch whose answer did not arrive; `false` when the store did
/// not answer either.
async fn release(engine: &Engine, lease: &crate::store::Lease) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), engine.store.release(lease)).await {
        Ok(Ok(0)) => true,
        Ok(Ok(released)) => {
            tracing::warn!(
                released,
                "taskflow: a fetch's answer was lost; its tasks are pending again"
            );
            true
        }
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "taskflow: could not release a failed fetch yet");
            false
        }
        Err(_) => {
            tracing::debug!("taskflow: releasing a failed fetch timed out");
            false
        }
    }
}

/// Keeps trying to give back the tasks of a lost fetch, in the background, until the store
/// answers or their lease has run out (then the rescuer settles them as tasks whose runner
/// died: a store that stays away longer than a lease can leave them `interrupted`).
fn keep_releasing(engine: &Arc<Engine>, lease: crate::store::Lease) {
    let engine = Arc::clone(engine);
    engine.runtime.clone().spawn(async move {
        let mut pause = Duration::from_millis(100);
        while engine.clock.now() < lease.expires_at {
            tokio::time::sleep(pause).await;
            if release(&engine, &lease).await {
                return;
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        tracing::warn!("taskflow: the tasks of a lost fetch could not be given back before their lease ran out; the rescuer settles them");
    });
}
