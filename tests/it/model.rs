//! A model-based property test of the store's task lifecycle: random sequences of enqueue
//! (now or later, at a priority, under a run key or not), cancel by run key, fetch, complete, fail (retry or last failure), snooze, fatal, cancel,
//! time passing, crash-and-rescue (leases lapse) and prune, run against every store and
//! against a small pure model of the state machine. After every step, states, attempts and
//! due times agree; a finished task never changes; attempts never exceed the maximum; no
//! task is leased twice; pruning never touches an unfinished task. The seed is printed;
//! `TASKFLOW_MODEL_SEED=<seed>` replays a run.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use taskflow::store::{Lease, Transition};
use taskflow::{Retention, Store, TaskId, TaskStatus};

use crate::conformance::{pending, put};

const LEASE: i64 = 30;
const MAX_RECOVERIES: u32 = 2;

#[derive(Clone, Debug)]
enum Op {
    Enqueue { delay: Option<u8>, retries: u8, requeue: bool, key: Option<u8>, priority: i8 },
    CancelScheduled { key: u8 },
    Fetch { limit: usize, runner: u8 },
    Complete { pick: usize },
    Fail { pick: usize },
    Snooze { pick: usize },
    Fatal { pick: usize },
    Cancel { pick: usize },
    Advance { secs: u8 },
    Crash,
    Prune { keep: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            proptest::option::of(1u8..20),
            0u8..3,
            any::<bool>(),
            proptest::option::of(0u8..3),
            prop_oneof![3 => Just(0i8), 1 => -1i8..3],
        )
            .prop_map(|(delay, retries, requeue, key, priority)| Op::Enqueue {
                delay,
                retries,
                requeue,
                key,
                priority
            }),
        1 => (0u8..3).prop_map(|key| Op::CancelScheduled { key }),
        3 => (1usize..4, 0u8..2).prop_map(|(limit, runner)| Op::Fetch { limit, runner }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Fail { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Snooze { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Fatal { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (1u8..15).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Crash),
        1 => (0usize..3).prop_map(|keep| Op::Prune { keep }),
    ]
}

/// What the model knows of one task.
#[derive(Clone, Debug)]
struct Task {
    status: TaskStatus,
    due: DateTime<Utc>,
    priority: i32,
    seq: usize,
    retries_used: u32,
    max_retries: u32,
    requeue: bool,
    recoveries: u32,
    /// The runner holding it and its lease's expiry, while running.
    lease: Option<(u8, DateTime<Utc>)>,
    pruned: bool,
    /// Its run key, and whether it ever started (then it no longer waits under the key).
    key: Option<u8>,
    started: bool,
}

struct Model {
    now: DateTime<Utc>,
    tasks: BTreeMap<TaskId, Task>,
    next_seq: usize,
}

fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap()
}

fn run_key(key: u8) -> String {
    format!("model-key-{key}")
}

fn runner_lease(runner: u8, expires: DateTime<Utc>) -> Lease {
    Lease { owner: format!("runner-{runner}").into(), expires_at: expires }
}

impl Model {
    /// The running tasks in id order, for `pick`.
    fn running(&self) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|(_, t)| t.status == TaskStatus::Running)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The task waiting under run key `key`: pending, never started.
    fn waiting_under(&self, key: u8) -> Option<TaskId> {
        self.tasks
            .iter()
            .find(|(_, t)| t.key == Some(key) && t.status == TaskStatus::Pending && !t.started)
            .map(|(id, _)| *id)
    }

    fn pick_running(&self, pick: usize) -> Option<(TaskId, u8, DateTime<Utc>)> {
        let running = self.running();
        let id = *running.get(pick % running.len().max(1))?;
        let (runner, expires) = self.tasks[&id].lease?;
        Some((id, runner, expires))
    }
}

async fn step(store: &dyn Store, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let now = model.now;
    match *op {
        Op::Enqueue { delay, retries, requeue, key, priority } => {
            let mut record = pending("model_task");
            record.run_key = key.map(run_key);
            record.created_at = now;
            record.max_retries = retries.into();
            record.requeue_on_interrupt = requeue;
            record.scheduled_at = delay.map(|d| now + Duration::seconds(d.into()));
            record.priority = priority.into();
            let due = record.scheduled_at.unwrap_or(now);
            let id = put(store, record).await;
            if let Some(replaced) = key.and_then(|key| model.waiting_under(key)) {
                model.tasks.get_mut(&replaced).unwrap().status = TaskStatus::Cancelled;
            }
            let seq = model.next_seq;
            model.next_seq += 1;
            model.tasks.insert(
                id,
                Task {
                    status: TaskStatus::Pending,
                    due,
                    priority: priority.into(),
                    seq,
                    retries_used: 0,
                    max_retries: retries.into(),
                    requeue,
                    recoveries: 0,
                    lease: None,
                    pruned: false,
                    key,
                    started: false,
                },
            );
        }
        Op::CancelScheduled { key } => {
            let cancelled = store
                .cancel_scheduled(&run_key(key), now)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let expected = model.waiting_under(key);
            prop_assert_eq!(cancelled, expected, "cancel_scheduled({})", key);
            if let Some(id) = expected {
                model.tasks.get_mut(&id).unwrap().status = TaskStatus::Cancelled;
            }
        }
        Op::Fetch { limit, runner } => {
            let expires = now + Duration::seconds(LEASE);
            let lease = runner_lease(runner, expires);
            let fetched: Vec<TaskId> = store
                .fetch(&crate::conformance::default_queue(limit, now, &lease))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .into_iter()
                .map(|r| r.task_id)
                .collect();
            // By rank: the due time less a step per priority level, then enqueue order.
            let step = Duration::from_std(taskflow::PRIORITY_STEP).unwrap();
            let mut available: Vec<(DateTime<Utc>, usize, TaskId)> = model
                .tasks
                .iter()
                .filter(|(_, t)| t.status == TaskStatus::Pending && t.due <= now)
                .map(|(id, t)| (t.due - step * t.priority, t.seq, *id))
                .collect();
            available.sort();
            let expected: Vec<TaskId> =
                available.iter().take(limit).map(|(_, _, id)| *id).collect();
            prop_assert_eq!(&fetched, &expected, "fetch at {} with limit {}", now, limit);
            for id in fetched {
                let task = model.tasks.get_mut(&id).unwrap();
                prop_assert!(task.lease.is_none(), "{} leased twice", id);
                task.status = TaskStatus::Running;
                task.started = true;
                task.lease = Some((runner, expires));
            }
        }
        Op::Complete { pick } => {
            let Some((id, runner, expires)) = model.pick_running(pick) else { return Ok(()) };
            let change = Transition::Finished {
                status: TaskStatus::Success,
                end_time: now,
                retries_used: model.tasks[&id].retries_used,
                result: None,
                error: None,
                stacktrace: None,
            };
            let applied = store.transition(&id, &runner_lease(runner, expires), change).await;
            prop_assert!(applied.map_err(|e| TestCaseError::fail(e.to_string()))?);
            let task = model.tasks.get_mut(&id).unwrap();
            (task.status, task.lease) = (TaskStatus::Success, None);
        }
        Op::Fail { pick } | Op::Snooze { pick } | Op::Fatal { pick } => {
            let Some((id, runner, expires)) = model.pick_running(pick) else { return Ok(()) };
            let task = model.tasks.get_mut(&id).unwrap();
            let change = match op {
                Op::Fail { .. } if task.retries_used < task.max_retries => {
                    task.retries_used += 1;
                    task.due = micros(now + Duration::seconds(5));
                    task.status = TaskStatus::Pending;
                    Transition::Reschedule {
                        due: task.due,
                        retries_used: task.retries_used,
                        error: Some("failed".into()),
                        stacktrace: Some("failed".into()),
                    }
                }
                Op::Snooze { .. } => {
                    task.due = micros(now + Duration::seconds(3));
                    task.status = TaskStatus::Pending;
                    Transition::Reschedule {
                        due: task.due,
                        retries_used: task.retries_used,
                        error: None,
                        stacktrace: None,
                    }
                }
                _ => {
                    task.status = TaskStatus::Failed;
                    Transition::Finished {
                        status: TaskStatus::Failed,
                        end_time: now,
                        retries_used: task.retries_used,
                        result: None,
                        error: Some("failed".into()),
                        stacktrace: Some("failed".into()),
                    }
                }
            };
            task.lease = None;
            let applied = store.transition(&id, &runner_lease(runner, expires), change).await;
            prop_assert!(applied.map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        Op::Cancel { pick } => {
            let ids: Vec<TaskId> =
                model.tasks.iter().filter(|(_, t)| !t.pruned).map(|(id, _)| *id).collect();
            let Some(id) = ids.get(pick % ids.len().max(1)).copied() else { return Ok(()) };
            let before =
                store.cancel_pending(&id).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let task = model.tasks.get_mut(&id).unwrap();
            prop_assert_eq!(before, Some(task.status), "cancel {}", id);
            if task.status == TaskStatus::Pending {
                task.status = TaskStatus::Cancelled;
            }
        }
        Op::Advance { secs } => model.now = micros(now + Duration::seconds(secs.into())),
        Op::Crash => {
            // Every runner dies: once their leases lapse, the rescuer settles their tasks.
            model.now = micros(now + Duration::seconds(LEASE + 1));
            store
                .reclaim_expired(model.now, MAX_RECOVERIES)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for task in model.tasks.values_mut().filter(|t| t.status == TaskStatus::Running) {
                task.lease = None;
                task.status = if task.requeue && task.recoveries < MAX_RECOVERIES {
                    task.recoveries += 1;
                    TaskStatus::Pending
                } else if task.requeue {
                    TaskStatus::Failed
                } else {
                    TaskStatus::Interrupted
                };
            }
        }
        Op::Prune { keep } => {
            let retention = Retention { max_age: None, max_finished: Some(keep) };
            store.prune(&retention, now).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
    }
    check(store, model).await
}

/// The store agrees with the model, task by task.
async fn check(store: &dyn Store, model: &mut Model) -> Result<(), TestCaseError> {
    for (id, task) in model.tasks.iter_mut().filter(|(_, t)| !t.pruned) {
        let stored = store.get(id).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(stored) = stored else {
            prop_assert!(
                task.status.is_finished(),
                "{} ({:?}) was pruned while unfinished",
                id,
                task.status
            );
            task.pruned = true;
            continue;
        };
        prop_assert_eq!(stored.status, task.status, "status of {}", id);
        prop_assert_eq!(stored.retries_used, task.retries_used, "attempts of {}", id);
        prop_assert!(stored.retries_used <= stored.max_retries, "{} over its retries", id);
        prop_assert_eq!(stored.recoveries, task.recoveries, "recoveries of {}", id);
        if task.status == TaskStatus::Pending {
            prop_assert_eq!(
                stored.scheduled_at.unwrap_or(stored.created_at),
                task.due,
                "due time of {}",
                id
            );
        }
        let owner = task.lease.map(|(runner, _)| format!("runner-{runner}"));
        prop_assert_eq!(stored.lease_owner, owner, "lease of {}", id);
    }
    Ok(())
}

async fn fresh(backend: &str) -> Option<Arc<dyn Store>> {
    Some(match backend {
        "memory" => Arc::new(taskflow::MemoryStore::new()),
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap().keep();
            Arc::new(taskflow::SqliteStore::open(dir.join("tasks.db")).unwrap())
        }
        "postgres" => Arc::new(crate::conformance::postgres_store().await?),
        "mysql" => Arc::new(crate::conformance::mysql_store().await?),
        _ => Arc::new(crate::conformance::redis_store().await?),
    })
}

fn run_model(backend: &'static str) {
    let seed: u64 = std::env::var("TASKFLOW_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_micros() as u64);
    println!("model test ({backend}) seed {seed}: TASKFLOW_MODEL_SEED={seed} replays it");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases: 24, failure_persistence: None, ..Config::default() };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcome = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime.block_on(async {
            let Some(store) = fresh(backend).await else { return Ok(()) };
            let mut model = Model { now: micros(Utc::now()), tasks: BTreeMap::new(), next_seq: 0 };
            for op in &ops {
                step(&*store, &mut model, op).await?;
            }
            Ok(())
        })
    });
    if let Err(err) = outcome {
        panic!("{backend}, seed {seed}: {err}");
    }
}

#[test]
fn the_memory_store_follows_the_model() {
    run_model("memory");
}

#[test]
fn the_sqlite_store_follows_the_model() {
    run_model("sqlite");
}

#[test]
fn the_postgres_store_follows_the_model() {
    run_model("postgres");
}

#[test]
fn the_mysql_store_follows_the_model() {
    run_model("mysql");
}

#[test]
fn the_redis_store_follows_the_model() {
    run_model("redis");
}
