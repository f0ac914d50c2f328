//! Forged adverts: a member that relays a tampered advert, or one by a non-member, over gossip or
//! in a catalog snapshot, never gets it into anyone's catalog, and every refusal is audited.
//!
//! The forger is a real libp2p peer built from the node's own network layer, listed as a member
//! so that it can connect; only its payloads are forged.

use std::sync::Arc;
use std::time::Duration;

use fedimpute_node::identity::NodeIdentity;
use fedimpute_node::p2p::{Network, NetworkConfig, NetworkEvent};
use fedimpute_protocol::advert::{Advert, DataPolicyAdvert, PanelAdvert, SignedAdvert};
use fedimpute_protocol::federation::FederationConfig;
use fedimpute_protocol::messages::{FederationRequest, FederationResponse};
use fedimpute_tests::{FederationAdmins, TestNode, free_port, install_crypto_provider, wait_for};
use serde_json::Value;

fn advert(config: &FederationConfig, peer_id: &str, seq: u64, panel: &str) -> Advert {
    Advert {
        federation_id: config.doc().federation_id.clone(),
        peer_id: peer_id.to_string(),
        seq,
        issued_at_ms: fedimpute_node::time::now_ms(),
        node_name: "forged".into(),
        institution: "Forger".into(),
        software_version: "0.1.0".into(),
        protocol_major: 1,
        api_url: None,
        config_version: config.doc().version,
        config_digest: config.digest(),
        services: vec![],
        panels: vec![PanelAdvert {
            id: panel.into(),
            name: panel.into(),
            build: "hg38".into(),
            populations: vec!["AFR".into()],
            samples: 10,
            sites: 10,
            chromosomes: vec!["chr20".into()],
            engines: vec!["beagle".into()],
        }],
        data_policy: DataPolicyAdvert::default(),
        audit_head: None,
    }
}

/// The forger's own advert, validly signed, then altered: the signature no longer holds.
fn tampered(config: &FederationConfig, forger: &NodeIdentity, seq: u64) -> SignedAdvert {
    let mut signed =
        SignedAdvert::sign(&advert(config, &forger.peer_id().to_string(), seq, "innocent-panel"), |m| forger.sign(m))
            .unwrap();
    signed.advert["panels"][0]["id"] = "tampered-panel".into();
    signed
}

/// An advert correctly signed by a node that is not a member.
fn by_stranger(config: &FederationConfig, stranger: &NodeIdentity, seq: u64) -> SignedAdvert {
    SignedAdvert::sign(&advert(config, &stranger.peer_id().to_string(), seq, "stranger-panel"), |m| stranger.sign(m))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_adverts_never_reach_a_catalog() {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut nodes: Vec<TestNode> = (1..=3).map(|i| TestNode::init(&format!("Inst {i}")).unwrap()).collect();
    let forger = NodeIdentity::generate();
    let stranger = NodeIdentity::generate();
    let forger_port = free_port().unwrap();

    let fed = {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        admins.new_config("fed.json", "forgery-test", 1, &refs, &[]).unwrap()
    };
    admins
        .run(&[
            "add-member",
            &fed.display().to_string(),
            "--peer-id",
            &forger.peer_id().to_string(),
            "--institution",
            "Forger",
            "--address",
            &format!("/ip4/127.0.0.1/tcp/{forger_port}"),
        ])
        .unwrap();
    admins.sign(&fed, &[0]).unwrap();
    for n in &nodes {
        assert!(n.apply(&[&fed]).status.success());
    }
    for n in nodes.iter_mut() {
        n.start().await.unwrap();
    }

    let config = Arc::new(FederationConfig::from_json(&std::fs::read_to_string(&fed).unwrap()).unwrap());
    let (_tx, watch) = tokio::sync::watch::channel(Some(config.clone()));
    let listen = vec![format!("/ip4/127.0.0.1/tcp/{forger_port}").parse().unwrap()];
    let (network, events) = Network::spawn(&forger, NetworkConfig::listening_on(listen), watch).unwrap();
    let mut events = events.federation;

    // Serve forged catalog snapshots to whoever asks.
    let responder = network.clone();
    let snapshot = vec![tampered(&config, &forger, 1), by_stranger(&config, &stranger, 1)];
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let NetworkEvent::Request { request, channel, .. } = event {
                let response = match request {
                    FederationRequest::GetCatalog { .. } => FederationResponse::Catalog { adverts: snapshot.clone() },
                    FederationRequest::GetConfig { .. } => FederationResponse::Config { document: None },
                    FederationRequest::GetWitnessedHead => FederationResponse::WitnessedHead { advert: None },
                };
                responder.respond(channel, response).await;
            }
        }
    });

    // Publish forgeries by gossip until the members have judged some of each kind.
    let mut seq = 10;
    wait_for("every member to reject both kinds of forgery", Duration::from_secs(60), || {
        seq += 1;
        let (network, config, forger, stranger, nodes) = (&network, &config, &forger, &stranger, &nodes);
        async move {
            for forged in [tampered(config, forger, seq), by_stranger(config, stranger, seq)] {
                let _ = network.publish_advert(serde_json::to_vec(&forged)?).await;
            }
            let _ = network.publish_advert(b"not an advert".to_vec()).await;
            for n in nodes {
                let reasons: Vec<String> = n
                    .audit("federation.advert")
                    .await?
                    .iter()
                    .map(|e| e["details"].as_str().unwrap_or("").to_string())
                    .collect();
                let has = |r: &str| reasons.iter().any(|d| d.contains(r));
                if !(has("bad_signature") && (has("author_mismatch") || has("not_a_member"))) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    })
    .await
    .unwrap();

    for n in &nodes {
        let token = n.admin_token().await.unwrap();
        let (_, panels) = n.get("/catalog/panels", &token).await.unwrap();
        let text = panels.to_string();
        assert!(!text.contains("tampered-panel") && !text.contains("stranger-panel"), "{}: {text}", n.institution());
        let view = n.federation_view().await.unwrap();
        assert!(!view.to_string().contains(&stranger.peer_id().to_string()));
        let forger_entry = view["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["peer_id"] == forger.peer_id().to_string())
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(forger_entry["reachable"], false, "a forged advert counted as the forger's: {forger_entry}");
        // The honest members still see each other.
        for other in &nodes {
            assert!(
                view["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["peer_id"] == other.peer_id() && m["reachable"] == true)
            );
        }
        let metrics = n.client().get(format!("{}/metrics", n.base_url())).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(r#"fedimpute_adverts_total{verdict="reject",reason="bad_signature"}"#), "{metrics}");
    }
    // The catalog-snapshot path rejects the stranger as a non-member (no gossip author to
    // compare with), on at least the nodes that synced from the forger.
    let mut not_member = 0;
    for n in &nodes {
        let entries = n.audit("federation.advert").await.unwrap();
        not_member += entries.iter().filter(|e| e["details"].as_str().unwrap_or("").contains("not_a_member")).count();
    }
    assert!(not_member > 0, "no catalog snapshot forgery was judged");
}
