//! Pulling a file from a peer over the file protocol: chunked, a few requests in flight,
//! resumable from what is already on disk, and checked against the manifest's SHA-256.

use std::path::Path;
use std::time::{Duration, Instant};

use fedimpute_protocol::jobs::FileManifest;
use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use libp2p::PeerId;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::TransferSection;
use crate::metrics::Metrics;
use crate::p2p::{Network, NetworkError};

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
        let mut offset = held;
        let chunk = u64::from(self.settings.chunk_bytes);
        let window = self.settings.parallel_chunks as usize;
        let mut next = offset;
        let mut in_flight = FuturesOrdered::new();
        let started = Instant::now();
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

    /// Sleeps as long as needed to keep the pull under `max_bytes_per_sec`.
    async fn throttle(&self, pulled: u64, started: Instant) {
        let limit = self.settings.max_bytes_per_sec;
        if limit == 0 {
            return;
        }
        let due = Duration::from_secs_f64(pulled as f64 / limit as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Reads up to `length` bytes of `path` at `offset` for a peer.
pub async fn read_chunk(path: &Path, offset: u64, length: u32) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let length = length.min(fedimpute_protocol::transfer::MAX_CHUNK_BYTES) as usize;
    let mut buf = vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}
