//! The researcher's command line through a saved profile: `fedimpute login` pins the node's
//! self-signed certificate, then every researcher command works with no `--node`, `--token` or
//! `--ca-cert`, `--json` prints one parsable document, and `fedimpute logout` revokes the token.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use fedimpute_tests::jobs::{node_with_panel_and_config, set, wait_state};
use fedimpute_tests::{CHANGED_PASSWORD, TestNode, fedimpute_bin, test_data};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Runs `fedimpute ARGS` as a researcher on their own machine: their home folder, `stdin` on
/// standard input, and nothing of the node in the environment.
fn researcher(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(fedimpute_bin())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("FEDIMPUTE_NODE")
        .env_remove("FEDIMPUTE_TOKEN")
        .env_remove("FEDIMPUTE_CA_CERT")
        .env_remove("FEDIMPUTE_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running fedimpute");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("writing stdin");
    child.wait_with_output().expect("waiting for fedimpute")
}

/// The one JSON document on stdout (the test fails if there is anything else).
fn json_out(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The SHA-256 of the node's certificate, read from its PEM file here (not by the node's code).
fn certificate_fingerprint(node: &TestNode) -> String {
    let pem = std::fs::read_to_string(node.data_dir().join("tls/api.crt")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A researcher account with [`CHANGED_PASSWORD`].
async fn researcher_account(node: &TestNode, name: &str) {
    let admin = node.admin_token().await.unwrap();
    let (_, user) =
        node.send(Method::POST, "/users", &admin, &json!({ "username": name, "role": "researcher" })).await.unwrap();
    node.first_login(name, user["generated_password"].as_str().unwrap()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_researcher_logs_in_once_and_works_through_the_profile_alone() {
    // A node that keeps inputs after a job ends, so a cancelled job can be retried.
    let node =
        node_with_panel_and_config(|c| set(c, "delete_inputs_when_done = true", "delete_inputs_when_done = false"))
            .await;
    researcher_account(&node, "ada").await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let base = node.base_url();
    let fingerprint = certificate_fingerprint(&node);
    let profiles = home.join(".config/fedimpute/profiles.toml");
    let password = format!("{CHANGED_PASSWORD}\n");
    let login = ["login", "--node", base.as_str(), "--user", "ada", "--password-file", "-"];

    // Not on a terminal, a certificate no authority signed is not accepted unasked: the login
    // stops before sending the password, and shows the fingerprint to check.
    let out = researcher(home, &login, &password);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&fingerprint), "{}", stderr(&out));
    assert!(!profiles.exists());
    // A fingerprint that is not the node's (someone in between) is refused too.
    let wrong = "AB:".repeat(31) + "AB";
    let out = researcher(home, &[&login[..], &["--fingerprint", &wrong]].concat(), &password);
    assert!(!out.status.success() && stderr(&out).contains("someone may be between"), "{}", stderr(&out));
    assert!(!profiles.exists());

    let lower = fingerprint.to_lowercase().replace(':', "");
    let out = researcher(home, &[&login[..], &["--fingerprint", &lower, "--json"]].concat(), &password);
    assert!(out.status.success(), "{}", stderr(&out));
    let logged_in = json_out(&out);
    assert_eq!(logged_in["node"], base.as_str());
    assert_eq!(logged_in["cert_sha256"], fingerprint.as_str(), "{logged_in}");
    assert!(logged_in.get("token").is_none(), "the token is never printed");
    let mode = std::fs::metadata(&profiles).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profiles file holds a token");
    let saved = std::fs::read_to_string(&profiles).unwrap();
    assert!(saved.contains("fit_"), "{saved}");
    let token = saved.lines().find_map(|l| l.strip_prefix("token = \"")).unwrap().trim_end_matches('"').to_string();

    // The federation catalog (of this lone node: empty; tests/tests/panels.rs has a full one),
    // through the profile alone.
    let out = researcher(home, &["panels", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out), json!([]));
    let out = researcher(home, &["panels"], "");
    assert!(out.status.success() && stderr(&out).contains("no panel"), "{}", stderr(&out));

    // Submit, wait and download in one command; the JSON is the ended job with its download.
    let targets = test_data("targets.vcf.gz");
    let results = tempfile::tempdir().unwrap();
    let submit = [
        "job",
        "submit",
        "--panel",
        "sim",
        "--build",
        "hg19",
        "--mode",
        "qc_only",
        "--name",
        "profile run",
        "--wait",
        "--download",
        results.path().to_str().unwrap(),
        "--json",
        targets.to_str().unwrap(),
    ];
    let out = researcher(home, &submit, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let job = json_out(&out);
    assert_eq!(job["state"], "completed", "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let files = job["download"]["files"].as_array().unwrap();
    let report = files.iter().find(|f| f["name"] == "qc_report.txt").expect("the QC report is downloaded");
    assert_eq!(report["fetched"], "downloaded");
    assert_eq!(report["bytes_transferred"], report["size"]);
    assert!(results.path().join("qc_report.txt").exists());
    // Not on a terminal: the job's course as lines on stderr, stdout kept for the JSON.
    assert!(stderr(&out).lines().any(|l| l.starts_with("completed")), "{}", stderr(&out));

    let out = researcher(home, &["job", "status", &id, "--json"], "");
    assert_eq!(json_out(&out)["name"], "profile run");
    let out = researcher(home, &["job", "list", "--json"], "");
    assert!(json_out(&out).as_array().unwrap().iter().any(|j| j["id"] == id.as_str()));
    let out = researcher(home, &["job", "list"], "");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("completed") && row.contains("profile run"), "{table}");

    // An interrupted download resumes: only the missing half crosses the network.
    let whole = std::fs::read(results.path().join("qc_report.txt")).unwrap();
    std::fs::remove_file(results.path().join("qc_report.txt")).unwrap();
    std::fs::write(results.path().join(".qc_report.txt.part"), &whole[..whole.len() / 2]).unwrap();
    let out = researcher(home, &["job", "download", &id, "--out", results.path().to_str().unwrap(), "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json_out(&out);
    let report = summary["files"].as_array().unwrap().iter().find(|f| f["name"] == "qc_report.txt").unwrap();
    assert_eq!(report["fetched"], "resumed", "{summary}");
    assert_eq!(report["resumed_from"], whole.len() / 2);
    assert_eq!(report["bytes_transferred"], whole.len() - whole.len() / 2);
    assert_eq!(std::fs::read(results.path().join("qc_report.txt")).unwrap(), whole);
    assert!(summary["files"].as_array().unwrap().iter().any(|f| f["fetched"] == "already_here"));

    // Cancel a running job, then retry it to completion.
    let out = researcher(home, &["job", "submit", "--panel", "sim", "--build", "hg19", targets.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let running = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = researcher(home, &["job", "cancel", &running, "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let admin = node.admin_token().await.unwrap();
    wait_state(&node, &admin, &running, &["cancelled"], Duration::from_secs(60)).await;
    let out = researcher(home, &["job", "retry", &running, "--wait", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let retried = json_out(&out);
    assert_eq!(retried["state"], "completed", "{retried}");
    assert!(stderr(&out).lines().any(|l| l.starts_with("running")), "{}", stderr(&out));
    // Following an ended job replays its course on stderr and ends with its state.
    let out = researcher(home, &["job", "watch", &running, "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out)["state"], "completed");
    let course: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap().lines().collect();
    assert!(course.iter().any(|l| l.starts_with("queued")) && course.last().unwrap().starts_with("completed"));
    // Password-protected archives of its results: the password is in the JSON, once.
    let out = researcher(home, &["job", "archive", &running, "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let made = json_out(&out);
    assert!(made["password"].as_str().is_some_and(|p| p.len() >= 12), "{made}");
    assert!(made["archives"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().ends_with(".zip")), "{made}");
    // A completed job cannot be retried: refused, exit code 3, the reason as JSON.
    let out = researcher(home, &["job", "retry", &running, "--json"], "");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(json_out(&out)["error"]["http_status"], 409, "{}", json_out(&out));

    // The profile's token goes only to the profile's node.
    let elsewhere = "https://127.0.0.1:9";
    let out = researcher(home, &["job", "list", "--node", elsewhere], "");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no token for"), "{}", stderr(&out));

    // A node presenting another certificate than the pinned one is not talked to.
    let edited = saved.replace(&fingerprint, &wrong);
    std::fs::write(&profiles, edited).unwrap();
    let out = researcher(home, &["job", "list"], "");
    assert!(!out.status.success() && stderr(&out).contains("certificate changed"), "{}", stderr(&out));
    std::fs::write(&profiles, &saved).unwrap();

    // Logout revokes the token at the node and forgets the profile.
    let out = researcher(home, &["logout", "--json"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_out(&out)["token_revoked"], true);
    assert_eq!(node.get("/jobs", &token).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert!(!std::fs::read_to_string(&profiles).unwrap().contains("fit_"));
    let out = researcher(home, &["job", "list"], "");
    assert_eq!(out.status.code(), Some(2), "no profile, no node: {}", stderr(&out));
}
