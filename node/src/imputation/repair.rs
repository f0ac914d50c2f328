//! Input repair: the everyday problems of researchers' files, fixed and reported, as the public
//! imputation servers do, before QC sees the files.
//!
//! - a plain or gzip (not bgzip) VCF is bgzipped;
//! - chromosome names are renamed to the build's convention (`20` <-> `chr20`, also in the
//!   `##contig` lines);
//! - a file holding several chromosomes is split into one file per chromosome;
//! - a chromosome whose records are out of order is sorted (`bcftools sort`, on disk).
//!
//! A first pass reads only CHROM and POS to find out what is needed; a file that needs nothing
//! is left as it is. What cannot be repaired (a header that does not parse, a name that is no
//! chromosome) is left for QC to refuse with its usual message. Memory stays flat: records are
//! streamed, and sorting is bcftools' external sort.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GenomeBuild;
use super::qc::{InputFile, QcError, lines, read_header, refuse};
use super::vcf_io::{self, BgzfWriter, Compression, Effort};

/// What was done to an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// A plain or gzip file was bgzipped.
    Compressed,
    /// Chromosome names were changed to the build's convention.
    Renamed,
    /// A file with several chromosomes became one file per chromosome.
    Split,
    /// Records out of order were sorted.
    Sorted,
}

/// One repair, as the QC report lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Repair {
    /// The name the researcher gave the file.
    pub file: String,
    pub kind: RepairKind,
    /// In words: "sorted 12,004 records of chr20", "renamed 20 -> chr20".
    pub message: String,
}

/// The files QC is to read, and what was done to get them.
#[derive(Debug)]
pub struct Repaired {
    pub inputs: Vec<InputFile>,
    pub repairs: Vec<Repair>,
}

/// What the first pass found in one file.
#[derive(Debug, Default)]
struct Findings {
    compression: Option<Compression>,
    /// Chromosomes in order of first appearance, with their record count and whether sorted.
    chromosomes: Vec<ChromosomeFindings>,
    renames: Vec<(String, String)>,
}

#[derive(Debug)]
struct ChromosomeFindings {
    /// The name after renaming.
    name: String,
    records: u64,
    last_pos: u64,
    sorted: bool,
}

impl Findings {
    fn needs_repair(&self) -> bool {
        self.compression != Some(Compression::Bgzf)
            || !self.renames.is_empty()
            || self.chromosomes.len() > 1
            || self.chromosomes.iter().any(|c| !c.sorted)
    }
}

/// The name `chrom` has in `build`'s convention, if it is a chromosome that is named otherwise.
fn build_name(build: GenomeBuild, chrom: &str) -> Option<String> {
    if build.check_chromosome(chrom).is_ok() {
        return None;
    }
    let bare = chrom.strip_prefix("chr").unwrap_or(chrom);
    let renamed = match build {
        GenomeBuild::Hg19 => bare.to_string(),
        GenomeBuild::Hg38 => format!("chr{bare}"),
    };
    build.check_chromosome(&renamed).is_ok().then_some(renamed)
}

/// Thousands separated with commas, as the report reads best.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Repairs `inputs` for `build`, writing repaired files into `out_dir`. Files that need nothing
/// come back unchanged (same path).
pub fn repair_inputs(
    inputs: &[InputFile],
    build: GenomeBuild,
    bcftools: &Path,
    out_dir: &Path,
) -> Result<Repaired, QcError> {
    let mut repaired = Repaired { inputs: Vec::new(), repairs: Vec::new() };
    for (index, input) in inputs.iter().enumerate() {
        let findings = scan(input, build)?;
        if !findings.needs_repair() {
            repaired.inputs.push(input.clone());
            continue;
        }
        std::fs::create_dir_all(out_dir)?;
        let files = rewrite(input, &findings, &out_dir.join(index.to_string()))?;
        let say = |kind, message: String| Repair { file: input.name.clone(), kind, message };
        match findings.compression {
            Some(Compression::Plain) => {
                repaired.repairs.push(say(RepairKind::Compressed, "compressed with bgzip".into()))
            }
            Some(Compression::Gzip) => {
                repaired.repairs.push(say(RepairKind::Compressed, "recompressed from gzip to bgzip".into()))
            }
            _ => {}
        }
        for (from, to) in &findings.renames {
            repaired.repairs.push(say(RepairKind::Renamed, format!("renamed {from} -> {to}")));
        }
        if findings.chromosomes.len() > 1 {
            let names: Vec<&str> = findings.chromosomes.iter().map(|c| c.name.as_str()).collect();
            repaired.repairs.push(say(
                RepairKind::Split,
                format!("split into {} files, one per chromosome: {}", names.len(), names.join(", ")),
            ));
        }
        for (chromosome, path) in files {
            let found = findings.chromosomes.iter().find(|c| c.name == chromosome);
            if let Some(c) = found.filter(|c| !c.sorted) {
                sort(bcftools, &path, out_dir).map_err(|e| refuse(input, None, e))?;
                repaired
                    .repairs
                    .push(say(RepairKind::Sorted, format!("sorted {} records of {chromosome}", count(c.records))));
            }
            let name = split_name(&input.name, findings.chromosomes.len() > 1, &chromosome);
            repaired.inputs.push(InputFile { path, name });
        }
    }
    Ok(repaired)
}

/// The name shown for a repaired file: `study.vcf` becomes `study.vcf.gz`, or `study.chr20.vcf.gz`
/// when it was split.
fn split_name(original: &str, split: bool, chromosome: &str) -> String {
    let stem = original.strip_suffix(".gz").or_else(|| original.strip_suffix(".bgz")).unwrap_or(original);
    let stem = stem.strip_suffix(".vcf").unwrap_or(stem);
    if split { format!("{stem}.{chromosome}.vcf.gz") } else { format!("{stem}.vcf.gz") }
}

/// Records of a file, as (CHROM, POS) and the whole line, in a bounded buffer.
fn for_each_record(
    input: &InputFile,
    on_header: impl FnOnce(&str) -> Result<(), QcError>,
    mut each: impl FnMut(&[u8], &str, u64) -> Result<(), QcError>,
) -> Result<Compression, QcError> {
    let (reader, compression) = vcf_io::open_text(&input.path)?;
    let mut opened = read_header(reader, input)?;
    on_header(&opened.header_text)?;
    let max_line = lines::max_record_bytes(opened.samples.len());
    lines::for_each_record(opened.reader.as_mut(), opened.header_lines, max_line, input, |line, record| {
        let mut cols = record.splitn(3, |b| *b == b'\t');
        let chrom = cols.next().and_then(|c| std::str::from_utf8(c).ok());
        let pos = cols.next().and_then(|p| std::str::from_utf8(p).ok()).and_then(|p| p.parse::<u64>().ok());
        let (Some(chrom), Some(pos)) = (chrom, pos) else {
            return Err(refuse(input, Some(line), "record has no valid CHROM and POS"));
        };
        each(record, chrom, pos)
    })?;
    Ok(compression)
}

/// The first pass: what the file needs.
fn scan(input: &InputFile, build: GenomeBuild) -> Result<Findings, QcError> {
    let mut findings = Findings::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    let compression = for_each_record(
        input,
        |_| Ok(()),
        |_, chrom, pos| {
            let i = match index.get(chrom) {
                Some(i) => *i,
                None => {
                    let name = match build_name(build, chrom) {
                        Some(renamed) => {
                            findings.renames.push((chrom.to_string(), renamed.clone()));
                            renamed
                        }
                        None => chrom.to_string(),
                    };
                    findings.chromosomes.push(ChromosomeFindings { name, records: 0, last_pos: 0, sorted: true });
                    index.insert(chrom.to_string(), findings.chromosomes.len() - 1);
                    findings.chromosomes.len() - 1
                }
            };
            let c = &mut findings.chromosomes[i];
            c.records += 1;
            if pos < c.last_pos {
                c.sorted = false;
            }
            c.last_pos = pos;
            Ok(())
        },
    )?;
    findings.compression = Some(compression);
    if findings.chromosomes.iter().map(|c| &c.name).collect::<std::collections::HashSet<_>>().len()
        != findings.chromosomes.len()
    {
        // `20` and `chr20` in one file: the same chromosome under two names.
        return Err(refuse(input, None, "names one chromosome two ways (e.g. 20 and chr20); use one name"));
    }
    Ok(findings)
}

/// The second pass: every record to the file of its chromosome, renamed, bgzipped.
fn rewrite(input: &InputFile, findings: &Findings, prefix: &Path) -> Result<Vec<(String, PathBuf)>, QcError> {
    let paths: Vec<(String, PathBuf)> = findings
        .chromosomes
        .iter()
        .map(|c| (c.name.clone(), PathBuf::from(format!("{}.{}.vcf.gz", prefix.display(), c.name))))
        .collect();
    let mut writers = Vec::new();
    for (_, path) in &paths {
        writers.push(BgzfWriter::create(path, Effort::Fast)?);
    }
    let renames: HashMap<&str, &str> = findings.renames.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let position: HashMap<&str, usize> = paths.iter().enumerate().map(|(i, (name, _))| (name.as_str(), i)).collect();
    let header = std::cell::Cell::new(None::<String>);
    for_each_record(
        input,
        |text| {
            let names: Vec<&str> = paths.iter().map(|(name, _)| name.as_str()).collect();
            header.set(Some(declare_contigs(&rename_contigs(text, &renames), &names)));
            Ok(())
        },
        |record, chrom, _| {
            if let Some(text) = header.take() {
                // Every planned file gets at least one record: the header goes to all at once.
                for w in writers.iter_mut() {
                    w.write_all(text.as_bytes())?;
                }
            }
            let name = renames.get(chrom).copied().unwrap_or(chrom);
            let writer = position
                .get(name)
                .and_then(|i| writers.get_mut(*i))
                .ok_or_else(|| QcError::Io(std::io::Error::other("a chromosome the first pass did not see")))?;
            if name != chrom {
                writer.write_all(name.as_bytes())?;
                writer.write_all(&record[chrom.len()..])?;
            } else {
                writer.write_all(record)?;
            }
            writer.write_all(b"\n")?;
            Ok(())
        },
    )?;
    for writer in writers {
        writer.finish()?;
    }
    Ok(paths)
}

/// The header with `##contig=<ID=from` lines renamed.
fn rename_contigs(header: &str, renames: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(header.len());
    for line in header.split_inclusive('\n') {
        if let Some(rest) = line.strip_prefix("##contig=<ID=") {
            let end = rest.find([',', '>']).unwrap_or(rest.len());
            if let Some(to) = renames.get(&rest[..end]) {
                out.push_str("##contig=<ID=");
                out.push_str(to);
                out.push_str(&rest[end..]);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// The header with a `##contig` line for each of `chromosomes` it lacks (bcftools needs them to
/// sort, and tabix-style tools to index).
fn declare_contigs(header: &str, chromosomes: &[&str]) -> String {
    let declared = |name: &str| {
        header
            .lines()
            .any(|l| l.strip_prefix("##contig=<ID=").is_some_and(|rest| rest.split([',', '>']).next() == Some(name)))
    };
    let missing: String = chromosomes.iter().filter(|c| !declared(c)).map(|c| format!("##contig=<ID={c}>\n")).collect();
    match header.rfind("#CHROM") {
        Some(at) if !missing.is_empty() => format!("{}{missing}{}", &header[..at], &header[at..]),
        _ => header.to_string(),
    }
}

/// Sorts `path` in place with bcftools' external sort (bounded memory, temporary files in `tmp`).
fn sort(bcftools: &Path, path: &Path, tmp: &Path) -> Result<(), String> {
    let sorted = path.with_extension("sorted.gz");
    let scratch = tmp.join("sort.XXXXXX");
    let out = std::process::Command::new(bcftools)
        .args(["sort", "--max-mem", "512M", "-Oz", "-T"])
        .arg(&scratch)
        .arg("-o")
        .arg(&sorted)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run {} to sort it: {e}", bcftools.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let reason = err.lines().find(|l| l.contains("rror")).or_else(|| err.lines().next());
        return Err(format!("could not be sorted: {}", reason.unwrap_or("bcftools sort failed")));
    }
    std::fs::rename(&sorted, path).map_err(|e| format!("could not be sorted: {e}"))
}

#[cfg(test)]
mod tests;
