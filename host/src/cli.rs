//! The `cordon` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::builtin;
use crate::host::{Host, default_data_dir};
use crate::plugin::RuntimeSpec;
use crate::result::{self, ScanResult};

/// Exit status of `cordon scan` for an allowed file.
pub const EXIT_ALLOWED: u8 = 0;
/// Exit status of `cordon scan` for a blocked file.
pub const EXIT_BLOCKED: u8 = 1;
/// Exit status when Cordon could not do what was asked (bad configuration, unreadable file...).
pub const EXIT_ERROR: u8 = 2;

/// Cordon: a sandboxing host for untrusted file scanners.
#[derive(Debug, Parser)]
#[command(name = "cordon", version, about, long_about = None)]
pub struct Cli {
    /// Log more (-v: info, -vv: debug; `serve` logs info by default). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format on stderr: `text` for people, `json` for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the span fields (`data_id` during a scan).
    Json,
}

impl Cli {
    /// The log level when neither `-v` nor RUST_LOG says: `info` for the server (an operator
    /// wants to see requests and scans), `warn` for one-shot commands (their stdout is the
    /// result).
    pub fn default_log_level(&self) -> &'static str {
        match (self.verbose, &self.command) {
            (0, Command::Serve { .. }) => "info",
            (0, _) => "warn",
            (1, _) => "info",
            _ => "debug",
        }
    }
}

/// Where configuration and data come from.
#[derive(Debug, Args)]
pub struct HostArgs {
    /// Configuration file (TOML). Without it, the built-in default: the example plugins and
    /// the "File scan" workflow.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Data directory: compiled-module cache, work directories, results. Default:
    /// $CORDON_DATA_DIR, else $XDG_DATA_HOME/cordon, else ~/.local/share/cordon.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl HostArgs {
    fn load(&self) -> Result<Host, String> {
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let host = Host::load(self.config.as_deref(), &data_dir).map_err(|e| e.to_string())?;
        crate::executor::log_native_sandbox(host.inventory.plugins().map(|p| &**p), false);
        for warning in host.inventory.warnings() {
            tracing::warn!("{warning}");
        }
        Ok(host)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow on one file and print the MetaDefender-shaped result JSON.
    ///
    /// Exit status: 0 the file is allowed, 1 it is blocked, 2 it could not be scanned.
    Scan {
        /// The file to scan.
        file: PathBuf,
        /// The workflow (rule) to run; the configuration's default otherwise.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Print a short table for people instead of the JSON.
        #[arg(long)]
        summary: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Configuration: print the built-in default, or check a file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the MetaDefender Core-compatible scanning server until SIGTERM or SIGINT.
    ///
    /// Creates what it needs in the data directory (database, file store). Settings come
    /// from the configuration's `[server]` table; --listen overrides its `listen`.
    Serve {
        /// Address to listen on. Default: `[server] listen`, else 127.0.0.1:8008.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Tools for plugin authors: check a wasm binary, run a plugin on a file as Cordon does,
    /// create a new plugin crate.
    #[command(subcommand)]
    Plugin(crate::tools::PluginCommand),
}

/// `cordon config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the built-in default configuration (a starting point for your own).
    Default,
    /// Load a configuration and every plugin in it, and list them; exit 2 on any problem.
    Check {
        #[command(flatten)]
        host: HostArgs,
    },
}

/// Run the command line.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Scan {
            file,
            workflow,
            summary,
            host,
        } => {
            let host = match host.load() {
                Ok(h) => h,
                Err(e) => return error(&e),
            };
            let user = std::env::var("USER").unwrap_or_default();
            match host.scan_path(&file, workflow.as_deref(), &user).await {
                Ok(result) => {
                    if summary {
                        print!("{}", render_summary(&result));
                    } else {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&result).expect("results serialize")
                        );
                    }
                    if result.process_info.result == result::BLOCKED {
                        ExitCode::from(EXIT_BLOCKED)
                    } else {
                        ExitCode::from(EXIT_ALLOWED)
                    }
                }
                Err(e) => error(&format!("{}: {e}", file.display())),
            }
        }
        Command::Serve { listen, host } => {
            let options = crate::server::ServeOptions {
                config: host.config,
                data_dir: host.data_dir.unwrap_or_else(default_data_dir),
                listen,
            };
            match crate::server::serve(options).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => error(&e.to_string()),
            }
        }
        Command::Plugin(command) => crate::tools::run_command(command).await,
        Command::Config(ConfigCommand::Default) => {
            print!("{}", builtin::DEFAULT_CONFIG);
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { host }) => match host.load() {
            Ok(host) => {
                println!("plugins:");
                for p in host.inventory.plugins() {
                    let info = p.info();
                    let sandbox = match &p.spec().runtime {
                        RuntimeSpec::Process { sandbox, .. } if !sandbox.enabled => {
                            "  UNCONFINED (sandbox = false)".to_owned()
                        }
                        RuntimeSpec::Process { sandbox, .. } if !sandbox.widened().is_empty() => {
                            format!("  sandbox {}", sandbox.widened())
                        }
                        _ => String::new(),
                    };
                    println!(
                        "  {:<16}  {:<11}  {:<7}  loaded in {:.1} ms{}{}{sandbox}",
                        p.name().as_str(),
                        p.spec().role.to_string(),
                        p.runtime().to_string(),
                        info.load_micros as f64 / 1000.0,
                        if info.from_cache { " (cached)" } else { "" },
                        info.sha256
                            .as_deref()
                            .map(|s| format!("  sha256 {s}"))
                            .unwrap_or_default(),
                    );
                }
                println!("workflows:");
                for w in host.inventory.workflows() {
                    let names = |ps: &[std::sync::Arc<crate::executor::Plugin>]| {
                        ps.iter()
                            .map(|p| p.name().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    println!(
                        "  {:?}{}: scanners [{}], post actions [{}], max {} bytes",
                        w.spec.name,
                        if w.spec.name == host.inventory.default_workflow() {
                            " (default)"
                        } else {
                            ""
                        },
                        names(&w.scanners),
                        names(&w.post_actions),
                        w.spec.max_file_size_bytes
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => error(&e),
        },
    }
}

fn error(message: &str) -> ExitCode {
    eprintln!("cordon: {message}");
    ExitCode::from(EXIT_ERROR)
}

/// A table for people: one line per engine and post action, then the decision.
pub fn render_summary(result: &ScanResult) -> String {
    let mut rows = vec![[
        "ENGINE".to_owned(),
        "VERDICT".to_owned(),
        "THREAT".to_owned(),
        "TIME".to_owned(),
        "FAILURE".to_owned(),
    ]];
    for (name, e) in &result.scan_results.scan_details {
        rows.push([
            name.clone(),
            format!("{} {}", e.scan_result_i.value(), e.scan_result_i.as_str()),
            e.threat_found.clone(),
            format!("{} ms", e.scan_time),
            e.failure
                .as_ref()
                .map(|f| format!("{}: {}", f.kind, f.message))
                .unwrap_or_default(),
        ]);
    }
    if let Some(pa) = &result.post_action {
        for d in &pa.details {
            rows.push([
                format!("{} (post action)", d.name),
                if d.verdict == result::POST_ACTION_SUCCESS {
                    format!("ran, returned {}", d.return_value)
                } else {
                    format!("failed, returned {}", d.return_value)
                },
                String::new(),
                format!("{} ms", d.duration),
                d.failure
                    .as_ref()
                    .map(|f| format!("{}: {}", f.kind, f.message))
                    .unwrap_or_default(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let p = &result.process_info;
    out.push_str(&format!(
        "\n{}: {} ({}), {} in {} ms, sha256 {}\n",
        result.file_info.display_name,
        p.result,
        result.scan_results.scan_all_result_a,
        p.profile,
        p.processing_time,
        result.file_info.sha256
    ));
    out
}
