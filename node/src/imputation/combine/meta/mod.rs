//! Meta-imputation (Yu et al. 2022, "Meta-imputation: an efficient method to combine genotype
//! data after imputation with multiple reference panels"; the tool MetaMinimac2): the panels'
//! Minimac4 results of the same phased targets, combined per haplotype with weights learnt at
//! the typed sites.
//!
//! Input per panel: the dose VCF (`HDS`) and the empirical VCF Minimac4 writes with
//! `--empirical-output` (per typed site the panel also has: the observed allele `GT` and
//! `LDS`, the ALT dosage computed with that site hidden). Three streaming passes, memory flat in
//! the number of sites:
//! 1. the empirical files side by side: the training sites (typed sites every panel has, with the
//!    same observed alleles), the forward pass of the [`hmm`];
//! 2. the backward pass, on disk;
//! 3. the dose files side by side: at every site of their union, `HDS = sum_k w_k HDS_k` with the
//!    haplotype's weights there; `DS`, `GP` and `GT` from the two HDS; `R2` recomputed from the
//!    combined dosages (`var(HDS) / p(1-p)`).
//!
//! A panel without a site is monomorphic there (its haplotypes all carry one allele). What it
//! stands for is the [`AbsentRule`].

pub mod hmm;
pub mod phasing;
mod records;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use self::hmm::{ForwardBackward, WeightReader, allele_key, emission};
use self::records::{MISSING, Stream, Variant, for_each_variant, open_matching};
use crate::imputation::dose::maf_bin_index;
use crate::imputation::vcf_io::{BgzfWriter, Effort};

const MAF_BINS: [&str; 3] = ["<1%", "1-5%", ">5%"];

/// What a panel that lacks a site contributes there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbsentRule {
    /// The panels that have the site share the absent panels' weight (MetaMinimac2's rule).
    PassThrough,
    /// The absent panel stands for REF on every haplotype.
    Ref,
    /// The absent panel stands for the allele its haplotypes most likely all carry: what the
    /// panels that have the site predict for the target haplotypes weighted to the absent panel
    /// (REF unless they mostly carry ALT).
    #[default]
    Infer,
}

impl std::str::FromStr for AbsentRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pass_through" => Ok(Self::PassThrough),
            "ref" => Ok(Self::Ref),
            "infer" => Ok(Self::Infer),
            other => Err(format!("unknown rule {other:?} for absent sites: pass_through, ref or infer")),
        }
    }
}

/// One panel's results for one chromosome.
pub struct MetaPanel<'a> {
    pub name: &'a str,
    pub dose: &'a Path,
    pub empirical: &'a Path,
}

/// Why a combination failed.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("{file} does not have the samples of {first}, in the same order")]
    SampleMismatch { file: String, first: String },
    #[error(
        "the panels saw different typed alleles at {pos} ({panel} differs from {first}): \
         meta-imputation needs the same phased targets at every panel"
    )]
    ObservedMismatch { pos: u64, panel: String, first: String },
    #[error("no typed site is in every panel's empirical file: there is nothing to learn the weights from")]
    NoTrainingSites,
    #[error("meta-imputation needs at least two panels")]
    TooFewPanels,
    #[error("meta-imputation I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What combining one chromosome found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChromosomeMeta {
    pub chromosome: String,
    /// Typed sites every panel had, with the same observed alleles.
    pub training_sites: u64,
    /// Typed sites only some panels had (not used for training).
    pub typed_not_in_every_panel: u64,
    /// Sites in the combined output.
    pub variants: u64,
    /// Of them, sites that some panel lacked.
    pub not_in_every_panel: u64,
    /// Of those, (site, absent panel) pairs where the absent panel was taken to stand for ALT.
    pub absent_taken_as_alt: u64,
}

/// A sample's mean weight for each panel over the training sites and its two haplotypes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleWeights {
    pub sample: String,
    /// In the report's panel order.
    pub mean_weights: Vec<f64>,
}

/// The combined output's estimated accuracy in one MAF bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MafBinR2 {
    pub variants: u64,
    pub mean_r2: f64,
}

/// A meta-imputation job's report: per chromosome what was combined, per sample what the
/// federation learnt about which panel fits it, and the estimated accuracy by MAF bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetaReport {
    pub panels: Vec<String>,
    pub absent_rule: AbsentRule,
    pub chromosomes: Vec<ChromosomeMeta>,
    pub samples: Vec<SampleWeights>,
    /// MAF bin (`<1%`, `1-5%`, `>5%`) -> the combined output's estimated r2 there.
    pub estimated_r2_by_maf: BTreeMap<String, MafBinR2>,
    /// Per sample and panel, the sum of the haplotypes' weights over the training sites.
    #[serde(skip)]
    weight_sums: Vec<f64>,
    #[serde(skip)]
    training_haplotype_sites: f64,
}

impl MetaReport {
    pub fn new(panels: &[&str], absent_rule: AbsentRule) -> Self {
        Self { panels: panels.iter().map(|p| p.to_string()).collect(), absent_rule, ..Default::default() }
    }

    /// The panel each sample weighs most, by sample.
    pub fn best_panels(&self) -> Vec<(&str, &str)> {
        self.samples
            .iter()
            .filter_map(|s| {
                let best = s.mean_weights.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?.0;
                Some((s.sample.as_str(), self.panels.get(best)?.as_str()))
            })
            .collect()
    }

    /// Text form, for people.
    pub fn text(&self) -> String {
        let mut t =
            format!("Meta-imputation of panels {} (absent sites: {:?})\n", self.panels.join(", "), self.absent_rule);
        for c in &self.chromosomes {
            let _ = writeln!(
                t,
                "{}: {} variants ({} not in every panel), {} training sites",
                c.chromosome, c.variants, c.not_in_every_panel, c.training_sites
            );
        }
        let _ = writeln!(t, "estimated r2 by MAF bin:");
        for bin in MAF_BINS {
            if let Some(b) = self.estimated_r2_by_maf.get(bin) {
                let _ = writeln!(t, "  {bin}\t{:.3} over {} variants", b.mean_r2, b.variants);
            }
        }
        let _ = writeln!(t, "mean weight per sample\tsample\t{}", self.panels.join("\t"));
        for s in &self.samples {
            let w: Vec<String> = s.mean_weights.iter().map(|w| format!("{w:.3}")).collect();
            let _ = writeln!(t, "\t{}\t{}", s.sample, w.join("\t"));
        }
        t
    }

    fn add(
        &mut self,
        chromosome: ChromosomeMeta,
        samples: &[String],
        weight_sums: &[f64],
        sites: u64,
        bins: &[(u64, f64); 3],
    ) {
        let k = self.panels.len();
        if self.weight_sums.is_empty() {
            self.weight_sums = vec![0.0; samples.len() * k];
            self.samples =
                samples.iter().map(|s| SampleWeights { sample: s.clone(), mean_weights: vec![0.0; k] }).collect();
        }
        // Two haplotypes per sample, side by side in `weight_sums`.
        for (s, sums) in self.weight_sums.chunks_mut(k).enumerate() {
            for (p, sum) in sums.iter_mut().enumerate() {
                *sum += weight_sums.get(2 * s * k + p).unwrap_or(&0.0)
                    + weight_sums.get((2 * s + 1) * k + p).unwrap_or(&0.0);
            }
        }
        self.training_haplotype_sites += 2.0 * sites as f64;
        for (sample, sums) in self.samples.iter_mut().zip(self.weight_sums.chunks(k)) {
            sample.mean_weights = sums.iter().map(|s| s / self.training_haplotype_sites.max(1.0)).collect();
        }
        for (i, (n, sum)) in bins.iter().enumerate() {
            let bin = self.estimated_r2_by_maf.entry(MAF_BINS[i].to_string()).or_default();
            let total = bin.mean_r2 * bin.variants as f64 + sum;
            bin.variants += n;
            bin.mean_r2 = if bin.variants > 0 { total / bin.variants as f64 } else { 0.0 };
        }
        self.chromosomes.push(chromosome);
    }
}

/// Combines one chromosome's results of `panels` into `out` (bgzipped VCF), working in
/// `work` (two temporary files of `sites x haplotypes x panels` floats), adding to `report`.
pub fn combine_chromosome(
    panels: &[MetaPanel<'_>],
    work: &Path,
    out: &Path,
    rule: AbsentRule,
    report: &mut MetaReport,
) -> Result<(), MetaError> {
    if panels.len() < 2 {
        return Err(MetaError::TooFewPanels);
    }
    let k = panels.len();
    // Dose files first, then empirical ones: every file must have the first dose file's samples.
    let paths: Vec<&Path> = panels.iter().map(|p| p.dose).chain(panels.iter().map(|p| p.empirical)).collect();
    let (mut doses, samples) = open_matching(&paths)?;
    let mut empirical = doses.split_off(k);
    let haplotypes = 2 * samples.len();
    let mut chromosome = ChromosomeMeta::default();

    // Pass 1: training sites and the forward pass.
    let mut model = ForwardBackward::new(work, k, haplotypes)?;
    let (mut observed, mut first_observed) = (Vec::new(), Vec::new());
    let (mut lds, mut emissions) = (Vec::new(), vec![0.0; k * haplotypes]);
    for_each_variant(&mut empirical, |v: Variant| {
        if v.records.iter().any(Option::is_none) {
            chromosome.typed_not_in_every_panel += 1;
            return Ok(());
        }
        for (p, record) in v.records.iter().flatten().enumerate() {
            let file = || panels[p].empirical.display().to_string();
            record.phased_alleles(samples.len(), &mut observed).ok_or_else(|| MetaError::Input {
                file: file(),
                message: format!("{}: no phased GT for every sample", v.pos),
            })?;
            if p == 0 {
                std::mem::swap(&mut first_observed, &mut observed);
            } else if observed != first_observed {
                return Err(MetaError::ObservedMismatch {
                    pos: v.pos,
                    panel: panels[p].name.to_string(),
                    first: panels[0].name.to_string(),
                });
            }
            record.haploid_pairs("LDS", samples.len(), &mut lds).ok_or_else(|| MetaError::Input {
                file: file(),
                message: format!("{}: no LDS for every sample", v.pos),
            })?;
            for (h, l) in lds.iter().enumerate() {
                let allele = first_observed[h];
                // A haplotype whose allele is missing says nothing about the panels.
                emissions[h * k + p] = if allele == MISSING { 1.0 } else { emission(*l, allele) };
            }
        }
        model.push(v.pos, allele_key(&v.reference, &v.alt), &emissions)?;
        Ok(())
    })?;
    if model.sites() == 0 {
        return Err(MetaError::NoTrainingSites);
    }
    chromosome.training_sites = model.sites();

    // Pass 2: the backward pass.
    let posteriors = model.finish()?;
    let mut weights = WeightReader::open(&posteriors.path, k, haplotypes)?;

    // Pass 3: the combined dosages at every site of the union.
    let mut writer = BgzfWriter::create(out, Effort::Default)?;
    write_header(&mut writer, &doses[0], panels, rule, &samples)?;
    let (mut w, mut hds) = (vec![0.0f32; k * haplotypes], vec![Vec::new(); k]);
    let mut combined = vec![0.0f32; haplotypes];
    let mut bins = [(0u64, 0.0f64); 3];
    let mut line = String::new();
    let mut chrom_name = String::new();
    for_each_variant(&mut doses, |v: Variant| {
        let training = weights.weights_at(v.pos, allele_key(&v.reference, &v.alt), &mut w)?;
        let mut present = vec![false; k];
        let mut typed = false;
        for (p, record) in v.records.iter().enumerate() {
            let Some(record) = record else { continue };
            record.haploid_pairs("HDS", samples.len(), &mut hds[p]).ok_or_else(|| MetaError::Input {
                file: panels[p].dose.display().to_string(),
                message: format!("{}: no HDS for every sample", v.pos),
            })?;
            present[p] = true;
            typed |= record.has_flag("TYPED");
            if chrom_name.is_empty() {
                chrom_name.clone_from(&record.chrom);
            }
        }
        let absent_alt = combine_site(&w, &hds, &present, rule, &mut combined);
        chromosome.variants += 1;
        if present.iter().any(|p| !p) {
            chromosome.not_in_every_panel += 1;
            chromosome.absent_taken_as_alt += absent_alt;
        }
        let Some(first) = v.records.iter().flatten().next() else { return Ok(()) };
        let (af, r2) = frequency_and_r2(&combined);
        let maf = af.min(1.0 - af);
        let bin = &mut bins[maf_bin_index(maf)];
        bin.0 += 1;
        bin.1 += r2;
        let names: Vec<&str> = panels.iter().zip(&present).filter(|(_, p)| **p).map(|(p, _)| p.name).collect();
        line.clear();
        let _ = write!(
            line,
            "{}\t{}\t{}\t{}\t{}\t.\tPASS\tAF={af:.5};MAF={maf:.5};R2={r2:.5};PANELS={};IMPUTED{}{}\tGT:DS:HDS:GP",
            first.chrom,
            v.pos,
            first.id,
            v.reference,
            v.alt,
            names.join(","),
            if typed { ";TYPED" } else { "" },
            if training { ";TRAINING" } else { "" },
        );
        for pair in combined.chunks_exact(2) {
            sample_field(&mut line, pair[0], pair[1]);
        }
        line.push('\n');
        writer.write_all(line.as_bytes())?;
        Ok(())
    })?;
    writer.finish()?;
    drop(weights);
    let _ = std::fs::remove_file(&posteriors.path);
    chromosome.chromosome = chrom_name;
    report.add(chromosome, &samples, &posteriors.weight_sums, posteriors.sites, &bins);
    Ok(())
}

/// The combined HDS per haplotype of one site; returns how many absent panels stood for ALT.
fn combine_site(w: &[f32], hds: &[Vec<f32>], present: &[bool], rule: AbsentRule, out: &mut [f32]) -> u64 {
    let k = present.len();
    // What the panels that have the site predict for each haplotype, by their weights there.
    let present_mix = |h: usize| -> Option<f32> {
        let ws = &w[h * k..(h + 1) * k];
        let total: f32 = ws.iter().zip(present).filter(|(_, p)| **p).map(|(w, _)| w).sum();
        let sum: f32 = (0..k).filter(|p| present[*p]).map(|p| ws[p] * hds[p][h]).sum();
        (total > 0.0).then(|| sum / total)
    };
    // The allele each absent panel stands for (1.0 ALT, 0.0 REF).
    let mut absent_allele = vec![0.0f32; k];
    let mut alt = 0;
    if rule == AbsentRule::Infer {
        for p in (0..k).filter(|p| !present[*p]) {
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for h in 0..out.len() {
                let weight = f64::from(w[h * k + p]);
                if let Some(mix) = present_mix(h) {
                    num += weight * f64::from(mix);
                    den += weight;
                }
            }
            if den > 0.0 && num / den > 0.5 {
                absent_allele[p] = 1.0;
                alt += 1;
            }
        }
    }
    for (h, o) in out.iter_mut().enumerate() {
        *o = match rule {
            AbsentRule::PassThrough => present_mix(h).unwrap_or(0.0),
            AbsentRule::Ref | AbsentRule::Infer => (0..k)
                .map(|p| w[h * k + p] * if present[p] { hds[p][h] } else { absent_allele[p] })
                .sum::<f32>()
                .clamp(0.0, 1.0),
        };
    }
    alt
}

/// ALT frequency and estimated r2 (`var(HDS) / p(1-p)`, 0 where monomorphic) of a site's
/// haploid dosages.
pub fn frequency_and_r2(hds: &[f32]) -> (f64, f64) {
    let n = hds.len().max(1) as f64;
    let p = hds.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
    let second = hds.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / n;
    let denominator = p * (1.0 - p);
    let r2 = if denominator > 1e-12 { ((second - p * p) / denominator).clamp(0.0, 1.0) } else { 0.0 };
    (p, r2)
}

/// Appends `\tGT:DS:HDS:GP` of one sample.
fn sample_field(line: &mut String, h1: f32, h2: f32) {
    let (a, b) = (u8::from(h1 > 0.5), u8::from(h2 > 0.5));
    let (h1, h2) = (f64::from(h1), f64::from(h2));
    let gp = [(1.0 - h1) * (1.0 - h2), h1 * (1.0 - h2) + h2 * (1.0 - h1), h1 * h2];
    let _ = write!(line, "\t{a}|{b}:");
    number(line, h1 + h2);
    line.push(':');
    number(line, h1);
    line.push(',');
    number(line, h2);
    line.push(':');
    for (i, g) in gp.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        number(line, *g);
    }
}

/// A value with at most three decimals, trailing zeros dropped (as Minimac4 writes them).
/// By hand: `format!` for the ~10 values per sample and site was most of the combination's time.
fn number(line: &mut String, x: f64) {
    let thousandths = (x.max(0.0) * 1000.0).round() as u64;
    let (whole, mut fraction) = (thousandths / 1000, thousandths % 1000);
    let _ = write!(line, "{whole}");
    if fraction > 0 {
        line.push('.');
        let mut digits = 3;
        while fraction % 10 == 0 {
            fraction /= 10;
            digits -= 1;
        }
        let text = [fraction / 100, fraction / 10 % 10, fraction % 10];
        for d in &text[3 - digits..] {
            line.push(char::from(b'0' + *d as u8));
        }
    }
}

fn write_header(
    writer: &mut BgzfWriter,
    first: &Stream,
    panels: &[MetaPanel<'_>],
    rule: AbsentRule,
    samples: &[String],
) -> std::io::Result<()> {
    let names: Vec<&str> = panels.iter().map(|p| p.name).collect();
    writeln!(writer, "##fileformat=VCFv4.2")?;
    writeln!(writer, "##source=fedimpute meta-imputation of {} (absent sites: {rule:?})", names.join(", "))?;
    for line in first.meta.iter().filter(|l| l.starts_with("##contig")) {
        writeln!(writer, "{line}")?;
    }
    for line in [
        r#"##INFO=<ID=AF,Number=1,Type=Float,Description="Estimated ALT allele frequency of the combined dosages">"#,
        r#"##INFO=<ID=MAF,Number=1,Type=Float,Description="Estimated minor allele frequency of the combined dosages">"#,
        r#"##INFO=<ID=R2,Number=1,Type=Float,Description="Estimated imputation accuracy (R-square) of the combined dosages">"#,
        r#"##INFO=<ID=PANELS,Number=.,Type=String,Description="Panels that have the site">"#,
        r#"##INFO=<ID=IMPUTED,Number=0,Type=Flag,Description="Marker was imputed">"#,
        r#"##INFO=<ID=TYPED,Number=0,Type=Flag,Description="Marker was genotyped">"#,
        r#"##INFO=<ID=TRAINING,Number=0,Type=Flag,Description="Typed site every panel imputed with the site hidden: the panels' weights were learnt here">"#,
        r#"##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">"#,
        r#"##FORMAT=<ID=DS,Number=1,Type=Float,Description="Estimated ALT dosage">"#,
        r#"##FORMAT=<ID=HDS,Number=2,Type=Float,Description="Estimated haploid ALT dosages">"#,
        r#"##FORMAT=<ID=GP,Number=3,Type=Float,Description="Estimated genotype probabilities 0/0, 0/1, 1/1">"#,
    ] {
        writeln!(writer, "{line}")?;
    }
    writeln!(writer, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{}", samples.join("\t"))
}

#[cfg(test)]
mod tests;
