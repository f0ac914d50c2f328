//! Anonymous HTTP clients against a real node: login sprays, floods of throttled attempts,
//! hundreds of parallel logins, too many or too slow connections, forged client addresses.
//! Each client plays from its own loopback address (127.0.0.x), as the node tells them apart.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedimpute_tests::{ADMIN_PASSWORD, TestNode, install_crypto_provider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A node whose node.toml has each `key = value` of `settings` in place of init's line.
async fn node_with(settings: &[&str]) -> TestNode {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    let mut config = std::fs::read_to_string(node.config_path()).unwrap();
    for setting in settings {
        let key = setting.split('=').next().unwrap().trim();
        let old = config
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} not in node.toml"))
            .to_string();
        config = config.replace(&old, setting);
    }
    std::fs::write(node.config_path(), config).unwrap();
    node.start().await.unwrap();
    node
}

async fn login_from(client: &reqwest::Client, node: &TestNode, username: &str, password: &str) -> reqwest::Response {
    client
        .post(node.api("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn add_user(node: &TestNode, name: &str, password: &str) {
    let admin = node.admin_token().await.unwrap();
    let body = json!({"username": name, "role": "researcher", "password": password});
    let (status, body) = node.send(Method::POST, "/users", &admin, &body).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spray_of_names_from_one_address_is_slowed_but_the_sprayed_user_still_logs_in_from_their_own() {
    let node = node_with(&[]).await;
    add_user(&node, "rhea", "her own passphrase 2026").await;
    let sprayer = node.client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..20 {
        let name = if i == 7 { "rhea".to_string() } else { format!("sprayed{i}") };
        // A forged X-Forwarded-For from a client that is no trusted proxy changes nothing.
        let resp = sprayer
            .post(node.api("/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"username": name, "password": "guess 123456789"}))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry_after >= 1);
        }
        statuses.push(resp.status().as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "the budget's ten attempts are answered: {statuses:?}");
    let slowed = statuses[10..].iter().filter(|s| **s == 429).count();
    assert!(slowed >= 8, "the spray is slowed after the budget: {statuses:?}");

    // Rhea, whose name was in the spray, logs in from her own address at once.
    let (status, body) = node.login("rhea", "her own passphrase 2026").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_throttled_attempts_add_a_bounded_number_of_audit_rows() {
    let node = node_with(&[]).await;
    let before = node.audit("auth.").await.unwrap().len();
    let attacker = node.client_from("127.0.0.3");
    let mut throttled = 0;
    let mut answered = 0;
    for _ in 0..1000 {
        let resp = login_from(&attacker, &node, "admin", "not the admin password").await;
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            StatusCode::UNAUTHORIZED => answered += 1,
            other => panic!("unexpected answer {other}"),
        }
    }
    assert!(throttled >= 900, "{throttled} of 1000 were throttled, {answered} checked");
    let added = node.audit("auth.").await.unwrap().len() - before;
    // The admin_token() logins of the audit helper add two rows of their own.
    assert!(added < 50, "1000 throttled attempts added {added} audit rows");

    // The bursts are accounted for: a row says how many attempts each one refused.
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    while refused == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        refused = node
            .audit("auth.login_throttled")
            .await
            .unwrap()
            .iter()
            .map(|row| {
                let details: Value = serde_json::from_str(row["details"].as_str().unwrap_or("{}")).unwrap();
                details["refused_attempts"].as_u64().unwrap_or(0)
            })
            .sum::<u64>();
    }
    assert!(refused > 0, "no auth.login_throttled row counts the refused attempts");
    // The admin is not locked out from their own address meanwhile.
    assert!(node.admin_token().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_parallel_logins_are_answered_and_the_node_stays_small() {
    let node = Arc::new(node_with(&[]).await);
    let rss_before = node.peak_rss_bytes();
    // 8 addresses x 32 logins: under the per-address connection cap, so every one is answered.
    let mut calls = Vec::new();
    for i in 0..256 {
        let node = node.clone();
        let client = node.client_from(&format!("127.0.1.{}", 1 + i % 8));
        calls.push(tokio::spawn(async move { login_from(&client, &node, "admin", ADMIN_PASSWORD).await.status() }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for call in calls {
        match call.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => busy += 1,
            other => panic!("a login got {other}"),
        }
    }
    let peak = node.peak_rss_bytes();
    assert!(ok > 0 && busy > 0, "{ok} logged in, {busy} told the node is busy");
    assert!(peak < 200 * 1024 * 1024, "peak RSS {} MB (from {} MB)", peak >> 20, rss_before >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_cap_are_closed_while_other_addresses_are_served() {
    let node = node_with(&["max_connections_per_address = 8"]).await;
    let addr: std::net::SocketAddr = node.base_url().trim_start_matches("https://").parse().unwrap();
    let connect_from = |source: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr)
    };
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from("127.0.0.5").await.unwrap());
    }
    // The node counts a connection when its task starts; let all eight be counted first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The ninth is accepted by the kernel and closed by the node at once.
    let mut ninth = connect_from("127.0.0.5").await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut ninth, &mut buf))
        .await
        .unwrap_or_else(|_| panic!("the ninth connection was neither served nor closed:\n{}", node.log()));
    assert!(matches!(read, Ok(0) | Err(_)), "the ninth connection got {read:?}");
    // Another address is served meanwhile.
    let other = node.client_from("127.0.0.6").get(format!("{}/healthz", node.base_url())).send().await.unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    // Once the held ones close, the address is served again.
    drop(held);
    let mut served = false;
    for _ in 0..50 {
        let again = node.client_from("127.0.0.5").get(format!("{}/healthz", node.base_url())).send().await;
        if again.is_ok_and(|r| r.status() == StatusCode::OK) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "127.0.0.5 is not served after closing its connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_halfway_through_its_headers_is_dropped_after_the_header_timeout() {
    let node = node_with(&["header_read_timeout_secs = 2"]).await;
    let addr = node.base_url().trim_start_matches("https://").to_string();
    let pem = std::fs::read(node.data_dir().join("tls/api.crt")).unwrap();
    let closed_after = tokio::task::spawn_blocking(move || {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&pem).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), "127.0.0.1".try_into().unwrap()).unwrap();
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").unwrap();
        tls.flush().unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 256];
        // The node answers (408, or nothing) and closes; the read ends either way.
        loop {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(closed_after < Duration::from_secs(10), "the half-sent request was held for {closed_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_hsts_and_nosniff_and_api_answers_are_not_cached() {
    let node = node_with(&[]).await;
    let token = node.admin_token().await.unwrap();
    let api = node.client().get(node.api("/me")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::OK);
    let h = api.headers();
    assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="), "{h:?}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let error = node.client().get(node.api("/me")).send().await.unwrap();
    assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error.headers()["cache-control"], "no-store");
    let ui = node.client().get(format!("{}/", node.base_url())).send().await.unwrap();
    assert!(ui.headers().contains_key("strict-transport-security"));
    assert_eq!(ui.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let node = node_with(&[r#"trusted_proxies = ["127.0.0.7"]"#]).await;
    let via_proxy = node.client_from("127.0.0.7");
    let direct = node.client_from("127.0.0.8");
    for (client, forwarded, user) in
        [(&via_proxy, "203.0.113.9, 127.0.0.7", "through-proxy"), (&direct, "203.0.113.10", "forged-header")]
    {
        let resp = client
            .post(node.api("/auth/login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"username": user, "password": "some wrong passphrase"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let rows = node.audit("auth.login").await.unwrap();
    let source_of = |user: &str| -> String {
        rows.iter()
            .find(|r| r["target"] == user)
            .map(|r: &Value| r["source_ip"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(source_of("through-proxy"), "203.0.113.9", "the proxy's client is the one audited");
    assert_eq!(source_of("forged-header"), "127.0.0.8", "a header from a non-proxy is ignored");
}
