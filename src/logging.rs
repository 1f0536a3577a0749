//! Log setup: tracing to stderr, text or JSON.
//!
//! Only d1vault's own events pass the verbosity the user chose; every dependency (reqwest, hyper, the AWS
//! SDK) is capped at `warn`, because their debug and trace output can carry request URLs and headers, and a
//! D1 export's signed URL or an S3 signature must never reach a log at any level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`, CONTRACT.md "Command line"): a human-readable line, or one
/// JSON object per event (with the current span's fields) for a log collector.
// The variants carry no doc comments: clap would show them in `--help`, which must stay as it is.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Prints a fatal error (the message of a command that failed) on stderr in the chosen format: `error: `
/// lines as text, or one JSON object per line with `level` ERROR and the exit status under
/// `--log-format json`, so that a log pipeline that parses every line also sees why d1vault stopped.
pub fn print_fatal(format: LogFormat, message: &str, exit_code: u8) {
    match format {
        LogFormat::Text => {
            for line in message.lines() {
                eprintln!("error: {line}");
            }
        }
        LogFormat::Json => {
            let event = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "message": message,
                "exit_code": exit_code,
            });
            eprintln!("{event}");
        }
    }
}

/// Installs the global subscriber. `verbosity`: -1 quiet, 0 info, 1 debug, 2+ trace.
pub fn init(format: LogFormat, verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // RUST_LOG, when set, replaces the -v/-q levels (as in every tracing-based tool); one that does not
    // parse is reported and the levels apply.
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!(
                "warning: RUST_LOG={spec:?} is not a valid filter ({e}); using the default levels"
            );
            EnvFilter::new(format!("warn,d1vault={level}"))
        }),
        _ => EnvFilter::new(format!("warn,d1vault={level}")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    // A second init (tests calling main logic twice) keeps the first subscriber; that is fine.
    let _ = result;
}
