//! `fork-bomb`: runs many processes or threads at once. Its first argument (before the file's
//! path) says how:
//! - `processes` (the default): a tree of copies of itself, each starting four more (by
//!   `exec` of its own program) down to six levels, 5,461 in all, every one holding on until
//!   it is stopped. A copy that cannot start another says so on stderr and holds on as well.
//!   Bounded, so that even without a limit it cannot take a machine's whole process table.
//! - `threads <n>`: `n` threads of one process at once, itself included (`n - 1` started),
//!   which meet at a barrier before any ends; then a clean verdict, exit 0. A thread that
//!   cannot start ends it with code 1 and the error on stderr.
//!
//! Native only: a wasm plugin can start neither (it exits 1 there).

use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// How many copies each copy starts, and how many levels of them.
const FANOUT: u32 = 4;
const DEPTH: u32 = 6;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("threads") => threads(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(2)),
        Some("copy") => processes(args.get(2).and_then(|d| d.parse().ok()).unwrap_or(0)),
        _ => processes(DEPTH),
    }
}

/// Start [`FANOUT`] copies of this program, each `depth - 1` levels deep, then hold on.
fn processes(depth: u32) -> ! {
    if depth > 0 {
        let me = match std::env::current_exe() {
            Ok(me) => me,
            Err(e) => fail(&format!("cannot find its own program: {e}")),
        };
        for _ in 0..FANOUT {
            let started = Command::new(&me)
                .arg("copy")
                .arg((depth - 1).to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn();
            if let Err(e) = started {
                eprintln!("fork-bomb: could not start a copy: {e}");
                break;
            }
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Run `n` threads at once, this one included, then print a clean verdict.
fn threads(n: usize) {
    let barrier = Arc::new(Barrier::new(n.max(1)));
    let mut started = Vec::new();
    for i in 1..n {
        let barrier = Arc::clone(&barrier);
        // Small stacks: each is a private mapping that counts towards `RLIMIT_DATA` (where
        // there is no memory cgroup) and `RLIMIT_AS`.
        match std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                barrier.wait();
            }) {
            Ok(handle) => started.push(handle),
            Err(e) => fail(&format!("could not start thread {} of {n}: {e}", i + 1)),
        }
    }
    barrier.wait();
    for handle in started {
        let _ = handle.join();
    }
    println!(r#"{{"def_time": 0, "scan_result_i": 0, "threat_found": ""}}"#);
}

fn fail(message: &str) -> ! {
    eprintln!("fork-bomb: {message}");
    std::process::exit(1);
}
