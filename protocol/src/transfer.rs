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

/// The stream protocol for files (`/fedimpute/file-stream/1`): one stream per file. The
/// receiver still pulls, and still from the length of what it holds, but asks once and gets
/// the rest of the file as raw bytes on the stream: no request per chunk, no serialization of
/// the bytes, and the stream's own flow control as back-pressure. A sender that does not speak
/// it (an older node of this major) is pulled from with [`FILE_PROTOCOL`] instead.
///
/// On the stream: the receiver writes one [`StreamRequest`] frame; the sender answers with one
/// [`StreamAnswer`] frame and, after [`StreamAnswer::Sending`], exactly `length` bytes, then
/// closes its side. A frame is a 4-byte big-endian length and that many bytes of JSON.
pub const FILE_STREAM_PROTOCOL: &str = "/fedimpute/file-stream/1";

/// The largest frame either side reads; anything longer ends the stream.
pub const MAX_FRAME_BYTES: u32 = 16 * 1024;

/// Send me this job's file `sha256` from `offset` to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRequest {
    pub job_id: String,
    pub sha256: String,
    pub offset: u64,
}

/// The sender's answer to a [`StreamRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamAnswer {
    /// `length` raw bytes follow: the file from the offset asked for to its end.
    Sending { length: u64 },
    /// Not served (unknown job or file, or not for this peer), with the reason: do not ask again.
    Refused(String),
    /// The sender serves as many of this peer's streams as it will at once: ask again later.
    Busy,
}

/// A frame's bytes: the length prefix and the JSON of `value`.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let length = u32::try_from(body.len()).ok().filter(|l| *l <= MAX_FRAME_BYTES).ok_or(FrameError::TooLong)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The body length a frame's 4-byte prefix announces, if it is within [`MAX_FRAME_BYTES`].
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let length = u32::from_be_bytes(prefix);
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLong);
    }
    Ok(length as usize)
}

/// A frame's body, parsed.
pub fn decode_frame<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a frame longer than {MAX_FRAME_BYTES} bytes")]
    TooLong,
    #[error("a malformed frame: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_or_malformed_ones_are_refused() {
        let request = StreamRequest { job_id: "j".into(), sha256: "ab".into(), offset: 7 };
        let frame = encode_frame(&request).unwrap();
        let length = frame_length(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(length, frame.len() - 4);
        assert_eq!(decode_frame::<StreamRequest>(&frame[4..]).unwrap(), request);
        assert_eq!(frame_length((MAX_FRAME_BYTES + 1).to_be_bytes()), Err(FrameError::TooLong));
        assert_eq!(frame_length(u32::MAX.to_be_bytes()), Err(FrameError::TooLong));
        assert!(matches!(decode_frame::<StreamAnswer>(b"{\"sending\":{}}"), Err(FrameError::Malformed(_))));
        let huge = StreamAnswer::Refused("x".repeat(MAX_FRAME_BYTES as usize));
        assert_eq!(encode_frame(&huge), Err(FrameError::TooLong));
    }
}
