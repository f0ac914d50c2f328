//! The merged result of a multi-panel job: for every variant imputed by any panel, the call of
//! the panel with the highest estimated r2, as a bgzipped VCF, and a report of how many
//! variants each panel won per MAF bin.
//!
//! The panels' dosage VCFs of one chromosome are read side by side, position by position (each
//! is sorted by position, as the engines write them); the record kept is copied byte for byte
//! with the winning panel added to its INFO (`PANEL=`). Ties go to the panel listed first. The
//! VCFs must have the same samples in the same order, which they do when the children imputed
//! the same input.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use noodles::bgzf;
use serde::{Deserialize, Serialize};

use crate::imputation::dose::maf_bin;

/// How many variants each panel won, per MAF bin and in all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MergeReport {
    /// The panels in the order given (ties went to the earlier one).
    pub panels: Vec<String>,
    /// MAF bin (`<1%`, `1-5%`, `>5%`) -> panel -> variants won.
    pub wins_by_maf: BTreeMap<String, BTreeMap<String, u64>>,
    /// Panel -> variants won.
    pub wins: BTreeMap<String, u64>,
    /// Variants in the merged output.
    pub variants: u64,
}

/// Why a merge failed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("the panels' VCFs do not have the same samples ({0} differs from the first)")]
    SampleMismatch(String),
    #[error("merge I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One panel's dosage VCF of the chromosome.
pub struct PanelVcf<'a> {
    pub panel: &'a str,
    pub path: &'a Path,
}

struct Record {
    pos: u64,
    key: (String, String),
    r2: f64,
    maf: f64,
    line: String,
}

struct Source {
    name: String,
    file: String,
    lines: std::io::Lines<BufReader<bgzf::io::Reader<std::fs::File>>>,
    next: Option<Record>,
}

impl Source {
    fn advance(&mut self) -> Result<(), MergeError> {
        self.next = match self.lines.next().transpose()? {
            None => None,
            Some(line) => Some(parse(&line).ok_or_else(|| MergeError::Input {
                file: self.file.clone(),
                message: format!("unreadable record: {}", line.chars().take(80).collect::<String>()),
            })?),
        };
        Ok(())
    }
}

/// Position, alleles, estimated r2 (`DR2` from Beagle, `R2` from Minimac4) and MAF (`AF` or
/// `MAF`) of a VCF record line.
fn parse(line: &str) -> Option<Record> {
    let mut fields = line.splitn(9, '\t');
    let _chrom = fields.next()?;
    let pos = fields.next()?.parse().ok()?;
    let _id = fields.next()?;
    let (reference, alt) = (fields.next()?.to_string(), fields.next()?.to_string());
    let (_qual, _filter) = (fields.next()?, fields.next()?);
    let info = fields.next()?;
    let mut r2 = None;
    let mut maf = None;
    for item in info.split(';') {
        match item.split_once('=') {
            Some(("DR2" | "R2", v)) => r2 = v.parse::<f64>().ok(),
            Some(("AF", v)) => maf = v.parse::<f64>().ok().map(|af| af.min(1.0 - af)),
            Some(("MAF", v)) => maf = v.parse::<f64>().ok(),
            _ => {}
        }
    }
    Some(Record { pos, key: (reference, alt), r2: r2.unwrap_or(-1.0), maf: maf.unwrap_or(0.0), line: line.to_string() })
}

/// Adds `PANEL=name` to the INFO column of a record line.
fn with_panel(line: &str, panel: &str) -> String {
    let mut fields: Vec<&str> = line.splitn(9, '\t').collect();
    let info = if fields.get(7).is_some_and(|i| *i != ".") {
        format!("{};PANEL={panel}", fields[7])
    } else {
        format!("PANEL={panel}")
    };
    if fields.len() > 7 {
        fields[7] = &info;
    }
    fields.join("\t")
}

/// Merges one chromosome's dosage VCFs of several panels into `out` (bgzipped), adding to
/// `report`.
pub fn merge_chromosome(inputs: &[PanelVcf<'_>], out: &Path, report: &mut MergeReport) -> Result<(), MergeError> {
    let mut sources = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let mut samples_line: Option<String> = None;
    for input in inputs {
        let file = input.path.display().to_string();
        let reader = bgzf::io::Reader::new(std::fs::File::open(input.path)?);
        let mut lines = BufReader::new(reader).lines();
        let mut meta = Vec::new();
        loop {
            let Some(line) = lines.next().transpose()? else {
                return Err(MergeError::Input { file, message: "no #CHROM header line".into() });
            };
            if line.starts_with("##") {
                meta.push(line);
            } else if line.starts_with("#CHROM") {
                match &samples_line {
                    None => samples_line = Some(line),
                    Some(first) if *first == line => {}
                    Some(_) => return Err(MergeError::SampleMismatch(input.panel.to_string())),
                }
                break;
            } else {
                return Err(MergeError::Input { file, message: "record before the #CHROM header line".into() });
            }
        }
        header.get_or_insert(meta);
        let mut source = Source { name: input.panel.to_string(), file, lines, next: None };
        source.advance()?;
        sources.push(source);
    }
    let (Some(header), Some(samples_line)) = (header, samples_line) else {
        return Err(MergeError::Input { file: out.display().to_string(), message: "no input".into() });
    };
    report.panels = inputs.iter().map(|i| i.panel.to_string()).collect();

    let mut writer = bgzf::io::Writer::new(std::fs::File::create(out)?);
    for line in &header {
        writeln!(writer, "{line}")?;
    }
    writeln!(
        writer,
        "##INFO=<ID=PANEL,Number=1,Type=String,Description=\"Reference panel whose call is kept: the highest estimated r2 among {}\">",
        report.panels.join(", ")
    )?;
    writeln!(writer, "{samples_line}")?;

    while let Some(pos) = sources.iter().filter_map(|s| s.next.as_ref().map(|r| r.pos)).min() {
        // Every record at this position from every panel, by alleles; panels in input order.
        let mut at_pos: BTreeMap<(String, String), Vec<(usize, Record)>> = BTreeMap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            while source.next.as_ref().is_some_and(|r| r.pos == pos) {
                if let Some(record) = source.next.take() {
                    at_pos.entry(record.key.clone()).or_default().push((i, record));
                }
                source.advance()?;
            }
            if source.next.as_ref().is_some_and(|r| r.pos < pos) {
                return Err(MergeError::Input { file: source.file.clone(), message: "records are not sorted".into() });
            }
        }
        for (_, candidates) in at_pos {
            // max_by keeps the last of equals; iterate in reverse so ties go to the first panel.
            let Some((i, best)) = candidates.into_iter().rev().max_by(|(_, a), (_, b)| a.r2.total_cmp(&b.r2)) else {
                continue;
            };
            let panel = &sources[i].name;
            writeln!(writer, "{}", with_panel(&best.line, panel))?;
            *report.wins.entry(panel.clone()).or_default() += 1;
            *report.wins_by_maf.entry(maf_bin(best.maf).to_string()).or_default().entry(panel.clone()).or_default() +=
                1;
            report.variants += 1;
        }
    }
    writer.finish()?;
    Ok(())
}

/// Text form of the report, for people.
pub fn report_text(report: &MergeReport) -> String {
    let mut out = format!("Merged {} variants from panels {}\n", report.variants, report.panels.join(", "));
    let mut rows: HashMap<&str, &BTreeMap<String, u64>> = HashMap::new();
    for (bin, wins) in &report.wins_by_maf {
        rows.insert(bin, wins);
    }
    out.push_str(&format!("MAF bin\t{}\n", report.panels.join("\t")));
    for bin in ["<1%", "1-5%", ">5%"] {
        let counts: Vec<String> = report
            .panels
            .iter()
            .map(|p| rows.get(bin).and_then(|w| w.get(p)).copied().unwrap_or(0).to_string())
            .collect();
        out.push_str(&format!("{bin}\t{}\n", counts.join("\t")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vcf(dir: &Path, name: &str, records: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut w = bgzf::io::Writer::new(std::fs::File::create(&path).unwrap());
        writeln!(w, "##fileformat=VCFv4.2").unwrap();
        writeln!(w, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1").unwrap();
        for r in records {
            writeln!(w, "{r}").unwrap();
        }
        w.finish().unwrap();
        path
    }

    fn read(path: &Path) -> Vec<String> {
        BufReader::new(bgzf::io::Reader::new(std::fs::File::open(path).unwrap())).lines().map(|l| l.unwrap()).collect()
    }

    #[test]
    fn every_variant_keeps_the_call_with_the_highest_r2() {
        let dir = tempfile::tempdir().unwrap();
        let a = vcf(
            dir.path(),
            "a.vcf.gz",
            &[
                "20\t100\t.\tA\tG\t.\tPASS\tDR2=0.90;AF=0.2;IMP\tDS\t0.1",
                "20\t200\t.\tC\tT\t.\tPASS\tDR2=0.30;AF=0.004;IMP\tDS\t0.2",
                "20\t300\t.\tG\tA\t.\tPASS\tDR2=0.50;AF=0.03;IMP\tDS\t0.3",
            ],
        );
        let b = vcf(
            dir.path(),
            "b.vcf.gz",
            &[
                "20\t150\t.\tT\tC\t.\tPASS\tDR2=0.70;AF=0.5;IMP\tDS\t1.1",
                "20\t200\t.\tC\tT\t.\tPASS\tDR2=0.80;AF=0.004;IMP\tDS\t1.2",
                "20\t300\t.\tG\tA\t.\tPASS\tDR2=0.50;AF=0.03;IMP\tDS\t1.3",
            ],
        );
        let out = dir.path().join("merged.vcf.gz");
        let mut report = MergeReport::default();
        let inputs = [PanelVcf { panel: "afr", path: &a }, PanelVcf { panel: "eur", path: &b }];
        merge_chromosome(&inputs, &out, &mut report).unwrap();
        let lines = read(&out);
        let body: Vec<&String> = lines.iter().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(body.len(), 4);
        assert!(body[0].starts_with("20\t100") && body[0].contains("PANEL=afr") && body[0].ends_with("0.1"));
        assert!(body[1].starts_with("20\t150") && body[1].contains("PANEL=eur"));
        assert!(body[2].starts_with("20\t200") && body[2].contains("DR2=0.80") && body[2].ends_with("1.2"));
        assert!(body[3].starts_with("20\t300") && body[3].contains("PANEL=afr"), "a tie goes to the first panel");
        assert!(lines.iter().any(|l| l.starts_with("##INFO=<ID=PANEL")));
        assert_eq!(report.wins, [("afr".to_string(), 2), ("eur".to_string(), 2)].into());
        assert_eq!(report.wins_by_maf["<1%"]["eur"], 1);
        assert_eq!(report.wins_by_maf["1-5%"]["afr"], 1);
        assert_eq!(report.variants, 4);
        assert!(report_text(&report).contains("<1%\t0\t1"));
    }

    #[test]
    fn different_samples_cannot_be_merged() {
        let dir = tempfile::tempdir().unwrap();
        let a = vcf(dir.path(), "a.vcf.gz", &[]);
        let path = dir.path().join("b.vcf.gz");
        let mut w = bgzf::io::Writer::new(std::fs::File::create(&path).unwrap());
        writeln!(w, "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tother").unwrap();
        w.finish().unwrap();
        let inputs = [PanelVcf { panel: "a", path: &a }, PanelVcf { panel: "b", path: &path }];
        let err = merge_chromosome(&inputs, &dir.path().join("m.vcf.gz"), &mut MergeReport::default()).unwrap_err();
        assert!(matches!(err, MergeError::SampleMismatch(p) if p == "b"));
    }
}
