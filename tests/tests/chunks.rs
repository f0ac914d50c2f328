//! Chunked jobs: a chromosome split into chunks, run side by side through the local executor
//! and ligated, gives the sites and accuracy of the unchunked run; a chunk with too few input
//! sites is left out with the reason in the QC report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fedimpute_tests::jobs::{
    download, edit_config, node_with_panel_and_config, panel_add, r2_all, set, submit, submit_targets, wait_state,
};
use fedimpute_tests::{TestNode, install_crypto_provider, test_data};
use serde_json::Value;

/// The sites of a VCF: CHROM, POS, REF, ALT per record.
fn sites(vcf: &Path) -> Vec<String> {
    let out = Command::new("bcftools").args(["query", "-f", "%CHROM %POS %REF %ALT\\n"]).arg(vcf).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

/// Runs a job on the committed targets with `engine` and returns its dose VCF and job view.
async fn run_job(node: &TestNode, token: &str, engine: &str, dir: &Path, tag: &str) -> (std::path::PathBuf, Value) {
    let id = submit_targets(node, token, &[("panel", "sim"), ("build", "hg19"), ("engine", engine)]).await;
    let done = wait_state(node, token, &id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let dose = dir.join(format!("{tag}.dose.vcf.gz"));
    download(node, token, &id, "chr20.dose.vcf.gz", &dose).await;
    (dose, done)
}

/// node.toml with chunks of 500 kb (four over the test panel's 2 Mb) and 250 kb flanks.
fn small_chunks(config: String) -> String {
    let config = set(config, "size_bp = 20000000", "size_bp = 500000");
    let config = set(config, "phasing_flank_bp = 5000000", "phasing_flank_bp = 250000");
    set(config, "minimac4_overlap_bp = 500000", "minimac4_overlap_bp = 250000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_jobs_match_the_unchunked_run_and_thin_chunks_are_left_out() {
    // One engine thread per task and two slots: chunks run side by side on the two cores.
    let mut node = node_with_panel_and_config(|c| {
        let c = set(c, "threads = 2", "threads = 1");
        set(c, "slots = 0", "slots = 2")
    })
    .await;
    let token = node.admin_token().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut whole = Vec::new();
    for engine in ["beagle", "minimac4"] {
        let (dose, done) = run_job(&node, &token, engine, dir.path(), &format!("{engine}-whole")).await;
        assert_eq!(done["qc_report"]["chunks"].as_array().unwrap().len(), 1, "one chunk at 20 Mb: {done}");
        whole.push(dose);
    }

    node.stop_with(libc::SIGTERM).unwrap();
    edit_config(&node, small_chunks);
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();
    for (engine, whole) in ["beagle", "minimac4"].into_iter().zip(&whole) {
        let (dose, done) = run_job(&node, &token, engine, dir.path(), &format!("{engine}-chunked")).await;
        let chunks = done["qc_report"]["chunks"].as_array().unwrap();
        let starts: Vec<u64> = chunks.iter().map(|c| c["start"].as_u64().unwrap()).collect();
        assert_eq!(starts, vec![30_000_001, 30_500_001, 31_000_001, 31_500_001], "{done}");
        assert!(chunks.iter().all(|c| c["excluded"].is_null()), "{done}");
        assert_eq!(sites(&dose), sites(whole), "{engine}: the ligated output has the unchunked run's sites");
        let (chunked_r2, whole_r2) = (r2_all(&dose), r2_all(whole));
        assert!(
            (chunked_r2 - whole_r2).abs() <= 0.005,
            "{engine}: chunked r2 {chunked_r2} against unchunked {whole_r2}"
        );
        // Each chunk ran as its own task, and its events say so (the job page's grid reads them).
        let id = done["id"].as_str().unwrap();
        let events = node.client().get(node.api(&format!("/jobs/{id}/events"))).bearer_auth(&token).send().await;
        let events = events.unwrap().text().await.unwrap();
        for k in 61..=64 {
            for state in ["running", "done"] {
                let message = format!("chunk chr20.chunk{k}: {state}");
                assert!(events.contains(&message), "{engine}: no event {message:?} in\n{events}");
            }
        }
        let log = dir.path().join(format!("{engine}.job.log"));
        download(&node, &token, id, "job.log", &log).await;
        let log = std::fs::read_to_string(&log).unwrap();
        let program = if engine == "beagle" { "beagle.jar" } else { "minimac4 " };
        let runs = log.lines().filter(|l| l.starts_with("$ ") && l.contains(program)).count();
        assert_eq!(runs, 4, "{engine}: one run per chunk:\n{log}");
    }

    // Thin out 30.5-31.0 Mb to two sites: that chunk is left out, named, and the rest runs.
    let thin = dir.path().join("thin.vcf.gz");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; (bcftools view -h {t}; bcftools view -H {t} | awk '$2 < 30500001 || $2 > 31000000 || n++ < 2') \
             | bgzip > {o}",
            t = test_data("targets.vcf.gz").display(),
            o = thin.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let (status, job) =
        submit(&node, &token, &[(&thin, "thin.vcf.gz")], &[("panel", "sim"), ("build", "hg19"), ("engine", "beagle")])
            .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    let done = wait_state(&node, &token, id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let left_out = &done["qc_report"]["chunks"][1];
    assert_eq!(left_out["start"], 30_500_001, "{done}");
    assert_eq!(left_out["input_sites"], 2, "{done}");
    assert!(left_out["excluded"].as_str().unwrap().contains("fewer than the 3"), "{done}");
    let dose = dir.path().join("thin.dose.vcf.gz");
    download(&node, &token, id, "chr20.dose.vcf.gz", &dose).await;
    let positions: Vec<u64> = sites(&dose).iter().map(|s| s.split(' ').nth(1).unwrap().parse().unwrap()).collect();
    assert!(!positions.is_empty());
    assert!(!positions.iter().any(|p| (30_500_001..=31_000_000).contains(p)), "the left-out chunk has no output");
    let text_report = dir.path().join("qc_report.txt");
    download(&node, &token, id, "qc_report.txt", &text_report).await;
    let text = std::fs::read_to_string(&text_report).unwrap();
    assert!(text.contains("chunk 20:30500001-31000000 left out"), "{text}");
}

/// `vcf` with chromosome 20 renamed to `chrom`, bgzipped into `dir`.
fn as_chromosome(vcf: &Path, chrom: &str, dir: &Path) -> std::path::PathBuf {
    let map = dir.join(format!("rename-{chrom}.txt"));
    std::fs::write(&map, format!("20 {chrom}\n")).unwrap();
    let out = dir.join(format!("{chrom}.{}", vcf.file_name().unwrap().to_str().unwrap()));
    let status = Command::new("bcftools")
        .args(["annotate", "--no-version", "-Oz", "--rename-chrs"])
        .arg(&map)
        .arg("-o")
        .arg(&out)
        .arg(vcf)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_chromosome_job_interleaves_the_chunks_of_both_and_ligates_each() {
    let dir = tempfile::tempdir().unwrap();
    let panel21 = as_chromosome(&test_data("panel.vcf.gz"), "21", dir.path());
    let targets21 = as_chromosome(&test_data("targets.vcf.gz"), "21", dir.path());
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    panel_add(&node, "two", &[&test_data("panel.vcf.gz"), &panel21], &[]);
    edit_config(&node, |c| small_chunks(set(set(c, "threads = 2", "threads = 1"), "slots = 0", "slots = 2")));
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();
    let files = [(test_data("targets.vcf.gz"), "chr20.vcf.gz"), (targets21, "chr21.vcf.gz")];
    let files: Vec<(&Path, &str)> = files.iter().map(|(p, n)| (p.as_path(), *n)).collect();
    let (status, job) =
        submit(&node, &token, &files, &[("panel", "two"), ("build", "hg19"), ("engine", "beagle")]).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap();
    let done = wait_state(&node, &token, id, &["completed", "failed"], Duration::from_secs(600)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["qc_report"]["chunks"].as_array().unwrap().len(), 8, "{done}");

    // The chromosomes' chunks share the slots: the second chromosome's first chunk started
    // while the first chromosome still had a chunk running.
    let events = node.client().get(node.api(&format!("/jobs/{id}/events"))).bearer_auth(&token).send().await;
    let events = events.unwrap().text().await.unwrap();
    let at = |message: &str| events.find(message).unwrap_or_else(|| panic!("no {message:?} in\n{events}"));
    let last_of_20 = (61..=64).map(|k| at(&format!("chunk chr20.chunk{k}: done"))).max().unwrap();
    assert!(at("chunk chr21.chunk61: running") < last_of_20, "{events}");
    for chrom in ["20", "21"] {
        let dose = dir.path().join(format!("chr{chrom}.dose.vcf.gz"));
        download(&node, &token, id, &format!("chr{chrom}.dose.vcf.gz"), &dose).await;
        let sites = sites(&dose);
        assert_eq!(sites.len(), 19_525, "chr{chrom}: every panel site once");
        assert!(sites.iter().all(|s| s.starts_with(&format!("{chrom} "))), "chr{chrom} holds only its own sites");
    }
}
