//! The admin router: the tasks HTTP API and the live dashboard, mounted with one call.
//!
//! ```rust,standalone_crate
//! use axum::Router;
//! use taskflow::TaskManager;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> taskflow::Result<()> {
//! let manager = TaskManager::builder().build().await?;
//! let app: Router = Router::new()
//!     .merge(manager.admin().basic_auth("admin", "s3cret").redact(["password"]).router())
//!     .layer(manager.layer());
//! // GET /tasks, /tasks/{id}, /tasks/dashboard, ...
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Routes, under the prefix (`/tasks` by default):
//!
//! | route | what |
//! |---|---|
//! | `GET /tasks` | a page of tasks: `status`, `func_name`, `queue`, `tag=key:value`, `q` (the start or end of an id, or part of a function name), `since`/`until` (RFC 3339 or `24h`), `sort` (`-created_at`, `created_at`), `limit` (≤ 1000), `cursor` |
//! | `GET /tasks/export.csv` | the tasks `GET /tasks` would list with the same filters, as CSV (at most 50,000 rows, `x-taskflow-truncated: true` when more match; arguments redacted as in the API; cells a spreadsheet would read as formulas start with `'`) |
//! | `GET /tasks/{id}` | one task, with its logs |
//! | `GET /tasks/{id}/logs` | its logs |
//! | `POST /tasks/{id}/retry` | a failed, interrupted or cancelled task again, as a new task (`201`; `409` otherwise) |
//! | `POST /tasks/{id}/cancel` | pending: `cancelled` (`200`); running, here or on another instance: stopped at its next await point (`202` while that happens); `200` if already cancelled, `409` if it ended otherwise; each with the task |
//! | `POST /tasks/bulk-retry` | `{"ids": [...]}` |
//! | `POST /tasks/retry-failed` | every failed task in `{"since", "until", "func_name"}` |
//! | `DELETE /tasks/history?older_than=7d` | finished tasks that ended before then |
//! | `GET /tasks/metrics` | counts by status; per function runs, successes, failures, success rate, avg/min/max/p95 duration (`since`) |
//! | `GET /tasks/metrics/prometheus` | the same, for Prometheus |
//! | `GET /tasks/metrics/history` | per-minute (or per-`step`) succeeded, failed, retried... and durations over a `window` (default `1h`, at most `31d`), queue depth at each point, each function's duration histogram |
//! | `GET /tasks/stream` | lifecycle events as Server-Sent Events |
//! | `GET /tasks/dashboard` | the live dashboard |
//! | `GET /tasks/audit` | who retried, cancelled, deleted or changed what |
//! | `GET /tasks/registered` | the tasks this binary can run, with their `#[task]` options (queue, retries, priority, concurrency, timeout, kind, declared schedule and its next slot, where defined) |
//! | `GET /tasks/instances` | the live instances sharing the store: id, host, pid, started, the queues each runs, its running count, last heartbeat ([`Instance`](crate::Instance)) |
//! | `GET /tasks/queues` | every declared queue: `pending`, `due`, `running` (and `running_here`), `paused`, `concurrency`, `global_concurrency`, `max_pending` ([`QueueInfo`](crate::QueueInfo)) |
//! | `POST /tasks/queues/{name}/pause` | no instance starts its tasks until resumed; running ones finish |
//! | `POST /tasks/queues/{name}/resume` | starts them again |
//! | `PATCH /tasks/queues/{name}` | `{"concurrency": n}` and/or `{"max_pending": n}` (`null`: the builder's) for every instance |
//! | `GET /tasks/schedules` | every stored schedule: definition, next slot, last run and its status, recent history, why it cannot fire here (if so) |
//! | `POST /tasks/schedules/{name}/pause`, `/resume`, `/trigger` | pause or resume it for every instance; run its task now |
//! | `GET /tasks/openapi.json` | the OpenAPI 3.1 description of these routes, generated from the handlers' types, with every error answer, this router's prefix and credentials |
//!
//! Errors are JSON `{"error": "..."}`: `400` for a malformed id, parameter (named) or body,
//! `401` without credentials, `403` for a cross-origin or CSRF-less change, `404` for an unknown
//! task or queue, `409` for a task in the wrong state, `413` for a body over [`MAX_BODY`],
//! `422` for a task whose fn is not in this binary, `429` (with `Retry-After`) after too many
//! failed sign-ins, `503` when the store fails. Query parameters are strict: an unknown,
//! repeated or empty one is a `400` that names it. Every response carries
//! `X-Content-Type-Options: nosniff`. [`routes`] lists the routes with who may call them.
//!
//! **Security.** With [`Admin::basic_auth`] or [`Admin::bearer_token`], every route needs the
//! credentials (an `Authorization` header, or the session cookie of the dashboard's login);
//! only the dashboard page itself (which then shows the login), the login and the session
//! probe are open. A state-changing request that comes with the session cookie must carry the
//! session's CSRF token in `x-taskflow-csrf`, and a state-changing request whose `Origin` (or,
//! without it, `Referer`) is not this server nor one of [`Admin::trusted_origins`] is refused
//! in every configuration, whatever credentials it carries (`Sec-Fetch-Site: cross-site`
//! always; `same-site` unless trusted). Failed sign-ins (the login, or wrong Basic or bearer
//! credentials) are throttled per user and, when the server is started with connect info,
//! per client address: after 10 in 5 minutes, `429` until the 5 minutes have passed. For anything else (SSO, IP filters), wrap the router in
//! your own tower layer: `admin.router().layer(...)`. The dashboard writes every value as
//! text and sends a strict Content-Security-Policy.

mod actions;
mod api;
mod audit;
mod auth;
mod dashboard;
mod error;
mod export;
mod history;
mod metrics;
mod openapi;
mod origin;
mod params;
mod queues;
mod redact;
mod registered;
mod routes;
mod schedules;
mod session;
mod signin;
mod stream;
mod throttle;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware::from_fn_with_state;

use self::audit::AuditLog;
use self::auth::Auth;
use self::redact::Redaction;
pub use self::routes::{Access, Route, routes};
use crate::manager::TaskManager;
use crate::store::TaskStats;

/// The largest request body the admin API reads (a bulk retry of 1,000 ids takes ~40 KiB);
/// larger ones are answered `413`.
pub const MAX_BODY: usize = 256 * 1024;

/// The default mount point of the admin router.
pub const DEFAULT_PREFIX: &str = "/tasks";

/// Builds the admin router of a [`TaskManager`]: see the [module docs](self).
#[derive(Debug)]
pub struct Admin {
    manager: TaskManager,
    prefix: String,
    auth: Auth,
    redaction: Redaction,
}

/// What the admin handlers share.
#[derive(Debug)]
pub(crate) struct AdminState {
    pub(crate) manager: TaskManager,
    pub(crate) prefix: String,
    pub(crate) auth: Auth,
    pub(crate) redaction: Redaction,
    pub(crate) audit: AuditLog,
    /// The OpenAPI description of this router, as JSON.
    pub(crate) description: axum::body::Bytes,
    /// The last statistics computed, by the `since` they were asked with.
    stats: tokio::sync::Mutex<Option<CachedStats>>,
}

/// Statistics over a `since` window scan the tasks created in it: computed at most once per
/// [`STATS_TTL`] for a given window, however many dashboards ask. Without a window they come
/// from the store's counters, and are not cached.
#[derive(Debug)]
struct CachedStats {
    key: Option<String>,
    at: std::time::Instant,
    stats: Arc<TaskStats>,
}

/// How long computed statistics are served again.
const STATS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl AdminState {
    /// The statistics for `since` (`key` is how it was written): from the counters without a
    /// window, else from the cache when fresh.
    pub(crate) async fn stats(
        &self,
        key: Option<&str>,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Arc<TaskStats>, crate::store::StoreError> {
        if since.is_none() {
            // From the counters: cheap whatever the number of tasks, so never cached.
            let store = self.manager.store();
            let window = chrono::Duration::from_std(self.manager.history_window())
                .unwrap_or(chrono::Duration::MAX);
            let first = chrono::Utc::now().checked_sub_signed(window).unwrap_or_default();
            // One step as long as the window: a total per function and queue.
            let step = u32::try_from(window.num_minutes() + 1).unwrap_or(u32::MAX);
            let (counts, minutes) = tokio::try_join!(store.counts(), store.history(first, step))?;
            return Ok(Arc::new(TaskStats::from_counters(&counts, &minutes)));
        }
        // Held while computing: concurrent callers wait for one computation.
        let mut cached = self.stats.lock().await;
        if let Some(hit) =
            cached.as_ref().filter(|c| c.key.as_deref() == key && c.at.elapsed() < STATS_TTL)
        {
            return Ok(Arc::clone(&hit.stats));
        }
        let stats = Arc::new(self.manager.store().stats(since).await?);
        *cached = Some(CachedStats {
            key: key.map(str::to_owned),
            at: std::time::Instant::now(),
            stats: Arc::clone(&stats),
        });
        Ok(stats)
    }
}

/// Every admin response tells browsers not to guess its type.
async fn nosniff(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

impl TaskManager {
    /// A builder of this manager's admin router (the tasks API and dashboard).
    pub fn admin(&self) -> Admin {
        Admin::new(self)
    }

    /// The admin router with the defaults: at `/tasks`, no authentication, arguments shown.
    /// Merge it into your app: `Router::new().merge(manager.admin_router())`.
    pub fn admin_router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        self.admin().router()
    }
}

impl Admin {
    /// A builder for `manager`'s admin router, with the defaults.
    pub fn new(manager: &TaskManager) -> Admin {
        Admin {
            manager: manager.clone(),
            prefix: DEFAULT_PREFIX.to_owned(),
            auth: Auth::default(),
            redaction: Redaction { sealed: manager.encrypts(), ..Redaction::default() },
        }
    }

    /// Mounts the routes under `prefix` instead of `/tasks` (`""` for the root).
    pub fn prefix(mut self, prefix: &str) -> Admin {
        let trimmed = prefix.trim_matches('/');
        self.prefix = if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") };
        self
    }

    /// Requires HTTP Basic credentials (and lets the dashboard sign in with them).
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Admin {
        self.auth.basic = Some((user.into(), password.into()));
        self
    }

    /// Requires `Authorization: Bearer <token>` (or Basic credentials, if also set).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Admin {
        self.auth.bearer = Some(token.into());
        self
    }

    /// Seals the dashboard's session cookies with a key derived from `secret` (at least 32
    /// bytes, random: `openssl rand -base64 48`), so that a login is valid on every instance
    /// configured with the same secret, behind a load balancer without sticky sessions, and
    /// across restarts, for 12 hours. The cookie holds the user, the CSRF token, an id and its
    /// expiry, encrypted and authenticated (AES-256-GCM, by the `cookie` crate); a logout on any
    /// instance revokes its id in the task store, which every instance checks. Without a
    /// secret, sessions live in this process's memory (a warning at [`Admin::router`] when
    /// the store is shared). A shorter secret is an [`Error::Encryption`](crate::Error).
    ///
    /// ```rust
    /// # async fn run(manager: taskflow::TaskManager) -> taskflow::Result<()> {
    /// let secret = std::env::var("TASKFLOW_SESSION_SECRET").unwrap_or_default();
    /// let admin = manager.admin().basic_auth("ops", "s3cret").session_secret(secret)?;
    /// let router: axum::Router = admin.router();
    /// # Ok(())
    /// # }
    /// ```
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> crate::Result<Admin> {
        self.auth.sessions =
            session::Sessions::with_secret(secret.as_ref()).map_err(crate::Error::Encryption)?;
        Ok(self)
    }

    /// Origins besides the server's own that the dashboard may be used from
    /// (`https://admin.example.com`), for example a sibling subdomain (`Sec-Fetch-Site:
    /// same-site`) or a proxy that rewrites `Host` without setting `X-Forwarded-Host`.
    /// State-changing requests from any other origin are refused.
    pub fn trusted_origins<I, O>(mut self, origins: I) -> Admin
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.auth
            .trusted_origins
            .extend(origins.into_iter().map(|o| o.into().trim_end_matches('/').to_owned()));
        self
    }

    /// Whether task arguments are shown (default: yes). Hidden, they read `"[hidden]"`.
    pub fn display_args(mut self, display: bool) -> Admin {
        self.redaction.display_args = display;
        self
    }

    /// Whether arguments and results sealed at rest (see
    /// [`TaskManager::encrypts`]) are shown opened to this admin's users. By default they read
    /// `"[sealed]"`: only an admin built with `display_sealed(true)` shows them (still subject
    /// to [`Admin::display_args`] and [`Admin::redact`]).
    pub fn display_sealed(mut self, display: bool) -> Admin {
        self.redaction.sealed = self.manager.encrypts() && !display;
        self
    }

    /// Replaces the values of these keys, at any depth of arguments, results and log fields,
    /// with `"[redacted]"` (names compared without case).
    pub fn redact<I, F>(mut self, fields: I) -> Admin
    where
        I: IntoIterator<Item = F>,
        F: Into<String>,
    {
        self.redaction.fields.extend(fields.into_iter().map(Into::into));
        self
    }

    /// The router, to merge into your app. Starts recording lifecycle events for the stream.
    pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        self.manager.serve_feed();
        let shared_store = self.manager.store().enqueued_elsewhere().is_some();
        if self.auth.required() && shared_store && !self.auth.sessions.shared() {
            tracing::warn!(
                "taskflow admin: dashboard logins are kept in this process only; with several instances behind a load balancer, give every instance the same Admin::session_secret"
            );
        }
        let p = self.prefix.clone();
        let description = openapi::render(&self.prefix, &self.auth);
        let state = Arc::new(AdminState {
            description,
            manager: self.manager,
            prefix: self.prefix,
            auth: self.auth,
            redaction: self.redaction,
            audit: AuditLog::default(),
            stats: tokio::sync::Mutex::new(None),
        });
        let mut router = Router::new();
        for (route, handler) in routes::handlers() {
            let path = match format!("{p}{}", route.path) {
                path if path.is_empty() => "/".to_owned(),
                path => path,
            };
            let guarded = handler
                .route_layer(from_fn_with_state((Arc::clone(&state), route.access), auth::guard));
            router = router.route(&path, guarded);
        }
        router
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .layer(axum::middleware::map_response(nosniff))
            .with_state(state)
    }
}

/// Parses `raw` as the query of each admin route that takes one (`GET /tasks`, the metrics
/// window, the history cutoff); for the fuzz targets. Never panics, whatever `raw` is.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_queries(raw: &str) {
    if let Ok(parsed) = params::Params::parse(Some(raw), params::LIST_PARAMS) {
        let _ = params::task_query(&parsed);
    }
    if let Ok(parsed) = params::Params::parse(Some(raw), &["older_than"]) {
        let _ = parsed.parsed("older_than", params::age);
    }
    if let Ok(parsed) = params::Params::parse(Some(raw), &["since"]) {
        let _ = parsed.parsed("since", params::age);
    }
    for value in raw.split('&') {
        let _ = (params::time(value), params::duration(value), params::tag(value));
        let _ = (params::status(value), params::task_id(value), params::limit(value));
    }
}
