//! `bench-verdict`: the smallest scanner that still does what every scanner does: it reads
//! the stdin JSON to its end, checks that it is a JSON object, and prints a clean verdict
//! (`{"def_time":1767225600000,"scan_result_i":0,"threat_found":""}`). It does not open the
//! file. Standard library only.
//!
//! It is built from this one source for wasm32-wasip1 and natively, so that Cordon's
//! benchmarks (`host/benches/`) compare the wasm and process runtimes, and the executor
//! against the bare wasmtime floor, on the same scanner. Stdin that is not a JSON object
//! exits 1 with a message on stderr.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::with_capacity(4096);
    if let Err(err) = std::io::stdin().lock().read_to_end(&mut stdin) {
        eprintln!("bench-verdict: cannot read stdin: {err}");
        std::process::exit(1);
    }
    if stdin.trim_ascii().first() != Some(&b'{') {
        eprintln!("bench-verdict: stdin is not a JSON object");
        std::process::exit(1);
    }
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(b"{\"def_time\":1767225600000,\"scan_result_i\":0,\"threat_found\":\"\"}\n")
        .and_then(|()| stdout.flush());
    if let Err(err) = written {
        eprintln!("bench-verdict: cannot write the verdict: {err}");
        std::process::exit(1);
    }
}
