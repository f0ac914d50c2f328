//! chrX: outside the pseudo-autosomal regions (PAR1, PAR2) males carry one X, so their calls are
//! haploid and females' diploid. Each sample's ploidy there is read from its calls; a sample with
//! more than the allowed share of calls of the other ploidy is refused, naming it, as Michigan's
//! chrX check does (a male coded diploid, or a sample swap). Inside the PARs everyone is diploid,
//! so both engines impute chrX in one piece and keep males haploid in their output.

use serde::{Deserialize, Serialize};

use crate::imputation::GenomeBuild;

/// PAR1 and PAR2 of the build (1-based, inclusive), from the Genome Reference Consortium.
fn pars(build: GenomeBuild) -> [(u64, u64); 2] {
    match build {
        GenomeBuild::Hg19 => [(60_001, 2_699_520), (154_931_044, 155_260_560)],
        GenomeBuild::Hg38 => [(10_001, 2_781_479), (155_701_383, 156_030_895)],
    }
}

/// Whether `chrom:pos` is on chrX outside both PARs.
pub fn is_non_par(build: GenomeBuild, chrom: &str, pos: u64) -> bool {
    chrom.strip_prefix("chr").unwrap_or(chrom) == "X" && !pars(build).iter().any(|(a, b)| (*a..=*b).contains(&pos))
}

/// What the chrX check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChrxCheck {
    /// Samples mostly haploid (male) and mostly diploid (female) outside the PARs.
    pub males: u64,
    pub females: u64,
    /// Samples with calls of both ploidies.
    pub mixed_samples: u64,
    /// The samples over the allowed share, with their share of other-ploidy calls (first 20).
    pub over_threshold: Vec<(String, f64)>,
    pub max_mixed_ploidy: f64,
    /// Why the input is refused, if it is.
    pub refusal: Option<String>,
}

/// Summarises per-sample `[haploid, diploid]` call counts; None when there were no such calls.
pub fn summarise(samples: &[String], calls: &[[u64; 2]], max_mixed: f64) -> Option<ChrxCheck> {
    if calls.iter().all(|[h, d]| h + d == 0) {
        return None;
    }
    let mut check = ChrxCheck {
        males: 0,
        females: 0,
        mixed_samples: 0,
        over_threshold: Vec::new(),
        max_mixed_ploidy: max_mixed,
        refusal: None,
    };
    let mut over = 0;
    for (name, [haploid, diploid]) in samples.iter().zip(calls) {
        if haploid + diploid == 0 {
            continue;
        }
        if haploid >= diploid {
            check.males += 1
        } else {
            check.females += 1
        }
        if *haploid > 0 && *diploid > 0 {
            check.mixed_samples += 1;
            let share = (*haploid.min(diploid)) as f64 / (haploid + diploid) as f64;
            if share > max_mixed {
                over += 1;
                if check.over_threshold.len() < 20 {
                    check.over_threshold.push((name.clone(), share));
                }
            }
        }
    }
    if let Some((first, share)) = check.over_threshold.first() {
        check.refusal = Some(format!(
            "{over} sample(s) mix haploid and diploid calls on chrX outside the pseudo-autosomal regions beyond {:.0}% (first: {first} at {:.1}%); code males as haploid (GT 0 or 1) and females as diploid there, or remove those samples",
            max_mixed * 100.0,
            share * 100.0
        ));
    }
    Some(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ploidy_is_read_per_sample_and_mixed_samples_are_named() {
        assert!(is_non_par(GenomeBuild::Hg19, "X", 30_000_000) && !is_non_par(GenomeBuild::Hg19, "X", 100_000));
        assert!(!is_non_par(GenomeBuild::Hg38, "chrX", 155_800_000) && !is_non_par(GenomeBuild::Hg38, "chr20", 5));
        let names: Vec<String> = ["m", "f", "odd"].map(String::from).to_vec();
        let fine = summarise(&names, &[[100, 0], [0, 100], [98, 2]], 0.1).unwrap();
        assert_eq!((fine.males, fine.females, fine.mixed_samples), (2, 1, 1));
        assert!(fine.refusal.is_none());
        let bad = summarise(&names, &[[100, 0], [0, 100], [60, 40]], 0.1).unwrap();
        assert!(bad.refusal.as_deref().unwrap().contains("first: odd at 40.0%"), "{:?}", bad.refusal);
        assert!(summarise(&names, &[[0, 0]; 3], 0.1).is_none());
    }
}
