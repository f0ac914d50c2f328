//! `fedimpute run`: open the stores, serve the API, and shut down cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::json;

use crate::api::{self, AppState};
use crate::config::NodeConfig;
use crate::federation::Federation;
use crate::federation::catalog::Catalog;
use crate::federation::runtime::{self, FederationHandle, NodeInfo};
use crate::metrics::Metrics;
use crate::node_handle::NodeHandle;
use crate::p2p::{Network, NetworkConfig};
use crate::store::Store;
use crate::store::audit::{AuditEvent, Outcome};

/// Runs the node until a shutdown signal, then stops accepting, lets in-flight requests finish
/// (up to `api.shutdown_grace_secs`), records the stop and closes the database.
pub async fn run(config: NodeConfig, config_path: &std::path::Path) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    crate::at_rest::restrict_umask();
    crate::at_rest::check_data_dir(&config.node.data_dir)?;
    let NodeHandle { store, identity, auth, .. } = NodeHandle::from_config(config.clone()).await?;
    let peer_id = identity.peer_id().to_string();
    let metrics = Metrics::new();

    let federation = Federation::load(store.clone(), identity.clone()).await?;
    let listen = config
        .p2p
        .listen
        .iter()
        .map(|a| a.parse().with_context(|| format!("p2p.listen address {a:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let network_config = NetworkConfig {
        listen,
        reachability: config.p2p.reachability,
        relays: config.p2p.relays.iter().map(|r| r.parse()).collect::<Result<_, _>>().context("p2p.relays")?,
        relay: config.p2p.relay.serve.then(|| config.p2p.relay.clone()),
        gossip_peers: config.p2p.gossip_peers,
        idle_connection: std::time::Duration::from_secs(config.p2p.idle_connection_secs),
    };
    let (network, events) = Network::spawn(&identity, network_config, federation.subscribe())?;
    let handle = FederationHandle {
        federation,
        catalog: Catalog::new(store.clone()),
        peers: Default::default(),
        republish: Default::default(),
    };
    let node_info = NodeInfo {
        name: config.node.name.clone(),
        institution: config.node.institution.clone(),
        api_url: None,
        services: crate::imputation::catalog_entry::local_services(&config.engines),
        data_policy: fedimpute_protocol::advert::DataPolicyAdvert {
            accepts_from: config.policy.accept_from.clone(),
            max_input_bytes: config.jobs.max_upload_bytes,
            retention_days: config.jobs.results_retention_days,
        },
        p2p_addr_file: config.p2p_addr_path(),
    };
    runtime::start(
        handle.clone(),
        network.clone(),
        events.federation,
        store.clone(),
        identity.clone(),
        metrics.clone(),
        node_info,
    );

    let config_arc = Arc::new(config.clone());
    let jobs = crate::jobs::JobsService::new(store.clone(), config_arc.clone(), identity.clone(), metrics.clone());
    jobs.start();
    if let Some(smtp) = &config.smtp {
        let mailer = crate::mail::Mailer::new(smtp, &config.node.data_dir).context("setting up [smtp]")?;
        crate::mail::spawn_sender(store.clone(), mailer, jobs.mail_wake());
        tracing::info!(host = %smtp.host, port = smtp.port(), "mails go out when jobs end");
    }
    let federated = crate::jobs::federated::Federated::new(
        jobs.clone(),
        network,
        handle.clone(),
        identity.clone(),
        metrics.clone(),
    );
    federated.start(events.jobs, events.file_streams);
    tokio::spawn(crate::imputation::external::health_loop(
        store.clone(),
        identity.clone(),
        Duration::from_secs(config.engines.service_check_secs.max(1)),
        Arc::default(),
        handle.republish.clone(),
    ));
    auth.spawn_throttle_auditor();
    let state = AppState {
        store: store.clone(),
        auth,
        identity: identity.clone(),
        metrics,
        federation: handle,
        config: config_arc,
        jobs,
    };

    let cert = config.data_path(&config.api.tls_cert);
    let key = config.data_path(&config.api.tls_key);
    let tls = RustlsConfig::from_pem_file(&cert, &key)
        .await
        .with_context(|| format!("loading TLS certificate {} and key {}", cert.display(), key.display()))?;

    if let Ok(fp) = crate::tls::pem_fingerprint(&cert) {
        tracing::info!(certificate = %cert.display(), sha256 = %fp, "API certificate");
    }

    let handle: Handle<SocketAddr> = Handle::new();
    let app = api::router(state, config.api.max_body_bytes);
    let cap = api::connections::PerAddressCap::new(config.api.max_connections_per_address, &config.api.trusted_proxies);
    let server = api::connections::server(&config.api, tls, cap)
        .handle(handle.clone())
        .serve(app.into_make_service_with_connect_info::<SocketAddr>());
    let server = tokio::spawn(server);

    let Some(bound) = handle.listening().await else {
        // The server task ended before listening: surface its bind error.
        let err = server.await.context("API server task")?.err();
        anyhow::bail!("cannot listen on {}: {}", config.api.listen, err.map(|e| e.to_string()).unwrap_or_default());
    };
    let addr_file = config.api_addr_path();
    std::fs::write(&addr_file, format!("{bound}\n")).with_context(|| format!("writing {}", addr_file.display()))?;
    store
        .append_audit(
            &identity,
            AuditEvent::new("node", "local", "node.start", Outcome::Success)
                .details(json!({ "version": env!("CARGO_PKG_VERSION"), "api": bound.to_string(),
                                 "config": config_path.display().to_string() })),
        )
        .await?;
    tracing::info!(%peer_id, api = %format!("https://{bound}"), institution = %config.node.institution, "node started");
    tell_service_manager_ready(&store).await;

    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down: no new connections, finishing in-flight requests");
    // Without NOTIFY_SOCKET (not under systemd) both notifications are no-ops.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    handle.graceful_shutdown(Some(Duration::from_secs(config.api.shutdown_grace_secs)));
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "API server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "API server task failed"),
    }
    store
        .append_audit(
            &identity,
            AuditEvent::new("node", "local", "node.stop", Outcome::Success).details(json!({ "signal": signal })),
        )
        .await?;
    let _ = std::fs::remove_file(&addr_file);
    let _ = std::fs::remove_file(config.p2p_addr_path());
    store.close().await;
    tracing::info!("node stopped");
    Ok(())
}

/// Tells systemd (a `Type=notify` unit) that the node is ready: its API listens and its
/// database answers, the checks `/readyz` starts with. A frozen federation or a full disk make
/// `/readyz` say "not federating" or "degraded" later; they do not stop the service starting.
async fn tell_service_manager_ready(store: &Store) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if !store.ping().await {
        tracing::warn!("the database does not answer; not telling systemd the node is ready");
        return;
    }
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the node is ready");
    }
}

/// SIGINT and SIGTERM, registered as soon as this is made: a signal that arrives before the
/// node waits for it (e.g. right after `api.addr` appears) still stops it cleanly.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
