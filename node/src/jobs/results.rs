//! The summary of a job's results: variants typed and imputed, mean estimated r2 by MAF bin.

use serde::{Deserialize, Serialize};

use crate::imputation::dose::DoseCounts;

/// Mean estimated r2 and counts in one MAF bin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MafBin {
    pub variants: u64,
    pub mean_r2: Option<f64>,
}

/// Imputed variants by minor-allele-frequency bin, in order (a JSON object whose keys come as
/// listed here).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MafBins {
    #[serde(rename = "<1%", default)]
    pub rare: MafBin,
    #[serde(rename = "1-5%", default)]
    pub low_frequency: MafBin,
    #[serde(rename = ">5%", default)]
    pub common: MafBin,
}

impl MafBins {
    fn bins_mut(&mut self) -> [&mut MafBin; 3] {
        [&mut self.rare, &mut self.low_frequency, &mut self.common]
    }
}

/// What the API and the UI show of a finished job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub variants_imputed: u64,
    pub variants_typed: u64,
    /// Imputed variants by minor-allele-frequency bin: `<1%`, `1-5%`, `>5%`.
    pub imputed_by_maf: MafBins,
    pub r2_filter: f64,
    /// Per chromosome (result prefix, e.g. `chr20`): typed and imputed variants kept.
    #[serde(default)]
    pub chromosomes: Vec<ChromosomeCounts>,
}

/// One chromosome's share of the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChromosomeCounts {
    pub chromosome: String,
    pub typed: u64,
    pub imputed: u64,
    /// Dropped by the r2 filter.
    pub filtered: u64,
}

/// Adds one chromosome's counts to the running summary.
pub fn add_counts(summary: &mut JobSummary, chromosome: &str, counts: &DoseCounts) {
    summary.chromosomes.push(ChromosomeCounts {
        chromosome: chromosome.to_string(),
        typed: counts.typed,
        imputed: counts.imputed,
        filtered: counts.filtered,
    });
    summary.variants_imputed += counts.imputed;
    summary.variants_typed += counts.typed;
    for (bin, (n, sum)) in summary.imputed_by_maf.bins_mut().into_iter().zip(counts.bins) {
        let total = bin.mean_r2.unwrap_or(0.0) * bin.variants as f64 + sum;
        bin.variants += n;
        bin.mean_r2 = (bin.variants > 0).then(|| total / bin.variants as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromosomes_add_up_and_bins_serialize_in_order() {
        let mut s = JobSummary::default();
        add_counts(
            &mut s,
            "chr20",
            &DoseCounts { imputed: 3, typed: 1, filtered: 0, bins: [(1, 0.5), (1, 0.7), (1, 0.9)] },
        );
        add_counts(
            &mut s,
            "chr21",
            &DoseCounts { imputed: 1, typed: 2, filtered: 4, bins: [(1, 0.3), (0, 0.0), (0, 0.0)] },
        );
        assert_eq!((s.variants_imputed, s.variants_typed), (4, 3));
        assert_eq!(
            s.chromosomes[1],
            ChromosomeCounts { chromosome: "chr21".into(), typed: 2, imputed: 1, filtered: 4 }
        );
        assert_eq!(s.imputed_by_maf.rare.variants, 2);
        assert!((s.imputed_by_maf.rare.mean_r2.unwrap() - 0.4).abs() < 1e-9);
        let json = serde_json::to_string(&s.imputed_by_maf).unwrap();
        let (a, b, c) = (json.find("<1%").unwrap(), json.find("1-5%").unwrap(), json.find(">5%").unwrap());
        assert!(a < b && b < c, "{json}");
    }
}
