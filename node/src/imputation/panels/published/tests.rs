use std::io::{Read, Write};

use super::*;
use crate::imputation::qc::OpenedInput;

const HEADER: &str = "##fileformat=VCFv4.2\n##contig=<ID=20>\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\n";

fn opened(body: &str) -> OpenedInput {
    let text = format!("{HEADER}{body}");
    let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.into_bytes()));
    read_header(reader, &input()).unwrap()
}

fn input() -> InputFile {
    InputFile { path: "panel.vcf".into(), name: "panel.vcf".into() }
}

/// The records `clean` kept (as text) and its report.
fn cleaned(body: &str) -> Result<(Vec<String>, RegistrationReport), QcError> {
    let mut out = Vec::new();
    let (report, _) = clean(opened(body), &input(), GenomeBuild::Hg19, &mut out)?;
    let text = String::from_utf8(out).unwrap();
    Ok((text.lines().filter(|l| !l.starts_with('#')).map(String::from).collect(), report))
}

#[test]
fn records_no_engine_can_use_are_left_out_with_a_count_each_and_the_rest_pass_unchanged() {
    let body = "\
20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0|1\t1|1\t0|0
20\t100\trs1\tA\tG\t.\tPASS\t.\tGT\t0|1\t1|1\t0|0
20\t100\trs2\tA\tAT,C\t.\tPASS\t.\tGT\t0|2\t1|0\t0|0
20\t150\tsv1\tA\t<DEL>\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t160\tsp1\tA\tG,*\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t170\tbnd\tA\tA[20:500[\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t180\tmono\tA\t.\t.\tPASS\t.\tGT\t0|0\t0|0\t0|0
20\tpos\tbad\tA\tG\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t190\tbad\tX\tG\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t191\tbad\tA\tG\t.\tPASS\t.\tGT\t0|2\t0|0\t0|0
20\t192\tbad\tA\tG\t.\tPASS\t.\tGT\t0|1\t0|0
20\t193\tshort\tA\tG
20\t200\tunph\tC\tT\t.\tPASS\t.\tGT\t0/1\t0|0\t0|0
20\t201\tmiss\tC\tT\t.\tPASS\t.\tGT\t.|1\t0|0\t0|0
20\t300\tdel\tACT\tA\t.\tPASS\t.\tGT:DS\t0|1:1\t0|0:0\t1|1:2
20\t400\thap\tG\tC\t.\tPASS\t.\tGT\t1\t0\t1
";
    let (kept, report) = cleaned(body).unwrap();
    let ids: Vec<&str> = kept.iter().map(|l| l.split('\t').nth(2).unwrap()).collect();
    assert_eq!(ids, ["rs1", "rs2", "del", "hap"]);
    assert_eq!(kept[2], "20\t300\tdel\tACT\tA\t.\tPASS\t.\tGT:DS\t0|1:1\t0|0:0\t1|1:2", "kept records are unchanged");
    assert_eq!(report.records_read, 16);
    assert_eq!(report.multiallelic_split, 1);
    let count = |r| report.excluded.get(&r).copied().unwrap_or(0);
    assert_eq!(count(PanelExclusion::Duplicate), 1);
    assert_eq!(count(PanelExclusion::Symbolic), 3, "<DEL>, * and a breakend");
    assert_eq!(count(PanelExclusion::NoAlternate), 1);
    assert_eq!(count(PanelExclusion::Malformed), 5, "bad POS, bad REF, allele 2 of 2, a missing column, 4 columns");
    assert_eq!(count(PanelExclusion::UnphasedOrMissing), 2);
    assert_eq!(report.examples.len(), 10, "examples are bounded");
    assert!(report.examples[0].starts_with("duplicate: line 6 (20:100)"), "{:?}", report.examples);
}

#[test]
fn what_makes_a_whole_file_unusable_is_refused_with_what_to_do() {
    let unsorted = "20\t200\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0|0\n20\t100\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0|0\n";
    let e = cleaned(unsorted).unwrap_err().to_string();
    assert!(e.contains("line 6") && e.contains("not sorted") && e.contains("bcftools sort"), "{e}");
    let two = "20\t100\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0|0\n21\t100\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0|0\n";
    assert!(cleaned(two).unwrap_err().to_string().contains("second chromosome (21 after 20)"));
    let named = "chr20\t100\t.\tA\tG\t.\t.\t.\tGT\t0|1\t0|0\t0|0\n";
    assert!(cleaned(named).unwrap_err().to_string().contains("hg38-style"));
}

#[test]
fn sample_populations_are_read_from_the_1000_genomes_panel_file_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples.panel");
    std::fs::write(&path, "sample\tpop\tsuper_pop\tgender\nS1\tYRI\tAFR\tmale\nS2\tCEU\tEUR\tfemale\n\n").unwrap();
    let groups = SamplePopulations::read(&path).unwrap();
    assert_eq!(groups.names(), ["CEU", "YRI"]);
    std::fs::write(&path, "S1 YRI\nS1 CEU\n").unwrap();
    assert!(SamplePopulations::read(&path).unwrap_err().contains("listed twice"));
    std::fs::write(&path, "S1 Y;RI\n").unwrap();
    assert!(SamplePopulations::read(&path).unwrap_err().contains("letters, digits"));
}

#[test]
fn a_published_file_is_split_into_biallelic_records_with_frequencies_overall_and_per_population() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("panel.vcf");
    let mut f = std::fs::File::create(&source).unwrap();
    write!(
        f,
        "{HEADER}\
20\t100\trs1\tA\tG,C\t.\tPASS\t.\tGT\t0|1\t2|1\t0|0
20\t150\tsv\tA\t<DEL>\t.\tPASS\t.\tGT\t0|1\t0|0\t0|0
20\t200\trs2\tACT\tA\t.\tPASS\t.\tGT\t1|1\t0|0\t0|1
"
    )
    .unwrap();
    drop(f);
    let groups = SamplePopulations {
        by_sample: [("S1", "AFR"), ("S2", "AFR"), ("S3", "EUR")].map(|(s, p)| (s.to_string(), p.to_string())).into(),
    };
    let (vcf, sites) = (dir.path().join("out.vcf.gz"), dir.path().join("out.sites.vcf.gz"));
    let prepared =
        prepare_file(&source, GenomeBuild::Hg19, Path::new("bcftools"), Some(&groups), &vcf, &sites).unwrap();
    assert_eq!(prepared.chromosome, "20");
    assert_eq!(prepared.samples, ["S1", "S2", "S3"]);
    let r = &prepared.report;
    assert_eq!((r.records_read, r.multiallelic_split, r.sites, r.snps, r.indels), (3, 1, 3, 2, 1));
    assert_eq!(r.excluded.get(&PanelExclusion::Symbolic), Some(&1));

    let body = |path: &Path| -> Vec<String> {
        let (mut reader, _) = vcf_io::open_text(path).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text.lines().filter(|l| !l.starts_with('#')).map(String::from).collect()
    };
    let records = body(&vcf);
    assert_eq!(records.len(), 3);
    assert!(records[0].starts_with("20\t100\trs1\tA\tG\t") && records[0].ends_with("GT\t0|1\t0|1\t0|0"), "{records:?}");
    assert!(records[1].starts_with("20\t100\trs1\tA\tC\t") && records[1].ends_with("GT\t0|0\t1|0\t0|0"), "{records:?}");
    assert_eq!(
        body(&sites),
        [
            "20\t100\trs1\tA\tG\t.\t.\tAC=2;AN=6;AF=0.333333;AF_AFR=0.5;AC_AFR=2;AN_AFR=4;AF_EUR=0;AC_EUR=0;AN_EUR=2",
            "20\t100\trs1\tA\tC\t.\t.\tAC=1;AN=6;AF=0.166667;AF_AFR=0.25;AC_AFR=1;AN_AFR=4;AF_EUR=0;AC_EUR=0;AN_EUR=2",
            "20\t200\trs2\tACT\tA\t.\t.\tAC=3;AN=6;AF=0.5;AF_AFR=0.5;AC_AFR=2;AN_AFR=4;AF_EUR=0.5;AC_EUR=1;AN_EUR=2",
        ]
    );
    let e = prepare_file(&source, GenomeBuild::Hg38, Path::new("bcftools"), None, &vcf, &sites).unwrap_err();
    assert!(e.to_string().contains("hg19-style"), "{e}");
}
