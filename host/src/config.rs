//! Configuration: plugins and workflows in a TOML file, validated once at load into typed
//! values. Every problem found is reported at once, each naming the plugin or workflow, the
//! field and what to do.
//!
//! ```toml
//! default_workflow = "File scan"          # optional; the first workflow otherwise
//!
//! [[plugin]]
//! name = "EICAR"                          # 1 to 16 printable ASCII characters, unique
//! role = "scanner"                        # or "post_action"
//! runtime = "wasm"                        # "wasm", "process" or "webhook"
//! module = "plugins/eicar.wasm"           # wasm: a file (relative to this file) or builtin:<name>
//! timeout_ms = 30000                      # optional limits, defaults shown
//! max_memory_bytes = 268435456
//! max_stdout_bytes = 65536
//! max_stderr_bytes = 65536
//! max_open_files = 256
//!                                         # runtime = "process" also max_disk_bytes = 1073741824
//!                                         # and max_processes = 256
//!
//! [[plugin]]
//! name = "Quarantine"
//! role = "post_action"
//! runtime = "process"
//! command = '"/opt/My Tools/quarantine" --dir /var/quarantine'  # quote a path with spaces
//! inherit_env = ["PATH"]                  # variables copied from Cordon's environment
//! env = { LANG = "C.UTF-8" }              # variables set explicitly
//! allow_write = ["/var/quarantine"]       # the sandbox: trees it may also write, and read;
//! allow_read = ["/opt/My Tools"]          # allow_unix_sockets = true (local daemons' sockets)
//!                                         # and allow_network = true (every socket) default to
//!                                         # false; sandbox = false turns it off
//!
//! [[plugin]]
//! name = "Remote AV"
//! role = "scanner"
//! runtime = "webhook"
//! url = "http://127.0.0.1:9000/scan"
//!
//! [[workflow]]
//! name = "File scan"
//! scanners = ["EICAR", "Remote AV"]
//! post_actions = ["Quarantine"]
//! max_file_size_bytes = 104857600         # default 100 MiB
//! block_results = [1, 2, 3]               # default: every code but 0 and 7
//! ```
//!
//! In a process `command`, `{data_dir}` stands for Cordon's data directory, and a program
//! named `builtin:<script>` is one of the native example plugins shipped inside the binary.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::plugin::{
    Limits, ModuleSource, NativeSandbox, PluginName, PluginSpec, Role, RuntimeKind, RuntimeSpec,
};
use crate::verdict::ResultCode;

/// Default `max_file_size_bytes` of a workflow: 100 MiB (what Assemblyline and clamd use).
pub const DEFAULT_MAX_FILE_SIZE_BYTES: u64 = 100 << 20;

/// Longest workflow name.
pub const MAX_WORKFLOW_NAME: usize = 64;

/// A validated workflow definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSpec {
    /// The rule name clients send (`rule` header) and see (`process_info.profile`).
    pub name: String,
    /// Scanners, run concurrently.
    pub scanners: Vec<PluginName>,
    /// Post actions, run in order after aggregation.
    pub post_actions: Vec<PluginName>,
    /// Larger files are refused.
    pub max_file_size_bytes: u64,
    /// Overall results that block the file.
    pub block_results: BTreeSet<ResultCode>,
    /// Free text for people.
    pub description: String,
}

impl WorkflowSpec {
    /// The results that block by default: every engine result but No Threat Detected (0) and
    /// Skipped Clean (7). In particular Failed (3) and Not Scanned (10) block: a file that was
    /// not fully scanned is never let through as if it were clean.
    pub fn default_block_results() -> BTreeSet<ResultCode> {
        ResultCode::all()
            .filter(|c| c.is_engine_result())
            .filter(|c| *c != ResultCode::CLEAN && *c != ResultCode::SKIPPED_CLEAN)
            .collect()
    }
}

impl WorkflowSpec {
    /// What this workflow's native post actions (`post_actions`, their specs) cannot do with a
    /// file it accepts: each writes files of at most its `max_disk_bytes`, and a post action
    /// that copies the file it is given (a quarantine) fails, `disk_limit`, on a file larger
    /// than that. A warning, not a refusal: a post action that writes no copy is fine.
    pub fn post_action_warnings<'a>(
        &self,
        post_actions: impl IntoIterator<Item = &'a PluginSpec>,
    ) -> Vec<String> {
        post_actions
            .into_iter()
            .filter(|p| matches!(p.runtime, RuntimeSpec::Process { .. }))
            .filter(|p| p.limits.max_disk_bytes < self.max_file_size_bytes)
            .map(|p| {
                format!(
                    "workflow \"{}\" accepts files of up to {} bytes (max_file_size_bytes), but \
                     its post action \"{}\" may write files of at most {} bytes \
                     (max_disk_bytes): a copy of a larger file would fail; raise its \
                     max_disk_bytes if it copies the file",
                    self.name, self.max_file_size_bytes, p.name, p.limits.max_disk_bytes
                )
            })
            .collect()
    }
}

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Every plugin, in file order.
    pub plugins: Vec<PluginSpec>,
    /// Every workflow, in file order.
    pub workflows: Vec<WorkflowSpec>,
    /// The workflow used when a submission names none.
    pub default_workflow: String,
    /// The `[server]` table (`cordon serve`); defaults when the file has none.
    pub server: crate::server::settings::ServerSettings,
}

/// Configuration that was refused: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_problems(.source_name, .problems))]
pub struct ConfigError {
    /// The file (or `built-in default`).
    pub source_name: String,
    /// One line per problem.
    pub problems: Vec<String>,
}

fn render_problems(source: &str, problems: &[String]) -> String {
    let mut s = format!(
        "invalid configuration in {source} ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
}

/// What relative paths and placeholders resolve against.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// Relative module paths and relative programs resolve against this directory (the
    /// configuration file's own).
    pub base_dir: PathBuf,
    /// Cordon's data directory (`{data_dir}` in commands).
    pub data_dir: PathBuf,
    /// Where the built-in native scripts are (`builtin:<script>` programs).
    pub builtin_scripts_dir: PathBuf,
    /// Cordon's configuration file, absolute, when it was read from one: it holds the API keys
    /// and users, so no native plugin's sandbox may reach it.
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_workflow: Option<String>,
    #[serde(default)]
    plugin: Vec<toml::Table>,
    #[serde(default)]
    workflow: Vec<toml::Table>,
    server: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    role: Role,
    runtime: RuntimeKind,
    module: Option<String>,
    command: Option<String>,
    url: Option<String>,
    #[serde(default)]
    inherit_env: Vec<String>,
    #[serde(default)]
    env: toml::Table,
    sandbox: Option<bool>,
    #[serde(default)]
    allow_read: Vec<String>,
    #[serde(default)]
    allow_write: Vec<String>,
    allow_network: Option<bool>,
    allow_unix_sockets: Option<bool>,
    allow_ipc: Option<bool>,
    timeout_ms: Option<u64>,
    max_memory_bytes: Option<u64>,
    max_stdout_bytes: Option<u64>,
    max_stderr_bytes: Option<u64>,
    max_open_files: Option<u64>,
    max_disk_bytes: Option<u64>,
    max_processes: Option<u64>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkflow {
    name: String,
    #[serde(default)]
    scanners: Vec<String>,
    #[serde(default)]
    post_actions: Vec<String>,
    max_file_size_bytes: Option<u64>,
    block_results: Option<Vec<i64>>,
    #[serde(default)]
    description: String,
}

/// Parse and validate configuration text. `source_name` names it in errors.
pub fn parse(text: &str, source_name: &str, ctx: &LoadContext) -> Result<Config, ConfigError> {
    let refuse = |problems: Vec<String>| ConfigError {
        source_name: source_name.to_owned(),
        problems,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| refuse(vec![e.to_string()]))?;
    let mut problems = Vec::new();

    let mut plugins = Vec::new();
    let mut names = HashSet::new();
    for (i, table) in raw.plugin.into_iter().enumerate() {
        let label = entry_label("plugin", i, &table);
        let raw: RawPlugin = match table.try_into() {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(format!("{label}: {}", one_line(&e.to_string())));
                continue;
            }
        };
        match plugin_spec(raw, ctx) {
            Ok(spec) => {
                if !names.insert(spec.name.clone()) {
                    problems.push(format!(
                        "{label}: duplicate name; every plugin needs a unique name"
                    ));
                } else {
                    plugins.push(spec);
                }
            }
            Err(errs) => problems.extend(errs.into_iter().map(|e| format!("{label}: {e}"))),
        }
    }

    let mut workflows: Vec<WorkflowSpec> = Vec::new();
    for (i, table) in raw.workflow.into_iter().enumerate() {
        let label = entry_label("workflow", i, &table);
        let raw: RawWorkflow = match table.try_into() {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(format!("{label}: {}", one_line(&e.to_string())));
                continue;
            }
        };
        match workflow_spec(raw, &plugins) {
            Ok(spec) => {
                if workflows.iter().any(|w| w.name == spec.name) {
                    problems.push(format!(
                        "{label}: duplicate name; workflow names are unique"
                    ));
                } else {
                    workflows.push(spec);
                }
            }
            Err(errs) => problems.extend(errs.into_iter().map(|e| format!("{label}: {e}"))),
        }
    }

    let default_workflow = match raw.default_workflow {
        Some(name) => {
            if !workflows.iter().any(|w| w.name == name) && problems.is_empty() {
                problems.push(format!("default_workflow: no workflow is named {name:?}"));
            }
            name
        }
        None => match workflows.first() {
            Some(w) => w.name.clone(),
            None => {
                if problems.is_empty() {
                    problems.push("no [[workflow]] is defined; define at least one".into());
                }
                String::new()
            }
        },
    };

    let server = match raw.server {
        None => crate::server::settings::ServerSettings::default(),
        Some(table) => {
            crate::server::settings::ServerSettings::from_table(table).unwrap_or_else(|errs| {
                problems.extend(errs.into_iter().map(|e| format!("[server]: {e}")));
                Default::default()
            })
        }
    };

    if problems.is_empty() {
        Ok(Config {
            plugins,
            workflows,
            default_workflow,
            server,
        })
    } else {
        Err(refuse(problems))
    }
}

/// Read and validate a configuration file; relative paths resolve against its directory.
pub fn load_file(
    path: &Path,
    data_dir: &Path,
    builtin_scripts_dir: &Path,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: path.display().to_string(),
        problems: vec![format!("cannot read the file: {e}")],
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let ctx = LoadContext {
        base_dir: std::path::absolute(&base_dir).unwrap_or(base_dir),
        data_dir: data_dir.to_owned(),
        builtin_scripts_dir: builtin_scripts_dir.to_owned(),
        config_file: std::path::absolute(path).ok(),
    };
    parse(&text, &path.display().to_string(), &ctx)
}

/// Validate one plugin definition given on its own (the fields of one `[[plugin]]` table, as
/// the inventory API receives them) with exactly the rules of the configuration file. Every
/// problem is returned; uniqueness of the name is the caller's to check.
pub fn plugin_from_table(table: toml::Table, ctx: &LoadContext) -> Result<PluginSpec, Vec<String>> {
    let raw: RawPlugin = table
        .try_into()
        .map_err(|e: toml::de::Error| vec![one_line(&e.to_string())])?;
    plugin_spec(raw, ctx)
}

/// Validate one workflow definition given on its own (the fields of one `[[workflow]]`
/// table) against `plugins`, with exactly the rules of the configuration file. Every problem
/// is returned; uniqueness of the name is the caller's to check.
pub fn workflow_from_table(
    table: toml::Table,
    plugins: &[PluginSpec],
) -> Result<WorkflowSpec, Vec<String>> {
    let raw: RawWorkflow = table
        .try_into()
        .map_err(|e: toml::de::Error| vec![one_line(&e.to_string())])?;
    workflow_spec(raw, plugins)
}

/// `plugin "name"` when the entry has a string name, else `plugin #n`.
fn entry_label(kind: &str, index: usize, table: &toml::Table) -> String {
    match table.get("name").and_then(|v| v.as_str()) {
        Some(name) => format!("{kind} {name:?}"),
        None => format!("{kind} #{}", index + 1),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Validate one `[[plugin]]`; every problem is returned.
fn plugin_spec(raw: RawPlugin, ctx: &LoadContext) -> Result<PluginSpec, Vec<String>> {
    let mut problems = Vec::new();
    let name = PluginName::new(&raw.name)
        .map_err(|e| problems.push(format!("field `name`: {e}")))
        .ok();

    // Exactly the field of the chosen runtime.
    let fields = [
        ("module", raw.module.is_some(), RuntimeKind::Wasm),
        ("command", raw.command.is_some(), RuntimeKind::Process),
        ("url", raw.url.is_some(), RuntimeKind::Webhook),
    ];
    for (field, present, kind) in fields {
        if present && kind != raw.runtime {
            problems.push(format!(
                "field `{field}` is for runtime = \"{kind}\", but this plugin has runtime = \"{}\"",
                raw.runtime
            ));
        }
        if !present && kind == raw.runtime {
            problems.push(format!(
                "field `{field}` is missing; runtime = \"{kind}\" needs it"
            ));
        }
    }
    if raw.runtime != RuntimeKind::Process && (!raw.inherit_env.is_empty() || !raw.env.is_empty()) {
        problems.push(format!(
            "fields `inherit_env` and `env` are for runtime = \"process\" only; a {} plugin gets no environment",
            raw.runtime
        ));
    }
    let sandbox_fields = raw.sandbox.is_some()
        || !raw.allow_read.is_empty()
        || !raw.allow_write.is_empty()
        || raw.allow_network.is_some()
        || raw.allow_unix_sockets.is_some()
        || raw.allow_ipc.is_some();
    // Why a field of native plugins is not for this one: `wasm`, the reason for a wasm plugin.
    let not_native = |wasm: &str| -> String {
        match raw.runtime {
            RuntimeKind::Wasm => wasm.to_owned(),
            _ => "a webhook plugin runs elsewhere".to_owned(),
        }
    };
    if raw.runtime != RuntimeKind::Process && sandbox_fields {
        problems.push(format!(
            "fields `sandbox`, `allow_read`, `allow_write`, `allow_network`, `allow_unix_sockets` and `allow_ipc` are for runtime = \"process\" only; {}",
            not_native("a wasm plugin is always sandboxed and sees only the file it scans")
        ));
    }
    if raw.runtime != RuntimeKind::Process && raw.max_disk_bytes.is_some() {
        problems.push(format!(
            "field `max_disk_bytes` is for runtime = \"process\" only; {}",
            not_native("a wasm plugin writes nothing")
        ));
    }
    if raw.runtime != RuntimeKind::Process && raw.max_processes.is_some() {
        problems.push(format!(
            "field `max_processes` is for runtime = \"process\" only; {}",
            not_native("a wasm plugin is one instance, and starts no process or thread")
        ));
    }
    let sandbox = native_sandbox(&raw, ctx, &mut problems);

    let limits = limits(&raw, &mut problems);
    let runtime = match raw.runtime {
        RuntimeKind::Wasm => raw.module.as_deref().and_then(|m| {
            module_source(m, ctx)
                .map(|module| RuntimeSpec::Wasm { module })
                .map_err(|e| problems.push(format!("field `module`: {e}")))
                .ok()
        }),
        RuntimeKind::Process => raw.command.as_deref().and_then(|c| {
            process_spec(c, &raw.inherit_env, &raw.env, sandbox.clone(), ctx)
                .map_err(|e| problems.push(e))
                .ok()
        }),
        RuntimeKind::Webhook => raw.url.clone().map(|url| RuntimeSpec::Webhook { url }),
    };

    match (name, runtime, problems.is_empty()) {
        (Some(name), Some(runtime), true) => Ok(PluginSpec {
            name,
            role: raw.role,
            runtime,
            limits,
            description: raw.description,
        }),
        _ => Err(problems),
    }
}

/// The least `max_open_files`: a plugin's standard streams, its directory and its file, and a
/// few to spare.
const MIN_OPEN_FILES: u64 = 8;
/// The most `max_open_files`.
const MAX_OPEN_FILES: u64 = 65_536;
/// The most `max_processes`: beyond it the limit no longer keeps a fork bomb from the
/// machine's process table (32,768 processes by default).
const MAX_PROCESSES: u64 = 4_096;

fn limits(raw: &RawPlugin, problems: &mut Vec<String>) -> Limits {
    let d = Limits::default();
    let mut positive = |field: &str, value: Option<u64>, default: u64| -> u64 {
        match value {
            Some(0) => {
                problems.push(format!("field `{field}`: must be greater than 0"));
                default
            }
            Some(v) => v,
            None => default,
        }
    };
    let timeout_ms = positive("timeout_ms", raw.timeout_ms, Limits::DEFAULT_TIMEOUT_MS);
    let max_memory_bytes = positive("max_memory_bytes", raw.max_memory_bytes, d.max_memory_bytes);
    let max_stdout = positive(
        "max_stdout_bytes",
        raw.max_stdout_bytes,
        d.max_stdout_bytes as u64,
    );
    let max_stderr = positive(
        "max_stderr_bytes",
        raw.max_stderr_bytes,
        d.max_stderr_bytes as u64,
    );
    let max_open_files = positive(
        "max_open_files",
        raw.max_open_files,
        u64::from(d.max_open_files),
    );
    let max_disk_bytes = positive("max_disk_bytes", raw.max_disk_bytes, d.max_disk_bytes);
    let max_processes = positive(
        "max_processes",
        raw.max_processes,
        u64::from(d.max_processes),
    );
    // A timeout beyond a day is a configuration mistake, not a limit.
    if timeout_ms > 86_400_000 {
        problems.push("field `timeout_ms`: must be at most 86400000 (one day)".into());
    }
    if max_memory_bytes > 4 << 30 {
        problems.push("field `max_memory_bytes`: must be at most 4294967296 (4 GiB)".into());
    }
    for (field, v) in [
        ("max_stdout_bytes", max_stdout),
        ("max_stderr_bytes", max_stderr),
    ] {
        if v > 64 << 20 {
            problems.push(format!(
                "field `{field}`: must be at most 67108864 (64 MiB)"
            ));
        }
    }
    // Below about 8 a plugin cannot hold its standard streams and its file; above 65536 the
    // cap no longer protects the host's own descriptors.
    if !(MIN_OPEN_FILES..=MAX_OPEN_FILES).contains(&max_open_files) {
        problems.push(format!(
            "field `max_open_files`: must be from {MIN_OPEN_FILES} to {MAX_OPEN_FILES}"
        ));
    }
    if max_processes > MAX_PROCESSES {
        problems.push(format!(
            "field `max_processes`: must be at most {MAX_PROCESSES}"
        ));
    }
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        max_memory_bytes,
        max_stdout_bytes: max_stdout as usize,
        max_stderr_bytes: max_stderr as usize,
        max_open_files: u32::try_from(max_open_files.clamp(MIN_OPEN_FILES, MAX_OPEN_FILES))
            .expect("clamped to at most 65536"),
        max_disk_bytes,
        max_processes: u32::try_from(max_processes.min(MAX_PROCESSES)).expect("at most 4096"),
    }
}

fn module_source(module: &str, ctx: &LoadContext) -> Result<ModuleSource, String> {
    if let Some(name) = module.strip_prefix("builtin:") {
        return crate::builtin::module(name)
            .map(|bytes| ModuleSource::Builtin {
                name: bytes.0,
                bytes: bytes.1,
            })
            .ok_or_else(|| {
                format!(
                    "there is no built-in module {name:?}; the built-in modules are: {}",
                    crate::builtin::module_names().join(", ")
                )
            });
    }
    let path = ctx.base_dir.join(module);
    if !path.is_file() {
        return Err(format!(
            "module file {} does not exist (relative paths start at the configuration file's directory)",
            path.display()
        ));
    }
    Ok(ModuleSource::File(path))
}

/// The sandbox fields of a process plugin: `{data_dir}` replaced in each path, and a relative
/// path taken from the configuration file's directory, as programs are.
fn native_sandbox(raw: &RawPlugin, ctx: &LoadContext, problems: &mut Vec<String>) -> NativeSandbox {
    let paths = |field: &str, entries: &[String], problems: &mut Vec<String>| -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.replace("{data_dir}", &ctx.data_dir.display().to_string());
            if entry.is_empty() {
                problems.push(format!("field `{field}`: an entry is empty; give a path"));
                continue;
            }
            let path = ctx.base_dir.join(entry);
            // Checked again at each scan on the resolved paths (links and all); this names the
            // mistake before anything runs.
            if ctx.data_dir.starts_with(&path) {
                problems.push(format!(
                    "field `{field}`: {} holds Cordon's data directory ({}), with every file it \
                     scans, its results and its database; allow a narrower directory, such as \
                     \"{{data_dir}}/quarantine\"",
                    path.display(),
                    ctx.data_dir.display()
                ));
                continue;
            }
            if let Some(file) = &ctx.config_file
                && holds(&path, file)
            {
                problems.push(format!(
                    "field `{field}`: {} holds Cordon's configuration file ({}), with its API \
                     keys and users; allow a narrower directory, or keep the configuration \
                     elsewhere (such as /etc/cordon/)",
                    path.display(),
                    file.display()
                ));
                continue;
            }
            out.push(path);
        }
        out
    };
    let enabled = raw.sandbox.unwrap_or(true);
    if enabled
        && raw.runtime == RuntimeKind::Process
        && let Some(file) = &ctx.config_file
        && let Some(tree) = crate::executor::every_native_plugin_reads(file)
    {
        problems.push(format!(
            "Cordon's configuration file ({}), with its API keys and users, is under {}, which \
             every sandboxed native plugin may read; keep it elsewhere (such as /etc/cordon/)",
            file.display(),
            tree.display()
        ));
    }
    let read = paths("allow_read", &raw.allow_read, problems);
    let write = paths("allow_write", &raw.allow_write, problems);
    let network = raw.allow_network.unwrap_or(false);
    let unix_sockets = raw.allow_unix_sockets.unwrap_or(false);
    let ipc = raw.allow_ipc.unwrap_or(false);
    if !enabled && (!read.is_empty() || !write.is_empty() || network || unix_sockets || ipc) {
        problems.push(
            "fields `allow_read`, `allow_write`, `allow_network`, `allow_unix_sockets` and \
             `allow_ipc` widen the sandbox, but `sandbox = false` turns it off: the plugin can \
             reach everything Cordon's user can. Remove one or the other"
                .into(),
        );
    }
    NativeSandbox {
        enabled,
        read,
        write,
        network,
        unix_sockets: unix_sockets || network,
        ipc,
    }
}

/// Whether the tree at `tree` holds `file`, as given or as both resolve (links followed).
fn holds(tree: &Path, file: &Path) -> bool {
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    file.starts_with(tree) || resolved(file).starts_with(resolved(tree))
}

fn process_spec(
    command: &str,
    inherit_env: &[String],
    env: &toml::Table,
    sandbox: NativeSandbox,
    ctx: &LoadContext,
) -> Result<RuntimeSpec, String> {
    let command = command.replace("{data_dir}", &ctx.data_dir.display().to_string());
    let mut words = shlex::split(&command).ok_or_else(|| {
        "field `command`: unbalanced quotes; wrap a path that contains spaces in double quotes, \
         e.g. \"/opt/My Tools/scan\" --fast"
            .to_owned()
    })?;
    if words.is_empty() {
        return Err("field `command`: empty; give the program and its arguments".into());
    }
    let program = words.remove(0);
    let program = if let Some(script) = program.strip_prefix("builtin:") {
        if !crate::builtin::script_names().contains(&script) {
            return Err(format!(
                "field `command`: there is no built-in script {script:?}; the built-in scripts are: {}",
                crate::builtin::script_names().join(", ")
            ));
        }
        ctx.builtin_scripts_dir.join(script)
    } else if program.contains('/') {
        ctx.base_dir.join(program)
    } else {
        PathBuf::from(program)
    };
    let mut vars = Vec::new();
    for name in inherit_env {
        if let Ok(value) = std::env::var(name) {
            vars.push((name.clone(), value));
        }
    }
    for (name, value) in env {
        let Some(value) = value.as_str() else {
            return Err(format!("field `env`: {name} must be a string"));
        };
        vars.push((name.clone(), value.to_owned()));
    }
    Ok(RuntimeSpec::Process {
        program,
        args: words,
        env: vars,
        sandbox,
    })
}

fn workflow_spec(raw: RawWorkflow, plugins: &[PluginSpec]) -> Result<WorkflowSpec, Vec<String>> {
    let mut problems = Vec::new();
    if raw.name.is_empty()
        || raw.name.len() > MAX_WORKFLOW_NAME
        || raw.name.chars().any(|c| c.is_control())
    {
        problems.push(format!(
            "field `name`: {:?} must be 1 to {MAX_WORKFLOW_NAME} characters without control characters",
            raw.name
        ));
    }
    let mut resolve = |field: &str, list: &[String], role: Role| -> Vec<PluginName> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for name in list {
            if !seen.insert(name.clone()) {
                problems.push(format!("field `{field}`: {name:?} is listed twice"));
                continue;
            }
            match plugins.iter().find(|p| p.name.as_str() == name) {
                None => problems.push(format!("field `{field}`: no plugin is named {name:?}")),
                Some(p) if p.role != role => problems.push(format!(
                    "field `{field}`: {name:?} is a {}, not a {role}",
                    p.role
                )),
                Some(p) => out.push(p.name.clone()),
            }
        }
        out
    };
    let scanners = resolve("scanners", &raw.scanners, Role::Scanner);
    let post_actions = resolve("post_actions", &raw.post_actions, Role::PostAction);
    let max_file_size_bytes = match raw.max_file_size_bytes {
        Some(0) => {
            problems.push("field `max_file_size_bytes`: must be greater than 0".into());
            0
        }
        Some(v) => v,
        None => DEFAULT_MAX_FILE_SIZE_BYTES,
    };
    let block_results = match raw.block_results {
        None => WorkflowSpec::default_block_results(),
        Some(codes) => codes
            .into_iter()
            .filter_map(|c| match ResultCode::new(c) {
                Some(code) if code.is_engine_result() => Some(code),
                _ => {
                    problems.push(format!(
                        "field `block_results`: {c} is not an engine result code (0 to 23)"
                    ));
                    None
                }
            })
            .collect(),
    };
    if problems.is_empty() {
        Ok(WorkflowSpec {
            name: raw.name,
            scanners,
            post_actions,
            max_file_size_bytes,
            block_results,
            description: raw.description,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> LoadContext {
        LoadContext {
            base_dir: dir.to_owned(),
            data_dir: dir.join("data"),
            builtin_scripts_dir: dir.join("builtin"),
            config_file: None,
        }
    }

    fn problems(text: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.wasm"), b"\0asm\x01\0\0\0").unwrap();
        parse(text, "test.toml", &ctx(dir.path()))
            .expect_err("configuration should be refused")
            .problems
    }

    const GOOD: &str = r#"
        [[plugin]]
        name = "Scan A"
        role = "scanner"
        runtime = "wasm"
        module = "ok.wasm"
        timeout_ms = 1500

        [[plugin]]
        name = "Hook"
        role = "post_action"
        runtime = "webhook"
        url = "http://127.0.0.1:9/x"

        [[plugin]]
        name = "Native"
        role = "scanner"
        runtime = "process"
        command = '"/opt/My Tools/scan" --fast'
        env = { A = "1" }
        max_open_files = 64
        max_disk_bytes = 10485760
        max_processes = 32

        [[workflow]]
        name = "File scan"
        scanners = ["Scan A", "Native"]
        post_actions = ["Hook"]
        block_results = [1, 2]
    "#;

    #[test]
    fn a_good_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let c = parse(GOOD, "t", &ctx(dir.path())).unwrap();
        assert_eq!(c.plugins.len(), 3);
        assert_eq!(c.default_workflow, "File scan");
        assert_eq!(c.plugins[0].limits.timeout, Duration::from_millis(1500));
        assert_eq!(c.plugins[1].limits, Limits::default());
        let RuntimeSpec::Process {
            program, args, env, ..
        } = &c.plugins[2].runtime
        else {
            panic!("process plugin expected")
        };
        assert_eq!(program, Path::new("/opt/My Tools/scan"));
        assert_eq!(args, &["--fast"]);
        assert_eq!(env, &[("A".to_owned(), "1".to_owned())]);
        assert_eq!(c.plugins[2].limits.max_open_files, 64);
        assert_eq!(c.plugins[2].limits.max_disk_bytes, 10 << 20);
        assert_eq!(
            c.plugins[0].limits.max_disk_bytes,
            Limits::DEFAULT_MAX_DISK_BYTES
        );
        assert_eq!(
            c.plugins[0].limits.max_open_files,
            Limits::DEFAULT_MAX_OPEN_FILES
        );
        assert_eq!(c.plugins[2].limits.max_processes, 32);
        let w = &c.workflows[0];
        assert_eq!(w.block_results.len(), 2);
        assert_eq!(w.max_file_size_bytes, DEFAULT_MAX_FILE_SIZE_BYTES);
    }

    #[test]
    fn a_native_post_action_that_could_not_copy_an_accepted_file_is_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
            [[plugin]]
            name = "Quarantine"
            role = "post_action"
            runtime = "process"
            command = "/bin/true"
            max_disk_bytes = 1048576

            [[plugin]]
            name = "Hook"
            role = "post_action"
            runtime = "webhook"
            url = "http://127.0.0.1:9/x"

            [[workflow]]
            name = "Big"
            post_actions = ["Quarantine", "Hook"]
            max_file_size_bytes = 1048577

            [[workflow]]
            name = "Small"
            post_actions = ["Quarantine", "Hook"]
            max_file_size_bytes = 1048576
        "#;
        let c = parse(text, "t", &ctx(dir.path())).unwrap();
        let warnings = |w: &WorkflowSpec| {
            w.post_action_warnings(
                c.plugins
                    .iter()
                    .filter(|p| w.post_actions.contains(&p.name)),
            )
        };
        assert_eq!(
            warnings(&c.workflows[0]),
            vec![
                "workflow \"Big\" accepts files of up to 1048577 bytes (max_file_size_bytes), but \
                 its post action \"Quarantine\" may write files of at most 1048576 bytes \
                 (max_disk_bytes): a copy of a larger file would fail; raise its max_disk_bytes \
                 if it copies the file"
                    .to_owned()
            ]
        );
        assert!(
            warnings(&c.workflows[1]).is_empty(),
            "a file of the limit fits"
        );
    }

    #[test]
    fn a_native_plugin_is_sandboxed_unless_its_configuration_says_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ok.wasm"), b"\0asm\x01\0\0\0").unwrap();
        let c = parse(GOOD, "t", &ctx(dir.path())).unwrap();
        let RuntimeSpec::Process { sandbox, .. } = &c.plugins[2].runtime else {
            panic!("process plugin expected")
        };
        assert_eq!(sandbox, &NativeSandbox::default());
        assert!(sandbox.enabled && !sandbox.network && !sandbox.unix_sockets);

        let text = r#"
            [[plugin]]
            name = "Quarantine"
            role = "post_action"
            runtime = "process"
            command = "/bin/true"
            allow_read = ["signatures", "/opt/av"]
            allow_write = ["{data_dir}/quarantine"]
            allow_network = true

            [[plugin]]
            name = "Trusted"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            sandbox = false

            [[plugin]]
            name = "ClamAV"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            allow_unix_sockets = true

            [[plugin]]
            name = "Legacy"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            allow_ipc = true

            [[workflow]]
            name = "w"
            scanners = ["Trusted", "ClamAV", "Legacy"]
            post_actions = ["Quarantine"]
        "#;
        let c = parse(text, "t", &ctx(dir.path())).unwrap();
        let RuntimeSpec::Process { sandbox, .. } = &c.plugins[0].runtime else {
            panic!("process plugin expected")
        };
        assert!(sandbox.enabled);
        assert_eq!(
            sandbox.read,
            vec![dir.path().join("signatures"), PathBuf::from("/opt/av")],
            "relative to the configuration file"
        );
        assert_eq!(sandbox.write, vec![dir.path().join("data/quarantine")]);
        assert!(sandbox.network);
        assert!(sandbox.unix_sockets, "the network includes Unix sockets");
        let RuntimeSpec::Process { sandbox, .. } = &c.plugins[1].runtime else {
            panic!("process plugin expected")
        };
        assert!(!sandbox.enabled);
        let RuntimeSpec::Process { sandbox, .. } = &c.plugins[2].runtime else {
            panic!("process plugin expected")
        };
        assert!(
            sandbox.unix_sockets && !sandbox.network,
            "a local daemon, not the network"
        );
        assert_eq!(sandbox.widened(), "Unix sockets allowed");
        assert!(!sandbox.ipc, "kernel IPC is its own field");
        let RuntimeSpec::Process { sandbox, .. } = &c.plugins[3].runtime else {
            panic!("process plugin expected")
        };
        assert!(
            sandbox.ipc && !sandbox.unix_sockets && !sandbox.network,
            "kernel IPC, and no socket"
        );
        assert_eq!(sandbox.widened(), "kernel IPC allowed");
    }

    #[test]
    fn sandbox_fields_are_refused_where_they_mean_nothing() {
        let p = problems(
            r#"
            [[plugin]]
            name = "Wasm"
            role = "scanner"
            runtime = "wasm"
            module = "ok.wasm"
            allow_read = ["/etc"]

            [[plugin]]
            name = "Open"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            sandbox = false
            allow_network = true

            [[plugin]]
            name = "Local"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            sandbox = false
            allow_unix_sockets = true

            [[plugin]]
            name = "Shared"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            sandbox = false
            allow_ipc = true

            [[plugin]]
            name = "Hook"
            role = "post_action"
            runtime = "webhook"
            url = "http://127.0.0.1:9/"
            allow_ipc = false

            [[plugin]]
            name = "Empty"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            allow_write = [""]

            [[plugin]]
            name = "Greedy"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            allow_read = ["{data_dir}", "{data_dir}/quarantine"]
        "#,
        );
        let joined = p.join("\n");
        assert!(
            joined.contains("plugin \"Wasm\": fields `sandbox`, `allow_read`")
                && joined.contains("always sandboxed"),
            "{joined}"
        );
        assert!(
            joined.contains("plugin \"Open\"") && joined.contains("`sandbox = false` turns it off"),
            "{joined}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("plugin \"Local\"") && l.contains("`sandbox = false`")),
            "{joined}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("plugin \"Shared\"") && l.contains("`sandbox = false`")),
            "{joined}"
        );
        assert!(
            p.iter().any(|l| l.contains("plugin \"Hook\"")
                && l.contains("`allow_ipc` are for runtime = \"process\" only")
                && l.contains("runs elsewhere")),
            "{joined}"
        );
        assert!(
            joined.contains("plugin \"Empty\": field `allow_write`: an entry is empty"),
            "{joined}"
        );
        let greedy: Vec<&String> = p.iter().filter(|l| l.contains("\"Greedy\"")).collect();
        assert_eq!(
            greedy.len(),
            1,
            "only the data directory itself: {greedy:?}"
        );
        assert!(
            greedy[0].contains("holds Cordon's data directory"),
            "{joined}"
        );
    }

    #[test]
    fn no_native_sandbox_may_reach_the_configuration_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = ctx(dir.path());
        let native = |name: &str, extra: &str| {
            format!(
                "[[plugin]]\nname = \"{name}\"\nrole = \"scanner\"\nruntime = \"process\"\n\
                 command = \"/bin/true\"\n{extra}\n"
            )
        };
        let of = |problems: &[String], name: &str| -> Vec<String> {
            let tag = format!("plugin \"{name}\"");
            problems
                .iter()
                .filter(|p| p.contains(&tag))
                .cloned()
                .collect()
        };

        // Beside the plugins' own files: a tree that holds it is refused, a narrower one not.
        ctx.config_file = Some(dir.path().join("etc/cordon.toml"));
        let text = [
            native("Greedy", "allow_read = [\"etc\"]"),
            native(
                "Writer",
                &format!("allow_write = [\"{}\"]", dir.path().join("etc").display()),
            ),
            native("Narrow", "allow_read = [\"signatures\"]"),
        ]
        .concat();
        let p = parse(&text, "t", &ctx).expect_err("refused").problems;
        for name in ["Greedy", "Writer"] {
            let mine = of(&p, name);
            assert!(
                mine.len() == 1 && mine[0].contains("holds Cordon's configuration file"),
                "{name}: {p:?}"
            );
        }
        assert!(of(&p, "Narrow").is_empty(), "{p:?}");

        // Under a tree every sandboxed native plugin reads: refused for those only.
        ctx.config_file = Some(PathBuf::from("/usr/local/etc/cordon.toml"));
        let text = [
            native("Confined", ""),
            native("Unconfined", "sandbox = false"),
            "[[plugin]]\nname = \"Wasm\"\nrole = \"scanner\"\nruntime = \"wasm\"\nmodule = \"builtin:eicar\"\n".to_owned(),
        ]
        .concat();
        let p = parse(&text, "t", &ctx).expect_err("refused").problems;
        let mine = of(&p, "Confined");
        assert!(
            mine.len() == 1
                && mine[0].contains("is under /usr, which every sandboxed native plugin may read"),
            "{p:?}"
        );
        assert!(
            of(&p, "Unconfined").is_empty() && of(&p, "Wasm").is_empty(),
            "{p:?}"
        );
        ctx.config_file = Some(PathBuf::from("/etc/cordon/cordon.toml"));
        let p = parse(&native("Confined", ""), "t", &ctx)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert!(
            !p.iter().any(|p| p.contains("configuration file")),
            "/etc/cordon is not read: {p:?}"
        );
    }

    #[test]
    fn every_problem_names_the_plugin_and_the_field() {
        let p = problems(
            r#"
            [[plugin]]
            name = "a name that is far too long"
            role = "scanner"
            runtime = "wasm"
            module = "ok.wasm"

            [[plugin]]
            name = "Zero"
            role = "scanner"
            runtime = "wasm"
            module = "missing.wasm"
            timeout_ms = 0
            max_open_files = 3
            max_disk_bytes = 0
            max_processes = 4

            [[plugin]]
            name = "Bomb"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            max_processes = 0

            [[plugin]]
            name = "Horde"
            role = "scanner"
            runtime = "process"
            command = "/bin/true"
            max_processes = 100000

            [[plugin]]
            name = "Typo"
            role = "scanner"
            runtime = "wasm"
            module = "ok.wasm"
            timout_ms = 5

            [[plugin]]
            name = "Mixed"
            role = "scanner"
            runtime = "webhook"
            module = "ok.wasm"

            [[workflow]]
            name = "w"
            scanners = ["Nobody"]
            "#,
        );
        let all = p.join("\n");
        assert!(
            all.contains("plugin \"a name that is far too long\": field `name`"),
            "{all}"
        );
        assert!(all.contains("the limit is 16"), "{all}");
        assert!(
            all.contains("plugin \"Zero\": field `timeout_ms`: must be greater than 0"),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Zero\": field `max_open_files`: must be from 8 to 65536"),
            "{all}"
        );
        assert!(
            all.contains(
                "plugin \"Zero\": field `max_disk_bytes` is for runtime = \"process\" only; a \
                 wasm plugin writes nothing"
            ),
            "{all}"
        );
        assert!(
            all.contains(
                "plugin \"Zero\": field `max_processes` is for runtime = \"process\" only; a \
                 wasm plugin is one instance, and starts no process or thread"
            ),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Bomb\": field `max_processes`: must be greater than 0"),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Horde\": field `max_processes`: must be at most 4096"),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Zero\": field `module`: module file"),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Typo\": unknown field `timout_ms`"),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Mixed\": field `module` is for runtime = \"wasm\""),
            "{all}"
        );
        assert!(
            all.contains("plugin \"Mixed\": field `url` is missing"),
            "{all}"
        );
        assert!(
            all.contains("workflow \"w\": field `scanners`: no plugin is named \"Nobody\""),
            "{all}"
        );
    }

    #[test]
    fn duplicates_roles_and_non_ascii_are_refused() {
        let p = problems(
            r#"
            [[plugin]]
            name = "Dup"
            role = "scanner"
            runtime = "webhook"
            url = "http://x"

            [[plugin]]
            name = "Dup"
            role = "post_action"
            runtime = "webhook"
            url = "http://x"

            [[plugin]]
            name = "Ünï"
            role = "scanner"
            runtime = "webhook"
            url = "http://x"

            [[workflow]]
            name = "w"
            post_actions = ["Dup"]
            block_results = [255]
            "#,
        );
        let all = p.join("\n");
        assert!(all.contains("plugin \"Dup\": duplicate name"), "{all}");
        assert!(all.contains("only printable ASCII"), "{all}");
        assert!(
            all.contains("\"Dup\" is a scanner, not a post action"),
            "{all}"
        );
        assert!(all.contains("255 is not an engine result code"), "{all}");
    }

    #[test]
    fn unknown_top_level_keys_and_missing_workflows_are_refused() {
        assert!(problems("plugins = []")[0].contains("unknown field `plugins`"));
        assert!(problems("")[0].contains("no [[workflow]]"));
        assert!(
            problems("[[workflow]]\nname = \"w\"\n[[workflow]]\nname = \"w\"")[0]
                .contains("duplicate name")
        );
    }

    #[test]
    fn default_block_results_never_let_failures_through() {
        let b = WorkflowSpec::default_block_results();
        assert!(b.contains(&ResultCode::FAILED));
        assert!(b.contains(&ResultCode::NOT_SCANNED));
        assert!(b.contains(&ResultCode::INFECTED));
        assert!(!b.contains(&ResultCode::CLEAN));
        assert!(!b.contains(&ResultCode::SKIPPED_CLEAN));
        assert!(!b.contains(&ResultCode::IN_PROGRESS));
    }
}
