//! `cordon plugin check FILE.wasm`: what a wasm binary is and whether the host accepts it.
//!
//! The verdict is the executor's own: the binary goes through
//! [`WasmRuntime::prepare_bytes`] (validate, compile or take from the cache, check imports and
//! exports against the role, link against WASI, pre-instantiate), once per role checked. So a
//! binary that `check` accepts loads in `cordon serve`, and one it refuses is refused there with
//! the same reason. Around that verdict the report lists, for people: the kind of binary, every
//! import and whether the sandbox provides it, every export, the size and sha256, the time to
//! compile and the time to load from the compiled-module cache.
//!
//! Without a role, both roles are checked and the binary is accepted when the host accepts it
//! in at least one; with a role, it must be accepted in that one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use super::{ToolError, ToolHost, human_bytes};
use crate::executor::wasm::{
    BinaryKind, PLUGIN_TYPES_INTERFACE, WASI_P1_MODULE, WasmInfo, WasmRuntime, detect_binary,
};
use crate::plugin::Role;

/// The WASI 0.2 interfaces that the host's component linker provides
/// (`wasmtime_wasi::p2::add_to_linker_async`: wasi:io, clocks, filesystem, random, cli and
/// sockets). The sockets interfaces link, but a plugin's context allows no network, so every
/// socket operation fails. Any 0.2.x version of them links.
pub const WASI_P2_INTERFACES: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:sockets/tcp",
    "wasi:sockets/udp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/instance-network",
    "wasi:sockets/network",
    "wasi:sockets/ip-name-lookup",
];

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The role to check for; `None` checks both.
    pub role: Option<Role>,
    /// A data directory whose compiled-module cache to use; `None` uses a fresh temporary one,
    /// so that the compile time is measured.
    pub data_dir: Option<PathBuf>,
}

/// One import of the binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// `module::name` for a core module (`wasi_snapshot_preview1::fd_write`), the interface
    /// for a component (`wasi:cli/stdin@0.2.6`).
    pub name: String,
    /// Whether the sandbox provides it.
    pub provided: bool,
}

/// The host's answer for one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleCheck {
    /// The role.
    pub role: Role,
    /// Whether the host loads the binary for a plugin of this role.
    pub accepted: bool,
    /// How the host calls it in this role, when accepted: command module, command component,
    /// scanner-world component, post-action-world component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The host's reason, when refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The file checked.
    pub file: PathBuf,
    /// Its size in bytes.
    pub size_bytes: usize,
    /// sha256 of its bytes, lowercase hex (the name of its compiled-module cache entry).
    pub sha256: String,
    /// `module` or `component` by its header; `None` when it is not WebAssembly.
    pub binary: Option<&'static str>,
    /// Its imports; empty when it could not be parsed.
    pub imports: Vec<Import>,
    /// Its exports; empty when it could not be parsed.
    pub exports: Vec<String>,
    /// The linear memory it needs just to start (its initial memory), in bytes: a plugin's
    /// `max_memory_bytes` must be at least this, or the host refuses to load it. Absent when
    /// not known before instantiation, or when it could not be compiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_memory_bytes: Option<u64>,
    /// The host's answer for each role checked.
    pub roles: Vec<RoleCheck>,
    /// Time to compile, validate, link and pre-instantiate it, in milliseconds (absent when it
    /// could not be compiled, or came from the cache of `--data-dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_ms: Option<f64>,
    /// Time to load it again from the compiled-module cache, link and pre-instantiate it, in
    /// milliseconds: what every later start of the host pays.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_load_ms: Option<f64>,
    /// Whether the host accepts it: in the role asked for, or in at least one role.
    pub accepted: bool,
}

impl CheckReport {
    /// The roles the host accepts it in.
    pub fn accepted_roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.roles.iter().filter(|r| r.accepted).map(|r| r.role)
    }

    /// The host's reason for the first role it refuses, if any.
    pub fn first_refusal(&self) -> Option<&str> {
        self.roles.iter().find_map(|r| r.reason.as_deref())
    }

    /// A report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.file.display());
        let binary = match self.binary {
            Some("module") => "core module (wasm32-wasip1)",
            Some("component") => "component (wasm32-wasip2)",
            _ => "not WebAssembly",
        };
        let _ = writeln!(
            out,
            "  binary          {binary}, {}, sha256 {}",
            human_bytes(self.size_bytes as u64),
            self.sha256
        );
        for r in &self.roles {
            let label = format!("as {}", r.role);
            match (&r.kind, &r.reason) {
                (Some(kind), _) => {
                    let _ = writeln!(out, "  {label:<16}accepted: {kind}");
                }
                (None, Some(reason)) => {
                    let _ = writeln!(out, "  {label:<16}REFUSED: {reason}");
                }
                (None, None) => {}
            }
        }
        if let Some(bytes) = self.initial_memory_bytes {
            let _ = writeln!(
                out,
                "  memory          {} to start (its initial memory): max_memory_bytes must be \
                 at least {bytes}",
                human_bytes(bytes)
            );
        }
        if let Some(ms) = self.compile_ms {
            let _ = writeln!(
                out,
                "  compile         {ms:.1} ms (validate, compile, link, pre-instantiate)"
            );
        }
        if let Some(ms) = self.cached_load_ms {
            let _ = writeln!(
                out,
                "  cached load     {ms:.1} ms (from the compiled-module cache)"
            );
        }
        let missing = self.imports.iter().filter(|i| !i.provided).count();
        let _ = writeln!(
            out,
            "  imports ({}{}):",
            self.imports.len(),
            if missing > 0 {
                format!(", {missing} not provided by the sandbox")
            } else {
                String::new()
            }
        );
        for import in &self.imports {
            let mark = if import.provided {
                "provided "
            } else {
                "NOT PROVIDED"
            };
            let _ = writeln!(out, "    {mark:<12} {}", import.name);
        }
        let _ = writeln!(out, "  exports ({}):", self.exports.len());
        for export in &self.exports {
            let _ = writeln!(out, "    {export}");
        }
        if self.accepted {
            let roles: Vec<String> = self.accepted_roles().map(|r| r.to_string()).collect();
            let _ = writeln!(
                out,
                "accepted: the host loads it as a {}",
                roles.join(" and as a ")
            );
        } else {
            let _ = writeln!(
                out,
                "refused: {}",
                self.first_refusal().unwrap_or("the host does not load it")
            );
        }
        out
    }
}

/// Check the wasm binary at `path`.
pub fn check_file(path: &Path, options: &CheckOptions) -> Result<CheckReport, ToolError> {
    let bytes = std::fs::read(path).map_err(|source| ToolError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let host = ToolHost::new(options.data_dir.as_deref())?;
    Ok(check_bytes(
        host.executor.wasm(),
        path,
        &bytes,
        options.role,
    ))
}

/// Check `bytes` (read from `file`) with `runtime`, for `role` or for both roles.
pub fn check_bytes(
    runtime: &WasmRuntime,
    file: &Path,
    bytes: &[u8],
    role: Option<Role>,
) -> CheckReport {
    let roles = match role {
        Some(role) => vec![role],
        None => vec![Role::Scanner, Role::PostAction],
    };
    let mut checks = Vec::new();
    let mut info: Option<WasmInfo> = None;
    let mut first_ms = None;
    let mut first_from_cache = None;
    let mut cached_ms = None;
    for (i, role) in roles.iter().enumerate() {
        let started = Instant::now();
        let result = runtime.prepare_bytes(bytes, *role);
        let ms = millis(started);
        if i == 0 {
            first_ms = Some(ms);
        }
        match result {
            Ok((_, loaded)) => {
                if i == 0 {
                    first_from_cache = Some(loaded.from_cache);
                }
                if loaded.from_cache && cached_ms.is_none() {
                    cached_ms = Some(ms);
                }
                checks.push(RoleCheck {
                    role: *role,
                    accepted: true,
                    kind: Some(loaded.kind.to_string()),
                    reason: None,
                });
                info.get_or_insert(loaded);
            }
            Err(reason) => checks.push(RoleCheck {
                role: *role,
                accepted: false,
                kind: None,
                reason: Some(reason),
            }),
        }
    }
    // Time a load from the cache when none was timed yet (the first load compiled).
    if cached_ms.is_none()
        && let Some(accepted) = checks.iter().find(|c| c.accepted)
    {
        let started = Instant::now();
        if let Ok((_, loaded)) = runtime.prepare_bytes(bytes, accepted.role) {
            let ms = millis(started);
            if loaded.from_cache {
                cached_ms = Some(ms);
            }
        }
    }
    // The first load compiled when it said so, or when it failed after compiling (a later
    // load found the cache entry it wrote).
    let compiled_first = match first_from_cache {
        Some(from_cache) => !from_cache,
        None => info.as_ref().is_some_and(|i| i.from_cache),
    };
    let compile_ms = if compiled_first { first_ms } else { None };
    if first_from_cache == Some(true) {
        cached_ms = first_ms;
    }

    let kind = detect_binary(bytes);
    let (imports, exports) = match &info {
        Some(info) => (
            info.imports
                .iter()
                .map(|name| ImportName::parse(kind, name))
                .collect(),
            info.exports.clone(),
        ),
        None => list_interface(runtime.engine(), bytes, kind).unwrap_or_default(),
    };
    let mut probe = ImportProbe::new(runtime.engine());
    let imports = imports
        .into_iter()
        .map(|import| Import {
            provided: probe.provides(&import),
            name: import.to_string(),
        })
        .collect();
    let accepted = checks.iter().any(|c| c.accepted);
    let initial_memory_bytes = info.as_ref().and_then(|i| i.initial_memory_bytes);
    CheckReport {
        file: file.to_path_buf(),
        size_bytes: bytes.len(),
        sha256: hex::encode(Sha256::digest(bytes)),
        binary: kind.map(|k| match k {
            BinaryKind::Module => "module",
            BinaryKind::Component => "component",
        }),
        imports,
        exports,
        initial_memory_bytes,
        roles: checks,
        compile_ms,
        cached_load_ms: cached_ms,
        accepted,
    }
}

fn millis(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// An import, by the kind of binary that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ImportName {
    /// A core module's import: module and field.
    Module { module: String, name: String },
    /// A component's import: an interface or a function.
    Component(String),
}

impl ImportName {
    /// An import as [`WasmInfo`] lists it: `module::name` for a module.
    fn parse(kind: Option<BinaryKind>, text: &str) -> ImportName {
        match (kind, text.split_once("::")) {
            (Some(BinaryKind::Module), Some((module, name))) => ImportName::Module {
                module: module.to_owned(),
                name: name.to_owned(),
            },
            _ => ImportName::Component(text.to_owned()),
        }
    }
}

impl std::fmt::Display for ImportName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportName::Module { module, name } => write!(f, "{module}::{name}"),
            ImportName::Component(name) => f.write_str(name),
        }
    }
}

/// Imports and exports of a binary the host refused, read by compiling it with the host's
/// engine; `None` when it is not valid WebAssembly.
fn list_interface(
    engine: &Engine,
    bytes: &[u8],
    kind: Option<BinaryKind>,
) -> Option<(Vec<ImportName>, Vec<String>)> {
    match kind? {
        BinaryKind::Module => {
            let module = Module::new(engine, bytes).ok()?;
            let imports = module
                .imports()
                .map(|i| ImportName::Module {
                    module: i.module().to_owned(),
                    name: i.name().to_owned(),
                })
                .collect();
            let exports = module.exports().map(|e| e.name().to_owned()).collect();
            Some((imports, exports))
        }
        BinaryKind::Component => {
            let component = Component::new(engine, bytes).ok()?;
            let ty = component.component_type();
            let imports = ty
                .imports(engine)
                .map(|(name, _)| ImportName::Component(name.to_owned()))
                .collect();
            let exports = ty
                .exports(engine)
                .map(|(name, _)| name.to_owned())
                .collect();
            Some((imports, exports))
        }
    }
}

/// Tells whether the sandbox provides an import. A module's import is looked up in a linker
/// set up exactly like the host's (`wasmtime_wasi::p1::add_to_linker_async`); a component's is
/// provided when it is Cordon's own types interface or a WASI 0.2 interface of
/// [`WASI_P2_INTERFACES`].
struct ImportProbe {
    p1: Option<(Linker<WasiP1Ctx>, Store<WasiP1Ctx>)>,
}

impl ImportProbe {
    fn new(engine: &Engine) -> ImportProbe {
        let mut linker = Linker::new(engine);
        let p1 = wasmtime_wasi::p1::add_to_linker_async(&mut linker, |ctx: &mut WasiP1Ctx| ctx)
            .ok()
            .map(|()| {
                let store = Store::new(engine, WasiCtxBuilder::new().build_p1());
                (linker, store)
            });
        ImportProbe { p1 }
    }

    fn provides(&mut self, import: &ImportName) -> bool {
        match import {
            ImportName::Module { module, name } => {
                module == WASI_P1_MODULE
                    && self.p1.as_mut().is_some_and(|(linker, store)| {
                        linker.get(&mut *store, module, name).is_ok()
                    })
            }
            ImportName::Component(name) => {
                name == PLUGIN_TYPES_INTERFACE || wasi_p2_interface_is_provided(name)
            }
        }
    }
}

/// Whether `name` (`wasi:cli/stdin@0.2.6`) is a WASI 0.2 interface the host links.
fn wasi_p2_interface_is_provided(name: &str) -> bool {
    let Some((interface, version)) = name.split_once('@') else {
        return false;
    };
    WASI_P2_INTERFACES.contains(&interface)
        && version
            .strip_prefix("0.2.")
            .is_some_and(|patch| !patch.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_p2_interfaces_are_recognised_by_name_and_version() {
        assert!(wasi_p2_interface_is_provided("wasi:cli/stdin@0.2.0"));
        assert!(wasi_p2_interface_is_provided(
            "wasi:filesystem/preopens@0.2.12"
        ));
        assert!(!wasi_p2_interface_is_provided("wasi:cli/stdin"));
        assert!(!wasi_p2_interface_is_provided("wasi:cli/stdin@0.3.0"));
        assert!(!wasi_p2_interface_is_provided(
            "wasi:http/outgoing-handler@0.2.0"
        ));
        assert!(!wasi_p2_interface_is_provided("acme:evil/net@0.2.0"));
    }

    #[test]
    fn module_imports_are_parsed_from_the_host_listing() {
        assert_eq!(
            ImportName::parse(Some(BinaryKind::Module), "wasi_snapshot_preview1::fd_write"),
            ImportName::Module {
                module: "wasi_snapshot_preview1".into(),
                name: "fd_write".into()
            }
        );
        assert_eq!(
            ImportName::parse(Some(BinaryKind::Component), "wasi:cli/stdin@0.2.6"),
            ImportName::Component("wasi:cli/stdin@0.2.6".into())
        );
    }
}
