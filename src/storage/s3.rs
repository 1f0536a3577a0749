//! S3 storage (written next).
