//! The harness every suite shares, one concept a module: the test [`bed`] (scratch directory, S3 server,
//! optional d1-emulator, config writer, quick backup sources), the S3 stores ([`s3`]: in process, Garage,
//! moto), a TCP [`proxy`] that throttles, holds or cuts connections, the `d1vault` binary runner
//! ([`run`]), the [`fixture`] and other test data, bodies that break on purpose ([`readers`]) and what a
//! test leaves on disk ([`files`]), and the environment the example configs and the bad-config corpus read
//! ([`config_env`]).

pub(crate) mod bed;
pub(crate) mod config_env;
pub(crate) mod files;
pub(crate) mod fixture;
pub(crate) mod proxy;
pub(crate) mod readers;
pub(crate) mod receiver;
pub(crate) mod run;
pub(crate) mod s3;
