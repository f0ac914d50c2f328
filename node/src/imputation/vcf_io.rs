//! Reading and writing VCF text whatever its compression: plain, gzip or bgzip in; bgzip out.
//!
//! Researchers' files arrive in all three forms and panels as published are usually bgzipped;
//! everything this node writes for tabix, the engines or the researcher is bgzipped.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::num::NonZero;
use std::path::Path;

use noodles::bgzf;

/// How a file is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    /// gzip that is not BGZF: readable, but tabix and the engines cannot seek in it.
    Gzip,
    Bgzf,
}

/// Threads a reader or writer uses for (de)compression.
const WORKERS: usize = 2;

fn workers() -> NonZero<usize> {
    NonZero::new(WORKERS).unwrap_or(NonZero::<usize>::MIN)
}

/// Tells the compression from the first 18 bytes: BGZF is gzip with an extra subfield `BC`.
pub fn detect(path: &Path) -> io::Result<Compression> {
    let mut head = [0u8; 18];
    let mut file = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let read = file.read(&mut head[n..])?;
        if read == 0 {
            break;
        }
        n += read;
    }
    // Shorter than a gzip header and trailer: not gzip, whatever its first bytes.
    if n < head.len() || head[0] != 0x1f || head[1] != 0x8b {
        return Ok(Compression::Plain);
    }
    if head[3] & 4 != 0 && head[12] == b'B' && head[13] == b'C' { Ok(Compression::Bgzf) } else { Ok(Compression::Gzip) }
}

/// Opens `path` for reading its text, decompressing as it was compressed.
pub fn open_text(path: &Path) -> io::Result<(Box<dyn BufRead + Send>, Compression)> {
    let compression = detect(path)?;
    let file = File::open(path)?;
    let reader: Box<dyn BufRead + Send> = match compression {
        Compression::Bgzf => Box::new(BufReader::with_capacity(
            1 << 20,
            bgzf::io::MultithreadedReader::with_worker_count(workers(), file),
        )),
        // Multi-member gzip (what `cat a.gz b.gz` makes) is valid gzip: read every member.
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(file))),
        Compression::Plain => Box::new(BufReader::with_capacity(1 << 20, file)),
    };
    Ok((reader, compression))
}

/// How hard a bgzip writer compresses.
#[derive(Debug, Clone, Copy)]
pub enum Effort {
    /// For work files read once, right away.
    Fast,
    /// For files that are kept (panels, results).
    Default,
}

/// A BGZF writer that compresses on worker threads. Call `finish` to write the end-of-file
/// block; dropping it without `finish` leaves a file tabix refuses.
pub struct BgzfWriter {
    inner: bgzf::io::MultithreadedWriter<File>,
}

impl BgzfWriter {
    pub fn create(path: &Path, effort: Effort) -> io::Result<Self> {
        let level = match effort {
            Effort::Fast => bgzf::io::writer::CompressionLevel::FAST,
            Effort::Default => bgzf::io::writer::CompressionLevel::default(),
        };
        let inner = bgzf::io::multithreaded_writer::Builder::default()
            .set_compression_level(level)
            .set_worker_count(workers())
            .build_from_writer(File::create(path)?);
        Ok(Self { inner })
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.inner.finish().map(|_| ())
    }
}

impl Write for BgzfWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_gzip_and_bgzip_are_told_apart_and_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"##fileformat=VCFv4.2\n#CHROM\tPOS\n";
        let plain = dir.path().join("a.vcf");
        std::fs::write(&plain, text).unwrap();
        let gz = dir.path().join("a.vcf.gz");
        let mut e = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap();
        let bgz = dir.path().join("a.bgz");
        let mut w = BgzfWriter::create(&bgz, Effort::Fast).unwrap();
        w.write_all(text).unwrap();
        w.finish().unwrap();
        for (path, expected) in [(&plain, Compression::Plain), (&gz, Compression::Gzip), (&bgz, Compression::Bgzf)] {
            let (mut reader, found) = open_text(path).unwrap();
            assert_eq!(found, expected, "{}", path.display());
            let mut back = Vec::new();
            reader.read_to_end(&mut back).unwrap();
            assert_eq!(back, text);
        }
    }
}
