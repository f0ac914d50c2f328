//! `fedimpute backup` of a running node and `fedimpute restore` into an empty folder: the
//! restored node keeps its identity, users, jobs and their files, and an audit chain that
//! verifies; an archive altered after the backup is refused and leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use fedimpute_tests::jobs::{download, node_with_panel_and_config, set, submit_targets, wait_state};
use fedimpute_tests::{TestNode, fedimpute};
use reqwest::Method;
use serde_json::{Value, json};

const PARAMS: [(&str, &str); 3] = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle")];

/// (id, state) of every job the admin sees, sorted by id.
async fn jobs(node: &TestNode, token: &str) -> Vec<(String, String)> {
    sorted_pairs(&node.get("/jobs?limit=1000", token).await.unwrap().1, "id", "state")
}

/// (username, role) of every user, sorted.
async fn users(node: &TestNode, token: &str) -> Vec<(String, String)> {
    sorted_pairs(&node.get("/users", token).await.unwrap().1, "username", "role")
}

/// The `first` and `second` fields of every object in `list`, sorted.
fn sorted_pairs(list: &Value, first: &str, second: &str) -> Vec<(String, String)> {
    let field = |item: &Value, key: &str| item[key].as_str().unwrap().to_string();
    let mut out: Vec<(String, String)> =
        list.as_array().unwrap().iter().map(|item| (field(item, first), field(item, second))).collect();
    out.sort();
    out
}

fn backup(node: &TestNode, out: &Path) -> Value {
    let out = fedimpute(&["backup", "--config", &node.config_arg(), "--out", out.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_made_while_a_job_runs_restores_into_an_empty_folder_with_identity_users_jobs_and_audit() {
    // Java is slow to start while `slow` exists, so the second job is still running when the
    // backup is made; the first runs at full speed and leaves results to be backed up.
    let tools = tempfile::tempdir().unwrap();
    let marker = tools.path().join("slow");
    let java = tools.path().join("java");
    std::fs::write(&java, format!("#!/bin/sh\n[ -e {} ] && sleep 20\nexec java \"$@\"\n", marker.display())).unwrap();
    std::fs::set_permissions(&java, std::fs::Permissions::from_mode(0o755)).unwrap();
    let java_line = format!("java = \"{}\"", java.display());
    let mut node = node_with_panel_and_config(|c| set(c, "java = \"java\"", &java_line)).await;
    let admin = node.admin_token().await.unwrap();
    let (status, body) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "rita", "role": "researcher"})).await.unwrap();
    assert!(status.is_success(), "{body}");

    let finished = submit_targets(&node, &admin, &PARAMS).await;
    wait_state(&node, &admin, &finished, &["completed"], Duration::from_secs(300)).await;
    std::fs::write(&marker, "").unwrap();
    let running = submit_targets(&node, &admin, &PARAMS).await;
    wait_state(&node, &admin, &running, &["running"], Duration::from_secs(60)).await;

    let out_dir = tempfile::tempdir().unwrap();
    let archive = out_dir.path().join("node-a.tar");
    let report = backup(&node, &archive);
    assert_eq!(report["manifest"]["peer_id"], node.peer_id());
    assert_eq!(std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777, 0o600, "the archive holds keys");
    let again = fedimpute(&["backup", "--config", &node.config_arg(), "--out", archive.to_str().unwrap()]);
    assert!(!again.status.success(), "an existing backup is not overwritten");

    let (users_before, jobs_before) = (users(&node, &admin).await, jobs(&node, &admin).await);
    assert!(jobs_before.contains(&(running.clone(), "running".into())), "{jobs_before:?}");
    let (_, result_files) = node.get(&format!("/jobs/{finished}/results"), &admin).await.unwrap();
    let mut reference = None;
    for file in result_files.as_array().unwrap() {
        if file["name"] == "chr20.dose.vcf.gz" {
            let to = out_dir.path().join("before.vcf.gz");
            download(&node, &admin, &finished, "chr20.dose.vcf.gz", &to).await;
            reference = Some(std::fs::read(&to).unwrap());
        }
    }
    let reference = reference.expect("the finished job has a dose file");
    assert_eq!(node.audit("node.backup").await.unwrap().len(), 1, "the node records that it was backed up");
    assert_eq!(node.stop_with(libc::SIGTERM).unwrap().code(), Some(0));
    std::fs::remove_file(&marker).unwrap();

    let mut restored = node.restored_from(&archive).unwrap();
    assert_eq!(restored.peer_id(), node.peer_id(), "the restored node keeps its identity");
    // The old folder goes: nothing of the restored node may still point into it.
    drop(node);
    let verify = fedimpute(&["audit", "verify", "--config", &restored.config_arg()]);
    assert!(verify.status.success(), "audit verify: {}", String::from_utf8_lossy(&verify.stdout));
    restored.start().await.unwrap();

    let admin = restored.admin_token().await.unwrap();
    assert_eq!(users(&restored, &admin).await, users_before);
    let ids = |jobs: &[(String, String)]| jobs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&jobs(&restored, &admin).await), ids(&jobs_before));
    let to = out_dir.path().join("after.vcf.gz");
    download(&restored, &admin, &finished, "chr20.dose.vcf.gz", &to).await;
    assert!(std::fs::read(&to).unwrap() == reference, "the finished job's results came back byte for byte");
    // The job that was running when the backup was made runs again from its saved input.
    wait_state(&restored, &admin, &running, &["completed"], Duration::from_secs(300)).await;
    let restores = restored.audit("node.restore").await.unwrap();
    assert_eq!(restores.len(), 1, "{restores:?}");
}

/// Rewrites the archive at `from` into `to` with `edit` applied to the content of the entry
/// named `name`, keeping every other entry (and the recorded checksums) as they were.
fn repack(from: &Path, to: &Path, name: &str, edit: impl Fn(Vec<u8>) -> Vec<u8>) {
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut output = tar::Builder::new(std::fs::File::create(to).unwrap());
    let mut found = false;
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        if path == name {
            content = edit(content);
            found = true;
        }
        let mut header = entry.header().clone();
        header.set_size(content.len() as u64);
        header.set_cksum();
        output.append(&header, content.as_slice()).unwrap();
    }
    output.finish().unwrap();
    assert!(found, "{name} is not in the archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_altered_after_the_backup_is_refused_and_leaves_the_folder_empty() {
    fedimpute_tests::install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("backup.tar");
    backup(&node, &archive);
    node.stop_with(libc::SIGTERM).unwrap();

    // Someone with the archive points the restored node's config somewhere else.
    let altered = dir.path().join("altered.tar");
    repack(&archive, &altered, "node.toml", |config| {
        String::from_utf8(config).unwrap().replace("Inst A", "Inst Z").into_bytes()
    });
    let target = dir.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    let out = fedimpute(&["restore", "--from", altered.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("altered"), "{stderr}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0, "a refused restore leaves the folder empty");

    // The untouched archive restores, but only into an empty folder.
    std::fs::write(target.join("something"), "x").unwrap();
    let out = fedimpute(&["restore", "--from", archive.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
    assert!(!out.status.success(), "a folder with files in it is refused");
    assert!(target.join("something").exists(), "and what was there is left alone");
    std::fs::remove_file(target.join("something")).unwrap();
    let out = fedimpute(&["restore", "--from", archive.to_str().unwrap(), "--data-dir", target.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(target.join("node.toml")).unwrap().contains("Inst A"));
}
