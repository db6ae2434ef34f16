//! A pids cgroup for each native plugin invocation: `max_processes` bounds the processes and
//! threads it runs at once, and every one of them is killed at its end, wherever it went. And,
//! where Cordon may use the memory controller, a memory cgroup: `max_memory_bytes` bounds the
//! memory all of them use together, and the kernel tells when it was reached, and the peak.
//!
//! Without it, a plugin's fork bomb takes the machine's process table: measured here, a shell
//! fork bomb under a 3 s timeout ran 18,000 to 26,000 processes within a second of its start,
//! until its `fork`s failed ("Cannot fork") with the table (32,768 here) full, for every
//! program on the machine. Cordon's supervising threads then got so little of the two cores
//! that the plugin's deadline fired 3.3 s late and its group kill took another 2.2 s: the
//! invocation ended after 9 to 18 s instead of 3.
//!
//! Where Cordon may manage a cgroup (found once, at the first native invocation):
//! - **cgroup v1**: the `pids` hierarchy's directory of Cordon's cgroup is writable (Cordon
//!   runs as root, as in a container).
//! - **cgroup v2**: Cordon's cgroup is delegated to it (`Delegate=pids` in
//!   `deploy/cordon.service`, or root) and has the `pids` controller. A cgroup that holds
//!   processes cannot give its children controllers, so Cordon first moves itself into a child
//!   `supervisor` of its cgroup; it does so only when it is alone in its cgroup.
//!
//! Layout: `<Cordon's cgroup>/cordon-<pid>/<n>`, one `<n>` per invocation, with `pids.max` =
//! `max_processes`. The plugin's process joins it in the forked child before anything else
//! (writing `0` to `tasks` in v1, to `cgroup.procs` in v2, which moves the writer), so that
//! everything it starts is counted from the first `fork`. At start, the `cordon-<pid>`
//! directories of processes that no longer run (a Cordon that crashed) are emptied, their
//! processes killed, and removed.
//!
//! The memory cgroups are not made per invocation but kept in a pool, each reused by one
//! invocation at a time of the plugin that used it before (`memory.limit_in_bytes` or
//! `memory.max` set, the peak reset (v2 before Linux 6.12 cannot: then an invocation's peak is
//! known only when it passes the cgroup's earlier ones), its counts noted, at each use): a
//! memory cgroup that is removed lives on, "dying", for as long as anything charged to it does
//! (the page cache and the directory entries a plugin made), and at hundreds of invocations a
//! second such cgroups would pile up in the kernel. What stays charged to one between invocations is its plugin's
//! own; one that still holds shared memory a plugin left is removed, not reused.
//! - v1: `<Cordon's memory cgroup>/cordon-<pid>/m<k>`, which the child joins beside its pids
//!   cgroup (two writes of `0` to `tasks`).
//! - v2: `<Cordon's cgroup>/cordon-<pid>/m<k>/<n>`: the invocation's pids cgroup is a child of
//!   its memory cgroup, which gives its children only the pids controller, so that its memory
//!   is charged to `m<k>`.
//!
//! Written here rather than taken from a crate: the join runs between `fork` and `exec`,
//! where nothing may allocate, and what Cordon needs is a few files of each cgroup.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

/// Which cgroup file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// The legacy hierarchies, one per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

/// The cgroup under which this process makes its plugins' cgroups.
#[derive(Debug)]
pub struct Cgroups {
    version: Version,
    /// `<Cordon's cgroup>/cordon-<pid>`.
    parent: PathBuf,
    next: AtomicU64,
    /// The plugins' memory cgroups, or why there are none.
    memory: Result<MemoryPool, String>,
    /// Where a plugin's `fork` refused for the limit of a cgroup above its own is counted
    /// only in that cgroup (v2 from Linux 6.11): the `pids.events.local` of `parent` and of
    /// each cgroup above it, whose `max` counts the times that cgroup's own limit was met.
    /// Empty where the plugin's own `pids.events` counts such a refusal (v1; v2 before Linux
    /// 6.11, or mounted with `pids_localevents`). See [`PluginCgroup::limit_hits`].
    limits_above: Vec<PathBuf>,
}

/// The reusable memory cgroups of this process's plugins.
#[derive(Debug)]
struct MemoryPool {
    /// v1: `<Cordon's memory cgroup>/cordon-<pid>`; v2: the same directory as `parent`.
    parent: PathBuf,
    /// The numbers `k` of the `m<k>` that no invocation uses, empty of processes, by the
    /// plugin that used them last: each plugin gets its own back, so that what stays charged
    /// to one between invocations (the page cache of files it read, which the kernel gives
    /// back only when memory is short) is its own, in its limit and its peak, not another
    /// plugin's.
    free: Mutex<HashMap<String, Vec<u64>>>,
    /// The next `k` to make.
    next: AtomicU64,
    /// What the kernel keeps of a memory cgroup's peak.
    peaks: Peaks,
}

/// What the kernel keeps of a memory cgroup's peak, by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peaks {
    /// None: v2 before Linux 5.19 (no `memory.peak`).
    Unkept,
    /// The most it held since it was made: v2 from Linux 5.19 to 6.11. A reused cgroup's
    /// invocation's own peak is known only when it rose above that.
    SinceMade,
    /// Since Cordon asked for a reset: v1 (`memory.max_usage_in_bytes`), v2 from Linux 6.12
    /// (a write to `memory.peak`).
    Resettable,
}

impl Peaks {
    /// What this kernel keeps, found on the pool's own cgroup.
    fn of(version: Version, pool: &Path) -> Peaks {
        if version == Version::V1 || resets_peak(pool) {
            Peaks::Resettable
        } else if pool.join("memory.peak").exists() {
            Peaks::SinceMade
        } else {
            Peaks::Unkept
        }
    }
}

static CGROUPS: OnceLock<Result<Cgroups, String>> = OnceLock::new();

/// The cgroups this process may make for its plugins, found (and set up) at the first call;
/// or why there are none, for the log and `plugin run`.
pub fn cgroups() -> Result<&'static Cgroups, &'static str> {
    CGROUPS
        .get_or_init(|| {
            let own = std::fs::read_to_string("/proc/self/cgroup")
                .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
            let mounts = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
            let (version, dir) = own_cgroup(&own, &mounts, "pids")?;
            let local_events = mount_of(&mounts, |fstype, options| {
                fstype == "cgroup2" && options.split(',').any(|o| o == "pids_localevents")
            })
            .is_some();
            let memory = own_cgroup(&own, &mounts, "memory").and_then(|(v, memory)| {
                if v != version {
                    Err(format!(
                        "the memory controller is in the other cgroup file system than pids \
                         ({})",
                        memory.display()
                    ))
                } else if version == Version::V1 && memory == dir {
                    Err("the memory and pids controllers share one v1 hierarchy".to_owned())
                } else {
                    Ok(memory)
                }
            });
            Cgroups::set_up(version, &dir, memory, local_events)
        })
        .as_ref()
        .map_err(String::as_str)
}

/// Kill what still runs in this process's plugins' cgroups (a plugin whose invocation was
/// given up at shutdown) and remove them, if it made any: for a process that is about to exit,
/// after its last invocation. Blocking.
pub fn release() {
    if let Some(Ok(cgroups)) = CGROUPS.get() {
        remove_tree(&cgroups.parent);
        if let Ok(memory) = &cgroups.memory {
            remove_tree(&memory.parent);
        }
    }
}

/// The directory of this process's cgroup in the hierarchy that has `controller` (`pids`,
/// `memory`), from `/proc/self/cgroup` and `/proc/self/mountinfo`: a v1 hierarchy of that
/// controller when there is one, else the v2 one.
fn own_cgroup(own: &str, mountinfo: &str, controller: &str) -> Result<(Version, PathBuf), String> {
    let mut v2 = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == controller) {
            let mount = mount_of(mountinfo, |fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == controller)
            })
            .ok_or_else(|| format!("the cgroup v1 {controller} hierarchy is not mounted"))?;
            return Ok((Version::V1, mount.join_cgroup(path)?));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        }
    }
    let path = v2.ok_or_else(|| {
        format!("this kernel has no {controller} controller (no cgroup lists it)")
    })?;
    let mount = mount_of(mountinfo, |fstype, _| fstype == "cgroup2")
        .ok_or("the cgroup v2 hierarchy is not mounted")?;
    Ok((Version::V2, mount.join_cgroup(path)?))
}

/// A mounted cgroup hierarchy: where it is, and which of its cgroups is mounted there.
struct Mount {
    point: PathBuf,
    root: String,
}

impl Mount {
    /// The directory of the cgroup at `path` (as `/proc/self/cgroup` gives it).
    fn join_cgroup(&self, path: &str) -> Result<PathBuf, String> {
        let below = if self.root == "/" {
            path
        } else {
            path.strip_prefix(self.root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .ok_or_else(|| {
                    format!(
                        "Cordon's cgroup {path} is outside the part of the hierarchy mounted at {}",
                        self.point.display()
                    )
                })?
        };
        Ok(self.point.join(below.trim_start_matches('/')))
    }
}

/// The first mount in `mountinfo` whose file system type and super options `wanted` accepts.
fn mount_of(mountinfo: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<Mount> {
    mountinfo.lines().find_map(|line| {
        // `id parent major:minor root point options [optional...] - fstype source super`
        let (before, after) = line.split_once(" - ")?;
        let mut after = after.split(' ');
        let (fstype, _source, options) = (after.next()?, after.next()?, after.next()?);
        if !wanted(fstype, options) {
            return None;
        }
        let mut before = before.split(' ');
        let root = unescape(before.nth(3)?);
        let point = unescape(before.next()?);
        Some(Mount {
            point: PathBuf::from(point),
            root,
        })
    })
}

/// A `mountinfo` field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Cgroups {
    /// Make this process's directory of plugin cgroups under `dir`, its own cgroup, after
    /// removing those of processes that no longer run; and its pool of memory cgroups under
    /// `memory` (its own memory cgroup, or why there is none), where it may. `local_events`:
    /// the v2 hierarchy is mounted with `pids_localevents`.
    fn set_up(
        version: Version,
        dir: &Path,
        memory: Result<PathBuf, String>,
        local_events: bool,
    ) -> Result<Cgroups, String> {
        let me = rustix::process::getpid().as_raw_pid();
        may_write(dir)?;
        remove_stale(dir);
        if version == Version::V2 {
            enable(dir, "pids")?;
        }
        let parent = dir.join(format!("cordon-{me}"));
        // A directory of this pid's is a crashed process's, which had the same pid.
        remove_tree(&parent);
        make_dir(&parent).map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
        if version == Version::V2
            && let Err(e) = write(&parent.join("cgroup.subtree_control"), "+pids")
        {
            let _ = rustix::fs::rmdir(&parent);
            return Err(format!(
                "cannot give {} the pids controller: {e}",
                parent.display()
            ));
        }
        let memory = memory.and_then(|memory| match version {
            Version::V1 => {
                may_write(&memory)?;
                remove_stale(&memory);
                let mine = memory.join(format!("cordon-{me}"));
                remove_tree(&mine);
                make_dir(&mine).map_err(|e| format!("cannot make {}: {e}", mine.display()))?;
                Ok(mine)
            }
            Version::V2 => {
                enable(dir, "memory")?;
                write(&parent.join("cgroup.subtree_control"), "+memory").map_err(|e| {
                    format!(
                        "cannot give {} the memory controller: {e}",
                        parent.display()
                    )
                })?;
                Ok(parent.clone())
            }
        });
        Ok(Cgroups {
            version,
            limits_above: if version == Version::V2 && !local_events {
                limits_above(&parent)
            } else {
                Vec::new()
            },
            parent,
            next: AtomicU64::new(0),
            memory: memory.map(|parent| MemoryPool {
                peaks: Peaks::of(version, &parent),
                parent,
                free: Mutex::new(HashMap::new()),
                next: AtomicU64::new(0),
            }),
        })
    }

    /// Which cgroup file system, and where this process's plugins' cgroups are.
    pub fn describe(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!(
            "a pids cgroup (cgroup {version}) in {}",
            self.parent.display()
        )
    }

    /// Where the plugins' memory cgroups are, or why there are none: then `max_memory_bytes`
    /// bounds each process of a plugin (`RLIMIT_DATA`), not all of them together.
    pub fn memory(&self) -> Result<String, &str> {
        match &self.memory {
            Ok(pool) => Ok(format!("a memory cgroup in {}", pool.parent.display())),
            Err(why) => Err(why),
        }
    }

    /// Whether every native invocation's peak memory is measured: where the kernel resets a
    /// memory cgroup's peak (v1; v2 from Linux 6.12). Before Linux 6.12, a pooled cgroup's
    /// peak is only known for an invocation that used more than every earlier one in it, and
    /// is `None` otherwise.
    pub fn measures_every_peak(&self) -> bool {
        self.memory
            .as_ref()
            .is_ok_and(|pool| pool.peaks == Peaks::Resettable)
    }

    /// Whether any native invocation's peak memory is measured: where the kernel keeps a
    /// memory cgroup's peak (v1; v2 from Linux 5.19). Before Linux 5.19, v2 keeps none, and
    /// every peak is `None`.
    pub fn measures_peaks(&self) -> bool {
        self.memory
            .as_ref()
            .is_ok_and(|pool| pool.peaks != Peaks::Unkept)
    }

    /// The directory of this process's plugins' cgroups: a cgroup itself.
    pub fn dir(&self) -> &Path {
        &self.parent
    }

    /// The directory of this process's plugins' memory cgroups, a cgroup itself (v2: the same
    /// as [`Cgroups::dir`]), where there are any.
    pub fn memory_dir(&self) -> Option<&Path> {
        self.memory.as_ref().ok().map(|pool| pool.parent.as_path())
    }

    /// A new cgroup that holds at most `max_processes` processes and threads, in a memory
    /// cgroup that bounds them to `max_memory_bytes` together where there is a pool of them,
    /// one that `plugin` (what identifies a plugin: its command line) used before if it can.
    pub fn create(
        &'static self,
        max_processes: u32,
        max_memory_bytes: u64,
        plugin: &str,
    ) -> io::Result<PluginCgroup> {
        let memory = match &self.memory {
            Ok(pool) => Some(pool.lease(self.version, max_memory_bytes, plugin)?),
            Err(_) => None,
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = match (&memory, self.version) {
            (Some(memory), Version::V2) => memory.dir.join(n.to_string()),
            _ => self.parent.join(n.to_string()),
        };
        if let Err(e) = make_dir(&dir) {
            if let Some(memory) = &memory {
                memory.give_back();
            }
            return Err(e);
        }
        // The child joins before `exec`, when it is one thread: in v1 it moves that thread
        // alone (`tasks`), which spares the kernel's global lock on moving whole processes
        // (`cgroup_threadgroup_rwsem`, whose write side waits for an RCU grace period).
        // Measured: a process start costs 1.07 times as much in a cgroup joined so, 1.40 times
        // through `cgroup.procs` (`cargo bench --bench executor`, BENCHMARKS.md). v2 has only
        // `cgroup.procs`.
        let join = match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.procs",
        };
        let cgroup = PluginCgroup {
            procs: CString::new(dir.join(join).as_os_str().as_bytes()).map_err(io::Error::other)?,
            kill_file: (self.version == Version::V2).then(|| dir.join("cgroup.kill")),
            dir,
            memory,
            removed: AtomicBool::new(false),
            max_processes,
            limits_above: &self.limits_above,
            refusals_above_before: refusals_in(&self.limits_above),
        };
        if let Err(e) = write(&cgroup.dir.join("pids.max"), &max_processes.to_string()) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }
}

impl MemoryPool {
    /// A memory cgroup of the pool, free or new, set for one invocation: its limit
    /// `max_bytes` (v2: and no swap), its peak reset, its OOM kills and limit hits counted
    /// from here.
    fn lease(
        &'static self,
        version: Version,
        max_bytes: u64,
        plugin: &str,
    ) -> io::Result<MemoryLease> {
        let reused = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(plugin)
            .and_then(Vec::pop);
        if let Some(k) = reused {
            match self.set_up_lease(version, k, max_bytes, plugin) {
                Ok(lease) => return Ok(lease),
                // Most likely a v1 limit below what earlier invocations left charged to it
                // that the kernel could not reclaim (`EBUSY`): a new one instead.
                Err(e) => {
                    tracing::debug!(error = %e, "a plugin memory cgroup was not reused");
                    let _ = rustix::fs::rmdir(self.parent.join(format!("m{k}")));
                }
            }
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.parent.join(format!("m{k}"));
        make_dir(&dir)?;
        let made = (|| {
            if version == Version::V2 {
                // Its children (the invocations' pids cgroups) get no memory controller of
                // their own: their memory is charged here.
                write(&dir.join("cgroup.subtree_control"), "+pids")?;
            }
            self.set_up_lease(version, k, max_bytes, plugin)
        })();
        if made.is_err() {
            let _ = rustix::fs::rmdir(&dir);
        }
        made
    }

    fn set_up_lease(
        &'static self,
        version: Version,
        k: u64,
        max_bytes: u64,
        plugin: &str,
    ) -> io::Result<MemoryLease> {
        let dir = self.parent.join(format!("m{k}"));
        let (tasks, oom_file, limit_file, peak) = match version {
            Version::V1 => {
                // Memory only: a limit of memory and swap together
                // (`memory.memsw.limit_in_bytes`) would be met first, and the kernel does not
                // count those hits (`memory.memsw.failcnt` stays 0 on Linux 6.18), which tell
                // its own limit from a shortage elsewhere.
                write(&dir.join("memory.limit_in_bytes"), &max_bytes.to_string())?;
                // Nothing swapped out to make room at its own limit: with a swappiness of 0,
                // the kernel's reclaim for a cgroup's limit takes only its page cache, never
                // its anonymous memory, and then OOM-kills (v1's documentation, "swappiness";
                // `get_scan_count` in mm/vmscan.c). Reclaim for the machine's shortage may
                // still swap it out, as anyone's. (Where the kernel has no swap, there is no
                // such file to matter.)
                let _ = write(&dir.join("memory.swappiness"), "0");
                // Only the high-water mark since this write.
                write(&dir.join("memory.max_usage_in_bytes"), "0")?;
                let tasks = CString::new(dir.join("tasks").as_os_str().as_bytes())
                    .map_err(io::Error::other)?;
                (
                    Some(tasks),
                    dir.join("memory.oom_control"),
                    dir.join("memory.failcnt"),
                    Some(PeakSource::File(dir.join("memory.max_usage_in_bytes"))),
                )
            }
            Version::V2 => {
                write(&dir.join("memory.max"), &max_bytes.to_string())?;
                // Memory swapped out is memory used all the same: none (where swap is
                // accounted at all).
                let _ = write(&dir.join("memory.swap.max"), "0");
                // One process out of memory stops them all.
                let _ = write(&dir.join("memory.oom.group"), "1");
                // The peak since this descriptor's reset (Linux 6.12), else since the cgroup
                // was made (Linux 5.19), which is this invocation's if it rises above what it
                // is now: always in a new cgroup.
                let path = dir.join("memory.peak");
                let peak = match self.peaks {
                    Peaks::Resettable => reset_peak(&path).ok().map(PeakSource::Descriptor),
                    Peaks::SinceMade => {
                        number_in(&path).map(|before| PeakSource::Above { path, before })
                    }
                    // Before Linux 5.19: no file to read, at each lease.
                    Peaks::Unkept => None,
                };
                (
                    None,
                    dir.join("memory.events"),
                    dir.join("memory.events"),
                    peak,
                )
            }
        };
        let oom_kills_before = oom_kills_in(&oom_file);
        let limit_hits_before = limit_hits_in(version, &limit_file);
        Ok(MemoryLease {
            pool: self,
            plugin: plugin.to_owned(),
            k,
            dir,
            tasks,
            oom_file,
            oom_kills_before,
            version,
            limit_file,
            limit_hits_before,
            peak,
        })
    }
}

/// The `pids.events.local` files (Linux 6.11) of `dir` and of each cgroup above it, up to
/// the hierarchy's root, which has none; none before Linux 6.11.
fn limits_above(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .map(|d| d.join("pids.events.local"))
        .take_while(|f| f.exists())
        .collect()
}

/// How many times the cgroups whose `pids.events.local` are `files` met their own limits.
fn refusals_in(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| counter_in(f, "max ")).sum()
}

/// Whether Cordon may make cgroups in `dir`, its own cgroup.
fn may_write(dir: &Path) -> Result<(), String> {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(|e| {
        format!(
            "Cordon may not make cgroups in its own, {} ({e}): run it as root, or with its \
             cgroup delegated to it (Delegate=pids memory in deploy/cordon.service)",
            dir.display()
        )
    })?;
    Ok(())
}

/// The v2 rule that a cgroup with processes gives its children no controller: move this
/// process into a child `supervisor` of `dir` (only when it is alone there), then give
/// `dir`'s children `controller`.
fn enable(dir: &Path, controller: &str) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
    };
    if !read("cgroup.controllers")?
        .split_whitespace()
        .any(|c| c == controller)
    {
        return Err(format!(
            "Cordon's cgroup {} has no {controller} controller (its parent does not give it \
             one)",
            dir.display()
        ));
    }
    if read("cgroup.subtree_control")?
        .split_whitespace()
        .any(|c| c == controller)
    {
        return Ok(());
    }
    let me = rustix::process::getpid().as_raw_pid();
    let procs: Vec<i32> = read("cgroup.procs")?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let others: Vec<i32> = procs.iter().copied().filter(|&p| p != me).collect();
    if !others.is_empty() {
        return Err(format!(
            "Cordon shares its cgroup {} with other processes ({others:?}): run it in a cgroup \
             of its own (deploy/cordon.service)",
            dir.display()
        ));
    }
    let supervisor = dir.join("supervisor");
    // Out of it already (moved for another controller): no move.
    let step = || -> io::Result<()> {
        if !procs.is_empty() {
            make_dir(&supervisor).or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            write(&supervisor.join("cgroup.procs"), &me.to_string())?;
        }
        write(
            &dir.join("cgroup.subtree_control"),
            &format!("+{controller}"),
        )
    };
    step().map_err(|e| {
        format!(
            "cannot move Cordon into {} and give {}'s children the {controller} controller: {e}",
            supervisor.display(),
            dir.display()
        )
    })
}

/// Empty and remove the `cordon-<pid>` directories in `dir` whose process no longer runs.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cordon-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // A process that Cordon may not signal runs all the same.
        let alive = Pid::from_raw(pid)
            .is_some_and(|p| rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH));
        if !alive {
            remove_tree(&entry.path());
        }
    }
}

/// Kill what runs in each cgroup below `dir` and remove them, then `dir`. Logged when a
/// cgroup could not be removed.
fn remove_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path());
        }
    }
    kill_all_in(dir, None, REMOVE_GRACE);
    // Gone already is fine: another Cordon removing the same stale cgroups.
    if let Err(e) = rustix::fs::rmdir(dir)
        && e != rustix::io::Errno::NOENT
    {
        tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove a plugin cgroup");
    }
}

/// How long removing a cgroup waits at most for its processes to die.
const REMOVE_GRACE: Duration = Duration::from_secs(1);

/// One invocation's cgroup.
#[derive(Debug)]
pub struct PluginCgroup {
    dir: PathBuf,
    /// The file the forked child writes `0` to, to join: `<dir>/tasks` (v1) or
    /// `<dir>/cgroup.procs` (v2), ready before the fork.
    procs: CString,
    /// v2's `cgroup.kill` (Linux 5.14), which kills every process in the cgroup at once.
    kill_file: Option<PathBuf>,
    /// Its memory cgroup, where there is a pool of them.
    memory: Option<MemoryLease>,
    /// Whether [`PluginCgroup::remove`] ran.
    removed: AtomicBool,
    /// Its `pids.max`.
    max_processes: u32,
    /// [`Cgroups::limits_above`], and their count of refusals when it was made.
    limits_above: &'static [PathBuf],
    refusals_above_before: u64,
}

/// A memory cgroup of the pool, used by one invocation.
#[derive(Debug)]
struct MemoryLease {
    pool: &'static MemoryPool,
    /// The plugin it is leased to, and given back for.
    plugin: String,
    k: u64,
    dir: PathBuf,
    /// v1: its `tasks`, which the child writes `0` to beside its pids cgroup's. v2: none (the
    /// pids cgroup is its child).
    tasks: Option<CString>,
    /// `memory.oom_control` (v1) or `memory.events` (v2), which count its OOM kills.
    oom_file: PathBuf,
    oom_kills_before: u64,
    version: Version,
    /// v1: its `memory.failcnt`, which counts the charges that met its limit; v2: its
    /// `memory.events`, whose `oom` counts the times it ran out at its own limit. To tell its
    /// limit from an OOM kill that the machine's, or an ancestor's, shortage caused.
    limit_file: PathBuf,
    limit_hits_before: u64,
    /// Where its peak since the lease is read, where the kernel keeps one.
    peak: Option<PeakSource>,
}

#[derive(Debug)]
enum PeakSource {
    /// v1's `memory.max_usage_in_bytes`, reset at the lease.
    File(PathBuf),
    /// v2's `memory.peak`, open since its reset through this descriptor (Linux 6.12).
    Descriptor(std::fs::File),
    /// v2's `memory.peak` where the kernel cannot reset it (before Linux 6.12): the most the
    /// cgroup held since it was made, `before` at the lease. A figure above `before` was
    /// reached during the lease, and is its peak; otherwise its peak is not known.
    Above { path: PathBuf, before: u64 },
}

/// v2's `memory.peak` at `path`, reset (Linux 6.12): open, the descriptor through which it
/// reads the peak since the reset.
fn reset_peak(path: &Path) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    std::io::Write::write_all(&mut &file, b"reset\n")?;
    Ok(file)
}

/// Whether this kernel resets v2's `memory.peak` (Linux 6.12): tried on the pool's own
/// cgroup, whose peak Cordon does not read.
fn resets_peak(pool: &Path) -> bool {
    reset_peak(&pool.join("memory.peak")).is_ok()
}

impl MemoryLease {
    /// Back to the pool, if nothing runs in it any more and nothing the kernel cannot give
    /// back is charged to it: memory a plugin left in shared memory (a file in a tmpfs, a
    /// System V segment, which `allow_write` or `allow_ipc` let it make) stays charged here
    /// after its processes are gone, and the next plugin would start with that much less of
    /// its limit. Such a cgroup is removed instead.
    fn give_back(&self) {
        if !procs_in(&self.dir).is_empty() {
            return;
        }
        let left = counter_in(&self.dir.join("memory.stat"), "shmem ");
        if left > 0 {
            tracing::warn!(
                cgroup = %self.dir.display(),
                bytes = left,
                "a plugin left memory in shared memory (a tmpfs file or a System V segment) \
                 that outlives it; its memory cgroup is not given to another plugin"
            );
            let _ = rustix::fs::rmdir(&self.dir);
            return;
        }
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(self.plugin.clone())
            .or_default()
            .push(self.k);
    }
}

/// The `oom_kill` count of a `memory.oom_control` (v1, Linux 4.13) or `memory.events` (v2).
fn oom_kills_in(file: &Path) -> u64 {
    counter_in(file, "oom_kill ")
}

/// How many times a memory cgroup met its own limit: v1's `memory.failcnt`, v2's `oom` count
/// in `memory.events`.
fn limit_hits_in(version: Version, file: &Path) -> u64 {
    match version {
        Version::V1 => number_in(file).unwrap_or(0),
        Version::V2 => counter_in(file, "oom "),
    }
}

/// The number a cgroup file holds alone (`pids.peak`, `memory.failcnt`); `None` without one.
fn number_in(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The processes a cgroup `dir` lists in its `cgroup.procs`; none when it cannot be read.
fn procs_in(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The number on the line of `file` that starts with `key`; 0 without one.
fn counter_in(file: &Path, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|n| n.trim().parse().ok()))
        })
        .unwrap_or(0)
}

impl PluginCgroup {
    /// Move the calling process into this cgroup (and, in v1, into its memory cgroup). For
    /// the forked child before `exec`: no allocation, three or six system calls.
    pub fn join(&self) -> io::Result<()> {
        if let Some(tasks) = self.memory.as_ref().and_then(|m| m.tasks.as_ref()) {
            join_by(tasks)?;
        }
        join_by(&self.procs)
    }

    /// Whether its processes' memory is bounded together (`max_memory_bytes`), by a memory
    /// cgroup.
    pub fn bounds_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// How many of its processes the kernel's OOM killer killed: for `max_memory_bytes` (see
    /// [`PluginCgroup::memory_limit_met`]), or because the machine, or a cgroup above its
    /// (Cordon's, the unit's `MemoryMax`), ran out of memory.
    pub fn oom_kills(&self) -> u64 {
        self.memory.as_ref().map_or(0, |m| {
            oom_kills_in(&m.oom_file).saturating_sub(m.oom_kills_before)
        })
    }

    /// Whether its processes together met `max_memory_bytes`: the kernel had to reclaim or
    /// refuse memory at its own limit, not at a cgroup's above it.
    pub fn memory_limit_met(&self) -> bool {
        self.memory
            .as_ref()
            .is_some_and(|m| limit_hits_in(m.version, &m.limit_file) > m.limit_hits_before)
    }

    /// The most memory its processes used at once, together, where the kernel tells: what
    /// is charged to its memory cgroup (their pages, the page cache they brought in, the
    /// kernel's memory for them).
    pub fn peak_memory(&self) -> Option<u64> {
        match self.memory.as_ref()?.peak.as_ref()? {
            PeakSource::File(path) => number_in(path),
            PeakSource::Above { path, before } => number_in(path).filter(|now| now > before),
            PeakSource::Descriptor(file) => {
                let mut buf = [0u8; 32];
                let n = rustix::io::pread(file, &mut buf, 0).ok()?;
                std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
            }
        }
    }

    /// How many times a `fork` or a new thread of its processes was refused: for
    /// `max_processes` (see [`PluginCgroup::process_limit_met`]), or for the limit of a cgroup
    /// above its (Cordon's own, the unit's `TasksMax`), which the kernel counts here too.
    ///
    /// From Linux 6.11, cgroup v2 counts a refusal for the limit of a cgroup above only in
    /// that cgroup, which does not say whose `fork` it refused. There, every such refusal
    /// since this cgroup was made counts: one of its processes may have been refused, and a
    /// plugin that could not run as it meant to must not pass. Another plugin's refusal, or
    /// Cordon's own thread's, fails this one too while the limit above is met.
    pub fn limit_hits(&self) -> u64 {
        counter_in(&self.dir.join("pids.events"), "max ")
            + refusals_in(self.limits_above).saturating_sub(self.refusals_above_before)
    }

    /// Whether its processes met `max_processes`: they were that many at once (`pids.peak`).
    /// A refusal for a limit above its, with fewer, is not its own. Where the kernel keeps no
    /// peak (before Linux 6.1), every refusal counts as its own.
    pub fn process_limit_met(&self) -> bool {
        self.peak()
            .is_none_or(|peak| peak >= u64::from(self.max_processes))
    }

    /// The most processes and threads it held at once (`pids.peak`, Linux 6.1), where the
    /// kernel tells.
    pub fn peak(&self) -> Option<u64> {
        number_in(&self.dir.join("pids.peak"))
    }

    /// The processes in it that run (not zombies, nor being released) outside the process
    /// group `pgid` (the plugin's): daemons it started. All of them when `pgid` is `None`.
    pub fn running_outside(&self, pgid: Option<i32>) -> Vec<i32> {
        procs_in(&self.dir)
            .into_iter()
            .filter(|&pid| {
                super::process::stat_of(pid).is_some_and(|s| s.running() && Some(s.pgrp) != pgid)
            })
            .collect()
    }

    /// SIGKILL every process in the cgroup, and wait up to a second for them to be gone.
    /// Whether it is empty. Blocking.
    pub fn kill_all(&self) -> bool {
        kill_all_in(&self.dir, self.kill_file.as_deref(), REMOVE_GRACE)
    }

    /// Kill what is left in it and remove it; its memory cgroup goes back to the pool, empty.
    /// Once: later calls do nothing. Blocking.
    pub fn remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Empty already, most often (the plugin exited and its cgroup was emptied then): an
        // empty cgroup stays empty, and `rmdir` refuses one that is not (`EBUSY`).
        if rustix::fs::rmdir(&self.dir).is_err() {
            self.kill_all();
            if let Err(e) = rustix::fs::rmdir(&self.dir) {
                tracing::warn!(
                    cgroup = %self.dir.display(),
                    error = %e,
                    "could not remove a plugin's cgroup"
                );
                // Its memory cgroup holds what outlived the kill: not for another plugin.
                return;
            }
        }
        if let Some(memory) = &self.memory {
            memory.give_back();
        }
    }
}

/// SIGKILL every process in the cgroup `dir`, through `kill_file` (v2's `cgroup.kill`) when
/// it exists, else one by one; wait up to `grace` for them to be gone. Whether it is empty.
fn kill_all_in(dir: &Path, kill_file: Option<&Path>, grace: Duration) -> bool {
    let listed = || procs_in(dir);
    let by_kill_file = kill_file.is_some_and(|f| write(f, "1").is_ok());
    let give_up = Instant::now() + grace;
    loop {
        let pids = listed();
        if pids.is_empty() {
            return true;
        }
        if Instant::now() >= give_up {
            tracing::warn!(
                cgroup = %dir.display(),
                pids = ?pids,
                "plugin processes outlived their SIGKILL"
            );
            return false;
        }
        if !by_kill_file {
            kill_listed(&pids, &listed);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILL the processes `pids` that `listed` (the cgroup's list, read again) still names,
/// through a process descriptor opened before that second read: a pid that was freed and
/// reused by a process outside the cgroup in between is not signalled.
fn kill_listed(pids: &[i32], listed: &dyn Fn() -> Vec<i32>) {
    let mut handles = Vec::with_capacity(pids.len());
    for &raw in pids {
        let Some(pid) = Pid::from_raw(raw) else {
            continue;
        };
        match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => handles.push((raw, Some(fd))),
            // Before Linux 5.3: by pid, as the process group kill does.
            Err(rustix::io::Errno::NOSYS) => handles.push((raw, None)),
            Err(_) => {} // gone already
        }
    }
    let still: std::collections::HashSet<i32> = listed().into_iter().collect();
    for (raw, fd) in handles {
        if !still.contains(&raw) {
            continue;
        }
        let _ = match fd {
            Some(fd) => rustix::process::pidfd_send_signal(&fd, Signal::KILL),
            None => Pid::from_raw(raw).map_or(Ok(()), |pid| {
                rustix::process::kill_process(pid, Signal::KILL)
            }),
        };
    }
}

/// Write `0` to the cgroup file `file`: moves the caller there. No allocation.
fn join_by(file: &CString) -> io::Result<()> {
    let fd = rustix::fs::open(
        file.as_c_str(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::io::write(&fd, b"0")?;
    Ok(())
}

fn make_dir(dir: &Path) -> io::Result<()> {
    rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)).map_err(io::Error::from)
}

fn write(file: &Path, text: &str) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;
    use std::sync::Arc;

    const MOUNTS: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
34 25 0:29 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate
41 34 0:36 / /sys/fs/cgroup/cpu,cpuacct rw shared:16 - cgroup cgroup rw,cpu,cpuacct
44 34 0:39 /docker/abc /sys/fs/cgroup/pids rw shared:19 - cgroup cgroup rw,pids
";

    #[test]
    fn a_v1_pids_hierarchy_is_preferred_and_its_mount_root_taken_off() {
        let own = "12:pids:/docker/abc/inner\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        assert_eq!(
            own_cgroup(own, MOUNTS, "pids").unwrap(),
            (Version::V1, PathBuf::from("/sys/fs/cgroup/pids/inner"))
        );
        // A cgroup outside the mounted part of the hierarchy has no directory to write in.
        let outside = "12:pids:/elsewhere\n";
        let e = own_cgroup(outside, MOUNTS, "pids").unwrap_err();
        assert!(e.contains("outside the part of the hierarchy"), "{e}");
        // `/docker/abcdef` is not below `/docker/abc`.
        assert!(own_cgroup("12:pids:/docker/abcdef\n", MOUNTS, "pids").is_err());
    }

    #[test]
    fn without_a_v1_pids_hierarchy_the_v2_one_is_used() {
        let own = "4:cpu,cpuacct:/\n0::/system.slice/cordon.service\n";
        assert_eq!(
            own_cgroup(own, MOUNTS, "pids").unwrap(),
            (
                Version::V2,
                PathBuf::from("/sys/fs/cgroup/unified/system.slice/cordon.service")
            )
        );
        let v2_only = "30 25 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_cgroup("0::/\n", v2_only, "pids").unwrap(),
            (Version::V2, PathBuf::from("/sys/fs/cgroup"))
        );
        let e = own_cgroup("0::/\n", "", "pids").unwrap_err();
        assert!(e.contains("not mounted"), "{e}");
        let e = own_cgroup("4:cpu:/\n", MOUNTS, "pids").unwrap_err();
        assert!(e.contains("no pids controller"), "{e}");
    }

    /// A directory laid out as a v2 cgroup with `controllers`, `subtree_control` and `procs`,
    /// and the `supervisor` child's `cgroup.procs` the kernel would make with it: for the
    /// steps of [`enable`], not the kernel's rules (this machine may have no v2 `pids`).
    fn fake_v2(controllers: &str, subtree_control: &str, procs: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", subtree_control),
            ("cgroup.procs", procs),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::create_dir(dir.path().join("supervisor")).unwrap();
        std::fs::write(dir.path().join("supervisor/cgroup.procs"), "").unwrap();
        dir
    }

    #[test]
    fn on_v2_cordon_moves_itself_out_only_when_alone_and_needed() {
        let me = rustix::process::getpid().as_raw_pid();
        let read = |dir: &tempfile::TempDir, name: &str| {
            std::fs::read_to_string(dir.path().join(name)).unwrap()
        };

        // Alone in its cgroup: it moves into `supervisor`, then gives the children `pids`.
        let alone = fake_v2("cpu memory pids\n", "\n", &format!("{me}\n"));
        enable(alone.path(), "pids").unwrap();
        assert_eq!(read(&alone, "supervisor/cgroup.procs"), me.to_string());
        assert_eq!(read(&alone, "cgroup.subtree_control"), "+pids");

        // Already given: nothing moves.
        let given = fake_v2("pids\n", "pids\n", "");
        enable(given.path(), "pids").unwrap();
        assert_eq!(read(&given, "supervisor/cgroup.procs"), "");

        // Not alone: it moves no other process, and says why.
        let shared = fake_v2("pids\n", "\n", &format!("{me}\n4242\n"));
        let e = enable(shared.path(), "pids").unwrap_err();
        assert!(e.contains("with other processes ([4242])"), "{e}");
        assert_eq!(read(&shared, "supervisor/cgroup.procs"), "");
        assert_eq!(read(&shared, "cgroup.subtree_control"), "\n");

        // No `pids` from the parent.
        let e = enable(fake_v2("cpu memory\n", "\n", "").path(), "pids").unwrap_err();
        assert!(e.contains("has no pids controller"), "{e}");

        // Moved out already (for `pids`): `memory` is given without another move.
        let moved = fake_v2("memory pids\n", "pids\n", "");
        enable(moved.path(), "memory").unwrap();
        assert_eq!(read(&moved, "cgroup.subtree_control"), "+memory");
        assert_eq!(read(&moved, "supervisor/cgroup.procs"), "");
        let e = enable(fake_v2("pids\n", "pids\n", "").path(), "memory").unwrap_err();
        assert!(e.contains("has no memory controller"), "{e}");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/my\040cgroups"), "/mnt/my cgroups");
        assert_eq!(unescape(r"a\134b"), r"a\b");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
    }

    #[test]
    fn a_cgroup_bounds_its_processes_counts_refusals_and_is_killed_and_removed() {
        let Ok(cgroups) = cgroups() else {
            eprintln!("no cgroup Cordon may make here: not tested");
            return;
        };
        let cgroup = Arc::new(cgroups.create(3, 256 << 20, "test").unwrap());
        assert_eq!(cgroup.limit_hits(), 0);
        // A shell in the cgroup that starts sleepers in the background: two fit beside it,
        // the third is refused, and the shell (dash, bash) gives up. The two are left running
        // in the cgroup, outside any process group of the test's.
        let join = Arc::clone(&cgroup);
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("sleep 30 & sleep 30 & sleep 30 & wait")
            .stderr(std::process::Stdio::null());
        // SAFETY: `join` makes only `open` and `write` calls.
        unsafe {
            command.pre_exec(move || join.join());
        }
        let status = command.status().unwrap();
        assert!(
            !status.success(),
            "the shell could not start its third sleeper"
        );
        assert!(cgroup.limit_hits() >= 1, "the third sleeper was refused");
        assert!(cgroup.process_limit_met(), "at its own limit");
        let procs = std::fs::read_to_string(cgroup.dir.join("cgroup.procs")).unwrap();
        let sleepers: Vec<i32> = procs.lines().map(|p| p.parse().unwrap()).collect();
        assert_eq!(sleepers.len(), 2, "{procs}");
        assert!(cgroup.kill_all());
        for pid in sleepers {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, s)| !s.trim_start().starts_with('Z'))
            });
            assert!(!alive, "sleeper {pid} outlived kill_all");
        }
        cgroup.remove();
        assert!(!cgroup.dir.exists());
    }

    /// Plugin cgroups of a test's own below this process's, `name`: a pool of memory cgroups
    /// that the tests running beside it do not take from, and parents whose limits it may set
    /// (as a unit's `TasksMax` and `MemoryMax` would). The parent directories (pids, memory),
    /// for [`remove_tree`] at its end; `None` where there are no plugin cgroups (with memory
    /// cgroups, when `memory`).
    fn private_cgroups(name: &str, memory: bool) -> Option<(&'static Cgroups, PathBuf, PathBuf)> {
        let Ok(cgroups) = cgroups() else {
            eprintln!("no cgroup Cordon may make here: not tested");
            return None;
        };
        let pool = match &cgroups.memory {
            Ok(pool) => Some(pool),
            Err(_) if memory => {
                eprintln!("no memory cgroup Cordon may make here: not tested");
                return None;
            }
            Err(_) => None,
        };
        let pids = cgroups.parent.join(name);
        make_dir(&pids).unwrap();
        let memory_dir = match (cgroups.version, pool) {
            (Version::V1, Some(pool)) => {
                let dir = pool.parent.join(name);
                make_dir(&dir).unwrap();
                dir
            }
            (Version::V2, Some(_)) => {
                write(&pids.join("cgroup.subtree_control"), "+pids +memory").unwrap();
                pids.clone()
            }
            (_, None) => pids.clone(),
        };
        let private: &'static Cgroups = Box::leak(Box::new(Cgroups {
            version: cgroups.version,
            // Its own directory first, where a test sets a limit above its plugins'.
            limits_above: if cgroups.limits_above.is_empty() {
                Vec::new()
            } else {
                limits_above(&pids)
            },
            parent: pids.clone(),
            next: AtomicU64::new(0),
            memory: match pool {
                Some(pool) => Ok(MemoryPool {
                    peaks: pool.peaks,
                    parent: memory_dir.clone(),
                    free: Mutex::new(HashMap::new()),
                    next: AtomicU64::new(0),
                }),
                None => Err("none".to_owned()),
            },
        }));
        Some((private, pids, memory_dir))
    }

    /// Run `script` under `/bin/sh` in `cgroup`, its stderr dropped.
    fn run_in(cgroup: &Arc<PluginCgroup>, script: &str) -> std::process::Output {
        let join = Arc::clone(cgroup);
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(script)
            .stderr(std::process::Stdio::null());
        // SAFETY: `join` makes only `open` and `write` calls.
        unsafe {
            command.pre_exec(move || join.join());
        }
        command.output().unwrap()
    }

    #[test]
    fn refusals_counted_only_above_count_from_when_the_cgroup_was_made() {
        // Linux 6.11's v2 layout: a refusal for the limit of a cgroup above the plugin's is
        // counted in that cgroup's `pids.events.local`, not in the plugin's `pids.events`.
        let tmp = tempfile::tempdir().unwrap();
        // The root of a hierarchy has none, and where it is mounted nothing above it does.
        std::fs::write(tmp.path().join("pids.events.local"), "max 9\n").unwrap();
        let unit = tmp.path().join("root").join("unit");
        let pool = unit.join("cordon-1");
        let dir = pool.join("m0").join("0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(unit.join("pids.events.local"), "max 5\n").unwrap();
        std::fs::write(pool.join("pids.events.local"), "max 0\n").unwrap();
        std::fs::write(dir.join("pids.events"), "max 0\n").unwrap();
        std::fs::write(dir.join("pids.peak"), "3\n").unwrap();
        // Up to the first directory without one: the hierarchy's root.
        let above: &'static [PathBuf] = Box::leak(limits_above(&pool).into_boxed_slice());
        assert_eq!(
            above,
            [
                pool.join("pids.events.local"),
                unit.join("pids.events.local")
            ]
        );
        let cgroup = PluginCgroup {
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap(),
            kill_file: None,
            dir: dir.clone(),
            memory: None,
            removed: AtomicBool::new(false),
            max_processes: 8,
            limits_above: above,
            refusals_above_before: refusals_in(above),
        };
        assert_eq!(cgroup.limit_hits(), 0, "the refusals before it are not its");
        std::fs::write(unit.join("pids.events.local"), "max 7\n").unwrap();
        assert_eq!(cgroup.limit_hits(), 2);
        assert!(!cgroup.process_limit_met(), "3 processes, not its own 8");
        std::fs::write(pool.join("pids.events.local"), "max 1\n").unwrap();
        std::fs::write(dir.join("pids.events"), "max 1\n").unwrap();
        std::fs::write(dir.join("pids.peak"), "8\n").unwrap();
        assert_eq!(cgroup.limit_hits(), 4);
        assert!(cgroup.process_limit_met());
    }

    #[test]
    fn a_refusal_for_a_process_limit_above_the_plugins_is_told_apart() {
        let Some((cgroups, pids, memory_dir)) = private_cgroups("pids-test", false) else {
            return;
        };
        // Three processes at most above it (as the unit's TasksMax would be), 256 in it: the
        // shell's third sleeper is refused, and the kernel counts it in the plugin's cgroup
        // (from Linux 6.11 on v2, in the cgroup above, which Cordon reads), but the plugin
        // never met its own limit.
        write(&pids.join("pids.max"), "3").unwrap();
        let cgroup = Arc::new(cgroups.create(256, 256 << 20, "test").unwrap());
        run_in(
            &cgroup,
            "for i in 1 2 3; do sleep 30 >/dev/null & done; wait",
        );
        assert!(cgroup.limit_hits() >= 1, "the third sleeper was refused");
        if cgroup.peak().is_some() {
            assert!(!cgroup.process_limit_met(), "not at its own 256");
        }
        cgroup.remove();
        remove_tree(&pids);
        if memory_dir != pids {
            remove_tree(&memory_dir);
        }
    }

    #[test]
    fn a_memory_cgroup_bounds_its_processes_together_and_is_reused_afresh() {
        let Some((cgroups, pids, memory_dir)) = private_cgroups("memory-test", true) else {
            return;
        };
        let run = run_in;
        // A shell that keeps 100 MB of text in a variable, in 32 MiB: killed by the kernel,
        // which says so, with the peak at the limit.
        let cgroup = Arc::new(cgroups.create(8, 32 << 20, "test").unwrap());
        assert!(cgroup.bounds_memory());
        assert_eq!(cgroup.oom_kills(), 0);
        let out = run(
            &cgroup,
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo kept",
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("kept"));
        assert!(cgroup.oom_kills() >= 1);
        assert!(cgroup.memory_limit_met(), "at its own limit");
        match (cgroups.measures_peaks(), cgroup.peak_memory()) {
            (true, Some(peak)) => assert!((16 << 20..=32 << 20).contains(&peak), "peak {peak}"),
            // v2 before Linux 5.19 keeps no peak.
            (false, None) => {}
            (measured, peak) => panic!("measures peaks: {measured}; peak {peak:?}"),
        }
        let first = cgroup.memory.as_ref().unwrap().dir.clone();
        cgroup.remove();

        // The next invocation gets the same memory cgroup back, set for it: its limit, no OOM
        // kill and a peak of its own.
        let next = Arc::new(cgroups.create(8, 64 << 20, "test").unwrap());
        let memory = next.memory.as_ref().unwrap();
        assert_eq!(memory.dir, first, "reused");
        assert_eq!(
            next.oom_kills(),
            0,
            "the last one's OOM kill is not this one's"
        );
        let limit_file = match cgroups.version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        let limit = std::fs::read_to_string(memory.dir.join(limit_file)).unwrap();
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
        // Nothing of it swapped out at its limit (where the kernel has swap at all).
        let no_swap = match cgroups.version {
            Version::V1 => ("memory.swappiness", "0"),
            Version::V2 => ("memory.swap.max", "0"),
        };
        if let Ok(value) = std::fs::read_to_string(memory.dir.join(no_swap.0)) {
            assert_eq!(value.trim(), no_swap.1, "{}", no_swap.0);
        }
        let out = run(&next, "head -c 20000000 /dev/zero | tr '\\0' a | wc -c");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20000000");
        assert_eq!(next.oom_kills(), 0);
        match (cgroups.measures_every_peak(), next.peak_memory()) {
            (true, Some(peak)) => assert!(
                peak < 16 << 20,
                "the last one's peak is not this one's: {peak}"
            ),
            // v2 before Linux 6.12: below the last one's peak, its own is not known.
            (false, None) => {}
            (every, peak) => panic!("measures every peak: {every}; peak {peak:?}"),
        }
        next.remove();

        // Another plugin does not get it: what stays charged to a memory cgroup between
        // invocations (page cache) is its plugin's own. The first plugin gets it back.
        let other = Arc::new(cgroups.create(8, 64 << 20, "other").unwrap());
        assert_ne!(
            other.memory.as_ref().unwrap().dir,
            first,
            "not another plugin's"
        );
        let again = Arc::new(cgroups.create(8, 64 << 20, "test").unwrap());
        assert_eq!(again.memory.as_ref().unwrap().dir, first, "its own again");
        other.remove();
        // Above every earlier peak in it (the first's, at most 32 MiB), its own is known on
        // every kernel that keeps one: `tail` keeps the last 45 MB it reads.
        let out = run(
            &again,
            "head -c 45000000 /dev/zero | tail -c 45000000 | wc -c",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "45000000");
        if cgroups.measures_peaks() {
            let peak = again.peak_memory().expect("above the earlier peaks");
            assert!((40 << 20..=64 << 20).contains(&peak), "peak {peak}");
        } else {
            assert_eq!(again.peak_memory(), None);
        }
        again.remove();

        // Memory left in shared memory outlives the plugin, charged to its cgroup: that one is
        // not given to the next plugin, which would have that much less of its limit.
        let shm = PathBuf::from(format!("/dev/shm/cordon-test-{}", std::process::id()));
        if shm.parent().is_some_and(Path::is_dir) {
            let leaves = Arc::new(cgroups.create(8, 64 << 20, "test").unwrap());
            let script = format!("head -c 8000000 /dev/zero > {}", shm.display());
            assert!(run(&leaves, &script).status.success());
            let left = leaves.memory.as_ref().unwrap().dir.clone();
            leaves.remove();
            let after = Arc::new(cgroups.create(8, 64 << 20, "test").unwrap());
            let _ = std::fs::remove_file(&shm);
            assert_ne!(after.memory.as_ref().unwrap().dir, left, "not reused");
            assert!(!left.exists(), "removed");
            after.remove();
        }

        // Killed for a shortage above it (here its pool's cgroup limited to 32 MiB, as the
        // unit's MemoryMax would limit Cordon's): an OOM kill, but not its limit's.
        write(&memory_dir.join(limit_file), &(32u64 << 20).to_string()).unwrap();
        let starved = Arc::new(cgroups.create(8, 256 << 20, "test").unwrap());
        let out = run(
            &starved,
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo kept",
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("kept"));
        assert!(starved.oom_kills() >= 1);
        assert!(!starved.memory_limit_met(), "not at its own 256 MiB");
        starved.remove();
        remove_tree(&pids);
        remove_tree(&memory_dir);
    }

    #[test]
    fn the_cgroups_of_a_cordon_that_is_gone_are_emptied_and_removed() {
        let Ok(cgroups) = cgroups() else {
            eprintln!("no cgroup Cordon may make here: not tested");
            return;
        };
        let base = cgroups.parent.parent().unwrap();
        // A Cordon that crashed: its pid runs no more, and a plugin of its still runs in its
        // cgroup.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id();
        gone.wait().unwrap();
        let stale = base.join(format!("cordon-{dead}"));
        make_dir(&stale).unwrap();
        let dir = stale.join("7");
        make_dir(&dir).unwrap();
        let left = Arc::new(PluginCgroup {
            procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap(),
            kill_file: None,
            dir,
            memory: None,
            removed: AtomicBool::new(false),
            max_processes: u32::MAX,
            limits_above: &[],
            refusals_above_before: 0,
        });
        let join = Arc::clone(&left);
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        // SAFETY: `join` makes only `open` and `write` calls.
        unsafe {
            command.pre_exec(move || join.join());
        }
        let mut plugin = command.spawn().unwrap();
        // And the cgroups of this process, which runs, are left alone.
        let mine = cgroups.create(4, 256 << 20, "test").unwrap();

        remove_stale(base);

        assert!(!stale.exists(), "{} is still there", stale.display());
        let status = plugin.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(mine.dir.exists());
        mine.remove();
    }
}
