//! Imputation on this node: input QC, reference panels and engines.

pub mod catalog_entry;
pub mod chunks;
pub mod combine;
pub mod dose;
pub mod engines;
pub mod executor;
pub mod external;
pub mod genetic_map;
pub mod ligate;
pub mod panels;
pub mod qc;
pub mod repair;
pub mod tools;
pub mod vcf_io;

use serde::{Deserialize, Serialize};

/// A reference genome build; it fixes how chromosomes are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GenomeBuild {
    /// GRCh37: chromosomes `1`..`22`, `X`.
    Hg19,
    /// GRCh38: chromosomes `chr1`..`chr22`, `chrX`.
    Hg38,
}

impl GenomeBuild {
    /// The name as used in the API and adverts.
    pub fn as_str(self) -> &'static str {
        match self {
            GenomeBuild::Hg19 => "hg19",
            GenomeBuild::Hg38 => "hg38",
        }
    }

    /// Whether `chrom` is named as this build names chromosomes; if not, the message says what
    /// the name should look like.
    pub fn check_chromosome(self, chrom: &str) -> Result<(), String> {
        let bare = chrom.strip_prefix("chr").unwrap_or(chrom);
        let known = matches!(bare, "X" | "Y") || bare.parse::<u8>().is_ok_and(|n| (1..=22).contains(&n));
        if !known {
            return Err(format!("chromosome {chrom:?} is not an autosome or X/Y"));
        }
        match (self, chrom.starts_with("chr")) {
            (GenomeBuild::Hg19, true) => Err(format!(
                "chromosome {chrom:?} is named hg38-style; for hg19 it must be {bare:?} (or choose build hg38)"
            )),
            (GenomeBuild::Hg38, false) => Err(format!(
                "chromosome {chrom:?} is named hg19-style; for hg38 it must be \"chr{bare}\" (or choose build hg19)"
            )),
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for GenomeBuild {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hg19" | "GRCh37" => Ok(GenomeBuild::Hg19),
            "hg38" | "GRCh38" => Ok(GenomeBuild::Hg38),
            other => Err(format!("unknown genome build {other:?} (expected hg19 or hg38)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GenomeBuild;

    #[test]
    fn chromosome_naming_follows_the_build() {
        assert!(GenomeBuild::Hg19.check_chromosome("20").is_ok());
        assert!(GenomeBuild::Hg38.check_chromosome("chr20").is_ok());
        assert!(GenomeBuild::Hg19.check_chromosome("chr20").unwrap_err().contains("must be \"20\""));
        assert!(GenomeBuild::Hg38.check_chromosome("20").unwrap_err().contains("\"chr20\""));
        assert!(GenomeBuild::Hg19.check_chromosome("23").is_err());
        assert!(GenomeBuild::Hg38.check_chromosome("chrX").is_ok());
    }
}
