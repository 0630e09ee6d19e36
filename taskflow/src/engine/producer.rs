//! The producer of one queue: the one place that decides what of it starts. It waits for a
//! free slot of the queue, asks the store for up to as many of the queue's available tasks as
//! there are free slots (one statement or script, already leased to this runner, within the
//! queue's global limit), hands each to an executor, and when the store had fewer than it
//! asked for, sleeps until something may have changed (see [`Wake`](super::wake)). An idle
//! queue costs one fetch per poll interval.

use std::sync::Arc;
use std::time::Duration;

use super::queues::{QueueRunner, Slot};
use super::{Engine, executor};
use crate::store::Fetch;

/// The most tasks one fetch asks for.
const MAX_FETCH: usize = 256;

/// The shortest wait before a fetch for tasks coming due: a task may start this much late,
/// and a stream of due times costs at most one fetch per this interval.
const COALESCE: chrono::TimeDelta = chrono::TimeDelta::milliseconds(5);

/// How long a producer with tasks waiting gathers slots that free meanwhile before it
/// fetches, so that under load one claim serves many tasks instead of each claim the one
/// or two slots that just freed. Without a backlog it fetches at once (no added latency).
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// Under load: more slots of `runner`, taken as they free for up to [`GATHER`], until it
/// holds half its concurrency (with the `held` ones) or shutdown starts; how many it took.
async fn gather(
    runner: &QueueRunner,
    held: usize,
    stopping: &tokio_util::sync::CancellationToken,
) -> usize {
    let goal = (runner.concurrency() / 2).clamp(1, MAX_FETCH);
    let deadline = tokio::time::Instant::now() + GATHER;
    let mut taken = 0;
    while held + taken < goal {
        tokio::select! {
            more = runner.take_slots(MAX_FETCH - held - taken) => taken += more,
            () = tokio::time::sleep_until(deadline) => break,
            () = stopping.cancelled() => break,
        }
    }
    taken
}

/// Runs the producer of `runner`'s queue until shutdown starts, or until the engine is
/// dropped: between fetches it holds only what it waits on, not the engine.
pub(crate) fn spawn(engine: &Arc<Engine>, runner: &Arc<QueueRunner>) {
    let weak = Arc::downgrade(engine);
    let (runner, stopping) = (Arc::clone(runner), engine.stopping.clone());
    engine.runtime.spawn(run(weak, runner, stopping, engine.poll_every));
}

async fn run(
    weak: std::sync::Weak<Engine>,
    runner: Arc<QueueRunner>,
    stopping: tokio_util::sync::CancellationToken,
    poll: Duration,
) {
    let mut outage: Option<Outage> = None;
    // The last next-due time that was already past when read (see `fetch`).
    let mut past = None;
    // Whether the last fetch got all it asked for: tasks are waiting.
    let mut backlog = false;
    loop {
        let mut slots = tokio::select! {
            slots = runner.take_slots(MAX_FETCH) => slots,
            () = stopping.cancelled() => return,
        };
        if backlog {
            slots += gather(&runner, slots, &stopping).await;
        }
        let Some(engine) = weak.upgrade() else { return runner.give_back(slots) };
        if stopping.is_cancelled() {
            return runner.give_back(slots);
        }
        let full = match fetch(&engine, &runner, slots, &mut outage, &mut past).await {
            Some(full) => full,
            None => return,
        };
        let now = engine.clock.now();
        drop(engine);
        backlog = full;
        if full {
            continue;
        }
        let backoff = outage.as_ref().map(|outage| outage.pause);
        tokio::select! {
            () = async {
                match backoff {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => runner.wake.wait(poll, now).await,
                }
            } => {}
            () = stopping.cancelled() => return,
        }
    }
}

/// One fetch for `slots` slots of `runner`'s queue; starts what it got and gives back the
/// slots it did not use. `Some(true)` when the store had as many as asked (there may be
/// more), `None` when shutdown started meanwhile.
async fn fetch(
    engine: &Arc<Engine>,
    runner: &Arc<QueueRunner>,
    slots: usize,
    outage: &mut Option<Outage>,
    past: &mut Option<chrono::DateTime<chrono::Utc>>,
) -> Option<bool> {
    // Counted as work in flight, so that shutdown waits for the fetch and for the attempts
    // it starts: a fetch answered as shutdown begins would otherwise start them after the
    // store closed, leaving them `running` there (found interrupted at the next start).
    let _in_flight = engine.tracker.token();
    if engine.stopping.is_cancelled() {
        runner.give_back(slots);
        return None;
    }
    let lease = engine.fetch_lease();
    let mut request = Fetch::new(&runner.name, slots, engine.clock.now(), &lease);
    if let Some(global) = runner.config.global_concurrency_limit() {
        request = request.global_limit(global);
    }
    request = request.task_limits(&runner.task_limits);
    if let Some(rate) = runner.config.rate() {
        request = request.rate(rate);
    }
    let fetched = tokio::select! {
        fetched = engine.store.fetch(&request) => fetched,
        () = engine.stopping.cancelled() => {
            runner.give_back(slots);
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
            let got = records.len().min(slots);
            runner.give_back(slots - got);
            // A queue at its global limit has room for fewer than asked: it waits for the
            // poll (or a wake) like a queue with nothing due, rather than asking again at once.
            let full = records.len() == slots;
            if !full {
                // Sleep until the next waiting task comes due, not for a whole poll. One that
                // came due meanwhile is fetched at once, but only once: if the same past time
                // comes back (a row the store could not make available), the poll takes it.
                // Fetches for due times come at most every `COALESCE`, so tasks due close
                // together start together.
                let now = engine.clock.now();
                if let Some(rate) = runner.config.rate() {
                    rate_wake(runner, rate, got, now);
                }
                let soonest = now + COALESCE;
                match engine.store.next_due(&runner.name).await {
                    Ok(Some(due)) if due > now => runner.wake.at(due.max(soonest), now),
                    Ok(Some(due)) if *past != Some(due) => {
                        *past = Some(due);
                        runner.wake.at(soonest, now);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "taskflow: could not read the next due time")
                    }
                }
            }
            for record in records.into_iter().take(got) {
                executor::spawn(engine, record, lease.clone(), Slot::of(runner));
            }
            Some(full)
        }
        Err(err) => {
            runner.give_back(slots);
            match outage {
                Some(outage) => {
                    outage.pause =
                        (outage.pause * 2).min(engine.poll_every.max(Duration::from_secs(1)));
                }
                None => {
                    tracing::error!(error = %err, queue = %runner.name, "taskflow: cannot fetch tasks; retrying with backoff until the store answers");
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

/// After a fetch of a rate-limited queue that got fewer than asked: the bucket may have run
/// dry with tasks left, so fetch again when the next token comes. A fetch that got none
/// stops this after two tries in a row (the queue is drained; an enqueue or the poll wakes
/// the producer), so an idle rate-limited queue costs nothing more than any other.
fn rate_wake(
    runner: &QueueRunner,
    rate: crate::queue::Rate,
    got: usize,
    now: chrono::DateTime<chrono::Utc>,
) {
    use std::sync::atomic::Ordering;
    let misses = if got > 0 {
        runner.rate_misses.store(0, Ordering::Release);
        0
    } else {
        runner.rate_misses.fetch_add(1, Ordering::AcqRel) + 1
    };
    let interval = chrono::TimeDelta::from_std(rate.interval()).unwrap_or(chrono::TimeDelta::MAX);
    if misses <= 2
        && let Some(at) = now.checked_add_signed(interval.max(COALESCE))
    {
        runner.wake.at(at, now);
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
