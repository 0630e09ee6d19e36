//! Who may use the admin router: HTTP Basic credentials, a bearer token, or a session cookie
//! from the dashboard's login; and the CSRF checks on state-changing requests.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::AdminState;
use super::error::ApiError;
use super::origin;
use super::routes::{Access, changes_state};
use super::session::{Session, Sessions};
use super::throttle::Throttle;
use crate::store::Store;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "taskflow_session";

/// The header that carries the session's CSRF token on state-changing requests.
pub(crate) const CSRF_HEADER: &str = "x-taskflow-csrf";

/// The configured credentials and the open sessions.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    pub(crate) basic: Option<(String, String)>,
    pub(crate) bearer: Option<String>,
    /// Origins besides the request's own host that may change state (`scheme://host[:port]`).
    pub(crate) trusted_origins: Vec<String>,
    pub(crate) sessions: Sessions,
    throttle: Throttle,
}

/// Who made a request, and how.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// The name the audit log records.
    pub(crate) actor: String,
    /// The session's CSRF token when the request came with the session cookie.
    csrf: Option<String>,
}

impl Identity {
    fn anonymous() -> Identity {
        Identity { actor: "anonymous".to_owned(), csrf: None }
    }
}

/// Compares in constant time (for equal lengths), so timing tells nothing about a secret.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The throttle's keys for a sign-in attempt: the client's address (when the server was
/// started with connect info) and the user name.
fn attempt_keys(client: Option<std::net::IpAddr>, user: &str) -> Vec<String> {
    let mut keys = vec![format!("user:{user}")];
    if let Some(ip) = client {
        keys.push(format!("ip:{ip}"));
    }
    keys
}

/// The client address of `request`, when the server records it
/// (`into_make_service_with_connect_info::<SocketAddr>()`).
pub(crate) fn client_ip(request: &Request) -> Option<std::net::IpAddr> {
    request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip())
}

impl Auth {
    /// Whether any credentials are configured.
    pub(crate) fn required(&self) -> bool {
        self.basic.is_some() || self.bearer.is_some()
    }

    /// Checks a sign-in attempt of `user` (throttled per user and client address); `ok` says
    /// whether its secret was right. A locked-out attempt is refused even when right.
    fn attempt(
        &self,
        client: Option<std::net::IpAddr>,
        user: &str,
        ok: impl FnOnce() -> bool,
    ) -> Result<(), ApiError> {
        let keys = attempt_keys(client, user);
        self.throttle.check(&keys).map_err(ApiError::TooManyRequests)?;
        if ok() {
            self.throttle.succeeded(&keys[..1]);
            Ok(())
        } else {
            self.throttle.failed(&keys);
            Err(ApiError::Unauthorized)
        }
    }

    /// Signs in with the Basic credentials; the new session's cookie token and CSRF token.
    pub(crate) fn login(
        &self,
        client: Option<std::net::IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<(String, String), ApiError> {
        let (expected_user, expected_password) =
            self.basic.as_ref().ok_or(ApiError::Unauthorized)?;
        self.attempt(client, user, || {
            same(user, expected_user) & same(password, expected_password)
        })?;
        Ok(self.sessions.open(user))
    }

    /// Signs in with the bearer token.
    pub(crate) fn login_with_token(
        &self,
        client: Option<std::net::IpAddr>,
        given: &str,
    ) -> Result<(String, String), ApiError> {
        let expected = self.bearer.as_ref().ok_or(ApiError::Unauthorized)?;
        self.attempt(client, "token", || same(given, expected))?;
        Ok(self.sessions.open("token"))
    }

    /// Ends the session of `headers`' cookie, if any: on every instance sharing `store`,
    /// when sessions are sealed with a secret.
    pub(crate) async fn logout(
        &self,
        store: &dyn Store,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        match session_cookie(headers) {
            Some(cookie) => Ok(self.sessions.close(store, &cookie).await?),
            None => Ok(()),
        }
    }

    /// The valid session of `headers`' cookie, if any.
    pub(crate) async fn session(
        &self,
        store: &dyn Store,
        headers: &HeaderMap,
    ) -> Result<Option<Session>, ApiError> {
        match session_cookie(headers) {
            Some(cookie) => Ok(self.sessions.find(store, &cookie).await?),
            None => Ok(None),
        }
    }

    /// Who sent `headers`; an error when credentials are required and missing or wrong.
    async fn identify(
        &self,
        store: &dyn Store,
        headers: &HeaderMap,
        client: Option<std::net::IpAddr>,
    ) -> Result<Identity, ApiError> {
        if !self.required() {
            return Ok(Identity::anonymous());
        }
        if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            if let (Some(token), Some(expected)) = (value.strip_prefix("Bearer "), &self.bearer) {
                self.attempt(client, "token", || same(token.trim(), expected))?;
                return Ok(Identity { actor: "token".to_owned(), csrf: None });
            }
            if let (Some(encoded), Some((user, password))) =
                (value.strip_prefix("Basic "), &self.basic)
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                let (given_user, given_password) =
                    decoded.as_deref().and_then(|d| d.split_once(':')).unwrap_or(("", ""));
                self.attempt(client, given_user, || {
                    same(given_user, user) & same(given_password, password)
                })?;
                return Ok(Identity { actor: user.clone(), csrf: None });
            }
            return Err(ApiError::Unauthorized);
        }
        match self.session(store, headers).await? {
            Some(session) => Ok(Identity { actor: session.user, csrf: Some(session.csrf) }),
            None => Err(ApiError::Unauthorized),
        }
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The admin router's guard on a route with `access`: refuses cross-origin state changes
/// (whatever the credentials), authenticates, and checks the CSRF token of cookie-
/// authenticated state changes. Puts the [`Identity`] in the request.
pub(crate) async fn guard(
    State((state, access)): State<(Arc<AdminState>, Access)>,
    mut request: Request,
    next: Next,
) -> Response {
    let changes_state = changes_state(request.method());
    let headers = request.headers();
    if changes_state && let Some(why) = origin::refusal(headers, &state.auth.trusted_origins) {
        return ApiError::Forbidden(why).into_response();
    }
    if access == Access::Open {
        return next.run(request).await;
    }
    let store = Arc::clone(state.manager.store());
    let identity = match state.auth.identify(&*store, headers, client_ip(&request)).await {
        Ok(identity) => identity,
        Err(err) => return err.into_response(),
    };
    if changes_state && let Some(expected) = &identity.csrf {
        let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !same(given, expected) {
            return ApiError::Forbidden(format!("missing or wrong `{CSRF_HEADER}` header"))
                .into_response();
        }
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}
