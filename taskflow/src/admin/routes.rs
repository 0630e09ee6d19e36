//! The admin router's routes in one table: the router is built from it, the guard takes each
//! route's access rule from it, and the tests walk it, so a route added here is guarded and
//! tested without another list to keep in step.

use std::sync::Arc;

use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post};

use super::{
    AdminState, actions, api, dashboard, export, history, openapi, queues, registered, schedules,
    signin, stream,
};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Anyone: the dashboard page (which shows a login when needed), the login and the
    /// session probe. State-changing open routes still refuse cross-origin requests.
    Open,
    /// Only with the configured credentials (when any are configured).
    Credentials,
}

/// One route of the admin router.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// Its HTTP method.
    pub method: Method,
    /// Its path after the router's prefix, in axum's syntax (`/{id}/retry`; `""` is the
    /// prefix itself).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

impl Route {
    /// Whether the route changes state (anything but `GET`, `HEAD` and `OPTIONS`): such
    /// requests must come from this site and, with a session cookie, carry the CSRF token.
    pub fn changes_state(&self) -> bool {
        changes_state(&self.method)
    }
}

/// Whether a request with `method` changes state.
pub(crate) fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

type Handler = fn() -> MethodRouter<Arc<AdminState>>;

const fn route(method: Method, path: &'static str, access: Access) -> Route {
    Route { method, path, access }
}

use Access::{Credentials, Open};

/// Every route with its handler. Order matters only for reading: axum matches static
/// segments before `{id}`.
const TABLE: &[(Route, Handler)] = &[
    (route(Method::GET, "", Credentials), || get(api::list)),
    (route(Method::GET, "/export.csv", Credentials), || get(export::csv)),
    (route(Method::GET, "/metrics", Credentials), || get(api::metrics)),
    (route(Method::GET, "/metrics/prometheus", Credentials), || get(api::prometheus)),
    (route(Method::GET, "/metrics/history", Credentials), || get(history::history)),
    (route(Method::GET, "/stream", Credentials), || get(stream::stream)),
    (route(Method::GET, "/dashboard", Open), || get(dashboard::page)),
    (route(Method::GET, "/audit", Credentials), || get(api::audit)),
    (route(Method::GET, "/openapi.json", Credentials), || get(openapi::description)),
    (route(Method::GET, "/session", Open), || get(signin::session)),
    (route(Method::POST, "/login", Open), || post(signin::login)),
    (route(Method::POST, "/logout", Credentials), || post(signin::logout)),
    (route(Method::POST, "/bulk-retry", Credentials), || post(actions::bulk_retry)),
    (route(Method::POST, "/retry-failed", Credentials), || post(actions::retry_failed)),
    (route(Method::DELETE, "/history", Credentials), || delete(actions::delete_history)),
    (route(Method::GET, "/queues", Credentials), || get(queues::list)),
    (route(Method::GET, "/registered", Credentials), || get(registered::list)),
    (route(Method::GET, "/instances", Credentials), || get(queues::instances)),
    (route(Method::POST, "/queues/{name}/pause", Credentials), || post(queues::pause)),
    (route(Method::POST, "/queues/{name}/resume", Credentials), || post(queues::resume)),
    (route(Method::PATCH, "/queues/{name}", Credentials), || patch(queues::update)),
    (route(Method::GET, "/schedules", Credentials), || get(schedules::list)),
    (route(Method::POST, "/schedules/{name}/pause", Credentials), || post(schedules::pause)),
    (route(Method::POST, "/schedules/{name}/resume", Credentials), || post(schedules::resume)),
    (route(Method::POST, "/schedules/{name}/trigger", Credentials), || post(schedules::trigger)),
    (route(Method::GET, "/{id}", Credentials), || get(api::get)),
    (route(Method::GET, "/{id}/logs", Credentials), || get(api::logs)),
    (route(Method::POST, "/{id}/retry", Credentials), || post(actions::retry)),
    (route(Method::POST, "/{id}/cancel", Credentials), || post(actions::cancel)),
];

/// Every route of the admin router, relative to its prefix.
///
/// ```rust
/// use taskflow::admin::{Access, routes};
///
/// let open: Vec<_> = routes().filter(|r| r.access == Access::Open).map(|r| r.path).collect();
/// assert_eq!(open, ["/dashboard", "/session", "/login"]);
/// ```
pub fn routes() -> impl Iterator<Item = Route> {
    TABLE.iter().map(|(route, _)| route.clone())
}

/// The routes with their handlers, for the router.
pub(crate) fn handlers() -> impl Iterator<Item = (Route, MethodRouter<Arc<AdminState>>)> {
    TABLE.iter().map(|(route, handler)| (route.clone(), handler()))
}
