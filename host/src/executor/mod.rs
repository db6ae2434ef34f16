//! The uniform executor: one entry point that runs a plugin, whatever its runtime, on one
//! sample with one stdin JSON, and reports an [`Outcome`].
//!
//! A plugin's own failure (a trap, a timeout, a crash, a flood of output, a refused
//! connection) is an outcome, never an error of the host: [`Executor::invoke`] cannot fail.
//! The rules that turn an outcome into an engine result or a post-action record live in
//! [`crate::contract`], in one place for all runtimes.

pub mod cgroup;
mod landlock;
pub mod process;
mod seccomp;
pub mod wasm;
pub mod webhook;

pub use landlock::{
    enforced as landlock_enforces, every_native_plugin_reads, landlock_abi,
    proc_hides_other_processes,
};

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::plugin::{PluginName, PluginSpec, RuntimeKind, RuntimeSpec};
use crate::sample::Sample;
use crate::tools::human_bytes;

/// What a plugin is given: the same for every runtime.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// The current result JSON without `extracted_files`, as one compact line ending in `\n`
    /// (a webhook gets it as `processing_result`).
    pub stdin: &'a [u8],
    /// The file, alone in its directory.
    pub sample: &'a Sample,
}

/// What happened when a plugin ran.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The exit code (wasm, process) or the HTTP status (webhook); `None` when the plugin did
    /// not finish by itself (timeout, signal, trap, transport error, could not start).
    pub exit: Option<i64>,
    /// Everything the plugin wrote to stdout (webhook: the response body), at most
    /// `max_stdout_bytes`.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr, at most `max_stderr_bytes` (webhook: empty).
    pub stderr: Vec<u8>,
    /// Wall-clock time from start to end.
    pub duration: Duration,
    /// Why the plugin did not finish normally, when it did not.
    pub failure: Option<Failure>,
    /// Peak memory, where the runtime can tell: a wasm plugin's linear memory. `None` for
    /// processes (see the process runtime for why) and webhooks.
    pub peak_memory_bytes: Option<u64>,
    /// The most processes and threads a native process ran at once, itself included, where
    /// its cgroup tells (`pids.peak`, Linux 6.1); `None` for wasm plugins and webhooks.
    pub peak_processes: Option<u64>,
}

impl Outcome {
    /// A plugin that did not finish normally for `failure`, with nothing else known: it never
    /// ran, or ran too briefly to tell anything.
    pub(crate) fn failed(failure: Failure) -> Outcome {
        Outcome {
            failure: Some(failure),
            ..Outcome::default()
        }
    }

    /// A plugin that could not be started, for `message`.
    pub(crate) fn could_not_start(message: impl Into<String>) -> Outcome {
        Outcome::failed(Failure::CouldNotStart {
            message: message.into(),
        })
    }
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output (webhook: the response body).
    Stdout,
    /// Standard error.
    Stderr,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// Why a plugin did not finish normally. Classified by the runtime that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It ran past its `timeout` and was stopped.
    Timeout {
        /// The limit it ran past.
        limit: Duration,
    },
    /// It tried to use more memory than `max_memory_bytes` allows, or, `elsewhere` (a native
    /// process in a memory cgroup), the kernel's OOM killer killed one of its processes because
    /// the machine, or Cordon and its plugins together (the unit's `MemoryMax`), ran out of
    /// memory, short of its own limit.
    MemoryLimit {
        /// The limit.
        limit_bytes: u64,
        /// Killed for a shortage above the plugin's own limit.
        elsewhere: bool,
    },
    /// It tried to hold more files (and other handles) open than `max_open_files` allows
    /// (wasm; a process gets `EMFILE` from the kernel instead, and handles it itself).
    OpenFilesLimit {
        /// The limit.
        limit: u32,
    },
    /// A native process filled more disk than `max_disk_bytes` allows: its working directory
    /// held more (`found_bytes`), or it wrote a file past that size (`SIGXFSZ`).
    DiskLimit {
        /// The limit.
        limit_bytes: u64,
        /// What its working directory held when it was stopped; `None`: one file grew past
        /// the limit.
        found_bytes: Option<u64>,
    },
    /// A native process tried to run more processes and threads at once than
    /// `max_processes` allows (its cgroup refused a `fork` or a thread), or, `elsewhere`, the
    /// kernel refused one for a limit above its own (Cordon's, the unit's `TasksMax`): fewer
    /// ran, but it did not run as it meant to. With cgroup v2 from Linux 6.11, which does not
    /// say whose `fork` a limit above refused, `elsewhere` is every plugin running at the
    /// time: see [`cgroup::PluginCgroup::limit_hits`].
    ProcessLimit {
        /// The limit.
        limit: u32,
        /// Refused for a limit above the plugin's own.
        elsewhere: bool,
    },
    /// The kernel refused to start a native plugin's process at all (its `fork` failed with
    /// `EAGAIN`): Cordon and its plugins together (the unit's `TasksMax`), or the machine, ran
    /// as many processes and threads as allowed. Its kind is `process_limit`, and, like
    /// [`Failure::ProcessLimit`] `elsewhere`, it is a shortage that is not the plugin's.
    StartRefused {
        /// The error, with the program's path.
        message: String,
    },
    /// A WebAssembly trap (unreachable, out-of-bounds access, stack overflow, a Rust panic).
    Trap {
        /// The trap, as wasmtime reports it, with a short backtrace.
        message: String,
    },
    /// A native process was killed by a signal (not by Cordon's deadline).
    Signal {
        /// The signal number.
        signal: i32,
    },
    /// It wrote more than its cap to a stream, and was stopped.
    OutputTooLarge {
        /// Which stream.
        stream: Stream,
        /// The cap.
        limit_bytes: usize,
    },
    /// A webhook could not be reached, or the connection broke.
    Transport {
        /// What went wrong.
        message: String,
    },
    /// The plugin could not be started at all (missing executable, no instance slot...).
    CouldNotStart {
        /// What went wrong.
        message: String,
    },
    /// A component plugin returned its typed error (`wit/plugin.wit`).
    Reported {
        /// The plugin's message.
        message: String,
    },
}

impl Failure {
    /// Whether it was stopped for what Cordon and its plugins together, or the machine, ran
    /// short of while it ran (memory, processes), not for a limit of its own: it says nothing
    /// of the plugin, and it may well run if run again (a scanner is:
    /// [`crate::workflow::RERUN_PAUSES`]).
    pub fn elsewhere(&self) -> bool {
        matches!(
            self,
            Failure::MemoryLimit {
                elsewhere: true,
                ..
            } | Failure::ProcessLimit {
                elsewhere: true,
                ..
            } | Failure::StartRefused { .. }
        )
    }

    /// A short stable label, used in results (`failure.kind`) and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout { .. } => "timeout",
            Failure::MemoryLimit { .. } => "memory_limit",
            Failure::OpenFilesLimit { .. } => "open_files_limit",
            Failure::DiskLimit { .. } => "disk_limit",
            Failure::ProcessLimit { .. } | Failure::StartRefused { .. } => "process_limit",
            Failure::Trap { .. } => "trap",
            Failure::Signal { .. } => "signal",
            Failure::OutputTooLarge { .. } => "output_too_large",
            Failure::Transport { .. } => "transport",
            Failure::CouldNotStart { .. } => "could_not_start",
            Failure::Reported { .. } => "plugin_error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout { limit } => {
                write!(f, "timed out: still running after {} ms", limit.as_millis())
            }
            Failure::MemoryLimit {
                limit_bytes,
                elsewhere: false,
            } => {
                write!(
                    f,
                    "memory limit: tried to use more than {limit_bytes} bytes"
                )
            }
            Failure::MemoryLimit {
                limit_bytes,
                elsewhere: true,
            } => write!(
                f,
                "memory limit: the kernel's OOM killer killed one of its processes because \
                 the machine, or Cordon and its plugins together (MemoryMax in \
                 deploy/cordon.service), ran out of memory while it ran, short of its own \
                 max_memory_bytes ({limit_bytes})"
            ),
            Failure::OpenFilesLimit { limit } => write!(
                f,
                "open files limit: tried to hold more than {limit} files and other handles \
                 open at once (max_open_files)"
            ),
            Failure::DiskLimit {
                limit_bytes,
                found_bytes: Some(found),
            } => write!(
                f,
                "disk limit: its working directory held {found} bytes, more than the \
                 {limit_bytes} of max_disk_bytes"
            ),
            Failure::DiskLimit {
                limit_bytes,
                found_bytes: None,
            } => write!(
                f,
                "disk limit: it wrote a file past {limit_bytes} bytes, the max_disk_bytes of \
                 every file it writes (killed by SIGXFSZ)"
            ),
            Failure::ProcessLimit {
                limit,
                elsewhere: false,
            } => write!(
                f,
                "process limit: tried to run more than {limit} processes and threads at once \
                 (max_processes)"
            ),
            Failure::ProcessLimit {
                limit,
                elsewhere: true,
            } => write!(
                f,
                "process limit: Cordon and its plugins together, or the machine, ran as many \
                 processes and threads as allowed (TasksMax in deploy/cordon.service) while it \
                 ran, fewer than its own max_processes ({limit}), and a process or thread \
                 could not start (with cgroup v2 from Linux 6.11 the kernel does not say \
                 whose: it may have been another plugin's rather than this one's)"
            ),
            Failure::StartRefused { message } => write!(
                f,
                "process limit: the kernel refused to start it ({message}): Cordon and its \
                 plugins together, or the machine, ran as many processes and threads as \
                 allowed (TasksMax in deploy/cordon.service)"
            ),
            Failure::Trap { message } => write!(f, "trapped: {message}"),
            Failure::Signal { signal } => {
                write!(f, "killed by signal {signal} ({})", signal_name(*signal))?;
                if *signal == libc::SIGSYS {
                    // What a native plugin's seccomp filter does to a process of another
                    // architecture; the other causes (a program's own filter) are rare.
                    f.write_str(
                        ": the native sandbox's seccomp filter kills a 32-bit program at its \
                         first system call; use a 64-bit build, or sandbox = false",
                    )?;
                } else if *signal == libc::SIGKILL {
                    // Cordon's own kills come with a failure of their own (timeout, a limit).
                    f.write_str(
                        ": most likely the kernel's OOM killer, as the machine or Cordon's \
                         cgroup (MemoryMax) ran out of memory (where a memory cgroup bounds a \
                         plugin, an OOM kill of its processes shows as memory_limit)",
                    )?;
                }
                Ok(())
            }
            Failure::OutputTooLarge {
                stream,
                limit_bytes,
            } => write!(f, "wrote more than {limit_bytes} bytes to {stream}"),
            Failure::Transport { message } => write!(f, "transport error: {message}"),
            Failure::CouldNotStart { message } => write!(f, "could not start: {message}"),
            Failure::Reported { message } => f.write_str(message),
        }
    }
}

/// The conventional name of a Linux signal number.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "signal",
    }
}

/// Raise this process's soft limit on open files to its hard limit (the most an unprivileged
/// process may take), and return the limit now in force (`None`: unlimited). A server holds a
/// descriptor per connection, per scan file and per file a running wasm plugin has open
/// (at most its `max_open_files`), so the default soft limit of many systems (1,024) is
/// easily reached; native plugins get their own `max_open_files`, not this limit.
pub fn raise_open_files_limit() -> std::io::Result<Option<u64>> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(getrlimit(Resource::Nofile).current)
}

/// This process's soft limit on open files (`None`: unlimited).
pub fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Descriptors kept for the server itself (connections, the database, scan files) when
/// checking that the wasm plugins' caps fit in the process's limit.
pub const OPEN_FILES_RESERVE: u64 = 1024;

/// What the native sandbox's seccomp filter refuses, for the log (see `seccomp.rs`).
const SECCOMP_REFUSES: &str = "sockets unless allow_network, kernel IPC unless allow_ipc, and \
     always namespaces, io_uring, userfaultfd, perf events, BPF, changes to other processes, \
     watches on files, and changes to a file's mode, owner or attributes by its path";

/// Log how the native plugins among `plugins` are confined: a warning for each one whose
/// sandbox is off, one when Cordon runs as root, and what this kernel's Landlock enforces for the others (a warning when it
/// is not everything Cordon asks for). Nothing when there are no native plugins. `serving`: the
/// plugins scan clients' files (the server), so a warning too when `/proc` shows them the
/// processes of other scans ([`proc_hides_other_processes`]).
pub fn log_native_sandbox<'a>(plugins: impl IntoIterator<Item = &'a Plugin>, serving: bool) {
    let mut confined = Vec::new();
    let mut native = false;
    for plugin in plugins {
        if let RuntimeSpec::Process { sandbox, .. } = &plugin.spec.runtime {
            native = true;
            if sandbox.enabled {
                confined.push(plugin.name().as_str());
            } else {
                tracing::warn!(
                    plugin = plugin.name().as_str(),
                    "native plugin runs unconfined (sandbox = false): it can reach whatever \
                     Cordon's user can"
                );
            }
        }
    }
    if native {
        match cgroup::cgroups() {
            Ok(cgroups) => tracing::info!(
                "each native plugin runs in {}: at most its max_processes processes and \
                 threads, all killed at its end",
                cgroups.describe()
            ),
            Err(why) => tracing::warn!(
                "native plugins' max_processes is not enforced: {why}; a fork bomb in one takes \
                 the machine's process table until its deadline (TasksMax in \
                 deploy/cordon.service bounds Cordon and its plugins together)"
            ),
        }
        match cgroup::cgroups().map(|c| (c.memory(), c.measures_peaks(), c.measures_every_peak())) {
            Ok((Ok(memory), _, true)) => tracing::info!(
                "each native plugin's processes run in {memory}: at most its max_memory_bytes \
                 together"
            ),
            Ok((Ok(memory), true, false)) => tracing::info!(
                "each native plugin's processes run in {memory}: at most its max_memory_bytes \
                 together; this kernel cannot reset a memory cgroup's peak (Linux 6.12 can), \
                 so peak_memory_bytes is given only for an invocation that used more than \
                 every earlier one in its cgroup"
            ),
            Ok((Ok(memory), false, false)) => tracing::info!(
                "each native plugin's processes run in {memory}: at most its max_memory_bytes \
                 together; this kernel keeps no peak of a memory cgroup (Linux 5.19 does), so \
                 native plugins' peak_memory_bytes is not given"
            ),
            Ok((Err(why), _, _)) | Err(why) => tracing::warn!(
                "native plugins' max_memory_bytes bounds each of their processes \
                 (RLIMIT_DATA), not all of a plugin's together: {why} (MemoryMax in \
                 deploy/cordon.service bounds Cordon and its plugins together)"
            ),
        }
    }
    if native && rustix::process::geteuid().is_root() {
        tracing::warn!(
            "Cordon runs as root, and so do its native plugins, though without any capability: \
             each may change the files of root's that its sandbox lets it reach (and, \
             unconfined, every one on the machine); run Cordon as a user of its own \
             (deploy/cordon.service)"
        );
    }
    if confined.is_empty() {
        return;
    }
    let abi = landlock_abi();
    let plugins = confined.join(", ");
    if abi >= 6 {
        tracing::info!(
            landlock_abi = abi,
            plugins,
            "native plugins are sandboxed by Landlock ({}) and by a seccomp filter ({})",
            landlock_enforces(abi),
            SECCOMP_REFUSES
        );
    } else {
        tracing::warn!(
            landlock_abi = abi,
            plugins,
            "native plugins are sandboxed by Landlock against {} (and by a seccomp filter: {})",
            landlock_enforces(abi),
            SECCOMP_REFUSES
        );
    }
    if serving && abi > 0 && !proc_hides_other_processes() {
        tracing::warn!(
            plugins,
            "native plugins can read other processes' command lines in /proc, which name the \
             files other scans are scanning: run Cordon as a user of its own with /proc \
             mounted hidepid=invisible (ProtectProc=invisible in deploy/cordon.service), and \
             the sandbox then hides every process outside it (the mount's gid= group, root's \
             by default, still sees everything)"
        );
    }
}

/// A warning when `limit` (this process's open files limit, `None`: unlimited) is below
/// `plugins` (the handles the wasm plugins that can run at once may hold together, each at
/// its `max_open_files`) plus [`OPEN_FILES_RESERVE`]: then plugins at their caps could still
/// leave the server without descriptors.
pub fn open_files_warning(limit: Option<u64>, plugins: u64) -> Option<String> {
    let needed = plugins.saturating_add(OPEN_FILES_RESERVE);
    match limit {
        Some(limit) if limit < needed => Some(format!(
            "the open files limit is {limit}, below the {needed} that the wasm plugins able to \
             run at once ({plugins} open files at their max_open_files) and the server itself \
             could need; raise the hard limit (`ulimit -Hn`, systemd's LimitNOFILE=), or \
             lower `workers` or the plugins' max_open_files"
        )),
        _ => None,
    }
}

/// Settings shared by all plugins of one executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Where compiled wasm modules are cached (`<sha256>-<engine hash>.cwasm`); `None` compiles
    /// on every load. Only Cordon writes here: precompiled code is never taken from plugin
    /// authors.
    pub cache_dir: Option<PathBuf>,
    /// Where process plugins get their fresh, empty working directories.
    pub work_dir: PathBuf,
    /// How many wasm invocations may run at once; more wait for a slot. Also sizes the
    /// pooling allocator.
    pub max_concurrent_wasm: u32,
}

impl ExecutorConfig {
    /// Defaults under `data_dir`: cache in `data_dir/cache/modules`, work in `data_dir/work`.
    pub fn under(data_dir: &std::path::Path) -> ExecutorConfig {
        ExecutorConfig {
            cache_dir: Some(data_dir.join("cache").join("modules")),
            work_dir: data_dir.join("work"),
            max_concurrent_wasm: 64,
        }
    }
}

/// Why a plugin could not be loaded. Names the plugin; the message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin:?}: {problem}")]
pub struct LoadError {
    /// The plugin.
    pub plugin: PluginName,
    /// What is wrong with it.
    pub problem: String,
}

/// Why the executor itself could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The wasm engine could not be configured.
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client: {0}")]
    Http(String),
    /// A directory could not be created.
    #[error("could not create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What was learned about a plugin when it was loaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PluginInfo {
    /// sha256 of the wasm module's bytes, lowercase hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What kind of wasm binary (`module`, `component`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasm_kind: Option<String>,
    /// How long loading took (compile or cache load), in microseconds.
    pub load_micros: u64,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
}

/// A plugin ready to run: its definition and what its runtime prepared at load.
pub struct Plugin {
    spec: PluginSpec,
    info: PluginInfo,
    prepared: Prepared,
}

enum Prepared {
    Wasm(wasm::WasmPlugin),
    Process(process::ProcessPlugin),
    Webhook(webhook::WebhookPlugin),
}

impl Plugin {
    /// The definition it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The name.
    pub fn name(&self) -> &PluginName {
        &self.spec.name
    }

    /// The runtime.
    pub fn runtime(&self) -> RuntimeKind {
        self.spec.runtime.kind()
    }

    /// What was learned at load.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Its `eng_id` in results and `/stat/engines`: `<name>_<runtime>`, the name lowercased
    /// with every character but ASCII letters and digits as `_` (MetaDefender leaves an
    /// external scanner's `eng_id` to the host).
    pub fn engine_id(&self) -> String {
        let name: String = self
            .name()
            .as_str()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{name}_{}", self.runtime())
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("spec", &self.spec)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Runs plugins of every runtime. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    wasm: wasm::WasmRuntime,
    process: process::ProcessRuntime,
    webhook: webhook::WebhookRuntime,
}

impl Executor {
    /// Set up the runtimes.
    pub fn new(config: &ExecutorConfig) -> Result<Executor, ExecutorError> {
        for dir in config.cache_dir.iter().chain([&config.work_dir]) {
            std::fs::create_dir_all(dir).map_err(|source| ExecutorError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Executor {
            inner: Arc::new(Inner {
                wasm: wasm::WasmRuntime::new(config)?,
                process: process::ProcessRuntime::new(config),
                webhook: webhook::WebhookRuntime::new()?,
            }),
        })
    }

    /// The wasm runtime, for the plugin tools that inspect modules.
    pub fn wasm(&self) -> &wasm::WasmRuntime {
        &self.inner.wasm
    }

    /// Load a plugin: compile or fetch from cache and link a wasm module, resolve a program,
    /// check a URL. Everything that can be checked before the first scan is checked here.
    pub fn prepare(&self, spec: PluginSpec) -> Result<Plugin, LoadError> {
        let started = std::time::Instant::now();
        let fail = |problem: String| LoadError {
            plugin: spec.name.clone(),
            problem,
        };
        let mut info = PluginInfo::default();
        let prepared = match &spec.runtime {
            RuntimeSpec::Wasm { module } => {
                let (plugin, wasm_info) =
                    self.inner.wasm.prepare(module, spec.role).map_err(fail)?;
                // Refused now rather than failing every scan at instantiation.
                if let Some(needed) = wasm_info.initial_memory_bytes
                    && needed > spec.limits.max_memory_bytes
                {
                    return Err(fail(format!(
                        "its module needs {} of linear memory just to start (its initial \
                         memory size), more than limits.max_memory_bytes allows ({}): every \
                         scan would fail. Raise max_memory_bytes to at least {needed}, or build \
                         the module with a smaller initial memory (for a Rust plugin, a smaller \
                         `-C link-arg=--initial-heap=N`, or none)",
                        human_bytes(needed),
                        human_bytes(spec.limits.max_memory_bytes),
                    )));
                }
                info.sha256 = Some(wasm_info.sha256);
                info.wasm_kind = Some(wasm_info.kind.to_string());
                info.from_cache = wasm_info.from_cache;
                Prepared::Wasm(plugin)
            }
            RuntimeSpec::Process {
                program,
                args,
                env,
                sandbox,
            } => Prepared::Process(
                self.inner
                    .process
                    .prepare(program, args, env, sandbox)
                    .map_err(fail)?,
            ),
            RuntimeSpec::Webhook { url } => {
                Prepared::Webhook(self.inner.webhook.prepare(url).map_err(fail)?)
            }
        };
        info.load_micros = started.elapsed().as_micros() as u64;
        Ok(Plugin {
            spec,
            info,
            prepared,
        })
    }

    /// Run `plugin` once. Never fails: whatever the plugin does is in the outcome.
    pub async fn invoke(&self, plugin: &Plugin, invocation: Invocation<'_>) -> Outcome {
        let limits = &plugin.spec.limits;
        let outcome = match &plugin.prepared {
            Prepared::Wasm(p) => {
                self.inner
                    .wasm
                    .invoke(p, &plugin.spec.name, limits, invocation)
                    .await
            }
            Prepared::Process(p) => self.inner.process.invoke(p, limits, invocation).await,
            Prepared::Webhook(p) => self.inner.webhook.invoke(p, limits, invocation).await,
        };
        tracing::debug!(
            plugin = %plugin.spec.name,
            runtime = %plugin.runtime(),
            exit = ?outcome.exit,
            failure = outcome.failure.as_ref().map(Failure::kind),
            duration_us = outcome.duration.as_micros() as u64,
            "plugin finished"
        );
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_files_warning_compares_the_limit_with_what_plugins_could_hold() {
        // 2,048 handles of plugins + the reserve = 3,072.
        assert_eq!(open_files_warning(Some(3072), 2048), None);
        assert_eq!(open_files_warning(None, 2048), None);
        let warning = open_files_warning(Some(3071), 2048).expect("a warning");
        assert!(
            warning.contains("limit is 3071, below the 3072"),
            "{warning}"
        );
        assert!(open_files_warning(Some(1024), 1).is_some());
    }
}
