//! Frames on a file stream (see [`fedimpute_protocol::transfer::FILE_STREAM_PROTOCOL`]): a
//! 4-byte big-endian length, then that many bytes of JSON. The puller writes a request and reads
//! the answer; the sender does the reverse.

use fedimpute_protocol::transfer::{decode_frame, encode_frame, frame_length};
use futures_util::{AsyncReadExt, AsyncWriteExt};

/// Reads one frame.
pub async fn read_frame<T: for<'de> serde::Deserialize<'de>>(stream: &mut libp2p::Stream) -> std::io::Result<T> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let length = frame_length(prefix).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    decode_frame(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes one frame and flushes it.
pub async fn write_frame<T: serde::Serialize>(stream: &mut libp2p::Stream, value: &T) -> std::io::Result<()> {
    let frame = encode_frame(value).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&frame).await?;
    stream.flush().await
}
