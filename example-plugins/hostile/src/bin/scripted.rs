//! `scripted`: does exactly what the submission's metadata says, so one plugin covers any
//! output and exit code in every runtime. It reads the stdin JSON and takes
//! `metadata.behave`:
//!
//! ```json
//! {"stdout": "<exact text to print>", "stderr": "<text>", "exit": <int>, "sleep_ms": <int>}
//! ```
//!
//! Each field is optional: no `stdout`/`stderr` prints nothing there, no `exit` exits 0, no
//! `sleep_ms` does not sleep. It writes stdout, then stderr, then sleeps, then exits. The exit
//! code is passed to `std::process::exit` as an `i32` (natively the OS keeps its low 8 bits;
//! WASI passes it on as a 32-bit status). Stdin that is not JSON counts as no metadata.

use std::io::Write;

fn main() {
    let input = hostile::read_stdin_json();
    let behave = input.get("metadata").and_then(|m| m.get("behave"));
    let field = |name: &str| behave.and_then(|b| b.get(name));
    if let Some(text) = field("stdout").and_then(|v| v.as_str()) {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
    if let Some(text) = field("stderr").and_then(|v| v.as_str()) {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    if let Some(ms) = field("sleep_ms").and_then(|v| v.as_u64()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let code = field("exit").and_then(|v| v.as_i64()).unwrap_or(0);
    std::process::exit(code as i32);
}
