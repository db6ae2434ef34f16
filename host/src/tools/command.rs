//! `cordon plugin ...`: the command-line arguments of the tools and their exit statuses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use super::check::{CheckOptions, check_file};
use super::run::{RunOptions, read_input_arg, run_plugin};
use super::scaffold::{SdkSource, scaffold};
use super::{EXIT_FAILED, EXIT_OK, ToolError};
use crate::cli::EXIT_ERROR;
use crate::plugin::{Limits, NativeSandbox, Role};

/// `cordon plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Tell what a wasm binary is and whether Cordon accepts it as a plugin.
    ///
    /// Shows the kind (core module, command component, scanner- or post-action-world
    /// component), every import and whether the sandbox provides it, every export, the size,
    /// the compile time and the cached load time. The answer is the host's own loading code.
    /// Without --role the binary must be accepted in at least one role.
    ///
    /// Exit status: 0 accepted, 1 refused (the host's reason is printed), 2 could not check.
    Check {
        /// The .wasm file.
        file: PathBuf,
        /// Check for this role only.
        #[arg(long, value_enum)]
        role: Option<RoleArg>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Run a plugin on one file exactly as Cordon does, and show everything.
    ///
    /// A .wasm file runs in the wasm sandbox; another executable runs as a native process
    /// (no extra arguments, no environment but TMPDIR). Shows the stdin sent, raw stdout and
    /// stderr, exit code, duration, peak memory, and the engine result or the precise
    /// contract violation.
    ///
    /// Exit status: 0 the plugin met the contract, 1 it did not (or Cordon refuses to load
    /// it), 2 could not run it.
    Run {
        /// The plugin: a .wasm file or a native executable.
        plugin: PathBuf,
        /// The file to scan.
        sample: PathBuf,
        /// Scanner or post action.
        #[arg(long, value_enum, default_value = "scanner")]
        role: RoleArg,
        /// The stdin JSON instead of the default one (the result JSON the pipeline would
        /// send for this file): JSON text, or @PATH to read it from a file. Sent as one
        /// compact line.
        #[arg(long, value_name = "JSON|@PATH")]
        input: Option<String>,
        /// A `metadata` object to put in the default input (JSON text or @PATH).
        #[arg(long, value_name = "JSON|@PATH", conflicts_with = "input")]
        metadata: Option<String>,
        /// The plugin's timeout in milliseconds.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
        /// The plugin's memory limit in bytes.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_MEMORY_BYTES)]
        max_memory_bytes: u64,
        /// The cap on stdout, in bytes.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_STDOUT_BYTES)]
        max_stdout_bytes: usize,
        /// The cap on stderr, in bytes.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_STDERR_BYTES)]
        max_stderr_bytes: usize,
        /// How many files (and other handles) the plugin may hold open at once, 8 to 65536.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_OPEN_FILES,
              value_parser = clap::value_parser!(u32).range(8..=65_536))]
        max_open_files: u32,
        /// The disk a native plugin may fill, in bytes: what its working directory holds at
        /// once, and the size of each file it writes.
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_DISK_BYTES,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_disk_bytes: u64,
        /// How many processes and threads a native plugin may run at once, itself included,
        /// 1 to 4096 (enforced where Cordon may make a pids cgroup).
        #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_PROCESSES,
              value_parser = clap::value_parser!(u32).range(1..=4_096))]
        max_processes: u32,
        /// A native plugin may also read (and execute) this tree, as `allow_read` in the
        /// configuration. Repeatable.
        #[arg(long, value_name = "PATH")]
        allow_read: Vec<PathBuf>,
        /// A native plugin may also write in this directory, as `allow_write`. Repeatable.
        #[arg(long, value_name = "DIR")]
        allow_write: Vec<PathBuf>,
        /// A native plugin may use the network (TCP, UDP) and Unix sockets, as
        /// `allow_network = true`.
        #[arg(long)]
        allow_network: bool,
        /// A native plugin may open Unix sockets (a local daemon's, such as clamd's), not the
        /// network, as `allow_unix_sockets = true`.
        #[arg(long)]
        allow_unix_sockets: bool,
        /// A native plugin may use kernel IPC (System V shared memory, semaphores and
        /// message queues, POSIX message queues, memory files, keyrings), as
        /// `allow_ipc = true`.
        #[arg(long)]
        allow_ipc: bool,
        /// Run a native plugin without its sandbox (Landlock and the seccomp filter), as
        /// `sandbox = false`.
        #[arg(long, conflicts_with_all = ["allow_read", "allow_write", "allow_network", "allow_unix_sockets", "allow_ipc"])]
        no_sandbox: bool,
        /// The plugin's name (its `argv[0]` in wasm). Default: the file's stem, cut to 16
        /// characters.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Create a scanner plugin crate on the plugin SDK, ready to test and build to wasm.
    New {
        /// The crate's name (ASCII letters, digits, - and _).
        name: String,
        /// Where to create it. Default: ./NAME. Must not exist or be empty.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Depend on the plugin SDK at this path. Default: the plugin-sdk/ of the checkout
        /// this binary was built from.
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
    },
}

/// Options shared by `check` and `run`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Use this data directory's compiled-module cache and work directories. Default: a
    /// temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A plugin's role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// A scanner.
    Scanner,
    /// A post action.
    #[value(name = "post_action", alias = "post-action")]
    PostAction,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Scanner => Role::Scanner,
            RoleArg::PostAction => Role::PostAction,
        }
    }
}

/// Run `cordon plugin ...`.
pub async fn run_command(command: PluginCommand) -> ExitCode {
    match run_inner(command).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cordon: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run_inner(command: PluginCommand) -> Result<u8, ToolError> {
    match command {
        PluginCommand::Check { file, role, common } => {
            let options = CheckOptions {
                role: role.map(Role::from),
                data_dir: common.data_dir,
            };
            let report = check_file(&file, &options)?;
            if common.json {
                println!("{}", to_json(&report));
            } else {
                print!("{}", report.render());
            }
            Ok(if report.accepted {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        PluginCommand::Run {
            plugin,
            sample,
            role,
            input,
            metadata,
            timeout_ms,
            max_memory_bytes,
            max_stdout_bytes,
            max_stderr_bytes,
            max_open_files,
            max_disk_bytes,
            max_processes,
            allow_read,
            allow_write,
            allow_network,
            allow_unix_sockets,
            allow_ipc,
            no_sandbox,
            name,
            common,
        } => {
            if timeout_ms == 0 {
                return Err(ToolError::Invalid(
                    "--timeout-ms must be greater than 0".into(),
                ));
            }
            let metadata = match metadata {
                Some(arg) => Some(serde_json::from_str(&read_input_arg(&arg)?).map_err(|e| {
                    ToolError::Invalid(format!("--metadata is not valid JSON: {e}"))
                })?),
                None => None,
            };
            let options = RunOptions {
                role: role.into(),
                input: input.as_deref().map(read_input_arg).transpose()?,
                metadata,
                limits: Limits {
                    timeout: Duration::from_millis(timeout_ms),
                    max_memory_bytes,
                    max_stdout_bytes,
                    max_stderr_bytes,
                    max_open_files,
                    max_disk_bytes,
                    max_processes,
                },
                name,
                data_dir: common.data_dir,
                sandbox: NativeSandbox {
                    enabled: !no_sandbox,
                    read: absolute(allow_read)?,
                    write: absolute(allow_write)?,
                    network: allow_network,
                    unix_sockets: allow_unix_sockets || allow_network,
                    ipc: allow_ipc,
                },
            };
            let report = run_plugin(&plugin, &sample, &options).await?;
            if common.json {
                println!("{}", to_json(&report));
            } else {
                print!("{}", report.render());
            }
            Ok(if report.contract_met {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        PluginCommand::New {
            name,
            dir,
            sdk_path,
        } => {
            let sdk = match sdk_path {
                Some(path) => SdkSource::Path(std::fs::canonicalize(&path).map_err(|source| {
                    ToolError::Read {
                        path: path.clone(),
                        source,
                    }
                })?),
                None => SdkSource::default_for_this_build(),
            };
            let made = scaffold(&name, dir.as_deref(), sdk)?;
            print!("{}", made.render());
            Ok(EXIT_OK)
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("tool reports serialize")
}

/// Paths given on the command line, made absolute against the current directory.
fn absolute(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, ToolError> {
    paths
        .into_iter()
        .map(|p| {
            std::path::absolute(&p).map_err(|e| ToolError::Invalid(format!("{}: {e}", p.display())))
        })
        .collect()
}
