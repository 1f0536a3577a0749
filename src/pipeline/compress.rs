//! Streaming compression and decompression of dumps (async-compression), chosen at run time.

use async_compression::Level;
use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder};
use tokio::io::{AsyncBufRead, AsyncRead};

use crate::config::Compression;

/// A boxed byte stream borrowing from the pipeline's earlier stages.
pub type BoxRead<'a> = Box<dyn AsyncRead + Send + Unpin + 'a>;

/// Compresses `input` as configured.
pub fn compress<'a>(
    input: impl AsyncBufRead + Send + Unpin + 'a,
    compression: Compression,
) -> BoxRead<'a> {
    match compression {
        Compression::Zstd { level } => {
            Box::new(ZstdEncoder::with_quality(input, Level::Precise(level)))
        }
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
