//! Input repair through a real node: a researcher's everyday files (plain VCF, unsorted,
//! `chr20` named for the other build, several chromosomes in one file) are repaired, each repair
//! is listed in the QC report, and with `repair=false` each is refused as before.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fedimpute_tests::jobs::*;
use fedimpute_tests::{TestNode, install_crypto_provider, test_data};
use reqwest::StatusCode;
use serde_json::Value;

/// The committed targets as VCF text: header lines and records.
fn targets_text() -> (Vec<String>, Vec<String>) {
    let out = Command::new("bcftools").arg("view").arg(test_data("targets.vcf.gz")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let (header, body): (Vec<String>, Vec<String>) = text.lines().map(String::from).partition(|l| l.starts_with('#'));
    (header, body)
}

fn bgzip(text: &str, path: &Path) {
    let mut child = Command::new("bgzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

fn renamed(records: &[String], chrom: &str) -> Vec<String> {
    records.iter().map(|r| format!("{chrom}{}", &r[r.find('\t').unwrap()..])).collect()
}

fn join(header: &[String], records: &[String]) -> String {
    let mut t = header.join("\n");
    t.push('\n');
    for r in records {
        t.push_str(r);
        t.push('\n');
    }
    t
}

/// A node hosting the committed panel as chromosomes 20 and 21 (the same haplotypes twice).
async fn node_with_two_chromosomes(dir: &Path) -> TestNode {
    install_crypto_provider();
    let panel21 = dir.join("panel21.vcf.gz");
    let names = dir.join("names.txt");
    std::fs::write(&names, "20 21\n").unwrap();
    let status = Command::new("bcftools")
        .args(["annotate", "--rename-chrs"])
        .arg(&names)
        .args(["-Oz", "-o"])
        .arg(&panel21)
        .arg(test_data("panel.vcf.gz"))
        .status()
        .unwrap();
    assert!(status.success());
    let mut node = TestNode::init("Inst A").unwrap();
    panel_add(&node, "two", &[&test_data("panel.vcf.gz"), &panel21], &[]);
    node.start().await.unwrap();
    node
}

/// The four everyday problems, one file each.
fn problem_files(dir: &Path) -> Vec<(&'static str, PathBuf, &'static str, &'static str)> {
    let (header, records) = targets_text();
    let plain = dir.join("study.vcf");
    std::fs::write(&plain, join(&header, &records)).unwrap();
    let unsorted = dir.join("unsorted.vcf.gz");
    let mut shuffled = records.clone();
    shuffled.swap(3, 200);
    bgzip(&join(&header, &shuffled), &unsorted);
    let hg38_names = dir.join("chr-named.vcf.gz");
    bgzip(&join(&header, &renamed(&records, "chr20")), &hg38_names);
    let several = dir.join("genome.vcf.gz");
    bgzip(&join(&header, &[records.clone(), renamed(&records, "21")].concat()), &several);
    vec![
        // (what, file, the repair listed, today's refusal)
        ("plain", plain, "compressed with bgzip", "not compressed with bgzip"),
        ("unsorted", unsorted, "sorted 345 records of 20", "is not sorted"),
        ("renamed", hg38_names, "renamed chr20 -> 20", "named hg38-style"),
        ("several chromosomes", several, "split into 2 files, one per chromosome: 20, 21", "holds a second chromosome"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_everyday_problem_is_repaired_and_listed_or_refused_when_repair_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_two_chromosomes(dir.path()).await;
    let token = node.admin_token().await.unwrap();
    for (what, file, repair, refusal) in problem_files(dir.path()) {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let fields = [("panel", "two"), ("build", "hg19"), ("mode", "qc_only")];
        let (status, job) = submit(&node, &token, &[(&file, &name)], &fields).await;
        assert_eq!(status, StatusCode::CREATED, "{what}: {job}");
        let id = job["id"].as_str().unwrap();
        let done = wait_state(&node, &token, id, &["completed", "failed"], Duration::from_secs(120)).await;
        assert_eq!(done["state"], "completed", "{what}: {done}");
        let listed: Vec<&str> =
            done["qc_report"]["repairs"].as_array().unwrap().iter().map(|r| r["message"].as_str().unwrap()).collect();
        assert!(listed.contains(&repair), "{what}: {listed:?}");
        let text = node
            .client()
            .get(node.api(&format!("/jobs/{id}/results/qc_report.txt")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(&format!("{name}: {repair}")), "{what}: qc_report.txt lists the repair:\n{text}");

        let refused = [("panel", "two"), ("build", "hg19"), ("mode", "qc_only"), ("repair", "false")];
        let (status, body) = submit(&node, &token, &[(&file, &name)], &refused).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what} with repair off: {body}");
        assert!(body.to_string().contains(refusal), "{what} with repair off: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_unsorted_wrongly_named_genome_file_is_repaired_and_imputed_per_chromosome() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_two_chromosomes(dir.path()).await;
    let token = node.admin_token().await.unwrap();
    let (header, records) = targets_text();
    let mut genome = [renamed(&records, "chr21"), renamed(&records, "chr20")].concat();
    genome.swap(10, 20);
    let file = dir.path().join("genome.vcf");
    std::fs::write(&file, join(&header, &genome)).unwrap();
    let (status, job) = submit(&node, &token, &[(&file, "genome.vcf")], &[("panel", "two"), ("build", "hg19")]).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let inputs: Vec<&str> = job["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["genome.21.vcf.gz", "genome.20.vcf.gz"]);
    let id = job["id"].as_str().unwrap();
    let done = wait_state(&node, &token, id, &["completed", "failed"], Duration::from_secs(400)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let kinds: Vec<&str> = done["repairs"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["compressed", "renamed", "renamed", "split", "sorted"], "{}", done["repairs"]);
    for chrom in ["chr20", "chr21"] {
        let dose = dir.path().join(format!("{chrom}.dose.vcf.gz"));
        download(&node, &token, id, &format!("{chrom}.dose.vcf.gz"), &dose).await;
        let body = vcf_body(&dose);
        assert_eq!(body.len(), 19_525, "{chrom}: every panel site");
        if chrom == "chr20" {
            let r2 = r2_common(&dose);
            assert!(r2 >= 0.95, "dosage r2 at MAF > 5% after repair is {r2}");
        }
    }
    let report: Value = done["qc_report"].clone();
    assert_eq!(report["files"].as_array().unwrap().len(), 2, "{report}");
}
