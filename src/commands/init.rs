//! `d1vault init [PATH]`: writes a commented starter configuration, as `restic init` and `wrangler init`
//! start a user off: the shipped R2 example (`config/r2.toml`), which `check-config` accepts once its
//! variables are set. It never overwrites a file.

use std::io::Write;
use std::path::Path;

use super::Failure;

/// The starter configuration: the shipped R2 example, compiled in.
const STARTER: &str = include_str!("../../config/r2.toml");

/// Writes the starter configuration to `path`, refusing an existing file.
pub fn run(path: &Path) -> Result<(), Failure> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Failure::usage(format!(
                "{} exists; d1vault init never overwrites a file (pass another path)",
                path.display()
            )),
            _ => Failure::failed(format!("writing {}: {e}", path.display())),
        })?;
    file.write_all(STARTER.as_bytes())
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    println!("wrote {}", path.display());
    println!(
        "next: set the variables it names at its top, edit [[database]], then run \
         `d1vault --config {} check-config`",
        path.display()
    );
    Ok(())
}
