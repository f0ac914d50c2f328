//! `fedimpute federation ...`: making and signing federation configs (federation admins,
//! offline), and installing them on a node (node admins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use fedimpute_protocol::federation::{
    AdminSet, AdminSigningKey, FederationConfig, FederationDocument, FederationPolicy, Member,
    admin_key_from_public_hex, rfc3339,
};
use time::{Duration, OffsetDateTime};

use super::{ConfigArg, NodeHandle, read_password_file};
use crate::auth::service::Actor;
use crate::config::NodeConfig;
use crate::credentials::Secret;
use crate::federation::{Adoption, ConfigSource, Federation};
use crate::secrets;

#[derive(Debug, clap::Subcommand)]
pub enum FederationCommand {
    /// Make a federation admin key (ed25519; file mode 0600), sealed with a passphrase
    /// (Argon2id + AES-256-GCM), and print its public key.
    Keygen {
        /// Where to write the secret key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// File holding the passphrase (`-` for standard input); at least 12 characters.
        #[arg(long, required_unless_present = "unencrypted")]
        passphrase_file: Option<PathBuf>,
        /// Write the key unsealed (anyone who can read the file can sign as this admin).
        #[arg(long, conflicts_with = "passphrase_file")]
        unencrypted: bool,
    },
    /// Start a new federation: print version 1 of its config (unsigned, no members) to stdout.
    New {
        /// Federation id: 1-64 of a-z 0-9 - _ .
        #[arg(long)]
        id: String,
        /// An admin's public key (hex), as printed by `keygen` (repeatable).
        #[arg(long = "admin", required = true)]
        admins: Vec<String>,
        /// How many distinct admins must sign each version.
        #[arg(long)]
        threshold: u32,
        #[command(flatten)]
        expiry: Expiry,
        /// Seconds between a node's periodic adverts.
        #[arg(long, default_value_t = 30)]
        advert_interval_secs: u64,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add a member node to a config (edits the file in place; signatures are dropped).
    AddMember {
        file: PathBuf,
        /// The node's PeerId, as printed by `fedimpute init` or `fedimpute federation whoami`.
        #[arg(long)]
        peer_id: String,
        #[arg(long)]
        institution: String,
        /// A libp2p address where the node listens (repeatable).
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// A role, e.g. host or origin (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A label for policies, KEY=VALUE, e.g. jurisdiction=ZA (repeatable).
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
    },
    /// Remove a member node (edits the file in place; signatures are dropped).
    RemoveMember {
        file: PathBuf,
        #[arg(long)]
        peer_id: String,
    },
    /// Turn a config into its next version: version + 1, new issue time, no signatures.
    Bump {
        file: PathBuf,
        #[command(flatten)]
        expiry: OptionalExpiry,
        /// Replace the admin keys in the new version (key rotation; repeatable). The new version
        /// then needs the old admins' threshold and the new admins' threshold.
        #[arg(long = "admin")]
        admins: Vec<String>,
        /// New signature threshold.
        #[arg(long)]
        threshold: Option<u32>,
    },
    /// Sign a config with an admin key (edits the file in place, or writes a signed copy with
    /// --out and leaves the file as it was).
    Sign {
        file: PathBuf,
        /// The admin key file made by `keygen`.
        #[arg(long)]
        key: PathBuf,
        /// Write the signed config here instead of over FILE (an admin's own copy, for
        /// `merge-signatures`).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// File holding the key's passphrase (`-` for standard input), if it is sealed.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Combine the signatures of separately signed copies of one config version (each admin
    /// signs their own copy); refuses copies whose signed content differs.
    MergeSignatures {
        /// The copies, at least two.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        /// Where to write the combined config (may be one of the copies).
        #[arg(long, short = 'o')]
        out: PathBuf,
    },
    /// Check a config's signatures: as a first config, or as the successor of --previous.
    Verify {
        file: PathBuf,
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Print a readable summary of a config.
    Show { file: PathBuf },
    /// Install configs on this node, in order (the first is trusted on first use; each next
    /// one must follow the rules). Works while the node runs.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print this node's PeerId, institution and p2p addresses, for the federation admins.
    Whoami {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// When a new config expires.
#[derive(Debug, clap::Args)]
pub struct Expiry {
    /// Days from now.
    #[arg(long, default_value_t = 365, conflicts_with = "expires_at")]
    expires_in_days: i64,
    /// An exact RFC 3339 time instead.
    #[arg(long)]
    expires_at: Option<String>,
}

/// When a bumped config expires; by default the same validity period as before.
#[derive(Debug, clap::Args)]
pub struct OptionalExpiry {
    #[arg(long, conflicts_with = "expires_at")]
    expires_in_days: Option<i64>,
    #[arg(long)]
    expires_at: Option<String>,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("tag {s:?} must be KEY=VALUE"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)"))
}

fn now() -> OffsetDateTime {
    // Whole seconds keep the files readable.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

fn read_config(path: &Path) -> anyhow::Result<FederationConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    FederationConfig::from_json(&text).with_context(|| format!("in {}", path.display()))
}

/// Writes through a temporary file and a rename, so a crash never leaves half a config.
fn write_config(path: &Path, config: &FederationConfig) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, config.to_json_pretty() + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn read_admin_key(path: &Path, passphrase_file: Option<&Path>) -> anyhow::Result<AdminSigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading admin key {}", path.display()))?;
    let mut unreadable = None;
    let seed = crate::admin_key::open(&text, || {
        let file = passphrase_file?;
        read_password_file(file).map(Secret::new).map_err(|e| unreadable = Some(e)).ok()
    });
    if let Some(e) = unreadable {
        return Err(e);
    }
    let seed = seed.with_context(|| format!("admin key {}", path.display()))?;
    Ok(AdminSigningKey::from_seed(seed))
}

/// Whether the threshold is met, and if not, who has yet to sign.
fn print_missing(config: &FederationConfig) {
    let d = config.doc();
    let valid = config.valid_signers(&d.admins).len();
    let still = (d.admins.threshold as usize).saturating_sub(valid);
    if still == 0 {
        println!("  threshold met ({valid} of {} required)", d.admins.threshold);
        return;
    }
    println!("  {still} more signature(s) needed; not signed yet by:");
    for k in config.missing_signers() {
        println!("    {}", k.public_key);
    }
}

fn admin_set(keys: &[String], threshold: u32) -> anyhow::Result<AdminSet> {
    let keys = keys
        .iter()
        .map(|k| admin_key_from_public_hex(k.trim()).map_err(anyhow::Error::msg))
        .collect::<Result<_, _>>()?;
    Ok(AdminSet { keys, threshold })
}

pub async fn run(cmd: FederationCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        FederationCommand::Keygen { out, passphrase_file, unencrypted } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite an admin key", out.display());
            }
            let seed = secrets::random_bytes::<32>();
            let text = match passphrase_file.filter(|_| !unencrypted) {
                Some(file) => {
                    let passphrase = Secret::new(read_password_file(&file)?);
                    tokio::task::spawn_blocking(move || crate::admin_key::seal(&seed, &passphrase)).await??
                }
                None => format!("{}\n", hex::encode(seed)),
            };
            secrets::write_private_file(&out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
            let public = AdminSigningKey::from_seed(seed).admin_key();
            let sealed = if unencrypted { "not sealed" } else { "sealed with the passphrase" };
            eprintln!("wrote admin key {} (mode 0600, {sealed}; keep it offline). Public key:", out.display());
            println!("{}", public.public_key);
        }
        FederationCommand::New { id, admins, threshold, expiry, advert_interval_secs, out } => {
            let issued_at = now();
            let expires_at = match &expiry.expires_at {
                Some(t) => parse_time(t)?,
                None => issued_at + Duration::days(expiry.expires_in_days),
            };
            let doc = FederationDocument {
                federation_id: id,
                version: 1,
                issued_at,
                expires_at,
                admins: admin_set(&admins, threshold)?,
                members: Vec::new(),
                policy: FederationPolicy { advert_interval_secs, ..FederationPolicy::default() },
            };
            let config = FederationConfig::new(doc)?;
            match out {
                Some(path) => {
                    write_config(&path, &config)?;
                    eprintln!("wrote {} (version 1, unsigned)", path.display());
                }
                None => println!("{}", config.to_json_pretty()),
            }
        }
        FederationCommand::AddMember { file, peer_id, institution, addresses, roles, tags } => {
            let mut config = read_config(&file)?;
            if config.doc().member(&peer_id).is_some() {
                bail!("{peer_id} is already a member in {}", file.display());
            }
            let member = Member {
                peer_id: peer_id.clone(),
                institution: institution.clone(),
                addresses,
                roles,
                tags: tags.into_iter().collect::<BTreeMap<_, _>>(),
            };
            config.edit(|d| d.members.push(member))?;
            write_config(&file, &config)?;
            println!(
                "added member {peer_id} ({institution}); {} members; signatures cleared",
                config.doc().members.len()
            );
        }
        FederationCommand::RemoveMember { file, peer_id } => {
            let mut config = read_config(&file)?;
            if config.doc().member(&peer_id).is_none() {
                bail!("{peer_id} is not a member in {}", file.display());
            }
            config.edit(|d| d.members.retain(|m| m.peer_id != peer_id))?;
            write_config(&file, &config)?;
            println!("removed member {peer_id}; {} members; signatures cleared", config.doc().members.len());
        }
        FederationCommand::Bump { file, expiry, admins, threshold } => {
            let mut config = read_config(&file)?;
            let old = config.doc().clone();
            let issued_at = now();
            let expires_at = match (&expiry.expires_at, expiry.expires_in_days) {
                (Some(t), _) => parse_time(t)?,
                (None, Some(days)) => issued_at + Duration::days(days),
                (None, None) => issued_at + (old.expires_at - old.issued_at),
            };
            let new_admins = if admins.is_empty() {
                AdminSet { threshold: threshold.unwrap_or(old.admins.threshold), ..old.admins.clone() }
            } else {
                admin_set(&admins, threshold.unwrap_or(old.admins.threshold))?
            };
            config.edit(|d| {
                d.version += 1;
                d.issued_at = issued_at;
                d.expires_at = expires_at;
                d.admins = new_admins;
            })?;
            write_config(&file, &config)?;
            println!(
                "version {} -> {}; expires {}; {} admin keys, threshold {}; signatures cleared",
                old.version,
                config.doc().version,
                rfc3339(config.doc().expires_at),
                config.doc().admins.keys.len(),
                config.doc().admins.threshold
            );
        }
        FederationCommand::Sign { file, key, out, passphrase_file } => {
            let mut config = read_config(&file)?;
            let key = tokio::task::spawn_blocking(move || read_admin_key(&key, passphrase_file.as_deref())).await??;
            let id = key.admin_key().id;
            if !config.doc().admins.keys.iter().any(|k| k.id == id) {
                eprintln!(
                    "warning: key {id} is not an admin of this version (it may be one of the previous version's)"
                );
            }
            config.sign(&key.0)?;
            let target = out.as_deref().unwrap_or(&file);
            write_config(target, &config)?;
            println!(
                "signed version {} with key {id}; {} signatures; wrote {}",
                config.doc().version,
                config.signatures().len(),
                target.display()
            );
        }
        FederationCommand::MergeSignatures { files, out } => {
            let mut merged = read_config(&files[0])?;
            for file in &files[1..] {
                let copy = read_config(file)?;
                merged
                    .merge_signatures(&copy)
                    .with_context(|| format!("{} and {}", files[0].display(), file.display()))?;
            }
            write_config(&out, &merged)?;
            let d = merged.doc();
            let valid = merged.valid_signers(&d.admins).len();
            println!(
                "wrote {}: version {}, {} signatures, {valid} valid of the {} this version's admins require",
                out.display(),
                d.version,
                merged.signatures().len(),
                d.admins.threshold
            );
            print_missing(&merged);
        }
        FederationCommand::Verify { file, previous } => {
            let config = read_config(&file)?;
            let result = match &previous {
                Some(p) => config.verify_update(&read_config(p)?, OffsetDateTime::now_utc()),
                None => config.verify_initial(OffsetDateTime::now_utc()),
            };
            match result {
                Ok(()) => println!(
                    "{}: version {} is valid{}",
                    file.display(),
                    config.doc().version,
                    previous
                        .map(|p| format!(" as the successor of {}", p.display()))
                        .unwrap_or_else(|| " as a first config".into())
                ),
                Err(e) => {
                    eprintln!("{}: NOT valid: {e}", file.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        FederationCommand::Show { file } => {
            let config = read_config(&file)?;
            let d = config.doc();
            println!("federation {} version {}", d.federation_id, d.version);
            println!("  issued {}  expires {}", rfc3339(d.issued_at), rfc3339(d.expires_at));
            println!("  digest {}", config.digest());
            println!("  admins (threshold {} of {}):", d.admins.threshold, d.admins.keys.len());
            let own = config.valid_signers(&d.admins);
            for k in &d.admins.keys {
                println!("    {}  {}", k.public_key, if own.contains(&k.id) { "signed" } else { "-" });
            }
            println!("  signatures: {} ({} valid by this version's admins)", config.signatures().len(), own.len());
            print_missing(&config);
            println!("  members ({}):", d.members.len());
            for m in &d.members {
                let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!("    {}  {}  {}  {}", m.peer_id, m.institution, m.addresses.join(","), tags.join(","));
            }
        }
        FederationCommand::Apply { config, files } => {
            let node = NodeHandle::open(&config.config).await?;
            let federation = Federation::load(node.store.clone(), node.identity.clone()).await?;
            for file in files {
                let candidate = read_config(&file)?;
                let version = candidate.doc().version;
                match federation.offer(candidate, ConfigSource::Cli { actor: Actor::cli().name }).await {
                    Ok(Adoption::Adopted { .. }) => {
                        println!("{}: adopted federation config version {version}", file.display())
                    }
                    Ok(Adoption::AlreadyCurrent) => {
                        println!("{}: version {version} is already current", file.display())
                    }
                    Err(e) => {
                        eprintln!("{}: refused: {e}", file.display());
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
        FederationCommand::Whoami { config } => {
            let cfg = NodeConfig::load(&config.config)?;
            let identity = crate::identity::NodeIdentity::load(&cfg.node_key_path())?;
            let running = std::fs::read_to_string(cfg.p2p_addr_path()).unwrap_or_default();
            let addresses: Vec<String> = if running.trim().is_empty() {
                cfg.p2p.listen.clone()
            } else {
                // Strip the /p2p/<id> suffix: the config lists the PeerId separately.
                running.lines().map(|l| l.split("/p2p/").next().unwrap_or(l).to_string()).collect()
            };
            let info = serde_json::json!({
                "peer_id": identity.peer_id().to_string(),
                "institution": cfg.node.institution,
                "addresses": addresses,
            });
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
