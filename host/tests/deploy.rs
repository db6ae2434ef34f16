//! `deploy/cordon.service`, the hardened systemd unit the README installs: systemd's own
//! parser reads it without an unknown key or a bad value, with `ExecStart` pointing at the
//! binary these tests built.

use std::path::Path;
use std::process::Command;

#[test]
fn the_service_unit_is_read_by_systemd_without_a_complaint() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/cordon.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/cordon serve "),
        "the README's install steps put the binary at /usr/local/bin/cordon"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cordon.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/cordon", env!("CARGO_BIN_EXE_cordon")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about the unit name its file; others are about the machine's own units.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cordon.service"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "systemd-analyze verify: {}",
        stderr
    );
}
