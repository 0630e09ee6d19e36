//! Upkeep: lease renewal, rescue of tasks whose runner died, leadership and pruning.

use super::*;

impl MemoryStore {
    /// [`Store::renew_leases`](crate::store::Store::renew_leases) on this store.
    pub(super) async fn extend_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        for id in ids {
            if let Some(record) = state.tasks.get_mut(id)
                && record.status == TaskStatus::Running
                && record.lease_owner.as_deref() == Some(owner)
            {
                record.lease_expires_at = Some(expires_at);
            }
        }
        Ok(())
    }

    /// [`Store::reclaim_expired`](crate::store::Store::reclaim_expired) on this store.
    pub(super) async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut state = self.lock();
        let mut reclaimed = Reclaimed::default();
        let expired: Vec<TaskId> = state
            .tasks
            .values()
            .filter(|r| {
                r.status == TaskStatus::Running && r.lease_expires_at.is_some_and(|at| at < now)
            })
            .map(|r| r.task_id)
            .collect();
        let mut evicted = Vec::new();
        for id in expired {
            let Some(record) = state.tasks.get_mut(&id) else { continue };
            let before = Phase::of(record);
            let outcome = reclaim(record, now, max_recoveries);
            let fields = &mut *state;
            if let Some(record) = fields.tasks.get(&id) {
                fields.tally.change(record, before, now);
            }
            match outcome {
                ReclaimAs::Requeued => reclaimed.requeued.push(id),
                ReclaimAs::Interrupted => {
                    reclaimed.interrupted.push(id);
                    evicted.extend(state.finished(id));
                }
                ReclaimAs::Poisoned => {
                    reclaimed.poisoned.push(id);
                    evicted.extend(state.finished(id));
                }
            }
        }
        drop(state);
        drop(evicted);
        Ok(reclaimed)
    }

    /// [`Store::elect`](crate::store::Store::elect) on this store.
    pub(super) async fn campaign(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let held = state.leaders.get(name).filter(|(holder, at)| holder != owner && *at >= now);
        if held.is_some() {
            return Ok(false);
        }
        state.leaders.insert(name.to_owned(), (owner.to_owned(), until));
        Ok(true)
    }

    /// [`Store::resign`](crate::store::Store::resign) on this store.
    pub(super) async fn step_down(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.leaders.get(name).is_some_and(|(holder, _)| holder == owner) {
            state.leaders.remove(name);
        }
        Ok(())
    }

    /// [`Store::prune`](crate::store::Store::prune) on this store.
    pub(super) async fn prune_finished(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let mut removed = Vec::new();
        if let Some(cutoff) = retention.age_cutoff(now) {
            while let Some(oldest) = state.finished.front().copied() {
                let old_enough = state
                    .tasks
                    .get(&oldest)
                    .is_none_or(|r| r.end_time.is_none_or(|end| end < cutoff));
                if !old_enough {
                    break;
                }
                state.finished.pop_front();
                removed.extend(state.remove_finished(&oldest));
            }
        }
        if let Some(max) = retention.max_finished {
            while state.finished.len() > max {
                let Some(oldest) = state.finished.pop_front() else { break };
                removed.extend(state.remove_finished(&oldest));
            }
        }
        state.shrink();
        drop(state);
        let count = removed.len();
        drop(removed);
        if count >= crate::trim::WORTH_TRIMMING {
            crate::trim::return_free_memory();
        }
        Ok(count)
    }
}
