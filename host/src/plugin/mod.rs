//! Plugin definitions: a validated name, a role, a runtime and limits. What the configuration
//! file and the inventory API produce, and what the executor prepares.

pub mod inventory;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A plugin's name: 1 to 16 printable ASCII characters (MetaDefender's rule), no leading or
/// trailing space. It is the engine's key in `scan_details` and the name in `actions_ran`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct PluginName(Arc<str>);

/// Why a plugin name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty; give 1 to 16 ASCII characters")]
    Empty,
    /// The name is longer than 16 characters.
    #[error("{0:?} is {1} characters long; the limit is 16")]
    TooLong(String, usize),
    /// The name holds a character outside printable ASCII.
    #[error("{0:?} holds {1:?}; only printable ASCII characters are allowed")]
    NotAscii(String, char),
    /// The name starts or ends with a space.
    #[error("{0:?} starts or ends with a space")]
    Padded(String),
}

impl PluginName {
    /// Longest name MetaDefender accepts.
    pub const MAX_LEN: usize = 16;

    /// Validate `name`.
    pub fn new(name: &str) -> Result<PluginName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if let Some(c) = name.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(NameError::NotAscii(name.to_owned(), c));
        }
        if name.len() > Self::MAX_LEN {
            return Err(NameError::TooLong(name.to_owned(), name.len()));
        }
        if name.starts_with(' ') || name.ends_with(' ') {
            return Err(NameError::Padded(name.to_owned()));
        }
        Ok(PluginName(name.into()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PluginName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PluginName::new(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PluginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// What a plugin does in a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An External Scanner: its stdout is a verdict that appears in `scan_details`.
    Scanner,
    /// A Post Action: runs after aggregation; only its exit code (or HTTP status) counts.
    PostAction,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Scanner => "scanner",
            Role::PostAction => "post action",
        })
    }
}

/// Which runtime a plugin has. Code outside the executor only needs this for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// A WASI module or component under wasmtime.
    Wasm,
    /// A native sub-process.
    Process,
    /// An HTTP endpoint.
    Webhook,
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Process => "process",
            RuntimeKind::Webhook => "webhook",
        })
    }
}

/// Where a wasm plugin's bytes come from.
#[derive(Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A `.wasm` file on disk.
    File(PathBuf),
    /// A module compiled into the `cordon` binary (the example plugins of the default
    /// configuration), named `builtin:<name>` in configuration.
    Builtin {
        /// The name after `builtin:`.
        name: &'static str,
        /// The module's bytes.
        bytes: &'static [u8],
    },
    /// Bytes held in memory (uploaded over the inventory API, or given by a test).
    Bytes(Arc<[u8]>),
}

impl fmt::Debug for ModuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleSource::File(p) => write!(f, "{}", p.display()),
            ModuleSource::Builtin { name, .. } => write!(f, "builtin:{name}"),
            ModuleSource::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// The runtime-specific part of a plugin definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSpec {
    /// Run a WASI module (wasm32-wasip1) or component (wasm32-wasip2) in the sandbox.
    Wasm {
        /// The module.
        module: ModuleSource,
    },
    /// Run a native program. The sample's absolute path is appended as the last argument.
    Process {
        /// The program, resolved to an absolute path at load.
        program: PathBuf,
        /// Arguments before the sample path.
        args: Vec<String>,
        /// The child's whole environment: the variables named in `inherit_env` (copied from
        /// Cordon's own environment at load) and those set in `env`. Nothing else.
        env: Vec<(String, String)>,
        /// What the program may reach besides its own file, the sample and its working
        /// directory.
        sandbox: NativeSandbox,
    },
    /// POST to an HTTP endpoint.
    Webhook {
        /// The endpoint.
        url: String,
    },
}

/// The Landlock sandbox of a native plugin: what it may reach besides what every native plugin
/// gets (the system's programs and libraries, and what programs need of `/etc`, read-only;
/// `/proc` and `/sys`, read-only; `/dev/null` and the random devices; its own program; the one
/// file it scans, read-only; its fresh working directory, read-write). Outside that, it can
/// neither read nor write files, send signals to processes outside its sandbox (Cordon, other
/// plugins) or connect to abstract Unix sockets, on kernels that have these Landlock features
/// (see [`crate::executor::landlock_abi`]), nor open sockets of any family or make the kernel
/// objects that outlive it or escape its memory limit: System V IPC, POSIX message queues,
/// memory files, keys (a seccomp filter; `socketpair` and pipes are left alone). Whatever this
/// allows, the filter keeps it from changing other processes' limits and scheduling, from
/// watching files, and from changing a file's mode, owner or attributes by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSandbox {
    /// `false` runs the program unconfined, as Cordon's user (`sandbox = false`).
    pub enabled: bool,
    /// Files and directories it may read and execute, whole trees (`allow_read`).
    pub read: Vec<PathBuf>,
    /// Directories it may read and write, whole trees (`allow_write`); created at load when
    /// missing.
    pub write: Vec<PathBuf>,
    /// Whether it may open sockets of every family: the network (TCP, UDP) and Unix sockets
    /// (`allow_network`).
    pub network: bool,
    /// Whether it may open Unix-domain sockets, and so connect to any local daemon's socket
    /// that Cordon's user may open, without the network (`allow_unix_sockets`). Implied by
    /// `network`.
    pub unix_sockets: bool,
    /// Whether it may make kernel objects that are not files (`allow_ipc`): System V shared
    /// memory, semaphores and message queues, POSIX message queues, memory files
    /// (`memfd_create`, `memfd_secret`) and keys in the kernel's keyrings. System V objects and
    /// POSIX queues outlive the plugin (nothing removes them when it ends) and other plugins of
    /// Cordon's user can reach System V ones; their memory, as a memory file's, is not counted
    /// by `max_memory_bytes`. Landlock still refuses opening a POSIX queue: it is a file, in no
    /// allowed tree.
    pub ipc: bool,
}

impl NativeSandbox {
    /// What this sandbox allows beyond the defaults, for people: empty when nothing, else
    /// "also reads A, B; also writes C; network allowed".
    pub fn widened(&self) -> String {
        let list = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.read.is_empty() {
            parts.push(format!("also reads {}", list(&self.read)));
        }
        if !self.write.is_empty() {
            parts.push(format!("also writes {}", list(&self.write)));
        }
        if self.network {
            parts.push("network allowed".to_owned());
        } else if self.unix_sockets {
            parts.push("Unix sockets allowed".to_owned());
        }
        if self.ipc {
            parts.push("kernel IPC allowed".to_owned());
        }
        parts.join("; ")
    }
}

impl Default for NativeSandbox {
    /// Confined, with nothing allowed beyond what every native plugin gets.
    fn default() -> NativeSandbox {
        NativeSandbox {
            enabled: true,
            read: Vec::new(),
            write: Vec::new(),
            network: false,
            unix_sockets: false,
            ipc: false,
        }
    }
}

impl RuntimeSpec {
    /// The runtime's kind.
    pub fn kind(&self) -> RuntimeKind {
        match self {
            RuntimeSpec::Wasm { .. } => RuntimeKind::Wasm,
            RuntimeSpec::Process { .. } => RuntimeKind::Process,
            RuntimeSpec::Webhook { .. } => RuntimeKind::Webhook,
        }
    }
}

/// Limits applied to every invocation of a plugin, whatever its runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time from start to the end of output; past it the plugin is stopped
    /// (wasm: epoch interruption; process: SIGKILL to its process group; webhook: the request
    /// is dropped) and its outcome is Failed with reason `timeout`.
    pub timeout: Duration,
    /// Memory the plugin may use. wasm: linear memories and tables together (the store's
    /// limit); process: the limit of its memory cgroup, all its processes together, where
    /// Cordon may make one (else `RLIMIT_DATA`, heap and private mappings, for each process)
    /// and, as a backstop, `RLIMIT_AS` at four times this value. Not applied to webhooks.
    pub max_memory_bytes: u64,
    /// Bytes of stdout (webhook: of response body) kept; more is Failed with reason
    /// `output_too_large`.
    pub max_stdout_bytes: usize,
    /// Bytes of stderr kept; more is Failed with reason `output_too_large`.
    pub max_stderr_bytes: usize,
    /// Files (and other handles) the plugin may hold open at once. wasm: entries of its WASI
    /// handle table (its open files and directories, its standard streams); one more stops
    /// it, Failed with reason `open_files_limit`. Each open file or directory is a
    /// descriptor of Cordon's own process, so without this cap one plugin could use up the
    /// host's descriptors while it runs. process: `RLIMIT_NOFILE` (an `open` past it fails
    /// with `EMFILE`, for the program to handle). Not applied to webhooks.
    pub max_open_files: u32,
    /// Disk a native process may fill (process only: a wasm plugin writes nothing, a webhook
    /// runs elsewhere): what its working directory holds at once, measured while it runs
    /// (more is Failed with reason `disk_limit`), and the size of every file it writes, where
    /// ever it is (`RLIMIT_FSIZE`: a write past it kills it with `SIGXFSZ`, also
    /// `disk_limit`), which bounds a file it deletes while it holds it open, out of the
    /// directory's measure.
    pub max_disk_bytes: u64,
    /// Processes and threads a native process may run at once, itself included (process
    /// only): the `pids.max` of a cgroup of its own, where Cordon may make one (see
    /// `executor/cgroup.rs`). A `fork` or a new thread past it fails with `EAGAIN`, and the
    /// plugin is Failed with reason `process_limit`. Bounds a fork bomb.
    pub max_processes: u32,
}

impl Limits {
    /// Default `timeout_ms`: 30 seconds.
    pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
    /// Default `max_memory_bytes`: 256 MiB.
    pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 256 << 20;
    /// Default `max_stdout_bytes`: 64 KiB, far more than a verdict needs.
    pub const DEFAULT_MAX_STDOUT_BYTES: usize = 64 << 10;
    /// Default `max_stderr_bytes`: 64 KiB.
    pub const DEFAULT_MAX_STDERR_BYTES: usize = 64 << 10;
    /// Default `max_open_files`: 256, far more than a scanner of one file needs (a wasm
    /// plugin starts with a few: its standard streams and its directory; the example plugins
    /// run at 8), and few enough that a server's wasm plugins at their caps stay well within
    /// the descriptor limits systems give services (`serve` warns when they would not).
    pub const DEFAULT_MAX_OPEN_FILES: u32 = 256;
    /// Default `max_disk_bytes`: 1 GiB, room for a scanner to unpack what it scans, and a
    /// bound on a decompression bomb's.
    pub const DEFAULT_MAX_DISK_BYTES: u64 = 1 << 30;
    /// Default `max_processes`: 256, far more than a scanner needs (a shell script and the
    /// programs it runs, a runtime's threads), and few enough that a fork bomb leaves the
    /// machine's process table and CPU to everything else.
    pub const DEFAULT_MAX_PROCESSES: u32 = 256;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(Self::DEFAULT_TIMEOUT_MS),
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
            max_stdout_bytes: Self::DEFAULT_MAX_STDOUT_BYTES,
            max_stderr_bytes: Self::DEFAULT_MAX_STDERR_BYTES,
            max_open_files: Self::DEFAULT_MAX_OPEN_FILES,
            max_disk_bytes: Self::DEFAULT_MAX_DISK_BYTES,
            max_processes: Self::DEFAULT_MAX_PROCESSES,
        }
    }
}

/// A validated plugin definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Unique name.
    pub name: PluginName,
    /// Scanner or post action.
    pub role: Role,
    /// How it runs.
    pub runtime: RuntimeSpec,
    /// Its limits.
    pub limits: Limits,
    /// Free text for people (shown by `/stat/engines` and `cordon plugin list`).
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_metadefender_rules() {
        assert!(PluginName::new("Test PA").is_ok());
        assert!(PluginName::new("ExtScn_01").is_ok());
        assert!(PluginName::new("sixteen_chars_ok").is_ok());
        assert!(matches!(
            PluginName::new("seventeen_chars__"),
            Err(NameError::TooLong(_, 17))
        ));
        assert!(matches!(PluginName::new(""), Err(NameError::Empty)));
        assert!(matches!(
            PluginName::new("scanné"),
            Err(NameError::NotAscii(_, 'é'))
        ));
        assert!(matches!(
            PluginName::new("tab\there"),
            Err(NameError::NotAscii(_, '\t'))
        ));
        assert!(matches!(PluginName::new(" pad"), Err(NameError::Padded(_))));
    }
}
