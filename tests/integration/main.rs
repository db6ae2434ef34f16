//! Cordon's integration tests: one test binary, one module per area. The plugins they run are
//! built from source by the crate's build script; see `cordon_tests::artifacts`.

mod artifacts;
mod c_plugin;
mod components;
mod config_load;
mod contract_suite;
mod harness;
mod hostile;
mod pipeline;
mod sandbox;
mod server;
mod tools;
