//! Password-protected archives of a job's results, for institutions that require them: one
//! AES-256 zip per chromosome holding its dose VCF, index and info file. The password is made
//! for the request, shown once to the researcher and kept nowhere; asking again makes new
//! archives with a new password. The plain files stay available.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The result files that go into the archive of `prefix` (e.g. `chr20`, `chr20.merged`).
fn members(prefix: &str) -> [String; 3] {
    [format!("{prefix}.dose.vcf.gz"), format!("{prefix}.dose.vcf.gz.tbi"), format!("{prefix}.info.gz")]
}

/// The chromosome prefixes of a job's result names (`chr20.dose.vcf.gz` -> `chr20`).
pub fn prefixes<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> =
        names.into_iter().filter_map(|n| n.strip_suffix(".dose.vcf.gz")).map(String::from).collect();
    out.sort();
    out
}

/// Writes `<prefix>.zip` into `results` for each prefix, AES-256 encrypted with `password`
/// (stored, not deflated: the members are compressed already). Streams each member; returns
/// the archives written.
pub fn write(results: &Path, prefixes: &[String], password: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for prefix in prefixes {
        let path = results.join(format!("{prefix}.zip"));
        let partial = results.join(format!(".{prefix}.zip.part"));
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&partial)?);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true)
            .with_aes_encryption(zip::AesMode::Aes256, password);
        for name in members(prefix) {
            let source = results.join(&name);
            if !source.is_file() {
                continue;
            }
            zip.start_file(name.as_str(), options).map_err(std::io::Error::other)?;
            std::io::copy(&mut std::fs::File::open(&source)?, &mut zip)?;
        }
        zip.finish().map_err(std::io::Error::other)?.flush()?;
        std::fs::rename(&partial, &path)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn each_chromosome_is_archived_under_the_password_and_nothing_opens_without_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chr20.dose.vcf.gz"), b"dose bytes").unwrap();
        std::fs::write(dir.path().join("chr20.info.gz"), b"info bytes").unwrap();
        let found = prefixes(["chr20.dose.vcf.gz", "chr20.info.gz", "qc_report.json"]);
        assert_eq!(found, ["chr20"]);
        let written = write(dir.path(), &found, "correct horse").unwrap();
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&written[0]).unwrap()).unwrap();
        assert_eq!(zip.len(), 2);
        assert!(zip.by_name_decrypt("chr20.dose.vcf.gz", b"wrong").is_err());
        let mut text = String::new();
        zip.by_name_decrypt("chr20.dose.vcf.gz", b"correct horse").unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text, "dose bytes");
        assert!(zip.by_name("chr20.info.gz").is_err(), "a member cannot be read without the password");
    }
}
