//! Who is calling: API keys from the configuration and sessions from `POST /login`, both sent
//! in the `apikey` header.
//!
//! - With keys or users configured, a request without a valid key is refused with 403 (except
//!   `/login`, `/readyz` and `/metrics`).
//! - A result belongs to the key (or user) that submitted it: only that key and admins see it.
//! - Keys and passwords are compared by their sha256, in constant time, against every entry.
//! - Sessions are random 128-bit tokens (32 lowercase hex), kept **in memory** by their
//!   sha256 with a fixed expiry (`session_ttl_minutes`, default 60): a restart ends every
//!   session, and `/logout` ends one at once.
//! - Open mode (no keys, no users): everyone is the same anonymous, non-admin caller who sees
//!   every result; the `/admin` API is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use super::settings::{ServerSettings, sha256};

/// The owner recorded for submissions in open mode.
pub const OPEN_OWNER: &str = "open";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Owner of what it submits: `key:<name>`, `user:<name>`, or [`OPEN_OWNER`].
    pub owner: String,
    /// Shown as `process_info.username`: the key's name or the user; `""` in open mode.
    pub name: String,
    /// May use the `/admin` API and sees every result.
    pub admin: bool,
    /// Sees every result (admins, and everyone in open mode).
    pub sees_all: bool,
}

impl Principal {
    /// Whether this caller may see what `owner` submitted.
    pub fn may_see(&self, owner: &str) -> bool {
        self.sees_all || self.owner == owner
    }
}

struct Session {
    user: String,
    admin: bool,
    expires: Instant,
}

/// Keys, users and sessions.
pub struct Auth {
    settings: Arc<ServerSettings>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

/// Compare two digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Keys and users from `settings`, no sessions.
    pub fn new(settings: Arc<ServerSettings>) -> Auth {
        Auth {
            settings,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Who sent `headers`; 403 without a valid `apikey` (unless in open mode).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if self.settings.is_open() {
            return Ok(Principal {
                owner: OPEN_OWNER.to_owned(),
                name: String::new(),
                admin: false,
                sees_all: true,
            });
        }
        let key = headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(ApiError::access_denied)?;
        let digest = sha256(key.as_bytes());
        let mut found = None;
        for k in &self.settings.api_keys {
            if same(&k.key_sha256, &digest) {
                found = Some(Principal {
                    owner: format!("key:{}", k.name),
                    name: k.name.clone(),
                    admin: k.admin,
                    sees_all: k.admin,
                });
            }
        }
        if let Some(p) = found {
            return Ok(p);
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        match sessions.get(&digest) {
            Some(s) => Ok(Principal {
                owner: format!("user:{}", s.user),
                name: s.user.clone(),
                admin: s.admin,
                sees_all: s.admin,
            }),
            None => Err(ApiError::access_denied()),
        }
    }

    /// Check a user's password; on success a new session token (32 lowercase hex).
    pub fn login(&self, user: &str, password: &str) -> Option<String> {
        let digest = sha256(password.as_bytes());
        let mut found = None;
        for u in &self.settings.users {
            // Compare every entry, so that timing tells nothing about which users exist.
            let ok = same(&u.password_sha256, &digest);
            if ok && u.user == user {
                found = Some(u);
            }
        }
        let u = found?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.insert(
            sha256(token.as_bytes()),
            Session {
                user: u.user.clone(),
                admin: u.admin,
                expires: Instant::now() + self.ttl(),
            },
        );
        Some(token)
    }

    /// End the session `token`; whether it existed.
    pub fn logout(&self, token: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&sha256(token.as_bytes())).is_some()
    }

    fn ttl(&self) -> Duration {
        self.settings.session_ttl
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal = state.auth.authenticate(&parts.headers)?;
        tracing::Span::current().record("caller", principal.owner.as_str());
        Ok(principal)
    }
}

/// An authenticated admin; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if !principal.admin {
            return Err(ApiError::forbidden(if state.settings.is_open() {
                "The admin API needs an admin key; configure [[server.api_keys]] with admin = true"
            } else {
                "Access denied: this needs an admin key"
            }));
        }
        Ok(Admin(principal))
    }
}
