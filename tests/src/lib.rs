//! `fedimpute-tests`: test support for running real `fedimpute` processes on loopback.
//!
//! Each [`TestNode`] is a node initialised by the real `fedimpute init` in a temporary
//! directory and run by the real `fedimpute run` on a free loopback port. Clients speak HTTPS to
//! it and trust only that node's own certificate, as a researcher's client would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod cloudgene_double;
pub mod federation;
pub mod jobs;
pub mod wes_double;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The admin password every test node is created with.
pub const ADMIN_PASSWORD: &str = "test root passphrase 42";

/// What [`TestNode::first_login`] changes a one-time password to.
pub const CHANGED_PASSWORD: &str = "a passphrase of my own 7";

/// Path of the `fedimpute` binary, built once per test process.
///
/// `cargo test` builds this crate's tests but not other packages' binaries, so the harness
/// asks cargo for it (a no-op when it is up to date). `FEDIMPUTE_BIN` overrides.
pub fn fedimpute_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(path) = std::env::var("FEDIMPUTE_BIN") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "fedimpute-node", "--bin", "fedimpute"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the fedimpute binary");
        assert!(status.success(), "cargo build of the fedimpute binary failed");
        let target =
            std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| workspace_root().join("target"));
        target.join("debug").join("fedimpute")
    })
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// Runs `fedimpute ARGS` to completion.
pub fn fedimpute(args: &[&str]) -> Output {
    Command::new(fedimpute_bin()).args(args).output().expect("running fedimpute")
}

/// A node directory made by `fedimpute init`, possibly running.
pub struct TestNode {
    dir: tempfile::TempDir,
    child: Option<Child>,
    addr: Option<String>,
    log_path: PathBuf,
    peer_id: String,
    p2p_port: u16,
    institution: String,
}

/// The PeerId of the node whose config is `config`, as `fedimpute federation whoami` tells it.
fn peer_id_of(config: &Path) -> anyhow::Result<String> {
    let whoami = fedimpute(&["federation", "whoami", "--config", &config.display().to_string()]);
    let info: Value = serde_json::from_slice(&whoami.stdout).context("federation whoami output")?;
    Ok(info["peer_id"].as_str().context("peer_id")?.to_string())
}

impl TestNode {
    /// Initialises a node for `institution` with [`ADMIN_PASSWORD`], not yet running, with its
    /// p2p side on a free loopback port.
    pub fn init(institution: &str) -> anyhow::Result<Self> {
        Self::init_on(institution, free_port()?)
    }

    /// Initialises a node whose p2p side listens on `p2p_port`.
    pub fn init_on(institution: &str, p2p_port: u16) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let pw = dir.path().join("admin-password");
        std::fs::write(&pw, format!("{ADMIN_PASSWORD}\n"))?;
        let data = dir.path().join("data");
        let out = fedimpute(&[
            "init",
            "--data-dir",
            data.to_str().context("utf-8 temp path")?,
            "--institution",
            institution,
            "--api-listen",
            "127.0.0.1:0",
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
            "--admin-password-file",
            pw.to_str().context("utf-8 temp path")?,
        ]);
        if !out.status.success() {
            bail!("fedimpute init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log_path = dir.path().join("node.log");
        let peer_id = peer_id_of(&data.join("node.toml"))?;
        Ok(Self { dir, child: None, addr: None, log_path, peer_id, p2p_port, institution: institution.to_string() })
    }

    /// A node made by `fedimpute restore --from backup` into a new temporary folder, not yet
    /// running: same institution and p2p port as `self` (stop `self` before starting it), its
    /// PeerId as the restored node reports it.
    pub fn restored_from(&self, backup: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let out = fedimpute(&[
            "restore",
            "--from",
            backup.to_str().context("utf-8 temp path")?,
            "--data-dir",
            data.to_str().context("utf-8 temp path")?,
        ]);
        if !out.status.success() {
            bail!("fedimpute restore failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let peer_id = peer_id_of(&data.join("node.toml"))?;
        Ok(Self {
            log_path: dir.path().join("node.log"),
            dir,
            child: None,
            addr: None,
            peer_id,
            p2p_port: self.p2p_port,
            institution: self.institution.clone(),
        })
    }

    /// The node's PeerId.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The node's institution.
    pub fn institution(&self) -> &str {
        &self.institution
    }

    /// Its libp2p listen address.
    pub fn p2p_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.p2p_port)
    }

    /// Installs federation config files on the node (`fedimpute federation apply`).
    pub fn apply(&self, files: &[&Path]) -> Output {
        let mut args = vec!["federation".to_string(), "apply".into(), "--config".into(), self.config_arg()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fedimpute(&args)
    }

    /// `GET /api/v1/federation` as the admin.
    pub async fn federation_view(&self) -> anyhow::Result<Value> {
        let token = self.admin_token().await?;
        let (status, body) = self.get("/federation", &token).await?;
        anyhow::ensure!(status.is_success(), "GET /federation: {status} {body}");
        Ok(body)
    }

    /// The audit log as the admin, newest first, filtered by `action`.
    pub async fn audit(&self, action: &str) -> anyhow::Result<Vec<Value>> {
        let token = self.admin_token().await?;
        let (_, body) = self.get(&format!("/audit?limit=1000&action={action}"), &token).await?;
        Ok(body["entries"].as_array().cloned().unwrap_or_default())
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its node.toml.
    pub fn config_path(&self) -> PathBuf {
        self.data_dir().join("node.toml")
    }

    /// Its SQLite database.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("fedimpute.db")
    }

    /// `--config PATH` arguments for admin commands.
    pub fn config_arg(&self) -> String {
        self.config_path().display().to_string()
    }

    /// Starts `fedimpute run` and waits until `/healthz` answers.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.start_with_env(&[]).await
    }

    /// Like [`TestNode::start`], with these environment variables set for the node.
    pub async fn start_with_env(&mut self, env: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<()> {
        let addr_file = self.data_dir().join("api.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::File::create(&self.log_path)?;
        let child = Command::new(fedimpute_bin())
            .args(["run", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", "info,fedimpute_node=debug,tower_http=debug")
            .envs(env.iter().copied())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("fedimpute run exited early with {status}:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                let addr = text.trim().to_string();
                self.addr = Some(addr.clone());
                if self.client().get(format!("https://{addr}/healthz")).send().await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("node did not come up within 30 s:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The running process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` and waits (up to 30 s) for the process to exit; returns its status.
    pub fn stop_with(&mut self, signal: i32) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("node is not running")?;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node did not exit within 30 s of signal {signal}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to `timeout`) for the process to exit by itself; returns its status.
    /// The running node's peak resident memory so far, in bytes (VmHWM).
    pub fn peak_rss_bytes(&self) -> u64 {
        let pid = self.pid().expect("the node is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status of the node");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
        line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmHWM in kB") * 1024
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.child.as_mut().context("node is not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("node still running after {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr.as_deref().expect("node started"))
    }

    /// `https://127.0.0.1:PORT/api/v1{path}`
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base_url())
    }

    /// An HTTPS client that trusts this node's certificate (and nothing else).
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("reqwest client")
    }

    /// A client whose connections come from `source`, another loopback address (127.0.0.2,
    /// ...), so a test can play several clients the node tells apart by address.
    pub fn client_from(&self, source: &str) -> reqwest::Client {
        let ip: std::net::IpAddr = source.parse().expect("an IP address");
        self.client_builder().local_address(ip).build().expect("reqwest client")
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        let pem = std::fs::read(self.data_dir().join("tls/api.crt")).expect("node certificate");
        let cert = reqwest::Certificate::from_pem(&pem).expect("PEM certificate");
        reqwest::Client::builder().tls_certs_only([cert]).timeout(Duration::from_secs(30))
    }

    /// Logs in and returns the full token response.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = self
            .client()
            .post(self.api("/auth/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// Logs in as the admin and returns the access token.
    pub async fn admin_token(&self) -> anyhow::Result<String> {
        self.token_for("admin", ADMIN_PASSWORD).await
    }

    /// Logs in and returns the access token, failing unless the login succeeds.
    pub async fn token_for(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let (status, body) = self.login(username, password).await?;
        if !status.is_success() {
            bail!("login as {username} failed with {status}: {body}");
        }
        Ok(body["access_token"].as_str().context("access_token in login response")?.to_string())
    }

    /// Logs in with a one-time (generated) password, changes it to [`CHANGED_PASSWORD`] as the
    /// node requires, and returns the access token of the session that gives.
    pub async fn first_login(&self, username: &str, one_time_password: &str) -> anyhow::Result<String> {
        let token = self.token_for(username, one_time_password).await?;
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                "/me/password",
                &token,
                &json!({ "current_password": one_time_password, "new_password": CHANGED_PASSWORD }),
            )
            .await?;
        if !status.is_success() {
            bail!("changing {username}'s one-time password failed with {status}: {body}");
        }
        Ok(body["access_token"].as_str().context("access_token in the password change response")?.to_string())
    }

    /// `POST /me/tokens` as the holder of `access`, confirming with `password`: status and body.
    pub async fn create_api_token(
        &self,
        access: &str,
        password: &str,
        name: &str,
        days: u32,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let body = json!({ "name": name, "expires_in_days": days, "password": password });
        self.send(reqwest::Method::POST, "/me/tokens", access, &body).await
    }

    /// GET with a bearer token; returns status and JSON body (Null if none).
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = self.client().get(self.api(path)).bearer_auth(token).send().await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// A request with a JSON body and a bearer token; returns status and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let resp = self.client().request(method, self.api(path)).bearer_auth(token).json(body).send().await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Installs the process-wide rustls provider the node also uses (aws-lc-rs), once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A file of the committed test data (`tests/data/`).
pub fn test_data(name: &str) -> PathBuf {
    workspace_root().join("tests/data").join(name)
}

/// A free TCP port on 127.0.0.1 (released for the caller to bind).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` every 200 ms until it returns true, failing with `what` after `timeout`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The federation admins' side: admin keys and a config file, driven through the real CLI.
pub struct FederationAdmins {
    dir: tempfile::TempDir,
    public_keys: Vec<String>,
}

impl FederationAdmins {
    /// `count` admin keys made by `fedimpute federation keygen`.
    pub fn new(count: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut public_keys = Vec::new();
        for i in 0..count {
            let out = fedimpute(&[
                "federation",
                "keygen",
                "--unencrypted",
                "--out",
                &dir.path().join(format!("admin{i}.key")).display().to_string(),
            ]);
            anyhow::ensure!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
            public_keys.push(String::from_utf8(out.stdout)?.trim().to_string());
        }
        Ok(Self { dir, public_keys })
    }

    /// Path of admin `i`'s secret key.
    pub fn key(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("admin{i}.key"))
    }

    /// Path of a config file in the admins' folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Public key of admin `i`.
    pub fn public_key(&self, i: usize) -> &str {
        &self.public_keys[i]
    }

    /// Runs a `fedimpute federation ...` command, failing if it fails.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["federation"];
        full.extend_from_slice(args);
        let out = fedimpute(&full);
        anyhow::ensure!(out.status.success(), "fedimpute {full:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes version 1 of federation `id` to `name`, with all admins, `threshold`, the given
    /// members, a 5 s advert interval, and extra `new` arguments.
    pub fn new_config(
        &self,
        name: &str,
        id: &str,
        threshold: u32,
        members: &[&TestNode],
        extra: &[&str],
    ) -> anyhow::Result<PathBuf> {
        let path = self.file(name);
        let threshold = threshold.to_string();
        let path_text = path.display().to_string();
        let mut args =
            vec!["new", "--id", id, "--threshold", &threshold, "--advert-interval-secs", "5", "--out", &path_text];
        for k in &self.public_keys {
            args.extend(["--admin", k]);
        }
        args.extend_from_slice(extra);
        self.run(&args)?;
        for m in members {
            self.add_member(&path, m)?;
        }
        Ok(path)
    }

    /// Adds `node` as a member of the config at `path`.
    pub fn add_member(&self, path: &Path, node: &TestNode) -> anyhow::Result<()> {
        let p = path.display().to_string();
        let addr = node.p2p_addr();
        self.run(&[
            "add-member",
            &p,
            "--peer-id",
            node.peer_id(),
            "--institution",
            node.institution(),
            "--address",
            &addr,
        ])?;
        Ok(())
    }

    /// Signs the config at `path` with the given admins.
    pub fn sign(&self, path: &Path, admins: &[usize]) -> anyhow::Result<()> {
        for i in admins {
            self.run(&["sign", &path.display().to_string(), "--key", &self.key(*i).display().to_string()])?;
        }
        Ok(())
    }

    /// Copies the config at `path` to a new file `name` (to keep a version while editing on).
    pub fn snapshot(&self, path: &Path, name: &str) -> anyhow::Result<PathBuf> {
        let to = self.file(name);
        std::fs::copy(path, &to)?;
        Ok(to)
    }
}
