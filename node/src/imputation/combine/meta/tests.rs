use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use noodles::bgzf;

use super::*;

const HEADER: &str = "##fileformat=VCFv4.2\n##contig=<ID=20>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT";

fn vcf(dir: &Path, name: &str, samples: &[&str], records: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut w = bgzf::io::Writer::new(std::fs::File::create(&path).unwrap());
    writeln!(w, "{HEADER}\t{}", samples.join("\t")).unwrap();
    for r in records {
        writeln!(w, "{r}").unwrap();
    }
    w.finish().unwrap();
    path
}

/// A dose record with one sample's two HDS values.
fn dose(pos: u64, h1: f32, h2: f32, info: &str) -> String {
    format!("20\t{pos}\t20:{pos}\tA\tG\t.\tPASS\t{info}\tGT:HDS\t0|0:{h1},{h2}")
}

/// An empirical record: observed alleles and LDS of one sample.
fn empirical(pos: u64, observed: (u8, u8), lds: (f32, f32)) -> String {
    format!("20\t{pos}\t20:{pos}\tA\tG\t.\t.\tTYPED;IMPUTED\tGT:LDS\t{}|{}:{},{}", observed.0, observed.1, lds.0, lds.1)
}

fn body(path: &Path) -> Vec<Vec<String>> {
    BufReader::new(bgzf::io::Reader::new(std::fs::File::open(path).unwrap()))
        .lines()
        .map(|l| l.unwrap())
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn hds(fields: &[String]) -> (f32, f32) {
    let value = fields[9].split(':').nth(2).unwrap();
    let (a, b) = value.split_once(',').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// Panels A and B at 30 typed sites where haplotype 1 matches A and haplotype 2 matches B, and
/// the imputed sites `a_only`, `b_only` and `both` (A says HDS (0.9, 0.1) where it has a site,
/// B says (0.2, 0.8)).
struct Fixture {
    dir: tempfile::TempDir,
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
}

fn fixture(a_only: &[u64], b_only: &[u64], both: &[u64]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let typed: Vec<u64> = (0..30).map(|i| 10_000 + i * 10_000).collect();
    let (mut emp_a, mut emp_b) = (Vec::new(), Vec::new());
    for (i, pos) in typed.iter().enumerate() {
        let o = ((i % 2) as u8, ((i / 2) % 2) as u8);
        let right = |x: u8| if x == 1 { 0.97 } else { 0.03 };
        let wrong = |x: u8| 1.0 - right(x);
        emp_a.push(empirical(*pos, o, (right(o.0), wrong(o.1))));
        emp_b.push(empirical(*pos, o, (wrong(o.0), right(o.1))));
    }
    let mut sites: Vec<(u64, bool, bool)> = a_only.iter().map(|p| (*p, true, false)).collect();
    sites.extend(b_only.iter().map(|p| (*p, false, true)));
    sites.extend(both.iter().map(|p| (*p, true, true)));
    sites.sort();
    let dose_a: Vec<String> = sites.iter().filter(|s| s.1).map(|s| dose(s.0, 0.9, 0.1, "R2=0.5")).collect();
    let dose_b: Vec<String> = sites.iter().filter(|s| s.2).map(|s| dose(s.0, 0.2, 0.8, "R2=0.5")).collect();
    let a = (vcf(dir.path(), "a.dose.vcf.gz", &["s1"], &dose_a), vcf(dir.path(), "a.emp.vcf.gz", &["s1"], &emp_a));
    let b = (vcf(dir.path(), "b.dose.vcf.gz", &["s1"], &dose_b), vcf(dir.path(), "b.emp.vcf.gz", &["s1"], &emp_b));
    Fixture { dir, a, b }
}

impl Fixture {
    fn combine(&self, rule: AbsentRule) -> Result<(Vec<Vec<String>>, MetaReport), MetaError> {
        let panels = [
            MetaPanel { name: "A", dose: &self.a.0, empirical: &self.a.1 },
            MetaPanel { name: "B", dose: &self.b.0, empirical: &self.b.1 },
        ];
        let out = self.dir.path().join("meta.vcf.gz");
        let mut report = MetaReport::new(&["A", "B"], rule);
        combine_chromosome(&panels, self.dir.path(), &out, rule, &mut report)?;
        Ok((body(&out), report))
    }
}

#[test]
fn each_haplotype_takes_the_dosage_of_the_panel_that_fits_it() {
    let f = fixture(&[], &[], &[55_000, 155_000]);
    let (records, report) = f.combine(AbsentRule::Infer).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        let (h1, h2) = hds(r);
        assert!((h1 - 0.9).abs() < 0.02, "haplotype 1 follows A: {h1}");
        assert!((h2 - 0.8).abs() < 0.02, "haplotype 2 follows B: {h2}");
        assert!(r[7].contains("PANELS=A,B") && !r[7].contains("TRAINING"));
        assert!(r[8] == "GT:DS:HDS:GP" && r[9].starts_with("1|1:1.7:"), "{}", r[9]);
    }
    assert_eq!(report.chromosomes[0].training_sites, 30);
    assert_eq!(report.chromosomes[0].chromosome, "20");
    let w = &report.samples[0].mean_weights;
    assert!((w[0] - 0.5).abs() < 0.02 && (w[1] - 0.5).abs() < 0.02, "one haplotype each: {w:?}");
    assert!(report.text().contains("s1\t0.5"));
}

#[test]
fn training_sites_are_marked_and_the_output_is_the_union_in_order() {
    // A typed site both panels impute (a training site) at 100,000; A-only and B-only sites.
    let f = fixture(&[5_000, 100_001], &[7_000], &[100_000, 400_000]);
    let (records, _) = f.combine(AbsentRule::Ref).unwrap();
    let positions: Vec<&str> = records.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(positions, ["5000", "7000", "100000", "100001", "400000"]);
    let training: Vec<bool> = records.iter().map(|r| r[7].contains("TRAINING")).collect();
    assert_eq!(training, [false, false, true, false, false]);
    assert!(records[0][7].contains("PANELS=A;") && records[1][7].contains("PANELS=B;"));
}

#[test]
fn a_site_absent_from_a_panel_follows_the_rule() {
    // At 55,000 only A has the site; haplotype 2 is weighted to B.
    let f = fixture(&[55_000], &[], &[]);
    let (pass, _) = f.combine(AbsentRule::PassThrough).unwrap();
    assert!((hds(&pass[0]).1 - 0.1).abs() < 0.01, "pass-through: A's dosage for every haplotype");
    let (reference, _) = f.combine(AbsentRule::Ref).unwrap();
    assert!(hds(&reference[0]).1 < 0.02, "ref: B's haplotypes are REF");
    assert!((hds(&reference[0]).0 - 0.9).abs() < 0.02, "haplotype 1 keeps A's dosage");
    // A predicts 0.1 for the haplotype weighted to B: B stands for REF.
    let (inferred, report) = f.combine(AbsentRule::Infer).unwrap();
    assert!(hds(&inferred[0]).1 < 0.02);
    assert_eq!(report.chromosomes[0].absent_taken_as_alt, 0);
    assert_eq!(report.chromosomes[0].not_in_every_panel, 1);
}

#[test]
fn an_absent_panel_stands_for_alt_where_the_present_panel_predicts_alt_for_its_haplotypes() {
    // Only B has the site; haplotype 1 is weighted to the absent A, and B predicts 0.2 for it:
    // A stands for REF...
    let f = fixture(&[], &[55_000], &[]);
    let (inferred, report) = f.combine(AbsentRule::Infer).unwrap();
    assert!(hds(&inferred[0]).0 < 0.05, "{:?}", hds(&inferred[0]));
    assert_eq!(report.chromosomes[0].absent_taken_as_alt, 0);
    // ...while at a site where B predicts ALT for A's haplotypes, A stands for ALT.
    let dir = &f.dir;
    let dose_b = vec![dose(55_000, 0.9, 0.95, "R2=0.1")];
    let b_dose = vcf(dir.path(), "b2.dose.vcf.gz", &["s1"], &dose_b);
    let a_dose = vcf(dir.path(), "a2.dose.vcf.gz", &["s1"], &[]);
    let panels = [
        MetaPanel { name: "A", dose: &a_dose, empirical: &f.a.1 },
        MetaPanel { name: "B", dose: &b_dose, empirical: &f.b.1 },
    ];
    let out = dir.path().join("alt.vcf.gz");
    let mut report = MetaReport::new(&["A", "B"], AbsentRule::Infer);
    combine_chromosome(&panels, dir.path(), &out, AbsentRule::Infer, &mut report).unwrap();
    assert!(hds(&body(&out)[0]).0 > 0.95, "A's haplotype: ALT");
    assert_eq!(report.chromosomes[0].absent_taken_as_alt, 1);
}

#[test]
fn different_typed_alleles_are_refused() {
    let f = fixture(&[], &[], &[55_000]);
    let emp: Vec<String> = (0..30).map(|i| empirical(10_000 + i * 10_000, (1, 1), (0.5, 0.5))).collect();
    let other = vcf(f.dir.path(), "other.emp.vcf.gz", &["s1"], &emp);
    let panels = [
        MetaPanel { name: "A", dose: &f.a.0, empirical: &f.a.1 },
        MetaPanel { name: "B", dose: &f.b.0, empirical: &other },
    ];
    let mut report = MetaReport::new(&["A", "B"], AbsentRule::Infer);
    let err = combine_chromosome(&panels, f.dir.path(), &f.dir.path().join("x.vcf.gz"), AbsentRule::Infer, &mut report)
        .unwrap_err();
    assert!(matches!(err, MetaError::ObservedMismatch { ref panel, .. } if panel == "B"), "{err}");
    assert!(err.to_string().contains("same phased targets"));
}

#[test]
fn different_samples_and_no_training_sites_are_refused() {
    let f = fixture(&[], &[], &[55_000]);
    let other = vcf(f.dir.path(), "s2.dose.vcf.gz", &["s2"], &[]);
    let panels = [
        MetaPanel { name: "A", dose: &f.a.0, empirical: &f.a.1 },
        MetaPanel { name: "B", dose: &other, empirical: &f.b.1 },
    ];
    let out = f.dir.path().join("x.vcf.gz");
    let mut report = MetaReport::new(&["A", "B"], AbsentRule::Infer);
    let err = combine_chromosome(&panels, f.dir.path(), &out, AbsentRule::Infer, &mut report).unwrap_err();
    assert!(matches!(err, MetaError::SampleMismatch { .. }), "{err}");

    let empty = vcf(f.dir.path(), "empty.emp.vcf.gz", &["s1"], &[]);
    let panels = [
        MetaPanel { name: "A", dose: &f.a.0, empirical: &f.a.1 },
        MetaPanel { name: "B", dose: &f.b.0, empirical: &empty },
    ];
    let err = combine_chromosome(&panels, f.dir.path(), &out, AbsentRule::Infer, &mut report).unwrap_err();
    assert!(matches!(err, MetaError::NoTrainingSites), "{err}");
}

#[test]
fn r2_is_recomputed_from_the_combined_dosages() {
    // Perfectly certain dosages: r2 1; all at the mean: r2 0; monomorphic: 0.
    let (p, r2) = frequency_and_r2(&[1.0, 0.0, 1.0, 0.0]);
    assert!((p - 0.5).abs() < 1e-9 && (r2 - 1.0).abs() < 1e-9);
    assert_eq!(frequency_and_r2(&[0.5, 0.5, 0.5, 0.5]).1, 0.0);
    assert_eq!(frequency_and_r2(&[0.0, 0.0]).1, 0.0);
    let (_, r2) = frequency_and_r2(&[0.9, 0.1, 0.8, 0.2]);
    // p = 0.5, mean square = 0.375: (0.375 - 0.25) / 0.25 = 0.5.
    assert!((r2 - 0.5).abs() < 1e-6, "{r2}");
    let mut line = String::new();
    sample_field(&mut line, 0.9, 0.25);
    assert_eq!(line, "\t1|0:1.15:0.9,0.25:0.075,0.7,0.225");
    for (x, text) in
        [(0.0, "0"), (1.0, "1"), (0.05, "0.05"), (0.007, "0.007"), (1.9996, "2"), (0.1234, "0.123"), (-1e-9, "0")]
    {
        let mut out = String::new();
        number(&mut out, x);
        assert_eq!(out, text, "{x}");
    }
}
