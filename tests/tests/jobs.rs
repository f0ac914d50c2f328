//! Imputation jobs through a real node's API, with the real engines: results scored against
//! the truth, identical to a direct engine run, refusals that leave nothing behind, cancel,
//! and a node killed mid-run that finishes the job after a restart, followed by `job watch`
//! throughout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fedimpute_tests::jobs::*;
use fedimpute_tests::{ADMIN_PASSWORD, fedimpute, test_data, wait_for};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beagle_job_is_accurate_and_identical_to_a_direct_beagle_run() {
    let node = node_with_panel().await;
    let token = node.admin_token().await.unwrap();
    let id = submit_targets(&node, &token, &[("panel", "sim"), ("build", "hg19"), ("engine", "beagle")]).await;
    let id = id.as_str();
    let done = wait_state(&node, &token, id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["qc_report"]["status"], "passed");
    assert!(done["summary"]["variants_imputed"].as_u64().unwrap() > 19_000, "{done}");

    let dir = tempfile::tempdir().unwrap();
    let dose = dir.path().join("chr20.dose.vcf.gz");
    download(&node, &token, id, "chr20.dose.vcf.gz", &dose).await;
    let body = vcf_body(&dose);
    assert_eq!(body.len(), 19_525, "every panel site is in the output");
    assert!(body[0].contains("GT:DS:GP"), "{}", body[0]);
    let r2 = r2_common(&dose);
    assert!(r2 >= 0.95, "dosage r2 at MAF > 5% is {r2}");

    // The same command run directly on the same files gives the same calls.
    let bref3 = node.data_dir().join("panels/sim/20.bref3");
    let direct = dir.path().join("direct");
    let status = Command::new("java")
        .args(["-Xmx2g", "-jar", "/usr/share/beagle/beagle.jar"])
        .arg(format!("ref={}", bref3.display()))
        .arg(format!("gt={}", test_data("targets.vcf.gz").display()))
        .arg(format!("out={}", direct.display()))
        .args(["nthreads=2", "seed=-99999", "impute=true", "gp=true"])
        .arg(format!("map={}", test_data("map.txt").display()))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(vcf_body(&dir.path().join("direct.vcf.gz")) == body, "the node's Beagle output differs from a direct run");

    // Results as researchers' scripts read them; typed and imputed counted apart.
    let rows = check_result_layout(&node, &token, id, dir.path(), "chr20", "DR2").await;
    let typed = rows.iter().filter(|r| r[7] == "Genotyped").count() as u64;
    assert_eq!(typed, 345, "the array's 345 sites are genotyped");
    assert_eq!(done["summary"]["variants_typed"].as_u64(), Some(typed), "{done}");
    assert_eq!(done["summary"]["variants_imputed"].as_u64(), Some(19_525 - typed), "{done}");
    let raw = node.client().get(node.api(&format!("/jobs/{id}"))).bearer_auth(&token).send().await.unwrap();
    let raw = raw.text().await.unwrap();
    let at = |bin: &str| raw.find(&format!("\"{bin}\"")).unwrap_or_else(|| panic!("no {bin} bin in {raw}"));
    assert!(at("<1%") < at("1-5%") && at("1-5%") < at(">5%"), "MAF bins in order: {raw}");

    // Range requests are served.
    let partial = node
        .client()
        .get(node.api(&format!("/jobs/{id}/results/chr20.info.gz")))
        .bearer_auth(&token)
        .header("range", "bytes=0-31")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(partial.bytes().await.unwrap().len(), 32);
    // A password-protected archive per chromosome, its password shown once and kept nowhere.
    let made = node.client().post(node.api(&format!("/jobs/{id}/archives"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    let password = made["password"].as_str().unwrap().to_string();
    assert_eq!(made["archives"], serde_json::json!(["chr20.zip"]));
    let zip_path = dir.path().join("chr20.zip");
    download(&node, &token, id, "chr20.zip", &zip_path).await;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    assert!(archive.by_name_decrypt("chr20.dose.vcf.gz", b"not the password").is_err());
    let mut inside = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name_decrypt("chr20.dose.vcf.gz", password.as_bytes()).unwrap(),
        &mut inside,
    )
    .unwrap();
    assert!(inside == std::fs::read(&dose).unwrap(), "the archive holds the dose VCF as served");
    assert!(archive.by_name_decrypt("chr20.info.gz", password.as_bytes()).is_ok());
    let audit = node.audit("job.archives_made").await.unwrap();
    assert_eq!(audit.len(), 1);
    let db = std::fs::read(node.db_path()).unwrap();
    assert!(!db.windows(password.len()).any(|w| w == password.as_bytes()), "the password is kept nowhere");
    // Inputs are deleted once the job is done; the deletion is audited.
    let audit = node.audit("job.").await.unwrap();
    assert!(audit.iter().any(|e| e["action"] == "job.inputs_deleted" && e["target"] == id));
    let left = walk(&node.data_dir().join("files"));
    assert!(left.is_empty(), "inputs left in the file store: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minimac4_job_is_accurate_and_streams_its_events() {
    let node = node_with_panel().await;
    let token = node.admin_token().await.unwrap();
    let (status, job) = submit(
        &node,
        &token,
        &[(&test_data("targets.vcf.gz"), "chip.vcf.gz")],
        &[("panel", "sim"), ("build", "hg19"), ("engine", "minimac4"), ("r2_filter", "0.001")],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();

    // Follow it live over SSE until it ends.
    let resp = node.client().get(node.api(&format!("/jobs/{id}/events"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(300), resp.text()).await.expect("event stream ended").unwrap();
    let states: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str::<Value>(d.trim()).unwrap()["state"].as_str().unwrap().to_string())
        .collect();
    assert!(states.contains(&"queued".into()) && states.contains(&"running".into()), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("completed"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let dose = dir.path().join("chr20.dose.vcf.gz");
    download(&node, &token, &id, "chr20.dose.vcf.gz", &dose).await;
    let r2 = r2_common(&dose);
    assert!(r2 >= 0.95, "Minimac4 dosage r2 at MAF > 5% is {r2}");

    // Minimac4's typed sites are counted (they were reported as 0) and keep its empirical r2.
    let rows = check_result_layout(&node, &token, &id, dir.path(), "chr20", "R2").await;
    let typed: Vec<&Vec<String>> = rows.iter().filter(|r| r[7] == "Genotyped").collect();
    assert!(typed.len() > 300, "{} typed sites", typed.len());
    assert!(typed.iter().all(|r| r[10].parse::<f64>().is_ok()), "EmpRsq is Minimac4's ER2 at typed sites");
    let (_, job) = node.get(&format!("/jobs/{id}"), &token).await.unwrap();
    assert_eq!(job["summary"]["variants_typed"].as_u64(), Some(typed.len() as u64), "{job}");
}

fn bgzip_text(dir: &Path, name: &str, text: &str) -> PathBuf {
    let plain = dir.join(name.trim_end_matches(".gz"));
    std::fs::write(&plain, text).unwrap();
    assert!(Command::new("bgzip").arg("-f").arg(&plain).status().unwrap().success());
    dir.join(name)
}

/// The committed targets, decompressed, for making broken variants of them.
fn targets_text() -> String {
    let out = Command::new("bgzip").args(["-dc"]).arg(test_data("targets.vcf.gz")).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_with_a_clear_message_and_leave_nothing() {
    // A small upload limit for the size test, a small storage quota for the quota test.
    let node = node_with_panel_and_config(|c| {
        let c = set(c, "max_upload_bytes = 4294967296", "max_upload_bytes = 200000");
        set(c, "max_stored_bytes_per_user = 53687091200", "max_stored_bytes_per_user = 160000")
    })
    .await;
    let token = node.admin_token().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let targets = targets_text();
    let (header, records): (Vec<&str>, Vec<&str>) = targets.lines().partition(|l| l.starts_with('#'));
    let header = header.join("\n") + "\n";

    let plain = dir.path().join("plain.vcf.gz");
    std::fs::write(&plain, &targets).unwrap();
    let mut two = records.clone();
    let moved = two.pop().unwrap().replacen("20\t", "21\t", 1);
    two.push(&moved);
    let two_chrom = bgzip_text(dir.path(), "two.vcf.gz", &(header.clone() + &two.join("\n") + "\n"));
    let mut unsorted = records.clone();
    unsorted.swap(10, 11);
    let unsorted = bgzip_text(dir.path(), "unsorted.vcf.gz", &(header.clone() + &unsorted.join("\n") + "\n"));
    let chr = targets
        .lines()
        .map(|l| if l.starts_with('#') { l.to_string() } else { format!("chr{l}") })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let chr = bgzip_text(dir.path(), "chr.vcf.gz", &chr.replace("##contig=<ID=20", "##contig=<ID=chr20"));
    let big = dir.path().join("big.vcf.gz");
    std::fs::write(&big, vec![b'x'; 300_000]).unwrap();

    let unknown = bgzip_text(
        dir.path(),
        "unknown.vcf.gz",
        &(header.clone()
            + &records.iter().map(|r| r.replacen("20\t", "chrUn_1\t", 1)).collect::<Vec<_>>().join("\n")
            + "\n"),
    );

    // Everyday problems are repaired by default (tests/tests/input_repair.rs); asked not to,
    // the node refuses them as it did before repairs existed.
    let fields = [("panel", "sim"), ("build", "hg19"), ("repair", "false")];
    for (path, name, status, expect) in [
        (&plain, "plain.vcf.gz", StatusCode::UNPROCESSABLE_ENTITY, "not compressed with bgzip"),
        (&two_chrom, "two.vcf.gz", StatusCode::UNPROCESSABLE_ENTITY, "second chromosome"),
        (&unsorted, "unsorted.vcf.gz", StatusCode::UNPROCESSABLE_ENTITY, "not sorted"),
        (&chr, "chr.vcf.gz", StatusCode::UNPROCESSABLE_ENTITY, "hg38-style"),
        (&big, "big.vcf.gz", StatusCode::PAYLOAD_TOO_LARGE, "larger than 200000 bytes"),
        (&test_data("targets.vcf.gz"), "../../etc/passwd", StatusCode::UNPROCESSABLE_ENTITY, "not a plain file name"),
    ] {
        let (got, body) = submit(&node, &token, &[(path, name)], &fields).await;
        assert_eq!(got, status, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expect), "{name}: {message}");
    }
    let (got, body) =
        submit(&node, &token, &[(&test_data("targets.vcf.gz"), "t.vcf.gz")], &[("panel", "nope"), ("build", "hg19")])
            .await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // What no repair can fix is refused with repair on too.
    let (got, body) =
        submit(&node, &token, &[(&unknown, "unknown.vcf.gz")], &[("panel", "sim"), ("build", "hg19")]).await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("not an autosome"), "{body}");

    // Files that each fit under the per-file limit but together exceed the user's storage quota
    // (160,000 bytes; the targets are 14,235 bytes, sent 12 times): refused, kept nowhere.
    let targets = test_data("targets.vcf.gz");
    let copies: Vec<(&Path, &str)> = (0..12).map(|_| (targets.as_path(), "t.vcf.gz")).collect();
    let (got, body) = submit(&node, &token, &copies, &fields).await;
    assert_eq!(got, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().contains("quota of 160000"), "{body}");

    // Nothing was kept: no stored file, no temporary, no job.
    let stored: Vec<_> = walk(&node.data_dir().join("files"));
    assert!(stored.is_empty(), "files left behind: {stored:?}");
    let (_, jobs) = node.get("/jobs", &token).await.unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 0);
    let denied = node.audit("job.submit").await.unwrap();
    let reasons: Vec<&str> =
        denied.iter().filter(|e| e["outcome"] == "denied").map(|e| e["details"].as_str().unwrap_or("")).collect();
    assert_eq!(reasons.len(), 9, "{reasons:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_engine() {
    let node = node_with_panel().await;
    let token = node.admin_token().await.unwrap();
    let (_, job) =
        submit(&node, &token, &[(&test_data("targets.vcf.gz"), "t.vcf.gz")], &[("panel", "sim"), ("build", "hg19")])
            .await;
    let id = job["id"].as_str().unwrap().to_string();
    let pid = node.pid().unwrap();
    wait_for("Beagle to start", Duration::from_secs(120), || async { Ok(!engine_children(pid).is_empty()) })
        .await
        .unwrap();
    let (status, body) =
        node.send(reqwest::Method::POST, &format!("/jobs/{id}/cancel"), &token, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "cancelled");
    wait_for("the engine to be gone", Duration::from_secs(20), || async { Ok(engine_children(pid).is_empty()) })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, job) = node.get(&format!("/jobs/{id}"), &token).await.unwrap();
    assert_eq!(job["state"], "cancelled", "a cancelled job must stay cancelled: {job}");
    let (status, _) =
        node.send(reqwest::Method::POST, &format!("/jobs/{id}/cancel"), &token, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_node_is_killed_mid_run_completes_after_restart() {
    // One API port across the restart, as a service has: the watch below reconnects to it.
    let api = format!("listen = \"127.0.0.1:{}\"", fedimpute_tests::free_port().unwrap());
    let mut node = node_with_panel_and_config(|c| set(c, "listen = \"127.0.0.1:0\"", &api)).await;
    let token = node.admin_token().await.unwrap();
    let (_, job) =
        submit(&node, &token, &[(&test_data("targets.vcf.gz"), "t.vcf.gz")], &[("panel", "sim"), ("build", "hg19")])
            .await;
    let id = job["id"].as_str().unwrap().to_string();
    // A researcher follows it from a script (stderr not a terminal) through the restart.
    let (_, api_token) = node.create_api_token(&token, ADMIN_PASSWORD, "watch", 1).await.unwrap();
    let watch_log = tempfile::NamedTempFile::new().unwrap();
    let cert = node.data_dir().join("tls/api.crt");
    let mut watch = Command::new(fedimpute_tests::fedimpute_bin())
        .args(["job", "watch", "--node", &node.base_url(), "--ca-cert", cert.to_str().unwrap(), &id])
        .env("FEDIMPUTE_TOKEN", api_token["token"].as_str().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(watch_log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = node.pid().unwrap();
    wait_for("Beagle to start", Duration::from_secs(120), || async { Ok(!engine_children(pid).is_empty()) })
        .await
        .unwrap();
    let job_dir = node.data_dir().join("jobs").join(&id).display().to_string();
    node.stop_with(libc::SIGKILL).unwrap();
    // The engine dies with the node (no orphan that could write the job's files twice).
    wait_for("the orphaned engine to die", Duration::from_secs(20), || async { Ok(engines_mentioning(&job_dir) == 0) })
        .await
        .unwrap();

    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();
    let done = wait_state(&node, &token, &id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let (_, events) = node.get(&format!("/jobs/{id}"), &token).await.unwrap();
    assert!(events["summary"]["variants_imputed"].as_u64().unwrap() > 19_000);
    let (_, results) = node.get(&format!("/jobs/{id}/results"), &token).await.unwrap();
    assert!(results.as_array().unwrap().iter().any(|r| r["name"] == "chr20.dose.vcf.gz"));

    // The watch reconnected after the restart (with Last-Event-ID: no event shown twice) and
    // saw the job complete; every line it printed is one the log of a script can keep.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = watch.kill();
            panic!("job watch did not end after the job did: {}", std::fs::read_to_string(watch_log.path()).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(watch_log.path()).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("reconnecting in"), "{log}");
    let starts_with = |prefix: &str| log.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(starts_with("validating"), 1, "the first event once, not replayed: {log}");
    assert!(starts_with("running") >= 2, "running before and after the restart: {log}");
    assert_eq!(starts_with("completed"), 1, "{log}");
    assert!(!log.contains('\r') && !log.contains("\u{1b}["), "no progress-bar drawing in a log: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qc_only_job_stops_after_qc_and_others_cannot_see_it() {
    let node = node_with_panel().await;
    let admin = node.admin_token().await.unwrap();
    let (_, rita) = node
        .send(reqwest::Method::POST, "/users", &admin, &serde_json::json!({"username": "rita", "role": "researcher"}))
        .await
        .unwrap();
    let rita = node.first_login("rita", rita["generated_password"].as_str().unwrap()).await.unwrap();
    let (_, viewer) = node
        .send(reqwest::Method::POST, "/users", &admin, &serde_json::json!({"username": "val", "role": "viewer"}))
        .await
        .unwrap();
    let viewer = node.first_login("val", viewer["generated_password"].as_str().unwrap()).await.unwrap();

    let (status, _) =
        submit(&node, &viewer, &[(&test_data("targets.vcf.gz"), "t.vcf.gz")], &[("panel", "sim"), ("build", "hg19")])
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers cannot submit");
    let id = submit_targets(&node, &rita, &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")]).await;
    let id = id.as_str();
    let done = wait_state(&node, &rita, id, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(done["qc_report"]["variants_total"], 345);
    assert!(done["summary"].is_null());
    let (_, results) = node.get(&format!("/jobs/{id}/results"), &rita).await.unwrap();
    let names: Vec<&str> = results.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["af_plot.svg", "excluded.tsv", "qc_report.json", "qc_report.txt", "report.html"]);
    // Another researcher's job is invisible to a viewer; the admin sees it.
    assert_eq!(node.get(&format!("/jobs/{id}"), &viewer).await.unwrap().0, StatusCode::NOT_FOUND);
    assert_eq!(node.get(&format!("/jobs/{id}"), &admin).await.unwrap().0, StatusCode::OK);
    assert_eq!(node.get("/jobs", &viewer).await.unwrap().1.as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_deleted_after_the_retention_period() {
    let node = node_with_panel_and_config(|c| {
        let c = set(c, "results_retention_days = 7", "results_retention_days = 0");
        set(c, "retention_sweep_secs = 3600", "retention_sweep_secs = 1")
    })
    .await;
    let token = node.admin_token().await.unwrap();
    let (_, job) = submit(
        &node,
        &token,
        &[(&test_data("targets.vcf.gz"), "t.vcf.gz")],
        &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")],
    )
    .await;
    let id = job["id"].as_str().unwrap().to_string();
    wait_state(&node, &token, &id, &["completed"], Duration::from_secs(120)).await;
    wait_for("the results to be deleted", Duration::from_secs(30), || async {
        Ok(node.audit("job.results_deleted").await?.iter().any(|e| e["target"] == id.as_str()))
    })
    .await
    .unwrap();
    let (_, results) = node.get(&format!("/jobs/{id}/results"), &token).await.unwrap();
    assert_eq!(results.as_array().unwrap().len(), 0);
    assert!(!node.data_dir().join("jobs").join(&id).exists());
    let resp = node
        .client()
        .get(node.api(&format!("/jobs/{id}/results/qc_report.txt")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_client_submits_follows_and_downloads() {
    let node = node_with_panel().await;
    let admin = node.admin_token().await.unwrap();
    let (_, token) = node.create_api_token(&admin, ADMIN_PASSWORD, "cli", 1).await.unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let cert = node.data_dir().join("tls/api.crt");
    let base = node.base_url();
    let node_args = ["--node", base.as_str(), "--token", token.as_str(), "--ca-cert", cert.to_str().unwrap()];
    let cli = |args: &[&str]| {
        let mut full: Vec<&str> = vec!["job"];
        full.extend_from_slice(&args[..1]);
        full.extend_from_slice(&node_args);
        full.extend_from_slice(&args[1..]);
        fedimpute(&full)
    };

    let out = tokio::task::spawn_blocking({
        let targets = test_data("targets.vcf.gz");
        let (b, t, c) = (base.clone(), token.clone(), cert.clone());
        move || {
            fedimpute(&[
                "job",
                "submit",
                "--node",
                &b,
                "--token",
                &t,
                "--ca-cert",
                c.to_str().unwrap(),
                "--panel",
                "sim",
                "--build",
                "hg19",
                "--mode",
                "qc_only",
                "--watch",
                targets.to_str().unwrap(),
            ])
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let id = stdout.lines().next().unwrap().trim().to_string();
    assert!(stdout.contains("state:    completed") && stdout.contains("QC:       passed"), "{stdout}");
    // Not on a terminal: the upload and the job's course as lines a script's log keeps.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("uploading targets.vcf.gz: 100% of"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("completed")), "{stderr}");

    let out = cli(&["status", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("completed"));
    let dir = tempfile::tempdir().unwrap();
    let out = cli(&["download", &id, "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("qc_report.txt: 100% of"));
    let report = std::fs::read_to_string(dir.path().join("qc_report.txt")).unwrap();
    assert!(report.contains("Input QC: PASSED"), "{report}");

    // An interrupted download resumes from its partial file (a Range request): a part that does
    // not match the file shows it was used, and is thrown away; a true part completes.
    let (report_path, part) = (dir.path().join("qc_report.txt"), dir.path().join(".qc_report.txt.part"));
    let whole = std::fs::read(&report_path).unwrap();
    std::fs::remove_file(&report_path).unwrap();
    std::fs::write(&part, vec![b'x'; whole.len() / 2]).unwrap();
    let out = cli(&["download", &id, "--out", dir.path().to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("does not match"));
    assert!(!part.exists(), "the bad part is gone");
    std::fs::write(&part, &whole[..whole.len() / 2]).unwrap();
    let out = cli(&["download", &id, "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&report_path).unwrap(), whole);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already here"), "files already complete are kept");

    // A job still running has no results to download: exit code 3, and nothing written.
    let running = submit_targets(&node, &admin, &[("panel", "sim"), ("build", "hg19"), ("engine", "beagle")]).await;
    let empty = tempfile::tempdir().unwrap();
    let out = cli(&["download", &running, "--out", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    // Exit codes a script can act on: 5 not found, 4 not allowed, 3 refused.
    let out = cli(&["status", "no-such-job"]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));
    let cert_arg = cert.to_str().unwrap();
    let out = fedimpute(&["job", "status", "--node", &base, "--token", "fit_not-a-token", "--ca-cert", cert_arg, &id]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let targets = test_data("targets.vcf.gz");
    let targets = targets.to_str().unwrap();
    let out = cli(&["submit", "--panel", "sim", "--build", "hg38", targets]);
    assert_eq!(out.status.code(), Some(3), "a refused submission: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_stopping_the_node_fails_after_its_attempts_instead_of_forever() {
    use std::os::unix::fs::PermissionsExt;
    // An engine that takes its node down with it (as an engine bug that exhausts the machine would).
    let dir = tempfile::tempdir().unwrap();
    let poison = dir.path().join("java");
    std::fs::write(&poison, "#!/bin/sh\nkill -9 \"$PPID\"\nexit 1\n").unwrap();
    std::fs::set_permissions(&poison, std::fs::Permissions::from_mode(0o755)).unwrap();
    let java = format!("java = \"{}\"", poison.display());
    let mut node =
        node_with_panel_and_config(|c| set(set(c, "java = \"java\"", &java), "max_attempts = 3", "max_attempts = 2"))
            .await;
    let token = node.admin_token().await.unwrap();
    let id = submit_targets(&node, &token, &[("panel", "sim"), ("build", "hg19"), ("engine", "beagle")]).await;
    // Each start runs the job again, and the job stops the node again (as a service manager
    // would, the test starts it again each time).
    for _ in 0..2 {
        let status = node.wait_exit(Duration::from_secs(120)).unwrap();
        assert!(!status.success(), "the poison engine should have killed the node");
        node.start().await.unwrap();
    }
    let token = node.admin_token().await.unwrap();
    let done = wait_state(&node, &token, &id, &["failed", "completed"], Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(done["error"].as_str().unwrap().contains("stopped 2 times"), "{done}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = node.get("/me", &token).await.unwrap();
    assert_eq!(status, StatusCode::OK, "the node stays up once it gave up on the job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_line_is_refused_with_its_line_number_without_holding_it_in_memory() {
    let node = node_with_panel().await;
    let token = node.admin_token().await.unwrap();
    let plain = Command::new("bgzip").arg("-dc").arg(test_data("targets.vcf.gz")).output().unwrap().stdout;
    let text = String::from_utf8(plain).unwrap();
    let header_end = text.find("\n#CHROM").unwrap() + 1;
    let first_record = header_end + text[header_end..].find('\n').unwrap() + 1;
    let huge = "x".repeat(100 << 20);
    let dir = tempfile::tempdir().unwrap();
    // A 100 MB line in the header (line 2), then in a record (the first, with its INFO padded):
    // the `##` lines, `#CHROM`, then it.
    let record_line = text[..header_end].lines().count() + 2;
    let record_tabs: Vec<&str> = text[first_record..].lines().next().unwrap().splitn(9, '\t').collect();
    let padded = format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\tPAD={huge}\t{}\n",
        record_tabs[0],
        record_tabs[1],
        record_tabs[2],
        record_tabs[3],
        record_tabs[4],
        record_tabs[5],
        record_tabs[6],
        record_tabs[8]
    );
    let cases = [
        (
            "header",
            format!(
                "{}##note={huge}\n{}",
                &text[..text.find('\n').unwrap() + 1],
                &text[text.find('\n').unwrap() + 1..]
            ),
            2,
        ),
        (
            "record",
            format!(
                "{}{padded}{}",
                &text[..first_record],
                &text[first_record + text[first_record..].find('\n').unwrap() + 1..]
            ),
            record_line,
        ),
    ];
    for (what, content, line) in cases {
        let path = dir.path().join(format!("{what}.vcf"));
        std::fs::write(&path, content).unwrap();
        assert!(Command::new("bgzip").arg("-f").arg(&path).status().unwrap().success());
        let gz = dir.path().join(format!("{what}.vcf.gz"));
        let (status, body) =
            submit(&node, &token, &[(&gz, "long.vcf.gz")], &[("panel", "sim"), ("build", "hg19")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("line {line}")), "{what}: {message}");
    }
    let peak = node.peak_rss_bytes();
    assert!(peak < 200 << 20, "the node's memory peaked at {} MB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_allele_frequencies_far_from_the_panels_are_flagged_against_the_chosen_population() {
    fedimpute_tests::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    // The panel's samples in two populations, so the check compares with the one a job names.
    let samples = Command::new("bcftools").args(["query", "-l"]).arg(test_data("panel.vcf.gz")).output().unwrap();
    let samples = String::from_utf8(samples.stdout).unwrap();
    let groups: String = samples
        .lines()
        .enumerate()
        .map(|(i, s)| format!("{s}\t{}\n", if i % 2 == 0 { "POPA" } else { "POPB" }))
        .collect();
    let groups_file = dir.path().join("samples.panel");
    std::fs::write(&groups_file, format!("sample\tpop\n{groups}")).unwrap();
    let mut node = fedimpute_tests::TestNode::init("Inst A").unwrap();
    panel_add(&node, "sim", &[&test_data("panel.vcf.gz")], &["--sample-populations", groups_file.to_str().unwrap()]);
    node.start().await.unwrap();
    let token = node.admin_token().await.unwrap();

    // Every 10th site's alleles exchanged in the input: its frequency p becomes 1 - p.
    let text = targets_text();
    let mut altered = std::collections::HashSet::new();
    let mut index = 0;
    let swapped: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                return l.to_string();
            }
            index += 1;
            if index % 10 != 0 {
                return l.to_string();
            }
            let mut f: Vec<String> = l.split('\t').map(String::from).collect();
            altered.insert(f[1].parse::<u64>().unwrap());
            for gt in f.iter_mut().skip(9) {
                *gt = gt
                    .chars()
                    .map(|c| match c {
                        '0' => '1',
                        '1' => '0',
                        c => c,
                    })
                    .collect();
            }
            f.join("\t")
        })
        .collect();
    let input = bgzip_text(dir.path(), "swapped.vcf.gz", &(swapped.join("\n") + "\n"));

    let qc = |file: PathBuf, name: &'static str| {
        let (node, token) = (&node, &token);
        async move {
            let fields = [("panel", "sim"), ("build", "hg19"), ("mode", "qc_only"), ("population", "POPA")];
            let (status, job) = submit(node, token, &[(&file, name)], &fields).await;
            assert_eq!(status, StatusCode::CREATED, "{job}");
            let id = job["id"].as_str().unwrap().to_string();
            let done = wait_state(node, token, &id, &["completed", "failed"], Duration::from_secs(120)).await;
            assert_eq!(done["state"], "completed", "{done}");
            (id, done["qc_report"]["allele_frequency"].clone())
        }
    };
    let (_, clean) = qc(test_data("targets.vcf.gz"), "targets.vcf.gz").await;
    assert_eq!(clean["population"], "POPA", "{clean}");
    assert_eq!(clean["sites_over_threshold"], 0, "the unaltered input agrees with the panel: {clean}");
    assert!(clean["warning"].is_null() && clean["correlation"].as_f64().unwrap() > 0.9, "{clean}");

    let (id, check) = qc(input, "swapped.vcf.gz").await;
    let over = check["sites_over_threshold"].as_u64().unwrap();
    assert!(over >= 5, "altered sites flagged: {check}");
    for outlier in check["outliers"].as_array().unwrap() {
        let pos = outlier["pos"].as_u64().unwrap();
        assert!(altered.contains(&pos), "{pos} was flagged but not altered");
    }
    let svg = node.client().get(node.api(&format!("/jobs/{id}/results/af_plot.svg"))).bearer_auth(&token).send().await;
    let svg = svg.unwrap().text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect"), "{svg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_jobs_by_state_engine_times_and_failures_by_reason() {
    // Beagle cannot start (java is /bin/false): an imputation job fails in its engine; a
    // QC-only job completes without one.
    let node = node_with_panel_and_config(|c| set(c, "java = \"java\"", "java = \"/bin/false\"")).await;
    let token = node.admin_token().await.unwrap();
    let qc_only = [("panel", "sim"), ("build", "hg19"), ("mode", "qc_only"), ("name", "secret-project-qc")];
    let completed = submit_targets(&node, &token, &qc_only).await;
    wait_state(&node, &token, &completed, &["completed"], Duration::from_secs(60)).await;
    let imputation = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle"), ("name", "secret-project-run")];
    let failed = submit_targets(&node, &token, &imputation).await;
    wait_state(&node, &token, &failed, &["failed"], Duration::from_secs(120)).await;

    let metrics = node.client().get(format!("{}/metrics", node.base_url())).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"fedimpute_jobs{state="completed"} 1"#,
        r#"fedimpute_jobs{state="failed"} 1"#,
        r#"fedimpute_jobs{state="running"} 0"#,
        "fedimpute_job_queue_length 0",
        r#"fedimpute_job_failures_total{reason="engine"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    let beagle_failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"fedimpute_engine_run_seconds_count{engine="beagle",outcome="failed"} "#))
        .unwrap_or_else(|| panic!("no failed Beagle run timed:\n{metrics}"));
    assert!(beagle_failed.parse::<u64>().unwrap() >= 1, "{metrics}");

    // The log tells each job's start and end by id, never what the researcher named it.
    let log = node.log();
    for id in [&completed, &failed] {
        let mentions: Vec<&str> = log.lines().filter(|l| l.contains(id.as_str())).collect();
        assert!(mentions.iter().any(|l| l.contains("job started")), "{id}: {mentions:?}");
        assert!(mentions.iter().any(|l| l.contains("job ended")), "{id}: {mentions:?}");
    }
    assert!(log.lines().any(|l| l.contains(failed.as_str()) && l.contains("job ended") && l.contains("engine")));
    assert!(!log.contains("secret-project"), "a job's name is the researcher's business");
}
