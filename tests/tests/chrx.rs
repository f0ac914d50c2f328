//! chrX with males and females (scripts/chrx_data.py): a job completes on both engines, males
//! stay haploid and females diploid in the output, and an input that mixes a male's ploidy past
//! the threshold is refused naming him.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fedimpute_tests::jobs::*;
use fedimpute_tests::{TestNode, install_crypto_provider, workspace_root};
use reqwest::StatusCode;

fn chrx_data(dir: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .arg(workspace_root().join("scripts/chrx_data.py"))
        .arg("--data")
        .arg(fedimpute_tests::test_data(""))
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(dir.join("males.txt")).unwrap().lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chrx_job_with_males_and_females_keeps_males_haploid_on_both_engines() {
    install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let males = chrx_data(dir.path());
    let mut node = TestNode::init("Inst A").unwrap();
    panel_add(&node, "simx", &[&dir.path().join("panel.vcf.gz")], &[]);
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();

    let mixed = dir.path().join("targets_mixed.vcf.gz");
    let (status, body) =
        submit(&node, &token, &[(&mixed, "mixed.vcf.gz")], &[("panel", "simx"), ("build", "hg19")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("mix haploid and diploid") && message.contains(&males[0]), "{message}");

    let targets = dir.path().join("targets.vcf.gz");
    for engine in ["beagle", "minimac4"] {
        let fields = [("panel", "simx"), ("build", "hg19"), ("engine", engine)];
        let (status, job) = submit(&node, &token, &[(&targets, "x.vcf.gz")], &fields).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        let id = job["id"].as_str().unwrap().to_string();
        let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(300)).await;
        assert_eq!(done["state"], "completed", "{engine}: {done}");
        let x = &done["qc_report"]["chrx"];
        assert_eq!((x["males"].as_u64(), x["females"].as_u64()), (Some(50), Some(50)), "{engine}: {x}");
        let dose = dir.path().join(format!("{engine}.chrX.dose.vcf.gz"));
        download(&node, &token, &id, "chrX.dose.vcf.gz", &dose).await;
        let header = Command::new("bcftools").args(["query", "-l"]).arg(&dose).output().unwrap();
        let samples: Vec<String> = String::from_utf8(header.stdout).unwrap().lines().map(String::from).collect();
        let body = vcf_body(&dose);
        assert!(body.len() > 19_000, "{engine}: {} records", body.len());
        for line in body.iter().step_by(500) {
            for (sample, field) in samples.iter().zip(line.split('\t').skip(9)) {
                let gt = field.split(':').next().unwrap();
                let haploid = !gt.contains('|') && !gt.contains('/');
                assert_eq!(haploid, males.contains(sample), "{engine}: {sample} has GT {gt}");
            }
        }
    }
}
