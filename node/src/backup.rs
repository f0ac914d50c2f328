//! Online backup of a node and its restore into an empty data directory.
//!
//! A backup is one tar file: a manifest first, then the node's config, then everything in the
//! data directory the node needs to come back as itself (database snapshot, keys, TLS
//! certificate, panels, jobs' inputs and results), and last the SHA-256 of every entry before
//! it, so a damaged or altered archive is refused before anything of it is used.
//!
//! The node keeps running while it is made. Its files are first hard-linked into a staging
//! folder (instant, and immune to the node deleting them), then the database is snapshotted with
//! `VACUUM INTO`, then files that appeared in between are linked too. So every file the
//! snapshot references is in the backup, except one made and deleted within those seconds,
//! which [`BackupReport::missing`] names.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::service::Actor;
use crate::config::{CONFIG_FILE, DATABASE_FILE, NodeConfig};
use crate::node_handle::NodeHandle;
use crate::store::Store;
use crate::store::audit::{AuditEvent, Outcome};

/// The first entry of every backup.
pub const MANIFEST: &str = "fedimpute-backup.json";
/// The last entry: `sha256  name` for every entry before it.
pub const CHECKSUMS: &str = "fedimpute-backup.sha256";
/// The node's config, as it was.
const CONFIG_ENTRY: &str = "node.toml";
/// Everything from the data directory sits below this.
const DATA_PREFIX: &str = "data";
/// The archive layout this build writes and reads.
const FORMAT: u32 = 1;
/// Staging folders in the data directory start with this (and are never backed up).
const STAGING_PREFIX: &str = ".backup-";
/// A config larger than this is not a node.toml.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// What a backup holds, written first so `restore` can refuse an archive before unpacking it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The fedimpute version that made it.
    pub software_version: String,
    pub peer_id: String,
    pub institution: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The newest database migration applied in the snapshot.
    pub schema_version: i64,
    /// The data directory it was made from.
    pub data_dir: PathBuf,
    /// False when made with `--without-panels`: the panels' registrations are in the database,
    /// their files are not.
    pub panels_included: bool,
    /// Files the config names outside the data directory, which the backup does not hold.
    pub not_included: Vec<PathBuf>,
}

/// What `backup` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub out: PathBuf,
    pub files: u64,
    pub bytes: u64,
    /// Files the snapshot references that were gone before they could be linked.
    pub missing: Vec<String>,
}

/// Makes a backup of the node whose config is `config_path` into `out` (written whole, mode
/// 0600). `progress` is told the bytes archived so far, against the total it is first given.
pub async fn backup(
    config_path: &Path,
    out: &Path,
    with_panels: bool,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> anyhow::Result<BackupReport> {
    let node = NodeHandle::open(config_path).await?;
    let config = &node.config;
    let data_dir = config.node.data_dir.clone();
    let out = std::path::absolute(out)?;
    if out.starts_with(&data_dir) {
        bail!(
            "write the backup outside the data directory {} (a backup inside it is lost with it)",
            data_dir.display()
        );
    }
    if out.exists() {
        bail!("{} already exists; choose another name or remove it", out.display());
    }
    let staging = Staging::create(&data_dir)?;
    // The config is its own entry; a copy of it in data/ would keep the old data_dir.
    let config_file = std::path::absolute(config_path)?.strip_prefix(&data_dir).ok().map(Path::to_path_buf);
    let skip = Skip { data_dir: data_dir.clone(), skip_panels: !with_panels, config_file };
    staging.link_tree(&skip)?;
    let snapshot = staging.path.join(DATABASE_FILE);
    node.store.snapshot_into(&snapshot).await.context("snapshotting the database")?;
    // Files made between the first pass and the snapshot (a job's upload, its results).
    staging.link_tree(&skip)?;
    let missing = referenced_but_missing(&snapshot, &staging.path, with_panels).await?;

    let manifest = Manifest {
        format: FORMAT,
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        peer_id: node.identity.peer_id().to_string(),
        institution: config.node.institution.clone(),
        created_at: crate::time::now_secs(),
        schema_version: node.store.schema_version().await?,
        data_dir: data_dir.clone(),
        panels_included: with_panels,
        not_included: outside_files(config),
    };
    let config_text = std::fs::read(config_path).with_context(|| format!("reading {}", config_path.display()))?;
    let (files, bytes) = {
        let (manifest, staging_path, out) = (manifest.clone(), staging.path.clone(), out.clone());
        let mut report = |done, total| progress(done, total);
        // Blocking file I/O, but the caller has nothing else to do meanwhile.
        tokio::task::block_in_place(|| write_archive(&out, &manifest, &config_text, &staging_path, &mut report))?
    };
    drop(staging);
    node.store
        .append_audit(
            &node.identity,
            AuditEvent::new(Actor::cli().name, "local", "node.backup", Outcome::Success).details(serde_json::json!({
                "out": out.display().to_string(), "files": files, "bytes": bytes,
                "panels_included": with_panels, "missing": missing.len(),
            })),
        )
        .await?;
    node.store.close().await;
    Ok(BackupReport { manifest, out, files, bytes, missing })
}

/// What `restore` brought back.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub users: i64,
    pub jobs: i64,
    pub audit_rows: i64,
}

/// Restores the backup `from` into `data_dir`, which must be empty or absent, and writes the
/// node's config (its `data_dir` set to the new folder) to `config_out` (default: node.toml in
/// the data directory). On any failure the data directory is left empty again.
pub async fn restore(from: &Path, data_dir: &Path, config_out: Option<&Path>) -> anyhow::Result<RestoreReport> {
    crate::at_rest::restrict_umask();
    let created = !data_dir.exists();
    if !created && std::fs::read_dir(data_dir)?.next().is_some() {
        bail!("{} is not empty; restore only into an empty or new folder", data_dir.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))?;
    let data_dir = data_dir.canonicalize()?;
    let config_path = match config_out {
        Some(p) => std::path::absolute(p)?,
        None => data_dir.join(CONFIG_FILE),
    };
    let result = restore_into(from, &data_dir, &config_path).await;
    if result.is_err() {
        empty_folder(&data_dir, created);
        if !config_path.starts_with(&data_dir) {
            let _ = std::fs::remove_file(&config_path);
        }
    }
    result
}

async fn restore_into(from: &Path, data_dir: &Path, config_path: &Path) -> anyhow::Result<RestoreReport> {
    if config_path.exists() {
        bail!("{} already exists; pass --config-out to write the restored config elsewhere", config_path.display());
    }
    let unpacked = tokio::task::block_in_place(|| unpack(from, data_dir))?;
    let manifest = unpacked.manifest;
    let text = String::from_utf8(unpacked.config).context("the backup's node.toml is not UTF-8")?;
    let text = with_data_dir(&text, data_dir)?;
    crate::secrets::write_private_file(config_path, text.as_bytes())
        .with_context(|| format!("writing {}", config_path.display()))?;

    let node = NodeHandle::open(config_path).await?;
    let peer_id = node.identity.peer_id().to_string();
    if peer_id != manifest.peer_id {
        bail!("the restored key is node {peer_id}, but the backup says {}", manifest.peer_id);
    }
    let audit = node.store.verify_audit(&node.identity.public()).await?;
    if let Some(b) = audit.first_break {
        bail!("the restored audit log does not verify at row {}: {}", b.seq, b.reason);
    }
    let users = node.store.count_users().await?;
    let jobs: i64 = node.store.count_jobs_by_state().await?.iter().map(|(_, n)| n).sum();
    node.store
        .append_audit(
            &node.identity,
            AuditEvent::new(Actor::cli().name, "local", "node.restore", Outcome::Success).details(serde_json::json!({
                "backup_created_at": manifest.created_at, "backup_software_version": manifest.software_version,
                "from_data_dir": manifest.data_dir.display().to_string(), "audit_rows": audit.rows,
            })),
        )
        .await?;
    node.store.close().await;
    Ok(RestoreReport {
        manifest,
        data_dir: data_dir.to_path_buf(),
        config: config_path.to_path_buf(),
        files: unpacked.files,
        bytes: unpacked.bytes,
        users,
        jobs,
        audit_rows: audit.rows,
    })
}

/// What the data directory holds that a restored node does not need or must not have.
struct Skip {
    data_dir: PathBuf,
    skip_panels: bool,
    /// The node's config, when it lives in the data directory.
    config_file: Option<PathBuf>,
}

impl Skip {
    fn skips(&self, relative: &Path) -> bool {
        if self.config_file.as_deref() == Some(relative) {
            return true;
        }
        let parts: Vec<&str> = relative.iter().filter_map(|p| p.to_str()).collect();
        match parts.as_slice() {
            [] => false,
            // The live database is taken as a snapshot instead; the address files are a running
            // node's; a backup's staging folder is no part of the node.
            [name] if name.starts_with(DATABASE_FILE) || name.ends_with(".addr") => true,
            [first, ..] if first.starts_with(STAGING_PREFIX) => true,
            // In-flight transfers resume from the start, and panel files waiting to be registered
            // are the admin's, not the node's.
            ["transfers", ..] | ["panels-incoming", ..] => true,
            ["panels", ..] => self.skip_panels,
            // Work files are remade when an interrupted job runs again.
            ["jobs", _, "work", ..] => true,
            [.., last] => last.ends_with(".part"),
        }
    }
}

/// A folder in the data directory holding hard links to the files being backed up, removed
/// when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self { path })
    }

    /// Links every file of the data directory not skipped and not linked yet. A file that
    /// vanishes meanwhile is passed over (the node deleted it); one that cannot be hard-linked
    /// (another file system) is copied.
    fn link_tree(&self, skip: &Skip) -> anyhow::Result<()> {
        let walk = walkdir::WalkDir::new(&skip.data_dir)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| e.path().strip_prefix(&skip.data_dir).map(|rel| !skip.skips(rel)).unwrap_or(false));
        for entry in walk {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
                Err(e) => return Err(e).context("reading the data directory"),
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&skip.data_dir) else { continue };
            let dest = self.path.join(rel);
            if dest.exists() {
                continue;
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::hard_link(entry.path(), &dest) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => match crate::at_rest::private_copy(entry.path(), &dest) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("copying {}", entry.path().display())),
                },
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Files the snapshot says exist (inputs not yet deleted, results, panels' files) that the
/// staging folder lacks.
async fn referenced_but_missing(snapshot: &Path, staging: &Path, with_panels: bool) -> anyhow::Result<Vec<String>> {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    let options = SqliteConnectOptions::new().filename(snapshot).read_only(true);
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    // Pending uploads and host jobs still pulling their inputs have no complete input yet.
    let inputs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT i.job_id, i.idx FROM job_inputs i JOIN jobs j ON j.id = i.job_id \
         WHERE j.inputs_deleted_at IS NULL AND j.state NOT IN ('pending', 'received', 'purged')",
    )
    .fetch_all(&pool)
    .await?;
    let results: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.job_id, r.name FROM job_results r JOIN jobs j ON j.id = r.job_id \
         WHERE j.results_deleted_at IS NULL AND j.state NOT IN ('purged')",
    )
    .fetch_all(&pool)
    .await?;
    let panels: Vec<(String,)> =
        if with_panels { sqlx::query_as("SELECT id FROM panels").fetch_all(&pool).await? } else { Vec::new() };
    pool.close().await;
    let files = crate::files::FileStore::new(staging);
    let mut missing = Vec::new();
    for (job, idx) in inputs {
        if !files.input_path(&job, idx).is_file() {
            missing.push(format!("job {job}: input {idx}"));
        }
    }
    for (job, name) in results {
        // Result names are file names the node chose; anything else is not looked up.
        if Path::new(&name).components().count() == 1 && !files.job_dir(&job).join("results").join(&name).is_file() {
            missing.push(format!("job {job}: result {name}"));
        }
    }
    for (panel,) in panels {
        if Path::new(&panel).components().count() == 1 && !staging.join("panels").join(&panel).is_dir() {
            missing.push(format!("panel {panel}"));
        }
    }
    Ok(missing)
}

/// Files the config names outside the data directory: the operator backs those up.
fn outside_files(config: &NodeConfig) -> Vec<PathBuf> {
    let mut named = vec![config.data_path(&config.api.tls_cert), config.data_path(&config.api.tls_key)];
    if let Some(smtp) = &config.smtp
        && let Some(file) = &smtp.password_file
    {
        named.push(config.data_path(file));
    }
    named.retain(|p| !p.starts_with(&config.node.data_dir));
    named
}

/// Counts bytes and hashes them on the way through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    remaining: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let cap = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 {
            // The tar header already promised `remaining` more bytes.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file ended before its recorded size",
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_archive(
    out: &Path,
    manifest: &Manifest,
    config_text: &[u8],
    staging: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<(u64, u64)> {
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(staging).sort_by_file_name() {
        let entry = entry?;
        if entry.file_type().is_file() {
            let len = entry.metadata()?.len();
            entries.push((entry.path().to_path_buf(), len));
        }
    }
    let total: u64 = entries.iter().map(|(_, len)| len).sum();
    let partial = crate::files::partial_path(out);
    let file = create_private(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let written = (|| -> anyhow::Result<(u64, u64)> {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        let mut sums = String::new();
        let manifest_json = serde_json::to_vec_pretty(manifest)?;
        for (name, bytes) in [(MANIFEST, manifest_json.as_slice()), (CONFIG_ENTRY, config_text)] {
            tar.append_data(&mut header(bytes.len() as u64), name, bytes)?;
            sums.push_str(&format!("{}  {name}\n", hash_hex(bytes)));
        }
        let mut done = 0;
        progress(done, total);
        for (path, len) in &entries {
            let rel = path.strip_prefix(staging)?;
            let name = Path::new(DATA_PREFIX).join(rel);
            let mut reader = Hashing { inner: File::open(path)?, hasher: Sha256::new(), remaining: *len };
            tar.append_data(&mut header(*len), &name, &mut reader)
                .with_context(|| format!("archiving {}", rel.display()))?;
            sums.push_str(&format!("{}  {}\n", hex::encode(reader.hasher.finalize()), name.display()));
            done += len;
            progress(done, total);
        }
        tar.append_data(&mut header(sums.len() as u64), CHECKSUMS, sums.as_bytes())?;
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((entries.len() as u64, total))
    })();
    match written {
        Ok(counts) => {
            std::fs::rename(&partial, out).with_context(|| format!("moving the backup to {}", out.display()))?;
            Ok(counts)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(crate::time::now_secs()).unwrap_or(0));
    header.set_entry_type(tar::EntryType::Regular);
    header
}

/// A new file only this user can read, refused if the name exists.
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

struct Unpacked {
    manifest: Manifest,
    config: Vec<u8>,
    files: u64,
    bytes: u64,
}

/// Unpacks a backup into `data_dir`, refusing any entry that is not a plain file at a plain
/// relative path, and the whole archive unless every entry's hash matches the checksums entry.
fn unpack(from: &Path, data_dir: &Path) -> anyhow::Result<Unpacked> {
    let file = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut entries = archive.entries().context("reading the backup")?;
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut next = |what: &str| -> anyhow::Result<tar::Entry<'_, _>> {
        entries.next().with_context(|| format!("the backup ends before its {what}"))?.context("reading the backup")
    };

    let mut first = next("manifest")?;
    anyhow::ensure!(
        entry_name(&first)? == MANIFEST,
        "{} is not a fedimpute backup (no manifest first)",
        from.display()
    );
    let manifest_bytes = read_small(&mut first, MAX_CONFIG_BYTES)?;
    drop(first);
    hashes.insert(MANIFEST.into(), hash_hex(&manifest_bytes));
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).context("reading the backup's manifest")?;
    if manifest.format != FORMAT {
        bail!("the backup is in format {}, this fedimpute reads format {FORMAT}", manifest.format);
    }
    let latest = Store::latest_schema_version();
    if manifest.schema_version > latest {
        bail!(
            "the backup was made by fedimpute {} with database schema {}, newer than this build's {latest}; \
             restore it with fedimpute {} or newer",
            manifest.software_version,
            manifest.schema_version,
            manifest.software_version
        );
    }

    let mut config = None;
    let (mut files, mut bytes) = (0, 0);
    let listed = loop {
        let mut entry = next("checksums")?;
        let name = entry_name(&entry)?;
        if !matches!(entry.header().entry_type(), tar::EntryType::Regular) {
            bail!("the backup holds {name}, which is not a plain file");
        }
        if name == CHECKSUMS {
            break String::from_utf8(read_small(&mut entry, 64 << 20)?).context("the checksums are not UTF-8")?;
        }
        if name == CONFIG_ENTRY {
            let text = read_small(&mut entry, MAX_CONFIG_BYTES)?;
            hashes.insert(name, hash_hex(&text));
            config = Some(text);
            continue;
        }
        let rel = data_path(&name)?;
        let dest = data_dir.join(&rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let len = entry.header().size()?;
        let mut out = create_private(&dest).with_context(|| format!("writing {}", dest.display()))?;
        let mut reader = Hashing { inner: &mut entry, hasher: Sha256::new(), remaining: len };
        std::io::copy(&mut reader, &mut out).with_context(|| format!("unpacking {name}"))?;
        out.sync_all()?;
        hashes.insert(name, hex::encode(reader.hasher.finalize()));
        files += 1;
        bytes += len;
    };
    if entries.next().is_some() {
        bail!("the backup holds entries after its checksums");
    }

    let mut expected = BTreeMap::new();
    for line in listed.lines() {
        let (hash, name) = line.split_once("  ").with_context(|| format!("a malformed checksum line {line:?}"))?;
        expected.insert(name.to_string(), hash.to_string());
    }
    if expected != hashes {
        let bad: Vec<&String> = hashes
            .iter()
            .filter(|(name, hash)| expected.get(*name) != Some(hash))
            .map(|(name, _)| name)
            .chain(expected.keys().filter(|name| !hashes.contains_key(*name)))
            .take(5)
            .collect();
        bail!("the backup is damaged or was altered: {bad:?} do not match its checksums; nothing was restored");
    }
    let config = config.context("the backup holds no node.toml")?;
    Ok(Unpacked { manifest, config, files, bytes })
}

fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> anyhow::Result<String> {
    let path = entry.path().context("an entry with an unreadable name")?;
    path.to_str().map(str::to_string).context("an entry whose name is not UTF-8")
}

/// `data/<relative path>` as the relative path, refusing `..`, absolute names and the like.
fn data_path(name: &str) -> anyhow::Result<PathBuf> {
    let rel = Path::new(name)
        .strip_prefix(DATA_PREFIX)
        .with_context(|| format!("the backup holds {name:?}, outside data/"))?;
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("the backup holds {name:?}, which is not a plain relative path");
    }
    Ok(rel.to_path_buf())
}

fn read_small<R: Read>(reader: &mut R, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    anyhow::ensure!(bytes.len() as u64 <= limit, "an entry of the backup is larger than {limit} bytes");
    Ok(bytes)
}

/// The config text with `node.data_dir` set to `data_dir`. The line is replaced in place, so
/// the operator's comments and layout stay; the result is parsed to make sure it says so.
fn with_data_dir(text: &str, data_dir: &Path) -> anyhow::Result<String> {
    let quoted = toml::Value::String(data_dir.to_str().context("the data directory is not UTF-8")?.to_string());
    let mut table = "";
    let mut replaced = false;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            table = trimmed;
        }
        let is_data_dir = trimmed.strip_prefix("data_dir").is_some_and(|rest| rest.trim_start().starts_with('='));
        if table.starts_with("[node]") && is_data_dir && !replaced {
            lines.push(format!("data_dir = {quoted}"));
            replaced = true;
        } else {
            lines.push(line.to_string());
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let parsed = NodeConfig::parse(&out, Path::new(CONFIG_FILE)).context("the restored node.toml")?;
    if !replaced || parsed.node.data_dir != data_dir {
        bail!("could not set node.data_dir in the backup's node.toml; set it to {} by hand", data_dir.display());
    }
    Ok(out)
}

/// Removes what a failed restore left in `dir` (and `dir` itself if the restore made it).
fn empty_folder(dir: &Path, made_it: bool) {
    if made_it {
        let _ = std::fs::remove_dir_all(dir);
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_database_staging_work_files_and_transfers_are_skipped() {
        let skip = Skip { data_dir: PathBuf::from("/d"), skip_panels: true, config_file: Some("node.toml".into()) };
        for skipped in [
            "node.toml",
            "fedimpute.db",
            "fedimpute.db-wal",
            "api.addr",
            ".backup-12",
            "transfers/j1/0.vcf.gz",
            "panels-incoming/x.vcf.gz",
            "panels/p1/chr20.vcf.gz",
            "jobs/j1/work/chunk.vcf.gz",
            "jobs/j1/inputs/0.vcf.gz.part",
        ] {
            assert!(skip.skips(Path::new(skipped)), "{skipped} should be skipped");
        }
        for kept in ["node.key", "tls/api.key", "jobs/j1/inputs/0.vcf.gz", "jobs/j1/results/chr20.dose.vcf.gz"] {
            assert!(!skip.skips(Path::new(kept)), "{kept} should be kept");
        }
        let with_panels = Skip { skip_panels: false, ..skip };
        assert!(!with_panels.skips(Path::new("panels/p1/chr20.vcf.gz")));
    }

    #[test]
    fn only_plain_relative_paths_under_data_are_unpacked() {
        assert_eq!(data_path("data/jobs/j1/inputs/0.vcf.gz").unwrap(), Path::new("jobs/j1/inputs/0.vcf.gz"));
        for refused in ["data/../etc/passwd", "/data/x", "data", "other/x", "data/a/../../b"] {
            assert!(data_path(refused).is_err(), "{refused} must be refused");
        }
    }

    #[test]
    fn the_data_dir_line_is_replaced_and_comments_stay() {
        let text = "# my node\n[node]\nname = \"n\"\ninstitution = \"I\"\n# where it lives\ndata_dir = \"/old\"\n\n[api]\nlisten = \"127.0.0.1:8443\"\n";
        let out = with_data_dir(text, Path::new("/new/place")).unwrap();
        assert!(out.contains("# my node") && out.contains("# where it lives"), "{out}");
        assert!(out.contains("data_dir = \"/new/place\"") && !out.contains("/old"), "{out}");
    }
}
