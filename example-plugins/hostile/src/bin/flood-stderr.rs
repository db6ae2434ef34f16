//! `flood-stderr`: writes to stderr forever, ignoring write errors. The host's cap on stderr
//! and its deadline must contain it.

use std::io::Write;

fn main() {
    let chunk = vec![b'E'; 64 * 1024];
    let mut stderr = std::io::stderr().lock();
    loop {
        let _ = stderr.write_all(&chunk);
    }
}
