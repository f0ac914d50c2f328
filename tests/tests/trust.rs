//! Trust between members, services and clients, tried against real nodes on 127.0.0.1: a
//! member naming another user's input by its hash gets nothing of it; a member calling itself
//! like another never receives the other's jobs nor appears under its name; a hostile WES
//! server cannot make the node read its own files or carry its token elsewhere; cancelled jobs
//! leave no genotypes behind and files at rest are the node user's only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fedimpute_node::identity::NodeIdentity;
use fedimpute_node::p2p::{JobNetworkEvent, Network, NetworkConfig, NetworkEvent};
use fedimpute_protocol::federation::FederationConfig;
use fedimpute_protocol::jobs::{FileManifest, JobReply, JobRequest, JobRequestParams, SignedJobMessage};
use fedimpute_protocol::messages::{FederationRequest, FederationResponse};
use fedimpute_protocol::transfer::{StreamAnswer, StreamRequest, decode_frame, encode_frame, frame_length};
use fedimpute_tests::federation::*;
use fedimpute_tests::jobs::*;
use fedimpute_tests::wes_double::HostileWes;
use fedimpute_tests::{TestNode, fedimpute, free_port, install_crypto_provider, test_data, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A member of the federation that is a bare libp2p peer driven by the test: it signs its own
/// job messages, refuses every file it is asked for (it has none) and acknowledges updates.
struct RoguePeer {
    identity: NodeIdentity,
    network: Network,
    chunks_asked: Arc<AtomicUsize>,
}

impl RoguePeer {
    fn start(identity: NodeIdentity, port: u16, config: &Path) -> Self {
        let config = Arc::new(FederationConfig::from_json(&std::fs::read_to_string(config).unwrap()).unwrap());
        let (tx, watch) = tokio::sync::watch::channel(Some(config));
        std::mem::forget(tx);
        let listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()];
        let (network, events) = Network::spawn(&identity, NetworkConfig::listening_on(listen), watch).unwrap();
        let (mut federation, mut jobs) = (events.federation, events.jobs);
        // It offers no file streams: peers pull from it by chunk requests, which it refuses.
        drop(events.file_streams);
        let responder = network.clone();
        tokio::spawn(async move {
            while let Some(event) = federation.recv().await {
                if let NetworkEvent::Request { request, channel, .. } = event {
                    let response = match request {
                        FederationRequest::GetCatalog { .. } => FederationResponse::Catalog { adverts: vec![] },
                        FederationRequest::GetConfig { .. } => FederationResponse::Config { document: None },
                        FederationRequest::GetWitnessedHead => FederationResponse::WitnessedHead { advert: None },
                    };
                    responder.respond(channel, response).await;
                }
            }
        });
        let chunks_asked = Arc::new(AtomicUsize::new(0));
        let (responder, asked, signer) = (network.clone(), chunks_asked.clone(), identity.clone());
        tokio::spawn(async move {
            while let Some(event) = jobs.recv().await {
                match event {
                    JobNetworkEvent::Chunk { channel, .. } => {
                        asked.fetch_add(1, Ordering::SeqCst);
                        let refusal = fedimpute_protocol::transfer::ChunkResponse::Refused("no such file here".into());
                        responder.respond_chunk(channel, refusal).await;
                    }
                    JobNetworkEvent::Message { channel, .. } => {
                        let ack = JobReply::Ack { job_id: String::new() };
                        let signed = SignedJobMessage::sign(&ack, &signer.peer_id(), |m| signer.sign(m)).unwrap();
                        responder.respond_job(channel, signed).await;
                    }
                    JobNetworkEvent::Connected { .. } => {}
                }
            }
        });
        Self { identity, network, chunks_asked }
    }

    /// Opens a file stream to `host`, asks for `sha256` of `job_id` and reads the answer frame.
    async fn stream_request(&self, host: &str, job_id: &str, sha256: &str) -> StreamAnswer {
        use libp2p::futures::{AsyncReadExt, AsyncWriteExt};
        let mut stream = self.network.open_file_stream(host.parse().unwrap()).await.unwrap();
        let request = StreamRequest { job_id: job_id.into(), sha256: sha256.into(), offset: 0 };
        stream.write_all(&encode_frame(&request).unwrap()).await.unwrap();
        stream.flush().await.unwrap();
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut body = vec![0u8; frame_length(prefix).unwrap()];
        stream.read_exact(&mut body).await.unwrap();
        decode_frame(&body).unwrap()
    }

    /// Sends a signed request to `host` and opens its signed answer.
    async fn ask(&self, host: &str, request: &JobRequest) -> anyhow::Result<JobReply> {
        let peer = host.parse()?;
        let signed = SignedJobMessage::sign(request, &self.identity.peer_id(), |m| self.identity.sign(m))?;
        let answer = self.network.job_request(peer, signed).await?;
        Ok(answer.open::<JobReply>(&peer)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_naming_another_users_input_by_its_hash_gets_nothing_of_it() {
    install_crypto_provider();
    let rogue_identity = NodeIdentity::generate();
    let rogue_port = free_port().unwrap();
    let extra = [ExtraMember {
        peer_id: rogue_identity.peer_id().to_string(),
        institution: "Rogue R".into(),
        address: format!("/ip4/127.0.0.1/tcp/{rogue_port}"),
    }];
    // The host keeps ended jobs' inputs (the worst case: the bytes are on its disk).
    let fed = start(&FederationSpec {
        names: &["Host A"],
        panels: &|_, node| add_panel(node, "sim"),
        edit: &|_, c| set(c, "delete_inputs_when_done = true", "delete_inputs_when_done = false"),
        extra: &extra,
        hosts_in_catalog: 0,
        env: &[],
    })
    .await;
    let host = &fed.nodes[0];
    let admin = host.admin_token().await.unwrap();

    // A researcher at the host runs a job; its input stays on the host's disk.
    let earlier = submit_targets(host, &admin, &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")]).await;
    let done = wait_state(host, &admin, &earlier, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let sha = done["inputs"][0]["sha256"].as_str().unwrap().to_string();
    let size = done["inputs"][0]["size"].as_u64().unwrap();

    // The rogue member learnt that hash and submits a job naming it, without the file.
    let rogue = RoguePeer::start(rogue_identity, rogue_port, &fed.config);
    let job_id = "0badc0de0badc0de0badc0de".to_string();
    let submit = JobRequest::Submit {
        job_id: job_id.clone(),
        params: JobRequestParams {
            panel_id: "sim".into(),
            build: "hg19".into(),
            engine: "beagle".into(),
            phasing: "beagle".into(),
            population: None,
            r2_filter: "0".into(),
            mode: "imputation".into(),
        },
        inputs: vec![FileManifest { name: "stolen.vcf.gz".into(), size, sha256: sha.clone() }],
        pseudonymous_user: "u-rogue".into(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        match rogue.ask(host.peer_id(), &submit).await {
            Ok(reply) => break reply,
            Err(e) if std::time::Instant::now() > deadline => panic!("the host never answered the rogue: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    assert!(matches!(accepted, JobReply::Accepted { .. }), "{accepted:?}");

    // The host asks the rogue for the bytes, is refused, and the job fails with the reason.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let last = loop {
        let reply = rogue.ask(host.peer_id(), &JobRequest::QueryStatus { job_id: job_id.clone() }).await;
        assert!(!matches!(reply, Ok(JobReply::ResultManifest { .. })), "results of another user's input were offered");
        if let Ok(reply @ JobReply::Status { .. }) = &reply
            && matches!(reply, JobReply::Status { state, .. } if state == "failed")
        {
            break reply.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the rogue's job did not fail: {reply:?}\n{}", host.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let JobReply::Status { message, .. } = last else { unreachable!() };
    assert!(message.as_deref().unwrap_or("").contains("refused"), "{message:?}");
    assert!(rogue.chunks_asked.load(Ordering::SeqCst) > 0, "the host never asked the rogue for the input");
    // The rogue offers no file streams (it dropped them), so the host fell back to chunks.
    assert!(metric(host, r#"fedimpute_file_pulls_total{protocol="chunks"}"#).await >= 1);
    let (_, at_host) = host.get(&format!("/jobs/{job_id}"), &admin).await.unwrap();
    assert_eq!(at_host["state"], "failed", "{at_host}");
    assert!(at_host["error"].as_str().unwrap().contains("receiving stolen.vcf.gz from the origin"), "{at_host}");
    assert_eq!(metric(host, SENT_RESULT).await, 0, "result bytes left the host");
    assert!(!host.data_dir().join("jobs").join(&job_id).join("inputs").exists());
    // A delivery receipt or a chunk request for the earlier job gets the rogue nothing either.
    let receipt = JobRequest::DeliveryReceipt { job_id: earlier.clone(), files: vec![] };
    assert!(matches!(rogue.ask(host.peer_id(), &receipt).await.unwrap(), JobReply::Refused { .. }));
    // Nor does a file stream: the earlier job's input, or its own job's, by hash, from offset 0.
    for job in [&earlier, &job_id] {
        let answer = rogue.stream_request(host.peer_id(), job, &sha).await;
        assert!(matches!(answer, StreamAnswer::Refused(_)), "{job}: {answer:?}");
    }
    assert_eq!(metric(host, SENT_INPUT).await + metric(host, SENT_RESULT).await, 0, "bytes left the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_calling_itself_like_another_gets_none_of_its_jobs_and_never_its_name() {
    // C's node says it is "Host B"; the signed member list says it is "Host C".
    let impostor = |i: usize, c: String| {
        if i == 2 {
            c.replace("name = \"Host C\"", "name = \"Host B\"")
                .replace("institution = \"Host C\"", "institution = \"Host B\"")
        } else {
            c
        }
    };
    let fed = federation(2, impostor).await;
    let (a, b, c) = (&fed.nodes[0], &fed.nodes[1], &fed.nodes[2]);
    assert!(std::fs::read_to_string(c.config_path()).unwrap().contains("institution = \"Host B\""));
    let token = a.admin_token().await.unwrap();

    // The catalog names C as the signed list does, and says its advert differs.
    let (_, panels) = a.get("/catalog/panels", &token).await.unwrap();
    let hosts = panels[0]["hosts"].as_array().unwrap().clone();
    let host_c = hosts.iter().find(|h| h["peer_id"] == c.peer_id()).unwrap();
    assert_eq!(host_c["institution"], "Host C", "{host_c}");
    assert_eq!(host_c["advertised"]["differs"], true, "{host_c}");
    let host_b = hosts.iter().find(|h| h["peer_id"] == b.peer_id()).unwrap();
    assert_eq!((host_b["institution"].as_str(), &host_b["advertised"]["differs"]), (Some("Host B"), &json!(false)));
    let named_b: Vec<&Value> = hosts.iter().filter(|h| h["institution"] == "Host B").collect();
    assert_eq!(named_b.len(), 1, "C appears under B's name: {hosts:?}");
    let (_, filtered) = a.get("/catalog/panels?node=Host%20B", &token).await.unwrap();
    assert!(!filtered.to_string().contains(c.peer_id()), "{filtered}");
    let view = a.federation_view().await.unwrap();
    let member_c = view["members"].as_array().unwrap().iter().find(|m| m["peer_id"] == c.peer_id()).unwrap().clone();
    assert_eq!((member_c["institution"].as_str(), &member_c["advertised"]["differs"]), (Some("Host C"), &json!(true)));

    // Jobs pinned to B, by institution and by PeerId, all run at B.
    let pins = ["Host B/sim".to_string(), format!("{}/sim", b.peer_id()), "host b/sim".to_string()];
    let mut ids = Vec::new();
    for pin in &pins {
        ids.push(submit_targets(a, &token, &[("panel", pin), ("build", "hg19"), ("mode", "qc_only")]).await);
    }
    for id in &ids {
        let done = wait_state(a, &token, id, &["completed", "failed"], Duration::from_secs(180)).await;
        assert_eq!(done["state"], "completed", "{done}");
        assert_eq!(done["peer"], b.peer_id(), "{done}");
        assert_eq!(done["peer_institution"], "Host B");
    }
    // C received no job and no byte.
    assert!(c.audit("job.received").await.unwrap().is_empty());
    assert_eq!(metric(c, r#"fedimpute_transfer_bytes_total{direction="received",kind="input"}"#).await, 0);
    assert_eq!(metric(a, SENT_INPUT).await, 3 * std::fs::metadata(test_data("targets.vcf.gz")).unwrap().len());

    // The CLI says where the job ran by the signed name.
    let ca = a.data_dir().join("tls/api.crt").display().to_string();
    let out = fedimpute(&["job", "status", "--node", &a.base_url(), "--token", &token, "--ca-cert", &ca, &ids[0]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("runs at:  Host B"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_wes_server_gets_no_node_file_and_its_token_goes_nowhere_else() {
    install_crypto_provider();
    let wes = HostileWes::start().await;
    // Another server, where a hostile answer points: it must never hear from the node.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let elsewhere_url = format!("http://{}", elsewhere.local_addr().unwrap());
    let contacted = Arc::new(AtomicUsize::new(0));
    let counter = contacted.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = elsewhere.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });

    let mut node = TestNode::init("Wraps WES").unwrap();
    add_panel(&node, "sim");
    edit_config(&node, |c| c.replace("poll_secs = 10", "poll_secs = 1"));
    node.start().await.unwrap();
    let admin = node.admin_token().await.unwrap();
    let data = node.data_dir();
    let outputs = tempfile::tempdir().unwrap();
    let register = |id: &str, workflow: &str, outputs_dir: Option<&Path>| {
        json!({"kind": "wes", "id": id, "url": wes.url, "token": "wes-secret-token-77",
               "workflow_url": workflow, "outputs_dir": outputs_dir.map(|d| d.display().to_string()),
               "panels": [{"key": "file:///srv/panels/sim.bref3", "id": "sim-wes", "name": "Sim", "populations": [], "builds": ["hg19"]}]})
    };

    // A workflow is shipped (by name) or on the web; never a file of the node.
    for bad in [data.join("node.key").display().to_string(), format!("file://{}", data.join("node.key").display())] {
        let (status, body) =
            node.send(Method::POST, "/services", &admin, &register("w-bad", &bad, None)).await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("shipped with fedimpute"), "{body}");
    }
    let (status, body) = node
        .send(Method::POST, "/services", &admin, &register("wes", "beagle-impute.cwl", Some(outputs.path())))
        .await
        .unwrap();
    assert_eq!((status, body["status"].as_str()), (StatusCode::CREATED, Some("available")), "{body}");

    let secrets: Vec<Vec<u8>> =
        ["node.key", "jwt.key", "tls/api.key"].iter().map(|f| std::fs::read(data.join(f)).unwrap()).collect();
    let hostile_answers = [
        json!({"imputed": {"class": "File", "location": format!("file://{}", data.join("node.key").display())},
               "log": {"class": "File", "location": format!("file://{}", data.join("jwt.key").display())}}),
        json!({"imputed": {"class": "File", "location": format!("{elsewhere_url}/imputed.vcf.gz")},
               "log": {"class": "File", "location": format!("{elsewhere_url}/log.txt")}}),
    ];
    for answer in hostile_answers {
        wes.answer_with(answer);
        let id = submit_targets(&node, &admin, &[("panel", "sim-wes"), ("engine", "wes"), ("build", "hg19")]).await;
        let done = wait_state(&node, &admin, &id, &["completed", "failed"], Duration::from_secs(60)).await;
        assert_eq!(done["state"], "failed", "{done}");
        let error = done["error"].as_str().unwrap();
        assert!(error.contains("gave an output location that"), "{error}");
    }
    // What the server received: the shipped workflow and the input, never a node file.
    let runs = wes.runs();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let names: Vec<&str> = run.attachments.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["beagle-impute.cwl", "targets.vcf.gz"], "{run:?}");
        assert!(String::from_utf8_lossy(&run.attachments[0].1).contains("Beagle 5.4"));
        assert_eq!(run.authorization.as_deref(), Some("Bearer wes-secret-token-77"));
    }
    assert_eq!(contacted.load(Ordering::SeqCst), 0, "the node sent a request to another origin");
    // No byte of a key file in any result, work file or the node's log.
    let mut places = walk(&data.join("jobs"));
    places.push(data.join("../node.log"));
    for path in places {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
                "{} holds a key file",
                path.display()
            );
        }
    }
}

/// Every file under `dir` with this SHA-256.
fn files_with_digest(dir: &Path, sha: &str) -> Vec<String> {
    walk(dir).into_iter().filter(|p| p.is_file() && sha256_of(p) == sha).map(|p| p.display().to_string()).collect()
}

async fn stored_bytes(node: &TestNode, token: &str) -> i64 {
    node.get("/me", token).await.unwrap().1["stored_bytes"].as_i64().unwrap()
}

async fn result_bytes(node: &TestNode, token: &str, ids: &[String]) -> i64 {
    let mut total = 0;
    for id in ids {
        let (_, results) = node.get(&format!("/jobs/{id}/results"), token).await.unwrap();
        total += results.as_array().into_iter().flatten().map(|r| r["size"].as_i64().unwrap()).sum::<i64>();
    }
    total
}

async fn cancel(node: &TestNode, token: &str, id: &str) {
    let (status, body) = node.send(Method::POST, &format!("/jobs/{id}/cancel"), token, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Waits for a job to be in `state` with a stage that satisfies `stage`.
async fn wait_stage(node: &TestNode, token: &str, id: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let ok = wait_for(what, Duration::from_secs(120), || async {
        let (_, job) = node.get(&format!("/jobs/{id}"), token).await?;
        Ok(check(&job))
    })
    .await;
    if let Err(e) = ok {
        panic!("{e}: {}", node.get(&format!("/jobs/{id}"), token).await.unwrap().1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_jobs_leave_no_genotypes_anywhere_and_files_at_rest_are_private() {
    // B pulls slowly (the input takes seconds to arrive) and runs one engine at a time, whose
    // Java takes a while to start: a job B runs is still running when the next one arrives
    // (however fast Beagle is that day), so that one queues.
    let slow = tempfile::tempdir().unwrap();
    let slow_java = slow.path().join("java");
    std::fs::write(&slow_java, "#!/bin/sh\nsleep 30\nexec java \"$@\"\n").unwrap();
    std::fs::set_permissions(&slow_java, std::fs::Permissions::from_mode(0o755)).unwrap();
    let java = format!("java = \"{}\"", slow_java.display());
    let fed = federation(1, |i, c| match i {
        1 => with_transfer(set(c, "java = \"java\"", &java), "max_bytes_per_sec = 3000\npoll_secs = 1"),
        _ => with_transfer(c, "poll_secs = 1"),
    })
    .await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);
    let (ta, tb) = (a.admin_token().await.unwrap(), b.admin_token().await.unwrap());
    let (before_a, before_b) = (stored_bytes(a, &ta).await, stored_bytes(b, &tb).await);
    let params = [("panel", "sim"), ("build", "hg19"), ("engine", "beagle")];
    let sha = sha256_of(&test_data("targets.vcf.gz"));

    // Origin job cancelled while the host pulls its input.
    let transferring = submit_targets(a, &ta, &params).await;
    wait_stage(a, &ta, &transferring, "the host pulling the input", |j| j["state"] == "transferring").await;
    wait_stage(b, &tb, &transferring, "the host receiving the input", |j| j["state"] == "received").await;
    cancel(a, &ta, &transferring).await;

    // Origin job running at the host, and one queued behind it there: both cancelled.
    let running = submit_targets(a, &ta, &params).await;
    wait_stage(b, &tb, &running, "the host imputing", |j| j["state"] == "running" && j["stage"] != "qc").await;
    let queued = submit_targets(a, &ta, &params).await;
    wait_stage(b, &tb, &queued, "the second job queued at the host", |j| j["state"] == "queued").await;
    cancel(a, &ta, &queued).await;
    cancel(a, &ta, &running).await;

    // A host job cancelled by the host's admin while it runs.
    let at_host = submit_targets(a, &ta, &params).await;
    wait_stage(b, &tb, &at_host, "the host running it", |j| j["state"] == "running").await;
    cancel(b, &tb, &at_host).await;
    wait_stage(a, &ta, &at_host, "the origin hearing of the cancel", |j| j["state"] == "cancelled").await;

    // Local jobs at B, running and queued.
    let local_running = submit_targets(b, &tb, &params).await;
    wait_stage(b, &tb, &local_running, "the local job running", |j| j["state"] == "running").await;
    let local_queued = submit_targets(b, &tb, &params).await;
    wait_stage(b, &tb, &local_queued, "the local job queued", |j| j["state"] == "queued").await;
    cancel(b, &tb, &local_queued).await;
    cancel(b, &tb, &local_running).await;

    let forwarded = [transferring, running, queued, at_host];
    for id in &forwarded {
        wait_stage(b, &tb, id, "the host to purge the job", |j| j["state"] == "purged").await;
    }
    wait_for("no copy of the input on either node", Duration::from_secs(30), || async {
        Ok(files_with_digest(&a.data_dir(), &sha).is_empty() && files_with_digest(&b.data_dir(), &sha).is_empty())
    })
    .await
    .unwrap_or_else(|e| {
        panic!("{e}: A {:?} B {:?}", files_with_digest(&a.data_dir(), &sha), files_with_digest(&b.data_dir(), &sha))
    });
    let all: Vec<&String> = forwarded.iter().chain([&local_running, &local_queued]).collect();
    for node in [a, b] {
        for id in &all {
            for left in ["inputs", "work"] {
                let dir = node.data_dir().join("jobs").join(id).join(left);
                assert!(!dir.exists(), "{} remains", dir.display());
            }
            assert!(!node.data_dir().join("transfers").join(id).exists());
        }
    }
    for (node, token, ids) in
        [(a, &ta, forwarded.to_vec()), (b, &tb, vec![local_running.clone(), local_queued.clone()])]
    {
        for id in &ids {
            let (_, job) = node.get(&format!("/jobs/{id}"), token).await.unwrap();
            assert_eq!(job["state"], "cancelled", "{job}");
        }
        let deleted = node.audit("job.inputs_deleted").await.unwrap();
        assert!(ids.iter().all(|id| deleted.iter().any(|e| e["target"] == *id)), "{deleted:?}");
    }
    // Storage use is back to what it was, plus what the cancelled jobs had already written.
    assert_eq!(stored_bytes(a, &ta).await, before_a + result_bytes(a, &ta, &forwarded).await);
    let local = [local_running, local_queued];
    assert_eq!(stored_bytes(b, &tb).await, before_b + result_bytes(b, &tb, &local).await);

    // Files at rest are the node user's alone.
    for node in [a, b] {
        let data = node.data_dir();
        let mut entries = vec![data.clone()];
        entries.extend(walk_all(&data));
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            let want = if meta.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode, want, "{} has mode {mode:o}", path.display());
        }
    }
}

/// Every file and folder below `dir`.
fn walk_all(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_all(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_others_can_write_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("open");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = fedimpute(&["init", "--data-dir", data.to_str().unwrap(), "--institution", "X"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("can be written by other users"));
    assert!(!data.join("node.key").exists());

    let mut node = TestNode::init("Inst").unwrap();
    std::fs::set_permissions(node.data_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = node.start().await.unwrap_err().to_string();
    assert!(err.contains("can be written by other users"), "{err}");
}

/// The role table of docs/API.md, route by route: the status each role gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_role_as_the_role_table_says() {
    let node = node_with_panel().await;
    let admin = node.admin_token().await.unwrap();
    let mut tokens = Vec::new();
    // A second admin with the others' password, so one token-creation body fits every role.
    for role in ["admin", "researcher", "auditor", "viewer"] {
        let user = json!({"username": format!("a-{role}"), "role": role, "password": "correct horse battery staple 9"});
        let (status, body) = node.send(Method::POST, "/users", &admin, &user).await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.push((role, node.token_for(&format!("a-{role}"), "correct horse battery staple 9").await.unwrap()));
    }
    let researcher = &tokens[1].1;
    let job = submit_targets(&node, researcher, &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")]).await;
    let done = wait_state(&node, researcher, &job, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "completed", "{done}");

    let j = |p: &str| format!("/jobs/{job}{p}");
    let none = Value::Null;
    let bad_user = json!({"username": "", "role": "viewer"});
    let token_req = json!({"name": "t", "expires_in_days": 1, "password": "correct horse battery staple 9"});
    let weak_password = json!({"current_password": "correct horse battery staple 9", "new_password": "short"});
    // (method, path, body, [admin, researcher, auditor, viewer])
    let table: Vec<(Method, String, Value, [u16; 4])> = vec![
        (Method::GET, "/me".into(), none.clone(), [200, 200, 200, 200]),
        (Method::GET, "/me/tokens".into(), none.clone(), [200, 200, 200, 200]),
        (Method::POST, "/me/tokens".into(), token_req, [201, 201, 201, 201]),
        (Method::PUT, "/me/password".into(), weak_password, [422, 422, 422, 422]),
        (Method::GET, "/users".into(), none.clone(), [200, 403, 403, 403]),
        (Method::POST, "/users".into(), bad_user, [422, 403, 403, 403]),
        (Method::PATCH, "/users/999999".into(), json!({}), [404, 403, 403, 403]),
        (Method::POST, "/users/999999/reset-password".into(), json!({}), [404, 403, 403, 403]),
        (Method::GET, "/audit".into(), none.clone(), [200, 403, 200, 403]),
        (Method::GET, "/audit/verify".into(), none.clone(), [200, 403, 200, 403]),
        (Method::GET, "/federation".into(), none.clone(), [200, 200, 200, 200]),
        (Method::POST, "/federation/config".into(), json!({}), [422, 403, 403, 403]),
        (Method::GET, "/catalog/panels".into(), none.clone(), [200, 200, 200, 200]),
        (Method::GET, "/catalog/services".into(), none.clone(), [200, 200, 200, 200]),
        (Method::GET, "/panels".into(), none.clone(), [200, 200, 200, 200]),
        (Method::POST, "/panels".into(), json!({}), [422, 403, 403, 403]),
        (Method::DELETE, "/panels/no-such-panel".into(), none.clone(), [404, 403, 403, 403]),
        (Method::GET, "/jobs".into(), none.clone(), [200, 200, 200, 200]),
        (Method::GET, j(""), none.clone(), [200, 200, 200, 404]),
        (Method::GET, j("/events"), none.clone(), [200, 200, 200, 404]),
        (Method::GET, j("/results"), none.clone(), [200, 200, 200, 404]),
        (Method::GET, j("/results/qc_report.json"), none.clone(), [200, 200, 403, 403]),
        (Method::POST, j("/cancel"), none.clone(), [409, 409, 403, 403]),
        (Method::POST, j("/retry"), none.clone(), [409, 409, 403, 403]),
        (Method::GET, "/node".into(), none.clone(), [200, 403, 403, 403]),
        (Method::GET, "/services".into(), none.clone(), [200, 403, 403, 403]),
        (Method::POST, "/services".into(), json!({}), [422, 403, 403, 403]),
        (Method::DELETE, "/services/no-such-service".into(), none.clone(), [404, 403, 403, 403]),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &table {
        for ((role, token), want) in tokens.iter().zip(expected) {
            let mut req = node.client().request(method.clone(), node.api(path)).bearer_auth(token);
            if !body.is_null() {
                req = req.json(body);
            }
            let got = req.send().await.unwrap().status().as_u16();
            if got != *want {
                wrong.push(format!("{method} {path} as {role}: {got}, documented {want}"));
            }
        }
    }
    // Job submission is multipart: researchers and admins get past the role check (and are
    // refused for sending no file); auditors and viewers are not.
    for ((role, token), want) in tokens.iter().zip([422, 422, 403, 403]) {
        let form = reqwest::multipart::Form::new().text("panel", "sim");
        let got = node.client().post(node.api("/jobs")).bearer_auth(token).multipart(form).send().await.unwrap();
        if got.status().as_u16() != want {
            wrong.push(format!("POST /jobs as {role}: {}, documented {want}", got.status()));
        }
    }
    assert!(wrong.is_empty(), "answers that differ from the role table:\n{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_before_its_job_was_recorded_leaves_nothing_after_a_restart() {
    let mut node = TestNode::init("Inst").unwrap();
    // What a crash mid-upload leaves: a partial input in a folder no job owns.
    let orphan = node.data_dir().join("jobs/0123456789abcdef01234567/inputs");
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::copy(test_data("targets.vcf.gz"), orphan.join("0.vcf.gz.part")).unwrap();
    node.start().await.unwrap();
    wait_for("the orphaned upload to be removed", Duration::from_secs(20), || async {
        Ok(!orphan.parent().unwrap().exists())
    })
    .await
    .unwrap();
}

/// A non-member mints a new key for every dial: each key is refused, and the member's audit
/// log still gets a bounded number of rows (refusals are keyed by address, not by PeerId).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_dialing_with_a_new_key_each_time_writes_a_bounded_number_of_audit_rows() {
    let fed = federation(0, |_, config| config).await;
    let member = &fed.nodes[0];
    let real = FederationConfig::from_json(&std::fs::read_to_string(&fed.config).unwrap()).unwrap();
    let mut dialers = Vec::new();
    for _ in 0..30 {
        // A config of its own making that lists it beside the member, so it dials the member,
        // which refuses it at the TLS handshake.
        let identity = NodeIdentity::generate();
        let mut own = real.clone();
        own.edit(|doc| {
            doc.members.push(fedimpute_protocol::federation::Member {
                peer_id: identity.peer_id().to_string(),
                institution: "Outsider".into(),
                addresses: vec![],
                roles: vec![],
                tags: Default::default(),
            })
        })
        .unwrap();
        let (tx, watch) = tokio::sync::watch::channel(Some(Arc::new(own)));
        let listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        let (network, events) = Network::spawn(&identity, NetworkConfig::listening_on(listen), watch).unwrap();
        dialers.push((tx, network, events));
    }
    wait_for("thirty refused connections", Duration::from_secs(60), || async {
        Ok(metric(member, "fedimpute_refused_connections_total{direction=\"inbound\"}").await >= 30)
    })
    .await
    .unwrap();
    let rows = member.audit("p2p.connection").await.unwrap();
    assert!(!rows.is_empty() && rows.len() <= 3, "{} audit rows for 30 refused keys", rows.len());
}
