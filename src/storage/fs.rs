//! Filesystem storage (written next).
