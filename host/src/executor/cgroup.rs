//! A pids cgroup for each native plugin invocation: `max_processes` bounds the processes and
//! threads it runs at once, and every one of them is killed at its end, wherever it went.
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
//! Written here rather than taken from a crate: the join runs between `fork` and `exec`,
//! where nothing may allocate, and what Cordon needs is four files.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
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
            let (version, dir) = own_pids_cgroup(&own, &mounts)?;
            Cgroups::set_up(version, &dir)
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
    }
}

/// The directory of this process's cgroup in the hierarchy that has the `pids` controller,
/// from `/proc/self/cgroup` and `/proc/self/mountinfo`: a v1 `pids` hierarchy when there is
/// one, else the v2 one.
fn own_pids_cgroup(own: &str, mountinfo: &str) -> Result<(Version, PathBuf), String> {
    let mut v2 = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "pids") {
            let mount = mount_of(mountinfo, |fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == "pids")
            })
            .ok_or("the cgroup v1 pids hierarchy is not mounted")?;
            return Ok((Version::V1, mount.join_cgroup(path)?));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        }
    }
    let path = v2.ok_or("this kernel has no pids controller (no cgroup lists it)")?;
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
    /// removing those of processes that no longer run.
    fn set_up(version: Version, dir: &Path) -> Result<Cgroups, String> {
        let me = rustix::process::getpid().as_raw_pid();
        if let Err(e) = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
            return Err(format!(
                "Cordon may not make cgroups in its own, {} ({e}): run it as root, or with its \
                 cgroup delegated to it (Delegate=pids in deploy/cordon.service)",
                dir.display()
            ));
        }
        remove_stale(dir);
        if version == Version::V2 {
            enable_pids(dir)?;
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
        Ok(Cgroups {
            version,
            parent,
            next: AtomicU64::new(0),
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

    /// The directory of this process's plugins' cgroups: a cgroup itself.
    pub fn dir(&self) -> &Path {
        &self.parent
    }

    /// A new cgroup that holds at most `max_processes` processes and threads.
    pub fn create(&self, max_processes: u32) -> io::Result<PluginCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.parent.join(n.to_string());
        make_dir(&dir)?;
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
        };
        if let Err(e) = write(&cgroup.dir.join("pids.max"), &max_processes.to_string()) {
            let _ = rustix::fs::rmdir(&cgroup.dir);
            return Err(e);
        }
        Ok(cgroup)
    }
}

/// The v2 rule that a cgroup with processes gives its children no controller: move this
/// process into a child `supervisor` of `dir` (only when it is alone there), then give
/// `dir`'s children the pids controller.
fn enable_pids(dir: &Path) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display()))
    };
    if !read("cgroup.controllers")?
        .split_whitespace()
        .any(|c| c == "pids")
    {
        return Err(format!(
            "Cordon's cgroup {} has no pids controller (its parent does not give it one)",
            dir.display()
        ));
    }
    if read("cgroup.subtree_control")?
        .split_whitespace()
        .any(|c| c == "pids")
    {
        return Ok(());
    }
    let me = rustix::process::getpid().as_raw_pid();
    let others: Vec<i32> = read("cgroup.procs")?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p != me)
        .collect();
    if !others.is_empty() {
        return Err(format!(
            "Cordon shares its cgroup {} with other processes ({others:?}): run it in a cgroup \
             of its own (deploy/cordon.service)",
            dir.display()
        ));
    }
    let supervisor = dir.join("supervisor");
    make_dir(&supervisor)
        .or_else(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .and_then(|()| write(&supervisor.join("cgroup.procs"), &me.to_string()))
        .and_then(|()| write(&dir.join("cgroup.subtree_control"), "+pids"))
        .map_err(|e| {
            format!(
                "cannot move Cordon into {} and give {}'s children the pids controller: {e}",
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
}

impl PluginCgroup {
    /// Move the calling process into this cgroup. For the forked child before `exec`: no
    /// allocation, three system calls.
    pub fn join(&self) -> io::Result<()> {
        let fd = rustix::fs::open(
            self.procs.as_c_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::io::write(&fd, b"0")?;
        Ok(())
    }

    /// How many times a `fork` or a new thread was refused for `max_processes`.
    pub fn limit_hits(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("pids.events"))
            .ok()
            .and_then(|events| {
                events.lines().find_map(|l| {
                    l.strip_prefix("max ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0)
    }

    /// The most processes and threads it held at once (`pids.peak`, Linux 6.1), where the
    /// kernel tells.
    pub fn peak(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("pids.peak"))
            .ok()
            .and_then(|peak| peak.trim().parse().ok())
    }

    /// SIGKILL every process in the cgroup, and wait up to a second for them to be gone.
    /// Whether it is empty. Blocking.
    pub fn kill_all(&self) -> bool {
        kill_all_in(&self.dir, self.kill_file.as_deref(), REMOVE_GRACE)
    }

    /// Kill what is left in it and remove it. Blocking.
    pub fn remove(&self) {
        // Empty already, most often (the plugin exited and its cgroup was emptied then): an
        // empty cgroup stays empty, and `rmdir` refuses one that is not (`EBUSY`).
        if rustix::fs::rmdir(&self.dir).is_ok() {
            return;
        }
        self.kill_all();
        if let Err(e) = rustix::fs::rmdir(&self.dir) {
            tracing::warn!(
                cgroup = %self.dir.display(),
                error = %e,
                "could not remove a plugin's cgroup"
            );
        }
    }
}

/// SIGKILL every process in the cgroup `dir`, through `kill_file` (v2's `cgroup.kill`) when
/// it exists, else one by one; wait up to `grace` for them to be gone. Whether it is empty.
fn kill_all_in(dir: &Path, kill_file: Option<&Path>, grace: Duration) -> bool {
    let procs = dir.join("cgroup.procs");
    let listed = || -> Vec<i32> {
        std::fs::read_to_string(&procs)
            .map(|text| {
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
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
            own_pids_cgroup(own, MOUNTS).unwrap(),
            (Version::V1, PathBuf::from("/sys/fs/cgroup/pids/inner"))
        );
        // A cgroup outside the mounted part of the hierarchy has no directory to write in.
        let outside = "12:pids:/elsewhere\n";
        let e = own_pids_cgroup(outside, MOUNTS).unwrap_err();
        assert!(e.contains("outside the part of the hierarchy"), "{e}");
        // `/docker/abcdef` is not below `/docker/abc`.
        assert!(own_pids_cgroup("12:pids:/docker/abcdef\n", MOUNTS).is_err());
    }

    #[test]
    fn without_a_v1_pids_hierarchy_the_v2_one_is_used() {
        let own = "4:cpu,cpuacct:/\n0::/system.slice/cordon.service\n";
        assert_eq!(
            own_pids_cgroup(own, MOUNTS).unwrap(),
            (
                Version::V2,
                PathBuf::from("/sys/fs/cgroup/unified/system.slice/cordon.service")
            )
        );
        let v2_only = "30 25 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_pids_cgroup("0::/\n", v2_only).unwrap(),
            (Version::V2, PathBuf::from("/sys/fs/cgroup"))
        );
        let e = own_pids_cgroup("0::/\n", "").unwrap_err();
        assert!(e.contains("not mounted"), "{e}");
        let e = own_pids_cgroup("4:cpu:/\n", MOUNTS).unwrap_err();
        assert!(e.contains("no pids controller"), "{e}");
    }

    /// A directory laid out as a v2 cgroup with `controllers`, `subtree_control` and `procs`,
    /// and the `supervisor` child's `cgroup.procs` the kernel would make with it: for the
    /// steps of [`enable_pids`], not the kernel's rules (this machine may have no v2 `pids`).
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
        enable_pids(alone.path()).unwrap();
        assert_eq!(read(&alone, "supervisor/cgroup.procs"), me.to_string());
        assert_eq!(read(&alone, "cgroup.subtree_control"), "+pids");

        // Already given: nothing moves.
        let given = fake_v2("pids\n", "pids\n", "");
        enable_pids(given.path()).unwrap();
        assert_eq!(read(&given, "supervisor/cgroup.procs"), "");

        // Not alone: it moves no other process, and says why.
        let shared = fake_v2("pids\n", "\n", &format!("{me}\n4242\n"));
        let e = enable_pids(shared.path()).unwrap_err();
        assert!(e.contains("with other processes ([4242])"), "{e}");
        assert_eq!(read(&shared, "supervisor/cgroup.procs"), "");
        assert_eq!(read(&shared, "cgroup.subtree_control"), "\n");

        // No `pids` from the parent.
        let e = enable_pids(fake_v2("cpu memory\n", "\n", "").path()).unwrap_err();
        assert!(e.contains("has no pids controller"), "{e}");
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
        let cgroup = Arc::new(cgroups.create(3).unwrap());
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
        let mine = cgroups.create(4).unwrap();

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
