//! Result files of a job: the per-chromosome info table and the summary (variants imputed,
//! mean estimated r2 by MAF bin).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Mean estimated r2 and counts in one MAF bin.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MafBin {
    pub variants: u64,
    pub mean_r2: Option<f64>,
}

/// What the API and the UI show of a finished job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobSummary {
    pub variants_imputed: u64,
    pub variants_typed: u64,
    /// Imputed variants by minor-allele-frequency bin: `<1%`, `1-5%`, `>5%`.
    pub imputed_by_maf: BTreeMap<String, MafBin>,
    pub r2_filter: f64,
}

/// Header of every info table: one row per variant kept in the dosage VCF.
pub const INFO_HEADER: &str = "chrom\tpos\tref\talt\tmaf\tr2\timputed";

/// The MAF bin a variant falls in.
pub(crate) fn maf_bin(maf: f64) -> &'static str {
    if maf < 0.01 {
        "<1%"
    } else if maf < 0.05 {
        "1-5%"
    } else {
        ">5%"
    }
}

/// Adds one info table (`INFO_HEADER` columns) to the running summary.
pub fn add_info_table(summary: &mut JobSummary, path: &Path) -> std::io::Result<()> {
    let mut sums: BTreeMap<&'static str, (u64, f64)> = BTreeMap::new();
    for (name, b) in &summary.imputed_by_maf {
        let key = match name.as_str() {
            "<1%" => "<1%",
            "1-5%" => "1-5%",
            _ => ">5%",
        };
        sums.insert(key, (b.variants, b.mean_r2.unwrap_or(0.0) * b.variants as f64));
    }
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    for line in file.lines().skip(1) {
        let line = line?;
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 7 {
            continue;
        }
        if f[6] == "1" {
            summary.variants_imputed += 1;
            let maf: f64 = f[4].parse().unwrap_or(0.0);
            let maf = maf.min(1.0 - maf);
            let r2: f64 = f[5].parse().unwrap_or(0.0);
            let e = sums.entry(maf_bin(maf)).or_default();
            e.0 += 1;
            e.1 += r2;
        } else {
            summary.variants_typed += 1;
        }
    }
    summary.imputed_by_maf = sums
        .into_iter()
        .map(|(k, (n, total))| (k.to_string(), MafBin { variants: n, mean_r2: (n > 0).then(|| total / n as f64) }))
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_bins_imputed_variants_by_minor_allele_frequency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.tsv");
        std::fs::write(
            &path,
            format!("{INFO_HEADER}\n20\t1\tA\tG\t0.005\t0.5\t1\n20\t2\tA\tG\t0.98\t0.7\t1\n20\t3\tA\tG\t0.3\t0.9\t1\n20\t4\tA\tG\t0.3\t1\t0\n"),
        )
        .unwrap();
        let mut s = JobSummary::default();
        add_info_table(&mut s, &path).unwrap();
        assert_eq!((s.variants_imputed, s.variants_typed), (3, 1));
        let rare = &s.imputed_by_maf["1-5%"];
        assert_eq!(rare.variants, 1, "AF 0.98 is MAF 0.02");
        assert!((s.imputed_by_maf["<1%"].mean_r2.unwrap() - 0.5).abs() < 1e-9);
        assert!((s.imputed_by_maf[">5%"].mean_r2.unwrap() - 0.9).abs() < 1e-9);
    }
}
