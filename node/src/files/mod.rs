//! The content-addressed file store: `DATA_DIR/files/<aa>/<sha256>`.
//!
//! A file is written under a temporary name in `files/tmp/`, hashed as it streams in, synced,
//! and renamed to its hash only when complete, so a crash never leaves a half file that looks
//! whole. Names from users never become paths: a stored file is named by its content.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub sha256: String,
    pub size: u64,
}

/// Why a file was not stored.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("upload failed: {0}")]
    Source(String),
    #[error("file store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// SHA-256 and size of a file, read in chunks (result files can be gigabytes).
pub async fn hash_file(path: &Path) -> std::io::Result<StoredFile> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(StoredFile { sha256: hex::encode(hasher.finalize()), size })
}

/// Handle on the store; cheap to clone.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(data_dir: &Path) -> Self {
        Self { root: data_dir.join("files") }
    }

    /// Where the file with this digest lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(sha256)
    }

    /// Streams chunks into the store, failing (and leaving nothing) past `limit` bytes.
    pub async fn put_stream<S, E>(&self, mut chunks: S, limit: u64) -> Result<StoredFile, FileStoreError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(hex::encode(crate::secrets::random_bytes::<12>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| FileStoreError::Source(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(FileStoreError::TooLarge { limit });
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            Ok(StoredFile { sha256: hex::encode(hasher.finalize()), size })
        }
        .await;
        match result {
            Ok(stored) => {
                let dest = self.path(&stored.sha256);
                if let Some(dir) = dest.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                tokio::fs::rename(&tmp, &dest).await?;
                Ok(stored)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Stores a local file by copying it in.
    pub async fn put_file(&self, path: &Path) -> Result<StoredFile, FileStoreError> {
        let file = tokio::fs::File::open(path).await?;
        let stream = tokio_util::io::ReaderStream::new(file);
        self.put_stream(stream, u64::MAX).await
    }

    /// Deletes a stored file (absent is fine).
    pub async fn remove(&self, sha256: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes temporary files left by a crash mid-upload.
    pub fn clean_temporaries(&self) {
        let _ = std::fs::remove_dir_all(self.root.join("tmp"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(parts: &[&'static [u8]]) -> impl futures_util::Stream<Item = Result<bytes::Bytes, String>> + Unpin {
        stream::iter(parts.iter().map(|p| Ok(bytes::Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn files_are_named_by_their_hash_and_oversized_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let f = store.put_stream(chunks(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(f.sha256, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(std::fs::read(store.path(&f.sha256)).unwrap(), b"hello world");
        assert_eq!(hash_file(&store.path(&f.sha256)).await.unwrap(), f);
        let err = store.put_stream(chunks(&[b"0123456789", b"0123456789"]), 15).await.unwrap_err();
        assert!(matches!(err, FileStoreError::TooLarge { limit: 15 }));
        assert_eq!(std::fs::read_dir(dir.path().join("files/tmp")).unwrap().count(), 0, "a partial upload was left");
    }
}
