//! Writes the man pages for packagers: `d1vault.1` plus one page per subcommand (`d1vault-restore.1`, ...),
//! rendered by clap_mangen from the same clap definitions the binary parses, so they cannot drift apart.
//!
//! ```text
//! cargo run --example gen-man -- target/man      # default output directory: target/man
//! man -l target/man/d1vault.1
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let out_dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/man"));
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("error: cannot create {}: {e}", out_dir.display());
        return ExitCode::from(1);
    }
    // `d1vault.1` with its EXIT STATUS, ENVIRONMENT, FILES and EXAMPLES, and a page per subcommand.
    if let Err(e) = d1vault::man::write_pages(&out_dir) {
        eprintln!(
            "error: cannot write man pages to {}: {e}",
            out_dir.display()
        );
        return ExitCode::from(1);
    }
    println!("{}", out_dir.join("d1vault.1").display());
    ExitCode::SUCCESS
}
