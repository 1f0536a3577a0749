//! The `d1vault` binary: parses the command line, sets up logging, loads the configuration and hands the
//! subcommand to its module in `d1vault::commands`. Exit status: 0 success, 1 failure, 2 usage or
//! configuration error.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use d1vault::cli::{Cli, Command};
use d1vault::commands::{self, Failure};
use d1vault::config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        -1
    } else {
        cli.verbose.min(3) as i8
    };
    let log_format = cli.log_format;
    d1vault::logging::init(log_format, verbosity);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Do not wait for blocking threads still running: a SQLite source's dump thread can sit in SQLite's
    // busy timeout (up to 30 s) after `run` aborted its backup at the end of the shutdown grace, and the
    // process must exit within the grace period. Every such thread's work was already abandoned.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            d1vault::logging::print_fatal(log_format, &failure.message, failure.exit_code);
            ExitCode::from(failure.exit_code)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    if let Command::Completions(args) = &cli.command {
        clap_complete::generate(
            args.shell,
            &mut Cli::command(),
            "d1vault",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    if let Command::Init(args) = &cli.command {
        // No configuration to load: this writes one.
        let path = args
            .path
            .clone()
            .or_else(|| cli.config.clone())
            .unwrap_or_else(|| std::path::PathBuf::from("d1vault.toml"));
        return commands::init::run(&path).await;
    }
    let path = config::find_config_path(cli.config.as_deref());
    let config = config::load(&path).map_err(|errors| Failure::usage(errors.to_string()))?;
    match &cli.command {
        Command::Backup(args) => commands::backup::run(&config, args).await,
        Command::List(args) => commands::list::run(&config, args).await,
        Command::Restore(args) => commands::restore::run(&config, args).await,
        Command::Verify(args) => commands::verify::run(&config, args).await,
        Command::Prune(args) => commands::prune::run(&config, args).await,
        Command::Status(args) => commands::status::run(&config, args).await,
        Command::Run => commands::run::run(&path, config).await,
        Command::Healthcheck => commands::healthcheck::run(&config).await,
        Command::Notify(command) => commands::notify::run(&config, command).await,
        Command::Migrations(command) => commands::migrations::run(&config, command).await,
        Command::Databases(args) => commands::databases::run(&config, args).await,
        Command::CheckConfig(args) => {
            commands::check_config::run(&config, chrono::Utc::now(), args.online, args.json).await
        }
        Command::Completions(_) | Command::Init(_) => unreachable!("handled above"),
    }
}
