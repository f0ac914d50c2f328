//! `fedimpute init`: create a node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::read_password_file;
use crate::auth::JwtKeys;
use crate::auth::password;
use crate::config::{ApiSection, AuthSection, CONFIG_FILE, LoggingSection, NodeConfig, NodeSection, P2pSection};
use crate::identity::NodeIdentity;
use crate::secrets::random_password;
use crate::store::Store;
use crate::store::audit::{AuditEvent, Outcome};
use crate::store::users::Role;
use crate::tls;

/// User name of the first administrator.
pub const FIRST_ADMIN: &str = "admin";

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory for the node's database, keys and files (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The institution that runs this node.
    #[arg(long)]
    pub institution: String,
    /// Display name of the node (default: the institution).
    #[arg(long)]
    pub name: Option<String>,
    /// Address of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub api_listen: SocketAddr,
    /// libp2p listen address (repeatable).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/4001")]
    pub p2p_listen: Vec<String>,
    /// Extra DNS name or IP for the API certificate, besides localhost and 127.0.0.1 (repeatable).
    #[arg(long)]
    pub hostname: Vec<String>,
    /// File holding the first admin's password (`-` for standard input). Without it a password
    /// is generated and printed once.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Replace an existing node in this directory (its keys, database and users are lost).
    #[arg(long)]
    pub force: bool,
}

/// Files `init` creates; an existing one means a node lives here.
fn node_files(dir: &Path) -> Vec<PathBuf> {
    ["node.toml", "node.key", "jwt.key", "fedimpute.db", "fedimpute.db-wal", "fedimpute.db-shm", "api.addr"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

pub async fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().with_context(|| format!("resolving {}", args.data_dir.display()))?;
    crate::at_rest::check_data_dir(&data_dir)?;
    let existing: Vec<PathBuf> = node_files(&data_dir).into_iter().filter(|p| p.exists()).collect();
    if !existing.is_empty() && !args.force {
        anyhow::bail!(
            "{} already holds a node ({} exists); refusing to overwrite it. Use --force to replace it \
             (its keys, users and audit log are lost).",
            data_dir.display(),
            existing[0].display()
        );
    }

    // Check every input before writing anything, so a refused init leaves nothing behind.
    let admin_password = match &args.admin_password_file {
        Some(path) => {
            let pw = read_password_file(path)?;
            password::check_policy(FIRST_ADMIN, &pw).map_err(|e| anyhow::anyhow!("admin password: {e}"))?;
            Some(pw)
        }
        None => None,
    };
    let config = NodeConfig {
        node: NodeSection {
            name: args.name.clone().unwrap_or_else(|| args.institution.clone()),
            institution: args.institution.clone(),
            data_dir: data_dir.clone(),
        },
        api: ApiSection { listen: args.api_listen, ..ApiSection::default() },
        p2p: P2pSection { listen: args.p2p_listen.clone(), ..P2pSection::default() },
        auth: AuthSection::default(),
        logging: LoggingSection::default(),
        engines: Default::default(),
        qc: Default::default(),
        jobs: Default::default(),
        policy: Default::default(),
        transfer: Default::default(),
        chunking: Default::default(),
        executor: Default::default(),
        smtp: None,
    };
    let config_path = data_dir.join(CONFIG_FILE);
    // Validate by round-tripping through the same parser `run` uses.
    NodeConfig::parse(&config.to_toml(), &config_path)?;

    for path in existing {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    // SAFETY: umask only changes this process's file-creation mask; no threads create files yet.
    unsafe { libc::umask(0o077) };

    let identity = NodeIdentity::generate();
    identity.save(&config.node_key_path())?;
    JwtKeys::create_key_file(&config.jwt_key_path())
        .with_context(|| format!("writing {}", config.jwt_key_path().display()))?;
    let mut names = tls::default_hostnames(&args.hostname);
    let listen_ip = args.api_listen.ip().to_string();
    if !args.api_listen.ip().is_unspecified() && !names.contains(&listen_ip) {
        names.push(listen_ip);
    }
    tls::write_self_signed(&names, &config.data_path(&config.api.tls_cert), &config.data_path(&config.api.tls_key))?;

    let store = Store::open(&config.database_path(), true).await?;
    let generated = admin_password.is_none();
    let admin_password = admin_password.unwrap_or_else(random_password);
    let hash = tokio::task::spawn_blocking({
        let pw = admin_password.clone();
        move || password::hash(&pw)
    })
    .await?;
    store.create_user(FIRST_ADMIN, &hash, Role::Admin, generated).await?;
    store
        .append_audit(
            &identity,
            AuditEvent::new(super::user::cli_actor().name, "local", "node.init", Outcome::Success)
                .details(json!({ "institution": args.institution, "peer_id": identity.peer_id().to_string() })),
        )
        .await?;
    store.close().await;
    std::fs::write(&config_path, config.to_toml()).with_context(|| format!("writing {}", config_path.display()))?;

    println!("Initialised fedimpute node in {}", data_dir.display());
    println!("  PeerId:    {}", identity.peer_id());
    println!("  config:    {}", config_path.display());
    println!(
        "  API:       https://{} (certificate {})",
        args.api_listen,
        config.data_path(&config.api.tls_cert).display()
    );
    println!(
        "  its SHA-256 fingerprint, for researchers' `fedimpute login`: {}",
        tls::pem_fingerprint(&config.data_path(&config.api.tls_cert))?
    );
    if generated {
        println!("  admin user: {FIRST_ADMIN}, one-time password (shown only now): {admin_password}");
    } else {
        println!("  admin user: {FIRST_ADMIN} (password from your file)");
    }
    println!("Start it with: fedimpute run --config {}", config_path.display());
    Ok(ExitCode::SUCCESS)
}
