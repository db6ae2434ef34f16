//! The `cordon` binary.

use std::process::ExitCode;

use clap::Parser;
use cordon::cli::{Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(cli.default_log_level()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    // Processes a native plugin leaves behind outside its process group are killed (the
    // binary starts no processes but plugins).
    if let Err(e) = cordon::executor::process::reap_escaped_processes() {
        tracing::warn!(
            error = %e,
            "cannot become the child subreaper: processes a native plugin leaves running \
             outside its process group (a daemon) will not be killed"
        );
    }
    match cordon::executor::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cordon: cannot start the async runtime: {e}");
            return ExitCode::from(cordon::cli::EXIT_ERROR);
        }
    };
    let code = runtime.block_on(cordon::cli::run(cli));
    // The runtime's end abandons blocking work not yet done, such as removing the cgroup of a
    // plugin given up at shutdown: what runs in those cgroups is killed, and they are removed.
    drop(runtime);
    cordon::executor::cgroup::release();
    code
}
