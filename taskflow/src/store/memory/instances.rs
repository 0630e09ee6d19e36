//! The instances' heartbeats, revoked admin sessions, lost fetches released, and the
//! schedules, in the maps.

use super::*;

impl MemoryStore {
    pub(super) async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.instances.retain(|_, known| known.expires_at > instance.seen_at);
        state.instances.insert(instance.id.clone(), instance.clone());
        Ok(())
    }

    pub(super) async fn live_instances(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Instance>, StoreError> {
        Ok(self.lock().instances.values().filter(|i| i.expires_at > now).cloned().collect())
    }

    pub(super) async fn forget(&self, id: &str) -> Result<(), StoreError> {
        self.lock().instances.remove(id);
        Ok(())
    }

    pub(super) async fn revoke(&self, id: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.lock();
        let now = Utc::now();
        state.revoked.retain(|_, lapses| *lapses > now);
        let lapses = state.revoked.entry(id.to_owned()).or_insert(until);
        *lapses = (*lapses).max(until);
        Ok(())
    }

    pub(super) async fn revoked(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        Ok(self.lock().revoked.get(id).is_some_and(|lapses| *lapses > now))
    }
}

impl MemoryStore {
    /// [`Store::release`](crate::store::Store::release) on this store.
    pub(super) fn release_lease(&self, lease: &Lease) -> usize {
        let mut state = self.lock();
        let state = &mut *state;
        let mut released = 0;
        for record in state.tasks.values_mut() {
            if holds(record, lease) && record.lease_expires_at == Some(lease.expires_at) {
                let before = Phase::of(record);
                record.status = TaskStatus::Pending;
                record.lease_owner = None;
                record.lease_expires_at = None;
                state.tally.change(record, before, lease.expires_at);
                released += 1;
            }
        }
        released
    }

    /// [`Store::change_schedule`](crate::store::Store::change_schedule) on this store.
    pub(super) fn apply_schedule(
        &self,
        name: &str,
        change: ScheduleChange,
        now: DateTime<Utc>,
    ) -> Option<StoredSchedule> {
        use crate::store::schedules::Applied;
        let mut state = self.lock();
        let mut applied = change.apply(state.schedules.get(name).cloned(), now);
        let mut dropped = Vec::new();
        match &mut applied {
            Applied::Write(schedule, tasks) => {
                state.schedules.insert(name.to_owned(), schedule.clone());
                for task in tasks.drain(..) {
                    dropped.push(state.insert(task, None).1);
                }
            }
            Applied::Delete(_) => {
                state.schedules.remove(name);
            }
            Applied::Keep(_) => {}
        }
        drop(state);
        drop(dropped);
        applied.result()
    }
}
