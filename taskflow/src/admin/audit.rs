//! The audit log: who retried, cancelled, deleted or changed what through the admin API.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many audit entries are kept (the oldest go first).
const KEPT: usize = 1000;

/// One action taken through the admin API.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEntry {
    /// When.
    pub(crate) at: DateTime<Utc>,
    /// Who: the signed-in user, `token` for a bearer token, or `anonymous`.
    pub(crate) actor: String,
    /// `retry`, `cancel`, `bulk-retry`, `retry-failed`, `delete-history`, `pause-queue`,
    /// `resume-queue` or `update-queue`.
    pub(crate) action: &'static str,
    /// The task acted on, if one.
    pub(crate) task_id: Option<String>,
    /// What came of it: the new task's id, the cancel outcome, how many.
    pub(crate) detail: String,
}

/// The most recent audit entries, in memory.
#[derive(Debug, Default)]
pub(crate) struct AuditLog(Mutex<VecDeque<AuditEntry>>);

impl AuditLog {
    /// Records an action, and logs it through `tracing` for a durable trail.
    pub(crate) fn record(
        &self,
        actor: &str,
        action: &'static str,
        task_id: Option<String>,
        detail: String,
    ) {
        tracing::info!(
            actor,
            action,
            task_id = task_id.as_deref(),
            detail,
            "taskflow admin action"
        );
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action,
            task_id,
            detail,
        });
    }

    /// The entries, newest first.
    pub(crate) fn newest_first(&self) -> Vec<AuditEntry> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().cloned().collect()
    }
}
