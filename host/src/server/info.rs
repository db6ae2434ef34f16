//! What the server is and has: `GET /file/rules`, `GET /stat/engines`, `GET /version`,
//! `GET /readyz`, `GET /metrics`, and sessions: `POST /login`, `POST /logout`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use crate::plugin::Role;
use crate::result::iso_millis;

/// `GET /file/rules`: `[{"name", "max_file_size", "description", "default"}]`, the default
/// workflow first.
pub async fn rules(State(state): State<Arc<AppState>>, _p: Principal) -> Json<Value> {
    let current = state.inventory.current();
    let default = current.inventory.default_workflow().to_owned();
    let mut rules: Vec<Value> = current
        .inventory
        .workflows()
        .map(|w| {
            json!({
                "name": w.spec.name,
                "max_file_size": w.spec.max_file_size_bytes,
                "description": w.spec.description,
                "default": w.spec.name == default,
            })
        })
        .collect();
    rules.sort_by_key(|r| !r["default"].as_bool().unwrap_or(false));
    Json(Value::Array(rules))
}

/// `GET /stat/engines`: one object per plugin, with MetaDefender's fields (`active`,
/// `def_time`, `download_progress`, `download_time`, `eng_id`, `eng_name`, `eng_type`,
/// `eng_ver`, `engine_type`, `state`, `type`) and Cordon's (`role`, `runtime`, `sha256`,
/// `description`). `def_time` and `download_time` are when the plugin's inventory was put
/// in force; `state` is `production` for every loaded plugin.
pub async fn engines(State(state): State<Arc<AppState>>, _p: Principal) -> Json<Value> {
    let current = state.inventory.current();
    let loaded = iso_millis(current.loaded_at);
    let engines: Vec<Value> = current
        .inventory
        .plugins()
        .map(|p| {
            let runtime = p.runtime().to_string();
            let info = p.info();
            json!({
                "active": true,
                "def_time": loaded,
                "download_progress": 100,
                "download_time": loaded,
                "eng_id": p.engine_id(),
                "eng_name": p.name().as_str(),
                "eng_type": format!("Cordon {runtime} plugin"),
                "eng_ver": info.sha256.as_deref().map(|s| s[..12].to_owned())
                    .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
                "engine_type": match p.spec().role { Role::Scanner => "av", Role::PostAction => "post_action" },
                "state": "production",
                "type": "engine",
                "role": p.spec().role,
                "runtime": runtime,
                "sha256": info.sha256,
                "description": p.spec().description,
            })
        })
        .collect();
    Json(Value::Array(engines))
}

/// `GET /version`: `{"product_id": "Cordon", "version": "<cordon version>"}`.
pub async fn version(_p: Principal) -> Json<Value> {
    Json(json!({ "product_id": "Cordon", "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /readyz`: 200 once the inventory is loaded and the database answers; 503 before and
/// during shutdown. Needs no key.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.is_accepting() && state.store.ping().await {
        Ok(Json(json!({ "ready": true })))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready"))
    }
}

/// `GET /metrics`: Prometheus text format. Needs no key (it holds counts, not results).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

/// `POST /login` with `{"user", "password"}`: `{"session_id"}` to send as `apikey`; 403
/// `{"err": "Failed to login"}` otherwise.
pub async fn login(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("Send {\"user\": ..., \"password\": ...} as JSON"))?;
    let (Some(user), Some(password)) = (v["user"].as_str(), v["password"].as_str()) else {
        return Err(ApiError::bad_request(
            "Send {\"user\": ..., \"password\": ...} as JSON",
        ));
    };
    match state.auth.login(user, password) {
        Some(token) => {
            tracing::info!(user, "logged in");
            Ok(Json(json!({ "session_id": token })))
        }
        None => {
            tracing::warn!(user, "failed login");
            Err(ApiError::forbidden("Failed to login"))
        }
    }
}

/// `POST /logout` with the session in `apikey`: `{"response": "Logout success"}`; 400 when
/// the header holds no live session.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let token = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if state.auth.logout(token) {
        Ok(Json(json!({ "response": "Logout success" })))
    } else {
        Err(ApiError::bad_request(
            "Invalid session: send the session_id as the apikey header",
        ))
    }
}
