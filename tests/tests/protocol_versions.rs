//! Nodes of different protocol majors: a member that identifies itself as speaking the next
//! major is refused, with both versions named in the federation view, the audit log and
//! `/metrics`, is not redialled in a loop, and the node goes on working with the others. The
//! nodes also ignore SSLKEYLOGFILE: no TLS session secret is written anywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fedimpute_node::identity::NodeIdentity;
use fedimpute_protocol::PROTOCOL_MAJOR;
use fedimpute_tests::federation::*;
use fedimpute_tests::jobs::*;
use fedimpute_tests::{TestNode, free_port};
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, tcp, tls, yamux};
use serde_json::Value;

const FUTURE_AGENT: &str = "fedimpute/9.0.0";

/// A member's libp2p peer as a node of the next protocol major would be: the member's key,
/// TLS, and an identify exchange naming `/fedimpute/<major + 1>`. Counts connections opened.
fn start_future_peer(identity: &NodeIdentity, port: u16) -> Arc<AtomicUsize> {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity.keypair().clone())
        .with_tokio()
        .with_tcp(tcp::Config::default(), tls::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| {
            let protocol = format!("/fedimpute/{}", PROTOCOL_MAJOR + 1);
            identify::Behaviour::new(
                identify::Config::new(protocol, key.public()).with_agent_version(FUTURE_AGENT.into()),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on(format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()).unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = opened.clone();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    opened
}

fn member<'a>(view: &'a Value, institution: &str) -> &'a Value {
    view["members"].as_array().unwrap().iter().find(|m| m["institution"] == institution).unwrap()
}

async fn wait_incompatible(node: &TestNode, institution: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = node.federation_view().await.unwrap();
        let seen = member(&view, institution).clone();
        if seen["connection"] == "incompatible" {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{institution} never shown as incompatible: {seen}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_protocol_major_is_refused_with_its_reason_and_the_others_go_on() {
    let future = NodeIdentity::generate();
    let port = free_port().unwrap();
    let extra = [ExtraMember {
        peer_id: future.peer_id().to_string(),
        institution: "Future F".into(),
        address: format!("/ip4/127.0.0.1/tcp/{port}"),
    }];
    let opened = start_future_peer(&future, port);
    // The nodes run with SSLKEYLOGFILE set, which would make libp2p's TLS write its session
    // secrets there; they must ignore it.
    let key_log_dir = tempfile::tempdir().unwrap();
    let key_log = key_log_dir.path().join("tls-secrets.log");
    let env = [("SSLKEYLOGFILE", key_log.as_os_str())];
    let fed = start(&FederationSpec {
        names: &["Origin A", "Host B"],
        panels: &|i, node| {
            if i == 1 {
                add_panel(node, "sim")
            }
        },
        edit: &|_, c| c,
        extra: &extra,
        hosts_in_catalog: 1,
        env: &env,
    })
    .await;
    let (a, b) = (&fed.nodes[0], &fed.nodes[1]);

    // Both nodes dial the member they find listed, and refuse it on hearing its version.
    for node in [a, b] {
        let seen = wait_incompatible(node, "Future F").await;
        let reason = seen["refused_because"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("protocol {}", PROTOCOL_MAJOR + 1)), "{seen}");
        assert!(reason.contains(FUTURE_AGENT), "{seen}");
        assert!(reason.contains(&format!("protocol {PROTOCOL_MAJOR}")), "{seen}");
        let view = node.federation_view().await.unwrap();
        let other = if std::ptr::eq(node, a) { "Host B" } else { "Origin A" };
        assert_eq!(member(&view, other)["connection"], "connected", "{view}");
    }
    let members = r#"fedimpute_federation_members{state="incompatible"}"#;
    assert_eq!(metric(a, members).await, 1);
    let rows = a.audit("p2p.connection").await.unwrap();
    let refusal = rows
        .iter()
        .find(|r| r["target"] == future.peer_id().to_string())
        .unwrap_or_else(|| panic!("no audit row for the refused member: {rows:?}"));
    assert_eq!(refusal["outcome"], "denied", "{refusal}");
    assert!(refusal.to_string().contains(FUTURE_AGENT), "{refusal}");
    assert!(a.log().contains("refused a peer of another protocol version"), "{}", a.log());

    // A job from A still runs at B while the refused member stays refused, and neither node
    // dials it again and again meanwhile (each waits minutes before trying a member it refused).
    let token = a.admin_token().await.unwrap();
    let job = submit_targets(a, &token, &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")]).await;
    let done = wait_state(a, &token, &job, &["completed", "failed"], Duration::from_secs(120)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(member(&a.federation_view().await.unwrap(), "Future F")["connection"], "incompatible");
    assert!(!key_log.exists(), "TLS session secrets were written to SSLKEYLOGFILE");
    assert!(a.log().contains("SSLKEYLOGFILE is set; ignored"), "{}", a.log());
    let connections = opened.load(Ordering::SeqCst);
    assert!((2..=4).contains(&connections), "the refused member was connected {connections} times");
}
