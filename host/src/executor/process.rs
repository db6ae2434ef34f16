//! The process runtime: native sub-processes (MetaDefender's External Scanner and sub-process
//! Post Action).
//!
//! At load: the program is resolved to an absolute path of an existing, executable regular
//! file (a bare name is looked up on Cordon's own `PATH`), and its arguments and environment
//! are checked for characters a command line cannot carry.
//!
//! Per invocation: `program args... <absolute sample path>`, with exactly the configured
//! environment and nothing inherited (but `TMPDIR`, its working directory, unless configured),
//! in a fresh empty working directory (removed afterwards), in a process group of its own,
//! in a pids cgroup of its own where Cordon may make one (`pids.max` = `max_processes`: see
//! `cgroup.rs`) and a memory cgroup where it may use that controller (its limit
//! `max_memory_bytes`, for all the plugin's processes together), under rlimits
//! (`RLIMIT_DATA` = `max_memory_bytes` where there is no memory cgroup, `RLIMIT_AS` = 4 × that
//! as a backstop, `RLIMIT_CPU` = the timeout rounded up to whole seconds + 1 s soft / + 2 s
//! hard, `RLIMIT_NOFILE` = `max_open_files`, `RLIMIT_FSIZE` = `max_disk_bytes`, no core
//! dumps), first for the OOM killer (`oom_score_adj` 1000: see `prefer_for_oom_kill`), with
//! `no_new_privs` and without any capability (a Cordon run as root runs its plugins as root,
//! but with none of root's privileges: see `drop_capabilities`), with no descriptor but its
//! standard streams (`close_inherited`), and, unless the plugin's `sandbox` is off, in a
//! Landlock sandbox built for that invocation (see `landlock.rs`: the system's files, its
//! program, its one file, its working directory, and what its configuration allows; no
//! network, no signals out) under the seccomp filter of `seccomp.rs`.
//!
//! Guarantees, whatever the program does:
//! - the invocation ends by its deadline (`timeout` after the start) plus at most
//!   [`REAP_GRACE`] to collect the killed child: at the deadline the whole process group gets
//!   SIGKILL and reading stops, even if a process that escaped the group still holds the
//!   pipes open;
//! - when the direct child exits, what is left of its process group is killed too, then the
//!   pipes are read to their end; an invocation dropped before its end kills the group as
//!   well;
//! - processes that left the group (`setsid`, `setpgid`: a daemon) are out of the group
//!   kill's reach, but not out of the plugin's cgroup: when the direct child exits, and when
//!   the invocation ends, every process in the cgroup is killed. Where Cordon makes no cgroup,
//!   in a process that called [`reap_escaped_processes`] (the `cordon` binary does, at start),
//!   they are killed too: Cordon is their "child subreaper", so when their parent dies they
//!   become its children, and after every process invocation every child of Cordon that is
//!   not a running plugin is killed and reaped (it is done with a cgroup as well, to reap
//!   them). A library user without cgroups that spawns processes of its own does not call it,
//!   and keeps only the group kill;
//! - a `fork` or a thread its cgroup refuses stops it, and the outcome is `process_limit`;
//!   one of its processes killed by the kernel because they used more than `max_memory_bytes`
//!   together stops it too, and the outcome is `memory_limit`, even when the plugin went on
//!   and printed a verdict (looked for every 50 ms while it runs, and at its end);
//! - at most `max_stdout_bytes` / `max_stderr_bytes` are kept; one byte more kills the
//!   process group at once and the outcome is `output_too_large`;
//! - its working directory is measured while it runs (`watch_disk`); once it holds more than
//!   `max_disk_bytes` the process group is killed and the outcome is `disk_limit`, as it is
//!   when a write past `RLIMIT_FSIZE` kills it (`SIGXFSZ`);
//! - stdin is written while stdout and stderr are drained, so a child that writes before it
//!   reads cannot deadlock, and one that never reads stdin or exits early is not a failure;
//! - a spawn failure, an exit code, a signal or a deadline is an [`Outcome`], never a host
//!   error or a panic.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Resource, Rlimit, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::cgroup::{PluginCgroup, cgroups};
use super::landlock::{Confinement, is_elf32, may_run};
use super::seccomp::seccomp_filter;
use super::{ExecutorConfig, Failure, Invocation, Outcome, Stream};
use crate::plugin::{Limits, NativeSandbox};

/// After Cordon has killed a process group, how long it waits at most for the direct child
/// to be reaped before giving up on its exit status (the kernel still delivers the SIGKILL;
/// tokio reaps the child later). Bounds an invocation at `timeout + REAP_GRACE`.
pub const REAP_GRACE: Duration = Duration::from_secs(1);

/// Size of one read from a child's stdout or stderr pipe (the default Linux pipe capacity).
const READ_CHUNK: usize = 64 * 1024;

/// How many times a spawn that fails with `ETXTBSY` is tried in all. The error is transient:
/// another thread of this process forked while the program file was open for writing, and
/// the forked child holds that descriptor until its own `exec`.
const SPAWN_ATTEMPTS: u32 = 5;

/// `RLIMIT_AS` is this many times `max_memory_bytes` (saturating): a backstop for memory that
/// `RLIMIT_DATA` does not count (where no memory cgroup counts it), with room for the address
/// space that shared libraries and thread stacks reserve without using.
const ADDRESS_SPACE_FACTOR: u64 = 4;

/// Timeouts beyond this are treated as this (30 years), so that a deadline is always a
/// representable instant.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// How many rounds of killing [`reap_escapees`] makes at most: each round kills the orphans
/// there are, and their own children become orphans in their turn.
const REAP_ROUNDS: u32 = 16;

/// Whether this process reaps what plugins leave behind (see [`reap_escaped_processes`]).
static REAPING: AtomicBool = AtomicBool::new(false);

/// The pids of the plugin processes Cordon started and has not reaped yet: its only children
/// that are not orphans. Held while spawning, so that a new plugin is never taken for one.
static LEADERS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// One sweep for orphans at a time: a listed orphan stays this process's unreaped child (its
/// pid cannot be reused) until the sweep that listed it reaps it.
static SWEEP: Mutex<()> = Mutex::new(());

fn leaders() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Make this process the "child subreaper" of every process it starts, and kill, after every
/// process invocation, each of its children that is not a running plugin: processes that a
/// plugin left behind outside its process group (a daemon: `fork`, `setsid`, the parent exits)
/// become Cordon's children when their parent dies, instead of `init`'s, and are killed then.
///
/// For a process whose only children are plugins: any other child it has (or starts itself)
/// would be killed too. The `cordon` binary calls this at start.
pub fn reap_escaped_processes() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    REAPING.store(true, Ordering::SeqCst);
    Ok(())
}

/// The children of this process (of all its threads): `/proc/self/task/*/children`, or where
/// the kernel lacks those, every process whose parent is this one.
fn children() -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    let mut any_children_file = false;
    for task in std::fs::read_dir("/proc/self/task")? {
        let path = task?.path().join("children");
        // A thread that ended meanwhile has no file any more (or one that fails to read): it
        // has no children either, since they went to another thread when it ended.
        if let Ok(text) = std::fs::read_to_string(&path) {
            any_children_file = true;
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    if any_children_file {
        return Ok(pids);
    }
    children_by_parent()
}

/// Every process whose parent is this one, from `/proc/<pid>/stat`.
fn children_by_parent() -> io::Result<Vec<i32>> {
    let mut pids = Vec::new();
    let me = std::process::id() as i32;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if stat_of(pid).is_some_and(|s| s.ppid == me) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// What Cordon reads of a process in `/proc/<pid>/stat`.
pub(super) struct ProcStat {
    /// Its state: `Z` for a zombie, dead and not reaped.
    pub state: char,
    pub ppid: i32,
    /// Its process group.
    pub pgrp: i32,
}

impl ProcStat {
    /// Whether it still runs: not dead, whether reaped (`X`, `x` before Linux 4.14: being
    /// released) or not (`Z`). A process being released has left its process group already,
    /// and reads as group 0 until its pid is gone.
    pub fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x') && self.pgrp != 0
    }
}

/// Whether a SIGKILL is pending for the process `pid` (`SigPnd` or `ShdPnd` in
/// `/proc/<pid>/status`): it dies as soon as it next runs.
fn killed(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|line| {
        line.strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & sigkill != 0)
    })
}

/// A process's [`ProcStat`], or `None` when it is gone (or was never there).
pub(super) fn stat_of(pid: i32) -> Option<ProcStat> {
    // `pid (comm) state ppid pgrp ...`; the command may hold spaces and parentheses.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, ppid, pgrp })
}

/// Kill and reap every child of this process that is not a running plugin (see
/// [`reap_escaped_processes`]); blocking.
fn reap_escapees() {
    let _sweep = SWEEP.lock().unwrap_or_else(|p| p.into_inner());
    // Plugins reaped after their invocation gave up on them (see `REAP_GRACE`) are gone.
    leaders().retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
    for _ in 0..REAP_ROUNDS {
        let orphans: Vec<Pid> = match children() {
            Ok(pids) => {
                let leaders = leaders();
                pids.into_iter()
                    .filter(|p| !leaders.contains(p))
                    .filter_map(Pid::from_raw)
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the processes plugins left behind");
                return;
            }
        };
        if orphans.is_empty() {
            return;
        }
        // A zombie is dead already (killed with its plugin's group or cgroup, then handed to
        // Cordon when its parent died), and one with a SIGKILL pending (its group's, sent as
        // its plugin exited) is dying, however slowly the machine gets to it: only reaped, not
        // reported as left running.
        let running: Vec<i32> = orphans
            .iter()
            .map(|p| p.as_raw_pid())
            .filter(|&pid| stat_of(pid).is_some_and(|s| s.running()) && !killed(pid))
            .collect();
        for &pid in &orphans {
            // A zombie: the kill fails or does nothing, the wait reaps it.
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        let give_up = Instant::now() + REAP_GRACE;
        let mut waiting = orphans.clone();
        while !waiting.is_empty() && Instant::now() < give_up {
            waiting.retain(|&pid| {
                matches!(
                    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG),
                    Ok(None)
                )
            });
            if !waiting.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if running.is_empty() {
            tracing::debug!(
                pids = ?orphans.iter().map(|p| p.as_raw_pid()).collect::<Vec<_>>(),
                "reaped plugin processes that had died already"
            );
        } else {
            tracing::warn!(
                pids = ?running,
                "killed processes a plugin left running outside its process group"
            );
        }
    }
    tracing::warn!("plugins' leftover processes keep multiplying; killing them again next time");
}

/// Runs native programs.
pub struct ProcessRuntime {
    work_dir: PathBuf,
}

/// A program resolved at load.
pub struct ProcessPlugin {
    /// Absolute path of an executable regular file (checked at load).
    program: PathBuf,
    /// Arguments before the sample path; none holds a NUL byte.
    args: Vec<String>,
    /// The child's whole environment; names are non-empty and hold no `=` or NUL, values no
    /// NUL.
    env: Vec<(String, String)>,
    /// Its Landlock sandbox; the allowed trees are absolute, resolved and exist (checked at
    /// load).
    sandbox: NativeSandbox,
    /// The seccomp filter of a sandboxed plugin.
    filter: Option<&'static seccompiler::BpfProgram>,
    /// What tells this plugin from another for its memory cgroups (see `cgroup.rs`): its
    /// program and arguments, NUL-separated (neither holds a NUL).
    identity: String,
}

impl ProcessRuntime {
    /// Working directories are created under `config.work_dir` (which [`super::Executor::new`]
    /// creates), one per invocation.
    pub(super) fn new(config: &ExecutorConfig) -> ProcessRuntime {
        ProcessRuntime {
            work_dir: config.work_dir.clone(),
        }
    }

    /// Resolve `program` to an absolute path (a name without `/` is looked up in the
    /// absolute directories of Cordon's `PATH`; a relative path is taken from Cordon's current
    /// directory) and check that it is an existing regular file Cordon's user may execute
    /// (not on a `noexec` mount), that what runs it (a script's `#!` interpreter, a dynamic
    /// loader, the libraries it loads from its own directories) exists and its sandbox lets
    /// it run, and that `args` and `env` can be passed to `execve`. The sandbox's
    /// `allow_read` entries must exist and its `allow_write` entries be directories (created
    /// when missing); all are resolved to absolute paths without links. The error says what
    /// to fix.
    pub(super) fn prepare(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        sandbox: &NativeSandbox,
    ) -> Result<ProcessPlugin, String> {
        let program = resolve_program(program)?;
        if let Some(arg) = args.iter().find(|a| a.contains('\0')) {
            return Err(format!(
                "argument {arg:?} holds a NUL byte, which no command line can carry"
            ));
        }
        for (name, value) in env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(format!(
                    "environment variable name {name:?} is not valid: it must be non-empty and \
                     hold no `=` or NUL"
                ));
            }
            if value.contains('\0') {
                return Err(format!(
                    "environment variable {name} holds a NUL byte in its value"
                ));
            }
        }
        let sandbox = resolve_sandbox(sandbox)?;
        check_interpreters(&program, &sandbox, env)?;
        let filter = if sandbox.enabled {
            Some(seccomp_filter(&sandbox)?)
        } else {
            None
        };
        if filter.is_some() && is_elf32(&program) {
            // The filter is for 64-bit system calls: it would kill a 32-bit program at its
            // first one.
            return Err(format!(
                "{} is a 32-bit program, and the sandbox's seccomp filter is for 64-bit ones (it \
                 would kill this one); use a 64-bit build, or run it unconfined with \
                 sandbox = false",
                program.display()
            ));
        }
        let mut identity = program.to_string_lossy().into_owned();
        for arg in args {
            identity.push('\0');
            identity.push_str(arg);
        }
        Ok(ProcessPlugin {
            identity,
            program,
            args: args.to_vec(),
            env: env.to_vec(),
            sandbox,
            filter,
        })
    }

    /// Run the program once on `invocation`. Never fails and never panics: see the module
    /// documentation for what is guaranteed.
    ///
    /// `exit` is the child's exit code when it exited by itself (also alongside an
    /// `output_too_large` failure, as the wasm runtime does), `None` when it was killed or
    /// its output did not end by the deadline. A signal Cordon did not send (the program's
    /// own, a crash, `SIGXCPU` from `RLIMIT_CPU` for a multi-threaded CPU hog) is a `signal`
    /// failure. Without a memory cgroup, running out of `RLIMIT_DATA` shows as whatever the
    /// program does about a failed allocation (usually a non-zero exit or
    /// `SIGABRT`/`SIGSEGV`), never as `memory_limit`, which cannot be told apart reliably.
    /// `duration` is the wall time from before the work directory is created to after the
    /// child is reaped; `peak_memory_bytes` is the memory cgroup's peak, and without one not
    /// measured (`None`): the kernel's figure for a child, `ru_maxrss`, includes the resident
    /// set of the copy of Cordon that was forked to exec it (Linux records the old image's
    /// high-water mark at `exec`), so it is not the plugin's.
    pub(super) async fn invoke(
        &self,
        plugin: &ProcessPlugin,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        let started = Instant::now();
        let deadline = started + limits.timeout.min(FOREVER);
        let mut outcome = self.run(plugin, limits, invocation, deadline).await;
        outcome.duration = started.elapsed();
        outcome
    }

    async fn run(
        &self,
        plugin: &ProcessPlugin,
        limits: &Limits,
        invocation: Invocation<'_>,
        deadline: Instant,
    ) -> Outcome {
        let program = plugin.program.display();
        let work = match tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.work_dir)
        {
            Ok(work) => work,
            Err(e) => {
                return Outcome::could_not_start(format!(
                    "could not create a working directory for `{program}` under {}: {e}",
                    self.work_dir.display()
                ));
            }
        };

        // Its processes and threads, counted and killed together (see `cgroup.rs`). Where
        // Cordon may make cgroups, one it cannot make is an error: the plugin does not run
        // without its limit. Making one writes a few files of the cgroup file system, each of
        // which can wait for the kernel's cgroup lock, held meanwhile by anything that makes
        // or removes a cgroup on the machine: not on an async worker. It is guarded there, so
        // that an invocation dropped meanwhile (a cancel) leaves none behind.
        let cgroup = match cgroups() {
            Ok(cgroups) => {
                let (processes, memory) = (limits.max_processes, limits.max_memory_bytes);
                let identity = plugin.identity.clone();
                let made = tokio::task::spawn_blocking(move || {
                    cgroups
                        .create(processes, memory, &identity)
                        .map(|cgroup| CgroupGuard(Some(Arc::new(cgroup))))
                })
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
                match made {
                    Ok(guard) => guard,
                    Err(e) => {
                        return Outcome::could_not_start(format!(
                            "could not make a cgroup for `{program}` (its max_processes and \
                             max_memory_bytes): {e}"
                        ));
                    }
                }
            }
            Err(_) => CgroupGuard(None),
        };

        let mut command = Command::new(&plugin.program);
        command
            .args(&plugin.args)
            .arg(invocation.sample.path())
            .env_clear()
            // Temporary files go to its working directory, the one place the sandbox lets it
            // write, removed afterwards (`/tmp` is shared, and refused), unless its
            // configuration sets TMPDIR.
            .env("TMPDIR", work.path())
            .envs(plugin.env.iter().map(|(k, v)| (k, v)))
            .current_dir(work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let rlimits = RlimitPlan::new(limits, cgroup.0.as_ref().is_some_and(|c| c.bounds_memory()));
        let confinement = if plugin.sandbox.enabled {
            match Confinement::build(
                &plugin.sandbox,
                &plugin.program,
                &invocation.sample.path(),
                work.path(),
                plugin.filter,
            ) {
                Ok(confinement) => Some(confinement),
                Err(e) => {
                    return Outcome::could_not_start(format!("could not run `{program}`: {e}"));
                }
            }
        } else {
            None
        };
        let landlocked = confinement.is_some() && super::landlock_abi() > 0;
        let join = cgroup.0.clone();
        // SAFETY: the closure runs in the forked child before `exec`; it only makes
        // `open`/`write` (of its cgroup's `tasks` or `cgroup.procs`, a path made before the
        // fork),
        // `getrlimit`/`setrlimit`, `prctl`, `capset`, `close_range`/`fcntl`,
        // `landlock_restrict_self` and `seccomp` system calls (no allocation, no locks), which
        // is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                // First: whatever it starts from here on is counted.
                if let Some(cgroup) = &join {
                    cgroup.join()?;
                }
                rlimits.apply()?;
                match &confinement {
                    Some(confinement) => confinement.apply(),
                    None => Ok(()),
                }
            });
        }

        let child = spawn(&mut command, deadline).await;
        let outcome = match child {
            Ok(child) => {
                let cgroup = cgroup.0.clone();
                supervise(
                    child,
                    limits,
                    invocation.stdin,
                    deadline,
                    work.path(),
                    cgroup,
                )
                .await
            }
            Err(e) => {
                tracing::debug!(program = %program, error = %e, "could not start a plugin process");
                Outcome::failed(start_failure(program, &e, landlocked))
            }
        };

        // Removing a tree the plugin filled can take a while: not on an async worker. It is
        // awaited, so that the directory and the cgroup are gone when the invocation ends.
        let cgroup = cgroup.take();
        let _ = tokio::task::spawn_blocking(move || {
            remove_work_dir(work.keep());
            if let Some(cgroup) = cgroup {
                cgroup.remove();
            }
        })
        .await;
        outcome
    }
}

/// An invocation's cgroup, removed (after killing what is left in it) when the invocation
/// ends, or, if its caller gives it up, when it is dropped.
struct CgroupGuard(Option<Arc<PluginCgroup>>);

impl CgroupGuard {
    fn take(mut self) -> Option<Arc<PluginCgroup>> {
        self.0.take()
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let Some(cgroup) = self.0.take() else {
            return;
        };
        // Not on an async worker: the kill waits for the processes to be gone.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || cgroup.remove());
            }
            Err(_) => cgroup.remove(),
        }
    }
}

/// Remove a plugin's working directory and all it holds. The plugin may have left
/// directories that Cordon's user can neither list nor empty (mode 000, set through their
/// descriptor, which the sandbox allows on what it made): when the first try fails, every
/// directory in the tree gets its owner's access back, and the removal is tried again. What
/// still fails is logged.
fn remove_work_dir(dir: PathBuf) {
    if std::fs::remove_dir_all(&dir).is_ok() {
        return;
    }
    // Directories only, links not followed; without recursion, however deep the tree.
    let mut pending = vec![dir.clone()];
    while let Some(next) = pending.pop() {
        give_owner_access(&next);
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        pending.extend(
            entries
                .flatten()
                .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
                .map(|entry| entry.path()),
        );
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(
            dir = %dir.display(),
            error = %e,
            "could not remove a native plugin's working directory"
        );
    }
}

/// Give the directory at `path`, which a plugin made, its owner's access back (mode 700): a
/// plugin may take it away through the directory's descriptor (`fchmod 000`), which its sandbox
/// allows on what it made. Only a directory: a link the plugin put in its place is not followed
/// (the directory is opened with `O_PATH | O_NOFOLLOW` and its mode set through that
/// descriptor), so that this never changes one of Cordon's own files. A link in place of a
/// directory higher on the path, put there between Cordon's reading of the tree and this
/// call, is followed: at worst, another directory of Cordon's user gets its owner's access.
fn give_owner_access(path: &Path) {
    use rustix::fs::{Mode, OFlags};
    use std::os::fd::AsRawFd;
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(dir) = rustix::fs::open(path, flags, Mode::empty()) else {
        return;
    };
    // `fchmod` does not take an `O_PATH` descriptor; its `/proc/self/fd` link names the very
    // directory opened.
    let _ = rustix::fs::chmod(
        format!("/proc/self/fd/{}", dir.as_raw_fd()),
        Mode::from_raw_mode(0o700),
    );
}

/// Spawn `command`, retrying a transient `ETXTBSY` a few times while before `deadline`.
async fn spawn(command: &mut Command, deadline: Instant) -> io::Result<Child> {
    let mut attempt = 1;
    loop {
        match spawn_registered(command) {
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && attempt < SPAWN_ATTEMPTS
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// `command.spawn()`; when reaping, the child is listed among the running plugins before
/// anything could take it for an orphan.
fn spawn_registered(command: &mut Command) -> io::Result<Child> {
    if !REAPING.load(Ordering::SeqCst) {
        return command.spawn();
    }
    let mut leaders = leaders();
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        leaders.insert(pid as i32);
    }
    Ok(child)
}

/// How reading one output stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// End of file (or a read error, which ends the stream the same way).
    Eof,
    /// More than the cap arrived; the first `cap` bytes are kept.
    Overflow,
}

/// Read `reader` to its end into `buf`, keeping at most `cap` bytes; returns as soon as one
/// byte more than `cap` has arrived.
async fn read_capped<R: AsyncRead + Unpin>(
    reader: Option<R>,
    buf: &mut Vec<u8>,
    cap: usize,
) -> ReadEnd {
    let Some(mut reader) = reader else {
        return ReadEnd::Eof;
    };
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => return ReadEnd::Eof,
            Ok(n) => {
                let room = cap.saturating_sub(buf.len());
                if n > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return ReadEnd::Overflow;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!(error = %e, "reading a plugin's output failed");
                return ReadEnd::Eof;
            }
        }
    }
}

/// The child's process group and Cordon's decision to stop it.
struct Group {
    pgid: Option<Pid>,
    /// The group got its SIGKILL. Sent once, at the latest right when the child's exit is
    /// seen: later its pid could be reused, and the group id with it.
    killed: bool,
    /// Why Cordon stopped the plugin; the first reason wins.
    failure: Option<Failure>,
}

impl Group {
    /// SIGKILL every process in the group, once. A group that is already gone is fine.
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        if let Some(pgid) = self.pgid
            && let Err(e) = rustix::process::kill_process_group(pgid, Signal::KILL)
            && e != rustix::io::Errno::SRCH
        {
            tracing::debug!(pgid = pgid.as_raw_pid(), error = %e, "could not kill a plugin's process group");
        }
    }

    /// Stop the plugin for `reason`.
    fn stop(&mut self, reason: Failure) {
        self.failure.get_or_insert(reason);
        self.kill();
    }
}

impl Drop for Group {
    /// An invocation dropped before its end (its caller gave up) still kills the whole
    /// group, not only the direct child that `kill_on_drop` covers.
    fn drop(&mut self) {
        self.kill();
    }
}

/// Feed stdin, drain stdout and stderr, enforce the caps and the deadline, reap the child and
/// classify what happened.
async fn supervise(
    mut child: Child,
    limits: &Limits,
    stdin: &[u8],
    deadline: Instant,
    work_dir: &Path,
    cgroup: Option<Arc<PluginCgroup>>,
) -> Outcome {
    // The child leads its own group (`process_group(0)`), so its pid is the group id. The
    // group cannot be reused while the child is unreaped.
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let child_stdin = child.stdin.take();
    let child_stdout = child.stdout.take();
    let child_stderr = child.stderr.take();

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut status: Option<io::Result<ExitStatus>> = None;
    let mut sweep: Option<tokio::task::JoinHandle<()>> = None;
    let mut group = Group {
        pgid,
        killed: false,
        failure: None,
    };
    {
        let feed = async move {
            if let Some(mut pipe) = child_stdin {
                // A child that does not read its stdin, or exits first, makes this fail with
                // EPIPE: that is its business, not a failure.
                if let Err(e) = pipe.write_all(stdin).await {
                    tracing::trace!(error = %e, "a plugin did not take all of its stdin");
                }
                // Dropping the pipe closes it: the child sees end of file.
            }
        };
        let out = read_capped(child_stdout, &mut stdout, limits.max_stdout_bytes);
        let err = read_capped(child_stderr, &mut stderr, limits.max_stderr_bytes);
        let limit = tokio::time::sleep_until(deadline.into());
        let disk = watch_disk(work_dir.to_path_buf(), limits.max_disk_bytes);
        let processes = watch_processes(cgroup.clone());
        tokio::pin!(feed, out, err, limit, disk, processes);
        let (mut fed, mut out_done, mut err_done, mut grace) = (false, false, false, false);

        loop {
            if status.is_some() && (group.failure.is_some() || (out_done && err_done)) {
                break;
            }
            tokio::select! {
                () = &mut feed, if !fed => fed = true,
                end = &mut out, if !out_done => {
                    out_done = true;
                    if end == ReadEnd::Overflow {
                        group.stop(Failure::OutputTooLarge {
                            stream: Stream::Stdout,
                            limit_bytes: limits.max_stdout_bytes,
                        });
                    }
                }
                end = &mut err, if !err_done => {
                    err_done = true;
                    if end == ReadEnd::Overflow {
                        group.stop(Failure::OutputTooLarge {
                            stream: Stream::Stderr,
                            limit_bytes: limits.max_stderr_bytes,
                        });
                    }
                }
                found = &mut disk, if status.is_none() && group.failure.is_none() => {
                    group.stop(Failure::DiskLimit {
                        limit_bytes: limits.max_disk_bytes,
                        found_bytes: Some(found),
                    });
                }
                reached = &mut processes, if status.is_none() && group.failure.is_none() => {
                    group.stop(reached.failure(limits));
                }
                result = child.wait(), if status.is_none() => {
                    // The plugin is done: what is left of its group are orphans that nobody
                    // will read from. Kill them so that the pipes reach EOF.
                    group.kill();
                    // And what left the group, which may hold the pipes too: all that is in
                    // its cgroup, then (their parents killed) Cordon's orphaned children.
                    let reaping = REAPING.load(Ordering::SeqCst);
                    if cgroup.is_some() || reaping {
                        let cgroup = cgroup.clone();
                        let pgid = pgid.map(|p| p.as_raw_pid());
                        sweep = Some(tokio::task::spawn_blocking(move || {
                            if let Some(cgroup) = cgroup {
                                let escaped = cgroup.running_outside(pgid);
                                if !escaped.is_empty() {
                                    tracing::warn!(
                                        pids = ?escaped,
                                        "killed processes a plugin left running outside its \
                                         process group"
                                    );
                                }
                                cgroup.kill_all();
                            }
                            if reaping {
                                reap_escapees();
                            }
                        }));
                    }
                    status = Some(result);
                }
                () = &mut limit => {
                    if grace {
                        tracing::debug!(pgid = ?pgid, "a killed plugin process was not reaped in time");
                        break;
                    }
                    group.stop(Failure::Timeout { limit: limits.timeout });
                    if status.is_some() {
                        // The child exited, but something outside its group still holds the
                        // pipes: stop reading.
                        break;
                    }
                    grace = true;
                    limit.as_mut().reset((Instant::now() + REAP_GRACE).into());
                }
            }
        }
    }

    // What the plugin left outside its group is dead before the invocation ends (a child
    // never reaped left nothing that a sweep after the next invocation will not find).
    if let Some(sweep) = sweep {
        let _ = sweep.await;
    }
    if status.is_some()
        && let Some(pid) = pgid
    {
        // Reaped: no longer a running plugin (a child not reaped in time stays listed until
        // a sweep finds it gone).
        leaders().remove(&pid.as_raw_pid());
    }
    let mut outcome = Outcome {
        stdout,
        stderr,
        ..Outcome::default()
    };
    let mut failure = group.failure.take();
    outcome.peak_processes = cgroup.as_ref().and_then(|c| c.peak());
    outcome.peak_memory_bytes = cgroup.as_ref().and_then(|c| c.peak_memory());
    // A process the kernel killed for memory, or a `fork` or a thread its cgroup refused,
    // however the plugin went on: a plugin stopped for it is not told apart by timing (the
    // watch looks every 50 ms). A plugin whose helper was killed for memory may well exit 0
    // with a verdict; it did not scan as it meant to.
    if failure.is_none()
        && let Some(cgroup) = &cgroup
        && let Some(reached) = CgroupLimit::reached(cgroup)
    {
        failure = Some(reached.failure(limits));
    }
    match status {
        Some(Ok(status)) => {
            if let Some(code) = status.code() {
                // It exited by itself, unless Cordon had stopped it already (deadline, output
                // cap): a plugin whose output was cut, or that did not end in time, did not
                // finish, and the code it exits with then (141 when it dies of SIGPIPE under
                // a shell, as its stdout closes at the cap) says nothing: no exit code.
                if failure.is_none() {
                    outcome.exit = Some(i64::from(code));
                }
            } else if let Some(signal) = status.signal()
                && failure.is_none()
            {
                // Cordon sends signals only after setting a failure: this one came from
                // elsewhere (the program itself, the kernel, an rlimit). `SIGXFSZ` is the
                // kernel's, for a write past `RLIMIT_FSIZE`: `max_disk_bytes`.
                failure = Some(if signal == libc::SIGXFSZ {
                    Failure::DiskLimit {
                        limit_bytes: limits.max_disk_bytes,
                        found_bytes: None,
                    }
                } else {
                    Failure::Signal { signal }
                });
            }
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "could not wait for a plugin process");
            if failure.is_none() {
                failure = Some(Failure::CouldNotStart {
                    message: format!("could not wait for the process: {e}"),
                });
            }
        }
        None => {}
    }
    outcome.failure = failure;
    outcome
}

/// The first look at a running plugin's working directory, and the least time between two.
const DISK_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// How often a running plugin's cgroup is asked whether it refused a process or a thread, or
/// the kernel killed one of its processes for memory.
const PROCESS_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A limit a plugin's cgroup enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupLimit {
    /// The kernel killed one of its processes: they used more than `max_memory_bytes`
    /// together.
    Memory,
    /// The kernel killed one of its processes because the machine, or a cgroup above its
    /// (Cordon's), ran out of memory, not at its own limit: a `SIGKILL` it did not send
    /// itself, whichever process it hit (a helper's death may not show in its exit).
    MemoryElsewhere,
    /// It refused a `fork` or a thread for `max_processes`.
    Processes,
    /// The kernel refused a `fork` or a thread of its for a limit above its own.
    ProcessesElsewhere,
}

impl CgroupLimit {
    /// The limit `cgroup` enforced so far, if any: memory first (a process killed for it
    /// may have been refused a `fork` before).
    fn reached(cgroup: &PluginCgroup) -> Option<CgroupLimit> {
        if cgroup.oom_kills() > 0 {
            Some(if cgroup.memory_limit_met() {
                CgroupLimit::Memory
            } else {
                CgroupLimit::MemoryElsewhere
            })
        } else if cgroup.limit_hits() > 0 {
            Some(if cgroup.process_limit_met() {
                CgroupLimit::Processes
            } else {
                CgroupLimit::ProcessesElsewhere
            })
        } else {
            None
        }
    }

    fn failure(self, limits: &Limits) -> Failure {
        match self {
            CgroupLimit::Memory => Failure::MemoryLimit {
                limit_bytes: limits.max_memory_bytes,
                elsewhere: false,
            },
            CgroupLimit::MemoryElsewhere => Failure::MemoryLimit {
                limit_bytes: limits.max_memory_bytes,
                elsewhere: true,
            },
            CgroupLimit::Processes => Failure::ProcessLimit {
                limit: limits.max_processes,
                elsewhere: false,
            },
            CgroupLimit::ProcessesElsewhere => Failure::ProcessLimit {
                limit: limits.max_processes,
                elsewhere: true,
            },
        }
    }
}

/// Return once `cgroup` has enforced a limit; never without a cgroup. A look every
/// [`PROCESS_CHECK_INTERVAL`] (a read of `memory.oom_control` or `memory.events`, and of
/// `pids.events`).
async fn watch_processes(cgroup: Option<Arc<PluginCgroup>>) -> CgroupLimit {
    let Some(cgroup) = cgroup else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(PROCESS_CHECK_INTERVAL).await;
        if let Some(reached) = CgroupLimit::reached(&cgroup) {
            return reached;
        }
    }
}

/// Measure `dir` while a plugin runs, and return what it holds once that is more than `limit`
/// bytes: never, while it holds less. A look every [`DISK_CHECK_INTERVAL`], or every four
/// times as long as the last look took (a tree of many files takes a while to measure), on a
/// blocking thread. A plugin that runs less long is never measured.
async fn watch_disk(dir: PathBuf, limit: u64) -> u64 {
    let mut pause = DISK_CHECK_INTERVAL;
    loop {
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        let dir = dir.clone();
        let Ok(used) = tokio::task::spawn_blocking(move || disk_used(&dir)).await else {
            return std::future::pending().await;
        };
        if used > limit {
            return used;
        }
        pause = DISK_CHECK_INTERVAL.max(started.elapsed() * 4);
    }
}

/// The least an entry counts for in [`disk_used`]: a block of most file systems. An empty file
/// takes no block but an inode, and a plugin could otherwise use up the file system's inodes
/// (after which Cordon can make no file there) with empty files it counts nothing for.
const LEAST_PER_ENTRY: u64 = 4096;

/// The disk that the tree at `dir` takes: the blocks of each file, directory and link in it,
/// at least [`LEAST_PER_ENTRY`] each, each inode once (a hard link is not counted twice),
/// links not followed. A directory the
/// plugin took its owner's access from (`fchmod 000`, allowed on what it made) gets it back, to
/// be measured. Without recursion, however deep the tree; what cannot be read is not counted.
fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut used = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                give_owner_access(&next);
                match std::fs::read_dir(&next) {
                    Ok(entries) => entries,
                    Err(_) => continue,
                }
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if seen.insert((meta.dev(), meta.ino())) {
                let blocks = meta.blocks().saturating_mul(512);
                used = used.saturating_add(blocks.max(LEAST_PER_ENTRY));
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    used
}

/// The rlimits of one child, computed before `fork` so that the child only makes syscalls.
#[derive(Debug, Clone, Copy)]
struct RlimitPlan {
    /// `RLIMIT_DATA`, bytes: `max_memory_bytes`; none where a memory cgroup bounds all of
    /// the plugin's processes together (a process that reserves address space it does not
    /// use is then not refused, and one that uses too much is stopped as `memory_limit`,
    /// not by whatever it does about a failed allocation).
    data: Option<u64>,
    /// `RLIMIT_AS`, bytes: [`ADDRESS_SPACE_FACTOR`] × `max_memory_bytes`, saturating.
    address_space: u64,
    /// `RLIMIT_CPU` soft limit, seconds: the timeout rounded up, plus 1.
    cpu_soft: u64,
    /// `RLIMIT_CPU` hard limit, seconds: the timeout rounded up, plus 2.
    cpu_hard: u64,
    /// `RLIMIT_NOFILE`, soft and hard: `max_open_files`. Set whatever Cordon's own limit is,
    /// so that a plugin gets the same limit on every host (and not the high one a server
    /// raises its own to).
    open_files: u64,
    /// `RLIMIT_FSIZE`, bytes: `max_disk_bytes`, the size of every file it writes.
    file_size: u64,
    /// Whether Cordon holds capabilities (it runs as root, in a container say) that the child
    /// must give up: see [`drop_capabilities`].
    capabilities: bool,
    /// Cordon's own open files limit: no descriptor of its is numbered this or above, for
    /// [`close_inherited`] on a kernel without `close_range`.
    descriptors: u64,
}

impl RlimitPlan {
    fn new(limits: &Limits, memory_cgroup: bool) -> RlimitPlan {
        let timeout = limits.timeout;
        let secs = timeout
            .as_secs()
            .saturating_add(u64::from(timeout.subsec_nanos() > 0));
        RlimitPlan {
            data: (!memory_cgroup).then_some(limits.max_memory_bytes),
            address_space: limits.max_memory_bytes.saturating_mul(ADDRESS_SPACE_FACTOR),
            cpu_soft: secs.saturating_add(1),
            cpu_hard: secs.saturating_add(2),
            open_files: u64::from(limits.max_open_files),
            file_size: limits.max_disk_bytes,
            capabilities: holds_capabilities(),
            descriptors: rustix::process::getrlimit(Resource::Nofile)
                .current
                .unwrap_or(1 << 20),
        }
    }

    /// Apply the limits to the calling process. Async-signal-safe: only system calls.
    /// `RLIMIT_NPROC` is deliberately left alone: it counts every process of the user, not
    /// of the plugin.
    fn apply(self) -> io::Result<()> {
        prefer_for_oom_kill();
        // No set-user-ID or file-capability program the plugin runs gains privileges.
        rustix::thread::set_no_new_privs(true)?;
        if self.capabilities {
            drop_capabilities()?;
        }
        close_inherited(self.descriptors);
        if let Some(data) = self.data {
            set_rlimit(Resource::Data, data, data)?;
        }
        set_rlimit(Resource::As, self.address_space, self.address_space)?;
        set_rlimit(Resource::Cpu, self.cpu_soft, self.cpu_hard)?;
        set_rlimit(Resource::Core, 0, 0)?;
        set_rlimit(Resource::Nofile, self.open_files, self.open_files)?;
        set_rlimit(Resource::Fsize, self.file_size, self.file_size)?;
        Ok(())
    }
}

/// When memory runs out, the kernel's OOM killer picks a plugin's processes first, before
/// Cordon or any other program on the machine: `oom_score_adj` 1000, the most, inherited by
/// all it starts. Without a memory cgroup, `max_memory_bytes` bounds each of a plugin's
/// processes, not all of them together, and without this a plugin's many processes could get
/// Cordon killed instead (with one, the machine can still run out: plugins running at once,
/// Cordon's own memory). A
/// confined plugin cannot lower it again (Landlock refuses the write); an unconfined one can,
/// to Cordon's own level and no lower without `CAP_SYS_RESOURCE`. Best effort: on a system
/// without `/proc` it is skipped (for the forked child: two system calls).
fn prefer_for_oom_kill() {
    if let Ok(fd) = rustix::fs::open(
        c"/proc/self/oom_score_adj",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::io::write(&fd, b"1000");
    }
}

/// Whether this process holds any capability (it runs as root, mostly), which its plugins
/// must give up. Asked once: Cordon never changes its own.
fn holds_capabilities() -> bool {
    static HOLDS: OnceLock<bool> = OnceLock::new();
    *HOLDS.get_or_init(|| {
        rustix::thread::capabilities(None).map_or(true, |sets| {
            !(sets.permitted | sets.effective | sets.inheritable).is_empty()
        })
    })
}

/// Close, at `exec`, every descriptor but the standard streams: a descriptor Cordon holds
/// without `FD_CLOEXEC` would otherwise pass to the plugin, opened before its sandbox and so
/// outside it. Cordon opens its own with `FD_CLOEXEC`, but not so what it inherited from the
/// program that started it (a shell's, a supervisor's), nor what a library's fork handler
/// made in the child (wasmtime's pooling allocator `dup2`s the child's own
/// `/proc/self/pagemap` onto a descriptor of its, which clears the flag). `close_range` with
/// `CLOSE_RANGE_CLOEXEC` (Linux 5.11) marks them all at once, and leaves open until `exec`
/// those the child still uses (its Landlock ruleset, the standard library's pipe that reports
/// a failed `exec`); before 5.11, each descriptor below `below` is marked in turn.
/// Async-signal-safe: only system calls.
fn close_inherited(below: u64) {
    // SAFETY: system calls on integers, in the child; no memory is passed.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        let below = libc::c_int::try_from(below).unwrap_or(libc::c_int::MAX);
        for fd in 3..below {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Give up every capability, for good: a plugin of a Cordon run as root (in a container, say)
/// runs as root, and with `CAP_SYS_RESOURCE` it could raise its own rlimits again (its memory
/// and CPU limits), with `CAP_SYS_MODULE` load a kernel module from a file it may read, with
/// `CAP_SYS_BOOT` reboot the machine; Landlock and the seccomp filter cover none of that. The
/// bounding set first (dropping from it needs `CAP_SETPCAP`, which the last step gives up),
/// then the ambient set, then the thread's own sets. With `no_new_privs`, which is set first,
/// `exec` gives back nothing: the kernel keeps a process's permitted set within the one it
/// had, root's included. Async-signal-safe: only system calls.
fn drop_capabilities() -> io::Result<()> {
    use rustix::io::Errno;
    use rustix::thread::{CapabilitySet, CapabilitySets};
    for capability in 0..u64::BITS {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << capability,
        )) {
            Ok(()) => {}
            // Past the kernel's last capability; or no `CAP_SETPCAP`, where `no_new_privs` and
            // the empty sets below are enough.
            Err(Errno::INVAL | Errno::PERM) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match rustix::thread::clear_ambient_capability_set() {
        // A kernel without ambient capabilities (before 4.3) has none to clear.
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )?;
    Ok(())
}

/// Set `resource` to `soft`/`hard`, lowered to the current hard limit (an unprivileged
/// process may not raise it), so that a host already running under tighter limits still
/// starts its plugins.
fn set_rlimit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let ceiling = rustix::process::getrlimit(resource).maximum;
    let clamp = |v: u64| Some(ceiling.map_or(v, |max| v.min(max)));
    rustix::process::setrlimit(
        resource,
        Rlimit {
            current: clamp(soft.min(hard)),
            maximum: clamp(hard),
        },
    )
    .map_err(io::Error::from)
}

/// Find `program` and check that it can be run. The result is absolute.
fn resolve_program(program: &Path) -> Result<PathBuf, String> {
    let shown = program.display();
    if program.as_os_str().is_empty() {
        return Err("the program is empty; give the path of an executable".into());
    }
    if program.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(format!("program `{shown}` holds a NUL byte"));
    }
    let has_slash = program.as_os_str().as_encoded_bytes().contains(&b'/');
    let path = if has_slash {
        std::path::absolute(program).map_err(|e| format!("program `{shown}`: {e}"))?
    } else {
        let search = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&search)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|candidate| check_executable(candidate).is_ok());
        match found {
            Some(path) => path,
            None => {
                return Err(format!(
                    "program `{shown}` was not found on PATH ({}); give its absolute path",
                    Path::new(&search).display()
                ));
            }
        }
    };
    check_executable(&path)?;
    Ok(path)
}

/// An existing regular file (symbolic links followed) that Cordon's user may execute.
fn check_executable(path: &Path) -> Result<(), String> {
    match not_executable(path) {
        Some(why) => Err(format!("program `{}` {why}", path.display())),
        None => Ok(()),
    }
}

/// Why the file at `path` cannot be executed, if it cannot: missing, not a regular file, no
/// execute bit, on a `noexec` mount, or not executable by Cordon's user.
fn not_executable(path: &Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some("does not exist".into()),
        Err(e) => return Some(format!("cannot be inspected: {e}")),
    };
    if !meta.is_file() {
        return Some("is not a regular file".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Some("is not executable (chmod +x it)".into());
    }
    if let Err(e) = rustix::fs::access(path, rustix::fs::Access::EXEC_OK) {
        let noexec = rustix::fs::statvfs(path)
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::NOEXEC));
        return Some(if noexec {
            "is on a file system mounted noexec, where nothing may be executed; move it to one \
             that allows it (for a `builtin:` script, move Cordon's data directory)"
                .into()
        } else {
            format!(
                "may not be executed by Cordon's user: {}",
                io::Error::from(e)
            )
        });
    }
    None
}

/// How many interpreters the kernel follows from a program: four levels of `#!`
/// (`BINPRM_MAX_RECURSION`), then the last one's dynamic loader.
const MAX_INTERPRETERS: usize = 5;

/// What runs a program before the program itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interpreter {
    /// The interpreter of a script, from its `#!` line.
    Script,
    /// The dynamic loader of an ELF program (`PT_INTERP`).
    Loader,
}

/// Check what the kernel runs before `program` itself: the interpreter of a script (itself
/// possibly a script) and the dynamic loader of an ELF program. Each must be an executable
/// file at an absolute path and, for a sandboxed plugin on a kernel with Landlock, one the
/// sandbox lets it run. Without this, every scan would fail with "No such file or directory"
/// for a program that exists, or "Permission denied".
fn check_interpreters(
    program: &Path,
    sandbox: &NativeSandbox,
    env: &[(String, String)],
) -> Result<(), String> {
    let confined = sandbox.enabled && super::landlock_abi() > 0;
    let mut current = program.to_path_buf();
    for _ in 0..MAX_INTERPRETERS {
        let Some((interpreter, kind)) = interpreter_of(&current)? else {
            return Ok(());
        };
        let whose = if current == program {
            "its".to_owned()
        } else {
            format!("`{}`'s", current.display())
        };
        let needs = match kind {
            Interpreter::Script => format!("{whose} `#!` line names `{}`", interpreter.display()),
            Interpreter::Loader => {
                format!("{whose} dynamic loader is `{}`", interpreter.display())
            }
        };
        let refuse = |why: &str| Err(format!("program `{}`: {needs}, {why}", program.display()));
        if let Some(name) = interpreter.to_str().and_then(|i| i.strip_suffix('\r')) {
            return Err(format!(
                "program `{}`: {whose} `#!` line ends in a carriage return (Windows line \
                 endings), so the kernel looks for `{name}\\r`, which does not exist; convert \
                 the file to Unix line endings (dos2unix)",
                program.display()
            ));
        }
        if !interpreter.is_absolute() {
            return refuse(
                "a relative path, which the kernel would look for in the plugin's working \
                 directory; give an absolute one",
            );
        }
        if let Some(why) = not_executable(&interpreter) {
            return refuse(&format!("which {why}"));
        }
        if confined && !may_run(sandbox, &interpreter) {
            return refuse(&format!(
                "which its sandbox does not let it run (it runs the system's programs, under \
                 /usr, /bin, /sbin and /lib*, and what `allow_read` names); add `{}` or its \
                 directory to `allow_read`",
                interpreter.display()
            ));
        }
        if kind == Interpreter::Loader {
            // `current` is a dynamically linked program: what it loads must be readable too.
            return if confined {
                check_libraries(&current, program, sandbox, env)
            } else {
                Ok(())
            };
        }
        current = interpreter;
    }
    Err(format!(
        "program `{}`: its `#!` interpreters run more than four deep, more than the kernel \
         follows",
        program.display()
    ))
}

/// The interpreter of the program at `path`, when it has one. A file Cordon cannot read, or
/// an ELF file it cannot parse, has none as far as this check goes: `exec` will tell.
fn interpreter_of(path: &Path) -> Result<Option<(PathBuf, Interpreter)>, String> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(None);
    };
    // What the kernel reads of a script for its `#!` line (`BINPRM_BUF_SIZE`).
    let mut head = Vec::with_capacity(256);
    if (&mut file).take(256).read_to_end(&mut head).is_err() {
        return Ok(None);
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let name = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|word| !word.is_empty())
            .unwrap_or_default();
        if name.is_empty() {
            return Err(format!(
                "program `{}`: its `#!` line names no interpreter",
                path.display()
            ));
        }
        let name = PathBuf::from(std::ffi::OsStr::from_bytes(name));
        return Ok(Some((name, Interpreter::Script)));
    }
    if !head.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    let loader = elf_info(file).and_then(|elf| elf.loader);
    Ok(loader.map(|name| {
        (
            PathBuf::from(std::ffi::OsStr::from_bytes(&name)),
            Interpreter::Loader,
        )
    }))
}

/// What the kernel and the dynamic loader read of an ELF file.
#[derive(Debug, Default)]
struct ElfInfo {
    /// Its dynamic loader (`PT_INTERP`); `None` for a static program or a library.
    loader: Option<Vec<u8>>,
    /// The libraries it needs (`DT_NEEDED`).
    needed: Vec<Vec<u8>>,
    /// Where the loader looks for them first: `DT_RPATH`, ignored when there is a
    /// `DT_RUNPATH`, then `LD_LIBRARY_PATH`, then `DT_RUNPATH`; each a `:`-separated list.
    rpath: Vec<Vec<u8>>,
    /// `DT_RUNPATH` (see `rpath`).
    runpath: Vec<Vec<u8>>,
}

/// Parse the ELF file `file` (a 64- or 32-bit one): `None` when it does not parse.
fn elf_info(file: std::fs::File) -> Option<ElfInfo> {
    let data = &object::ReadCache::new(file);
    match object::FileKind::parse(data).ok()? {
        object::FileKind::Elf64 => {
            elf_info_of::<object::elf::FileHeader64<object::Endianness>>(data)
        }
        object::FileKind::Elf32 => {
            elf_info_of::<object::elf::FileHeader32<object::Endianness>>(data)
        }
        _ => None,
    }
}

fn elf_info_of<Elf>(data: &object::ReadCache<std::fs::File>) -> Option<ElfInfo>
where
    Elf: object::read::elf::FileHeader<Endian = object::Endianness>,
{
    use object::read::elf::{Dyn, ProgramHeader};
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let mut info = ElfInfo {
        loader: header
            .program_headers(endian, data)
            .ok()?
            .iter()
            .find_map(|ph| ph.interpreter(endian, data).ok().flatten())
            .map(<[u8]>::to_vec),
        ..ElfInfo::default()
    };
    // The dynamic entries, through the section table (a file stripped of it has none here).
    let sections = header.sections(endian, data).ok()?;
    if let Ok(Some((entries, link))) = sections.dynamic(endian, data)
        && let Ok(strings) = sections.strings(endian, data, link)
    {
        for entry in entries {
            let list = match entry.tag(endian) {
                object::elf::DT_NULL => break,
                object::elf::DT_NEEDED => &mut info.needed,
                object::elf::DT_RPATH => &mut info.rpath,
                object::elf::DT_RUNPATH => &mut info.runpath,
                _ => continue,
            };
            if let Ok(text) = entry.string(endian, strings) {
                list.push(text.to_vec());
            }
        }
    }
    Some(info)
}

/// How many library files [`check_libraries`] reads at most for one program.
const MAX_LIBRARIES: usize = 256;

/// Check the libraries the ELF file `elf` (run for `program`) makes the dynamic loader look
/// for in its own directories (`RPATH`, `RUNPATH`, with `$ORIGIN`) or in `LD_LIBRARY_PATH`
/// before the system's: one found there that the sandbox does not let it read would fail every
/// scan with "cannot open shared object file: No such file or directory" (the loader goes on
/// to the system's directories, where it is not). Libraries it looks for only in the system's
/// directories, and what those need, are the system's.
fn check_libraries(
    elf: &Path,
    program: &Path,
    sandbox: &NativeSandbox,
    env: &[(String, String)],
) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let library_path: Vec<u8> = env
        .iter()
        .find(|(name, _)| name == "LD_LIBRARY_PATH")
        .map(|(_, value)| value.as_bytes().to_vec())
        .unwrap_or_default();
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let shown_as_it = resolved(program);
    let mut queue = vec![resolved(elf)];
    let mut seen = std::collections::HashSet::new();
    while let Some(object) = queue.pop() {
        if seen.len() >= MAX_LIBRARIES || !seen.insert(object.clone()) {
            continue;
        }
        let Some(info) = std::fs::File::open(&object).ok().and_then(elf_info) else {
            continue;
        };
        let origin = object.parent().unwrap_or(Path::new("/"));
        // Each directory the loader tries before its cache, with what named it.
        let mut dirs: Vec<(PathBuf, String)> = Vec::new();
        let mut add = |lists: &[Vec<u8>], what: &str| {
            for list in lists {
                for entry in list.split(|&b| b == b':').filter(|e| !e.is_empty()) {
                    let text = String::from_utf8_lossy(entry);
                    let expanded = text
                        .replace("${ORIGIN}", &origin.display().to_string())
                        .replace("$ORIGIN", &origin.display().to_string());
                    // `$LIB` and `$PLATFORM` name system directories; a relative entry is
                    // taken from the working directory, which starts empty.
                    if !expanded.contains('$') && expanded.starts_with('/') {
                        dirs.push((PathBuf::from(expanded), format!("{what} `{text}`")));
                    }
                }
            }
        };
        if info.runpath.is_empty() {
            add(&info.rpath, "RPATH");
        }
        add(std::slice::from_ref(&library_path), "LD_LIBRARY_PATH entry");
        add(&info.runpath, "RUNPATH");
        for name in &info.needed {
            let name = Path::new(std::ffi::OsStr::from_bytes(name));
            let found = if name.is_absolute() {
                name.is_file()
                    .then(|| (name.to_path_buf(), "path".to_owned()))
            } else {
                dirs.iter()
                    .map(|(dir, via)| (dir.join(name), via))
                    .find(|(path, _)| path.is_file())
                    .map(|(path, via)| (path, via.clone()))
            };
            let Some((found, via)) = found else {
                continue;
            };
            let found = resolved(&found);
            if !may_run(sandbox, &found) {
                let dir = found.parent().unwrap_or(Path::new("/"));
                let who = if object == shown_as_it {
                    "it".to_owned()
                } else {
                    format!("`{}`", object.display())
                };
                return Err(format!(
                    "program `{}`: {who} loads `{}` from `{}` (its {via}), which its sandbox \
                     does not let it read, so every scan would fail with \"cannot open shared \
                     object file\"; add `{}` to `allow_read`",
                    program.display(),
                    name.display(),
                    dir.display(),
                    dir.display()
                ));
            }
            queue.push(found);
        }
    }
    Ok(())
}

/// The sandbox with its trees checked and resolved: each `allow_read` entry must exist, each
/// `allow_write` entry be a directory (created, with its parents, when missing); all become
/// absolute paths without symbolic links, so that a rule covers what the entry names.
fn resolve_sandbox(sandbox: &NativeSandbox) -> Result<NativeSandbox, String> {
    let resolve = |field: &str, path: &Path| -> Result<PathBuf, String> {
        if !path.is_absolute() {
            return Err(format!(
                "`{field}` entry {} is not an absolute path",
                path.display()
            ));
        }
        std::fs::canonicalize(path).map_err(|e| {
            format!(
                "`{field}` entry {} cannot be resolved: {e}; it must exist",
                path.display()
            )
        })
    };
    let mut read = Vec::new();
    for path in &sandbox.read {
        read.push(resolve("allow_read", path)?);
    }
    let mut write = Vec::new();
    for path in &sandbox.write {
        if path.is_absolute() && !path.exists() {
            std::fs::create_dir_all(path).map_err(|e| {
                format!(
                    "`allow_write` entry {} does not exist and cannot be created: {e}",
                    path.display()
                )
            })?;
        }
        let resolved = resolve("allow_write", path)?;
        if !resolved.is_dir() {
            return Err(format!(
                "`allow_write` entry {} is not a directory; allow the directory to write in",
                path.display()
            ));
        }
        write.push(resolved);
    }
    Ok(NativeSandbox {
        enabled: sandbox.enabled,
        read,
        write,
        network: sandbox.network,
        unix_sockets: sandbox.unix_sockets,
        ipc: sandbox.ipc,
    })
}

/// Why a plugin's process did not start, `e` the error of its `fork` or `exec`, `landlocked`
/// whether Landlock confined it. A `fork` refused for want of a process slot
/// (`EAGAIN`: the processes and threads Cordon and its plugins may run together, or the
/// machine's, were all in use; nothing else Cordon does before `exec` fails with it) is a
/// shortage, not the plugin's fault: it is [`Failure::StartRefused`], which a scanner is run
/// again for. Anything else is [`Failure::CouldNotStart`].
fn start_failure(program: impl std::fmt::Display, e: &io::Error, landlocked: bool) -> Failure {
    let mut message = format!("could not run `{program}`: {e}");
    if e.raw_os_error() == Some(libc::EAGAIN) {
        return Failure::StartRefused { message };
    }
    // Its sandbox's rules let it run the program, its interpreter and its libraries (checked
    // at load), and the program is executable on a mount that allows it (checked too). Landlock
    // allows files by their inode, taken when the rules were made: a file system that gives
    // the same file another one at each lookup (9p: WSL's /mnt, a virtual machine's shared
    // folder; some FUSE file systems) makes it refuse what its rules allow.
    if landlocked && e.kind() == io::ErrorKind::PermissionDenied {
        message.push_str(
            "; its sandbox's rules allow it, so most likely Landlock cannot follow the file \
             system the program (or its interpreter) is on, as with 9p (WSL's /mnt, a virtual \
             machine's shared folder) and some FUSE file systems: install the plugin on a local \
             file system",
        );
    }
    Failure::CouldNotStart { message }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sample::Sample;

    const MIB: u64 = 1 << 20;

    fn limits(timeout: Duration) -> Limits {
        Limits {
            timeout,
            max_memory_bytes: 512 * MIB,
            max_stdout_bytes: 1 << 20,
            max_stderr_bytes: 1 << 20,
            ..Limits::default()
        }
    }

    struct Fixture {
        root: tempfile::TempDir,
        runtime: ProcessRuntime,
        sample: Sample,
    }

    impl Fixture {
        fn new() -> Fixture {
            let root = tempfile::tempdir().unwrap();
            let config = ExecutorConfig::under(root.path());
            std::fs::create_dir_all(&config.work_dir).unwrap();
            let sample =
                Sample::from_bytes(b"sample bytes", "sample.txt", &root.path().join("samples"))
                    .unwrap();
            Fixture {
                runtime: ProcessRuntime::new(&config),
                root,
                sample,
            }
        }

        /// A `/bin/sh` script with mode 755.
        fn script(&self, name: &str, body: &str) -> PathBuf {
            let dir = self.root.path().join("bin");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        }

        fn plugin(&self, body: &str) -> ProcessPlugin {
            self.runtime
                .prepare(
                    &self.script("plugin.sh", body),
                    &[],
                    &[],
                    &NativeSandbox::default(),
                )
                .unwrap()
        }

        async fn run(&self, plugin: &ProcessPlugin, limits: &Limits, stdin: &[u8]) -> Outcome {
            self.runtime
                .invoke(
                    plugin,
                    limits,
                    Invocation {
                        stdin,
                        sample: &self.sample,
                    },
                )
                .await
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    /// Whether `pid` is gone or a zombie (killed, waiting for a reaper that may never come).
    fn is_dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        }
    }

    async fn wait_dead(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if is_dead(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        is_dead(pid)
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code() {
        let f = Fixture::new();
        let p = f.plugin("echo out; echo err >&2; exit 0");
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
        assert_eq!(text(&o.stdout), "out\n");
        assert_eq!(text(&o.stderr), "err\n");
        assert!(o.duration > Duration::ZERO);
    }

    #[tokio::test]
    async fn non_zero_exit_is_reported_not_a_failure() {
        let f = Fixture::new();
        let p = f.plugin("echo partial; exit 3");
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(3));
        assert_eq!(text(&o.stdout), "partial\n");
    }

    #[tokio::test]
    async fn the_sample_path_is_the_last_argument() {
        let f = Fixture::new();
        let script = f.script(
            "args.sh",
            r#"for a in "$@"; do printf '%s\n' "$a"; done; eval "last=\${$#}"; cat "$last""#,
        );
        let p = f
            .runtime
            .prepare(
                &script,
                &["--flag".into(), "two words".into()],
                &[],
                &NativeSandbox::default(),
            )
            .unwrap();
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.exit, Some(0), "stderr: {}", text(&o.stderr));
        let path = f.sample.path();
        assert!(path.is_absolute());
        assert_eq!(
            text(&o.stdout),
            format!("--flag\ntwo words\n{}\nsample bytes", path.display())
        );
    }

    #[tokio::test]
    async fn stdin_arrives_and_is_closed() {
        let f = Fixture::new();
        // `cat` only ends when stdin is closed.
        let p = f.plugin("cat");
        let stdin = b"{\"data_id\":\"abc\",\"n\":1}\n";
        let o = f.run(&p, &limits(Duration::from_secs(10)), stdin).await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
        assert_eq!(o.stdout, stdin);
    }

    #[tokio::test]
    async fn large_stdin_and_stdout_flow_at_the_same_time() {
        let f = Fixture::new();
        // Writes 256 KiB (more than a pipe holds) before reading anything, then echoes stdin.
        let p = f.plugin("head -c 262144 /dev/zero; cat");
        let stdin = vec![b'x'; 600 * 1024];
        let o = f.run(&p, &limits(Duration::from_secs(20)), &stdin).await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
        assert_eq!(o.stdout.len(), 262144 + stdin.len());
        assert!(o.stdout[262144..].iter().all(|&b| b == b'x'));
    }

    #[tokio::test]
    async fn a_child_that_never_reads_stdin_is_fine() {
        let f = Fixture::new();
        let p = f.plugin("echo done");
        let stdin = vec![b'x'; 1 << 20];
        let o = f.run(&p, &limits(Duration::from_secs(10)), &stdin).await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
        assert_eq!(text(&o.stdout), "done\n");
    }

    #[tokio::test]
    async fn the_environment_holds_only_configured_variables() {
        let f = Fixture::new();
        // SAFETY-free check that something is there to leak: the test runner has a PATH.
        assert!(std::env::var_os("PATH").is_some());
        let script = f.script("env.sh", "env");
        let p = f
            .runtime
            .prepare(
                &script,
                &[],
                &[
                    ("FOO".into(), "bar baz".into()),
                    ("EMPTY".into(), String::new()),
                ],
                &NativeSandbox::default(),
            )
            .unwrap();
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.exit, Some(0));
        let stdout = text(&o.stdout);
        let mut vars: Vec<&str> = stdout
            .lines()
            // The shell itself exports its working directory.
            .filter(|l| !l.starts_with("PWD="))
            .collect();
        vars.sort();
        assert_eq!(vars.len(), 3, "{vars:?}");
        assert_eq!(vars[..2], ["EMPTY=", "FOO=bar baz"]);
        let pwd = stdout.lines().find_map(|l| l.strip_prefix("PWD=")).unwrap();
        assert_eq!(vars[2], format!("TMPDIR={pwd}"), "its working directory");

        // A configured TMPDIR wins.
        let p = f
            .runtime
            .prepare(
                &script,
                &[],
                &[("TMPDIR".into(), "/var/tmp/av".into())],
                &NativeSandbox::default(),
            )
            .unwrap();
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert!(text(&o.stdout).lines().any(|l| l == "TMPDIR=/var/tmp/av"));
        assert_eq!(text(&o.stdout).matches("TMPDIR=").count(), 1);
    }

    #[tokio::test]
    async fn a_confined_plugin_makes_temporary_files_in_its_working_directory() {
        let f = Fixture::new();
        // `/tmp` is refused by the sandbox; `mktemp` follows TMPDIR.
        let p = f.plugin("mktemp && pwd");
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!((o.failure, o.exit), (None, Some(0)), "{}", text(&o.stderr));
        let stdout = text(&o.stdout);
        let (temp, cwd) = stdout.trim().split_once('\n').unwrap();
        assert!(
            Path::new(temp).starts_with(cwd),
            "{temp} is in its working directory {cwd}"
        );
        assert!(!Path::new(cwd).exists(), "removed afterwards, with it");
    }

    #[tokio::test]
    async fn plugins_cannot_gain_privileges_and_get_the_rlimits() {
        let f = Fixture::new();
        let p = f.plugin(
            "grep NoNewPrivs /proc/self/status; grep -E 'Max (data size|cpu time|core file size)' /proc/self/limits; echo oom $(cat /proc/self/oom_score_adj)",
        );
        let o = f
            .run(&p, &limits(Duration::from_millis(2500)), b"{}\n")
            .await;
        assert_eq!(o.exit, Some(0), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        let limit = |name: &str| -> Vec<String> {
            out.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {out}"))
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        // `max_memory_bytes` is RLIMIT_DATA only where no memory cgroup bounds the plugin's
        // processes together (see `hostile.rs` for what the cgroup does).
        let data = limit("Max data size");
        let memory_cgroup = cgroups().is_ok_and(|c| c.memory().is_ok());
        let expected = if memory_cgroup {
            let ours = std::fs::read_to_string("/proc/self/limits").unwrap();
            let line = ours
                .lines()
                .find(|l| l.starts_with("Max data size"))
                .unwrap();
            line.split_whitespace().nth(3).unwrap().to_owned()
        } else {
            limits(Duration::from_millis(2500))
                .max_memory_bytes
                .to_string()
        };
        assert_eq!(data[3], expected, "{out}");
        let cpu = limit("Max cpu time");
        assert_eq!((cpu[3].as_str(), cpu[4].as_str()), ("4", "5"), "{out}");
        assert_eq!(limit("Max core file size")[4], "0", "{out}");
        // The OOM killer's first choice, and, confined, it stays so: the sandbox refuses the
        // write that would lower it (only on a kernel with Landlock).
        assert!(out.contains("oom 1000\n"), "{out}");
        if super::super::landlock_abi() > 0 {
            let lower = f.plugin(
                "echo 0 > /proc/self/oom_score_adj; echo now $(cat /proc/self/oom_score_adj)",
            );
            let o = f
                .run(&lower, &limits(Duration::from_secs(20)), b"{}\n")
                .await;
            assert_eq!(text(&o.stdout), "now 1000\n", "{}", text(&o.stderr));
            assert!(
                text(&o.stderr).contains("Permission denied"),
                "{}",
                text(&o.stderr)
            );
        }
    }

    #[tokio::test]
    async fn the_working_directory_is_fresh_empty_and_removed() {
        let f = Fixture::new();
        let p = f.plugin("pwd; ls -A | wc -l; touch junk");
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.exit, Some(0), "stderr: {}", text(&o.stderr));
        let out = text(&o.stdout);
        let mut lines = out.lines();
        let cwd = PathBuf::from(lines.next().unwrap());
        assert_eq!(lines.next().unwrap().trim(), "0");
        assert_ne!(cwd, std::env::current_dir().unwrap());
        assert_ne!(cwd, f.sample.dir());
        let work_dir = std::fs::canonicalize(f.root.path().join("work")).unwrap();
        assert_eq!(cwd.parent(), Some(work_dir.as_path()));
        // Removed in the background once the invocation is over.
        let until = Instant::now() + Duration::from_secs(3);
        while cwd.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!cwd.exists());
        // Each run gets its own.
        let o2 = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_ne!(
            text(&o2.stdout).lines().next().unwrap(),
            cwd.to_str().unwrap()
        );
        assert_eq!(text(&o2.stdout).lines().nth(1).unwrap().trim(), "0");
    }

    #[test]
    fn a_refused_exec_under_landlock_says_what_most_likely_refused_it() {
        let denied = io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        let hint = "most likely Landlock cannot follow the file system";
        let message = start_failure("/srv/scan", &denied, true).to_string();
        assert!(
            message.starts_with("could not start: could not run `/srv/scan`: Permission denied")
        );
        assert!(message.contains(hint), "{message}");
        // Not without Landlock, nor for another error.
        let message = start_failure("/srv/scan", &denied, false).to_string();
        assert!(!message.contains(hint), "{message}");
        let missing = io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        let message = start_failure("/srv/scan", &missing, true).to_string();
        assert!(!message.contains(hint), "{message}");
    }

    #[test]
    fn a_fork_refused_for_want_of_a_process_slot_is_a_shortage_not_the_plugins() {
        // `EAGAIN` from `fork`: Cordon's processes and threads (the unit's TasksMax) or the
        // machine's were all in use. It is run again, and says where to look.
        let refused = io::Error::from_raw_os_error(libc::EAGAIN);
        let failure = start_failure("/srv/scan", &refused, true);
        assert!(
            matches!(failure, Failure::StartRefused { .. }),
            "{failure:?}"
        );
        assert!(failure.elsewhere());
        assert_eq!(failure.kind(), "process_limit");
        let message = failure.to_string();
        assert!(message.contains("could not run `/srv/scan`"), "{message}");
        assert!(message.contains("TasksMax"), "{message}");
        // Any other error is the plugin's own: not run again.
        for errno in [libc::ENOENT, libc::ENOMEM, libc::EACCES, libc::ENOEXEC] {
            let failure = start_failure("/srv/scan", &io::Error::from_raw_os_error(errno), true);
            assert_eq!(failure.kind(), "could_not_start", "{errno}: {failure:?}");
            assert!(!failure.elsewhere(), "{errno}");
        }
    }

    #[tokio::test]
    async fn a_sleeping_child_is_killed_at_the_deadline() {
        let f = Fixture::new();
        let p = f.plugin("echo started; sleep 100");
        // Long enough that a slow machine's shell has printed before it.
        let timeout = Duration::from_millis(2_000);
        let started = Instant::now();
        let o = f.run(&p, &limits(timeout), b"{}\n").await;
        let elapsed = started.elapsed();
        assert_eq!(o.failure, Some(Failure::Timeout { limit: timeout }));
        assert_eq!(o.exit, None);
        assert_eq!(text(&o.stdout), "started\n");
        assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
        assert!(o.duration <= elapsed);
    }

    #[tokio::test]
    async fn a_grandchild_holding_stdout_is_killed_with_its_group() {
        let f = Fixture::new();
        // The background `sleep` inherits stdout and would hold the pipe open for 1000 s.
        let p = f.plugin("sleep 1000 & echo $! >&2; echo hi");
        let timeout = Duration::from_secs(20);
        let started = Instant::now();
        let o = f.run(&p, &limits(timeout), b"{}\n").await;
        let elapsed = started.elapsed();
        assert_eq!(o.failure, None, "elapsed {elapsed:?}");
        assert_eq!(o.exit, Some(0));
        assert_eq!(text(&o.stdout), "hi\n");
        let pid: i32 = text(&o.stderr).trim().parse().unwrap();
        assert!(wait_dead(pid).await, "grandchild {pid} is still running");
    }

    #[test]
    fn this_processs_children_are_listed_both_ways() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (listed, scanned) = (children().unwrap(), children_by_parent().unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(listed.contains(&pid), "{pid} not in {listed:?}");
        assert!(scanned.contains(&pid), "{pid} not in {scanned:?}");
        assert!(!children().unwrap().contains(&pid), "reaped, yet listed");
    }

    #[tokio::test]
    async fn an_escaped_grandchild_is_killed_through_the_cgroup_or_stopped_at_the_deadline() {
        let f = Fixture::new();
        // `setsid` puts the grandchild outside the process group: the group kill cannot reach
        // it (this test process is no subreaper: see `reap_escaped_processes`, tested with the
        // binary in `host/tests/native_escapes.rs`), and it holds stdout open. Where Cordon
        // makes cgroups, it is still in the plugin's, and is killed when the plugin exits: the
        // invocation ends then, exit 0. Without, it must still end at the deadline. The parent
        // waits until the grandchild has left the group before it exits.
        let p = f.plugin(
            r#"setsid sh -c 'echo ready > "$0"; exec sleep 30' ./ready &
               while [ ! -s ready ]; do sleep 0.01; done
               echo $! >&2; echo hi"#,
        );
        let cgroup = cgroups().is_ok();
        // Long enough, with a cgroup, that the end by the plugin's exit is not the deadline;
        // without, that a slow machine's shell has printed the pid before it.
        let timeout = Duration::from_millis(if cgroup { 20_000 } else { 3_000 });
        let started = Instant::now();
        let o = f.run(&p, &limits(timeout), b"{}\n").await;
        let elapsed = started.elapsed();
        let pid = text(&o.stderr).trim().parse::<i32>().unwrap();
        let dead = is_dead(pid);
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        assert_eq!(text(&o.stdout), "hi\n");
        if cgroup {
            assert_eq!(o.failure, None);
            assert_eq!(o.exit, Some(0));
            assert!(dead, "the escaped grandchild {pid} outlived the invocation");
        } else {
            assert_eq!(o.failure, Some(Failure::Timeout { limit: timeout }));
            assert_eq!(o.exit, None);
            assert!(elapsed < timeout + Duration::from_secs(2), "{elapsed:?}");
        }
    }

    #[tokio::test]
    async fn a_stdout_flood_is_stopped_at_the_cap() {
        let f = Fixture::new();
        let p = f.plugin("yes");
        let mut l = limits(Duration::from_secs(30));
        l.max_stdout_bytes = 64 * 1024;
        let started = Instant::now();
        let o = f.run(&p, &l, b"{}\n").await;
        assert_eq!(
            o.failure,
            Some(Failure::OutputTooLarge {
                stream: Stream::Stdout,
                limit_bytes: 64 * 1024
            })
        );
        assert_eq!(o.exit, None);
        assert_eq!(o.stdout.len(), 64 * 1024);
        assert!(o.stdout.starts_with(b"y\ny\n"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_stderr_flood_is_stopped_at_the_cap() {
        let f = Fixture::new();
        let p = f.plugin("echo fine; yes >&2");
        let mut l = limits(Duration::from_secs(30));
        l.max_stderr_bytes = 1000;
        let started = Instant::now();
        let o = f.run(&p, &l, b"{}\n").await;
        assert_eq!(
            o.failure,
            Some(Failure::OutputTooLarge {
                stream: Stream::Stderr,
                limit_bytes: 1000
            })
        );
        assert_eq!(o.stderr.len(), 1000);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn output_exactly_at_the_cap_is_accepted() {
        let f = Fixture::new();
        let p = f.plugin("head -c 4096 /dev/zero");
        let mut l = limits(Duration::from_secs(10));
        l.max_stdout_bytes = 4096;
        let o = f.run(&p, &l, b"{}\n").await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
        assert_eq!(o.stdout.len(), 4096);
    }

    #[tokio::test]
    async fn a_signal_cordon_did_not_send_is_reported() {
        let f = Fixture::new();
        let p = f.plugin("kill -SEGV $$");
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.failure, Some(Failure::Signal { signal: 11 }));
        assert_eq!(o.exit, None);
    }

    #[tokio::test]
    async fn the_memory_limit_applies() {
        let python = Path::new("/usr/bin/python3");
        if !python.exists() {
            eprintln!("skipped: no {}", python.display());
            return;
        }
        let f = Fixture::new();
        let alloc = |mib: u64| {
            f.runtime
                .prepare(
                    python,
                    &[
                        "-c".into(),
                        format!("b = bytearray({mib} << 20); print(len(b))"),
                    ],
                    &[],
                    &NativeSandbox::default(),
                )
                .unwrap()
        };
        let p = alloc(256);
        // Control: the same program runs under a roomy limit.
        let mut roomy = limits(Duration::from_secs(20));
        roomy.max_memory_bytes = 2048 * MIB;
        let o = f.run(&p, &roomy, b"{}\n").await;
        assert_eq!(o.exit, Some(0), "stderr: {}", text(&o.stderr));
        // Under 64 MiB it cannot allocate 256 MiB.
        let mut tight = limits(Duration::from_secs(20));
        tight.max_memory_bytes = 64 * MIB;
        let o = f.run(&p, &tight, b"{}\n").await;
        assert_ne!(o.exit, Some(0));
        assert!(
            o.exit.is_some() || matches!(o.failure, Some(Failure::Signal { .. })),
            "{o:?}"
        );
        assert!(
            text(&o.stderr).contains("MemoryError"),
            "{}",
            text(&o.stderr)
        );
    }

    #[tokio::test]
    async fn a_program_that_vanished_could_not_start() {
        let f = Fixture::new();
        let script = f.script("gone.sh", "exit 0");
        let p = f
            .runtime
            .prepare(&script, &[], &[], &NativeSandbox::default())
            .unwrap();
        std::fs::remove_file(&script).unwrap();
        let o = f.run(&p, &limits(Duration::from_secs(10)), b"{}\n").await;
        match &o.failure {
            Some(Failure::CouldNotStart { message }) => {
                assert!(message.contains(script.to_str().unwrap()), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o.exit, None);
    }

    #[test]
    fn prepare_checks_the_program() {
        let f = Fixture::new();
        let missing = f.root.path().join("nope");
        let e = f
            .runtime
            .prepare(&missing, &[], &[], &NativeSandbox::default())
            .err()
            .unwrap();
        assert!(e.contains("does not exist"), "{e}");
        assert!(e.contains(missing.to_str().unwrap()), "{e}");

        let script = f.script("noexec.sh", "exit 0");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = f
            .runtime
            .prepare(&script, &[], &[], &NativeSandbox::default())
            .err()
            .unwrap();
        assert!(e.contains("chmod +x"), "{e}");

        let e = f
            .runtime
            .prepare(f.root.path(), &[], &[], &NativeSandbox::default())
            .err()
            .unwrap();
        assert!(e.contains("not a regular file"), "{e}");

        let e = f
            .runtime
            .prepare(
                Path::new("cordon-no-such-program-xyz"),
                &[],
                &[],
                &NativeSandbox::default(),
            )
            .err()
            .unwrap();
        assert!(e.contains("not found on PATH"), "{e}");

        let good = f.script("ok.sh", "exit 0");
        let e = f
            .runtime
            .prepare(
                &good,
                &[],
                &[("A=B".into(), "x".into())],
                &NativeSandbox::default(),
            )
            .err()
            .unwrap();
        assert!(e.contains("not valid"), "{e}");
        assert!(
            f.runtime
                .prepare(&good, &["a\0b".into()], &[], &NativeSandbox::default())
                .is_err()
        );
    }

    #[test]
    fn prepare_checks_and_resolves_the_sandbox_trees() {
        let f = Fixture::new();
        let good = f.script("ok.sh", "exit 0");
        let prepare = |read: Vec<PathBuf>, write: Vec<PathBuf>| {
            let sandbox = NativeSandbox {
                read,
                write,
                ..NativeSandbox::default()
            };
            f.runtime.prepare(&good, &[], &[], &sandbox)
        };
        // A tree to write in is created when missing; both become paths without links.
        let quarantine = f.root.path().join("q/uarantine");
        let link = f.root.path().join("link");
        std::os::unix::fs::symlink(f.root.path(), &link).unwrap();
        let p = prepare(vec![link.join("bin/ok.sh")], vec![quarantine.clone()]).unwrap();
        assert!(quarantine.is_dir(), "allow_write directory created");
        let root = std::fs::canonicalize(f.root.path()).unwrap();
        assert_eq!(p.sandbox.read, vec![root.join("bin/ok.sh")]);
        assert_eq!(p.sandbox.write, vec![root.join("q/uarantine")]);

        let e = prepare(vec![f.root.path().join("missing")], vec![])
            .err()
            .unwrap();
        assert!(
            e.contains("`allow_read` entry") && e.contains("must exist"),
            "{e}"
        );
        let e = prepare(vec![PathBuf::from("relative")], vec![])
            .err()
            .unwrap();
        assert!(e.contains("not an absolute path"), "{e}");
        let e = prepare(vec![], vec![good.clone()]).err().unwrap();
        assert!(
            e.contains("`allow_write` entry") && e.contains("not a directory"),
            "{e}"
        );
    }

    #[test]
    fn a_32_bit_program_is_refused_in_the_sandbox() {
        let f = Fixture::new();
        // Only the header is read at load: an executable file that starts as a 32-bit ELF.
        let elf32 = f.script("elf32", "");
        std::fs::write(&elf32, b"\x7fELF\x01\x01\x01\0rest of a header").unwrap();
        let prepare = |sandbox: NativeSandbox| f.runtime.prepare(&elf32, &[], &[], &sandbox);
        let e = prepare(NativeSandbox::default()).err().unwrap();
        assert!(
            e.contains("32-bit program") && e.contains("sandbox = false"),
            "{e}"
        );
        let widest = NativeSandbox {
            network: true,
            unix_sockets: true,
            ipc: true,
            ..NativeSandbox::default()
        };
        assert!(
            prepare(widest).is_err(),
            "the filter keeps it from other processes whatever the configuration allows"
        );
        let off = NativeSandbox {
            enabled: false,
            ..NativeSandbox::default()
        };
        assert!(prepare(off).unwrap().filter.is_none());
        // A 64-bit program (the script's interpreter decides) gets the filter.
        assert!(f.plugin("exit 0").filter.is_some());
    }

    /// `bytes` as the executable file `name` in the fixture's `bin`.
    fn executable(f: &Fixture, name: &str, bytes: &[u8]) -> PathBuf {
        let path = f.script(name, "");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn prepare_checks_what_runs_a_program_before_it() {
        let f = Fixture::new();
        let prepare =
            |program: &Path, sandbox: NativeSandbox| f.runtime.prepare(program, &[], &[], &sandbox);
        let refused = |program: &Path, sandbox: NativeSandbox| {
            prepare(program, sandbox).err().expect("refused at load")
        };
        let open = NativeSandbox {
            enabled: false,
            ..NativeSandbox::default()
        };

        // Each of these would fail every scan with "No such file or directory", for a file
        // that exists.
        let python = executable(&f, "scan.py", b"#!/nonexistent/python9 -u\nprint(1)\n");
        let e = refused(&python, open.clone());
        assert!(
            e.contains("its `#!` line names `/nonexistent/python9`, which does not exist"),
            "{e}"
        );
        let crlf = executable(&f, "crlf.sh", b"#!/bin/sh\r\necho\r\n");
        let e = refused(&crlf, open.clone());
        assert!(
            e.contains("carriage return") && e.contains("`/bin/sh\\r`") && e.contains("dos2unix"),
            "{e}"
        );
        let relative = executable(&f, "relative.sh", b"#!  sh -e\n");
        let e = refused(&relative, open.clone());
        assert!(e.contains("names `sh`, a relative path"), "{e}");
        let empty = executable(&f, "empty.sh", b"#!\n");
        let e = refused(&empty, open.clone());
        assert!(e.contains("names no interpreter"), "{e}");
        // Through an interpreter that is a script itself.
        let inner = executable(&f, "inner", b"#!/nonexistent/perl9\n");
        let outer = executable(&f, "outer", format!("#!{}\n", inner.display()).as_bytes());
        let e = refused(&outer, open.clone());
        assert!(
            e.contains(&format!(
                "`{}`'s `#!` line names `/nonexistent/perl9`",
                inner.display()
            )),
            "{e}"
        );
        let deep = f.root.path().join("bin/deep");
        executable(&f, "deep", format!("#!{}\n", deep.display()).as_bytes());
        let e = refused(&deep, open.clone());
        assert!(e.contains("more than four deep"), "{e}");

        // An interpreter the sandbox would not let it run ("Permission denied" at every
        // scan), unless `allow_read` names it.
        let opt = f.root.path().join("opt");
        std::fs::create_dir(&opt).unwrap();
        std::fs::copy("/bin/sh", opt.join("sh")).unwrap();
        let script = executable(
            &f,
            "opt.sh",
            format!("#!{}\nexit 0\n", opt.join("sh").display()).as_bytes(),
        );
        if crate::executor::landlock_abi() > 0 {
            let e = refused(&script, NativeSandbox::default());
            assert!(
                e.contains("its sandbox does not let it run") && e.contains("to `allow_read`"),
                "{e}"
            );
        }
        let allowed = NativeSandbox {
            read: vec![opt.clone()],
            ..NativeSandbox::default()
        };
        assert!(prepare(&script, allowed).is_ok());
        assert!(prepare(&script, open.clone()).is_ok());

        // An ELF program whose dynamic loader is missing (one built for another C library).
        let system = std::fs::read("/bin/true").unwrap();
        let loader: &[u8] = b"/lib64/ld-linux-x86-64.so.2";
        assert!(prepare(Path::new("/bin/true"), NativeSandbox::default()).is_ok());
        match system.windows(loader.len()).position(|w| w == loader) {
            Some(at) => {
                let mut patched = system.clone();
                patched[at + loader.len() - 1] = b'9';
                let elf = executable(&f, "true", &patched);
                let e = refused(&elf, open);
                assert!(
                    e.contains(
                        "its dynamic loader is `/lib64/ld-linux-x86-64.so.9`, which does not exist"
                    ),
                    "{e}"
                );
            }
            None => eprintln!("skipped the loader case: /bin/true has no x86-64 glibc loader"),
        }
    }

    #[tokio::test]
    async fn a_program_whose_own_libraries_the_sandbox_hides_is_refused_at_load() {
        let f = Fixture::new();
        let vendor = f.root.path().join("vendor");
        for dir in ["bin", "lib", "core"] {
            std::fs::create_dir_all(vendor.join(dir)).unwrap();
        }
        // A vendor's layout: bin/scan needs lib/libsig.so (its RUNPATH), which needs
        // core/libcore.so (the library's own RUNPATH). Built with the C compiler Rust links with.
        let cc = |args: &[&str]| {
            std::process::Command::new("cc")
                .current_dir(&vendor)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        std::fs::write(vendor.join("core.c"), "int core(void) { return 0; }\n").unwrap();
        std::fs::write(
            vendor.join("sig.c"),
            "int core(void);\nint sig(void) { return core(); }\n",
        )
        .unwrap();
        std::fs::write(
            vendor.join("scan.c"),
            "#include <stdio.h>\nint sig(void);\nint main(void) {\n\
             printf(\"{\\\"def_time\\\":1,\\\"scan_result_i\\\":%d,\\\"threat_found\\\":\\\"\\\"}\\n\", sig());\n\
             return 0;\n}\n",
        )
        .unwrap();
        let built = cc(&["-shared", "-fPIC", "-o", "core/libcore.so", "core.c"])
            && cc(&[
                "-shared",
                "-fPIC",
                "-o",
                "lib/libsig.so",
                "sig.c",
                "-Lcore",
                "-lcore",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../core",
            ])
            && cc(&[
                "-o",
                "bin/scan",
                "scan.c",
                "-Llib",
                "-lsig",
                "-Wl,-rpath-link,core",
                "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib",
            ])
            && cc(&[
                "-o",
                "bin/scan-rpath",
                "scan.c",
                "-Llib",
                "-lsig",
                "-Wl,-rpath-link,core",
                "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../lib",
            ])
            && cc(&[
                "-o",
                "bin/scan-env",
                "scan.c",
                "-Llib",
                "-lsig",
                "-Wl,-rpath-link,core",
            ]);
        if !built {
            eprintln!("skipped: no C compiler (cc) to build the vendor's program");
            return;
        }
        let vendor = std::fs::canonicalize(&vendor).unwrap();
        let (lib, core) = (vendor.join("lib"), vendor.join("core"));
        let sandbox = |read: &[&Path]| NativeSandbox {
            read: read.iter().map(|p| p.to_path_buf()).collect(),
            ..NativeSandbox::default()
        };
        let prepare = |program: &str, env: &[(String, String)], sandbox: NativeSandbox| {
            f.runtime.prepare(&vendor.join(program), &[], env, &sandbox)
        };
        let env = [(
            "LD_LIBRARY_PATH".to_owned(),
            format!("/nonexistent:{}", lib.display()),
        )];

        if crate::executor::landlock_abi() > 0 {
            let refused = |program: &str, env: &[(String, String)], read: &[&Path]| {
                prepare(program, env, sandbox(read))
                    .err()
                    .expect("refused at load")
            };
            let e = refused("bin/scan", &[], &[]);
            assert!(
                e.contains(&format!(
                    "it loads `libsig.so` from `{}` (its RUNPATH `$ORIGIN/../lib`)",
                    lib.display()
                )) && e.contains(&format!("add `{}` to `allow_read`", lib.display())),
                "{e}"
            );
            let e = refused("bin/scan-rpath", &[], &[]);
            assert!(e.contains("(its RPATH `$ORIGIN/../lib`)"), "{e}");
            let e = refused("bin/scan-env", &env, &[]);
            assert!(e.contains("(its LD_LIBRARY_PATH entry"), "{e}");
            // What the library needs in turn.
            let e = refused("bin/scan", &[], &[&lib]);
            assert!(
                e.contains(&format!(
                    "`{}` loads `libcore.so` from `{}`",
                    lib.join("libsig.so").display(),
                    core.display()
                )),
                "{e}"
            );
        }
        // Allowed, it runs, confined: what the check asked for is all it needs.
        let scan = prepare("bin/scan", &[], sandbox(&[&lib, &core])).unwrap();
        let o = f
            .run(&scan, &limits(Duration::from_secs(10)), b"{}\n")
            .await;
        assert_eq!((o.failure, o.exit), (None, Some(0)), "{}", text(&o.stderr));
        assert!(prepare("bin/scan-env", &env, sandbox(&[&vendor])).is_ok());
        let open = NativeSandbox {
            enabled: false,
            ..NativeSandbox::default()
        };
        assert!(prepare("bin/scan", &[], open).is_ok());
    }

    #[test]
    fn a_program_on_a_noexec_mount_is_refused_at_load() {
        let f = Fixture::new();
        let mount = f.root.path().join("noexec");
        std::fs::create_dir(&mount).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs"])
            .arg(&mount)
            .output();
        if !mounted.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: cannot mount a file system here (root only)");
            return;
        }
        let script = mount.join("scan.sh");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = f
            .runtime
            .prepare(&script, &[], &[], &NativeSandbox::default())
            .err();
        let _ = std::process::Command::new("umount").arg(&mount).status();
        let e = e.expect("refused at load");
        assert!(e.contains("mounted noexec"), "{e}");
    }

    #[test]
    fn prepare_resolves_a_bare_name_on_path() {
        let f = Fixture::new();
        let p = f
            .runtime
            .prepare(Path::new("sh"), &[], &[], &NativeSandbox::default())
            .unwrap();
        assert!(p.program.is_absolute());
        assert!(p.program.ends_with("sh"));
        assert!(p.program.is_file());
    }

    #[tokio::test]
    async fn arguments_come_before_the_sample_for_an_interpreter() {
        let f = Fixture::new();
        let sh = f
            .runtime
            .prepare(
                Path::new("sh"),
                &["-c".into(), r#"printf '%s' "$0""#.into()],
                &[],
                &NativeSandbox::default(),
            )
            .unwrap();
        let o = f.run(&sh, &limits(Duration::from_secs(10)), b"{}\n").await;
        assert_eq!(o.exit, Some(0));
        assert_eq!(text(&o.stdout), f.sample.path().to_str().unwrap());
    }

    #[tokio::test]
    async fn a_huge_timeout_does_not_overflow() {
        let f = Fixture::new();
        let p = f.plugin("echo ok");
        let o = f.run(&p, &limits(Duration::MAX), b"{}\n").await;
        assert_eq!(o.failure, None);
        assert_eq!(o.exit, Some(0));
    }

    #[tokio::test]
    async fn a_dropped_invocation_kills_the_group() {
        let f = Fixture::new();
        // The pid goes to a directory the sandbox lets it write.
        let pids = f.root.path().join("pids");
        let pid_file = pids.join("sleep.pid");
        let script = f.script(
            "drop.sh",
            &format!("sleep 1000 & echo $! > '{}'; wait", pid_file.display()),
        );
        let sandbox = NativeSandbox {
            write: vec![pids],
            ..NativeSandbox::default()
        };
        let p = f.runtime.prepare(&script, &[], &[], &sandbox).unwrap();
        let l = limits(Duration::from_secs(60));
        let mut run = Box::pin(f.run(&p, &l, b"{}\n"));
        // Polled until the script has started its grandchild (however slow the machine),
        // then dropped.
        let pid = loop {
            tokio::select! {
                o = &mut run => panic!("the script should still be running: {:?}", o.exit),
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if let Ok(pid) = std::fs::read_to_string(&pid_file)
                .unwrap_or_default()
                .trim()
                .parse::<i32>()
            {
                break pid;
            }
        };
        drop(run);
        assert!(wait_dead(pid).await, "grandchild {pid} is still running");
    }

    #[test]
    fn giving_a_directory_its_owner_s_access_back_never_follows_a_link() {
        let root = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let set = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        let locked = root.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        set(&locked, 0o000);
        give_owner_access(&locked);
        assert_eq!(mode(&locked), 0o700);
        // Links a plugin put in a directory's place, to a file and to a directory of Cordon's.
        let database = root.path().join("cordon.db");
        std::fs::write(&database, b"results").unwrap();
        set(&database, 0o640);
        let shared = root.path().join("quarantine");
        std::fs::create_dir(&shared).unwrap();
        set(&shared, 0o750);
        for (target, was) in [(&database, 0o640), (&shared, 0o750)] {
            let link = root.path().join("link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(target, &link).unwrap();
            give_owner_access(&link);
            assert_eq!(mode(target), was, "{}", target.display());
        }
    }

    #[test]
    fn a_child_keeps_no_inherited_descriptor_with_or_without_close_range() {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        // A descriptor without `FD_CLOEXEC` (`F_DUPFD` does not set it), numbered apart from
        // those `ls` opens itself.
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: duplicates a descriptor this test holds; closed at the end.
        let leaked = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 100) };
        assert!(leaked >= 100);
        // What `ls` finds open in a child: with `close_inherited`, on a kernel with
        // `close_range` or (the call answering ENOSYS, as before Linux 5.11) without; and
        // without `close_inherited`.
        let listed = |close: bool, without_close_range: bool| -> Vec<i32> {
            let filter: Option<seccompiler::BpfProgram> = without_close_range.then(|| {
                let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).unwrap();
                let rules = [(libc::SYS_close_range, Vec::new())].into_iter().collect();
                let filter = seccompiler::SeccompFilter::new(
                    rules,
                    seccompiler::SeccompAction::Allow,
                    seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
                    arch,
                )
                .unwrap();
                filter.try_into().unwrap()
            });
            let mut command = std::process::Command::new("ls");
            command.arg("/proc/self/fd");
            // SAFETY: in the child, system calls only (seccompiler's `prctl` and `seccomp`,
            // and those of `close_inherited`).
            unsafe {
                command.pre_exec(move || {
                    if let Some(filter) = &filter {
                        seccompiler::apply_filter(filter)
                            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                    }
                    if close {
                        close_inherited(1024);
                    }
                    Ok(())
                });
            }
            let out = command.output().expect("ls runs");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        };
        assert!(!listed(true, false).contains(&leaked), "close_range");
        assert!(!listed(true, true).contains(&leaked), "one by one");
        assert!(listed(false, false).contains(&leaked), "the control");
        // SAFETY: the duplicate made above, closed once.
        unsafe { libc::close(leaked) };
    }

    #[test]
    fn rlimits_follow_the_limits() {
        let plan = RlimitPlan::new(
            &Limits {
                timeout: Duration::from_millis(2500),
                max_memory_bytes: 100,
                max_stdout_bytes: 1,
                max_stderr_bytes: 1,
                max_open_files: 40,
                max_disk_bytes: 4096,
                max_processes: 8,
            },
            false,
        );
        assert_eq!((plan.data, plan.address_space), (Some(100), 400));
        assert_eq!((plan.cpu_soft, plan.cpu_hard), (4, 5));
        assert_eq!(plan.open_files, 40);
        assert_eq!(plan.file_size, 4096);
        let plan = RlimitPlan::new(
            &Limits {
                timeout: Duration::from_secs(3),
                max_memory_bytes: u64::MAX,
                max_stdout_bytes: 1,
                max_stderr_bytes: 1,
                max_open_files: 40,
                max_disk_bytes: 4096,
                max_processes: 8,
            },
            true,
        );
        // A memory cgroup bounds the memory: no RLIMIT_DATA.
        assert_eq!((plan.data, plan.address_space), (None, u64::MAX));
        assert_eq!((plan.cpu_soft, plan.cpu_hard), (4, 5));
    }
}
