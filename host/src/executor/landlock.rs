//! The sandbox of native plugins: a Landlock ruleset built for each invocation and applied in
//! the forked child just before `exec`, so that the program and everything it starts are
//! confined from their first instruction.
//!
//! What a confined plugin may do (everything else is refused with `EACCES`/`EPERM`):
//! - read and execute the system's programs and libraries: [`SYSTEM_READ`];
//! - read what programs need of `/etc` to start and resolve names: [`SYSTEM_ETC`] (not all of
//!   `/etc`, where a configuration with secrets may live, Cordon's own included);
//! - read `/proc` and `/sys` (a program's own `/proc/self`, the CPU count; Landlock keeps it
//!   from tracing or reading the memory of processes outside its sandbox, Cordon included);
//! - read and write `/dev/null`, `/dev/zero` and `/dev/full`, read the random devices;
//! - read and execute its own program file;
//! - read the one file it scans (not its directory, not its neighbours, never write it);
//! - anything in its fresh working directory, which is removed afterwards;
//! - what its configuration adds: `allow_read` trees, `allow_write` trees, `allow_network`,
//!   `allow_unix_sockets`, `allow_ipc`.
//!
//! And it may not (Landlock ABI 4, Linux 6.7) make or accept TCP connections unless
//! `allow_network`, nor (ABI 6, Linux 6.12) send a signal to a process outside its sandbox
//! (Cordon, another plugin) or connect to an abstract Unix socket made outside it. It runs with
//! `no_new_privs`, so a set-user-ID program it starts gains nothing. Before ABI 6, the seccomp
//! filter refuses the signals aimed at Cordon itself (`seccomp.rs`).
//!
//! Landlock covers neither UDP nor Unix sockets with a path (a local daemon's control socket,
//! which could run commands outside the sandbox for it), nor kernel objects that are not files
//! (System V IPC, memory files, keyrings), nor changes to other processes' limits and
//! scheduling, watches on files, or changes to a file's mode, owner or attributes by its path:
//! the seccomp filter of `seccomp.rs`, applied after the ruleset, refuses these (sockets and
//! kernel IPC unless the configuration allows them).
//!
//! On a kernel with an older Landlock, what that kernel knows is enforced and the rest is not
//! (best effort); on a kernel without Landlock the plugin runs unconfined, as Cordon's user.
//! [`landlock_abi`] says which, and `cordon serve` logs it at start.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope,
};

use seccompiler::BpfProgram;

use crate::plugin::NativeSandbox;

/// The Landlock ABI whose access rights Cordon handles: ABI 6 (Linux 6.12) has every right
/// it uses (files, TCP, signals and abstract Unix sockets). A kernel with a newer ABI enforces
/// these; one with an older ABI, the subset it knows.
const TARGET: ABI = ABI::V6;

/// Trees every confined plugin may read and execute: the system's programs and libraries. A
/// path missing on this system is left out.
const SYSTEM_READ: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// What every confined plugin may read of `/etc`: what the dynamic loader, the C library (users
/// and groups, name resolution, time zone, locales), TLS libraries and `file` read. Not the rest
/// of `/etc`, which holds services' configurations and their secrets (Cordon's own API keys,
/// when its configuration is there); a plugin that needs more names it in `allow_read`. A path
/// missing on this system is left out.
const SYSTEM_ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ld.so.preload",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/locale.alias",
    "/etc/locale.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/mime.types",
    "/etc/magic",
    "/etc/os-release",
];

/// Trees every confined plugin may read, not execute.
const SYSTEM_INFO: &[&str] = &["/proc", "/sys"];

/// Devices every confined plugin may read and write.
const DEVICES_READ_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// Devices every confined plugin may read.
const DEVICES_READ: &[&str] = &["/dev/random", "/dev/urandom"];

/// `LANDLOCK_CREATE_RULESET_VERSION`: ask `landlock_create_ruleset` for the ABI version.
const CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The Landlock ABI version this kernel offers: 0 when it has no Landlock (not built in, or
/// not enabled at boot, or the system call is filtered).
pub fn landlock_abi() -> i32 {
    // SAFETY: with a null attribute pointer and size 0, this flag only asks for the version.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0).max(0)
}

/// What a kernel with Landlock ABI `abi` enforces on a confined native plugin, for logs.
pub fn enforced(abi: i32) -> &'static str {
    match abi {
        i32::MIN..=0 => {
            "nothing: this kernel has no Landlock, so native plugins' files and signals are unconfined"
        }
        1..=3 => {
            "files only: this kernel's Landlock cannot refuse signals (the seccomp filter refuses those aimed at Cordon, not those to other plugins), nor abstract Unix sockets to a plugin with allow_unix_sockets (that needs ABI 6, Linux 6.12)"
        }
        4 | 5 => {
            "files and TCP: this kernel's Landlock cannot refuse signals (the seccomp filter refuses those aimed at Cordon, not those to other plugins), nor abstract Unix sockets to a plugin with allow_unix_sockets (that needs ABI 6, Linux 6.12)"
        }
        _ => "files, TCP, signals and abstract Unix sockets",
    }
}

/// Whether a confined plugin is kept from other processes' entries in `/proc` (their command
/// lines, which name the files other scans are scanning): when `/proc` is mounted with
/// `hidepid` (1 or more), the kernel shows another process's entries only to a process that
/// may trace it, and Landlock forbids tracing outside the sandbox, unless this process is in
/// the mount's `gid` group (root's group, 0, by default), which sees everything.
pub fn proc_hides_other_processes() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // SAFETY: `getegid` cannot fail; `getgroups` with a size of 0 returns the count, then
    // fills at most `groups.len()` entries.
    let mut groups = vec![unsafe { libc::getegid() }];
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n > 0 {
            let mut more = vec![0; n as usize];
            let n = libc::getgroups(n, more.as_mut_ptr());
            more.truncate(n.max(0) as usize);
            groups.extend(more);
        }
    }
    hides_other_processes(&mountinfo, &groups)
}

/// [`proc_hides_other_processes`] for a `/proc/self/mountinfo` text and this process's
/// groups.
fn hides_other_processes(mountinfo: &str, groups: &[libc::gid_t]) -> bool {
    let Some(options) = mountinfo.lines().rev().find_map(|line| {
        // "id parent major:minor root mount-point options [optional...] - type source super"
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        (mount.split(' ').nth(4) == Some("/proc") && fs.next() == Some("proc"))
            .then(|| fs.nth(1))
            .flatten()
    }) else {
        return false;
    };
    let option = |name: &str| {
        options
            .split(',')
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
    };
    let hidden = matches!(
        option("hidepid"),
        Some("1" | "2" | "4" | "noaccess" | "invisible" | "ptraceable")
    );
    let gid: libc::gid_t = option("gid").and_then(|g| g.parse().ok()).unwrap_or(0);
    hidden && !groups.contains(&gid)
}

/// Whether `program` is a 32-bit ELF executable (its `e_ident[EI_CLASS]` is `ELFCLASS32`).
pub(super) fn is_elf32(program: &Path) -> bool {
    use std::io::Read;
    let mut ident = [0u8; 5];
    std::fs::File::open(program)
        .and_then(|mut f| f.read_exact(&mut ident))
        .is_ok_and(|()| ident[..4] == *b"\x7fELF" && ident[4] == 1)
}

/// A Landlock ruleset (and seccomp filter) built for one invocation, to be applied in the
/// child.
#[derive(Debug)]
pub(super) struct Confinement {
    /// The ruleset; `None` when the kernel has no Landlock (then only `no_new_privs` is set).
    ruleset: Option<OwnedFd>,
    /// The seccomp filter ([`seccomp_filter`](super::seccomp::seccomp_filter)), unless the
    /// plugin is allowed all it refuses.
    filter: Option<&'static BpfProgram>,
}

impl Confinement {
    /// The ruleset for `program` scanning `sample` with `work` as its working directory. Every
    /// path is opened now, in the parent: the error names the one that failed. Opened for each
    /// run rather than once at load, because a rule holds the inode it was opened on, and
    /// files such as `/etc/passwd` and `/etc/ld.so.cache` are replaced by renaming a new one
    /// over them. Refused when an
    /// allowed tree holds the directory of the file being scanned, where the plugin could read
    /// the other files Cordon is scanning.
    pub(super) fn build(
        sandbox: &NativeSandbox,
        program: &Path,
        sample: &Path,
        work: &Path,
        filter: Option<&'static BpfProgram>,
    ) -> Result<Confinement, String> {
        if let Some(dir) = sample.parent() {
            check_not_beneath(sandbox, dir)?;
        }
        let refused = |e: landlock::RulesetError| format!("cannot build its Landlock sandbox: {e}");
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(TARGET))
            .map_err(refused)?;
        if !sandbox.network {
            ruleset = ruleset
                .handle_access(AccessNet::from_all(TARGET))
                .map_err(refused)?;
        }
        let mut created = ruleset
            .scope(Scope::from_all(TARGET))
            .map_err(refused)?
            .create()
            .map_err(refused)?;

        let read = AccessFs::from_read(TARGET);
        let info = AccessFs::ReadFile | AccessFs::ReadDir;
        let all = AccessFs::from_all(TARGET);
        let mut rules: Vec<(&Path, BitFlags<AccessFs>, Origin)> = Vec::new();
        rules.extend(
            SYSTEM_READ
                .iter()
                .map(|p| (Path::new(p), read, Origin::System)),
        );
        rules.extend(
            SYSTEM_ETC
                .iter()
                .map(|p| (Path::new(p), info, Origin::System)),
        );
        rules.extend(
            SYSTEM_INFO
                .iter()
                .map(|p| (Path::new(p), info, Origin::System)),
        );
        rules.extend(DEVICES_READ_WRITE.iter().map(|p| {
            let rw = AccessFs::ReadFile | AccessFs::WriteFile;
            (Path::new(p), rw, Origin::System)
        }));
        rules.extend(
            DEVICES_READ
                .iter()
                .map(|p| (Path::new(p), AccessFs::ReadFile.into(), Origin::System)),
        );
        rules.push((
            program,
            AccessFs::Execute | AccessFs::ReadFile,
            Origin::Named("its program"),
        ));
        rules.push((
            sample,
            AccessFs::ReadFile.into(),
            Origin::Named("the file to scan"),
        ));
        rules.push((work, all, Origin::Named("its working directory")));
        rules.extend(
            sandbox
                .read
                .iter()
                .map(|p| (p.as_path(), read, Origin::Named("allow_read"))),
        );
        rules.extend(
            sandbox
                .write
                .iter()
                .map(|p| (p.as_path(), all, Origin::Named("allow_write"))),
        );

        for (path, access, origin) in rules {
            let fd = match PathFd::new(path) {
                Ok(fd) => fd,
                Err(_) if origin == Origin::System && !path.exists() => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot build its Landlock sandbox: {} {}: {e}",
                        origin.describe(),
                        path.display()
                    ));
                }
            };
            created = created
                .add_rule(PathBeneath::new(fd, access))
                .map_err(refused)?;
        }
        Ok(Confinement {
            ruleset: created.into(),
            filter,
        })
    }

    /// Confine the calling process: `no_new_privs`, the ruleset, the seccomp filter. Runs in
    /// the forked child before `exec`, so it makes system calls and nothing else (no
    /// allocation, no locks). Can run more than once on the same ruleset (a spawn that is
    /// retried).
    pub(super) fn apply(&self) -> io::Result<()> {
        // SAFETY: plain system calls on integers and a descriptor this struct owns.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = &self.ruleset
                && libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(filter) = self.filter {
            // `prctl(NO_NEW_PRIVS)` again and `seccomp(SET_MODE_FILTER)`; an error carries the
            // system call's errno and nothing allocated.
            seccompiler::apply_filter(filter).map_err(|e| match e {
                seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
                _ => io::Error::from_raw_os_error(libc::EINVAL),
            })?;
        }
        Ok(())
    }
}

/// Where a rule comes from, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Built in: skipped when the path does not exist on this system.
    System,
    /// The plugin's program, file, working directory or configuration.
    Named(&'static str),
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::System => "the system path",
            Origin::Named(what) => what,
        }
    }
}

/// The system trees every confined plugin gets, as they resolve on this machine (`/lib` may be
/// a link to `/usr/lib`); one missing here is left out. Resolved once.
struct SystemTrees {
    /// [`SYSTEM_READ`]: read and execute.
    run: Vec<PathBuf>,
    /// [`SYSTEM_INFO`]: read only.
    info: Vec<PathBuf>,
    /// [`SYSTEM_ETC`]: read only.
    etc: Vec<PathBuf>,
}

fn system_trees() -> &'static SystemTrees {
    static TREES: OnceLock<SystemTrees> = OnceLock::new();
    TREES.get_or_init(|| {
        let resolve = |trees: &[&str]| -> Vec<PathBuf> {
            trees
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect()
        };
        SystemTrees {
            run: resolve(SYSTEM_READ),
            info: resolve(SYSTEM_INFO),
            etc: resolve(SYSTEM_ETC),
        }
    })
}

/// The system tree under which `path` lies, when every sandboxed native plugin may read it
/// (the system's programs and libraries, `/proc`, `/sys`, the entries of `/etc` they get).
pub fn every_native_plugin_reads(path: &Path) -> Option<PathBuf> {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let trees = system_trees();
    trees
        .run
        .iter()
        .chain(&trees.info)
        .chain(&trees.etc)
        .find(|tree| resolved.starts_with(tree) || path.starts_with(tree))
        .cloned()
}

/// Whether a plugin confined by `sandbox` may execute the file at `path` (an interpreter its
/// program needs): one under the system's programs and libraries or an `allow_read` tree, as
/// they resolve on this machine. The sandbox's own program is allowed by its own rule.
pub(super) fn may_run(sandbox: &NativeSandbox, path: &Path) -> bool {
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    system_trees()
        .run
        .iter()
        .chain(&sandbox.read)
        .any(|tree| path.starts_with(tree))
}

/// Refuse a sandbox that would let the plugin read `dir`, the directory of the file it scans,
/// which holds (or sits beside) the other files Cordon is scanning.
fn check_not_beneath(sandbox: &NativeSandbox, dir: &Path) -> Result<(), String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let configured = sandbox
        .read
        .iter()
        .map(|p| ("allow_read", p))
        .chain(sandbox.write.iter().map(|p| ("allow_write", p)));
    for (field, tree) in configured {
        if dir.starts_with(tree) {
            return Err(format!(
                "its `{field}` entry {} holds {}, where Cordon puts the files it scans: the \
                 plugin could read every file being scanned. Allow a narrower directory",
                tree.display(),
                dir.display()
            ));
        }
    }
    let trees = system_trees();
    if let Some(tree) = trees
        .run
        .iter()
        .chain(&trees.info)
        .find(|t| dir.starts_with(t))
    {
        return Err(format!(
            "Cordon puts the files it scans in {}, under {}, which every sandboxed native \
             plugin may read: each could read every file being scanned. Move Cordon's data \
             directory (--data-dir) out of the system directories",
            dir.display(),
            tree.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_32_bit_program_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let elf32 = dir.path().join("elf32");
        std::fs::write(&elf32, b"\x7fELF\x01\x01\x01\0rest of a header").unwrap();
        assert!(is_elf32(&elf32));
        let elf64 = dir.path().join("elf64");
        std::fs::write(&elf64, b"\x7fELF\x02\x01\x01\0rest of a header").unwrap();
        assert!(!is_elf32(&elf64));
        assert!(!is_elf32(Path::new("/bin/sh")) || cfg!(target_pointer_width = "32"));
        let script = dir.path().join("script");
        std::fs::write(&script, b"#!/bin/sh\n").unwrap();
        assert!(!is_elf32(&script));
    }

    #[test]
    fn proc_hides_other_processes_only_with_hidepid_and_outside_its_group() {
        let line = |mount_point: &str, fs: &str, options: &str| {
            format!(
                "22 27 0:21 / {mount_point} rw,nosuid,relatime shared:12 - {fs} proc {options}\n"
            )
        };
        let sys = line("/sys", "sysfs", "rw");
        let plain = format!("{sys}{}", line("/proc", "proc", "rw"));
        let cordon = [1000, 1000];
        assert!(!hides_other_processes(&plain, &cordon), "no hidepid");
        for hidepid in ["invisible", "2", "noaccess", "1", "ptraceable", "4"] {
            let hidden = line("/proc", "proc", &format!("rw,hidepid={hidepid}"));
            assert!(hides_other_processes(&hidden, &cordon), "hidepid={hidepid}");
            assert!(
                !hides_other_processes(&hidden, &[0]),
                "root's group sees everything"
            );
        }
        let with_gid = line("/proc", "proc", "rw,hidepid=invisible,gid=1000");
        assert!(
            !hides_other_processes(&with_gid, &[0, 1000]),
            "its gid= group"
        );
        assert!(hides_other_processes(&with_gid, &[0]));
        assert!(
            !hides_other_processes(&line("/proc", "proc", "rw,hidepid=off"), &cordon),
            "hidepid=off"
        );
        // The mount on top counts; another procfs elsewhere does not.
        let remounted = format!(
            "{}{}",
            line("/proc", "proc", "rw,hidepid=invisible"),
            line("/proc", "proc", "rw")
        );
        assert!(!hides_other_processes(&remounted, &cordon));
        let elsewhere = format!("{plain}{}", line("/run/p", "proc", "rw,hidepid=2"));
        assert!(!hides_other_processes(&elsewhere, &cordon));
        assert!(!hides_other_processes("", &cordon), "no /proc at all");
    }

    #[test]
    fn an_allowed_tree_may_not_hold_the_files_being_scanned() {
        let root = tempfile::tempdir().unwrap();
        let scan = root.path().join("scan");
        std::fs::create_dir(&scan).unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let holds = NativeSandbox {
            read: vec![root_path.clone()],
            ..NativeSandbox::default()
        };
        let err = check_not_beneath(&holds, &scan).unwrap_err();
        assert!(err.contains("`allow_read` entry"), "{err}");
        let holds = NativeSandbox {
            write: vec![root_path.join("scan")],
            ..NativeSandbox::default()
        };
        let err = check_not_beneath(&holds, &scan).unwrap_err();
        assert!(err.contains("`allow_write` entry"), "{err}");
        // A sibling tree is fine (a quarantine beside the scan slots).
        let beside = NativeSandbox {
            write: vec![root_path.join("quarantine")],
            read: vec![root_path.join("scanners")],
            ..NativeSandbox::default()
        };
        check_not_beneath(&beside, &scan).unwrap();
    }

    #[test]
    fn files_scanned_under_a_system_tree_are_refused() {
        // Every confined plugin may read /usr: a data directory there would show it every
        // file. (/usr/bin exists on every system these tests run on.)
        let err = check_not_beneath(&NativeSandbox::default(), Path::new("/usr/bin")).unwrap_err();
        assert!(err.contains("--data-dir"), "{err}");
    }
}
