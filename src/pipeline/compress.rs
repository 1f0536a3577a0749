//! Streaming compression and decompression of dumps (async-compression), chosen at run time.

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use async_compression::zstd::CParameter;
use tokio::io::{AsyncBufRead, AsyncRead};

use crate::config::Compression;

/// zstd compresses in jobs of this many bytes on worker threads of its own. In a worker, each job is
/// compressed from one contiguous buffer; single-threaded streaming instead compresses nearly every block
/// against a wrapped-around window (zstd's slower "extDict" path), which profiling showed costing about a
/// third more CPU. The job size bounds the memory the workers hold (a few jobs' worth); 2 MiB keeps it
/// small without hurting the ratio (jobs overlap).
const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;

/// Two workers, although one would compress as fast as `zstd -T1`: with one, it sat idle between jobs
/// until the thread feeding it (which also downloads and uploads) got the CPU back, and a backup took
/// about 6% longer on two CPUs (scripts/bench-backup, seven A/B pairs). Total CPU is the same; memory
/// grows by about 3 MiB.
const ZSTD_WORKERS: u32 = 2;

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
                CParameter::nb_workers(ZSTD_WORKERS),
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
