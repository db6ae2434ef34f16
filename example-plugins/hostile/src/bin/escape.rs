//! `escape`: tries to step outside the sandbox and reports what it observed, as a valid scanner
//! verdict (No Threat Detected) whose `threat_found` is a compact JSON object:
//!
//! ```json
//! {"args": [...], "env_count": 0, "cwd": "...", "stdin": "ok:<len>",
//!  "read_sample": "ok:<len>", "write_sample": "...", "create_file_in_scan_dir": "...",
//!  "list_scan_dir": "ok:<names>", "read_etc_passwd": "...", "read_parent": "...",
//!  "read_parent_etc_passwd": "...", "list_parent": "...", "list_root": "...",
//!  "tcp_connect_127.0.0.1:1": "...", "spawn": "...", "signal_parent": "...",
//!  "udp_socket": "...", "tmpdir": "ok:<dir>", "clock": "ok:<ms since epoch>"}
//! ```
//!
//! On Linux it also tries to make each kind of kernel object that is not a file, and removes
//! what it made: `sysv_shm`, `sysv_msg` and `sysv_sem` (a System V shared memory segment,
//! message queue and semaphore set), `posix_mq` (a POSIX message queue: under Landlock its
//! making may succeed and its opening fail, "err:made, not opened: ...", so it is removed
//! either way; named `ESCAPE_MQ_NAME` when that is set), `memfd` (a memory file) and `keyring`
//! (a key in its process keyring). And it sets its parent's (the host's) open files limit,
//! nice value, CPU affinity and scheduling policy, then its own (`parent_rlimit`,
//! `own_rlimit`, `parent_nice`...), each to what it reads first: nothing changes; and it
//! watches the scan dir for new names (`watch_scan_dir`). It makes a user namespace in a child
//! (`user_namespace`, by `unshare`; `clone_namespace`, by `clone`), starts a child with
//! `clone3` (`clone3`), enters its own UTS namespace again (`setns`), and makes an io_uring, a
//! userfaultfd, a perf event counting its own time and a BPF map (`io_uring`, `userfaultfd`,
//! `perf_event`, `bpf`), closing what it gets; and it reports its capability sets
//! (`capabilities`, `ok:effective <hex> permitted <hex> bounding <hex>`, from
//! `/proc/self/status`), and the descriptors it was given besides its standard streams
//! (`inherited_fds`, `ok:<fd>=<target>,...`). With `ESCAPE_READ` it also makes
//! that file readable by all, by its path, and reports the mode it then has (`chmod_named`,
//! `ok:<octal mode>`); and it sets the mode of a file it makes in its working directory to
//! 640 through the file's descriptor, and reports it (`fchmod_own_file`, native only).
//!
//! With `ESCAPE_READ`, `ESCAPE_WRITE`, `ESCAPE_CONNECT` or `ESCAPE_CONNECT_UNIX` in its
//! environment (a native plugin's configured `env`), it also reports `read_named` (reading
//! that file), `write_named` (creating a file in that directory), `connect_named` (a TCP
//! connection to that address) and `connect_unix_named` (a connection to the Unix socket at
//! that path, as a local daemon's). `signal_parent` asks, with signal 0 (nothing is sent),
//! whether it may signal its parent, the host. `tmpdir` (native only: WASI has no temporary
//! directory) is where the standard library puts temporary files.
//!
//! Every probe is `"ok:<detail>"` or `"err:<error>"`. "The scan dir" is the directory of the
//! sample (the last argument): `/scan` for wasm. `read_parent` opens the sample again through
//! `<scan dir>/../<scan dir name>/<file>`; `list_root` gives at most 20 names of `/`. In wasm
//! expect `err` for everything but the reads of the sample and its directory, and `clock`
//! (`tcp_connect` fails as unsupported). A file the probe manages to create is removed again;
//! the sample is opened for writing but never written.

use std::fmt::Display;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hostile::quote;

fn probe<T: Display>(result: io::Result<T>) -> String {
    match result {
        Ok(detail) => format!("ok:{detail}"),
        Err(err) => format!("err:{err}"),
    }
}

fn list(dir: &Path, limit: usize) -> io::Result<String> {
    let mut names = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    let total = names.len();
    names.truncate(limit);
    let mut text = names.join(",");
    if total > limit {
        text.push_str(&format!(",... ({total} entries)"));
    }
    Ok(text)
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let sample = if args.len() >= 2 {
        PathBuf::from(args.last().unwrap())
    } else {
        PathBuf::new()
    };
    let dir = sample.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file_name = sample
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    let mut probes: Vec<(&str, String)> = Vec::new();
    probes.push((
        "cwd",
        probe(std::env::current_dir().map(|d| d.display().to_string())),
    ));
    probes.push((
        "stdin",
        probe({
            let mut buf = Vec::new();
            io::stdin().read_to_end(&mut buf)
        }),
    ));
    probes.push(("read_sample", probe(fs::read(&sample).map(|b| b.len()))));
    probes.push((
        "write_sample",
        probe(
            OpenOptions::new()
                .append(true)
                .open(&sample)
                .map(|_| "opened for writing"),
        ),
    ));
    let created = dir.join("escape-probe.txt");
    probes.push((
        "create_file_in_scan_dir",
        probe(fs::write(&created, b"escape").map(|()| {
            let _ = fs::remove_file(&created);
            "created"
        })),
    ));
    probes.push(("list_scan_dir", probe(list(&dir, 20))));
    // A file it makes in its working directory, its mode set through its descriptor; then its
    // mode as the file system has it.
    #[cfg(unix)]
    probes.push((
        "fchmod_own_file",
        probe(fs::File::create("own-file").and_then(|f| {
            f.set_permissions(fs::Permissions::from_mode(0o640))?;
            Ok(format!("{:o}", f.metadata()?.permissions().mode() & 0o777))
        })),
    ));
    #[cfg(target_os = "linux")]
    probes.push(("watch_scan_dir", probe(kernel_ipc::watch(&dir))));
    probes.push((
        "read_etc_passwd",
        probe(fs::read("/etc/passwd").map(|b| b.len())),
    ));
    probes.push((
        "read_parent",
        probe(fs::read(dir.join("..").join(&dir_name).join(&file_name)).map(|b| b.len())),
    ));
    probes.push((
        "read_parent_etc_passwd",
        probe(fs::read(dir.join("../etc/passwd")).map(|b| b.len())),
    ));
    probes.push(("list_parent", probe(list(&dir.join(".."), 20))));
    probes.push(("list_root", probe(list(Path::new("/"), 20))));
    probes.push((
        "tcp_connect_127.0.0.1:1",
        probe(
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], 1)),
                Duration::from_secs(1),
            )
            .map(|_| "connected"),
        ),
    ));
    probes.push((
        "spawn",
        probe(
            std::process::Command::new("/bin/sh")
                .args(["-c", "exit 0"])
                .status(),
        ),
    ));
    probes.push(("signal_parent", signal_parent()));
    probes.push((
        "udp_socket",
        probe(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound")),
    ));
    // Where temporary files go (TMPDIR, else /tmp; WASI has no such directory, and the
    // standard library panics when asked).
    #[cfg(not(target_os = "wasi"))]
    probes.push(("tmpdir", format!("ok:{}", std::env::temp_dir().display())));
    #[cfg(target_os = "linux")]
    for (name, make) in kernel_ipc::PROBES {
        probes.push((name, probe(make())));
    }
    #[cfg(target_os = "linux")]
    for (name, reach) in kernel_surface::PROBES {
        probes.push((name, probe(reach())));
    }
    #[cfg(target_os = "linux")]
    probes.push(("capabilities", probe(kernel_surface::capabilities())));
    #[cfg(target_os = "linux")]
    probes.push(("inherited_fds", probe(inherited_fds())));
    #[cfg(target_os = "linux")]
    for (name, change) in scheduling::PROBES {
        let parent = std::os::unix::process::parent_id() as libc::pid_t;
        probes.push((name.0, probe(change(parent))));
        probes.push((name.1, probe(change(0))));
    }
    // Probes a test asks for through the environment (a native plugin's `env`): a file to read,
    // a directory to create a file in, an address to connect to.
    if let Ok(path) = std::env::var("ESCAPE_READ") {
        probes.push(("read_named", probe(fs::read(&path).map(|b| b.len()))));
        // Made readable by all, by its path; then its mode as the file system has it.
        #[cfg(unix)]
        probes.push((
            "chmod_named",
            probe(fs::metadata(&path).and_then(|m| {
                let readable = m.permissions().mode() | 0o004;
                fs::set_permissions(&path, fs::Permissions::from_mode(readable))?;
                Ok(format!(
                    "{:o}",
                    fs::metadata(&path)?.permissions().mode() & 0o777
                ))
            })),
        ));
    }
    if let Ok(dir) = std::env::var("ESCAPE_WRITE") {
        let created = Path::new(&dir).join("escape-probe.txt");
        probes.push((
            "write_named",
            probe(fs::write(&created, b"escape").map(|()| {
                let _ = fs::remove_file(&created);
                "created"
            })),
        ));
    }
    if let Ok(address) = std::env::var("ESCAPE_CONNECT") {
        probes.push((
            "connect_named",
            probe(
                address
                    .parse::<SocketAddr>()
                    .map_err(io::Error::other)
                    .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)))
                    .map(|_| "connected"),
            ),
        ));
    }
    if let Ok(path) = std::env::var("ESCAPE_CONNECT_UNIX") {
        probes.push(("connect_unix_named", probe(connect_unix(&path))));
    }
    probes.push((
        "clock",
        probe(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .map_err(io::Error::other),
        ),
    ));

    let mut json = String::from("{\"args\":[");
    json.push_str(
        &args
            .iter()
            .map(|arg| quote(arg))
            .collect::<Vec<_>>()
            .join(","),
    );
    json.push_str(&format!("],\"env_count\":{}", std::env::vars_os().count()));
    for (name, value) in &probes {
        json.push_str(&format!(",{}:{}", quote(name), quote(value)));
    }
    json.push('}');
    println!("{}", hostile::verdict(0, &json));
}

/// Connect to the Unix socket at `path`.
fn connect_unix(path: &str) -> io::Result<&'static str> {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(path).map(|_| "connected")
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no Unix sockets in this runtime",
        ))
    }
}

/// Whether this process may signal its parent (the host), asked with signal 0, which checks
/// the permission and sends nothing: through the shell's `kill`.
fn signal_parent() -> String {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        match std::process::Command::new("/bin/sh")
            .args(["-c", &format!("kill -0 {parent}")])
            .output()
        {
            Ok(out) if out.status.success() => "ok:allowed".to_owned(),
            Ok(out) => format!(
                "err:{}",
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " ")
            ),
            Err(e) => format!("err:{e}"),
        }
    }
    #[cfg(not(unix))]
    {
        "err:no processes in this runtime".to_owned()
    }
}

/// The descriptors this process holds besides its standard streams (and the one that lists
/// them), as `<fd>=<what it is>` separated by commas: what it was given at `exec`.
#[cfg(target_os = "linux")]
fn inherited_fds() -> io::Result<String> {
    let mut held = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(fd) = name.parse::<u32>() else {
            continue;
        };
        let target = fs::read_link(entry.path())
            .map_or_else(|e| format!("({e})"), |target| target.display().to_string());
        // The listing's own descriptor, which is gone by now.
        if fd > 2 && !target.starts_with("(") && !target.ends_with("/fd") {
            held.push((fd, target));
        }
    }
    held.sort();
    Ok(held
        .iter()
        .map(|(fd, target)| format!("{fd}={target}"))
        .collect::<Vec<_>>()
        .join(","))
}

/// A probe of the Linux modules below: what it made or did, or why it could not.
#[cfg(target_os = "linux")]
type Probe = fn() -> io::Result<&'static str>;

/// A system call's result: the error it set when it returned a negative value.
#[cfg(target_os = "linux")]
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Making (and removing again) the kernel objects that are not files, what the native
/// sandbox's seccomp filter refuses unless `allow_ipc`; and watching a directory, which it
/// always refuses.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod kernel_ipc {
    use std::ffi::CString;
    use std::io;

    use super::{Probe, check};

    /// Each probe's name, and what it tries.
    pub const PROBES: [(&str, Probe); 6] = [
        ("sysv_shm", sysv_shm),
        ("sysv_msg", sysv_msg),
        ("sysv_sem", sysv_sem),
        ("posix_mq", posix_mq),
        ("memfd", memfd),
        ("keyring", keyring),
    ];

    fn sysv_shm() -> io::Result<&'static str> {
        // SAFETY: system calls on integers; IPC_RMID takes no buffer.
        unsafe {
            let id =
                check(libc::shmget(libc::IPC_PRIVATE, 65_536, libc::IPC_CREAT | 0o600).into())?;
            libc::shmctl(id as libc::c_int, libc::IPC_RMID, std::ptr::null_mut());
        }
        Ok("created")
    }

    fn sysv_msg() -> io::Result<&'static str> {
        // SAFETY: as above.
        unsafe {
            let id = check(libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600).into())?;
            libc::msgctl(id as libc::c_int, libc::IPC_RMID, std::ptr::null_mut());
        }
        Ok("created")
    }

    fn sysv_sem() -> io::Result<&'static str> {
        // SAFETY: as above; IPC_RMID ignores the semaphore number and takes no fourth argument.
        unsafe {
            let id = check(libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600).into())?;
            libc::semctl(id as libc::c_int, 0, libc::IPC_RMID);
        }
        Ok("created")
    }

    fn posix_mq() -> io::Result<&'static str> {
        let name = std::env::var("ESCAPE_MQ_NAME")
            .unwrap_or_else(|_| format!("/cordon-escape-{}", std::process::id()));
        let name = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name that outlives the calls; a null attribute pointer asks
        // for the defaults.
        unsafe {
            let mq = libc::mq_open(
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
                0o600 as libc::mode_t,
                std::ptr::null_mut::<libc::mq_attr>(),
            );
            let opened = check(mq.into());
            if opened.is_ok() {
                libc::mq_close(mq);
            }
            let removed = libc::mq_unlink(name.as_ptr()) == 0;
            match opened {
                Ok(_) => Ok("created"),
                Err(e) if removed => {
                    Err(io::Error::new(e.kind(), format!("made, not opened: {e}")))
                }
                Err(e) => Err(e),
            }
        }
    }

    fn memfd() -> io::Result<&'static str> {
        // SAFETY: a NUL-terminated name; the descriptor is closed at once.
        unsafe {
            let fd = check(libc::memfd_create(c"escape".as_ptr(), libc::MFD_CLOEXEC).into())?;
            libc::close(fd as libc::c_int);
        }
        Ok("created")
    }

    /// Watch `dir` for files created in it or renamed into it (inotify): what would show
    /// the names of the files it receives.
    pub fn watch(dir: &std::path::Path) -> io::Result<&'static str> {
        use std::os::unix::ffi::OsStrExt;
        let path = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated path that outlives the call; the descriptor is closed.
        unsafe {
            let fd = check(libc::inotify_init1(libc::IN_CLOEXEC).into())?;
            let watched = check(
                libc::inotify_add_watch(
                    fd as libc::c_int,
                    path.as_ptr(),
                    libc::IN_CREATE | libc::IN_MOVED_TO,
                )
                .into(),
            );
            libc::close(fd as libc::c_int);
            watched?;
        }
        Ok("watching")
    }

    fn keyring() -> io::Result<&'static str> {
        const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
        let payload = b"escape";
        // SAFETY: NUL-terminated type and description, a payload of the length given; the
        // key lives in the process keyring, which goes with the process.
        unsafe {
            check(libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"cordon-escape".as_ptr(),
                payload.as_ptr(),
                payload.len(),
                KEY_SPEC_PROCESS_KEYRING,
            ))?;
        }
        Ok("created")
    }
}

/// Changing a process's limits and scheduling, each to what it already is: what the native
/// sandbox's seccomp filter allows a plugin on itself only.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod scheduling {
    use std::io;

    use super::check;

    type Change = fn(libc::pid_t) -> io::Result<&'static str>;

    /// Each probe's names (on the parent, on itself) and what it does to a process id (0:
    /// itself).
    pub const PROBES: [((&str, &str), Change); 4] = [
        (("parent_rlimit", "own_rlimit"), rlimit),
        (("parent_nice", "own_nice"), nice),
        (("parent_affinity", "own_affinity"), affinity),
        (("parent_scheduler", "own_scheduler"), scheduler),
    ];

    fn rlimit(pid: libc::pid_t) -> io::Result<&'static str> {
        let mut limit = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` outlives both calls; the other pointer is null.
        unsafe {
            check(libc::prlimit64(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit).into())?;
            check(libc::prlimit64(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()).into())?;
        }
        Ok("set")
    }

    fn nice(pid: libc::pid_t) -> io::Result<&'static str> {
        // SAFETY: system calls on integers. The system call returns 20 - nice, never negative
        // (the C library's wrapper returns the nice value, -1 being both a value and an error).
        unsafe {
            let got = check(libc::syscall(
                libc::SYS_getpriority,
                libc::PRIO_PROCESS,
                pid,
            ))?;
            check(
                libc::setpriority(
                    libc::PRIO_PROCESS,
                    pid as libc::id_t,
                    20 - got as libc::c_int,
                )
                .into(),
            )?;
        }
        Ok("set")
    }

    fn affinity(pid: libc::pid_t) -> io::Result<&'static str> {
        // SAFETY: a zeroed CPU set is valid, and outlives both calls, which get its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            check(libc::sched_getaffinity(pid, size, &mut set).into())?;
            check(libc::sched_setaffinity(pid, size, &set).into())?;
        }
        Ok("set")
    }

    fn scheduler(pid: libc::pid_t) -> io::Result<&'static str> {
        // SAFETY: `param` outlives the calls that read and write it.
        unsafe {
            let policy = check(libc::sched_getscheduler(pid).into())?;
            let mut param = libc::sched_param { sched_priority: 0 };
            check(libc::sched_getparam(pid, &mut param).into())?;
            check(libc::sched_setscheduler(pid, policy as libc::c_int, &param).into())?;
        }
        Ok("set")
    }
}

/// Namespaces, and the kernel interfaces that the native sandbox's seccomp filter always
/// refuses; and what capabilities the probe holds.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod kernel_surface {
    use std::io;

    use super::{Probe, check};

    /// Each probe's name, and what it tries.
    pub const PROBES: [(&str, Probe); 8] = [
        ("user_namespace", user_namespace),
        ("clone_namespace", clone_namespace),
        ("clone3", clone3),
        ("setns", setns),
        ("io_uring", io_uring),
        ("userfaultfd", userfaultfd),
        ("perf_event", perf_event),
        ("bpf", bpf),
    ];

    /// Wait for the child `pid`, which exits with 0 or with the `errno` of what it tried.
    fn child_result(pid: libc::pid_t) -> io::Result<&'static str> {
        let mut status = 0;
        // SAFETY: `status` outlives the call.
        check(unsafe { libc::waitpid(pid, &mut status, 0) }.into())?;
        match libc::WEXITSTATUS(status) {
            0 => Ok("made"),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// `unshare(CLONE_NEWUSER)` in a forked child, which then exits: a user namespace of its
    /// own, with every capability in it.
    fn user_namespace() -> io::Result<&'static str> {
        // SAFETY: the child makes two system calls and exits without returning; this process
        // has one thread.
        let pid = check(unsafe { libc::fork() }.into())? as libc::pid_t;
        if pid == 0 {
            // SAFETY: in the child: a system call, and an exit that runs nothing of this
            // process's.
            unsafe {
                let made = libc::unshare(libc::CLONE_NEWUSER) == 0;
                libc::_exit(if made { 0 } else { *libc::__errno_location() });
            }
        }
        child_result(pid)
    }

    /// A child made in a user namespace of its own by `clone`, which exits at once.
    fn clone_namespace() -> io::Result<&'static str> {
        let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
        // SAFETY: with no new stack the child runs on a copy of this one, as after `fork`, and
        // exits without returning.
        let pid = check(unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) })?;
        if pid == 0 {
            // SAFETY: in the child: an exit that runs nothing of this process's.
            unsafe { libc::_exit(0) }
        }
        child_result(pid as libc::pid_t)
    }

    /// A child made by `clone3` (as the C library makes them when it may), which exits at once.
    fn clone3() -> io::Result<&'static str> {
        // `struct clone_args`: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let mut args = [0u64; 11];
        args[4] = libc::SIGCHLD as u64;
        // SAFETY: the arguments are read during the call; the child, on a copy of this stack,
        // exits without returning.
        let pid = check(unsafe {
            libc::syscall(
                libc::SYS_clone3,
                args.as_mut_ptr(),
                std::mem::size_of_val(&args),
            )
        })?;
        if pid == 0 {
            // SAFETY: in the child: an exit that runs nothing of this process's.
            unsafe { libc::_exit(0) }
        }
        child_result(pid as libc::pid_t)
    }

    /// Enter its own UTS namespace again: allowed with `CAP_SYS_ADMIN`.
    fn setns() -> io::Result<&'static str> {
        let ns = std::fs::File::open("/proc/self/ns/uts")?;
        use std::os::fd::AsRawFd;
        // SAFETY: a descriptor that outlives the call.
        check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUTS) }.into())?;
        Ok("entered")
    }

    fn close(fd: libc::c_long) {
        // SAFETY: a descriptor this process just got and no one else holds.
        unsafe { libc::close(fd as libc::c_int) };
    }

    fn io_uring() -> io::Result<&'static str> {
        // `struct io_uring_params`, zeroed: the defaults.
        let mut params = [0u8; 120];
        // SAFETY: the kernel writes the parameters it chose into `params`, which outlives the
        // call.
        close(check(unsafe {
            libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr())
        })?);
        Ok("made")
    }

    fn userfaultfd() -> io::Result<&'static str> {
        const UFFD_USER_MODE_ONLY: libc::c_long = 1;
        // SAFETY: flags only.
        close(check(unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC as libc::c_long | UFFD_USER_MODE_ONLY,
            )
        })?);
        Ok("made")
    }

    fn perf_event() -> io::Result<&'static str> {
        // `struct perf_event_attr` as its first version (64 bytes): a software counter of this
        // process's time, disabled, user space only.
        let mut attr = [0u64; 8];
        attr[0] = 1 | (64 << 32); // type PERF_TYPE_SOFTWARE, size
        attr[1] = 1; // PERF_COUNT_SW_TASK_CLOCK
        attr[5] = 1 | (1 << 5) | (1 << 6); // disabled, exclude_kernel, exclude_hv
        // SAFETY: the attributes are read during the call.
        close(check(unsafe {
            libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0)
        })?);
        Ok("made")
    }

    fn bpf() -> io::Result<&'static str> {
        // `union bpf_attr` for BPF_MAP_CREATE: an array of one 4-byte value.
        let mut attr = [0u32; 32];
        attr[0] = 2; // BPF_MAP_TYPE_ARRAY
        attr[1] = 4; // key size
        attr[2] = 4; // value size
        attr[3] = 1; // entries
        // SAFETY: the attributes are read during the call.
        close(check(unsafe {
            libc::syscall(
                libc::SYS_bpf,
                0,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        })?);
        Ok("made")
    }

    /// This process's effective, permitted and bounding capability sets, as hex.
    pub fn capabilities() -> io::Result<String> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        let set = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map_or("?", str::trim)
        };
        Ok(format!(
            "effective {} permitted {} bounding {}",
            set("CapEff:"),
            set("CapPrm:"),
            set("CapBnd:")
        ))
    }
}
