//! Compression of dumps on a thread of their own (backup), then age encryption when `[encryption]` is set,
//! and streaming decompression (restore).
//!
//! A backup compresses on a blocking thread fed through a bounded channel, not inside an `AsyncRead` polled
//! by the upload: zstd's multithreaded mode blocks its caller while its workers catch up, and a tokio worker
//! blocked there stalled the download, the dump inspector's feed and the part uploads with it.

use std::io::{self, Write};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncRead};
use tokio::sync::mpsc;
use zstd::stream::raw::CParameter;

use crate::config::Compression;
use crate::encryption::Recipients;

/// zstd compresses in jobs of this many bytes on worker threads of its own. In a worker, each job is
/// compressed from one contiguous buffer; single-threaded streaming instead compresses nearly every block
/// against a wrapped-around window (zstd's slower "extDict" path), which profiling showed costing about a
/// third more CPU. The job size bounds the memory the workers hold (a few jobs' worth); 2 MiB keeps it
/// small without hurting the ratio (jobs overlap).
const ZSTD_JOB_SIZE: u32 = 2 * 1024 * 1024;

/// Two workers, although one would compress as fast as `zstd -T1`: with one, it sat idle between jobs
/// until the thread feeding it got the CPU back, and a backup took about 6% longer on two CPUs
/// (scripts/bench-backup, seven A/B pairs). Total CPU is the same; memory grows by about 3 MiB.
const ZSTD_WORKERS: u32 = 2;

/// Compressed bytes go to the upload in chunks of about this size: one channel hand-over per zstd output
/// block (128 KiB or less) would cost more than it carries.
const OUTPUT_CHUNK: usize = 256 * 1024;

/// The most a zstd or gzip encoder writes at once (zstd's recommended output buffer is one 128 KiB block
/// plus a little), so that a chunk reaching [`OUTPUT_CHUNK`] never has to grow.
const LARGEST_ENCODER_WRITE: usize = 132 * 1024;

/// Chunks waiting in each direction (1 MiB each way): zstd holds a few 2 MiB jobs of its own, so a deeper
/// queue only adds memory (8 was no faster than 4 in three A/B pairs of scripts/bench-backup).
const CHUNKS_IN_FLIGHT: usize = 4;

/// A boxed byte stream borrowing from the pipeline's earlier stages.
pub type BoxRead<'a> = Box<dyn AsyncRead + Send + Unpin + 'a>;

/// What the compression thread is told.
enum Input {
    /// The next bytes of SQL.
    Chunk(Bytes),
    /// The dump is complete and valid: end the stream.
    End,
}

/// Size and sha256 (hex) of the stored (compressed) bytes, for the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDigest {
    /// Bytes stored.
    pub size: u64,
    /// sha256 (hex) of the stored bytes.
    pub sha256: String,
}

/// The compression thread of one backup. Its output, [`Compressor::spawn`]'s stream, reaches EOF only after
/// [`Compressor::finish`]; if the compressor is dropped first (a bad or interrupted dump), the stream ends
/// with an error instead, so an upload reading it stores nothing.
pub struct Compressor {
    input: mpsc::Sender<Input>,
    thread: tokio::task::JoinHandle<io::Result<StoredDigest>>,
}

impl Compressor {
    /// Starts compressing as configured on tokio's blocking pool (so it must be called inside a tokio
    /// runtime), encrypting the compressed bytes to `encryption` when given; returns the compressor and the
    /// stream of stored bytes for the upload.
    pub fn spawn(
        compression: Compression,
        encryption: Option<Recipients>,
    ) -> (Compressor, BoxRead<'static>) {
        let (input, input_receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (output, mut output_receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let thread = tokio::task::spawn_blocking(move || {
            let sink = Sink::new(ChunkSender::new(output), encryption.as_ref())?;
            compress_chunks(compression, input_receiver, sink)
        });
        let stream = futures_util::stream::poll_fn(move |cx| output_receiver.poll_recv(cx));
        let compressor = Compressor { input, thread };
        (
            compressor,
            Box::new(tokio_util::io::StreamReader::new(stream)),
        )
    }

    /// Hands over the next chunk of SQL. Returns false when the thread stopped: the upload stopped reading
    /// or compressing failed; [`Compressor::finish`] then says why.
    pub async fn push(&self, chunk: Bytes) -> bool {
        self.input.send(Input::Chunk(chunk)).await.is_ok()
    }

    /// Ends the stream once every chunk was pushed and the dump was found valid, and returns the stored
    /// bytes' size and sha256 once the thread has handed over the last of them; or, if the thread had
    /// stopped, why.
    pub async fn finish(self) -> io::Result<StoredDigest> {
        let _ = self.input.send(Input::End).await;
        self.thread
            .await
            .map_err(|e| io::Error::other(format!("the compression thread failed: {e}")))?
    }
}

/// The thread's body: compresses every chunk until told the dump ended.
fn compress_chunks(
    compression: Compression,
    mut input: mpsc::Receiver<Input>,
    output: Sink,
) -> io::Result<StoredDigest> {
    let mut encoder = Encoder::new(compression, output)?;
    while let Some(message) = input.blocking_recv() {
        match message {
            Input::Chunk(chunk) => encoder.write(chunk)?,
            Input::End => return encoder.finish()?.finish()?.finish(),
        }
    }
    // The feed stopped without `End`; dropping the encoder ends the stream with an error.
    Err(io::Error::other("the dump stopped before its end"))
}

/// Where compressed bytes go: straight to the upload, or through age first. With `[encryption]` there is
/// no other path: the plain variant is never built when recipients are given.
enum Sink {
    Plain(ChunkSender),
    Age(age::stream::StreamWriter<ChunkSender>),
}

impl Sink {
    fn new(output: ChunkSender, encryption: Option<&Recipients>) -> io::Result<Sink> {
        Ok(match encryption {
            Some(recipients) => Sink::Age(recipients.encrypt(output)?),
            None => Sink::Plain(output),
        })
    }

    /// Sends `chunk` on unchanged by the compression (which has none): as it is, or encrypted.
    fn pass(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Sink::Plain(output) => output.pass(chunk),
            Sink::Age(writer) => writer.write_all(&chunk),
        }
    }

    /// Ends the age stream (its last chunk and tag), and gives the upload's side back.
    fn finish(self) -> io::Result<ChunkSender> {
        match self {
            Sink::Plain(output) => Ok(output),
            Sink::Age(writer) => writer.finish(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(output) => output.write(bytes),
            Sink::Age(writer) => writer.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(output) => output.flush(),
            Sink::Age(writer) => writer.flush(),
        }
    }
}

/// The configured compression, writing into a [`Sink`].
enum Encoder {
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
    Gzip(flate2::write::GzEncoder<Sink>),
    None(Sink),
}

impl Encoder {
    fn new(compression: Compression, output: Sink) -> io::Result<Encoder> {
        Ok(match compression {
            Compression::Zstd { level } => {
                let mut encoder = zstd::stream::write::Encoder::new(output, level)?;
                encoder.multithread(ZSTD_WORKERS)?;
                encoder.set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE))?;
                Encoder::Zstd(encoder)
            }
            Compression::Gzip { level } => Encoder::Gzip(flate2::write::GzEncoder::new(
                output,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
            Compression::None => Encoder::None(output),
        })
    }

    fn write(&mut self, chunk: Bytes) -> io::Result<()> {
        match self {
            Encoder::Zstd(encoder) => encoder.write_all(&chunk),
            Encoder::Gzip(encoder) => encoder.write_all(&chunk),
            Encoder::None(output) => output.pass(chunk),
        }
    }

    /// Ends the compressed stream (zstd's or gzip's trailer) and gives the output back.
    fn finish(self) -> io::Result<Sink> {
        match self {
            Encoder::Zstd(encoder) => encoder.finish(),
            Encoder::Gzip(encoder) => encoder.finish(),
            Encoder::None(output) => Ok(output),
        }
    }
}

/// Collects compressed bytes into chunks for the upload, counting and hashing them on the way. Dropped
/// before [`ChunkSender::finish`], it ends the stream with an error, never with a clean EOF.
struct ChunkSender {
    chunk: BytesMut,
    sender: mpsc::Sender<io::Result<Bytes>>,
    sha256: Sha256,
    size: u64,
    finished: bool,
}

impl ChunkSender {
    fn new(sender: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChunkSender {
            chunk: BytesMut::new(),
            sender,
            sha256: Sha256::new(),
            size: 0,
            finished: false,
        }
    }

    /// Sends the collected bytes, if any.
    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = self.chunk.split().freeze();
        // Room for a whole chunk at once: growing from empty by doubling copied each chunk several times.
        self.chunk.reserve(OUTPUT_CHUNK + LARGEST_ENCODER_WRITE);
        self.send(chunk)
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.sha256.update(&chunk);
        self.size += chunk.len() as u64;
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }

    /// Sends `chunk` as it is (no compression), after anything collected before it.
    fn pass(&mut self, chunk: Bytes) -> io::Result<()> {
        self.send_chunk()?;
        self.send(chunk)
    }

    /// Sends the rest; the stream then ends cleanly. Returns what was sent.
    fn finish(mut self) -> io::Result<StoredDigest> {
        self.send_chunk()?;
        self.finished = true;
        Ok(StoredDigest {
            size: self.size,
            sha256: hex::encode(std::mem::take(&mut self.sha256).finalize()),
        })
    }
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.chunk.extend_from_slice(bytes);
        if self.chunk.len() >= OUTPUT_CHUNK {
            self.send_chunk()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ChunkSender {
    fn drop(&mut self) {
        if !self.finished {
            // The receiver must not mistake the channel closing for the end of the dump.
            let _ = self.sender.blocking_send(Err(io::Error::other(
                "compression stopped before the end of the dump",
            )));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, BufReader};

    const ALL: [(Compression, &str); 3] = [
        (Compression::Zstd { level: 3 }, "zstd"),
        (Compression::Gzip { level: 6 }, "gzip"),
        (Compression::None, "none"),
    ];

    /// Pushes `chunks`, then either finishes or drops the compressor, and reads the stream meanwhile.
    async fn run(
        compression: Compression,
        chunks: &[Bytes],
        finish: bool,
    ) -> (io::Result<Vec<u8>>, Option<StoredDigest>) {
        let (compressor, mut stream) = Compressor::spawn(compression, None);
        let reader = async move {
            let mut stored = Vec::new();
            stream.read_to_end(&mut stored).await.map(|_| stored)
        };
        let writer = async move {
            for chunk in chunks {
                assert!(compressor.push(chunk.clone()).await);
            }
            if finish {
                Some(compressor.finish().await.unwrap())
            } else {
                drop(compressor);
                None
            }
        };
        tokio::join!(reader, writer)
    }

    fn chunks() -> Vec<Bytes> {
        (0..40)
            .map(|i| {
                Bytes::from(format!("INSERT INTO \"t\" VALUES({i}, 'row {i}');\n").repeat(3000))
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finished_stream_decompresses_to_the_input_and_its_digest_matches() {
        let chunks = chunks();
        let sql: Vec<u8> = chunks.concat();
        for (compression, name) in ALL {
            let (stored, digest) = run(compression, &chunks, true).await;
            let stored = stored.unwrap();
            let digest = digest.unwrap();
            assert_eq!(digest.size, stored.len() as u64, "{name}");
            assert_eq!(
                digest.sha256,
                hex::encode(Sha256::digest(&stored)),
                "{name}"
            );
            let mut decoded = Vec::new();
            decompress(BufReader::new(&stored[..]), name)
                .unwrap()
                .read_to_end(&mut decoded)
                .await
                .unwrap();
            assert!(decoded == sql, "{name}: the round trip changed the dump");
            if name != "none" {
                assert!(stored.len() < sql.len() / 4, "{name} did not compress");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compressor_dropped_before_finish_ends_the_stream_with_an_error() {
        // The upload treats a clean EOF as a complete object: a dump that stopped early must never end
        // that way, whatever the compression.
        for (compression, name) in ALL {
            let (stored, _) = run(compression, &chunks(), false).await;
            assert!(stored.is_err(), "{name}: the stream ended cleanly");
        }
    }
}
