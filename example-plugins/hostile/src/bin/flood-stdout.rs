//! `flood-stdout`: writes to stdout forever, ignoring write errors (so a full or closed pipe
//! does not stop it either). The host's output cap and deadline must contain it.

use std::io::Write;

fn main() {
    let chunk = vec![b'A'; 64 * 1024];
    let mut stdout = std::io::stdout().lock();
    loop {
        let _ = stdout.write_all(&chunk);
    }
}
