//! `fedimpute init` and `fedimpute run` as real processes: files, refusal to overwrite, config
//! errors, and a clean shutdown on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use fedimpute_tests::{TestNode, fedimpute, fedimpute_bin, install_crypto_provider};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn peer_id_line(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout).lines().find(|l| l.contains("PeerId")).unwrap_or_default().to_string()
}

#[tokio::test]
async fn init_creates_private_keys_and_a_working_database() {
    let node = TestNode::init("Inst A").unwrap();
    let data = node.data_dir();
    for key in ["node.key", "jwt.key", "tls/api.key"] {
        assert_eq!(mode(&data.join(key)), 0o600, "{key} must be mode 0600");
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", node.db_path().display())).await.unwrap();
    let (name, role): (String, String) =
        sqlx::query_as("SELECT username, role FROM users").fetch_one(&pool).await.unwrap();
    assert_eq!((name.as_str(), role.as_str()), ("admin", "admin"));
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&pool).await.unwrap();
    assert_eq!(journal, "wal");
    pool.close().await;
    let verify = fedimpute(&["audit", "verify", "--config", &node.config_arg()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn init_generates_and_prints_a_one_time_admin_password_when_none_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let out = fedimpute(&["init", "--data-dir", dir.path().to_str().unwrap(), "--institution", "X"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("one-time password"), "{stdout}");
    assert!(stdout.contains("12D3KooW"), "init prints the PeerId: {stdout}");
}

#[test]
fn init_twice_without_force_fails_and_force_replaces_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let first = fedimpute(&["init", "--data-dir", data, "--institution", "X"]);
    assert!(first.status.success());
    let key_before = std::fs::read(dir.path().join("node.key")).unwrap();

    let second = fedimpute(&["init", "--data-dir", data, "--institution", "Y"]);
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already holds a node") && stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("node.key")).unwrap(), key_before, "refused init changed the key");

    let forced = fedimpute(&["init", "--data-dir", data, "--institution", "Y", "--force"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    assert_ne!(std::fs::read(dir.path().join("node.key")).unwrap(), key_before);
    assert_ne!(peer_id_line(&first.stdout), peer_id_line(&forced.stdout));
}

#[test]
fn init_refuses_a_weak_admin_password_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "short\n").unwrap();
    let data = dir.path().join("node");
    let out = fedimpute(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--institution",
        "X",
        "--admin-password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "a refused init wrote files");
}

#[test]
fn a_config_error_names_the_key_and_the_file() {
    let node = TestNode::init("Inst A").unwrap();
    let path = node.config_path();
    let original = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, original.replace("[auth]", "[auth]\nmax_failed_loginz = 3")).unwrap();
    let out = Command::new(fedimpute_bin()).args(["run", "--config", &node.config_arg()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("max_failed_loginz") && stderr.contains(&node.config_arg()), "{stderr}");

    std::fs::write(&path, original.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:http\"")).unwrap();
    let out = Command::new(fedimpute_bin()).args(["run", "--config", &node.config_arg()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("listen") && stderr.contains(&node.config_arg()), "{stderr}");
}

#[tokio::test]
async fn sigterm_exits_0_and_leaves_the_database_intact() {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    node.admin_token().await.unwrap();
    let status = node.stop_with(libc::SIGTERM).unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{}", node.log());
    assert!(!node.data_dir().join("api.addr").exists(), "api.addr is removed on a clean stop");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", node.db_path().display())).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
    assert_eq!(integrity, "ok");
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log ORDER BY seq").fetch_all(&pool).await.unwrap();
    pool.close().await;
    assert_eq!(actions.last().map(String::as_str), Some("node.stop"), "{actions:?}");
    assert!(actions.contains(&"node.start".to_string()) && actions.contains(&"auth.login".to_string()));
    let verify = fedimpute(&["audit", "verify", "--config", &node.config_arg()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    // The node starts again on the same files.
    node.start().await.unwrap();
    node.admin_token().await.unwrap();
    assert_eq!(node.stop_with(libc::SIGINT).unwrap().code(), Some(0));
}

/// systemd's readiness protocol (sd_notify(3)): a `Type=notify` service sends `READY=1` as a
/// datagram to the socket named by `NOTIFY_SOCKET`; here the test holds that socket.
#[tokio::test]
async fn under_systemd_the_node_says_ready_once_it_serves_and_stopping_on_sigterm() {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("notify.sock");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    node.start_with_env(&[("NOTIFY_SOCKET", path.as_os_str())]).await.unwrap();
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).unwrap_or_else(|e| panic!("no readiness notification: {e}\n{}", node.log()));
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "READY=1");
    let ready = node.client().get(format!("{}/readyz", node.base_url())).send().await.unwrap();
    assert!(ready.status().is_success(), "ready by systemd's word, not by /readyz's: {}", ready.status());

    let status = node.stop_with(libc::SIGTERM).unwrap();
    assert_eq!(status.code(), Some(0));
    let n = manager.recv(&mut buf).expect("no stopping notification");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
}

#[tokio::test]
async fn requests_in_flight_finish_during_graceful_shutdown() {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    // A login takes a noticeable argon2 computation; send it, then SIGTERM while it runs.
    let client = node.client();
    let url = node.api("/auth/login");
    let body = serde_json::json!({"username": "admin", "password": fedimpute_tests::ADMIN_PASSWORD});
    let request = tokio::spawn(async move { client.post(url).json(&body).send().await.map(|r| r.status()) });
    // Signal only once the server has the request (the trace layer logs it at debug level).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.log().lines().any(|l| l.contains("path=/api/v1/auth/login") && l.contains("started processing")) {
        assert!(std::time::Instant::now() < deadline, "request never reached the node:\n{}", node.log());
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let status = node.stop_with(libc::SIGTERM).unwrap();
    assert_eq!(status.code(), Some(0));
    let answered = request.await.unwrap();
    // Either the request finished before the signal or during the grace period; it must not be
    // cut off half-way (a connection error) once the server had accepted it.
    assert_eq!(answered.map_err(|e| e.to_string()).unwrap(), reqwest::StatusCode::OK, "log:\n{}", node.log());
}

/// The first schema the project shipped (tests/data/schema-0001.sql: migration 0001 alone)
/// upgrades through every later migration, and the node starts on it with its users intact.
#[tokio::test]
async fn a_database_of_the_first_schema_upgrades_and_the_node_starts() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    let db = node.db_path();
    // The admin as init made them, to carry into the old database.
    let open = |create: bool| {
        let options = SqliteConnectOptions::new().filename(&db).create_if_missing(create);
        SqlitePoolOptions::new().max_connections(1).connect_with(options)
    };
    let today = open(false).await.unwrap();
    let (username, hash): (String, String) =
        sqlx::query_as("SELECT username, password_hash FROM users WHERE role = 'admin'")
            .fetch_one(&today)
            .await
            .unwrap();
    today.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let old = open(true).await.unwrap();
    let fixture = std::fs::read_to_string(fedimpute_tests::test_data("schema-0001.sql")).unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(fixture)).execute(&old).await.unwrap();
    sqlx::query("INSERT INTO users (username, password_hash, role, disabled, created_at, updated_at) VALUES (?, ?, 'admin', 0, 1, 1)")
        .bind(&username)
        .bind(&hash)
        .execute(&old)
        .await
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&old).await.unwrap();
    assert_eq!(applied, 1, "the fixture holds the first migration only");
    old.close().await;

    node.start().await.unwrap();
    let token = node.admin_token().await.expect("the admin logs in on the upgraded database");
    let (status, me) = node.get("/me", &token).await.unwrap();
    assert!(status.is_success(), "{me}");
    assert_eq!(me["email_notifications"], true, "columns of later migrations have their defaults: {me}");
    let ready: serde_json::Value =
        node.client().get(format!("{}/readyz", node.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let verify = fedimpute(&["audit", "verify", "--config", &node.config_arg()]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}
