//! Walks over a sealed store's contents (feature `encryption`): re-sealing what older keys
//! sealed, and counting the tasks that wait for a key the ring lacks.

use chrono::Utc;

use super::sealed::schedule_owner;
use super::{ScheduleChange, Store, StoreError, StoredSchedule, TaskQuery};
use crate::seal::{Keyring, sealed_with};

/// Seals again with the primary key every stored task's arguments and result that an older
/// key of `keyring` sealed, in `raw` (the store under the wrapper), a page at a time; each
/// rewrite applies only if the task still holds what was read. Then the schedules' arguments.
/// Returns how many tasks and schedules were rewritten. Values that do not open (a missing
/// key, damage) are left as they are.
pub(crate) async fn reseal(keyring: &Keyring, raw: &dyn Store) -> Result<usize, StoreError> {
    let Some(primary) = keyring.primary_id() else { return Ok(0) };
    let stale = |value: &serde_json::Value| sealed_with(value).is_some_and(|key| key != primary);
    let mut query = TaskQuery { oldest_first: true, limit: Some(500), ..TaskQuery::default() };
    let mut rewritten = 0;
    loop {
        let page = raw.list(&query).await?;
        for record in &page.tasks {
            let owner = record.task_id.to_string();
            let mut rewrite = super::Rewrite::new(record.task_id);
            if stale(&record.args)
                && let Ok(open) = keyring.open(&owner, "args", &record.args)
            {
                let again = keyring.seal(&owner, "args", &open);
                rewrite.args = Some((record.args.clone(), again));
            }
            if let Some(result) = record.result.as_ref().filter(|result| stale(result))
                && let Ok(open) = keyring.open(&owner, "result", result)
            {
                rewrite.result = Some((result.clone(), keyring.seal(&owner, "result", &open)));
            }
            if !rewrite.is_empty() && raw.rewrite_values(&rewrite).await? {
                rewritten += 1;
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    // Schedules: defined again with their arguments sealed anew (the same definition, so
    // their slots stay); one redefined meanwhile is redefined back, as two defines race.
    for schedule in raw.schedules().await? {
        let owner = schedule_owner(&schedule.name);
        if !stale(&schedule.args) {
            continue;
        }
        let Ok(open) = keyring.open(&owner, "args", &schedule.args) else { continue };
        let name = schedule.name.clone();
        let args = keyring.seal(&owner, "args", &open);
        let define = ScheduleChange::Define(StoredSchedule { args, ..schedule });
        if raw.change_schedule(&name, define, Utc::now()).await?.is_some() {
            rewritten += 1;
        }
    }
    Ok(rewritten)
}

/// How many pending tasks in `raw` (the store under the wrapper) have arguments sealed with a
/// key that `keyring` lacks, per key id: they wait, pending, until the key is given back.
/// Goes through the pending tasks a page at a time.
pub(crate) async fn waiting_for_keys(
    keyring: &Keyring,
    raw: &dyn Store,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let mut waiting = std::collections::BTreeMap::new();
    let mut query = TaskQuery {
        status: Some(crate::record::TaskStatus::Pending),
        oldest_first: true,
        limit: Some(500),
        ..TaskQuery::default()
    };
    loop {
        let page = raw.list(&query).await?;
        for record in &page.tasks {
            if let Some(key) = sealed_with(&record.args).filter(|key| !keyring.holds(key)) {
                *waiting.entry(key.to_owned()).or_insert(0) += 1;
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(waiting),
        }
    }
}
