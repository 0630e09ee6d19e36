//! Who may use the admin router: HTTP Basic credentials, a bearer token, or a session cookie
//! from the dashboard's login; and the CSRF checks on state-changing requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::AdminState;
use super::error::ApiError;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "taskflow_session";

/// The header that carries the session's CSRF token on state-changing requests.
pub(crate) const CSRF_HEADER: &str = "x-taskflow-csrf";

/// How long a dashboard login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The configured credentials and the open sessions.
#[derive(Debug, Default)]
pub(crate) struct Auth {
    pub(crate) basic: Option<(String, String)>,
    pub(crate) bearer: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

#[derive(Clone, Debug)]
struct Session {
    user: String,
    csrf: String,
    expires: Instant,
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

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Auth {
    /// Whether any credentials are configured.
    pub(crate) fn required(&self) -> bool {
        self.basic.is_some() || self.bearer.is_some()
    }

    /// Signs in with the Basic credentials; the new session's cookie token and CSRF token.
    pub(crate) fn login(&self, user: &str, password: &str) -> Option<(String, String)> {
        let (expected_user, expected_password) = self.basic.as_ref()?;
        if !(same(user, expected_user) & same(password, expected_password)) {
            return None;
        }
        Some(self.open_session(user))
    }

    /// Signs in with the bearer token.
    pub(crate) fn login_with_token(&self, given: &str) -> Option<(String, String)> {
        let expected = self.bearer.as_ref()?;
        same(given, expected).then(|| self.open_session("token"))
    }

    fn open_session(&self, user: &str) -> (String, String) {
        let (cookie, csrf) = (token(), token());
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, session| session.expires > now);
        let session =
            Session { user: user.to_owned(), csrf: csrf.clone(), expires: now + SESSION_TTL };
        sessions.insert(cookie.clone(), session);
        (cookie, csrf)
    }

    /// Ends the session of `headers`' cookie, if any.
    pub(crate) fn logout(&self, headers: &HeaderMap) {
        if let Some(cookie) = session_cookie(headers) {
            self.sessions.lock().unwrap_or_else(PoisonError::into_inner).remove(&cookie);
        }
    }

    /// The session of `headers`' cookie: its user and CSRF token.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let cookie = session_cookie(headers)?;
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let session = sessions.get(&cookie).filter(|s| s.expires > Instant::now())?;
        Some((session.user.clone(), session.csrf.clone()))
    }

    /// Who sent `headers`; an error when credentials are required and missing or wrong.
    fn identify(&self, headers: &HeaderMap) -> Result<Identity, ApiError> {
        if !self.required() {
            return Ok(Identity::anonymous());
        }
        if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            if let (Some(token), Some(expected)) = (value.strip_prefix("Bearer "), &self.bearer)
                && same(token.trim(), expected)
            {
                return Ok(Identity { actor: "token".to_owned(), csrf: None });
            }
            if let (Some(encoded), Some((user, password))) =
                (value.strip_prefix("Basic "), &self.basic)
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                if let Some((given_user, given_password)) =
                    decoded.as_deref().and_then(|d| d.split_once(':'))
                    && same(given_user, user) & same(given_password, password)
                {
                    return Ok(Identity { actor: user.clone(), csrf: None });
                }
            }
            return Err(ApiError::Unauthorized);
        }
        match self.session(headers) {
            Some((user, csrf)) => Ok(Identity { actor: user, csrf: Some(csrf) }),
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

/// Routes anyone may reach: the dashboard's page (which shows a login when needed) and the
/// login itself.
fn public(method: &Method, path: &str, prefix: &str) -> bool {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    (*method == Method::GET && rest == "/dashboard")
        || (*method == Method::POST && rest == "/login")
        || (*method == Method::GET && rest == "/session")
}

/// The admin router's guard: refuses cross-site state changes, authenticates, and checks the
/// CSRF token of cookie-authenticated state changes. Puts the [`Identity`] in the request.
pub(crate) async fn guard(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let changes_state = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = request.headers();
    // A browser says where a request comes from; another site may not change anything here.
    let cross_site =
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site");
    if changes_state && cross_site {
        return ApiError::Forbidden("cross-site requests may not change tasks".to_owned())
            .into_response();
    }
    if public(&method, request.uri().path(), &state.prefix) {
        return next.run(request).await;
    }
    let identity = match state.auth.identify(headers) {
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
