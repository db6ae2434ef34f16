//! `membomb`: allocates memory in 1 MiB steps, touching every byte, forever, and reports its
//! progress on stderr. The host's memory cap (wasm: the store limiter; native: rlimits) stops
//! it: a failed allocation aborts (a trap in wasm).

use std::io::Write;

fn main() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so the memory is really used.
        blocks.push(std::hint::black_box(vec![0xA5u8; 1 << 20]));
        let _ = writeln!(std::io::stderr(), "membomb: {} MiB", blocks.len());
    }
}
