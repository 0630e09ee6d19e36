//! Upkeep of the tasks: lease renewal, rescue of tasks whose runner died, and pruning of
//! finished tasks (leadership is in `fetch`).

use super::*;

impl RedisStore {
    /// [`Store::renew_leases`](crate::store::Store::renew_leases) on this store.
    pub(super) async fn extend_leases(
        &self,
        owner: &str,
        ids: &[TaskId],
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation.arg(&*self.prefix).arg(owner).arg(rfc(expires_at)).arg(micros(expires_at));
        for id in ids {
            invocation.arg(id.to_string());
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(())
    }

    /// [`Store::reclaim_expired`](crate::store::Store::reclaim_expired) on this store.
    pub(super) async fn rescue_expired(
        &self,
        now: DateTime<Utc>,
        max_recoveries: u32,
    ) -> Result<Reclaimed, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore(self.key("running"), "-inf", format!("({}", micros(now)))
            .await
            .map_err(unavailable)?;
        let mut reclaimed = Reclaimed::default();
        for mut record in self.records(&ids).await? {
            if record.status != TaskStatus::Running {
                continue;
            }
            let outcome = reclaim(&mut record, now, max_recoveries);
            let applied: i64 = self
                .scripts
                .reclaim
                .arg(&*self.prefix)
                .arg(record.task_id.to_string())
                .arg(micros(now))
                .arg(record.status.as_str())
                .arg(record.end_time.map(rfc).unwrap_or_default())
                .arg(record.error.clone().unwrap_or_default())
                .arg(record.recoveries)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if applied == 0 {
                continue; // another instance got there first, or the lease was renewed
            }
            reclaimed.add(outcome, record);
        }
        Ok(reclaimed)
    }

    /// [`Store::prune`](crate::store::Store::prune) on this store.
    pub(super) async fn prune_finished(
        &self,
        retention: &Retention,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let finished = self.key("finished");
        let mut doomed: Vec<String> = Vec::new();
        if let Some(cutoff) = retention.age_cutoff(now) {
            let cutoff = format!("({}", micros(cutoff));
            doomed.extend(
                conn.zrangebyscore::<_, _, _, Vec<String>>(&finished, "-inf", cutoff)
                    .await
                    .map_err(unavailable)?,
            );
        }
        if let Some(max) = retention.max_finished {
            let count: isize = conn.zcard(&finished).await.map_err(unavailable)?;
            let extra = count - max.min(isize::MAX as usize) as isize;
            if extra > 0 {
                doomed.extend(
                    conn.zrange::<_, Vec<String>>(&finished, 0, extra - 1)
                        .await
                        .map_err(unavailable)?,
                );
            }
        }
        doomed.sort();
        doomed.dedup();
        let mut removed = 0;
        for chunk in doomed.chunks(500) {
            let mut invocation = self.scripts.delete.prepare_invoke();
            invocation.arg(&*self.prefix);
            for id in chunk {
                invocation.arg(id);
            }
            let count: i64 = invocation.invoke_async(&mut conn).await.map_err(unavailable)?;
            removed += count as usize;
        }
        Ok(removed)
    }
}
