//! `fedimpute service ...`: external imputation services this node wraps (works while the node
//! runs; it checks and advertises a new service at its next health check).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::{ConfigArg, NodeHandle};
use crate::credentials::Secret;
use crate::imputation::external::{self, Registration};
use crate::store::audit::{AuditEvent, Outcome};

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// Register a service: a Cloudgene server (Michigan, TOPMed, AfriGen-D) reached with an API
    /// token. The token is stored encrypted with a key derived from the node key.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// cloudgene or wes.
        #[arg(long)]
        kind: String,
        /// Id of the service, as jobs name it (lowercase letters, digits, dashes).
        #[arg(long)]
        id: String,
        /// Base URL, e.g. https://imputationserver.sph.umich.edu
        #[arg(long)]
        url: String,
        /// File holding the API token (`-` for standard input); optional for WES.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Cloudgene application id.
        #[arg(long, default_value = "imputationserver2")]
        app: String,
        /// WES: the CWL workflow to run: the name of one shipped with fedimpute
        /// (`beagle-impute.cwl`, attached to each run) or an http(s) URL the server fetches.
        #[arg(long)]
        workflow_url: Option<String>,
        /// WES on this machine: the one folder its `file://` outputs may be read from (the
        /// server's working folder); without it, only outputs on the server's own origin.
        #[arg(long)]
        outputs_dir: Option<String>,
        /// WES: a panel the workflow can use, `id=ID,build=hg19,ref=LOCATION[,map=LOCATION]`,
        /// with locations as the WES server reads them (repeatable).
        #[arg(long = "panel")]
        panels: Vec<String>,
    },
    /// List the services with their last health check (never their tokens).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check one service now and show the outcome.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
    /// Remove a service.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        id: String,
    },
}

pub async fn run(cmd: ServiceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ServiceCommand::Add { config, kind, id, url, token_file, app, workflow_url, outputs_dir, panels } => {
            let node = NodeHandle::open(&config.config).await?;
            let token = token_file
                .map(|f| super::read_password_file(&f).context("reading the token"))
                .transpose()?
                .map(Secret::new);
            let panels = panels.iter().map(|p| external::parse_panel(p)).collect::<Result<Vec<_>, _>>()?;
            let registration = Registration {
                kind: &kind,
                id: &id,
                url: &url,
                token,
                app: Some(&app),
                workflow_url: workflow_url.as_deref(),
                outputs_dir: outputs_dir.as_deref(),
                panels,
            };
            external::register(&node.store, &node.identity, &registration).await?;
            node.store
                .append_audit(
                    &node.identity,
                    AuditEvent::new("cli", "local", "service.add", Outcome::Success)
                        .target(&id)
                        .details(json!({ "kind": kind, "url": url })),
                )
                .await?;
            if let Some(service) = node.store.service(&id).await? {
                external::check(&node.store, &node.identity, &service).await;
            }
            print_services(&node, Some(&id)).await?;
        }
        ServiceCommand::List { config } => {
            let node = NodeHandle::open(&config.config).await?;
            print_services(&node, None).await?;
        }
        ServiceCommand::Check { config, id } => {
            let node = NodeHandle::open(&config.config).await?;
            let service = node.store.service(&id).await?.with_context(|| format!("no service {id}"))?;
            external::check(&node.store, &node.identity, &service).await;
            print_services(&node, Some(&id)).await?;
        }
        ServiceCommand::Remove { config, id } => {
            let node = NodeHandle::open(&config.config).await?;
            anyhow::ensure!(node.store.remove_service(&id).await?, "no service {id}");
            node.store
                .append_audit(
                    &node.identity,
                    AuditEvent::new("cli", "local", "service.remove", Outcome::Success).target(&id),
                )
                .await?;
            eprintln!("removed service {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_services(node: &NodeHandle, only: Option<&str>) -> anyhow::Result<()> {
    for s in node.store.services().await?.into_iter().filter(|s| only.is_none_or(|id| s.id == id)) {
        let panels: Vec<String> = s.panels().into_iter().map(|p| p.id).collect();
        println!(
            "{}\t{}\t{}\t{}\tqueue {}\tpanels {}{}",
            s.id,
            s.kind,
            s.url,
            s.status,
            s.queue_length,
            if panels.is_empty() { "-".to_string() } else { panels.join(",") },
            s.last_error.map(|e| format!("\t{e}")).unwrap_or_default()
        );
    }
    Ok(())
}
