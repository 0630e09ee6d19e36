//! Fetching: the queue's due tasks in fetch order, within the queue's global limit and each
//! capped function's room, leased.

use super::*;

impl MemoryStore {
    /// [`Store::fetch`](crate::store::Store::fetch) on this store.
    pub(super) fn take_available(&self, fetch: &Fetch<'_>) -> Vec<TaskRecord> {
        let mut state = self.lock();
        if state.queues.get(fetch.queue).is_some_and(|queue| queue.paused) {
            return Vec::new();
        }
        let (now, lease) = (fetch.now, fetch.lease);
        let in_queue = |r: &&TaskRecord| r.queue == fetch.queue;
        let mut running_by_func: Vec<(String, u64)> = Vec::new();
        let mut running = 0;
        for record in state.tasks.values().map(|r| &**r).filter(in_queue) {
            if record.status != TaskStatus::Running {
                continue;
            }
            running += 1;
            match running_by_func.iter_mut().find(|(f, _)| *f == record.func_name) {
                Some((_, n)) => *n += 1,
                None => running_by_func.push((record.func_name.clone(), 1)),
            }
        }
        let now_us = now.timestamp_micros();
        let tokens =
            fetch.rate.map(|rate| rate.refill(state.buckets.get(fetch.queue).copied(), now_us));
        let room = fetch.within_rate(fetch.room(running), tokens);
        let mut rooms = fetch.task_room(&running_by_func);
        let mut due: Vec<&TaskRecord> = state
            .tasks
            .values()
            .map(|r| &**r)
            .filter(in_queue)
            .filter(|r| r.status == TaskStatus::Pending && crate::store::due_at(r) <= now)
            .filter(|r| state.held.get(&r.task_id).is_none_or(|until| *until <= now))
            .collect();
        let order = |r: &TaskRecord| state.order.get(&r.task_id).copied().unwrap_or(u64::MAX);
        due.sort_by_key(|r| (crate::store::fetch::rank(r), order(r)));
        let ids: Vec<TaskId> = due
            .into_iter()
            .filter(|r| rooms.take(&r.func_name))
            .take(room)
            .map(|r| r.task_id)
            .collect();
        let mut fetched = Vec::with_capacity(ids.len());
        let state = &mut *state;
        for id in ids {
            state.held.remove(&id);
            state.cancels.remove(&id);
            let Some(record) = state.tasks.get_mut(&id) else { continue };
            let before = Phase::of(record);
            record.status = TaskStatus::Running;
            record.start_time.get_or_insert(now);
            record.lease_owner = Some(lease.owner.to_string());
            record.lease_expires_at = Some(lease.expires_at);
            state.tally.change(record, before, now);
            fetched.push(TaskRecord::clone(record));
        }
        if let Some(tokens) = tokens
            && !fetched.is_empty()
        {
            let left = tokens - fetched.len() as f64;
            state.buckets.insert(fetch.queue.to_owned(), (left, now_us));
        }
        fetched
    }
}
