//! Loading and validating the TOML file (written next).
