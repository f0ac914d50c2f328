//! Saved logins: `~/.config/fedimpute/profiles.toml` (or under `$XDG_CONFIG_HOME`), mode 0600,
//! one table per profile with the node's URL, an API token made by `fedimpute login`, and how to
//! trust the node's certificate.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::client::Trust;

/// The profile used when none is named.
pub(super) const DEFAULT: &str = "default";

/// One saved login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Profile {
    pub node: String,
    pub username: String,
    pub token: String,
    /// The token's id at the node, so `fedimpute logout` can revoke it.
    pub token_id: i64,
    pub token_expires_at: String,
    /// A PEM certificate to trust for the node, as given to `login --ca-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// The SHA-256 fingerprint of the node's own certificate, accepted at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

impl Profile {
    pub(super) fn trust(&self) -> Trust {
        match (&self.ca_cert, &self.cert_sha256) {
            (Some(ca), _) => Trust::CaFile(ca.clone()),
            (None, Some(fp)) => Trust::Pinned(fp.clone()),
            (None, None) => Trust::System,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ProfilesFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The profiles file, as read (empty if it does not exist yet).
pub(super) struct Profiles {
    path: PathBuf,
    file: ProfilesFile,
}

/// `$XDG_CONFIG_HOME/fedimpute/profiles.toml`, else `$HOME/.config/fedimpute/profiles.toml`.
fn default_path() -> anyhow::Result<PathBuf> {
    let config_home = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").filter(|v| !v.is_empty()).context("neither XDG_CONFIG_HOME nor HOME is set")?,
        )
        .join(".config"),
    };
    Ok(config_home.join("fedimpute").join("profiles.toml"))
}

impl Profiles {
    pub(super) fn load() -> anyhow::Result<Self> {
        Self::load_from(default_path()?)
    }

    fn load_from(path: PathBuf) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { path, file: ProfilesFile::default() });
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // As ssh does with keys: tokens others can read are tokens others may hold.
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} holds API tokens but others may read it (mode {mode:o}); run `chmod 600 {}` (and revoke the \
                 tokens with `fedimpute logout` if someone else could have read them)",
                path.display(),
                path.display()
            );
        }
        let file = toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self { path, file })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn get(&self, name: &str) -> Option<&Profile> {
        self.file.profiles.get(name)
    }

    /// Saves `profile` as `name`, returning the one it replaced.
    pub(super) fn insert(&mut self, name: &str, profile: Profile) -> Option<Profile> {
        self.file.profiles.insert(name.to_string(), profile)
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Profile> {
        self.file.profiles.remove(name)
    }

    /// Writes the file (mode 0600, its folder 0700) by replacing it whole, so a crash leaves
    /// either the old file or the new one.
    pub(super) fn save(&self) -> anyhow::Result<()> {
        let dir = self.path.parent().context("the profiles file has no folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let text = toml::to_string_pretty(&self.file)?;
        let tmp = dir.join(".profiles.toml.tmp");
        crate::secrets::write_private_file(&tmp, text.as_bytes())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(node: &str) -> Profile {
        Profile {
            node: node.into(),
            username: "ada".into(),
            token: "fit_secret".into(),
            token_id: 7,
            token_expires_at: "2027-01-01T00:00:00Z".into(),
            ca_cert: None,
            cert_sha256: Some("AB".into()),
        }
    }

    #[test]
    fn profiles_round_trip_through_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/fedimpute/profiles.toml");
        let mut profiles = Profiles::load_from(path.clone()).unwrap();
        assert!(profiles.get(DEFAULT).is_none(), "no file yet: no profiles");
        profiles.insert(DEFAULT, profile("https://a:8443"));
        profiles.insert("work", profile("https://b:8443"));
        profiles.save().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);

        let mut again = Profiles::load_from(path.clone()).unwrap();
        assert_eq!(again.get("work").unwrap().node, "https://b:8443");
        assert_eq!(again.get(DEFAULT).unwrap().trust(), Trust::Pinned("AB".into()));
        assert_eq!(again.remove("work").unwrap().token_id, 7);
        again.save().unwrap();
        assert!(Profiles::load_from(path).unwrap().get("work").is_none());
    }

    #[test]
    fn a_profiles_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.toml");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Profiles::load_from(path).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
