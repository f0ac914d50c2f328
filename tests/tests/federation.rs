//! A federation of real `fedimpute` processes on 127.0.0.1: membership, gossip, config
//! distribution and the rules that guard them.

use std::collections::HashSet;
use std::time::Duration;

use fedimpute_tests::{FederationAdmins, TestNode, fedimpute, install_crypto_provider, wait_for};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

fn members_of(view: &Value) -> Vec<Value> {
    view["members"].as_array().cloned().unwrap_or_default()
}

/// True when `node` runs config `version` and sees every one of `expected` as reachable
/// (its advert is in the catalog and fresh) and connected.
async fn sees_all(node: &TestNode, version: u64, expected: &[&TestNode]) -> anyhow::Result<bool> {
    let view = node.federation_view().await?;
    if view["version"].as_u64() != Some(version) || view["status"] != "active" {
        return Ok(false);
    }
    let members = members_of(&view);
    Ok(expected.iter().all(|e| {
        members.iter().any(|m| {
            m["peer_id"] == e.peer_id()
                && m["reachable"] == true
                && (m["connection"] == "connected" || m["connection"] == "self")
        })
    }))
}

async fn start_all(nodes: &mut [TestNode]) {
    for n in nodes.iter_mut() {
        n.start().await.unwrap();
    }
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected a refusal: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The whole membership life cycle: five members converge; a non-member is refused both ways
/// and audited; v2 admits a sixth node by gossip; v3 removes one; rollbacks and under-signed
/// versions are refused; a restarted node keeps its config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_life_cycle() {
    install_crypto_provider();
    let admins = FederationAdmins::new(3).unwrap();
    let mut nodes: Vec<TestNode> = (1..=5).map(|i| TestNode::init(&format!("Inst {i}")).unwrap()).collect();
    let sixth = TestNode::init("Inst 6").unwrap();
    let mut outsider = TestNode::init("Outsider").unwrap();

    let fed = {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        admins.new_config("fed.json", "afr-test", 2, &refs, &[]).unwrap()
    };
    admins.sign(&fed, &[0, 1]).unwrap();
    let v1 = admins.snapshot(&fed, "v1.json").unwrap();
    for n in &nodes {
        ok(n.apply(&[&v1]));
    }
    start_all(&mut nodes).await;

    // The outsider has a valid libp2p identity and a config of its own making that lists it
    // with the members' addresses, so it dials them all.
    let fake_admins = FederationAdmins::new(1).unwrap();
    let fake = {
        let mut refs: Vec<&TestNode> = nodes.iter().collect();
        refs.push(&outsider);
        fake_admins.new_config("fake.json", "afr-test", 1, &refs, &[]).unwrap()
    };
    fake_admins.sign(&fake, &[0]).unwrap();
    ok(outsider.apply(&[&fake]));
    outsider.start().await.unwrap();

    // 1. Every node's catalog holds all five adverts, every member connected.
    for n in &nodes {
        let all: Vec<&TestNode> = nodes.iter().collect();
        wait_for(&format!("{} to see all five members", n.institution()), CONVERGE, || sees_all(n, 1, &all))
            .await
            .unwrap();
    }

    // 2. The outsider was refused by every member and never appears anywhere.
    for n in &nodes {
        wait_for("the outsider's refusal in the audit log", CONVERGE, || async {
            let refusals = n.audit("p2p.connection").await?;
            Ok(refusals.iter().any(|e| e["target"] == outsider.peer_id() && e["outcome"] == "denied"))
        })
        .await
        .unwrap();
        let view = n.federation_view().await.unwrap();
        assert!(!view.to_string().contains(outsider.peer_id()), "{} lists the outsider: {view}", n.institution());
    }
    let outsider_view = outsider.federation_view().await.unwrap();
    for m in members_of(&outsider_view).iter().filter(|m| m["connection"] != "self") {
        assert_eq!(m["connection"], "disconnected", "outsider connected to a member: {m}");
        assert_eq!(m["reachable"], false, "a member's advert reached the outsider: {m}");
    }

    // 3. v2 admits the sixth node, signed by 2 of 3, applied at one node only: gossip does the rest.
    admins.run(&["bump", &fed.display().to_string()]).unwrap();
    admins.add_member(&fed, &sixth).unwrap();
    admins.sign(&fed, &[0, 2]).unwrap();
    let v2 = admins.snapshot(&fed, "v2.json").unwrap();
    ok(nodes[0].apply(&[&v2]));
    for n in &nodes[1..] {
        wait_for("v2 to spread by gossip", CONVERGE, || async { Ok(n.federation_view().await?["version"] == 2) })
            .await
            .unwrap();
        let adopted = n.audit("federation.config").await.unwrap();
        assert!(
            adopted
                .iter()
                .any(|e| e["target"] == "afr-test v2" && e["details"].as_str().unwrap_or("").contains("peer:")),
            "v2 was not adopted from a peer at {}: {adopted:?}",
            n.institution()
        );
    }
    // The sixth node's admin installs v2 (trust on first use); it joins.
    let mut sixth = sixth;
    ok(sixth.apply(&[&v2]));
    sixth.start().await.unwrap();
    {
        let mut all: Vec<&TestNode> = nodes.iter().collect();
        all.push(&sixth);
        for n in all.iter() {
            wait_for("everyone to see the sixth node", CONVERGE, || sees_all(n, 2, &all)).await.unwrap();
        }
    }

    // 4. A restarted node keeps its config (v2) and rejoins.
    assert_eq!(nodes[3].stop_with(libc::SIGTERM).unwrap().code(), Some(0));
    nodes[3].start().await.unwrap();
    assert_eq!(nodes[3].federation_view().await.unwrap()["version"], 2);

    // 5. v3 removes node 5: every connection to it closes.
    admins.run(&["bump", &fed.display().to_string()]).unwrap();
    admins.run(&["remove-member", &fed.display().to_string(), "--peer-id", nodes[4].peer_id()]).unwrap();
    admins.sign(&fed, &[1, 2]).unwrap();
    let v3 = admins.snapshot(&fed, "v3.json").unwrap();
    ok(nodes[1].apply(&[&v3]));
    let removed = nodes[4].peer_id().to_string();
    for n in nodes[..4].iter().chain(std::iter::once(&sixth)) {
        wait_for("v3 to spread and node 5 to be gone", CONVERGE, || async {
            let view = n.federation_view().await?;
            Ok(view["version"] == 3 && !view.to_string().contains(&removed))
        })
        .await
        .unwrap();
    }
    wait_for("node 5 to lose every connection", CONVERGE, || async {
        let view = nodes[4].federation_view().await?;
        Ok(members_of(&view).iter().all(|m| m["connection"] != "connected"))
    })
    .await
    .unwrap();

    // 6. Rollbacks are refused, at the CLI and in the audit log.
    for old in [&v1, &v2] {
        let err = refused(nodes[0].apply(&[old]));
        assert!(err.contains("rollback"), "{err}");
    }
    let denied = nodes[0].audit("federation.config").await.unwrap();
    assert!(denied.iter().any(|e| e["outcome"] == "denied" && e["details"].as_str().unwrap().contains("\"rollback\"")));

    // 7. v4 signed by one admin, or by one admin twice, is refused.
    admins.run(&["bump", &fed.display().to_string()]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    let err = refused(nodes[0].apply(&[&fed]));
    assert!(err.contains("not enough valid signatures"), "{err}");
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&fed).unwrap()).unwrap();
    let sig = doc["signatures"][0].clone();
    doc["signatures"].as_array_mut().unwrap().push(sig);
    let twice = admins.file("v4-twice.json");
    std::fs::write(&twice, doc.to_string()).unwrap();
    let err = refused(nodes[0].apply(&[&twice]));
    assert!(err.contains("1 distinct valid of 2"), "{err}");
    assert_eq!(nodes[0].federation_view().await.unwrap()["version"], 3);

    let peers: HashSet<String> = members_of(&nodes[0].federation_view().await.unwrap())
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(peers.len(), 5, "v3 has nodes 1-4 and the sixth");
}

/// An expired config freezes the node: /readyz fails and says why, and it stops federating.
#[tokio::test]
async fn an_expired_config_freezes_the_node() {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut node = TestNode::init("Inst A").unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    let fed = admins.new_config("fed.json", "short-lived", 1, &[&node], &["--expires-at", &expires]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    ok(node.apply(&[&fed]));
    node.start().await.unwrap();
    let client = node.client();
    let ready = format!("{}/readyz", node.base_url());
    assert_eq!(client.get(&ready).send().await.unwrap().status(), 200);
    wait_for("the config to expire", Duration::from_secs(20), || async {
        Ok(client.get(&ready).send().await?.status() == 503)
    })
    .await
    .unwrap();
    let body: Value = client.get(&ready).send().await.unwrap().json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("expired") && message.contains("version 1"), "{message}");
    let view = node.federation_view().await.unwrap();
    assert_eq!(view["status"], "frozen");
    assert!(view["reason"].as_str().unwrap().contains("expired"));
    // An expired config is also refused outright when offered.
    let err = refused(node.apply(&[&fed]));
    assert!(err.contains("rollback") || err.contains("expired"), "{err}");
}

#[tokio::test]
async fn a_config_near_its_expiry_is_warned_of_in_the_log_the_audit_log_metrics_and_the_federation_view() {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut node = TestNode::init("Inst A").unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(10) + time::Duration::hours(1);
    let expires = expires.format(&time::format_description::well_known::Rfc3339).unwrap();
    let fed = admins.new_config("fed.json", "expiring", 1, &[&node], &["--expires-at", &expires]).unwrap();
    admins.sign(&fed, &[0]).unwrap();
    ok(node.apply(&[&fed]));
    node.start().await.unwrap();

    let view = node.federation_view().await.unwrap();
    assert_eq!(view["status"], "active", "a config about to expire still works");
    assert_eq!(view["expires_in_days"], 10);
    let warning = view["expiry_warning"].as_str().unwrap();
    assert!(warning.contains("expires in 10 days") && warning.contains("version 2"), "{warning}");
    let metrics = node.client().get(format!("{}/metrics", node.base_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("federation_config_expiry_days 10"), "{metrics}");
    wait_for("the warning in the log and the audit log", Duration::from_secs(20), || async {
        let audit = node.audit("federation.config_expiring").await?;
        let days_left = audit.first().and_then(|row| {
            serde_json::from_str::<Value>(row["details"].as_str()?).ok().map(|d| d["days_left"].clone())
        });
        Ok(node.log().contains("expires in 10 days") && days_left == Some(Value::from(10)))
    })
    .await
    .unwrap();
    assert_eq!(node.audit("federation.config_expiring").await.unwrap().len(), 1, "once a day, not on every check");
}

#[test]
fn admins_who_sign_their_own_copies_combine_their_signatures() {
    let admins = FederationAdmins::new(3).unwrap();
    let original = admins.new_config("v1.json", "merge-fed", 2, &[], &[]).unwrap();
    let unsigned = std::fs::read(&original).unwrap();
    // The first admin signs a copy of their own; the second writes theirs with --out.
    let first = admins.file("copy0.json");
    std::fs::copy(&original, &first).unwrap();
    admins.run(&["sign", first.to_str().unwrap(), "--key", admins.key(0).to_str().unwrap()]).unwrap();
    let second = admins.file("copy1.json");
    let original_text = original.to_str().unwrap();
    admins
        .run(&["sign", original_text, "--key", admins.key(1).to_str().unwrap(), "--out", second.to_str().unwrap()])
        .unwrap();
    assert_eq!(std::fs::read(&original).unwrap(), unsigned, "sign --out leaves the original as it was");
    let copies = [first.display().to_string(), second.display().to_string()];
    assert!(admins.run(&["verify", &copies[0]]).is_err(), "one signature of the two required");
    let shown = admins.run(&["show", &copies[0]]).unwrap();
    assert!(shown.contains("1 more signature(s) needed") && shown.contains(admins.public_key(1)), "{shown}");

    let merged = admins.file("merged.json").display().to_string();
    let out = admins.run(&["merge-signatures", &copies[0], &copies[1], "-o", &merged]).unwrap();
    assert!(out.contains("2 valid of the 2"), "{out}");
    admins.run(&["verify", &merged]).unwrap();
    let shown = admins.run(&["show", &merged]).unwrap();
    assert!(shown.contains("threshold met"), "{shown}");

    // A copy edited after it was handed out signs something else: it does not combine.
    let edited = admins.file("edited.json");
    std::fs::copy(&original, &edited).unwrap();
    admins
        .run(&["bump", edited.to_str().unwrap()])
        .and_then(|_| admins.run(&["sign", edited.to_str().unwrap(), "--key", admins.key(2).to_str().unwrap()]))
        .unwrap();
    let refused = admins.run(&["merge-signatures", &copies[0], edited.to_str().unwrap(), "-o", &merged]).unwrap_err();
    assert!(refused.to_string().contains("differ in what they sign"), "{refused}");
    admins.run(&["verify", &merged]).unwrap();
}

#[test]
fn an_admin_key_is_sealed_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (key, passphrase, wrong) = (dir.path().join("admin.key"), dir.path().join("pass"), dir.path().join("wrong"));
    std::fs::write(&passphrase, "a long admin passphrase\n").unwrap();
    std::fs::write(&wrong, "another long passphrase\n").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let out = fedimpute(&["federation", "keygen", "--out", &path(&key), "--passphrase-file", &path(&passphrase)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("fedimpute-admin-key v1"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // No passphrase given: keygen refuses to write an unsealed key unless told to.
    let refused = fedimpute(&["federation", "keygen", "--out", &path(&dir.path().join("other.key"))]);
    assert!(!refused.status.success());

    let config = dir.path().join("fed.json");
    let new = fedimpute(&[
        "federation",
        "new",
        "--id",
        "sealed",
        "--threshold",
        "1",
        "--admin",
        &public,
        "--out",
        &path(&config),
    ]);
    assert!(new.status.success(), "{}", String::from_utf8_lossy(&new.stderr));
    let sign =
        |extra: &[&str]| fedimpute(&[&["federation", "sign", &path(&config), "--key", &path(&key)], extra].concat());
    let without = sign(&[]);
    assert!(!without.status.success() && String::from_utf8_lossy(&without.stderr).contains("encrypted"));
    let wrong_one = sign(&["--passphrase-file", &path(&wrong)]);
    assert!(!wrong_one.status.success() && String::from_utf8_lossy(&wrong_one.stderr).contains("wrong passphrase"));
    let signed = sign(&["--passphrase-file", &path(&passphrase)]);
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    assert!(fedimpute(&["federation", "verify", &path(&config)]).status.success());
}
