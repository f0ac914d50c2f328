use std::io::Read;

use super::*;

const HEADER: &str = "##fileformat=VCFv4.2\n##contig=<ID=20,length=64444167>\n##contig=<ID=21>\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n";

fn record(chrom: &str, pos: u64) -> String {
    format!("{chrom}\t{pos}\t.\tA\tG\t.\tPASS\t.\tGT\t0/1\n")
}

fn write(dir: &Path, name: &str, body: &str, compression: Compression) -> InputFile {
    let path = dir.join(name);
    let text = format!("{HEADER}{body}");
    match compression {
        Compression::Plain => std::fs::write(&path, text).unwrap(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), Default::default());
            e.write_all(text.as_bytes()).unwrap();
            e.finish().unwrap();
        }
        Compression::Bgzf => {
            let mut w = BgzfWriter::create(&path, Effort::Fast).unwrap();
            w.write_all(text.as_bytes()).unwrap();
            w.finish().unwrap();
        }
    }
    InputFile { path, name: name.to_string() }
}

fn text(path: &Path) -> (Compression, String) {
    let (mut reader, compression) = vcf_io::open_text(path).unwrap();
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    (compression, s)
}

fn body(path: &Path) -> Vec<String> {
    text(path)
        .1
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').take(2).collect::<Vec<_>>().join(":"))
        .collect()
}

fn repair(inputs: &[InputFile], build: GenomeBuild, dir: &Path) -> Repaired {
    repair_inputs(inputs, build, Path::new("bcftools"), &dir.join("repaired")).unwrap()
}

#[test]
fn a_file_that_needs_nothing_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "ok.vcf.gz", &(record("20", 1) + &record("20", 2)), Compression::Bgzf);
    let r = repair(std::slice::from_ref(&input), GenomeBuild::Hg19, dir.path());
    assert!(r.repairs.is_empty());
    assert_eq!(r.inputs[0].path, input.path);
    assert!(!dir.path().join("repaired").exists(), "nothing was written");
}

#[test]
fn a_plain_and_a_gzip_file_are_bgzipped_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(dir.path(), "study.vcf", &record("20", 5), Compression::Plain);
    let gz = write(dir.path(), "other.vcf.gz", &record("21", 5), Compression::Gzip);
    let r = repair(&[plain, gz], GenomeBuild::Hg19, dir.path());
    let messages: Vec<&str> = r.repairs.iter().map(|x| x.message.as_str()).collect();
    assert_eq!(messages, ["compressed with bgzip", "recompressed from gzip to bgzip"]);
    assert_eq!(r.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["study.vcf.gz", "other.vcf.gz"]);
    for input in &r.inputs {
        assert_eq!(text(&input.path).0, Compression::Bgzf);
    }
    assert_eq!(body(&r.inputs[0].path), ["20:5"]);
}

#[test]
fn chromosome_names_are_renamed_to_the_build_with_their_contig_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "b37names.vcf.gz", &(record("20", 1) + &record("20", 9)), Compression::Bgzf);
    let r = repair(&[input], GenomeBuild::Hg38, dir.path());
    assert_eq!(r.repairs.len(), 1);
    assert_eq!((r.repairs[0].kind, r.repairs[0].message.as_str()), (RepairKind::Renamed, "renamed 20 -> chr20"));
    let (_, t) = text(&r.inputs[0].path);
    assert!(t.contains("##contig=<ID=chr20,length=64444167>") && t.contains("##contig=<ID=21>"), "{t}");
    assert_eq!(body(&r.inputs[0].path), ["chr20:1", "chr20:9"]);
    let back = write(dir.path(), "b38names.vcf.gz", &record("chr20", 1), Compression::Bgzf);
    let r = repair(&[back], GenomeBuild::Hg19, dir.path());
    assert_eq!(r.repairs[0].message, "renamed chr20 -> 20");
}

#[test]
fn a_file_of_several_chromosomes_is_split_and_an_unsorted_one_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let records = [record("21", 50), record("20", 30), record("21", 10), record("20", 40), record("21", 70)].concat();
    let input = write(dir.path(), "all.vcf", &records, Compression::Plain);
    let r = repair(&[input], GenomeBuild::Hg19, dir.path());
    let messages: Vec<&str> = r.repairs.iter().map(|x| x.message.as_str()).collect();
    assert_eq!(
        messages,
        ["compressed with bgzip", "split into 2 files, one per chromosome: 21, 20", "sorted 3 records of 21"]
    );
    assert_eq!(r.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["all.21.vcf.gz", "all.20.vcf.gz"]);
    assert_eq!(body(&r.inputs[0].path), ["21:10", "21:50", "21:70"]);
    assert_eq!(body(&r.inputs[1].path), ["20:30", "20:40"]);
    assert_eq!(text(&r.inputs[0].path).0, Compression::Bgzf, "bcftools sort writes bgzip");
    // A chromosome the header did not declare is declared (bcftools needs it to sort).
    let undeclared = write(dir.path(), "x.vcf", &(record("22", 9) + &record("22", 1)), Compression::Plain);
    let r = repair(&[undeclared], GenomeBuild::Hg38, dir.path());
    assert!(text(&r.inputs[0].path).1.contains("##contig=<ID=chr22>\n#CHROM"));
    assert_eq!(body(&r.inputs[0].path), ["chr22:1", "chr22:9"]);
}

#[test]
fn what_cannot_be_repaired_is_left_for_qc_or_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mixed = write(dir.path(), "mixed.vcf.gz", &(record("20", 1) + &record("chr20", 2)), Compression::Bgzf);
    let e = repair_inputs(&[mixed], GenomeBuild::Hg19, Path::new("bcftools"), dir.path()).unwrap_err();
    assert!(e.to_string().contains("two ways"), "{e}");
    // Not a chromosome: no name to give it; QC refuses it as before.
    let odd = write(dir.path(), "odd.vcf.gz", &record("chrUn_1", 1), Compression::Bgzf);
    let r = repair(&[odd], GenomeBuild::Hg19, dir.path());
    assert!(r.repairs.is_empty());
    assert_eq!(count(12_004), "12,004");
    assert_eq!(count(999), "999");
}
