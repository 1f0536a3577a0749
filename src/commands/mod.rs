//! One module per subcommand. Each exposes `pub async fn run(...) -> Result<(), Failure>`; `main.rs` maps a
//! [`Failure`] to the contract's exit status (1 operation failed, 2 usage or configuration error).

pub mod check_config;

use std::fmt;

/// Why a command did not succeed, with the exit status the contract assigns to it.
#[derive(Debug)]
pub struct Failure {
    /// `1`: the operation failed. `2`: usage or configuration error.
    pub exit_code: u8,
    /// What went wrong and what to do, already phrased for the user (may span lines).
    pub message: String,
}

impl Failure {
    /// The operation failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 1,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit_code: 2,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}
