//! `panic`: panics. The release profile has `panic = "abort"`, so this traps in wasm and
//! aborts natively, after the panic message on stderr.

fn main() {
    panic!("hostile plugin: deliberate panic");
}
