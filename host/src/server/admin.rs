//! The admin API (admin keys or admin users only): the inventory at run time.
//!
//! | request | what |
//! |---|---|
//! | `GET /admin/plugins` | every plugin: name, role, runtime, source (`config` or `api`), sha256, limits, the workflows that use it, and the API definition when it came from the API |
//! | `PUT /admin/plugins/{name}` | add or replace a plugin; the body is a JSON object with the fields of a `[[plugin]]` table (`name` may be left out) |
//! | `DELETE /admin/plugins/{name}` | remove a plugin that no workflow uses (409 otherwise) |
//! | `GET /admin/workflows` | every workflow |
//! | `PUT /admin/workflows/{name}` | add or replace a workflow (fields of a `[[workflow]]` table) |
//! | `DELETE /admin/workflows/{name}` | remove a workflow (not the default one: 409) |
//! | `POST /admin/modules` | upload a `.wasm` module as the raw body (at most [`MAX_MODULE_BYTES`]); answers `{"sha256", "module": "sha256:<hex>", "size"}`, the `module` value to use in a plugin |
//! | `GET /admin/modules` | the uploaded modules: `[{"sha256", "size"}]` |
//!
//! Changes are validated like the configuration file, recorded, and apply to new submissions
//! at once (see [`super::inventory`]). A refused change answers 400 with every problem, 404
//! for an unknown name, 409 for a conflict; nothing changes then.
//!
//! An admin can define process plugins, which run programs on the server: admin keys are as
//! powerful as write access to the configuration file.

use std::io::Write;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::inventory::{Change, Current, Kind};
use crate::executor::Plugin;
use crate::plugin::{ModuleSource, RuntimeSpec};

/// Largest module `POST /admin/modules` accepts: 64 MiB.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

fn plugin_json(p: &Plugin, current: &Current) -> Value {
    let spec = p.spec();
    let target = match &spec.runtime {
        RuntimeSpec::Wasm { module } => match module {
            ModuleSource::File(path) => json!({ "module": path.display().to_string() }),
            ModuleSource::Builtin { name, .. } => json!({ "module": format!("builtin:{name}") }),
            ModuleSource::Bytes(b) => json!({ "module": format!("<{} bytes>", b.len()) }),
        },
        RuntimeSpec::Process {
            program,
            args,
            env,
            sandbox,
        } => json!({
            "program": program.display().to_string(),
            "args": args,
            "env": env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "sandbox": sandbox.enabled,
            "allow_read": sandbox.read.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "allow_write": sandbox.write.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "allow_network": sandbox.network,
            "allow_unix_sockets": sandbox.unix_sockets,
            "allow_ipc": sandbox.ipc,
        }),
        RuntimeSpec::Webhook { url } => json!({ "url": url }),
    };
    let name = spec.name.as_str();
    let used_by: Vec<&str> = current
        .config
        .workflows
        .iter()
        .filter(|w| w.scanners.contains(&spec.name) || w.post_actions.contains(&spec.name))
        .map(|w| w.name.as_str())
        .collect();
    let api = current.api_defined.get(&(Kind::Plugin, name.to_owned()));
    json!({
        "name": name,
        "role": spec.role,
        "runtime": spec.runtime.kind(),
        "description": spec.description,
        "source": if api.is_some() { "api" } else { "config" },
        "definition": api,
        "target": target,
        "sha256": p.info().sha256,
        "wasm_kind": p.info().wasm_kind,
        "limits": {
            "timeout_ms": spec.limits.timeout.as_millis() as u64,
            "max_memory_bytes": spec.limits.max_memory_bytes,
            "max_stdout_bytes": spec.limits.max_stdout_bytes,
            "max_stderr_bytes": spec.limits.max_stderr_bytes,
            "max_open_files": spec.limits.max_open_files,
            "max_disk_bytes": matches!(spec.runtime, RuntimeSpec::Process { .. })
                .then_some(spec.limits.max_disk_bytes),
            "max_processes": matches!(spec.runtime, RuntimeSpec::Process { .. })
                .then_some(spec.limits.max_processes),
        },
        "workflows": used_by,
    })
}

fn plugins_json(current: &Current) -> Value {
    Value::Array(
        current
            .inventory
            .plugins()
            .map(|p| plugin_json(p, current))
            .collect(),
    )
}

fn workflows_json(current: &Current) -> Value {
    let default = current.inventory.default_workflow();
    Value::Array(
        current
            .config
            .workflows
            .iter()
            .map(|w| {
                let api = current.api_defined.get(&(Kind::Workflow, w.name.clone()));
                json!({
                    "name": w.name,
                    "scanners": w.scanners,
                    "post_actions": w.post_actions,
                    "max_file_size_bytes": w.max_file_size_bytes,
                    "block_results": w.block_results.iter().map(|c| c.value()).collect::<Vec<_>>(),
                    "description": w.description,
                    "default": w.name == default,
                    "source": if api.is_some() { "api" } else { "config" },
                    "definition": api,
                })
            })
            .collect(),
    )
}

/// `GET /admin/plugins`.
pub async fn list_plugins(State(state): State<Arc<AppState>>, _a: Admin) -> Json<Value> {
    Json(plugins_json(&state.inventory.current()))
}

/// `GET /admin/workflows`.
pub async fn list_workflows(State(state): State<Arc<AppState>>, _a: Admin) -> Json<Value> {
    Json(workflows_json(&state.inventory.current()))
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The body must be a JSON object: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("The body must be a JSON object"));
    }
    Ok(v)
}

async fn change(
    state: &AppState,
    admin: &Admin,
    kind: Kind,
    name: String,
    definition: Option<Value>,
) -> Result<Arc<Current>, ApiError> {
    let current = state
        .inventory
        .change(
            &state.store,
            Change {
                kind,
                name,
                definition,
            },
            &admin.0.owner,
        )
        .await?;
    // A plugin or workflow changed here can need more descriptors than the start's check saw.
    super::warn_if_open_files_short(&current.inventory, state.settings.workers);
    crate::executor::log_native_sandbox(current.inventory.plugins().map(|p| &**p), true);
    for warning in current.inventory.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(current)
}

/// `PUT /admin/plugins/{name}`: answers the plugin as `GET /admin/plugins` lists it.
pub async fn put_plugin(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let definition = body_json(&body)?;
    let current = change(&state, &admin, Kind::Plugin, name.clone(), Some(definition)).await?;
    let plugin = current
        .inventory
        .plugin(&name)
        .ok_or_else(|| ApiError::internal("the plugin vanished", &name))?;
    Ok(Json(plugin_json(plugin, &current)))
}

/// `DELETE /admin/plugins/{name}`.
pub async fn delete_plugin(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &admin, Kind::Plugin, name.clone(), None).await?;
    Ok(Json(json!({ "removed": name })))
}

/// `PUT /admin/workflows/{name}`: answers the workflow as `GET /admin/workflows` lists it.
pub async fn put_workflow(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let definition = body_json(&body)?;
    let current = change(
        &state,
        &admin,
        Kind::Workflow,
        name.clone(),
        Some(definition),
    )
    .await?;
    let all = workflows_json(&current);
    let one = all
        .as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == name.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    Ok(Json(one))
}

/// `DELETE /admin/workflows/{name}`.
pub async fn delete_workflow(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    change(&state, &admin, Kind::Workflow, name.clone(), None).await?;
    Ok(Json(json!({ "removed": name })))
}

/// `POST /admin/modules`: store a wasm module (or component) under its sha256.
pub async fn upload_module(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if crate::executor::wasm::detect_binary(&body).is_none() {
        return Err(ApiError::bad_request(
            "The body is not a WebAssembly module or component (it must start with \\0asm)",
        ));
    }
    let sha256 = hex::encode(Sha256::digest(&body));
    let dir = state.inventory.modules_dir().to_owned();
    let name = format!("{sha256}.wasm");
    let size = body.len();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let target = dir.join(&name);
        if target.is_file() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
        tmp.write_all(&body)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&target).map_err(|e| e.error)?;
        std::fs::File::open(&dir)?.sync_all()
    })
    .await
    .expect("storing a module does not panic")
    .map_err(|e| ApiError::internal("cannot store the module", &e))?;
    tracing::info!(sha256, size, by = %admin.0.owner, "module uploaded");
    Ok(Json(json!({
        "sha256": sha256,
        "module": format!("sha256:{sha256}"),
        "size": size,
    })))
}

/// `GET /admin/modules`.
pub async fn list_modules(
    State(state): State<Arc<AppState>>,
    _a: Admin,
) -> Result<Json<Value>, ApiError> {
    let dir = state.inventory.modules_dir().to_owned();
    let list = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Value>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(hex) = name.strip_suffix(".wasm").filter(|h| h.len() == 64) {
                out.push(json!({ "sha256": hex, "size": entry.metadata()?.len() }));
            }
        }
        out.sort_by(|a, b| a["sha256"].as_str().cmp(&b["sha256"].as_str()));
        Ok(out)
    })
    .await
    .expect("listing modules does not panic")
    .map_err(|e| ApiError::internal("cannot list the modules", &e))?;
    Ok(Json(Value::Array(list)))
}
