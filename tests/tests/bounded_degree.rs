//! A federation bigger than the gossip degree: 30 nodes, each connected to at most
//! `gossip_peers` (12) others, every catalog complete; a job to a host that is not a gossip
//! neighbour of its origin opens a connection on demand, completes, and that connection closes
//! once idle while the host stays reachable.

use std::time::Duration;

use fedimpute_node::p2p::topology::gossip_neighbours;
use fedimpute_tests::jobs::{add_panel, edit_config, set, submit_targets, wait_state};
use fedimpute_tests::{FederationAdmins, TestNode, install_crypto_provider, wait_for};
use libp2p::PeerId;

const NODES: usize = 30;
const GOSSIP_PEERS: usize = 12;

/// A gauge from a node's /metrics; an error (a busy node's slow answer) is retried by wait_for.
async fn gauge(node: &TestNode, name_and_labels: &str) -> anyhow::Result<u64> {
    let text = node.client().get(format!("{}/metrics", node.base_url())).send().await?.text().await?;
    let line = text.lines().find(|l| l.starts_with(name_and_labels));
    Ok(line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()).map_or(0, |v| v as u64))
}

fn member<'a>(view: &'a serde_json::Value, peer_id: &str) -> &'a serde_json::Value {
    view["members"].as_array().unwrap().iter().find(|m| m["peer_id"] == peer_id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_nodes_converge_with_bounded_connections_and_jobs_connect_on_demand() {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut nodes: Vec<TestNode> = (0..NODES).map(|i| TestNode::init(&format!("Ring {i:02}")).unwrap()).collect();
    let peers: Vec<PeerId> = nodes.iter().map(|n| n.peer_id().parse().unwrap()).collect();

    // The host: a member node 0 neither dials nor is dialled by for gossip.
    let origin_neighbours = gossip_neighbours(&peers, peers[0], GOSSIP_PEERS);
    assert!(origin_neighbours.keep.len() <= GOSSIP_PEERS);
    let host = (1..NODES).find(|i| !origin_neighbours.keep.contains(&peers[*i])).expect("a non-neighbour");
    add_panel(&nodes[host], "sim");

    let members: Vec<&TestNode> = nodes.iter().collect();
    let config = admins.new_config("fed.json", "ring-test", 1, &members, &[]).unwrap();
    // Adverts every 30 s rather than 5: thirty unoptimised nodes share the test machine's cores,
    // and catalogs fill from the adverts published at start and the catalog sync on connect.
    let text = std::fs::read_to_string(&config).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["signed"]["policy"]["advert_interval_secs"] = 30.into();
    std::fs::write(&config, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    admins.sign(&config, &[0]).unwrap();
    for node in nodes.iter_mut() {
        assert!(node.apply(&[&config]).status.success());
        // On-demand connections close 3 s after their last use, so the test can see it.
        edit_config(node, |c| set(c, "idle_connection_secs = 60", "idle_connection_secs = 3"));
        node.start().await.unwrap();
    }

    // Every catalog complete (a fresh advert of every member, itself included), with every
    // node holding at most GOSSIP_PEERS connections.
    for (i, node) in nodes.iter().enumerate() {
        wait_for(&format!("node {i}'s catalog complete"), Duration::from_secs(180), || async {
            Ok(gauge(node, "fedimpute_federation_members{state=\"reachable\"}").await? == NODES as u64)
        })
        .await
        .unwrap();
    }
    let mut total = 0;
    for (i, node) in nodes.iter().enumerate() {
        let connected = gauge(node, "fedimpute_federation_members{state=\"connected\"}").await.unwrap();
        let expected = gossip_neighbours(&peers, peers[i], GOSSIP_PEERS).keep.len() as u64;
        assert!(connected <= GOSSIP_PEERS as u64, "node {i} holds {connected} connections");
        assert!(connected <= expected, "node {i} holds {connected} connections, {expected} neighbours");
        total += connected;
    }
    let full_mesh = (NODES * (NODES - 1)) as u64;
    assert!(total * 2 <= full_mesh, "{} connections in all, a full mesh has {}", total / 2, full_mesh / 2);

    // A job from node 0 for the host's panel: not connected before, it dials on demand.
    let origin = &nodes[0];
    let host_peer = nodes[host].peer_id().to_string();
    assert_eq!(member(&origin.federation_view().await.unwrap(), &host_peer)["connection"], "disconnected");
    let token = origin.admin_token().await.unwrap();
    let job = submit_targets(origin, &token, &[("panel", "sim"), ("build", "hg19"), ("mode", "qc_only")]).await;
    let done = wait_state(origin, &token, &job, &["completed", "failed"], Duration::from_secs(180)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["peer"], host_peer.as_str(), "{done}");
    // Idle afterwards, the on-demand connection closes; the host stays reachable by gossip.
    wait_for("the on-demand connection closed", Duration::from_secs(60), || async {
        Ok(member(&origin.federation_view().await?, &host_peer)["connection"] == "disconnected")
    })
    .await
    .unwrap();
    assert_eq!(member(&origin.federation_view().await.unwrap(), &host_peer)["reachable"], true);
}
