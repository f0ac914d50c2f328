//! The QC report: counts per reason, allele matching, thresholds, and a readable text.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::chrx::ChrxCheck;
use super::frequency::FrequencyCheck;
use crate::imputation::repair::Repair;

/// Why a variant was excluded. The names are stable: they appear in the API and in
/// `excluded.tsv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// FILTER is set and not PASS.
    FilterFlag,
    /// REF or ALT is not a single A, C, G or T (indels, symbolic alleles).
    NotSnp,
    /// More than one ALT allele.
    Multiallelic,
    /// REF equals ALT.
    RefEqualsAlt,
    /// A second record at the same position.
    DuplicateSite,
    /// Genotypes called in fewer than the required share of samples.
    LowCallRate,
    /// Only one allele is observed among the samples.
    Monomorphic,
    /// The site is not in the reference panel.
    NotInPanel,
    /// REF/ALT differ from the panel's at the same position, even after flipping strands.
    AlleleMismatch,
    /// REF and ALT are swapped relative to the panel.
    AlleleSwitch,
    /// The alleles are the panel's on the other strand.
    StrandFlip,
    /// Both swapped and on the other strand.
    StrandFlipAndAlleleSwitch,
}

impl ExclusionReason {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExclusionReason::FilterFlag => "filter_flag",
            ExclusionReason::NotSnp => "not_snp",
            ExclusionReason::Multiallelic => "multiallelic",
            ExclusionReason::RefEqualsAlt => "ref_equals_alt",
            ExclusionReason::DuplicateSite => "duplicate_site",
            ExclusionReason::LowCallRate => "low_call_rate",
            ExclusionReason::Monomorphic => "monomorphic",
            ExclusionReason::NotInPanel => "not_in_panel",
            ExclusionReason::AlleleMismatch => "allele_mismatch",
            ExclusionReason::AlleleSwitch => "allele_switch",
            ExclusionReason::StrandFlip => "strand_flip",
            ExclusionReason::StrandFlipAndAlleleSwitch => "strand_flip_and_allele_switch",
        }
    }
}

/// One input file as QC saw it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileSummary {
    /// The name the user gave the file (never used as a path).
    pub name: String,
    pub chromosome: Option<String>,
    pub variants: u64,
    pub kept: u64,
    /// Why the whole file was left out (a chromosome the panel does not have).
    #[serde(default)]
    pub skipped: Option<String>,
}

/// A sample whose call rate is below the threshold.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampleCallRate {
    pub sample: String,
    pub call_rate: f64,
}

/// Whether the input may go on to imputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QcStatus {
    Passed,
    Failed,
}

/// The QC report of one job.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QcReport {
    pub status: QcStatus,
    /// Why QC failed and what to fix.
    pub message: Option<String>,
    pub build: String,
    pub samples: usize,
    pub files: Vec<FileSummary>,
    pub variants_total: u64,
    pub variants_kept: u64,
    /// Excluded variants per reason.
    pub excluded: BTreeMap<ExclusionReason, u64>,
    /// Kept sites that match the panel exactly, and of those, strand-ambiguous (A/T, C/G) ones.
    pub panel_matches: u64,
    pub ambiguous_strand_matches: u64,
    /// Share of the input's SNPs found in the panel (null when checked without a panel).
    pub panel_overlap: Option<f64>,
    pub low_call_rate_samples: Vec<SampleCallRate>,
    /// What was repaired in the uploads before QC, at the node they were uploaded to.
    #[serde(default)]
    pub repairs: Vec<Repair>,
    /// The input's allele frequencies against the panel's, at the sites kept.
    #[serde(default)]
    pub allele_frequency: Option<FrequencyCheck>,
    /// The chrX ploidy check (males haploid, females diploid outside the PARs), when the input
    /// has chrX.
    #[serde(default)]
    pub chrx: Option<ChrxCheck>,
    /// The chunks each chromosome is run in, with those left out and why (empty for QC
    /// without a panel).
    #[serde(default)]
    pub chunks: Vec<crate::imputation::chunks::Chunk>,
}

impl QcReport {
    /// The report as text, for people and for the job's files.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let status = match self.status {
            QcStatus::Passed => "PASSED",
            QcStatus::Failed => "FAILED",
        };
        t.push_str(&format!("Input QC: {status}\n"));
        if let Some(m) = &self.message {
            t.push_str(&format!("  {m}\n"));
        }
        t.push_str(&format!("Build: {}\nSamples: {}\n", self.build, self.samples));
        if !self.repairs.is_empty() {
            t.push_str("Repairs made to the uploaded files:\n");
            for r in &self.repairs {
                t.push_str(&format!("  {}: {}\n", r.file, r.message));
            }
        }
        if self.chunks.len() > self.files.len() {
            let left_out = self.chunks.iter().filter(|c| c.excluded.is_some()).count();
            t.push_str(&format!("Chunks: {} planned, {left_out} left out\n", self.chunks.len()));
        }
        for c in self.chunks.iter().filter(|c| c.excluded.is_some()) {
            t.push_str(&format!("  chunk {} left out: {}\n", c.region(), c.excluded.as_deref().unwrap_or_default()));
        }
        for f in &self.files {
            t.push_str(&format!(
                "File {}: chromosome {}, {} variants, {} kept\n",
                f.name,
                f.chromosome.as_deref().unwrap_or("-"),
                f.variants,
                f.kept
            ));
            if let Some(why) = &f.skipped {
                t.push_str(&format!("  left out: {why}\n"));
            }
        }
        t.push_str(&format!("Variants: {} in total, {} kept\n", self.variants_total, self.variants_kept));
        if let Some(o) = self.panel_overlap {
            t.push_str(&format!(
                "Reference overlap: {:.2}% ({} exact matches, {} of them A/T or C/G)\n",
                o * 100.0,
                self.panel_matches,
                self.ambiguous_strand_matches
            ));
        }
        if !self.excluded.is_empty() {
            t.push_str("Excluded variants by reason:\n");
            for (reason, n) in &self.excluded {
                t.push_str(&format!("  {:<32} {n}\n", reason.as_str()));
            }
            t.push_str("Every excluded variant is listed in excluded.tsv.\n");
        }
        if let Some(f) = &self.allele_frequency {
            t.push_str(&format!(
                "Allele frequencies against the panel ({}): {} sites, {} with chi-square > {}{}\n",
                f.population.as_deref().unwrap_or("all samples"),
                f.sites,
                f.sites_over_threshold,
                f.chisq_threshold,
                f.correlation.map(|r| format!(", correlation {r:.3}")).unwrap_or_default()
            ));
            if let Some(w) = &f.warning {
                t.push_str(&format!("  WARNING: {w}\n"));
            }
            for o in &f.outliers {
                t.push_str(&format!(
                    "  {}:{} input AF {:.3}, panel AF {:.3}, chi-square {:.1}\n",
                    o.chrom, o.pos, o.input_af, o.panel_af, o.chisq
                ));
            }
        }
        if let Some(x) = &self.chrx {
            t.push_str(&format!(
                "chrX outside the PARs: {} male (haploid), {} female (diploid) samples, {} with mixed ploidy\n",
                x.males, x.females, x.mixed_samples
            ));
        }
        for s in &self.low_call_rate_samples {
            t.push_str(&format!("Sample {} has call rate {:.1}%\n", s.sample, s.call_rate * 100.0));
        }
        t
    }
}
