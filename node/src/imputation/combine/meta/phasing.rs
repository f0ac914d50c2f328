//! Phasing that suits every sample. Targets phased with a panel of the wrong ancestry carry many
//! more switch errors, and meta-imputation inherits them. So each host phases the targets with
//! its panel and imputes its own phasing once, with `--empirical-output`; the origin scores each
//! sample's fit to each panel from those leave-one-out dosages ([`sample_fit`]), gives each
//! sample the phasing of its best panel ([`compose`]), and that one file is then imputed at every
//! host for the combination. No step uses a pooled panel.

use std::io::Write as _;
use std::path::Path;

use super::MetaError;
use super::hmm::emission;
use super::records::{MISSING, for_each_variant, open_matching};
use crate::imputation::vcf_io::{BgzfWriter, Effort};

/// Each sample's fit to each panel: the log-likelihood of its observed typed alleles under the
/// panel's leave-one-out dosages, summed over the sites the panel had and both haplotypes, and
/// divided by those sites (panels have different typed sites). `fit[sample][panel]`.
pub fn sample_fit(empirical: &[&Path]) -> Result<(Vec<String>, Vec<Vec<f64>>), MetaError> {
    let (mut streams, samples) = open_matching(empirical)?;
    let k = streams.len();
    let (mut sums, mut sites) = (vec![vec![0.0; k]; samples.len()], vec![0u64; k]);
    let (mut observed, mut lds) = (Vec::new(), Vec::new());
    for_each_variant(&mut streams, |v| {
        for (p, record) in v.records.iter().enumerate() {
            let Some(record) = record else { continue };
            let file = || empirical[p].display().to_string();
            record
                .phased_alleles(samples.len(), &mut observed)
                .and_then(|()| record.haploid_pairs("LDS", samples.len(), &mut lds))
                .ok_or_else(|| MetaError::Input {
                    file: file(),
                    message: format!("{}: no GT and LDS for every sample", v.pos),
                })?;
            sites[p] += 1;
            for (h, (o, l)) in observed.iter().zip(&lds).enumerate() {
                if *o != MISSING {
                    sums[h / 2][p] += emission(*l, *o).min(1.0).ln();
                }
            }
        }
        Ok(())
    })?;
    for fit in &mut sums {
        for (f, n) in fit.iter_mut().zip(&sites) {
            *f /= (*n).max(1) as f64;
        }
    }
    Ok((samples, sums))
}

/// The index of the best-fitting panel of each sample (ties to the first).
pub fn best_panels(fit: &[Vec<f64>]) -> Vec<usize> {
    fit.iter().map(|f| f.iter().enumerate().fold(0, |best, (p, v)| if *v > f[best] { p } else { best })).collect()
}

/// How many sites [`compose`] wrote, and how many it left out because some panel's phasing
/// lacked them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Composed {
    pub sites: u64,
    pub left_out: u64,
}

/// Writes the targets with each sample's genotypes taken from the phasing of its panel
/// (`choice[sample]` indexes `phased`), at the sites every phasing has with every genotype
/// phased: Minimac4 4.1.2 computes no leave-one-out dosage over a missing allele.
pub fn compose(phased: &[&Path], choice: &[usize], out: &Path) -> Result<Composed, MetaError> {
    let (mut streams, samples) = open_matching(phased)?;
    if choice.len() != samples.len() || choice.iter().any(|c| *c >= streams.len()) {
        return Err(MetaError::Input {
            file: out.display().to_string(),
            message: "one panel per sample is needed".into(),
        });
    }
    let mut writer = BgzfWriter::create(out, Effort::Fast)?;
    writeln!(writer, "##fileformat=VCFv4.2")?;
    writeln!(writer, "##source=fedimpute meta-imputation: each sample phased with its best-fitting panel")?;
    for line in streams[0].meta.iter().filter(|l| l.starts_with("##contig")) {
        writeln!(writer, "{line}")?;
    }
    writeln!(writer, "##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">")?;
    writeln!(writer, "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{}", samples.join("\t"))?;
    let mut result = Composed { sites: 0, left_out: 0 };
    let mut alleles: Vec<Vec<u8>> = vec![Vec::new(); streams.len()];
    let mut line = String::new();
    for_each_variant(&mut streams, |v| {
        let mut complete = true;
        for (p, record) in v.records.iter().enumerate() {
            complete &= record
                .as_ref()
                .and_then(|r| r.phased_alleles(samples.len(), &mut alleles[p]))
                .is_some_and(|()| !alleles[p].contains(&MISSING));
        }
        let Some(first) = v.records.iter().flatten().next().filter(|_| complete) else {
            result.left_out += 1;
            return Ok(());
        };
        line.clear();
        line.push_str(&format!("{}\t{}\t{}\t{}\t{}\t.\tPASS\t.\tGT", first.chrom, v.pos, first.id, v.reference, v.alt));
        for (s, panel) in choice.iter().enumerate() {
            let a = &alleles[*panel];
            line.push_str(&format!("\t{}|{}", a[2 * s], a[2 * s + 1]));
        }
        line.push('\n');
        writer.write_all(line.as_bytes())?;
        result.sites += 1;
        Ok(())
    })?;
    writer.finish()?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};

    use noodles::bgzf;

    use super::*;

    fn vcf(dir: &Path, name: &str, records: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut w = bgzf::io::Writer::new(std::fs::File::create(&path).unwrap());
        writeln!(
            w,
            "##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2"
        )
        .unwrap();
        for r in records {
            writeln!(w, "{r}").unwrap();
        }
        w.finish().unwrap();
        path
    }

    #[test]
    fn each_sample_fits_the_panel_whose_hidden_site_dosages_predict_it() {
        let dir = tempfile::tempdir().unwrap();
        // s1 observed 1|0, s2 0|1; A predicts s1 and misses s2, B the other way round.
        let a = vcf(dir.path(), "a.vcf.gz", &["20\t100\t.\tA\tG\t.\t.\t.\tGT:LDS\t1|0:0.9,0.1\t0|1:0.8,0.2"]);
        let b = vcf(
            dir.path(),
            "b.vcf.gz",
            &[
                "20\t100\t.\tA\tG\t.\t.\t.\tGT:LDS\t1|0:0.2,0.7\t0|1:0.1,0.9",
                // A site only B has: averaged per site, it does not tip the balance by itself.
                "20\t200\t.\tC\tT\t.\t.\t.\tGT:LDS\t0|0:0,0\t0|0:0,0",
            ],
        );
        let (samples, fit) = sample_fit(&[&a, &b]).unwrap();
        assert_eq!(samples, ["s1", "s2"]);
        assert_eq!(best_panels(&fit), [0, 1]);
        assert!(fit[0][0] > fit[0][1] && fit[1][1] > fit[1][0]);
    }

    #[test]
    fn composed_phasing_takes_each_sample_from_its_panel_at_the_sites_all_phasings_have() {
        let dir = tempfile::tempdir().unwrap();
        let a = vcf(
            dir.path(),
            "a.vcf.gz",
            &[
                "20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t1|0\t1|0",
                "20\t200\trs2\tC\tT\t.\tPASS\t.\tGT\t0|1\t0|1",
                "20\t300\trs3\tG\tA\t.\tPASS\t.\tGT\t0|1\t.|.",
            ],
        );
        let b = vcf(
            dir.path(),
            "b.vcf.gz",
            &["20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0|1\t0|1", "20\t300\trs3\tG\tA\t.\tPASS\t.\tGT\t1|0\t1|0"],
        );
        let out = dir.path().join("out.vcf.gz");
        let composed = compose(&[&a, &b], &[0, 1], &out).unwrap();
        assert_eq!(composed, Composed { sites: 1, left_out: 2 }, "200: only in A; 300: a missing allele in A");
        let lines: Vec<String> = BufReader::new(bgzf::io::Reader::new(std::fs::File::open(&out).unwrap()))
            .lines()
            .map(|l| l.unwrap())
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(lines, ["20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t1|0\t0|1"]);
        assert!(compose(&[&a, &b], &[0], &out).is_err(), "a panel for every sample");
    }
}
