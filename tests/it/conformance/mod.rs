//! The store conformance suite: the same checks against every backend. Each backend module
//! at the bottom instantiates every check with its own fresh store.

mod aliases;
mod batches;
mod cancels;
mod counters;
mod fetch;
mod firing;
mod lifecycle;
mod queues;
mod run_keys;
mod schedules;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use self::aliases::{aliases_resolve_everywhere, manager_resolves_aliases};
use self::batches::batched_changes_are_fenced_one_by_one;
use self::cancels::{
    progress_is_written_for_its_runner_and_kept, running_tasks_are_flagged_for_their_runner,
    the_event_log_numbers_events_in_append_order,
};
use self::counters::{counters_equal_a_recount, old_history_rolls_up_into_quarter_hours};
use self::fetch::{
    a_fetch_never_takes_a_task_before_its_time, a_lost_fetch_is_released,
    concurrent_elections_make_one_leader, concurrent_fetchers_take_disjoint_tasks,
    fetch_orders_due_tasks, future_tasks_do_not_hide_a_due_one, held_tasks_wait_for_their_release,
    one_leader_at_a_time_with_failover, priority_ages_with_waiting,
    requeued_tasks_are_fetched_again, rescheduled_tasks_come_back_when_due,
    the_next_due_time_is_known,
};
use self::firing::{
    overlap_skips_and_pauses_are_recorded, slots_fire_once_and_catch_up_after_a_gap,
};
use self::lifecycle::{
    cancel_only_pending, claim_is_exclusive, idempotency_keys_hold_under_concurrency,
    lifecycle_and_logs, list_filters_and_pages, pending_and_list, reclaim_settles_dead_runners,
    retention_prunes_only_finished, stats_count_outcomes_and_durations,
    values_are_rewritten_only_from_what_was_read, writes_are_fenced,
};
use self::queues::{
    a_paused_queue_is_not_fetched, fetch_takes_only_its_queue, global_limits_hold_across_fetchers,
    instances_are_listed_until_they_expire, rate_limits_share_one_bucket,
    sessions_stay_revoked_until_they_lapse, task_limits_hold_across_fetchers,
};
use self::run_keys::{
    cancel_scheduled_cancels_by_key, idempotency_keys_win_over_run_keys,
    run_keys_do_not_touch_a_started_task, run_keys_hold_under_concurrency,
    run_keys_replace_a_waiting_task,
};
use self::schedules::schedules_keep_one_definition_and_advance_once;
use chrono::{DateTime, Utc};
use serde_json::json;
use taskflow::store::Lease;
use taskflow::{Store, TaskId, TaskRecord, TaskSource, TaskStatus};

/// A pending record as the manager would store it.
pub(crate) fn pending(func_name: &str) -> TaskRecord {
    TaskRecord {
        task_id: TaskId::new(),
        func_name: func_name.to_owned(),
        status: TaskStatus::Pending,
        created_at: Utc::now(),
        start_time: None,
        end_time: None,
        duration: None,
        retries_used: 0,
        max_retries: 2,
        error: None,
        stacktrace: None,
        logs: Vec::new(),
        tags: BTreeMap::from([("user".to_owned(), "42".to_owned())]),
        source: TaskSource::Manual,
        priority: 0,
        queue: taskflow::DEFAULT_QUEUE.to_owned(),
        args: json!({ "address": "a@b.c", "n": 7, "nested": { "list": [1, 2.5, null] } }),
        result: None,
        idempotency_key: None,
        run_key: None,
        scheduled_at: None,
        retry_of: None,
        requeue_on_interrupt: false,
        recoveries: 0,
        lease_owner: None,
        lease_expires_at: None,
        progress: None,
    }
}

pub(crate) fn lease(owner: &str, ttl: Duration) -> Lease {
    Lease { owner: owner.into(), expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap() }
}

/// A fetch of up to `limit` tasks of the default queue due at `now`, under `lease`.
pub(crate) fn default_queue(
    limit: usize,
    now: DateTime<Utc>,
    lease: &Lease,
) -> taskflow::store::Fetch<'_> {
    taskflow::store::Fetch::new(taskflow::DEFAULT_QUEUE, limit, now, lease)
}

/// Stores `record` and waits until it is durable.
pub(crate) async fn put(store: &dyn Store, record: TaskRecord) -> TaskId {
    let enqueued = store.enqueue(record).unwrap();
    if let Some(write) = enqueued.write {
        write.wait().await.unwrap();
    }
    enqueued.id
}

/// Fetches the next available task under `lease`, which must be `id`: the tests enqueue in
/// the order they take.
pub(crate) async fn take(store: &dyn Store, id: &TaskId, lease: &Lease) -> TaskRecord {
    let mut fetched = store.fetch(&default_queue(1, Utc::now(), lease)).await.unwrap();
    assert_eq!(fetched.iter().map(|r| r.task_id).collect::<Vec<_>>(), vec![*id], "fetched next");
    fetched.pop().unwrap()
}

/// Microsecond precision is what every backend keeps.
pub(crate) fn trunc(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap()
}

pub(crate) async fn round_trip(store: Arc<dyn Store>) {
    let mut record = pending("round_trip");
    record.created_at = trunc(record.created_at);
    record.idempotency_key = Some(format!("key-{}", record.task_id));
    record.priority = -3;
    record.scheduled_at = Some(trunc(Utc::now()));
    record.retry_of = Some(TaskId::new());
    record.requeue_on_interrupt = true;
    let id = put(&*store, record.clone()).await;
    assert_eq!(id, record.task_id);
    assert_eq!(store.get(&id).await.unwrap(), Some(record));
    assert_eq!(store.get(&TaskId::new()).await.unwrap(), None);
}

/// Instantiates every conformance check for one backend: `$fresh` is an async expression
/// giving `Option<Arc<dyn Store>>` (`None`: the backend is not configured here, skip).
macro_rules! conformance {
    ($fresh:expr => $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(store) = $fresh {
                    super::$check(store).await;
                }
            }
        )*
    };
}

macro_rules! all_checks {
    ($fresh:expr) => {
        conformance!($fresh =>
            round_trip,
            lifecycle_and_logs,
            claim_is_exclusive,
            writes_are_fenced,
            idempotency_keys_hold_under_concurrency,
            cancel_only_pending,
            running_tasks_are_flagged_for_their_runner,
            progress_is_written_for_its_runner_and_kept,
            the_event_log_numbers_events_in_append_order,
            pending_and_list,
            list_filters_and_pages,
            stats_count_outcomes_and_durations,
            counters_equal_a_recount,
            old_history_rolls_up_into_quarter_hours,
            reclaim_settles_dead_runners,
            retention_prunes_only_finished,
            values_are_rewritten_only_from_what_was_read,
            aliases_resolve_everywhere,
            manager_resolves_aliases,
            fetch_orders_due_tasks,
            priority_ages_with_waiting,
            future_tasks_do_not_hide_a_due_one,
            a_fetch_never_takes_a_task_before_its_time,
            concurrent_fetchers_take_disjoint_tasks,
            rescheduled_tasks_come_back_when_due,
            a_lost_fetch_is_released,
            requeued_tasks_are_fetched_again,
            held_tasks_wait_for_their_release,
            one_leader_at_a_time_with_failover,
            concurrent_elections_make_one_leader,
            the_next_due_time_is_known,
            run_keys_replace_a_waiting_task,
            run_keys_do_not_touch_a_started_task,
            cancel_scheduled_cancels_by_key,
            run_keys_hold_under_concurrency,
            idempotency_keys_win_over_run_keys,
            batched_changes_are_fenced_one_by_one,
            fetch_takes_only_its_queue,
            task_limits_hold_across_fetchers,
            rate_limits_share_one_bucket,
            instances_are_listed_until_they_expire,
            sessions_stay_revoked_until_they_lapse,
            a_paused_queue_is_not_fetched,
            global_limits_hold_across_fetchers,
            schedules_keep_one_definition_and_advance_once,
            slots_fire_once_and_catch_up_after_a_gap,
            overlap_skips_and_pauses_are_recorded,
        );
    };
}

mod memory {
    use super::*;

    all_checks!(Some(Arc::new(taskflow::MemoryStore::new()) as Arc<dyn Store>));
}

mod sqlite {
    use super::*;

    async fn fresh() -> Option<Arc<dyn Store>> {
        let dir = tempfile::tempdir().unwrap().keep();
        Some(Arc::new(taskflow::SqliteStore::open(dir.join("tasks.db")).unwrap()))
    }

    all_checks!(fresh().await);
}

/// A fresh PostgreSQL schema: a URL whose connections use it.
pub(crate) struct PostgresSchema {
    pub(crate) url: String,
}

/// A schema of its own for one test, so tests running at once never see each other's tasks;
/// `None` (and a line saying why) without `TASKFLOW_TEST_POSTGRES_URL`.
pub(crate) async fn postgres_schema() -> Option<PostgresSchema> {
    let Ok(url) = std::env::var("TASKFLOW_TEST_POSTGRES_URL") else {
        println!("skipped: TASKFLOW_TEST_POSTGRES_URL is not set (.ci/run sets it)");
        return None;
    };
    let name = format!("t_{}", TaskId::new().to_string().replace('-', ""));
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}options=-csearch_path%3D{name}");
    Some(PostgresSchema { url })
}

/// A PostgreSQL store in a schema of its own (see [`postgres_schema`]).
pub(crate) async fn postgres_store() -> Option<taskflow::PostgresStore> {
    let schema = postgres_schema().await?;
    Some(taskflow::PostgresStore::connect_with_pool_size(&schema.url, 8).await.unwrap())
}

mod postgres {
    use super::*;

    all_checks!(postgres_store().await.map(|store| Arc::new(store) as Arc<dyn Store>));
}

/// A MySQL/MariaDB store in a database of its own; `None` (and a line saying why) without
/// `TASKFLOW_TEST_MYSQL_URL`.
pub(crate) async fn mysql_url() -> Option<String> {
    let Ok(url) = std::env::var("TASKFLOW_TEST_MYSQL_URL") else {
        println!("skipped: TASKFLOW_TEST_MYSQL_URL is not set (.ci/run sets it)");
        return None;
    };
    use mysql_async::prelude::Queryable;
    let name = format!("t_{}", TaskId::new().to_string().replace('-', ""));
    let pool = mysql_async::Pool::new(url.as_str());
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!("CREATE DATABASE {name}")).await.unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// A MySQL/MariaDB store in a database of its own (see [`mysql_url`]).
pub(crate) async fn mysql_store() -> Option<taskflow::MysqlStore> {
    let url = mysql_url().await?;
    Some(taskflow::MysqlStore::connect_with_pool_size(&url, 8).await.unwrap())
}

mod mysql {
    use super::*;

    all_checks!(mysql_store().await.map(|store| Arc::new(store) as Arc<dyn Store>));
}

/// A Redis store under a key prefix of its own; `None` (and a line saying why) without
/// `TASKFLOW_TEST_REDIS_URL`.
pub(crate) async fn redis_store() -> Option<taskflow::RedisStore> {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return None;
    };
    let prefix = format!("test-{}", TaskId::new());
    Some(taskflow::RedisStore::connect_with_prefix(&url, &prefix).await.unwrap())
}

mod redis {
    use super::*;

    all_checks!(redis_store().await.map(|store| Arc::new(store) as Arc<dyn Store>));
}
