//! `cordon plugin run PLUGIN SAMPLE`: run one plugin on one file exactly as the host does, and
//! show everything that happened.
//!
//! The plugin is loaded by [`Executor::prepare`](crate::executor::Executor::prepare) (a `.wasm` file in the `wasm` runtime, any
//! other executable in the `process` runtime, with no extra arguments and an empty
//! environment), the sample is copied into a directory of its own as in a scan, the stdin line
//! is the result JSON the pipeline would send (or the one given with `--input`), the call is
//! [`Executor::invoke`](crate::executor::Executor::invoke) under the given limits, and the outcome is judged by
//! [`contract::judge_scanner`] or [`contract::judge_post_action`]: the report shows the very
//! violation the host would record (for example `scan_result_i: expected an integer result
//! code, got the string "1"`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::{SHOW_BYTES_DEFAULT, ToolError, ToolHost, human_bytes, show_bytes};
use crate::contract;
use crate::executor::wasm::detect_binary;
use crate::executor::{Invocation, Outcome};
use crate::fileinfo::fingerprint;
use crate::plugin::{
    Limits, ModuleSource, NativeSandbox, PluginName, PluginSpec, Role, RuntimeKind, RuntimeSpec,
};
use crate::result::{
    self, FailureReport, FileInfo, PostActionSummary, PostProcessing, ProcessInfo, ScanResult,
    ScanResults, iso_from_epoch_millis, iso_millis,
};
use crate::sample::Sample;
use crate::verdict::ResultCode;
use crate::workflow::Submission;

/// The workflow name in the default input.
pub const DEFAULT_WORKFLOW: &str = "plugin run";

/// How to run the plugin.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scanner or post action. Default: scanner.
    pub role: Role,
    /// The stdin JSON, instead of the default input: any JSON text, sent as one compact line.
    pub input: Option<String>,
    /// A `metadata` object for the default input (ignored with `input`).
    pub metadata: Option<Value>,
    /// The plugin's limits. Default: the host's defaults ([`Limits::default`]).
    pub limits: Limits,
    /// The plugin's name (`argv[0]` of a wasm plugin). Default: the file's stem, cut to 16
    /// printable ASCII characters.
    pub name: Option<String>,
    /// A data directory (compiled-module cache, work directories); `None` uses a temporary one.
    pub data_dir: Option<PathBuf>,
    /// A native plugin's sandbox. Default: confined, as a configured plugin is by default.
    pub sandbox: NativeSandbox,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            role: Role::Scanner,
            input: None,
            metadata: None,
            limits: Limits::default(),
            name: None,
            data_dir: None,
            sandbox: NativeSandbox::default(),
        }
    }
}

/// A scanner's result as the host records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineResultReport {
    /// `scan_result_i`.
    pub scan_result_i: u8,
    /// Its name (`scan_all_result_a` style).
    pub scan_result_a: String,
    /// `def_time`, ms since the epoch.
    pub def_time_ms: i64,
    /// `def_time` as the result JSON renders it (ISO-8601, UTC, ms).
    pub def_time: String,
    /// `threat_found`.
    pub threat_found: String,
}

/// A post action's record as the host keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostActionReport {
    /// Whether it succeeded.
    pub success: bool,
    /// Exit code or HTTP status; -1 when it did not finish by itself.
    pub return_value: i64,
    /// 35 on success, 37 on failure.
    pub verdict: u32,
}

/// The limits a plugin ran under, with units in the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitsReport {
    /// Timeout, milliseconds.
    pub timeout_ms: u64,
    /// Memory limit, bytes.
    pub max_memory_bytes: u64,
    /// Cap on stdout, bytes.
    pub max_stdout_bytes: usize,
    /// Cap on stderr, bytes.
    pub max_stderr_bytes: usize,
    /// Files and other handles open at once.
    pub max_open_files: u32,
    /// Disk a native plugin may fill, bytes (not applied to wasm plugins).
    pub max_disk_bytes: u64,
    /// Processes and threads a native plugin may run at once (not applied to wasm plugins).
    pub max_processes: u32,
}

impl From<Limits> for LimitsReport {
    fn from(l: Limits) -> LimitsReport {
        LimitsReport {
            timeout_ms: l.timeout.as_millis() as u64,
            max_memory_bytes: l.max_memory_bytes,
            max_stdout_bytes: l.max_stdout_bytes,
            max_stderr_bytes: l.max_stderr_bytes,
            max_open_files: l.max_open_files,
            max_disk_bytes: l.max_disk_bytes,
            max_processes: l.max_processes,
        }
    }
}

/// Everything that happened.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The plugin file.
    pub plugin_file: PathBuf,
    /// The name it ran under.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its runtime.
    pub runtime: RuntimeKind,
    /// How a wasm binary is called (command module, scanner-world component, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_kind: Option<String>,
    /// Load time (compile or cache), in milliseconds.
    pub load_ms: f64,
    /// Why the host refused to load it; nothing ran then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The sample file given.
    pub sample_file: PathBuf,
    /// The path the plugin got as its last argument.
    pub sample_argument: String,
    /// The stdin line sent (with its final newline).
    pub stdin: String,
    /// Exit code (or HTTP status); `None` when it did not finish by itself.
    pub exit: Option<i64>,
    /// What it wrote to stdout (up to its cap), as bytes.
    #[serde(serialize_with = "as_lossy_text")]
    pub stdout: Vec<u8>,
    /// What it wrote to stderr (up to its cap), as bytes.
    #[serde(serialize_with = "as_lossy_text")]
    pub stderr: Vec<u8>,
    /// Wall-clock time, in milliseconds.
    pub duration_ms: f64,
    /// Peak memory in bytes, where the runtime can tell: a wasm plugin's linear memory, a
    /// native plugin's memory cgroup (all its processes together).
    pub peak_memory_bytes: Option<u64>,
    /// The most processes and threads a native plugin ran at once, where its cgroup tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_processes: Option<u64>,
    /// The limits it ran under.
    pub limits: LimitsReport,
    /// A native plugin's sandbox: what confines it on this kernel, and what it was allowed
    /// beyond the defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// A native plugin's `max_processes`: what enforces it on this machine, or why nothing
    /// does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<String>,
    /// A native plugin's `max_memory_bytes`: what enforces it on this machine (a memory
    /// cgroup, for all its processes together, or `RLIMIT_DATA`, for each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Whether a Landlock sandbox confined it (a native plugin, sandbox on, on a kernel with
    /// Landlock).
    #[serde(skip)]
    confined: bool,
    /// Whether a native plugin ran in a memory cgroup, and then whether the kernel measures
    /// every invocation's peak there (see `Cgroups::measures_every_peak`).
    #[serde(skip)]
    memory_cgroup: Option<bool>,
    /// A scanner's engine result (Failed when the contract was broken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_result: Option<EngineResultReport>,
    /// A post action's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_action: Option<PostActionReport>,
    /// Why the plugin broke the contract: the `failure` the host records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<FailureReport>,
    /// Whether the plugin met the contract (loaded, ran, and succeeded with valid output).
    pub contract_met: bool,
}

/// One line on a native plugin's sandbox, for [`RunReport::sandbox`].
fn describe_sandbox(sandbox: &NativeSandbox) -> String {
    if !sandbox.enabled {
        return "off (--no-sandbox): it can reach whatever your user can".into();
    }
    let abi = crate::executor::landlock_abi();
    let mut line = format!(
        "Landlock ABI {abi}, enforcing {}",
        crate::executor::landlock_enforces(abi)
    );
    // What the seccomp filter refuses that the configuration decides (it always refuses
    // namespaces, io_uring and the like, changes to other processes, watches, and changes to
    // files' modes by path).
    let refused = match (sandbox.network, sandbox.unix_sockets, sandbox.ipc) {
        (true, _, true) => "only what no configuration allows",
        (true, _, false) => "kernel IPC",
        (false, true, false) => "sockets but Unix ones, and kernel IPC",
        (false, true, true) => "sockets but Unix ones",
        (false, false, false) => "every socket, and kernel IPC",
        (false, false, true) => "every socket",
    };
    line.push_str(&format!("; seccomp refuses {refused}"));
    let widened = sandbox.widened();
    if !widened.is_empty() {
        line.push_str("; ");
        line.push_str(&widened);
    }
    line
}

fn as_lossy_text<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

impl RunReport {
    /// A line under the peak memory when it came within a tenth of `max_memory_bytes`. A
    /// plugin that runs out of memory may fail however its code handles a failed allocation
    /// (a trap, a typed error), not only as the host's `memory_limit`; for such a failure this
    /// says what the numbers suggest.
    fn memory_hint(&self) -> Option<String> {
        let peak = self.peak_memory_bytes?;
        let limit = self.limits.max_memory_bytes;
        if limit == 0 || peak.saturating_mul(10) < limit.saturating_mul(9) {
            return None;
        }
        let percent = peak.saturating_mul(100) / limit;
        // How a failed allocation shows in a plugin (the host reports its own memory-limit
        // stops as `memory_limit` already).
        let failed = self
            .violation
            .as_ref()
            .is_some_and(|v| matches!(v.kind.as_str(), "exit_code" | "trap" | "plugin_error"));
        Some(if failed {
            format!(
                "{percent} % of max_memory_bytes: it failed at its memory limit, the likely \
                 cause; run it with a larger --max-memory-bytes to tell"
            )
        } else if self.runtime == RuntimeKind::Process {
            // What a native plugin's memory cgroup counts includes the page cache it read,
            // which the kernel gives back first: near the limit is not short of memory.
            format!(
                "{percent} % of max_memory_bytes: near its memory limit (page cache of files it \
                 read included, which the kernel gives back first)"
            )
        } else {
            format!("{percent} % of max_memory_bytes: near its memory limit")
        })
    }

    /// When a sandboxed native plugin's stderr reports a refused access, what to try: the
    /// sandbox is the likely cause of a plugin that works elsewhere.
    fn sandbox_hint(&self) -> Option<String> {
        if !self.confined {
            return None;
        }
        let stderr = String::from_utf8_lossy(&self.stderr);
        let refused = ["Permission denied", "Operation not permitted"]
            .into_iter()
            .find(|m| stderr.contains(m))?;
        Some(format!(
            "its stderr says \"{refused}\": the sandbox lets it read the system's files, its \
             program and its file, and write only its working directory, and opens no socket \
             and no kernel IPC. Name what it needs with --allow-read PATH, --allow-write DIR, \
             --allow-unix-sockets, --allow-network or --allow-ipc (allow_read, allow_write, \
             allow_unix_sockets, allow_network, allow_ipc in the configuration), or run it with \
             --no-sandbox to tell"
        ))
    }

    /// A report for people: stdout and stderr escaped and cut at 4 KiB each.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kind = self
            .wasm_kind
            .as_deref()
            .map(|k| format!(", {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "plugin    {} as {:?}: {} ({}{kind}), loaded in {:.1} ms",
            self.plugin_file.display(),
            self.name,
            self.role,
            self.runtime,
            self.load_ms
        );
        if let Some(reason) = &self.refused {
            let _ = writeln!(out, "REFUSED   the host does not load it: {reason}");
            return out;
        }
        let _ = writeln!(
            out,
            "sample    {} (the plugin's last argument: {})",
            self.sample_file.display(),
            self.sample_argument
        );
        let l = &self.limits;
        let _ = write!(
            out,
            "limits    timeout {} ms, memory {}, stdout {} bytes, stderr {} bytes, {} open files",
            l.timeout_ms,
            human_bytes(l.max_memory_bytes),
            l.max_stdout_bytes,
            l.max_stderr_bytes,
            l.max_open_files
        );
        // A native plugin's, which has a sandbox line: a wasm plugin writes nothing.
        if self.sandbox.is_some() {
            let _ = write!(out, ", disk {}", human_bytes(l.max_disk_bytes));
        }
        out.push('\n');
        if let Some(sandbox) = &self.sandbox {
            let _ = writeln!(out, "sandbox   {sandbox}");
        }
        if let Some(processes) = &self.processes {
            let _ = writeln!(out, "processes {processes}");
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(out, "memory    {memory}");
        }
        let _ = writeln!(out, "--- stdin ({} bytes)", self.stdin.len());
        push_block(&mut out, self.stdin.as_bytes());
        let typed = self
            .wasm_kind
            .as_deref()
            .is_some_and(|k| k.contains("-world component"));
        let _ = writeln!(
            out,
            "--- stdout ({} bytes{})",
            self.stdout.len(),
            if typed {
                "; a world component returns a typed result, shown as the JSON the host judges"
            } else {
                ""
            }
        );
        push_block(&mut out, &self.stdout);
        let _ = writeln!(out, "--- stderr ({} bytes)", self.stderr.len());
        push_block(&mut out, &self.stderr);
        let _ = writeln!(out, "---");
        let _ = writeln!(
            out,
            "exit      {}",
            self.exit
                .map(|e| e.to_string())
                .unwrap_or_else(|| "none (it did not finish by itself)".to_owned())
        );
        let _ = writeln!(out, "duration  {:.1} ms", self.duration_ms);
        let started = self
            .violation
            .as_ref()
            .is_none_or(|v| v.kind != "could_not_start");
        let _ = writeln!(
            out,
            "memory    {}",
            peak_line(
                self.runtime,
                self.peak_memory_bytes,
                started,
                self.memory_cgroup
            )
        );
        if let Some(hint) = self.memory_hint() {
            let _ = writeln!(out, "          {hint}");
        }
        if let Some(peak) = self.peak_processes {
            let _ = writeln!(
                out,
                "processes peak {peak} at once, itself and its threads included (max_processes {})",
                self.limits.max_processes
            );
        }
        if let Some(hint) = self.sandbox_hint() {
            let _ = writeln!(out, "sandbox   {hint}");
        }
        if let Some(e) = &self.engine_result {
            if self.violation.is_some() {
                let _ = writeln!(out, "result    {} {}", e.scan_result_i, e.scan_result_a);
            } else {
                let threat = if e.threat_found.is_empty() {
                    String::new()
                } else {
                    format!(", threat {:?}", e.threat_found)
                };
                let _ = writeln!(
                    out,
                    "result    {} {}{threat}, def_time {}",
                    e.scan_result_i, e.scan_result_a, e.def_time
                );
            }
        }
        if let Some(p) = &self.post_action {
            let _ = writeln!(
                out,
                "result    post action {}, return_value {}, verdict {}",
                if p.success { "ran" } else { "failed" },
                p.return_value,
                p.verdict
            );
        }
        match &self.violation {
            None => {
                let _ = writeln!(out, "contract  met");
            }
            Some(v) => {
                let _ = writeln!(out, "contract  BROKEN ({}): {}", v.kind, v.message);
            }
        }
        out
    }
}

fn push_block(out: &mut String, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    out.push_str(&show_bytes(bytes, SHOW_BYTES_DEFAULT));
    if !out.ends_with('\n') {
        out.push_str("\n(no newline at the end)\n");
    }
}

/// The plugin's name from its file: the stem, printable ASCII only, at most 16 characters,
/// trimmed; `plugin` when nothing is left.
pub fn default_name(plugin: &Path) -> String {
    let stem = plugin
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .take(PluginName::MAX_LEN)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "plugin".to_owned()
    } else {
        name.to_owned()
    }
}

/// The `--input` argument: JSON text, or `@PATH` to read it from a file.
pub fn read_input_arg(arg: &str) -> Result<String, ToolError> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ToolError::Read {
            path: PathBuf::from(path),
            source,
        }),
        None => Ok(arg.to_owned()),
    }
}

/// Run `plugin` on `sample_file` as the host would.
pub async fn run_plugin(
    plugin: &Path,
    sample_file: &Path,
    options: &RunOptions,
) -> Result<RunReport, ToolError> {
    let host = ToolHost::new(options.data_dir.as_deref())?;
    let name_text = options.name.clone().unwrap_or_else(|| default_name(plugin));
    let name =
        PluginName::new(&name_text).map_err(|e| ToolError::Invalid(format!("--name: {e}")))?;
    let stdin = match &options.input {
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| ToolError::Invalid(format!("--input is not valid JSON: {e}")))?;
            let mut line = serde_json::to_vec(&value).expect("a JSON value serializes");
            line.push(b'\n');
            Some(line)
        }
        None => None,
    };
    let source = crate::sample::open_regular_file(sample_file).map_err(|e| {
        ToolError::Invalid(format!(
            "{} is not a file to scan: {e}",
            sample_file.display()
        ))
    })?;

    let head = read_head(plugin)?;
    let runtime = if detect_binary(&head).is_some()
        || plugin.extension().is_some_and(|e| e == "wasm")
        || !is_executable(plugin)
    {
        RuntimeSpec::Wasm {
            module: ModuleSource::File(plugin.to_path_buf()),
        }
    } else {
        RuntimeSpec::Process {
            program: std::path::absolute(plugin).map_err(|source| ToolError::Read {
                path: plugin.to_path_buf(),
                source,
            })?,
            args: Vec::new(),
            env: Vec::new(),
            sandbox: options.sandbox.clone(),
        }
    };
    let runtime_kind = runtime.kind();
    if runtime_kind != RuntimeKind::Process && options.sandbox != NativeSandbox::default() {
        return Err(ToolError::Invalid(
            "--allow-read, --allow-write, --allow-unix-sockets, --allow-network, --allow-ipc and --no-sandbox are for native \
             plugins; a wasm plugin sees only the file it scans"
                .into(),
        ));
    }
    let spec = PluginSpec {
        name: name.clone(),
        role: options.role,
        runtime,
        limits: options.limits,
        description: String::new(),
    };
    let mut report = RunReport {
        plugin_file: plugin.to_path_buf(),
        name: name_text,
        role: options.role,
        runtime: runtime_kind,
        wasm_kind: None,
        load_ms: 0.0,
        refused: None,
        sample_file: sample_file.to_path_buf(),
        sample_argument: String::new(),
        stdin: String::new(),
        exit: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
        duration_ms: 0.0,
        peak_memory_bytes: None,
        peak_processes: None,
        limits: options.limits.into(),
        sandbox: (runtime_kind == RuntimeKind::Process).then(|| describe_sandbox(&options.sandbox)),
        processes: (runtime_kind == RuntimeKind::Process).then(|| {
            match crate::executor::cgroup::cgroups() {
                Ok(cgroups) => format!(
                    "at most {}, in {}",
                    options.limits.max_processes,
                    cgroups.describe()
                ),
                Err(why) => format!("not bounded: {why}"),
            }
        }),
        memory: (runtime_kind == RuntimeKind::Process).then(|| {
            let limit = human_bytes(options.limits.max_memory_bytes);
            match crate::executor::cgroup::cgroups().map(|c| c.memory()) {
                Ok(Ok(cgroup)) => {
                    format!("all its processes together at most {limit}, in {cgroup}")
                }
                Ok(Err(why)) | Err(why) => format!(
                    "each of its processes at most {limit} (RLIMIT_DATA), not all together: \
                     {why}"
                ),
            }
        }),
        confined: runtime_kind == RuntimeKind::Process
            && options.sandbox.enabled
            && crate::executor::landlock_abi() > 0,
        memory_cgroup: match crate::executor::cgroup::cgroups() {
            Ok(c) if runtime_kind == RuntimeKind::Process && c.memory().is_ok() => {
                Some(c.measures_every_peak())
            }
            _ => None,
        },
        engine_result: None,
        post_action: None,
        violation: None,
        contract_met: false,
    };
    let started = std::time::Instant::now();
    let loaded = host.executor.prepare(spec);
    report.load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            report.refused = Some(e.problem);
            return Ok(report);
        }
    };
    report.wasm_kind = plugin.info().wasm_kind.clone();

    let display_name = sample_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sample".to_owned());
    let sample = Sample::copy_from(
        &source,
        &display_name,
        &host.data_dir.join("samples"),
        u64::MAX,
    )
    .map_err(|source| ToolError::Read {
        path: sample_file.to_path_buf(),
        source,
    })?;
    report.sample_argument = match runtime_kind {
        RuntimeKind::Wasm => sample.guest_path(),
        _ => sample.path().display().to_string(),
    };
    let stdin = match stdin {
        Some(line) => line,
        None => {
            let print = fingerprint(&sample.path()).map_err(|source| ToolError::Read {
                path: sample_file.to_path_buf(),
                source,
            })?;
            default_input(
                &display_name,
                &print,
                options.role,
                options.metadata.clone(),
            )
            .to_plugin_stdin()
        }
    };
    report.stdin = String::from_utf8_lossy(&stdin).into_owned();

    let outcome = host
        .executor
        .invoke(
            &plugin,
            Invocation {
                stdin: &stdin,
                sample: &sample,
            },
        )
        .await;
    judge(&mut report, options.role, runtime_kind, outcome);
    Ok(report)
}

fn judge(report: &mut RunReport, role: Role, runtime: RuntimeKind, outcome: Outcome) {
    match role {
        Role::Scanner => {
            let v = contract::judge_scanner(runtime, &outcome);
            report.engine_result = Some(EngineResultReport {
                scan_result_i: v.code.value(),
                scan_result_a: v.code.as_str().to_owned(),
                def_time_ms: v.def_time_ms,
                def_time: iso_from_epoch_millis(v.def_time_ms).unwrap_or_default(),
                threat_found: v.threat_found,
            });
            report.violation = v.failure;
        }
        Role::PostAction => {
            let v = contract::judge_post_action(runtime, &outcome);
            report.post_action = Some(PostActionReport {
                success: v.success,
                return_value: v.return_value,
                verdict: if v.success {
                    result::POST_ACTION_SUCCESS
                } else {
                    result::POST_ACTION_FAILURE
                },
            });
            report.violation = v.failure;
        }
    }
    report.contract_met = report.violation.is_none();
    report.exit = outcome.exit;
    report.stdout = outcome.stdout;
    report.stderr = outcome.stderr;
    report.duration_ms = outcome.duration.as_secs_f64() * 1000.0;
    report.peak_memory_bytes = outcome.peak_memory_bytes;
    report.peak_processes = outcome.peak_processes;
}

/// The result JSON the pipeline hands a plugin of `role` for a file, in a workflow named
/// [`DEFAULT_WORKFLOW`] that runs this plugin alone: for a scanner, the result while scanning
/// (`Processing`, In Progress, no engine result yet); for a post action, the decided result of
/// a workflow without scanners (Not Scanned, `Blocked` under the default blocking rules).
pub fn default_input(
    display_name: &str,
    file: &crate::fileinfo::Fingerprint,
    role: Role,
    metadata: Option<Value>,
) -> ScanResult {
    let now = Utc::now();
    let data_id = Submission::new_data_id();
    let (overall, process_result, blocked_reason, verdicts, post_action) = match role {
        Role::Scanner => (
            ResultCode::IN_PROGRESS,
            result::PROCESSING,
            String::new(),
            Vec::new(),
            None,
        ),
        Role::PostAction => (
            ResultCode::NOT_SCANNED,
            result::BLOCKED,
            ResultCode::NOT_SCANNED.as_str().to_owned(),
            vec![ResultCode::NOT_SCANNED.as_str().to_owned()],
            Some(PostActionSummary {
                total_post_action: 1,
                ..PostActionSummary::default()
            }),
        ),
    };
    ScanResult {
        data_id: data_id.clone(),
        file_info: FileInfo::new(display_name, file, now),
        process_info: ProcessInfo {
            blocked_reason: blocked_reason.clone(),
            blocked_reasons: if blocked_reason.is_empty() {
                Vec::new()
            } else {
                vec![blocked_reason]
            },
            file_type_skipped_scan: false,
            profile: DEFAULT_WORKFLOW.to_owned(),
            progress_percentage: 0,
            result: process_result.to_owned(),
            user_agent: String::new(),
            username: std::env::var("USER").unwrap_or_default(),
            verdicts,
            queue_time: 0,
            processing_time: -1,
            post_processing: PostProcessing::default(),
        },
        scan_results: ScanResults {
            data_id,
            progress_percentage: 0,
            scan_all_result_a: overall.as_str().to_owned(),
            scan_all_result_i: overall,
            start_time: iso_millis(now),
            total_avs: match role {
                Role::Scanner => 1,
                Role::PostAction => 0,
            },
            total_time: 0,
            scan_details: BTreeMap::new(),
        },
        post_action,
        metadata,
    }
}

fn read_head(path: &Path) -> Result<Vec<u8>, ToolError> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8);
    std::fs::File::open(path)
        .and_then(|f| f.take(8).read_to_end(&mut head))
        .map_err(|source| ToolError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(head)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The report's `memory` line after the run: the plugin's peak, `peak`, or why there is none
/// (`started`: whether its process started; `memory_cgroup`: as in [`RunReport`]).
fn peak_line(
    runtime: RuntimeKind,
    peak: Option<u64>,
    started: bool,
    memory_cgroup: Option<bool>,
) -> String {
    match (runtime, peak) {
        (RuntimeKind::Process, Some(b)) => {
            format!("peak {}, all its processes together", human_bytes(b))
        }
        (_, Some(b)) => format!("peak {} of linear memory", human_bytes(b)),
        (RuntimeKind::Process, None) if !started => "none: it did not start".to_owned(),
        (RuntimeKind::Process, None) => match memory_cgroup {
            Some(false) => "peak not known: this kernel keeps no peak for each use of a memory \
                            cgroup (cgroup v2 keeps one from Linux 5.19, and resets it for \
                            each use from 6.12; in between, only a use that passes every \
                            earlier one is measured)"
                .to_owned(),
            Some(true) => "peak not known: its memory cgroup's could not be read".to_owned(),
            None => "not measured for a process without a memory cgroup".to_owned(),
        },
        (_, None) => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_line_says_why_a_native_plugin_has_no_peak() {
        let native = RuntimeKind::Process;
        assert_eq!(
            peak_line(native, Some(3 << 20), true, Some(true)),
            "peak 3.0 MiB (3145728 bytes), all its processes together"
        );
        assert_eq!(
            peak_line(native, None, false, Some(true)),
            "none: it did not start"
        );
        assert!(
            peak_line(native, None, true, Some(false)).starts_with("peak not known: this kernel")
        );
        assert_eq!(
            peak_line(native, None, true, None),
            "not measured for a process without a memory cgroup"
        );
        assert_eq!(
            peak_line(RuntimeKind::Wasm, Some(1 << 20), true, None),
            "peak 1.0 MiB (1048576 bytes) of linear memory"
        );
    }

    #[test]
    fn names_come_from_the_file_stem() {
        assert_eq!(default_name(Path::new("/x/eicar.wasm")), "eicar");
        assert_eq!(
            default_name(Path::new("a-very-long-plugin-name.wasm")),
            "a-very-long-plug"
        );
        assert_eq!(default_name(Path::new("été.wasm")), "t");
        assert_eq!(default_name(Path::new("/x/.wasm")), ".wasm");
        assert_eq!(default_name(Path::new("/")), "plugin");
    }

    #[test]
    fn the_default_input_has_the_pipeline_shape() {
        let print = crate::fileinfo::Fingerprint {
            size: 3,
            md5: "m".into(),
            sha1: "s1".into(),
            sha256: "s256".into(),
            mime: "text/plain".into(),
            description: "text".into(),
        };
        let scanner = default_input("a.txt", &print, Role::Scanner, None);
        assert_eq!(
            scanner.scan_results.scan_all_result_i,
            ResultCode::IN_PROGRESS
        );
        assert_eq!(scanner.process_info.result, result::PROCESSING);
        assert_eq!(scanner.file_info.sha256, "s256");
        assert_eq!(scanner.data_id.len(), 32);
        let line = scanner.to_plugin_stdin();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));

        let action = default_input(
            "a.txt",
            &print,
            Role::PostAction,
            Some(serde_json::json!({"k": 1})),
        );
        assert_eq!(action.process_info.result, result::BLOCKED);
        assert_eq!(
            action.scan_results.scan_all_result_i,
            ResultCode::NOT_SCANNED
        );
        assert_eq!(action.metadata, Some(serde_json::json!({"k": 1})));
    }
}
