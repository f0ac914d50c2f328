//! Job files at rest: every job's inputs in a folder that belongs to that job alone,
//! `DATA_DIR/jobs/<id>/inputs/<idx>`.
//!
//! A job reaches only the bytes that were given to it: uploaded for it by its researcher, or
//! pulled for it by its own transfer. A hash is never taken as proof that a caller holds a file,
//! so there is no shared content-addressed pool a job could point into by naming a digest (a
//! peer that learnt another user's input hash would otherwise get that input imputed for
//! itself). Disk is saved only inside one submission: the per-panel jobs of a multi-panel job
//! get hard links to their parent's inputs.
//!
//! A file is written under a `.part` name beside its final one, hashed as it streams in, synced,
//! and renamed only when complete, so a crash never leaves a half file that looks whole.

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

/// The partial file a complete `path` is written through.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

/// Handle on the jobs' file area; cheap to clone.
#[derive(Debug, Clone)]
pub struct FileStore {
    jobs_root: PathBuf,
}

impl FileStore {
    pub fn new(data_dir: &Path) -> Self {
        Self { jobs_root: data_dir.join("jobs") }
    }

    /// The folder holding every job's folder.
    pub fn jobs_root(&self) -> &Path {
        &self.jobs_root
    }

    /// The job's folder: its inputs, work files and results.
    pub fn job_dir(&self, job_id: &str) -> PathBuf {
        self.jobs_root.join(job_id)
    }

    /// The folder holding the job's inputs.
    pub fn inputs_dir(&self, job_id: &str) -> PathBuf {
        self.job_dir(job_id).join("inputs")
    }

    /// Where input `idx` of the job lives (whether or not it exists yet).
    pub fn input_path(&self, job_id: &str, idx: i64) -> PathBuf {
        self.inputs_dir(job_id).join(format!("{idx}.vcf.gz"))
    }

    /// Streams chunks into `dest`, failing (and leaving nothing) past `limit` bytes.
    pub async fn put_stream<S, E>(&self, mut chunks: S, limit: u64, dest: &Path) -> Result<StoredFile, FileStoreError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let partial = partial_path(dest);
        let result = async {
            let mut file = tokio::fs::File::create(&partial).await?;
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
                tokio::fs::rename(&partial, dest).await?;
                Ok(stored)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(e)
            }
        }
    }

    /// Makes `files` (in order) the job's inputs in place of the `count` it has: repaired inputs
    /// replace the uploads. Returns each one's digest and size.
    pub async fn replace_inputs(
        &self,
        job_id: &str,
        count: usize,
        files: &[PathBuf],
    ) -> std::io::Result<Vec<StoredFile>> {
        let dir = self.inputs_dir(job_id);
        let staged: Vec<PathBuf> = (0..files.len()).map(|i| dir.join(format!("repaired-{i}.part"))).collect();
        for (file, stage) in files.iter().zip(&staged) {
            tokio::fs::rename(file, stage).await?;
        }
        for idx in 0..count as i64 {
            match tokio::fs::remove_file(self.input_path(job_id, idx)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let mut stored = Vec::new();
        for (idx, stage) in staged.iter().enumerate() {
            let dest = self.input_path(job_id, idx as i64);
            tokio::fs::rename(stage, &dest).await?;
            stored.push(hash_file(&dest).await?);
        }
        Ok(stored)
    }

    /// Gives job `to` the first `count` inputs of job `from` (one submission's jobs: a hard link
    /// where the file system allows it, else a copy).
    pub async fn share_inputs(&self, from: &str, to: &str, count: usize) -> std::io::Result<()> {
        let sources: Vec<PathBuf> = (0..count as i64).map(|idx| self.input_path(from, idx)).collect();
        self.adopt_inputs(to, &sources).await
    }

    /// Makes `files` (in order) job `to`'s inputs, leaving them where they are too: a hard link
    /// where the file system allows it, else a copy.
    pub async fn adopt_inputs(&self, to: &str, files: &[PathBuf]) -> std::io::Result<()> {
        tokio::fs::create_dir_all(self.inputs_dir(to)).await?;
        for (idx, source) in files.iter().enumerate() {
            let dest = self.input_path(to, idx as i64);
            let _ = tokio::fs::remove_file(&dest).await;
            if tokio::fs::hard_link(source, &dest).await.is_err() {
                tokio::fs::copy(source, &dest).await?;
            }
        }
        Ok(())
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
    async fn inputs_live_in_their_jobs_folder_and_oversized_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let dest = store.input_path("job1", 0);
        let f = store.put_stream(chunks(&[b"hello ", b"world"]), 100, &dest).await.unwrap();
        assert_eq!(f.sha256, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        assert!(dest.starts_with(dir.path().join("jobs/job1/inputs")));
        assert_eq!(hash_file(&dest).await.unwrap(), f);

        let big = store.input_path("job2", 0);
        let err = store.put_stream(chunks(&[b"0123456789", b"0123456789"]), 15, &big).await.unwrap_err();
        assert!(matches!(err, FileStoreError::TooLarge { limit: 15 }));
        assert_eq!(std::fs::read_dir(store.inputs_dir("job2")).unwrap().count(), 0, "a partial upload was left");
    }

    #[tokio::test]
    async fn shared_inputs_survive_the_other_jobs_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.put_stream(chunks(&[b"genotypes"]), 100, &store.input_path("parent", 0)).await.unwrap();
        store.share_inputs("parent", "child", 1).await.unwrap();
        std::fs::remove_dir_all(store.inputs_dir("parent")).unwrap();
        assert_eq!(std::fs::read(store.input_path("child", 0)).unwrap(), b"genotypes");
    }
}
