//! `d1vault notify test`: sends a test event to every `[[notify]]` target at once and prints one line per
//! target (`ok` or `FAILED` with the reason, never the URL). Exit 1 when any failed, 2 when none is
//! configured.

use super::Failure;
use crate::cli::NotifyCommand;
use crate::config::Config;
use crate::notify::{DeliveryPolicy, Event, EventKind, send_now};

/// Runs a `notify` subcommand.
pub async fn run(config: &Config, command: &NotifyCommand) -> Result<(), Failure> {
    match command {
        NotifyCommand::Test => test(config).await,
    }
}

async fn test(config: &Config) -> Result<(), Failure> {
    if config.notify.is_empty() {
        return Err(Failure::usage(format!(
            "{} has no [[notify]] entry; add one (see docs/configuration.md \"[[notify]]\")",
            config.path.display()
        )));
    }
    // A healthchecks URL with {database} is pinged for a real database, on its `/log` endpoint (which
    // neither starts nor closes a check's run).
    let database = config
        .databases
        .first()
        .map_or("d1vault-test", |d| d.name.as_str());
    let event = Event::new(EventKind::Test, database, chrono::Utc::now());
    let results = send_now(&config.notify, &event, DeliveryPolicy::default()).await;
    let mut failed = 0;
    for (target, result) in config.notify.iter().zip(results) {
        match result {
            Ok(()) => println!("ok      {}", target.label()),
            Err(e) => {
                failed += 1;
                println!("FAILED  {}: {e}", target.label());
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::failed(format!(
            "{failed} of {} notification targets failed",
            config.notify.len()
        )))
    }
}
