//! The dosage VCF and info file of one chromosome, in the layout researchers' scripts read
//! (the Michigan Imputation Server's): one streaming pass over an engine's output that
//!
//! - drops variants under the job's r2 filter,
//! - puts provenance lines in the header (fedimpute version, job, panel and its host, engine,
//!   phasing, r2 filter), replacing any an earlier step wrote,
//! - writes `chr<N>.dose.vcf.gz` (bgzip; indexed with tabix afterwards) and `chr<N>.info.gz`
//!   with Michigan's columns, filled from the engine's own figures: Minimac4's `R2`, `ER2` and
//!   `TYPED`/`TYPED_ONLY` flags, Beagle's `DR2` (as Rsq) and `IMP` flag (absent: genotyped),
//! - and counts typed and imputed variants and r2 by MAF bin for the job summary.
//!
//! Memory does not grow with the number of variants or samples: records go through one buffer.

use std::io::Write;
use std::path::Path;

use super::qc::lines;
use super::vcf_io::{self, BgzfWriter, Effort};

/// Header of the info file: Michigan's columns.
pub const INFO_COLUMNS: &str =
    "SNP\tREF(0)\tALT(1)\tALT_Frq\tMAF\tAvgCall\tRsq\tGenotyped\tLooRsq\tEmpR\tEmpRsq\tDose0\tDose1";

/// Prefix of the provenance header lines.
pub const PROVENANCE_PREFIX: &str = "##fedimpute_";

/// What the finishing pass found, for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DoseCounts {
    pub imputed: u64,
    pub typed: u64,
    /// Dropped by the r2 filter.
    pub filtered: u64,
    /// Imputed variants per MAF bin (`<1%`, `1-5%`, `>5%`): count and sum of Rsq.
    pub bins: [(u64, f64); 3],
}

/// The bin index of a MAF: 0 `<1%`, 1 `1-5%`, 2 `>5%`.
pub fn maf_bin_index(maf: f64) -> usize {
    if maf < 0.01 {
        0
    } else if maf < 0.05 {
        1
    } else {
        2
    }
}

/// The name of a MAF's bin: `<1%`, `1-5%` or `>5%`.
pub fn maf_bin(maf: f64) -> &'static str {
    ["<1%", "1-5%", ">5%"][maf_bin_index(maf)]
}

/// Why finishing failed.
#[derive(Debug, thiserror::Error)]
pub enum DoseError {
    #[error("{0}")]
    Invalid(String),
    #[error("dose file I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What a record's INFO says.
#[derive(Debug, Default)]
struct Info<'a> {
    rsq: Option<&'a str>,
    er2: Option<&'a str>,
    /// Beagle's IMP flag.
    imp: bool,
    /// Minimac4's TYPED and TYPED_ONLY flags.
    typed: bool,
    typed_only: bool,
    /// Whether the engine is Beagle (DR2) rather than Minimac4 (R2).
    beagle: bool,
}

fn parse_info(info: &str) -> Info<'_> {
    let mut out = Info::default();
    for item in info.split(';') {
        match item.split_once('=') {
            Some(("DR2", v)) => {
                out.rsq = Some(v);
                out.beagle = true;
            }
            Some(("R2", v)) => out.rsq = Some(v),
            Some(("ER2", v)) => out.er2 = Some(v),
            None if item == "IMP" => out.imp = true,
            None if item == "TYPED" => out.typed = true,
            None if item == "TYPED_ONLY" => out.typed_only = true,
            _ => {}
        }
    }
    out
}

/// Finishes `engine_output` into `dose` and `info`. `provenance` holds `key=value` pairs, written
/// as `##fedimpute_key=value`.
pub fn finish(
    engine_output: &Path,
    dose: &Path,
    info: &Path,
    r2_filter: f64,
    provenance: &[(String, String)],
) -> Result<DoseCounts, DoseError> {
    let (mut reader, _) = vcf_io::open_text(engine_output)?;
    let mut dose_out = BgzfWriter::create(dose, Effort::Default)?;
    let mut info_out = BgzfWriter::create(info, Effort::Default)?;
    info_out.write_all(INFO_COLUMNS.as_bytes())?;
    info_out.write_all(b"\n")?;
    let mut counts = DoseCounts::default();
    let mut buf = Vec::with_capacity(1 << 16);
    // Engines write fewer than 64 bytes per sample; any longer line is not theirs.
    let mut max_line = lines::MAX_HEADER_BYTES;
    let mut row = String::new();
    loop {
        match lines::read_line(reader.as_mut(), &mut buf, max_line)? {
            lines::Line::End => break,
            lines::Line::TooLong => return Err(DoseError::Invalid("a record is longer than the engine writes".into())),
            lines::Line::Read(_) => {}
        }
        if buf.starts_with(b"##") {
            if !buf.starts_with(PROVENANCE_PREFIX.as_bytes()) {
                dose_out.write_all(&buf)?;
            }
            continue;
        }
        if buf.starts_with(b"#CHROM") {
            for (key, value) in provenance {
                writeln!(dose_out, "{PROVENANCE_PREFIX}{key}={}", value.replace(['\n', '\r'], " "))?;
            }
            dose_out.write_all(&buf)?;
            let samples = buf.split(|b| *b == b'\t').count().saturating_sub(9);
            max_line = lines::max_record_bytes(samples);
            continue;
        }
        let text = std::str::from_utf8(&buf).map_err(|_| DoseError::Invalid("a record is not text".into()))?;
        let record = text.trim_end_matches(['\n', '\r']);
        let cols: Vec<&str> = record.splitn(10, '\t').collect();
        if cols.len() < 8 {
            return Err(DoseError::Invalid(format!("a record has {} columns", cols.len())));
        }
        let info = parse_info(cols[7]);
        let rsq: Option<f64> = info.rsq.and_then(|v| v.parse().ok());
        if r2_filter > 0.0 && rsq.is_some_and(|r| r < r2_filter) {
            counts.filtered += 1;
            continue;
        }
        let (dosage_sum, best_sum, n, alleles) =
            dosages(cols.get(8).copied().unwrap_or(""), cols.get(9).copied().unwrap_or(""));
        let alt_frq = if alleles > 0 { dosage_sum / alleles as f64 } else { 0.0 };
        let maf = alt_frq.min(1.0 - alt_frq);
        let avg_call = if n > 0 { best_sum / n as f64 } else { 0.0 };
        let status = if info.typed_only {
            "Typed_Only"
        } else if info.typed || (info.beagle && !info.imp) {
            "Genotyped"
        } else {
            "Imputed"
        };
        if status == "Imputed" {
            counts.imputed += 1;
            let bin = &mut counts.bins[maf_bin_index(maf)];
            bin.0 += 1;
            bin.1 += rsq.unwrap_or(0.0);
        } else {
            counts.typed += 1;
        }
        row.clear();
        let (chrom, pos, reference, alt) = (cols[0], cols[1], cols[3], cols[4]);
        row.push_str(&format!(
            "{chrom}:{pos}:{reference}:{alt}\t{reference}\t{alt}\t{alt_frq:.5}\t{maf:.5}\t{avg_call:.5}\t{}\t{status}\t-\t-\t{}\t-\t-\n",
            info.rsq.unwrap_or("-"),
            info.er2.unwrap_or("-"),
        ));
        info_out.write_all(row.as_bytes())?;
        dose_out.write_all(record.as_bytes())?;
        dose_out.write_all(b"\n")?;
    }
    dose_out.finish()?;
    info_out.finish()?;
    Ok(counts)
}

/// Sum of ALT dosages, sum of best-genotype probabilities, samples with a dosage and their
/// alleles (a haploid male on chrX has one), from the FORMAT column and the sample columns (DS
/// and GP where present, else GT).
fn dosages(format: &str, samples: &str) -> (f64, f64, u64, u64) {
    let keys: Vec<&str> = format.split(':').collect();
    let (ds, gp, gt) = (
        keys.iter().position(|k| *k == "DS"),
        keys.iter().position(|k| *k == "GP"),
        keys.iter().position(|k| *k == "GT"),
    );
    let (mut dosage_sum, mut best_sum, mut n, mut alleles) = (0.0, 0.0, 0u64, 0u64);
    if samples.is_empty() {
        return (0.0, 0.0, 0, 0);
    }
    for sample in samples.split('\t') {
        let fields: Vec<&str> = sample.split(':').collect();
        let dosage = match ds.and_then(|i| fields.get(i)).and_then(|v| v.parse::<f64>().ok()) {
            Some(d) => Some(d),
            None => gt.and_then(|i| fields.get(i)).and_then(|g| {
                let alleles: Vec<&str> = g.split(['|', '/']).collect();
                alleles
                    .iter()
                    .all(|a| *a == "0" || *a == "1")
                    .then(|| alleles.iter().filter(|a| **a == "1").count() as f64)
            }),
        };
        let Some(dosage) = dosage else { continue };
        n += 1;
        alleles += gt.and_then(|i| fields.get(i)).map(|g| g.split(['|', '/']).count() as u64).unwrap_or(2);
        dosage_sum += dosage;
        best_sum += match gp.and_then(|i| fields.get(i)) {
            Some(probs) => probs.split(',').filter_map(|p| p.parse::<f64>().ok()).fold(0.0, f64::max),
            None => 1.0,
        };
    }
    (dosage_sum, best_sum, n, alleles)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn read(path: &Path) -> String {
        let (mut r, _) = vcf_io::open_text(path).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn beagle_and_minimac4_output_become_michigan_info_rows_with_their_own_figures() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.vcf");
        std::fs::write(
            &input,
            "##fileformat=VCFv4.2\n##fedimpute_job=old\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\n\
20\t100\t.\tA\tG\t.\tPASS\tAF=0.25;DR2=0.91;IMP\tGT:DS:GP\t0|1:1:0,1,0\t0|0:0:0.8,0.2,0\n\
20\t200\t.\tC\tT\t.\tPASS\tAF=0.5;DR2=1.00\tGT:DS:GP\t0|1:1:0,1,0\t1|0:1:0,1,0\n\
20\t300\t.\tC\tT\t.\tPASS\tAF=0.5;DR2=0.05;IMP\tGT:DS:GP\t0|1:1:0,1,0\t1|0:1:0,1,0\n\
20\t400\t.\tG\tA\t.\tPASS\tAF=0.1;MAF=0.1;R2=0.7;ER2=0.66;TYPED\tGT:DS\t0|0:0.1\t0|1:0.9\n\
20\t500\t.\tG\tA\t.\tPASS\tMAF=0.1;R2=0.2;TYPED_ONLY\tGT\t0|0\t0|1\n\
20\t600\t.\tG\tA\t.\tPASS\tDR2=0.9;IMP\tGT:DS\t1:1\t0|1:1\n",
        )
        .unwrap();
        let (dose, info) = (dir.path().join("d.vcf.gz"), dir.path().join("i.gz"));
        let provenance = vec![("job".to_string(), "j1".to_string()), ("panel".to_string(), "sim".to_string())];
        let counts = finish(&input, &dose, &info, 0.1, &provenance).unwrap();
        assert_eq!((counts.imputed, counts.typed, counts.filtered), (2, 3, 1));
        assert_eq!(counts.bins[2].0, 2, "ALT_Frq 0.25 and MAF 0.33 are in the >5% bin");
        let text = read(&dose);
        assert!(text.contains("##fedimpute_job=j1\n##fedimpute_panel=sim\n#CHROM"), "{text}");
        assert!(!text.contains("fedimpute_job=old"), "earlier provenance is replaced");
        assert!(!text.contains("\t300\t"), "under the r2 filter");
        let rows: Vec<String> = read(&info).lines().map(String::from).collect();
        assert_eq!(rows[0], INFO_COLUMNS);
        assert_eq!(rows[1], "20:100:A:G\tA\tG\t0.25000\t0.25000\t0.90000\t0.91\tImputed\t-\t-\t-\t-\t-");
        assert_eq!(rows[2], "20:200:C:T\tC\tT\t0.50000\t0.50000\t1.00000\t1.00\tGenotyped\t-\t-\t-\t-\t-");
        assert_eq!(rows[3], "20:400:G:A\tG\tA\t0.25000\t0.25000\t1.00000\t0.7\tGenotyped\t-\t-\t0.66\t-\t-");
        assert_eq!(rows[4], "20:500:G:A\tG\tA\t0.25000\t0.25000\t1.00000\t0.2\tTyped_Only\t-\t-\t-\t-\t-");
        assert_eq!(
            rows[5], "20:600:G:A\tG\tA\t0.66667\t0.33333\t1.00000\t0.9\tImputed\t-\t-\t-\t-\t-",
            "a haploid male has one allele"
        );
        assert_eq!(rows.len(), 6);
    }
}
