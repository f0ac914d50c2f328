//! The audit log: what is recorded, how it is read, and `fedimpute audit verify` against a
//! database file edited behind the node's back.

use fedimpute_tests::{ADMIN_PASSWORD, TestNode, fedimpute, install_crypto_provider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::SqlitePool;

/// A stopped node whose log holds a dozen rows of real activity.
async fn node_with_history() -> TestNode {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    let admin = node.admin_token().await.unwrap();
    node.login("admin", "a wrong password here").await.unwrap();
    node.send(Method::POST, "/users", &admin, &json!({"username": "rita", "role": "researcher"})).await.unwrap();
    node.create_api_token(&admin, ADMIN_PASSWORD, "t", 1).await.unwrap();
    node.admin_token().await.unwrap();
    assert_eq!(node.stop_with(libc::SIGTERM).unwrap().code(), Some(0));
    node
}

async fn open(node: &TestNode) -> SqlitePool {
    SqlitePool::connect(&format!("sqlite:{}", node.db_path().display())).await.unwrap()
}

fn verify(node: &TestNode) -> (bool, String) {
    let out = fedimpute(&["audit", "verify", "--config", &node.config_arg()]);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn logins_tokens_and_user_changes_are_recorded_with_actor_and_source() {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    let admin = node.admin_token().await.unwrap();
    node.login("admin", "a wrong password here").await.unwrap();
    let (_, rita) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "rita", "role": "researcher"})).await.unwrap();
    let rid = rita["id"].as_i64().unwrap();
    node.send(Method::PATCH, &format!("/users/{rid}"), &admin, &json!({"role": "auditor", "disabled": true}))
        .await
        .unwrap();
    let (_, tok) = node.create_api_token(&admin, ADMIN_PASSWORD, "t", 1).await.unwrap();
    node.send(Method::DELETE, &format!("/me/tokens/{}", tok["id"]), &admin, &Value::Null).await.unwrap();

    let (status, page) = node.get("/audit?limit=100", &admin).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let entries = page["entries"].as_array().unwrap();
    let find = |action: &str, outcome: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .cloned()
            .unwrap_or_else(|| panic!("no {action}/{outcome} in {page}"))
    };
    let ok = find("auth.login", "success");
    assert_eq!((ok["actor"].as_str(), ok["source_ip"].as_str()), (Some("user:admin"), Some("127.0.0.1")));
    let failed = find("auth.login", "failure");
    assert!(failed["details"].as_str().unwrap().contains("wrong password"));
    assert!(!page.to_string().contains(ADMIN_PASSWORD), "a password reached the audit log");
    assert_eq!(find("user.create", "success")["target"], "rita");
    assert_eq!(find("user.set_role", "success")["target"], "rita");
    assert_eq!(find("user.disable", "success")["target"], "rita");
    find("token.create", "success");
    find("token.revoke", "success");
    find("node.start", "success");
    find("node.init", "success");

    // Filters and paging.
    let (_, logins) = node.get("/audit?action=auth.&outcome=failure", &admin).await.unwrap();
    let logins = logins["entries"].as_array().unwrap();
    assert_eq!(logins.len(), 1);
    let (_, first_page) = node.get("/audit?limit=2", &admin).await.unwrap();
    let before = first_page["next_before"].as_i64().unwrap();
    let (_, second) = node.get(&format!("/audit?limit=2&before={before}"), &admin).await.unwrap();
    assert!(second["entries"][0]["seq"].as_i64().unwrap() < before);
    assert_eq!(node.get("/audit?since=yesterday", &admin).await.unwrap().0, StatusCode::BAD_REQUEST);

    let (_, v) = node.get("/audit/verify", &admin).await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn an_intact_log_verifies() {
    let node = node_with_history().await;
    let (ok, out) = verify(&node);
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test]
async fn a_changed_field_is_found_and_named() {
    let node = node_with_history().await;
    let pool = open(&node).await;
    sqlx::query("UPDATE audit_log SET outcome = 'success' WHERE seq = 4").execute(&pool).await.unwrap();
    pool.close().await;
    let (ok, out) = verify(&node);
    assert!(!ok);
    assert!(out.contains("seq=4"), "{out}");
}

#[tokio::test]
async fn a_deleted_row_is_found_and_named() {
    let node = node_with_history().await;
    let pool = open(&node).await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 5").execute(&pool).await.unwrap();
    pool.close().await;
    let (ok, out) = verify(&node);
    assert!(!ok);
    assert!(out.contains("seq=5") && out.contains("missing"), "{out}");
}

#[tokio::test]
async fn two_swapped_rows_are_found() {
    let node = node_with_history().await;
    let pool = open(&node).await;
    // Swap the positions of rows 3 and 4 (seq is the primary key, so go through a free value).
    for sql in [
        "UPDATE audit_log SET seq = -1 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = -1",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (ok, out) = verify(&node);
    assert!(!ok);
    assert!(out.contains("seq=3"), "{out}");
}

#[tokio::test]
async fn an_inserted_row_is_found_even_with_a_correct_hash() {
    let node = node_with_history().await;
    let pool = open(&node).await;
    // Make room after row 2 and insert a row that links correctly to row 2 and whose hash is
    // computed exactly as the node would; only the node key could sign it.
    sqlx::query("UPDATE audit_log SET seq = seq + 1000 WHERE seq > 2").execute(&pool).await.unwrap();
    sqlx::query("UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000").execute(&pool).await.unwrap();
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = 2").fetch_one(&pool).await.unwrap();
    let (seq, at, actor, ip, action, target, outcome, details) =
        (3i64, 1i64, "user:admin", "127.0.0.1", "user.create", "mallory", "success", "null");
    let content = serde_json::to_vec(&(seq, at, actor, ip, action, target, outcome, details, &prev)).unwrap();
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&content));
    sqlx::query("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(seq)
        .bind(at)
        .bind(actor)
        .bind(ip)
        .bind(action)
        .bind(target)
        .bind(outcome)
        .bind(details)
        .bind(&prev)
        .bind(&hash)
        .bind("00".repeat(64))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (ok, out) = verify(&node);
    assert!(!ok);
    assert!(out.contains("seq=3") && out.contains("signature"), "{out}");
}

#[tokio::test]
async fn an_appended_unsigned_row_is_found() {
    let node = node_with_history().await;
    let pool = open(&node).await;
    let (last, prev): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_one(&pool).await.unwrap();
    sqlx::query("INSERT INTO audit_log VALUES (?, 0, 'x', 'x', 'x', 'x', 'success', 'null', ?, 'ab', 'cd')")
        .bind(last + 1)
        .bind(prev)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (ok, out) = verify(&node);
    assert!(!ok);
    assert!(out.contains(&format!("seq={}", last + 1)), "{out}");
}

/// What `GET /api/v1/audit/verify` says at `node`.
async fn verify_api(node: &TestNode) -> Value {
    let token = node.admin_token().await.unwrap();
    node.get("/audit/verify", &token).await.unwrap().1
}

/// The number of rows in `node`'s audit log, read from its database.
async fn rows(node: &TestNode) -> i64 {
    let pool = open(node).await;
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_newest_audit_rows_are_deleted_is_told_so_by_the_peer_that_witnessed_them() {
    use fedimpute_tests::federation::{FederationSpec, start};
    let fed = start(&FederationSpec {
        names: &["Logs A", "Witness B"],
        panels: &|_, _| {},
        edit: &|_, c| c,
        extra: &[],
        hosts_in_catalog: 0,
        env: &[],
    })
    .await;
    let mut nodes = fed.nodes;
    let token = nodes[0].admin_token().await.unwrap();
    for name in ["u1", "u2", "u3"] {
        nodes[0].send(Method::POST, "/users", &token, &json!({"username": name, "role": "viewer"})).await.unwrap();
    }
    let logged = rows(&nodes[0]).await;
    // B has witnessed A's head with (at least) those rows, and shows it.
    let a_peer = nodes[0].peer_id().to_string();
    fedimpute_tests::wait_for("B to witness A's audit head", std::time::Duration::from_secs(60), || async {
        let view = nodes[1].federation_view().await?;
        let a = view["members"].as_array().unwrap().iter().find(|m| m["peer_id"] == a_peer.as_str()).cloned();
        Ok(a.and_then(|a| a["witnessed_audit_rows"].as_i64()).is_some_and(|n| n >= logged))
    })
    .await
    .unwrap();
    assert_eq!(verify_api(&nodes[0]).await["intact"], true);

    for (round, delete) in ["DELETE FROM audit_log WHERE seq > 3", "DELETE FROM audit_log"].iter().enumerate() {
        // A is stopped, the end of its log deleted (and any record of an earlier report), and
        // it is started again: its chain alone still verifies.
        assert_eq!(nodes[0].stop_with(libc::SIGTERM).unwrap().code(), Some(0));
        let pool = open(&nodes[0]).await;
        sqlx::query(*delete).execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM audit_head_mismatches").execute(&pool).await.unwrap();
        pool.close().await;
        let (ok, text) = verify(&nodes[0]);
        assert!(ok, "round {round}: the truncated chain should verify on its own: {text}");
        nodes[0].start().await.unwrap();

        let a = &nodes[0];
        fedimpute_tests::wait_for("A to hear of the mismatch", std::time::Duration::from_secs(60), || async {
            Ok(verify_api(a).await["intact"] == false)
        })
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", a.log()));
        let report = verify_api(a).await;
        assert_eq!(report["ok"], true, "{report}");
        let mismatch = &report["head_mismatches"][0];
        assert_eq!(mismatch["peer_id"], nodes[1].peer_id(), "{report}");
        assert_eq!(mismatch["institution"], "Witness B", "{report}");
        assert!(mismatch["witnessed_count"].as_i64().unwrap() >= logged, "{report}");

        let ready: Value =
            a.client().get(format!("{}/readyz", a.base_url())).send().await.unwrap().json().await.unwrap();
        assert_eq!(ready["status"], "degraded", "{ready}");
        let reasons = ready["reasons"].to_string();
        assert!(reasons.contains("no longer holds what Witness B witnessed"), "{reasons}");
        let metrics = a.client().get(format!("{}/metrics", a.base_url())).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("fedimpute_audit_head_mismatches 1"), "{metrics}");
        assert!(!a.audit("audit.head_mismatch").await.unwrap().is_empty());
        let (ok, text) = verify(a);
        assert!(!ok && text.contains(nodes[1].peer_id()) && text.contains("witnessed"), "{text}");
    }
}
