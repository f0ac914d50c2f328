//! Jobs forwarded across the federation between real nodes on loopback: a researcher at A
//! imputes on a panel only B (or C) hosts, through A alone.

use std::path::Path;
use std::time::Duration;

use fedimpute_tests::federation::*;
use fedimpute_tests::jobs::*;
use fedimpute_tests::{test_data, wait_for};
use reqwest::StatusCode;
use serde_json::Value;

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_at_a_on_bs_panel_matches_a_local_run_at_b_and_b_keeps_nothing() {
    let fed = federation(1, |_, c| c).await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let (ta, tb) = (a.admin_token().await.unwrap(), b.admin_token().await.unwrap());
    let params = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle")];

    let id = submit_targets(a, &ta, &params).await;
    let job = wait_host_chosen(a, &ta, &id).await;
    assert_eq!((job["role"].as_str(), job["peer"].as_str()), (Some("origin"), Some(b.peer_id())), "{job}");
    let done = wait_state(a, &ta, &id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(done["state"], "completed", "{done}\nB's log:\n{}", b.log());
    assert_eq!(done["qc_report"]["status"], "passed", "{done}");
    assert!(done["summary"]["variants_imputed"].as_u64().unwrap() > 19_000, "{done}");
    // Every status B pushed was signed, the one carrying its QC report (with fractions) too.
    assert!(!b.log().contains("cannot sign a job reply"), "B could not sign a status:\n{}", b.log());

    // The same job run locally at B gives the same imputed VCF.
    let local = submit_targets(b, &tb, &params).await;
    let local_done = wait_state(b, &tb, &local, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(local_done["state"], "completed", "{local_done}");
    let dir = tempfile::tempdir().unwrap();
    let (forwarded, direct) = (dir.path().join("a.vcf.gz"), dir.path().join("b.vcf.gz"));
    download(a, &ta, &id, "chr20.dose.vcf.gz", &forwarded).await;
    download(b, &tb, &local, "chr20.dose.vcf.gz", &direct).await;
    assert_eq!(vcf_body(&forwarded), vcf_body(&direct));
    assert!(r2_common(&forwarded) >= 0.95);

    // B sent exactly the result files and A exactly the input: no panel byte crossed.
    let (_, results) = a.get(&format!("/jobs/{id}/results"), &ta).await.unwrap();
    // report.html is A's own (a host sends none; the origin renders it from the reports).
    let result_bytes: u64 = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] != "report.html")
        .map(|r| r["size"].as_u64().unwrap())
        .sum();
    assert!(results.as_array().unwrap().iter().any(|r| r["name"] == "report.html"), "{results}");
    assert!(results.as_array().unwrap().iter().any(|r| r["name"] == "qc_report.json"), "{results}");
    assert_eq!(metric(b, SENT_RESULT).await, result_bytes);
    assert_eq!(metric(b, SENT_INPUT).await, 0);
    assert_eq!(metric(a, SENT_INPUT).await, size(&test_data("targets.vcf.gz")));
    assert_eq!(metric(a, SENT_RESULT).await, 0);

    // After delivery B holds neither the input nor the results, and says so.
    let at_b = wait_state(b, &tb, &id, &["purged"], Duration::from_secs(30)).await;
    assert_eq!(at_b["role"], "host");
    let input_sha = job["inputs"][0]["sha256"].as_str().unwrap();
    assert!(!b.data_dir().join("jobs").join(&id).exists());
    assert!(!b.data_dir().join("transfers").join(&id).exists());
    assert!(!walk(&b.data_dir().join("files")).iter().any(|p| p.ends_with(input_sha)), "B kept the input");
    assert!(a.get(&format!("/jobs/{id}"), &ta).await.unwrap().1["state"] == "completed");

    // Audit on both sides; B knows A's user only by a pseudonym.
    let received = b.audit("job.received").await.unwrap();
    let details: Value = serde_json::from_str(received[0]["details"].as_str().unwrap()).unwrap();
    let user = details["user"].as_str().unwrap();
    assert!(user.starts_with("u-") && !user.contains("admin"), "{received:?}");
    assert_eq!(received[0]["actor"], format!("peer:{}", a.peer_id()));
    for action in ["job.inputs_received", "job.delivered", "job.purged"] {
        assert_eq!(b.audit(action).await.unwrap().len(), 1, "{action} at B");
    }
    for action in ["job.forwarded", "job.accepted_by_host", "job.results_received", "job.delivery_confirmed"] {
        assert_eq!(a.audit(action).await.unwrap().len(), 1, "{action} at A");
    }
    let submitted = a.audit("job.submit").await.unwrap();
    assert_eq!(submitted[0]["actor"], "user:admin");
}

const RECEIVED_INPUT: &str = r#"fedimpute_transfer_bytes_total{direction="received",kind="input"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_origin_mid_upload_resumes_it_and_killing_the_host_mid_run_still_completes() {
    // A sends the 14 kB input at 2 kB/s and B pulls it as slowly: the upload takes about 7 s.
    let mut fed = federation(1, |i, c| {
        let slow = match i {
            0 => "max_send_bytes_per_sec = 2048\n",
            _ => "chunk_bytes = 1024\nparallel_chunks = 1\nmax_bytes_per_sec = 2048\n",
        };
        with_transfer(c, &format!("{slow}poll_secs = 1\npeer_timeout_secs = 300"))
    })
    .await;
    let input_size = size(&test_data("targets.vcf.gz"));
    let ta = fed.nodes[0].admin_token().await.unwrap();
    let id = submit_targets(&fed.nodes[0], &ta, &[("panel", "sim"), ("build", "hg19")]).await;
    let a = &fed.nodes[0];
    wait_for("part of the upload", Duration::from_secs(60), || async { Ok(metric(a, SENT_INPUT).await >= 3072) })
        .await
        .unwrap();
    fed.nodes[0].stop_with(libc::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    fed.nodes[0].start().await.unwrap();

    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let ta = a.admin_token().await.unwrap();
    wait_for("the upload to finish", Duration::from_secs(60), || async {
        Ok(metric(b, RECEIVED_INPUT).await >= input_size)
    })
    .await
    .unwrap();
    let resent = metric(a, SENT_INPUT).await;
    assert!(resent > 0 && resent < input_size, "after the restart A sent {resent} of {input_size} bytes again");
    assert_eq!(metric(b, RECEIVED_INPUT).await, input_size, "B pulled each byte once");
    // Both attempts were whole-file streams; no chunk requests.
    assert!(metric(b, r#"fedimpute_file_pulls_total{protocol="stream"}"#).await >= 2);
    assert_eq!(metric(b, r#"fedimpute_file_pulls_total{protocol="chunks"}"#).await, 0);

    // Now kill B while Beagle runs there.
    let b_pid = b.pid().unwrap();
    wait_for("Beagle to start at B", Duration::from_secs(120), || async { Ok(!engine_children(b_pid).is_empty()) })
        .await
        .unwrap();
    fed.nodes[1].stop_with(libc::SIGKILL).unwrap();
    let job_dir = fed.nodes[1].data_dir().join("jobs").join(&id).display().to_string();
    wait_for("B's orphaned engine to die", Duration::from_secs(20), || async { Ok(engines_mentioning(&job_dir) == 0) })
        .await
        .unwrap();
    fed.nodes[1].start().await.unwrap();

    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let done = wait_state(a, &ta, &id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(done["state"], "completed", "{done}\nB's log:\n{}", b.log());
    let tb = b.admin_token().await.unwrap();
    wait_state(b, &tb, &id, &["purged"], Duration::from_secs(30)).await;
    // The restart re-queued the job once at B, which then ran it to the end.
    assert!(b.log().contains("re-queued a job interrupted by a restart"), "B's log:\n{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_gone_past_the_timeout_fails_the_job_or_moves_it_when_allowed() {
    // Hosts pull at 1 kB/s, so both jobs are still being uploaded when their host dies.
    let mut fed = federation(2, |i, c| {
        let slow = if i > 0 { "chunk_bytes = 1024\nparallel_chunks = 1\nmax_bytes_per_sec = 1024\n" } else { "" };
        with_transfer(c, &format!("{slow}poll_secs = 1\npeer_timeout_secs = 8"))
    })
    .await;
    let a = &fed.nodes[0];
    let ta = a.admin_token().await.unwrap();
    let movable = submit_targets(a, &ta, &[("panel", "sim"), ("build", "hg19"), ("allow_resubmit", "true")]).await;
    let job = wait_host_chosen(a, &ta, &movable).await;
    let first_host = job["peer"].as_str().unwrap().to_string();
    let doomed = fed.nodes.iter().position(|n| n.peer_id() == first_host).unwrap();
    let other = 3 - doomed;
    let pinned_ref = format!("{}/sim", fed.nodes[doomed].institution());
    let pinned = submit_targets(a, &ta, &[("panel", &pinned_ref), ("build", "hg19"), ("allow_resubmit", "true")]).await;
    for id in [&movable, &pinned] {
        wait_state(a, &ta, id, &["transferring"], Duration::from_secs(30)).await;
    }
    fed.nodes[doomed].stop_with(libc::SIGKILL).unwrap();

    let a = &fed.nodes[0];
    let failed = wait_state(a, &ta, &pinned, &["failed", "completed"], Duration::from_secs(60)).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("unreachable for more than 8 s"), "{failed}");
    assert!(error.contains(fed.nodes[doomed].institution()), "{failed}");

    let moved = wait_state(a, &ta, &movable, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(moved["state"], "completed", "{moved}\nA's log:\n{}", a.log());
    assert_eq!(moved["peer"], fed.nodes[other].peer_id(), "{moved}");
    assert_eq!(a.audit("job.host_unreachable").await.unwrap().len(), 2);

    // When the lost host comes back, it is told to delete both jobs' inputs: neither runs there.
    fed.nodes[doomed].start().await.unwrap();
    let back = &fed.nodes[doomed];
    let tb = back.admin_token().await.unwrap();
    for id in [&movable, &pinned] {
        wait_state(back, &tb, id, &["purged"], Duration::from_secs(60)).await;
        assert!(!back.data_dir().join("transfers").join(id).exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_policies_refuse_with_their_reasons_and_nothing_reaches_an_excluded_host() {
    let fed = federation(2, |i, c| match i {
        // A's data may go to B only.
        0 => set(c, "send_to = []", "send_to = [\"Host B\"]"),
        // B takes one job a month from each member.
        1 => set(c, "max_jobs_per_origin_per_month = 500", "max_jobs_per_origin_per_month = 1"),
        _ => c,
    })
    .await;
    let (a, b, c) = (&fed.nodes[0], &fed.nodes[1], &fed.nodes[2]);
    let ta = a.admin_token().await.unwrap();
    let qc_only = [("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")];

    let first = submit_targets(a, &ta, &qc_only).await;
    let done = wait_state(a, &ta, &first, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!((done["state"].as_str(), done["peer"].as_str()), (Some("completed"), Some(b.peer_id())), "{done}");

    // B's quota is its own (not advertised): it refuses, and the researcher at A reads why.
    let second = submit_targets(a, &ta, &qc_only).await;
    let refused = wait_state(a, &ta, &second, &["completed", "failed"], Duration::from_secs(60)).await;
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("Host B refused the job") && error.contains("last 30 days"), "{refused}");
    assert_eq!(b.audit("job.refused").await.unwrap().len(), 1);

    // C hosts the panel, but A's policy keeps the data home: refused before anything is kept.
    let (status, body) = submit(
        a,
        &ta,
        &[(&test_data("targets.vcf.gz"), "targets.vcf.gz")],
        &[("panel", "Host C/sim"), ("build", "hg19")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("sends data only to Host B") && message.contains("Host C"), "{body}");
    let tc = c.admin_token().await.unwrap();
    assert_eq!(c.get("/jobs", &tc).await.unwrap().1, serde_json::json!([]));
    assert_eq!(metric(c, RECEIVED_INPUT).await, 0);
}

/// Per-origin limits at a host hold by default; these are tightened to show each one refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_bounds_the_jobs_in_flight_and_the_bytes_one_origin_holds_there() {
    let input = size(&test_data("targets.vcf.gz"));
    let fed = federation(2, |i, c| match i {
        // B keeps less than one input for each member; C runs one of a member's jobs at a time.
        1 => set(
            c,
            "max_stored_bytes_per_origin = 107374182400",
            &format!("max_stored_bytes_per_origin = {}", input / 2),
        ),
        2 => set(c, "max_jobs_in_flight_per_origin = 16", "max_jobs_in_flight_per_origin = 1"),
        _ => c,
    })
    .await;
    let (a, b, c) = (&fed.nodes[0], &fed.nodes[1], &fed.nodes[2]);
    let ta = a.admin_token().await.unwrap();
    let (on_b, on_c) = ([("panel", "Host B/sim"), ("build", "hg19")], [("panel", "Host C/sim"), ("build", "hg19")]);

    let too_big = submit_targets(a, &ta, &on_b).await;
    let refused = wait_state(a, &ta, &too_big, &["completed", "failed"], Duration::from_secs(60)).await;
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("Host B refused the job") && error.contains("bytes this node keeps"), "{refused}");
    assert_eq!(metric(b, RECEIVED_INPUT).await, 0, "B pulled nothing of the refused job");

    let first = submit_targets(a, &ta, &on_c).await;
    let second = submit_targets(a, &ta, &on_c).await;
    let refused = wait_state(a, &ta, &second, &["completed", "failed"], Duration::from_secs(60)).await;
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("Host C refused the job") && error.contains("not yet ended here"), "{refused}");
    let done = wait_state(a, &ta, &first, &["completed", "failed"], Duration::from_secs(180)).await;
    assert_eq!(done["state"], "completed", "the job in flight is unaffected: {done}");
    assert_eq!(metric(c, RECEIVED_INPUT).await, input, "C pulled the first job's input only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_at_the_origin_kills_the_engine_at_the_host() {
    let fed = federation(1, |_, c| with_transfer(c, "poll_secs = 1")).await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let (ta, tb) = (a.admin_token().await.unwrap(), b.admin_token().await.unwrap());
    let id = submit_targets(a, &ta, &[("panel", "sim"), ("build", "hg19")]).await;
    let b_pid = b.pid().unwrap();
    wait_for("Beagle to start at B", Duration::from_secs(120), || async { Ok(!engine_children(b_pid).is_empty()) })
        .await
        .unwrap();
    let (status, body) = a.send(reqwest::Method::POST, &format!("/jobs/{id}/cancel"), &ta, &Value::Null).await.unwrap();
    assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("cancelled")), "{body}");
    wait_for("B's engine to be gone", Duration::from_secs(30), || async { Ok(engine_children(b_pid).is_empty()) })
        .await
        .unwrap();
    let at_b = wait_state(b, &tb, &id, &["purged"], Duration::from_secs(30)).await;
    assert!(at_b["error"].is_null(), "{at_b}");
    assert!(!b.data_dir().join("jobs").join(&id).exists());
    assert_eq!(a.get(&format!("/jobs/{id}"), &ta).await.unwrap().1["state"], "cancelled");
}

/// `bcftools query -f FORMAT FILE` as lines of tab-separated fields, keyed by POS:REF:ALT.
fn query(path: &Path, format: &str) -> std::collections::HashMap<String, Vec<String>> {
    let out = std::process::Command::new("bcftools").args(["query", "-f", format]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(String::from).collect();
            (format!("{}:{}:{}", f[0], f[1], f[2]), f[3..].to_vec())
        })
        .collect()
}

/// The committed panel split in two halves of its samples, as two different panels.
fn split_panel(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let panel = test_data("panel.vcf.gz");
    let out = std::process::Command::new("bcftools").args(["query", "-l"]).arg(&panel).output().unwrap();
    let samples: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    let (first, second) = samples.split_at(samples.len() / 2);
    let mut halves = Vec::new();
    for (name, part) in [("first.vcf.gz", first), ("second.vcf.gz", second)] {
        let path = dir.join(name);
        let status = std::process::Command::new("bcftools")
            .args(["view", "-Oz", "-o"])
            .arg(&path)
            .args(["-s", &part.join(",")])
            .arg(&panel)
            .status()
            .unwrap();
        assert!(status.success());
        halves.push(path);
    }
    (halves.remove(0), halves.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_panel_job_merges_the_best_call_per_variant() {
    let data = tempfile::tempdir().unwrap();
    let (first, second) = split_panel(data.path());
    let fed = federation_with(
        2,
        |i, node| if i == 1 { add_panel_file(node, "half-a", &first) } else { add_panel_file(node, "half-b", &second) },
        |_, c| with_transfer(c, "poll_secs = 1"),
    )
    .await;
    let a = &fed.nodes[0];
    let ta = a.admin_token().await.unwrap();
    let id = submit_targets(a, &ta, &[("panel", "half-a,half-b"), ("build", "hg19")]).await;
    let done = wait_state(a, &ta, &id, &["completed", "failed"], Duration::from_secs(400)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["role"], "parent");
    let children = done["children"].as_array().unwrap();
    assert_eq!(children.len(), 2, "{done}");
    assert_eq!(children[0]["panel"], "half-a");
    assert_eq!(children[0]["peer"], fed.nodes[1].peer_id());
    assert_eq!(children[1]["peer"], fed.nodes[2].peer_id());

    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.vcf.gz");
    download(a, &ta, &id, "chr20.merged.dose.vcf.gz", &merged).await;
    let mut panel_vcfs = Vec::new();
    for (i, child) in children.iter().enumerate() {
        let path = dir.path().join(format!("child{i}.vcf.gz"));
        download(a, &ta, child["id"].as_str().unwrap(), "chr20.dose.vcf.gz", &path).await;
        panel_vcfs.push(query(&path, "%POS\t%REF\t%ALT\t%INFO/DR2[\t%DS]\n"));
    }
    // Valid VCF: bcftools reads it, and it holds every variant of either panel.
    let body = vcf_body(&merged);
    let merged_calls = query(&merged, "%POS\t%REF\t%ALT\t%INFO/PANEL\t%INFO/DR2[\t%DS]\n");
    assert_eq!(body.len(), merged_calls.len());
    assert_eq!(merged_calls.len(), panel_vcfs[0].len().max(panel_vcfs[1].len()));
    let mut wins = [0u64; 2];
    for (key, fields) in &merged_calls {
        let r2 = |i: usize| panel_vcfs[i].get(key).map(|f| f[0].parse::<f64>().unwrap()).unwrap_or(-1.0);
        let winner = if r2(0) >= r2(1) { 0 } else { 1 };
        assert_eq!(fields[0], ["half-a", "half-b"][winner], "{key}: r2 {} vs {}", r2(0), r2(1));
        assert_eq!(&fields[1..], &panel_vcfs[winner][key][..], "{key}: the winner's call, byte for byte");
        wins[winner] += 1;
    }
    assert!(wins[0] > 0 && wins[1] > 0, "each half wins somewhere: {wins:?}");
    let report = &done["merge_report"];
    assert_eq!(report["wins"]["half-a"].as_u64(), Some(wins[0]), "{report}");
    assert_eq!(report["wins"]["half-b"].as_u64(), Some(wins[1]), "{report}");
    let by_bin: u64 = report["wins_by_maf"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|b| b.as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_bin, wins[0] + wins[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_larger_than_the_researchers_quota_are_not_fetched_and_the_host_purges() {
    // At A a researcher may hold 200 kB: the 14 kB input fits, the 1.5 MB of results do not.
    let fed = federation(1, |i, c| {
        if i == 0 { set(c, "max_stored_bytes_per_user = 53687091200", "max_stored_bytes_per_user = 200000") } else { c }
    })
    .await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let (ta, tb) = (a.admin_token().await.unwrap(), b.admin_token().await.unwrap());
    let id = submit_targets(a, &ta, &[("panel", "sim"), ("build", "hg19")]).await;
    let failed = wait_state(a, &ta, &id, &["failed", "completed"], Duration::from_secs(300)).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("over your quota of 200000"), "{failed}");
    assert_eq!(metric(b, SENT_RESULT).await, 0, "no result byte was sent");
    // A told B the job ended; B deletes what it had.
    wait_state(b, &tb, &id, &["purged"], Duration::from_secs(30)).await;
    assert!(!b.data_dir().join("jobs").join(&id).exists());
}
