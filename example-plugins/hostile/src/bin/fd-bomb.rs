//! `fd-bomb`: opens its file (the last argument) again and again, keeping every handle, and
//! when an open fails keeps trying until it is stopped. Each handle a wasm plugin opens is a
//! descriptor of the host's own process, so without a cap it would use up the host's
//! descriptors (and with them the host's ability to accept a connection or open a file) for
//! as long as it runs. It reports its count on stderr every 1,000 handles and at its first
//! failure. Given `exit` as its first argument (before the file's path), it exits with code 1
//! after reporting its first failure instead: a native process's opens fail at its descriptor
//! limit, and a test of that limit then need not wait for a deadline, nor race one.

use std::fs::File;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exit_at_failure = args.len() > 2 && args[1] == "exit";
    let path = args.last().cloned().unwrap_or_default();
    let mut handles: Vec<File> = Vec::new();
    let mut failed = false;
    loop {
        match File::open(&path) {
            Ok(file) => {
                handles.push(file);
                if handles.len().is_multiple_of(1000) {
                    let _ = writeln!(std::io::stderr(), "fd-bomb: {} open", handles.len());
                }
            }
            Err(err) if !failed => {
                failed = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "fd-bomb: open failed after {} handles: {err}",
                    handles.len()
                );
                if exit_at_failure {
                    std::process::exit(1);
                }
            }
            Err(_) => {}
        }
    }
}
