//! Builds the example scanners that ship inside the `cordon` binary (the built-in default
//! configuration uses them) from `example-plugins/`, for wasm32-wasip1, and tells the
//! compiler where they are (`include_bytes!(env!("CORDON_BUILTIN_*"))` in `src/builtin.rs`).

use cordon_build_support::{Target, build_example_plugins};

fn main() {
    let built = build_example_plugins(
        Target::Wasm32Wasip1,
        &["eicar", "sha256-blocklist", "filetype"],
    );
    for (env, bin) in [
        ("CORDON_BUILTIN_EICAR", "eicar"),
        ("CORDON_BUILTIN_SHA256_BLOCKLIST", "sha256-blocklist"),
        ("CORDON_BUILTIN_FILETYPE", "filetype"),
    ] {
        println!("cargo:rustc-env={env}={}", built.path(bin).display());
    }
    println!("cargo:rerun-if-changed=../wit");
}
