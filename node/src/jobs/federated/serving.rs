//! Serving job files to the peer they are meant for, both ways: an origin serves a job's inputs
//! to its host, a host serves its results to its origin. By chunk requests (the file protocol)
//! or on one stream per file (the file-stream protocol); the same check decides either way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedimpute_protocol::transfer::{ChunkRequest, ChunkResponse, StreamAnswer, StreamRequest};
use libp2p::PeerId;

use super::Federated;
use super::frames::{read_frame, write_frame};
use super::transfer::{pace, stream_block_bytes};
use crate::store::jobs::{JobRole, JobState};

/// File streams served to one peer at once; more are answered "busy" (ask again later).
pub(super) const STREAMS_PER_PEER: usize = 8;

impl Federated {
    /// The job file `sha256` of `job_id` that `peer` may pull, with its kind: an origin serves
    /// its inputs to the job's host, a host serves results to the job's origin. Nothing else (a
    /// panel file above all) has a path this can reach.
    async fn served_file(&self, peer: PeerId, job_id: &str, sha256: &str) -> Option<(PathBuf, &'static str)> {
        let job = self.jobs.store.job(job_id).await.ok()??;
        if job.peer.as_deref() != Some(&peer.to_string()) {
            return None;
        }
        match job.role() {
            JobRole::Origin if job.state().is_live() && job.inputs_deleted_at.is_none() => {
                let inputs = self.jobs.store.job_inputs(&job.id).await.unwrap_or_default();
                let input = inputs.iter().find(|i| i.sha256 == sha256)?;
                Some((self.jobs.files.input_path(&job.id, input.idx), "input"))
            }
            JobRole::Host if job.state() == JobState::Completed => {
                let results = self.jobs.store.job_results(&job.id).await.unwrap_or_default();
                let file = results.into_iter().find(|r| r.sha256 == sha256)?;
                Some((self.jobs.results_dir(&job.id).join(file.name), "result"))
            }
            _ => None,
        }
    }

    /// Serves a chunk of a job file to the peer it is meant for (the file protocol).
    pub(super) async fn serve_chunk(&self, peer: PeerId, request: ChunkRequest) -> ChunkResponse {
        let Some((path, kind)) = self.served_file(peer, &request.job_id, &request.sha256).await else {
            return ChunkResponse::Refused(not_for_you(&request.job_id, &request.sha256));
        };
        match read_chunk(&path, request.offset, request.length).await {
            Ok(data) => {
                self.metrics.transfer("sent", kind, data.len() as u64);
                ChunkResponse::Data(data)
            }
            Err(e) => {
                tracing::warn!(job = %request.job_id, error = %e, "cannot read a file a peer asked for");
                ChunkResponse::Refused("the file cannot be read".into())
            }
        }
    }

    /// Serves a job file on a stream a peer opened (the file-stream protocol): its request, the
    /// answer, then the file from the offset asked for, read in large blocks. A peer gets at most
    /// [`STREAMS_PER_PEER`] streams served at once, and must ask within [`STREAM_REQUEST_TIMEOUT`].
    pub(super) async fn serve_stream(&self, peer: PeerId, mut stream: libp2p::Stream) {
        use futures_util::AsyncWriteExt;
        let _in_use = self.network.stream_in_use(peer);
        let Some(_slot) = self.stream_slots.take(peer) else {
            let _ = write_frame(&mut stream, &StreamAnswer::Busy).await;
            let _ = stream.close().await;
            return;
        };
        let request = match tokio::time::timeout(STREAM_REQUEST_TIMEOUT, read_frame::<StreamRequest>(&mut stream)).await
        {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "a file stream without a valid request");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "a file stream without a request in time");
                return;
            }
        };
        let served = self.served_file(peer, &request.job_id, &request.sha256).await;
        let opened = match served {
            Some((path, kind)) => match open_at(&path, request.offset).await {
                Ok(Some((file, length))) => Ok((file, length, kind)),
                Ok(None) => Err(format!("offset {} is past the end of the file", request.offset)),
                Err(e) => {
                    tracing::warn!(job = %request.job_id, error = %e, "cannot read a file a peer asked for");
                    Err("the file cannot be read".into())
                }
            },
            None => Err(not_for_you(&request.job_id, &request.sha256)),
        };
        let (mut file, length, kind) = match opened {
            Ok(opened) => opened,
            Err(reason) => {
                let _ = write_frame(&mut stream, &StreamAnswer::Refused(reason)).await;
                let _ = stream.close().await;
                return;
            }
        };
        if let Err(e) = self.send_file(&mut stream, &mut file, length, kind).await {
            tracing::debug!(%peer, job = %request.job_id, error = %e, "a file stream ended early");
        }
    }

    async fn send_file(
        &self,
        stream: &mut libp2p::Stream,
        file: &mut tokio::fs::File,
        length: u64,
        kind: &str,
    ) -> std::io::Result<()> {
        use futures_util::AsyncWriteExt;
        use tokio::io::AsyncReadExt;
        write_frame(stream, &StreamAnswer::Sending { length }).await?;
        let limit = self.jobs.config.transfer.max_send_bytes_per_sec;
        let mut buf = vec![0u8; stream_block_bytes(limit)];
        let (started, mut sent) = (Instant::now(), 0u64);
        let mut left = length;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while being sent"));
            }
            stream.write_all(&buf[..n]).await?;
            self.metrics.transfer("sent", kind, n as u64);
            left -= n as u64;
            sent += n as u64;
            pace(sent, started, limit).await;
        }
        stream.close().await
    }
}

fn not_for_you(job_id: &str, sha256: &str) -> String {
    format!("no file {sha256} of job {job_id} for you")
}

/// Reads up to `length` bytes (at most a chunk) of `path` at `offset` for a peer.
async fn read_chunk(path: &Path, offset: u64, length: u32) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let Some((file, left)) = open_at(path, offset).await? else { return Ok(Vec::new()) };
    let length = u64::from(length.min(fedimpute_protocol::transfer::MAX_CHUNK_BYTES)).min(left);
    let mut buf = Vec::with_capacity(length as usize);
    file.take(length).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A file opened at `offset`, with the length from there to its end; `None` past the end.
async fn open_at(path: &Path, offset: u64) -> std::io::Result<Option<(tokio::fs::File, u64)>> {
    use tokio::io::AsyncSeekExt;
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    if offset > size {
        return Ok(None);
    }
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(Some((file, size - offset)))
}

/// How long a peer has to send its request on a file stream it opened.
const STREAM_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How many file streams each peer has being served.
#[derive(Clone, Default)]
pub(super) struct StreamSlots(Arc<Mutex<HashMap<PeerId, usize>>>);

/// One served stream; its slot is given back when it is dropped.
pub(super) struct StreamSlot {
    slots: StreamSlots,
    peer: PeerId,
}

impl StreamSlots {
    /// A slot for `peer`, unless it has [`STREAMS_PER_PEER`] already.
    pub(super) fn take(&self, peer: PeerId) -> Option<StreamSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = map.entry(peer).or_default();
        if *count >= STREAMS_PER_PEER {
            return None;
        }
        *count += 1;
        Some(StreamSlot { slots: self.clone(), peer })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = map.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_a_bounded_number_of_slots_and_they_come_back() {
        let slots = StreamSlots::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let held: Vec<StreamSlot> = (0..STREAMS_PER_PEER).map(|_| slots.take(a).unwrap()).collect();
        assert!(slots.take(a).is_none(), "one slot too many");
        assert!(slots.take(b).is_some(), "another peer is not held back");
        drop(held);
        let again = slots.take(a).expect("slots come back when dropped");
        assert_eq!(slots.0.lock().unwrap()[&a], 1);
        drop(again);
        assert!(!slots.0.lock().unwrap().contains_key(&a), "no entry is left for an idle peer");
    }
}
