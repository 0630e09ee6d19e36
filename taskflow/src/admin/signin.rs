//! The dashboard's sign-in routes: log in for a session cookie, log out, and the session probe
//! the page starts with.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AdminState;
use super::api::body;
use super::auth::SESSION_COOKIE;
use super::error::{ApiError, ErrorBody};

/// Credentials: `username` and `password`, or `token`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Login {
    /// The Basic credentials.
    Password(PasswordLogin),
    /// The bearer token.
    Token(TokenLogin),
}

/// Signing in with the Basic credentials.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordLogin {
    username: String,
    password: String,
}

/// Signing in with the bearer token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenLogin {
    token: String,
}

impl<'de> Deserialize<'de> for Login {
    /// One of the two forms, or an error that says what they are (an untagged enum's would
    /// only say that none matched).
    fn deserialize<D: serde::Deserializer<'de>>(input: D) -> Result<Login, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            username: Option<String>,
            password: Option<String>,
            token: Option<String>,
        }
        match Fields::deserialize(input)? {
            Fields { username: Some(username), password: Some(password), token: None } => {
                Ok(Login::Password(PasswordLogin { username, password }))
            }
            Fields { username: None, password: None, token: Some(token) } => {
                Ok(Login::Token(TokenLogin { token }))
            }
            _ => Err(serde::de::Error::custom("give `username` and `password`, or `token`")),
        }
    }
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignedIn {
    /// Who: the user, or `token`.
    user: String,
    /// The session's CSRF token, for `x-taskflow-csrf` on state-changing requests.
    csrf: String,
}

/// `POST /tasks/login` with `{"username", "password"}` or `{"token"}`: a session cookie for
/// the dashboard.
#[utoipa::path(post, path = "/login", operation_id = "login", tag = "admin", request_body = Login, responses(
    (status = 200, description = "Signed in: the session cookie is in `Set-Cookie`.", body = SignedIn,
        headers(("set-cookie" = String, description = "The session cookie (HttpOnly, SameSite=Strict)."))),
    (status = 400, description = "A malformed body, or neither credential form.", body = ErrorBody),
    (status = 401, description = "Wrong credentials, or none are configured.", body = ErrorBody),
    (status = 429, description = "Too many failed sign-ins: wait for `Retry-After`.", body = ErrorBody,
        headers(("retry-after" = u64, description = "Seconds to wait."))),
))]
pub(crate) async fn login(
    State(state): State<Arc<AdminState>>,
    client: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    request: Result<Json<Login>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let client = client.map(|Extension(info)| info.0.ip());
    let (session, user) = match request {
        Login::Password(PasswordLogin { username, password }) => {
            (state.auth.login(client, &username, &password), username)
        }
        Login::Token(TokenLogin { token }) => {
            (state.auth.login_with_token(client, &token), "token".to_owned())
        }
    };
    let (cookie, csrf) = session?;
    // A sealed session lasts its lifetime on every instance, across restarts: the cookie
    // says so; one kept in this process's memory ends with the browser session.
    let lasts = if state.auth.sessions.shared() {
        format!("; Max-Age={}", super::session::SESSION_TTL.as_secs())
    } else {
        String::new()
    };
    let set_cookie = format!(
        "{SESSION_COOKIE}={cookie}; Path={}; HttpOnly; SameSite=Strict{lasts}",
        cookie_path(&state)
    );
    Ok(([(header::SET_COOKIE, set_cookie)], Json(SignedIn { user, csrf })).into_response())
}

/// The session cookie's path: the router's prefix.
fn cookie_path(state: &AdminState) -> &str {
    if state.prefix.is_empty() { "/" } else { &state.prefix }
}

/// A session ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SignedOut {
    /// Always `true`.
    signed_out: bool,
}

/// `POST /tasks/logout`.
#[utoipa::path(post, path = "/logout", operation_id = "logout", tag = "admin", responses(
    (status = 200, description = "The session, if any, is over on every instance; the cookie is cleared.", body = SignedOut),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn logout(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.auth.logout(&**state.manager.store(), &headers).await?;
    let clear = format!(
        "{SESSION_COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0",
        cookie_path(&state)
    );
    Ok(([(header::SET_COOKIE, clear)], Json(SignedOut { signed_out: true })).into_response())
}

/// What the dashboard needs before it shows anything.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionState {
    /// Whether the API needs credentials.
    auth_required: bool,
    /// Whether the login takes a user and password (else a token).
    login: bool,
    /// The signed-in user, if the request carries a valid session cookie.
    user: Option<String>,
    /// That session's CSRF token.
    csrf: Option<String>,
    /// Whether task arguments are shown.
    display_args: bool,
}

/// `GET /tasks/session`: whether sign-in is needed, and the signed-in session's CSRF token.
#[utoipa::path(get, path = "/session", operation_id = "getSession", tag = "admin", responses(
    (status = 200, description = "The session state.", body = SessionState),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn session(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
) -> Result<Json<SessionState>, ApiError> {
    let session = state.auth.session(&**state.manager.store(), &headers).await?;
    let (user, csrf) = session.map(|s| (s.user, s.csrf)).unzip();
    Ok(Json(SessionState {
        auth_required: state.auth.required(),
        login: state.auth.basic.is_some(),
        user,
        csrf,
        display_args: state.redaction.display_args,
    }))
}
