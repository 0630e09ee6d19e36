//! The instances' heartbeats, in the map.

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
}
