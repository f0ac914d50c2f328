//! Sessions that really end: password resets, role changes, replayed refresh tokens, one-time
//! passwords and API tokens, against a real node over HTTPS.

use fedimpute_tests::{CHANGED_PASSWORD, TestNode, fedimpute, install_crypto_provider};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SAM_PASSWORD: &str = "a researcher passphrase";

async fn node_with_sam() -> (TestNode, String, i64) {
    install_crypto_provider();
    let mut node = TestNode::init("Inst A").unwrap();
    node.start().await.unwrap();
    let admin = node.admin_token().await.unwrap();
    let (status, sam) = node
        .send(
            Method::POST,
            "/users",
            &admin,
            &json!({"username": "sam", "role": "researcher", "password": SAM_PASSWORD}),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{sam}");
    let id = sam["id"].as_i64().unwrap();
    (node, admin, id)
}

async fn refresh(node: &TestNode, token: &str) -> (StatusCode, Value) {
    let resp =
        node.client().post(node.api("/auth/refresh")).json(&json!({"refresh_token": token})).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sam's credentials of every kind: a session (access and refresh token) and an API token.
async fn sams_credentials(node: &TestNode, password: &str) -> (String, String, String) {
    let (status, session) = node.login("sam", password).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{session}");
    let access = session["access_token"].as_str().unwrap().to_string();
    let (status, token) = node.create_api_token(&access, password, "pipeline", 30).await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{token}");
    for credential in [&access, token["token"].as_str().unwrap()] {
        assert_eq!(node.get("/jobs", credential).await.unwrap().0, StatusCode::OK);
    }
    (access, session["refresh_token"].as_str().unwrap().to_string(), token["token"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_ends_the_users_jwts_refresh_tokens_and_api_tokens() {
    let (node, admin, sam) = node_with_sam().await;
    let (access, refresh_token, api_token) = sams_credentials(&node, SAM_PASSWORD).await;
    let reset = json!({"password": "a fresh admin-chosen secret"});
    let (status, _) = node.send(Method::POST, &format!("/users/{sam}/reset-password"), &admin, &reset).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node.get("/jobs", &access).await.unwrap().0, StatusCode::UNAUTHORIZED, "the old JWT");
    assert_eq!(node.get("/jobs", &api_token).await.unwrap().0, StatusCode::UNAUTHORIZED, "the API token");
    assert_eq!(refresh(&node, &refresh_token).await.0, StatusCode::UNAUTHORIZED, "the refresh token");
    // The admin's own session is untouched.
    assert_eq!(node.get("/users", &admin).await.unwrap().0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_ends_every_session_and_api_token_of_the_user() {
    let (node, admin, sam) = node_with_sam().await;
    let (access, refresh_token, api_token) = sams_credentials(&node, SAM_PASSWORD).await;
    let (status, _) =
        node.send(Method::PATCH, &format!("/users/{sam}"), &admin, &json!({"role": "viewer"})).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(node.get("/me", &access).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert_eq!(node.get("/me", &api_token).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&node, &refresh_token).await.0, StatusCode::UNAUTHORIZED);
    // A new login carries the new role.
    let token = node.token_for("sam", SAM_PASSWORD).await.unwrap();
    let (_, me) = node.get("/me", &token).await.unwrap();
    assert_eq!(me["role"], "viewer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_ends_its_whole_session() {
    let (node, _, _) = node_with_sam().await;
    let (_, first) = node.login("sam", SAM_PASSWORD).await.unwrap();
    let spent = first["refresh_token"].as_str().unwrap();
    let (status, second) = refresh(&node, spent).await;
    assert_eq!(status, StatusCode::OK);
    let (new_access, new_refresh) =
        (second["access_token"].as_str().unwrap(), second["refresh_token"].as_str().unwrap());
    assert_eq!(node.get("/me", new_access).await.unwrap().0, StatusCode::OK);

    // Someone replays the spent token: refused, and the session it belongs to ends.
    assert_eq!(refresh(&node, spent).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&node, new_refresh).await.0, StatusCode::UNAUTHORIZED, "the rotated successor");
    assert_eq!(node.get("/me", new_access).await.unwrap().0, StatusCode::UNAUTHORIZED, "its access token");
    // Another session of the same user goes on.
    assert!(node.token_for("sam", SAM_PASSWORD).await.is_ok());
    let rows = node.audit("auth.refresh").await.unwrap();
    assert!(rows.iter().any(|r| r["outcome"] == "denied" && r["target"] == "sam"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_password_must_be_changed_before_anything_else() {
    let (node, admin, _) = node_with_sam().await;
    let (_, created) =
        node.send(Method::POST, "/users", &admin, &json!({"username": "olga", "role": "researcher"})).await.unwrap();
    let one_time = created["generated_password"].as_str().unwrap();
    assert_eq!(created["must_change_password"], true);
    let (status, session) = node.login("olga", one_time).await.unwrap();
    assert_eq!((status, &session["must_change_password"]), (StatusCode::OK, &json!(true)));
    let access = session["access_token"].as_str().unwrap();
    let (status, body) = node.get("/jobs", access).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("password_change_required")));
    let token_req = json!({"name": "x", "expires_in_days": 1, "password": one_time});
    assert_eq!(node.send(Method::POST, "/me/tokens", access, &token_req).await.unwrap().0, StatusCode::FORBIDDEN);
    assert_eq!(node.get("/me", access).await.unwrap().0, StatusCode::OK, "who am I stays open");

    let wrong = json!({"current_password": "not it at all", "new_password": CHANGED_PASSWORD});
    let (status, body) = node.send(Method::PUT, "/me/password", access, &wrong).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_password")));
    let weak = json!({"current_password": one_time, "new_password": "short"});
    assert_eq!(
        node.send(Method::PUT, "/me/password", access, &weak).await.unwrap().0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let fresh = node.first_login("olga", one_time).await.unwrap();
    assert_eq!(node.get("/jobs", &fresh).await.unwrap().0, StatusCode::OK);
    assert_eq!(node.get("/me", access).await.unwrap().0, StatusCode::UNAUTHORIZED, "the one-time session ended");
    let (status, again) = node.login("olga", CHANGED_PASSWORD).await.unwrap();
    assert_eq!((status, &again["must_change_password"]), (StatusCode::OK, &json!(false)));
    assert_eq!(node.login("olga", one_time).await.unwrap().0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_needs_the_password_again_and_a_bounded_lifetime() {
    let (node, _, _) = node_with_sam().await;
    let access = node.token_for("sam", SAM_PASSWORD).await.unwrap();
    let ask = |body: Value| {
        let (node, access) = (&node, &access);
        async move { node.send(Method::POST, "/me/tokens", access, &body).await.unwrap().0 }
    };
    assert_eq!(ask(json!({"name": "a", "expires_in_days": 30})).await, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(ask(json!({"name": "a", "expires_in_days": 30, "password": "a guess"})).await, StatusCode::FORBIDDEN);
    assert_eq!(
        ask(json!({"name": "a", "expires_in_days": 91, "password": SAM_PASSWORD})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "longer than the node's 90-day cap"
    );
    assert_eq!(ask(json!({"name": "a", "expires_in_days": 90, "password": SAM_PASSWORD})).await, StatusCode::CREATED);
    let rows = node.audit("token.create").await.unwrap();
    assert!(rows.iter().any(|r| r["outcome"] == "failure"), "the wrong password is audited: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_changes_a_users_own_password_and_ends_their_sessions() {
    let (node, _, _) = node_with_sam().await;
    let old = node.token_for("sam", SAM_PASSWORD).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (current, new) = (dir.path().join("current"), dir.path().join("new"));
    std::fs::write(&current, format!("{SAM_PASSWORD}\n")).unwrap();
    std::fs::write(&new, "my brand new passphrase 5\n").unwrap();
    let cert = node.data_dir().join("tls/api.crt");
    let out = fedimpute(&[
        "account",
        "password",
        "--node",
        &node.base_url(),
        "--user",
        "sam",
        "--current-password-file",
        current.to_str().unwrap(),
        "--new-password-file",
        new.to_str().unwrap(),
        "--ca-cert",
        cert.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.get("/me", &old).await.unwrap().0, StatusCode::UNAUTHORIZED);
    assert_eq!(node.login("sam", "my brand new passphrase 5").await.unwrap().0, StatusCode::OK);
    assert_eq!(node.login("sam", SAM_PASSWORD).await.unwrap().0, StatusCode::UNAUTHORIZED);
    let rows = node.audit("user.change_password").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}
