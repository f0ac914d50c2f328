//! Pulling a file from a peer: on one file stream where the peer speaks that protocol, else by
//! chunk requests with a few in flight; resumable from what is already on disk either way, and
//! checked against the manifest's SHA-256.

use std::path::Path;
use std::time::{Duration, Instant};

use fedimpute_protocol::jobs::FileManifest;
use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse, StreamAnswer, StreamRequest};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use libp2p::PeerId;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::frames::{read_frame, write_frame};
use crate::config::TransferSection;
use crate::metrics::Metrics;
use crate::p2p::{Network, NetworkError, OpenStreamError};

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The peer could not be reached or stopped answering: try again later, from where it stopped.
    #[error("{0}")]
    Unreachable(#[from] NetworkError),
    /// The peer refused to serve the file.
    #[error("the peer refused: {0}")]
    Refused(String),
    /// The bytes do not match the manifest; the partial file is deleted.
    #[error("{0}")]
    Corrupt(String),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What to pull, and from whom.
pub struct Pull<'a> {
    pub network: &'a Network,
    pub metrics: &'a Metrics,
    pub settings: &'a TransferSection,
    pub peer: PeerId,
    pub job_id: &'a str,
    pub file: &'a FileManifest,
    /// `input` or `result`, for the metrics.
    pub kind: &'a str,
}

impl Pull<'_> {
    /// Pulls the file into `partial`, resuming after what it already holds. On success the
    /// file is complete and matches the manifest; the caller renames it into place.
    pub async fn run(&self, partial: &Path) -> Result<(), PullError> {
        if let Some(dir) = partial.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let size = self.file.size;
        let mut held = tokio::fs::metadata(partial).await.map(|m| m.len()).unwrap_or(0);
        if held > size {
            held = 0;
        }
        // Whatever was written before a crash is a correct prefix of the file (a write lands at
        // its offset or not at all), so the pull resumes after it; the final hash catches the
        // rest (e.g. a power loss that kept the length but not the bytes).
        let mut hasher = Sha256::new();
        let mut out =
            tokio::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(partial).await?;
        out.set_len(held).await?;
        if held > 0 {
            let mut buf = vec![0u8; 1 << 20];
            let mut left = held;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = out.read(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            tracing::info!(job = %self.job_id, file = %self.file.name, resumed_at = held, size, "resuming a transfer");
        }
        let started = Instant::now();
        let offset = match self.pull_stream(&mut out, &mut hasher, held, started).await? {
            Some(offset) => offset,
            None => {
                self.metrics.file_pull("chunks");
                self.pull_chunks(&mut out, &mut hasher, held, started).await?
            }
        };
        out.sync_all().await?;
        drop(out);
        let digest = hex::encode(hasher.finalize());
        if offset != size || digest != self.file.sha256 {
            let _ = tokio::fs::remove_file(partial).await;
            return Err(PullError::Corrupt(format!(
                "{}: SHA-256 {digest} of {offset} bytes does not match the manifest ({} of {size} bytes)",
                self.file.name, self.file.sha256
            )));
        }
        Ok(())
    }

    /// Pulls the rest of the file from `offset` on one file stream: the network is read in
    /// large blocks while another task writes and hashes the blocks before them. Returns the
    /// length held at the end, or `None` if the peer does not speak the file-stream protocol.
    /// Everything read is on disk before this returns, an error included, so a retry resumes
    /// after it and no byte crosses the network twice.
    async fn pull_stream(
        &self,
        out: &mut tokio::fs::File,
        hasher: &mut Sha256,
        offset: u64,
        started: Instant,
    ) -> Result<Option<u64>, PullError> {
        let unreachable =
            |reason: String| PullError::Unreachable(NetworkError::Request { peer: self.peer.to_string(), reason });
        // The connection stays open while the stream is in use, however long the file takes.
        let _in_use = self.network.stream_in_use(self.peer);
        let mut stream = match self.network.open_file_stream(self.peer).await {
            Ok(stream) => stream,
            Err(OpenStreamError::Unsupported) => return Ok(None),
            Err(e) => return Err(unreachable(e.to_string())),
        };
        let request = StreamRequest { job_id: self.job_id.to_string(), sha256: self.file.sha256.clone(), offset };
        let answer = tokio::time::timeout(STREAM_ANSWER_TIMEOUT, async {
            write_frame(&mut stream, &request).await?;
            read_frame::<StreamAnswer>(&mut stream).await
        })
        .await
        .map_err(|_| unreachable(format!("no answer to a file stream within {} s", STREAM_ANSWER_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(format!("file stream: {e}")))?;
        let length = match answer {
            StreamAnswer::Sending { length } => length,
            StreamAnswer::Refused(reason) => return Err(PullError::Refused(reason)),
            StreamAnswer::Busy => {
                return Err(unreachable("the peer is serving as many of our streams as it will".into()));
            }
        };
        self.metrics.file_pull("stream");
        let expected = self.file.size - offset;
        if length != expected {
            return Err(PullError::Corrupt(format!(
                "{}: the peer offers {length} bytes from offset {offset}, the manifest says {expected}",
                self.file.name
            )));
        }

        // The writer owns the file and the hash for the duration; it hands them back at the end.
        let (blocks, mut received) = tokio::sync::mpsc::channel::<Vec<u8>>(STREAM_BLOCKS_IN_FLIGHT);
        // One blocking thread writes and hashes, beside the task reading the network: no hop to
        // tokio's blocking pool per write.
        let mut file = out.try_clone().await?.into_std().await;
        let mut digest = std::mem::take(hasher);
        let writer = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut written = 0u64;
            while let Some(block) = received.blocking_recv() {
                file.write_all(&block)?;
                digest.update(&block);
                written += block.len() as u64;
            }
            Ok::<_, std::io::Error>((digest, written))
        });
        let block_bytes = stream_block_bytes(self.settings.max_bytes_per_sec);
        let mut read = 0u64;
        let mut failure = None;
        while read < length {
            let mut block = vec![0u8; (length - read).min(block_bytes as u64) as usize];
            match read_some(&mut stream, &mut block).await {
                Ok(0) => {
                    failure = Some(unreachable(format!("the file stream ended after {read} of {length} bytes")));
                    break;
                }
                Ok(n) => {
                    block.truncate(n);
                    read += n as u64;
                    self.metrics.transfer("received", self.kind, n as u64);
                    if blocks.send(block).await.is_err() {
                        break; // the writer failed; its error is below
                    }
                    self.throttle(read, started).await;
                }
                Err(e) => {
                    failure = Some(unreachable(format!("file stream: {e}")));
                    break;
                }
            }
        }
        drop(blocks);
        let (digest, written) = writer.await.map_err(|e| std::io::Error::other(e.to_string()))??;
        *hasher = digest;
        if let Some(failure) = failure {
            return Err(failure);
        }
        Ok(Some(offset + written))
    }

    /// Pulls the rest of the file from `offset` by chunk requests (the file protocol), a few
    /// in flight. Returns the length held at the end.
    async fn pull_chunks(
        &self,
        out: &mut tokio::fs::File,
        hasher: &mut Sha256,
        mut offset: u64,
        started: Instant,
    ) -> Result<u64, PullError> {
        let size = self.file.size;
        let chunk = u64::from(self.settings.chunk_bytes);
        let window = self.settings.parallel_chunks as usize;
        let mut next = offset;
        let mut in_flight = FuturesOrdered::new();
        let mut pulled = 0u64;
        while offset < size {
            while in_flight.len() < window && next < size {
                let length = chunk.min(size - next) as u32;
                let request = ChunkRequest {
                    job_id: self.job_id.to_string(),
                    sha256: self.file.sha256.clone(),
                    offset: next,
                    length,
                };
                let network = self.network.clone();
                let peer = self.peer;
                in_flight.push_back(async move { (length, network.chunk_request(peer, request).await) });
                next += u64::from(length);
            }
            let Some((length, answer)) = in_flight.next().await else { break };
            let data = match answer? {
                ChunkResponse::Data(data) => data,
                ChunkResponse::Refused(reason) => return Err(PullError::Refused(reason)),
            };
            if data.len() != length as usize {
                return Err(PullError::Corrupt(format!(
                    "{}: got {} bytes at offset {offset}, expected {length}",
                    self.file.name,
                    data.len()
                )));
            }
            out.write_all(&data).await?;
            hasher.update(&data);
            offset += data.len() as u64;
            pulled += data.len() as u64;
            self.metrics.transfer("received", self.kind, data.len() as u64);
            self.throttle(pulled, started).await;
        }
        Ok(offset)
    }

    /// Sleeps as long as needed to keep the pull under `max_bytes_per_sec`.
    async fn throttle(&self, pulled: u64, started: Instant) {
        pace(pulled, started, self.settings.max_bytes_per_sec).await;
    }
}

/// Sleeps as long as needed for `moved` bytes since `started` to stay under `limit` bytes a
/// second (0: no limit): the puller keeps to its node's `max_bytes_per_sec`, the sender of a
/// file stream to its node's `max_send_bytes_per_sec`.
pub async fn pace(moved: u64, started: Instant, limit: u64) {
    if limit == 0 {
        return;
    }
    let due = Duration::from_secs_f64(moved as f64 / limit as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

/// Bytes moved per read or write on a file stream: large blocks, or about an eighth of a
/// second's worth under a rate limit, so that pacing stays smooth.
pub fn stream_block_bytes(limit: u64) -> usize {
    if limit == 0 {
        return STREAM_BLOCK_BYTES;
    }
    (limit / 8).clamp(1024, STREAM_BLOCK_BYTES as u64) as usize
}

/// How long a puller waits for the sender's answer on a new file stream.
const STREAM_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per read on a file stream, and blocks read ahead of the writer.
const STREAM_BLOCK_BYTES: usize = 1 << 20;
const STREAM_BLOCKS_IN_FLIGHT: usize = 4;

/// Reads what is there (at least a byte, or 0 at the end) into `buf`.
async fn read_some(stream: &mut libp2p::Stream, buf: &mut [u8]) -> std::io::Result<usize> {
    futures_util::AsyncReadExt::read(stream, buf).await
}
