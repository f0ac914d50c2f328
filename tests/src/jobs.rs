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
    let out = fedimpute(&[
        "panel",
        "add",
        "--config",
        &node.config_arg(),
        "--id",
        id,
        "--name",
        "Simulated",
        "--build",
        "hg19",
        "--population",
        "AFR",
        "--vcf",
        vcf.to_str().unwrap(),
        "--map",
        test_data("map.txt").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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

/// scripts/accuracy.py's aggregate dosage r2 at MAF > 5%.
pub fn r2_common(imputed: &Path) -> f64 {
    let out = Command::new("python3")
        .arg(crate::workspace_root().join("scripts/accuracy.py"))
        .args(["--json", "--imputed"])
        .arg(imputed)
        .arg("--truth")
        .arg(test_data("truth.vcf.gz"))
        .arg("--targets")
        .arg(test_data("targets.vcf.gz"))
        .arg("--panel")
        .arg(test_data("panel.vcf.gz"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[">5%"]["r2"].as_f64().unwrap()
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
