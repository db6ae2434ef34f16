//! The process runtime: native sub-processes (MetaDefender's External Scanner and sub-process
//! Post Action).

use std::path::{Path, PathBuf};

use super::{ExecutorConfig, Invocation, Outcome};
use crate::plugin::Limits;

/// Runs native programs.
pub struct ProcessRuntime {
    work_dir: PathBuf,
}

/// A program resolved at load.
pub struct ProcessPlugin {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ProcessRuntime {
    pub(super) fn new(config: &ExecutorConfig) -> ProcessRuntime {
        ProcessRuntime {
            work_dir: config.work_dir.clone(),
        }
    }

    pub(super) fn prepare(
        &self,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<ProcessPlugin, String> {
        todo!("{:?} {program:?} {args:?} {env:?}", self.work_dir)
    }

    pub(super) async fn invoke(
        &self,
        plugin: &ProcessPlugin,
        limits: &Limits,
        invocation: Invocation<'_>,
    ) -> Outcome {
        todo!("{:?} {:?} {:?} {limits:?} {invocation:?}", plugin.program, plugin.args, plugin.env)
    }
}
