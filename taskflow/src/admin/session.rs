//! Dashboard sessions. With a session secret ([`Admin::session_secret`](super::Admin)), the
//! session is the cookie itself: its user, CSRF token, id and expiry sealed with a key derived
//! from the secret (the `cookie` crate's private cookies: AES-256-GCM, the cookie's name bound
//! in), so every instance that shares the secret accepts it, and a logout on any of them
//! revokes its id in the store, where every instance looks. Without one, sessions live in this
//! process's memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cookie::{Cookie, CookieJar, Key};
use serde::{Deserialize, Serialize};

use super::auth::SESSION_COOKIE;
use crate::store::{Store, StoreError};

/// How long a dashboard login lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The shortest secret accepted, in bytes.
pub(crate) const MIN_SECRET: usize = 32;

/// A signed-in session: who, and the CSRF token of its state changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) csrf: String,
}

/// What a sealed session cookie holds.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// The session's id, as revoked at logout.
    sid: String,
    user: String,
    csrf: String,
    /// When it lapses, in Unix seconds.
    exp: i64,
}

/// The sessions of one admin router.
#[derive(Default)]
pub(crate) struct Sessions {
    /// Seals the cookies when a secret is configured.
    key: Option<Key>,
    /// Without a secret: the sessions opened here, by cookie value, until when.
    local: Mutex<HashMap<String, (Session, DateTime<Utc>)>>,
    /// Session ids known revoked (logouts here, revocations read from the store), until when.
    revoked: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("shared", &self.shared()).finish_non_exhaustive()
    }
}

fn token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

fn lapse() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(SESSION_TTL).unwrap_or(chrono::Duration::hours(12))
}

impl Sessions {
    /// Seals sessions with a key derived from `secret` (HKDF, in the `cookie` crate).
    pub(crate) fn with_secret(secret: &[u8]) -> Result<Sessions, String> {
        if secret.len() < MIN_SECRET {
            return Err(format!(
                "the admin's session secret must be at least {MIN_SECRET} bytes (it has {})",
                secret.len()
            ));
        }
        Ok(Sessions { key: Some(Key::derive_from(secret)), ..Sessions::default() })
    }

    /// Whether a session is valid on every instance that shares the secret.
    pub(crate) fn shared(&self) -> bool {
        self.key.is_some()
    }

    /// Opens a session for `user`: the cookie's value and the CSRF token.
    pub(crate) fn open(&self, user: &str) -> (String, String) {
        let csrf = token();
        let until = lapse();
        let session = Session { user: user.to_owned(), csrf: csrf.clone() };
        let Some(key) = &self.key else {
            let cookie = token();
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Utc::now();
            local.retain(|_, (_, lapses)| *lapses > now);
            local.insert(cookie.clone(), (session, until));
            return (cookie, csrf);
        };
        let claims = Claims { sid: token(), user: session.user, csrf, exp: until.timestamp() };
        let text = serde_json::to_string(&claims).unwrap_or_default();
        let mut jar = CookieJar::new();
        jar.private_mut(key).add(Cookie::new(SESSION_COOKIE, text));
        let value = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
        (value, claims.csrf)
    }

    /// The session of the cookie `value`, if it is valid here now: opened here (no secret),
    /// or sealed with the secret, not lapsed and not revoked in `store`.
    pub(crate) async fn find(
        &self,
        store: &dyn Store,
        value: &str,
    ) -> Result<Option<Session>, StoreError> {
        let now = Utc::now();
        let Some(key) = &self.key else {
            let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            let found = local.get(value).filter(|(_, lapses)| *lapses > now);
            return Ok(found.map(|(session, _)| session.clone()));
        };
        let Some(claims) = open(key, value).filter(|claims| claims.exp > now.timestamp()) else {
            return Ok(None);
        };
        if self.known_revoked(&claims.sid, now) {
            return Ok(None);
        }
        if store.session_revoked(&claims.sid, now).await? {
            self.remember(&claims);
            return Ok(None);
        }
        Ok(Some(Session { user: claims.user, csrf: claims.csrf }))
    }

    /// Ends the session of the cookie `value`: everywhere, when sealed (its id revoked in
    /// `store` until it would lapse).
    pub(crate) async fn close(&self, store: &dyn Store, value: &str) -> Result<(), StoreError> {
        let Some(key) = &self.key else {
            self.local.lock().unwrap_or_else(PoisonError::into_inner).remove(value);
            return Ok(());
        };
        let Some(claims) = open(key, value) else { return Ok(()) };
        let Some(until) = DateTime::from_timestamp(claims.exp, 0) else { return Ok(()) };
        self.remember(&claims);
        store.revoke_session(&claims.sid, until).await
    }

    fn known_revoked(&self, sid: &str, now: DateTime<Utc>) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        revoked.get(sid).is_some_and(|lapses| *lapses > now)
    }

    fn remember(&self, claims: &Claims) {
        let Some(until) = DateTime::from_timestamp(claims.exp, 0) else { return };
        let mut revoked = self.revoked.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        revoked.retain(|_, lapses| *lapses > now);
        revoked.insert(claims.sid.clone(), until);
    }
}

/// The claims of a sealed cookie value, if `key` opens it and it reads as claims.
fn open(key: &Key, value: &str) -> Option<Claims> {
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(SESSION_COOKIE, value.to_owned()));
    let opened = jar.private(key).get(SESSION_COOKIE)?;
    serde_json::from_str(opened.value()).ok()
}
