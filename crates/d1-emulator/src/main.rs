//! `d1-emulator`: a local Cloudflare D1 REST API over SQLite files (see the `d1_emulator` library).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use d1_emulator::{DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, Emulator, EmulatorOptions, Faults};

/// A local emulator of the Cloudflare D1 REST API: every DIR/NAME.sqlite is the database NAME.
#[derive(Debug, Parser)]
#[command(name = "d1-emulator", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the `listening on` line tells which).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Directory of NAME.sqlite database files (created when missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Bearer token clients must send.
    #[arg(long, default_value = DEFAULT_TOKEN)]
    token: String,
    /// The account id the API answers for.
    #[arg(long, default_value = DEFAULT_ACCOUNT_ID)]
    account_id: String,
    /// Faults to inject from the start, as the JSON accepted by POST /__emulator/faults, e.g.
    /// '{"rate_limit":{"count":3,"retry_after_secs":1},"download":"truncate"}'.
    #[arg(long, value_name = "JSON")]
    faults: Option<String>,
    /// Run SQL with foreign keys off (D1 always enforces them; this loads dumps D1 itself would refuse).
    #[arg(long)]
    no_foreign_keys: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let mut faults = match args
        .faults
        .as_deref()
        .map(serde_json::from_str::<Faults>)
        .transpose()
    {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("d1-emulator: --faults is not valid fault JSON: {e}");
            return ExitCode::from(2);
        }
    };
    if args.no_foreign_keys {
        faults.enforce_foreign_keys = Some(false);
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("d1-emulator: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let options = EmulatorOptions {
        data_dir: args.data_dir,
        token: args.token,
        account_id: args.account_id,
    };
    let emulator = match Emulator::start(listener, options).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("d1-emulator: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    emulator.faults().set(faults);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on {}", emulator.base_url());
    let _ = stdout.flush();

    let terminate = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    emulator.shutdown().await;
    ExitCode::SUCCESS
}
