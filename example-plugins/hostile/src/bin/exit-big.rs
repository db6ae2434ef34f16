//! `exit-big`: exits with code 200 and no output. WASI preview 1 reports exit codes of 126 and
//! more as a plain error rather than an exit status; the host must still call it Failed.

fn main() {
    std::process::exit(200);
}
