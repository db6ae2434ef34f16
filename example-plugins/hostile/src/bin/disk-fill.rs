//! `disk-fill`: fills the disk from its working directory, 1 MiB at a time. Its first
//! argument (before the file's path) says how:
//! - `files` (the default): 64 files of 1 MiB, `fill-0` to `fill-63`, then it holds them until
//!   it is stopped;
//! - `locked`: 16 files of 1 MiB in a directory whose access it takes away from its owner (mode
//!   000, through the directory's descriptor) before writing them through their descriptors,
//!   then it holds them until it is stopped;
//! - `unlinked`: one file it deletes at once and goes on writing through its descriptor, out of
//!   any directory's sight, until it is stopped;
//! - `empty`: 10,000 empty files, `empty-0` to `empty-9999` (no data, but an inode each), then
//!   it holds them until it is stopped.
//!
//! No file it writes in `files`, `locked` and `empty` is larger than 1 MiB, so that only a
//! measure of the directory stops those; `unlinked` is stopped by the size of its one file. It never
//! prints a verdict; a write that fails ends it with code 1 and the error on stderr. Native
//! only: a wasm plugin has no working directory (it exits 1 there).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = if args.len() > 2 {
        args[1].as_str()
    } else {
        "files"
    };
    let chunk = vec![0x5a_u8; 1 << 20];
    if let Err(e) = fill(mode, &chunk) {
        eprintln!("disk-fill: {mode}: {e}");
        std::process::exit(1);
    }
}

/// How many files `locked` writes.
#[cfg(unix)]
const LOCKED_FILES: usize = 16;

/// Keep what it wrote until it is stopped.
#[cfg(unix)]
fn hold() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

#[cfg(unix)]
fn fill(mode: &str, chunk: &[u8]) -> std::io::Result<()> {
    use std::fs::{self, File};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut file: File = match mode {
        "files" => {
            for n in 0..64 {
                fs::write(format!("fill-{n}"), chunk)?;
            }
            hold()
        }
        "empty" => {
            for n in 0..10_000 {
                File::create(format!("empty-{n}"))?;
            }
            hold()
        }
        "unlinked" => {
            let file = File::create("fill")?;
            fs::remove_file("fill")?;
            file
        }
        "locked" => {
            fs::create_dir("locked")?;
            let mut files = (0..LOCKED_FILES)
                .map(|n| File::create(format!("locked/fill-{n}")))
                .collect::<std::io::Result<Vec<_>>>()?;
            File::open("locked")?.set_permissions(fs::Permissions::from_mode(0o000))?;
            for file in &mut files {
                file.write_all(chunk)?;
            }
            hold()
        }
        other => {
            return Err(std::io::Error::other(format!(
                "unknown mode {other:?}: files, locked, unlinked or empty"
            )));
        }
    };
    loop {
        file.write_all(chunk)?;
    }
}

#[cfg(not(unix))]
fn fill(_mode: &str, _chunk: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "no working directory in this runtime",
    ))
}
