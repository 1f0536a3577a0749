//! `d1vault run`: the scheduler daemon in the foreground. Wires SIGTERM/SIGINT/SIGHUP to the daemon; a
//! second SIGTERM/SIGINT exits at once.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::warn;

use super::Failure;
use crate::config::Config;
use crate::daemon::{self, Clock, DaemonOptions, Signal};

/// Runs until stopped by a signal.
pub async fn run(config_path: &Path, config: Config) -> Result<(), Failure> {
    // The daemon backs up D1 and lists fleets: unresolved Cloudflare credentials are found at start.
    super::require_d1(&config)?;
    // One daemon per state_dir, decided before anything else (a second daemon on the same config would
    // otherwise fail on the port instead); exit 2: a state_dir shared by two daemons is a configuration error.
    let lock = crate::catalog::lock_state_dir(&config.daemon.state_dir)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let listener = match config.daemon.listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Failure::failed(format!("cannot listen on {addr} (daemon.listen): {e}; set another address or \"\" to disable"))
        })?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(8);
    let mut term = signal(SignalKind::terminate()).map_err(|e| Failure::failed(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Failure::failed(e.to_string()))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Failure::failed(e.to_string()))?;
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let message = tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Terminate,
                _ = hup.recv() => Signal::Reload,
            };
            if message == Signal::Terminate {
                if stopping {
                    warn!("second stop signal: exiting at once");
                    std::process::exit(130);
                }
                stopping = true;
            }
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    let options = DaemonOptions {
        config_path: config_path.to_path_buf(),
        config,
        listener,
        clock: Clock::System,
    };
    daemon::run_locked(options, lock, rx)
        .await
        .map_err(Failure::failed)
}
