//! Authentication and authorization against a real node over HTTPS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedimpute_tests::{ADMIN_PASSWORD, TestNode, fedimpute, install_crypto_provider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn running_node() -> TestNode {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    node
}

const RESEARCHER_PASSWORD: &str = "researcher passphrase 1";

async fn add_researcher(node: &TestNode, admin: &str, name: &str) -> Value {
    let (status, body) = node
        .send(
            Method::POST,
            "/users",
            admin,
            &json!({"username": name, "role": "researcher", "password": RESEARCHER_PASSWORD}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Signs `claims` with the node's own JWT key, as only the node should be able to.
fn sign_with_node_key(node: &TestNode, claims: &Value) -> String {
    let hex_key = std::fs::read_to_string(node.data_dir().join("jwt.key")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_secret(&hex::decode(hex_key.trim()).unwrap()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).unwrap()
}

#[tokio::test]
async fn login_works_and_a_wrong_password_is_401() {
    let node = running_node().await;
    let (status, body) = node.login("admin", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let (status, me) = node.get("/me", body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!((status, me["username"].as_str()), (StatusCode::OK, Some("admin")));

    let (status, body) = node.login("admin", "not the password at all").await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = node.login("nobody", ADMIN_PASSWORD).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tampered_expired_wrong_audience_and_unsigned_jwts_are_401() {
    let node = running_node().await;
    let good = node.admin_token().await.unwrap();
    let claims = claims_of(&good);
    assert_eq!(node.get("/me", &good).await.unwrap().0, StatusCode::OK);
    // A forgery made with the node's real key is accepted: the refusals below are about the
    // claims, not about the test's signing.
    let resigned = sign_with_node_key(&node, &claims);
    assert_eq!(node.get("/me", &resigned).await.unwrap().0, StatusCode::OK);

    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut elevated = claims.clone();
    elevated["sub"] = json!("2");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elevated).unwrap());
    let tampered = parts.join(".");

    let now = claims["iat"].as_i64().unwrap();
    let mut expired = claims.clone();
    expired["iat"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("some-other-service");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("12D3KooWsomeoneelse");
    let mut future = claims.clone();
    future["iat"] = json!(now + 3600);
    future["exp"] = json!(now + 7200);
    let mut no_iat = claims.clone();
    no_iat.as_object_mut().unwrap().remove("iat");
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));

    for (what, token) in [
        ("tampered payload", tampered),
        ("expired", sign_with_node_key(&node, &expired)),
        ("wrong audience", sign_with_node_key(&node, &wrong_aud)),
        ("wrong issuer", sign_with_node_key(&node, &wrong_iss)),
        ("issued in the future", sign_with_node_key(&node, &future)),
        ("no iat", sign_with_node_key(&node, &no_iat)),
        ("alg none", alg_none),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let (status, body) = node.get("/me", &token).await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} was accepted: {body}");
    }
}

#[tokio::test]
async fn roles_are_enforced_on_admin_and_audit_routes() {
    let node = running_node().await;
    let admin = node.admin_token().await.unwrap();
    add_researcher(&node, &admin, "rita").await;
    let rita = node.token_for("rita", RESEARCHER_PASSWORD).await.unwrap();

    for (method, path, body) in [
        (Method::GET, "/users", Value::Null),
        (Method::POST, "/users", json!({"username": "x", "role": "admin", "password": "whatever passphrase"})),
        (Method::PATCH, "/users/1", json!({"disabled": true})),
        (Method::POST, "/users/1/reset-password", json!({})),
        (Method::GET, "/audit", Value::Null),
    ] {
        let (status, resp) = node.send(method.clone(), path, &rita, &body).await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {resp}");
        assert_eq!(resp["error"]["code"], "forbidden");
    }
    // The refused PATCH did not disable the admin.
    assert_eq!(node.get("/me", &admin).await.unwrap().0, StatusCode::OK);

    // Promoted to auditor, she may read the audit log but still not manage users.
    let (_, users) = node.get("/users", &admin).await.unwrap();
    let rita_id = users.as_array().unwrap().iter().find(|u| u["username"] == "rita").unwrap()["id"].clone();
    let (status, _) =
        node.send(Method::PATCH, &format!("/users/{rita_id}"), &admin, &json!({"role": "auditor"})).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node.get("/audit", &rita).await.unwrap().0, StatusCode::UNAUTHORIZED, "a role change ends her sessions");
    let rita = node.token_for("rita", RESEARCHER_PASSWORD).await.unwrap();
    assert_eq!(node.get("/audit", &rita).await.unwrap().0, StatusCode::OK);
    assert_eq!(node.get("/users", &rita).await.unwrap().0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_sixth_failed_login_in_a_row_is_429_whatever_the_password() {
    let node = running_node().await;
    for attempt in 1..=5 {
        let (status, _) = node.login("admin", "wrong password number x").await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let resp = node
        .client()
        .post(node.api("/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "Retry-After {retry_after}");
    // Throttling is per (user name, address): another account is unaffected.
    let admin = node.admin_token().await;
    assert!(admin.is_err(), "the throttled account must stay locked");
    let out = fedimpute(&["user", "add", "--config", &node.config_arg(), "other"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pw = stdout.lines().find_map(|l| l.split("(shown only now): ").nth(1)).unwrap().trim().to_string();
    assert_eq!(node.login("other", &pw).await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn api_tokens_work_until_revoked() {
    let node = running_node().await;
    let admin = node.admin_token().await.unwrap();
    let (status, created) = node.create_api_token(&admin, ADMIN_PASSWORD, "ci script", 30).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fit_"));
    let (status, me) = node.get("/me", &token).await.unwrap();
    assert_eq!((status, me["username"].as_str()), (StatusCode::OK, Some("admin")));
    assert_eq!(node.get("/users", &token).await.unwrap().0, StatusCode::OK, "API tokens carry the user's role");

    let (_, list) = node.get("/me/tokens", &admin).await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none(), "the secret is never listed");

    let id = created["id"].as_i64().unwrap();
    let (status, _) = node.send(Method::DELETE, &format!("/me/tokens/{id}"), &admin, &Value::Null).await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(node.get("/me", &token).await.unwrap().0, StatusCode::UNAUTHORIZED);

    let (status, _) = node.create_api_token(&admin, ADMIN_PASSWORD, "x", 100_000).await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn refresh_rotates_and_logout_ends_the_session() {
    let node = running_node().await;
    let (_, session) = node.login("admin", ADMIN_PASSWORD).await.unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();
    let client = node.client();
    let resp = client.post(node.api("/auth/refresh")).json(&json!({"refresh_token": refresh})).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let renewed: Value = resp.json().await.unwrap();
    let access = renewed["access_token"].as_str().unwrap();
    let new_refresh = renewed["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(node.get("/me", access).await.unwrap().0, StatusCode::OK);

    let (status, _) =
        node.send(Method::POST, "/auth/logout", access, &json!({"refresh_token": new_refresh})).await.unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let after =
        client.post(node.api("/auth/refresh")).json(&json!({"refresh_token": new_refresh})).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(node.get("/me", access).await.unwrap().0, StatusCode::UNAUTHORIZED, "logout ends the access token");
    let first_access = session["access_token"].as_str().unwrap();
    assert_eq!(
        node.get("/me", first_access).await.unwrap().0,
        StatusCode::UNAUTHORIZED,
        "and every one of its session"
    );
}

#[tokio::test]
async fn disabling_a_user_ends_their_access_at_once() {
    let node = running_node().await;
    let admin = node.admin_token().await.unwrap();
    let created = add_researcher(&node, &admin, "dave").await;
    let dave = node.token_for("dave", RESEARCHER_PASSWORD).await.unwrap();
    let id = created["id"].as_i64().unwrap();
    let (status, body) =
        node.send(Method::PATCH, &format!("/users/{id}"), &admin, &json!({"disabled": true})).await.unwrap();
    assert_eq!((status, body["disabled"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(node.get("/me", &dave).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert_eq!(node.login("dave", RESEARCHER_PASSWORD).await.unwrap().0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn user_administration_checks_policy_and_keeps_an_admin() {
    let node = running_node().await;
    let admin = node.admin_token().await.unwrap();
    let (status, body) = node
        .send(Method::POST, "/users", &admin, &json!({"username": "erin", "role": "researcher", "password": "short"}))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("12 characters"));
    let (status, _) = node
        .send(
            Method::POST,
            "/users",
            &admin,
            &json!({"username": "erin", "role": "researcher", "password": "erin-is-my-password"}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a password containing the user name is refused");
    let (status, created) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "erin", "role": "viewer"})).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let generated = created["generated_password"].as_str().unwrap();
    assert_eq!(node.login("erin", generated).await.unwrap().0, StatusCode::OK);
    let (status, _) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "erin", "role": "viewer"})).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = node.send(Method::PATCH, "/users/1", &admin, &json!({"role": "viewer"})).await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "demoting the only admin: {body}");
    let (status, _) = node.send(Method::PATCH, "/users/999", &admin, &json!({"role": "viewer"})).await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);

    let eid = created["id"].as_i64().unwrap();
    let (status, reset) =
        node.send(Method::POST, &format!("/users/{eid}/reset-password"), &admin, &json!({})).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node.login("erin", generated).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert_eq!(node.login("erin", reset["generated_password"].as_str().unwrap()).await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn the_user_cli_works_while_the_node_runs() {
    let node = running_node().await;
    let cfg = node.config_arg();
    let pwfile = node.data_dir().join("frank.pw");
    std::fs::write(&pwfile, "a long passphrase for f\n").unwrap();
    let out = fedimpute(&[
        "user",
        "add",
        "--config",
        &cfg,
        "frank",
        "--role",
        "researcher",
        "--password-file",
        pwfile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frank = node.token_for("frank", "a long passphrase for f").await.unwrap();

    let out = fedimpute(&["user", "set-role", "--config", &cfg, "frank", "auditor"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.get("/audit", &frank).await.unwrap().0, StatusCode::UNAUTHORIZED, "the role change ended it");
    let frank = node.token_for("frank", "a long passphrase for f").await.unwrap();
    assert_eq!(node.get("/audit", &frank).await.unwrap().0, StatusCode::OK);

    let out = fedimpute(&["user", "list", "--config", &cfg]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("frank") && listing.contains("auditor"), "{listing}");

    let out = fedimpute(&["user", "disable", "--config", &cfg, "frank"]);
    assert!(out.status.success());
    assert_eq!(node.get("/me", &frank).await.unwrap().0, StatusCode::UNAUTHORIZED);

    let out = fedimpute(&["user", "disable", "--config", &cfg, "frank", "--enable"]);
    assert!(out.status.success());
    let out = fedimpute(&["user", "reset-password", "--config", &cfg, "frank"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pw = stdout.lines().find_map(|l| l.split("(shown only now): ").nth(1)).unwrap().trim().to_string();
    assert_eq!(node.login("frank", &pw).await.unwrap().0, StatusCode::OK);

    let out = fedimpute(&["user", "set-role", "--config", &cfg, "nobody", "admin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user named"));
}
