//! Writes the man pages for packagers: `d1vault.1` plus one page per subcommand (`d1vault-restore.1`, ...),
//! rendered by clap_mangen from the same clap definitions the binary parses, so they cannot drift apart.
//!
//! ```text
//! cargo run --example gen-man -- target/man      # default output directory: target/man
//! man -l target/man/d1vault.1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use d1vault::cli::Cli;

fn main() -> ExitCode {
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/man"));
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("error: cannot create {}: {e}", out_dir.display());
        return ExitCode::from(1);
    }
    // `generate_to` writes the top-level page and one page per (non-hidden) subcommand, recursively.
    if let Err(e) = clap_mangen::generate_to(Cli::command(), &out_dir) {
        eprintln!(
            "error: cannot write man pages to {}: {e}",
            out_dir.display()
        );
        return ExitCode::from(1);
    }
    println!("{}", out_dir.join("d1vault.1").display());
    ExitCode::SUCCESS
}
