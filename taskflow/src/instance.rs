//! [`Instance`]: what each running instance tells the store about itself, every third of a
//! lease, so that every other instance (and the admin API) can list the live ones. An
//! instance that stops heartbeating drops off the list when its entry expires.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One instance of the app, as its last heartbeat described it.
#[cfg_attr(feature = "axum", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Its runner id: the owner of the leases it holds.
    pub id: String,
    /// The host it runs on (`HOSTNAME`, or the kernel's host name).
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// The queues it runs (fetches from).
    pub queues: Vec<String>,
    /// Its attempts running at the heartbeat.
    pub running: u64,
    /// When it last heartbeated.
    pub seen_at: DateTime<Utc>,
    /// When its entry expires without another heartbeat.
    pub expires_at: DateTime<Utc>,
    /// Whether it serves a live feed (its admin router is built): while one does, every
    /// instance sends its events to the store's event log.
    #[serde(default)]
    pub serves_feed: bool,
}

/// This machine's host name, as well as it can be told without a system call.
pub(crate) fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
