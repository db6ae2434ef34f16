//! `eicar`: the plugin's entry points over [`eicar::scan`] (the detection is in `lib.rs`).

// `fn main` (a WASI command on wasm32-wasip1, an executable natively) and, on wasm32-wasip2,
// the `scan` export of Cordon's `scanner` component world. The scanner needs nothing of the
// plugin's input, so the plugin does not read it.
cordon_plugin_sdk::file_scanner_main!(eicar::scan);
