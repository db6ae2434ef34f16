//! Cordon: a scanning host for untrusted file scanners.
//!
//! Files go through a [`workflow`] of scanners whose verdicts combine into one
//! MetaDefender-shaped [`result`], then through post actions. Every scanner and post action is
//! a plugin with one of three runtimes (a WASI module under wasmtime, a native process, a
//! webhook), run by one [`executor`] under one [`contract`].
//!
//! - [`plugin`]: plugin definitions and the inventory of loaded plugins;
//! - [`config`]: the TOML configuration, validated at load;
//! - [`executor`]: runs a plugin of any runtime and reports an outcome;
//! - [`contract`]: what an outcome means (engine result or post-action record);
//! - [`workflow`]: the per-file pipeline and verdict aggregation ([`verdict`]);
//! - [`host`]: all of it put together, used by the [`cli`];
//! - [`server`]: `cordon serve`, the MetaDefender-compatible HTTP API, over the [`store`]
//!   (SQLite and the file store).
//! - [`tools`]: the plugin developer's tools (`cordon plugin check|run|new`).

pub mod builtin;
pub mod cli;
pub mod config;
pub mod contract;
pub mod executor;
pub mod fileinfo;
pub mod host;
pub mod plugin;
pub mod result;
pub mod sample;
pub mod server;
pub mod store;
pub mod tools;
pub mod verdict;
pub mod workflow;
