//! A small federation of real nodes on loopback, as the federated-job and trust tests start it:
//! node 0 the origin (no panel), the others hosts of the committed test panel unless told
//! otherwise, one admin key, and every host's panel in node 0's catalog before the test goes on.

use std::path::PathBuf;
use std::time::Duration;

use crate::jobs::{add_panel, edit_config, set};
use crate::{FederationAdmins, TestNode, install_crypto_provider, wait_for};

/// The institutions nodes get by default, by index.
pub const NAMES: [&str; 3] = ["Origin A", "Host B", "Host C"];

/// A started federation.
pub struct Federation {
    pub admins: FederationAdmins,
    pub nodes: Vec<TestNode>,
    /// The signed federation config every node applied.
    pub config: PathBuf,
}

/// Another member of the federation that is not a `fedimpute` process (e.g. a test's own
/// libp2p peer): its PeerId, institution and listen address.
pub struct ExtraMember {
    pub peer_id: String,
    pub institution: String,
    pub address: String,
}

/// What to start.
pub struct FederationSpec<'a> {
    /// One institution per node (node 0 first).
    pub names: &'a [&'a str],
    /// Registers node `i`'s panels.
    pub panels: &'a dyn Fn(usize, &TestNode),
    /// Rewrites node `i`'s node.toml before it starts.
    pub edit: &'a dyn Fn(usize, String) -> String,
    /// Members listed besides the nodes.
    pub extra: &'a [ExtraMember],
    /// How many hosts' panels node 0 must see reachable before the test goes on.
    pub hosts_in_catalog: usize,
    /// Environment variables every node runs with.
    pub env: &'a [(&'a str, &'a std::ffi::OsStr)],
}

/// Nodes A (no panel) and `hosts` hosts of the test panel as `sim`, with `edit` applied.
pub async fn federation(hosts: usize, edit: impl Fn(usize, String) -> String) -> Federation {
    federation_with(hosts, |_, node| add_panel(node, "sim"), edit).await
}

/// Like [`federation`], with `panels(i, host)` registering host `i`'s panels (i from 1).
pub async fn federation_with(
    hosts: usize,
    panels: impl Fn(usize, &TestNode),
    edit: impl Fn(usize, String) -> String,
) -> Federation {
    let hosts_only = |i: usize, node: &TestNode| {
        if i > 0 {
            panels(i, node)
        }
    };
    start(&FederationSpec {
        names: &NAMES[..=hosts],
        panels: &hosts_only,
        edit: &edit,
        extra: &[],
        hosts_in_catalog: hosts,
        env: &[],
    })
    .await
}

/// Starts the federation `spec` describes.
pub async fn start(spec: &FederationSpec<'_>) -> Federation {
    install_crypto_provider();
    let admins = FederationAdmins::new(1).unwrap();
    let mut nodes: Vec<TestNode> = spec.names.iter().map(|n| TestNode::init(n).unwrap()).collect();
    for (i, node) in nodes.iter().enumerate() {
        (spec.panels)(i, node);
    }
    let members: Vec<&TestNode> = nodes.iter().collect();
    let config = admins.new_config("fed.json", "jobs-test", 1, &members, &[]).unwrap();
    for m in spec.extra {
        let path = config.display().to_string();
        admins
            .run(&[
                "add-member",
                &path,
                "--peer-id",
                &m.peer_id,
                "--institution",
                &m.institution,
                "--address",
                &m.address,
            ])
            .unwrap();
    }
    admins.sign(&config, &[0]).unwrap();
    for (i, node) in nodes.iter_mut().enumerate() {
        assert!(node.apply(&[&config]).status.success());
        edit_config(node, |c| (spec.edit)(i, c));
        node.start_with_env(spec.env).await.unwrap();
    }
    let a = &nodes[0];
    let token = a.admin_token().await.unwrap();
    let hosts = spec.hosts_in_catalog;
    wait_for("every host's panel in A's catalog", Duration::from_secs(60), || async {
        let (_, panels) = a.get("/catalog/panels", &token).await?;
        let reachable =
            panels.as_array().into_iter().flatten().flat_map(|p| p["hosts"].as_array().cloned().unwrap_or_default());
        Ok(reachable.filter(|h| h["reachable"] == true).count() >= hosts)
    })
    .await
    .unwrap();
    Federation { admins, nodes, config }
}

/// Sets `[transfer]` keys (`key = value` lines) in node.toml, which `init` writes in full.
pub fn with_transfer(config: String, settings: &str) -> String {
    settings.lines().fold(config, |config, setting| {
        let key = setting.split('=').next().unwrap().trim();
        let old = config
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} not in node.toml"));
        set(config.clone(), old, setting)
    })
}

/// The value of a counter in a node's /metrics (0 if absent).
pub async fn metric(node: &TestNode, name_and_labels: &str) -> u64 {
    let text = node.client().get(format!("{}/metrics", node.base_url())).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

pub const SENT_INPUT: &str = r#"fedimpute_transfer_bytes_total{direction="sent",kind="input"}"#;
pub const SENT_RESULT: &str = r#"fedimpute_transfer_bytes_total{direction="sent",kind="result"}"#;
