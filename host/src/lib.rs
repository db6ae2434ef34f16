//! Cordon: a scanning host for untrusted file scanners.
//!
//! Files go through a workflow of scanners whose verdicts combine into one MetaDefender-shaped
//! result, then through post actions. Every scanner and post action is a plugin with one of
//! three runtimes (a WASI module under wasmtime, a native process, a webhook), run by one
//! [`executor`] under one [`contract`].

pub mod executor;
pub mod plugin;
pub mod sample;
pub mod verdict;
