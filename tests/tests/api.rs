//! HTTP plumbing: health, readiness, metrics, OpenAPI, error format, request ids, body limits.

use fedimpute_tests::{TestNode, install_crypto_provider};
use reqwest::StatusCode;
use serde_json::Value;

async fn running_node() -> TestNode {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    node
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let node = running_node().await;
    let client = node.client();
    let health = client.get(format!("{}/healthz", node.base_url())).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready: Value = client.get(format!("{}/readyz", node.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");

    node.admin_token().await.unwrap();
    let _ = node.get("/me", "bad").await.unwrap();
    let metrics = client.get(format!("{}/metrics", node.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"fedimpute_http_requests_total{method="POST",route="/api/v1/auth/login",status="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"route="/api/v1/me",status="401""#), "{metrics}");
    assert!(metrics.contains("fedimpute_http_request_duration_seconds_bucket"), "{metrics}");
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint() {
    let node = running_node().await;
    let doc: Value = node.client().get(node.api("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/me/tokens/{id}",
        "/api/v1/users/{id}/reset-password",
        "/api/v1/audit",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // Generated clients name their methods after operationIds: every operation has one, and
    // no two share it.
    let mut ids = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            ids.push(id.to_string());
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "repeated operationIds: {ids:?}");
    assert!(ids.contains(&"submitJob".to_string()) && ids.contains(&"listJobs".to_string()), "{ids:?}");
    // The multipart body of a job submission has its schema: the files and the fields.
    let body = &paths["/api/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"];
    let reference = body["$ref"].as_str().expect("a schema for the submission");
    let schema = &doc["components"]["schemas"][reference.rsplit('/').next().unwrap()];
    assert_eq!(schema["properties"]["files"]["items"]["format"], "binary", "{schema}");
    for field in ["panel", "build", "engine", "phasing", "r2_filter", "mode", "repair"] {
        assert!(schema["properties"][field].is_object(), "{field} missing: {schema}");
    }
    assert_eq!(schema["required"], serde_json::json!(["files", "panel", "build"]));

    // Every answer a client can get is described: the credential and role errors of every
    // secured operation, the unreadable-parameter and not-found answers of every operation
    // with a path parameter, and the body errors of every operation taking a body, each an
    // ErrorBody whose `details` may be null.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(has("401") && has("403"), "{method} {path}: {:?}", responses.keys());
            }
            if path.contains('{') {
                assert!(has("400") && has("404"), "{method} {path}: {:?}", responses.keys());
            }
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413") && has("415"), "{method} {path}: {:?}", responses.keys());
            }
        }
    }
    let detail = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["details"];
    assert!(detail.to_string().contains("null"), "details is documented as nullable: {detail}");
}

#[tokio::test]
async fn errors_are_json_with_a_code_and_every_response_has_a_request_id() {
    let node = running_node().await;
    let client = node.client();
    let resp = client.get(node.api("/no/such/thing")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let resp = client
        .post(node.api("/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    let resp = client.post(node.api("/auth/login")).body("username=a").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A job submission that is not multipart is refused in the same format (schemathesis found
    // it answered in plain text).
    let admin = node.admin_token().await.unwrap();
    let resp = client.post(node.api("/jobs")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    // A body that is JSON but not an object is refused, even where every field is optional
    // (serde alone takes `[null, null]` as a struct; schemathesis found it).
    for body in ["[null, null]", "[]", "7", "null"] {
        let resp = client
            .patch(node.api("/me"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }

    // A client-chosen request id is echoed and appears in the node's log.
    let resp =
        client.get(format!("{}/healthz", node.base_url())).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(node.log().contains("trace-me-42"), "request id not in the log");
}

#[tokio::test]
async fn an_oversized_body_is_413_in_the_error_format() {
    let node = running_node().await;
    // Just over the 1 MiB limit: small enough that the whole body is in the socket's buffers
    // before the node answers and closes (a much larger one can meet a reset instead).
    let huge = format!(r#"{{"username":"admin","password":"{}"}}"#, "x".repeat(1024 * 1024 + 64 * 1024));
    let resp = node
        .client()
        .post(node.api("/auth/login"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    install_crypto_provider();
    let node = TestNode::init("Inst A").unwrap();
    let out = std::process::Command::new(fedimpute_tests::fedimpute_bin())
        .args(["--log-format", "json", "run", "--config", &node.config_arg()])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = out.id() as i32;
    let addr = node.data_dir().join("api.addr");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !addr.exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let output = out.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "{stderr}");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn the_web_ui_is_served_from_the_binary_under_a_strict_content_security_policy() {
    let node = running_node().await;
    let client = node.client();
    let index = client.get(format!("{}/", node.base_url())).send().await.unwrap();
    assert_eq!(index.status(), StatusCode::OK);
    let csp = index.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(index.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = index.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js">"#), "{html}");
    let app = client.get(format!("{}/ui/app.js", node.base_url())).send().await.unwrap();
    assert_eq!(app.status(), StatusCode::OK);
    assert!(app.headers()["content-type"].to_str().unwrap().contains("javascript"));
    let missing = client.get(format!("{}/ui/../node.toml", node.base_url())).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let missing = client.get(format!("{}/ui/nope.js", node.base_url())).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_node_view_shows_its_policy_to_admins_only() {
    let node = running_node().await;
    let admin = node.admin_token().await.unwrap();
    let (status, view) = node.get("/node", &admin).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["institution"], "Inst A");
    assert_eq!(view["peer_id"], node.peer_id());
    assert_eq!(view["policy"]["accept_from"], serde_json::json!([]));
    assert!(view["transfer"]["peer_timeout_secs"].as_u64().unwrap() > 0);
    let (_, user) = node
        .send(reqwest::Method::POST, "/users", &admin, &serde_json::json!({"username": "rosa", "role": "researcher"}))
        .await
        .unwrap();
    let rosa = node.first_login("rosa", user["generated_password"].as_str().unwrap()).await.unwrap();
    assert_eq!(node.get("/node", &rosa).await.unwrap().0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn readiness_tells_of_a_full_disk_and_a_config_about_to_expire() {
    use fedimpute_tests::FederationAdmins;
    use fedimpute_tests::jobs::{edit_config, set};
    fedimpute_tests::install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut node = fedimpute_tests::TestNode::init("Inst A").unwrap();
    let fed = admins.new_config("fed.json", "expiring", 1, &[&node], &["--expires-in-days", "3"]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    assert!(node.apply(&[&fed]).status.success());
    // More free space asked for than any disk has.
    edit_config(&node, |c| set(c, "min_free_disk_bytes = 2147483648", "min_free_disk_bytes = 9000000000000000000"));
    node.start().await.unwrap();
    let client = node.client();
    // Degraded, not down: it still serves, and says why.
    let ready = client.get(format!("{}/readyz", node.base_url())).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("bytes free in the data directory"), "{reasons}");
    assert!(reasons.contains("the federation config expires in 2 days"), "{reasons}");
    let metrics = client.get(format!("{}/metrics", node.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("fedimpute_federation_config_expiry_days 2"), "{metrics}");
    let free = metrics.lines().find(|l| l.starts_with("fedimpute_data_dir_free_bytes ")).unwrap();
    assert!(free.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0, "{free}");
}
