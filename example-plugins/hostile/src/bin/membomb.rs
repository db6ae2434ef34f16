//! `membomb`: uses memory. Its first argument (before the file's path) says how:
//! - none: allocates memory in 1 MiB steps, touching every byte, forever, and reports its
//!   progress on stderr. The host's memory cap (wasm: the store limiter; native: its memory
//!   cgroup, or rlimits) stops it: a failed allocation aborts (a trap in wasm).
//! - `spread <k> <mib>`: a careless plugin with helpers. It starts `k` copies of itself that
//!   each hold `mib` MiB (touched), all at once: each tells it so on its stdout, then holds on
//!   until its stdin closes. Once every copy has told it, or died, it closes their stdins,
//!   waits for them and prints a clean verdict, exit 0, whatever became of them. Each copy is
//!   small; together they are `k × mib` MiB. Native only (a wasm plugin cannot start one).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let number = |i: usize| args.get(i).and_then(|n| n.parse::<usize>().ok());
    match args.get(1).map(String::as_str) {
        Some("spread") => spread(number(2).unwrap_or(4), number(3).unwrap_or(24)),
        Some("hold") => hold(number(2).unwrap_or(24)),
        _ => bomb(),
    }
}

fn bomb() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill writes every page, so the memory is really used.
        blocks.push(std::hint::black_box(vec![0xA5u8; 1 << 20]));
        let _ = writeln!(std::io::stderr(), "membomb: {} MiB", blocks.len());
    }
}

/// Start `k` copies that hold `mib` MiB each at the same time, then print a clean verdict.
fn spread(k: usize, mib: usize) {
    let me = std::env::current_exe().expect("its own program");
    let mut copies = Vec::new();
    for _ in 0..k {
        match Command::new(&me)
            .arg("hold")
            .arg(mib.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(copy) => copies.push(copy),
            Err(e) => eprintln!("membomb: could not start a copy: {e}"),
        }
    }
    // Every copy holds its memory (or is dead) before any lets go of it.
    let mut holding = 0;
    for copy in &mut copies {
        let mut line = String::new();
        let out = copy.stdout.take().expect("piped");
        if BufReader::new(out)
            .read_line(&mut line)
            .is_ok_and(|n| n > 0)
        {
            holding += 1;
        }
    }
    eprintln!("membomb: {holding} of {k} copies held {mib} MiB each at once");
    for copy in &mut copies {
        drop(copy.stdin.take());
    }
    for copy in &mut copies {
        let _ = copy.wait();
    }
    println!(r#"{{"def_time": 0, "scan_result_i": 0, "threat_found": ""}}"#);
}

/// Hold `mib` MiB, touched; say so; hold on until stdin closes.
fn hold(mib: usize) {
    let held = std::hint::black_box(vec![0xA5u8; mib << 20]);
    println!("holding {mib} MiB");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}
