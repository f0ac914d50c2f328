//! The file protocol (`/fedimpute/files/1`): how a node pulls a job's files from its peer.
//!
//! The receiver pulls: it asks for `length` bytes of a file at `offset` and gets them back, a
//! chunk per request, with a few requests in flight. That makes transfers back-pressured (the
//! receiver asks only for what it can write), resumable (after a disconnection or a restart it
//! asks again from the length of what it holds) and one-sided in state (the sender keeps none).
//!
//! The host pulls a job's inputs from the origin; the origin pulls the results from the host.
//! A sender serves only files announced in a signed job message to the peer on the other end of
//! the connection (TLS has proven who that is), and the receiver checks every file's size and
//! SHA-256 against that manifest before it uses it, so chunks need no signature of their own.

use serde::{Deserialize, Serialize};

/// The request-response protocol for file chunks.
pub const FILE_PROTOCOL: &str = "/fedimpute/files/1";

/// The largest chunk a sender returns, whatever was asked.
pub const MAX_CHUNK_BYTES: u32 = 4 * 1024 * 1024;

/// Give me `length` bytes of this job's file `sha256`, from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    pub job_id: String,
    pub sha256: String,
    pub offset: u64,
    pub length: u32,
}

/// A chunk, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkResponse {
    /// The bytes from the offset; shorter than asked only at the end of the file.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not served (unknown job or file, or not for this peer), with the reason.
    Refused(String),
}
