//! One small hand-made VCF per rule, each asserting the exact reason QC gives.

use std::io::Write;
use std::path::{Path, PathBuf};

use noodles::bgzf;

use super::*;

const N: usize = 20;

fn samples(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("S{i:02}")).collect()
}

/// A VCF with `names` samples and the given records (`chrom pos ref alt filter gts`), where
/// `gts` is one genotype repeated, or a list separated by spaces.
fn vcf_text(names: &[String], records: &[(&str, u32, &str, &str, &str, &str)]) -> String {
    let mut t = String::from("##fileformat=VCFv4.2\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n");
    for chrom in ["20", "21", "chr20"] {
        t.push_str(&format!("##contig=<ID={chrom}>\n"));
    }
    t.push_str("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t");
    t.push_str(&names.join("\t"));
    t.push('\n');
    for (chrom, pos, r, a, filter, gts) in records {
        let gts: Vec<String> = if gts.contains(' ') {
            gts.split(' ').map(String::from).collect()
        } else {
            vec![gts.to_string(); names.len()]
        };
        t.push_str(&format!("{chrom}\t{pos}\t.\t{r}\t{a}\t.\t{filter}\t.\tGT\t{}\n", gts.join("\t")));
    }
    t
}

fn write_bgzf(path: &Path, text: &str) {
    let mut w = bgzf::io::Writer::new(std::fs::File::create(path).unwrap());
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
}

/// Half het, half hom-ref: polymorphic and fully called.
fn poly() -> String {
    (0..N).map(|i| if i % 2 == 0 { "0/1" } else { "0/0" }).collect::<Vec<_>>().join(" ")
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn input(&self, name: &str, text: &str) -> InputFile {
        let path = self.dir.path().join(name);
        write_bgzf(&path, text);
        InputFile { path, name: name.to_string() }
    }

    fn panel(&self, chrom: &str, sites: &[(u32, &str, &str)]) -> PanelSites {
        let mut t =
            format!("##fileformat=VCFv4.2\n##contig=<ID={chrom}>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n");
        for (pos, r, a) in sites {
            t.push_str(&format!("{chrom}\t{pos}\t.\t{r}\t{a}\t.\tPASS\t.\n"));
        }
        let path = self.dir.path().join(format!("panel-{chrom}.sites.vcf.gz"));
        write_bgzf(&path, &t);
        PanelSites { by_chromosome: [(chrom.to_string(), path)].into(), population: None }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("qc")
    }
}

fn refusal(result: Result<QcOutcome, QcError>) -> String {
    match result {
        Err(e @ QcError::Input { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn qc(f: &Fixture, inputs: &[InputFile], panel: Option<&PanelSites>) -> QcOutcome {
    run_qc(inputs, GenomeBuild::Hg19, panel, &QcSettings::default(), &f.out()).unwrap()
}

#[test]
fn an_uncompressed_file_is_refused() {
    let f = Fixture::new();
    let path = f.dir.path().join("plain.vcf.gz");
    std::fs::write(&path, vcf_text(&samples(N), &[("20", 1, "A", "G", "PASS", "0/1")])).unwrap();
    let err = refusal(run_qc(
        &[InputFile { path, name: "plain.vcf.gz".into() }],
        GenomeBuild::Hg19,
        None,
        &QcSettings::default(),
        &f.out(),
    ));
    assert!(err.contains("plain.vcf.gz") && err.contains("not compressed with bgzip"), "{err}");
}

#[test]
fn a_gzip_file_that_is_not_bgzip_is_refused() {
    let f = Fixture::new();
    let path = f.dir.path().join("gz.vcf.gz");
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    bytes.extend([0u8; 32]);
    std::fs::write(&path, bytes).unwrap();
    let err = refusal(run_qc(
        &[InputFile { path, name: "gz.vcf.gz".into() }],
        GenomeBuild::Hg19,
        None,
        &QcSettings::default(),
        &f.out(),
    ));
    assert!(err.contains("gzip, not bgzip"), "{err}");
}

#[test]
fn two_chromosomes_in_one_file_are_refused_with_the_line() {
    let f = Fixture::new();
    let p = poly();
    let input = f.input(
        "two.vcf.gz",
        &vcf_text(&samples(N), &[("20", 5, "A", "G", "PASS", &p), ("21", 6, "A", "G", "PASS", &p)]),
    );
    let err = refusal(run_qc(&[input], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    // 6 header lines, so the second record is line 8.
    assert!(err.contains("second chromosome (21 after 20)") && err.contains("line 8"), "{err}");
}

#[test]
fn an_unsorted_file_is_refused() {
    let f = Fixture::new();
    let p = poly();
    let input = f.input(
        "unsorted.vcf.gz",
        &vcf_text(&samples(N), &[("20", 50, "A", "G", "PASS", &p), ("20", 40, "C", "T", "PASS", &p)]),
    );
    let err = refusal(run_qc(&[input], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    assert!(err.contains("not sorted: position 40 comes after 50"), "{err}");
}

#[test]
fn hg38_names_for_an_hg19_job_are_refused() {
    let f = Fixture::new();
    let input = f.input("chr.vcf.gz", &vcf_text(&samples(N), &[("chr20", 5, "A", "G", "PASS", &poly())]));
    let err = refusal(run_qc(&[input], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    assert!(err.contains("named hg38-style") && err.contains("\"20\""), "{err}");
}

#[test]
fn duplicate_sample_ids_are_refused() {
    let f = Fixture::new();
    let mut names = samples(N);
    names[3] = names[0].clone();
    let input = f.input("dup.vcf.gz", &vcf_text(&names, &[("20", 5, "A", "G", "PASS", &poly())]));
    let err = refusal(run_qc(&[input], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    assert!(err.contains("\"S00\" appears twice"), "{err}");
}

#[test]
fn files_with_different_samples_are_refused() {
    let f = Fixture::new();
    let p = poly();
    let a = f.input("a.vcf.gz", &vcf_text(&samples(N), &[("20", 5, "A", "G", "PASS", &p)]));
    let mut other = samples(N);
    other[0] = "X".into();
    let b = f.input("b.vcf.gz", &vcf_text(&other, &[("21", 5, "A", "G", "PASS", &p)]));
    let err = refusal(run_qc(&[a, b], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    assert!(err.contains("b.vcf.gz") && err.contains("different samples"), "{err}");
}

#[test]
fn too_few_samples_are_refused() {
    let f = Fixture::new();
    let input = f.input("few.vcf.gz", &vcf_text(&samples(5), &[("20", 5, "A", "G", "PASS", "0/1 0/0 0/0 0/0 0/0")]));
    let err = refusal(run_qc(&[input], GenomeBuild::Hg19, None, &QcSettings::default(), &f.out()));
    assert!(err.contains("has 5 samples; at least 20"), "{err}");
}

#[test]
fn every_variant_rule_reports_its_reason() {
    let f = Fixture::new();
    let p = poly();
    let low_call: String = (0..N)
        .map(|i| {
            if i < 3 {
                "./."
            } else if i % 2 == 0 {
                "0/1"
            } else {
                "0/0"
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let records = [
        ("20", 100, "A", "G", "PASS", p.as_str()),        // kept: exact match
        ("20", 200, "A", "G", "LowQual", p.as_str()),     // filter_flag
        ("20", 300, "A", "G,T", "PASS", p.as_str()),      // multiallelic
        ("20", 400, "AT", "A", "PASS", p.as_str()),       // not_snp
        ("20", 500, "A", "A", "PASS", p.as_str()),        // ref_equals_alt
        ("20", 600, "C", "T", "PASS", p.as_str()),        // kept
        ("20", 600, "C", "G", "PASS", p.as_str()),        // duplicate_site
        ("20", 700, "C", "T", "PASS", low_call.as_str()), // low_call_rate (17/20 < 90%)
        ("20", 800, "C", "T", "PASS", "0/0"),             // monomorphic
        ("20", 900, "C", "T", "PASS", p.as_str()),        // not_in_panel
        ("20", 1000, "C", "T", "PASS", p.as_str()),       // allele_mismatch (panel C/A)
        ("20", 1100, "C", "T", "PASS", p.as_str()),       // allele_switch (panel T/C)
        ("20", 1200, "C", "T", "PASS", p.as_str()),       // strand_flip (panel G/A)
        ("20", 1300, "C", "T", "PASS", p.as_str()),       // strand_flip_and_allele_switch (panel A/G)
        ("20", 1400, "A", "T", "PASS", p.as_str()),       // kept, strand-ambiguous
    ];
    let input = f.input("rules.vcf.gz", &vcf_text(&samples(N), &records));
    let panel = f.panel(
        "20",
        &[
            (100, "A", "G"),
            (600, "C", "T"),
            (1000, "C", "A"),
            (1100, "T", "C"),
            (1200, "G", "A"),
            (1300, "A", "G"),
            (1400, "A", "T"),
        ],
    );
    let settings = QcSettings { min_panel_overlap: 0.0, ..Default::default() };
    let out = run_qc(&[input], GenomeBuild::Hg19, Some(&panel), &settings, &f.out()).unwrap();
    let r = &out.report;
    use ExclusionReason::*;
    let expected = [
        FilterFlag,
        Multiallelic,
        NotSnp,
        RefEqualsAlt,
        DuplicateSite,
        LowCallRate,
        Monomorphic,
        NotInPanel,
        AlleleMismatch,
        AlleleSwitch,
        StrandFlip,
        StrandFlipAndAlleleSwitch,
    ];
    for reason in expected {
        assert_eq!(r.excluded.get(&reason), Some(&1), "{reason:?} in {:?}", r.excluded);
    }
    assert_eq!(r.excluded.len(), expected.len());
    assert_eq!((r.variants_total, r.variants_kept, r.panel_matches, r.ambiguous_strand_matches), (15, 3, 3, 1));

    // excluded.tsv lists each one with its reason; the filtered VCF holds exactly the kept sites.
    let tsv = std::fs::read_to_string(&out.excluded_path).unwrap();
    assert!(tsv.contains("rules.vcf.gz\t20\t1100\tC\tT\tallele_switch"), "{tsv}");
    assert_eq!(tsv.lines().count(), 1 + expected.len());
    let mut reader = noodles::vcf::io::reader::Builder::default().build_from_path(&out.filtered[0].1).unwrap();
    let header = reader.read_header().unwrap();
    let kept: Vec<usize> =
        reader.records().map(|r| usize::from(r.unwrap().variant_start().unwrap().unwrap())).collect();
    assert_eq!(kept, vec![100, 600, 1400]);
    assert_eq!(header.sample_names().len(), N);
}

#[test]
fn an_input_snp_matches_the_panel_snp_among_several_records_at_its_position() {
    let f = Fixture::new();
    let p = poly();
    let records = [
        ("20", 100, "A", "G", "PASS", p.as_str()), // panel: an indel, then the split A>C and A>G
        ("20", 200, "C", "T", "PASS", p.as_str()), // panel: only an indel here
        ("20", 300, "G", "A", "PASS", p.as_str()), // panel: A>G (switched) and G>T: G>T is no match, the switch is named
    ];
    let input = f.input("multi.vcf.gz", &vcf_text(&samples(N), &records));
    let panel = f.panel(
        "20",
        &[(100, "A", "AT"), (100, "A", "C"), (100, "A", "G"), (200, "C", "CTT"), (300, "A", "G"), (300, "G", "T")],
    );
    let settings = QcSettings { min_panel_overlap: 0.0, ..Default::default() };
    let out = run_qc(&[input], GenomeBuild::Hg19, Some(&panel), &settings, &f.out()).unwrap();
    let r = &out.report;
    assert_eq!(r.panel_matches, 1, "{r:?}");
    assert_eq!(r.excluded.get(&ExclusionReason::NotInPanel), Some(&1), "an indel is not the SNP: {r:?}");
    assert_eq!(r.excluded.get(&ExclusionReason::AlleleSwitch), Some(&1), "{r:?}");
    assert_eq!(r.excluded.len(), 2);
}

#[test]
fn a_chromosome_the_panel_lacks_is_left_out_without_counting_against_the_overlap() {
    let f = Fixture::new();
    let p = poly();
    let chr20 = f.input("a.vcf.gz", &vcf_text(&samples(N), &[("20", 100, "A", "G", "PASS", p.as_str())]));
    let chr21 = f.input("b.vcf.gz", &vcf_text(&samples(N), &[("21", 100, "A", "G", "PASS", p.as_str())]));
    let panel = f.panel("20", &[(100, "A", "G")]);
    let out =
        run_qc(&[chr20, chr21.clone()], GenomeBuild::Hg19, Some(&panel), &QcSettings::default(), &f.out()).unwrap();
    assert_eq!(out.report.status, QcStatus::Passed, "{:?}", out.report.message);
    assert_eq!(out.report.panel_overlap, Some(1.0));
    assert!(out.report.files[1].skipped.as_deref().unwrap().contains("no chromosome 21"));
    assert_eq!(out.filtered.len(), 1, "only chromosome 20 goes to the engine");
    let only21 = run_qc(&[chr21], GenomeBuild::Hg19, Some(&panel), &QcSettings::default(), &f.out()).unwrap();
    assert!(only21.report.message.unwrap().contains("none of the input's chromosomes (21)"));
}

#[test]
fn a_sample_below_the_call_rate_fails_qc_and_is_named() {
    let f = Fixture::new();
    let gts: String = (0..N)
        .map(|i| {
            if i == 7 {
                "./."
            } else if i % 2 == 0 {
                "0/1"
            } else {
                "0/0"
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let records: Vec<(&str, u32, &str, &str, &str, &str)> =
        (1..=10).map(|i| ("20", i * 10, "A", "G", "PASS", gts.as_str())).collect();
    let out = qc(&f, &[f.input("s.vcf.gz", &vcf_text(&samples(N), &records))], None);
    assert_eq!(out.report.status, QcStatus::Failed);
    assert_eq!(out.report.low_call_rate_samples.len(), 1);
    assert_eq!(out.report.low_call_rate_samples[0].sample, "S07");
    assert!(out.report.message.as_deref().unwrap().contains("S07 at 0.0%"));
}

#[test]
fn low_overlap_with_the_panel_fails_qc_and_says_what_to_check() {
    let f = Fixture::new();
    let p = poly();
    let records: Vec<(&str, u32, &str, &str, &str, &str)> =
        (1..=10).map(|i| ("20", i * 10, "A", "G", "PASS", p.as_str())).collect();
    let panel = f.panel("20", &[(10, "A", "G"), (20, "A", "G")]);
    let out = qc(&f, &[f.input("o.vcf.gz", &vcf_text(&samples(N), &records))], Some(&panel));
    assert_eq!(out.report.status, QcStatus::Failed);
    assert!((out.report.panel_overlap.unwrap() - 0.2).abs() < 1e-9);
    let message = out.report.message.unwrap();
    assert!(message.contains("20.0%") && message.contains("genome build"), "{message}");
}

#[test]
fn a_clean_file_passes_and_the_text_report_reads_well() {
    let f = Fixture::new();
    let p = poly();
    let records: Vec<(&str, u32, &str, &str, &str, &str)> =
        (1..=4).map(|i| ("20", i * 10, "A", "G", "PASS", p.as_str())).collect();
    let panel = f.panel("20", &[(10, "A", "G"), (20, "A", "G"), (30, "A", "G"), (40, "A", "G")]);
    let out = qc(&f, &[f.input("ok.vcf.gz", &vcf_text(&samples(N), &records))], Some(&panel));
    assert_eq!(out.report.status, QcStatus::Passed, "{:?}", out.report.message);
    let text = out.report.to_text();
    assert!(text.contains("Input QC: PASSED") && text.contains("Reference overlap: 100.00%"), "{text}");
}
