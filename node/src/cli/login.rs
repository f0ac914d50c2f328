//! `fedimpute login` and `fedimpute logout`: a saved profile (node, API token, certificate trust)
//! so the researcher's other commands need no `--node`, `--token` or `--ca-cert`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::client::{
    NodeAnswer, Trust, fingerprint, http_client, normalise_fingerprint, normalise_url, presented_certificate,
    success_or_error,
};
use super::profile::{self, Profile, Profiles};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The node's base URL, e.g. https://imputation.example.org:8443
    #[arg(long, env = "FEDIMPUTE_NODE")]
    node: String,
    /// Your user name on that node.
    #[arg(long, env = "FEDIMPUTE_USER")]
    user: String,
    /// The name to save the login under; commands use it with --profile or FEDIMPUTE_PROFILE.
    #[arg(long, env = "FEDIMPUTE_PROFILE", default_value = profile::DEFAULT)]
    profile: String,
    /// File holding your password (`-` for standard input). Without it the password is asked
    /// for on the terminal, or read from standard input when that is not a terminal.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// PEM certificate to trust for the node (its own self-signed one, or its CA's).
    #[arg(long, env = "FEDIMPUTE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// The SHA-256 fingerprint of the node's certificate, as its admin gave it to you, to
    /// accept a certificate no authority signed without being asked (scripts); on a terminal
    /// you are shown the fingerprint and asked instead.
    #[arg(long)]
    fingerprint: Option<String>,
    /// Days until the saved API token expires (at most what the node allows, 90 by default).
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Print one JSON document on stdout and nothing else.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The saved login to end.
    #[arg(long, env = "FEDIMPUTE_PROFILE", default_value = profile::DEFAULT)]
    profile: String,
    /// Print one JSON document on stdout and nothing else.
    #[arg(long)]
    json: bool,
}

impl LoginArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

impl LogoutArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let node = normalise_url(&args.node);
    if !node.starts_with("https://") {
        bail!("{node}: the node's URL must start with https://");
    }
    let mut profiles = Profiles::load()?;
    let trust = decide_trust(&node, &args).await?;
    let password = read_password(&args, &node)?;
    let http = http_client(&trust)?;
    let base = format!("{node}/api/v1");

    let answer = http
        .post(format!("{base}/auth/login"))
        .json(&json!({ "username": args.user, "password": password }))
        .send()
        .await
        .context("reaching the node")?;
    let session: Value = success_or_error(answer).await.context("logging in")?.json().await?;
    if session["must_change_password"].as_bool().unwrap_or(false) {
        bail!(
            "your password is a one-time password: change it first with `fedimpute account password --node {node} \
             --user {}`, then log in",
            args.user
        );
    }
    let access = session["access_token"].as_str().context("the login answer has no access token")?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let token_name = format!("fedimpute login ({}, profile {})", host.trim(), args.profile);
    let answer = http
        .post(format!("{base}/me/tokens"))
        .bearer_auth(access)
        .json(&json!({ "name": token_name, "expires_in_days": args.days, "password": password }))
        .send()
        .await
        .context("reaching the node")?;
    let created: Value = success_or_error(answer).await.context("making an API token")?.json().await?;
    // The session was only needed to make the token.
    if let Some(refresh) = session["refresh_token"].as_str() {
        let _ = http
            .post(format!("{base}/auth/logout"))
            .bearer_auth(access)
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await;
    }

    let (ca_cert, cert_sha256) = match trust {
        Trust::System => (None, None),
        Trust::CaFile(path) => (Some(std::path::absolute(&path).unwrap_or(path)), None),
        Trust::Pinned(fp) => (None, Some(fp)),
    };
    let profile = Profile {
        node: node.clone(),
        username: args.user.clone(),
        token: created["token"].as_str().context("the node's answer has no token")?.to_string(),
        token_id: created["id"].as_i64().context("the node's answer has no token id")?,
        token_expires_at: created["expires_at"].as_str().unwrap_or_default().to_string(),
        ca_cert,
        cert_sha256,
    };
    let replaced = profiles.insert(&args.profile, profile.clone());
    profiles.save()?;
    // A login again under the same name leaves no forgotten token behind.
    if let Some(old) = replaced {
        let _ = revoke(&old).await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&profile_view(&args.profile, &profile, profiles.path()))?);
    } else {
        println!(
            "logged in to {node} as {}; saved as profile {:?} in {} (its API token expires {})",
            args.user,
            args.profile,
            profiles.path().display(),
            profile.token_expires_at
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let mut profiles = Profiles::load()?;
    let Some(profile) = profiles.get(&args.profile).cloned() else {
        bail!("no profile {:?} in {}", args.profile, profiles.path().display());
    };
    let revoked = revoke(&profile).await?;
    profiles.remove(&args.profile);
    profiles.save()?;
    if args.json {
        let view = json!({ "profile": args.profile, "node": profile.node, "token_revoked": revoked });
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else if revoked {
        println!("logged out of {} (profile {:?}): its API token is revoked", profile.node, args.profile);
    } else {
        println!("profile {:?} removed; its API token had already expired or been revoked", args.profile);
    }
    Ok(ExitCode::SUCCESS)
}

/// Revokes the profile's token at its node: true if it was revoked now, false if the node no
/// longer accepted it anyway (expired, revoked, user disabled).
async fn revoke(profile: &Profile) -> anyhow::Result<bool> {
    let http = http_client(&profile.trust())?;
    let answer = http
        .delete(format!("{}/api/v1/me/tokens/{}", profile.node, profile.token_id))
        .bearer_auth(&profile.token)
        .send()
        .await
        .with_context(|| format!("reaching {} to revoke the token (the profile is kept)", profile.node))?;
    match success_or_error(answer).await {
        Ok(_) => Ok(true),
        Err(e) if e.downcast_ref::<NodeAnswer>().is_some_and(|a| a.status == reqwest::StatusCode::UNAUTHORIZED) => {
            Ok(false)
        }
        Err(e) => Err(e.context("revoking the token (the profile is kept)")),
    }
}

/// A profile as `--json` shows it: everything but the token.
fn profile_view(name: &str, p: &Profile, path: &std::path::Path) -> Value {
    json!({
        "profile": name,
        "node": p.node,
        "username": p.username,
        "token_id": p.token_id,
        "token_expires_at": p.token_expires_at,
        "ca_cert": p.ca_cert,
        "cert_sha256": p.cert_sha256,
        "profiles_file": path,
    })
}

/// How to trust the node from now on: the CA file given; else the system's authorities if they
/// vouch for the node; else its own certificate, pinned once the researcher accepts its
/// fingerprint (given with --fingerprint, or confirmed on the terminal).
async fn decide_trust(node: &str, args: &LoginArgs) -> anyhow::Result<Trust> {
    if let Some(ca) = &args.ca_cert {
        return Ok(Trust::CaFile(ca.clone()));
    }
    let system = http_client(&Trust::System)?;
    if system.get(format!("{node}/healthz")).send().await.is_ok() {
        return Ok(Trust::System);
    }
    let presented = fingerprint(&presented_certificate(node).await?);
    if let Some(expected) = &args.fingerprint {
        let expected = normalise_fingerprint(expected)?;
        if expected != presented {
            bail!(
                "the node presented a certificate with SHA-256 fingerprint {presented}, not the {expected} you gave: \
                 someone may be between you and the node; nothing was sent"
            );
        }
        return Ok(Trust::Pinned(presented));
    }
    let advice = "compare it with the fingerprint your node's admin gave you (on the node: `openssl x509 -in \
                  tls/api.crt -noout -fingerprint -sha256` in its data folder)";
    if !std::io::stdin().is_terminal() {
        bail!(
            "no certificate authority this machine trusts signed the node's certificate; its SHA-256 fingerprint is \
             {presented}: {advice}, then log in again with --fingerprint {presented} (or --ca-cert FILE)"
        );
    }
    eprintln!("No certificate authority this machine trusts signed {node}'s certificate.");
    eprintln!("Its SHA-256 fingerprint is\n  {presented}\nPlease {advice}.");
    eprint!("Trust this certificate for profile {:?}? [y/N] ", args.profile);
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        bail!("certificate not accepted; nothing was sent to the node");
    }
    Ok(Trust::Pinned(presented))
}

fn read_password(args: &LoginArgs, node: &str) -> anyhow::Result<String> {
    if let Some(path) = &args.password_file {
        return super::read_password_file(path);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(format!("Password for {} at {node}: ", args.user))
            .context("reading the password");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
