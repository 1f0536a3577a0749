//! Streaming compression and decompression of dumps (async-compression), chosen at run time.

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use tokio::io::{AsyncBufRead, AsyncRead};

use crate::config::Compression;

/// zstd compresses in one worker thread of its own (`-T1`, as the `zstd` command does), in jobs of this
/// many bytes. In a worker, each job is compressed from one contiguous buffer; single-threaded streaming
/// instead compresses nearly every block against a wrapped-around window (zstd's slower "extDict" path),
/// which profiling showed costing about a third more CPU. The job size bounds the memory the worker
/// holds (a few jobs' worth); 2 MiB keeps it small without hurting the ratio (jobs overlap).
const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;

/// A boxed byte stream borrowing from the pipeline's earlier stages.
pub type BoxRead<'a> = Box<dyn AsyncRead + Send + Unpin + 'a>;

/// Compresses `input` as configured.
pub fn compress<'a>(
    input: impl AsyncBufRead + Send + Unpin + 'a,
    compression: Compression,
) -> BoxRead<'a> {
    match compression {
        Compression::Zstd { level } => Box::new(ZstdEncoder::with_quality_and_params(
            input,
            Level::Precise(level),
            &[
                CParameter::nb_workers(1),
                CParameter::job_size(ZSTD_JOB_SIZE),
            ],
        )),
        Compression::Gzip { level } => {
            Box::new(GzipEncoder::with_quality(input, Level::Precise(level)))
        }
        Compression::None => Box::new(input),
    }
}

/// Decompresses `input` stored with the manifest's `compression` name (`zstd`, `gzip`, `none`).
pub fn decompress<'a>(
    input: impl AsyncBufRead + Send + Unpin + 'a,
    compression: &str,
) -> Result<BoxRead<'a>, String> {
    Ok(match compression {
        "zstd" => Box::new(ZstdDecoder::new(input)),
        "gzip" => Box::new(GzipDecoder::new(input)),
        "none" => Box::new(input),
        other => return Err(format!("unknown compression {other:?} in manifest")),
    })
}
