//! The one writer of D1's export format (written next).
