//! What a plugin can see and do, as the `escape` plugin observes it from inside: a wasm
//! plugin reads its one file and nothing else, cannot write it, cannot create files, cannot
//! reach the network, has no environment; a native plugin gets an empty environment, a fresh
//! working directory and the absolute sample path as its last argument, and in its Landlock
//! sandbox reads its file and the system's files, writes only its working directory, opens no
//! socket (TCP, UDP, a local daemon's) and cannot signal Cordon, unless its configuration
//! widens that; with `/proc` mounted `hidepid`, it sees no process outside its sandbox.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use cordon::contract;
use cordon::executor::{Failure, landlock_abi};
use cordon::plugin::{NativeSandbox, Role, RuntimeKind, RuntimeSpec};
use cordon::verdict::ResultCode;
use cordon_tests::artifacts::{NATIVE_HOSTILE_ESCAPE, WASM_HOSTILE_ESCAPE, WASM_P2_HOSTILE_ESCAPE};
use serde_json::{Value, json};

use crate::harness::{Rig, limits, process, wasm};

/// Run `escape` and return what it observed.
async fn observe(rig: &Rig, runtime: RuntimeKind, sample: &cordon::sample::Sample) -> Value {
    let spec = match runtime {
        RuntimeKind::Wasm => wasm(WASM_HOSTILE_ESCAPE),
        _ => process(NATIVE_HOSTILE_ESCAPE),
    };
    observe_with(rig, runtime, spec, sample).await
}

/// Run `escape` built as `spec` and return what it observed.
async fn observe_with(
    rig: &Rig,
    runtime: RuntimeKind,
    spec: RuntimeSpec,
    sample: &cordon::sample::Sample,
) -> Value {
    let plugin = rig.plugin("Escape", Role::Scanner, spec, limits(20_000));
    let outcome = rig.run(&plugin, sample, &json!({"data_id": "x"})).await;
    let v = contract::judge_scanner(runtime, &outcome);
    assert_eq!(
        v.code,
        ResultCode::CLEAN,
        "{runtime}: {v:?} {:?}",
        String::from_utf8_lossy(&outcome.stderr)
    );
    serde_json::from_str(&v.threat_found).expect("escape reports JSON in threat_found")
}

fn probes(report: &Value) -> BTreeMap<String, String> {
    report
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

#[tokio::test]
async fn a_wasm_plugin_sees_its_file_and_nothing_else() {
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "inv oice.pdf");
    let report = observe(&rig, RuntimeKind::Wasm, &sample).await;
    assert_sandboxed(&report, &sample);
}

#[tokio::test]
async fn a_wasm_component_sees_its_file_and_nothing_else() {
    // The same probe as a WASI p2 command component, which has wasi:sockets in its linker
    // and its own filesystem bindings: the same view.
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "inv oice.pdf");
    let report = observe_with(
        &rig,
        RuntimeKind::Wasm,
        wasm(WASM_P2_HOSTILE_ESCAPE),
        &sample,
    )
    .await;
    assert_sandboxed(&report, &sample);
}

/// What the `escape` probe must report from inside the wasm sandbox.
fn assert_sandboxed(report: &Value, sample: &cordon::sample::Sample) {
    let p = probes(report);
    let ok = |k: &str| p[k].starts_with("ok:");
    let denied = |k: &str| p[k].starts_with("err:");

    assert_eq!(
        report["args"],
        json!(["Escape", "/scan/inv_oice.pdf"]),
        "args are [name, guest path]"
    );
    assert_eq!(report["env_count"], json!(0), "no environment");
    assert_eq!(p["read_sample"], "ok:12", "it reads its file");
    assert_eq!(
        p["stdin"],
        format!("ok:{}", "{\"data_id\":\"x\"}\n".len()),
        "stdin is the JSON line"
    );
    assert_eq!(
        p["list_scan_dir"], "ok:inv_oice.pdf",
        "its directory holds its file alone"
    );
    for probe in [
        "write_sample",
        "create_file_in_scan_dir",
        "read_etc_passwd",
        "read_parent",
        "read_parent_etc_passwd",
        "list_parent",
        "list_root",
        "tcp_connect_127.0.0.1:1",
        "udp_socket",
        "spawn",
    ] {
        assert!(
            denied(probe),
            "{probe} should be denied inside the sandbox: {}",
            p[probe]
        );
    }
    assert!(ok("clock"), "a clock is available: {}", p["clock"]);
    // The sample is untouched.
    assert_eq!(std::fs::read(sample.path()).unwrap(), b"twelve bytes");
}

#[tokio::test]
async fn a_native_plugin_gets_no_environment_but_tmpdir_and_a_fresh_directory() {
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    let report = observe(&rig, RuntimeKind::Process, &sample).await;
    let p = probes(&report);
    let args = report["args"].as_array().unwrap();
    assert_eq!(
        args.last().unwrap(),
        &json!(sample.path().to_str().unwrap()),
        "absolute path last"
    );
    assert_eq!(report["env_count"], json!(1), "nothing but TMPDIR");
    assert_eq!(p["read_sample"], "ok:12");
    let cwd = p["cwd"].strip_prefix("ok:").unwrap();
    assert_eq!(
        p["tmpdir"].strip_prefix("ok:"),
        Some(cwd),
        "temporary files go to its working directory"
    );
    assert!(
        !sample.dir().starts_with(cwd),
        "working directory {cwd} is not the sample's"
    );
    assert!(
        !std::path::Path::new(cwd).exists(),
        "working directory {cwd} is removed afterwards"
    );
    // The sample cannot be written: its mode is 0444, and the sandbox (where the kernel has
    // Landlock) allows only reading it, which holds for root too.
    if landlock_abi() > 0 || !running_as_root() {
        assert!(
            p["write_sample"].starts_with("err:"),
            "{}",
            p["write_sample"]
        );
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// What the native `escape` probe sees with `sandbox`, asked to also read `secret`, write in
/// `outside` and connect to `listener`.
async fn observe_native(
    rig: &Rig,
    sample: &cordon::sample::Sample,
    sandbox: NativeSandbox,
    probes_env: &[(&str, String)],
) -> BTreeMap<String, String> {
    let spec = RuntimeSpec::Process {
        program: NATIVE_HOSTILE_ESCAPE.into(),
        args: Vec::new(),
        env: probes_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        sandbox,
    };
    probes(&observe_with(rig, RuntimeKind::Process, spec, sample).await)
}

/// The Landlock ABI, or `None` (and a note) when this kernel has none: then there is no
/// sandbox to observe.
fn landlock_or_skip() -> Option<i32> {
    match landlock_abi() {
        0 => {
            eprintln!("skipped: this kernel has no Landlock; native plugins run unconfined");
            None
        }
        abi => Some(abi),
    }
}

#[tokio::test]
async fn a_native_plugin_is_confined_to_its_file_the_system_and_its_working_directory() {
    let Some(abi) = landlock_or_skip() else {
        return;
    };
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    // Another file Cordon holds (as another scan's sample would be), a directory outside the
    // plugin's own, and a listening socket on loopback.
    let elsewhere = rig.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let secret = elsewhere.join("other-customer.doc");
    std::fs::write(&secret, b"secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // A local daemon's socket that Cordon's user may open, as Docker's or a bus's: what it
    // serves could run commands outside the sandbox.
    let run = rig.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let daemon = run.join("daemon.sock");
    let _daemon = std::os::unix::net::UnixListener::bind(&daemon).unwrap();
    // The name of the POSIX message queue the probe tries to make, to look for it afterwards.
    let mq_name = format!("/cordon-test-{}", std::process::id());
    let env = [
        ("ESCAPE_MQ_NAME", mq_name.clone()),
        ("ESCAPE_READ", secret.display().to_string()),
        ("ESCAPE_WRITE", elsewhere.display().to_string()),
        ("ESCAPE_CONNECT", listener.local_addr().unwrap().to_string()),
        ("ESCAPE_CONNECT_UNIX", daemon.display().to_string()),
    ];

    let p = observe_native(&rig, &sample, NativeSandbox::default(), &env).await;
    let ok = |k: &str| p[k].starts_with("ok:");
    let denied = |k: &str| p[k].starts_with("err:");
    assert_eq!(p["read_sample"], "ok:12", "it reads its file");
    assert!(ok("read_parent"), "by any path: {}", p["read_parent"]);
    assert!(
        ok("read_etc_passwd"),
        "and the system's: {}",
        p["read_etc_passwd"]
    );
    assert!(
        ok("spawn"),
        "and runs the system's programs: {}",
        p["spawn"]
    );
    for probe in [
        "write_sample",
        "create_file_in_scan_dir",
        "list_scan_dir",
        "list_parent",
        "list_root",
        "read_named",
        "write_named",
    ] {
        assert!(denied(probe), "{probe} should be denied: {}", p[probe]);
    }
    assert!(
        p["read_named"].contains("Permission denied"),
        "refused by the sandbox, not missing: {}",
        p["read_named"]
    );
    if abi >= 4 {
        assert!(denied("connect_named"), "no TCP: {}", p["connect_named"]);
    }
    // Landlock refuses it from ABI 6; before, the seccomp filter refuses signals aimed at
    // Cordon.
    assert!(
        denied("signal_parent"),
        "it cannot signal Cordon: {}",
        p["signal_parent"]
    );
    // UDP and Unix sockets with a path, which Landlock does not cover, are refused by the
    // seccomp filter.
    assert!(
        p["udp_socket"].contains("Permission denied"),
        "no UDP: {}",
        p["udp_socket"]
    );
    assert!(
        p["connect_unix_named"].contains("Permission denied"),
        "no local daemon: {}",
        p["connect_unix_named"]
    );
    // Nor kernel objects that are not files, which Landlock does not cover either: System V
    // IPC and POSIX message queues outlive the plugin, and memory files escape its memory
    // limit.
    let refused_ipc = |p: &BTreeMap<String, String>, why: &str| {
        for probe in KERNEL_IPC {
            assert!(
                p[probe].contains("Permission denied"),
                "{why}: {probe}: {}",
                p[probe]
            );
        }
        assert!(
            !remove_message_queue(&mq_name),
            "{why}: a POSIX message queue was left behind"
        );
    };
    refused_ipc(&p, "no kernel IPC");
    // Nor change Cordon's limits or scheduling (here the test's own process, its parent),
    // which the kernel allows on any process of the same user; its own, it may.
    let leaves_cordon_alone = |p: &BTreeMap<String, String>, why: &str| {
        for change in SCHEDULING {
            let (parent, own) = (format!("parent_{change}"), format!("own_{change}"));
            assert!(
                p[&parent].contains("Permission denied"),
                "{why}: {parent}: {}",
                p[&parent]
            );
            assert_eq!(p[&own], "ok:set", "{why}: {own}");
        }
    };
    leaves_cordon_alone(&p, "confined");
    refuses_kernel_surface(&p, "confined");
    // Nor change the mode of a file outside it, by path, which Landlock does not cover
    // either: the change is not made (and answers success, for archive tools). Its own file's,
    // through its descriptor, it may.
    assert_eq!(p["chmod_named"], "ok:600", "not made readable by all");
    assert_eq!(p["fchmod_own_file"], "ok:640");
    // Nor watch the directory of the file it scans (a server's scan slot), where the name of
    // each file scanned would show: Landlock does not cover watches either.
    assert!(
        p["watch_scan_dir"].contains("Permission denied"),
        "no watch: {}",
        p["watch_scan_dir"]
    );
    assert_eq!(std::fs::read(sample.path()).unwrap(), b"twelve bytes");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        1,
        "nothing written"
    );

    // Widened by its configuration: exactly what was allowed becomes reachable.
    let widened = NativeSandbox {
        read: vec![secret.clone()],
        write: vec![elsewhere.clone()],
        network: true,
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, widened, &env).await;
    assert_eq!(p["read_named"], "ok:6", "allow_read");
    assert_eq!(p["write_named"], "ok:created", "allow_write");
    assert_eq!(p["connect_named"], "ok:connected", "allow_network");
    assert_eq!(p["udp_socket"], "ok:bound", "allow_network covers UDP");
    assert_eq!(p["connect_unix_named"], "ok:connected", "and Unix sockets");
    refused_ipc(&p, "the network is not kernel IPC");
    leaves_cordon_alone(&p, "with the network");
    refuses_kernel_surface(&p, "with the network");
    assert!(
        p["list_parent"].starts_with("err:"),
        "nothing more: {}",
        p["list_parent"]
    );
    assert!(
        p["signal_parent"].starts_with("err:"),
        "{}",
        p["signal_parent"]
    );

    // Unix sockets only: a local daemon (clamd's socket), still no network.
    let local = NativeSandbox {
        unix_sockets: true,
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, local, &env).await;
    assert_eq!(
        p["connect_unix_named"], "ok:connected",
        "allow_unix_sockets"
    );
    assert!(
        p["udp_socket"].contains("Permission denied"),
        "no UDP: {}",
        p["udp_socket"]
    );
    if abi >= 4 {
        assert!(
            p["connect_named"].starts_with("err:"),
            "no TCP: {}",
            p["connect_named"]
        );
    }
    refused_ipc(&p, "Unix sockets are not kernel IPC");
    refuses_kernel_surface(&p, "with Unix sockets");

    // Kernel IPC only: each probe gets what it gets unconfined (below), and no socket.
    let ipc = NativeSandbox {
        ipc: true,
        ..NativeSandbox::default()
    };
    let with_ipc = observe_native(&rig, &sample, ipc, &env).await;
    leaves_cordon_alone(&with_ipc, "with kernel IPC");
    refuses_kernel_surface(&with_ipc, "with kernel IPC");
    if abi > 0 {
        // Made, but Landlock refuses opening it: it is a file, in no allowed tree.
        assert!(
            with_ipc["posix_mq"].contains("made, not opened: Permission denied"),
            "a POSIX message queue is a file to Landlock: {}",
            with_ipc["posix_mq"]
        );
    }
    assert!(
        with_ipc["udp_socket"].contains("Permission denied"),
        "no UDP: {}",
        with_ipc["udp_socket"]
    );
    assert!(
        with_ipc["connect_unix_named"].contains("Permission denied"),
        "no local daemon: {}",
        with_ipc["connect_unix_named"]
    );

    // Without the sandbox the same probes reach all of it: what the assertions above refuse
    // is the sandbox's doing, not the machine's.
    let off = NativeSandbox {
        enabled: false,
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, off, &env).await;
    assert_eq!(p["read_named"], "ok:6");
    assert_eq!(p["signal_parent"], "ok:allowed");
    assert_eq!(p["connect_named"], "ok:connected");
    assert_eq!(p["udp_socket"], "ok:bound");
    assert_eq!(p["connect_unix_named"], "ok:connected");
    // System V IPC and memory files are there on every Linux; keys may be refused by the
    // machine itself (a container's own filter).
    for probe in ["sysv_shm", "sysv_msg", "sysv_sem", "memfd"] {
        assert_eq!(p[probe], "ok:created", "{probe}");
    }
    for probe in KERNEL_IPC.into_iter().filter(|&p| p != "posix_mq") {
        assert_eq!(with_ipc[probe], p[probe], "allow_ipc: {probe}");
    }
    for change in SCHEDULING {
        // A parent with capabilities (this test run by root) is out of reach of a process
        // without them for all but its limits, by the kernel's own rule.
        let expected = if holds_capabilities() && change != "rlimit" {
            "err:Operation not permitted (os error 1)"
        } else {
            "ok:set"
        };
        assert_eq!(
            p[&format!("parent_{change}")],
            expected,
            "unconfined: {change}"
        );
    }
    assert_eq!(p["watch_scan_dir"], "ok:watching");
    assert_eq!(p["chmod_named"], "ok:604");
    // Which of namespaces, io_uring and the rest the machine itself allows varies (a
    // container's own filter, `kernel.unprivileged_bpf_disabled`...), but Cordon's filter, which
    // answers EACCES, is not there, and the C library's `clone3` is. (`perf_event_paranoid`
    // answers EACCES itself.)
    for probe in KERNEL_SURFACE.into_iter().filter(|&p| p != "perf_event") {
        assert!(
            !p[probe].contains("Permission denied"),
            "unconfined: {probe}: {}",
            p[probe]
        );
    }
    assert_eq!(p["clone3"], "ok:made");
    // No capability, unconfined either: root's would let it raise its own limits.
    without_capabilities(&p, "unconfined");
}

/// The `escape` probe's attempts at namespaces and at the kernel interfaces no scanner needs.
const KERNEL_SURFACE: [&str; 7] = [
    "user_namespace",
    "clone_namespace",
    "setns",
    "io_uring",
    "userfaultfd",
    "perf_event",
    "bpf",
];

/// What every confined configuration refuses: namespaces (where a process holds every
/// capability) and kernel interfaces no scanner needs; `clone3`, whose flags the filter cannot
/// read, is missing, and processes are made with `clone`.
fn refuses_kernel_surface(p: &BTreeMap<String, String>, why: &str) {
    for probe in KERNEL_SURFACE {
        assert!(
            p[probe].contains("Permission denied"),
            "{why}: {probe}: {}",
            p[probe]
        );
    }
    assert!(
        p["clone3"].contains("Function not implemented"),
        "{why}: clone3: {}",
        p["clone3"]
    );
    assert!(
        p["spawn"].starts_with("ok:"),
        "{why}: a program still starts others: {}",
        p["spawn"]
    );
    without_capabilities(p, why);
}

/// Whether this process holds any capability (it runs as root, mostly).
fn holds_capabilities() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .filter_map(|l| l.strip_prefix("CapPrm:"))
            .any(|set| set.trim().chars().any(|c| c != '0'))
    })
}

/// A plugin holds no capability, whoever runs Cordon; run by a Cordon that holds some (root),
/// not even in its bounding set (root's `exec` would otherwise give them back, but for
/// `no_new_privs`).
fn without_capabilities(p: &BTreeMap<String, String>, why: &str) {
    let sets: Vec<&str> = p["capabilities"]
        .strip_prefix("ok:")
        .unwrap_or_else(|| panic!("{why}: {}", p["capabilities"]))
        .split(' ')
        .collect();
    let [_, effective, _, permitted, _, bounding] = sets[..] else {
        panic!("{why}: {}", p["capabilities"]);
    };
    let none = "0000000000000000";
    assert_eq!((effective, permitted), (none, none), "{why}: capabilities");
    if holds_capabilities() {
        assert_eq!(bounding, none, "{why}: run by root, the bounding set");
    }
}

#[tokio::test]
async fn a_native_plugin_is_given_no_descriptor_but_its_standard_streams() {
    // A descriptor of Cordon's without `FD_CLOEXEC` (as one inherited from the program that
    // started it): opened before the plugin's sandbox, it would reach past it.
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let leaked = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 2, "a descriptor: {leaked}");
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    let off = NativeSandbox {
        enabled: false,
        ..NativeSandbox::default()
    };
    for sandbox in [NativeSandbox::default(), off] {
        let enabled = sandbox.enabled;
        let p = observe_native(&rig, &sample, sandbox, &[]).await;
        assert_eq!(p["inherited_fds"], "ok:", "sandbox {enabled}");
    }
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(leaked) };
}

/// What the `escape` probe sets on its parent and on itself (`parent_*`, `own_*`).
const SCHEDULING: [&str; 4] = ["rlimit", "nice", "affinity", "scheduler"];

/// Removes the POSIX message queue `name`: whether there was one.
fn remove_message_queue(name: &str) -> bool {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name that outlives the call.
    unsafe { libc::mq_unlink(name.as_ptr()) == 0 }
}

/// The `escape` probe's attempts at kernel objects that Landlock does not cover.
const KERNEL_IPC: [&str; 6] = [
    "sysv_shm", "sysv_msg", "sysv_sem", "posix_mq", "memfd", "keyring",
];

#[tokio::test]
async fn a_native_plugin_reads_what_programs_need_of_etc_and_not_a_service_s_secrets() {
    if landlock_or_skip().is_none() {
        return;
    }
    if !running_as_root() {
        eprintln!("skipped: only root can put a file in /etc");
        return;
    }
    // A service's configuration with a secret, as Cordon's own could be at /etc/cordon/.
    let secret = tempfile::Builder::new()
        .prefix("cordon-sandbox-probe-")
        .suffix(".toml")
        .tempfile_in("/etc")
        .unwrap();
    std::fs::write(secret.path(), b"key = \"secret\"").unwrap();
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    let env = [("ESCAPE_READ", secret.path().display().to_string())];
    let p = observe_native(&rig, &sample, NativeSandbox::default(), &env).await;
    assert!(
        p["read_named"].contains("Permission denied"),
        "{}",
        p["read_named"]
    );
    assert!(
        p["read_etc_passwd"].starts_with("ok:"),
        "{}",
        p["read_etc_passwd"]
    );
    assert!(p["spawn"].starts_with("ok:"), "{}", p["spawn"]);
    let widened = NativeSandbox {
        read: vec![secret.path().to_path_buf()],
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, widened, &env).await;
    assert_eq!(p["read_named"], "ok:14", "allow_read names it");
}

/// A procfs instance mounted for one test, unmounted when dropped.
struct ProcMount(std::path::PathBuf);

impl Drop for ProcMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn with_proc_mounted_hidepid_a_native_plugin_sees_no_process_outside_its_sandbox() {
    if landlock_or_skip().is_none() {
        return;
    }
    let rig = Rig::new();
    // A procfs as an administrator would mount /proc, with a `gid=` group this test's process
    // is not in (root's group, the default, sees everything).
    let mount = rig.dir.path().join("proc");
    std::fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "proc", "-o", "hidepid=invisible,gid=64999", "proc"])
        .arg(&mount)
        .output();
    match mounted {
        Ok(out) if out.status.success() => {}
        other => {
            eprintln!("skipped: cannot mount a procfs here (root only): {other:?}");
            return;
        }
    }
    let _unmount = ProcMount(mount.clone());
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    // Another scan's plugin: a process of the same user without capabilities, whose command
    // line names the file it scans. (This test's process is root, with capabilities, which no
    // plugin holds: the kernel hides such a process from every plugin, below.)
    let other_plugin = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "sleep",
            "60",
        ])
        .spawn();
    let Ok(other_plugin) = other_plugin else {
        eprintln!("skipped: no setpriv to start a process without capabilities");
        return;
    };
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let other_plugin = Killed(other_plugin);
    let cmdline = |proc: &std::path::Path, pid: u32| {
        let path = proc.join(pid.to_string()).join("cmdline");
        [("ESCAPE_READ", path.display().to_string())]
    };
    let other = |proc: &std::path::Path| cmdline(proc, other_plugin.0.id());
    // Until `setpriv` has exec'd `sleep` without its capabilities.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let path = std::path::Path::new("/proc")
        .join(other_plugin.0.id().to_string())
        .join("status");
    while !std::fs::read_to_string(&path).is_ok_and(|s| s.contains("CapBnd:\t0000000000000000")) {
        assert!(
            std::time::Instant::now() < deadline,
            "setpriv did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let sandbox = NativeSandbox {
        read: vec![mount.clone()],
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, sandbox.clone(), &other(&mount)).await;
    assert!(
        p["read_named"].contains("No such file"),
        "hidden: {}",
        p["read_named"]
    );
    // The controls: the same plugin reads it through a /proc without hidepid, and so does an
    // unconfined one through this mount (Landlock's refusal to trace is what hides it).
    let p = observe_native(
        &rig,
        &sample,
        sandbox,
        &other(std::path::Path::new("/proc")),
    )
    .await;
    assert!(p["read_named"].starts_with("ok:"), "{}", p["read_named"]);
    let off = NativeSandbox {
        enabled: false,
        ..NativeSandbox::default()
    };
    let p = observe_native(&rig, &sample, off.clone(), &other(&mount)).await;
    assert!(p["read_named"].starts_with("ok:"), "{}", p["read_named"]);
    // A process with capabilities (Cordon run as root) is hidden from an unconfined plugin
    // too: the kernel shows it only to processes with at least its capabilities, and a plugin
    // has none.
    let p = observe_native(&rig, &sample, off, &cmdline(&mount, std::process::id())).await;
    assert!(
        p["read_named"].contains("No such file"),
        "capabilities: {}",
        p["read_named"]
    );
}

#[tokio::test]
async fn a_native_sandbox_that_would_show_the_files_being_scanned_is_refused() {
    if landlock_or_skip().is_none() {
        return;
    }
    let rig = Rig::new();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    // The rig's directory holds every sample (`samples/`): allowing it would let the plugin
    // read them all. The invocation does not run, and says why.
    let spec = RuntimeSpec::Process {
        program: NATIVE_HOSTILE_ESCAPE.into(),
        args: Vec::new(),
        env: Vec::new(),
        sandbox: NativeSandbox {
            read: vec![rig.dir.path().to_path_buf()],
            ..NativeSandbox::default()
        },
    };
    let plugin = rig.plugin("Escape", Role::Scanner, spec, limits(20_000));
    let outcome = rig.run(&plugin, &sample, &json!({"data_id": "x"})).await;
    match &outcome.failure {
        Some(Failure::CouldNotStart { message }) => assert!(
            message.contains("`allow_read` entry") && message.contains("every file being scanned"),
            "{message}"
        ),
        other => panic!("expected could_not_start, got {other:?}"),
    }
    assert!(outcome.stdout.is_empty(), "the plugin did not run");
}

/// A static i386 program that exits with code 7 (`int 0x80`): 52 bytes of ELF header, one
/// 32-byte program header, 12 bytes of code.
fn elf32_exit_7() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    let code: [u8; 12] = [
        0xbb, 7, 0, 0, 0, // mov ebx, 7
        0xb8, 1, 0, 0, 0, // mov eax, 1 (exit)
        0xcd, 0x80, // int 0x80
    ];
    let size = 52 + 32 + code.len() as u32;
    let mut elf = b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    for half in [2u16, 3] {
        elf.extend(half.to_le_bytes()); // executable, i386
    }
    for word in [1, BASE + 52 + 32, 52, 0, 0] {
        elf.extend(word.to_le_bytes()); // version, entry, program headers, sections, flags
    }
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend(half.to_le_bytes()); // header sizes and counts
    }
    for word in [1, 0, BASE, BASE, size, size, 5, 0x1000] {
        elf.extend(word.to_le_bytes()); // PT_LOAD of the whole file, read and execute
    }
    elf.extend(code);
    elf
}

#[tokio::test]
async fn a_32_bit_program_a_confined_plugin_starts_is_killed_not_let_past_the_seccomp_filter() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::new();
    let bin = rig.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let elf = bin.join("exit-7");
    std::fs::write(&elf, elf32_exit_7()).unwrap();
    std::fs::set_permissions(&elf, std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::process::Command::new(&elf)
        .status()
        .ok()
        .and_then(|s| s.code())
        != Some(7)
    {
        eprintln!("skipped: this kernel does not run 32-bit programs");
        return;
    }
    // A script (64-bit, its shell) that hands over to the 32-bit program: it passes the load
    // check, which reads only the plugin's own program.
    let script = bin.join("wrap.sh");
    std::fs::write(&script, format!("#!/bin/sh\nexec '{}'\n", elf.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sample = rig.sample(b"twelve bytes", "invoice.pdf");
    let (rig, sample) = (&rig, &sample);
    let run = |sandbox: NativeSandbox| {
        let spec = RuntimeSpec::Process {
            program: script.clone(),
            args: Vec::new(),
            env: Vec::new(),
            sandbox: NativeSandbox {
                read: vec![elf.clone()],
                ..sandbox
            },
        };
        let plugin = rig.plugin("Wrap", Role::Scanner, spec, limits(20_000));
        async move { rig.run(&plugin, sample, &json!({"data_id": "x"})).await }
    };

    let confined = run(NativeSandbox::default()).await;
    let failure = confined.failure.expect("killed");
    assert_eq!(failure, Failure::Signal { signal: 31 });
    assert!(
        failure.to_string().contains("32-bit program"),
        "the failure says why: {failure}"
    );

    // Whatever the sandbox allows, the filter stays, to keep it from other processes.
    let killed = run(NativeSandbox {
        network: true,
        unix_sockets: true,
        ipc: true,
        ..NativeSandbox::default()
    })
    .await;
    assert_eq!(killed.failure, Some(Failure::Signal { signal: 31 }));

    // Unconfined there is no filter: it runs to its own exit.
    let open = run(NativeSandbox {
        enabled: false,
        ..NativeSandbox::default()
    })
    .await;
    assert_eq!((open.failure, open.exit), (None, Some(7)));
}

/// A server's scan slot keeps its directory open for every sample it holds, as wasm plugins'
/// preopen: each sample must be what a plugin sees there, under its own name, alone.
#[tokio::test]
async fn each_sample_in_a_reused_scan_slot_is_what_a_wasm_plugin_sees() {
    let rig = Rig::new();
    let pool = cordon::sample::SlotPool::open(&rig.dir.path().join("slots")).unwrap();
    let samples = [
        (&b"twelve bytes"[..], "first.txt"),
        (&b"a longer second sample"[..], "second.pdf"),
        (&b"3"[..], "third"),
    ];
    let mut dirs = Vec::new();
    for (bytes, name) in samples {
        let sample = pool.sample(bytes, name).unwrap();
        dirs.push(sample.dir().to_owned());
        let report = observe(&rig, RuntimeKind::Wasm, &sample).await;
        let p = probes(&report);
        assert_eq!(report["args"], json!(["Escape", format!("/scan/{name}")]));
        assert_eq!(p["read_sample"], format!("ok:{}", bytes.len()), "{name}");
        assert_eq!(p["list_scan_dir"], format!("ok:{name}"), "{name} alone");
    }
    assert!(
        dirs.iter().all(|d| d == &dirs[0]),
        "one slot held the three samples: {dirs:?}"
    );
}
