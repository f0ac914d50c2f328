//! TLS material for the HTTPS API: a self-signed certificate made at `init`, or the admin's own.

use std::path::Path;

use crate::secrets;

/// Makes a self-signed certificate for `hostnames` (DNS names or IP addresses) and writes the
/// certificate and its private key (mode 0600) as PEM.
pub fn write_self_signed(hostnames: &[String], cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let certified =
        rcgen::generate_simple_self_signed(hostnames.to_vec()).context("generating the API's TLS certificate")?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(cert_path, certified.cert.pem()).with_context(|| format!("writing {}", cert_path.display()))?;
    secrets::write_private_file(key_path, certified.signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("writing {}", key_path.display()))?;
    Ok(())
}

/// The subject alternative names every node certificate carries, plus the admin's extra ones.
pub fn default_hostnames(extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The SHA-256 fingerprint of a DER certificate as `openssl x509 -fingerprint -sha256` shows it:
/// upper-case hex pairs joined by colons. Researchers pin a self-signed node certificate by it.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The fingerprint of the (first) certificate in a PEM file.
pub fn pem_fingerprint(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(path).with_context(|| format!("reading certificate {}", path.display()))?;
    Ok(fingerprint(&der))
}
