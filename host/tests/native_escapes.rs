//! A native plugin that leaves a daemon behind, outside its process group (`setsid`), does not
//! outlive its scan when Cordon runs as the `cordon` binary (which makes itself the child
//! subreaper of its plugins), and the daemon holding stdout open does not hold the scan up.
//! The real binary: the subreaper is process-wide, so this cannot run inside the test process.
//! Nor does a plugin leave its working directory behind by locking a directory in it, which
//! needs Cordon to run as an unprivileged user (the binary, run as `nobody` by a root test).
//! And run as root, the binary warns that its native plugins run as root too.

use std::process::Command;
use std::time::{Duration, Instant};

use cordon_tests::artifacts::{
    NATIVE_HOSTILE_DAEMON, NATIVE_HOSTILE_DISK_FILL, NATIVE_HOSTILE_LOCKED_DIR,
};
use serde_json::Value;

/// Whether `pid` is gone or a zombie.
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                == Some("Z")
        }
    }
}

/// The command name of `pid`, if it runs.
fn command_of(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// A well-behaved native scanner still running when the daemon's plugin ends, and so when
/// Cordon kills what that plugin left behind: it must not be taken for a leftover.
fn slow_scanner(name: &str) -> String {
    format!(
        r#"
        [[plugin]]
        name = "{name}"
        role = "scanner"
        runtime = "process"
        command = "/bin/sh -c 'sleep 1; echo \"{{\\\"def_time\\\": 0, \\\"scan_result_i\\\": 0, \\\"threat_found\\\": \\\"\\\"}}\"'"
        timeout_ms = 30000
        "#
    )
}

#[test]
fn a_daemon_left_by_a_native_plugin_is_killed_and_does_not_hold_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    // The plugin's sandbox lets it write its pid there and nowhere else.
    let pids = dir.path().join("pids");
    let pidfile = pids.join("daemon.pid");
    let config = dir.path().join("cordon.toml");
    // A scan held by the daemon until this deadline would fail instead of being clean.
    std::fs::write(
        &config,
        format!(
            r#"
            [[plugin]]
            name = "Daemon"
            role = "scanner"
            runtime = "process"
            command = "{NATIVE_HOSTILE_DAEMON} {}"
            allow_write = ["{}"]
            timeout_ms = 30000

            {slow}

            [[workflow]]
            name = "w"
            scanners = ["Daemon", "Slow 1", "Slow 2"]
            "#,
            pidfile.display(),
            pids.display(),
            slow = ["Slow 1", "Slow 2"].map(slow_scanner).join("\n"),
        ),
    )
    .unwrap();
    let sample = dir.path().join("notes.txt");
    std::fs::write(&sample, "nothing to see here\n").unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["scan", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(&sample)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs");
    let daemon: i32 = std::fs::read_to_string(&pidfile)
        .expect("the plugin started its daemon")
        .trim()
        .parse()
        .unwrap();
    // Killed by now, or soon (a SIGKILL'd process may take a moment to be torn down).
    let give_up = Instant::now() + Duration::from_secs(10);
    while !is_dead(daemon) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead = is_dead(daemon);
    if !dead && command_of(daemon).as_deref() == Some("sleep") {
        let _ = Command::new("kill")
            .args(["-KILL", &daemon.to_string()])
            .status();
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        dead,
        "the daemon {daemon} outlived the scan; cordon said:\n{stderr}"
    );
    assert!(
        stderr.contains("killed processes a plugin left running outside its process group"),
        "{stderr}"
    );

    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("stdout is the result JSON");
    assert_eq!(result["process_info"]["result"], "Allowed");
    for name in ["Daemon", "Slow 1", "Slow 2"] {
        let engine = &result["scan_results"]["scan_details"][name];
        assert_eq!(engine["scan_result_i"], 0, "{name}: {engine}");
    }
}

/// Whether this process runs as root.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// `program`, to be run as `nobody` by a root test (`setpriv`), where `nobody` can run it and
/// `also`; `None` (and a note) where it cannot: no setpriv, or a checkout under /root.
fn as_nobody(program: &str, also: &str) -> Option<Command> {
    let reachable = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/sh",
            "-c",
        ])
        .arg(r#"test -x "$1" && test -x "$2""#)
        .args(["sh", program, also])
        .status()
        .is_ok_and(|status| status.success());
    if !reachable {
        eprintln!(
            "skipped: running as root, and setpriv is missing or nobody cannot run the cordon \
             binary and the plugin from this checkout"
        );
        return None;
    }
    let mut setpriv = Command::new("setpriv");
    setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    setpriv.arg(program);
    Some(setpriv)
}

/// The `cordon` binary run by an unprivileged user, whom permission bits bind: `nobody` where
/// this test is root (who must be able to run `also` too), else this test's user. `None`
/// where `nobody` cannot.
fn unprivileged_cordon(also: &str) -> Option<Command> {
    let cordon = env!("CARGO_BIN_EXE_cordon");
    if running_as_root() {
        as_nobody(cordon, also)
    } else {
        Some(Command::new(cordon))
    }
}

/// A directory every user may write in, holding a text file every user may read: what an
/// unprivileged Cordon scans.
fn shared_sample() -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let sample = dir.path().join("notes.txt");
    std::fs::write(&sample, "nothing to see here\n").unwrap();
    std::fs::set_permissions(&sample, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, sample)
}

#[test]
fn a_working_directory_the_plugin_locked_is_removed_all_the_same() {
    // Permission bits bind an unprivileged user only: as root, Cordon runs as `nobody`.
    let Some(mut cordon) = unprivileged_cordon(NATIVE_HOSTILE_LOCKED_DIR) else {
        return;
    };
    let (dir, sample) = shared_sample();
    let data = dir.path().join("data");
    let out = cordon
        .args(["plugin", "run", "--data-dir"])
        .arg(&data)
        .arg(NATIVE_HOSTILE_LOCKED_DIR)
        .arg(&sample)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the plugin met the contract: {said}"
    );
    let left: Vec<_> = std::fs::read_dir(data.join("work"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(
        left.is_empty(),
        "left behind: {left:?}; cordon said: {said}"
    );
}

#[test]
fn run_as_root_cordon_warns_that_its_native_plugins_are_root_too() {
    // The built-in configuration, which has native plugins, scanning one file: as root, and as
    // `nobody` where this test is root (otherwise, as this test's user).
    let scan = |mut cordon: Command| {
        let (dir, sample) = shared_sample();
        let out = cordon
            .args(["scan", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg(&sample)
            .env_remove("RUST_LOG")
            .output()
            .expect("the cordon binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "a clean file: {stderr}");
        stderr
    };
    let warning = "Cordon runs as root, and so do its native plugins";
    if running_as_root() {
        let said = scan(Command::new(env!("CARGO_BIN_EXE_cordon")));
        assert!(said.contains(warning), "{said}");
    }
    let Some(unprivileged) = unprivileged_cordon(env!("CARGO_BIN_EXE_cordon")) else {
        return;
    };
    let said = scan(unprivileged);
    assert!(!said.contains(warning), "{said}");
}

#[test]
fn a_plugin_that_hides_its_files_in_a_locked_directory_is_measured_all_the_same() {
    use std::os::unix::fs::PermissionsExt;
    // `disk-fill locked` writes files in a directory it took its owner's access from, which
    // only an unprivileged Cordon cannot read: as root, Cordon runs as `nobody`.
    let Some(mut cordon) = unprivileged_cordon(NATIVE_HOSTILE_DISK_FILL) else {
        return;
    };
    let (dir, sample) = shared_sample();
    // `plugin run` gives a native program no arguments but the file: a script gives the mode.
    let script = dir.path().join("disk-fill-locked.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec {NATIVE_HOSTILE_DISK_FILL} locked \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = cordon
        .args([
            "plugin",
            "run",
            "--max-disk-bytes",
            "8388608",
            "--allow-read",
        ])
        .arg(NATIVE_HOSTILE_DISK_FILL)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(&script)
        .arg(&sample)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "the contract is broken: {said}");
    assert!(
        said.contains("BROKEN (disk_limit): disk limit: its working directory held"),
        "measured, not stopped by the size of one file: {said}"
    );
}

#[test]
fn cordon_removes_its_plugins_cgroups_when_it_exits() {
    // `plugin run` of a native plugin says where its cgroup is made (where Cordon may make
    // one): that directory is gone once the binary has exited.
    let (dir, sample) = shared_sample();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["plugin", "run", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["/bin/true"])
        .arg(&sample)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("processes "))
        .unwrap_or_else(|| panic!("no processes line in:\n{stdout}"));
    let Some((_, cgroups)) = line
        .split_once(", in a pids cgroup (cgroup v1) in ")
        .or_else(|| line.split_once(", in a pids cgroup (cgroup v2) in "))
    else {
        eprintln!("no cgroup here ({line}): not tested");
        return;
    };
    assert!(cgroups.contains("/cordon-"), "{line}");
    assert!(
        !std::path::Path::new(cgroups).exists(),
        "{cgroups} outlived the cordon that made it"
    );
    // And its pool of memory cgroups, where it had one.
    let memory = stdout
        .lines()
        .find(|l| l.starts_with("memory    all its processes together"))
        .and_then(|l| l.split_once(", in a memory cgroup in "));
    if let Some((_, pool)) = memory {
        assert!(pool.contains("/cordon-"), "{pool}");
        assert!(
            !std::path::Path::new(pool).exists(),
            "{pool} outlived the cordon that made it"
        );
    }
}

#[test]
fn a_child_killed_with_its_plugins_process_group_is_not_reported_as_left_running() {
    // A plugin that exits leaving a child in its own process group: the group kill ends the
    // child, which, its parent gone, is handed to Cordon dead, and reaped. It never left the
    // group: no warning that it did (the daemon test above has one that did).
    use std::os::unix::fs::PermissionsExt;
    let (dir, sample) = shared_sample();
    let script = dir.path().join("child.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsleep 30 &\necho '{\"def_time\": 0, \"scan_result_i\": 0, \"threat_found\": \"\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(["-v", "plugin", "run", "--allow-read"])
        .arg(&script)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg(&script)
        .arg(&sample)
        .env_remove("RUST_LOG")
        .output()
        .expect("the cordon binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("contract  met"), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("left running outside its process group"),
        "{stderr}"
    );
}
