//! A panel as published, made into what the engines read, in one streaming pipeline per file:
//!
//! ```text
//! admin's VCF ─▶ clean ─▶ bcftools norm -m -any ─▶ dedupe, allele frequencies ─▶ <chrom>.vcf.gz
//!  (any gzip)   (thread)     (child process)             (this thread)          <chrom>.sites.vcf.gz
//! ```
//!
//! `clean` refuses what makes the whole file unusable (no samples, a second chromosome, unsorted,
//! names that do not match the build) and drops, with a count and examples, the records no engine
//! can use: symbolic alleles, no ALT, malformed lines, unphased or missing genotypes, repeats.
//! bcftools splits multi-allelic records into biallelic ones, keeping their IDs. The last stage
//! drops repeats the split made and writes the sites-only file QC reads, with allele frequencies
//! overall and per population. Records stream through fixed buffers: memory does not grow with
//! the size of the panel.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::imputation::GenomeBuild;
use crate::imputation::qc::{InputFile, QcError, lines, read_header, refuse};
use crate::imputation::vcf_io::{self, BgzfWriter, Effort};

/// Why a panel record was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PanelExclusion {
    /// An ALT allele is symbolic (`<DEL>`, `<CN0>`), a breakend or `*`: the engines impute
    /// sequence alleles only.
    Symbolic,
    /// ALT is `.`: there is no alternate allele to impute.
    NoAlternate,
    /// Columns missing, a position or allele that is not one, a genotype naming an allele the
    /// record does not have.
    Malformed,
    /// A genotype that is unphased or missing: reference haplotypes must be complete.
    UnphasedOrMissing,
    /// The same position and alleles as an earlier record (also after splitting).
    Duplicate,
}

impl PanelExclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelExclusion::Symbolic => "symbolic",
            PanelExclusion::NoAlternate => "no_alternate",
            PanelExclusion::Malformed => "malformed",
            PanelExclusion::UnphasedOrMissing => "unphased_or_missing",
            PanelExclusion::Duplicate => "duplicate",
        }
    }
}

/// What registering one panel file did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistrationReport {
    /// Records in the admin's file.
    pub records_read: u64,
    /// Multi-allelic records split into biallelic ones.
    pub multiallelic_split: u64,
    /// Records left out, per reason.
    pub excluded: BTreeMap<PanelExclusion, u64>,
    /// Biallelic records in the registered panel: SNPs, and indels and other sequence variants.
    pub sites: u64,
    pub snps: u64,
    pub indels: u64,
    /// The first few exclusions, with where they are.
    pub examples: Vec<String>,
}

impl RegistrationReport {
    /// One line for the admin.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} records read, {} sites registered ({} SNPs, {} indels and other variants)",
            self.records_read, self.sites, self.snps, self.indels
        );
        if self.multiallelic_split > 0 {
            s.push_str(&format!("; {} multi-allelic records split", self.multiallelic_split));
        }
        if !self.excluded.is_empty() {
            let parts: Vec<String> = self.excluded.iter().map(|(r, n)| format!("{n} {}", r.as_str())).collect();
            s.push_str(&format!("; excluded: {}", parts.join(", ")));
        }
        s
    }

    fn exclude(&mut self, reason: PanelExclusion, example: impl FnOnce() -> String) {
        *self.excluded.entry(reason).or_default() += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("{}: {}", reason.as_str(), example()));
        }
    }
}

const MAX_EXAMPLES: usize = 10;

/// Which population each panel sample belongs to, for per-population allele frequencies.
#[derive(Debug, Clone, Default)]
pub struct SamplePopulations {
    pub by_sample: HashMap<String, String>,
}

impl SamplePopulations {
    /// Reads `sample population [...]` rows (whitespace-separated; the 1000 Genomes panel file
    /// `sample pop super_pop gender` is one). A first row starting with `sample` is a header.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut by_sample = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let mut cols = line.split_whitespace();
            let (Some(sample), Some(population)) = (cols.next(), cols.next()) else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(format!("{}, line {}: expected `sample population`", path.display(), i + 1));
            };
            if i == 0 && sample.eq_ignore_ascii_case("sample") {
                continue;
            }
            if !population.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || population.len() > 32 {
                return Err(format!(
                    "{}, line {}: population {population:?} must be 1-32 letters, digits or _",
                    path.display(),
                    i + 1
                ));
            }
            if by_sample.insert(sample.to_string(), population.to_string()).is_some() {
                return Err(format!("{}, line {}: sample {sample} is listed twice", path.display(), i + 1));
            }
        }
        Ok(Self { by_sample })
    }

    /// The populations, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_sample.values().cloned().collect();
        names.sort();
        names.dedup();
        names
    }
}

/// One prepared panel file.
#[derive(Debug)]
pub struct Prepared {
    pub chromosome: String,
    pub samples: Vec<String>,
    pub report: RegistrationReport,
}

/// The header of a panel file: its sample names, read without reading the records.
pub fn read_samples(source: &Path) -> Result<Vec<String>, QcError> {
    let input = input_of(source);
    let (reader, _) = vcf_io::open_text(source)?;
    Ok(read_header(reader, &input)?.samples)
}

fn input_of(source: &Path) -> InputFile {
    InputFile { path: source.to_path_buf(), name: source.display().to_string() }
}

/// Runs the pipeline on `source`, writing the panel VCF to `vcf_out` and its sites to `sites_out`.
pub fn prepare_file(
    source: &Path,
    build: GenomeBuild,
    bcftools: &Path,
    populations: Option<&SamplePopulations>,
    vcf_out: &Path,
    sites_out: &Path,
) -> Result<Prepared, QcError> {
    let input = input_of(source);
    let (reader, _) = vcf_io::open_text(source)?;
    let opened = read_header(reader, &input)?;
    if opened.samples.is_empty() {
        return Err(refuse(&input, None, "has no samples: a reference panel needs haplotypes"));
    }
    let samples = opened.samples.clone();
    let mut child = Command::new(bcftools)
        .args(["norm", "--no-version", "-m", "-any", "-Ov", "-o", "-", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| refuse(&input, None, format!("cannot run {}: {e}", bcftools.display())))?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(QcError::Io(std::io::Error::other("bcftools started without its pipes")));
    };
    let clean_input = input.clone();
    let cleaner =
        std::thread::spawn(move || clean(opened, &clean_input, build, BufWriter::with_capacity(1 << 20, stdin)));
    let errors = std::thread::spawn(move || {
        let mut tail = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // bcftools notes each contig missing from the header; keep the last words only.
            tail = line;
        }
        tail
    });
    let columns = samples.len();
    let indexed = populations.map(|p| PopulationIndex::new(p, &samples));
    let finished = finish(BufReader::with_capacity(1 << 20, stdout), columns, indexed.as_ref(), vcf_out, sites_out);
    let status = child.wait()?;
    let tail = errors.join().unwrap_or_default();
    let cleaned = cleaner.join().map_err(|_| QcError::Io(std::io::Error::other("the cleaning pass panicked")))?;
    // The cleaner's refusal is the cause when both fail: bcftools only saw its input end.
    let (mut report, chromosome) = cleaned?;
    if !status.success() {
        return Err(refuse(&input, None, format!("bcftools norm could not split its records: {tail}")));
    }
    let counts = finished?;
    report.sites = counts.sites;
    report.snps = counts.snps;
    report.indels = counts.sites - counts.snps;
    for _ in 0..counts.duplicates {
        report.exclude(PanelExclusion::Duplicate, || "a repeat made by splitting a multi-allelic record".into());
    }
    let unphased = report.excluded.get(&PanelExclusion::UnphasedOrMissing).copied().unwrap_or(0);
    if unphased * 2 > report.records_read {
        return Err(refuse(
            &input,
            None,
            format!(
                "{unphased} of {} records have unphased or missing genotypes; a reference panel must be phased and complete (phase it first, e.g. with Beagle)",
                report.records_read
            ),
        ));
    }
    if report.sites == 0 {
        return Err(refuse(&input, None, format!("no usable record ({})", report.summary())));
    }
    Ok(Prepared { chromosome, samples, report })
}

/// The first stage: checks the file and writes the usable records, unchanged, to `out`.
fn clean(
    opened: crate::imputation::qc::OpenedInput,
    input: &InputFile,
    build: GenomeBuild,
    mut out: impl Write,
) -> Result<(RegistrationReport, String), QcError> {
    let mut reader = opened.reader;
    out.write_all(opened.header_text.as_bytes())?;
    let columns = opened.samples.len();
    let max_line = lines::max_record_bytes(columns);
    let mut report = RegistrationReport::default();
    let (mut chromosome, mut last_pos) = (None::<String>, 0u64);
    let mut at_position: Vec<Vec<u8>> = Vec::new();
    lines::for_each_record(reader.as_mut(), opened.header_lines, max_line, input, |line, record| {
        report.records_read += 1;
        let cols: Vec<&[u8]> = record.splitn(10, |b| *b == b'\t').collect();
        let where_ = |cols: &[&[u8]]| {
            format!(
                "line {line} ({}:{})",
                String::from_utf8_lossy(cols.first().copied().unwrap_or_default()),
                String::from_utf8_lossy(cols.get(1).copied().unwrap_or_default())
            )
        };
        if cols.len() < 10 {
            report.exclude(PanelExclusion::Malformed, || format!("{}: fewer than 10 columns", where_(&cols)));
            return Ok(());
        }
        let Ok(chrom) = std::str::from_utf8(cols[0]) else {
            report.exclude(PanelExclusion::Malformed, || format!("{}: CHROM is not text", where_(&cols)));
            return Ok(());
        };
        match &chromosome {
            None => {
                build.check_chromosome(chrom).map_err(|m| refuse(input, Some(line), m))?;
                chromosome = Some(chrom.to_string());
            }
            Some(c) if c != chrom => {
                return Err(refuse(
                    input,
                    Some(line),
                    format!("a second chromosome ({chrom} after {c}); give one file per chromosome"),
                ));
            }
            Some(_) => {}
        }
        let pos = match std::str::from_utf8(cols[1]).ok().and_then(|p| p.parse::<u64>().ok()) {
            Some(p) if p > 0 => p,
            _ => {
                report.exclude(PanelExclusion::Malformed, || format!("{}: POS is not a position", where_(&cols)));
                return Ok(());
            }
        };
        if pos < last_pos {
            return Err(refuse(
                input,
                Some(line),
                format!("not sorted ({pos} after {last_pos}); sort it with `bcftools sort`"),
            ));
        }
        if pos != last_pos {
            at_position.clear();
        }
        last_pos = pos;
        let (reference, alt) = (cols[3], cols[4]);
        if alt == b"." {
            report.exclude(PanelExclusion::NoAlternate, || format!("{}: ALT is .", where_(&cols)));
            return Ok(());
        }
        let alleles: Vec<&[u8]> = alt.split(|b| *b == b',').collect();
        if alleles.iter().any(|a| is_symbolic(a)) {
            report.exclude(PanelExclusion::Symbolic, || {
                format!("{}: ALT {}", where_(&cols), String::from_utf8_lossy(alt))
            });
            return Ok(());
        }
        if !is_sequence(reference) || alleles.iter().any(|a| !is_sequence(a) || a.eq_ignore_ascii_case(reference)) {
            report.exclude(PanelExclusion::Malformed, || {
                format!(
                    "{}: REF {} ALT {} are not sequence alleles",
                    where_(&cols),
                    String::from_utf8_lossy(reference),
                    String::from_utf8_lossy(alt)
                )
            });
            return Ok(());
        }
        match check_genotypes(cols[9], alleles.len() + 1, columns) {
            Genotypes::Complete => {}
            Genotypes::Unphased => {
                report.exclude(PanelExclusion::UnphasedOrMissing, || {
                    format!("{}: a genotype is unphased or missing", where_(&cols))
                });
                return Ok(());
            }
            Genotypes::Invalid(why) => {
                report.exclude(PanelExclusion::Malformed, || format!("{}: {why}", where_(&cols)));
                return Ok(());
            }
        }
        let alleles_key: Vec<u8> = [reference, b"\t", alt].concat();
        if at_position.contains(&alleles_key) {
            report
                .exclude(PanelExclusion::Duplicate, || format!("{}: same alleles as the record before", where_(&cols)));
            return Ok(());
        }
        at_position.push(alleles_key);
        if alleles.len() > 1 {
            report.multiallelic_split += 1;
        }
        out.write_all(record)?;
        out.write_all(b"\n")?;
        Ok(())
    })?;
    out.flush()?;
    let chromosome = chromosome.ok_or_else(|| refuse(input, None, "has no variants"))?;
    Ok((report, chromosome))
}

fn is_symbolic(allele: &[u8]) -> bool {
    allele.first() == Some(&b'<') || allele == b"*" || allele.iter().any(|b| matches!(b, b'[' | b']'))
}

fn is_sequence(allele: &[u8]) -> bool {
    !allele.is_empty() && allele.iter().all(|b| matches!(b.to_ascii_uppercase(), b'A' | b'C' | b'G' | b'T' | b'N'))
}

enum Genotypes {
    Complete,
    Unphased,
    Invalid(String),
}

/// Every sample's GT phased (or haploid), called, and naming alleles the record has.
fn check_genotypes(samples: &[u8], alleles: usize, columns: usize) -> Genotypes {
    let mut found = 0;
    for field in samples.split(|b| *b == b'\t') {
        found += 1;
        let gt = field.split(|b| *b == b':').next().unwrap_or_default();
        if gt.contains(&b'/') {
            return Genotypes::Unphased;
        }
        for allele in gt.split(|b| *b == b'|') {
            if allele == b"." || allele.is_empty() {
                return Genotypes::Unphased;
            }
            match std::str::from_utf8(allele).ok().and_then(|a| a.parse::<usize>().ok()) {
                Some(a) if a < alleles => {}
                _ => {
                    return Genotypes::Invalid(format!(
                        "genotype {:?} names an allele the record does not have",
                        String::from_utf8_lossy(gt)
                    ));
                }
            }
        }
    }
    if found != columns {
        return Genotypes::Invalid(format!("{found} sample columns, the header names {columns}"));
    }
    Genotypes::Complete
}

/// Population of each sample column, as indexes into `names`.
struct PopulationIndex {
    names: Vec<String>,
    of_column: Vec<Option<usize>>,
}

impl PopulationIndex {
    fn new(populations: &SamplePopulations, samples: &[String]) -> Self {
        let names = populations.names();
        let of_column = samples
            .iter()
            .map(|s| populations.by_sample.get(s).and_then(|p| names.iter().position(|n| n == p)))
            .collect();
        Self { names, of_column }
    }
}

struct FinishCounts {
    sites: u64,
    snps: u64,
    duplicates: u64,
}

/// The last stage: the split records, without repeats, to `vcf_out`, and their sites with
/// allele counts and frequencies to `sites_out`.
fn finish(
    mut reader: impl BufRead,
    columns: usize,
    populations: Option<&PopulationIndex>,
    vcf_out: &Path,
    sites_out: &Path,
) -> Result<FinishCounts, QcError> {
    let mut vcf = BgzfWriter::create(vcf_out, Effort::Default)?;
    let mut sites = BgzfWriter::create(sites_out, Effort::Default)?;
    let mut counts = FinishCounts { sites: 0, snps: 0, duplicates: 0 };
    let max_line = lines::max_record_bytes(columns);
    let mut buf = Vec::with_capacity(1 << 16);
    let (mut last_pos, mut at_position) = (Vec::new(), Vec::<Vec<u8>>::new());
    let groups = populations.map(|p| p.names.len()).unwrap_or(0);
    let mut group_counts = vec![(0u64, 0u64); groups];
    let mut info = String::new();
    loop {
        match lines::read_line(&mut reader, &mut buf, max_line)? {
            lines::Line::End => break,
            lines::Line::TooLong => {
                return Err(QcError::Io(std::io::Error::other("bcftools wrote a record longer than its input's")));
            }
            lines::Line::Read(_) => {}
        }
        if buf.starts_with(b"#") {
            vcf.write_all(&buf)?;
            if buf.starts_with(b"##contig") || buf.starts_with(b"##fileformat") {
                sites.write_all(&buf)?;
            } else if buf.starts_with(b"#CHROM") {
                write_sites_header(&mut sites, populations)?;
            }
            continue;
        }
        let record = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let cols: Vec<&[u8]> = record.splitn(10, |b| *b == b'\t').collect();
        if cols.len() < 10 {
            return Err(QcError::Io(std::io::Error::other("bcftools wrote a record without genotypes")));
        }
        if cols[1] != last_pos.as_slice() {
            last_pos.clear();
            last_pos.extend_from_slice(cols[1]);
            at_position.clear();
        }
        let key: Vec<u8> = [cols[3], b"\t", cols[4]].concat();
        if at_position.contains(&key) {
            counts.duplicates += 1;
            continue;
        }
        at_position.push(key);
        let (mut alt, mut total) = (0u64, 0u64);
        group_counts.iter_mut().for_each(|c| *c = (0, 0));
        for (column, field) in cols[9].split(|b| *b == b'\t').enumerate() {
            let gt = field.split(|b| *b == b':').next().unwrap_or_default();
            let group = populations.and_then(|p| p.of_column.get(column).copied().flatten());
            for allele in gt.split(|b| *b == b'|') {
                let is_alt = allele == b"1";
                total += 1;
                alt += u64::from(is_alt);
                if let Some(g) = group {
                    group_counts[g].0 += u64::from(is_alt);
                    group_counts[g].1 += 1;
                }
            }
        }
        info.clear();
        info.push_str(&format!("AC={alt};AN={total};AF={}", frequency(alt, total)));
        if let Some(p) = populations {
            for (name, (a, n)) in p.names.iter().zip(&group_counts) {
                info.push_str(&format!(";AF_{name}={};AC_{name}={a};AN_{name}={n}", frequency(*a, *n)));
            }
        }
        vcf.write_all(record)?;
        vcf.write_all(b"\n")?;
        for col in &cols[..5] {
            sites.write_all(col)?;
            sites.write_all(b"\t")?;
        }
        sites.write_all(b".\t.\t")?;
        sites.write_all(info.as_bytes())?;
        sites.write_all(b"\n")?;
        counts.sites += 1;
        counts.snps += u64::from(cols[3].len() == 1 && cols[4].len() == 1);
    }
    vcf.finish()?;
    sites.finish()?;
    Ok(counts)
}

fn write_sites_header(out: &mut impl Write, populations: Option<&PopulationIndex>) -> std::io::Result<()> {
    out.write_all(b"##INFO=<ID=AC,Number=A,Type=Integer,Description=\"ALT allele count in the panel\">\n")?;
    out.write_all(b"##INFO=<ID=AN,Number=1,Type=Integer,Description=\"Alleles in the panel\">\n")?;
    out.write_all(b"##INFO=<ID=AF,Number=A,Type=Float,Description=\"ALT allele frequency in the panel\">\n")?;
    for name in populations.map(|p| p.names.as_slice()).unwrap_or_default() {
        writeln!(out, "##INFO=<ID=AF_{name},Number=A,Type=Float,Description=\"ALT allele frequency in {name}\">")?;
        writeln!(out, "##INFO=<ID=AC_{name},Number=A,Type=Integer,Description=\"ALT allele count in {name}\">")?;
        writeln!(out, "##INFO=<ID=AN_{name},Number=1,Type=Integer,Description=\"Alleles in {name}\">")?;
    }
    out.write_all(b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
}

/// A frequency with six decimals and no trailing zeros (`0.25`, `0`, `1`).
fn frequency(count: u64, total: u64) -> String {
    if total == 0 {
        return ".".into();
    }
    let text = format!("{:.6}", count as f64 / total as f64);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests;
