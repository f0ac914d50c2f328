//! Helpers for tests that run imputation jobs: panels, submissions, waiting, downloads, and
//! looking for engine processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::{TestNode, fedimpute, install_crypto_provider, test_data, wait_for};

/// A running node hosting the committed test panel as `sim`.
pub async fn node_with_panel() -> TestNode {
    node_with_panel_and_config(|config| config).await
}

/// Like [`node_with_panel`], with node.toml edited by `edit` before the node starts.
pub async fn node_with_panel_and_config(edit: impl FnOnce(String) -> String) -> TestNode {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    add_panel(&node, "sim");
    edit_config(&node, edit);
    node.start().await.unwrap();
    node
}

/// Registers the committed test panel (hg19, chromosome 20) as `id` with `fedimpute panel add`.
pub fn add_panel(node: &TestNode, id: &str) {
    add_panel_file(node, id, &test_data("panel.vcf.gz"));
}

/// Registers `vcf` (an hg19 chromosome 20 panel) as `id`, with the committed genetic map.
pub fn add_panel_file(node: &TestNode, id: &str, vcf: &Path) {
    let map = test_data("map.txt");
    panel_add(node, id, &[vcf], &["--population", "AFR", "--map", map.to_str().unwrap()]);
}

/// `fedimpute panel add` of the hg19 panel files `vcfs` as `id`, with `extra` arguments; asserts
/// it succeeded and returns what it printed on stderr (its steps and registration reports).
pub fn panel_add(node: &TestNode, id: &str, vcfs: &[&Path], extra: &[&str]) -> String {
    let config = node.config_arg();
    let mut args = vec!["panel", "add", "--config", &config, "--id", id, "--name", id, "--build", "hg19"];
    for vcf in vcfs {
        args.extend(["--vcf", vcf.to_str().unwrap()]);
    }
    args.extend(extra);
    let out = fedimpute(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "panel add {id}: {stderr}");
    stderr
}

/// Rewrites the node's node.toml with `edit` (the node must not be running).
pub fn edit_config(node: &TestNode, edit: impl FnOnce(String) -> String) {
    let config = node.config_path();
    std::fs::write(&config, edit(std::fs::read_to_string(&config).unwrap())).unwrap();
}

/// Replaces a setting `init` writes, failing loudly if it is not there.
pub fn set(config: String, from: &str, to: &str) -> String {
    assert!(config.contains(from), "{from:?} not in node.toml:\n{config}");
    config.replace(from, to)
}

pub async fn submit(
    node: &TestNode,
    token: &str,
    files: &[(&Path, &str)],
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = Form::new();
    for (path, name) in files {
        let part = Part::bytes(std::fs::read(path).unwrap()).file_name(name.to_string());
        form = form.part("files", part);
    }
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    let resp = node.client().post(node.api("/jobs")).bearer_auth(token).multipart(form).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Submits the committed sample VCF (as `targets.vcf.gz`) with `fields`, asserts the node
/// accepted it, and returns the job id.
pub async fn submit_targets(node: &TestNode, token: &str, fields: &[(&str, &str)]) -> String {
    let (status, job) = submit(node, token, &[(&test_data("targets.vcf.gz"), "targets.vcf.gz")], fields).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    job["id"].as_str().unwrap().to_string()
}

/// The job once its origin has chosen a host (the origin chooses after the submission is
/// answered, when it forwards the job).
pub async fn wait_host_chosen(node: &TestNode, token: &str, id: &str) -> Value {
    wait_for(&format!("job {id} to have a host"), Duration::from_secs(60), || async {
        let (_, job) = node.get(&format!("/jobs/{id}"), token).await?;
        Ok(job["peer"].is_string())
    })
    .await
    .unwrap();
    node.get(&format!("/jobs/{id}"), token).await.unwrap().1
}

pub async fn wait_state(node: &TestNode, token: &str, id: &str, states: &[&str], timeout: Duration) -> Value {
    let result = wait_for(&format!("job {id} to reach {states:?}"), timeout, || async {
        let (_, job) = node.get(&format!("/jobs/{id}"), token).await?;
        Ok(states.iter().any(|s| job["state"] == *s))
    })
    .await;
    let (_, last) = node.get(&format!("/jobs/{id}"), token).await.unwrap();
    if let Err(e) = result {
        panic!("{e}; last seen: {last}\nnode log:\n{}", node.log());
    }
    last
}

pub async fn download(node: &TestNode, token: &str, id: &str, file: &str, to: &Path) {
    let bytes =
        node.client().get(node.api(&format!("/jobs/{id}/results/{file}"))).bearer_auth(token).send().await.unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    std::fs::write(to, bytes.bytes().await.unwrap()).unwrap();
}

/// scripts/accuracy.py's scores of `imputed` against the committed truth (JSON, per MAF bin
/// and `all`).
pub fn accuracy(imputed: &Path) -> Value {
    accuracy_against(imputed, &test_data("truth.vcf.gz"), &test_data("targets.vcf.gz"), &test_data("panel.vcf.gz"))
}

/// scripts/accuracy.py's scores of `imputed` against `truth` at the sites `targets` lacks, by the
/// MAF bins of `panel`.
pub fn accuracy_against(imputed: &Path, truth: &Path, targets: &Path, panel: &Path) -> Value {
    let out = Command::new("python3")
        .arg(crate::workspace_root().join("scripts/accuracy.py"))
        .args(["--json", "--imputed"])
        .arg(imputed)
        .arg("--truth")
        .arg(truth)
        .arg("--targets")
        .arg(targets)
        .arg("--panel")
        .arg(panel)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// scripts/accuracy.py's aggregate dosage r2 at MAF > 5%.
pub fn r2_common(imputed: &Path) -> f64 {
    accuracy(imputed)[">5%"]["r2"].as_f64().unwrap()
}

/// scripts/accuracy.py's aggregate dosage r2 over every masked site.
pub fn r2_all(imputed: &Path) -> f64 {
    accuracy(imputed)["all"]["r2"].as_f64().unwrap()
}

/// The VCF body (no `##` header lines, which carry dates and command lines).
pub fn vcf_body(path: &Path) -> Vec<String> {
    let out = Command::new("bcftools").args(["view", "-H"]).arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Engine processes (java for Beagle, minimac4) that are children of `pid`.
pub fn engine_children(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let ppid: u32 = stat[close + 2..].split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == pid && (comm == "java" || comm == "minimac4") {
            out.push(format!("{comm} {}", entry.file_name().to_string_lossy()));
        }
    }
    out
}

/// Java processes whose command line mentions `needle` (any parent).
pub fn engines_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
        .count()
}

/// Checks a completed job's result files for `chrom` (e.g. `chr20`) have the layout researchers'
/// scripts read: an indexed dose VCF (`tabix -l` lists the chromosome) with provenance lines,
/// and `<chrom>.info.gz` with Michigan's columns whose Rsq is the dose VCF's `rsq_tag`
/// (`DR2` or `R2`), row for row. Returns the info rows (without the header).
pub async fn check_result_layout(
    node: &TestNode,
    token: &str,
    id: &str,
    dir: &Path,
    prefix: &str,
    rsq_tag: &str,
) -> Vec<Vec<String>> {
    let dose = dir.join(format!("{prefix}.dose.vcf.gz"));
    download(node, token, id, &format!("{prefix}.dose.vcf.gz"), &dose).await;
    download(node, token, id, &format!("{prefix}.dose.vcf.gz.tbi"), &dir.join(format!("{prefix}.dose.vcf.gz.tbi")))
        .await;
    let listed = Command::new("tabix").arg("-l").arg(&dose).output().unwrap();
    assert!(listed.status.success(), "tabix -l: {}", String::from_utf8_lossy(&listed.stderr));
    assert!(!String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "the index lists no chromosome");
    let header = Command::new("bcftools").args(["view", "-h"]).arg(&dose).output().unwrap();
    let header = String::from_utf8(header.stdout).unwrap();
    for key in ["version", "job", "panel", "panel_host", "engine", "phasing", "r2_filter"] {
        assert!(header.contains(&format!("##fedimpute_{key}=")), "no {key} provenance line in\n{header}");
    }
    assert!(header.contains(&format!("##fedimpute_job={id}")), "{header}");
    let page = dir.join("report.html");
    download(node, token, id, "report.html", &page).await;
    let page = std::fs::read_to_string(&page).unwrap();
    for section in ["Input QC", "Allele frequencies against the panel", "Mean estimated r2", "Per chromosome", prefix] {
        assert!(page.contains(section), "report.html has no {section:?}");
    }

    let info = dir.join(format!("{prefix}.info.gz"));
    download(node, token, id, &format!("{prefix}.info.gz"), &info).await;
    let text = Command::new("bgzip").arg("-dc").arg(&info).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("SNP\tREF(0)\tALT(1)\tALT_Frq\tMAF\tAvgCall\tRsq\tGenotyped\tLooRsq\tEmpR\tEmpRsq\tDose0\tDose1")
    );
    let rows: Vec<Vec<String>> = lines.map(|l| l.split('\t').map(String::from).collect()).collect();
    let query = Command::new("bcftools")
        .args(["query", "-f", &format!("%CHROM:%POS:%REF:%ALT\\t%INFO/{rsq_tag}\\n")])
        .arg(&dose)
        .output()
        .unwrap();
    let expected: Vec<(String, String)> = String::from_utf8(query.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (snp, rsq) = l.split_once('\t').unwrap();
            (snp.to_string(), rsq.to_string())
        })
        .collect();
    assert_eq!(rows.len(), expected.len(), "one info row per dose record");
    for (row, (snp, rsq)) in rows.iter().zip(&expected) {
        assert_eq!(row.len(), 13, "{row:?}");
        assert_eq!(
            (&row[0], row[6].parse::<f64>().ok()),
            (snp, rsq.parse::<f64>().ok()),
            "Rsq is the engine's {rsq_tag}"
        );
    }
    rows
}
