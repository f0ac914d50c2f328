//! Input QC, as the public imputation servers do it, in one streaming pass per file.
//!
//! Structural problems refuse the input outright with a message that names the file and line
//! and says what to fix: not bgzip, unparseable header, duplicate or differing samples, too few
//! samples, two chromosomes in one file, unsorted records, chromosome names that do not match
//! the build. Then every variant is classified (see [`ExclusionReason`]); kept variants are
//! written to a filtered, bgzipped VCF for the engines and excluded ones to `excluded.tsv`.
//! Finally the thresholds (sample call rate, overlap with the panel) decide whether the job may
//! go on. Memory does not grow with the number of variants: records are read into one reused
//! buffer, and the panel is read alongside the input (both sorted) instead of loaded.

pub mod chrx;
mod frequency;
pub mod lines;
mod panel_sites;
pub mod report;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use noodles::{bgzf, vcf};

pub use self::frequency::{FrequencyCheck, FrequencyOutlier};
use self::panel_sites::PanelMatch;
pub use self::panel_sites::PanelSites;
pub use self::report::{ExclusionReason, FileSummary, QcReport, QcStatus, SampleCallRate};
use super::GenomeBuild;

/// Thresholds, from the node config.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QcSettings {
    /// Fewest samples accepted (public servers use 20).
    pub min_samples: usize,
    /// Share of samples a variant must be called in.
    pub min_variant_call_rate: f64,
    /// Share of variants a sample must be called at.
    pub min_sample_call_rate: f64,
    /// Share of the input's SNPs that must be in the panel.
    pub min_panel_overlap: f64,
    /// Most a sample's chrX calls outside the pseudo-autosomal regions may be of the ploidy it
    /// mostly is not (haploid calls in a female, diploid in a male), as Michigan's chrX check.
    pub max_mixed_ploidy: f64,
}

impl Default for QcSettings {
    fn default() -> Self {
        Self {
            min_samples: 20,
            min_variant_call_rate: 0.9,
            min_sample_call_rate: 0.5,
            min_panel_overlap: 0.5,
            max_mixed_ploidy: 0.1,
        }
    }
}

/// One uploaded file: where it is, and the name the user gave it (only ever shown).
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub name: String,
}

/// Input that cannot be imputed as it is.
#[derive(Debug, thiserror::Error)]
pub enum QcError {
    #[error("{file}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Input { file: String, line: Option<u64>, message: String },
    #[error("QC could not read or write its files: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) fn refuse(file: &InputFile, line: Option<u64>, message: impl Into<String>) -> QcError {
    QcError::Input { file: file.name.clone(), line, message: message.into() }
}

/// What QC produced.
#[derive(Debug)]
pub struct QcOutcome {
    pub report: QcReport,
    /// Per input file, in order: the chromosome and the filtered VCF (bgzipped).
    pub filtered: Vec<(String, PathBuf)>,
    /// Tab-separated list of every excluded variant with its reason.
    pub excluded_path: PathBuf,
}

/// Checks that `path` is BGZF (bgzip), not plain gzip or uncompressed.
pub(crate) fn check_bgzf(file: &InputFile) -> Result<(), QcError> {
    match crate::imputation::vcf_io::detect(&file.path)? {
        crate::imputation::vcf_io::Compression::Bgzf => Ok(()),
        crate::imputation::vcf_io::Compression::Plain => {
            Err(refuse(file, None, "is not compressed with bgzip; compress it with `bgzip file.vcf`"))
        }
        crate::imputation::vcf_io::Compression::Gzip => Err(refuse(
            file,
            None,
            "is compressed with gzip, not bgzip; recompress it with `zcat file.vcf.gz | bgzip > fixed.vcf.gz`",
        )),
    }
}

/// How many decompression/compression threads QC uses per file.
const BGZF_WORKERS: usize = 2;

/// An input opened past its header: the reader at the first record, the header text, how many
/// header lines it had, and the sample names of `#CHROM`.
pub(crate) struct OpenedInput {
    pub reader: Box<dyn BufRead + Send>,
    pub header_text: String,
    pub header_lines: u64,
    pub samples: Vec<String>,
}

fn open_input(file: &InputFile) -> Result<OpenedInput, QcError> {
    let workers = std::num::NonZero::new(BGZF_WORKERS).unwrap_or(std::num::NonZero::<usize>::MIN);
    let inner = bgzf::io::MultithreadedReader::with_worker_count(workers, File::open(&file.path)?);
    read_header(Box::new(BufReader::with_capacity(1 << 20, inner)), file)
}

/// Reads the header (bounded) from `reader`, which is at the start of `file`'s text.
pub(crate) fn read_header(mut reader: Box<dyn BufRead + Send>, file: &InputFile) -> Result<OpenedInput, QcError> {
    let mut header_text = String::new();
    let mut bytes = Vec::new();
    let mut count = 0;
    loop {
        let budget = lines::MAX_HEADER_BYTES - header_text.len();
        let read = lines::read_line(reader.as_mut(), &mut bytes, budget)
            .map_err(|e| refuse(file, Some(count + 1), format!("cannot be decompressed or is not text: {e}")))?;
        match read {
            lines::Line::End => return Err(refuse(file, Some(count), "has no #CHROM header line")),
            lines::Line::TooLong => {
                return Err(refuse(
                    file,
                    Some(count + 1),
                    format!(
                        "the header passes {} MiB here, more than any VCF header needs; is this line meant to be there?",
                        lines::MAX_HEADER_BYTES >> 20
                    ),
                ));
            }
            lines::Line::Read(_) => {}
        }
        count += 1;
        let line = std::str::from_utf8(&bytes).map_err(|_| refuse(file, Some(count), "header line is not text"))?;
        header_text.push_str(line);
        if !line.starts_with("##") {
            let fields: Vec<&str> = line.trim_end().split('\t').collect();
            if !line.starts_with("#CHROM") || fields.len() < 8 {
                return Err(refuse(file, Some(count), "has no valid #CHROM header line"));
            }
            let samples = fields.iter().skip(9).map(|s| s.to_string()).collect();
            return Ok(OpenedInput { reader, header_text, header_lines: count, samples });
        }
    }
}

/// Allele counts of one record's genotypes.
struct GenotypeStats {
    called: u64,
    alt_alleles: u64,
    alleles: u64,
}

/// Counts the genotypes of one record's sample columns (`GT` first in each), straight from the
/// bytes: this loop runs once per sample per variant, so it allocates nothing.
///
/// With `ploidy` (chrX outside the pseudo-autosomal regions), each sample's haploid and diploid
/// calls are counted as well.
fn genotype_stats(
    samples: &[u8],
    sample_called: &mut [u64],
    mut ploidy: Option<&mut [[u64; 2]]>,
) -> Result<GenotypeStats, usize> {
    let mut stats = GenotypeStats { called: 0, alt_alleles: 0, alleles: 0 };
    let mut columns = 0;
    for (i, field) in samples.split(|b| *b == b'\t').enumerate() {
        columns += 1;
        let gt = field.split(|b| *b == b':').next().unwrap_or(b".");
        let (mut called, mut alt, mut n) = (true, 0u64, 0u64);
        for allele in gt.split(|b| *b == b'/' || *b == b'|') {
            match allele {
                b"0" => n += 1,
                b"1" => {
                    n += 1;
                    alt += 1;
                }
                _ => called = false,
            }
        }
        if called && n > 0 {
            stats.called += 1;
            stats.alt_alleles += alt;
            stats.alleles += n;
            if let Some(c) = sample_called.get_mut(i) {
                *c += 1;
            }
            if let Some(counts) = ploidy.as_deref_mut().and_then(|p| p.get_mut(i)) {
                counts[usize::from(n > 1)] += 1;
            }
        }
    }
    if columns != sample_called.len() {
        return Err(columns);
    }
    Ok(stats)
}

/// A single A, C, G or T: the only alleles of a SNP.
pub(crate) fn is_base(s: &str) -> bool {
    matches!(s, "A" | "C" | "G" | "T")
}

/// Runs QC over `inputs`. With `panel`, alleles are matched against the panel's sites and the
/// overlap threshold applies; without it (at an origin that does not host the panel) only the
/// checks that need no panel run. Filtered VCFs and `excluded.tsv` go to `out_dir`.
pub fn run_qc(
    inputs: &[InputFile],
    build: GenomeBuild,
    panel: Option<&PanelSites>,
    settings: &QcSettings,
    out_dir: &Path,
) -> Result<QcOutcome, QcError> {
    let (report, filtered) = qc_pass(inputs, build, panel, settings, Some(out_dir))?;
    Ok(QcOutcome { report, filtered, excluded_path: out_dir.join("excluded.tsv") })
}

/// The checks that need no panel, writing nothing: what a node runs on an upload before it
/// accepts the job.
pub fn check_inputs(inputs: &[InputFile], build: GenomeBuild, settings: &QcSettings) -> Result<QcReport, QcError> {
    Ok(qc_pass(inputs, build, None, settings, None)?.0)
}

/// One pass over the inputs; with `out_dir`, kept records and the exclusions are written there.
fn qc_pass(
    inputs: &[InputFile],
    build: GenomeBuild,
    panel: Option<&PanelSites>,
    settings: &QcSettings,
    out_dir: Option<&Path>,
) -> Result<(QcReport, Vec<(String, PathBuf)>), QcError> {
    if inputs.is_empty() {
        return Err(QcError::Input { file: "(no file)".into(), line: None, message: "no input files".into() });
    }
    let mut excluded_out: Box<dyn Write> = match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Box::new(BufWriter::new(File::create(dir.join("excluded.tsv"))?))
        }
        None => Box::new(std::io::sink()),
    };
    writeln!(excluded_out, "file\tchrom\tpos\tref\talt\treason")?;

    let mut samples: Option<Vec<String>> = None;
    let mut sample_called: Vec<u64> = Vec::new();
    // Per sample: haploid and diploid calls on chrX outside the pseudo-autosomal regions.
    let mut ploidy_calls: Vec<[u64; 2]> = Vec::new();
    let mut snp_records: u64 = 0;
    let mut excluded: BTreeMap<ExclusionReason, u64> = BTreeMap::new();
    let mut files = Vec::new();
    let mut filtered = Vec::new();
    let mut seen_chromosomes = HashSet::new();
    let (mut total, mut kept_total, mut reached_panel, mut in_panel, mut matches, mut ambiguous) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut frequencies = frequency::FrequencyAccumulator::new(panel.and_then(|p| p.population.clone()));

    for (index, input) in inputs.iter().enumerate() {
        check_bgzf(input)?;
        let OpenedInput { mut reader, header_text, header_lines: header_count, samples: names } = open_input(input)?;
        let max_line = lines::max_record_bytes(names.len());
        let mut unique = HashSet::new();
        if let Some(dup) = names.iter().find(|n| !unique.insert(n.as_str())) {
            return Err(refuse(
                input,
                Some(header_count),
                format!("sample id {dup:?} appears twice; sample ids must be unique"),
            ));
        }
        match &samples {
            None => {
                if names.len() < settings.min_samples {
                    return Err(refuse(
                        input,
                        Some(header_count),
                        format!(
                            "has {} samples; at least {} are needed for imputation",
                            names.len(),
                            settings.min_samples
                        ),
                    ));
                }
                sample_called = vec![0; names.len()];
                ploidy_calls = vec![[0; 2]; names.len()];
                samples = Some(names);
            }
            Some(first) if *first != names => {
                return Err(refuse(
                    input,
                    Some(header_count),
                    format!(
                        "has different samples than {} ({} vs {}); every file must list the same samples in the same order",
                        inputs[0].name,
                        names.len(),
                        first.len()
                    ),
                ));
            }
            Some(_) => {}
        }
        // The header must be valid VCF (noodles parses it); records are then read as bytes and
        // kept ones written back unchanged.
        header_text
            .parse::<vcf::Header>()
            .map_err(|e| refuse(input, Some(header_count), format!("header does not parse: {e}")))?;
        let out_path = out_dir.map(|dir| dir.join(format!("filtered-{index}.vcf.gz")));
        let mut writer = match &out_path {
            Some(path) => {
                // The filtered file is read once, right away, by the engine: fast compression.
                let workers = std::num::NonZero::new(BGZF_WORKERS).unwrap_or(std::num::NonZero::<usize>::MIN);
                let mut w = bgzf::io::multithreaded_writer::Builder::default()
                    .set_compression_level(bgzf::io::writer::CompressionLevel::FAST)
                    .set_worker_count(workers)
                    .build_from_writer(File::create(path)?);
                w.write_all(header_text.as_bytes())?;
                Some(w)
            }
            None => None,
        };

        let mut chromosome: Option<String> = None;
        let mut last_pos = 0usize;
        let mut panel_cursor = None;
        let mut skipped: Option<String> = None;
        let (mut variants, mut kept) = (0u64, 0u64);
        let mut line = header_count;
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let sample_count = sample_called.len();
        loop {
            let read = lines::read_line(reader.as_mut(), &mut buf, max_line)
                .map_err(|e| refuse(input, Some(line + 1), format!("cannot be read: {e}")))?;
            match read {
                lines::Line::End => break,
                lines::Line::TooLong => {
                    return Err(refuse(
                        input,
                        Some(line + 1),
                        format!("record is longer than {max_line} bytes, far more than {sample_count} samples need"),
                    ));
                }
                lines::Line::Read(_) => {}
            }
            line += 1;
            let record = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let record = record.strip_suffix(b"\r").unwrap_or(record);
            if record.is_empty() {
                continue;
            }
            variants += 1;
            let mut cols = record.splitn(10, |b| *b == b'\t');
            let mut text = |what: &str| -> Result<&str, QcError> {
                let col =
                    cols.next().ok_or_else(|| refuse(input, Some(line), format!("record has no {what} column")))?;
                std::str::from_utf8(col).map_err(|_| refuse(input, Some(line), format!("{what} is not text")))
            };
            let chrom = text("CHROM")?;
            let pos_text = text("POS")?;
            let _id = text("ID")?;
            let reference = text("REF")?;
            let alt = text("ALT")?;
            let _qual = text("QUAL")?;
            let filter = text("FILTER")?;
            let _info = text("INFO")?;
            let format = if sample_called.is_empty() { "" } else { text("FORMAT")? };
            let sample_bytes: &[u8] = cols.next().unwrap_or(b"");
            if !sample_called.is_empty() && !format.starts_with("GT") {
                return Err(refuse(input, Some(line), format!("FORMAT is {format:?}; genotypes (GT) must come first")));
            }
            match &chromosome {
                None => {
                    build.check_chromosome(chrom).map_err(|m| refuse(input, Some(line), m))?;
                    if !seen_chromosomes.insert(chrom.to_string()) {
                        return Err(refuse(
                            input,
                            Some(line),
                            format!("chromosome {chrom} is also in another file; give each chromosome one file"),
                        ));
                    }
                    if let Some(panel) = panel {
                        if panel.by_chromosome.contains_key(chrom) {
                            panel_cursor = Some(panel.cursor(chrom)?);
                        } else {
                            // As the public servers do: a chromosome the panel lacks is left out,
                            // not held against the overlap of the others.
                            skipped = Some(format!("the panel has no chromosome {chrom}; this file is left out"));
                        }
                    }
                    chromosome = Some(chrom.to_string());
                }
                Some(c) if c != chrom => {
                    return Err(refuse(
                        input,
                        Some(line),
                        format!(
                            "holds a second chromosome ({chrom} after {c}); split the input into one file per chromosome"
                        ),
                    ));
                }
                Some(_) => {}
            }
            let pos: usize = match pos_text.parse() {
                Ok(p) if p > 0 => p,
                _ => return Err(refuse(input, Some(line), format!("has no valid position ({pos_text:?})"))),
            };
            if pos < last_pos {
                return Err(refuse(
                    input,
                    Some(line),
                    format!("is not sorted: position {pos} comes after {last_pos}; sort it with `bcftools sort`"),
                ));
            }
            let duplicate = pos == last_pos;
            last_pos = pos;
            if skipped.is_some() {
                continue;
            }

            let mut reason = if !matches!(filter, "PASS" | "." | "") {
                Some(ExclusionReason::FilterFlag)
            } else if alt.contains(',') {
                Some(ExclusionReason::Multiallelic)
            } else if !is_base(reference) || !is_base(alt) {
                Some(ExclusionReason::NotSnp)
            } else if reference == alt {
                Some(ExclusionReason::RefEqualsAlt)
            } else if duplicate {
                Some(ExclusionReason::DuplicateSite)
            } else {
                None
            };
            if reason.is_none() {
                snp_records += 1;
                let non_par = chrx::is_non_par(build, chrom, pos as u64);
                let ploidy = non_par.then_some(ploidy_calls.as_mut_slice());
                let stats = genotype_stats(sample_bytes, &mut sample_called, ploidy).map_err(|found| {
                    refuse(
                        input,
                        Some(line),
                        format!("has {found} sample columns, the header names {}", sample_called.len()),
                    )
                })?;
                let n = sample_called.len().max(1) as f64;
                if (stats.called as f64) / n < settings.min_variant_call_rate {
                    reason = Some(ExclusionReason::LowCallRate);
                } else if stats.alt_alleles == 0 || stats.alt_alleles == stats.alleles {
                    reason = Some(ExclusionReason::Monomorphic);
                } else if let Some(cursor) = panel_cursor.as_mut() {
                    reached_panel += 1;
                    let (found, panel_frequency) = cursor.lookup(pos, reference, alt)?;
                    match found {
                        PanelMatch::Absent => reason = Some(ExclusionReason::NotInPanel),
                        found => {
                            in_panel += 1;
                            match found {
                                PanelMatch::Exact { ambiguous: a } => {
                                    matches += 1;
                                    ambiguous += u64::from(a);
                                    if let Some(f) = &panel_frequency {
                                        frequencies.add(chrom, pos as u64, stats.alt_alleles, stats.alleles, f);
                                    }
                                }
                                PanelMatch::Switch => reason = Some(ExclusionReason::AlleleSwitch),
                                PanelMatch::Flip => reason = Some(ExclusionReason::StrandFlip),
                                PanelMatch::FlipSwitch => reason = Some(ExclusionReason::StrandFlipAndAlleleSwitch),
                                PanelMatch::Mismatch | PanelMatch::Absent => {
                                    reason = Some(ExclusionReason::AlleleMismatch)
                                }
                            }
                        }
                    }
                }
            }
            match reason {
                None => {
                    if let Some(w) = writer.as_mut() {
                        w.write_all(record)?;
                        w.write_all(b"\n")?;
                    }
                    kept += 1;
                }
                Some(r) => {
                    *excluded.entry(r).or_default() += 1;
                    writeln!(excluded_out, "{}\t{chrom}\t{pos}\t{reference}\t{alt}\t{}", input.name, r.as_str())?;
                }
            }
        }
        if let Some(mut w) = writer {
            w.finish()?;
        }
        if variants == 0 {
            return Err(refuse(input, None, "has no variants"));
        }
        total += variants;
        kept_total += kept;
        let chromosome = chromosome.unwrap_or_default();
        let left_out = skipped.is_some();
        files.push(FileSummary {
            name: input.name.clone(),
            chromosome: Some(chromosome.clone()),
            variants,
            kept,
            skipped,
        });
        if let Some(path) = out_path.filter(|_| !left_out) {
            filtered.push((chromosome, path));
        }
    }
    excluded_out.flush()?;

    let names = samples.unwrap_or_default();
    let low: Vec<SampleCallRate> = names
        .iter()
        .zip(&sample_called)
        .map(|(s, c)| SampleCallRate {
            sample: s.clone(),
            call_rate: if snp_records == 0 { 0.0 } else { *c as f64 / snp_records as f64 },
        })
        .filter(|s| snp_records > 0 && s.call_rate < settings.min_sample_call_rate)
        .collect();
    let overlap = panel.map(|_| if reached_panel == 0 { 0.0 } else { in_panel as f64 / reached_panel as f64 });

    let chrx = chrx::summarise(&names, &ploidy_calls, settings.max_mixed_ploidy);
    let message = if let Some(refusal) = chrx.as_ref().and_then(|x| x.refusal.clone()) {
        Some(refusal)
    } else if !low.is_empty() {
        Some(format!(
            "{} sample(s) have a call rate below {:.0}% (first: {} at {:.1}%); remove them or fix their genotypes",
            low.len(),
            settings.min_sample_call_rate * 100.0,
            low[0].sample,
            low[0].call_rate * 100.0
        ))
    } else if !files.is_empty() && files.iter().all(|f| f.skipped.is_some()) {
        let names: Vec<&str> = files.iter().filter_map(|f| f.chromosome.as_deref()).collect();
        Some(format!(
            "the panel has none of the input's chromosomes ({}); choose a panel that covers them",
            names.join(", ")
        ))
    } else if let Some(o) = overlap.filter(|o| *o < settings.min_panel_overlap) {
        Some(format!(
            "only {:.1}% of the input's SNPs are in the reference panel (at least {:.0}% needed); check the genome build and that the panel covers these chromosomes",
            o * 100.0,
            settings.min_panel_overlap * 100.0
        ))
    } else if kept_total == 0 {
        Some("no variant passed QC; see the excluded variants for the reasons".to_string())
    } else {
        None
    };
    let report = QcReport {
        status: if message.is_none() { QcStatus::Passed } else { QcStatus::Failed },
        message,
        build: build.as_str().to_string(),
        samples: names.len(),
        files,
        variants_total: total,
        variants_kept: kept_total,
        excluded,
        panel_matches: matches,
        ambiguous_strand_matches: ambiguous,
        panel_overlap: overlap,
        low_call_rate_samples: low,
        repairs: Vec::new(),
        allele_frequency: frequencies.finish(),
        chrx,
        chunks: Vec::new(),
    };
    Ok((report, filtered))
}

#[cfg(test)]
mod tests;
