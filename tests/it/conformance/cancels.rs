//! Conformance of what running tasks hear and say: [`Store::request_cancel`] flags a running
//! task for its runner only, [`Store::cancel_requests`] finds it under that runner's lease,
//! and the next attempt's fetch starts unflagged; [`Store::record_progress`] writes a report
//! only under the runner's lease, and the report stays through retries and the end.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use taskflow::store::Transition;
use taskflow::{Progress, Store, TaskId, TaskStatus};

use super::{lease, pending, put, take, trunc};

pub(crate) async fn running_tasks_are_flagged_for_their_runner(store: Arc<dyn Store>) {
    let runner = lease("runner", Duration::from_secs(60));
    let (id, other) = (put(&*store, pending("stop_me")).await, put(&*store, pending("keep")).await);
    // Pending: reported, not flagged (cancel_pending is for those).
    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Pending));
    take(&*store, &id, &runner).await;
    take(&*store, &other, &runner).await;
    let both = [id, other];
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());

    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Running));
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), vec![id]);
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), vec![id], "kept");
    assert_eq!(store.cancel_requests("another", &both).await.unwrap(), Vec::<TaskId>::new());
    assert_eq!(store.get(&id).await.unwrap().unwrap().status, TaskStatus::Running, "only asked");

    // The attempt ends in a retry: the next attempt starts unflagged.
    let retry =
        Transition::Reschedule { due: Utc::now(), retries_used: 1, error: None, stacktrace: None };
    assert!(store.transition(&id, &runner, retry).await.unwrap());
    take(&*store, &id, &runner).await;
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());

    let cancelled = Transition::Finished {
        status: TaskStatus::Cancelled,
        end_time: Utc::now(),
        retries_used: 1,
        result: None,
        error: None,
        stacktrace: None,
    };
    assert!(store.transition(&id, &runner, cancelled).await.unwrap());
    assert_eq!(store.request_cancel(&id).await.unwrap(), Some(TaskStatus::Cancelled));
    assert_eq!(store.cancel_requests(&runner.owner, &both).await.unwrap(), Vec::<TaskId>::new());
    assert_eq!(store.request_cancel(&TaskId::new()).await.unwrap(), None);
}

pub(crate) async fn progress_is_written_for_its_runner_and_kept(store: Arc<dyn Store>) {
    let runner = lease("runner", Duration::from_secs(60));
    let id = put(&*store, pending("reports")).await;
    assert_eq!(store.get(&id).await.unwrap().unwrap().progress, None);
    take(&*store, &id, &runner).await;
    let report = |done: u64, message: Option<&str>| Progress {
        done,
        total: 10,
        message: message.map(str::to_owned),
        updated_at: trunc(Utc::now()),
    };
    let half = report(5, Some("half way: ünïcode"));
    store.record_progress("another", &[(id, report(9, None))]).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().progress, None, "not its runner");
    store
        .record_progress(&runner.owner, &[(id, half.clone()), (TaskId::new(), report(1, None))])
        .await
        .unwrap();
    assert_eq!(store.get(&id).await.unwrap().unwrap().progress, Some(half.clone()));

    // Kept across a retry, replaced by the next attempt's reports.
    let retry =
        Transition::Reschedule { due: Utc::now(), retries_used: 1, error: None, stacktrace: None };
    assert!(store.transition(&id, &runner, retry).await.unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().progress, Some(half.clone()), "kept");
    take(&*store, &id, &runner).await;
    let done = report(10, None);
    store.record_progress(&runner.owner, &[(id, done.clone())]).await.unwrap();
    let finished = Transition::Finished {
        status: TaskStatus::Success,
        end_time: Utc::now(),
        retries_used: 1,
        result: None,
        error: None,
        stacktrace: None,
    };
    assert!(store.transition(&id, &runner, finished).await.unwrap());
    store.record_progress(&runner.owner, &[(id, report(3, None))]).await.unwrap();
    assert_eq!(
        store.get(&id).await.unwrap().unwrap().progress,
        Some(done),
        "ended: kept as it was"
    );
}

fn event(kind: taskflow::EventKind, message: &str) -> taskflow::TaskEvent {
    taskflow::TaskEvent {
        kind,
        task_id: TaskId::new(),
        func_name: "f".into(),
        queue: "default".into(),
        tags: Arc::new([("user".to_owned(), "7".to_owned())].into()),
        attempt: 1,
        at: trunc(Utc::now()),
        message: Some(message.to_owned()),
    }
}

/// A shared store's event log numbers what is appended in order, after everything before;
/// a store that one process owns has none (its feed is its own).
pub(crate) async fn the_event_log_numbers_events_in_append_order(store: Arc<dyn Store>) {
    let Some(log) = store.event_log() else {
        assert!(store.enqueued_elsewhere().is_none(), "a shared store keeps an event log");
        return;
    };
    assert!(log.after(0, 10).await.unwrap().is_empty(), "a new log is empty");
    use taskflow::EventKind::{Enqueued, Started, Succeeded};
    let first = [event(Enqueued, "one"), event(Started, "two ünï"), event(Succeeded, "three")];
    log.append(&first).await.unwrap();
    log.append(&[]).await.unwrap();
    log.append(&[event(Enqueued, "four")]).await.unwrap();
    let all = log.after(0, 10).await.unwrap();
    let messages: Vec<_> = all.iter().map(|(_, e)| e.message.clone().unwrap()).collect();
    assert_eq!(messages, ["one", "two ünï", "three", "four"]);
    assert!(all.windows(2).all(|pair| pair[0].0 < pair[1].0), "increasing numbers");
    let (second, read_back) = (&all[1], &all[1].1);
    assert_eq!(
        (read_back.task_id, read_back.kind, read_back.attempt),
        (first[1].task_id, Started, 1)
    );
    assert_eq!(read_back.tags.get("user").map(String::as_str), Some("7"));
    let rest = log.after(second.0, 10).await.unwrap();
    assert_eq!(rest.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), [all[2].0, all[3].0]);
    assert_eq!(log.after(0, 2).await.unwrap().len(), 2, "limited");
    assert!(log.after(all[3].0, 10).await.unwrap().is_empty());
}
