//! External services: a node wraps a Cloudgene server (here the test double of
//! `fedimpute_tests::cloudgene_double`, written from Cloudgene's published API) and runs jobs
//! through it: queue positions, QC failures reported only in step logs, retirement, malformed
//! answers, cancel, encrypted result archives; credentials sealed and never shown or logged.

use std::time::Duration;

use fedimpute_tests::cloudgene_double::CloudgeneDouble;
use fedimpute_tests::jobs::{add_panel, download, edit_config, submit, submit_targets, vcf_body, wait_state};
use fedimpute_tests::{
    FederationAdmins, TestNode, free_port, install_crypto_provider, test_data, wait_for, workspace_root,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "cg-secret-token-4242-do-not-log";

/// Started nodes for `institutions`, in a federation of their own (so they publish adverts),
/// polling services and hosts every second or two; `prepare` runs on each before it starts.
async fn federation(institutions: &[&str], prepare: impl Fn(&TestNode)) -> (FederationAdmins, Vec<TestNode>) {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut nodes: Vec<TestNode> = institutions.iter().map(|i| TestNode::init(i).unwrap()).collect();
    let members: Vec<&TestNode> = nodes.iter().collect();
    let fed = admins.new_config("fed.json", "external-test", 1, &members, &[]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    for node in &mut nodes {
        assert!(node.apply(&[&fed]).status.success());
        edit_config(node, |c| {
            c.replace("poll_secs = 10", "poll_secs = 1").replace("service_check_secs = 60", "service_check_secs = 2")
        });
        prepare(node);
        node.start().await.unwrap();
    }
    (admins, nodes)
}

async fn register(node: &TestNode, admin: &str, id: &str, url: &str, token: &str) -> (StatusCode, Value) {
    node.send(Method::POST, "/services", admin, &json!({"kind": "cloudgene", "id": id, "url": url, "token": token}))
        .await
        .unwrap()
}

async fn job_on(node: &TestNode, admin: &str, panel: &str) -> String {
    submit_targets(node, admin, &[("panel", panel), ("engine", "michigan"), ("build", "hg19"), ("population", "AFR")])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_through_a_cloudgene_server_and_its_failures_read_clearly() {
    let double = CloudgeneDouble::start(TOKEN).await;
    let (_admins, nodes) = federation(&["Wraps Michigan"], |_| {}).await;
    let node = &nodes[0];
    let admin = node.admin_token().await.unwrap();

    // Registration: checked at once; the token never comes back.
    let (status, service) = register(node, &admin, "michigan", &double.url, TOKEN).await;
    assert_eq!(status, StatusCode::CREATED, "{service}");
    assert_eq!(service["status"], "available", "{service}");
    let panels: Vec<&str> = service["panels"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert!(panels.contains(&"1000g-phase-3-v5") && panels.contains(&"hapmap-2"), "{service}");
    let (_, listed) = node.get("/services", &admin).await.unwrap();
    assert!(!listed.to_string().contains(TOKEN) && !service.to_string().contains(TOKEN));
    assert_eq!(listed[0]["has_token"], true);
    let (status, _) = register(node, &admin, "michigan", &double.url, TOKEN).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // It is advertised like a local engine, with its panels.
    wait_for("the service in the node's advert", Duration::from_secs(30), || async {
        let (_, services) = node.get("/catalog/services?kind=cloudgene", &admin).await?;
        Ok(services[0]["id"] == "michigan" && services[0]["status"] == "available")
    })
    .await
    .unwrap();
    let (_, catalog) = node.get("/catalog/panels", &admin).await.unwrap();
    assert!(catalog.as_array().unwrap().iter().any(|p| p["id"] == "1000g-phase-3-v5"), "{catalog}");

    // A job that waits in the queue, runs and returns an encrypted archive.
    let id = job_on(node, &admin, "1000g-phase-3-v5").await;
    let done = wait_state(node, &admin, &id, &["completed", "failed"], Duration::from_secs(90)).await;
    assert_eq!(done["state"], "completed", "{done}\n{}", node.log());
    assert_eq!(done["summary"]["variants_imputed"], 2, "{done}");
    assert_eq!(done["summary"]["variants_typed"], 1, "{done}");
    let (_, results) = node.get(&format!("/jobs/{id}/results"), &admin).await.unwrap();
    let names: Vec<&str> = results.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    for expected in ["chr20.dose.vcf.gz", "chr20.dose.vcf.gz.tbi", "chr20.info.gz", "qcreport.html", "summary.json"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let (_, events) = node.get(&format!("/jobs/{id}"), &admin).await.unwrap();
    assert_eq!(events["state"], "completed");
    let history = history(node, &admin, &id).await;
    assert!(history.iter().any(|m| m.contains("position 2 in its queue")), "{history:?}");
    assert!(history.iter().any(|m| m.contains("Quality Control")), "{history:?}");

    // What the client sent, as the API documents it.
    let sent = double.jobs().into_values().next().unwrap();
    assert_eq!(sent.refpanel, "apps@1000g-phase-3-v5@2.0.0");
    assert_eq!(sent.fields["population"], "afr");
    assert_eq!(sent.fields["phasing"], "eagle");
    assert_eq!(sent.fields["mode"], "imputation");
    assert_eq!(sent.fields["r2Filter"], "0");
    assert_eq!(sent.files, vec![("targets.vcf.gz".to_string(), 14235)]);

    // QC failure known only from the step log; retirement; malformed answers; cancel.
    let qc = job_on(node, &admin, "hapmap-2").await;
    let retired = job_on(node, &admin, "retired-panel").await;
    let garbled = job_on(node, &admin, "garbled").await;
    let slow = job_on(node, &admin, "slow").await;
    let failed = wait_state(node, &admin, &qc, &["failed", "completed"], Duration::from_secs(60)).await;
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains("Quality Control") && error.contains("obvious strand flips"), "{failed}");
    let failed = wait_state(node, &admin, &retired, &["failed", "completed"], Duration::from_secs(60)).await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("retired the job"), "{failed}");
    let failed = wait_state(node, &admin, &garbled, &["failed", "completed"], Duration::from_secs(60)).await;
    assert!(failed["error"].as_str().unwrap_or_default().contains("does not parse"), "{failed}");
    wait_state(node, &admin, &slow, &["running"], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, _) = node.send(Method::POST, &format!("/jobs/{slow}/cancel"), &admin, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let cancelled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if double.jobs().values().any(|j| j.refpanel == "apps@slow@1.0.0" && j.cancelled) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the node did not cancel the job at the service: {:?}", double.requests());

    assert_eq!(double.violations(), Vec::<String>::new(), "requests the real server would refuse");
    assert!(double.requests().iter().all(|r| !r.contains(TOKEN)));

    // A wrong token and an unreachable server: clear states and job refusals.
    let (_, bad) = register(node, &admin, "bad-token", &double.url, "not-the-token").await;
    assert_eq!(bad["status"], "unavailable");
    assert!(bad["last_error"].as_str().unwrap().contains("refused the credentials"), "{bad}");
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let (_, gone) = register(node, &admin, "gone", &closed, TOKEN).await;
    assert!(gone["last_error"].as_str().unwrap().contains("cannot be reached"), "{gone}");
    let (status, refused) = submit(
        node,
        &admin,
        &[(&test_data("targets.vcf.gz"), "targets.vcf.gz")],
        &[("panel", "1000g-phase-3-v5"), ("engine", "bad-token"), ("build", "hg19")],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused["error"]["message"].as_str().unwrap().contains("bad-token is unavailable"), "{refused}");

    // The token is stored sealed and never logged.
    let mut stored = std::fs::read(node.db_path()).unwrap();
    stored.extend(std::fs::read(format!("{}-wal", node.db_path().display())).unwrap_or_default());
    assert!(!stored.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token is in the database in clear");
    assert!(!node.log().contains(TOKEN), "the token is in the node's log");
}

async fn history(node: &TestNode, token: &str, id: &str) -> Vec<String> {
    let resp = node.client().get(node.api(&format!("/jobs/{id}/events"))).bearer_auth(token).send().await.unwrap();
    let text = resp.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter_map(|e| e["message"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_forwarded_by_a_peer_runs_through_the_hosts_cloudgene_service() {
    let double = CloudgeneDouble::start(TOKEN).await;
    let (_admins, nodes) = federation(&["Origin A", "Wraps Michigan"], |_| {}).await;
    let (origin, host) = (&nodes[0], &nodes[1]);
    let host_admin = host.admin_token().await.unwrap();
    let (status, _) = register(host, &host_admin, "michigan", &double.url, TOKEN).await;
    assert_eq!(status, StatusCode::CREATED);

    let admin = origin.admin_token().await.unwrap();
    wait_for("the host's service in the origin's catalog", Duration::from_secs(60), || async {
        let (_, panels) = origin.get("/catalog/panels", &admin).await?;
        Ok(panels.as_array().is_some_and(|p| p.iter().any(|p| p["id"] == "1000g-phase-3-v5")))
    })
    .await
    .unwrap();
    let id = job_on(origin, &admin, "1000g-phase-3-v5").await;
    let done = wait_state(origin, &admin, &id, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "completed", "{done}\nhost log:\n{}", host.log());
    assert_eq!(done["peer"], host.peer_id());
    assert_eq!(done["summary"]["variants_imputed"], 2);
    let (_, results) = origin.get(&format!("/jobs/{id}/results"), &admin).await.unwrap();
    assert!(results.as_array().unwrap().iter().any(|r| r["name"] == "chr20.dose.vcf.gz"), "{results}");
    wait_state(host, &host_admin, &id, &["purged"], Duration::from_secs(30)).await;
    assert_eq!(double.violations(), Vec::<String>::new());
    assert!(!host.log().contains(TOKEN) && !origin.log().contains(TOKEN));
}

/// The GA4GH WES reference server, stopped when dropped.
struct WesServer(std::process::Child);

impl Drop for WesServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_forwarded_to_a_wes_service_matches_a_local_beagle_run() {
    install_crypto_provider();
    let root = workspace_root();
    let venv = root.join(".venv-wes/bin");
    assert!(
        venv.join("wes-server").exists() && venv.join("cwltool").exists(),
        "the WES reference server is missing: run scripts/install-wes.sh (scripts/test.sh does)"
    );
    // A is the origin; B hosts panel `sim` and wraps a WES server that runs Beagle on it.
    let (_admins, nodes) = federation(&["Origin A", "Wraps WES"], |node| {
        if node.institution() == "Wraps WES" {
            add_panel(node, "sim");
        }
    })
    .await;
    let (origin, host) = (&nodes[0], &nodes[1]);

    // The reference server (wes-service, cwl_runner backend), with the runner wrapper that
    // records each run's exit code so finished runs keep their state.
    let wes_dir = tempfile::tempdir().unwrap();
    let port = free_port().unwrap();
    let _server = WesServer(
        std::process::Command::new(venv.join("wes-server"))
            .args(["--backend=wes_service.cwl_runner", "--port", &port.to_string()])
            .arg(format!("--opt=runner={}", root.join("scripts/wes/cwltool-runner.sh").display()))
            .env("CWLTOOL", venv.join("cwltool"))
            .current_dir(wes_dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(wes_dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_for("the WES server", Duration::from_secs(60), || async {
        Ok(reqwest::get(format!("{url}/ga4gh/wes/v1/service-info")).await.is_ok_and(|r| r.status().is_success()))
    })
    .await
    .unwrap();

    // Registered with the workflow and the panel's files where the server reads them.
    let host_admin = host.admin_token().await.unwrap();
    let bref3 = host.data_dir().join("panels/sim/20.bref3");
    let (status, service) = host
        .send(
            Method::POST,
            "/services",
            &host_admin,
            &json!({
                "kind": "wes", "id": "wes-beagle", "url": url,
                "workflow_url": "beagle-impute.cwl",
                "outputs_dir": wes_dir.path().display().to_string(),
                "panels": [{"key": format!("file://{}", bref3.display()), "id": "sim-wes", "name": "Simulated, through WES",
                            "populations": [], "builds": ["hg19"],
                            "map": format!("file://{}", test_data("map.txt").display())}]
            }),
        )
        .await
        .unwrap();
    assert_eq!((status, service["status"].as_str()), (StatusCode::CREATED, Some("available")), "{service}");

    let admin = origin.admin_token().await.unwrap();
    wait_for("the WES panel in the origin's catalog", Duration::from_secs(60), || async {
        let (_, panels) = origin.get("/catalog/panels", &admin).await?;
        Ok(panels.as_array().is_some_and(|p| p.iter().any(|p| p["id"] == "sim-wes")))
    })
    .await
    .unwrap();
    let through_wes = [("panel", "sim-wes"), ("engine", "wes-beagle"), ("build", "hg19")];
    let id = submit_targets(origin, &admin, &through_wes).await;
    let done = wait_state(origin, &admin, &id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(done["state"], "completed", "{done}\nhost log:\n{}", host.log());
    assert_eq!(done["peer"], host.peer_id());

    // The same job as a local Beagle job at the host gives the same imputed VCF.
    let local_id =
        submit_targets(host, &host_admin, &[("panel", "sim"), ("engine", "beagle"), ("build", "hg19")]).await;
    let local_done = wait_state(host, &host_admin, &local_id, &["completed", "failed"], Duration::from_secs(300)).await;
    assert_eq!(local_done["state"], "completed", "{local_done}");
    let dir = tempfile::tempdir().unwrap();
    let (via_wes, direct) = (dir.path().join("wes.vcf.gz"), dir.path().join("local.vcf.gz"));
    download(origin, &admin, &id, "targets.dose.vcf.gz", &via_wes).await;
    download(host, &host_admin, &local_id, "chr20.dose.vcf.gz", &direct).await;
    assert_eq!(vcf_body(&via_wes), vcf_body(&direct));
    assert_eq!(done["summary"]["variants_imputed"], local_done["summary"]["variants_imputed"]);

    // Cancel: the reference server ignores it, and the job says so rather than claim it stopped.
    let cancel_id = submit_targets(host, &host_admin, &through_wes).await;
    // Once the run exists at the service (a cancel during the upload ends the job before any run).
    wait_for("the run at the service", Duration::from_secs(60), || async {
        let (_, job) = host.get(&format!("/jobs/{cancel_id}"), &host_admin).await?;
        Ok(matches!(job["stage"].as_str(), Some("queued_at_service" | "running_at_service")))
    })
    .await
    .unwrap();
    let (status, _) =
        host.send(Method::POST, &format!("/jobs/{cancel_id}/cancel"), &host_admin, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    wait_for("the cancel request to be reported", Duration::from_secs(20), || async {
        Ok(history(host, &host_admin, &cancel_id).await.iter().any(|m| m.contains("cancel requested at wes-beagle")))
    })
    .await
    .unwrap();
}
