//! The seccomp filter of a sandboxed native plugin: the system calls Landlock does not cover
//! that the plugin may not make (see `landlock.rs` for the rest of the sandbox). They fail with
//! `EACCES`:
//! - whatever its configuration, those that change another process's limits or scheduling
//!   ([`OTHER_PROCESS_CALLS`]): `prlimit64` with new limits, `setpriority` and `ioprio_set`,
//!   the `sched_set*` calls, on any process but the caller (process id 0), its own process group
//!   for the priorities. The kernel allows them on every process of the same user, Cordon's
//!   included, and Landlock is not asked;
//! - whatever its configuration, those that make or enter namespaces ([`NAMESPACE_CALLS`]:
//!   `clone` and `unshare` with a `CLONE_NEW*` flag, `setns`; `clone3`, whose flags a filter
//!   cannot read, answers `ENOSYS` and the C library uses `clone`): in a user namespace of its
//!   own a process holds every capability, and reaches kernel code an unprivileged process
//!   otherwise cannot;
//! - whatever its configuration, the kernel interfaces no scanner needs that exploits of the
//!   kernel are made of ([`KERNEL_SURFACE_CALLS`]): `io_uring` (whose operations, its own
//!   `socket` and `setxattr` among them, seccomp never sees), `userfaultfd`,
//!   `perf_event_open`, `bpf`;
//! - on a kernel whose Landlock does not refuse signals (before Linux 6.12), those aimed at
//!   Cordon ([`signal_calls`]): `kill` of its process, its group or every process, the other
//!   signal calls on its process id; `pidfd_open` and `pidfd_send_signal` answer `ENOSYS`;
//! - whatever its configuration, those that watch files and directories ([`WATCH_CALLS`]:
//!   `inotify_add_watch`, `fanotify_init`, `fanotify_mark`), which Landlock does not cover:
//!   watching a scan slot's directory shows the name of each file Cordon scans there;
//! - whatever its configuration, those that change a file's extended attributes by its path
//!   ([`PATH_XATTR_CALLS`]: `setxattr`...), which Landlock does not cover. A change of mode
//!   or owner by path ([`PATH_MODE_OWNER_CALLS`]: `chmod`, `fchmodat`, `chown`...), by which a
//!   plugin could make Cordon's database readable by every user or unusable to Cordon, is not
//!   made and answers success, for the archive tools that restore modes and owners. Through
//!   a descriptor of a file it opened (`fchmod`, `fchown`, `fsetxattr`), which Landlock
//!   checked, each change is made;
//! - without `allow_network`, `socket` whatever the family (IP, Unix, netlink, vsock, raw
//!   packets...), or every family but Unix with `allow_unix_sockets`. `socketpair`, which
//!   connects a process only to itself and its children, is left alone;
//! - without `allow_ipc`, those of System V IPC, POSIX message queues, memory files and the
//!   kernel's keyrings ([`IPC_CALLS`]): objects that outlive the plugin, that other plugins
//!   reach, or whose memory `max_memory_bytes` does not count. Pipes are left alone; POSIX
//!   shared memory is files in `/dev/shm`, which Landlock refuses;
//! - on x86-64, every call of the x32 ABI (numbers with bit 30 set), which no 64-bit program
//!   makes and which would otherwise be a second name for each refused call.
//!
//! The filter is for the host's architecture: a process of another one (a 32-bit program) is
//! killed (`SIGSYS`) at its first system call, so a 32-bit plugin program runs only with
//! `sandbox = false`.
//!
//! **Why the program is built here.** The kernel prepares a cache when a filter is applied, in
//! each plugin's child before `exec`: it runs the filter once for every system call number, to
//! find those it always allows. seccompiler's programs test the numbers one after the other, so
//! that every number not refused runs the whole list: for 25 of the calls above, twice (x32), a
//! 255-instruction program that took about 300 µs to apply, against 60 µs for one that tests
//! ranges of numbers in order and stops at the first above the number (25 instructions). This
//! one finds the number among the ranges by a binary search: at most 20 instructions for any
//! call, however many are refused. seccompiler still applies it, and its own program is what
//! the tests hold this one to.

use std::sync::OnceLock;

use seccompiler::{BpfProgram, sock_filter};

use crate::plugin::NativeSandbox;

/// Which sockets a sandboxed plugin may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sockets {
    /// None: the default.
    None,
    /// Unix-domain sockets only (`allow_unix_sockets`).
    Unix,
    /// Every family (`allow_network`).
    All,
}

/// The system calls that make or reach kernel objects that Landlock does not cover, refused
/// unless `allow_ipc`: System V shared memory, semaphores and message queues (objects that
/// outlive the plugin, which other programs of Cordon's user reach by a small integer id),
/// POSIX message queues (Landlock refuses opening one, not making it: a plugin could leave
/// queues behind, each counted against the queue quota of Cordon's user), memory files (whose
/// pages no rlimit counts) and the kernel's keyrings (a session keyring is inherited from
/// Cordon, with whatever keys it holds).
const IPC_CALLS: [libc::c_long; 23] = [
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmdt,
    libc::SYS_shmctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_semctl,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_mq_open,
    libc::SYS_mq_unlink,
    libc::SYS_mq_timedsend,
    libc::SYS_mq_timedreceive,
    libc::SYS_mq_notify,
    libc::SYS_mq_getsetattr,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
];

/// `AUDIT_ARCH_*` of the host (what `seccomp_data.arch` holds for a call of its own ABI), on
/// the architectures the filter is written for.
const NATIVE_ARCH: Option<u32> = if cfg!(target_arch = "x86_64") {
    Some(62 | 0xC000_0000)
} else if cfg!(target_arch = "aarch64") {
    Some(183 | 0xC000_0000)
} else if cfg!(target_arch = "riscv64") {
    Some(243 | 0xC000_0000)
} else {
    None
};

/// The bit that marks a call of the x32 ABI on x86-64.
#[cfg(target_arch = "x86_64")]
const X32_BIT: u32 = 0x4000_0000;

// Where `struct seccomp_data` keeps what the filter reads: the call's number, its
// architecture, and its arguments (each 64 bits; on a little-endian host the low half first).
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}
const fn arg_high(i: u32) -> u32 {
    20 + 8 * i
}
#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp filter reads the halves of an argument at their little-endian places");

// The classic BPF instructions the program uses (`linux/filter.h`).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
/// Skip the call and answer 0: success.
const PRETEND: u32 = libc::SECCOMP_RET_ERRNO;
/// Answer that the kernel does not have the call.
const NO_SYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The calls that change another process's limits or scheduling, which a plugin may make only
/// on itself (see [`Check`]), whatever its configuration: none of them asks Landlock, and each
/// is allowed on any process of the same user, Cordon's own included. A confined plugin could
/// otherwise set Cordon's open files limit to a handful, or its scheduling to `SCHED_IDLE`,
/// for as long as Cordon runs.
const OTHER_PROCESS_CALLS: [(libc::c_long, Check); 7] = [
    (libc::SYS_prlimit64, Check::OtherLimits),
    (libc::SYS_setpriority, Check::OthersPriority { user: 2 }), // PRIO_USER
    (libc::SYS_ioprio_set, Check::OthersPriority { user: 3 }),  // IOPRIO_WHO_USER
    (libc::SYS_sched_setaffinity, Check::OtherProcess),
    (libc::SYS_sched_setscheduler, Check::OtherProcess),
    (libc::SYS_sched_setparam, Check::OtherProcess),
    (libc::SYS_sched_setattr, Check::OtherProcess),
];

/// Namespace flags of `clone` (`CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`,
/// `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`).
const CLONE_NAMESPACES: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// Namespace flags of `unshare`: those of `clone` and `CLONE_NEWTIME` (the bits of the exit
/// signal in `clone`'s flags).
const UNSHARE_NAMESPACES: u32 = CLONE_NAMESPACES | 0x80;

/// The calls that make or enter namespaces, refused whatever the configuration: in a user
/// namespace of its own a process holds every capability, and with them it reaches kernel code
/// that is otherwise out of an unprivileged process's reach (a network namespace's packet
/// filter, file systems, the rest of what needs `CAP_SYS_ADMIN` or `CAP_NET_ADMIN`), the way
/// many of the kernel's privilege escalations start. No scanner of one file needs one.
/// `clone3` passes its flags in memory, which a seccomp filter cannot read: it answers
/// `ENOSYS`, as on a kernel before 5.3, and the C library makes its threads and processes with
/// `clone` instead. `clone` and `unshare` without namespace flags (threads, processes, a
/// private file table) are allowed.
const NAMESPACE_CALLS: [(libc::c_long, Check); 4] = [
    (
        libc::SYS_clone,
        Check::Flags {
            refused: CLONE_NAMESPACES,
        },
    ),
    (
        libc::SYS_unshare,
        Check::Flags {
            refused: UNSHARE_NAMESPACES,
        },
    ),
    (libc::SYS_setns, Check::Always),
    (libc::SYS_clone3, Check::NoSys),
];

/// The calls that reach parts of the kernel no scanner needs and that exploits of the kernel
/// are made of, refused whatever the configuration: `io_uring`, whose operations seccomp never
/// sees (its own `socket` and path `setxattr` would pass every rule of this filter),
/// `userfaultfd` (which holds a kernel thread in the middle of a copy from user memory, for as
/// long as its caller wants), `perf_event_open` and `bpf`.
const KERNEL_SURFACE_CALLS: [libc::c_long; 6] = [
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
    libc::SYS_bpf,
];

/// Cordon's own process, which a plugin may not signal: its process id and its process
/// group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Host {
    pid: u32,
    group: u32,
}

impl Host {
    fn this() -> Host {
        Host {
            pid: std::process::id(),
            group: rustix::process::getpgrp().as_raw_pid() as u32,
        }
    }
}

/// The calls that signal a process, on a kernel whose Landlock cannot refuse a plugin's signals
/// to processes outside its sandbox (ABI 5 and before, Linux 6.11 and before): those aimed at
/// Cordon are refused. Otherwise a plugin kills Cordon with `kill(getppid(), SIGKILL)`, and,
/// once it is restarted, again at its next scan. `kill` is also refused on Cordon's process
/// group and on every process (-1); `pidfd_open` and `pidfd_send_signal` answer `ENOSYS`, as on
/// a kernel before 5.3 (a descriptor of `/proc/<pid>` is a process's descriptor too, and
/// `/proc` is readable), and programs that use them fall back to `kill`. A plugin's own
/// processes it still signals. A thread of Cordon's other than its first, by the thread's id
/// (`kill` and `tkill` take one), it still could: a filter cannot tell Cordon's threads from a
/// plugin's processes (see the README).
fn signal_calls(host: Host) -> [(libc::c_long, Check); 7] {
    let at_host = Check::Equals {
        refused: [host.pid; 3],
    };
    [
        (
            libc::SYS_kill,
            Check::Equals {
                refused: [host.pid, host.group.wrapping_neg(), u32::MAX],
            },
        ),
        (libc::SYS_tkill, at_host),
        (libc::SYS_tgkill, at_host),
        (libc::SYS_rt_sigqueueinfo, at_host),
        (libc::SYS_rt_tgsigqueueinfo, at_host),
        (libc::SYS_pidfd_open, Check::NoSys),
        (libc::SYS_pidfd_send_signal, Check::NoSys),
    ]
}

/// The Landlock ABI from which Landlock refuses a plugin's signals to processes outside its
/// sandbox (Linux 6.12).
const LANDLOCK_SCOPES_SIGNALS: i32 = 6;

/// The calls that watch files and directories, refused whatever the configuration: Landlock
/// does not ask about a watch, and a plugin watching the directories of Cordon's scan slots
/// would see the name of every file other scans receive (a slot's file is renamed to each
/// file's name).
const WATCH_CALLS: [libc::c_long; 3] = [
    libc::SYS_inotify_add_watch,
    libc::SYS_fanotify_init,
    libc::SYS_fanotify_mark,
];

/// The calls that change a file's extended attributes by its path (or through an `O_PATH`
/// descriptor, which Landlock does not check either), refused whatever the configuration:
/// Landlock does not cover them. The same changes through a descriptor of a file the plugin
/// opened (`fsetxattr`) are left alone: Landlock checked that opening.
const PATH_XATTR_CALLS: &[libc::c_long] = &[
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    SETXATTRAT,
    REMOVEXATTRAT,
];

/// The calls that change a file's mode or owner by its path (or through an `O_PATH`
/// descriptor), which Landlock does not cover: a plugin could make Cordon's database and data
/// directory readable by every user of the machine (or by a group Cordon's user is in), or
/// unusable to Cordon (mode 000). They are not made, and answer success, whatever the
/// configuration: archive tools restore the modes (and, run by root, the owners) of what they
/// extract this way, and fail when that fails (`unzip`, `tar`), while a mode the plugin cannot
/// set on its own files costs it nothing but an executable bit. Through a descriptor of a
/// file it opened (`fchmod`, `fchown`), the change is made.
const PATH_MODE_OWNER_CALLS: &[libc::c_long] = &[
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    libc::SYS_fchmodat,
    FCHMODAT2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    libc::SYS_fchownat,
];

// Calls newer than the C library's list; the same number on every architecture.
const FCHMODAT2: libc::c_long = 452;
const SETXATTRAT: libc::c_long = 463;
const REMOVEXATTRAT: libc::c_long = 466;

/// What the filter does with a call: refuse it, skip it answering success, or refuse it when
/// its arguments say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Always.
    Always,
    /// Never made, always answered with success ([`PRETEND`]).
    Pretend,
    /// Always, as a call the kernel does not have ([`NO_SYS`]).
    NoSys,
    /// When its first argument has any of these flags.
    Flags { refused: u32 },
    /// When its first argument (an `int`) is one of these.
    Equals { refused: [u32; 3] },
    /// `socket` of any family but Unix.
    NotUnix,
    /// On another process: its first argument, a process id, is not 0 (the caller).
    OtherProcess,
    /// `prlimit64` setting another process's limits: a process id that is not 0, and new
    /// limits (reading them is allowed).
    OtherLimits,
    /// `setpriority` or `ioprio_set` on the processes of a user (`which` is `user`), or on
    /// another process or group (`who` is not 0).
    OthersPriority { user: u32 },
}

/// The seccomp filter of a sandboxed plugin (see the module documentation), built once for
/// each combination of what its configuration allows. On a kernel whose Landlock does not
/// refuse signals, it also refuses those aimed at Cordon ([`signal_calls`]).
pub(super) fn seccomp_filter(sandbox: &NativeSandbox) -> Result<&'static BpfProgram, String> {
    static FILTERS: [OnceLock<BpfProgram>; 6] = [const { OnceLock::new() }; 6];
    let sockets = if sandbox.network {
        Sockets::All
    } else if sandbox.unix_sockets {
        Sockets::Unix
    } else {
        Sockets::None
    };
    let Some(arch) = NATIVE_ARCH else {
        return Err(format!(
            "Cordon's seccomp filter is not written for this architecture ({}); run the \
             plugin with sandbox = false",
            std::env::consts::ARCH
        ));
    };
    let cell = &FILTERS[sockets as usize * 2 + usize::from(sandbox.ipc)];
    Ok(cell.get_or_init(|| {
        let guard = (super::landlock::landlock_abi() < LANDLOCK_SCOPES_SIGNALS).then(Host::this);
        build(arch, sockets, sandbox.ipc, guard)
    }))
}

/// The refused calls and when, by number; `guard`: the signals aimed at this host too.
fn refused_calls(sockets: Sockets, ipc: bool, guard: Option<Host>) -> Vec<(u32, Check)> {
    let mut calls: Vec<(libc::c_long, Check)> = OTHER_PROCESS_CALLS.to_vec();
    if let Some(host) = guard {
        calls.extend(signal_calls(host));
    }
    calls.extend(NAMESPACE_CALLS);
    calls.extend(KERNEL_SURFACE_CALLS.map(|call| (call, Check::Always)));
    calls.extend(WATCH_CALLS.map(|call| (call, Check::Always)));
    calls.extend(PATH_XATTR_CALLS.iter().map(|&call| (call, Check::Always)));
    calls.extend(
        PATH_MODE_OWNER_CALLS
            .iter()
            .map(|&call| (call, Check::Pretend)),
    );
    match sockets {
        Sockets::None => calls.push((libc::SYS_socket, Check::Always)),
        Sockets::Unix => calls.push((libc::SYS_socket, Check::NotUnix)),
        Sockets::All => {}
    }
    if !ipc {
        calls.extend(IPC_CALLS.map(|call| (call, Check::Always)));
    }
    let mut calls: Vec<(u32, Check)> = calls
        .into_iter()
        .map(|(call, check)| (u32::try_from(call).expect("call numbers are small"), check))
        .collect();
    calls.sort_unstable_by_key(|&(call, _)| call);
    assert!(
        calls.windows(2).all(|pair| pair[0].0 != pair[1].0),
        "a system call in two of the filter's lists"
    );
    calls
}

/// Where a jump goes, before the program is laid out.
#[derive(Debug, Clone, Copy)]
enum To {
    Next,
    Range(usize),
    Check(usize),
    Allow,
    Refuse,
    Kill,
    Pretend,
    NoSys,
}

/// One instruction before the program is laid out: its code, its constant, where it goes when
/// its test holds and when not (statements go on to the next).
type Step = (u16, u32, To, To);

/// The program: check the architecture, refuse x32 calls (x86-64), then find the call's
/// number among the ranges of refused numbers by a binary search, and refuse it, or check its
/// arguments, when it is in one; allow it when it is in none. A search, not a list: the kernel
/// runs the filter for every call number when it is applied (see the module documentation), and
/// a number takes at most two tests per level of the search, however many calls are refused.
fn build(arch: u32, sockets: Sockets, ipc: bool, guard: Option<Host>) -> BpfProgram {
    // Consecutive numbers with the same answer make one range; a call with a check, one of its
    // own.
    let answers = [Check::Always, Check::Pretend, Check::NoSys];
    let mut ranges: Vec<(u32, u32, Check)> = Vec::new();
    for (call, check) in refused_calls(sockets, ipc, guard) {
        match ranges.last_mut() {
            Some((_, hi, last))
                if *hi + 1 == call && *last == check && answers.contains(&check) =>
            {
                *hi = call;
            }
            _ => ranges.push((call, call, check)),
        }
    }
    let mut checks: Vec<Check> = Vec::new();
    let within: Vec<To> = ranges
        .iter()
        .map(|&(_, _, check)| match check {
            Check::Always => To::Refuse,
            Check::Pretend => To::Pretend,
            Check::NoSys => To::NoSys,
            _ => {
                checks.push(check);
                To::Check(checks.len() - 1)
            }
        })
        .collect();

    let mut code: Vec<Step> = vec![
        (LD_W_ABS, ARCH_AT, To::Next, To::Next),
        (JEQ_K, arch, To::Next, To::Kill),
        (LD_W_ABS, NR_AT, To::Next, To::Next),
    ];
    #[cfg(target_arch = "x86_64")]
    code.push((JGE_K, X32_BIT, To::Refuse, To::Next));
    let mut range_at = vec![0; ranges.len()];
    search(&ranges, &within, 0..ranges.len(), &mut code, &mut range_at);
    let mut check_at = Vec::new();
    for check in &checks {
        check_at.push(code.len());
        let load = |at: u32| (LD_W_ABS, at, To::Next, To::Next);
        match *check {
            Check::Always | Check::Pretend | Check::NoSys => unreachable!("not a check"),
            Check::NotUnix => {
                code.push(load(arg_low(0)));
                code.push((JEQ_K, libc::AF_UNIX as u32, To::Allow, To::Refuse));
            }
            Check::Flags { refused } => {
                code.push(load(arg_low(0)));
                code.push((JSET_K, refused, To::Refuse, To::Allow));
            }
            Check::Equals { refused } => {
                code.push(load(arg_low(0)));
                for (i, value) in refused.into_iter().enumerate() {
                    let otherwise = if i + 1 < refused.len() {
                        To::Next
                    } else {
                        To::Allow
                    };
                    code.push((JEQ_K, value, To::Refuse, otherwise));
                }
            }
            Check::OtherProcess => {
                code.push(load(arg_low(0)));
                code.push((JEQ_K, 0, To::Allow, To::Refuse));
            }
            Check::OtherLimits => {
                code.push(load(arg_low(0)));
                code.push((JEQ_K, 0, To::Allow, To::Next));
                code.push(load(arg_low(2)));
                code.push((JEQ_K, 0, To::Next, To::Refuse));
                code.push(load(arg_high(2)));
                code.push((JEQ_K, 0, To::Allow, To::Refuse));
            }
            Check::OthersPriority { user } => {
                code.push(load(arg_low(1)));
                code.push((JEQ_K, 0, To::Next, To::Refuse));
                code.push(load(arg_low(0)));
                code.push((JEQ_K, user, To::Refuse, To::Allow));
            }
        }
    }
    let allow = code.len();
    for answer in [ALLOW, REFUSE, KILL, PRETEND, NO_SYS] {
        code.push((RET_K, answer, To::Next, To::Next));
    }

    // BPF jumps count the instructions skipped: forward only, at most 255.
    let offset = |at: usize, to: To| -> u8 {
        let target = match to {
            To::Next => at + 1,
            To::Range(i) => range_at[i],
            To::Check(i) => check_at[i],
            To::Allow => allow,
            To::Refuse => allow + 1,
            To::Kill => allow + 2,
            To::Pretend => allow + 3,
            To::NoSys => allow + 4,
        };
        u8::try_from(target - at - 1).expect("a short program: every jump is forward and fits")
    };
    code.iter()
        .enumerate()
        .map(|(at, &(code, k, jt, jf))| sock_filter {
            code,
            jt: offset(at, jt),
            jf: offset(at, jf),
            k,
        })
        .collect()
}

/// Lay out the search of `ranges[span]` (ascending, apart) at the end of `code`, and say where
/// it starts: the middle range's two tests (above it: search those after it; not below it:
/// `within` it), then the search of the ranges before it, then of those after it, so that every
/// jump is forward. A number in no range is allowed. Records where each range's tests are.
fn search(
    ranges: &[(u32, u32, Check)],
    within: &[To],
    span: std::ops::Range<usize>,
    code: &mut Vec<Step>,
    range_at: &mut [usize],
) -> To {
    if span.is_empty() {
        return To::Allow;
    }
    let middle = span.start + span.len() / 2;
    let (lo, hi, _) = ranges[middle];
    let at = code.len();
    range_at[middle] = at;
    code.push((JGT_K, hi, To::Next, To::Next));
    code.push((JGE_K, lo, within[middle], To::Next));
    let before = search(ranges, within, span.start..middle, code, range_at);
    let after = search(ranges, within, middle + 1..span.end, code, range_at);
    code[at].2 = after;
    code[at + 1].3 = before;
    To::Range(middle)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };

    use super::*;

    const ARCH: u32 = NATIVE_ARCH.expect("an architecture the filter is written for");

    /// What a filter answers for a call: the classic BPF of seccomp filters, run on a
    /// `seccomp_data` (the instructions seccompiler and [`build`] emit; any other fails the
    /// test).
    fn run(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 3]) -> u32 {
        run_counting(program, nr, arch, args).0
    }

    /// [`run`]'s answer, and how many instructions it ran.
    fn run_counting(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 3]) -> (u32, usize) {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let word = |at: u32| {
            let at = at as usize;
            u32::from_le_bytes(data[at..at + 4].try_into().expect("inside seccomp_data"))
        };
        let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0);
        loop {
            let i = &program[pc];
            pc += 1;
            steps += 1;
            let test = |holds: bool| usize::from(if holds { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => acc = word(i.k),
                0x54 => acc &= i.k,         // ALU AND K
                0x05 => pc += i.k as usize, // JA
                JEQ_K => pc += test(acc == i.k),
                JGT_K => pc += test(acc > i.k),
                JGE_K => pc += test(acc >= i.k),
                JSET_K => pc += test(acc & i.k != 0),
                RET_K => return (i.k, steps),
                code => panic!("instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    /// The same filter as seccompiler builds it from rules, the reference: its programs for the
    /// calls refused, for those pretended and for those answered as missing (seccompiler gives
    /// one answer per program). It names each x32 number of a call, where [`build`] refuses
    /// every x32 call.
    fn reference(sockets: Sockets, ipc: bool, guard: Option<Host>) -> [BpfProgram; 3] {
        use SeccompCmpArgLen::{Dword, Qword};
        use SeccompCmpOp::{Eq, MaskedEq, Ne};
        let rule = |conditions: Vec<(u8, SeccompCmpArgLen, SeccompCmpOp, u64)>| {
            SeccompRule::new(
                conditions
                    .into_iter()
                    .map(|(arg, len, op, value)| {
                        SeccompCondition::new(arg, len, op, value).unwrap()
                    })
                    .collect(),
            )
            .unwrap()
        };
        // Each call with the rules under which it is refused (any one of them); none: always.
        let mut refused: Vec<(i64, Vec<SeccompRule>)> = OTHER_PROCESS_CALLS
            .iter()
            .map(|&(call, check)| {
                let rules = match check {
                    Check::OtherProcess => vec![rule(vec![(0, Dword, Ne, 0)])],
                    Check::OtherLimits => vec![rule(vec![(0, Dword, Ne, 0), (2, Qword, Ne, 0)])],
                    Check::OthersPriority { user } => vec![
                        rule(vec![(1, Dword, Ne, 0)]),
                        rule(vec![(0, Dword, Eq, u64::from(user))]),
                    ],
                    Check::Always
                    | Check::Pretend
                    | Check::NoSys
                    | Check::NotUnix
                    | Check::Flags { .. }
                    | Check::Equals { .. } => unreachable!(),
                };
                (call, rules)
            })
            .collect();
        let mut missing = Vec::new();
        let signals = guard.map(signal_calls).into_iter().flatten();
        for (call, check) in NAMESPACE_CALLS.into_iter().chain(signals) {
            match check {
                Check::Always => refused.push((call, Vec::new())),
                Check::NoSys => missing.push((call, Vec::new())),
                // Any of the flags: a rule for each.
                Check::Flags { refused: flags } => refused.push((
                    call,
                    (0..32)
                        .map(|bit| 1u64 << bit)
                        .filter(|&flag| u64::from(flags) & flag != 0)
                        .map(|flag| rule(vec![(0, Dword, MaskedEq(flag), flag)]))
                        .collect(),
                )),
                // Any of the values: a rule for each.
                Check::Equals { refused: values } => refused.push((
                    call,
                    values
                        .iter()
                        .map(|&value| rule(vec![(0, Dword, Eq, u64::from(value))]))
                        .collect(),
                )),
                _ => unreachable!(),
            }
        }
        refused.extend(KERNEL_SURFACE_CALLS.iter().map(|&call| (call, Vec::new())));
        refused.extend(WATCH_CALLS.iter().map(|&call| (call, Vec::new())));
        refused.extend(PATH_XATTR_CALLS.iter().map(|&call| (call, Vec::new())));
        match sockets {
            Sockets::None => refused.push((libc::SYS_socket, Vec::new())),
            Sockets::Unix => refused.push((
                libc::SYS_socket,
                vec![rule(vec![(0, Dword, Ne, libc::AF_UNIX as u64)])],
            )),
            Sockets::All => {}
        }
        if !ipc {
            refused.extend(IPC_CALLS.iter().map(|&call| (call, Vec::new())));
        }
        let pretended = PATH_MODE_OWNER_CALLS
            .iter()
            .map(|&call| (call, Vec::new()))
            .collect();
        [
            seccompiler_program(refused, libc::EACCES as u32),
            seccompiler_program(pretended, 0),
            seccompiler_program(missing, libc::ENOSYS as u32),
        ]
    }

    /// seccompiler's program answering `errno` to the calls under their rules, x32 numbers
    /// included.
    fn seccompiler_program(calls: Vec<(i64, Vec<SeccompRule>)>, errno: u32) -> BpfProgram {
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (call, chain) in calls {
            #[cfg(target_arch = "x86_64")]
            rules.insert(i64::from(X32_BIT) | call, chain.clone());
            rules.insert(call, chain);
        }
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .unwrap();
        BpfProgram::try_from(filter).unwrap()
    }

    /// A host to guard against signals, for the tests: its process id and its group's.
    const HOST: Host = Host {
        pid: 4242,
        group: 4240,
    };

    const COMBINATIONS: [(Sockets, bool); 6] = [
        (Sockets::None, false),
        (Sockets::None, true),
        (Sockets::Unix, false),
        (Sockets::Unix, true),
        (Sockets::All, false),
        (Sockets::All, true),
    ];

    #[test]
    fn the_filter_answers_every_call_as_seccompiler_s_own_program_does() {
        // First arguments: socket families, process ids, `which` values, `clone` and `unshare`
        // flags (a process, a thread, a user namespace, a time namespace); the upper half of an
        // int argument does not count, that of a pointer does.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        let values: [u64; 17] = [
            0,
            1,
            2,
            3,
            libc::AF_UNIX as u64,
            libc::AF_INET6 as u64,
            libc::AF_NETLINK as u64,
            libc::SIGCHLD as u64,
            thread,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64,
            0x80,
            // The guarded host's process id, its group's (negative) and every process's.
            u64::from(HOST.pid),
            u64::from(HOST.group.wrapping_neg()),
            u64::from(u32::MAX),
            1 << 32,
            (1 << 32) | libc::AF_UNIX as u64,
            u64::MAX,
        ];
        let with_checks: Vec<u32> = OTHER_PROCESS_CALLS
            .iter()
            .map(|&(call, _)| call)
            .chain([libc::SYS_socket, libc::SYS_clone, libc::SYS_unshare])
            .chain(signal_calls(HOST).map(|(call, _)| call))
            .map(|call| call as u32)
            .collect();
        for ((sockets, ipc), guard) in COMBINATIONS
            .into_iter()
            .flat_map(|combination| [(combination, None), (combination, Some(HOST))])
        {
            let ours = build(ARCH, sockets, ipc, guard);
            let [theirs, pretended, missing] = reference(sockets, ipc, guard);
            // The programs' calls do not meet: a call pretended or missing in one is allowed by
            // the others.
            let theirs_answer = |nr, arch, args| match run(&pretended, nr, arch, args) {
                PRETEND => PRETEND,
                _ => match run(&missing, nr, arch, args) {
                    NO_SYS => NO_SYS,
                    _ => run(&theirs, nr, arch, args),
                },
            };
            let mut longest = 0;
            let why = format!("{sockets:?}, ipc {ipc}, guard {}", guard.is_some());
            // Short, and so quick to apply (see the module documentation): the default,
            // longest filter by a fifth of seccompiler's program or less.
            let shorter = if (sockets, ipc) == (Sockets::None, false) {
                5
            } else {
                1
            };
            assert!(
                ours.len() * shorter < theirs.len(),
                "{why}: {} instructions against {}",
                ours.len(),
                theirs.len()
            );
            for nr in 0..1024 {
                // Every argument combination for the calls with checks, the first argument's
                // values for the others.
                let args: Vec<[u64; 3]> = if with_checks.contains(&nr) {
                    let mut all = Vec::new();
                    for a in values {
                        for b in values {
                            for c in values {
                                all.push([a, b, c]);
                            }
                        }
                    }
                    all
                } else {
                    values.iter().map(|&a| [a, 0, 0]).collect()
                };
                for args in args {
                    for arch in [ARCH, 0x4000_0003 /* i386 */, 0] {
                        let (answer, steps) = run_counting(&ours, nr, arch, args);
                        assert_eq!(
                            answer,
                            theirs_answer(nr, arch, args),
                            "{why}: call {nr}, arch {arch:#x}, arguments {args:x?}"
                        );
                        longest = longest.max(steps);
                    }
                }
            }
            // A search: a few tests per call, where a list of the ranges would take two for
            // each range below the call's number (about 70 for the last ones).
            assert!(longest <= 20, "{why}: {longest} instructions for one call");
            eprintln!(
                "{why}: {} instructions, at most {longest} run for one call; seccompiler: {}",
                ours.len(),
                theirs.len()
            );
            #[cfg(target_arch = "x86_64")]
            for nr in (0..1024).map(|nr| X32_BIT | nr) {
                assert_eq!(
                    run(&ours, nr, ARCH, [0; 3]),
                    REFUSE,
                    "{why}: every x32 call"
                );
            }
        }
    }

    #[test]
    fn each_setting_refuses_what_it_should() {
        let answer = |sockets, ipc, call: libc::c_long, args: [u64; 3]| {
            run(&build(ARCH, sockets, ipc, None), call as u32, ARCH, args)
        };
        let (unix, inet) = (libc::AF_UNIX as u64, libc::AF_INET as u64);
        let sockets = [
            (Sockets::None, libc::SYS_socket, unix, REFUSE),
            (Sockets::Unix, libc::SYS_socket, unix, ALLOW),
            (Sockets::Unix, libc::SYS_socket, inet, REFUSE),
            (Sockets::None, libc::SYS_socketpair, unix, ALLOW),
            (Sockets::All, libc::SYS_socket, inet, ALLOW),
        ];
        for (setting, call, family, expected) in sockets {
            for ipc in [false, true] {
                assert_eq!(
                    answer(setting, ipc, call, [family, 0, 0]),
                    expected,
                    "{setting:?}, call {call}, family {family}"
                );
            }
        }
        // Signals aimed at the host only where Landlock does not refuse them (guarded).
        let guarded = |call: libc::c_long, target: u32| {
            let filter = build(ARCH, Sockets::None, false, Some(HOST));
            run(&filter, call as u32, ARCH, [u64::from(target), 9, 0])
        };
        for call in [
            libc::SYS_kill,
            libc::SYS_tkill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigqueueinfo,
            libc::SYS_rt_tgsigqueueinfo,
        ] {
            assert_eq!(guarded(call, HOST.pid), REFUSE, "{call}");
            assert_eq!(
                guarded(call, HOST.pid + 7),
                ALLOW,
                "{call}: another process"
            );
            assert_eq!(
                answer(Sockets::None, false, call, [u64::from(HOST.pid), 9, 0]),
                ALLOW
            );
        }
        assert_eq!(guarded(libc::SYS_kill, HOST.group.wrapping_neg()), REFUSE);
        assert_eq!(guarded(libc::SYS_kill, u32::MAX), REFUSE, "every process");
        assert_eq!(guarded(libc::SYS_kill, 0), ALLOW, "its own group");
        for call in [libc::SYS_pidfd_open, libc::SYS_pidfd_send_signal] {
            assert_eq!(guarded(call, HOST.pid + 7), NO_SYS, "{call}");
            assert_eq!(answer(Sockets::None, false, call, [0; 3]), ALLOW, "{call}");
        }
        for call in IPC_CALLS {
            assert_eq!(answer(Sockets::All, false, call, [0; 3]), REFUSE, "{call}");
            assert_eq!(answer(Sockets::None, true, call, [0; 3]), ALLOW, "{call}");
        }
        // Whatever the configuration: a process's own limits and scheduling, and no other's.
        let (cordon, limits) = (4242, 0x7ff0_0000_1000);
        for (sockets, ipc) in COMBINATIONS {
            let answer = |call, args| answer(sockets, ipc, call, args);
            assert_eq!(answer(libc::SYS_prlimit64, [0, 7, limits]), ALLOW);
            assert_eq!(answer(libc::SYS_prlimit64, [cordon, 7, 0]), ALLOW, "read");
            assert_eq!(answer(libc::SYS_prlimit64, [cordon, 7, limits]), REFUSE);
            assert_eq!(answer(libc::SYS_setpriority, [0, 0, 19]), ALLOW);
            assert_eq!(
                answer(libc::SYS_setpriority, [1, 0, 19]),
                ALLOW,
                "own group"
            );
            assert_eq!(answer(libc::SYS_setpriority, [0, cordon, 19]), REFUSE);
            assert_eq!(
                answer(libc::SYS_setpriority, [2, 0, 19]),
                REFUSE,
                "own user"
            );
            assert_eq!(answer(libc::SYS_ioprio_set, [1, 0, 0]), ALLOW);
            assert_eq!(answer(libc::SYS_ioprio_set, [1, cordon, 0]), REFUSE);
            assert_eq!(answer(libc::SYS_ioprio_set, [3, 0, 0]), REFUSE, "own user");
            for call in [
                libc::SYS_sched_setaffinity,
                libc::SYS_sched_setscheduler,
                libc::SYS_sched_setparam,
                libc::SYS_sched_setattr,
            ] {
                assert_eq!(answer(call, [0, 0, 0]), ALLOW, "{call}");
                assert_eq!(answer(call, [cordon, 0, 0]), REFUSE, "{call}");
            }
            for &call in WATCH_CALLS.iter().chain(PATH_XATTR_CALLS) {
                assert_eq!(answer(call, [0; 3]), REFUSE, "{call}");
            }
            for &call in PATH_MODE_OWNER_CALLS {
                assert_eq!(answer(call, [0; 3]), PRETEND, "{call}");
            }
            // No namespace, however it is asked for; processes and threads, and a file table
            // of its own.
            let (fork, thread) = (libc::SIGCHLD as u64, 0x3d0f00);
            for flag in [
                libc::CLONE_NEWUSER,
                libc::CLONE_NEWNET,
                libc::CLONE_NEWNS,
                libc::CLONE_NEWPID,
            ] {
                let flag = flag as u64;
                assert_eq!(answer(libc::SYS_clone, [flag | fork, 0, 0]), REFUSE);
                assert_eq!(answer(libc::SYS_unshare, [flag, 0, 0]), REFUSE);
            }
            assert_eq!(answer(libc::SYS_unshare, [0x80, 0, 0]), REFUSE, "time");
            assert_eq!(answer(libc::SYS_clone, [fork, 0, 0]), ALLOW);
            assert_eq!(answer(libc::SYS_clone, [thread, 0, 0]), ALLOW);
            let files = libc::CLONE_FILES as u64;
            assert_eq!(answer(libc::SYS_unshare, [files, 0, 0]), ALLOW);
            assert_eq!(answer(libc::SYS_setns, [3, 0, 0]), REFUSE);
            assert_eq!(answer(libc::SYS_clone3, [0; 3]), NO_SYS, "clone falls back");
            for call in KERNEL_SURFACE_CALLS {
                assert_eq!(answer(call, [0; 3]), REFUSE, "{call}");
            }
            for call in [
                libc::SYS_read,
                libc::SYS_openat,
                libc::SYS_pipe2,
                libc::SYS_exit_group,
                libc::SYS_inotify_init1,
                libc::SYS_fchmod,
                libc::SYS_fchown,
                libc::SYS_fsetxattr,
                libc::SYS_utimensat,
            ] {
                assert_eq!(answer(call, [0; 3]), ALLOW, "{call}");
            }
        }
    }

    #[test]
    fn the_guard_keeps_a_process_from_signalling_its_host_and_nothing_else() {
        // The filter alone, applied in a shell this process starts, whatever this kernel's
        // Landlock does: the host is this process, the shell's parent.
        let host = Host::this();
        let run_sh = |guard: Option<Host>, script: &str| -> (bool, String) {
            let filter = build(ARCH, Sockets::None, false, guard);
            let mut command = std::process::Command::new("/bin/sh");
            command.args(["-c", script]);
            // SAFETY: between `fork` and `exec` the closure makes the `prctl` and `seccomp`
            // system calls and allocates nothing (as `landlock.rs` does).
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(move || {
                    seccompiler::apply_filter(&filter).map_err(|e| match e {
                        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
                        _ => std::io::Error::from_raw_os_error(libc::EINVAL),
                    })
                });
            }
            let out = command.output().expect("/bin/sh runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let at_host = [
            "kill -s 0 $PPID".to_owned(),
            format!("kill -s 0 -- -{}", host.group),
            "kill -s 0 -- -1".to_owned(),
        ];
        for script in &at_host {
            let (ok, stderr) = run_sh(Some(host), script);
            assert!(!ok, "{script}: guarded");
            assert!(stderr.contains("ermission denied"), "{script}: {stderr}");
            let (ok, stderr) = run_sh(None, script);
            assert!(ok, "{script}: unguarded: {stderr}");
        }
        // Its own processes, it signals.
        let (ok, stderr) = run_sh(Some(host), "sleep 30 & kill $! && wait $!; test $? = 143");
        assert!(ok, "its own child: {stderr}");
    }

    #[test]
    fn each_combination_is_built_once() {
        let filter = |network: bool, unix_sockets: bool, ipc: bool| {
            seccomp_filter(&NativeSandbox {
                network,
                unix_sockets,
                ipc,
                ..NativeSandbox::default()
            })
            .unwrap()
        };
        let none = filter(false, false, false);
        let all = [
            none,
            filter(false, true, false),
            filter(true, true, false),
            filter(false, false, true),
            filter(false, true, true),
            filter(true, true, true),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b, "each combination is a filter of its own");
            }
        }
        assert!(
            std::ptr::eq(none, filter(false, false, false)),
            "built once"
        );
    }
}
