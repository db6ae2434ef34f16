//! The seccomp filter of a sandboxed native plugin: the system calls Landlock does not cover
//! that the plugin may not make (see `landlock.rs` for the rest of the sandbox). They fail with
//! `EACCES`:
//! - without `allow_network`, `socket` whatever the family (IP, Unix, netlink, vsock, raw
//!   packets...), or every family but Unix with `allow_unix_sockets`, and `io_uring_setup`
//!   (io_uring's own socket operations bypass seccomp). `socketpair`, which connects a process
//!   only to itself and its children, is left alone;
//! - without `allow_ipc`, those of System V IPC, POSIX message queues, memory files and the
//!   kernel's keyrings ([`IPC_CALLS`]): objects that outlive the plugin, that other plugins
//!   reach, or whose memory `max_memory_bytes` does not count. Pipes are left alone; POSIX
//!   shared memory is files in `/dev/shm`, which Landlock refuses;
//! - on x86-64, every call of the x32 ABI (numbers with bit 30 set), which no 64-bit program
//!   makes and which would otherwise be a second name for each refused call.
//!
//! The filter is for the host's architecture: a process of another one (a 32-bit program) is
//! killed (`SIGSYS`) at its first system call, so a 32-bit plugin program is refused at load
//! unless it has both `allow_network` and `allow_ipc`, which leave no filter to apply.
//!
//! **Why the program is built here.** The kernel prepares a cache when a filter is applied, in
//! each plugin's child before `exec`: it runs the filter once for every system call number, to
//! find those it always allows. seccompiler's programs test the numbers one after the other, so
//! that every number not refused runs the whole list: for the 25 calls above, twice (x32), a
//! 255-instruction program that took about 300 µs to apply, against 60 µs for this one, which
//! tests ranges of numbers in order and stops at the first above the number (25 instructions).
//! seccompiler still applies it, and its own program is what the tests hold this one to.

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
// architecture, and the low 32 bits of its first argument (on a little-endian host).
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;
const ARG0_LOW_AT: u32 = 16;
#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp filter reads the low half of an argument at its little-endian place");

// The classic BPF instructions the program uses (`linux/filter.h`).
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const REFUSE: u32 = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// The seccomp filter of a sandboxed plugin (see the module documentation), or `None` when its
/// configuration allows all that the filter refuses (`allow_network` and `allow_ipc`). Built
/// once for each combination of what it allows.
pub(super) fn seccomp_filter(
    sandbox: &NativeSandbox,
) -> Result<Option<&'static BpfProgram>, String> {
    static FILTERS: [OnceLock<BpfProgram>; 6] = [const { OnceLock::new() }; 6];
    let sockets = if sandbox.network {
        Sockets::All
    } else if sandbox.unix_sockets {
        Sockets::Unix
    } else {
        Sockets::None
    };
    if sockets == Sockets::All && sandbox.ipc {
        return Ok(None);
    }
    let Some(arch) = NATIVE_ARCH else {
        return Err(format!(
            "Cordon's seccomp filter is not written for this architecture ({}); run the \
             plugin with allow_network = true and allow_ipc = true, or sandbox = false",
            std::env::consts::ARCH
        ));
    };
    let cell = &FILTERS[sockets as usize * 2 + usize::from(sandbox.ipc)];
    Ok(Some(cell.get_or_init(|| build(arch, sockets, sandbox.ipc))))
}

/// The refused calls, as ranges of consecutive numbers in ascending order; the `socket` call
/// is a range of its own, since with Unix sockets allowed it is refused only for other
/// families.
fn refused_ranges(sockets: Sockets, ipc: bool) -> Vec<(u32, u32)> {
    let mut calls: Vec<u32> = Vec::new();
    if sockets != Sockets::All {
        calls.extend([libc::SYS_socket, libc::SYS_io_uring_setup].map(number));
    }
    if !ipc {
        calls.extend(IPC_CALLS.map(number));
    }
    calls.sort_unstable();
    calls.dedup();
    let socket = number(libc::SYS_socket);
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for call in calls {
        match ranges.last_mut() {
            Some((_, hi)) if *hi + 1 == call && call != socket && *hi != socket => *hi = call,
            _ => ranges.push((call, call)),
        }
    }
    ranges
}

fn number(call: libc::c_long) -> u32 {
    u32::try_from(call).expect("system call numbers are small")
}

/// The program: check the architecture, refuse x32 calls (x86-64), then for each range in
/// ascending order, go on to the next when the number is above it, refuse when it is in it,
/// and allow when it is below it (and so above the one before).
fn build(arch: u32, sockets: Sockets, ipc: bool) -> BpfProgram {
    let ranges = refused_ranges(sockets, ipc);
    let socket = number(libc::SYS_socket);
    let unix_only = sockets == Sockets::Unix;

    let mut head = vec![
        statement(LD_W_ABS, ARCH_AT),
        // Jumps are patched below, once the tail's place is known.
        jump(JEQ_K, arch, 0, 0),
        statement(LD_W_ABS, NR_AT),
    ];
    #[cfg(target_arch = "x86_64")]
    head.push(jump(JGE_K, X32_BIT, 0, 0));
    let first_range = head.len();
    let tail = first_range + 2 * ranges.len();
    // The tail: the Unix sockets check when there is one, then the three answers.
    let socket_check = tail;
    let allow = tail + if unix_only { 2 } else { 0 };
    let (refuse, kill) = (allow + 1, allow + 2);

    let mut program = head;
    // `program[at]` jumps to `to` when its test holds (`jt`) or not (`jf`): BPF jumps count
    // the instructions skipped, forward only, at most 255.
    let offset = |at: usize, to: usize| -> u8 {
        u8::try_from(to - at - 1).expect("a short program: every jump fits in a byte")
    };
    program[1].jf = offset(1, kill);
    #[cfg(target_arch = "x86_64")]
    {
        program[3].jt = offset(3, refuse);
    }
    for (i, &(lo, hi)) in ranges.iter().enumerate() {
        let above = first_range + 2 * i;
        let next = if i + 1 < ranges.len() {
            above + 2
        } else {
            allow
        };
        program.push(jump(JGT_K, hi, offset(above, next), 0));
        let within = if unix_only && lo == socket {
            socket_check
        } else {
            refuse
        };
        program.push(jump(
            JGE_K,
            lo,
            offset(above + 1, within),
            offset(above + 1, allow),
        ));
    }
    if unix_only {
        program.push(statement(LD_W_ABS, ARG0_LOW_AT));
        let at = program.len();
        program.push(jump(
            JEQ_K,
            libc::AF_UNIX as u32,
            offset(at, allow),
            offset(at, refuse),
        ));
    }
    program.push(statement(RET_K, ALLOW));
    program.push(statement(RET_K, REFUSE));
    program.push(statement(RET_K, KILL));
    debug_assert_eq!(program.len(), kill + 1);
    program
}

fn statement(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
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
    fn run(program: &[sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let word = |at: u32| {
            let at = at as usize;
            u32::from_le_bytes(data[at..at + 4].try_into().expect("inside seccomp_data"))
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            let test = |holds: bool| usize::from(if holds { i.jt } else { i.jf });
            match i.code {
                LD_W_ABS => acc = word(i.k),
                0x54 => acc &= i.k,         // ALU AND K
                0x05 => pc += i.k as usize, // JA
                JEQ_K => pc += test(acc == i.k),
                JGT_K => pc += test(acc > i.k),
                JGE_K => pc += test(acc >= i.k),
                0x45 => pc += test(acc & i.k != 0), // JSET K
                RET_K => return i.k,
                code => panic!("instruction {code:#x} at {}", pc - 1),
            }
        }
    }

    /// The same filter as seccompiler builds it from rules: the reference. It names each x32
    /// number of a refused call, where [`build`] refuses every x32 call.
    fn reference(sockets: Sockets, ipc: bool) -> BpfProgram {
        let socket = || -> Vec<SeccompRule> {
            if sockets != Sockets::Unix {
                return Vec::new();
            }
            let other_family = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_UNIX as u64,
            )
            .unwrap();
            vec![SeccompRule::new(vec![other_family]).unwrap()]
        };
        let mut refused: Vec<(i64, Vec<SeccompRule>)> = Vec::new();
        if sockets != Sockets::All {
            refused.push((libc::SYS_socket, socket()));
            refused.push((libc::SYS_io_uring_setup, Vec::new()));
        }
        if !ipc {
            refused.extend(IPC_CALLS.iter().map(|&call| (call, Vec::new())));
        }
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        for (call, chain) in refused {
            #[cfg(target_arch = "x86_64")]
            rules.insert(i64::from(X32_BIT) | call, chain.clone());
            rules.insert(call, chain);
        }
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EACCES as u32),
            arch,
        )
        .unwrap();
        BpfProgram::try_from(filter).unwrap()
    }

    const COMBINATIONS: [(Sockets, bool); 5] = [
        (Sockets::None, false),
        (Sockets::None, true),
        (Sockets::Unix, false),
        (Sockets::Unix, true),
        (Sockets::All, false),
    ];

    #[test]
    fn the_filter_answers_every_call_as_seccompiler_s_own_program_does() {
        let families = [
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::AF_INET6 as u64,
            libc::AF_NETLINK as u64,
            libc::AF_VSOCK as u64,
            libc::AF_PACKET as u64,
            // The family is an int: the upper half of the register does not count.
            (1 << 32) | libc::AF_UNIX as u64,
            (1 << 32) | libc::AF_INET as u64,
        ];
        for (sockets, ipc) in COMBINATIONS {
            let ours = build(ARCH, sockets, ipc);
            let theirs = reference(sockets, ipc);
            let why = format!("{sockets:?}, ipc {ipc}");
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
                for &arg0 in &families {
                    for arch in [ARCH, 0x4000_0003 /* i386 */, 0] {
                        assert_eq!(
                            run(&ours, nr, arch, arg0),
                            run(&theirs, nr, arch, arg0),
                            "{why}: call {nr}, arch {arch:#x}, first argument {arg0:#x}"
                        );
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            for nr in (0..1024).map(|nr| X32_BIT | nr) {
                assert_eq!(run(&ours, nr, ARCH, 0), REFUSE, "{why}: every x32 call");
                if run(&theirs, nr, ARCH, 0) == REFUSE {
                    assert_eq!(run(&ours, nr, ARCH, 1), REFUSE, "{why}");
                }
            }
        }
    }

    #[test]
    fn each_setting_refuses_what_it_should() {
        let answer = |sockets, ipc, call: libc::c_long, family: i32| {
            run(
                &build(ARCH, sockets, ipc),
                number(call),
                ARCH,
                family as u64,
            )
        };
        let (unix, inet) = (libc::AF_UNIX, libc::AF_INET);
        for ipc in [false, true] {
            assert_eq!(answer(Sockets::None, ipc, libc::SYS_socket, unix), REFUSE);
            assert_eq!(answer(Sockets::Unix, ipc, libc::SYS_socket, unix), ALLOW);
            assert_eq!(answer(Sockets::Unix, ipc, libc::SYS_socket, inet), REFUSE);
            assert_eq!(
                answer(Sockets::Unix, ipc, libc::SYS_io_uring_setup, 0),
                REFUSE
            );
            assert_eq!(
                answer(Sockets::None, ipc, libc::SYS_socketpair, unix),
                ALLOW
            );
        }
        assert_eq!(answer(Sockets::All, false, libc::SYS_socket, inet), ALLOW);
        for call in IPC_CALLS {
            assert_eq!(answer(Sockets::All, false, call, 0), REFUSE, "{call}");
            assert_eq!(answer(Sockets::None, true, call, 0), ALLOW, "{call}");
        }
        for call in [
            libc::SYS_read,
            libc::SYS_openat,
            libc::SYS_pipe2,
            libc::SYS_exit_group,
        ] {
            assert_eq!(answer(Sockets::None, false, call, 0), ALLOW, "{call}");
        }
    }

    #[test]
    fn each_combination_is_built_once_and_none_is_left_with_everything_allowed() {
        let filter = |network: bool, unix_sockets: bool, ipc: bool| {
            seccomp_filter(&NativeSandbox {
                network,
                unix_sockets,
                ipc,
                ..NativeSandbox::default()
            })
            .unwrap()
        };
        let none = filter(false, false, false).expect("the default sandbox has a filter");
        let all = [
            none,
            filter(false, true, false).unwrap(),
            filter(true, true, false).unwrap(),
            filter(false, false, true).unwrap(),
            filter(false, true, true).unwrap(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b, "each combination is a filter of its own");
            }
        }
        assert!(
            filter(true, true, true).is_none(),
            "nothing left to refuse with the network and kernel IPC allowed"
        );
        assert!(
            std::ptr::eq(none, filter(false, false, false).unwrap()),
            "built once"
        );
    }
}
